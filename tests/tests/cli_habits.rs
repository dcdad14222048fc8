//! What a tcpdump user trips over: tcpdump's letters cnet lacks, `-s`
//! beyond 65535, `inbound` in a filter, `-i any` and `-D`, a glob that
//! matches nothing, an unreachable runtime in `cnet list`, completions and
//! the manual page, and a cnet that is not root. Each error is checked for
//! its message and its exit status. Run as root.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cnet_tests::users::ThrowawayUser;
use cnet_tests::{Cnet, Lab, TempDir, cnet_bin, cnet_output};

fn code(r: &cnet_tests::CnetResult) -> Option<i32> {
    r.status.code()
}

#[test]
fn tcpdump_letters_cnet_lacks_say_what_to_use_instead() {
    for (args, start) in [
        (
            vec!["capture", "-p", "-i", "lo"],
            "cnet: error: -p is tcpdump's no promiscuous mode; cnet does not support it: ",
        ),
        (
            vec!["capture", "-i", "lo", "-K"],
            "cnet: error: -K is tcpdump's no checksum verification; cnet does not support it: ",
        ),
        (vec!["capture", "-y", "EN10MB"], "cnet: error: -y is tcpdump's link type; cnet does not support it: "),
        (
            vec!["capture", "--immediate-mode"],
            "cnet: error: --immediate-mode is tcpdump's immediate mode; cnet does not support it: ",
        ),
    ] {
        let r = cnet_output(&args).unwrap();
        assert_eq!(code(&r), Some(2), "{args:?}: {}", r.stderr);
        assert!(r.stderr.starts_with(start), "{args:?}: {}", r.stderr);
        assert!(!r.stderr.contains("tip: to pass"), "{}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    }
    // An option that is nobody's keeps clap's message.
    let r = cnet_output(&["capture", "--frobnicate"]).unwrap();
    assert_eq!(code(&r), Some(2));
    assert!(r.stderr.contains("unexpected argument '--frobnicate'"), "{}", r.stderr);
}

#[test]
fn snaplen_beyond_65535_is_refused_with_the_range() {
    let r = cnet_output(&["capture", "-s", "65536", "-i", "lo"]).unwrap();
    assert_eq!(code(&r), Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("65536 is not in 0..=65535"), "{}", r.stderr);
}

#[test]
fn inbound_and_outbound_point_to_the_direction_option() {
    for (expr, d) in [("inbound", "in"), ("tcp and outbound", "out")] {
        let r = cnet_output(&["capture", "-i", "lo", expr]).unwrap();
        assert_eq!(code(&r), Some(1), "{}", r.stderr);
        assert!(r.stderr.contains(&format!("-Q {d} (or --direction {d})")), "{}", r.stderr);
        assert!(!r.stderr.contains("ancillary") && !r.stderr.contains("linktype"), "{}", r.stderr);
    }
}

#[test]
fn snaplen_one_is_one_byte() {
    let lab = Lab::new(1).unwrap();
    let cnet = Cnet::start(&["capture", "--netns", &lab.hosts[0].netns, "-s", "1", "-w", "/dev/null"]).unwrap();
    let r = cnet.stop().unwrap();
    assert!(r.stderr.contains("snaplen 1 byte)"), "{}", r.stderr);
}

#[test]
fn list_interfaces_numbers_veths_with_their_owners() {
    let lab = Lab::new(2).unwrap();
    let r = cnet_output(&["capture", "-D"]).unwrap();
    assert_eq!(code(&r), Some(0), "{}", r.stderr);
    for h in &lab.hosts {
        let line = r.stdout.lines().find(|l| l.contains(&format!(".{} ", h.host_veth))).unwrap_or_else(|| {
            panic!("{} not listed:\n{}", h.host_veth, r.stdout);
        });
        let (n, rest) = line.split_once('.').unwrap();
        assert!(n.parse::<u32>().is_ok(), "{line}");
        assert_eq!(rest, format!("{} [Up, Running] (netns:{} eth0)", h.host_veth, h.netns), "{line}");
    }
    assert!(
        r.stdout.lines().any(|l| l.ends_with(".any (every interface above, labeled with its owner)")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.lines().any(|l| l.contains(".lo [") && l.ends_with("(host)")), "{}", r.stdout);
}

#[test]
fn any_captures_every_veth_under_its_owner() {
    let lab = Lab::new(2).unwrap();
    let cnet = Cnet::start(&["capture", "-i", "any", "-w", "/dev/null"]).unwrap();
    lab.ping(0, 1, 1).unwrap();
    let r = cnet.stop().unwrap();
    let capturing = r.stderr.lines().find(|l| l.starts_with("cnet: capturing on")).unwrap().to_string();
    for h in &lab.hosts {
        assert!(capturing.contains(&format!("{} (netns:{} eth0)", h.host_veth, h.netns)), "{capturing}");
    }
    assert!(!capturing.contains(" lo,") && !capturing.contains("eth0,"), "{capturing}");
}

/// A minimal Docker Engine API on a unix socket: one exited container.
const FAKE_DOCKER: &str = r#"
import json, socketserver, sys
path = sys.argv[1]
CID = "%064x" % 0xcc1
class H(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline(65536)
        if not line:
            return
        while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
            pass
        p = line.split()[1].decode().split("?")[0]
        if p.endswith("/containers/json"):
            body = [{"Id": CID, "Names": ["/cclweb-1"], "Image": "busybox", "State": "exited"}]
        elif p.endswith("/json"):
            body = {"Id": CID, "Name": "/cclweb-1", "State": {"Status": "exited", "Running": False, "Pid": 0},
                    "Config": {"Image": "busybox", "Labels": {}}, "HostConfig": {"NetworkMode": "bridge"}}
        else:
            self.wfile.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            return
        b = json.dumps(body).encode()
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(b) + b)
class S(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
S(path, H).serve_forever()
"#;

struct FakeDocker {
    dir: TempDir,
    server: std::process::Child,
}

impl FakeDocker {
    fn start() -> FakeDocker {
        let dir = TempDir::new("ccl-docker").unwrap();
        let sock = dir.path().join("docker.sock");
        let server =
            Command::new("/usr/bin/python3").args(["-c", FAKE_DOCKER]).arg(&sock).stdin(Stdio::null()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            assert!(Instant::now() < deadline, "the fake Docker did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        FakeDocker { dir, server }
    }

    fn cnet(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(cnet_bin());
        cmd.args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.dir.path().join("docker.sock").display()))
            .env("CNET_PODMAN_SOCKET", self.dir.path().join("none.sock"))
            .env("CNET_CONTAINERD_SOCKET", self.dir.path().join("none.sock"));
        cmd
    }
}

impl Drop for FakeDocker {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

#[test]
fn a_glob_that_matches_nothing_is_an_error_with_the_closest_names() {
    let fake = FakeDocker::start();
    let out = fake.cnet(&["capture", "--container", "cclwbe-*"]).stdin(Stdio::null()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no container matches \"cclwbe-*\"") && err.contains("closest: docker:cclweb-1"), "{err}");
    assert!(err.contains("--wait"), "{err}");
}

#[test]
fn list_warns_about_an_unreachable_runtime_and_lists_the_others() {
    // A port that refuses: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let fake = FakeDocker::start();
    for (host, addr) in [
        ("unix:///nonexistent-ccl/docker.sock".to_string(), "/nonexistent-ccl/docker.sock".to_string()),
        (format!("tcp://127.0.0.1:{port}"), format!("tcp://127.0.0.1:{port}")),
    ] {
        // The fake answers as Podman (same API): the other runtime listed.
        let out = Command::new(cnet_bin())
            .arg("list")
            .env("DOCKER_HOST", &host)
            .env("CNET_PODMAN_SOCKET", fake.dir.path().join("docker.sock"))
            .env("CNET_CONTAINERD_SOCKET", fake.dir.path().join("none.sock"))
            .output()
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        let warning = stderr.lines().find(|l| l.starts_with("cnet: warning: docker")).unwrap_or_else(|| {
            panic!("no warning for docker at {host}: {stderr}");
        });
        assert!(warning.contains(&addr) && warning.ends_with("its containers are not listed"), "{warning}");
        assert!(!stderr.contains("hyper") && !stderr.contains("legacy client"), "{stderr}");
        assert!(stdout.lines().any(|l| l.starts_with("podman ") && l.contains("cclweb-1")), "{stdout}");
    }
}

#[test]
fn completions_parse_and_the_manual_page_renders() {
    let r = cnet_output(&["completions", "bash"]).unwrap();
    assert_eq!(code(&r), Some(0), "{}", r.stderr);
    let dir = TempDir::new("ccl-compl").unwrap();
    let script = dir.path().join("cnet.bash");
    std::fs::write(&script, &r.stdout).unwrap();
    let check = Command::new("bash").arg("-n").arg(&script).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert!(r.stdout.contains("complete -F _cnet"), "{}", &r.stdout[..200.min(r.stdout.len())]);
    for shell in ["zsh", "fish"] {
        let r = cnet_output(&["completions", shell]).unwrap();
        assert_eq!(code(&r), Some(0), "{}", r.stderr);
        assert!(r.stdout.contains("capture") && r.stdout.contains("netns"), "{shell}: {}", r.stdout);
    }
    let r = cnet_output(&["completions", "tcsh"]).unwrap();
    assert_eq!(code(&r), Some(2), "{}", r.stderr);

    for page in [&["man"][..], &["man", "capture"][..]] {
        let r = cnet_output(page).unwrap();
        assert_eq!(code(&r), Some(0), "{}", r.stderr);
        assert!(r.stdout.contains(".TH cnet") && r.stdout.contains(".SH NAME"), "{}", r.stdout);
        if Command::new("groff").arg("-v").output().is_ok_and(|o| o.status.success()) {
            let mut g = Command::new("groff")
                .args(["-k", "-man", "-Tutf8", "-ww"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            g.stdin.take().unwrap().write_all(r.stdout.as_bytes()).unwrap();
            let out = g.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
            assert!(text.contains("General Commands Manual"), "{text}");
        }
    }
    let r = cnet_output(&["man", "nosuch"]).unwrap();
    assert_eq!(code(&r), Some(1));
    assert!(r.stderr.contains("no command \"nosuch\": cnet has capture"), "{}", r.stderr);
}

/// A copy of cnet with the README's `setcap` capabilities, run by a user
/// who is not root: what each target kind still lacks is named exactly.
struct CappedCnet {
    dir: TempDir,
    user: ThrowawayUser,
}

impl CappedCnet {
    fn new() -> CappedCnet {
        let user = ThrowawayUser::new("ccl").unwrap();
        let dir = TempDir::new("ccl-caps").unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.path().join("cnet");
        std::fs::copy(cnet_bin(), &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = Command::new("setcap")
            .args(["cap_bpf,cap_perfmon,cap_net_admin,cap_sys_admin+ep"])
            .arg(&bin)
            .output()
            .unwrap();
        assert!(out.status.success(), "setcap: {}", String::from_utf8_lossy(&out.stderr));
        CappedCnet { dir, user }
    }

    fn run(&self, args: &[&str], env: &[(&str, String)]) -> (Option<i32>, String, String) {
        let mut cmd = self.user.command(self.dir.path().join("cnet").to_str().unwrap());
        cmd.args(args).stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[test]
fn without_root_each_target_names_what_it_lacks() {
    let capped = CappedCnet::new();
    let lab = Lab::new(1).unwrap();

    // Another user's process: the ptrace check on /proc/PID/ns/net.
    let (code, _, err) = capped.run(&["capture", "--pid", "1", "-c", "1"], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("permission denied while reading /proc/1/ns/net: cnet needs CAP_SYS_PTRACE"), "{err}");
    assert!(!err.contains("CAP_SYS_ADMIN") && !err.contains("needs root"), "{err}");

    // A runtime socket only root may open.
    let sockdir = TempDir::new("ccl-sock").unwrap();
    std::fs::set_permissions(sockdir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = sockdir.path().join("docker.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o660)).unwrap();
    let env = [
        ("DOCKER_HOST", format!("unix://{}", sock.display())),
        ("CNET_PODMAN_SOCKET", sockdir.path().join("none").display().to_string()),
        ("CNET_CONTAINERD_SOCKET", sockdir.path().join("none").display().to_string()),
    ];
    let (code, _, err) = capped.run(&["capture", "--container", "web"], &env);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "permission denied on {}: it belongs to root:root, mode 660 and only root can open it",
            sock.display()
        )),
        "{err}"
    );

    // A named namespace is enough with these capabilities: it is captured.
    let (code, _, err) = capped.run(&["capture", "--netns", &lab.hosts[0].netns, "--duration", "0.3", "-q"], &[]);
    assert_eq!(code, Some(0), "{err}");

    // Wireshark run by this user: only what it can capture is offered.
    let (code, out, err) = capped.run(&["extcap", "--extcap-interfaces"], &env);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&format!("cnet-netns-{}", lab.hosts[0].netns)), "{out}");
}

#[test]
fn extcap_without_capabilities_offers_nothing_to_fail() {
    let user = ThrowawayUser::new("ccl").unwrap();
    let dir = TempDir::new("ccl-ext").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("cnet");
    std::fs::copy(cnet_bin(), &bin).unwrap();
    let _lab = Lab::new(1).unwrap();
    let out = user.command(bin.to_str().unwrap()).args(["extcap", "--extcap-interfaces"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("extcap {version="), "{stdout}");
    assert!(!stdout.contains("interface {"), "{stdout}");
    assert!(!stdout.contains("example.invalid"), "{stdout}");
}

#[test]
fn extcap_install_explains_itself_and_takes_one_folder() {
    for verb in ["install", "uninstall"] {
        let r = cnet_output(&["extcap", verb, "--help"]).unwrap();
        assert!(r.status.success(), "{}", r.stderr);
        assert!(r.stdout.contains(&format!("Usage: cnet extcap {verb} [--user | --system]")), "{}", r.stdout);
        // Both folders at once is refused before anything is written.
        let r = cnet_output(&["extcap", verb, "--user", "--system"]).unwrap();
        assert_eq!(r.status.code(), Some(1), "{}", r.stderr);
        assert!(r.stderr.contains("--user and --system name different folders"), "{}", r.stderr);
    }
}

#[test]
fn wiresharks_filter_check_points_to_the_direction_option_too() {
    let check = |expr: &str| {
        let r = cnet_output(&["extcap", "--extcap-interface", "cnet-all", "--extcap-capture-filter", expr]).unwrap();
        assert!(r.status.success(), "{}", r.stderr);
        r.stdout
    };
    // Wireshark shows what is printed as the reason; nothing means valid.
    assert!(check("tcp and inbound").contains("-Q in (or --direction in)"));
    assert!(check("outbound").contains("-Q out"));
    assert_eq!(check("tcp port 80 and not icmp"), "");
    assert!(check("tcp port").contains("syntax error"));
}
