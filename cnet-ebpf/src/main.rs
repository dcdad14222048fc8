//! cnet's kernel side: two tc classifiers (ingress, egress) that copy the
//! first `snaplen` bytes of each packet on a captured interface into a BPF
//! ring buffer and count what they saw. They never alter traffic: both return
//! TC_ACT_UNSPEC, which is TCX_NEXT on TCX and "continue with the next
//! filter" on clsact, so programs attached after cnet still run.
//!
//! With a capture filter (a tcpdump expression), the classifiers count the
//! packet as seen and tail-call the filter program userspace translated from
//! the expression; the filter tail-calls `cnet_in_matched`/`cnet_eg_matched`
//! for packets that match, which count them as matched and copy them. Packets
//! that do not match never reach the ring buffer.
//!
//! All policy (which interfaces, labels, output) lives in userspace.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, TC_ACT_UNSPEC},
    helpers::{bpf_ktime_get_ns, bpf_skb_load_bytes},
    macros::{classifier, map},
    maps::{Array, HashMap, PerCpuArray, ProgramArray, RingBuf},
    programs::TcContext,
};
use aya_log_ebpf::warn;
use cnet_common::{
    Config, Counters, Hook, IFINDEX_TABLE, MAX_SLOTS, MAX_SNAPLEN, PacketHeader, SIZE_CLASSES, counter_index,
    prog_index,
};

// Map and program names are the items' identifiers, which are the names in
// `cnet_common::names` (a test of the embedded object in cnet-user checks
// that every one of them is there).

/// Packet records. The size set here is a default: userspace sets the real
/// size (`-B`) when it loads the object.
#[map]
static CNET_RING: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// ifindex -> slot of the captured interfaces (0: not captured); also the
/// set of captured interfaces, so a program still attached to an interface
/// cnet no longer wants copies nothing. See `cnet_common::MAX_SLOTS`.
#[map]
static CNET_SLOTS: Array<u32> = Array::with_max_entries(IFINDEX_TABLE, 0);

/// The same for ifindexes of `IFINDEX_TABLE` and above (a long-lived host
/// that has created many interfaces).
#[map]
static CNET_SLOTS_HIGH: HashMap<u32, u32> = HashMap::with_max_entries(MAX_SLOTS, BPF_F_NO_PREALLOC);

/// Counters per slot and hook, at `counter_index(slot, hook)`.
#[map]
static CNET_COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(2 * MAX_SLOTS, 0);

#[map]
static CNET_CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Filter programs and their continuations (see `cnet_common::prog_index`).
#[map]
static CNET_PROGS: ProgramArray = ProgramArray::with_max_entries(prog_index::SLOTS, 0);

#[classifier]
pub fn cnet_ingress(ctx: TcContext) -> i32 {
    capture(&ctx, Hook::Ingress);
    TC_ACT_UNSPEC
}

#[classifier]
pub fn cnet_egress(ctx: TcContext) -> i32 {
    capture(&ctx, Hook::Egress);
    TC_ACT_UNSPEC
}

/// Tail-called by the ingress filter for a matching packet.
#[classifier]
pub fn cnet_in_matched(ctx: TcContext) -> i32 {
    if let Some(counters) = counters_of(&ctx, Hook::Ingress) {
        copy(&ctx, Hook::Ingress, counters, &config());
    }
    TC_ACT_UNSPEC
}

/// Tail-called by the egress filter for a matching packet.
#[classifier]
pub fn cnet_eg_matched(ctx: TcContext) -> i32 {
    if let Some(counters) = counters_of(&ctx, Hook::Egress) {
        copy(&ctx, Hook::Egress, counters, &config());
    }
    TC_ACT_UNSPEC
}

// The size-class ladder in `copy` has one branch per class.
const _: () = assert!(SIZE_CLASSES.len() == 10);

/// A ring-buffer record whose data area is one of the size classes of
/// `cnet_common::SIZE_CLASSES`.
#[repr(C)]
struct Record<const N: usize> {
    header: PacketHeader,
    data: [u8; N],
}

/// This CPU's counters of the interface the packet is on, if it is captured.
#[inline(always)]
fn counters_of(ctx: &TcContext, hook: Hook) -> Option<&'static mut Counters> {
    // SAFETY: `skb` is the context pointer the kernel passed to this program.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let slot = if ifindex < IFINDEX_TABLE {
        *CNET_SLOTS.get(ifindex)?
    } else {
        // SAFETY: read-only copy of a u32 value.
        unsafe { *CNET_SLOTS_HIGH.get(&ifindex)? }
    };
    if slot == 0 {
        return None;
    }
    let counters = CNET_COUNTERS.get_ptr_mut(counter_index(slot, hook))?;
    // SAFETY: per-CPU value; this program runs with preemption disabled, so
    // nobody else touches this CPU's copy while we hold it.
    Some(unsafe { &mut *counters })
}

#[inline(always)]
fn capture(ctx: &TcContext, hook: Hook) {
    let Some(counters) = counters_of(ctx, hook) else {
        return;
    };
    // SAFETY: `skb` is the context pointer the kernel passed to this program.
    let len = unsafe { (*ctx.skb.skb).len };
    counters.seen += 1;
    counters.bytes += len as u64;
    let config = config();
    if config.filter != 0 {
        // SAFETY: the program array holds only SCHED_CLS programs that
        // userspace put there. On success this does not return; if the slot
        // is empty, the packet is not copied (never unfiltered).
        unsafe { CNET_PROGS.tail_call(ctx, prog_index::filter(hook)) };
        return;
    }
    copy(ctx, hook, counters, &config);
}

