//! `cnet latency`: per-flow and per-hop latency from the packets the capture
//! pipeline collects.
//!
//! The engine is a [`Sink`] fed by the same collector as `cnet capture`:
//! [`parse`] reads the headers, [`flows`] measures handshakes,
//! request/response and DNS per vantage point, [`hops`] matches copies of
//! one packet on different hooks, [`stats`] keeps the distributions and
//! [`report`] / [`plot`] present them. With `-w` the packets are also
//! written as pcapng, each copy of one packet with the same `epb_packetid`.

pub mod flows;
pub mod hops;
pub mod parse;
pub mod plot;
pub mod report;
pub mod stats;

use std::io;
use std::net::IpAddr;

use crate::model::{Direction, Iface, IfaceStats, Packet};
use crate::pipeline::sinks::Sink;
use crate::pipeline::sinks::output::BlockFile;
use crate::pipeline::sinks::pcapng::PcapngSink;
use flows::{FlowTracker, Vantage};
use hops::HopMatcher;
use parse::Link;
use report::Report;

/// Default snap length: the largest IPv6 + TCP headers with options (and
/// the DNS header) fit; payload beyond is not needed.
pub const SNAPLEN: u32 = 128;

/// The analysis state, fed one packet at a time.
#[derive(Default)]
pub struct Engine {
    links: Vec<Link>,
    labels: Vec<String>,
    flows: FlowTracker,
    hops: HopMatcher,
    packets: u64,
}

impl Engine {
    pub fn add_interface(&mut self, iface: &Iface) {
        self.add_interface_with_link(iface, Link::of_interface(iface.endpoint.link_type));
    }

    /// [`Engine::add_interface`] for an interface whose packets start with
    /// `link` whatever its ARPHRD type says: an interface of a capture file,
    /// known by its LINKTYPE (Linux cooked captures included).
    pub fn add_interface_with_link(&mut self, iface: &Iface, link: Link) {
        let ep = &iface.endpoint;
        let id = iface.id as usize;
        if self.links.len() <= id {
            self.links.resize(id + 1, Link::Ethernet);
            self.labels.resize(id + 1, String::new());
        }
        self.links[id] = link;
        // Names from runtimes and namespaces reach the table, the JSON and
        // the plot: label values (quoted where needed), escaped.
        let label = crate::text::escape(&iface.short).into_owned();
        self.labels[id] = label.clone();
        let addrs: Vec<IpAddr> = ep.label.addrs.iter().filter_map(|a| a.split('/').next()?.parse().ok()).collect();
        let owner = if ep.peer_view { crate::text::owner_value(&ep.label.owner) } else { String::new() };
        self.flows.add_vantage(iface.id, Vantage { label, owner, addrs });
        self.hops.enabled = self.links.len() >= 2;
    }

    /// Analyses one packet; returns its packet id (shared by its copies).
    pub fn packet(&mut self, iface: &Iface, pkt: &Packet<'_>) -> u64 {
        let link = self.links.get(iface.id as usize).copied().unwrap_or(Link::Ethernet);
        let Some(h) = parse::parse(link, pkt.data, pkt.orig_len) else {
            // Not IP (ARP, …): an id of its own, no latency.
            return self.hops.new_id();
        };
        self.packets += 1;
        self.flows.packet(iface.id, pkt.ts_ns, &h);
        // The tc hook: for a veth's host end, what the owner sends (out)
        // arrives at ingress; for a plain interface, what comes in does.
        let ingress = (pkt.dir == Direction::Out) == iface.endpoint.peer_view;
        self.hops.packet((iface.id, pkt.dir), ingress, pkt.ts_ns, h.fingerprint, h.proto)
    }

    /// Analyses a packet whose direction is unknown (a file from tcpdump or
    /// dumpcap without direction flags): flows, but no hop, which needs to
    /// know where the packet entered and left the host. Returns its id.
    pub fn packet_without_direction(&mut self, iface: &Iface, pkt: &Packet<'_>) -> u64 {
        let link = self.links.get(iface.id as usize).copied().unwrap_or(Link::Ethernet);
        if let Some(h) = parse::parse(link, pkt.data, pkt.orig_len) {
            self.packets += 1;
            self.flows.packet(iface.id, pkt.ts_ns, &h);
        }
        self.hops.new_id()
    }

    pub fn finish(&mut self) {
        self.flows.finish();
        self.hops.finish();
    }

    pub fn report(&self) -> Report {
        let labels = &self.labels;
        Report::build(self.packets, &self.flows, &self.hops, |id, dir| {
            let name = labels.get(id as usize).map_or("?", String::as_str);
            format!("{name} {}", dir.as_str())
        })
    }
}

/// The latency sink: the engine, plus pcapng output with packet ids when
/// `-w` was given.
pub struct LatencySink {
    pub engine: Engine,
    pcap: Option<PcapngSink<BlockFile>>,
}

impl LatencySink {
    /// The engine, writing pcapng to `pcap` when given (an opened
    /// [`crate::pipeline::sinks::output`] stream).
    pub fn new(pcap: Option<BlockFile>, os: &str) -> io::Result<Self> {
        let pcap = pcap.map(|file| PcapngSink::new(file, os)).transpose()?;
        Ok(LatencySink { engine: Engine::default(), pcap })
    }
}

impl Sink for LatencySink {
    fn add_interface(&mut self, iface: &Iface) -> io::Result<()> {
        self.engine.add_interface(iface);
        match &mut self.pcap {
            Some(p) => p.add_interface(iface),
            None => Ok(()),
        }
    }

    fn packet(&mut self, iface: &Iface, pkt: &Packet<'_>) -> io::Result<()> {
        let id = self.engine.packet(iface, pkt);
        match &mut self.pcap {
            Some(p) => p.packet_with_id(iface, pkt, Some(id)),
            None => Ok(()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.pcap {
            Some(p) => p.flush(),
            None => Ok(()),
        }
    }

    fn finish(&mut self, stats: &[IfaceStats]) -> io::Result<()> {
        self.engine.finish();
        match &mut self.pcap {
            Some(p) => p.finish(stats),
            None => Ok(()),
        }
    }
}
