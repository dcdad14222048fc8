//! Targets that go away mid-capture: a `--netns` namespace removed (which
//! destroys its veth pair, host end included) and an `-i` interface
//! deleted. cnet says which went away, unhooks it, and once nothing is left
//! to capture on ends with its summary and exit status 0; the file keeps
//! the packets from before.

use std::path::Path;
use std::time::{Duration, Instant};

use cnet_tests::{Cnet, CnetResult, Lab, TempDir, tshark_fields, tshark_reads_cleanly};

/// Echo requests in a file that tshark reads without complaint (a file cut
/// short makes tshark say so on stderr).
fn echo_requests(file: &Path) -> usize {
    tshark_reads_cleanly(file);
    tshark_fields(file, Some("icmp.type == 8"), &["frame.number"]).unwrap().len()
}

/// Waits up to 20 s for cnet to end by itself (a namespace is destroyed
/// asynchronously by the kernel), SIGKILLing it on drop otherwise.
fn ends_by_itself(mut cnet: Cnet) -> CnetResult {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        // An exited child stays a zombie until waited for.
        let state = std::fs::read_to_string(format!("/proc/{}/stat", cnet.pid())).unwrap_or_default();
        if state.is_empty() || state.split(") ").nth(1).is_some_and(|s| s.starts_with('Z')) {
            return cnet.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("cnet still runs 20 s after its last target went away");
}

#[test]
fn a_removed_netns_ends_the_capture_with_a_word_and_the_summary() {
    let lab = Lab::new(2).unwrap();
    let dir = TempDir::new("csg-netns").unwrap();
    let file = dir.path().join("out.pcapng");
    let host = lab.host(0).clone();
    let cnet = Cnet::start(&["capture", "--netns", &host.netns, "-w", file.to_str().unwrap()]).unwrap();
    lab.ping(0, 1, 3).unwrap();
    cnet_tests::run(&["ip", "netns", "del", &host.netns]).unwrap();
    let res = ends_by_itself(cnet);
    assert!(res.status.success(), "{} {}", res.status, res.stderr);
    assert!(
        res.stderr.contains(&format!("cnet: {} (netns:{} eth0) went away", host.host_veth, host.netns)),
        "{}",
        res.stderr
    );
    assert!(res.summary("captured").is_some_and(|n| n >= 6), "{}", res.stderr);
    assert_eq!(echo_requests(&file), 3, "{}", res.stderr);
    // The veth went with the namespace; the rest of the lab is still there
    // for its own cleanup.
    assert!(!Path::new("/sys/class/net").join(&host.host_veth).exists());
    assert!(Path::new("/sys/class/net").join(&lab.bridge).exists());
}

#[test]
fn a_deleted_interface_ends_the_capture_with_a_word_and_the_summary() {
    let lab = Lab::new(2).unwrap();
    let dir = TempDir::new("csg-iface").unwrap();
    let file = dir.path().join("out.pcapng");
    let veth = lab.host(0).host_veth.clone();
    let cnet = Cnet::start(&["capture", "-i", &veth, "--attach", "clsact", "-w", file.to_str().unwrap()]).unwrap();
    lab.ping(0, 1, 3).unwrap();
    cnet_tests::run(&["ip", "link", "del", &veth]).unwrap();
    let res = ends_by_itself(cnet);
    assert!(res.status.success(), "{} {}", res.status, res.stderr);
    assert!(res.stderr.contains(&format!("cnet: {veth} went away")), "{}", res.stderr);
    assert!(res.summary("captured").is_some_and(|n| n >= 6), "{}", res.stderr);
    assert_eq!(echo_requests(&file), 3, "{}", res.stderr);
}

#[test]
fn one_target_gone_the_others_are_still_captured() {
    let lab = Lab::new(3).unwrap();
    let dir = TempDir::new("csg-some").unwrap();
    let file = dir.path().join("out.pcapng");
    let (h0, h1) = (lab.host(0).host_veth.clone(), lab.host(1).host_veth.clone());
    let mut cnet = Cnet::start(&["capture", "-i", &h0, "-i", &h1, "-w", file.to_str().unwrap()]).unwrap();
    lab.ping(0, 2, 2).unwrap();
    cnet_tests::run(&["ip", "link", "del", &h0]).unwrap();
    cnet.wait_for_stderr(&format!("cnet: {h0} went away"), Duration::from_secs(10)).unwrap();
    lab.ping(1, 2, 3).unwrap();
    let res = cnet.stop().unwrap();
    assert!(res.status.success(), "{}", res.stderr);
    assert!(!res.stderr.contains("no interface left"), "{}", res.stderr);
    assert_eq!(echo_requests(&file), 5, "{}", res.stderr);
}