#[inline(always)]
fn config() -> Config {
    match CNET_CONFIG.get(0) {
        Some(c) => *c,
        None => Config { snaplen: MAX_SNAPLEN, log: 0, wakeup_bytes: 0, filter: 0 },
    }
}

/// Counts a packet that passed the filter (every packet without one) and
/// copies it into the ring buffer.
#[inline(always)]
fn copy(ctx: &TcContext, hook: Hook, counters: &mut Counters, config: &Config) {
    let skb = ctx.skb.skb;
    // SAFETY: `skb` is the context pointer the kernel passed to this program.
    let (ifindex, len, mark, hash) = unsafe { ((*skb).ifindex, (*skb).len, (*skb).mark, (*skb).hash) };
    counters.matched += 1;

    let (snaplen, log, wakeup_bytes) = (config.snaplen, config.log, config.wakeup_bytes);
    let cap = if len < snaplen { len } else { snaplen };
    let header = PacketHeader {
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        ifindex,
        orig_len: len,
        cap_len: cap,
        mark,
        hash,
        hook: hook as u8,
        _pad: [0; 3],
    };

    // The verifier wants a constant reservation size: pick the smallest size
    // class that holds `cap` bytes (a class of N holds N-1). The ladder below
    // is written against SIZE_CLASSES, whose length is checked at build time.
    // Waking the reader for every record costs it a syscall and a context
    // switch per packet; with a watermark it wakes once per batch and drains
    // the rest on its own timer.
    let flags = if wakeup_bytes == 0 {
        0
    } else if CNET_RING.query(BPF_RB_AVAIL_DATA as u64) >= wakeup_bytes as u64 {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    };
    let ok = if cap < SIZE_CLASSES[0] {
        emit::<{ SIZE_CLASSES[0] as usize }>(ctx, &header, flags)
    } else if cap < SIZE_CLASSES[1] {
        emit::<{ SIZE_CLASSES[1] as usize }>(ctx, &header, flags)
    } else if cap < SIZE_CLASSES[2] {
        emit::<{ SIZE_CLASSES[2] as usize }>(ctx, &header, flags)
    } else if cap < SIZE_CLASSES[3] {
        emit::<{ SIZE_CLASSES[3] as usize }>(ctx, &header, flags)
    } else if cap < SIZE_CLASSES[4] {
        emit::<{ SIZE_CLASSES[4] as usize }>(ctx, &header, flags)
    } else if cap < SIZE_CLASSES[5] {
        emit::<{ SIZE_CLASSES[5] as usize }>(ctx, &header, flags)
    } else if cap < SIZE_CLASSES[6] {
        emit::<{ SIZE_CLASSES[6] as usize }>(ctx, &header, flags)
    } else if cap < SIZE_CLASSES[7] {
        emit::<{ SIZE_CLASSES[7] as usize }>(ctx, &header, flags)
    } else if cap < SIZE_CLASSES[8] {
        emit::<{ SIZE_CLASSES[8] as usize }>(ctx, &header, flags)
    } else {
        emit::<{ SIZE_CLASSES[9] as usize }>(ctx, &header, flags)
    };
    if ok {
        counters.captured += 1;
    } else {
        counters.lost += 1;
        // Diagnostics only when asked for, and only on powers of two of the
        // loss count, so a full ring does not also flood the log.
        let lost = counters.lost;
        if log != 0 && lost & (lost - 1) == 0 {
            warn!(ctx, "cnet: ring buffer full on ifindex {}: {} packets lost", ifindex, lost);
        }
    }
}

/// Reserves a record with an `N`-byte data area, copies the header and the
/// first `header.cap_len` packet bytes into it and submits it with the given
/// wakeup `flags`. Returns false
/// when the ring is full or the copy failed (the record is then discarded).
#[inline(always)]
fn emit<const N: usize>(ctx: &TcContext, header: &PacketHeader, flags: u64) -> bool {
    let Some(mut entry) = CNET_RING.reserve::<Record<N>>(0) else {
        return false;
    };
    let record = entry.as_mut_ptr();
    // Masking with N-1 bounds the length for the verifier; the caller chose
    // N so that the mask never cuts `cap_len`. The volatile read hides from
    // LLVM that `cap_len < N` already holds on this branch: otherwise it drops
    // the mask as redundant and the verifier, which lost that bound when the
    // value was spilled, rejects the copy as unbounded.
    // SAFETY: reading a field of a live reference.
    let cap = unsafe { core::ptr::read_volatile(&header.cap_len) };
    let n = cap & (N as u32 - 1);
    // SAFETY: `record` points at a reservation of size_of::<Record<N>>()
    // bytes; `n < N` bytes are written into its data area.
    unsafe {
        (*record).header = *header;
        if n > 0 {
            let data = core::ptr::addr_of_mut!((*record).data).cast();
            if bpf_skb_load_bytes(ctx.skb.skb.cast(), 0, data, n) != 0 {
                entry.discard(0);
                return false;
            }
        }
    }
    entry.submit(flags);
    true
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
