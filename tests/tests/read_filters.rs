//! Reading a capture file with a filter expression, as `tcpdump -r FILE
//! EXPRESSION` does: `cnet read`, `cnet capture -r` and `cnet read --json`
//! select exactly the packets tcpdump selects (libpcap compiles the
//! expression for each interface's link type, raw IP included); bad
//! expressions fail with tcpdump's words; `--container` naming nothing in the
//! file says which owners it has; `--json` timestamps keep every digit.
//! Run as root (the lab capture attaches to veths).

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use cnet::model::{ARPHRD_ETHER, Direction, Endpoint, Iface, IfaceStats, Packet};
use cnet::pipeline::sinks::Sink;
use cnet::pipeline::sinks::pcapng::PcapngSink;
use cnet_tests::traffic::{tcp_exchange, udp_burst};
use cnet_tests::{Cnet, Lab, TempDir, cnet_output};

/// A lab with this test's name prefix (`crd`), unique per process and call.
fn lab(n: usize, tag: &str) -> Lab {
    let prefix = format!("crd{:05x}{tag}", std::process::id() & 0xfffff);
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}n{i}")).collect();
    Lab::build(&prefix, &names).unwrap()
}

/// Timestamps (`SECONDS.NANOSECONDS`) of the packets `tcpdump -r FILE EXPR`
/// selects, in file order.
fn tcpdump_times(file: &Path, expr: &str) -> Vec<String> {
    let out = Command::new("tcpdump")
        .args(["-nn", "-tt", "--time-stamp-precision=nano", "-r"])
        .arg(file)
        .arg(expr)
        .output()
        .expect("run tcpdump");
    assert!(out.status.success(), "tcpdump -r {} {expr}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split(' ').next().unwrap().to_string()).collect()
}

/// Timestamps of the packets `cnet read --json FILE EXPR` prints, from its
/// `ts_sec` and `ts_nsec` (checked against `ts_ns`).
fn cnet_json_times(file: &Path, expr: &str) -> Vec<String> {
    let res = cnet_output(&["read", "--json", file.to_str().unwrap(), expr]).unwrap();
    assert!(res.status.success(), "cnet read --json {expr}: {}", res.stderr);
    res.stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let (sec, nsec) = (v["ts_sec"].as_u64().unwrap(), v["ts_nsec"].as_u64().unwrap());
            assert!(nsec < 1_000_000_000);
            assert_eq!(v["ts_ns"].as_u64().unwrap(), sec * 1_000_000_000 + nsec, "{l}");
            format!("{sec}.{nsec:09}")
        })
        .collect()
}

/// Lines printed by `cnet ARGS…` (which must succeed).
fn cnet_lines(args: &[&str]) -> usize {
    let res = cnet_output(args).unwrap();
    assert!(res.status.success(), "cnet {args:?}: {}", res.stderr);
    res.stdout.lines().count()
}

/// Checks one expression on one file: tcpdump's selection, and cnet's
/// through `read --json` (the same packets, by timestamp), `read` and
/// `capture -r` (as many lines).
fn assert_selects_like_tcpdump(file: &Path, expr: &str, want: Option<&[String]>) -> usize {
    let json = cnet_json_times(file, expr);
    match want {
        Some(w) => assert_eq!(json, w, "cnet read --json {expr} on {}", file.display()),
        None => assert_eq!(json, tcpdump_times(file, expr), "cnet read --json {expr} vs tcpdump -r"),
    }
    let f = file.to_str().unwrap();
    assert_eq!(cnet_lines(&["read", f, expr]), json.len(), "cnet read FILE {expr}");
    assert_eq!(cnet_lines(&["capture", "-r", f, expr]), json.len(), "cnet capture -r FILE {expr}");
    json.len()
}

