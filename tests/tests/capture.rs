//! End-to-end tests of `cnet capture` on a real kernel: real namespaces,
//! veths, a bridge, eBPF programs on TCX and clsact hooks. Run as root.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use cnet::codec::capture_file::{CaptureFile, FilePacket, read_file};
use cnet::model::Direction;
use cnet_tests::{Cnet, Lab, TempDir, cnet_output, hooked_programs, traffic, tshark_fields};
use etherparse::{SlicedPacket, TransportSlice};

fn read(path: &Path) -> CaptureFile {
    match read_file(path) {
        Ok(f) => f,
        Err((e, _)) => panic!("reading {}: {e}", path.display()),
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// UDP payload of an Ethernet/IPv4 frame, if it is one.
fn udp_payload(data: &[u8]) -> Option<&[u8]> {
    let p = SlicedPacket::from_ethernet(data).ok()?;
    match p.transport? {
        TransportSlice::Udp(u) => Some(u.payload()),
        _ => None,
    }
}

fn icmp_type(data: &[u8]) -> Option<u8> {
    let p = SlicedPacket::from_ethernet(data).ok()?;
    match p.transport? {
        TransportSlice::Icmpv4(i) => Some(i.type_u8()),
        _ => None,
    }
}

/// (src port, dst port, seq, payload) of a TCP segment.
fn tcp_segment(data: &[u8]) -> Option<(u16, u16, u32, Vec<u8>)> {
    let p = SlicedPacket::from_ethernet(data).ok()?;
    match p.transport? {
        TransportSlice::Tcp(t) => {
            Some((t.source_port(), t.destination_port(), t.sequence_number(), t.payload().to_vec()))
        }
        _ => None,
    }
}

/// The interface (host veth name) each packet was captured on.
fn iface_name<'a>(f: &'a CaptureFile, p: &FilePacket) -> &'a str {
    &f.interfaces[p.interface as usize].name
}

