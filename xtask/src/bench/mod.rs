//! `cargo xtask bench`: cnet against tcpdump on the same traffic, in one run.
//!
//! For each load (TCP bulk with 1 and 2 streams, a UDP 64-byte flood, a TCP
//! request/response load) the variants run interleaved, round by round:
//! no capture, then tcpdump and cnet on the same host veth at full snaplen
//! to a file, full snaplen to /dev/null, and `-s 96` to a file; on the UDP
//! load also both tools with a capture filter that matches none of the
//! traffic (`tcp port 1`), which measures what in-kernel filtering costs.
//! Ratios are computed within the run, so machine-to-machine spread cancels
//! out.
//!
//! With `--latency`: no capture, `cnet capture -s 96` to a file on one veth,
//! and `cnet latency` on both lab veths (what latency mode costs).
//!
//! This module owns the orchestration (variants, rounds, one run with its
//! capture process, baselines, the results files); `loads` generates the
//! traffic, `measure` reads the counters and `report` writes the table.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cnet_tests::Lab;
use cnet_tests::traffic::LoadServers;

use loads::Load;
use measure::{disk_write_rate, iface_packets, kernel, machine_cpu_s, process_cpu_s, summary_count, wait_rusage};

mod loads;
mod measure;
mod report;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Tool {
    None,
    Tcpdump,
    Cnet,
    /// `cnet latency` on both lab veths.
    CnetLatency,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    FullFile,
    FullNull,
    Snap96File,
    /// A filter expression that matches none of the load's packets.
    FilterNothing,
    /// cnet with `CNET_HOOK_ONLY`: its programs attached but returning at
    /// once; the floor of what any tc program costs on this machine.
    HookOnly,
    /// `cnet latency`'s default snap length, report only.
    LatencyReport,
}

/// Matches none of the benchmark's traffic, and libpcap cannot prove that
/// (it rejects expressions that are always false).
const FILTER_NOTHING: &str = "tcp port 1";

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::FullFile => "full→file",
            Mode::FullNull => "full→/dev/null",
            Mode::Snap96File => "-s 96→file",
            Mode::FilterNothing => "filter matching nothing",
            Mode::HookOnly => "tc hook alone",
            Mode::LatencyReport => "-s 128→report",
        }
    }
}

#[derive(Clone, Debug, Default, serde::Serialize)]
struct Run {
    load: &'static str,
    tool: &'static str,
    mode: &'static str,
    round: usize,
    throughput: f64,
    /// Packets that crossed the hooked interface (both directions).
    crossed: u64,
    captured: u64,
    dropped: u64,
    capture_cpu_s: f64,
    machine_cpu_s: f64,
    peak_rss_kib: u64,
    bytes_written: u64,
    seconds: f64,
    /// Throughput without capture at the time of this run: interpolated
    /// between the no-capture runs before and after it, so that the
    /// machine's drift during a bench does not count as capture cost.
    baseline: f64,
}

pub struct Options {
    pub quick: bool,
    pub seconds: Option<u64>,
    pub rounds: Option<usize>,
    /// Names of the loads to run; empty: all.
    pub loads: Vec<String>,
    pub latency: bool,
}

/// Builds a release cnet, then benchmarks it.
pub fn run(opts: &Options) -> Result<()> {
    crate::setup::run(true)?;
    crate::util::require_root("the benchmark creates network namespaces and loads eBPF programs")?;
    let cnet = crate::cnet_build::cnet(true)?;
    bench(&cnet, opts)
}

