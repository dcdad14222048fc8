//! Loading cnet's eBPF object and attaching its tc programs to interfaces.
//!
//! TCX links (Linux 6.6+) are preferred: they are owned by cnet's file
//! descriptors, so the kernel detaches them when cnet dies, even by SIGKILL.
//! The clsact + cls_bpf fallback leaves filters behind when cnet is killed;
//! cnet marks its filters with its PID as the filter handle and removes
//! filters of dead cnet processes the next time it attaches to an interface,
//! in either mode.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, PerCpuArray};
use aya::programs::SchedClassifier;
use aya::programs::links::LinkOrder;
use aya::programs::tc::{self, NlOptions, SchedClassifierLinkId, TcAttachOptions, TcAttachType, TcHandle};
use aya::{Ebpf, EbpfLoader};
use cnet_common::{Config, Counters, Hook, IFINDEX_TABLE, MAX_SLOTS, MAX_SNAPLEN, counter_index, names, prog_index};

use crate::model::Endpoint;
use crate::pipeline::collect::Ring;
use crate::platform::netlink::{CLSACT_EGRESS, CLSACT_INGRESS, Netlink, link_exists};
use cnet_filter::{self as filter, Filter};

// The eBPF object built from `cnet-ebpf` by the build script; it lives beside
// the hash that names it in `cnet --version`.
use crate::version::EBPF_OBJECT;

/// How programs are attached to tc hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// TCX when the kernel has it, otherwise clsact.
    Auto,
    /// TCX links (Linux 6.6+).
    Tcx,
    /// clsact qdisc + cls_bpf filters (any kernel with tc BPF).
    Clsact,
}

#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub snaplen: u32,
    /// Ring buffer size in bytes; rounded up to a power of two.
    pub ring_bytes: u32,
    pub ebpf_log: bool,
    pub mode: AttachMode,
    /// (uid, gid) cnet will run as after attaching (`-Z`), if any.
    pub run_as: Option<(u32, u32)>,
    /// Capture filter evaluated in the kernel; `None` captures everything.
    pub filter: Option<Filter>,
}

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("cannot load the eBPF programs: {0}")]
    Load(String),
    #[error("cannot attach to {ifname} ({hook}) with {mode}: {reason}")]
    Attach { ifname: String, hook: &'static str, mode: &'static str, reason: String },
    #[error("{0}")]
    Map(String),
}

struct Hooked {
    ifname: String,
    links: Vec<(Hook, SchedClassifierLinkId)>,
}

/// Records that a clsact qdisc was added by cnet (so the last cnet to leave
/// the interface removes it, even when the one that added it was killed or
/// left first). Lives under /run, which is cleared at boot, keyed by network
/// namespace and ifindex.
struct ClsactMarker(std::path::PathBuf);

impl ClsactMarker {
    fn of(ifindex: u32) -> ClsactMarker {
        let ns = crate::platform::netns::own_inode().unwrap_or(0);
        ClsactMarker(std::path::PathBuf::from(format!("/run/cnet/clsact/{ns}-{ifindex}")))
    }

    /// `owner`: the user cnet switches to with -Z, who must be able to
    /// remove the marker later (the folder is sticky and world-writable,
    /// like /tmp).
    fn create(&self, owner: Option<(u32, u32)>) {
        use std::os::unix::fs::PermissionsExt;
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::create_dir_all(dir);
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777));
        }
        let _ = std::fs::write(&self.0, b"");
        if let Some((uid, gid)) = owner {
            let _ = std::os::unix::fs::chown(&self.0, Some(uid), Some(gid));
        }
    }

    fn exists(&self) -> bool {
        self.0.exists()
    }

    fn remove(&self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A loaded eBPF object and the interfaces it is attached to. Dropping it
/// detaches every program.
pub struct Hooks {
    ebpf: Ebpf,
    tcx: bool,
    hooked: HashMap<u32, Hooked>,
    /// ifindex -> counter slot of every interface attached so far. Slots are
    /// not reused within a capture: the final statistics are read after
    /// detaching.
    slots: HashMap<u32, u32>,
    /// `CNET_HOOK_ONLY=1`: attach the programs but give no interface a
    /// slot, so every hook returns at once. `cargo xtask bench` uses it to
    /// measure what an attached tc program costs before it does any work.
    hook_only: bool,
    run_as: Option<(u32, u32)>,
    /// The loaded filter programs (one per hook); the program array holds
    /// them too, these keep them for the lifetime of the capture.
    _filters: Vec<OwnedFd>,
}

fn prog_name(hook: Hook) -> &'static str {
    match hook {
        Hook::Ingress => names::PROG_INGRESS,
        Hook::Egress => names::PROG_EGRESS,
    }
}

