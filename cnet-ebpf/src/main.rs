//! cnet's kernel side: two tc classifiers (ingress, egress) that copy the
//! first `snaplen` bytes of each packet on a captured interface into a BPF
//! ring buffer and count what they saw. They never alter traffic: both return
//! TC_ACT_UNSPEC, which is TCX_NEXT on TCX and "continue with the next
//! filter" on clsact, so programs attached after cnet still run.
//!
//! All policy (which interfaces, labels, output) lives in userspace.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, TC_ACT_UNSPEC},
    helpers::{bpf_ktime_get_ns, bpf_skb_load_bytes},
    macros::{classifier, map},
    maps::{Array, PerCpuHashMap, RingBuf},
    programs::TcContext,
};
use aya_log_ebpf::warn;
use cnet_common::{Config, CounterKey, Counters, Hook, PacketHeader, MAX_SNAPLEN};

/// Packet records. The size set here is a default: userspace sets the real
/// size (`-B`) when it loads the object.
#[map(name = "CNET_RING")]
static CNET_RING: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Per-interface counters; also the set of captured interfaces (a packet on
/// an interface without a key is ignored). Not preallocated: only userspace
/// adds keys, a few per capture, and preallocating 4096 per-CPU entries
/// costs every cnet start more CPU time than the whole capture of a quiet
/// interface.
#[map(name = "CNET_COUNTERS")]
static CNET_COUNTERS: PerCpuHashMap<CounterKey, Counters> =
    PerCpuHashMap::with_max_entries(4096, BPF_F_NO_PREALLOC);

#[map(name = "CNET_CONFIG")]
static CNET_CONFIG: Array<Config> = Array::with_max_entries(1, 0);

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

/// A ring-buffer record whose data area is one of the size classes of
/// `cnet_common::SIZE_CLASSES`.
#[repr(C)]
struct Record<const N: usize> {
    header: PacketHeader,
    data: [u8; N],
}

#[inline(always)]
fn capture(ctx: &TcContext, hook: Hook) {
    let skb = ctx.skb.skb;
    // SAFETY: `skb` is the context pointer the kernel passed to this program.
    let (ifindex, len, mark, hash) =
        unsafe { ((*skb).ifindex, (*skb).len, (*skb).mark, (*skb).hash) };
    let key = CounterKey { ifindex, hook: hook as u32 };
    let Some(counters) = CNET_COUNTERS.get_ptr_mut(&key) else {
        return;
    };
    // SAFETY: per-CPU value; this program runs with preemption disabled, so
    // nobody else touches this CPU's copy while we hold it.
    let counters = unsafe { &mut *counters };
    counters.seen += 1;
    counters.bytes += len as u64;
    counters.matched += 1;

    let (snaplen, log, wakeup_bytes) = match CNET_CONFIG.get(0) {
        Some(c) => (c.snaplen, c.log, c.wakeup_bytes),
        None => (MAX_SNAPLEN, 0, 0),
    };
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
    // class that holds `cap` bytes (a class of N holds N-1).
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
    let ok = if cap < 128 {
        emit::<128>(ctx, &header, flags)
    } else if cap < 256 {
        emit::<256>(ctx, &header, flags)
    } else if cap < 512 {
        emit::<512>(ctx, &header, flags)
    } else if cap < 1024 {
        emit::<1024>(ctx, &header, flags)
    } else if cap < 2048 {
        emit::<2048>(ctx, &header, flags)
    } else if cap < 4096 {
        emit::<4096>(ctx, &header, flags)
    } else if cap < 8192 {
        emit::<8192>(ctx, &header, flags)
    } else if cap < 16384 {
        emit::<16384>(ctx, &header, flags)
    } else if cap < 32768 {
        emit::<32768>(ctx, &header, flags)
    } else {
        emit::<65536>(ctx, &header, flags)
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
