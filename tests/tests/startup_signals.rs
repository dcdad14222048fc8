//! SIGINT and SIGTERM while a capture is still starting: waiting for the
//! reader of a `-w` fifo (a user's fifo that nobody opens), and compiling a
//! huge filter expression (libpcap takes seconds). cnet ends within a
//! second either way, exits 0 as tcpdump does when stopped, leaves no hook
//! on the target's veth and writes no file.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use cnet_tests::users::ThrowawayUser;
use cnet_tests::{Lab, cnet_bin, hooked_programs, run, tshark_fields};

/// A directory of the throwaway user's own under /tmp, removed on drop.
struct UserDir(PathBuf);

impl UserDir {
    fn new(user: &ThrowawayUser, tag: &str) -> UserDir {
        let dir = PathBuf::from(format!("/tmp/csr-{tag}-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(&dir, Some(user.uid), Some(user.gid)).unwrap();
        UserDir(dir)
    }
}

impl Drop for UserDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A cnet process whose stderr goes to a file; killed on drop if running.
struct Running {
    child: Child,
    stderr: PathBuf,
}

impl Running {
    fn spawn(args: &[&str], stderr: PathBuf) -> Running {
        let child = Command::new(cnet_bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Running { child, stderr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until `ready` holds, failing after 30 s or if cnet exits.
    fn wait_until(&mut self, what: &str, ready: impl Fn(u32) -> bool) {
        assert!(self.wait_at_most(what, Duration::from_secs(30), ready), "cnet did not reach {what} within 30 s");
    }

    /// Waits until `ready` holds or `max` has passed: whether it held.
    /// Fails if cnet exits.
    fn wait_at_most(&mut self, what: &str, max: Duration, ready: impl Fn(u32) -> bool) -> bool {
        let deadline = Instant::now() + max;
        while !ready(self.pid()) {
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("cnet exited ({st}) before {what}: {}", self.stderr());
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    fn signal(&self, sig: libc::c_int) -> Instant {
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(self.pid() as i32, sig) };
        Instant::now()
    }

    /// How long cnet took to exit after `since`, or a failure after 30 s.
    fn exit_after(&mut self, since: Instant) -> (ExitStatus, Duration) {
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (st, since.elapsed());
            }
            assert!(since.elapsed() < Duration::from_secs(30), "cnet did not exit: {}", self.stderr());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether process `pid` holds a descriptor on `path`.
fn holds(pid: u32, path: &Path) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == path))
}

/// Whether process `pid` has a thread named `name`.
fn has_thread(pid: u32, name: &str) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks.flatten().any(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
}

fn assert_stopped_cleanly(r: &Running, st: ExitStatus, took: Duration, sig: &str, veth: &str) {
    let stderr = r.stderr();
    eprintln!("{sig}: cnet exited {st} after {took:?}");
    assert!(took < Duration::from_secs(2), "cnet took {took:?} to answer {sig}: {stderr}");
    assert!(st.success(), "{sig} before the capture started: exit {st}: {stderr}");
    assert!(stderr.contains(&format!("cnet: {sig} before the capture started")), "{stderr}");
    assert!(stderr.contains("0 packets captured"), "no summary: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let hooks = hooked_programs(veth).unwrap();
    assert!(hooks.is_empty(), "{sig} left hooks on {veth}: {hooks:?}");
}

#[test]
fn signals_end_the_wait_for_a_fifo_reader() {
    let lab = Lab::new(2).unwrap();
    let user = ThrowawayUser::new("csr").unwrap();
    let dir = UserDir::new(&user, "fifo");
    let fifo = dir.0.join("out.fifo");
    // A FIFO of cnet's own user (root) that the user may read: cnet refuses
    // FIFOs that other users made (see security_fs.rs).
    run(&["mkfifo", "-m", "0666", fifo.to_str().unwrap()]).unwrap();
    let netns = lab.host(0).netns.clone();
    let veth = lab.host(0).host_veth.clone();
    let args = ["capture", "--netns", &netns, "-w", fifo.to_str().unwrap()];

    for (sig, name) in [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM")] {
        let mut cnet = Running::spawn(&args, dir.0.join("cnet.err"));
        // cnet holds the fifo's name while it waits for a reader; a cnet
        // that blocks in open() shows nothing, and has got there in 3 s.
        cnet.wait_at_most("the wait for the fifo's reader", Duration::from_secs(3), |pid| holds(pid, &fifo));
        std::thread::sleep(Duration::from_millis(300));
        assert!(!cnet.stderr().contains("capturing on"), "cnet captured without a reader: {}", cnet.stderr());
        let sent = cnet.signal(sig);
        let (st, took) = cnet.exit_after(sent);
        assert_stopped_cleanly(&cnet, st, took, name, &veth);
        let meta = std::fs::symlink_metadata(&fifo).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()), "the fifo was replaced");
    }

    // A reader that comes later gets the capture, whole.
    let mut cnet = Running::spawn(&args, dir.0.join("cnet.err"));
    cnet.wait_until("the wait for the fifo's reader", |pid| holds(pid, &fifo));
    let copy = dir.0.join("copy.pcapng");
    let mut reader =
        user.command("sh").args(["-c", &format!("cat {} > {}", fifo.display(), copy.display())]).spawn().unwrap();
    cnet.wait_until("capturing", |_| cnet_started(&dir.0.join("cnet.err")));
    lab.ping(0, 1, 2).unwrap();
    let sent = cnet.signal(libc::SIGINT);
    let (st, _) = cnet.exit_after(sent);
    assert!(st.success(), "{}", cnet.stderr());
    assert!(reader.wait().unwrap().success());
    let pings = tshark_fields(&copy, Some("icmp.type == 8"), &["frame.number"]).unwrap();
    assert!(pings.len() >= 2, "{} echo requests in what the reader got", pings.len());
    assert!(hooked_programs(&veth).unwrap().is_empty());
}

fn cnet_started(stderr: &Path) -> bool {
    std::fs::read_to_string(stderr).is_ok_and(|s| s.contains("cnet: capturing on"))
}

#[test]
fn a_signal_ends_a_long_filter_compile() {
    let lab = Lab::new(1).unwrap();
    let user = ThrowawayUser::new("csr").unwrap();
    let dir = UserDir::new(&user, "filter");
    let veth = lab.host(0).host_veth.clone();
    // libpcap's optimizer is superlinear: measured here, 500 terms take 4 s
    // and 1000 take 31 s; 800 take well over the test's wait.
    let expr = (1..=800).map(|i| format!("tcp port {i}")).collect::<Vec<_>>().join(" or ");
    let file = dir.0.join("never.pcapng");
    let args = ["capture", "--netns", &lab.host(0).netns, "-w", file.to_str().unwrap(), &expr];

    for (sig, name) in [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM")] {
        let mut cnet = Running::spawn(&args, dir.0.join("cnet.err"));
        // cnet compiles on a thread of its own; one that compiles on its
        // main thread shows no such thread, and is compiling after 2 s.
        let threaded =
            cnet.wait_at_most("compiling the filter", Duration::from_secs(2), |pid| has_thread(pid, "cnet-filter"));
        std::thread::sleep(Duration::from_secs(1));
        if threaded {
            assert!(has_thread(cnet.pid(), "cnet-filter"), "the compile ended before the signal: {}", cnet.stderr());
        }
        let sent = cnet.signal(sig);
        let (st, took) = cnet.exit_after(sent);
        assert_stopped_cleanly(&cnet, st, took, name, &veth);
        assert!(!file.exists(), "a capture that never started left {}", file.display());
    }
}