fn hook_str(hook: Hook) -> &'static str {
    match hook {
        Hook::Ingress => "ingress",
        Hook::Egress => "egress",
    }
}

impl Hooks {
    pub fn load(opts: &LoadOptions) -> Result<Self, AttachError> {
        let ring_bytes = opts.ring_bytes.clamp(4096, 1 << 30).next_power_of_two();
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(names::RING, ring_bytes)
            .load(EBPF_OBJECT)
            .map_err(|e| AttachError::Load(error_chain(&e)))?;
        for hook in Hook::ALL {
            let prog = classifier(&mut ebpf, prog_name(hook))?;
            prog.load().map_err(|e| AttachError::Load(error_chain(&e)))?;
        }
        let filters = match &opts.filter {
            Some(f) => install_filter(&mut ebpf, f)?,
            None => Vec::new(),
        };
        let config = Config {
            snaplen: opts.snaplen.clamp(1, MAX_SNAPLEN),
            log: opts.ebpf_log as u32,
            wakeup_bytes: wakeup_watermark(ring_bytes),
            filter: opts.filter.is_some() as u32,
        };
        let mut cfg: Array<_, Config> =
            Array::try_from(map_mut(&mut ebpf, names::CONFIG)?).map_err(|e| AttachError::Map(error_chain(&e)))?;
        cfg.set(0, config, 0).map_err(|e| AttachError::Map(error_chain(&e)))?;
        let tcx = match opts.mode {
            AttachMode::Tcx => true,
            AttachMode::Clsact => false,
            AttachMode::Auto => {
                aya::util::KernelVersion::current().is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 6, 0))
            }
        };
        Ok(Hooks {
            ebpf,
            tcx,
            hooked: HashMap::new(),
            slots: HashMap::new(),
            hook_only: std::env::var_os("CNET_HOOK_ONLY").is_some_and(|v| v == "1"),
            run_as: opts.run_as,
            _filters: filters,
        })
    }

    /// `tcx` or `clsact`.
    pub fn mode_name(&self) -> &'static str {
        if self.tcx { "tcx" } else { "clsact" }
    }

    /// The packet ring buffer, mapped for reading; call once.
    pub fn take_ring(&mut self) -> Result<Ring, AttachError> {
        let map =
            self.ebpf.take_map(names::RING).ok_or_else(|| AttachError::Map("ring buffer already taken".into()))?;
        let Map::RingBuf(data) = map else {
            return Err(AttachError::Map(format!("{} is not a ring buffer", names::RING)));
        };
        Ring::new(data).map_err(|e| AttachError::Map(format!("cannot map the ring buffer: {e}")))
    }

    /// Starts forwarding aya-log records from the kernel side to `log`.
    pub fn take_logger(&mut self) -> Result<aya_log::EbpfLogger<&'static dyn log::Log>, AttachError> {
        aya_log::EbpfLogger::init(&mut self.ebpf).map_err(|e| AttachError::Map(error_chain(&e)))
    }

    fn counters_map(&self) -> Result<PerCpuArray<&MapData, Counters>, AttachError> {
        PerCpuArray::try_from(map(&self.ebpf, names::COUNTERS)?).map_err(|e| AttachError::Map(error_chain(&e)))
    }

    /// Gives `ifindex` a slot and publishes it to the hooks, which ignore
    /// interfaces without one. Keeps the slot (and the counters) of an
    /// interface attached before. A new slot's counters are zero: the array
    /// starts zeroed and slots are never reused.
    fn enable(&mut self, ifindex: u32) -> Result<(), AttachError> {
        if self.slots.contains_key(&ifindex) || self.hook_only {
            return Ok(());
        }
        let slot = self.slots.len() as u32 + 1;
        if slot >= MAX_SLOTS {
            return Err(AttachError::Map(format!(
                "one capture can hook at most {} interfaces; start another cnet for more",
                MAX_SLOTS - 1
            )));
        }
        let map_err = |e: aya::maps::MapError| AttachError::Map(error_chain(&e));
        if ifindex < IFINDEX_TABLE {
            let mut table: Array<_, u32> = Array::try_from(map_mut(&mut self.ebpf, names::SLOTS)?).map_err(map_err)?;
            table.set(ifindex, slot, 0).map_err(map_err)?;
        } else {
            let mut table: BpfHashMap<_, u32, u32> =
                BpfHashMap::try_from(map_mut(&mut self.ebpf, names::SLOTS_HIGH)?).map_err(map_err)?;
            table.insert(ifindex, slot, 0).map_err(map_err)?;
        }
        self.slots.insert(ifindex, slot);
        Ok(())
    }

    /// Hooks both directions of `ep`. Idempotent per interface.
    pub fn attach(&mut self, ep: &Endpoint) -> Result<(), AttachError> {
        if self.hooked.contains_key(&ep.ifindex) {
            return Ok(());
        }
        // Give the interface its slot first: the programs ignore interfaces
        // without one, so no packet is counted half-attached.
        self.enable(ep.ifindex)?;
        let mut hooked = Hooked { ifname: ep.ifname.clone(), links: Vec::new() };
        let result = self.attach_hooks(ep, &mut hooked);
        // Record what did get attached even on error, so Drop detaches it.
        self.hooked.insert(ep.ifindex, hooked);
        if result.is_err() {
            let _ = self.detach(ep.ifindex);
        }
        result
    }

    fn attach_hooks(&mut self, ep: &Endpoint, hooked: &mut Hooked) -> Result<(), AttachError> {
        let mode = self.mode_name();
        let fail = |hook: Hook, reason: String| AttachError::Attach {
            ifname: ep.ifname.clone(),
            hook: hook_str(hook),
            mode,
            reason,
        };
        if self.tcx {
            remove_clsact_leftovers(ep);
        } else {
            let mut nl = Netlink::open().map_err(|e| fail(Hook::Ingress, e.to_string()))?;
            let removed = remove_stale_filters(&mut nl, ep)
                .map_err(|e| fail(Hook::Ingress, format!("removing stale filters: {e}")))?;
            let has = nl.has_clsact(ep.ifindex).map_err(|e| fail(Hook::Ingress, e.to_string()))?;
            if !has {
                tc::qdisc_add_clsact(&ep.ifname).map_err(|e| fail(Hook::Ingress, error_chain(&e)))?;
                ClsactMarker::of(ep.ifindex).create(self.run_as);
            } else if removed > 0 && clsact_is_empty(&mut nl, ep.ifindex) {
                // A killed cnet most likely added this qdisc before the
                // marker existed; adopt it so it is removed when we are done.
                ClsactMarker::of(ep.ifindex).create(self.run_as);
            }
        }
        for hook in Hook::ALL {
            let prog = classifier(&mut self.ebpf, prog_name(hook))?;
            let attach_type = match hook {
                Hook::Ingress => TcAttachType::Ingress,
                Hook::Egress => TcAttachType::Egress,
            };
            let options = if self.tcx {
                TcAttachOptions::TcxOrder(LinkOrder::last())
            } else {
                // The filter handle carries our PID so a later cnet can tell
                // our filters from those of a cnet that was killed.
                TcAttachOptions::Netlink(NlOptions {
                    priority: 0,
                    handle: TcHandle::from(std::process::id()),
                    classid: None,
                })
            };
            let id =
                prog.attach_with_options(&ep.ifname, attach_type, options).map_err(|e| fail(hook, error_chain(&e)))?;
            hooked.links.push((hook, id));
        }
        Ok(())
    }

    /// Detaches both programs from `ifindex`.
    pub fn detach(&mut self, ifindex: u32) -> Result<(), AttachError> {
        let Some(hooked) = self.hooked.remove(&ifindex) else { return Ok(()) };
        let mut first_err = None;
        for (hook, id) in hooked.links {
            let detached = classifier(&mut self.ebpf, prog_name(hook))
                .and_then(|prog| prog.detach(id).map_err(|e| AttachError::Map(error_chain(&e))));
            if let Err(e) = detached {
                // The interface may be gone already (container stopped),
                // which took the hook with it.
                if std::path::Path::new("/sys/class/net").join(&hooked.ifname).exists() {
                    first_err.get_or_insert(AttachError::Map(format!(
                        "detaching from {} ({}): {e}",
                        hooked.ifname,
                        hook_str(hook),
                    )));
                }
            }
        }
        // The last cnet to leave an interface removes the clsact qdisc that
        // a cnet added, whichever cnet that was.
        let marker = ClsactMarker::of(ifindex);
        if !self.tcx && marker.exists() && !link_exists(ifindex) {
            // The interface went away with its qdisc.
            marker.remove();
        } else if !self.tcx
            && marker.exists()
            && let Ok(mut nl) = Netlink::open()
            && clsact_is_empty(&mut nl, ifindex)
            && nl.delete_clsact(ifindex).is_ok()
        {
            marker.remove();
        }
        // The slot stays: the final statistics are read after detaching.
        first_err.map_or(Ok(()), Err)
    }

    /// Whether `ifindex` is hooked now.
    pub fn is_hooked(&self, ifindex: u32) -> bool {
        self.hooked.contains_key(&ifindex)
    }

    /// The interfaces hooked now, by ifindex.
    pub fn hooked(&self) -> Vec<u32> {
        self.hooked.keys().copied().collect()
    }

    /// Counters of every interface hooked so far, summed over CPUs.
    pub fn counters(&self) -> Result<HashMap<(u32, Hook), Counters>, AttachError> {
        let map = self.counters_map()?;
        let mut out = HashMap::new();
        for (&ifindex, &slot) in &self.slots {
            for hook in Hook::ALL {
                let values = map.get(&counter_index(slot, hook), 0).map_err(|e| AttachError::Map(error_chain(&e)))?;
                let mut sum = Counters::default();
                for v in values.iter() {
                    sum.add(v);
                }
                out.insert((ifindex, hook), sum);
            }
        }
        Ok(out)
    }

    pub fn detach_all(&mut self) -> Result<(), AttachError> {
        let ifindexes: Vec<u32> = self.hooked.keys().copied().collect();
        let mut first_err = None;
        for i in ifindexes {
            if let Err(e) = self.detach(i) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Hooks {
    fn drop(&mut self) {
        let _ = self.detach_all();
    }
}

fn matched_prog_name(hook: Hook) -> &'static str {
    match hook {
        Hook::Ingress => names::PROG_INGRESS_MATCHED,
        Hook::Egress => names::PROG_EGRESS_MATCHED,
    }
}

/// Loads the continuation programs and one instance of the filter per hook
/// (each tail-calls its own hook's continuation) into the program array.
fn install_filter(ebpf: &mut Ebpf, filter: &Filter) -> Result<Vec<OwnedFd>, AttachError> {
    let load_err = |e: &dyn std::error::Error| AttachError::Load(error_chain(e));
    let mut matched_fds = Vec::new();
    for hook in Hook::ALL {
        let name = matched_prog_name(hook);
        let prog = classifier(ebpf, name)?;
        prog.load().map_err(|e| load_err(&e))?;
        let fd = prog.fd().map_err(|e| load_err(&e))?.as_fd().try_clone_to_owned().map_err(|e| load_err(&e))?;
        matched_fds.push((hook, fd));
    }
    let progs = map(ebpf, names::PROGS)?;
    let aya::maps::Map::ProgramArray(progs) = progs else {
        return Err(AttachError::Load(format!("map {} is not a program array", names::PROGS)));
    };
    let progs_fd = progs.fd().as_fd();
    let mut filters = Vec::new();
    for (hook, matched) in &matched_fds {
        filter::set_program(progs_fd, prog_index::matched(*hook), matched.as_fd())
            .map_err(|e| AttachError::Map(format!("cannot install the filter continuation: {e}")))?;
        let name = match hook {
            Hook::Ingress => "cnet_filter_in",
            Hook::Egress => "cnet_filter_eg",
        };
        let fd =
            filter.load(name, progs_fd, prog_index::matched(*hook)).map_err(|e| AttachError::Load(e.to_string()))?;
        filter::set_program(progs_fd, prog_index::filter(*hook), fd.as_fd())
            .map_err(|e| AttachError::Map(format!("cannot install the filter: {e}")))?;
        filters.push(fd);
    }
    Ok(filters)
}

/// Whether neither clsact hook of the interface has a BPF filter left.
fn clsact_is_empty(nl: &mut Netlink, ifindex: u32) -> bool {
    [CLSACT_INGRESS, CLSACT_EGRESS].iter().all(|p| nl.bpf_filters(ifindex, *p).map(|f| f.is_empty()).unwrap_or(false))
}

/// Bytes that must wait in the ring before the kernel wakes the reader: an
/// eighth of the ring, at most 4 MiB, so a wakeup always has a batch to
/// read and the ring still has seven eighths free while the reader gets
/// scheduled. (A wakeup costs the reader tens of µs of switching on a VM:
/// with 1 MiB a 64-byte-frame flood woke it 75 times a second.)
fn wakeup_watermark(ring_bytes: u32) -> u32 {
    (ring_bytes / 8).min(4 << 20)
}

/// Removes cls_bpf filters named like cnet's programs whose owner (the PID
/// in the filter handle) is no longer a running cnet. Returns how many.
fn remove_stale_filters(nl: &mut Netlink, ep: &Endpoint) -> io::Result<usize> {
    let mut removed = 0;
    for parent in [CLSACT_INGRESS, CLSACT_EGRESS] {
        for f in nl.bpf_filters(ep.ifindex, parent)? {
            if f.name != names::PROG_INGRESS && f.name != names::PROG_EGRESS {
                continue;
            }
            if is_live_cnet(f.handle) {
                continue;
            }
            nl.delete_filter(ep.ifindex, parent, &f)?;
            removed += 1;
            log::warn!("removed a stale cnet filter from {} (left by PID {}, which is gone)", ep.ifname, f.handle);
        }
    }
    Ok(removed)
}

/// On a TCX run: removes the cls_bpf filters of killed cnet processes that
/// ran in clsact mode, and the clsact qdisc they leave empty, so switching
/// modes does not leave them on the interface for good. Failing to look is
/// only a warning: the TCX hooks do not depend on it.
fn remove_clsact_leftovers(ep: &Endpoint) {
    let result = Netlink::open().and_then(|mut nl| {
        let removed = remove_stale_filters(&mut nl, ep)?;
        // As on the clsact path, an empty clsact qdisc on which stale cnet
        // filters were found was most likely added by that cnet.
        if removed > 0 && nl.has_clsact(ep.ifindex)? && clsact_is_empty(&mut nl, ep.ifindex) {
            nl.delete_clsact(ep.ifindex)?;
            ClsactMarker::of(ep.ifindex).remove();
            log::warn!("removed the clsact qdisc that a killed cnet left on {}", ep.ifname);
        }
        Ok(())
    });
    if let Err(e) = result {
        log::warn!("cannot look for filters that a killed cnet left on {}: {e}", ep.ifname);
    }
}

/// A classifier of the object by name. The names come from cnet-common, and
/// a test checks that the embedded object defines each of them.
fn classifier<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut SchedClassifier, AttachError> {
    ebpf.program_mut(name)
        .ok_or_else(|| AttachError::Load(format!("program {name} missing from the eBPF object")))?
        .try_into()
        .map_err(|e| AttachError::Load(error_chain(&e)))
}

/// A map of the object by name (see [`classifier`]).
fn map<'a>(ebpf: &'a Ebpf, name: &str) -> Result<&'a aya::maps::Map, AttachError> {
    ebpf.map(name).ok_or_else(|| AttachError::Load(format!("map {name} missing from the eBPF object")))
}