#[test]
fn deterministic_traffic_appears_once_per_hook_with_labels() {
    let lab = Lab::new(2).unwrap();
    let dir = TempDir::new("det").unwrap();
    let file = dir.path().join("det.pcapng");
    let (a, b) = (lab.host(0).clone(), lab.host(1).clone());
    let t0 = now_ns();
    let cnet =
        Cnet::start(&["capture", "--netns", &a.netns, "--netns", &b.netns, "-w", file.to_str().unwrap()]).unwrap();

    let sent = traffic::udp_burst(&lab, 0, 1, 7001, "det", 20).unwrap();
    let data = traffic::pattern(200_000, 7);
    let (got, back) = traffic::tcp_exchange(&lab, 0, 1, 7002, data.clone(), b"thanks".to_vec()).unwrap();
    assert_eq!(got, data);
    assert_eq!(back, b"thanks");
    lab.ping(0, 1, 3).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let res = cnet.stop().unwrap();
    let t1 = now_ns();
    assert!(res.status.success(), "{}", res.stderr);

    let f = read(&file);
    assert_eq!(f.interfaces.len(), 2);
    assert_eq!(f.interfaces[0].name, a.host_veth);
    assert_eq!(f.interfaces[1].name, b.host_veth);
    for (iface, host) in f.interfaces.iter().zip([&a, &b]) {
        assert!(iface.description.starts_with(&format!("netns:{} eth0", host.netns)), "{}", iface.description);
        assert!(iface.description.contains(&host.ip.to_string()), "{}", iface.description);
        assert!(iface.description.contains("netns inode "), "{}", iface.description);
    }

    // Every UDP datagram: once leaving A (A's veth, out), once entering B.
    for payload in &sent {
        let copies: Vec<&FilePacket> =
            f.packets.iter().filter(|p| udp_payload(&p.data) == Some(payload.as_slice())).collect();
        assert_eq!(copies.len(), 2, "datagram {:?}", String::from_utf8_lossy(payload));
        assert_eq!(iface_name(&f, copies[0]), a.host_veth);
        assert_eq!(copies[0].direction, Some(Direction::Out));
        assert_eq!(copies[0].labels["ns"], a.netns);
        assert_eq!(copies[0].labels["dir"], "out");
        assert_eq!(copies[0].labels["iface"], "eth0");
        assert_eq!(iface_name(&f, copies[1]), b.host_veth);
        assert_eq!(copies[1].direction, Some(Direction::In));
        assert_eq!(copies[1].labels["ns"], b.netns);
        assert_eq!(copies[1].labels["dir"], "in");
        assert!(copies[0].ts_ns <= copies[1].ts_ns);
        assert_eq!(copies[0].orig_len as usize, copies[0].data.len());
    }
    // Datagrams were sent one at a time: their order on each hook is the send order.
    for host in [&a, &b] {
        let seen: Vec<&[u8]> = f
            .packets
            .iter()
            .filter(|p| iface_name(&f, p) == host.host_veth)
            .filter_map(|p| udp_payload(&p.data))
            .filter(|pl| pl.starts_with(b"cnet-test det"))
            .collect();
        let want: Vec<&[u8]> = sent.iter().map(|s| s.as_slice()).collect();
        assert_eq!(seen, want);
    }

    // ICMP: 3 requests A->B and 3 replies, each seen on both veths.
    for (ty, first, first_dir) in [(8u8, &a, Direction::Out), (0u8, &b, Direction::Out)] {
        let copies: Vec<&FilePacket> = f.packets.iter().filter(|p| icmp_type(&p.data) == Some(ty)).collect();
        assert_eq!(copies.len(), 6, "ICMP type {ty}");
        let on_first = copies.iter().filter(|p| iface_name(&f, p) == first.host_veth).count();
        assert_eq!(on_first, 3);
        assert!(copies.iter().filter(|p| iface_name(&f, p) == first.host_veth).all(|p| p.direction == Some(first_dir)));
    }

    // TCP: the client's bytes, reassembled from each veth, equal what was sent.
    for host in [&a, &b] {
        let mut segs: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        let mut isn = None;
        for p in f.packets.iter().filter(|p| iface_name(&f, p) == host.host_veth) {
            if let Some((_, 7002, seq, payload)) = tcp_segment(&p.data) {
                if payload.is_empty() {
                    isn.get_or_insert(seq);
                } else {
                    segs.insert(seq, payload);
                }
            }
        }
        let base = *segs.keys().next().unwrap();
        let mut stream = Vec::new();
        for (seq, payload) in segs {
            let off = seq.wrapping_sub(base) as usize;
            if off + payload.len() > stream.len() {
                stream.truncate(off.min(stream.len()));
                stream.extend_from_slice(&payload[stream.len() - off..]);
            }
        }
        assert_eq!(stream.len(), data.len(), "on {}", host.host_veth);
        assert!(stream == data, "TCP payload differs on {}", host.host_veth);
    }

    // Timestamps inside the test's window, in order per interface and direction.
    for p in &f.packets {
        assert!(p.ts_ns >= t0 && p.ts_ns <= t1, "timestamp {} outside [{t0}, {t1}]", p.ts_ns);
    }

    // tshark sees the same labels, and nothing malformed.
    let rows = tshark_fields(
        &file,
        None,
        &["frame.interface_name", "frame.interface_description", "frame.packet_flags_direction", "frame.comment"],
    )
    .unwrap();
    assert_eq!(rows.len(), f.packets.len());
    for (row, p) in rows.iter().zip(&f.packets) {
        let iface = &f.interfaces[p.interface as usize];
        assert_eq!(row[0], iface.name);
        assert_eq!(row[1], iface.description);
        let want_dir = match p.direction {
            Some(Direction::In) => "0x00000001",
            Some(Direction::Out) => "0x00000002",
            None => "",
        };
        assert_eq!(row[2], want_dir);
        assert_eq!(Some(row[3].as_str()), p.comment.as_deref());
    }
    let malformed =
        tshark_fields(&file, Some("_ws.malformed || _ws.expert.severity == error"), &["frame.number"]).unwrap();
    assert!(malformed.is_empty(), "tshark reports malformed frames: {malformed:?}");

    // Summary lines like tcpdump's, consistent with the file and the ISBs.
    assert_eq!(res.summary("captured"), Some(f.packets.len() as u64));
    assert_eq!(res.summary("dropped by kernel"), Some(0));
    assert_eq!(f.stats.len(), 2);
    let delivered: u64 = f.stats.iter().map(|s| s.usrdeliv.unwrap()).sum();
    assert_eq!(delivered, f.packets.len() as u64);
}

