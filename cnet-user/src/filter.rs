//! tcpdump filter expressions (pcap-filter syntax), evaluated in the kernel.
//!
//! libpcap compiles the expression into classic BPF exactly as tcpdump does
//! (same parser, same optimiser, Ethernet link type); this module translates
//! that cBPF program instruction by instruction into an eBPF SCHED_CLS
//! program and loads it with the raw `bpf(BPF_PROG_LOAD)` syscall. The
//! capture programs tail-call it; when the packet matches, it tail-calls the
//! continuation program that counts and copies the packet, otherwise it
//! returns TC_ACT_UNSPEC and the packet costs no ring space.
//!
//! Register use of the generated program: r6 = skb context (callee-saved, so
//! it survives helper calls), r7 = cBPF accumulator A, r8 = index register X,
//! scratch memory M[0..16] in 32-bit stack slots, and an 8-byte stack slot
//! for packet loads, r9 = start of the packet's linear data. Packet loads
//! read the linear data directly and fall back to `bpf_skb_load_bytes` for
//! bytes beyond it (the packet may be non-linear); values are converted from
//! network byte order, and a load past the end of the packet rejects the
//! packet, as in cBPF.

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// One classic BPF instruction (`struct bpf_insn` / `struct sock_filter`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CbpfInsn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// One eBPF instruction (`struct bpf_insn` of the kernel's eBPF ABI).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EbpfInsn {
    pub code: u8,
    /// dst register in the low nibble, src register in the high nibble.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// libpcap's own message, e.g. "can't parse filter expression: syntax error".
    #[error("{0}")]
    Compile(String),
    #[error("filter expression {expr:?} cannot be evaluated in the kernel: instruction {index} ({what}) {reason}")]
    Untranslatable { expr: String, index: usize, what: String, reason: &'static str },
    #[error("cannot load the filter program into the kernel: {0}")]
    Load(String),
}

/// A compiled filter expression, ready to be loaded as an eBPF program.
#[derive(Clone, Debug)]
pub struct Filter {
    expression: String,
    cbpf: Vec<CbpfInsn>,
    ebpf: Vec<EbpfInsn>,
    /// Index of the `ld_imm64` that loads the program array for the tail call.
    map_load: usize,
    /// Index of the `mov32 r3, imm` that sets the continuation index.
    index_load: usize,
}

mod ffi {
    use super::*;

    #[repr(C)]
    pub struct BpfProgram {
        pub bf_len: c_uint,
        pub bf_insns: *mut CbpfInsn,
    }

    #[repr(C)]
    pub struct Pcap {
        _private: [u8; 0],
    }

    #[link(name = "pcap")]
    unsafe extern "C" {
        pub fn pcap_open_dead(linktype: c_int, snaplen: c_int) -> *mut Pcap;
        pub fn pcap_compile(
            p: *mut Pcap,
            fp: *mut BpfProgram,
            s: *const c_char,
            optimize: c_int,
            netmask: u32,
        ) -> c_int;
        pub fn pcap_geterr(p: *mut Pcap) -> *mut c_char;
        pub fn pcap_freecode(fp: *mut BpfProgram);
        pub fn pcap_close(p: *mut Pcap);
        pub fn bpf_filter(pc: *const CbpfInsn, pkt: *const u8, wirelen: c_uint, buflen: c_uint) -> c_uint;
    }
}

/// DLT_EN10MB: what tcpdump sees on a veth.
const DLT_EN10MB: c_int = 1;

impl Filter {
    /// Compiles a pcap-filter expression as tcpdump does for an Ethernet
    /// interface with snap length `snaplen`, and translates it to eBPF.
    /// Errors carry libpcap's message (tcpdump's wording) or say which cBPF
    /// instruction has no kernel-side equivalent.
    pub fn compile(expression: &str, snaplen: u32) -> Result<Filter, FilterError> {
        let cbpf = compile_cbpf(expression, snaplen)?;
        let (ebpf, map_load, index_load) = translate(&cbpf).map_err(|(index, reason)| FilterError::Untranslatable {
            expr: expression.to_string(),
            index,
            what: disassemble(&cbpf[index]),
            reason,
        })?;
        Ok(Filter { expression: expression.to_string(), cbpf, ebpf, map_load, index_load })
    }

