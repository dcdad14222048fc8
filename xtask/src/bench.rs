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

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cnet_tests::Lab;
use cnet_tests::traffic::{self, IPERF_PORT, LoadServers};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Load {
    Tcp1,
    Tcp2,
    Udp64,
    ReqResp,
}

impl Load {
    fn name(self) -> &'static str {
        match self {
            Load::Tcp1 => "tcp-bulk-1",
            Load::Tcp2 => "tcp-bulk-2",
            Load::Udp64 => "udp-64B",
            Load::ReqResp => "tcp-req-resp",
        }
    }
    fn unit(self) -> &'static str {
        match self {
            Load::Tcp1 | Load::Tcp2 => "Gbit/s",
            Load::Udp64 => "kpps",
            Load::ReqResp => "ktrans/s",
        }
    }
}

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

pub fn run(cnet: &Path, opts: &Options) -> Result<()> {
    let secs = opts.seconds.unwrap_or(if opts.quick { 2 } else { 8 });
    let rounds = opts.rounds.unwrap_or(if opts.quick { 1 } else { 3 });
    let all = [Load::Tcp1, Load::Tcp2, Load::Udp64, Load::ReqResp];
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
    let report = report(&runs, &loads, disk_mb_s, secs, rounds);
    println!("{report}");
    let dir = crate::workspace_root().join("bench/results");
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

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string()
}

/// Sequential write rate of the folder's file system, MB/s (1 GB + fsync).
fn disk_write_rate(dir: &Path) -> Result<f64> {
    let path = dir.join("disk-rate");
    let buf = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    let mut f = std::fs::File::create(&path)?;
    for _ in 0..1000 {
        f.write_all(&buf)?;
    }
    f.sync_all()?;
    let rate = 1000.0 * 1.048576 / start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(rate)
}