#[test]
fn gso_super_packets_keep_their_length_and_snaplen_truncates_exactly() {
    let lab = Lab::new(2).unwrap();
    let dir = TempDir::new("gso").unwrap();
    for snaplen in [65535u32, 96] {
        let file = dir.path().join(format!("gso-{snaplen}.pcapng"));
        let cnet = Cnet::start(&[
            "capture",
            "-i",
            &lab.host(0).host_veth,
            "-s",
            &snaplen.to_string(),
            "-w",
            file.to_str().unwrap(),
        ])
        .unwrap();
        let data = traffic::pattern(4 << 20, 11);
        let (got, _) = traffic::tcp_exchange(&lab, 0, 1, 7003, data.clone(), Vec::new()).unwrap();
        assert!(got == data);
        let res = cnet.stop().unwrap();
        assert!(res.status.success(), "{}", res.stderr);
        let f = read(&file);
        let big = f.packets.iter().filter(|p| p.orig_len > 1514).count();
        assert!(big > 0, "no GSO super-packet seen (snaplen {snaplen})");
        for p in &f.packets {
            assert_eq!(p.data.len() as u32, p.orig_len.min(snaplen), "snaplen {snaplen}");
        }
        // The IP total length of each copy agrees with the original length.
        for p in f.packets.iter().filter(|p| p.orig_len > 1514) {
            let ip_total = u16::from_be_bytes([p.data[16], p.data[17]]) as u32;
            assert_eq!(ip_total + 14, p.orig_len);
        }
        let rows = tshark_fields(&file, None, &["frame.len", "frame.cap_len"]).unwrap();
        assert_eq!(rows.len(), f.packets.len());
        for (row, p) in rows.iter().zip(&f.packets) {
            assert_eq!(row[0], p.orig_len.to_string());
            assert_eq!(row[1], p.data.len().to_string());
        }
    }
}

#[test]
fn traffic_is_unaltered_while_capturing() {
    let lab = Lab::new(2).unwrap();
    let data = traffic::pattern(8 << 20, 3);
    let (without, _) = traffic::tcp_exchange(&lab, 0, 1, 7004, data.clone(), Vec::new()).unwrap();
    for mode in ["tcx", "clsact"] {
        let cnet =
            Cnet::start(&["capture", "--netns", &lab.host(0).netns, "--attach", mode, "-s", "96", "-w", "/dev/null"])
                .unwrap();
        let (with, _) = traffic::tcp_exchange(&lab, 0, 1, 7005, data.clone(), Vec::new()).unwrap();
        let res = cnet.stop().unwrap();
        assert!(res.status.success(), "{}", res.stderr);
        assert!(with == data && without == data, "payload altered with {mode}");
        assert!(res.summary("captured").unwrap() > 100);
    }
}

#[test]
fn sigkill_leaves_no_tcx_program_attached() {
    let lab = Lab::new(1).unwrap();
    let veth = lab.host(0).host_veth.clone();
    let mut cnet = Cnet::start(&["capture", "-i", &veth, "-w", "/dev/null"]).unwrap();
    let hooks = hooked_programs(&veth).unwrap();
    assert_eq!(hooks, ["tcx:cnet_ingress", "tcx:cnet_egress"]);
    cnet.signal(libc::SIGKILL);
    let _ = cnet.wait();
    assert!(hooked_programs(&veth).unwrap().is_empty());
}

#[test]
fn sigkill_on_clsact_is_cleaned_at_next_start() {
    let lab = Lab::new(1).unwrap();
    let veth = lab.host(0).host_veth.clone();
    let mut cnet = Cnet::start(&["capture", "-i", &veth, "--attach", "clsact", "-w", "/dev/null"]).unwrap();
    assert_eq!(hooked_programs(&veth).unwrap(), ["clsact:cnet_ingress", "clsact:cnet_egress"]);
    cnet.signal(libc::SIGKILL);
    let _ = cnet.wait();
    // cls_bpf filters outlive their process…
    assert_eq!(hooked_programs(&veth).unwrap(), ["clsact:cnet_ingress", "clsact:cnet_egress"]);
    // …until the next cnet on that interface removes them.
    let next = Cnet::start(&["capture", "-i", &veth, "--attach", "clsact", "-w", "/dev/null"]).unwrap();
    assert_eq!(hooked_programs(&veth).unwrap(), ["clsact:cnet_ingress", "clsact:cnet_egress"]);
    let res = next.stop().unwrap();
    assert!(res.stderr.contains("removed a stale cnet filter"), "{}", res.stderr);
    assert!(hooked_programs(&veth).unwrap().is_empty());
    let qdisc = cnet_tests::run(&["tc", "qdisc", "show", "dev", &veth]).unwrap();
    assert!(!String::from_utf8_lossy(&qdisc.stdout).contains("clsact"), "clsact qdisc left behind");
}

