//! Capture filters (`cnet capture … EXPRESSION`) against tcpdump: the same
//! expressions, on the same veths, over the same lab traffic, at the same
//! time; cnet must keep exactly the packets tcpdump keeps. Run as root.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cnet::codec::capture_file::read_file;
use cnet::model::Direction;
use cnet_filter::testing as filter;
use cnet_filter::{Filter, set_program};
use cnet_tests::{Cnet, Lab, TempDir, cnet_output, hooked_programs, traffic};

/// Bytes kept per packet by both tools: enough for every header the
/// expressions look at, small enough to keep files small.
const SNAPLEN: &str = "256";

/// A running tcpdump writing pcap (nanosecond timestamps) to a file.
struct Tcpdump {
    child: Option<Child>,
}

impl Tcpdump {
    /// Starts tcpdump on `iface` and waits for its "listening on" line.
    fn start(iface: &str, expr: &str, out: &Path) -> Tcpdump {
        let file = File::create(out).unwrap();
        // `-w -` into a file we opened: tcpdump drops privileges and may be
        // confined by AppArmor, neither of which matters for its stdout.
        let mut child = Command::new("tcpdump")
            .args([
                "-n",
                "-p",
                "-U",
                "--immediate-mode",
                "-i",
                iface,
                "-s",
                SNAPLEN,
                "--time-stamp-precision",
                "nano",
                "-w",
                "-",
            ])
            .arg(expr)
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning tcpdump (install it with `cargo xtask setup --test-deps`)");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let t = Tcpdump { child: Some(child) };
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(l) if l.contains("listening on") => return t,
                Ok(l) => seen.push(l),
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!("tcpdump {expr:?} exited: {}", seen.join("\n")),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            assert!(Instant::now() < deadline, "tcpdump {expr:?} did not start: {}", seen.join("\n"));
        }
    }

    /// SIGINT, then waits for it to exit.
    fn stop(mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child by PID.
            unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
            let _ = c.wait();
        }
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child by PID.
            unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
            let _ = c.wait();
        }
    }
}

/// One captured frame: (timestamp, wire length, captured bytes).
type Frame = (u64, u32, Vec<u8>);

fn read_pcap(path: &Path) -> Vec<Frame> {
    let f = File::open(path).unwrap();
    let mut r = pcap_file::pcap::PcapReader::new(BufReader::new(f)).unwrap();
    let mut v = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        v.push((p.timestamp().as_nanos() as u64, p.orig_len(), p.data().to_vec()));
    }
    v
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn mac_of(lab: &Lab, i: usize) -> [u8; 6] {
    let out = lab.exec(i, &["cat", "/sys/class/net/eth0/address"]).unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    let mut mac = [0u8; 6];
    for (m, part) in mac.iter_mut().zip(s.trim().split(':')) {
        *m = u8::from_str_radix(part, 16).unwrap();
    }
    mac
}

fn udp_send(lab: &Lab, from: usize, to: IpAddr, port: u16, payload: Vec<u8>) {
    let to_addr = SocketAddr::new(to, port);
    let to_ns = lab.hosts.iter().position(|h| IpAddr::from(h.ip) == to || IpAddr::from(h.ip6) == to).unwrap();
    let rx = lab.in_ns(to_ns, move || UdpSocket::bind(to_addr)).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let any: SocketAddr = if to.is_ipv4() { "0.0.0.0:0".parse().unwrap() } else { "[::]:0".parse().unwrap() };
    let tx = lab.in_ns(from, move || UdpSocket::bind(any)).unwrap();
    tx.send_to(&payload, to_addr).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = rx.recv(&mut buf).expect("UDP datagram not received");
    assert_eq!(&buf[..n], payload.as_slice());
}

fn tcp_exchange(lab: &Lab, from: usize, to: IpAddr, port: u16, len: usize) {
    use std::io::{Read, Write};
    let to_addr = SocketAddr::new(to, port);
    let to_ns = lab.hosts.iter().position(|h| IpAddr::from(h.ip) == to || IpAddr::from(h.ip6) == to).unwrap();
    let listener = lab.in_ns(to_ns, move || TcpListener::bind(to_addr)).unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        s.write_all(b"bye").unwrap();
        got.len()
    });
    let mut c = lab.in_ns(from, move || TcpStream::connect_timeout(&to_addr, Duration::from_secs(5))).unwrap();
    c.write_all(&traffic::pattern(len, port as u64)).unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    assert_eq!(server.join().unwrap(), len);
}