fn bench(cnet: &Path, opts: &Options) -> Result<()> {
    let secs = opts.seconds.unwrap_or(if opts.quick { 2 } else { 8 });
    let rounds = opts.rounds.unwrap_or(if opts.quick { 1 } else { 3 });
    let all = Load::ALL;
    for name in &opts.loads {
        if !all.iter().any(|l| l.name() == name) {
            bail!("unknown load {name:?}; the loads are tcp-bulk-1, tcp-bulk-2, udp-64B, tcp-req-resp");
        }
    }
    let loads: Vec<Load> =
        all.into_iter().filter(|l| opts.loads.is_empty() || opts.loads.iter().any(|n| n == l.name())).collect();
    let tmp = std::env::temp_dir().join(format!("cnet-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let _cleanup = RemoveDir(tmp.clone());

    let lab = Lab::new(2)?;
    let veth = lab.host(0).host_veth.clone();
    // Servers in host 1 for the whole bench; the loads come from host 0.
    let server = LoadServers::start(&lab, 1)?;
    let disk_mb_s = disk_write_rate(&tmp)?;
    eprintln!("bench: disk sequential write {disk_mb_s:.0} MB/s; {secs} s per run, {rounds} round(s)");

    let mut variants = vec![(Tool::None, Mode::FullFile)];
    if opts.latency {
        variants.push((Tool::Cnet, Mode::Snap96File));
        variants.push((Tool::CnetLatency, Mode::LatencyReport));
    } else {
        for mode in [Mode::FullFile, Mode::FullNull, Mode::Snap96File] {
            variants.push((Tool::Tcpdump, mode));
            variants.push((Tool::Cnet, mode));
        }
    }
    let mut runs = Vec::new();
    for load in loads.iter().copied() {
        let mut variants = variants.clone();
        if load == Load::Udp64 {
            variants.push((Tool::Tcpdump, Mode::FilterNothing));
            variants.push((Tool::Cnet, Mode::FilterNothing));
            variants.push((Tool::Cnet, Mode::HookOnly));
        }
        let first = runs.len();
        for round in 0..rounds {
            for &(tool, mode) in &variants {
                let r = one_run(cnet, &lab, &veth, &tmp, load, tool, mode, round, secs)
                    .with_context(|| format!("{} {tool:?} {}", load.name(), mode.name()))?;
                eprintln!(
                    "bench: {:<12} {:<8} {:<15} {:>8.2} {}  captured {:>9} of {:>9} dropped {:>8}",
                    r.load,
                    r.tool,
                    r.mode,
                    r.throughput,
                    load.unit(),
                    r.captured,
                    r.crossed,
                    r.dropped
                );
                runs.push(r);
            }
        }
        // A closing no-capture run, so every run has one after it too.
        runs.push(one_run(cnet, &lab, &veth, &tmp, load, Tool::None, Mode::FullFile, rounds, secs)?);
        set_baselines(&mut runs[first..]);
    }
    drop(server);
    let report = report::markdown(&runs, &loads, disk_mb_s, secs, rounds);
    println!("{report}");
    let dir = crate::util::workspace_root().join("bench/results");
    std::fs::create_dir_all(&dir)?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let kind = match (opts.quick, opts.latency) {
        (true, false) => "quick",
        (false, false) => "full",
        (true, true) => "latency-quick",
        (false, true) => "latency",
    };
    let json = serde_json::json!({
        "kind": kind, "seconds_per_run": secs, "rounds": rounds,
        "disk_write_mb_s": disk_mb_s, "kernel": kernel(), "runs": runs,
    });
    std::fs::write(dir.join(format!("{stamp}-{kind}.json")), serde_json::to_string_pretty(&json)?)?;
    std::fs::write(dir.join(format!("{stamp}-{kind}.md")), &report)?;
    eprintln!("bench: results in bench/results/{stamp}-{kind}.{{md,json}}");
    Ok(())
}

struct RemoveDir(PathBuf);
impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[allow(clippy::too_many_arguments)]
fn one_run(
    cnet: &Path,
    lab: &Lab,
    veth: &str,
    tmp: &Path,
    load: Load,
    tool: Tool,
    mode: Mode,
    round: usize,
    secs: u64,
) -> Result<Run> {
    let out = match mode {
        Mode::FullNull => PathBuf::from("/dev/null"),
        _ => tmp.join("capture.out"),
    };
    let snap = if mode == Mode::Snap96File { "96" } else { "0" };
    let filter: &[&str] = if mode == Mode::FilterNothing { &[FILTER_NOTHING] } else { &[] };
    let mut capture = match tool {
        Tool::None => None,
        Tool::Tcpdump => Some(
            Command::new("tcpdump")
                .args(["-i", veth, "-n", "-s", snap, "-B", "32768", "-w"])
                .arg(&out)
                .args(filter)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("starting tcpdump")?,
        ),
        Tool::Cnet => Some(
            Command::new(cnet)
                .env("CNET_HOOK_ONLY", if mode == Mode::HookOnly { "1" } else { "0" })
                .args(["capture", "-q", "-i", veth, "-s", snap, "-B", "32768", "-w"])
                .arg(&out)
                .args(filter)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("starting cnet")?,
        ),
        Tool::CnetLatency => Some(
            Command::new(cnet)
                .args(["latency", "-q", "-i", veth, "-i", &lab.host(1).host_veth, "-B", "32768"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("starting cnet latency")?,
        ),
    };
    // Both tools need a moment to attach; give them the same.
    std::thread::sleep(Duration::from_millis(if capture.is_some() { 700 } else { 100 }));
    // cnet latency hooks both lab veths: count what crossed both.
    let hooked = |veth: &str| {
        iface_packets(veth) + if tool == Tool::CnetLatency { iface_packets(&lab.host(1).host_veth) } else { 0 }
    };
    let crossed0 = hooked(veth);
    let cpu0 = machine_cpu_s();
    // The capture process's CPU is counted from here (both tools attached and
    // waiting) to its exit: start-up (loading, verifying, mapping) is a
    // one-time cost that short runs would otherwise spread over few packets.
    let capture_cpu0 = capture.as_ref().map_or(0.0, |c| process_cpu_s(c.id()));
    let t0 = Instant::now();
    let throughput = loads::generate(lab, load, secs)?;
    let seconds = t0.elapsed().as_secs_f64();
    let crossed = hooked(veth) - crossed0;
    let machine_cpu = machine_cpu_s() - cpu0;
    let mut run = Run {
        load: load.name(),
        tool: match tool {
            Tool::None => "none",
            Tool::Tcpdump => "tcpdump",
            Tool::Cnet => "cnet",
            Tool::CnetLatency => "cnet-latency",
        },
        mode: if tool == Tool::None { "-" } else { mode.name() },
        round,
        throughput,
        crossed,
        machine_cpu_s: machine_cpu,
        seconds,
        ..Default::default()
    };
    if let Some(child) = capture.as_mut() {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            e.read_to_string(&mut stderr)?;
        }
        let (cpu, rss) = wait_rusage(child)?;
        run.capture_cpu_s = (cpu - capture_cpu0).max(0.0);
        run.peak_rss_kib = rss;
        run.captured = summary_count(&stderr, "captured");
        run.dropped = summary_count(&stderr, "dropped by kernel");
        if mode != Mode::FullNull && mode != Mode::LatencyReport {
            run.bytes_written = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
            let _ = std::fs::remove_file(&out);
        }
    }
    Ok(run)
}

/// Sets each run's `baseline`: the no-capture throughput interpolated
/// between the nearest no-capture runs before and after it (`runs` are one
/// load's runs in the order they ran).
fn set_baselines(runs: &mut [Run]) {
    let nones: Vec<(usize, f64)> =
        runs.iter().enumerate().filter(|(_, r)| r.tool == "none").map(|(i, r)| (i, r.throughput)).collect();
    for (i, r) in runs.iter_mut().enumerate() {
        let before = nones.iter().rev().find(|(j, _)| *j <= i);
        let after = nones.iter().find(|(j, _)| *j >= i);
        r.baseline = match (before, after) {
            (Some(&(a, ta)), Some(&(b, tb))) if b > a => ta + (tb - ta) * (i - a) as f64 / (b - a) as f64,
            (Some(&(_, t)), _) | (_, Some(&(_, t))) => t,
            _ => f64::NAN,
        };
    }
}
