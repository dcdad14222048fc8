//! Moving targets: containers stopped, removed and restarted, and dockerd
//! itself restarted, while cnet captures. cnet keeps running, says what
//! happened on stderr, re-attaches where a container comes back, and the
//! file stays valid.
//!
//! A test binary of its own with one test: cargo runs test binaries one
//! after another, so restarting dockerd here disturbs no other test.

use std::time::Duration;

use cnet::codec::capture_file::read_file;
use cnet_tests::runtimes::{self, DockerNet, EngineContainer};
use cnet_tests::{Cnet, TempDir};

/// PID of the dockerd that scripts/start-runtimes.sh started, if it did.
fn our_dockerd() -> Option<u32> {
    let started = std::fs::read_to_string("/run/cnet-runtimes/started").ok()?;
    started
        .lines()
        .filter_map(|l| l.strip_prefix("dockerd "))
        .filter_map(|p| p.trim().parse::<u32>().ok())
        .rfind(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
}

fn restart_dockerd(pid: u32) {
    // SAFETY: signalling a daemon our own script started, by PID.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    for _ in 0..200 {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/start-runtimes.sh");
    let out = std::process::Command::new("bash").arg(script).output().unwrap();
    assert!(out.status.success(), "restarting dockerd: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn moving_targets_stop_remove_and_dockerd_restart() {
    runtimes::ensure().unwrap();
    let net = DockerNet::new("10.217.0.0/24").unwrap();
    let a = EngineContainer::docker("mova", &["--network", &net.name, "--ip", "10.217.0.10"]).unwrap();
    let b = EngineContainer::docker("movb", &["--network", &net.name, "--ip", "10.217.0.11"]).unwrap();
    let dir = TempDir::new("moving").unwrap();
    let file = dir.path().join("moving.pcapng");
    let mut cnet =
        Cnet::start(&["capture", "--container", &a.name, "--container", &b.name, "-w", file.to_str().unwrap()])
            .unwrap();

    a.ping("10.217.0.11", 2).unwrap();

    // Stopped, then started again: detached, then attached on its new veth.
    runtimes_cmd(&["stop", "-t", "0", &b.name]);
    cnet.wait_for_stderr("detached", Duration::from_secs(10)).unwrap();
    runtimes_cmd(&["start", &b.name]);
    cnet.wait_for_stderr("attached", Duration::from_secs(10)).unwrap();
    a.ping("10.217.0.11", 2).unwrap();

    // dockerd restarted (the containers stop with it); cnet keeps running
    // and picks the containers up again when they are started.
    match our_dockerd() {
        Some(pid) => {
            restart_dockerd(pid);
            runtimes_cmd(&["start", &a.name, &b.name]);
            std::thread::sleep(Duration::from_secs(2));
            a.ping("10.217.0.11", 2).unwrap();
        }
        None => eprintln!("dockerd was not started by scripts/start-runtimes.sh: not restarting it"),
    }

    // Removed: detached for good; cnet still runs.
    runtimes_cmd(&["rm", "-f", &b.name]);
    std::thread::sleep(Duration::from_secs(1));
    let pid = cnet.pid();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "cnet exited after the container was removed");

    cnet.signal(libc::SIGINT);
    let res = cnet.wait().unwrap();
    assert!(res.status.success(), "{}", res.stderr);
    assert!(!res.stderr.contains("panicked"), "{}", res.stderr);
    eprintln!("{}", res.stderr);
    let attached = res.stderr.matches("cnet: attached").count();
    let detached = res.stderr.matches("cnet: detached").count();
    assert!(attached >= 1 && detached >= 2, "attached {attached}, detached {detached}:\n{}", res.stderr);

    // The file is whole and holds the pings of every phase, labeled.
    let f = read_file(&file).unwrap_or_else(|(e, _)| panic!("{e}"));
    assert!(f.interfaces.len() >= 3, "expected the old and new veths: {:?}", f.interfaces);
    let echo_requests_from_a = f
        .packets
        .iter()
        .filter(|p| {
            p.labels.get("container") == Some(&a.name) && p.labels.get("dir").map(String::as_str) == Some("out")
        })
        .filter(|p| p.data.len() > 34 && p.data[23] == 1 && p.data[34] == 8)
        .count();
    let phases = if our_dockerd().is_some() { 3 } else { 2 };
    assert!(echo_requests_from_a >= 2 * phases, "{echo_requests_from_a} echo requests from {}", a.name);
    drop(a);
    drop(net);
}

fn runtimes_cmd(args: &[&str]) {
    let out = std::process::Command::new("docker").args(args).output().unwrap();
    assert!(out.status.success(), "docker {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}
