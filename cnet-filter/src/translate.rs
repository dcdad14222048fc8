//! cBPF → eBPF, instruction by instruction. The output is a SCHED_CLS
//! program that tail-calls a continuation for matching packets and returns
//! TC_ACT_UNSPEC otherwise.

use crate::insn::*;

/// A translated program and the instructions [`crate::Filter::load`] patches.
#[derive(Clone, Debug)]
pub(crate) struct Program {
    pub insns: Vec<EbpfInsn>,
    /// Index of the `ld_imm64` that loads the program array for the tail call.
    pub map_load: usize,
    /// Index of the `mov32 r3, imm` that sets the continuation index.
    pub index_load: usize,
}

/// Why a cBPF program has no eBPF equivalent: the offending instruction's
/// index and the reason.
#[derive(Debug)]
pub(crate) struct Untranslatable {
    pub index: usize,
    pub reason: &'static str,
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

/// Translates a cBPF program; on failure, the offending instruction and why.
pub(crate) fn translate(prog: &[CbpfInsn]) -> Result<Program, Untranslatable> {
    if prog.is_empty() {
        return Err(Untranslatable { index: 0, reason: "is missing: the program is empty" });
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
        let unsupported = |reason: &'static str| Err(Untranslatable { index: idx, reason });
        let target = |off: u32| -> Result<Label, Untranslatable> {
            let t = idx as u64 + 1 + off as u64;
            if t >= prog.len() as u64 {
                Err(Untranslatable { index: idx, reason: "jumps past the end of the program" })
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
        return Err(Untranslatable { index: prog.len() - 1, reason: "is not a return at the end of the program" });
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
            return Err(Untranslatable {
                index: cbpf_index,
                reason: "jumps too far for an eBPF jump (the program is too large)",
            });
        };
        em.out[at].off = off;
    }
    Ok(Program { insns: em.out, map_load, index_load })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untranslatable_programs_are_refused_with_the_reason() {
        // ldb [vlanp] (Linux ancillary data, what a live handle emits for
        // `vlan`), then ret.
        let prog = [
            CbpfInsn { code: c::LD | c::B | c::ABS, jt: 0, jf: 0, k: 0xffff_f000 + 48 },
            CbpfInsn { code: c::RET | c::RVAL_A, jt: 0, jf: 0, k: 0 },
        ];
        let e = translate(&prog).unwrap_err();
        assert_eq!(e.index, 0);
        assert!(e.reason.contains("ancillary"), "{}", e.reason);
        // A program that falls off its end.
        let prog = [CbpfInsn { code: c::LD | c::IMM, jt: 0, jf: 0, k: 1 }];
        assert!(translate(&prog).is_err());
        // Scratch memory beyond M[15].
        let prog = [CbpfInsn { code: c::ST, jt: 0, jf: 0, k: 16 }, CbpfInsn { code: c::RET, jt: 0, jf: 0, k: 1 }];
        assert_eq!(translate(&prog).unwrap_err().index, 0);
    }
}
