//! Test and demo fixtures: a throwaway lab of network namespaces on a bridge
//! (laid out like docker0: each "container" is a netns whose `eth0` is a veth
//! whose other end is plugged into the bridge in the host namespace), and a
//! handle on a running `cnet` process.
//!
//! Every name carries a prefix unique to the process and lab, so tests run in
//! parallel; everything is removed on drop, including when a test panics.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub mod reap;
pub mod runtimes;
pub mod traffic;
pub mod users;

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// One "container": a network namespace with `eth0` on the lab bridge.
#[derive(Clone, Debug)]
pub struct Host {
    /// Name under /var/run/netns.
    pub netns: String,
    /// Host end of the veth (plugged into the bridge).
    pub host_veth: String,
    pub ip: Ipv4Addr,
    pub ip6: Ipv6Addr,
}

/// A bridge and N namespaces, removed on drop.
pub struct Lab {
    pub prefix: String,
    pub bridge: String,
    pub hosts: Vec<Host>,
}

/// Runs a command, failing with its stderr when it fails.
pub fn run(cmd: &[&str]) -> Result<Output> {
    let out = Command::new(cmd[0]).args(&cmd[1..]).output().with_context(|| format!("running {}", cmd.join(" ")))?;
    if !out.status.success() {
        bail!("{} failed: {}", cmd.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out)
}

impl Lab {
    /// Builds a lab with `n` hosts on 10.213.0.0/24 and fd00:cb::/64, with
    /// names unique to this process and lab.
    pub fn new(n: usize) -> Result<Lab> {
        let id = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        // "cn" + 5 hex digits of the PID + lab counter: short enough for
        // 15-character interface names with a 3-character suffix.
        let prefix = format!("cn{:05x}{:x}", std::process::id() & 0xfffff, id);
        let names: Vec<String> = (0..n).map(|i| format!("{prefix}n{i}")).collect();
        Lab::build(&prefix, &names)
    }

    /// Builds a lab whose namespaces have the given names. Each lab has its
    /// own bridge without any host address, so overlapping lab subnets never
    /// meet and the host's routing is untouched. `prefix` (at most 10
    /// characters) names the bridge and host-side veths.
    pub fn build(prefix: &str, netns_names: &[String]) -> Result<Lab> {
        Lab::build_indexed(prefix, netns_names, None)
    }

    /// Like [`Lab::new`], but the host-side veths get interface indexes of
    /// 2^20 and above (a long-lived host that has created many interfaces):
    /// unique to this process and lab, like the names.
    pub fn new_high_ifindex(n: usize) -> Result<Lab> {
        assert!(n <= 4);
        let id = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("cn{:05x}{:x}", std::process::id() & 0xfffff, id);
        let names: Vec<String> = (0..n).map(|i| format!("{prefix}n{i}")).collect();
        let base = 0x10_0000 + (std::process::id() & 0xfffff) * 64 + (id % 16) * 4;
        Lab::build_indexed(&prefix, &names, Some(base))
    }

    /// [`Lab::build`], with host veth `i` at ifindex `ifindex_base + i` when
    /// a base is given.
    fn build_indexed(prefix: &str, netns_names: &[String], ifindex_base: Option<u32>) -> Result<Lab> {
        let bridge = format!("{prefix}br");
        let mut lab = Lab { prefix: prefix.to_string(), bridge: bridge.clone(), hosts: Vec::new() };
        run(&["ip", "link", "add", &bridge, "type", "bridge"])?;
        run(&["ip", "link", "set", &bridge, "up"])?;
        for (i, netns) in netns_names.iter().enumerate() {
            let netns = netns.clone();
            let host_veth = format!("{prefix}h{i}");
            let peer = format!("{prefix}p{i}");
            let ip = Ipv4Addr::new(10, 213, 0, 10 + i as u8);
            let ip6: Ipv6Addr = format!("fd00:cb::{:x}", 10 + i).parse().unwrap();
            run(&["ip", "netns", "add", &netns])?;
            lab.hosts.push(Host { netns: netns.clone(), host_veth: host_veth.clone(), ip, ip6 });
            match ifindex_base {
                Some(base) => {
                    let index = (base + i as u32).to_string();
                    run(&["ip", "link", "add", &host_veth, "index", &index, "type", "veth", "peer", "name", &peer])?
                }
                None => run(&["ip", "link", "add", &host_veth, "type", "veth", "peer", "name", &peer])?,
            };
            run(&["ip", "link", "set", &host_veth, "master", &bridge, "up"])?;
            run(&["ip", "link", "set", &peer, "netns", &netns])?;
            let ns = |args: &[&str]| {
                let mut v = vec!["ip", "netns", "exec", &netns];
                v.extend_from_slice(args);
                run(&v)
            };
            ns(&["ip", "link", "set", &peer, "name", "eth0"])?;
            ns(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
            ns(&["ip", "-6", "addr", "add", &format!("{ip6}/64"), "dev", "eth0", "nodad"])?;
            ns(&["ip", "link", "set", "eth0", "up"])?;
            ns(&["ip", "link", "set", "lo", "up"])?;
        }
        Ok(lab)
    }

    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// Runs `f` inside host `i`'s namespace (on a helper thread). Sockets
    /// created there stay in that namespace wherever they are used later.
    pub fn in_ns<T: Send + 'static>(&self, i: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = netns_path(&self.hosts[i].netns);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns");
            // SAFETY: affects only this helper thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {}: {}", path.display(), std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("netns thread panicked")
    }

    /// `ip netns exec` a command in host `i`.
    pub fn exec(&self, i: usize, cmd: &[&str]) -> Result<Output> {
        let mut v = vec!["ip", "netns", "exec", &self.hosts[i].netns];
        v.extend_from_slice(cmd);
        run(&v)
    }

    /// Ping host `to` from host `from` (`count` echo requests, 0.2 s apart).
    pub fn ping(&self, from: usize, to: usize, count: u32) -> Result<Output> {
        let to_ip = self.hosts[to].ip.to_string();
        self.exec(from, &["ping", "-n", "-q", "-c", &count.to_string(), "-i", "0.2", "-W", "2", &to_ip])
    }

    fn teardown(&mut self) {
        for h in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", &h.netns]).output();
            let _ = Command::new("ip").args(["link", "del", &h.host_veth]).stderr(Stdio::null()).output();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).output();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}

pub fn netns_path(name: &str) -> PathBuf {
    Path::new("/var/run/netns").join(name)
}

/// Path of the `cnet` binary under test: `$CNET_BIN`, or the workspace's
/// debug build (built once here if missing).
pub fn cnet_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("CNET_BIN") {
            return std::fs::canonicalize(&p).unwrap_or_else(|_| PathBuf::from(p));
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "cnet-user", "--bin", "cnet"])
            .current_dir(&root)
            .status()
            .expect("cargo build cnet");
        assert!(status.success(), "building cnet failed");
        let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or(root.join("target"));
        target.join("debug/cnet")
    })
    .clone()
}

