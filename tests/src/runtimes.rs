//! Real container runtimes for the container tests: Docker and Podman
//! containers, containerd tasks on a CNI bridge. `ensure()` runs
//! scripts/start-runtimes.sh once (idempotent: it starts only what is not
//! running, and never touches forwarding or the firewall).
//!
//! Every container, network and namespace made here is removed on drop.
//! Names start with `cnrt` + the test process's PID so tests run in parallel.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

use crate::{TempDir, run};

/// The busybox image that start-runtimes.sh imports into Docker and Podman.
pub const IMAGE: &str = "cnet-busybox:latest";
/// Unpacked busybox rootfs (for `ctr run --rootfs`).
pub const ROOTFS: &str = "/run/cnet-runtimes/rootfs";
/// Podman's containers.conf written by start-runtimes.sh.
pub const PODMAN_CONF: &str = "/run/cnet-runtimes/containers.conf";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// `cnrt<pid>x<n>`: unique in this process and across processes.
pub fn unique(tag: &str) -> String {
    format!("cnrt{}x{}{tag}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Starts the runtimes (once per test process).
pub fn ensure() -> Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/start-runtimes.sh");
        let out =
            Command::new("bash").arg(&script).output().map_err(|e| format!("running {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!("{} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr)));
        }
        Ok(())
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

fn stdout(cmd: &[&str]) -> Result<String> {
    Ok(String::from_utf8_lossy(&run(cmd)?.stdout).trim().to_string())
}

/// A Docker user network, removed on drop.
pub struct DockerNet {
    pub name: String,
}

impl DockerNet {
    pub fn new(subnet: &str) -> Result<DockerNet> {
        let name = unique("net");
        run(&["docker", "network", "create", "--subnet", subnet, &name])?;
        Ok(DockerNet { name })
    }
}

impl Drop for DockerNet {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["network", "rm", &self.name]).stderr(Stdio::null()).output();
    }
}

/// A Docker or Podman container running `sleep`, removed on drop.
pub struct EngineContainer {
    /// `docker` or `podman`.
    pub cli: &'static str,
    pub name: String,
    pub id: String,
}

impl EngineContainer {
    /// `docker run -d --name NAME ARGS… IMAGE sleep 600`.
    pub fn docker(tag: &str, args: &[&str]) -> Result<EngineContainer> {
        Self::start("docker", tag, args)
    }

    pub fn podman(tag: &str, args: &[&str]) -> Result<EngineContainer> {
        Self::start("podman", tag, args)
    }

    fn start(cli: &'static str, tag: &str, args: &[&str]) -> Result<EngineContainer> {
        let name = unique(tag);
        let mut cmd = vec![cli, "run", "-d", "--name", &name];
        cmd.extend_from_slice(args);
        cmd.extend_from_slice(&[IMAGE, "sleep", "600"]);
        // Constructed before running so that a half-created container is
        // still removed.
        let mut c = EngineContainer { cli, name: name.clone(), id: String::new() };
        c.id = cli_cmd(cli, &cmd)?;
        Ok(c)
    }

    /// `docker create` only (not started).
    pub fn docker_created(tag: &str) -> Result<EngineContainer> {
        let name = unique(tag);
        let mut c = EngineContainer { cli: "docker", name: name.clone(), id: String::new() };
        c.id = stdout(&["docker", "create", "--name", &name, "--network", "none", IMAGE, "sleep", "600"])?;
        Ok(c)
    }

    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }

    pub fn exec(&self, cmd: &[&str]) -> Result<String> {
        let mut v = vec![self.cli, "exec", &self.name];
        v.extend_from_slice(cmd);
        cli_cmd(self.cli, &v)
    }

    /// `ping -c COUNT` another address from inside the container.
    pub fn ping(&self, to: &str, count: u32) -> Result<String> {
        self.exec(&["ping", "-c", &count.to_string(), "-i", "0.2", "-W", "2", to])
    }

    pub fn inspect(&self, format: &str) -> Result<String> {
        cli_cmd(self.cli, &[self.cli, "inspect", "--format", format, &self.name])
    }

    pub fn pid(&self) -> Result<u32> {
        self.inspect("{{.State.Pid}}")?.parse().context("parsing the container's PID")
    }

    pub fn restart(&self) -> Result<()> {
        cli_cmd(self.cli, &[self.cli, "restart", "-t", "0", &self.name]).map(|_| ())
    }
}

