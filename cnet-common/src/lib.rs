//! Record layouts and constants shared by the eBPF programs (`cnet-ebpf`) and
//! the userspace collector (`cnet-user`).
//!
//! Everything here is `#[repr(C)]` and free of pointers so that the bytes the
//! kernel writes into the ring buffer and the maps can be read back as-is.
#![no_std]

/// Direction of a packet relative to the hooked (host-side) interface.
///
/// The eBPF programs only know the tc hook they run on; userspace translates
/// this into a direction relative to the container (host-veth ingress is the
/// container's egress).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    Ingress = 0,
    Egress = 1,
}

impl Hook {
    pub const ALL: [Hook; 2] = [Hook::Ingress, Hook::Egress];

    pub fn from_u8(v: u8) -> Option<Hook> {
        match v {
            0 => Some(Hook::Ingress),
            1 => Some(Hook::Egress),
            _ => None,
        }
    }
}

/// Fixed header in front of every packet record in the ring buffer.
///
/// The record is `PacketHeader` followed by a data area of a power-of-two
/// size class (see [`SIZE_CLASSES`]); only the first `cap_len` bytes of the
/// data area are meaningful.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketHeader {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC in nanoseconds. Taken in the hook
    /// because `skb->tstamp` is cleared when a packet crosses namespaces.
    pub ts_ns: u64,
    /// Interface index of the hooked device (in cnet's network namespace).
    pub ifindex: u32,
    /// Length of the packet on the wire (`skb->len`; GSO super-packets up to
    /// 64 KiB and more are reported whole).
    pub orig_len: u32,
    /// Number of packet bytes copied after this header.
    pub cap_len: u32,
    /// `skb->mark`.
    pub mark: u32,
    /// `skb->hash` (0 when the kernel has not computed one).
    pub hash: u32,
    /// [`Hook`] as u8.
    pub hook: u8,
    pub _pad: [u8; 3],
}

pub const HEADER_LEN: usize = core::mem::size_of::<PacketHeader>();

/// Data-area sizes of ring-buffer records. The verifier needs a constant
/// reservation size, so the eBPF program picks the smallest class that holds
/// `cap_len` bytes: small packets use little ring space and nothing is copied
/// twice. A class of size `N` holds at most `N - 1` bytes (the copy length is
/// masked with `N - 1`, which is what lets the verifier bound it).
pub const SIZE_CLASSES: [u32; 10] = [128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];

/// Largest snap length the kernel side can copy.
pub const MAX_SNAPLEN: u32 = 65535;

/// Per-interface, per-hook counters, kept in a per-CPU array at
/// [`counter_index`]. Userspace sums the CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets that reached the hook on a captured interface.
    pub seen: u64,
    /// Packets that passed the capture filter ("received by filter").
    pub matched: u64,
    /// Packets written into the ring buffer.
    pub captured: u64,
    /// Packets lost because the ring buffer had no room.
    pub lost: u64,
    /// Bytes (on-the-wire length) of the packets seen.
    pub bytes: u64,
}

impl Counters {
    pub fn add(&mut self, other: &Counters) {
        self.seen += other.seen;
        self.matched += other.matched;
        self.captured += other.captured;
        self.lost += other.lost;
        self.bytes += other.bytes;
    }
}

/// Captured interfaces are numbered by userspace with a *slot* (1..
/// [`MAX_SLOTS`]); slot 0 means "not captured". The hooks find a packet's
/// slot by ifindex in an array ([`IFINDEX_TABLE`] entries, with a hash map
/// for larger ifindexes) and its counters at [`counter_index`] in a per-CPU
/// array. The kernel inlines lookups in both arrays into a few instructions,
/// where a per-CPU hash map lookup costs a helper call and a hash per
/// packet: on a packet that a filter then rejects, that lookup was most of
/// what capturing cost.
pub const MAX_SLOTS: u32 = 4096;

