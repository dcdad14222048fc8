//! The collector: reads packet records from the BPF ring buffer ([`Ring`]),
//! turns each into a labelled packet ([`Collector`]: interface, direction,
//! wall-clock time from the kernel's monotonic stamp) and hands it to a
//! sink. This is the whole per-packet path in userspace; it allocates
//! nothing per packet.

use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use cnet_common::{HEADER_LEN, Hook, PacketHeader};

use crate::model::{Direction, Endpoint, Iface, Packet};
use crate::pipeline::sinks::Sink;

/// Records read per drain before other work (flushes, signals) gets a turn.
pub const BATCH: usize = 8192;

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
    /// Realtime − monotonic; i64 holds it until the year 2262, and a
    /// 64-bit add is what the per-packet path can afford.
    offset_ns: i64,
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
        Clock { offset_ns: best.map_or(0, |(_, o)| o) as i64 }
    }

    pub fn wall_ns(&self, mono_ns: u64) -> u64 {
        mono_ns.saturating_add_signed(self.offset_ns)
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

/// Interface index → position in the capture's interface list, looked up
/// once per packet. A capture has a few interfaces, so a binary search over
/// a short sorted array beats hashing the key with SipHash.
#[derive(Clone, Debug, Default)]
pub struct IfindexMap {
    entries: Vec<(u32, usize)>,
}

impl IfindexMap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, ifindex: u32, pos: usize) {
        match self.entries.binary_search_by_key(&ifindex, |e| e.0) {
            Ok(i) => self.entries[i].1 = pos,
            Err(i) => self.entries.insert(i, (ifindex, pos)),
        }
    }

    #[inline]
    pub fn get(&self, ifindex: &u32) -> Option<&usize> {
        let i = self.entries.binary_search_by_key(ifindex, |e| e.0).ok()?;
        Some(&self.entries[i].1)
    }
}

/// Reads a BPF ring buffer straight from its shared memory.
///
/// aya's `RingBuf::next` publishes the consumer position after every record:
/// one store per packet to a cache line the producing CPUs read on every
/// reservation. This reader walks all available records and publishes the
/// position once per batch (or every sixteenth of the ring, so a long batch
/// of large records frees space as it goes). It maps the data area once
/// instead of twice (aya and libbpf map it twice so that records crossing
/// the end are contiguous): the few records that wrap are copied into a
/// scratch buffer, and mapping, unmapping and page-table cost halve.
pub struct Ring {
    map: aya::maps::MapData,
    /// The consumer page (read-write) and the producer page plus data area
    /// (read-only), as mapped.
    consumer: NonNull<u8>,
    producer: NonNull<u8>,
    page: usize,
    size: usize,
    /// Consumer position: records before it have been handed out.
    pos: u64,
    /// Consumer position last published to the kernel.
    published: u64,
    /// A wrapped record, made contiguous.
    scratch: Vec<u8>,
}

// SAFETY: the mappings belong to this value alone; nothing about them is
// tied to the thread that created them.
unsafe impl Send for Ring {}

/// Kernel ring-buffer record header bits (`BPF_RINGBUF_BUSY_BIT`,
/// `BPF_RINGBUF_DISCARD_BIT`) and header size (`BPF_RINGBUF_HDR_SZ`).
const RB_BUSY: u32 = 1 << 31;
const RB_DISCARD: u32 = 1 << 30;
const RB_HDR: usize = 8;

