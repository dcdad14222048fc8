//! `cnet latency -r FILE`: the latency report of a capture file. The file
//! cnet latency wrote gives the report the live capture printed (same
//! packets, same timestamps); a pcapng from `cnet capture` and a pcap from
//! tcpdump give reports too; options that do not apply are not offered.
//! Run as root.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use cnet_tests::traffic::{tcp_exchange, udp_burst};
use cnet_tests::{Cnet, Lab, TempDir, cnet_output};

fn lab(n: usize, tag: &str) -> Lab {
    let prefix = format!("crd{:05x}{tag}", std::process::id() & 0xfffff);
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}n{i}")).collect();
    Lab::build(&prefix, &names).unwrap()
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// `cnet latency -r FILE --json`: the report, and stderr.
fn offline_report(file: &Path) -> (serde_json::Value, String) {
    let res = cnet_output(&["latency", "-r", file.to_str().unwrap(), "--json"]).unwrap();
    assert!(res.status.success(), "cnet latency -r {}: {}", file.display(), res.stderr);
    (json(&res.stdout), res.stderr)
}

/// The flow rows of a report with this metric label.
fn flows<'a>(r: &'a serde_json::Value, metric: &str) -> Vec<&'a serde_json::Value> {
    r["flows"].as_array().unwrap().iter().filter(|f| f["metric"] == metric).collect()
}

/// Some traffic with every kind of latency: a TCP exchange, pings, UDP.
fn traffic(lab: &Lab, port: u16) {
    tcp_exchange(lab, 0, 1, port, vec![1; 2000], vec![2; 500]).unwrap();
    lab.ping(0, 1, 3).unwrap();
    udp_burst(lab, 1, 0, port + 1, "latoff", 4).unwrap();
    thread::sleep(Duration::from_millis(200));
}

#[test]
fn the_file_of_a_live_capture_gives_the_same_report() {
    let lab = lab(2, "l");
    let dir = TempDir::new("crd-latoff").unwrap();
    let file = dir.path().join("live.pcapng");
    let (a, b) = (lab.host(0).clone(), lab.host(1).clone());
    let cnet =
        Cnet::start(&["latency", "--netns", &a.netns, "--netns", &b.netns, "--json", "-w", file.to_str().unwrap()])
            .unwrap();
    traffic(&lab, 7301);
    let res = cnet.stop().unwrap();
    assert!(res.status.success(), "{}", res.stderr);
    let live = json(&res.stdout);
    let (offline, stderr) = offline_report(&file);
    assert_eq!(flows(&live, "tcp_syn_to_synack").len(), 1, "{live}");
    assert!(live["hop_matching"]["matched"].as_u64().unwrap() > 0, "{live}");
    // Every row, count and figure: the timestamps are the file's.
    assert_eq!(offline, live, "stderr of cnet latency -r: {stderr}");

    // The table too.
    let table = cnet_output(&["latency", "-r", file.to_str().unwrap()]).unwrap();
    assert!(table.status.success());
    assert!(
        table.stdout.contains(&format!("netns:{} eth0 out → netns:{} eth0 in", a.netns, b.netns)),
        "{}",
        table.stdout
    );

    // A filter selects the packets the report covers, as for `cnet read`.
    let res = cnet_output(&["latency", "-r", file.to_str().unwrap(), "--json", "icmp"]).unwrap();
    assert!(res.status.success(), "{}", res.stderr);
    let icmp = json(&res.stdout);
    assert!(icmp["flows"].as_array().unwrap().is_empty(), "{icmp}");
    assert!(icmp["hops"].as_array().unwrap().iter().all(|h| h["protocol"] == "icmp"), "{icmp}");
}

/// Starts tcpdump on `iface` writing `file`; returns once it listens.
fn tcpdump(iface: &str, file: &Path) -> std::process::Child {
    let mut child = Command::new("tcpdump")
        .args(["-i", iface, "-U", "--immediate-mode", "-w"])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tcpdump");
    let mut line = String::new();
    BufReader::new(child.stderr.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert!(line.contains("listening on"), "tcpdump: {line}");
    child
}

#[test]
fn files_from_cnet_capture_and_tcpdump_give_reports() {
    let lab = lab(2, "t");
    let dir = TempDir::new("crd-latofft").unwrap();
    let (a, b) = (lab.host(0).clone(), lab.host(1).clone());
    let pcapng = dir.path().join("capture.pcapng");
    let pcap = dir.path().join("tcpdump.pcap");
    let cnet =
        Cnet::start(&["capture", "--netns", &a.netns, "--netns", &b.netns, "-w", pcapng.to_str().unwrap()]).unwrap();
    let mut td = tcpdump(&a.host_veth, &pcap);
    traffic(&lab, 7311);
    assert!(cnet.stop().unwrap().status.success());
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(td.id() as i32, libc::SIGINT) };
    assert!(td.wait().unwrap().success());

    // cnet capture's file: two interfaces with directions, so flows and hops.
    let (r, _) = offline_report(&pcapng);
    let client = format!("netns:{}", a.netns);
    let syn = flows(&r, "tcp_syn_to_synack");
    assert!(syn.iter().any(|f| f["client"] == client.as_str() && f["stats"]["count"] == 1), "{r}");
    assert!(r["hop_matching"]["matched"].as_u64().unwrap() > 0, "{r}");

    // tcpdump's pcap of one veth: no directions, no labels; the flows, seen
    // at the interface, and a warning that hops need directions.
    let (r, stderr) = offline_report(&pcap);
    let syn = flows(&r, "tcp_syn_to_synack");
    assert_eq!(syn.len(), 1, "{r}");
    assert_eq!(syn[0]["stats"]["count"], 1);
    assert_eq!(syn[0]["server"], format!("{}", b.ip).as_str(), "{r}");
    assert!(!flows(&r, "tcp_request_response").is_empty(), "{r}");
    assert!(stderr.contains("carry no direction"), "{stderr}");
}

#[test]
fn latency_offers_only_the_options_it_takes() {
    let help = cnet_output(&["latency", "--help"]).unwrap().stdout;
    for flag in ["-C <", "-G <", "-W <"] {
        assert!(!help.contains(flag), "cnet latency --help offers {flag}:\n{help}");
    }
    assert!(help.contains("-r <FILE>") && help.contains("-w <FILE>"), "{help}");
    let capture_help = cnet_output(&["capture", "--help"]).unwrap().stdout;
    assert!(["-C <", "-G <", "-W <"].iter().all(|f| capture_help.contains(f)), "{capture_help}");

    let res = cnet_output(&["latency", "-r", "/nonexistent", "-C", "1"]).unwrap();
    assert!(!res.status.success());
    assert!(res.stderr.contains("unexpected argument '-C'"), "{}", res.stderr);
    // With -r, capture options are refused by name, not ignored.
    let res = cnet_output(&["latency", "-r", "/nonexistent", "-i", "lo"]).unwrap();
    assert!(res.stderr.contains("-r reads a file instead of capturing: drop -i"), "{}", res.stderr);
    let res = cnet_output(&["capture", "-r", "/nonexistent", "-G", "5"]).unwrap();
    assert!(res.stderr.contains("drop -G"), "{}", res.stderr);
}