    /// The expression as given.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The classic BPF program libpcap produced.
    pub fn cbpf(&self) -> &[CbpfInsn] {
        &self.cbpf
    }

    /// The eBPF translation (program array and index not yet filled in).
    pub fn ebpf(&self) -> &[EbpfInsn] {
        &self.ebpf
    }

    /// libpcap's own userspace evaluation of the cBPF program: whether a
    /// frame of `wire_len` bytes whose first `data.len()` bytes are `data`
    /// matches. The reference the kernel-side translation is tested against.
    pub fn matches(&self, data: &[u8], wire_len: u32) -> bool {
        // SAFETY: the program is a complete cBPF program from pcap_compile;
        // bpf_filter reads at most `buflen` bytes of `data`.
        unsafe { ffi::bpf_filter(self.cbpf.as_ptr(), data.as_ptr(), wire_len, data.len() as c_uint) != 0 }
    }

    /// Loads the filter as a SCHED_CLS program named `name` that tail-calls
    /// `prog_array[continuation]` for matching packets.
    pub fn load(&self, name: &str, prog_array: BorrowedFd<'_>, continuation: u32) -> Result<OwnedFd, FilterError> {
        let mut insns = self.ebpf.clone();
        insns[self.map_load].imm = prog_array.as_raw_fd();
        insns[self.index_load].imm = continuation as i32;
        load_sched_cls(name, &insns).map_err(FilterError::Load)
    }
}

/// Reads a filter file the way tcpdump's `-F` does: `#` starts a comment
/// that runs to the end of the line; lines are joined.
pub fn read_filter_file(path: &std::path::Path) -> anyhow::Result<String> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read filter file {}", path.display()))?;
    let words: Vec<&str> = text.lines().map(|l| l.split('#').next().unwrap_or("")).collect();
    Ok(words.join(" ").split_whitespace().collect::<Vec<_>>().join(" "))
}

fn compile_cbpf(expression: &str, snaplen: u32) -> Result<Vec<CbpfInsn>, FilterError> {
    let c_expr = CString::new(expression)
        .map_err(|_| FilterError::Compile("can't parse filter expression: it contains a NUL byte".into()))?;
    // SAFETY: plain libpcap calls on a handle we own; the program is freed
    // with pcap_freecode and the handle closed on every path.
    unsafe {
        let p = ffi::pcap_open_dead(DLT_EN10MB, snaplen.clamp(1, 262144) as c_int);
        if p.is_null() {
            return Err(FilterError::Compile("libpcap could not create a compile handle".into()));
        }
        let mut prog = ffi::BpfProgram { bf_len: 0, bf_insns: std::ptr::null_mut() };
        // Netmask 0: what tcpdump uses on an interface without an IPv4
        // address (pcap_lookupnet fails there), which is what host veths are.
        let rc = ffi::pcap_compile(p, &mut prog, c_expr.as_ptr(), 1, 0);
        let result = if rc != 0 {
            let msg = CStr::from_ptr(ffi::pcap_geterr(p)).to_string_lossy().into_owned();
            Err(FilterError::Compile(msg))
        } else {
            let v = std::slice::from_raw_parts(prog.bf_insns, prog.bf_len as usize).to_vec();
            ffi::pcap_freecode(&mut prog);
            Ok(v)
        };
        ffi::pcap_close(p);
        result
    }
}

// Classic BPF opcode fields (linux/filter.h, pcap/bpf.h).
mod c {
    pub const LD: u16 = 0x00;
    pub const LDX: u16 = 0x01;
    pub const ST: u16 = 0x02;
    pub const STX: u16 = 0x03;
    pub const ALU: u16 = 0x04;
    pub const JMP: u16 = 0x05;
    pub const RET: u16 = 0x06;
    pub const MISC: u16 = 0x07;
    pub const W: u16 = 0x00;
    pub const H: u16 = 0x08;
    pub const B: u16 = 0x10;
    pub const IMM: u16 = 0x00;
    pub const ABS: u16 = 0x20;
    pub const IND: u16 = 0x40;
    pub const MEM: u16 = 0x60;
    pub const LEN: u16 = 0x80;
    pub const MSH: u16 = 0xa0;
    pub const X: u16 = 0x08;
    pub const RVAL_A: u16 = 0x10;
    pub const RVAL_X: u16 = 0x08;
    pub const TXA: u16 = 0x80;
    pub const MEMWORDS: u32 = 16;
}

