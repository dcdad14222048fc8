//! `cargo xtask soak`: a long capture of real Docker containers at a moderate
//! load, with containers restarting now and then. Reports whether cnet's
//! memory and open file descriptors stay flat, whether anything was dropped,
//! and whether every hook is gone at the end.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cnet_tests::Cnet;
use cnet_tests::runtimes::{DockerNet, IMAGE, ensure, unique};

pub struct Options {
    pub minutes: f64,
    pub containers: usize,
}

/// A container of the soak, removed on drop.
struct SoakContainer(String);

impl Drop for SoakContainer {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

fn docker(args: &[&str]) -> Result<String> {
    let out = Command::new("docker").args(args).output().context("running docker")?;
    if !out.status.success() {
        bail!("docker {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn proc_sample(pid: u32) -> (u64, usize) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    (rss, fds)
}

/// Builds a release cnet, starts the container runtimes that are not running
/// (and stops them at the end), then soaks.
pub fn run(opts: &Options) -> Result<()> {
    crate::setup::run(true)?;
    crate::util::require_root("the soak starts containers and loads eBPF programs")?;
    let bin = crate::cnet_build::cnet(true)?;
    let _runtimes = crate::util::Runtimes::start()?;
    soak(&bin, opts)
}

fn soak(cnet: &Path, opts: &Options) -> Result<()> {
    ensure()?;
    let net = DockerNet::new("10.216.0.0/24")?;
    let n = opts.containers.max(2);
    let mut containers = Vec::new();
    for i in 0..n {
        let name = unique(&format!("soak{i}"));
        let ip = format!("10.216.0.{}", 10 + i);
        let peer = format!("10.216.0.{}", 10 + (i + 1) % n);
        // 50 echo requests a second to the next container, forever.
        let script = format!("while :; do ping -q -c 100 -i 0.02 {peer} >/dev/null 2>&1; done");
        containers.push(SoakContainer(name.clone()));
        docker(&["run", "-d", "--name", &name, "--network", &net.name, "--ip", &ip, IMAGE, "sh", "-c", &script])?;
    }
    let names: Vec<String> = containers.iter().map(|c| c.0.clone()).collect();
    // Every soak container of this run (see `unique`), and nothing else.
    let pattern = format!("cnrt{}x*soak*", std::process::id());
    let dir = std::env::temp_dir().join(format!("cnet-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("soak.pcapng");
    let file_arg = file.to_str().context("the soak's temporary directory is not UTF-8")?;
    let mut cap = Cnet::start_bin(cnet, &["capture", "--container", &pattern, "-s", "128", "-w", file_arg])?;
    let pid = cap.pid();

    let total = Duration::from_secs_f64(opts.minutes * 60.0);
    let warmup = total.min(Duration::from_secs(60)) / 2;
    let start = Instant::now();
    let mut samples: Vec<(f64, u64, usize)> = Vec::new();
    let mut restarts = 0usize;
    let mut next_restart = Duration::from_secs(15);
    while start.elapsed() < total {
        std::thread::sleep(Duration::from_secs(5).min(total.saturating_sub(start.elapsed())));
        let (rss, fds) = proc_sample(pid);
        samples.push((start.elapsed().as_secs_f64(), rss, fds));
        if start.elapsed() >= next_restart {
            let victim = &names[restarts % n];
            docker(&["restart", "-t", "0", victim])?;
            restarts += 1;
            next_restart += Duration::from_secs(20);
        }
    }
    // The veths cnet holds now, to check they are released.
    let veths: Vec<String> = names
        .iter()
        .filter_map(|c| docker(&["inspect", "--format", "{{.State.Pid}}", c]).ok())
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/root/sys/class/net/eth0/iflink")).ok())
        .filter_map(|idx| {
            let idx = idx.trim().to_string();
            std::fs::read_dir("/sys/class/net").ok()?.flatten().find_map(|e| {
                let p = e.path().join("ifindex");
                (std::fs::read_to_string(&p).ok()?.trim() == idx).then(|| e.file_name().to_string_lossy().into_owned())
            })
        })
        .collect();
    cap.signal(libc::SIGINT);
    let res = cap.wait()?;
    let left: Vec<String> = veths
        .iter()
        .filter(|v| cnet_tests::hooked_programs(v).map(|h| !h.is_empty()).unwrap_or(false))
        .cloned()
        .collect();
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_dir_all(&dir);
    drop(containers);
    drop(net);

    let after: Vec<&(f64, u64, usize)> = samples.iter().filter(|s| s.0 >= warmup.as_secs_f64()).collect();
    let rss_first = after.first().map(|s| s.1).unwrap_or(0);
    let rss_last = after.last().map(|s| s.1).unwrap_or(0);
    let rss_max = after.iter().map(|s| s.1).max().unwrap_or(0);
    let fd_min = after.iter().map(|s| s.2).min().unwrap_or(0);
    let fd_max = after.iter().map(|s| s.2).max().unwrap_or(0);
    let captured = res.summary("captured").unwrap_or(0);
    let dropped = res.summary("dropped by kernel").unwrap_or(0);
    let attached = res.stderr.matches("cnet: attached").count();
    let detached = res.stderr.matches("cnet: detached").count();
    let ok = |b: bool| if b { "yes" } else { "NO" };
    let rss_flat = rss_last <= rss_first + rss_first / 10 + 1024;
    let report = format!(
        "# cnet soak: {:.1} min, {n} Docker containers, {restarts} restarts\n\n\
         | figure | value |\n|---|---|\n\
         | packets captured | {captured} |\n| dropped by kernel | {dropped} |\n\
         | file size | {:.1} MB |\n| interfaces attached / detached while running | {attached} / {detached} |\n\
         | RSS after warm-up ({:.0} s): first / last / max | {} / {} / {} KiB |\n\
         | open fds after warm-up: min / max | {fd_min} / {fd_max} |\n\
         | RSS flat (last ≤ first + 10 % + 1 MiB) | {} |\n| no drops | {} |\n| fds flat | {} |\n\
         | hooks left on the containers' veths after exit | {} |\n| cnet exit | {} |\n",
        opts.minutes,
        size as f64 / 1e6,
        warmup.as_secs_f64(),
        rss_first,
        rss_last,
        rss_max,
        ok(rss_flat),
        ok(dropped == 0),
        ok(fd_max <= fd_min + 4),
        if left.is_empty() { "none".to_string() } else { left.join(", ") },
        res.status,
    );
    println!("{report}");
    let dir = crate::util::workspace_root().join("bench/results");
    std::fs::create_dir_all(&dir)?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    std::fs::write(dir.join(format!("{stamp}-soak.md")), &report)?;
    let json = serde_json::json!({
        "minutes": opts.minutes, "containers": n, "restarts": restarts, "captured": captured,
        "dropped": dropped, "attached": attached, "detached": detached, "samples": samples,
        "hooks_left": left, "exit_ok": res.status.success(),
    });
    std::fs::write(dir.join(format!("{stamp}-soak.json")), serde_json::to_string_pretty(&json)?)?;
    eprintln!("soak: results in bench/results/{stamp}-soak.{{md,json}}");
    if !res.status.success() || !left.is_empty() {
        bail!("soak failed: cnet exit {} / hooks left: {left:?}", res.status);
    }
    Ok(())
}
