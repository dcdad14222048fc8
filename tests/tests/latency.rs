//! End-to-end tests of `cnet latency` on a real kernel: lab namespaces on a
//! bridge, servers that answer after a known delay D, and the figures cnet
//! reports checked against D (bounds of ±10 % + 1 ms, robust to a busy
//! machine), against its own table, and against the pcapng it writes (read
//! back with tshark). Run as root.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use cnet::latency::flows::Metric;
use cnet::latency::report::{FlowRow, Report, figures};
use cnet_tests::{Cnet, CnetResult, Lab, TempDir, cnet_output, tshark_fields};

const REQUESTS: usize = 50;

fn ms(v: u64) -> u64 {
    v * 1_000_000
}

/// p50 within ±10 % of D + 1 ms.
fn assert_near_delay(what: &str, p50_ns: u64, delay_ms: u64) {
    let d = ms(delay_ms) as f64;
    let tol = d * 0.10 + ms(1) as f64;
    assert!((p50_ns as f64 - d).abs() <= tol, "{what}: p50 {p50_ns} ns is not within {tol} ns of {d} ns");
}

fn report_of(res: &CnetResult) -> Report {
    assert!(res.status.success(), "cnet latency failed: {}", res.stderr);
    serde_json::from_str(&res.stdout).unwrap_or_else(|e| panic!("--json output does not parse ({e}): {}", res.stdout))
}

fn rows(r: &Report, metric: Metric, port: u16) -> Vec<&FlowRow> {
    r.flows.iter().filter(|f| f.metric == metric && f.server_port == port).collect()
}

fn row<'a>(r: &'a Report, metric: Metric, port: u16, seen_at: &str) -> &'a FlowRow {
    rows(r, metric, port)
        .into_iter()
        .find(|f| f.seen_at == seen_at)
        .unwrap_or_else(|| panic!("no {metric:?} row for port {port} seen at {seen_at}: {:#?}", r.flows))
}

/// Every JSON row appears in the table (printed on stderr with --json)
/// with the same figures.
fn assert_table_matches_json(report: &Report, stderr: &str) {
    let lines: Vec<String> = stderr.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    for f in &report.flows {
        let flow = format!("{} {} → {}:{}", f.protocol, f.client, f.server, f.server_port);
        let mut want = vec![f.seen_at.clone()];
        want.extend(figures(&f.stats));
        want.push(f.retransmissions.to_string());
        want.push(f.resets.to_string());
        let want = format!("{} {}", flow, want.join(" "));
        assert!(
            lines.iter().any(|l| l.starts_with(f.metric.label()) && l.contains(&want)),
            "table has no line with {:?} {want:?}:\n{stderr}",
            f.metric.label()
        );
    }
    for h in &report.hops {
        let want = format!("{} → {} {} {}", h.from, h.to, h.protocol, figures(&h.stats).join(" "));
        assert!(lines.iter().any(|l| l.starts_with(&want)), "table has no hop line {want:?}:\n{stderr}");
    }
    let m = &report.hop_matching;
    let want = format!(
        "hop matching: {} copies matched, {} packets seen on one hook only, {} ambiguous",
        m.matched, m.unmatched, m.ambiguous
    );
    assert!(lines.iter().any(|l| l.starts_with(&want)), "table has no {want:?}:\n{stderr}");
}

/// Renders `file` with headless Chromium and checks the screenshot is a
/// real, non-trivial PNG. Keeps a copy in $CNET_TEST_ARTIFACTS if set.
fn assert_renders(file: &Path, tmp: &Path) {
    let png = tmp.join(format!("{}.png", file.file_name().unwrap().to_string_lossy()));
    let profile = tmp.join("chromium-profile");
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1300,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", file.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("running chromium (install it with `cargo xtask setup --test-deps`)");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "chromium failed: {st}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 120 s");
        }
        thread::sleep(Duration::from_millis(100));
    }
    let bytes = std::fs::read(&png).expect("chromium wrote no screenshot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "screenshot is not a PNG");
    // A blank 1300×1000 page compresses to a few KiB; axes, text and bars
    // do not.
    assert!(bytes.len() > 20_000, "screenshot is only {} bytes: nothing drawn?", bytes.len());
    if let Some(dir) = std::env::var_os("CNET_TEST_ARTIFACTS") {
        let _ = std::fs::copy(&png, Path::new(&dir).join(png.file_name().unwrap()));
    }
}