/// A running `cnet` process. Killed on drop if still running.
pub struct Cnet {
    child: Option<Child>,
    stderr_lines: mpsc::Receiver<String>,
    stderr_seen: Vec<String>,
    stdout: Option<std::process::ChildStdout>,
}

/// What a finished cnet printed and how it exited.
#[derive(Debug)]
pub struct CnetResult {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CnetResult {
    /// The N of tcpdump's "N packets <what>" summary line.
    pub fn summary(&self, what: &str) -> Option<u64> {
        self.stderr.lines().find_map(|l| {
            let (n, rest) = l.split_once(' ')?;
            let rest = rest.trim_start_matches("packets ").trim_start_matches("packet ");
            (rest == what).then(|| n.parse().ok()).flatten()
        })
    }
}

impl Cnet {
    /// Starts `cnet ARGS…` and waits until it reports that it is attached.
    pub fn start(args: &[&str]) -> Result<Cnet> {
        Cnet::spawn(Command::new(cnet_bin()).args(args))
    }

    /// Like [`Cnet::start`] with an explicit binary.
    pub fn start_bin(bin: &Path, args: &[&str]) -> Result<Cnet> {
        Cnet::spawn(Command::new(bin).args(args))
    }

    /// Like `start`, with cnet in the network namespace /var/run/netns/NETNS
    /// (nsenter execs cnet, so the PID is cnet's).
    pub fn start_in_netns(netns: &str, args: &[&str]) -> Result<Cnet> {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/var/run/netns/{netns}")).arg(cnet_bin()).args(args);
        Cnet::spawn(&mut cmd)
    }