// eBPF opcode fields (linux/bpf.h).
mod e {
    pub const LD: u8 = 0x00;
    pub const LDX: u8 = 0x01;
    pub const ST: u8 = 0x02;
    pub const STX: u8 = 0x03;
    pub const ALU: u8 = 0x04;
    pub const JMP: u8 = 0x05;
    pub const JMP32: u8 = 0x06;
    pub const ALU64: u8 = 0x07;
    pub const W: u8 = 0x00;
    pub const H: u8 = 0x08;
    pub const B: u8 = 0x10;
    pub const DW: u8 = 0x18;
    pub const IMM: u8 = 0x00;
    pub const MEM: u8 = 0x60;
    pub const K: u8 = 0x00;
    pub const X: u8 = 0x08;
    pub const ADD: u8 = 0x00;
    pub const AND: u8 = 0x50;
    pub const LSH: u8 = 0x60;
    pub const MOV: u8 = 0xb0;
    pub const END: u8 = 0xd0;
    pub const TO_BE: u8 = 0x08;
    pub const JA: u8 = 0x00;
    pub const JEQ: u8 = 0x10;
    pub const JGT: u8 = 0x20;
    pub const JGE: u8 = 0x30;
    pub const JSET: u8 = 0x40;
    pub const JNE: u8 = 0x50;
    pub const JLT: u8 = 0xa0;
    pub const JLE: u8 = 0xb0;
    pub const CALL: u8 = 0x80;
    pub const EXIT: u8 = 0x90;
    pub const PSEUDO_MAP_FD: u8 = 1;
    pub const FN_TAIL_CALL: i32 = 12;
    pub const FN_SKB_LOAD_BYTES: i32 = 26;
}

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const CTX: u8 = 6;
const REG_A: u8 = 7;
const REG_X: u8 = 8;
/// Start of the packet's linear data (`__sk_buff.data`), loaded once.
const DATA: u8 = 9;
/// Offsets of `data` and `data_end` in `struct __sk_buff`.
const SKB_DATA: i16 = 76;
const SKB_DATA_END: i16 = 80;
/// Largest packet offset read directly; beyond it, loads use the helper.
/// The verifier trusts a bounds check only while offset + size stays within
/// 0xffff (MAX_PACKET_OFF).
const MAX_DIRECT_OFFSET: u32 = 0xff00;
const FP: u8 = 10;
/// Stack slot that packet loads land in.
const LOAD_SLOT: i16 = -8;
/// TC_ACT_UNSPEC: "no opinion", what the capture programs return too.
const TC_ACT_UNSPEC: i32 = -1;

