//! Target resolution: turns what the user named (an interface, a network
//! namespace, a PID) into the host-side interfaces to hook and the labels
//! their packets carry. Containers are selected by name or glob
//! ([`select`]), resolved through the runtimes ([`containers`]) and
//! followed as they start, restart and stop ([`watch`]).
//!
//! For a namespace the host end of each veth is found the way one would by
//! hand: the container-side veth's IFLA_LINK is the ifindex of its peer in
//! the host namespace (`eth0@ifN`), and the host-side veth must point back.

use std::path::{Path, PathBuf};

use crate::platform::netlink::{Addr, Link, Netlink};
use crate::platform::netns;

use crate::model::{Endpoint, Target};

pub mod any;
pub mod containers;
pub mod select;
pub mod watch;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no interface named {0:?} in cnet's network namespace (list them with `ip link`)")]
    NoSuchInterface(String),
    #[error(
        "no network namespace named {name:?}: {path} does not exist (list them with `ip netns list`, or pass a path such as /proc/PID/ns/net)"
    )]
    NoSuchNetns { name: String, path: String },
    #[error(
        "-i any found no veth whose other end is in another network namespace: nothing to capture (`tcpdump -i any` captures the host's own interfaces)"
    )]
    NoAny,
    #[error("no process with PID {0} (is it still running?)")]
    NoSuchPid(u32),
    #[error("{what} is cnet's own network namespace (host network); capture its interfaces with -i IFACE instead")]
    HostNetns { what: String },
    #[error("{what} has no veth whose other end is in cnet's network namespace, so there is nothing to hook{detail}")]
    NoVeth { what: String, detail: String },
    /// The context, then what is missing (see `privileges::namespace_needs`).
    #[error("permission denied while {0}")]
    Permission(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ResolveError {
    let context = context.into();
    move |source| {
        if source.kind() == std::io::ErrorKind::PermissionDenied {
            ResolveError::Permission(format!("{context}: run cnet as root"))
        } else {
            ResolveError::Io { context, source }
        }
    }
}

/// Like [`io_err`] for opening or entering the namespace at `path`: a
/// refusal names the capabilities cnet lacks for it.
fn ns_err(context: impl Into<String>, path: &Path) -> impl FnOnce(std::io::Error) -> ResolveError {
    let (context, path) = (context.into(), path.to_owned());
    move |source| {
        if source.kind() == std::io::ErrorKind::PermissionDenied {
            ResolveError::Permission(format!("{context}: {}", crate::platform::privileges::namespace_needs(&path)))
        } else {
            ResolveError::Io { context, source }
        }
    }
}

/// The host namespace's links, read once per resolution.
pub struct HostLinks {
    links: Vec<Link>,
}

impl HostLinks {
    pub fn read() -> Result<Self, ResolveError> {
        let links = Netlink::open()
            .and_then(|mut nl| nl.links())
            .map_err(io_err("reading the host's interfaces over netlink"))?;
        Ok(HostLinks { links })
    }

    pub fn by_name(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    pub fn links(&self) -> &[Link] {
        &self.links
    }

    pub fn by_index(&self, index: u32) -> Option<&Link> {
        self.links.iter().find(|l| l.index == index)
    }
}

/// Resolves every target but container targets (see
/// [`Target::is_container`]); the result has no duplicate interfaces.
pub fn resolve_all(targets: &[Target]) -> Result<Vec<Endpoint>, ResolveError> {
    let host = HostLinks::read()?;
    let mut out: Vec<Endpoint> = Vec::new();
    for t in targets.iter().filter(|t| !t.is_container()) {
        for ep in resolve(t, &host)? {
            if !out.iter().any(|e| e.ifindex == ep.ifindex) {
                out.push(ep);
            }
        }
    }
    Ok(out)
}

pub fn resolve(target: &Target, host: &HostLinks) -> Result<Vec<Endpoint>, ResolveError> {
    match target {
        Target::Interface(name) => {
            let link = host.by_name(name).ok_or_else(|| ResolveError::NoSuchInterface(name.clone()))?;
            Ok(vec![Endpoint::host_interface(link.index, &link.name, link.link_type)])
        }
        Target::Netns(name) => {
            let path = netns_path(name);
            if !path.exists() {
                return Err(ResolveError::NoSuchNetns { name: name.clone(), path: path.display().to_string() });
            }
            let owner = if name.contains('/') { format!("netns:{}", path.display()) } else { format!("netns:{name}") };
            let ns_label = name.clone();
            resolve_netns(&path, &owner, vec![("ns".into(), ns_label)], host)
        }
        Target::Pid(pid) => {
            let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return Err(ResolveError::NoSuchPid(*pid));
            }
            resolve_netns(&path, &format!("pid:{pid}"), vec![("pid".into(), pid.to_string())], host)
        }
        // Resolved asynchronously by the watcher, which also follows them.
        Target::Container(_) | Target::AllContainers | Target::Pod(_) | Target::ContainerIface(_) => Ok(Vec::new()),
    }
}

/// `NAME` → `/var/run/netns/NAME`; anything with a `/` is taken as a path.
pub fn netns_path(name: &str) -> PathBuf {
    if name.contains('/') { PathBuf::from(name) } else { Path::new("/var/run/netns").join(name) }
}

/// Finds the host ends of the veths inside the namespace at `path`.
pub fn resolve_netns(
    path: &Path,
    owner: &str,
    fields: Vec<(String, String)>,
    host: &HostLinks,
) -> Result<Vec<Endpoint>, ResolveError> {
    let what = owner.to_string();
    let inode = netns::inode(path).map_err(ns_err(format!("reading {}", path.display()), path))?;
    let own = netns::own_inode().map_err(io_err("reading /proc/self/ns/net"))?;
    if inode == own {
        return Err(ResolveError::HostNetns { what });
    }
    let (links, addrs): (Vec<Link>, Vec<Addr>) = netns::run_in(path, || -> std::io::Result<_> {
        let mut nl = Netlink::open()?;
        Ok((nl.links()?, nl.addresses()?))
    })
    .and_then(|r| r)
    .map_err(ns_err(format!("reading the interfaces of {owner}"), path))?;

    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for l in links.iter().filter(|l| l.kind.as_deref() == Some("veth")) {
        let Some(peer) = l.peer_index else { continue };
        // The host-side veth must exist and point back at this interface.
        match host.by_index(peer) {
            Some(h) if h.kind.as_deref() == Some("veth") && h.peer_index == Some(l.index) => {
                let mut comment_fields = fields.clone();
                comment_fields.push(("netns".into(), inode.to_string()));
                let mut ep = Endpoint::veth_peer(h.index, &h.name, owner, &l.name, inode);
                ep.link_type = h.link_type;
                ep.label.addrs = addrs
                    .iter()
                    .filter(|a| a.index == l.index)
                    .map(|a| format!("{}/{}", a.addr, a.prefix_len))
                    .collect();
                ep.label.comment_fields = comment_fields;
                out.push(ep);
            }
            _ => skipped.push(format!("{} (peer ifindex {peer} is not a veth in cnet's namespace)", l.name)),
        }
    }
    if out.is_empty() {
        let detail = if skipped.is_empty() { String::new() } else { format!(": {}", skipped.join(", ")) };
        return Err(ResolveError::NoVeth { what, detail });
    }
    Ok(out)
}
