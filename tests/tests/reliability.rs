//! Faults injected for real: SIGKILL mid-capture, ring-buffer overload, a
//! full disk, symlinks at the output path, privilege drops and missing
//! privileges, two captures on one interface.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::Duration;

use cnet::codec::capture_file::read_file;
use cnet_tests::{
    Cnet, Lab, TempDir, cnet_bin, cnet_output, hooked_programs, run, traffic, tshark_fields, tshark_reads_cleanly,
};

#[test]
fn sigkill_mid_capture_leaves_a_file_readable_up_to_the_last_flush() {
    let lab = Lab::new(2).unwrap();
    let dir = TempDir::new("kill").unwrap();
    let file = dir.path().join("killed.pcapng");
    let mut cnet = Cnet::start(&["capture", "--netns", &lab.host(0).netns, "-w", file.to_str().unwrap()]).unwrap();
    let sent = traffic::udp_burst(&lab, 0, 1, 7101, "kill", 50).unwrap();
    // cnet flushes every 250 ms; wait until everything sent is on disk
    // (bounded generously for a loaded CI machine), then kill it.
    let t0 = std::time::Instant::now();
    let all_on_disk = || {
        read_file(&file)
            .unwrap_or_else(|(_, partial)| partial)
            .packets
            .iter()
            .filter(|q| sent.iter().any(|p| q.data.ends_with(p)))
            .count()
            == sent.len()
    };
    while !all_on_disk() {
        assert!(t0.elapsed() < Duration::from_secs(10), "packets not flushed to the file within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("all packets were on disk {:?} after sending", t0.elapsed());
    cnet.signal(libc::SIGKILL);
    let _ = cnet.wait();
    let n = tshark_reads_cleanly(&file);
    let f = read_file(&file).unwrap_or_else(|(e, _)| panic!("{e}"));
    assert_eq!(f.packets.len(), n);
    for p in &sent {
        assert!(f.packets.iter().any(|q| q.data.ends_with(p)), "datagram missing after SIGKILL");
    }
    // The next capture on the same target works.
    let again = dir.path().join("again.pcapng");
    let cnet = Cnet::start(&["capture", "--netns", &lab.host(0).netns, "-w", again.to_str().unwrap()]).unwrap();
    let sent = traffic::udp_burst(&lab, 0, 1, 7102, "again", 3).unwrap();
    let res = cnet.stop().unwrap();
    assert!(res.status.success(), "{}", res.stderr);
    // The datagrams, and whatever else the namespace sent (ARP, IPv6 ND).
    let f = read_file(&again).unwrap_or_else(|(e, _)| panic!("{e}"));
    assert_eq!(res.summary("captured"), Some(f.packets.len() as u64));
    for p in &sent {
        assert_eq!(f.packets.iter().filter(|q| q.data.ends_with(p)).count(), 1);
    }
}

#[test]
fn ring_overload_drops_equal_the_reported_drop_counts() {
    let lab = Lab::new(2).unwrap();
    let dir = TempDir::new("overload").unwrap();
    let file = dir.path().join("overload.pcapng");
    // A one-page ring holds a couple of dozen records: a burst overflows it.
    let cnet = Cnet::start(&[
        "capture",
        "--netns",
        &lab.host(0).netns,
        "--netns",
        &lab.host(1).netns,
        "-B",
        "4",
        "-w",
        file.to_str().unwrap(),
    ])
    .unwrap();
    let dst = std::net::SocketAddr::new(lab.host(1).ip.into(), 7103);
    let rx = lab.in_ns(1, move || std::net::UdpSocket::bind(dst)).unwrap();
    let tx = lab.in_ns(0, || std::net::UdpSocket::bind("0.0.0.0:0")).unwrap();
    for i in 0..20_000u32 {
        let _ = tx.send_to(&i.to_be_bytes(), dst);
    }
    drop(rx);
    std::thread::sleep(Duration::from_millis(300));
    let res = cnet.stop().unwrap();
    assert!(res.status.success(), "{}", res.stderr);
    let f = read_file(&file).unwrap_or_else(|(e, _)| panic!("{e}"));
    let mut total_dropped = 0;
    for (i, iface) in f.interfaces.iter().enumerate() {
        let isb = f.stats.iter().find(|s| s.interface == i as u32).expect("an ISB per interface");
        let in_file = f.packets.iter().filter(|p| p.interface == i as u32).count() as u64;
        let seen = isb.ifrecv.unwrap();
        let dropped = isb.ifdrop.unwrap();
        assert_eq!(seen - in_file, dropped, "{}: seen {seen}, in file {in_file}, dropped {dropped}", iface.name);
        assert_eq!(isb.usrdeliv, Some(in_file));
        // The same figure in the per-interface summary line.
        let line = res.stderr.lines().find(|l| l.starts_with(&format!("cnet: {} ", iface.name))).unwrap();
        assert!(line.ends_with(&format!("{seen} seen, {in_file} captured, {dropped} dropped")), "{line}");
        total_dropped += dropped;
    }
    assert!(total_dropped > 0, "the burst did not overflow the ring");
    assert_eq!(res.summary("dropped by kernel"), Some(total_dropped));
    assert_eq!(res.summary("captured"), Some(f.packets.len() as u64));
}

/// A small tmpfs mounted for one test, unmounted on drop.
struct SmallFs(TempDir);

impl SmallFs {
    fn new(size: &str) -> SmallFs {
        let dir = TempDir::new("tmpfs").unwrap();
        run(&["mount", "-t", "tmpfs", "-o", &format!("size={size}"), "cnet-test", dir.path().to_str().unwrap()])
            .unwrap();
        SmallFs(dir)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn full_disk_stops_with_a_clear_error_and_a_valid_file() {
    let lab = Lab::new(2).unwrap();
    let fs = SmallFs::new("2m");
    let file = fs.0.path().join("full.pcapng");
    let veth = lab.host(0).host_veth.clone();
    let mut cnet = Cnet::start(&["capture", "-i", &veth, "-w", file.to_str().unwrap()]).unwrap();
    let _ = traffic::tcp_exchange(&lab, 0, 1, 7104, traffic::pattern(16 << 20, 5), Vec::new());
    let res = cnet.wait().unwrap();
    assert!(!res.status.success(), "cnet should fail when the disk is full");
    assert!(res.stderr.contains(&format!("cannot write {}", file.display())), "{}", res.stderr);
    assert!(res.stderr.contains("No space left on device"), "{}", res.stderr);
    assert!(hooked_programs(&veth).unwrap().is_empty());
    assert!(tshark_reads_cleanly(&file) > 0);
    assert!(read_file(&file).is_ok());
}

#[test]
fn output_is_private_and_never_written_through_a_symlink() {
    let lab = Lab::new(1).unwrap();
    let veth = lab.host(0).host_veth.clone();
    let dir = TempDir::new("mode").unwrap();

    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let link = dir.path().join("link.pcapng");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let r = cnet_output(&["capture", "-i", &veth, "-w", link.to_str().unwrap(), "-c", "1"]).unwrap();
    assert!(!r.status.success());
    assert!(r.stderr.contains("it is a symbolic link"), "{}", r.stderr);
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(hooked_programs(&veth).unwrap().is_empty());

    for (args, want) in [(vec![], 0o600), (vec!["--mode", "640"], 0o640)] {
        let file = dir.path().join(format!("m{want:o}.pcapng"));
        let mut a = vec!["capture", "-i", veth.as_str(), "-w", file.to_str().unwrap(), "--duration", "0.3"];
        a.extend(args.iter().copied());
        let r = cnet_output(&a).unwrap();
        assert!(r.status.success(), "{}", r.stderr);
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, want);
    }
}

#[test]
fn relinquish_privileges_after_attaching() {
    let lab = Lab::new(2).unwrap();
    let dir = TempDir::new("dropz").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for mode in ["tcx", "clsact"] {
        let file = dir.path().join(format!("z-{mode}.pcapng"));
        let cnet = Cnet::start(&[
            "capture",
            "--netns",
            &lab.host(0).netns,
            "--attach",
            mode,
            "-Z",
            "nobody",
            "-w",
            file.to_str().unwrap(),
        ])
        .unwrap();
        let status = std::fs::read_to_string(format!("/proc/{}/status", cnet.pid())).unwrap();
        let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(uid_line.split_whitespace().skip(1).all(|u| u == "65534"), "{uid_line}");
        traffic::udp_burst(&lab, 0, 1, 7105, "dropz", 5).unwrap();
        let res = cnet.stop().unwrap();
        assert!(res.status.success(), "{mode}: {}", res.stderr);
        assert_eq!(std::fs::metadata(&file).unwrap().uid(), 65534);
        assert!(res.summary("captured").unwrap() >= 5);
        assert!(hooked_programs(&lab.host(0).host_veth).unwrap().is_empty(), "{mode} left hooks after -Z");
        let markers = std::fs::read_dir("/run/cnet/clsact").map(|d| d.count()).unwrap_or(0);
        let ifindex = std::fs::read_to_string(format!("/sys/class/net/{}/ifindex", lab.host(0).host_veth)).unwrap();
        assert!(
            std::fs::read_dir("/run/cnet/clsact").map_or(true, |d| d
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().ends_with(&format!("-{}", ifindex.trim())))),
            "{mode}: clsact marker left behind ({markers} markers)"
        );
    }
}

#[test]
fn without_privileges_the_error_names_the_capabilities() {
    let lab = Lab::new(1).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"])
        .arg(cnet_bin())
        .args(["capture", "--netns", &lab.host(0).netns])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for cap in ["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"] {
        assert!(err.contains(cap), "{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn two_captures_on_one_interface_both_get_every_packet() {
    let lab = Lab::new(2).unwrap();
    let veth = lab.host(0).host_veth.clone();
    let dir = TempDir::new("two").unwrap();
    for mode in ["tcx", "clsact"] {
        let fa = dir.path().join(format!("a-{mode}.pcapng"));
        let fb = dir.path().join(format!("b-{mode}.pcapng"));
        let a = Cnet::start(&["capture", "-i", &veth, "--attach", mode, "-w", fa.to_str().unwrap()]).unwrap();
        let b = Cnet::start(&["capture", "-i", &veth, "--attach", mode, "-w", fb.to_str().unwrap()]).unwrap();
        assert_eq!(hooked_programs(&veth).unwrap().len(), 4, "{mode}");
        let first = traffic::udp_burst(&lab, 0, 1, 7106, "both", 10).unwrap();
        let ra = a.stop().unwrap();
        assert!(ra.status.success(), "{}", ra.stderr);
        // Stopping one leaves the other attached and capturing.
        assert_eq!(hooked_programs(&veth).unwrap().len(), 2, "{mode}");
        let second = traffic::udp_burst(&lab, 0, 1, 7107, "after", 10).unwrap();
        let rb = b.stop().unwrap();
        assert!(rb.status.success(), "{}", rb.stderr);
        assert!(hooked_programs(&veth).unwrap().is_empty());
        let qdisc = run(&["tc", "qdisc", "show", "dev", &veth]).unwrap();
        assert!(!String::from_utf8_lossy(&qdisc.stdout).contains("clsact"), "clsact left behind ({mode})");
        let count = |f: &std::path::Path, set: &[Vec<u8>]| {
            let file = read_file(f).unwrap_or_else(|(e, _)| panic!("{e}"));
            set.iter().filter(|p| file.packets.iter().any(|q| q.data.ends_with(p))).count()
        };
        assert_eq!(count(&fa, &first), 10, "{mode}: first capture");
        assert_eq!(count(&fb, &first), 10, "{mode}: second capture");
        assert_eq!(count(&fb, &second), 10, "{mode}: second capture after the first stopped");
        assert_eq!(tshark_fields(&fb, None, &["frame.number"]).unwrap().len(), read_file(&fb).unwrap().packets.len());
    }
}

/// Sends raw Ethernet frames out of host `i`'s eth0 through an AF_PACKET
/// socket opened inside its namespace.
fn send_raw_frames(lab: &Lab, i: usize, frames: Vec<Vec<u8>>) {
    lab.in_ns(i, move || {
        // SAFETY: plain socket calls on a socket we own; sockaddr_ll is
        // fully initialised.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            assert!(fd >= 0, "AF_PACKET socket: {}", std::io::Error::last_os_error());
            let ifindex = libc::if_nametoindex(c"eth0".as_ptr());
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_ifindex = ifindex as i32;
            addr.sll_halen = 6;
            for f in &frames {
                let n = libc::sendto(
                    fd,
                    f.as_ptr().cast(),
                    f.len(),
                    0,
                    (&addr as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                );
                assert_eq!(n, f.len() as isize, "sendto: {}", std::io::Error::last_os_error());
            }
            libc::close(fd);
        }
    })
}

fn ether(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[test]
fn malformed_frames_are_captured_and_printed_without_panic() {
    let lab = Lab::new(2).unwrap();
    let ipv4 = |ihl_ver: u8, total: u16, proto: u8, rest: &[u8]| {
        let mut h = vec![
            ihl_ver,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            1,
            0,
            0,
            64,
            proto,
            0,
            0,
            10,
            213,
            0,
            10,
            10,
            213,
            0,
            11,
        ];
        h.extend_from_slice(rest);
        h
    };
    let frames = vec![
        ether(0x0800, &[0x45]),                      // IPv4 header cut after one byte
        ether(0x0800, &ipv4(0x4f, 60, 6, &[0; 4])),  // IHL 15 (60 bytes) with 24 present
        ether(0x0800, &ipv4(0x43, 20, 17, &[0; 8])), // IHL 3: below the minimum
        ether(0x0800, &ipv4(0x45, 9000, 17, &[0, 53, 0, 53, 0, 200, 0, 0])), // total length beyond the frame
        ether(0x0800, &ipv4(0x45, 30, 6, &[0x1f, 0x90, 0, 80, 0, 0])), // TCP header cut short
        ether(0x0800, &ipv4(0x46, 48, 6, &[0x44, 0x08, 0, 0, 0x1f, 0x90, 0, 80])), // IP options, TCP truncated
        ether(0x86dd, &[0x60, 0, 0, 0, 0, 40, 0, 64]), // IPv6 header cut short
        ether(0x86dd, &{
            let mut v = vec![0x60, 0, 0, 0, 0, 16, 0, 64]; // hop-by-hop claiming more than there is
            v.extend_from_slice(&[0; 32]);
            v.extend_from_slice(&[17, 200, 0, 0, 0, 0, 0, 0]);
            v
        }),
        ether(0x0806, &[0, 1, 8, 0, 6]), // ARP cut short
        ether(0x88b5, &[1, 2, 3]),       // unknown ethertype
        ether(0x0800, &[]),              // nothing after Ethernet
    ];
    let count = frames.len();
    let dir = TempDir::new("malformed").unwrap();
    let file = dir.path().join("m.pcapng");
    let printer = Cnet::start(&["capture", "--netns", &lab.host(0).netns]).unwrap();
    let writer = Cnet::start(&["capture", "--netns", &lab.host(0).netns, "-w", file.to_str().unwrap()]).unwrap();
    send_raw_frames(&lab, 0, frames);
    std::thread::sleep(Duration::from_millis(300));
    let printed = printer.stop().unwrap();
    let written = writer.stop().unwrap();
    for r in [&printed, &written] {
        assert!(r.status.success(), "{}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
    let out_lines: Vec<&str> = printed.stdout.lines().filter(|l| l.contains(" out ")).collect();
    eprintln!("{}", out_lines.join("\n"));
    assert!(out_lines.len() >= count, "{}", printed.stdout);
    let f = read_file(&file).unwrap_or_else(|(e, _)| panic!("{e}"));
    assert!(f.packets.len() >= count);
    assert!(tshark_reads_cleanly(&file) >= count);
}