fn mem_slot(k: u32) -> i16 {
    -12 - 4 * k as i16
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> EbpfInsn {
    EbpfInsn { code, regs: (src << 4) | dst, off, imm }
}

/// Where a jump goes, resolved once every instruction has been emitted.
#[derive(Clone, Copy)]
enum Label {
    Insn(usize),
    Match,
    NoMatch,
}

struct Emitter {
    out: Vec<EbpfInsn>,
    fixups: Vec<(usize, Label)>,
}

impl Emitter {
    fn push(&mut self, i: EbpfInsn) {
        self.out.push(i);
    }
    fn jump(&mut self, i: EbpfInsn, to: Label) {
        self.fixups.push((self.out.len(), to));
        self.out.push(i);
    }
    /// Loads `size` bytes at the packet offset in r2 (a zero-extended u32)
    /// into `dst` as a big-endian value; a load past the end of the packet
    /// rejects it. `constant` is the offset when it is known here.
    ///
    /// The whole packet is visible, whatever the snap length: the same as
    /// tcpdump's filter in the kernel, so `-s 96 'tcp[100:4] = …'` selects
    /// on payload bytes it does not store.
    ///
    /// The fast path reads the packet's linear data directly (a bounds check
    /// against `data_end` and one load); only when the bytes are not in the
    /// linear part, or the offset is beyond what the verifier can bound,
    /// does it fall back to `bpf_skb_load_bytes(ctx, r2, fp-8, size)`, which
    /// also reads paged data. The helper call was most of what a filter that
    /// rejects a packet cost.
    fn packet_load(&mut self, size: u16, dst: u8, constant: Option<u32>) {
        let (bytes, esize) = match size {
            c::W => (4, e::W),
            c::H => (2, e::H),
            _ => (1, e::B),
        };
        // Instructions of the slow path below, to jump over it.
        const SLOW_LEN: i16 = 7;
        let direct = constant.is_none_or(|k| k <= MAX_DIRECT_OFFSET);
        if direct {
            // Jump offsets count instructions: a failed check lands on the
            // first slow-path instruction, a successful load jumps over it.
            if constant.is_none() {
                // The verifier allows packet-pointer arithmetic only with an
                // offset it can bound.
                self.push(insn(e::JMP | e::JGT | e::K, R2, 0, 8, MAX_DIRECT_OFFSET as i32));
            }
            self.push(insn(e::ALU64 | e::MOV | e::X, R3, DATA, 0, 0));
            self.push(insn(e::ALU64 | e::ADD | e::X, R3, R2, 0, 0));
            self.push(insn(e::ALU64 | e::MOV | e::X, R4, R3, 0, 0));
            self.push(insn(e::ALU64 | e::ADD | e::K, R4, 0, 0, bytes));
            self.push(insn(e::LDX | e::MEM | e::W, R5, CTX, SKB_DATA_END, 0));
            self.push(insn(e::JMP | e::JGT | e::X, R4, R5, 2, 0));
            self.push(insn(e::LDX | e::MEM | esize, dst, R3, 0, 0));
            self.push(insn(e::JMP | e::JA, 0, 0, SLOW_LEN, 0));
        }
        let slow_start = self.out.len();
        self.push(insn(e::ALU64 | e::MOV | e::X, R1, CTX, 0, 0));
        self.push(insn(e::ALU64 | e::MOV | e::X, R3, FP, 0, 0));
        self.push(insn(e::ALU64 | e::ADD | e::K, R3, 0, 0, LOAD_SLOT as i32));
        self.push(insn(e::ALU64 | e::MOV | e::K, R4, 0, 0, bytes));
        self.push(insn(e::JMP | e::CALL, 0, 0, 0, e::FN_SKB_LOAD_BYTES));
        self.jump(insn(e::JMP | e::JNE | e::K, R0, 0, 0, 0), Label::NoMatch);
        self.push(insn(e::LDX | e::MEM | esize, dst, FP, LOAD_SLOT, 0));
        debug_assert_eq!(self.out.len() - slow_start, SLOW_LEN as usize);
        if bytes > 1 {
            self.push(insn(e::ALU | e::END | e::TO_BE, dst, 0, 0, bytes * 8));
        }
    }
}

/// Translates a cBPF program; on failure, the index of the offending
/// instruction and why. Returns the program and the indices of the
/// instructions that `Filter::load` patches.
fn translate(prog: &[CbpfInsn]) -> Result<(Vec<EbpfInsn>, usize, usize), (usize, &'static str)> {
    if prog.is_empty() {
        return Err((0, "is missing: the program is empty"));
    }
    let mut em = Emitter { out: Vec::with_capacity(prog.len() * 8 + 32), fixups: Vec::new() };
    let mut start = vec![0usize; prog.len()];

    // Prologue: cBPF starts with A = X = 0; scratch words that are read
    // are zeroed so the verifier sees them initialised.
    em.push(insn(e::ALU64 | e::MOV | e::X, CTX, R1, 0, 0));
    em.push(insn(e::LDX | e::MEM | e::W, DATA, CTX, SKB_DATA, 0));
    em.push(insn(e::ALU | e::MOV | e::K, REG_A, 0, 0, 0));
    em.push(insn(e::ALU | e::MOV | e::K, REG_X, 0, 0, 0));
    let mut zeroed = [false; c::MEMWORDS as usize];
    for i in prog {
        if (i.code & 0x07 == c::LD || i.code & 0x07 == c::LDX) && i.code & 0xe0 == c::MEM && i.k < c::MEMWORDS {
            zeroed[i.k as usize] = true;
        }
    }
    for (k, z) in zeroed.iter().enumerate() {
        if *z {
            em.push(insn(e::ST | e::MEM | e::W, FP, 0, mem_slot(k as u32), 0));
        }
    }

    for (idx, i) in prog.iter().enumerate() {
        start[idx] = em.out.len();
        let class = i.code & 0x07;
        let unsupported = |why: &'static str| Err((idx, why));
        let target = |off: u32| -> Result<Label, (usize, &'static str)> {
            let t = idx as u64 + 1 + off as u64;
            if t >= prog.len() as u64 {
                Err((idx, "jumps past the end of the program"))
            } else {
                Ok(Label::Insn(t as usize))
            }
        };
        match class {
            c::LD | c::LDX => {
                let dst = if class == c::LD { REG_A } else { REG_X };
                let size = i.code & 0x18;
                match (class, i.code & 0xe0) {
                    (_, c::IMM) if size == c::W => em.push(insn(e::ALU | e::MOV | e::K, dst, 0, 0, i.k as i32)),
                    (_, c::MEM) if size == c::W => {
                        if i.k >= c::MEMWORDS {
                            return unsupported("addresses scratch memory beyond M[15]");
                        }
                        em.push(insn(e::LDX | e::MEM | e::W, dst, FP, mem_slot(i.k), 0));
                    }
                    // __sk_buff.len is the first field of the context.
                    (_, c::LEN) if size == c::W => em.push(insn(e::LDX | e::MEM | e::W, dst, CTX, 0, 0)),
                    (c::LD, c::ABS) if size != 0x18 => {
                        if i.k >= 0x8000_0000 {
                            return unsupported(
                                "reads Linux ancillary data (a negative offset), which has no tc equivalent here",
                            );
                        }
                        em.push(insn(e::ALU | e::MOV | e::K, R2, 0, 0, i.k as i32));
                        em.packet_load(size, REG_A, Some(i.k));
                    }
                    (c::LD, c::IND) if size != 0x18 => {
                        // The offset wraps in 32 bits as in cBPF; a wrapped
                        // (huge) offset fails the load and rejects the packet.
                        em.push(insn(e::ALU | e::MOV | e::X, R2, REG_X, 0, 0));
                        em.push(insn(e::ALU | e::ADD | e::K, R2, 0, 0, i.k as i32));
                        em.packet_load(size, REG_A, None);
                    }
                    (c::LDX, c::MSH) if size == c::B => {
                        if i.k >= 0x8000_0000 {
                            return unsupported(
                                "reads Linux ancillary data (a negative offset), which has no tc equivalent here",
                            );
                        }
                        em.push(insn(e::ALU | e::MOV | e::K, R2, 0, 0, i.k as i32));
                        em.packet_load(c::B, REG_X, Some(i.k));
                        em.push(insn(e::ALU | e::AND | e::K, REG_X, 0, 0, 0x0f));
                        em.push(insn(e::ALU | e::LSH | e::K, REG_X, 0, 0, 2));
                    }
                    _ => return unsupported("is not a valid load"),
                }
            }
            c::ST | c::STX => {
                if i.k >= c::MEMWORDS {
                    return unsupported("addresses scratch memory beyond M[15]");
                }
                let src = if class == c::ST { REG_A } else { REG_X };
                em.push(insn(e::STX | e::MEM | e::W, FP, src, mem_slot(i.k), 0));
            }
            c::ALU => {
                let op = (i.code & 0xf0) as u8;
                const NEG: u8 = 0x80;
                const DIV: u8 = 0x30;
                const MOD: u8 = 0x90;
                const LSH: u8 = 0x60;
                const RSH: u8 = 0x70;
                if op == NEG {
                    em.push(insn(e::ALU | NEG, REG_A, 0, 0, 0));
                } else {
                    if !matches!(op, 0x00 | 0x10 | 0x20 | DIV | 0x40 | 0x50 | LSH | RSH | MOD | 0xa0) {
                        return unsupported("is not a valid arithmetic operation");
                    }
                    if i.code & c::X != 0 {
                        if op == DIV || op == MOD {
                            // cBPF rejects the packet on division by zero;
                            // eBPF would yield 0 and go on.
                            em.jump(insn(e::JMP32 | e::JEQ | e::K, REG_X, 0, 0, 0), Label::NoMatch);
                        }
                        em.push(insn(e::ALU | op | e::X, REG_A, REG_X, 0, 0));
                    } else {
                        if (op == DIV || op == MOD) && i.k == 0 {
                            return unsupported("divides by the constant 0");
                        }
                        if (op == LSH || op == RSH) && i.k >= 32 {
                            return unsupported("shifts by 32 bits or more");
                        }
                        em.push(insn(e::ALU | op | e::K, REG_A, 0, 0, i.k as i32));
                    }
                }
            }
            c::JMP => {
                let op = (i.code & 0xf0) as u8;
                if op == e::JA {
                    let t = target(i.k)?;
                    em.jump(insn(e::JMP | e::JA, 0, 0, 0, 0), t);
                    continue;
                }
                if !matches!(op, e::JEQ | e::JGT | e::JGE | e::JSET) {
                    return unsupported("is not a valid jump");
                }
                let (src_flag, src, imm) = if i.code & c::X != 0 { (e::X, REG_X, 0) } else { (e::K, 0, i.k as i32) };
                let (t, f) = (target(i.jt as u32)?, target(i.jf as u32)?);
                // 32-bit unsigned comparisons, as in cBPF.
                if i.jt == i.jf {
                    em.jump(insn(e::JMP | e::JA, 0, 0, 0, 0), t);
                } else if i.jf == 0 {
                    em.jump(insn(e::JMP32 | op | src_flag, REG_A, src, 0, imm), t);
                } else if i.jt == 0 && op != e::JSET {
                    let inverse = match op {
                        e::JEQ => e::JNE,
                        e::JGT => e::JLE,
                        _ => e::JLT, // JGE
                    };
                    em.jump(insn(e::JMP32 | inverse | src_flag, REG_A, src, 0, imm), f);
                } else {
                    em.jump(insn(e::JMP32 | op | src_flag, REG_A, src, 0, imm), t);
                    em.jump(insn(e::JMP | e::JA, 0, 0, 0, 0), f);
                }
            }
            c::RET => match i.code & 0x18 {
                c::RVAL_A | c::RVAL_X => {
                    let r = if i.code & 0x18 == c::RVAL_A { REG_A } else { REG_X };
                    em.jump(insn(e::JMP32 | e::JNE | e::K, r, 0, 0, 0), Label::Match);
                    em.jump(insn(e::JMP | e::JA, 0, 0, 0, 0), Label::NoMatch);
                }
                0 => {
                    // A non-zero return is the snap length: "accept".
                    let to = if i.k != 0 { Label::Match } else { Label::NoMatch };
                    em.jump(insn(e::JMP | e::JA, 0, 0, 0, 0), to);
                }
                _ => return unsupported("is not a valid return"),
            },
            c::MISC => {
                if i.code & 0xf8 == c::TXA {
                    em.push(insn(e::ALU | e::MOV | e::X, REG_A, REG_X, 0, 0));
                } else if i.code & 0xf8 == 0 {
                    em.push(insn(e::ALU | e::MOV | e::X, REG_X, REG_A, 0, 0));
                } else {
                    return unsupported("is not a valid register transfer");
                }
            }
            _ => return unsupported("has an unknown instruction class"),
        }
    }
    // cBPF programs end in a return: control never falls off the end.
    if prog.last().is_some_and(|i| i.code & 0x07 != c::RET) {
        return Err((prog.len() - 1, "is not a return at the end of the program"));
    }

    // Match: tail-call the continuation (patched in by `Filter::load`); if
    // the tail call fails, fall through to "no match".
    let match_at = em.out.len();
    em.push(insn(e::ALU64 | e::MOV | e::X, R1, CTX, 0, 0));
    let map_load = em.out.len();
    em.push(insn(e::LD | e::IMM | e::DW, R2, e::PSEUDO_MAP_FD, 0, 0));
    em.push(insn(0, 0, 0, 0, 0));
    let index_load = em.out.len();
    em.push(insn(e::ALU | e::MOV | e::K, R3, 0, 0, 0));
    em.push(insn(e::JMP | e::CALL, 0, 0, 0, e::FN_TAIL_CALL));
    let no_match_at = em.out.len();
    em.push(insn(e::ALU64 | e::MOV | e::K, R0, 0, 0, TC_ACT_UNSPEC));
    em.push(insn(e::JMP | e::EXIT, 0, 0, 0, 0));

    for (at, label) in std::mem::take(&mut em.fixups) {
        let to = match label {
            Label::Insn(i) => start[i],
            Label::Match => match_at,
            Label::NoMatch => no_match_at,
        };
        let off = to as i64 - at as i64 - 1;
        let Ok(off) = i16::try_from(off) else {
            let cbpf_index = start.iter().rposition(|s| *s <= at).unwrap_or(0);
            return Err((cbpf_index, "jumps too far for an eBPF jump (the program is too large)"));
        };
        em.out[at].off = off;
    }
    Ok((em.out, map_load, index_load))
}

/// tcpdump -d style text of one instruction, for error messages.
pub fn disassemble(i: &CbpfInsn) -> String {
    let size = match i.code & 0x18 {
        c::W => "",
        c::H => "h",
        c::B => "b",
        _ => "?",
    };
    match i.code & 0x07 {
        c::LD | c::LDX => {
            let x = if i.code & 0x07 == c::LDX { "x" } else { "" };
            match i.code & 0xe0 {
                c::IMM => format!("ld{x} #{:#x}", i.k),
                c::ABS => format!("ld{size} [{}]", i.k as i32),
                c::IND => format!("ld{size} [x + {}]", i.k as i32),
                c::MEM => format!("ld{x} M[{}]", i.k),
                c::LEN => format!("ld{x} #pktlen"),
                c::MSH => format!("ldxb 4*([{}]&0xf)", i.k as i32),
                _ => format!("code {:#06x}", i.code),
            }
        }
        c::ST => format!("st M[{}]", i.k),
        c::STX => format!("stx M[{}]", i.k),
        _ => format!("code {:#06x} jt {} jf {} k {:#x}", i.code, i.jt, i.jf, i.k),
    }
}

/// BPF_PROG_LOAD of a SCHED_CLS program. On failure, retries with the
/// verifier log and returns its last lines.
fn load_sched_cls(name: &str, insns: &[EbpfInsn]) -> Result<OwnedFd, String> {
    #[repr(C)]
    #[derive(Default)]
    struct ProgLoadAttr {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
        prog_ifindex: u32,
        expected_attach_type: u32,
    }
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
    let license = c"Dual MIT/GPL";
    let mut prog_name = [0u8; 16];
    for (d, s) in prog_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    let attempt = |log: Option<&mut Vec<u8>>| -> io::Result<OwnedFd> {
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_SCHED_CLS,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name,
            ..Default::default()
        };
        if let Some(buf) = log {
            attr.log_level = 1;
            attr.log_size = buf.len() as u32;
            attr.log_buf = buf.as_mut_ptr() as u64;
        }
        // SAFETY: `attr` and everything it points to outlive the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_LOAD,
                &mut attr as *mut ProgLoadAttr as *mut c_void,
                std::mem::size_of::<ProgLoadAttr>(),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel returned a new file descriptor that we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as c_int) })
    };
    match attempt(None) {
        Ok(fd) => Ok(fd),
        Err(first) => {
            let mut buf = vec![0u8; 1 << 22];
            let err = attempt(Some(&mut buf)).err().unwrap_or(first);
            let log = String::from_utf8_lossy(&buf[..buf.iter().position(|b| *b == 0).unwrap_or(0)]).into_owned();
            let tail: Vec<&str> = log.lines().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
            if tail.is_empty() { Err(err.to_string()) } else { Err(format!("{err}: {}", tail.join(" | "))) }
        }
    }
}