/// A TCP server in host 1 that answers each 16-byte request after
/// `delay_ms`, and a client in host 0 making REQUESTS requests on one
/// connection.
fn request_response(lab: &Lab, port: u16, delay_ms: u64) {
    let addr = SocketAddr::new(lab.host(1).ip.into(), port);
    let listener = lab.in_ns(1, move || TcpListener::bind(addr)).expect("bind server");
    let server = thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut req = [0u8; 16];
        for i in 0..REQUESTS {
            s.read_exact(&mut req)?;
            thread::sleep(Duration::from_millis(delay_ms));
            s.write_all(format!("response-{i:07}").as_bytes())?;
        }
        Ok(())
    });
    let mut c = lab.in_ns(0, move || TcpStream::connect_timeout(&addr, Duration::from_secs(5))).expect("connect");
    c.set_nodelay(true).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut resp = [0u8; 16];
    for i in 0..REQUESTS {
        c.write_all(format!("request-{i:08}").as_bytes()).unwrap();
        c.read_exact(&mut resp).unwrap();
        assert_eq!(&resp, format!("response-{i:07}").as_bytes());
    }
    drop(c);
    server.join().expect("server thread").expect("server");
}

fn request_response_test(delay_ms: u64) {
    let lab = Lab::new(2).unwrap();
    let dir = TempDir::new("latrr").unwrap();
    let plot = dir.path().join(format!("rr{delay_ms}.svg"));
    let (a, b) = (lab.host(0).clone(), lab.host(1).clone());
    let port = 7100 + delay_ms as u16;
    let cnet =
        Cnet::start(&["latency", "--netns", &a.netns, "--netns", &b.netns, "--json", "--plot", plot.to_str().unwrap()])
            .unwrap();
    request_response(&lab, port, delay_ms);
    thread::sleep(Duration::from_millis(100));
    let res = cnet.stop().unwrap();
    let report = report_of(&res);

    let (client, server) = (format!("netns:{}", a.netns), format!("netns:{}", b.netns));
    // Measured on both veths: at the client's it includes the network, at
    // the server's it is the server's think time.
    for seen_at in ["client", "server"] {
        let r = row(&report, Metric::TcpRequestResponse, port, seen_at);
        assert_eq!((r.client.as_str(), r.server.as_str()), (client.as_str(), server.as_str()));
        assert_eq!(r.stats.count, REQUESTS as u64, "one sample per request, seen at {seen_at}");
        assert_near_delay(&format!("request/response seen at {seen_at}"), r.stats.p50_ns, delay_ms);
        assert_eq!(r.connections, 1);
    }
    // Handshake RTT on the bridge: SYN → SYN/ACK at the client's veth,
    // SYN/ACK → ACK at the server's.
    for (metric, seen_at) in [(Metric::TcpSynToSynack, "client"), (Metric::TcpSynackToAck, "server")] {
        let r = row(&report, metric, port, seen_at);
        assert_eq!(r.stats.count, 1, "{metric:?}");
        assert!(r.stats.min_ns > 0 && r.stats.max_ns < ms(5), "{metric:?}: {:?}", r.stats);
    }
    assert_table_matches_json(&report, &res.stderr);

    let svg = std::fs::read_to_string(&plot).expect("--plot wrote no file");
    assert!(svg.starts_with("<svg") && svg.contains(&format!("{client} → {server}:{port}")), "{svg}");
    assert_renders(&plot, dir.path());
}

