//! The libpcap binding: compiles a pcap-filter expression to classic BPF
//! exactly as tcpdump does, and evaluates a cBPF program in userspace
//! (libpcap's `bpf_filter`, the reference the translation is tested against).
//! The only place that calls into libpcap.

use std::ffi::{CStr, CString, c_char, c_int, c_uint};

use crate::FilterError;
use crate::insn::CbpfInsn;

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
const DLT_EN10MB: u32 = 1;

/// Compiles `expression` for an Ethernet interface with snap length
/// `snaplen`, with libpcap's optimiser, as tcpdump does.
pub(crate) fn compile(expression: &str, snaplen: u32) -> Result<Vec<CbpfInsn>, FilterError> {
    compile_for(expression, DLT_EN10MB, snaplen)
}

/// Compiles `expression` for an interface of link type `linktype`
/// (LINKTYPE_*, as in a pcap or pcapng file) with snap length `snaplen`,
/// as `tcpdump -r` does for a file of that link type: the same expression
/// reads different offsets on Ethernet, raw IP or Linux cooked frames.
pub(crate) fn compile_for(expression: &str, linktype: u32, snaplen: u32) -> Result<Vec<CbpfInsn>, FilterError> {
    let c_expr = CString::new(expression)
        .map_err(|_| FilterError::Compile("can't parse filter expression: it contains a NUL byte".into()))?;
    // SAFETY: plain libpcap calls on a handle we own; the program is freed
    // with pcap_freecode and the handle closed on every path.
    unsafe {
        // A snap length of 0 in a file means "no limit"; libpcap wants one.
        let snaplen = if snaplen == 0 { 262144 } else { snaplen.clamp(1, 262144) };
        let p = ffi::pcap_open_dead(dlt_of_linktype(linktype), snaplen as c_int);
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

/// The DLT_* value libpcap's compiler wants for a file's LINKTYPE_* value:
/// the same number, except for the few link types whose DLT_* values differ
/// between systems (libpcap's own `linktype_to_dlt`, which it does not
/// export, for the ones a Linux capture holds).
fn dlt_of_linktype(linktype: u32) -> c_int {
    match linktype {
        // LINKTYPE_ATM_RFC1483, LINKTYPE_RAW: DLT_ATM_RFC1483, DLT_RAW on Linux.
        100 => 11,
        101 => 12,
        _ => linktype.min(i32::MAX as u32) as c_int,
    }
}

/// libpcap's userspace verdict of `prog` on a frame of `wire_len` bytes
/// whose first `data.len()` bytes are `data`.
pub(crate) fn matches(prog: &[CbpfInsn], data: &[u8], wire_len: u32) -> bool {
    // SAFETY: the program is a complete cBPF program from pcap_compile;
    // bpf_filter reads at most `buflen` bytes of `data`.
    unsafe { ffi::bpf_filter(prog.as_ptr(), data.as_ptr(), wire_len, data.len() as c_uint) != 0 }
}