#[test]
fn filters_select_what_tcpdump_selects_in_a_lab_capture() {
    let lab = lab(2, "f");
    let dir = TempDir::new("crd-readf").unwrap();
    let file = dir.path().join("lab.pcapng");
    let (a, b) = (lab.host(0).clone(), lab.host(1).clone());
    let cnet =
        Cnet::start(&["capture", "--netns", &a.netns, "--netns", &b.netns, "-w", file.to_str().unwrap()]).unwrap();
    lab.ping(0, 1, 3).unwrap();
    udp_burst(&lab, 0, 1, 5301, "readf", 5).unwrap();
    tcp_exchange(&lab, 1, 0, 5302, vec![7; 3000], b"done".to_vec()).unwrap();
    thread::sleep(Duration::from_millis(200));
    let res = cnet.stop().unwrap();
    assert!(res.status.success(), "{}", res.stderr);

    let all = tcpdump_times(&file, "");
    let (ip_a, ip_b) = (a.ip.to_string(), b.ip.to_string());
    let exprs = [
        "icmp".to_string(),
        "udp".into(),
        "tcp".into(),
        "udp port 5301".into(),
        "tcp[tcpflags] & tcp-syn != 0".into(),
        format!("src host {ip_a} and not icmp"),
        format!("dst {ip_b} and (udp or icmp)"),
        "ip6".into(),
        "arp".into(),
        "greater 1000".into(),
        "not (icmp or udp or tcp)".into(),
        "port 9".into(),
    ];
    let mut counts = Vec::new();
    for e in &exprs {
        counts.push(assert_selects_like_tcpdump(&file, e, None));
    }
    // Both directions of 3 echoes, each seen on both veths; 5 datagrams on
    // both veths; the TCP connection; nothing on port 9.
    assert_eq!(counts[0], 12, "icmp");
    assert_eq!(counts[3], 10, "udp port 5301");
    assert!(counts[2] >= 16 && counts[4] == 4, "tcp {} / SYNs {}", counts[2], counts[4]);
    assert_eq!(counts[11], 0);
    assert!(counts[0] + counts[1] + counts[2] < all.len());
    // The filter composes with the other selections (after them, as with
    // tcpdump's -c): direction and count.
    let f = file.to_str().unwrap();
    let outs = cnet_lines(&["read", f, "--direction", "out", "icmp"]);
    assert_eq!(outs, 6, "echo requests and replies leaving their senders");
    assert_eq!(cnet_lines(&["capture", "-r", f, "-c", "2", "udp"]), 2);
    // -F reads the expression from a file, as tcpdump does.
    let ff = dir.path().join("filter");
    std::fs::write(&ff, "udp # the burst\n and port 5301\n").unwrap();
    assert_eq!(cnet_lines(&["read", f, "-F", ff.to_str().unwrap()]), 10);
    assert_eq!(cnet_lines(&["capture", "-r", f, "-F", ff.to_str().unwrap()]), 10);
}

/// An IPv4 packet from 10.9.0.1 to 10.9.0.2: an ICMP echo, a UDP datagram
/// to port 53 or a TCP SYN to port 80, by `kind`.
fn ip_packet(kind: u8) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv4([10, 9, 0, 1], [10, 9, 0, 2], 64);
    let mut out = Vec::new();
    match kind {
        0 => b.icmpv4_echo_request(1, 1).write(&mut out, b"ping").unwrap(),
        1 => b.udp(4000, 53).write(&mut out, b"dns?").unwrap(),
        _ => b.tcp(4001, 80, 1000, 64240).syn().write(&mut out, &[]).unwrap(),
    }
    out
}

fn ethernet(ip: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    f.extend_from_slice(ip);
    f
}

/// Writes a pcapng with cnet's writer: one interface per (name, ARPHRD
/// type), and for each packet (interface index, bytes) at 1 µs steps.
fn write_pcapng(path: &Path, interfaces: &[(&str, u16)], packets: &[(usize, Vec<u8>)]) -> Vec<String> {
    let mut sink = PcapngSink::new(Vec::new(), "Linux test").unwrap();
    let ifaces: Vec<Iface> = interfaces
        .iter()
        .enumerate()
        .map(|(i, (name, arphrd))| Iface::new(i as u32, Endpoint::host_interface(i as u32 + 1, name, *arphrd), 65535))
        .collect();
    for i in &ifaces {
        sink.add_interface(i).unwrap();
    }
    let base = 1_700_000_000_123_456_789u64;
    let mut times = Vec::new();
    for (n, (i, data)) in packets.iter().enumerate() {
        let ts_ns = base + n as u64 * 1000;
        times.push(format!("{}.{:09}", ts_ns / 1_000_000_000, ts_ns % 1_000_000_000));
        let p = Packet { ts_ns, dir: Direction::In, orig_len: data.len() as u32, data };
        sink.packet(&ifaces[*i], &p).unwrap();
    }
    sink.finish(&vec![IfaceStats::default(); ifaces.len()]).unwrap();
    std::fs::write(path, sink.get_ref()).unwrap();
    times
}

/// ARPHRD_NONE: a tun or wireguard interface, whose packets cnet writes as
/// LINKTYPE_RAW.
const ARPHRD_NONE: u16 = 65534;