impl Ring {
    /// Maps the ring buffer `map` (a `BPF_MAP_TYPE_RINGBUF`).
    pub fn new(map: aya::maps::MapData) -> io::Result<Ring> {
        use std::os::fd::AsFd;
        let size = map.info().map_err(io::Error::other)?.max_entries() as usize;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        if !size.is_power_of_two() || size < page {
            return Err(io::Error::other(format!("ring buffer size {size} is not a power-of-two number of pages")));
        }
        let fd = map.fd().as_fd().as_raw_fd();
        let mmap = |len: usize, prot: libc::c_int, offset: usize| -> io::Result<NonNull<u8>> {
            // SAFETY: a fresh shared mapping of the map's fd; the kernel
            // checks offset, length and protection against the ring.
            let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd, offset as libc::off_t) };
            if p == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            // mmap without MAP_FIXED never returns address 0 on success.
            NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned a null mapping"))
        };
        let consumer = mmap(page, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        let producer = match mmap(page + size, libc::PROT_READ, page) {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: unmapping the mapping made just above.
                unsafe { libc::munmap(consumer.as_ptr().cast(), page) };
                return Err(e);
            }
        };
        let mut r = Ring { map, consumer, producer, page, size, pos: 0, published: 0, scratch: Vec::new() };
        r.pos = r.consumer_pos().load(Ordering::Acquire);
        r.published = r.pos;
        Ok(r)
    }

    fn consumer_pos(&self) -> &AtomicU64 {
        // SAFETY: the consumer page starts with the kernel's u64
        // consumer_pos, 8-aligned (page-aligned) and alive while `self` is.
        unsafe { AtomicU64::from_ptr(self.consumer.as_ptr().cast()) }
    }

    fn producer_pos(&self) -> &AtomicU64 {
        // SAFETY: as above, for the producer page's producer_pos.
        unsafe { AtomicU64::from_ptr(self.producer.as_ptr().cast()) }
    }

    fn data(&self) -> *const u8 {
        // SAFETY: the data area follows the producer page in our mapping.
        unsafe { self.producer.as_ptr().add(self.page) }
    }

    /// Hands up to `max` records to `f`, oldest first, and returns how many
    /// it handed out; fewer than `max` means the ring is empty (or `f`
    /// returned false, which stops after that record). A record's bytes are
    /// valid only during its call.
    pub fn read(&mut self, max: usize, mut f: impl FnMut(&[u8]) -> bool) -> usize {
        let mask = self.size as u64 - 1;
        let publish_every = (self.size / 16) as u64;
        let mut n = 0;
        let mut prod = self.producer_pos().load(Ordering::Acquire);
        'records: while n < max {
            if self.pos >= prod {
                // Look again once: records committed while we worked belong
                // to this batch too.
                prod = self.producer_pos().load(Ordering::Acquire);
                if self.pos >= prod {
                    break;
                }
            }
            let off = (self.pos & mask) as usize;
            // SAFETY: `off` is 8-aligned and below `size`, so the 8-byte
            // header lies inside the data area; the kernel writes `len`
            // atomically (busy bit cleared last, with release semantics).
            let len = unsafe { AtomicU32::from_ptr(self.data().add(off) as *mut u32) }.load(Ordering::Acquire);
            if len & RB_BUSY != 0 {
                // Reserved but not yet committed: everything after it waits.
                break;
            }
            let payload = (len & !(RB_BUSY | RB_DISCARD)) as usize;
            self.pos += ((payload + RB_HDR + 7) & !7) as u64;
            if len & RB_DISCARD == 0 {
                n += 1;
                let start = off + RB_HDR;
                let go_on = if start + payload <= self.size {
                    // SAFETY: the record lies inside the mapped data area
                    // and the kernel does not reuse it before we publish a
                    // consumer position past it.
                    f(unsafe { std::slice::from_raw_parts(self.data().add(start), payload) })
                } else {
                    // The record crosses the end of the data area.
                    let first = self.size.saturating_sub(start);
                    self.scratch.clear();
                    // SAFETY: both pieces lie inside the mapped data area.
                    unsafe {
                        self.scratch
                            .extend_from_slice(std::slice::from_raw_parts(self.data().add(start % self.size), first));
                        self.scratch.extend_from_slice(std::slice::from_raw_parts(
                            self.data().add((start + first) % self.size),
                            payload - first,
                        ));
                    }
                    f(&self.scratch)
                };
                if !go_on {
                    break 'records;
                }
            }
            if self.pos - self.published >= publish_every {
                self.publish();
            }
        }
        self.publish();
        n
    }

    fn publish(&mut self) {
        if self.pos != self.published {
            self.consumer_pos().store(self.pos, Ordering::Release);
            self.published = self.pos;
        }
    }

    /// Bytes of the ring buffer's data area.
    pub fn size(&self) -> usize {
        self.size
    }
}

