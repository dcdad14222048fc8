//! Target resolution: turns what the user named (an interface, a network
//! namespace, a PID; containers through [`crate::runtime`]) into the host-side interfaces to hook
//! and the labels their packets carry.
//!
//! For a namespace the host end of each veth is found the way one would by
//! hand: the container-side veth's IFLA_LINK is the ifindex of its peer in
//! the host namespace (`eth0@ifN`), and the host-side veth must point back.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::netlink::{Addr, Link, Netlink};
use crate::netns;

/// What the user asked to capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A host interface by name (`-i`).
    Interface(String),
    /// A named netns (`ip netns`) or a path to an nsfs file (`--netns`).
    Netns(String),
    /// The network namespace of a process (`--pid`).
    Pid(u32),
    /// A container by name, id or id prefix, optionally qualified
    /// (`docker:web`, `containerd:NS/ID`) or a glob (`--container`).
    Container(String),
    /// Every container of every runtime found (`--all`).
    AllContainers,
    /// The containers of a Kubernetes pod, `NAMESPACE/NAME` (`--pod`).
    Pod(String),
    /// Restricts container targets to this container-side interface
    /// (`--iface`); selects nothing by itself.
    ContainerIface(String),
}

impl Target {
    /// Container targets are resolved, and followed, by
    /// [`crate::runtime::watch`] rather than by [`resolve_all`].
    pub fn is_container(&self) -> bool {
        matches!(self, Target::Container(_) | Target::AllContainers | Target::Pod(_) | Target::ContainerIface(_))
    }
}

/// Change to the set of hooked interfaces while a capture runs.
#[derive(Clone, Debug)]
pub enum EndpointEvent {
    /// A followed container started, restarted or got a new network.
    Add(Endpoint),
    /// Its interface went away (container stopped or disconnected).
    Remove(Endpoint),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Interface(i) => write!(f, "interface {i}"),
            Target::Netns(n) => write!(f, "netns {n}"),
            Target::Pid(p) => write!(f, "pid {p}"),
            Target::Container(c) => write!(f, "container {c}"),
            Target::AllContainers => write!(f, "all containers"),
            Target::Pod(p) => write!(f, "pod {p}"),
            Target::ContainerIface(i) => write!(f, "container interface {i}"),
        }
    }
}

/// Who a captured interface belongs to; becomes the IDB description and the
/// per-packet comment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Label {
    /// Short name of the owner: `netns:blue`, `pid:1234`, or empty for a
    /// plain host interface.
    pub owner: String,
    /// Interface name on the owner's side (`eth0`); the host name for `-i`.
    pub iface: String,
    /// Inode of the owner's network namespace (0 for host interfaces).
    pub netns_inode: u64,
    /// Addresses on the owner's side of the link.
    pub addrs: Vec<String>,
    /// `key=value` pairs placed before `iface=… dir=…` in packet comments.
    pub comment_fields: Vec<(String, String)>,
    /// More about the owner for the interface description (a container's
    /// short id and image); empty for namespaces and PIDs.
    pub details: String,
}

/// A host interface to hook, with its label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub ifindex: u32,
    /// Host-side interface name (pcapng `if_name`).
    pub ifname: String,
    /// ARPHRD_* type of the host interface (decides the pcapng link type).
    pub link_type: u16,
    /// True when the interface is the host end of a namespace's veth: its
    /// ingress is then the owner's outbound traffic.
    pub peer_view: bool,
    pub label: Label,
}

impl Endpoint {
    /// pcapng `if_description`. The owner's name and the interface name are
    /// label values (quoted where needed, see [`crate::text`]), so that
    /// readers find where they end whatever the names contain.
    pub fn description(&self) -> String {
        if !self.peer_view {
            return format!("host interface {}", self.ifname);
        }
        let mut s = crate::text::owner_label(&self.label.owner, &self.label.iface);
        if !self.label.addrs.is_empty() {
            s.push_str(&format!(" [{}]", self.label.addrs.join(", ")));
        }
        if self.label.details.is_empty() {
            s.push_str(&format!(" (netns inode {})", self.label.netns_inode));
        } else {
            s.push_str(&format!(" ({}, netns inode {})", self.label.details, self.label.netns_inode));
        }
        s
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no interface named {0:?} in cnet's network namespace (list them with `ip link`)")]
    NoSuchInterface(String),
    #[error(
        "no network namespace named {name:?}: {path} does not exist (list them with `ip netns list`, or pass a path such as /proc/PID/ns/net)"
    )]
    NoSuchNetns { name: String, path: String },
    #[error("no process with PID {0} (is it still running?)")]
    NoSuchPid(u32),
    #[error("{what} is cnet's own network namespace (host network); capture its interfaces with -i IFACE instead")]
    HostNetns { what: String },
    #[error("{what} has no veth whose other end is in cnet's network namespace, so there is nothing to hook{detail}")]
    NoVeth { what: String, detail: String },
    #[error(
        "permission denied while {0}: cnet needs root (CAP_SYS_ADMIN to enter namespaces, CAP_NET_ADMIN and CAP_BPF to attach)"
    )]
    Permission(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ResolveError {
    let context = context.into();
    move |source| {
        if source.kind() == std::io::ErrorKind::PermissionDenied {
            ResolveError::Permission(context)
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
            Ok(vec![Endpoint {
                ifindex: link.index,
                ifname: link.name.clone(),
                link_type: link.link_type,
                peer_view: false,
                label: Label {
                    owner: String::new(),
                    iface: link.name.clone(),
                    netns_inode: 0,
                    addrs: Vec::new(),
                    comment_fields: Vec::new(),
                    details: String::new(),
                },
            }])
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
        // Resolved asynchronously by runtime::watch, which also follows them.
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
    let inode = netns::inode(path).map_err(io_err(format!("reading {}", path.display())))?;
    let own = netns::own_inode().map_err(io_err("reading /proc/self/ns/net"))?;
    if inode == own {
        return Err(ResolveError::HostNetns { what });
    }
    let (links, addrs): (Vec<Link>, Vec<Addr>) = netns::run_in(path, || -> std::io::Result<_> {
        let mut nl = Netlink::open()?;
        Ok((nl.links()?, nl.addresses()?))
    })
    .and_then(|r| r)
    .map_err(io_err(format!("reading the interfaces of {owner}")))?;

    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for l in links.iter().filter(|l| l.kind.as_deref() == Some("veth")) {
        let Some(peer) = l.peer_index else { continue };
        // The host-side veth must exist and point back at this interface.
        match host.by_index(peer) {
            Some(h) if h.kind.as_deref() == Some("veth") && h.peer_index == Some(l.index) => {
                let mut comment_fields = fields.clone();
                comment_fields.push(("netns".into(), inode.to_string()));
                out.push(Endpoint {
                    ifindex: h.index,
                    ifname: h.name.clone(),
                    link_type: h.link_type,
                    peer_view: true,
                    label: Label {
                        owner: owner.to_string(),
                        iface: l.name.clone(),
                        netns_inode: inode,
                        addrs: addrs
                            .iter()
                            .filter(|a| a.index == l.index)
                            .map(|a| format!("{}/{}", a.addr, a.prefix_len))
                            .collect(),
                        comment_fields,
                        details: String::new(),
                    },
                });
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