/// Runs docker/podman (podman with the test containers.conf).
fn cli_cmd(cli: &str, cmd: &[&str]) -> Result<String> {
    let mut c = Command::new(cmd[0]);
    c.args(&cmd[1..]);
    if cli == "podman" {
        c.env("CONTAINERS_CONF", PODMAN_CONF);
    }
    let out = c.output().with_context(|| format!("running {}", cmd.join(" ")))?;
    if !out.status.success() {
        bail!("{} failed: {}", cmd.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl Drop for EngineContainer {
    fn drop(&mut self) {
        let mut c = Command::new(self.cli);
        c.args(["rm", "-f", &self.name]).stdout(Stdio::null()).stderr(Stdio::null());
        if self.cli == "podman" {
            c.env("CONTAINERS_CONF", PODMAN_CONF);
        }
        let _ = c.output();
    }
}

/// Rootful Podman containers on a netavark bridge network, with netavark
/// run inside a network namespace made here: netavark (1.4 on Debian 12)
/// turns on ip_forward and writes iptables rules in the namespace it runs
/// in, so that namespace must not be the host's. cnet runs there too
/// (`Cnet::start_in_netns`), where the host ends of the veths are.
pub struct PodmanLab {
    /// The namespace podman, netavark and cnet run in (under /var/run/netns).
    pub netns: String,
    pub network: String,
    /// (name, id, ip)
    pub containers: Vec<(String, String, String)>,
}

impl PodmanLab {
    /// `n` containers on 10.217.`net`.0/24.
    pub fn new(net: u8, n: usize) -> Result<PodmanLab> {
        let netns = unique("pns");
        run(&["ip", "netns", "add", &netns])?;
        let mut lab = PodmanLab { netns, network: unique("pnet"), containers: Vec::new() };
        lab.podman(&[
            "podman",
            "network",
            "create",
            "--disable-dns",
            "--subnet",
            &format!("10.217.{net}.0/24"),
            &lab.network,
        ])?;
        for i in 0..n {
            let name = unique("pm");
            let ip = format!("10.217.{net}.{}", 11 + i);
            lab.containers.push((name.clone(), String::new(), ip.clone()));
            let net_arg = format!("--network={}", lab.network);
            let id =
                lab.podman(&["podman", "run", "-d", "--name", &name, &net_arg, "--ip", &ip, IMAGE, "sleep", "600"])?;
            lab.containers[i].1 = id;
        }
        Ok(lab)
    }

    /// Runs a podman command inside the lab's namespace. nsenter rather
    /// than `ip netns exec`, which remounts /sys and hides the cgroup mount.
    pub fn podman(&self, cmd: &[&str]) -> Result<String> {
        let path = format!("--net=/var/run/netns/{}", self.netns);
        let mut v = vec!["nsenter", &path];
        v.extend_from_slice(cmd);
        cli_cmd("podman", &v)
    }

    pub fn ping(&self, from: usize, to: usize, count: u32) -> Result<String> {
        let c = count.to_string();
        self.podman(&[
            "podman",
            "exec",
            &self.containers[from].0,
            "ping",
            "-c",
            &c,
            "-i",
            "0.2",
            "-W",
            "2",
            &self.containers[to].2,
        ])
    }
}

impl Drop for PodmanLab {
    fn drop(&mut self) {
        // Inside the lab's namespace, so netavark's teardown never looks
        // at the host's firewall.
        for (name, _, _) in &self.containers {
            let _ = self.podman(&["podman", "rm", "-f", "-t", "0", name]);
        }
        let _ = self.podman(&["podman", "network", "rm", "-f", &self.network]);
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).output();
    }
}

/// containerd tasks in their own containerd namespace, each in a network
/// namespace wired by the CNI bridge plugin from a conflist written here.
/// The bridge has no address (isGateway false, ipMasq false): no route,
/// no forwarding, no firewall rule.
pub struct ContainerdLab {
    /// containerd namespace.
    pub namespace: String,
    pub bridge: String,
    /// The bridge plugin's config (the one entry of the conflist written
    /// to the lab's directory).
    plugin_conf: String,
    ipam_dir: PathBuf,
    /// (container id, netns name, ip)
    pub tasks: Vec<(String, String, String)>,
    _dir: TempDir,
}

const CNI_BIN: &str = "/usr/lib/cni";

impl ContainerdLab {
    /// `n` tasks on 10.215.`net`.0/24.
    pub fn new(net: u8, n: usize) -> Result<ContainerdLab> {
        let dir = TempDir::new("cni")?;
        let namespace = unique("ns");
        let bridge = format!("cnrt{:05x}b{net}", std::process::id() & 0xfffff);
        let conf = dir.path().join("cnrt.conflist");
        let ipam_dir = dir.path().join("ipam");
        let plugin = format!(
            r#"{{"type":"bridge","bridge":"{bridge}","isGateway":false,"ipMasq":false,"ipam":{{"type":"host-local","subnet":"10.215.{net}.0/24","dataDir":"{}"}}}}"#,
            ipam_dir.display()
        );
        std::fs::write(&conf, format!(r#"{{"cniVersion":"1.0.0","name":"{namespace}","plugins":[{plugin}]}}"#))?;
        // A single plugin is called with its entry plus the list's name and version.
        let plugin_conf = format!(r#"{{"cniVersion":"1.0.0","name":"{namespace}",{}"#, &plugin[1..]);
        let mut lab = ContainerdLab { namespace, bridge, plugin_conf, ipam_dir, tasks: Vec::new(), _dir: dir };
        for i in 0..n {
            let id = format!("{}c{i}", lab.namespace);
            let netns = format!("{}n{i}", lab.namespace);
            run(&["ip", "netns", "add", &netns])?;
            lab.tasks.push((id.clone(), netns.clone(), String::new()));
            let result = lab.cni("ADD", &id, &netns)?;
            let ip = result
                .split("\"address\":")
                .nth(1)
                .and_then(|s| s.split('"').nth(1))
                .and_then(|s| s.split('/').next())
                .context("no address in the CNI result")?
                .to_string();
            lab.tasks[i].2 = ip;
            run(&[
                "ctr",
                "-n",
                &lab.namespace,
                "run",
                "-d",
                "--rootfs",
                "--env",
                "PATH=/bin",
                "--with-ns",
                &format!("network:/var/run/netns/{netns}"),
                "--label",
                "io.kubernetes.pod.name=cnrtpod",
                "--label",
                &format!("io.kubernetes.pod.namespace={}", lab.namespace),
                ROOTFS,
                &id,
                "/bin/sleep",
                "600",
            ])?;
        }
        Ok(lab)
    }

    /// Runs the CNI plugin chain (just the bridge plugin) for one netns.
    fn cni(&self, command: &str, id: &str, netns: &str) -> Result<String> {
        let mut child = Command::new(Path::new(CNI_BIN).join("bridge"))
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", format!("/var/run/netns/{netns}"))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", CNI_BIN)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running the CNI bridge plugin (apt-get install containernetworking-plugins)")?;
        use std::io::Write;
        child.stdin.take().unwrap().write_all(self.plugin_conf.as_bytes())?;
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!("CNI {command} failed: {text} {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(text)
    }

    /// Runs a command in task `i`'s network namespace (busybox from the host).
    pub fn exec_ns(&self, i: usize, cmd: &[&str]) -> Result<String> {
        let mut v = vec!["ip", "netns", "exec", &self.tasks[i].1];
        v.extend_from_slice(cmd);
        stdout(&v)
    }
}

impl Drop for ContainerdLab {
    fn drop(&mut self) {
        let quiet = |args: &[&str]| {
            let _ = Command::new(args[0]).args(&args[1..]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        };
        for (id, netns, _) in &self.tasks {
            quiet(&["ctr", "-n", &self.namespace, "task", "kill", "-s", "KILL", id]);
            for _ in 0..50 {
                let st = Command::new("ctr").args(["-n", &self.namespace, "task", "rm", "-f", id]).output();
                if st.map(|o| o.status.success()).unwrap_or(true) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            quiet(&["ctr", "-n", &self.namespace, "container", "rm", id]);
            let _ = self.cni("DEL", id, netns);
            quiet(&["ip", "netns", "del", netns]);
        }
        quiet(&["ctr", "namespaces", "rm", &self.namespace]);
        quiet(&["ip", "link", "del", &self.bridge]);
        let _ = std::fs::remove_dir_all(&self.ipam_dir);
    }
}
