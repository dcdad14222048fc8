//! Instruction formats of classic and extended BPF, their opcode fields,
//! and the registers the translation uses.

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

// Classic BPF opcode fields (linux/filter.h, pcap/bpf.h).
pub(crate) mod c {
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
pub(crate) mod e {
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

pub(crate) const R0: u8 = 0;
pub(crate) const R1: u8 = 1;
pub(crate) const R2: u8 = 2;
pub(crate) const R3: u8 = 3;
pub(crate) const R4: u8 = 4;
pub(crate) const R5: u8 = 5;
pub(crate) const CTX: u8 = 6;
pub(crate) const REG_A: u8 = 7;
pub(crate) const REG_X: u8 = 8;
/// Start of the packet's linear data (`__sk_buff.data`), loaded once.
pub(crate) const DATA: u8 = 9;
/// Offsets of `data` and `data_end` in `struct __sk_buff`.
pub(crate) const SKB_DATA: i16 = 76;
pub(crate) const SKB_DATA_END: i16 = 80;
/// Largest packet offset read directly; beyond it, loads use the helper.
/// The verifier trusts a bounds check only while offset + size stays within
/// 0xffff (MAX_PACKET_OFF).
pub(crate) const MAX_DIRECT_OFFSET: u32 = 0xff00;
pub(crate) const FP: u8 = 10;
/// Stack slot that packet loads land in.
pub(crate) const LOAD_SLOT: i16 = -8;
/// TC_ACT_UNSPEC: "no opinion", what the capture programs return too.
pub(crate) const TC_ACT_UNSPEC: i32 = -1;

pub(crate) fn mem_slot(k: u32) -> i16 {
    -12 - 4 * k as i16
}

pub(crate) fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> EbpfInsn {
    EbpfInsn { code, regs: (src << 4) | dst, off, imm }
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