/// Entries of the ifindex-to-slot array; interfaces with a larger ifindex
/// are found in the hash map [`names::SLOTS_HIGH`].
pub const IFINDEX_TABLE: u32 = 1 << 16;

/// Index of the counters of `slot` on `hook` in the counters array.
pub const fn counter_index(slot: u32, hook: Hook) -> u32 {
    slot * 2 + hook as u32
}

/// Global settings written by userspace before attaching, read by the hooks.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Bytes to copy per packet (1..=MAX_SNAPLEN).
    pub snaplen: u32,
    /// Non-zero: emit aya-log diagnostics (never per packet).
    pub log: u32,
    /// Wake the reader only once this many bytes wait in the ring (the
    /// reader also drains on a short timer). 0: wake on every record the
    /// kernel considers due (its default, adaptive behaviour).
    pub wakeup_bytes: u32,
    /// Non-zero: a filter program is installed in the program array at
    /// [`prog_index::filter`]; the capture programs tail-call it instead of
    /// copying every packet.
    pub filter: u32,
}

/// Slots of the program array the capture programs and filters tail-call
/// through.
pub mod prog_index {
    use super::Hook;

    /// The filter for packets on `hook`.
    pub const fn filter(hook: Hook) -> u32 {
        hook as u32
    }

    /// The continuation that counts a matching packet on `hook` and copies it.
    pub const fn matched(hook: Hook) -> u32 {
        2 + hook as u32
    }

    pub const SLOTS: u32 = 4;
}

/// Names of the maps and programs in the eBPF object.
pub mod names {
    pub const RING: &str = "CNET_RING";
    pub const COUNTERS: &str = "CNET_COUNTERS";
    /// ifindex -> slot for ifindexes below [`super::IFINDEX_TABLE`].
    pub const SLOTS: &str = "CNET_SLOTS";
    /// ifindex -> slot for the others.
    pub const SLOTS_HIGH: &str = "CNET_SLOTS_HIGH";
    pub const CONFIG: &str = "CNET_CONFIG";
    pub const PROG_INGRESS: &str = "cnet_ingress";
    pub const PROG_EGRESS: &str = "cnet_egress";
    pub const PROGS: &str = "CNET_PROGS";
    /// Continuations a filter tail-calls for matching packets.
    pub const PROG_INGRESS_MATCHED: &str = "cnet_in_matched";
    pub const PROG_EGRESS_MATCHED: &str = "cnet_eg_matched";
    /// Every map name above (a test checks the object defines each).
    pub const MAPS: [&str; 6] = [RING, COUNTERS, SLOTS, SLOTS_HIGH, CONFIG, PROGS];
    /// Every program name above.
    pub const PROGRAMS: [&str; 4] = [PROG_INGRESS, PROG_EGRESS, PROG_INGRESS_MATCHED, PROG_EGRESS_MATCHED];
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY (each impl): plain-old-data `#[repr(C)]` structs of integers,
    // without padding holes that could leak uninitialised bytes into maps
    // (padding is spelled out as `_pad` fields); every bit pattern is valid.
    // SAFETY: see above.
    unsafe impl aya::Pod for super::PacketHeader {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::Counters {}
    // SAFETY: see above.
    unsafe impl aya::Pod for super::Config {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_32_bytes_and_8_aligned() {
        assert_eq!(HEADER_LEN, 32);
        assert_eq!(core::mem::align_of::<PacketHeader>(), 8);
    }

    #[test]
    fn size_classes_are_powers_of_two_and_cover_max_snaplen() {
        for c in SIZE_CLASSES {
            assert!(c.is_power_of_two());
        }
        assert!(SIZE_CLASSES[SIZE_CLASSES.len() - 1] > MAX_SNAPLEN);
    }

    #[test]
    fn counter_indexes_of_all_slots_fit_the_array() {
        assert_eq!(counter_index(MAX_SLOTS - 1, Hook::Egress), 2 * MAX_SLOTS - 1);
    }
}
