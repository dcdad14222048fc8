//! `-i any` and `-D`: every veth on this host whose other end is in another
//! network namespace, each with the target that names its owner.
//!
//! tcpdump's `-i any` on the host already covers the host's own interfaces;
//! what it cannot do is say whose traffic a veth carries. So cnet's `any`
//! is the other ends: containers (through every runtime that answers),
//! named namespaces (`ip netns`), the namespaces of other processes, and
//! last any veth whose peer namespace none of those reaches, as a plain
//! host interface. Owners are tried in that order and a veth goes to the
//! first that claims it, so each interface is captured once, under the most
//! telling name.

use std::collections::BTreeMap;

use crate::model::{Endpoint, Target};
use crate::pipeline::resolve::containers::resolve_container;
use crate::pipeline::resolve::{self, HostLinks, ResolveError};
use crate::platform::netns;
use crate::platform::runtime::{self, RuntimeError, RuntimeKind};

/// One owner of capturable veths: the target that captures it and what it
/// resolves to now.
#[derive(Clone, Debug)]
pub struct Owned {
    pub target: Target,
    pub endpoints: Vec<Endpoint>,
}

/// The interface name `-i` takes for "every veth of another namespace".
pub const ANY: &str = "any";

/// Every owner of a veth whose peer is in another namespace, in the order
/// described above; warnings for runtimes that are configured but do not
/// answer go to the log.
pub async fn owners() -> Result<Vec<Owned>, ResolveError> {
    let containers = running_containers().await;
    tokio::task::spawn_blocking(move || owners_blocking(containers))
        .await
        .map_err(|e| ResolveError::Io { context: "looking for veths".into(), source: std::io::Error::other(e) })?
}

/// Running containers of every runtime that answers. A runtime that the
/// environment points at but that does not answer is a warning, not an
/// error: the other owners can still be captured.
async fn running_containers() -> Vec<runtime::Container> {
    let mut out = Vec::new();
    for kind in RuntimeKind::ALL {
        let rt = match runtime::connect(kind).await {
            Ok(rt) => rt,
            Err(RuntimeError::Absent { .. }) if !configured(kind) => continue,
            Err(e) => {
                log::warn!("{e}; its containers are labeled by namespace or PID instead");
                continue;
            }
        };
        match rt.list().await {
            Ok(list) => out.extend(list.into_iter().filter(|c| c.pid.is_some())),
            Err(e) => log::warn!("{e}; its containers are labeled by namespace or PID instead"),
        }
    }
    out
}

/// True when the environment names this runtime's address, so that its
/// absence is worth a warning (a default socket that is not there is not).
pub fn configured(kind: RuntimeKind) -> bool {
    let var = match kind {
        RuntimeKind::Docker => "DOCKER_HOST",
        RuntimeKind::Podman => "CNET_PODMAN_SOCKET",
        RuntimeKind::Containerd => "CNET_CONTAINERD_SOCKET",
    };
    std::env::var_os(var).is_some_and(|v| !v.is_empty())
}

fn owners_blocking(containers: Vec<runtime::Container>) -> Result<Vec<Owned>, ResolveError> {
    let host = HostLinks::read()?;
    let mut out: Vec<Owned> = Vec::new();
    let taken = |eps: Vec<Endpoint>, out: &Vec<Owned>| -> Vec<Endpoint> {
        eps.into_iter().filter(|e| !out.iter().flat_map(|o| &o.endpoints).any(|o| o.ifindex == e.ifindex)).collect()
    };
    for c in &containers {
        if let Ok(eps) = resolve_container(c, &host) {
            let eps = taken(eps, &out);
            if !eps.is_empty() {
                out.push(Owned { target: Target::Container(c.qualified_name()), endpoints: eps });
            }
        }
    }
    let mut names: Vec<String> = std::fs::read_dir("/var/run/netns")
        .map(|d| d.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    names.sort();
    for name in names {
        let target = Target::Netns(name);
        if let Ok(eps) = resolve::resolve(&target, &host) {
            let eps = taken(eps, &out);
            if !eps.is_empty() {
                out.push(Owned { target, endpoints: eps });
            }
        }
    }
    // Namespaces nobody named: the lowest PID in each stands for it.
    let own = netns::own_inode().ok();
    let mut by_inode: BTreeMap<u64, u32> = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for pid in dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
            if let Ok(inode) = netns::inode(std::path::Path::new(&format!("/proc/{pid}/ns/net")))
                && Some(inode) != own
            {
                by_inode.entry(inode).and_modify(|p| *p = (*p).min(pid)).or_insert(pid);
            }
        }
    }
    let mut pids: Vec<u32> = by_inode.into_values().collect();
    pids.sort();
    for pid in pids {
        let target = Target::Pid(pid);
        if let Ok(eps) = resolve::resolve(&target, &host) {
            let eps = taken(eps, &out);
            if !eps.is_empty() {
                out.push(Owned { target, endpoints: eps });
            }
        }
    }
    // Veths whose peer is in a namespace no process holds open here (a
    // bind mount elsewhere, another user namespace): captured as they are.
    for l in host.links() {
        if l.kind.as_deref() == Some("veth") && l.peer_netnsid.is_some_and(|id| id >= 0) {
            let eps = taken(vec![Endpoint::host_interface(l.index, &l.name, l.link_type)], &out);
            if !eps.is_empty() {
                out.push(Owned { target: Target::Interface(l.name.clone()), endpoints: eps });
            }
        }
    }
    Ok(out)
}

/// Replaces `-i any` among `targets` by the owners of every veth whose
/// other end is in another namespace (see the module comment); other
/// targets stay as they are. An `any` that finds nothing is an error.
pub async fn expand(targets: Vec<Target>) -> Result<Vec<Target>, ResolveError> {
    if !targets.iter().any(|t| matches!(t, Target::Interface(n) if n == ANY)) {
        return Ok(targets);
    }
    let owners = owners().await?;
    if owners.is_empty() {
        return Err(ResolveError::NoAny);
    }
    let mut out = Vec::new();
    for t in targets {
        if matches!(&t, Target::Interface(n) if n == ANY) {
            for o in &owners {
                if !out.contains(&o.target) {
                    out.push(o.target.clone());
                }
            }
        } else if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}
