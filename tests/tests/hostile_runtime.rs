//! A hostile container runtime: an unprivileged user runs a fake Engine API
//! on a unix socket and root's cnet is pointed at it (`DOCKER_HOST`). The
//! fake sends an endless chunked body, a huge body, many fat answers, and an
//! endless event line: cnet cuts each with an error naming the runtime and
//! its address, and its memory stays bounded (peak RSS measured).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cnet_tests::reap::wait4_child;
use cnet_tests::users::ThrowawayUser;
use cnet_tests::{Cnet, Lab, cnet_bin};

/// The fake runtime. Arguments: socket path (or `tcp:PORT`), mode, log file. Modes:
/// `normal` answers like Docker with one exited container and keeps the
/// event stream open and quiet; `chunked` answers the list with an endless
/// chunked body; `huge` with a 200 MiB body; `fat` lists ten containers whose
/// inspects are 40 MiB each; `events` answers normally but sends one endless
/// event line. What it sent before cnet cut it goes to the log.
const FAKE_RUNTIME: &str = r#"
import json, socketserver, sys, time

sock_path, mode, log_path = sys.argv[1:4]

def log(msg):
    with open(log_path, "a") as f:
        f.write(msg + "\n")

def cid(i):
    return "%064x" % (0xc5c5 + i)

def summary(i):
    return {"Id": cid(i), "Names": ["/csrweb%d" % i], "Image": "csr-image", "State": "exited"}

def inspect(i, label=""):
    return {"Id": cid(i), "Name": "/csrweb%d" % i, "State": {"Status": "exited", "Running": False, "Pid": 0},
            "Config": {"Image": "csr-image", "Labels": {"csr": label}}, "HostConfig": {"NetworkMode": "bridge"}}

def head(w, extra):
    w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + extra + b"\r\n")

def send_json(w, obj):
    body = json.dumps(obj).encode()
    head(w, b"Content-Length: %d\r\n" % len(body))
    w.write(body)

def endless_chunked(w, what, payload):
    head(w, b"Transfer-Encoding: chunked\r\n")
    frame = b"%x\r\n" % len(payload) + payload + b"\r\n"
    sent = 0
    try:
        while True:
            w.write(frame)
            sent += len(payload)
    except OSError:
        log("%s cut after %d bytes" % (what, sent))

def huge(w, what, size):
    head(w, b"Content-Length: %d\r\n" % size)
    chunk, sent = b" " * 65536, 0
    try:
        w.write(b"[")
        sent = 1
        while sent < size - 1:
            n = min(len(chunk), size - 1 - sent)
            w.write(chunk[:n])
            sent += n
        w.write(b"]")
        log("%s sent whole: %d bytes" % (what, size))
    except OSError:
        log("%s cut after %d bytes" % (what, sent))

class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline(65536)
        if not line:
            return
        while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
            pass
        path = line.split()[1].decode().split("?")[0]
        w = self.wfile
        try:
            if path.endswith("/containers/json"):
                if mode == "chunked":
                    endless_chunked(w, "list", b"[" * 65536)
                elif mode == "huge":
                    huge(w, "list", 200 << 20)
                elif mode == "fat":
                    send_json(w, [summary(i) for i in range(10)])
                else:
                    send_json(w, [summary(0)])
            elif path.endswith("/json"):
                i = int(path.split("/")[-2], 16) - 0xc5c5
                send_json(w, inspect(i, "x" * (40 << 20) if mode == "fat" else ""))
                if mode == "fat":
                    log("inspect %d sent" % i)
            elif path.endswith("/events"):
                if mode == "events":
                    endless_chunked(w, "events", b"{" * 65536)
                else:
                    head(w, b"Transfer-Encoding: chunked\r\n")
                    while True:
                        time.sleep(1)
            else:
                w.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            pass

class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

class TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True

if sock_path.startswith("tcp:"):
    server = TcpServer(("127.0.0.1", int(sock_path[4:])), Handler)
else:
    server = UnixServer(sock_path, Handler)
