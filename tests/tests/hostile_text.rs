//! Text that other users and container runtimes control, printed or
//! labelled by a root cnet: capture files crafted by a local user (read with
//! `cnet read`), and namespace and interface names that a runtime or a
//! container's root chooses (created here by root, as a runtime would
//! return them). Each test performs the attack for real and checks that it
//! fails: no control character reaches the terminal, no extcap line or
//! packet label is forged, no packet of a file is lost, no memory runs away.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cnet::codec::capture_file::read_file;
use cnet_tests::reap::wait4_child;
use cnet_tests::users::ThrowawayUser;
use cnet_tests::{Cnet, Lab, TempDir, cnet_bin, cnet_output, run, traffic, tshark_fields};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A lab prefix unique to this process and test (at most 10 characters).
fn prefix() -> String {
    format!("cst{:05x}{:x}", std::process::id() & 0xfffff, COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A directory `/tmp/cst-TAG-PID-N`, removed on drop.
fn temp_dir(tag: &str) -> TempDir {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = TempDir(std::env::temp_dir().join(format!("cst-{tag}-{}-{n}", std::process::id())));
    std::fs::create_dir_all(dir.path()).unwrap();
    dir
}

/// Fails when `out` holds anything a terminal acts on: C0 controls other
/// than the line feed, DEL, C1 controls, bidi overrides and isolates.
fn assert_terminal_safe(what: &str, out: &str) {
    for (i, c) in out.char_indices() {
        let bad = (c < ' ' && c != '\n')
            || ('\u{7f}'..='\u{9f}').contains(&c)
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c);
        assert!(!bad, "{what}: {c:?} at byte {i} reaches the terminal: {:?}", &out[i.saturating_sub(60)..]);
    }
}

// A hand-made little-endian pcapng, as an attacker writes it.

fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let len = (12 + body.len().next_multiple_of(4)) as u32;
    let mut b = [kind.to_le_bytes(), len.to_le_bytes()].concat();
    b.extend_from_slice(body);
    b.resize(len as usize - 4, 0);
    b.extend_from_slice(&len.to_le_bytes());
    b
}

fn option(code: u16, value: &[u8]) -> Vec<u8> {
    let mut o = [code.to_le_bytes(), (value.len() as u16).to_le_bytes()].concat();
    o.extend_from_slice(value);
    o.resize(4 + value.len().next_multiple_of(4), 0);
    o
}

fn shb(comment: &[u8]) -> Vec<u8> {
    let mut body = vec![0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0];
    body.extend_from_slice(&[0xff; 8]);
    body.extend(option(1, comment));
    body.extend([0; 4]);
    block(0x0a0d_0d0a, &body)
}

fn idb(name: &[u8], description: &[u8]) -> Vec<u8> {
    let mut body = vec![1, 0, 0, 0, 0xff, 0xff, 0, 0];
    body.extend(option(2, name));
    body.extend(option(3, description));
    body.extend(option(9, &[9]));
    body.extend([0; 4]);
    block(1, &body)
}

fn epb(ts_ns: u64, data: &[u8], comment: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for v in [0, (ts_ns >> 32) as u32, ts_ns as u32, data.len() as u32, data.len() as u32] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    body.extend_from_slice(data);
    body.resize(20 + data.len().next_multiple_of(4), 0);
    body.extend(option(2, &2u32.to_le_bytes()));
    body.extend(option(1, comment));
    body.extend([0; 4]);
    block(6, &body)
}

/// An Ethernet/IPv4/UDP frame with payload `seq`.
fn udp_frame(seq: u32) -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(40000, 7000);
    let payload = format!("seq={seq}").into_bytes();
    let mut frame = Vec::new();
    builder.write(&mut frame, &payload).unwrap();
    frame
}