#[test]
fn request_response_p50_follows_a_20ms_server_delay() {
    request_response_test(20);
}

#[test]
fn request_response_p50_follows_a_50ms_server_delay() {
    request_response_test(50);
}

/// Nanoseconds since the epoch from tshark's `frame.time_epoch`
/// ("1700000000.123456789"), without going through f64.
fn epoch_ns(s: &str) -> u64 {
    let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
    let frac = format!("{frac:0<9}");
    secs.parse::<u64>().unwrap() * 1_000_000_000 + frac[..9].parse::<u64>().unwrap()
}

#[test]
fn hops_match_each_packet_once_and_copies_share_a_packet_id() {
    const PER_FLOW: usize = 200;
    let lab = Lab::new(2).unwrap();
    let dir = TempDir::new("lathop").unwrap();
    let file = dir.path().join("hops.pcapng");
    let plot = dir.path().join("hops.html");
    let (a, b) = (lab.host(0).clone(), lab.host(1).clone());
    let cnet = Cnet::start(&[
        "latency",
        "--netns",
        &a.netns,
        "--netns",
        &b.netns,
        "--json",
        "-w",
        file.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ])
    .unwrap();

    // A TCP flow A → B (for its handshake RTT and TCP hops) …
    let tcp_port = 7201;
    request_response(&lab, tcp_port, 0);
    // … and two simultaneous UDP flows A → B with identical payloads.
    let udp_port = 7202;
    let to = SocketAddr::new(b.ip.into(), udp_port);
    let rx = lab.in_ns(1, move || UdpSocket::bind(to)).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let receiver = thread::spawn(move || {
        let mut buf = [0u8; 256];
        let mut n = 0;
        while n < 2 * PER_FLOW && rx.recv(&mut buf).is_ok() {
            n += 1;
        }
        n
    });
    let senders: Vec<_> = (0..2)
        .map(|_| {
            let tx = lab.in_ns(0, move || {
                let s = UdpSocket::bind("0.0.0.0:0")?;
                s.connect(to)?;
                Ok::<_, std::io::Error>(s)
            });
            let tx = tx.unwrap();
            thread::spawn(move || {
                for i in 0..PER_FLOW {
                    tx.send(format!("identical payload {i:05}").as_bytes()).unwrap();
                    // Paced, so no queue on the way overflows.
                    thread::sleep(Duration::from_micros(300));
                }
                tx.local_addr().unwrap().port()
            })
        })
        .collect();
    let sport: Vec<u16> = senders.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(receiver.join().unwrap(), 2 * PER_FLOW, "receiver got fewer datagrams than were sent");
    thread::sleep(Duration::from_millis(100));
    let res = cnet.stop().unwrap();
    let report = report_of(&res);

    let from = format!("netns:{} eth0 out", a.netns);
    let to_b = format!("netns:{} eth0 in", b.netns);
    let hop = |proto: &str| {
        report
            .hops
            .iter()
            .find(|h| h.from == from && h.to == to_b && h.protocol == proto)
            .unwrap_or_else(|| panic!("no {proto} hop {from} → {to_b}: {:#?}", report.hops))
    };
    let udp = hop("udp");
    assert_eq!(udp.stats.count, 2 * PER_FLOW as u64, "every datagram matched once, no false matches");
    assert_eq!(report.hop_matching.ambiguous, 0);
    assert!(udp.stats.min_ns > 0);
    let handshake = row(&report, Metric::TcpSynToSynack, tcp_port, "client").stats.min_ns;
    // A typical hop is a small part of a round trip. (Not every hop: on a
    // shared VM an interrupt in the middle of one hop costs ~10-30 µs, as
    // much as a whole bridge handshake; the per-packet checks below use
    // bounds that causality guarantees.)
    for h in [hop("tcp"), udp] {
        assert!(
            h.stats.p90_ns < handshake,
            "{} hop p90 {} ns is not below the handshake RTT {handshake} ns",
            h.protocol,
            h.stats.p90_ns
        );
    }
    assert_table_matches_json(&report, &res.stderr);

    // The pcapng, read by tshark: the copies of one packet share
    // frame.packet_id, one on each veth, with identical headers.
    let fields = tshark_fields(
        &file,
        Some(&format!("ip.src == {} && ip.dst == {}", a.ip, b.ip)),
        // Wireshark's TCP analysis takes the second copy for a
        // retransmission and hides its data: compare raw header fields.
        &[
            "frame.packet_id",
            "frame.interface_name",
            "frame.time_epoch",
            "udp.srcport",
            "udp.dstport",
            "tcp.dstport",
            "ip.id",
            "tcp.seq_raw",
            "tcp.ack_raw",
            "tcp.len",
            "udp.payload",
        ],
    )
    .unwrap();
    let mut by_id: BTreeMap<u64, Vec<Vec<String>>> = BTreeMap::new();
    for f in fields {
        let id: u64 = f[0].parse().unwrap_or_else(|_| panic!("frame without packet id: {f:?}"));
        by_id.entry(id).or_default().push(f);
    }
    let mut udp_pairs = 0;
    let mut tcp_pairs = 0;
    // Hop of each TCP packet A → B by the time it was seen on A's veth.
    let mut tcp_hops: BTreeMap<u64, (u64, Vec<String>)> = BTreeMap::new();
    for (id, copies) in &by_id {
        assert_eq!(copies.len(), 2, "packet id {id}: {copies:?}");
        let (first, second) = (&copies[0], &copies[1]);
        assert_eq!(
            (first[1].as_str(), second[1].as_str()),
            (a.host_veth.as_str(), b.host_veth.as_str()),
            "packet id {id}"
        );
        assert_eq!(first[3..], second[3..], "copies of packet id {id} differ");
        let (t_a, t_b) = (epoch_ns(&first[2]), epoch_ns(&second[2]));
        assert!(t_b > t_a, "packet id {id}: hop is not positive");
        if first[4] == udp_port.to_string() {
            assert!(sport.contains(&first[3].parse().unwrap()));
            udp_pairs += 1;
        } else if first[5] == tcp_port.to_string() {
            tcp_pairs += 1;
            tcp_hops.insert(t_a, (t_b - t_a, first.clone()));
        }
    }
    assert_eq!(udp_pairs, 2 * PER_FLOW);
    assert_eq!(tcp_pairs as u64, hop("tcp").stats.count);

    // Causal bounds, per packet: the SYN's hop lies inside the handshake
    // RTT, and each request's hop inside its request → response time seen
    // on A's veth (the answer leaves B only after the request got there).
    let (syn_t, (syn_hop, _)) = tcp_hops.iter().next().expect("no TCP packet matched");
    assert!(*syn_hop < handshake, "SYN hop {syn_hop} ns, handshake RTT {handshake} ns");
    let answers = tshark_fields(
        &file,
        Some(&format!(
            "ip.src == {} && tcp.srcport == {tcp_port} && tcp.len > 0 && frame.interface_name == \"{}\"",
            b.ip, a.host_veth
        )),
        &["frame.time_epoch"],
    )
    .unwrap();
    let answers: Vec<u64> = answers.iter().map(|f| epoch_ns(&f[0])).collect();
    let mut requests = 0;
    for (t_a, (hop_ns, f)) in tcp_hops.range(syn_t + 1..) {
        if f[9] == "0" {
            continue;
        }
        let answer = answers.iter().find(|t| *t > t_a).unwrap_or_else(|| panic!("request at {t_a} has no answer"));
        assert!(*hop_ns < answer - t_a, "request hop {hop_ns} ns is not inside its exchange ({} ns)", answer - t_a);
        requests += 1;
    }
    assert_eq!(requests, REQUESTS);

    let html = std::fs::read_to_string(&plot).expect("--plot wrote no file");
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<svg"));
    assert_renders(&plot, dir.path());
}