impl AsRawFd for Ring {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd;
        self.map.fd().as_fd().as_raw_fd()
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the two mappings made in `new`.
        unsafe {
            libc::munmap(self.consumer.as_ptr().cast(), self.page);
            libc::munmap(self.producer.as_ptr().cast(), self.page + self.size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(cap: u32, data_len: usize, hook: u8) -> Vec<u8> {
        let h =
            PacketHeader { ts_ns: 1, ifindex: 2, orig_len: 100, cap_len: cap, mark: 0, hash: 0, hook, _pad: [0; 3] };
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

/// What one [`Collector::drain`] did.
#[derive(Clone, Copy, Debug)]
pub struct Drained {
    /// Records read from the ring.
    pub records: usize,
    /// False once the packet limit is reached: the capture is over.
    pub more: bool,
}

/// Turns ring-buffer records into labelled packets for a sink, and counts
/// them per interface. Interfaces are added as they are hooked and never
/// removed, so records still in the ring after an interface went away are
/// labelled correctly; an interface's position is its pcapng id.
#[derive(Debug)]
pub struct Collector {
    ifaces: Vec<Iface>,
    by_ifindex: IfindexMap,
    clock: Clock,
    delivered: Vec<u64>,
    captured: u64,
    /// Packet bytes handed to the sink (captured lengths).
    captured_bytes: u64,
    limit: u64,
    bad_records: u64,
    direction: Option<Direction>,
}

impl Collector {
    /// A collector that stops after `limit` packets (none: no limit) and
    /// keeps only packets in `direction` (none: both).
    pub fn new(clock: Clock, limit: Option<u64>, direction: Option<Direction>) -> Collector {
        Collector {
            ifaces: Vec::new(),
            by_ifindex: IfindexMap::new(),
            clock,
            delivered: Vec::new(),
            captured: 0,
            captured_bytes: 0,
            limit: limit.unwrap_or(u64::MAX),
            bad_records: 0,
            direction,
        }
    }

    /// Adds the interface of `endpoint` with the next pcapng id and returns
    /// it, for the sink to describe.
    pub fn add(&mut self, endpoint: Endpoint, snaplen: u32, filter: Option<&str>) -> &Iface {
        let id = self.ifaces.len();
        self.by_ifindex.insert(endpoint.ifindex, id);
        self.ifaces.push(Iface::new(id as u32, endpoint, snaplen).with_filter(filter));
        self.delivered.push(0);
        &self.ifaces[id]
    }

    /// Every interface ever added, by pcapng id.
    pub fn ifaces(&self) -> &[Iface] {
        &self.ifaces
    }

    /// Packets handed to the sink, per interface (by pcapng id).
    pub fn delivered(&self) -> &[u64] {
        &self.delivered
    }

    /// Packets handed to the sink in all.
    pub fn captured(&self) -> u64 {
        self.captured
    }

    /// Packet bytes handed to the sink in all (as captured, not on the wire).
    pub fn captured_bytes(&self) -> u64 {
        self.captured_bytes
    }

    /// Whether the packet limit has been reached.
    pub fn done(&self) -> bool {
        self.captured >= self.limit
    }

    /// Records that could not be parsed (and were skipped).
    pub fn bad_records(&self) -> u64 {
        self.bad_records
    }

    /// Handles one record; returns false once the packet limit is reached.
    pub fn record(&mut self, bytes: &[u8], sink: &mut dyn Sink) -> io::Result<bool> {
        if self.done() {
            return Ok(false);
        }
        let rec = match parse_record(bytes) {
            Ok(r) => r,
            Err(e) => {
                self.bad_records += 1;
                if self.bad_records == 1 {
                    log::warn!("skipping malformed ring-buffer record: {e}");
                }
                return Ok(true);
            }
        };
        let Some(&idx) = self.by_ifindex.get(&rec.header.ifindex) else { return Ok(true) };
        let iface = &self.ifaces[idx];
        let hook = Hook::from_u8(rec.header.hook).unwrap_or(Hook::Ingress);
        let pkt = Packet {
            ts_ns: self.clock.wall_ns(rec.header.ts_ns),
            dir: Direction::from_hook(hook, iface.endpoint.peer_view),
            orig_len: rec.header.orig_len,
            data: rec.data,
        };
        if self.direction.is_some_and(|d| d != pkt.dir) {
            return Ok(true);
        }
        sink.packet(iface, &pkt)?;
        self.delivered[idx] += 1;
        self.captured += 1;
        self.captured_bytes += pkt.data.len() as u64;
        Ok(!self.done())
    }

    /// Reads up to [`BATCH`] records into the sink.
    pub fn drain(&mut self, ring: &mut Ring, sink: &mut dyn Sink) -> io::Result<Drained> {
        let mut more = true;
        let mut err = None;
        let records = ring.read(BATCH, |bytes| match self.record(bytes, sink) {
            Ok(m) => {
                more = m;
                m
            }
            Err(e) => {
                err = Some(e);
                false
            }
        });
        match err {
            Some(e) => Err(e),
            None => Ok(Drained { records, more }),
        }
    }

    /// Drains the ring, bounded so that signals and flushes still get their
    /// turn when it refills as fast as it is read. Returns whether to go on.
    pub fn drain_some(&mut self, ring: &mut Ring, sink: &mut dyn Sink) -> io::Result<bool> {
        for _ in 0..8 {
            let d = self.drain(ring, sink)?;
            if !d.more {
                return Ok(false);
            }
            if d.records < BATCH {
                break;
            }
        }
        Ok(true)
    }

    /// Drains everything left in the ring (after the hooks are detached).
    pub fn drain_all(&mut self, ring: &mut Ring, sink: &mut dyn Sink) -> io::Result<()> {
        while !self.done() {
            let d = self.drain(ring, sink)?;
            if d.records < BATCH || !d.more {
                break;
            }
        }
        Ok(())
    }
}

/// Encodes a record as the kernel writes it: the header, then the packet's
/// bytes in a data area of `class` bytes (one of `SIZE_CLASSES`). For
/// tests and benchmarks that feed [`Collector`] without a kernel.
pub fn encode_record(header: &PacketHeader, data: &[u8], class: usize) -> Vec<u8> {
    let mut v = vec![0u8; HEADER_LEN + class.max(data.len())];
    let h = header as *const PacketHeader as *const u8;
    // SAFETY: PacketHeader is plain old data of HEADER_LEN bytes (repr(C),
    // explicit padding), so viewing it as bytes reads initialised memory.
    v[..HEADER_LEN].copy_from_slice(unsafe { std::slice::from_raw_parts(h, HEADER_LEN) });
    v[HEADER_LEN..HEADER_LEN + data.len()].copy_from_slice(data);
    v
}