fn iface_packets(ifname: &str) -> u64 {
    let read = |f: &str| {
        std::fs::read_to_string(format!("/sys/class/net/{ifname}/statistics/{f}"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    read("rx_packets") + read("tx_packets")
}

/// Busy CPU time of the whole machine (user+nice+system+irq+softirq), s.
fn machine_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().next().unwrap_or_default();
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let busy = v.first().unwrap_or(&0)
        + v.get(1).unwrap_or(&0)
        + v.get(2).unwrap_or(&0)
        + v.get(5).unwrap_or(&0)
        + v.get(6).unwrap_or(&0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    busy as f64 / hz
}

/// User + system CPU seconds a process has used so far (/proc/PID/stat).
fn process_cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the name.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / hz
}

/// Waits for a child and returns (cpu seconds, peak RSS KiB).
fn wait_rusage(child: &mut Child) -> Result<(f64, u64)> {
    let mut status = 0;
    // SAFETY: plain wait4 on our own child with valid out-pointers.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as i32;
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    if rc != pid {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    let cpu = ru.ru_utime.tv_sec as f64
        + ru.ru_utime.tv_usec as f64 / 1e6
        + ru.ru_stime.tv_sec as f64
        + ru.ru_stime.tv_usec as f64 / 1e6;
    Ok((cpu, ru.ru_maxrss as u64))
}

/// "N packets <what>" from tcpdump's or cnet's summary.
fn summary_count(stderr: &str, what: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| {
            let (n, rest) = l.split_once(' ')?;
            (rest.trim_start_matches("packets ").trim_start_matches("packet ") == what).then(|| n.parse().ok())?
        })
        .unwrap_or(0)
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
    let throughput = generate(lab, load, secs)?;
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

/// Runs one load for `secs` seconds; returns its throughput in the load's unit.
fn generate(lab: &Lab, load: Load, secs: u64) -> Result<f64> {
    match load {
        Load::Tcp1 | Load::Tcp2 => {
            let streams = if load == Load::Tcp1 { "1" } else { "2" };
            let out = lab.exec(
                0,
                &[
                    "iperf3",
                    "-c",
                    &lab.host(1).ip.to_string(),
                    "-p",
                    &IPERF_PORT.to_string(),
                    "-t",
                    &secs.to_string(),
                    "-P",
                    streams,
                    "-J",
                ],
            )?;
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("iperf3 JSON")?;
            let bps = v["end"]["sum_received"]["bits_per_second"].as_f64().context("iperf3 result")?;
            Ok(bps / 1e9)
        }
        // kpps counted at the sender.
        Load::Udp64 => Ok(traffic::udp_flood(lab, 0, 1, secs)? as f64 / secs as f64 / 1e3),
        // Thousands of transactions/s.
        Load::ReqResp => Ok(traffic::req_resp(lab, 0, 1, secs)? as f64 / secs as f64 / 1e3),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    // NaN (e.g. CPU per captured packet when nothing is captured) sorts last.
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// Medians of one (load, tool, mode): throughput, completeness, drops,
/// capture CPU, machine CPU, RSS, write rate, cost; then the smallest and
/// largest cost of its rounds.
type Row = (f64, f64, f64, f64, f64, f64, f64, f64, f64, f64);

/// Medians per (load, tool, mode) and the cnet/tcpdump ratios.
fn report(runs: &[Run], loads: &[Load], disk_mb_s: f64, secs: u64, rounds: usize) -> String {
    let mut groups: BTreeMap<(&str, &str, &str), Vec<&Run>> = BTreeMap::new();
    for r in runs {
        groups.entry((r.load, r.tool, r.mode)).or_default().push(r);
    }
    let med = |rs: &[&Run], f: &dyn Fn(&Run) -> f64| median(rs.iter().map(|r| f(r)).collect());
    // Smallest and largest value over the rounds: how far to trust a median.
    let spread = |rs: &[&Run], f: &dyn Fn(&Run) -> f64| {
        rs.iter()
            .map(|r| f(r))
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
    };
    let mut s = String::new();
    let vs_tcpdump = runs.iter().any(|r| r.tool == "tcpdump");
    s.push_str(&format!(
        "# {} ({} s per run, {rounds} round(s), medians; kernel {}; disk {:.0} MB/s)\n\n",
        if vs_tcpdump { "cnet vs tcpdump" } else { "cnet latency vs cnet capture" },
        secs,
        kernel(),
        disk_mb_s
    ));
    s.push_str("| load | tool | mode | throughput | cost vs none | completeness | drops | capture CPU µs/pkt | machine CPU µs/pkt | peak RSS MiB | written MB/s |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    let mut ratios = String::from(
        "\n## cnet / tcpdump\n\n| load | mode | throughput | completeness | capture CPU per packet | written MB/s |\n|---|---|---|---|---|---|\n",
    );
    for load in loads.iter().copied() {
        let nones = groups.get(&(load.name(), "none", "-")).map(Vec::as_slice).unwrap_or_default();
        let base = med(nones, &|r| r.throughput);
        let (base_lo, base_hi) = spread(nones, &|r| r.throughput);
        let row = |tool: &str, mode: &str| -> Option<Row> {
            let rs = groups.get(&(load.name(), tool, mode))?;
            let tp = med(rs, &|r| r.throughput);
            let compl = med(rs, &|r| if r.crossed == 0 { 0.0 } else { r.captured as f64 / r.crossed as f64 });
            let drops = med(rs, &|r| r.dropped as f64);
            let cpu = med(rs, &|r| if r.captured == 0 { f64::NAN } else { r.capture_cpu_s * 1e6 / r.captured as f64 });
            let mcpu = med(rs, &|r| if r.crossed == 0 { f64::NAN } else { r.machine_cpu_s * 1e6 / r.crossed as f64 });
            let rss = med(rs, &|r| r.peak_rss_kib as f64 / 1024.0);
            let wr = med(rs, &|r| r.bytes_written as f64 / r.seconds / 1e6);
            let cost_of = |r: &Run| if r.baseline > 0.0 { 1.0 - r.throughput / r.baseline } else { f64::NAN };
            let cost = med(rs, &cost_of);
            let (lo, hi) = spread(rs, &cost_of);
            Some((tp, compl, drops, cpu, mcpu, rss, wr, cost, lo, hi))
        };
        s.push_str(&format!(
            "| {} | none | - | {base:.2} {} ({base_lo:.2}–{base_hi:.2}) | | | | | | | |\n",
            load.name(),
            load.unit()
        ));
        for mode in
            [Mode::FullFile, Mode::FullNull, Mode::Snap96File, Mode::FilterNothing, Mode::HookOnly, Mode::LatencyReport]
        {
            let mut pair = Vec::new();
            for tool in ["tcpdump", "cnet", "cnet-latency"] {
                if let Some((tp, compl, drops, cpu, mcpu, rss, wr, cost, lo, hi)) = row(tool, mode.name()) {
                    s.push_str(&format!(
                        "| {} | {tool} | {} | {tp:.2} {} | {:+.1} % ({:+.1}…{:+.1}) | {:.1} % | {drops:.0} | {cpu:.2} | {mcpu:.2} | {rss:.1} | {wr:.0} |\n",
                        load.name(),
                        mode.name(),
                        load.unit(),
                        -cost * 100.0,
                        -hi * 100.0,
                        -lo * 100.0,
                        compl * 100.0
                    ));
                    pair.push((tp, compl, cpu, wr));
                }
            }
            if let [t, c] = pair[..] {
                ratios.push_str(&format!(
                    "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                    load.name(),
                    mode.name(),
                    c.0 / t.0,
                    c.1 / t.1,
                    c.2 / t.2,
                    c.3 / t.3
                ));
            }
        }
    }
    if vs_tcpdump {
        s.push_str(&ratios);
    }
    s.push_str("\nthroughput: traffic rate while capturing; completeness: packets captured / packets that crossed the hooked veth (interface counters); cost vs none: median over rounds of 1 − throughput / no-capture throughput at that time (interpolated between the no-capture runs around it), with the range over rounds in brackets (the no-capture row gives its own range); tc hook alone: cnet's programs attached but returning at once (`CNET_HOOK_ONLY=1`), the floor for any tc program; capture CPU: user+system time of the capture process from the start of the load to its exit (start-up excluded, for both tools) per captured packet; machine CPU: all busy CPU time (softirq included) per packet that crossed the veth.\n");
    s
}
