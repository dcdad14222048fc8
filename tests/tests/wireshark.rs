//! cnet with Wireshark's tools on a real kernel: the live pcapng pipe into
//! tshark, the extcap interface, reading files back (cnet's and tcpdump's)
//! and file rotation. Run as root.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cnet_tests::{Cnet, Lab, TempDir, cnet_bin, cnet_output, hooked_programs, traffic, tshark_fields};

/// A child process of the test, stopped (SIGTERM, then SIGKILL) by PID on drop.
struct Proc(Option<Child>);

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        Proc(Some(cmd.spawn().unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"))))
    }

    fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(c) = &self.0 {
            // SAFETY: signalling our own child by PID.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// Waits for exit up to `limit`; None if still running.
    fn wait_for(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = self.child().try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.0.is_none() {
            return;
        }
        self.signal(libc::SIGTERM);
        if self.wait_for(Duration::from_secs(5)).is_none() {
            let _ = self.child().kill();
            let _ = self.child().wait();
        }
    }
}

/// Lines of `r` with the time each arrived, on a channel.
fn lines_with_time(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<(Instant, String)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`.
fn wait_line(rx: &mpsc::Receiver<(Instant, String)>, needle: &str, limit: Duration) -> Option<(Instant, String)> {
    let deadline = Instant::now() + limit;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok((t, l)) if l.contains(needle) => return Some((t, l)),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// Polls until no BPF program is hooked to `ifname`.
fn assert_unhooked(ifname: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let progs = hooked_programs(ifname).unwrap();
        if progs.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "programs still hooked to {ifname}: {progs:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn tshark_reads_the_live_pipe_and_closing_it_ends_the_capture() {
    let lab = Lab::new(2).unwrap();
    let a = lab.host(0).clone();
    let mut cnet = Cnet::start(&["capture", "--netns", &a.netns, "-w", "-"]).unwrap();
    let stdout = cnet.take_stdout().unwrap();
    let mut tshark = Proc::spawn(
        Command::new("tshark")
            .args(["-n", "-l", "-i", "-", "-T", "fields", "-e", "udp.dstport", "-e", "frame.comment"])
            .stdin(Stdio::from(stdout))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let out = lines_with_time(tshark.child().stdout.take().unwrap());
    let err = lines_with_time(tshark.child().stderr.take().unwrap());
    wait_line(&err, "Capturing on", Duration::from_secs(20)).expect("tshark did not start reading the pipe");

    let mut latencies = Vec::new();
    for i in 0..3u16 {
        let port = 7101 + i;
        let t0 = Instant::now();
        traffic::udp_burst(&lab, 0, 1, port, "live", 1).unwrap();
        let (t1, line) = wait_line(&out, &format!("{port}\t"), Duration::from_secs(10))
            .unwrap_or_else(|| panic!("datagram to port {port} not shown by tshark"));
        assert!(line.contains(&format!("ns={} ", a.netns)) && line.contains("dir=out"), "{line}");
        latencies.push(t1 - t0);
        std::thread::sleep(Duration::from_millis(300));
    }
    println!("live pipe latency (send → tshark line): {latencies:?}");
    for l in &latencies {
        assert!(*l < Duration::from_secs(3), "latency {l:?}");
    }

    // tshark goes away: cnet notices the closed pipe, even with no traffic,
    // detaches and exits 0 with its summary.
    tshark.signal(libc::SIGKILL);
    tshark.wait_for(Duration::from_secs(5)).unwrap();
    let t_close = Instant::now();
    let res = cnet.wait().unwrap();
    println!("cnet exited {:?} after the pipe closed", t_close.elapsed());
    assert!(res.status.success(), "{}", res.stderr);
    assert!(res.summary("captured").is_some_and(|n| n >= 3), "{}", res.stderr);
    assert_unhooked(&a.host_veth);
}

/// cnet's own share of the live latency: time from sending a datagram to
/// its bytes arriving on cnet's stdout pipe (tshark adds its dumpcap
/// stage on top).
#[test]
fn live_pipe_delivers_each_packet_promptly() {
    let lab = Lab::new(2).unwrap();
    let a = lab.host(0).clone();
    let mut cnet = Cnet::start(&["capture", "--netns", &a.netns, "-w", "-"]).unwrap();
    let mut stdout = cnet.take_stdout().unwrap();
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        loop {
            match std::io::Read::read(&mut stdout, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut seen = Vec::new();
    let mut latencies = Vec::new();
    for i in 0..5u32 {
        let t0 = Instant::now();
        let sent = traffic::udp_burst(&lab, 0, 1, 7151, "pipe", i + 1).unwrap();
        let want = sent.last().unwrap().clone();
        let deadline = Instant::now() + Duration::from_secs(5);
        let arrived = loop {
            let (t, chunk) =
                rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("datagram not on the pipe");
            seen.extend_from_slice(&chunk);
            if seen.windows(want.len()).any(|w| w == want.as_slice()) {
                break t;
            }
        };
        latencies.push(arrived - t0);
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("cnet stdout latency (send → bytes on the pipe): {latencies:?}");
    for l in &latencies {
        assert!(*l < Duration::from_secs(1), "latency {l:?}");
    }
    let res = cnet.stop().unwrap();
    assert!(res.status.success(), "{}", res.stderr);
    reader.join().unwrap();
}

#[test]
fn extcap_interfaces_capture_through_tshark() {
    let lab = Lab::new(2).unwrap();
    let a = lab.host(0).clone();
    let home = TempDir::new("home").unwrap();
    let dir = TempDir::new("extcap").unwrap();
    let with_home = |cmd: &mut Command| {
        cmd.env("HOME", home.path()).env_remove("XDG_CONFIG_HOME");
    };

    let mut install = Command::new(cnet_bin());
    install.args(["extcap", "install", "--user"]);
    with_home(&mut install);
    let out = install.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let launcher = home.path().join(".config/wireshark/extcap/cnet");
    assert!(launcher.exists(), "{}", String::from_utf8_lossy(&out.stderr));

    let mut list = Command::new("tshark");
    list.arg("-D");
    with_home(&mut list);
    let out = list.output().unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    let iface = format!("cnet-netns-{}", a.netns);
    assert!(listed.contains("cnet-all"), "{listed}");
    assert!(listed.contains(&iface), "{listed}");

    let file = dir.path().join("out.pcapng");
    let mut cap = Command::new("tshark");
    cap.args(["-i", &iface, "-a", "duration:8", "-w"]).arg(&file).stdout(Stdio::null()).stderr(Stdio::piped());
    with_home(&mut cap);
    let mut tshark = Proc::spawn(&mut cap);
    // dumpcap starts the extcap, which attaches to the lab veth: send once
    // the hooks are there (a loaded machine takes seconds), not after a
    // fixed sleep.
    let veth = &lab.host(0).host_veth;
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    while hooked_programs(veth).unwrap().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!hooked_programs(veth).unwrap().is_empty(), "the extcap did not attach within 6 s");
    traffic::udp_burst(&lab, 0, 1, 7201, "extcap", 5).unwrap();
    let status = tshark.wait_for(Duration::from_secs(20)).expect("tshark did not stop");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut tshark.child().stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");

    let rows = tshark_fields(
        &file,
        Some("udp.dstport == 7201"),
        &["frame.interface_description", "frame.comment", "frame.packet_flags_direction"],
    )
    .unwrap();
    assert_eq!(rows.len(), 5, "{rows:?}\n{stderr}");
    for r in &rows {
        assert!(r[0].starts_with(&format!("netns:{} eth0", a.netns)), "{r:?}");
        assert!(r[1].contains(&format!("ns={} ", a.netns)) && r[1].ends_with("dir=out"), "{r:?}");
        assert_eq!(r[2], "0x00000002");
    }
    // dumpcap's copy of cnet's stream reads back with cnet's labels.
    let lines = cnet_read(&["read", file.to_str().unwrap()]);
    let ours = lines.iter().filter(|l| l.contains(&format!(" > {}.7201: UDP", lab.host(1).ip))).count();
    assert_eq!(ours, 5, "{lines:#?}");
    assert!(lines.iter().all(|l| l.contains(&format!(" netns:{} eth0 ", a.netns))), "{lines:#?}");
    // Wireshark stopped cnet: nothing left hooked.
    assert_unhooked(&a.host_veth);

    let mut uninstall = Command::new(cnet_bin());
    uninstall.args(["extcap", "uninstall", "--user"]);
    with_home(&mut uninstall);
    assert!(uninstall.output().unwrap().status.success());
    assert!(!launcher.exists());
}

fn cnet_read(args: &[&str]) -> Vec<String> {
    let r = cnet_output(args).unwrap();
    assert!(r.status.success(), "cnet {args:?}: {}", r.stderr);
    r.stdout.lines().map(str::to_string).collect()
}

fn json_lines(args: &[&str]) -> Vec<serde_json::Value> {
    cnet_read(args).iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

/// `cnet read --json` agrees with tshark, packet by packet.
fn check_json_against_tshark(file: &Path, json: &[serde_json::Value]) {
    let rows = tshark_fields(
        file,
        None,
        &[
            "ip.src",
            "ip.dst",
            "udp.srcport",
            "udp.dstport",
            "tcp.srcport",
            "tcp.dstport",
            "frame.len",
            "frame.cap_len",
            "frame.packet_flags_direction",
            "tcp.seq_raw",
            "ipv6.src",
            "ipv6.dst",
        ],
    )
    .unwrap();
    assert_eq!(rows.len(), json.len());
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for (row, j) in rows.iter().zip(json) {
        let (src, dst) = if j["ip"]["version"] == 6 { (&row[10], &row[11]) } else { (&row[0], &row[1]) };
        assert_eq!(*src, s(&j["ip"]["src"]), "{j}");
        assert_eq!(*dst, s(&j["ip"]["dst"]), "{j}");
        assert_eq!(row[2], s(&j["udp"]["src_port"]), "{j}");
        assert_eq!(row[3], s(&j["udp"]["dst_port"]), "{j}");
        assert_eq!(row[4], s(&j["tcp"]["src_port"]), "{j}");
        assert_eq!(row[5], s(&j["tcp"]["dst_port"]), "{j}");
        assert_eq!(row[6], s(&j["orig_len"]), "{j}");
        assert_eq!(row[7], s(&j["caplen"]), "{j}");
        let dir = match j["direction"].as_str() {
            Some("in") => "0x00000001",
            Some("out") => "0x00000002",
            _ => "",
        };
        assert_eq!(row[8], dir, "{j}");
        assert_eq!(row[9], s(&j["tcp"]["seq"]), "{j}");
    }
}

#[test]
fn read_prints_cnet_and_tcpdump_files() {
    let lab = Lab::new(2).unwrap();
    let (a, b) = (lab.host(0).clone(), lab.host(1).clone());
    let dir = TempDir::new("read").unwrap();
    let cnet_file = dir.path().join("cnet.pcapng");
    let td_file = dir.path().join("td.pcap");
    let cnet = Cnet::start(&["capture", "--netns", &a.netns, "-w", cnet_file.to_str().unwrap()]).unwrap();
    let mut tcpdump = Proc::spawn(
        Command::new("tcpdump")
            .args(["-n", "-U", "--immediate-mode", "-i", &a.host_veth, "-w"])
            .arg(&td_file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let td_err = lines_with_time(tcpdump.child().stderr.take().unwrap());
    wait_line(&td_err, "listening on", Duration::from_secs(10)).expect("tcpdump did not start");

    traffic::udp_burst(&lab, 0, 1, 7301, "read", 5).unwrap();
    traffic::tcp_exchange(&lab, 0, 1, 7302, traffic::pattern(3000, 1), b"ok".to_vec()).unwrap();
    lab.ping(0, 1, 2).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let res = cnet.stop().unwrap();
    assert!(res.status.success(), "{}", res.stderr);
    tcpdump.signal(libc::SIGINT);
    assert!(tcpdump.wait_for(Duration::from_secs(10)).is_some_and(|s| s.success()));

    let udp_line = format!("IP {}.", a.ip);
    let udp_dst = format!("> {}.7301: UDP, length ", b.ip);
    // cnet's file: label and direction on every line.
    let lines = cnet_read(&["read", cnet_file.to_str().unwrap()]);
    let label = format!(" netns:{} eth0 ", a.netns);
    assert!(lines.iter().all(|l| l.contains(&label)), "{lines:#?}");
    let udp: Vec<&String> = lines.iter().filter(|l| l.contains(&udp_dst)).collect();
    assert_eq!(udp.len(), 5, "{lines:#?}");
    assert!(udp.iter().all(|l| l.contains(" out ") && l.contains(&udp_line)), "{udp:#?}");
    assert!(lines.iter().any(|l| l.contains(" in ") && l.contains("ICMP echo reply, id")), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("Flags [S], seq") && l.contains("options [mss")), "{lines:#?}");
    // The same lines through tcpdump's muscle memory.
    assert_eq!(cnet_read(&["capture", "-r", cnet_file.to_str().unwrap()]), lines);
    let mixed = cnet_output(&["capture", "-r", cnet_file.to_str().unwrap(), "--netns", &a.netns]).unwrap();
    assert!(!mixed.status.success() && mixed.stderr.contains("-r reads a file"), "{}", mixed.stderr);

    // Selection.
    assert_eq!(cnet_read(&["read", "--container", &a.netns, cnet_file.to_str().unwrap()]).len(), lines.len());
    // An owner the file does not have is an error that names the owners it has.
    let r = cnet_output(&["read", "--container", "no-such-container", cnet_file.to_str().unwrap()]).unwrap();
    assert!(!r.status.success() && r.stdout.is_empty(), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("its owners are netns:{}", a.netns)), "{}", r.stderr);
    let inbound = cnet_read(&["read", "--direction", "in", cnet_file.to_str().unwrap()]);
    assert!(!inbound.is_empty() && inbound.iter().all(|l| l.contains(" in ")), "{inbound:#?}");

    // tcpdump's classic pcap (microseconds): no labels, same decode.
    let td_lines = cnet_read(&["read", td_file.to_str().unwrap()]);
    let td_udp: Vec<&String> = td_lines.iter().filter(|l| l.contains(&udp_dst)).collect();
    assert_eq!(td_udp.len(), 5, "{td_lines:#?}");
    assert!(td_udp.iter().all(|l| l.contains(" if0 - ") && l.contains(&udp_line)), "{td_udp:#?}");
    for (c, t) in udp.iter().zip(&td_udp) {
        // Same packet, same decode, from the first space after the label.
        assert_eq!(c.split_once(" IP ").unwrap().1, t.split_once(" IP ").unwrap().1);
    }

    // JSON agrees with tshark on both files.
    let j = json_lines(&["read", "--json", cnet_file.to_str().unwrap()]);
    assert!(j.iter().all(|p| p["owner"] == format!("netns:{}", a.netns) && p["labels"]["ns"] == a.netns.as_str()));
    check_json_against_tshark(&cnet_file, &j);
    let j = json_lines(&["read", "--json", td_file.to_str().unwrap()]);
    assert!(j.iter().all(|p| p.get("owner").is_none() && p["ts_ns"].as_u64().unwrap() % 1000 == 0));
    check_json_against_tshark(&td_file, &j);

    // The same packets as pcapng written by tshark (microsecond if_tsresol
    // by default): identical timestamps and decode.
    let td_ng = dir.path().join("td.pcapng");
    let out = Command::new("tshark").args(["-F", "pcapng", "-r"]).arg(&td_file).arg("-w").arg(&td_ng).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let strip = |mut v: Vec<serde_json::Value>| {
        for p in &mut v {
            p.as_object_mut().unwrap().remove("interface");
        }
        v
    };
    let ng = strip(json_lines(&["read", "--json", td_ng.to_str().unwrap()]));
    assert_eq!(ng, strip(j));
}

/// Every (interface, payload) of the numbered datagrams in the files, with
/// how often it occurs; checks each file opens in tshark with both IDBs.
fn datagrams_in(files: &[PathBuf], port: u16) -> BTreeMap<(String, String), usize> {
    let mut seen = BTreeMap::new();
    for f in files {
        let rows = tshark_fields(f, Some(&format!("udp.dstport == {port}")), &["frame.interface_name", "udp.payload"])
            .unwrap_or_else(|e| panic!("tshark cannot read {}: {e}", f.display()));
        for r in rows {
            *seen.entry((r[0].clone(), r[1].clone())).or_insert(0) += 1;
        }
        let file = cnet::codec::capture_file::read_file(f).unwrap_or_else(|(e, _)| panic!("{e}"));
        assert_eq!(file.interfaces.len(), 2, "{}: every file repeats every IDB", f.display());
    }
    seen
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn check_once_per_hook(files: &[PathBuf], port: u16, lab: &Lab, sent: &[Vec<u8>]) {
    let seen = datagrams_in(files, port);
    for p in sent {
        for h in [lab.host(0), lab.host(1)] {
            let n = seen.get(&(h.host_veth.clone(), hex(p))).copied().unwrap_or(0);
            assert_eq!(n, 1, "{} on {}", String::from_utf8_lossy(p), h.host_veth);
        }
    }
    assert_eq!(seen.values().sum::<usize>(), sent.len() * 2);
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

#[test]
fn rotation_by_size_loses_and_duplicates_nothing() {
    let lab = Lab::new(2).unwrap();
    let dir = TempDir::new("rot-size").unwrap();
    let pattern = dir.path().join("ring");
    let (a, b) = (lab.host(0).clone(), lab.host(1).clone());
    let cnet = Cnet::start(&[
        "capture",
        "--netns",
        &a.netns,
        "--netns",
        &b.netns,
        "-w",
        pattern.to_str().unwrap(),
        "-C",
        "20k",
        "-W",
        "50",
    ])
    .unwrap();
    let sent = traffic::udp_burst(&lab, 0, 1, 7401, "size", 400).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let res = cnet.stop().unwrap();
    assert!(res.status.success(), "{}", res.stderr);
    let files = files_in(dir.path());
    println!("size rotation: {} files", files.len());
    assert!(files.len() >= 3, "{files:?}");
    for (i, f) in files.iter().enumerate() {
        assert_eq!(f.file_name().unwrap().to_str().unwrap(), format!("ring{i:02}"));
        if i + 1 < files.len() {
            let len = std::fs::metadata(f).unwrap().len();
            assert!(len > 20 * 1024 && len < 24 * 1024, "{}: {len} bytes", f.display());
        }
    }
    check_once_per_hook(&files, 7401, &lab, &sent);
}

#[test]
fn rotation_by_time_loses_and_duplicates_nothing() {
    let lab = Lab::new(2).unwrap();
    let dir = TempDir::new("rot-time").unwrap();
    let pattern = dir.path().join("cap-%Y%m%d-%H%M%S.pcapng");
    let (a, b) = (lab.host(0).clone(), lab.host(1).clone());
    let cnet =
        Cnet::start(&["capture", "--netns", &a.netns, "--netns", &b.netns, "-w", pattern.to_str().unwrap(), "-G", "1"])
            .unwrap();
    let mut sent = Vec::new();
    for chunk in 0..10 {
        sent.extend(traffic::udp_burst(&lab, 0, 1, 7402, &format!("time{chunk}"), 30).unwrap());
        std::thread::sleep(Duration::from_millis(300));
    }
    let res = cnet.stop().unwrap();
    assert!(res.status.success(), "{}", res.stderr);
    let files = files_in(dir.path());
    println!("time rotation: {files:?}");
    assert!(files.len() >= 3, "{files:?}");
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("cap-2") && name.ends_with(".pcapng") && name.len() == "cap-20260101-000000.pcapng".len(),
            "{name}"
        );
    }
    check_once_per_hook(&files, 7402, &lab, &sent);
}