    fn spawn(cmd: &mut Command) -> Result<Cnet> {
        let mut child =
            cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().context("spawning cnet")?;
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdout = child.stdout.take();
        let mut cnet = Cnet { child: Some(child), stderr_lines: rx, stderr_seen: Vec::new(), stdout };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match cnet.stderr_lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    let ready = line.starts_with("cnet: capturing on");
                    cnet.stderr_seen.push(line);
                    if ready {
                        return Ok(cnet);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let r = cnet.wait()?;
                    bail!("cnet exited before attaching ({}): {}", r.status, r.stderr);
                }
            }
            if Instant::now() > deadline {
                bail!("cnet did not attach within 30 s: {}", cnet.stderr_seen.join("\n"));
            }
        }
    }

    /// Waits for a stderr line containing `needle` (e.g. "cnet: attached")
    /// and returns it.
    pub fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        if let Some(l) = self.stderr_seen.iter().find(|l| l.contains(needle)) {
            return Ok(l.clone());
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.stderr_lines.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    self.stderr_seen.push(line.clone());
                    if line.contains(needle) {
                        return Ok(line);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        bail!("cnet printed no line with {needle:?} within {timeout:?}: {}", self.stderr_seen.join("\n"))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn signal(&self, sig: libc::c_int) {
        if let Some(c) = &self.child {
            // SAFETY: signalling our own child by PID.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// SIGINT, then waits for exit.
    pub fn stop(mut self) -> Result<CnetResult> {
        self.signal(libc::SIGINT);
        self.wait()
    }

    pub fn wait(&mut self) -> Result<CnetResult> {
        let mut child = self.child.take().context("already waited")?;
        // Read stdout on the side, so a cnet that does not exit cannot hang
        // the test: it is killed at the deadline below.
        let reader = self.stdout.take().map(|mut s| {
            std::thread::spawn(move || {
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                out
            })
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(st) = child.try_wait()? {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("cnet did not exit within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = reader.map(|r| r.join().unwrap_or_default()).unwrap_or_default();
        while let Ok(l) = self.stderr_lines.recv_timeout(Duration::from_millis(500)) {
            self.stderr_seen.push(l);
        }
        Ok(CnetResult { status, stdout, stderr: self.stderr_seen.join("\n") })
    }

    /// Takes stdout (for live pipe tests); `wait` then returns it empty.
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.stdout.take()
    }
}

impl Drop for Cnet {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs cnet to completion (for commands that are expected to fail fast).
pub fn cnet_output(args: &[&str]) -> Result<CnetResult> {
    let out = Command::new(cnet_bin()).args(args).stdin(Stdio::null()).output()?;
    Ok(CnetResult {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Result<TempDir> {
        let id = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("cnet-{tag}-{}-{id}", std::process::id()));
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Asserts that tshark reads the whole file without complaint (exit 0, no
/// "cut short" or "appears to be damaged") and returns its frame count.
pub fn tshark_reads_cleanly(path: &Path) -> usize {
    let out = Command::new("tshark")
        .arg("-n")
        .arg("-r")
        .arg(path)
        .args(["-T", "fields", "-e", "frame.number"])
        .output()
        .expect("running tshark");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tshark failed on {}: {err}", path.display());
    assert!(!err.contains("cut short") && !err.contains("appears to be damaged"), "{}: {err}", path.display());
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// Runs tshark on a file and returns one Vec of fields per packet.
pub fn tshark_fields(file: &Path, filter: Option<&str>, fields: &[&str]) -> Result<Vec<Vec<String>>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(file).args(["-T", "fields", "-E", "separator=\t", "-E", "occurrence=a"]);
    if let Some(f) = filter {
        cmd.args(["-Y", f]);
    }
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().context("running tshark (install it with `cargo xtask setup --test-deps`)")?;
    if !out.status.success() {
        bail!("tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split('\t').map(str::to_string).collect()).collect())
}

/// Names of the BPF programs hooked to `ifname`: TCX links as the kernel
/// reports them (BPF_PROG_QUERY) and cls_bpf filters as `tc` lists them.
/// An independent view of what cnet left behind.
pub fn hooked_programs(ifname: &str) -> Result<Vec<String>> {
    use aya::programs::{SchedClassifier, tc::TcAttachType};
    let mut names = Vec::new();
    for t in [TcAttachType::Ingress, TcAttachType::Egress] {
        let (_, progs) = SchedClassifier::query_tcx(ifname, t).context("querying TCX programs")?;
        for p in progs {
            names.push(format!("tcx:{}", p.name_as_str().unwrap_or("?")));
        }
    }
    for dir in ["ingress", "egress"] {
        let out = Command::new("tc").args(["filter", "show", "dev", ifname, dir]).output()?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(i) = line.find(" name ") {
                let name = line[i + 6..].split_whitespace().next().unwrap_or("?");
                names.push(format!("clsact:{name}"));
            }
        }
    }
    Ok(names)
}
