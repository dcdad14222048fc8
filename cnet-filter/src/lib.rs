//! tcpdump filter expressions (pcap-filter syntax), evaluated in the kernel.
//!
//! libpcap compiles the expression into classic BPF exactly as tcpdump does
//! (same parser, same optimiser, Ethernet link type); this crate translates
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

//!
//! Modules: [`libpcap`] (the binding: compile and the userspace verdict),
//! `insn` (instruction formats and opcode tables), `translate` (cBPF →
//! eBPF), `syscall` (the raw `bpf()` calls that load programs and fill
//! program arrays). The crate knows nothing of cnet's capture pipeline.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

mod insn;
pub mod libpcap;
mod syscall;
mod translate;

pub use insn::{CbpfInsn, EbpfInsn, disassemble};
pub use syscall::set_program;

/// Test-only access to the kernel: run a loaded program on one packet, load
/// a stand-in continuation. For tests of the translation against libpcap.
#[cfg(feature = "test-support")]
pub mod testing {
    pub use crate::syscall::{load_constant_program, test_run};
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

/// A compiled filter expression: ready to be loaded as an eBPF program
/// ([`Filter::compile`]), or for libpcap's userspace verdict on the packets
/// of a file ([`Filter::compile_for`]).
#[derive(Clone, Debug)]
pub struct Filter {
    expression: String,
    cbpf: Vec<CbpfInsn>,
    /// None for a filter compiled for a file's link type: it never goes
    /// into the kernel, so a program too large for eBPF is no reason to
    /// refuse it.
    program: Option<translate::Program>,
}

impl Filter {
    /// Compiles a pcap-filter expression as tcpdump does for an Ethernet
    /// interface with snap length `snaplen`, and translates it to eBPF.
    /// Errors carry libpcap's message (tcpdump's wording) or say which cBPF
    /// instruction has no kernel-side equivalent.
    pub fn compile(expression: &str, snaplen: u32) -> Result<Filter, FilterError> {
        let cbpf = libpcap::compile(expression, snaplen)?;
        let program = translate::translate(&cbpf).map_err(|e| FilterError::Untranslatable {
            expr: expression.to_string(),
            index: e.index,
            what: insn::disassemble(&cbpf[e.index]),
            reason: e.reason,
        })?;
        Ok(Filter { expression: expression.to_string(), cbpf, program: Some(program) })
    }

    /// Compiles a pcap-filter expression as `tcpdump -r` does for a file
    /// whose interface has link type `linktype` (LINKTYPE_*) and snap length
    /// `snaplen` (0 = unlimited), for [`Filter::matches`] only: the filter
    /// cannot be loaded into the kernel. Errors carry libpcap's message.
    pub fn compile_for(expression: &str, linktype: u32, snaplen: u32) -> Result<Filter, FilterError> {
        let cbpf = libpcap::compile_for(expression, linktype, snaplen)?;
        Ok(Filter { expression: expression.to_string(), cbpf, program: None })
    }

    /// The expression as given.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The classic BPF program libpcap produced.
    pub fn cbpf(&self) -> &[CbpfInsn] {
        &self.cbpf
    }

    /// The eBPF translation (program array and index not yet filled in);
    /// empty for a filter from [`Filter::compile_for`].
    pub fn ebpf(&self) -> &[EbpfInsn] {
        self.program.as_ref().map_or(&[], |p| &p.insns)
    }

    /// libpcap's own userspace evaluation of the cBPF program: whether a
    /// frame of `wire_len` bytes whose first `data.len()` bytes are `data`
    /// matches. The reference the kernel-side translation is tested against.
    pub fn matches(&self, data: &[u8], wire_len: u32) -> bool {
        libpcap::matches(&self.cbpf, data, wire_len)
    }

    /// Loads the filter as a SCHED_CLS program named `name` that tail-calls
    /// `prog_array[continuation]` for matching packets.
    pub fn load(&self, name: &str, prog_array: BorrowedFd<'_>, continuation: u32) -> Result<OwnedFd, FilterError> {
        let Some(program) = &self.program else {
            return Err(FilterError::Load("the filter was compiled for reading a file, not for the kernel".into()));
        };
        let mut insns = program.insns.clone();
        insns[program.map_load].imm = prog_array.as_raw_fd();
        insns[program.index_load].imm = continuation as i32;
        syscall::load_sched_cls(name, &insns).map_err(FilterError::Load)
    }
}

/// Reads a filter file the way tcpdump's `-F` does: `#` starts a comment
/// that runs to the end of the line; lines are joined.
pub fn read_filter_file(path: &std::path::Path) -> io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    let words: Vec<&str> = text.lines().map(|l| l.split('#').next().unwrap_or("")).collect();
    Ok(words.join(" ").split_whitespace().collect::<Vec<_>>().join(" "))
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
    fn the_link_type_decides_the_offsets() {
        // The same IPv4/UDP packet, bare (LINKTYPE_RAW) and in Ethernet.
        let mut ip = vec![0u8; 28];
        ip[0] = 0x45;
        ip[9] = 17;
        let mut frame = vec![0u8; 14];
        frame[12] = 0x08;
        frame.extend_from_slice(&ip);
        for linktype in [101, 12, 228] {
            let raw = Filter::compile_for("udp", linktype, 0).unwrap();
            assert!(raw.matches(&ip, ip.len() as u32), "linktype {linktype}");
            assert!(!raw.matches(&frame, frame.len() as u32), "linktype {linktype}");
            assert!(raw.ebpf().is_empty());
        }
        let eth = Filter::compile_for("udp", 1, 65535).unwrap();
        assert!(eth.matches(&frame, frame.len() as u32));
        assert!(!eth.matches(&ip, ip.len() as u32));
        // Ethernet-only primitives are refused on raw IP with libpcap's words.
        let e = Filter::compile_for("ether host 02:00:00:00:00:01", 101, 0).unwrap_err();
        assert!(e.to_string().contains("supported only on ethernet"), "{e}");
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