#[test]
fn normal_exit_detaches_on_both_paths() {
    let lab = Lab::new(1).unwrap();
    let veth = lab.host(0).host_veth.clone();
    for mode in ["tcx", "clsact"] {
        let cnet = Cnet::start(&["capture", "-i", &veth, "--attach", mode, "-w", "/dev/null"]).unwrap();
        assert_eq!(hooked_programs(&veth).unwrap().len(), 2);
        cnet.signal(libc::SIGTERM);
        let mut cnet = cnet;
        let res = cnet.wait().unwrap();
        assert!(res.status.success(), "{}", res.stderr);
        assert!(hooked_programs(&veth).unwrap().is_empty(), "{mode} left programs attached");
    }
}

#[test]
fn pid_and_netns_path_targets_resolve_to_the_host_veth() {
    let lab = Lab::new(2).unwrap();
    let mut sleeper =
        std::process::Command::new("ip").args(["netns", "exec", &lab.host(0).netns, "sleep", "60"]).spawn().unwrap();
    // `ip netns exec` execs sleep: the PID is the sleeper's once it is in the netns.
    let pid = sleeper.id().to_string();
    let path = cnet_tests::netns_path(&lab.host(1).netns);
    std::thread::sleep(Duration::from_millis(300));
    let dir = TempDir::new("pid").unwrap();
    let file = dir.path().join("pid.pcapng");
    let cnet =
        Cnet::start(&["capture", "--pid", &pid, "--netns", path.to_str().unwrap(), "-w", file.to_str().unwrap()])
            .unwrap();
    let sent = traffic::udp_burst(&lab, 0, 1, 7006, "pid", 3).unwrap();
    let res = cnet.stop().unwrap();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(res.status.success(), "{}", res.stderr);
    let f = read(&file);
    let by_name = |n: &str| f.interfaces.iter().find(|i| i.name == n).unwrap_or_else(|| panic!("no interface {n}"));
    let pid_iface = by_name(&lab.host(0).host_veth);
    assert!(pid_iface.description.starts_with(&format!("pid:{pid} eth0")), "{}", pid_iface.description);
    let path_iface = by_name(&lab.host(1).host_veth);
    assert!(
        path_iface.description.starts_with(&format!("netns:{} eth0", path.display())),
        "{}",
        path_iface.description
    );
    let first = f.packets.iter().find(|p| udp_payload(&p.data) == Some(sent[0].as_slice())).unwrap();
    assert_eq!(first.labels["pid"], pid);
    assert_eq!(first.labels["dir"], "out");
}

/// Interface indexes beyond the hooks' ifindex table (2^16 entries) are
/// found through its hash map: a host that has created many interfaces
/// (container churn) still gets every packet, counted per interface.
#[test]
fn interfaces_with_large_ifindexes_are_captured() {
    let lab = Lab::new_high_ifindex(2).unwrap();
    let veth = &lab.host(0).host_veth;
    let ifindex: u32 =
        std::fs::read_to_string(format!("/sys/class/net/{veth}/ifindex")).unwrap().trim().parse().unwrap();
    assert!(ifindex >= 1 << 16, "{veth} has ifindex {ifindex}");
    let dir = TempDir::new("bigidx").unwrap();
    let file = dir.path().join("bigidx.pcapng");
    let cnet = Cnet::start(&["capture", "-i", veth, "-w", file.to_str().unwrap(), "udp"]).unwrap();
    let sent = traffic::udp_burst(&lab, 0, 1, 7007, "bigidx", 5).unwrap();
    let res = cnet.stop().unwrap();
    assert!(res.status.success(), "{}", res.stderr);
    assert_eq!(res.summary("captured"), Some(5), "{}", res.stderr);
    let f = read(&file);
    let got: Vec<&[u8]> = f.packets.iter().filter_map(|p| udp_payload(&p.data)).collect();
    let want: Vec<&[u8]> = sent.iter().map(|s| s.as_slice()).collect();
    assert_eq!(got, want);
    let seen = tshark_fields(&file, Some("udp"), &["frame.interface_name"]).unwrap();
    assert_eq!(seen.len(), 5);
    assert!(seen.iter().all(|row| row[0] == *veth), "{seen:?}");
}