/// Mixed traffic between three lab hosts: ARP/NDP, ICMP echo (v4, v6,
/// reduced TTL), UDP and TCP on several ports over IPv4 and IPv6, small and
/// large packets.
fn make_traffic(lab: &Lab) {
    let (a, b, c) = (lab.host(0).clone(), lab.host(1).clone(), lab.host(2).clone());
    lab.exec(0, &["ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "2", &b.ip.to_string()]).unwrap();
    lab.exec(0, &["ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "2", "-t", "30", &c.ip.to_string()]).unwrap();
    lab.exec(1, &["ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "2", "-s", "1200", &a.ip.to_string()]).unwrap();
    lab.exec(0, &["ping", "-6", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "2", &b.ip6.to_string()]).unwrap();
    lab.exec(2, &["ping", "-6", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "2", &a.ip6.to_string()]).unwrap();
    for (port, len) in [(53u16, 40usize), (1000, 10), (1500, 1400), (2500, 80), (5353, 30)] {
        udp_send(
            lab,
            0,
            b.ip.into(),
            port,
            format!("cnet{port}").into_bytes().into_iter().chain(std::iter::repeat_n(b'x', len)).collect(),
        );
        udp_send(lab, 1, a.ip6.into(), port, vec![b'y'; len]);
    }
    udp_send(lab, 1, c.ip.into(), 60, b"cnet b to c".to_vec());
    tcp_exchange(lab, 0, b.ip.into(), 80, 3000);
    tcp_exchange(lab, 1, a.ip.into(), 22, 100);
    tcp_exchange(lab, 0, c.ip.into(), 8080, 20_000);
    tcp_exchange(lab, 0, b.ip6.into(), 80, 500);
    tcp_exchange(lab, 2, a.ip6.into(), 443, 5000);
}

fn expressions(lab: &Lab, mac_a: [u8; 6]) -> Vec<String> {
    let (a, b, c) = (lab.host(0), lab.host(1), lab.host(2));
    let mac = mac_a.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":");
    vec![
        "tcp port 80".into(),
        "udp".into(),
        "icmp".into(),
        "icmp6".into(),
        "ip6".into(),
        "arp".into(),
        format!("host {}", b.ip),
        format!("host {} and not icmp", a.ip),
        format!("src host {} and dst host {}", a.ip, c.ip),
        "net 10.213.0.0/24".into(),
        format!("ip6 host {}", b.ip6),
        "ip6 net fd00:cb::/64 and tcp".into(),
        "udp portrange 1000-2000".into(),
        "portrange 50-100".into(),
        "tcp[tcpflags] & tcp-syn != 0".into(),
        "tcp[tcpflags] & (tcp-syn|tcp-fin) != 0 and not src port 80".into(),
        "tcp[13] & 2 != 0".into(),
        "ip[8] < 64".into(),
        "len <= 100".into(),
        "greater 1000".into(),
        "less 80".into(),
        "vlan".into(),
        format!("ether host {mac}"),
        "ether broadcast".into(),
        "not (tcp or udp)".into(),
        format!("host {} and (port 80 or port 53)", a.ip),
        "udp[8:4] = 0x636e6574".into(),
        "ip6 and udp dst port 5353".into(),
        "tcp and ip[2:2] > 500".into(),
        "icmp[icmptype] == icmp-echoreply".into(),
        "ip6[7] == 64 and not icmp6".into(),
        "tcp port 80 or icmp6 or arp".into(),
        "ip and (ip[6:2] & 0x1fff) = 0 and udp[4:2] > 100".into(),
        // TCP payload bytes: on a veth they lie in the packet's pages, not
        // in its linear data, so these take the translated filter's helper
        // path rather than its direct loads.
        "tcp and tcp[((tcp[12] & 0xf0) >> 2) + 100] & 1 = 1".into(),
        "tcp and tcp[((tcp[12] & 0xf0) >> 2) + 100] & 1 = 0".into(),
        // Not here: loads beyond the snap length. tcpdump's kernel filter
        // sees the whole packet, as cnet's does, but a live tcpdump rejected
        // some such packets and kept others in our lab (most likely libpcap
        // filtering the packets already in its ring once more in userspace,
        // on their first snaplen bytes only).
    ]
}

/// Per (interface, direction): the frames in capture order, within the
/// time window. For tcpdump's pcap, direction is read from the Ethernet
/// source: frames entering the host veth come from the container's MAC.
/// Order is compared per direction because the two tools tap a veth at
/// different points: tcpdump sees ingress before tc and egress after it, so
/// packets crossing in opposite directions at the same moment may interleave
/// differently.
type Split = BTreeMap<(String, &'static str), Vec<(u32, Vec<u8>)>>;

fn split_tcpdump(frames: &[Frame], iface: &str, container_mac: [u8; 6], window: (u64, u64), out: &mut Split) {
    for (ts, len, data) in frames {
        if *ts < window.0 || *ts > window.1 {
            continue;
        }
        // cnet's `-i` targets record the interface's own view: what the
        // container sends is ingress on its host veth.
        let dir = if data.len() >= 12 && data[6..12] == container_mac { Direction::In } else { Direction::Out };
        out.entry((iface.to_string(), dir.as_str())).or_default().push((*len, data.clone()));
    }
}

#[test]
fn filters_keep_exactly_what_tcpdump_keeps() {
    let lab = Lab::new(3).unwrap();
    let dir = TempDir::new("filter").unwrap();
    let (a, b) = (lab.host(0).clone(), lab.host(1).clone());
    let macs = [mac_of(&lab, 0), mac_of(&lab, 1)];
    let exprs = expressions(&lab, macs[0]);
    assert!(exprs.len() >= 25);

    // Every expression at once: one cnet on both veths, one tcpdump per veth.
    struct Run {
        expr: String,
        cnet: Option<Cnet>,
        cnet_file: PathBuf,
        dumps: Vec<(Tcpdump, PathBuf)>,
    }
    let mut runs = Vec::new();
    for (i, expr) in exprs.iter().enumerate() {
        let mut dumps = Vec::new();
        for h in [&a, &b] {
            let p = dir.path().join(format!("td{i}-{}.pcap", h.host_veth));
            dumps.push((Tcpdump::start(&h.host_veth, expr, &p), p));
        }
        let cnet_file = dir.path().join(format!("cnet{i}.pcapng"));
        let cnet = Cnet::start(&[
            "capture",
            "-i",
            &a.host_veth,
            "-i",
            &b.host_veth,
            "-s",
            SNAPLEN,
            "-B",
            "1024",
            "-w",
            cnet_file.to_str().unwrap(),
            expr,
        ])
        .unwrap_or_else(|e| panic!("cnet with {expr:?}: {e}"));
        runs.push(Run { expr: expr.clone(), cnet: Some(cnet), cnet_file, dumps });
    }
    std::thread::sleep(Duration::from_millis(300));
    let t0 = now_ns();
    make_traffic(&lab);
    std::thread::sleep(Duration::from_millis(300));
    let t1 = now_ns();
    // Leave tcpdump time to read its ring before it is interrupted.
    std::thread::sleep(Duration::from_millis(1000));

    let mut failures = Vec::new();
    let mut table = Vec::new();
    for run in &mut runs {
        let res = run.cnet.take().unwrap().stop().unwrap();
        assert!(res.status.success(), "{}: {}", run.expr, res.stderr);
        for (t, _) in std::mem::take(&mut run.dumps) {
            t.stop();
        }
        let f = read_file(&run.cnet_file).unwrap_or_else(|(e, _)| panic!("{}: {e}", run.expr));
        let mut got = Split::new();
        for p in &f.packets {
            if p.ts_ns < t0 || p.ts_ns > t1 {
                continue;
            }
            let iface = f.interfaces[p.interface as usize].name.clone();
            got.entry((iface, p.direction.unwrap().as_str())).or_default().push((p.orig_len, p.data.clone()));
        }
        let mut want = Split::new();
        for (i, h) in [&a, &b].into_iter().enumerate() {
            let p = dir.path().join(format!(
                "td{}-{}.pcap",
                exprs.iter().position(|e| *e == run.expr).unwrap(),
                h.host_veth
            ));
            split_tcpdump(&read_pcap(&p), &h.host_veth, macs[i], (t0, t1), &mut want);
        }
        let count = |s: &Split| s.values().map(Vec::len).sum::<usize>();
        table.push(format!("{:>5} {:>5}  {}", count(&want), count(&got), run.expr));
        if got != want {
            let mut why = String::new();
            let keys: std::collections::BTreeSet<_> = want.keys().chain(got.keys()).collect();
            for key in keys {
                let (w, g) = (want.get(key).map(Vec::len).unwrap_or(0), got.get(key).map(Vec::len).unwrap_or(0));
                why.push_str(&format!(" {}/{}: tcpdump {w} cnet {g};", key.0, key.1));
            }
            failures.push(format!("{:?}:{why}", run.expr));
        }
        // Summary lines: "received by filter" counts what passed the filter.
        let received = res.summary("received by filter").unwrap();
        let captured = res.summary("captured").unwrap();
        assert_eq!(received, captured, "{}: {}", run.expr, res.stderr);
    }
    eprintln!("tcpdump  cnet  expression (packets in the traffic window)\n{}", table.join("\n"));
    assert!(failures.is_empty(), "cnet and tcpdump disagree:\n{}", failures.join("\n"));
    // The table must exercise the filters: most expressions keep something,
    // and not everything.
    let nonempty = table.iter().filter(|l| !l.trim_start().starts_with("0 ")).count();
    assert!(nonempty >= exprs.len() - 3, "{}", table.join("\n"));
}

#[test]
fn invalid_expression_fails_like_tcpdump_and_attaches_nothing() {
    let lab = Lab::new(1).unwrap();
    let veth = lab.host(0).host_veth.clone();
    for expr in ["tcp port", "host 10.0.0.300", "frobnicate"] {
        let res = cnet_output(&["capture", "-i", &veth, expr]).unwrap();
        assert!(!res.status.success(), "{expr}: {}", res.stderr);
        let td = Command::new("tcpdump").args(["-d", expr]).output().unwrap();
        let td_err = String::from_utf8_lossy(&td.stderr);
        let td_msg = td_err.lines().find_map(|l| l.strip_prefix("tcpdump: ")).unwrap();
        assert_eq!(res.stderr.trim(), format!("cnet: error: {td_msg}"), "{expr}");
        assert!(hooked_programs(&veth).unwrap().is_empty());
    }
    let res = cnet_output(&["capture", "-i", &veth, "tcp port"]).unwrap();
    assert_eq!(res.stderr.trim(), "cnet: error: can't parse filter expression: syntax error");
    // -F and a command-line expression together are ambiguous.
    let dir = TempDir::new("filterfile").unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, "udp\n").unwrap();
    let res = cnet_output(&["capture", "-i", &veth, "-F", file.to_str().unwrap(), "tcp"]).unwrap();
    assert!(!res.status.success());
    assert!(res.stderr.contains("either as arguments or with -F"), "{}", res.stderr);
    assert!(hooked_programs(&veth).unwrap().is_empty());
}

#[test]
fn filter_is_recorded_in_the_file_and_counted() {
    filter_recorded_and_counted("tcx");
}

/// The same through clsact + cls_bpf, where the filter's direct packet
/// reads depend on cls_bpf presenting the packet from its Ethernet header
/// on ingress as TCX does.
#[test]
fn filter_works_through_clsact() {
    filter_recorded_and_counted("clsact");
}

fn filter_recorded_and_counted(attach: &str) {
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
    use pcap_file::pcapng::{Block, PcapNgReader};
    let lab = Lab::new(2).unwrap();
    let dir = TempDir::new("iffilter").unwrap();
    let out = dir.path().join("f.pcapng");
    let ffile = dir.path().join("expr");
    // -F: comments removed, lines joined, as tcpdump does.
    std::fs::write(&ffile, "udp  # datagrams only\nand dst port 7301\n").unwrap();
    let a = lab.host(0).clone();
    let cnet = Cnet::start(&[
        "capture",
        "--attach",
        attach,
        "--netns",
        &a.netns,
        "-F",
        ffile.to_str().unwrap(),
        "-w",
        out.to_str().unwrap(),
    ])
    .unwrap();
    traffic::udp_burst(&lab, 0, 1, 7301, "kept", 5).unwrap();
    traffic::udp_burst(&lab, 0, 1, 7302, "dropped", 7).unwrap();
    lab.ping(0, 1, 2).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let res = cnet.stop().unwrap();
    assert!(res.status.success(), "{}", res.stderr);
    assert!(res.stderr.contains("filter \"udp and dst port 7301\""), "{}", res.stderr);
    assert_eq!(res.summary("captured"), Some(5), "{}", res.stderr);
    assert_eq!(res.summary("received by filter"), Some(5), "{}", res.stderr);
    // Seen counts every packet on the hooks, filtered or not.
    let seen: u64 = res
        .stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("cnet: {} (", a.host_veth))
                .and_then(|r| r.split(": ").nth(1)?.split(' ').next()?.parse().ok())
        })
        .unwrap();
    assert!(seen >= 5 + 7 + 4, "{}", res.stderr);

    let mut r = PcapNgReader::new(File::open(&out).unwrap()).unwrap();
    let mut filters = Vec::new();
    while let Some(block) = r.next_block() {
        if let (Block::InterfaceDescription(idb), _) = block.unwrap() {
            for o in &idb.options {
                if let InterfaceDescriptionOption::IfFilter(v) = o {
                    filters.push(v.to_vec());
                }
            }
        }
    }
    assert_eq!(filters, vec![b"\0udp and dst port 7301".to_vec()]);
    let f = read_file(&out).unwrap_or_else(|(e, _)| panic!("{e}"));
    assert_eq!(f.packets.len(), 5);
    assert_eq!(f.stats[0].filter_accept, Some(5));
    assert!(f.stats[0].ifrecv.unwrap() >= 16);
}

/// The translated programs, run by the kernel (BPF_PROG_TEST_RUN) on
/// crafted and truncated frames, decide like libpcap's own interpreter.
#[test]
fn kernel_translation_agrees_with_libpcap_on_edge_cases() {
    let cont = filter::load_constant_program("cnet_test_cont", 7).unwrap();
    let progs = prog_array();
    set_program(std::os::fd::AsFd::as_fd(&progs), 0, std::os::fd::AsFd::as_fd(&cont)).unwrap();
    let mut frames: Vec<Vec<u8>> = Vec::new();
    // A TCP SYN over IPv4 with IP options (IHL 6), then truncations of it.
    let mut syn = vec![0u8; 14 + 24 + 20];
    syn[12] = 0x08;
    syn[14] = 0x46;
    syn[16..18].copy_from_slice(&((24 + 20) as u16).to_be_bytes());
    syn[22] = 63;
    syn[23] = 6;
    syn[26..30].copy_from_slice(&[10, 0, 0, 1]);
    syn[30..34].copy_from_slice(&[10, 0, 0, 2]);
    syn[38..40].copy_from_slice(&1234u16.to_be_bytes());
    syn[40..42].copy_from_slice(&80u16.to_be_bytes());
    syn[38 + 12] = 0x50;
    syn[38 + 13] = 0x02;
    // (The kernel's test runner refuses IPv4 frames shorter than an IP header.)
    for cut in [34, 38, 40, 45, 51, 52, syn.len()] {
        frames.push(syn[..cut].to_vec());
    }
    // IPv6 UDP to port 53, and a fragment with nonzero offset.
    let mut v6 = vec![0u8; 14 + 40 + 8 + 4];
    v6[12..14].copy_from_slice(&[0x86, 0xdd]);
    v6[14] = 0x60;
    v6[20] = 17;
    v6[21] = 64;
    v6[54 + 2..54 + 4].copy_from_slice(&53u16.to_be_bytes());
    frames.push(v6);
    let mut frag = syn.clone();
    frag[20] = 0x00;
    frag[21] = 0x10;
    frames.push(frag);
    frames.push(vec![0xff; 60]);
    for expr in [
        "tcp port 80",
        "tcp[tcpflags] & tcp-syn != 0",
        "tcp[13] & 2 != 0",
        "ip[8] < 64",
        "udp port 53",
        "ip6 and udp dst port 53",
        "len <= 40",
        "greater 50",
        "ip[6:2] & 0x1fff = 0",
        "tcp[0:2] / tcp[2:2] = 15",
        "tcp[0:2] % (tcp[13] - 2) = 0",
        "ether[0] & 1 != 0",
        "not (tcp or udp)",
        "ip[0] & 0xf > 5",
    ] {
        let f = Filter::compile(expr, 65535).unwrap();
        let fd = f.load("cnet_test_filt", std::os::fd::AsFd::as_fd(&progs), 0).unwrap();
        for frame in &frames {
            let want = f.matches(frame, frame.len() as u32);
            let ret = filter::test_run(std::os::fd::AsFd::as_fd(&fd), frame).unwrap();
            assert_eq!(ret == 7, want, "{expr:?} on {frame:02x?}: kernel returned {ret}");
        }
    }
}

/// A one-slot BPF_MAP_TYPE_PROG_ARRAY.
fn prog_array() -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    #[repr(C)]
    struct MapCreate {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
    }
    let attr = MapCreate { map_type: 3, key_size: 4, value_size: 4, max_entries: 1 };
    // SAFETY: BPF_MAP_CREATE with a valid attribute struct.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, 0, &attr as *const MapCreate, std::mem::size_of::<MapCreate>()) };
    assert!(fd >= 0, "{}", std::io::Error::last_os_error());
    // SAFETY: a new descriptor we own.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }
}
