//! The collector: reads packet records from the BPF ring buffer, turns
//! kernel timestamps into wall-clock time and hands labeled packets to the
//! sinks.

use std::os::fd::AsRawFd;

use cnet_common::{Hook, PacketHeader, HEADER_LEN};

/// A packet record as the kernel wrote it.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub header: PacketHeader,
    pub data: &'a [u8],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("ring-buffer record of {0} bytes is shorter than its {HEADER_LEN}-byte header")]
    Short(usize),
    #[error("ring-buffer record claims {cap_len} packet bytes but carries {have}")]
    Truncated { cap_len: u32, have: usize },
    #[error("ring-buffer record has unknown hook {0}")]
    BadHook(u8),
}

/// Parses one ring-buffer record. Never panics, whatever the bytes.
pub fn parse_record(buf: &[u8]) -> Result<Record<'_>, RecordError> {
    if buf.len() < HEADER_LEN {
        return Err(RecordError::Short(buf.len()));
    }
    // SAFETY: PacketHeader is plain old data and `buf` holds at least
    // HEADER_LEN bytes; read_unaligned copes with any alignment.
    let header: PacketHeader = unsafe { std::ptr::read_unaligned(buf.as_ptr().cast()) };
    if Hook::from_u8(header.hook).is_none() {
        return Err(RecordError::BadHook(header.hook));
    }
    let rest = &buf[HEADER_LEN..];
    let cap = header.cap_len as usize;
    if cap > rest.len() {
        return Err(RecordError::Truncated { cap_len: header.cap_len, have: rest.len() });
    }
    Ok(Record { header, data: &rest[..cap] })
}

/// Converts CLOCK_MONOTONIC nanoseconds (what `bpf_ktime_get_ns` returns)
/// into nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    offset_ns: i128,
}

fn clock_ns(id: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

impl Clock {
    /// Measures the realtime − monotonic offset, keeping the tightest of a
    /// few samples so a preemption between the two reads does not skew it.
    pub fn new() -> Self {
        let mut best: Option<(i128, i128)> = None;
        for _ in 0..5 {
            let m1 = clock_ns(libc::CLOCK_MONOTONIC);
            let r = clock_ns(libc::CLOCK_REALTIME);
            let m2 = clock_ns(libc::CLOCK_MONOTONIC);
            let width = m2 - m1;
            let offset = r - (m1 + width / 2);
            if best.is_none_or(|(w, _)| width < w) {
                best = Some((width, offset));
            }
        }
        Clock { offset_ns: best.map_or(0, |(_, o)| o) }
    }

    pub fn wall_ns(&self, mono_ns: u64) -> u64 {
        (mono_ns as i128 + self.offset_ns).max(0) as u64
    }

    /// Current wall-clock time in ns.
    pub fn now_wall_ns() -> u64 {
        clock_ns(libc::CLOCK_REALTIME) as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads up to `max` records from `ring`, calling `f` for each. Returns how
/// many records were read; fewer than `max` means the ring is empty.
pub fn drain<R, F>(ring: &mut aya::maps::RingBuf<R>, max: usize, mut f: F) -> usize
where
    R: std::borrow::Borrow<aya::maps::MapData>,
    aya::maps::RingBuf<R>: AsRawFd,
    F: FnMut(&[u8]),
{
    let mut n = 0;
    while n < max {
        let Some(item) = ring.next() else { break };
        f(&item);
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(cap: u32, data_len: usize, hook: u8) -> Vec<u8> {
        let h = PacketHeader { ts_ns: 1, ifindex: 2, orig_len: 100, cap_len: cap, mark: 0, hash: 0, hook, _pad: [0; 3] };
        let mut v = vec![0u8; HEADER_LEN + data_len];
        // SAFETY: v has room for the header.
        unsafe { std::ptr::write_unaligned(v.as_mut_ptr().cast(), h) };
        v
    }

    #[test]
    fn parses_record_with_size_class_padding() {
        let buf = record(60, 127, 1);
        let r = parse_record(&buf).unwrap();
        assert_eq!(r.data.len(), 60);
        assert_eq!(r.header.orig_len, 100);
    }

    #[test]
    fn rejects_bad_records() {
        assert_eq!(parse_record(&[0u8; 5]).unwrap_err(), RecordError::Short(5));
        assert!(matches!(parse_record(&record(200, 127, 0)), Err(RecordError::Truncated { .. })));
        assert_eq!(parse_record(&record(1, 127, 7)).unwrap_err(), RecordError::BadHook(7));
    }

    #[test]
    fn clock_maps_now_to_now() {
        let c = Clock::new();
        let wall = c.wall_ns(clock_ns(libc::CLOCK_MONOTONIC) as u64);
        let now = Clock::now_wall_ns();
        assert!(now.abs_diff(wall) < 50_000_000, "{now} vs {wall}");
    }
}
