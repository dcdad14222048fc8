//! Checks the capabilities cnet needs before it touches the kernel, so the
//! user gets a sentence naming what is missing instead of a raw EPERM.
//!
//! What a cnet that is not root needs, per target kind (README, "Without
//! root"), beyond CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN for every capture:
//!
//! - `-i IFACE`: nothing more.
//! - `--netns NAME` (`/var/run/netns/NAME`): CAP_SYS_ADMIN, to enter it.
//! - `--pid PID`, `--netns /proc/PID/ns/net`: CAP_SYS_ADMIN, and
//!   CAP_SYS_PTRACE when PID belongs to another user (the kernel's ptrace
//!   access check guards `/proc/PID/ns/net`).
//! - containers: the runtime's API socket (Docker: membership of the
//!   socket's group, usually `docker`; containerd and rootful Podman: root
//!   only), then as `--pid` for the container's process: CAP_SYS_ADMIN and
//!   CAP_SYS_PTRACE.

/// Capability bits (linux/capability.h).
pub const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

/// True when cnet has `cap` in its effective set (root has every one).
fn has(cap: u32) -> bool {
    effective_caps().is_some_and(|caps| caps & (1u64 << cap) != 0)
}

/// Why cnet may not open or enter the network namespace at `path`, for
/// "permission denied while reading /proc/42/ns/net: …": the capabilities
/// it lacks for that kind of path, never one it has.
pub fn namespace_needs(path: &std::path::Path) -> String {
    let mut need = Vec::new();
    if path.starts_with("/proc") && !has(CAP_SYS_PTRACE) {
        need.push("CAP_SYS_PTRACE (to open /proc/PID/ns/net of another user's process)");
    }
    if !has(CAP_SYS_ADMIN) {
        need.push("CAP_SYS_ADMIN (to enter the namespace)");
    }
    if need.is_empty() {
        return format!(
            "cnet has CAP_SYS_ADMIN and CAP_SYS_PTRACE, so {} itself refuses it (its permissions, or a security module such as AppArmor or SELinux)",
            path.display()
        );
    }
    format!(
        "cnet needs {}; run it as root, or add them to cnet's capabilities (setcap cap_bpf,cap_perfmon,cap_net_admin,cap_sys_admin,cap_sys_ptrace+ep $(which cnet))",
        need.join(" and ")
    )
}

/// What a user needs to open a runtime's API socket that refused it:
/// the socket's owner, group and mode, and the group to join.
pub fn socket_access(socket: &str) -> String {
    use std::os::unix::fs::MetadataExt;
    let path = socket.trim_start_matches("unix://");
    let Ok(m) = std::fs::metadata(path) else {
        return "a directory on the way to it is closed to this user: run cnet as root".into();
    };
    let group = group_name(m.gid());
    let owner = format!("{}:{group}, mode {:o}", user_name(m.uid()), m.mode() & 0o777);
    if m.gid() == 0 || m.mode() & 0o060 != 0o060 {
        format!("it belongs to {owner} and only root can open it: run cnet as root")
    } else {
        format!(
            "it belongs to {owner}: run cnet as root, or as a member of group {group} (`usermod -aG {group} USER`, then log in again)"
        )
    }
}

fn group_name(gid: u32) -> String {
    // SAFETY: getgrgid returns NULL or static storage, copied out at once.
    let gr = unsafe { libc::getgrgid(gid) };
    if gr.is_null() {
        return gid.to_string();
    }
    // SAFETY: non-null entry with a NUL-terminated name.
    unsafe { std::ffi::CStr::from_ptr((*gr).gr_name) }.to_string_lossy().into_owned()
}

fn user_name(uid: u32) -> String {
    // SAFETY: getpwuid returns NULL or static storage, copied out at once.
    let pw = unsafe { libc::getpwuid(uid) };
    if pw.is_null() {
        return uid.to_string();
    }
    // SAFETY: non-null entry with a NUL-terminated name.
    unsafe { std::ffi::CStr::from_ptr((*pw).pw_name) }.to_string_lossy().into_owned()
}

/// Returns the names of the missing capabilities for a capture that enters
/// other network namespaces when `enters_netns` is set.
pub fn missing(enters_netns: bool) -> Vec<&'static str> {
    let Some(caps) = effective_caps() else { return Vec::new() };
    let has = |bit: u32| caps & (1u64 << bit) != 0;
    // CAP_SYS_ADMIN implies what CAP_BPF and CAP_PERFMON grant.
    let mut out = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        out.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) && !has(CAP_SYS_ADMIN) {
        out.push("CAP_PERFMON");
    }
    if !has(CAP_NET_ADMIN) {
        out.push("CAP_NET_ADMIN");
    }
    if enters_netns && !has(CAP_SYS_ADMIN) {
        out.push("CAP_SYS_ADMIN");
    }
    out
}

#[derive(Debug, thiserror::Error)]
#[error("cnet needs {} to capture{}; run it as root (sudo cnet …) or grant them (setcap cap_bpf,cap_perfmon,cap_net_admin,cap_sys_admin+ep $(which cnet))", .missing.join(", "), if *.enters_netns { " from other network namespaces" } else { "" })]
pub struct MissingCapabilities {
    pub missing: Vec<&'static str>,
    pub enters_netns: bool,
}

pub fn check(enters_netns: bool) -> Result<(), MissingCapabilities> {
    let missing = missing(enters_netns);
    if missing.is_empty() { Ok(()) } else { Err(MissingCapabilities { missing, enters_netns }) }
}

/// A user to switch to with `-Z`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl User {
    /// Looks a user up by name (or numeric uid).
    pub fn lookup(name: &str) -> Result<User, String> {
        let c = std::ffi::CString::new(name).map_err(|_| format!("invalid user name {name:?}"))?;
        // SAFETY: getpwnam returns NULL or a pointer to static storage that
        // we copy out of before any other passwd call.
        let pw = unsafe { libc::getpwnam(c.as_ptr()) };
        if !pw.is_null() {
            // SAFETY: `pw` is non-null and points at getpwnam's static entry.
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            return Ok(User { name: name.to_string(), uid, gid });
        }
        if let Ok(uid) = name.parse::<u32>() {
            return Ok(User { name: name.to_string(), uid, gid: uid });
        }
        Err(format!("no user named {name:?} (see /etc/passwd)"))
    }
}

/// Gives an opened output file to `user`, so it owns what it captured.
pub fn chown_to(file: &std::fs::File, user: &User) -> std::io::Result<()> {
    std::os::unix::fs::fchown(file, Some(user.uid), Some(user.gid))
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Switches to `user` (groups, gid, uid, like tcpdump's -Z) keeping only the
/// capabilities in `keep`, which the rest of the capture still needs.
pub fn drop_to(user: &User, keep: &[u32]) -> std::io::Result<()> {
    let last = || std::io::Error::last_os_error();
    // SAFETY: plain syscalls with valid arguments; they only change this
    // process's credentials.
    unsafe {
        if !keep.is_empty() && libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 {
            return Err(last());
        }
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(last());
        }
        if libc::setresgid(user.gid, user.gid, user.gid) != 0 {
            return Err(last());
        }
        if libc::setresuid(user.uid, user.uid, user.uid) != 0 {
            return Err(last());
        }
    }
    let mut data = [CapData::default(); 2];
    for &cap in keep {
        let (i, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
        data[i].effective |= bit;
        data[i].permitted |= bit;
    }
    let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    // SAFETY: capset with a v3 header and two data structs.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, data.as_ptr()) };
    if rc != 0 {
        return Err(last());
    }
    Ok(())
}