#[test]
fn filters_compile_for_each_link_type_of_a_mixed_file() {
    let dir = TempDir::new("crd-readraw").unwrap();
    // The same three packets on an Ethernet interface and on a raw IP one.
    let kinds = [0u8, 1, 2, 1, 0];
    let mut mixed = Vec::new();
    for &k in &kinds {
        mixed.push((0, ethernet(&ip_packet(k))));
        mixed.push((1, ip_packet(k)));
    }
    let mixed_file = dir.path().join("mixed.pcapng");
    let mixed_times = write_pcapng(&mixed_file, &[("eth0", ARPHRD_ETHER), ("tun0", ARPHRD_NONE)], &mixed);
    // tcpdump reads one link type per file: the raw IP interface alone.
    let raw_file = dir.path().join("raw.pcapng");
    let raw: Vec<(usize, Vec<u8>)> = kinds.iter().map(|&k| (0, ip_packet(k))).collect();
    write_pcapng(&raw_file, &[("tun0", ARPHRD_NONE)], &raw);

    for (expr, want_kinds) in [
        ("icmp", vec![0u8]),
        ("udp port 53", vec![1]),
        ("tcp[tcpflags] & tcp-syn != 0", vec![2]),
        ("src 10.9.0.1 and not icmp", vec![1, 2]),
        ("ip[9] == 17 or ip[9] == 6", vec![1, 2]),
    ] {
        // On raw IP alone: tcpdump's selection.
        let n = assert_selects_like_tcpdump(&raw_file, expr, None);
        let want_n = kinds.iter().filter(|k| want_kinds.contains(k)).count();
        assert_eq!(n, want_n, "{expr} on raw IP");
        // On the mixed file, each packet on both interfaces: libpcap reads
        // the IP header at offset 14 on eth0 and 0 on tun0.
        let want: Vec<String> = mixed
            .iter()
            .zip(&mixed_times)
            .enumerate()
            .filter(|(n, _)| want_kinds.contains(&kinds[n / 2]))
            .map(|(_, (_, t))| t.clone())
            .collect();
        assert_eq!(want.len(), 2 * want_n);
        assert_selects_like_tcpdump(&mixed_file, expr, Some(&want));
    }

    // An Ethernet-only primitive on the raw IP interface: libpcap's error,
    // as tcpdump prints it, naming the link type.
    let m = mixed_file.to_str().unwrap();
    let res = cnet_output(&["read", m, "ether src 02:00:00:00:00:01"]).unwrap();
    assert!(!res.status.success());
    let tcpdump =
        Command::new("tcpdump").args(["-r"]).arg(&raw_file).arg("ether src 02:00:00:00:00:01").output().unwrap();
    assert!(!tcpdump.status.success());
    let tcpdump_msg = String::from_utf8_lossy(&tcpdump.stderr);
    let libpcap_words = "ethernet addresses supported only on";
    assert!(tcpdump_msg.contains(libpcap_words), "{tcpdump_msg}");
    assert!(res.stderr.contains(libpcap_words) && res.stderr.contains("link type 101"), "{}", res.stderr);
}

#[test]
fn bad_expressions_fail_with_tcpdumps_words() {
    let dir = TempDir::new("crd-readbad").unwrap();
    let file = dir.path().join("one.pcapng");
    write_pcapng(&file, &[("eth0", ARPHRD_ETHER)], &[(0, ethernet(&ip_packet(0)))]);
    let empty = dir.path().join("empty.pcapng");
    write_pcapng(&empty, &[("eth0", ARPHRD_ETHER)], &[]);
    for f in [&file, &empty] {
        for expr in ["tcp port", "host", "udp and bogus"] {
            let tcpdump = Command::new("tcpdump").arg("-r").arg(f).arg(expr).output().unwrap();
            assert!(!tcpdump.status.success(), "tcpdump accepted {expr}");
            let tcpdump_msg = String::from_utf8_lossy(&tcpdump.stderr);
            let msg = tcpdump_msg.lines().last().unwrap().trim_start_matches("tcpdump: ");
            for args in [vec!["read", f.to_str().unwrap(), expr], vec!["capture", "-r", f.to_str().unwrap(), expr]] {
                let res = cnet_output(&args).unwrap();
                assert!(!res.status.success(), "{args:?} succeeded: {}", res.stdout);
                assert!(res.stdout.is_empty(), "{args:?} printed {}", res.stdout);
                assert_eq!(res.stderr.trim(), format!("cnet: error: {msg}"), "{args:?}");
            }
        }
    }
}

#[test]
fn container_naming_nothing_in_the_file_says_which_owners_it_has() {
    let lab = lab(2, "c");
    let dir = TempDir::new("crd-readown").unwrap();
    let file = dir.path().join("lab.pcapng");
    let (a, b) = (lab.host(0).clone(), lab.host(1).clone());
    let cnet =
        Cnet::start(&["capture", "--netns", &a.netns, "--netns", &b.netns, "-w", file.to_str().unwrap()]).unwrap();
    lab.ping(0, 1, 2).unwrap();
    thread::sleep(Duration::from_millis(200));
    assert!(cnet.stop().unwrap().status.success());
    let f = file.to_str().unwrap();

    for args in [vec!["read", "--container", "nope", f], vec!["capture", "-r", f, "--container", "nope"]] {
        let res = cnet_output(&args).unwrap();
        assert_eq!(res.status.code(), Some(1), "{args:?}: like grep, no match is status 1");
        assert!(res.stdout.is_empty());
        let want = format!(
            "cnet: error: no packet of {f} belongs to nope: its owners are netns:{}, netns:{}",
            a.netns, b.netns
        );
        assert!(res.stderr.starts_with(&want), "{args:?}:\n{}\nwant {want}", res.stderr);
    }
    // A name in the file selects its packets; a filter matching nothing is
    // not an error (tcpdump -r exits 0 too).
    assert_eq!(cnet_lines(&["read", "--container", &a.netns, f, "icmp"]), 4);
    let res = cnet_output(&["read", "--container", &a.netns, f, "udp port 9"]).unwrap();
    assert!(res.status.success() && res.stdout.is_empty() && res.stderr.is_empty(), "{res:?}");
}