/// A tiny DNS responder: answers each query (same id, QR set) after
/// `delay_ms`.
#[test]
fn dns_query_answer_p50_follows_the_responder_delay() {
    const QUERIES: u16 = 30;
    let delay_ms = 20;
    let lab = Lab::new(2).unwrap();
    let (a, b) = (lab.host(0).clone(), lab.host(1).clone());
    let cnet = Cnet::start(&["latency", "--netns", &a.netns, "--netns", &b.netns, "--json"]).unwrap();

    let server_addr = SocketAddr::new(b.ip.into(), 53);
    let server = lab.in_ns(1, move || UdpSocket::bind(server_addr)).expect("bind port 53");
    server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let responder = thread::spawn(move || {
        let mut buf = [0u8; 512];
        for _ in 0..QUERIES {
            let Ok((n, from)) = server.recv_from(&mut buf) else { break };
            thread::sleep(Duration::from_millis(delay_ms));
            let mut answer = buf[..n].to_vec();
            answer[2] |= 0x80; // QR: response
            answer[3] = 0x80; // RA, NOERROR
            server.send_to(&answer, from).unwrap();
        }
    });
    let client = lab.in_ns(0, || UdpSocket::bind("0.0.0.0:0")).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 512];
    for i in 0..QUERIES {
        let id = 0x1000 + i;
        // Header (id, RD, one question) + "example.lab" IN A.
        let mut q = Vec::new();
        q.extend_from_slice(&id.to_be_bytes());
        q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        q.extend_from_slice(b"\x07example\x03lab\x00\x00\x01\x00\x01");
        client.send_to(&q, server_addr).unwrap();
        let n = client.recv(&mut buf).expect("no DNS answer");
        assert!(n >= 12 && buf[..2] == id.to_be_bytes());
    }
    responder.join().unwrap();
    thread::sleep(Duration::from_millis(100));
    let report = report_of(&cnet.stop().unwrap());
    for seen_at in ["client", "server"] {
        let r = row(&report, Metric::DnsQueryAnswer, 53, seen_at);
        assert_eq!(r.protocol, "udp");
        assert_eq!((r.client.clone(), r.server.clone()), (format!("netns:{}", a.netns), format!("netns:{}", b.netns)));
        assert_eq!(r.stats.count, QUERIES as u64, "seen at {seen_at}");
        assert_eq!(r.dns_unanswered, 0);
        assert_near_delay(&format!("DNS seen at {seen_at}"), r.stats.p50_ns, delay_ms);
    }
}

#[test]
fn bad_plot_file_is_refused_before_anything_is_attached() {
    let lab = Lab::new(1).unwrap();
    let out = cnet_output(&["latency", "--netns", &lab.host(0).netns, "--plot", "/tmp/cnet-latency-plot.png"]).unwrap();
    assert!(!out.status.success());
    assert!(out.stderr.contains("must name an .svg or .html file"), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    let out = cnet_output(&["latency", "--netns", &lab.host(0).netns, "--plot", "/nonexistent-dir/p.svg"]).unwrap();
    assert!(!out.status.success());
    assert!(out.stderr.contains("cannot write /nonexistent-dir/p.svg"), "{}", out.stderr);
    // A bad target leaves no plot file behind.
    let dir = TempDir::new("latbad").unwrap();
    let plot = dir.path().join("p.svg");
    let out =
        cnet_output(&["latency", "--netns", &format!("{}-missing", lab.prefix), "--plot", plot.to_str().unwrap()])
            .unwrap();
    assert!(!out.status.success());
    assert!(out.stderr.contains("no network namespace named"), "{}", out.stderr);
    assert!(!plot.exists(), "plot file created for a failed capture");
}