log("listening")
server.serve_forever()
"#;

static DIR_COUNTER: AtomicU32 = AtomicU32::new(0);

/// The system's Python: root's PATH may lead to an interpreter under /root
/// that the throwaway user cannot run.
const PYTHON: &str = "/usr/bin/python3";

/// Where the fake runtime listens, inside a lab namespace, for DOCKER_HOST=tcp://.
const TCP_PORT: u16 = 2375;

/// The hostile user's fake runtime in a directory of its own under /tmp,
/// all removed on drop.
struct FakeRuntime {
    dir: PathBuf,
    server: Child,
    /// The lab namespace whose loopback it listens on (tcp), where cnet runs too.
    netns: Option<String>,
    _user: ThrowawayUser,
}

impl FakeRuntime {
    /// On a unix socket.
    fn start(mode: &str) -> FakeRuntime {
        FakeRuntime::spawn(mode, None)
    }

    /// On 127.0.0.1 of the lab namespace `netns`.
    fn start_tcp(mode: &str, netns: &str) -> FakeRuntime {
        FakeRuntime::spawn(mode, Some(netns))
    }

    fn spawn(mode: &str, netns: Option<&str>) -> FakeRuntime {
        let user = ThrowawayUser::new("csr").unwrap();
        let n = DIR_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(format!("/tmp/csr-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(&dir, Some(user.uid), Some(user.gid)).unwrap();
        let script = dir.join("fake-runtime.py");
        std::fs::write(&script, FAKE_RUNTIME).unwrap();
        let listen = match netns {
            None => dir.join("docker.sock").display().to_string(),
            Some(_) => format!("tcp:{TCP_PORT}"),
        };
        let mut cmd = match netns {
            None => user.command(PYTHON),
            // Into the namespace as root, then the user (no groups) for the server.
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/var/run/netns/{ns}")).args([
                    "setpriv",
                    &format!("--reuid={}", user.uid),
                    &format!("--regid={}", user.gid),
                    "--clear-groups",
                    PYTHON,
                ]);
                c
            }
        };
        let server = cmd.arg(&script).arg(&listen).arg(mode).arg(dir.join("log")).stdin(Stdio::null()).spawn().unwrap();
        let fake = FakeRuntime { dir, server, netns: netns.map(str::to_string), _user: user };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !fake.log().contains("listening") {
            assert!(Instant::now() < deadline, "the fake runtime did not listen within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        fake
    }

    fn sock(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    /// "docker at ADDRESS", as cnet's messages name it.
    fn who(&self) -> String {
        match self.netns {
            None => format!("docker at unix://{}", self.sock().display()),
            Some(_) => format!("docker at tcp://127.0.0.1:{TCP_PORT}"),
        }
    }

    /// `DOCKER_HOST=unix://…` (or tcp://), and the other runtimes pointed
    /// at nothing, so cnet talks to the fake only.
    fn env(&self) -> Vec<String> {
        let host = match self.netns {
            None => format!("unix://{}", self.sock().display()),
            Some(_) => format!("tcp://127.0.0.1:{TCP_PORT}"),
        };
        vec![
            format!("DOCKER_HOST={host}"),
            format!("CNET_PODMAN_SOCKET={}", self.dir.join("no-podman.sock").display()),
            format!("CNET_CONTAINERD_SOCKET={}", self.dir.join("no-containerd.sock").display()),
        ]
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for FakeRuntime {
    fn drop(&mut self) {
        // The server runs as the throwaway user: ended by its PID, before
        // the user is removed.
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How a cnet run that was expected to end on its own ended.
struct Ended {
    ok: bool,
    stdout: String,
    stderr: String,
    elapsed: Duration,
    /// Peak resident memory of the cnet process (getrusage of the child).
    max_rss_mib: u64,
}

/// Runs `cnet ARGS` against the fake runtime, killing it after 60 s.
fn run_cnet(fake: &FakeRuntime, args: &[&str]) -> Ended {
    let out_path = fake.dir.join("cnet.out");
    let err_path = fake.dir.join("cnet.err");
    // nsenter execs cnet: the child's peak memory is cnet's.
    let mut cmd = match &fake.netns {
        None => Command::new(cnet_bin()),
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/var/run/netns/{ns}")).arg(cnet_bin());
            c
        }
    };
    cmd.args(args).env_remove("DOCKER_HOST");
    for kv in fake.env() {
        let (k, v) = kv.split_once('=').unwrap();
        cmd.env(k, v);
    }
    let start = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let Some(reaped) = wait4_child(pid as u32, Some(Duration::from_secs(60))).unwrap() else {
        // SAFETY: killing our own child by PID; reaped by the next wait4.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let _ = wait4_child(pid as u32, None);
        panic!("cnet {} did not end within 60 s", args.join(" "));
    };
    let elapsed = start.elapsed();
    // The child was reaped by wait4 above: std must not wait for it again.
    std::mem::forget(child);
    let read = |p: &Path| {
        let mut s = String::new();
        let _ = std::fs::File::open(p).and_then(|mut f| f.read_to_string(&mut s));
        s
    };
    Ended {
        ok: reaped.success(),
        stdout: read(&out_path),
        stderr: read(&err_path),
        elapsed,
        max_rss_mib: reaped.max_rss_kib / 1024,
    }
}

/// Peak resident memory of a running process, from /proc.
fn vm_hwm_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
}

/// What cnet's error must say of a cut answer: who, where, what.
fn assert_cut(e: &Ended, fake: &FakeRuntime, what: &str) {
    let who = fake.who();
    assert!(!e.ok, "cnet succeeded on a hostile answer: {}", e.stderr);
    assert!(e.stderr.contains(&who) && e.stderr.contains(what), "stderr lacks {who:?} … {what:?}:\n{}", e.stderr);
    assert!(e.stderr.contains("check what listens there (DOCKER_HOST chooses the address)"), "{}", e.stderr);
    assert!(!e.stderr.contains("panicked"), "{}", e.stderr);
    assert!(e.elapsed < Duration::from_secs(20), "cnet took {:?} to give up", e.elapsed);
    assert!(e.max_rss_mib < 200, "cnet's peak RSS reached {} MiB", e.max_rss_mib);
}

/// The fake runtime speaks enough Docker for cnet: the bounded connections
/// carry bollard's requests and answers as before.
#[test]
fn a_sane_fake_runtime_is_listed() {
    let fake = FakeRuntime::start("normal");
    let e = run_cnet(&fake, &["list"]);
    assert!(e.ok, "{}", e.stderr);
    assert!(e.stdout.contains("csrweb0") && e.stdout.contains("is not running (state exited)"), "{}", e.stdout);
}

#[test]
fn an_endless_chunked_list_is_cut_at_64_mib() {
    let fake = FakeRuntime::start("chunked");
    let e = run_cnet(&fake, &["list"]);
    assert_cut(&e, &fake, "sent a response larger than 64 MiB to GET /containers/json");
    eprintln!("cnet list: {:?}, peak RSS {} MiB; fake: {}", e.elapsed, e.max_rss_mib, fake.log());
    assert!(fake.log().contains("list cut after"), "the fake runtime was not cut off: {}", fake.log());
}

#[test]
fn a_200_mib_list_is_cut_at_64_mib() {
    let fake = FakeRuntime::start("huge");
    let e = run_cnet(&fake, &["list"]);
    assert_cut(&e, &fake, "sent a response larger than 64 MiB to GET /containers/json");
    eprintln!("cnet list: {:?}, peak RSS {} MiB; fake: {}", e.elapsed, e.max_rss_mib, fake.log());
    assert!(fake.log().contains("list cut after"), "cnet read the whole 200 MiB: {}", fake.log());

    // A capture following containers fails the same way, before creating
    // its file.
    let file = fake.dir.join("never.pcapng");
    let e = run_cnet(&fake, &["capture", "--container", "csrweb0", "-w", file.to_str().unwrap()]);
    assert_cut(&e, &fake, "sent a response larger than 64 MiB to GET /containers/json");
    assert!(!file.exists(), "a capture that never started left {}", file.display());
}

/// The same over DOCKER_HOST=tcp:// (the fake on the loopback of a lab
/// namespace, cnet in that namespace).
#[test]
fn an_endless_chunked_list_over_tcp_is_cut_at_64_mib() {
    let lab = Lab::new(1).unwrap();
    let fake = FakeRuntime::start_tcp("chunked", &lab.host(0).netns);
    let e = run_cnet(&fake, &["list"]);
    assert_cut(&e, &fake, "sent a response larger than 64 MiB to GET /containers/json");
    eprintln!("cnet list: {:?}, peak RSS {} MiB; fake: {}", e.elapsed, e.max_rss_mib, fake.log());
    assert!(fake.log().contains("list cut after"), "the fake runtime was not cut off: {}", fake.log());
}

/// Answers each under 64 MiB, but many of them: one listing reads at most
/// 256 MiB in all.
#[test]
fn many_fat_inspects_are_cut_at_256_mib_per_listing() {
    let fake = FakeRuntime::start("fat");
    let e = run_cnet(&fake, &["list"]);
    eprintln!("cnet list: {:?}, peak RSS {} MiB; fake: {}", e.elapsed, e.max_rss_mib, fake.log());
    let who = fake.who();
    assert!(!e.ok, "cnet kept reading: {}", e.stderr);
    assert!(
        e.stderr.contains(&format!("{who} sent more than 256 MiB in all for one listing of its containers")),
        "{}",
        e.stderr
    );
    // Six whole 40 MiB inspects fit in 256 MiB; the seventh is cut.
    let sent = fake.log().matches(" sent").count();
    assert!(sent <= 7, "the fake sent {sent} inspects: {}", fake.log());
    // What cnet keeps of each inspect (its labels), about 40 MiB each, and
    // the answer being read: bounded by the listing total, not the runtime.
    assert!(e.max_rss_mib < 500, "cnet's peak RSS reached {} MiB", e.max_rss_mib);
}

/// `--all` follows Docker's event stream. An endless line on it is cut
/// after 1 MiB with a warning naming the runtime; the capture goes on (by
/// polling), and ends cleanly with a valid file.
#[test]
fn an_endless_event_line_is_cut_and_the_capture_goes_on() {
    let fake = FakeRuntime::start("events");
    let file = fake.dir.join("all.pcapng");
    let mut args: Vec<String> = fake.env();
    args.push(cnet_bin().display().to_string());
    args.extend(["capture", "--all", "-w", file.to_str().unwrap()].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // `env` execs cnet: the PID is cnet's.
    let mut cnet = Cnet::start_bin(Path::new("env"), &args).unwrap();
    let who = fake.who();
    let line = cnet.wait_for_stderr("sent an event line longer than 1 MiB", Duration::from_secs(20)).unwrap();
    assert!(line.contains(&who) && line.contains("follows docker's containers by polling only"), "{line}");
    // Long enough for the old way (a line buffered until its newline) to
    // have read hundreds of MiB.
    std::thread::sleep(Duration::from_secs(2));
    let hwm = vm_hwm_mib(cnet.pid());
    assert!(std::path::Path::new(&format!("/proc/{}", cnet.pid())).exists(), "cnet exited on a hostile event stream");
    let r = cnet.stop().unwrap();
    eprintln!("peak RSS {hwm} MiB; fake: {}\n{}", fake.log(), r.stderr);
    assert!(r.status.success(), "{}", r.stderr);
    assert!(hwm < 200, "cnet's peak RSS reached {hwm} MiB");
    assert!(fake.log().contains("events cut after"), "the event stream was not cut: {}", fake.log());
    let out = Command::new("tshark").arg("-r").arg(&file).output().unwrap();
    assert!(out.status.success(), "tshark cannot read the file: {}", String::from_utf8_lossy(&out.stderr));
}
