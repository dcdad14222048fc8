//! Per-flow latency, measured separately at each hook interface (a
//! "vantage point"): what a container's own veth sees is what the container
//! experiences.
//!
//! - TCP handshake: SYN → SYN/ACK is the round trip towards the server,
//!   SYN/ACK → ACK the round trip towards the client. On the client's own
//!   veth only the first means something (the second is the client kernel's
//!   reaction time), on the server's only the second; elsewhere both.
//!   A retransmitted SYN or SYN/ACK gives no sample (Karn: which copy was
//!   answered is unknown).
//! - Request/response: from the last payload segment the client sent to the
//!   first payload segment of the server's answer, once per exchange
//!   (server think time + network).
//! - DNS over UDP port 53: query → answer with the same id.
//! - Retransmissions (segments whose data was seen before) and resets.
//!
//! Flows are grouped by owner pair and server port: the owners are the
//! labels of the captured namespaces or containers that hold the addresses,
//! or the addresses themselves.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::parse::{Headers, Proto, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, Transport};
use super::stats::Latencies;

/// Closed connections are kept this long so their last ACKs do not look
/// like new connections.
const CLOSED_LINGER_NS: u64 = 10_000_000_000;
/// Idle connections are forgotten after this long.
const IDLE_NS: u64 = 300_000_000_000;
/// A DNS query without an answer after this long is counted unanswered.
const DNS_TIMEOUT_NS: u64 = 10_000_000_000;
/// How often (in packet time) expired state is swept.
const SWEEP_NS: u64 = 1_000_000_000;

/// What is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// SYN → SYN/ACK: round trip towards the server.
    TcpSynToSynack,
    /// SYN/ACK → ACK: round trip towards the client.
    TcpSynackToAck,
    /// Last request segment → first response segment.
    TcpRequestResponse,
    /// DNS query → answer with the same id.
    DnsQueryAnswer,
    /// A flow group with retransmissions or resets but no latency sample.
    NoLatency,
}

impl Metric {
    pub fn label(self) -> &'static str {
        match self {
            Metric::TcpSynToSynack => "SYN→SYN/ACK",
            Metric::TcpSynackToAck => "SYN/ACK→ACK",
            Metric::TcpRequestResponse => "request→response",
            Metric::DnsQueryAnswer => "DNS query→answer",
            Metric::NoLatency => "-",
        }
    }
}

/// Who is who in a flow group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FlowGroupKey {
    pub proto: Proto,
    pub client: String,
    pub server: String,
    pub server_port: u16,
    /// "client", "server", or the label of the interface the measurement
    /// was taken on when it belongs to neither.
    pub seen_at: String,
}

#[derive(Default)]
pub struct GroupFigures {
    pub syn_to_synack: Latencies,
    pub synack_to_ack: Latencies,
    pub request_response: Latencies,
    pub dns: Latencies,
    pub connections: u64,
    pub retransmissions: u64,
    pub resets: u64,
    pub dns_unanswered: u64,
}

pub struct FlowGroup {
    pub key: FlowGroupKey,
    pub figures: GroupFigures,
}

/// What the tracker knows about a captured interface.
pub struct Vantage {
    /// Label for people: `netns:blue eth0`.
    pub label: String,
    /// Owner of the interface's addresses (`netns:blue`), empty for host
    /// interfaces.
    pub owner: String,
    pub addrs: Vec<IpAddr>,
}

/// Both ends of a connection, in a fixed order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ConnKey {
    lo: (IpAddr, u16),
    hi: (IpAddr, u16),
}

impl ConnKey {
    fn new(a: (IpAddr, u16), b: (IpAddr, u16)) -> ConnKey {
        if a <= b { ConnKey { lo: a, hi: b } } else { ConnKey { lo: b, hi: a } }
    }
}

