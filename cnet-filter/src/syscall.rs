//! The raw `bpf()` calls the filter needs: load a SCHED_CLS program (with
//! the verifier's log on failure), fill a program array slot, and, for tests,
//! run a program on one packet. aya cannot load a program built at run time,
//! so these are made directly.

use std::ffi::{c_int, c_void};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::insn::EbpfInsn;
#[cfg(feature = "test-support")]
use crate::insn::{R0, e, insn};

/// BPF_PROG_LOAD of a SCHED_CLS program. On failure, retries with the
/// verifier log and returns its last lines.
pub(crate) fn load_sched_cls(name: &str, insns: &[EbpfInsn]) -> Result<OwnedFd, String> {
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

#[cfg(feature = "test-support")]
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

#[cfg(feature = "test-support")]
/// Loads an eBPF program that returns `value` (a stand-in continuation for
/// tests).
pub fn load_constant_program(name: &str, value: i32) -> Result<OwnedFd, crate::FilterError> {
    let insns = [insn(e::ALU64 | e::MOV | e::K, R0, 0, 0, value), insn(e::JMP | e::EXIT, 0, 0, 0, 0)];
    load_sched_cls(name, &insns).map_err(crate::FilterError::Load)
}
