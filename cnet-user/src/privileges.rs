//! Checks the capabilities cnet needs before it touches the kernel, so the
//! user gets a sentence naming what is missing instead of a raw EPERM.

/// Capability bits (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
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