struct TcpConn {
    client: (IpAddr, u16),
    group: usize,
    syn_seq: Option<u32>,
    syn_ts: Option<u64>,
    syn_retransmitted: bool,
    synack_ts: Option<u64>,
    synack_seq: u32,
    synack_retransmitted: bool,
    handshake_done: bool,
    /// Next expected sequence number per direction (0: from the client).
    next_seq: [Option<u32>; 2],
    /// Time of the last request segment not yet answered.
    request_end: Option<u64>,
    last_seen: u64,
    closed_at: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct DnsKey {
    vantage: u32,
    client: (IpAddr, u16),
    server: IpAddr,
    id: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct GroupCacheKey {
    vantage: u32,
    proto: Proto,
    client: IpAddr,
    server: IpAddr,
    server_port: u16,
}

#[derive(Default)]
pub struct FlowTracker {
    pub vantages: Vec<Vantage>,
    conns: HashMap<(u32, ConnKey), TcpConn>,
    dns: HashMap<DnsKey, (u64, usize)>,
    pub groups: Vec<FlowGroup>,
    group_index: HashMap<GroupCacheKey, usize>,
    by_key: HashMap<FlowGroupKey, usize>,
    owners: HashMap<IpAddr, String>,
    last_sweep: u64,
}

impl FlowTracker {
    pub fn add_vantage(&mut self, id: u32, v: Vantage) {
        if !v.owner.is_empty() {
            for a in &v.addrs {
                self.owners.entry(*a).or_insert_with(|| v.owner.clone());
            }
        }
        let id = id as usize;
        while self.vantages.len() <= id {
            self.vantages.push(Vantage { label: String::new(), owner: String::new(), addrs: Vec::new() });
        }
        self.vantages[id] = v;
    }

    pub fn packet(&mut self, vantage: u32, ts: u64, h: &Headers) {
        if vantage as usize >= self.vantages.len() {
            return;
        }
        if ts.saturating_sub(self.last_sweep) >= SWEEP_NS {
            self.sweep(ts);
            self.last_sweep = ts;
        }
        match h.transport {
            Transport::Tcp(tcp) => self.tcp(vantage, ts, h, tcp),
            Transport::Udp { dns: Some((id, is_answer)) } => self.dns(vantage, ts, h, id, is_answer),
            _ => {}
        }
    }

    fn tcp(&mut self, vantage: u32, ts: u64, h: &Headers, tcp: super::parse::Tcp) {
        let src = (h.src, h.sport);
        let dst = (h.dst, h.dport);
        let key = (vantage, ConnKey::new(src, dst));
        let syn = tcp.flags & TCP_SYN != 0;
        let ack = tcp.flags & TCP_ACK != 0;
        let rst = tcp.flags & TCP_RST != 0;
        let fin = tcp.flags & TCP_FIN != 0;

        if syn && !ack {
            let fresh = match self.conns.get(&key) {
                // The same SYN again: a retransmission, handled below.
                Some(c) => !(c.client == src && c.syn_seq == Some(tcp.seq)),
                None => true,
            };
            if fresh {
                let group = self.group(vantage, Proto::Tcp, h.src, h.dst, h.dport);
                self.groups[group].figures.connections += 1;
                self.conns.insert(key, TcpConn::new(src, group));
            }
        } else if !self.conns.contains_key(&key) {
            // Joined mid-stream. Only data starts tracking: a lone ACK,
            // FIN or RST is usually the tail of a connection already
            // forgotten. The server is guessed as the lower port.
            if tcp.payload_len == 0 {
                return;
            }
            let (client, server) = if h.sport > h.dport { (src, dst) } else { (dst, src) };
            let group = self.group(vantage, Proto::Tcp, client.0, server.0, server.1);
            self.groups[group].figures.connections += 1;
            self.conns.insert(key, TcpConn::new(client, group));
        }
        let Some(c) = self.conns.get_mut(&key) else { return };
        let fig = &mut self.groups[c.group].figures;
        c.last_seen = ts;
        let from_client = src == c.client;
        let dir = if from_client { 0 } else { 1 };

        // Retransmission: a segment whose sequence space was all seen before.
        let seg_len = tcp.payload_len.wrapping_add(syn as u32).wrapping_add(fin as u32);
        let mut retransmission = false;
        if seg_len > 0 && !rst {
            let end = tcp.seq.wrapping_add(seg_len);
            match c.next_seq[dir] {
                Some(next) if (end.wrapping_sub(next) as i32) <= 0 => retransmission = true,
                Some(next) if (tcp.seq.wrapping_sub(next) as i32) < 0 => {
                    // Partly new: a repacketised retransmission.
                    retransmission = true;
                    c.next_seq[dir] = Some(end);
                }
                _ => c.next_seq[dir] = Some(end),
            }
        }
        if retransmission {
            fig.retransmissions += 1;
        }
        if rst {
            fig.resets += 1;
            c.closed_at.get_or_insert(ts);
            c.request_end = None;
            return;
        }
        if fin {
            c.closed_at.get_or_insert(ts);
        }

        let v = &self.vantages[vantage as usize];
        let at_client = v.addrs.contains(&c.client.0);
        let at_server = !at_client && v.addrs.contains(&if from_client { h.dst } else { h.src });

        if syn && !ack && from_client {
            if retransmission {
                c.syn_retransmitted = true;
            } else {
                c.syn_seq = Some(tcp.seq);
                c.syn_ts = Some(ts);
            }
        } else if syn && ack && !from_client {
            if c.synack_ts.is_some() {
                c.synack_retransmitted = true;
            } else {
                c.synack_ts = Some(ts);
                c.synack_seq = tcp.seq;
                if let (Some(t0), false, false) = (c.syn_ts, c.syn_retransmitted, at_server) {
                    fig.syn_to_synack.record(ts.saturating_sub(t0));
                }
            }
        } else if ack
            && from_client
            && !c.handshake_done
            && let Some(t0) = c.synack_ts
            && tcp.ack == c.synack_seq.wrapping_add(1)
        {
            c.handshake_done = true;
            if !c.synack_retransmitted && !at_client {
                fig.synack_to_ack.record(ts.saturating_sub(t0));
            }
        }

        if tcp.payload_len > 0 && !retransmission {
            if from_client {
                c.request_end = Some(ts);
            } else if let Some(t0) = c.request_end.take() {
                fig.request_response.record(ts.saturating_sub(t0));
            }
        }
    }

    fn dns(&mut self, vantage: u32, ts: u64, h: &Headers, id: u16, is_answer: bool) {
        if !is_answer && h.dport == 53 {
            let key = DnsKey { vantage, client: (h.src, h.sport), server: h.dst, id };
            if let Some(&(_, g)) = self.dns.get(&key) {
                self.groups[g].figures.retransmissions += 1;
                return;
            }
            let g = self.group(vantage, Proto::Udp, h.src, h.dst, 53);
            self.dns.insert(key, (ts, g));
        } else if is_answer && h.sport == 53 {
            let key = DnsKey { vantage, client: (h.dst, h.dport), server: h.src, id };
            if let Some((t0, g)) = self.dns.remove(&key) {
                self.groups[g].figures.dns.record(ts.saturating_sub(t0));
            }
        }
    }

    /// The group of a flow seen at `vantage` (cached: names are only built
    /// the first time).
    fn group(&mut self, vantage: u32, proto: Proto, client: IpAddr, server: IpAddr, server_port: u16) -> usize {
        let cache = GroupCacheKey { vantage, proto, client, server, server_port };
        if let Some(&g) = self.group_index.get(&cache) {
            return g;
        }
        let owner = |ip: &IpAddr| self.owners.get(ip).cloned().unwrap_or_else(|| ip.to_string());
        let v = &self.vantages[vantage as usize];
        let seen_at = if v.addrs.contains(&client) {
            "client".to_string()
        } else if v.addrs.contains(&server) {
            "server".to_string()
        } else {
            v.label.clone()
        };
        let key = FlowGroupKey { proto, client: owner(&client), server: owner(&server), server_port, seen_at };
        let groups = &mut self.groups;
        let g = *self.by_key.entry(key.clone()).or_insert_with(|| {
            groups.push(FlowGroup { key, figures: GroupFigures::default() });
            groups.len() - 1
        });
        self.group_index.insert(cache, g);
        g
    }

    fn sweep(&mut self, now: u64) {
        self.conns.retain(|_, c| match c.closed_at {
            Some(t) => now.saturating_sub(t) < CLOSED_LINGER_NS,
            None => now.saturating_sub(c.last_seen) < IDLE_NS,
        });
        let groups = &mut self.groups;
        self.dns.retain(|_, (t, g)| {
            let keep = now.saturating_sub(*t) < DNS_TIMEOUT_NS;
            if !keep {
                groups[*g].figures.dns_unanswered += 1;
            }
            keep
        });
    }

    /// End of capture: queries still waiting are unanswered.
    pub fn finish(&mut self) {
        for (_, (_, g)) in self.dns.drain() {
            self.groups[g].figures.dns_unanswered += 1;
        }
        self.conns.clear();
    }
}

impl TcpConn {
    fn new(client: (IpAddr, u16), group: usize) -> TcpConn {
        TcpConn {
            client,
            group,
            syn_seq: None,
            syn_ts: None,
            syn_retransmitted: false,
            synack_ts: None,
            synack_seq: 0,
            synack_retransmitted: false,
            handshake_done: false,
            next_seq: [None, None],
            request_end: None,
            last_seen: 0,
            closed_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::parse::{Tcp, Transport};
    use std::net::Ipv4Addr;

    const C: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const S: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    fn seg(from_client: bool, seq: u32, ack: u32, flags: u8, len: u32) -> Headers {
        let (src, dst, sport, dport) = if from_client { (C, S, 40000, 80) } else { (S, C, 80, 40000) };
        Headers {
            src,
            dst,
            sport,
            dport,
            proto: Proto::Tcp,
            transport: Transport::Tcp(Tcp { seq, ack, flags, payload_len: len }),
            fingerprint: 0,
        }
    }

    fn tracker(addrs: Vec<IpAddr>) -> FlowTracker {
        let mut t = FlowTracker::default();
        t.add_vantage(0, Vantage { label: "netns:c eth0".into(), owner: "netns:c".into(), addrs });
        t
    }

    fn run(t: &mut FlowTracker) {
        let ms = 1_000_000;
        t.packet(0, 0, &seg(true, 100, 0, TCP_SYN, 0));
        t.packet(0, 2 * ms, &seg(false, 500, 101, TCP_SYN | TCP_ACK, 0));
        t.packet(0, 3 * ms, &seg(true, 101, 501, TCP_ACK, 0));
        for i in 0..3u32 {
            let t0 = 10 * ms + i as u64 * 100 * ms;
            t.packet(0, t0, &seg(true, 101 + i * 10, 501 + i * 20, TCP_ACK, 10));
            // The response after 20 ms, in two segments.
            t.packet(0, t0 + 20 * ms, &seg(false, 501 + i * 20, 111 + i * 10, TCP_ACK, 10));
            t.packet(0, t0 + 21 * ms, &seg(false, 511 + i * 20, 111 + i * 10, TCP_ACK, 10));
        }
        // A retransmitted response segment and a reset.
        t.packet(0, 400 * ms, &seg(false, 551, 131, TCP_ACK, 10));
        t.packet(0, 401 * ms, &seg(true, 131, 0, TCP_RST, 0));
    }

    #[test]
    fn client_side_handshake_request_response_retransmission_reset() {
        let mut t = tracker(vec![C]);
        run(&mut t);
        assert_eq!(t.groups.len(), 1);
        let g = &t.groups[0];
        assert_eq!(g.key.seen_at, "client");
        assert_eq!(g.key.client, "netns:c");
        assert_eq!(g.key.server, "10.0.0.2");
        assert_eq!(g.key.server_port, 80);
        let f = &g.figures;
        assert_eq!(f.syn_to_synack.summary().max_ns, 2_000_000);
        assert!(f.synack_to_ack.is_empty());
        let rr = f.request_response.summary();
        assert_eq!((rr.count, rr.min_ns, rr.max_ns), (3, 20_000_000, 20_000_000));
        assert_eq!((f.connections, f.retransmissions, f.resets), (1, 1, 1));
    }

    #[test]
    fn server_side_measures_synack_to_ack() {
        let mut t = tracker(vec![S]);
        run(&mut t);
        let f = &t.groups[0].figures;
        assert_eq!(t.groups[0].key.seen_at, "server");
        assert!(f.syn_to_synack.is_empty());
        assert_eq!(f.synack_to_ack.summary().max_ns, 1_000_000);
    }

    #[test]
    fn dns_answer_matches_query_id() {
        let mut t = tracker(vec![C]);
        let q = |id, answer: bool| Headers {
            src: if answer { S } else { C },
            dst: if answer { C } else { S },
            sport: if answer { 53 } else { 5353 },
            dport: if answer { 5353 } else { 53 },
            proto: Proto::Udp,
            transport: Transport::Udp { dns: Some((id, answer)) },
            fingerprint: 0,
        };
        t.packet(0, 1_000, &q(7, false));
        t.packet(0, 2_000, &q(8, false));
        t.packet(0, 5_000, &q(8, true));
        t.packet(0, 9_000, &q(9, true)); // unsolicited: ignored
        t.finish();
        let f = &t.groups[0].figures;
        let s = f.dns.summary();
        assert_eq!((s.count, s.min_ns), (1, 3_000));
        assert_eq!(f.dns_unanswered, 1);
    }
}
