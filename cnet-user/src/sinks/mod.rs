//! Where captured packets go: a pcapng file or pipe, or a one-line-per-packet
//! printer. Each sink sees interfaces as they are added (so containers that
//! appear mid-capture get their own interface) and packets with their labels.

use std::io;

use cnet_common::{Counters, Hook};

use crate::resolve::Endpoint;
use crate::text;

pub mod pcapng;
pub mod print;
pub mod rotate;

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

pub trait Sink {
    fn add_interface(&mut self, iface: &Iface) -> io::Result<()>;
    fn packet(&mut self, iface: &Iface, pkt: &Packet<'_>) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()>;
    /// Writes trailing statistics and flushes. `stats[i]` belongs to the
    /// interface with id `i`.
    fn finish(&mut self, stats: &[IfaceStats]) -> io::Result<()>;
}

/// A borrowed sink is a sink: lets a caller hand the capture pipeline a sink
/// it still owns, and read its results once the capture is over.
impl<S: Sink + ?Sized> Sink for &mut S {
    fn add_interface(&mut self, iface: &Iface) -> io::Result<()> {
        (**self).add_interface(iface)
    }
    fn packet(&mut self, iface: &Iface, pkt: &Packet<'_>) -> io::Result<()> {
        (**self).packet(iface, pkt)
    }
    fn flush(&mut self) -> io::Result<()> {
        (**self).flush()
    }
    fn finish(&mut self, stats: &[IfaceStats]) -> io::Result<()> {
        (**self).finish(stats)
    }
}