#[test]
fn printer_labels_each_line_and_count_stops() {
    let lab = Lab::new(2).unwrap();
    // `udp`: a new namespace's IPv6 chatter must not use up the count.
    let cnet = Cnet::start(&["capture", "--netns", &lab.host(0).netns, "-c", "4", "udp"]).unwrap();
    traffic::udp_burst(&lab, 0, 1, 7007, "print", 4).unwrap();
    let mut cnet = cnet;
    let res = cnet.wait().unwrap();
    assert!(res.status.success(), "{}", res.stderr);
    let lines: Vec<&str> = res.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", res.stdout);
    let out_line = lines.iter().find(|l| l.contains(" out ") && l.contains("UDP")).expect("an outbound UDP line");
    let want = format!("netns:{} eth0 out IP {}.", lab.host(0).netns, lab.host(0).ip);
    assert!(out_line.contains(&want), "{out_line}");
    let len = traffic::udp_payload("print", 0).len();
    assert!(out_line.ends_with(&format!("UDP, length {len}")), "{out_line}");
    assert_eq!(res.summary("captured"), Some(4));
}

#[test]
fn pcapng_to_stdout_is_readable() {
    let lab = Lab::new(2).unwrap();
    let mut cnet = Cnet::start(&["capture", "--netns", &lab.host(0).netns, "-w", "-", "-c", "4"]).unwrap();
    let mut stdout = cnet.take_stdout().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut v).unwrap();
        v
    });
    traffic::udp_burst(&lab, 0, 1, 7008, "stdout", 2).unwrap();
    let res = cnet.wait().unwrap();
    assert!(res.status.success(), "{}", res.stderr);
    let bytes = reader.join().unwrap();
    let dir = TempDir::new("stdout").unwrap();
    let file = dir.path().join("out.pcapng");
    std::fs::write(&file, bytes).unwrap();
    assert_eq!(read(&file).packets.len(), 4);
    assert_eq!(tshark_fields(&file, None, &["frame.number"]).unwrap().len(), 4);
}

#[test]
fn bad_input_fails_clearly_and_attaches_nothing() {
    let lab = Lab::new(1).unwrap();
    let veth = lab.host(0).host_veth.clone();

    let r = cnet_output(&["capture", "-i", "cnet-no-such-if"]).unwrap();
    assert!(!r.status.success());
    assert!(r.stderr.contains("no interface named \"cnet-no-such-if\""), "{}", r.stderr);

    let r = cnet_output(&["capture", "--netns", "cnet-no-such-ns"]).unwrap();
    assert!(!r.status.success());
    assert!(r.stderr.contains("no network namespace named \"cnet-no-such-ns\""), "{}", r.stderr);

    let r = cnet_output(&["capture", "--pid", "4000000000"]).unwrap();
    assert!(!r.status.success());
    assert!(r.stderr.contains("no process with PID 4000000000"), "{}", r.stderr);

    let r = cnet_output(&["capture"]).unwrap();
    assert!(!r.status.success());
    assert!(r.stderr.contains("nothing to capture"), "{}", r.stderr);

    let r = cnet_output(&["capture", "-i", &veth, "-w", "/nonexistent-dir/x.pcapng"]).unwrap();
    assert!(!r.status.success());
    assert!(r.stderr.contains("cannot write /nonexistent-dir/x.pcapng"), "{}", r.stderr);
    assert!(hooked_programs(&veth).unwrap().is_empty());

    for (args, says) in [
        (vec!["-s", "abc"], "invalid value 'abc'"),
        (vec!["-B", "0"], "invalid value '0'"),
        (vec!["-B", "99999999"], "invalid value '99999999'"),
        (vec!["-c", "0"], "invalid value '0'"),
        (vec!["--duration=-1"], "--duration must be a positive number"),
        (vec!["--duration", "nan"], "--duration must be a positive number"),
        (vec!["--attach", "xdp"], "invalid value 'xdp'"),
        (vec!["--mode", "999"], "is not an octal file mode"),
        (vec!["-Z", "cnet-no-such-user"], "no user named"),
        (vec!["--no-such-flag"], "unexpected argument"),
    ] {
        let mut a = vec!["capture", "-i", veth.as_str()];
        a.extend(args.iter().copied());
        let r = cnet_output(&a).unwrap();
        assert!(!r.status.success(), "{args:?}");
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
    }
    assert!(hooked_programs(&veth).unwrap().is_empty());
}