fn map_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::maps::Map, AttachError> {
    ebpf.map_mut(name).ok_or_else(|| AttachError::Load(format!("map {name} missing from the eBPF object")))
}

fn is_live_cnet(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "cnet")
}

/// `Display` of an error and its sources on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        src = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use object::{Object, ObjectSection, ObjectSymbol};

    use super::*;

    /// The names userspace looks maps and programs up by (cnet-common) are
    /// the ones the eBPF crate defines: a map in the `maps` section, a
    /// program in a `classifier` section, each under its name.
    #[test]
    fn embedded_object_defines_every_shared_name() {
        let file = object::File::parse(EBPF_OBJECT).expect("the embedded eBPF object is an ELF file");
        let in_section = |name: &str, section: &str| {
            file.symbols().any(|s| {
                s.name() == Ok(name)
                    && s.section_index()
                        .and_then(|i| file.section_by_index(i).ok())
                        .is_some_and(|sec| sec.name().is_ok_and(|n| n.starts_with(section)))
            })
        };
        for map in names::MAPS {
            assert!(in_section(map, "maps"), "map {map} is not in the eBPF object");
        }
        for prog in names::PROGRAMS {
            assert!(in_section(prog, "classifier"), "program {prog} is not in the eBPF object");
        }
    }
}