/// BPF_MAP_UPDATE_ELEM of a program array slot.
pub fn set_program(prog_array: BorrowedFd<'_>, index: u32, prog: BorrowedFd<'_>) -> io::Result<()> {
    #[repr(C)]
    struct MapElemAttr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
    let value: u32 = prog.as_raw_fd() as u32;
    let mut attr = MapElemAttr {
        map_fd: prog_array.as_raw_fd() as u32,
        _pad: 0,
        key: &index as *const u32 as u64,
        value: &value as *const u32 as u64,
        flags: 0,
    };
    // SAFETY: `attr` points at live key and value for the whole call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_ELEM,
            &mut attr as *mut MapElemAttr as *mut c_void,
            std::mem::size_of::<MapElemAttr>(),
        )
    };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// BPF_PROG_TEST_RUN of a loaded program on one packet: its return value.
/// For tests of the translation against libpcap.
pub fn test_run(prog: BorrowedFd<'_>, packet: &[u8]) -> io::Result<u32> {
    #[repr(C)]
    #[derive(Default)]
    struct TestRunAttr {
        prog_fd: u32,
        retval: u32,
        data_size_in: u32,
        data_size_out: u32,
        data_in: u64,
        data_out: u64,
        repeat: u32,
        duration: u32,
    }
    const BPF_PROG_TEST_RUN: libc::c_long = 10;
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: packet.len() as u32,
        data_in: packet.as_ptr() as u64,
        repeat: 1,
        ..Default::default()
    };
    // SAFETY: `attr` points at `packet`, which outlives the call; no output buffer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestRunAttr as *mut c_void,
            std::mem::size_of::<TestRunAttr>(),
        )
    };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(attr.retval) }
}

