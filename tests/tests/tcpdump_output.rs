//! cnet prints packets the way tcpdump does: the same lab conversation
//! (ARP, ping, UDP, an ICMP port unreachable, TCP with options) captured
//! once, then `tcpdump -r FILE -n FLAGS` against `cnet read FILE FLAGS`,
//! line by line, without cnet's label and direction. Run as root.
//!
//! Known differences, not compared here: cnet prints UTC time stamps with
//! nanoseconds (tcpdump: local time, microseconds unless `--nano`; the test
//! runs tcpdump with TZ=UTC and --nano), DNS messages (cnet keeps `UDP,
//! length N, DNS …`), IGMP (cnet: `ip-proto-2`), and IPv6 neighbour
//! discovery options under -v.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cnet_tests::{Cnet, Lab, TempDir, cnet_output, traffic, tshark_fields};

/// Captures a conversation between two lab hosts from host 0's namespace
/// into `file` with `--print` (so the printed lines come back too).
fn capture(lab: &Lab, file: &Path) -> String {
    let ns = lab.host(0).netns.clone();
    let cnet =
        Cnet::start(&["capture", "--netns", &ns, "-w", file.to_str().unwrap(), "--print", "arp or icmp or udp or tcp"])
            .expect("start cnet");
    lab.ping(0, 1, 2).expect("ping");
    traffic::udp_burst(lab, 0, 1, 9999, "tcpdump-out", 2).expect("udp");
    // Nothing listens on 9998: host 1 answers with ICMP port unreachable.
    let to = SocketAddr::new(lab.host(1).ip.into(), 9998);
    let tx = lab.in_ns(0, || UdpSocket::bind("0.0.0.0:0")).expect("bind");
    tx.send_to(b"anyone?", to).expect("send");
    std::thread::sleep(Duration::from_millis(200));
    traffic::tcp_exchange(lab, 0, 1, 7100, b"hello over tcp\r\n".to_vec(), b"bye\n".to_vec()).expect("tcp");
    std::thread::sleep(Duration::from_millis(500));
    let r = cnet.stop().expect("stop cnet");
    assert!(r.status.success(), "{}", r.stderr);
    r.stdout
}

fn tcpdump(file: &Path, flags: &[&str]) -> Vec<String> {
    let out = Command::new("tcpdump")
        .env("TZ", "UTC")
        .args(["-r", file.to_str().unwrap(), "-n", "--nano"])
        .args(flags)
        .output()
        .expect("run tcpdump");
    assert!(out.status.success(), "tcpdump {flags:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect()
}

/// cnet's lines without the label and direction of host 0's interface.
fn cnet_read(file: &Path, label: &str, flags: &[&str]) -> Vec<String> {
    let mut args = vec!["read", file.to_str().unwrap()];
    args.extend_from_slice(flags);
    let r = cnet_output(&args).expect("run cnet read");
    assert!(r.status.success(), "cnet read {flags:?}: {}", r.stderr);
    r.stdout
        .lines()
        .map(|l| {
            let l = l.replacen(&format!("{label} in  "), "", 1);
            l.replacen(&format!("{label} out "), "", 1)
        })
        .collect()
}

#[test]
fn read_prints_what_tcpdump_prints() {
    let lab = Lab::new(2).expect("lab");
    let dir = TempDir::new("cpr-tcpdump").expect("tempdir");
    let file = dir.path().join("conv.pcapng");
    let printed = capture(&lab, &file);
    let label = format!("netns:{} eth0", lab.host(0).netns);

    // --print -w: a valid file, and the same packets printed meanwhile.
    let frames = tshark_fields(&file, None, &["frame.number"]).expect("tshark reads the file");
    assert!(frames.len() >= 12, "{frames:?}");
    let printed: Vec<&str> = printed.lines().filter(|l| l.contains(&label)).collect();
    assert_eq!(printed.len(), frames.len(), "{printed:#?}");

    let plain = tcpdump(&file, &[]);
    assert!(plain.iter().any(|l| l.contains("ICMP 10.213.0.11 udp port 9998 unreachable, length 43")), "{plain:#?}");
    assert!(plain.iter().any(|l| l.contains("Flags [S], seq") && l.contains("options [mss")), "{plain:#?}");

    for flags in [
        &[][..],
        &["-e"],
        &["-x"],
        &["-xx"],
        &["-X"],
        &["-XX"],
        &["-A"],
        &["-t"],
        &["-tt"],
        &["-ttt"],
        &["-tttt"],
        &["-ttttt"],
        &["-S"],
        &["-v"],
        &["-vv"],
        &["-e", "-v", "-X"],
    ] {
        let want = tcpdump(&file, flags);
        let got = cnet_read(&file, &label, flags);
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            assert_eq!(g, w, "line {i} with {flags:?}\ntcpdump:\n{}\ncnet:\n{}", want.join("\n"), got.join("\n"));
        }
        assert_eq!(got.len(), want.len(), "{flags:?}\ntcpdump:\n{}\ncnet:\n{}", want.join("\n"), got.join("\n"));
    }

    // --count, -Q.
    let r = cnet_output(&["read", file.to_str().unwrap(), "--count"]).unwrap();
    assert_eq!(r.stdout.trim(), format!("{} packets", frames.len()));
    let r = cnet_output(&["capture", "-r", file.to_str().unwrap(), "-Q", "out", "--count"]).unwrap();
    let outs = cnet_read(&file, "", &["-Q", "out"]).len();
    assert_eq!(r.stdout.trim(), format!("{outs} packets"));
    assert!(outs > 0 && outs < frames.len());
}

#[test]
fn print_needs_a_file_and_count_needs_one_to_read() {
    let r = cnet_output(&["capture", "-i", "lo", "--print"]).unwrap();
    assert!(!r.status.success() && r.stderr.contains("add -w FILE"), "{}", r.stderr);
    let r = cnet_output(&["capture", "-i", "lo", "--count"]).unwrap();
    assert!(!r.status.success() && r.stderr.contains("-r FILE"), "{}", r.stderr);
}
