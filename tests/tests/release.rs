//! The release as it ships. The static binary from `cargo xtask dist`,
//! unpacked from its tarball, captures a lab namespace from an otherwise
//! empty root filesystem; the image from `cargo xtask image` captures its
//! sibling containers through the real Docker, with the least privilege
//! docs/install.md names.
//!
//! The release is built by xtask, as CI and users build it: the first run
//! builds libpcap and the musl release (minutes), later runs reuse the
//! cached libpcap, cargo's up-to-date build and Docker's layer cache
//! (seconds).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use cnet_tests::runtimes::{self, DockerNet, EngineContainer};
use cnet_tests::{Cnet, Lab, TempDir, tshark_fields};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const TARGET: &str = "x86_64-unknown-linux-musl";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Runs `cargo xtask VERB` once per test process; an error names the verb.
fn xtask(verb: &'static str) -> Result<()> {
    static DIST: OnceLock<Result<(), String>> = OnceLock::new();
    static IMAGE: OnceLock<Result<(), String>> = OnceLock::new();
    let cell = if verb == "dist" { &DIST } else { &IMAGE };
    cell.get_or_init(|| {
        let out = Command::new(env!("CARGO"))
            .args(["run", "--quiet", "--package", "xtask", "--", verb])
            .current_dir(workspace())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running cargo xtask {verb}: {e}"))?;
        if !out.status.success() {
            return Err(format!("cargo xtask {verb} failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(())
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// The release tarball, unpacked into `dir`; returns the binary's path.
fn unpacked_release(dir: &Path) -> Result<PathBuf> {
    xtask("dist")?;
    let tarball = workspace().join(format!("dist/cnet-{VERSION}-{TARGET}.tar.gz"));
    let out = Command::new("tar").arg("-xzf").arg(&tarball).arg("-C").arg(dir).output()?;
    ensure!(out.status.success(), "unpacking {}: {}", tarball.display(), String::from_utf8_lossy(&out.stderr));
    let top = dir.join(format!("cnet-{VERSION}-{TARGET}"));
    for f in ["cnet", "LICENSE-MIT", "LICENSE-APACHE", "README.md", "man/man1/cnet.1", "completions/cnet.bash"] {
        ensure!(top.join(f).exists(), "the tarball has no {f}");
    }
    Ok(top.join("cnet"))
}

/// `capinfos`'s "Capture application" (the SHB's `shb_userappl`).
fn capture_application(file: &Path) -> Result<String> {
    let out = Command::new("capinfos").arg(file).output().context("running capinfos")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Capture application:").map(|s| s.trim().to_string()))
        .with_context(|| format!("capinfos shows no capture application: {text}"))
}

#[test]
fn the_static_release_captures_a_netns_from_an_empty_root() -> Result<()> {
    let unpacked = TempDir::new("crl-dist")?;
    let bin = unpacked_release(unpacked.path())?;
    let ldd = Command::new("ldd").arg(&bin).output()?;
    let ldd = format!("{}{}", String::from_utf8_lossy(&ldd.stdout), String::from_utf8_lossy(&ldd.stderr));
    ensure!(ldd.contains("statically linked") || ldd.contains("not a dynamic executable"), "ldd: {ldd}");
    let version = Command::new(&bin).arg("--version").output()?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    ensure!(version.starts_with(&format!("cnet {VERSION} (commit ")), "{version}");
    ensure!(version.ends_with("(built with this binary))"), "{version}");

    // The root holds the binary and the mount points of /proc, /sys and
    // /var/run/netns; nothing else (no libc, no loader, no /etc).
    let root = TempDir::new("crl-root")?;
    for d in ["proc", "sys", "var/run/netns", "out"] {
        std::fs::create_dir_all(root.path().join(d))?;
    }
    std::fs::copy(&bin, root.path().join("cnet"))?;
    let lab = Lab::new(2)?;
    let netns = lab.host(0).netns.clone();
    // A mount namespace of its own: the bind mounts exist only for cnet and
    // vanish with it, whatever happens to the test.
    let script = r#"r=$1; shift
mount --rbind /proc "$r/proc" && mount --rbind /sys "$r/sys" && mount --rbind /run/netns "$r/var/run/netns" &&
exec chroot "$r" /cnet "$@""#;
    let root_arg = root.path().to_str().unwrap();
    let cap = Cnet::start_bin(
        Path::new("unshare"),
        &[
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            root_arg,
            "capture",
            "--netns",
            &netns,
            "-w",
            "/out/empty-root.pcapng",
        ],
    )?;
    lab.ping(1, 0, 3)?;
    let r = cap.stop()?;
    ensure!(r.status.success(), "{}", r.stderr);
    let mut left: Vec<String> =
        std::fs::read_dir(root.path())?.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left, ["cnet", "out", "proc", "sys", "var"], "the root held only the binary and mount points");

    let file = root.path().join("out/empty-root.pcapng");
    let rows = tshark_fields(&file, Some("icmp.type == 8"), &["frame.interface_description", "frame.comment"])?;
    assert_eq!(rows.len(), 3, "{rows:?}");
    for row in &rows {
        assert!(row[0].starts_with(&format!("netns:{netns} eth0")), "{row:?}");
        assert!(row[1].ends_with("dir=in"), "{row:?}");
    }
    assert_eq!(capture_application(&file)?, version, "shb_userappl is `cnet --version`");
    Ok(())
}

/// The least privilege that lets the image capture sibling containers
/// (docs/install.md explains each): the host's network namespace (the host
/// ends of the veths) and PID namespace (/proc/PID/ns/net of the
/// containers), CAP_SYS_ADMIN (bpf, perf ring and setns; Docker 20.10 knows
/// no CAP_BPF or CAP_PERFMON), CAP_NET_ADMIN (tc hooks), CAP_SYS_PTRACE
/// (other processes' namespaces); Docker's default seccomp profile; the
/// Engine API socket read-only; a read-only root.
const LEAST_PRIVILEGE: &[&str] = &[
    "--pid=host",
    "--network=host",
    "--cap-drop=ALL",
    "--cap-add=SYS_ADMIN",
    "--cap-add=NET_ADMIN",
    "--cap-add=SYS_PTRACE",
    "--security-opt=no-new-privileges",
    "--read-only",
    "-v",
    "/var/run/docker.sock:/var/run/docker.sock:ro",
];

/// A `docker run` of the cnet image; the container is removed on drop.
struct CnetContainer {
    name: String,
    cnet: Option<Cnet>,
}

impl CnetContainer {
    fn start(extra: &[&str], args: &[&str]) -> Result<CnetContainer> {
        xtask("image")?;
        let name = runtimes::unique("crlcnet");
        let image = format!("cnet:{VERSION}");
        let mut argv: Vec<&str> = vec!["run", "--rm", "--name", &name];
        argv.extend_from_slice(LEAST_PRIVILEGE);
        argv.extend_from_slice(extra);
        argv.push(&image);
        argv.extend_from_slice(args);
        let mut c = CnetContainer { name: name.clone(), cnet: None };
        c.cnet = Some(Cnet::start_bin(Path::new("docker"), &argv)?);
        Ok(c)
    }

    fn cnet(&mut self) -> &mut Cnet {
        self.cnet.as_mut().unwrap()
    }

    /// SIGINT to `docker run`, which hands it to cnet; waits for the end.
    fn stop(&mut self) -> Result<cnet_tests::CnetResult> {
        self.cnet.take().context("already stopped")?.stop()
    }
}

impl Drop for CnetContainer {
    fn drop(&mut self) {
        drop(self.cnet.take());
        let _ =
            Command::new("docker").args(["rm", "-f", &self.name]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

/// Echo requests from `from` to `to` in a capture: (interface description, comment).
fn requests(file: &Path, from: &str, to: &str) -> Result<Vec<(String, String)>> {
    let filter = format!("icmp.type == 8 && ip.src == {from} && ip.dst == {to}");
    let rows = tshark_fields(file, Some(&filter), &["frame.interface_description", "frame.comment"])?;
    Ok(rows.into_iter().map(|r| (r[0].clone(), r.get(1).cloned().unwrap_or_default())).collect())
}

#[test]
fn the_image_captures_a_sibling_container_by_name_to_stdout() -> Result<()> {
    runtimes::ensure()?;
    let net = DockerNet::new("10.219.1.0/24")?;
    let netarg = format!("--network={}", net.name);
    let a = EngineContainer::docker("a", &[&netarg, "--ip", "10.219.1.11"])?;
    let b = EngineContainer::docker("b", &[&netarg, "--ip", "10.219.1.12"])?;
    let mut cap = CnetContainer::start(&[], &["capture", "--container", &a.name, "-c", "20", "-w", "-", "icmp"])?;
    let mut stdout = cap.cnet().take_stdout().context("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        stdout.read_to_end(&mut bytes).map(|_| bytes)
    });
    // 10 requests and 10 replies on a's veth: exactly the 20 packets asked
    // (the filter keeps ARP and IPv6 neighbour traffic out of the count).
    b.ping("10.219.1.11", 10)?;
    let r = cap.cnet().wait()?;
    ensure!(r.status.success(), "{}", r.stderr);
    let bytes = reader.join().unwrap()?;
    let dir = TempDir::new("crl-img")?;
    let file = dir.path().join("stdout.pcapng");
    std::fs::write(&file, &bytes)?;
    let reqs = requests(&file, "10.219.1.12", "10.219.1.11")?;
    assert_eq!(reqs.len(), 10, "{reqs:?}\n{}", r.stderr);
    for (iface, comment) in &reqs {
        assert!(iface.starts_with(&format!("docker:{} eth0", a.name)), "{iface}");
        assert!(comment.starts_with(&format!("container={} runtime=docker id={}", a.name, a.short_id())), "{comment}");
        assert!(comment.ends_with("dir=in"), "{comment}");
    }
    let version = Command::new("docker").args(["run", "--rm", &format!("cnet:{VERSION}"), "--version"]).output()?;
    assert_eq!(capture_application(&file)?, String::from_utf8_lossy(&version.stdout).trim());
    Ok(())
}

#[test]
fn the_image_captures_all_containers_into_a_mounted_folder() -> Result<()> {
    runtimes::ensure()?;
    let net = DockerNet::new("10.219.2.0/24")?;
    let netarg = format!("--network={}", net.name);
    let a = EngineContainer::docker("a", &[&netarg, "--ip", "10.219.2.11"])?;
    let b = EngineContainer::docker("b", &[&netarg, "--ip", "10.219.2.12"])?;
    let dir = TempDir::new("crl-img")?;
    let volume = format!("{}:/out", dir.path().display());
    // --all sees every container on the machine; the capture filter keeps
    // this test's subnet, so other tests' traffic does not count.
    let mut cap =
        CnetContainer::start(&["-v", &volume], &["capture", "--all", "-w", "/out/all.pcapng", "net 10.219.2.0/24"])?;
    b.ping("10.219.2.11", 3)?;
    let r = cap.stop()?;
    ensure!(r.status.success(), "{}", r.stderr);
    // Each request is seen leaving b and entering a, each labelled with its
    // container.
    let reqs = requests(&dir.path().join("all.pcapng"), "10.219.2.12", "10.219.2.11")?;
    let labelled = |c: &EngineContainer, dir: &str| {
        reqs.iter()
            .filter(|(iface, comment)| {
                iface.starts_with(&format!("docker:{} eth0", c.name))
                    && comment.starts_with(&format!("container={} runtime=docker", c.name))
                    && comment.ends_with(dir)
            })
            .count()
    };
    assert_eq!((labelled(&a, "dir=in"), labelled(&b, "dir=out"), reqs.len()), (3, 3, 6), "{reqs:?}\n{}", r.stderr);
    Ok(())
}

#[test]
fn the_image_follows_a_restarted_container() -> Result<()> {
    runtimes::ensure()?;
    let net = DockerNet::new("10.219.3.0/24")?;
    let netarg = format!("--network={}", net.name);
    let a = EngineContainer::docker("a", &[&netarg, "--ip", "10.219.3.11"])?;
    let b = EngineContainer::docker("b", &[&netarg, "--ip", "10.219.3.12"])?;
    let dir = TempDir::new("crl-img")?;
    let volume = format!("{}:/out", dir.path().display());
    let mut cap =
        CnetContainer::start(&["-v", &volume], &["capture", "--container", &a.name, "-w", "/out/restart.pcapng"])?;
    b.ping("10.219.3.11", 2)?;
    let old_pid = a.pid()?;
    a.restart()?;
    ensure!(old_pid != a.pid()?, "the container did not restart");
    cap.cnet().wait_for_stderr("cnet: detached", Duration::from_secs(10))?;
    cap.cnet().wait_for_stderr("cnet: attached", Duration::from_secs(10))?;
    b.ping("10.219.3.11", 3)?;
    let r = cap.stop()?;
    ensure!(r.status.success(), "{}", r.stderr);
    let reqs = requests(&dir.path().join("restart.pcapng"), "10.219.3.12", "10.219.3.11")?;
    assert_eq!(reqs.len(), 5, "{reqs:?}\n{}", r.stderr);
    for (iface, comment) in &reqs {
        assert!(iface.starts_with(&format!("docker:{} eth0", a.name)), "{iface}");
        assert!(comment.starts_with(&format!("container={} runtime=docker", a.name)), "{comment}");
    }
    // Before and after the restart: a's old and new veth, each its own
    // pcapng interface (2 requests on the first, 3 on the second). The
    // netns inode cannot tell them apart: the kernel may give the new
    // namespace the freed inode number of the old one.
    let filter = "icmp.type == 8 && ip.src == 10.219.3.12 && ip.dst == 10.219.3.11";
    let ids: Vec<String> = tshark_fields(&dir.path().join("restart.pcapng"), Some(filter), &["frame.interface_id"])?
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let mut seen = ids.clone();
    seen.dedup();
    assert_eq!(seen.len(), 2, "{ids:?}");
    assert_eq!(ids.iter().filter(|i| **i == seen[0]).count(), 2, "{ids:?}");
    Ok(())
}

/// One capability short of the least privilege: cnet refuses to start and
/// names the capability, rather than capturing nothing.
#[test]
fn the_image_without_the_least_privilege_says_what_is_missing() -> Result<()> {
    runtimes::ensure()?;
    xtask("image")?;
    let image = format!("cnet:{VERSION}");
    let out = Command::new("docker")
        .args(["run", "--rm", "--pid=host", "--network=host", "-v", "/var/run/docker.sock:/var/run/docker.sock:ro"])
        .args(["--cap-drop=ALL", "--cap-add=SYS_ADMIN", "--cap-add=SYS_PTRACE", &image])
        .args(["capture", "--all", "-c", "1", "-w", "/dev/null"])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        bail!("cnet captured without CAP_NET_ADMIN: {stderr}");
    }
    assert!(stderr.contains("CAP_NET_ADMIN"), "{stderr}");
    Ok(())
}