/// Loads an eBPF program that returns `value` (a stand-in continuation for
/// tests).
pub fn load_constant_program(name: &str, value: i32) -> Result<OwnedFd, FilterError> {
    let insns = [insn(e::ALU64 | e::MOV | e::K, R0, 0, 0, value), insn(e::JMP | e::EXIT, 0, 0, 0, 0)];
    load_sched_cls(name, &insns).map_err(FilterError::Load)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_read_like_tcpdump() {
        let e = Filter::compile("tcp port", 65535).unwrap_err();
        assert_eq!(e.to_string(), "can't parse filter expression: syntax error");
    }

    #[test]
    fn common_expressions_translate() {
        for expr in [
            "tcp port 80",
            "host 10.0.0.2 and not icmp",
            "tcp[tcpflags] & tcp-syn != 0",
            "ip6 and udp portrange 1000-2000",
            "net 10.0.0.0/8 or ip6 net fd00::/16",
            "len <= 100",
            "vlan and tcp",
            "ether host 02:00:00:00:00:01",
            "arp",
            "ip[8] < 64",
            "tcp[13] & 2 != 0",
            "not (tcp or udp)",
            "ip[2:2] / 0 > 1 or 1 = 1",
        ] {
            match Filter::compile(expr, 65535) {
                Ok(f) => assert!(!f.ebpf().is_empty()),
                // libpcap rejects division by a constant 0 itself.
                Err(FilterError::Compile(m)) if expr.contains("/ 0") => assert!(m.contains("zero"), "{m}"),
                Err(e) => panic!("{expr}: {e}"),
            }
        }
    }

    #[test]
    fn untranslatable_programs_are_refused_with_the_reason() {
        // ldb [vlanp] (Linux ancillary data, what a live handle emits for
        // `vlan`), then ret.
        let prog = [
            CbpfInsn { code: c::LD | c::B | c::ABS, jt: 0, jf: 0, k: 0xffff_f000 + 48 },
            CbpfInsn { code: c::RET | c::RVAL_A, jt: 0, jf: 0, k: 0 },
        ];
        let (index, reason) = translate(&prog).unwrap_err();
        assert_eq!(index, 0);
        assert!(reason.contains("ancillary"), "{reason}");
        // A program that falls off its end.
        let prog = [CbpfInsn { code: c::LD | c::IMM, jt: 0, jf: 0, k: 1 }];
        assert!(translate(&prog).is_err());
        // Scratch memory beyond M[15].
        let prog = [CbpfInsn { code: c::ST, jt: 0, jf: 0, k: 16 }, CbpfInsn { code: c::RET, jt: 0, jf: 0, k: 1 }];
        assert_eq!(translate(&prog).unwrap_err().0, 0);
    }

    #[test]
    fn userspace_reference_matches() {
        let f = Filter::compile("udp and len >= 60", 65535).unwrap();
        let mut frame = vec![0u8; 60];
        frame[12] = 0x08; // IPv4
        frame[14] = 0x45;
        frame[23] = 17; // UDP
        assert!(f.matches(&frame, 60));
        frame[23] = 6;
        assert!(!f.matches(&frame, 60));
    }

    #[test]
    fn file_comments_are_removed() {
        let dir = std::env::temp_dir().join(format!("cnet-filter-file-{}", std::process::id()));
        std::fs::write(&dir, "tcp # web\n  and port 80\n# done\n").unwrap();
        let s = read_filter_file(&dir).unwrap();
        let _ = std::fs::remove_file(&dir);
        assert_eq!(s, "tcp and port 80");
    }
}
