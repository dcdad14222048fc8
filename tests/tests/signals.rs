//! Signals during a capture, as a tcpdump user sends them: SIGUSR1 prints
//! the counters and the capture goes on; every other catchable signal whose
//! default action ends the process ends the capture cleanly (hooks
//! detached, summary printed, file complete); and clsact filters left by a
//! cnet that was killed with SIGKILL are removed by a later TCX run.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cnet_tests::{Cnet, Lab, TempDir, hooked_programs, tshark_fields, tshark_reads_cleanly};

/// Echo requests in a file that tshark reads without complaint (a file cut
/// short makes tshark say so on stderr).
fn echo_requests(file: &Path) -> usize {
    tshark_reads_cleanly(file);
    tshark_fields(file, Some("icmp.type == 8"), &["frame.number"]).unwrap().len()
}

fn clsact_qdisc(veth: &str) -> bool {
    let qdisc = cnet_tests::run(&["tc", "qdisc", "show", "dev", veth]).unwrap();
    String::from_utf8_lossy(&qdisc.stdout).contains("clsact")
}

#[test]
fn sigusr1_prints_the_counters_and_the_capture_goes_on() {
    let lab = Lab::new(2).unwrap();
    let dir = TempDir::new("csg-usr1").unwrap();
    let file = dir.path().join("out.pcapng");
    let veth = lab.host(0).host_veth.clone();
    let mut cnet = Cnet::start(&["capture", "-i", &veth, "-w", file.to_str().unwrap()]).unwrap();
    lab.ping(0, 1, 3).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    cnet.signal(libc::SIGUSR1);
    let line = cnet.wait_for_stderr(&format!("cnet: {veth}: "), Duration::from_secs(5)).unwrap();
    assert!(line.contains("seen") && line.contains("captured"), "{line}");
    let before: u64 = cnet
        .wait_for_stderr("packets captured", Duration::from_secs(5))
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(before >= 6, "3 echo requests and 3 replies by the first SIGUSR1, counted {before}");
    cnet.wait_for_stderr("received by filter", Duration::from_secs(5)).unwrap();
    cnet.wait_for_stderr("dropped by kernel", Duration::from_secs(5)).unwrap();
    // Still capturing.
    lab.ping(0, 1, 3).unwrap();
    let res = cnet.stop().unwrap();
    assert!(res.status.success(), "{}", res.stderr);
    assert!(res.stderr.matches("packets captured").count() == 2, "{}", res.stderr);
    // The summary at the end counts the packets since, too.
    let last = res.stderr.lines().rfind(|l| l.ends_with(" packets captured")).unwrap();
    let total: u64 = last.split(' ').next().unwrap().parse().unwrap();
    assert!(total >= before + 6, "{}", res.stderr);
    assert_eq!(echo_requests(&file), 6, "{}", res.stderr);
}

/// Every catchable signal whose default action terminates the process,
/// except those reporting a fault of the process itself.
fn terminating_signals() -> Vec<(libc::c_int, String)> {
    let mut sigs: Vec<(libc::c_int, String)> = [
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGPIPE, "SIGPIPE"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGALRM, "SIGALRM"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGVTALRM, "SIGVTALRM"),
        (libc::SIGPROF, "SIGPROF"),
        (libc::SIGXCPU, "SIGXCPU"),
        (libc::SIGXFSZ, "SIGXFSZ"),
        (libc::SIGPWR, "SIGPWR"),
        (libc::SIGSTKFLT, "SIGSTKFLT"),
        (libc::SIGIO, "SIGIO"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGINT, "SIGINT"),
    ]
    .into_iter()
    .map(|(n, s)| (n, s.to_string()))
    .collect();
    sigs.push((libc::SIGRTMIN(), "SIGRTMIN".into()));
    sigs.push((libc::SIGRTMAX(), "SIGRTMAX".into()));
    sigs
}

#[test]
fn every_terminating_signal_ends_the_capture_cleanly() {
    let lab = Lab::new(2).unwrap();
    let dir = TempDir::new("csg-term").unwrap();
    let veth = lab.host(0).host_veth.clone();
    // Every signal is tried, so a failure lists all that fail.
    let mut failures = Vec::new();
    for (sig, name) in terminating_signals() {
        // clsact filters outlive a killed cnet: the hardest case to leave clean.
        let file = dir.path().join(format!("{name}.pcapng"));
        let mut cnet =
            Cnet::start(&["capture", "-i", &veth, "--attach", "clsact", "-w", file.to_str().unwrap()]).unwrap();
        lab.ping(0, 1, 2).unwrap();
        cnet.signal(sig);
        let res = match cnet.wait() {
            Ok(res) => res,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        if !res.status.success() {
            failures.push(format!("{name}: {}", res.status));
        }
        if res.summary("captured").is_none_or(|n| n < 4) {
            failures.push(format!("{name}: no summary"));
        }
        if !hooked_programs(&veth).unwrap().is_empty() || clsact_qdisc(&veth) {
            failures.push(format!("{name}: hooks left on {veth}"));
            let _ = cnet_tests::run(&["tc", "qdisc", "del", "dev", &veth, "clsact"]);
        }
        let out = Command::new("tshark").arg("-n").arg("-r").arg(&file).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() || err.contains("cut short") {
            failures.push(format!("{name}: tshark: {}", err.trim()));
        } else if echo_requests(&file) != 2 {
            failures.push(format!("{name}: not 2 echo requests in the file"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_tcx_run_removes_the_clsact_filters_of_a_killed_cnet() {
    let lab = Lab::new(1).unwrap();
    let veth = lab.host(0).host_veth.clone();
    let mut killed = Cnet::start(&["capture", "-i", &veth, "--attach", "clsact", "-w", "/dev/null"]).unwrap();
    killed.signal(libc::SIGKILL);
    let _ = killed.wait();
    assert_eq!(hooked_programs(&veth).unwrap(), ["clsact:cnet_ingress", "clsact:cnet_egress"]);
    // The default mode on a kernel with TCX.
    let mut next = Cnet::start(&["capture", "-i", &veth, "-w", "/dev/null"]).unwrap();
    next.wait_for_stderr("(tcx,", Duration::from_secs(1)).unwrap();
    assert_eq!(hooked_programs(&veth).unwrap(), ["tcx:cnet_ingress", "tcx:cnet_egress"]);
    assert!(!clsact_qdisc(&veth), "the killed cnet's clsact qdisc is still on {veth}");
    let res = next.stop().unwrap();
    assert!(res.status.success(), "{}", res.stderr);
    assert!(res.stderr.contains("removed a stale cnet filter"), "{}", res.stderr);
    assert!(res.stderr.contains("removed the clsact qdisc"), "{}", res.stderr);
    assert!(hooked_programs(&veth).unwrap().is_empty());
}
