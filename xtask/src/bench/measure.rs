//! What one bench run measures: interface packet counters, machine and
//! process CPU time, a capture process's rusage and summary counts, plus the
//! machine facts the report states (kernel, disk write rate).

use std::io::Write;
use std::path::Path;
use std::process::Child;
use std::time::Instant;

use anyhow::{Context, Result};

/// The running kernel's release.
pub(super) fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string()
}

/// Sequential write rate of the folder's file system, MB/s (1 GB + fsync).
pub(super) fn disk_write_rate(dir: &Path) -> Result<f64> {
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

/// Packets received plus sent on the interface so far.
pub(super) fn iface_packets(ifname: &str) -> u64 {
    let read = |f: &str| {
        std::fs::read_to_string(format!("/sys/class/net/{ifname}/statistics/{f}"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    read("rx_packets") + read("tx_packets")
}

/// Busy CPU time of the whole machine (user+nice+system+irq+softirq), s.
pub(super) fn machine_cpu_s() -> f64 {
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
pub(super) fn process_cpu_s(pid: u32) -> f64 {
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
pub(super) fn wait_rusage(child: &mut Child) -> Result<(f64, u64)> {
    let reaped = cnet_tests::reap::wait4_child(child.id(), None)
        .context("wait4 failed")?
        .context("wait4 returned before the child ended")?;
    Ok((reaped.cpu_s, reaped.max_rss_kib))
}

/// "N packets <what>" from tcpdump's or cnet's summary.
pub(super) fn summary_count(stderr: &str, what: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| {
            let (n, rest) = l.split_once(' ')?;
            (rest.trim_start_matches("packets ").trim_start_matches("packet ") == what).then(|| n.parse().ok())?
        })
        .unwrap_or(0)
}