/// The user writes `bytes` to `name` in their home; returns its path.
fn user_writes(user: &ThrowawayUser, name: &str, bytes: &[u8]) -> PathBuf {
    let mut child = user.command("sh").args(["-c", &format!("cat > {name}")]).stdin(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    assert!(child.wait().unwrap().success());
    user.home.join(name)
}

#[test]
fn read_prints_a_crafted_file_without_terminal_controls_or_forged_lines() {
    let user = ThrowawayUser::new("cst").unwrap();
    // A newline in the interface name used to print a whole fake packet
    // line; ESC and BEL sequences clear the screen and set the title.
    let forged_line = "\r\n19:06:18.183734294 netns:blue eth0 out IP 10.0.0.9.53 > 10.0.0.2.4444: FORGED";
    let name = format!("eth0\x1b[2J\x1b[H\x1b]0;pwned\x07{forged_line}");
    let description = "netns:\x1b[31mblue\u{9b}0m\u{202e} eth0\n [10.0.0.2/24] (netns inode 1)";
    let mut f = shb(b"\x1b]2;title\x07 section\ncomment");
    f.extend(idb(name.as_bytes(), description.as_bytes()));
    for seq in 0..3 {
        f.extend(epb(1_700_000_000_000_000_000 + seq, &udp_frame(seq as u32), b"ns=blue\x1b[8m\niface=eth0 dir=out"));
    }
    let path = user_writes(&user, "evil.pcapng", &f);

    let r = cnet_output(&["read", path.to_str().unwrap()]).unwrap();
    assert!(r.status.success(), "{}", r.stderr);
    assert_terminal_safe("cnet read", &r.stdout);
    assert_terminal_safe("cnet read (stderr)", &r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "one line per packet, nothing forged: {}", r.stdout);
    for l in &lines {
        assert!(l.contains("IP 10.0.0.1.40000 > 10.0.0.2.7000: UDP"), "{l}");
        assert!(!l.contains("FORGED") || l.contains(r"\x0d\x0a19:06:18"), "{l}");
    }
    assert_eq!(tshark_fields(&path, None, &["frame.number"]).unwrap().len(), 3);

    // JSON keeps the strings as they are, JSON-escaped, on one line each.
    let r = cnet_output(&["read", "--json", path.to_str().unwrap()]).unwrap();
    assert!(r.status.success(), "{}", r.stderr);
    assert_terminal_safe("cnet read --json", &r.stdout);
    let objects: Vec<serde_json::Value> = r.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(objects.len(), 3);
    assert_eq!(objects[0]["interface"]["name"], name.as_str());
    assert_eq!(objects[0]["interface"]["description"], description);
    assert_eq!(objects[0]["comment"], "ns=blue\x1b[8m\niface=eth0 dir=out");
}

#[test]
fn read_keeps_every_packet_after_an_invalid_utf8_comment() {
    let user = ThrowawayUser::new("cst").unwrap();
    // First only the third packet's comment is not UTF-8; then the section
    // comment and the interface's strings are not either.
    let strings: [(&[u8], &[u8], &[u8]); 2] = [
        (b"section", b"veth1", b"netns:blue eth0 (netns inode 1)"),
        (b"\xff\xfe section", b"veth\xc3\x28", b"netns:blue eth0 \xe2\x82 (netns inode 1)"),
    ];
    for (n, (section, name, description)) in strings.into_iter().enumerate() {
        let mut f = shb(section);
        f.extend(idb(name, description));
        for seq in 0..6u32 {
            let comment: &[u8] = if seq == 2 { b"ns=blue \xff\xfe\xfd dir=out" } else { b"ns=blue dir=out" };
            f.extend(epb(1_700_000_000_000_000_000 + u64::from(seq), &udp_frame(seq), comment));
        }
        let path = user_writes(&user, &format!("bad-utf8-{n}.pcapng"), &f);

        let tshark = tshark_fields(&path, None, &["frame.number"]).unwrap().len();
        assert_eq!(tshark, 6);
        let r = cnet_output(&["read", path.to_str().unwrap()]).unwrap();
        assert!(r.status.success(), "{}", r.stderr);
        assert_eq!(r.stdout.lines().count(), tshark, "{}{}", r.stdout, r.stderr);
        for (i, l) in r.stdout.lines().enumerate() {
            assert!(l.contains(&format!("length {}", format!("seq={i}").len())), "{l}");
        }
        let r = cnet_output(&["read", "--container", "blue", path.to_str().unwrap()]).unwrap();
        assert_eq!(r.stdout.lines().count(), tshark, "{}", r.stderr);
    }
}

#[test]
fn endless_interface_blocks_on_stdin_end_with_a_clear_error() {
    let user = ThrowawayUser::new("cst").unwrap();
    user_writes(&user, "shb.bin", &shb(b"x"));
    let one = idb(b"x", b"y");
    user_writes(&user, "idbs.bin", &one.repeat(10_000));
    // The user's endless stream: interface blocks until the reader goes.
    let mut generator = user
        .command("sh")
        .args(["-c", "cat shb.bin; while cat idbs.bin; do :; done"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Reaped by wait4 below, which also gives its peak memory.
    #[allow(clippy::zombie_processes)]
    let cnet = Command::new(cnet_bin())
        .args(["read", "-"])
        .stdin(generator.stdout.take().unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = cnet.id();
    let result = wait4_child(pid, Some(Duration::from_secs(60))).unwrap();
    if result.is_none() {
        // SAFETY: our own child, by PID.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        let _ = wait4_child(pid, Some(Duration::from_secs(10)));
    }
    let _ = generator.kill();
    let _ = generator.wait();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut cnet.stderr.unwrap(), &mut stderr).unwrap();
    let reaped = result.unwrap_or_else(|| panic!("cnet read kept reading for 60 s: {stderr}"));
    let max_rss_kib = reaped.max_rss_kib;
    assert_eq!(reaped.exit_code(), Some(1), "{stderr}");
    assert!(stderr.contains("more than 65536 interfaces in one section"), "{stderr}");
    assert!(max_rss_kib < 100 * 1024, "cnet read grew to {max_rss_kib} KiB");
}

#[test]
fn a_closed_stdout_is_a_quiet_exit() {
    // `cnet … | head -3`: the reader goes away; println! used to panic.
    let dir = temp_dir("epipe");
    let mut f = shb(b"x");
    f.extend(idb(b"veth0", b""));
    for seq in 0..20_000u32 {
        f.extend(epb(u64::from(seq), &udp_frame(seq), b""));
    }
    let file = dir.path().join("many.pcapng");
    std::fs::write(&file, f).unwrap();
    let file = file.to_str().unwrap();
    for args in [
        vec!["extcap", "--extcap-interfaces"],
        vec!["extcap", "--extcap-interface", "cnet-all", "--extcap-config"],
        vec!["extcap", "--help"],
        vec!["read", file],
        vec!["read", "--json", file],
        vec!["list"],
    ] {
        let mut child =
            Command::new(cnet_bin()).args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        if args[0] != "list" || out.status.success() {
            assert!(out.status.success(), "{args:?}: {}: {stderr}", out.status);
        }
    }
}

/// Names a runtime can return (`ip netns add` takes them too): a line
/// break followed by a forged extcap sentence, braces, escape sequences.
fn hostile_netns_name(prefix: &str) -> String {
    format!("{prefix}x\ninterface {{value=cnet-forged}}{{display=forged}}\x1b[2J}}{{")
}

#[test]
fn extcap_lines_carry_hostile_names_on_one_line_each() {
    let p = prefix();
    let evil = hostile_netns_name(&p);
    let _lab = Lab::build(&p, std::slice::from_ref(&evil)).unwrap();

    let r = cnet_output(&["extcap", "--extcap-interfaces"]).unwrap();
    assert!(r.status.success(), "{}", r.stderr);
    assert_terminal_safe("--extcap-interfaces", &r.stdout);
    for l in r.stdout.lines() {
        assert!(l.starts_with("extcap {") || l.starts_with("interface {value=cnet-"), "{l}");
        assert!(!l.starts_with("interface {value=cnet-forged}"), "a forged interface: {l}");
        // Every field is `{key=value}`: braces only where cnet puts them.
        assert_eq!(l.matches('{').count(), l.matches('}').count(), "{l}");
        assert_eq!(l.matches('{').count(), l.matches("}{").count() + 1, "{l}");
    }
    let ours: Vec<&str> = r.stdout.lines().filter(|l| l.contains(&p)).collect();
    assert_eq!(ours.len(), 1, "{}", r.stdout);
    let want = format!(r"{{display=cnet: netns {p}x\x0ainterface \x7bvalue=cnet-forged\x7d");
    assert!(ours[0].contains(&want), "{}", ours[0]);

    let r = cnet_output(&["extcap", "--extcap-interface", "cnet-all", "--extcap-config"]).unwrap();
    assert!(r.status.success(), "{}", r.stderr);
    assert_terminal_safe("--extcap-config", &r.stdout);
    for l in r.stdout.lines() {
        assert!(l.starts_with("arg {") || l.starts_with("value {arg="), "{l}");
        assert!(!l.contains("{value=cnet-forged}"), "a forged value: {l}");
        assert_eq!(l.matches('{').count(), l.matches("}{").count() + 1, "{l}");
    }
    assert_eq!(r.stdout.lines().filter(|l| l.contains(&p)).count(), 1, "{}", r.stdout);
}

/// Renames `eth0` inside host `i`'s namespace, as a container's root can.
fn rename_eth0(lab: &Lab, i: usize, name: &str) {
    let ns = &lab.host(i).netns;
    run(&["ip", "-n", ns, "link", "set", "eth0", "down"]).unwrap();
    run(&["ip", "-n", ns, "link", "set", "eth0", "name", name]).unwrap();
    run(&["ip", "-n", ns, "link", "set", name, "up"]).unwrap();
}

#[test]
fn hostile_names_neither_forge_labels_nor_reach_the_terminal() {
    let p = prefix();
    let blue = format!("{p}blue");
    // The hostile namespace's name holds the pairs that select `blue`, and
    // its interface name holds terminal controls.
    let evil = format!("{p}evil dir=in ns={blue} \x1b]0;pwned\x07");
    let evil_if = "e\x1b[2J\x1b[Hx";
    let lab = Lab::build(&p, &[blue.clone(), evil.clone()]).unwrap();
    rename_eth0(&lab, 1, evil_if);

    let dir = temp_dir("labels");
    let file = dir.path().join("labels.pcapng");
    let cnet = Cnet::start(&["capture", "--netns", &blue, "--netns", &evil, "-w", file.to_str().unwrap()]).unwrap();
    traffic::udp_burst(&lab, 0, 1, 7301, "blue-to-evil", 5).unwrap();
    traffic::udp_burst(&lab, 1, 0, 7302, "evil-to-blue", 5).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let res = cnet.stop().unwrap();
    assert!(res.status.success(), "{}", res.stderr);
    let capture_stderr = res.stderr;

    // `cnet read --container BLUE` selects blue's packets only: the hostile
    // name's `ns=BLUE` stays inside its quoted value.
    let tshark = tshark_fields(&file, None, &["frame.interface_name", "frame.comment"]).unwrap();
    let evil_veth = &lab.host(1).host_veth;
    let on_evil = tshark.iter().filter(|row| row[0] == *evil_veth).count();
    let on_blue = tshark.len() - on_evil;
    assert!(on_evil >= 10 && on_blue >= 10, "{on_evil} {on_blue}");
    let r = cnet_output(&["read", "--container", &blue, file.to_str().unwrap()]).unwrap();
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(r.stdout.lines().count(), on_blue, "{}", r.stdout);
    assert!(r.stdout.lines().all(|l| l.contains(&format!(" netns:{blue} eth0 "))), "{}", r.stdout);
    assert_terminal_safe("cnet read", &r.stdout);

    // Every packet reads back, in cnet and in tshark, with its own labels.
    let f = read_file(&file).unwrap_or_else(|(e, _)| panic!("{e}"));
    assert_eq!(tshark.len(), f.packets.len());
    for pkt in &f.packets {
        if f.interfaces[pkt.interface as usize].name == *evil_veth {
            assert_eq!(pkt.labels["ns"], evil);
            assert_eq!(pkt.labels["iface"], evil_if);
        } else {
            assert_eq!(pkt.labels["ns"], blue);
        }
        assert_eq!(pkt.labels.len(), 4, "{:?}", pkt.labels);
    }
    let comment = format!(r#"ns="{p}evil dir=in ns={blue} "#);
    assert!(tshark.iter().any(|row| row[1].starts_with(&comment)), "{tshark:?}");

    assert_terminal_safe("capturing on / summary", &capture_stderr);
    let quoted = format!(r#"(netns:"{p}evil dir=in ns={blue} \x1b]0;pwned\x07" "e\x1b[2J\x1b[Hx")"#);
    assert!(capture_stderr.contains(&quoted), "{capture_stderr}");
    let r = cnet_output(&["read", "--container", &evil, file.to_str().unwrap()]).unwrap();
    assert_eq!(r.stdout.lines().count(), on_evil, "{}", r.stdout);
    let r = cnet_output(&["read", file.to_str().unwrap()]).unwrap();
    assert_terminal_safe("cnet read", &r.stdout);
    assert_eq!(r.stdout.lines().count(), f.packets.len());

    // The live printer: the same escaped labels, one line per packet.
    let cnet = Cnet::start(&["capture", "--netns", &evil, "-c", "4", "udp"]).unwrap();
    traffic::udp_burst(&lab, 1, 0, 7303, "live", 4).unwrap();
    let mut cnet = cnet;
    let res = cnet.wait().unwrap();
    assert!(res.status.success(), "{}", res.stderr);
    assert_terminal_safe("live lines", &res.stdout);
    assert_terminal_safe("live stderr", &res.stderr);
    assert_eq!(res.stdout.lines().count(), 4, "{}", res.stdout);
    assert!(res.stdout.lines().all(|l| l.contains(r#"\x07" "e\x1b[2J\x1b[Hx" "#)), "{}", res.stdout);

    // An error message that quotes a hostile name.
    let r = cnet_output(&["capture", "--netns", &format!("{p}none\x1b[2J\nfake")]).unwrap();
    assert!(!r.status.success());
    assert_terminal_safe("error", &r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
}

#[test]
fn an_interface_description_longer_than_an_option_is_cut() {
    // A container's root can give its interface thousands of addresses:
    // the description (which lists them) then no longer fits in a pcapng
    // option, whose length has 16 bits. The capture used to fail.
    let p = prefix();
    let lab = Lab::build(&p, &[format!("{p}many"), format!("{p}peer")]).unwrap();
    let ns = &lab.host(0).netns;
    let batch: String = (1..=4000).map(|i| format!("address add fd00:cc::{i:x}/64 dev eth0 nodad\n")).collect();
    let mut ip = Command::new("ip").args(["-n", ns, "-batch", "-"]).stdin(Stdio::piped()).spawn().unwrap();
    ip.stdin.take().unwrap().write_all(batch.as_bytes()).unwrap();
    assert!(ip.wait().unwrap().success());

    let dir = temp_dir("long");
    let file = dir.path().join("long.pcapng");
    let cnet = Cnet::start(&["capture", "--netns", ns, "-w", file.to_str().unwrap(), "udp"]).unwrap();
    traffic::udp_burst(&lab, 0, 1, 7304, "long", 3).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let res = cnet.stop().unwrap();
    assert!(res.status.success(), "{}", res.stderr);

    let f = read_file(&file).unwrap_or_else(|(e, _)| panic!("{e}"));
    assert_eq!(f.packets.len(), 3);
    let d = &f.interfaces[0].description;
    assert!(d.len() <= 65535 && d.len() > 65000, "{}", d.len());
    assert!(d.starts_with(&format!("netns:{ns} eth0 [")), "{d}");
    assert!(d.ends_with("…[truncated]"), "{d}");
    let rows = tshark_fields(&file, None, &["frame.interface_description"]).unwrap();
    assert_eq!(rows.len(), f.packets.len());
    assert!(rows.iter().all(|r| r[0].len() > 65000), "tshark reads the whole description");
}
