//! The bench's markdown report: medians over rounds per (load, tool, mode),
//! their spread, and the cnet / tcpdump ratios.

use std::collections::BTreeMap;

use super::loads::Load;
use super::measure::kernel;
use super::{Mode, Run};

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
pub(super) fn markdown(runs: &[Run], loads: &[Load], disk_mb_s: f64, secs: u64, rounds: usize) -> String {
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
