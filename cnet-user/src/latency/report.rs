//! The latency report: one structure, three presentations (terminal table,
//! JSON, plot), so all show the same figures.

use serde::{Deserialize, Serialize};

use super::flows::{FlowTracker, Metric};
use super::hops::{HopMatcher, WINDOW_NS};
use super::stats::{Latencies, Stats, format_ns, log2_bucket};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Packets analysed (IP packets on the captured hooks).
    pub packets: u64,
    /// Flow latencies, sorted by p99, highest first.
    pub flows: Vec<FlowRow>,
    /// Hop latencies, sorted by p99, highest first.
    pub hops: Vec<HopRow>,
    pub hop_matching: HopMatching,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRow {
    pub metric: Metric,
    pub protocol: String,
    pub client: String,
    pub server: String,
    pub server_port: u16,
    /// "client", "server" or the interface the figures were measured on.
    pub seen_at: String,
    pub connections: u64,
    pub retransmissions: u64,
    pub resets: u64,
    pub dns_unanswered: u64,
    pub stats: Stats,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HopRow {
    /// Hook the packet was seen on first: `netns:a eth0 out`.
    pub from: String,
    /// Hook it was seen on next: `netns:b eth0 in`.
    pub to: String,
    pub protocol: String,
    pub stats: Stats,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HopMatching {
    /// Copies matched to exactly one earlier copy (one hop sample each).
    pub matched: u64,
    /// Packets seen on one hook only.
    pub unmatched: u64,
    /// Copies that could belong to more than one packet: not guessed.
    pub ambiguous: u64,
    /// How long a packet waits for its copy.
    pub window_ns: u64,
}

impl Report {
    pub fn build(
        packets: u64,
        flows: &FlowTracker,
        hops: &HopMatcher,
        hook_label: impl Fn(u32, crate::model::Direction) -> String,
    ) -> Report {
        let mut out = Report {
            packets,
            hop_matching: HopMatching {
                matched: hops.matched,
                unmatched: hops.unmatched,
                ambiguous: hops.ambiguous,
                window_ns: WINDOW_NS,
            },
            ..Default::default()
        };
        for g in &flows.groups {
            let f = &g.figures;
            let row = |metric: Metric, l: &Latencies| FlowRow {
                metric,
                protocol: g.key.proto.as_str().to_string(),
                client: g.key.client.clone(),
                server: g.key.server.clone(),
                server_port: g.key.server_port,
                seen_at: g.key.seen_at.clone(),
                connections: f.connections,
                retransmissions: f.retransmissions,
                resets: f.resets,
                dns_unanswered: f.dns_unanswered,
                stats: l.summary(),
            };
            let before = out.flows.len();
            for (metric, l) in [
                (Metric::TcpSynToSynack, &f.syn_to_synack),
                (Metric::TcpSynackToAck, &f.synack_to_ack),
                (Metric::TcpRequestResponse, &f.request_response),
                (Metric::DnsQueryAnswer, &f.dns),
            ] {
                if !l.is_empty() {
                    out.flows.push(row(metric, l));
                }
            }
            if out.flows.len() == before && (f.retransmissions > 0 || f.resets > 0 || f.dns_unanswered > 0) {
                out.flows.push(row(Metric::NoLatency, &Latencies::default()));
            }
        }
        for g in &hops.groups {
            out.hops.push(HopRow {
                from: hook_label(g.from.0, g.from.1),
                to: hook_label(g.to.0, g.to.1),
                protocol: g.proto.as_str().to_string(),
                stats: g.latencies.summary(),
            });
        }
        let by_p99 = |a: &Stats, b: &Stats| (b.count > 0).cmp(&(a.count > 0)).then(b.p99_ns.cmp(&a.p99_ns));
        out.flows.sort_by(|a, b| {
            by_p99(&a.stats, &b.stats).then_with(|| {
                (&a.client, &a.server, a.server_port, &a.seen_at, a.metric).cmp(&(
                    &b.client,
                    &b.server,
                    b.server_port,
                    &b.seen_at,
                    b.metric,
                ))
            })
        });
        out.hops.sort_by(|a, b| {
            by_p99(&a.stats, &b.stats).then_with(|| (&a.from, &a.to, &a.protocol).cmp(&(&b.from, &b.to, &b.protocol)))
        });
        out
    }

    /// The terminal table: flows, then hops, each with a log2 histogram per
    /// row on a shared axis.
    pub fn table(&self) -> String {
        let mut s = String::new();
        if self.flows.is_empty() {
            s.push_str("flows: no TCP handshake, request/response or DNS exchange seen\n");
        } else {
            let mut rows = vec![header(&["LATENCY", "FLOW (client → server:port)", "SEEN AT"], &["RETX", "RST"])];
            let axis = Axis::of(self.flows.iter().map(|r| &r.stats));
            rows[0].push(axis.header());
            for r in &self.flows {
                let mut row = vec![
                    r.metric.label().to_string(),
                    format!("{} {} → {}:{}", r.protocol, r.client, r.server, r.server_port),
                    r.seen_at.clone(),
                ];
                row.extend(figures(&r.stats));
                row.push(r.retransmissions.to_string());
                row.push(r.resets.to_string());
                row.push(axis.bar(&r.stats));
                rows.push(row);
            }
            render(&mut s, &rows, &[3, 4, 5, 6, 7, 8, 9, 10]);
        }
        s.push('\n');
        if self.hops.is_empty() {
            s.push_str("hops: no packet was seen on two captured hooks\n");
        } else {
            let mut rows = vec![header(&["HOP (first hook → next hook)", "PROTO"], &[])];
            let axis = Axis::of(self.hops.iter().map(|r| &r.stats));
            rows[0].push(axis.header());
            for r in &self.hops {
                let mut row = vec![format!("{} → {}", r.from, r.to), r.protocol.clone()];
                row.extend(figures(&r.stats));
                row.push(axis.bar(&r.stats));
                rows.push(row);
            }
            render(&mut s, &rows, &[2, 3, 4, 5, 6, 7]);
        }
        let m = &self.hop_matching;
        s.push_str(&format!(
            "hop matching: {} copies matched, {} packets seen on one hook only, {} ambiguous copies (not guessed); window {}\n",
            m.matched,
            m.unmatched,
            m.ambiguous,
            format_ns(m.window_ns)
        ));
        s
    }

    pub fn json(&self) -> String {
        // Serialising plain structs of strings and integers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// COUNT, MIN, P50, P90, P99, MAX as shown in the table.
pub fn figures(s: &Stats) -> Vec<String> {
    if s.count == 0 {
        return vec!["0".into(), "-".into(), "-".into(), "-".into(), "-".into(), "-".into()];
    }
    vec![
        s.count.to_string(),
        format_ns(s.min_ns),
        format_ns(s.p50_ns),
        format_ns(s.p90_ns),
        format_ns(s.p99_ns),
        format_ns(s.max_ns),
    ]
}

/// The log2 buckets shared by the rows of one table.
struct Axis {
    lo: usize,
    hi: usize,
}

impl Axis {
    fn of<'a>(stats: impl Iterator<Item = &'a Stats>) -> Axis {
        let (mut lo, mut hi) = (usize::MAX, 0);
        for s in stats {
            for b in &s.log2_buckets {
                let i = log2_bucket(b.from_ns);
                lo = lo.min(i);
                hi = hi.max(i);
            }
        }
        if lo > hi {
            (lo, hi) = (0, 0);
        }
        Axis { lo, hi }
    }

    fn header(&self) -> String {
        format!("LOG2 HISTOGRAM {}…{}", format_ns(1u64 << self.lo), format_ns(1u64 << (self.hi + 1).min(63)))
    }

    /// One character per log2 bucket, heights relative to the row's
    /// fullest bucket.
    fn bar(&self, s: &Stats) -> String {
        const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
        let max = s.log2_buckets.iter().map(|b| b.count).max().unwrap_or(0);
        (self.lo..=self.hi)
            .map(|i| {
                let n = s.log2_buckets.iter().find(|b| log2_bucket(b.from_ns) == i).map_or(0, |b| b.count);
                if n == 0 { ' ' } else { LEVELS[((n * 8).div_ceil(max) as usize).clamp(1, 8) - 1] }
            })
            .collect::<String>()
    }
}

/// Aligned columns; `right` lists the right-aligned ones.
fn render(out: &mut String, rows: &[Vec<String>], right: &[usize]) {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let width: Vec<usize> =
        (0..cols).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|v| v.chars().count()).max().unwrap_or(0)).collect();
    for r in rows {
        let mut line = String::new();
        for (c, v) in r.iter().enumerate() {
            let pad = width[c] - v.chars().count();
            if c > 0 {
                line.push_str("  ");
            }
            if right.contains(&c) {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(v);
            } else {
                line.push_str(v);
                if c + 1 < r.len() {
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}
/// A table's header row: `before`, the distribution columns that
/// [`figures`] fills, then `after`.
fn header(before: &[&str], after: &[&str]) -> Vec<String> {
    const FIGURE_COLUMNS: [&str; 6] = ["COUNT", "MIN", "P50", "P90", "P99", "MAX"];
    before.iter().chain(&FIGURE_COLUMNS).chain(after).map(|s| s.to_string()).collect()
}
