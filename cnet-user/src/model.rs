//! The shared vocabulary of the pipeline: what the user asked for
//! ([`Target`]), the interfaces that resolve to ([`Endpoint`] with its
//! [`Label`]), and what flows through the sinks ([`Iface`], [`Packet`],
//! [`Direction`], [`IfaceStats`]). Imports nothing from the crate but the
//! leaf [`crate::text`] (the label grammar), so every stage can use it.

use std::fmt;

use cnet_common::{Counters, Hook};

use crate::text;

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
    /// the runtime watcher rather than by `pipeline::resolve::resolve_all`.
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

/// ARPHRD_ETHER: the link type of veths and bridges.
pub const ARPHRD_ETHER: u16 = 1;

impl Endpoint {
    /// A host interface captured as itself (`-i`): no owner, directions as
    /// the interface sees them.
    pub fn host_interface(ifindex: u32, ifname: &str, link_type: u16) -> Endpoint {
        Endpoint {
            ifindex,
            ifname: ifname.to_string(),
            link_type,
            peer_view: false,
            label: Label { iface: ifname.to_string(), ..Label::default() },
        }
    }

    /// The host end (`ifindex`, `ifname`) of a veth whose other end is
    /// `iface` in `owner`'s network namespace (inode `netns_inode`);
    /// directions are the owner's. Addresses, comment fields and details
    /// start empty.
    pub fn veth_peer(ifindex: u32, ifname: &str, owner: &str, iface: &str, netns_inode: u64) -> Endpoint {
        Endpoint {
            ifindex,
            ifname: ifname.to_string(),
            link_type: ARPHRD_ETHER,
            peer_view: true,
            label: Label { owner: owner.to_string(), iface: iface.to_string(), netns_inode, ..Label::default() },
        }
    }

    /// pcapng `if_description`. The owner's name and the interface name are
    /// label values (quoted where needed, see [`crate::text`]), so that
    /// readers find where they end whatever the names contain.
    pub fn description(&self) -> String {
        if !self.peer_view {
            return format!("host interface {}", self.ifname);
        }
        let mut s = text::owner_label(&self.label.owner, &self.label.iface);
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

/// Direction relative to the capture target (the container or namespace
/// for a veth host end; the interface itself for `-i`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    /// Maps the tc hook a packet was seen on to the target's point of view.
    /// The host end of a veth receives what the container sends, so its
    /// ingress is the container's outbound traffic.
    pub fn from_hook(hook: Hook, peer_view: bool) -> Direction {
        match (hook, peer_view) {
            (Hook::Ingress, false) | (Hook::Egress, true) => Direction::In,
            (Hook::Egress, false) | (Hook::Ingress, true) => Direction::Out,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }

    /// pcapng `epb_flags` direction bits.
    pub fn epb_flags(self) -> u32 {
        match self {
            Direction::In => 0b01,
            Direction::Out => 0b10,
        }
    }
}

/// An interface being captured, as the sinks know it.
#[derive(Clone, Debug)]
pub struct Iface {
    /// pcapng interface id (order of addition).
    pub id: u32,
    pub endpoint: Endpoint,
    pub snaplen: u32,
    /// Per-packet comments, precomputed so the hot path does not format.
    pub comment_in: String,
    pub comment_out: String,
    /// Short label for printed lines: `netns:blue eth0` (names as label
    /// values, see [`text::owner_label`]; escaped when printed).
    pub short: String,
    /// The capture filter expression (pcapng `if_filter`), if any.
    pub filter: Option<String>,
}

impl Iface {
    pub fn new(id: u32, endpoint: Endpoint, snaplen: u32) -> Iface {
        // Values from runtimes and namespaces are quoted where needed
        // (crate::text), so no name can add or change a pair.
        let comment = |dir: Direction| {
            let fields = endpoint.label.comment_fields.iter().map(|(k, v)| (k.as_str(), v.as_str()));
            text::format_labels(fields.chain([("iface", endpoint.label.iface.as_str()), ("dir", dir.as_str())]))
        };
        let short = if endpoint.label.owner.is_empty() {
            endpoint.ifname.clone()
        } else {
            text::owner_label(&endpoint.label.owner, &endpoint.label.iface)
        };
        Iface {
            id,
            comment_in: comment(Direction::In),
            comment_out: comment(Direction::Out),
            short,
            endpoint,
            snaplen,
            filter: None,
        }
    }

    /// Records the capture filter expression the interface is captured with.
    pub fn with_filter(mut self, expression: Option<&str>) -> Iface {
        self.filter = expression.map(str::to_string);
        self
    }

    pub fn comment(&self, dir: Direction) -> &str {
        match dir {
            Direction::In => &self.comment_in,
            Direction::Out => &self.comment_out,
        }
    }
}

/// One captured packet.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    pub dir: Direction,
    pub orig_len: u32,
    pub data: &'a [u8],
}

/// Final statistics of one interface (both hooks).
#[derive(Clone, Debug, Default)]
pub struct IfaceStats {
    pub kernel: Counters,
    /// Packets written by the sink.
    pub delivered: u64,
    pub start_ns: u64,
    pub end_ns: u64,
}
