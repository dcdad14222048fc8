//! Latency statistics: an HDR histogram for the percentiles, exact minimum,
//! maximum and count, and log2 buckets for the small histograms of the
//! table and the plot.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest latency recorded as such (one minute); longer samples are
/// recorded as this value. Bounds the histogram's memory.
const MAX_NS: u64 = 60_000_000_000;
/// Three significant digits, as the table prints them. A histogram then
/// takes about 220 KiB, so it is only created when its first sample comes.
const SIGFIG: u8 = 3;

/// Samples of one latency, in nanoseconds.
pub struct Latencies {
    hist: Option<Histogram<u64>>,
    count: u64,
    min: u64,
    max: u64,
    log2: [u64; 64],
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies { hist: None, count: 0, min: u64::MAX, max: 0, log2: [0; 64] }
    }
}

impl Latencies {
    pub fn record(&mut self, ns: u64) {
        // Created on first use: most flow groups only ever fill one or two
        // of their latencies.
        let hist = match &mut self.hist {
            Some(h) => h,
            None => match Histogram::new_with_bounds(1, MAX_NS, SIGFIG) {
                Ok(h) => self.hist.insert(h),
                // The bounds are constants that hdrhistogram accepts (a unit
                // test builds this histogram); nothing to record into else.
                Err(_) => return,
            },
        };
        hist.saturating_record(ns.clamp(1, MAX_NS));
        self.count += 1;
        self.min = self.min.min(ns);
        self.max = self.max.max(ns);
        self.log2[log2_bucket(ns)] += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn summary(&self) -> Stats {
        let q = |p: f64| self.hist.as_ref().map_or(0, |h| h.value_at_quantile(p).clamp(self.min, self.max));
        Stats {
            count: self.count,
            min_ns: if self.count == 0 { 0 } else { self.min },
            p50_ns: q(0.50),
            p90_ns: q(0.90),
            p99_ns: q(0.99),
            max_ns: self.max,
            log2_buckets: self
                .log2
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(b, n)| Log2Bucket { from_ns: bucket_floor(b), count: *n })
                .collect(),
        }
    }
}

/// Bucket `b` holds [2^b, 2^(b+1)) ns; 0 ns goes into bucket 0.
pub fn log2_bucket(ns: u64) -> usize {
    if ns == 0 { 0 } else { 63 - ns.leading_zeros() as usize }
}

pub fn bucket_floor(b: usize) -> u64 {
    1u64 << b.min(63)
}

/// The figures shown for one latency; the same numbers go to the table,
/// the JSON and the plot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub count: u64,
    pub min_ns: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
    /// Non-empty log2 buckets, ascending.
    pub log2_buckets: Vec<Log2Bucket>,
}

/// Samples in [from_ns, 2 × from_ns).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Log2Bucket {
    pub from_ns: u64,
    pub count: u64,
}

/// A duration for people, three significant digits: `812ns`, `20.3µs`,
/// `1.52ms`, `2.00s`.
pub fn format_ns(ns: u64) -> String {
    let v = ns as f64;
    let (value, unit) = if ns < 1_000 {
        return format!("{ns}ns");
    } else if ns < 999_500 {
        (v / 1e3, "µs")
    } else if ns < 999_500_000 {
        (v / 1e6, "ms")
    } else {
        (v / 1e9, "s")
    };
    // The unit thresholds above keep rounding from carrying into a fourth
    // digit (999.6µs is written 1.00ms).
    if value >= 99.95 {
        format!("{value:.0}{unit}")
    } else if value >= 9.995 {
        format!("{value:.1}{unit}")
    } else {
        format!("{value:.2}{unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut l = Latencies::default();
        for i in 1..=1000u64 {
            l.record(i * 1_000_000); // 1..1000 ms
        }
        let s = l.summary();
        assert_eq!(s.count, 1000);
        assert_eq!(s.min_ns, 1_000_000);
        assert_eq!(s.max_ns, 1_000_000_000);
        let near = |v: u64, want: u64| (v as f64 - want as f64).abs() / want as f64 <= 0.01;
        assert!(near(s.p50_ns, 500_000_000), "{}", s.p50_ns);
        assert!(near(s.p90_ns, 900_000_000), "{}", s.p90_ns);
        assert!(near(s.p99_ns, 990_000_000), "{}", s.p99_ns);
        assert_eq!(s.log2_buckets.iter().map(|b| b.count).sum::<u64>(), 1000);
    }

    #[test]
    fn huge_and_zero_samples_are_kept_in_range() {
        let mut l = Latencies::default();
        l.record(0);
        l.record(u64::MAX);
        let s = l.summary();
        assert_eq!((s.count, s.min_ns, s.max_ns), (2, 0, u64::MAX));
        assert!(s.p50_ns <= s.p99_ns);
    }

    #[test]
    fn durations_have_three_significant_digits() {
        assert_eq!(format_ns(812), "812ns");
        assert_eq!(format_ns(20_345), "20.3µs");
        assert_eq!(format_ns(1_523_000), "1.52ms");
        assert_eq!(format_ns(999_960), "1.00ms");
        assert_eq!(format_ns(2_000_000_000), "2.00s");
    }
}
