//! Per-hop latency: the same packet seen on two hooks cnet watches (A's host
//! veth ingress, then B's host veth egress after the bridge) gives the time
//! it spent between them.
//!
//! Copies are recognised by a fingerprint of the fields no bridge changes
//! (see [`super::parse::Headers::fingerprint`]) within a time window. A copy
//! matches only when exactly one earlier packet with that fingerprint is
//! waiting for a hook it has not been seen on yet: two candidates are
//! *ambiguous* and counted, never guessed; a packet nobody else saw is
//! *unmatched* (traffic to the outside, or a hook cnet does not watch).
//!
//! Every packet gets an id, and copies of one packet share it: the pcapng
//! writer puts it into `epb_packetid`. Ids are handed out when a packet is
//! first seen, so nothing has to be held back before it is written.

use std::collections::{HashMap, VecDeque};

use super::parse::Proto;
use super::stats::Latencies;
use crate::model::Direction;

/// How long a packet waits for its copy on another hook. Hops across a
/// bridge take microseconds, and copies reach cnet in causal order, so this
/// only has to outlast scheduling hiccups while keeping repeated identical
/// packets (unconnected UDP has IP id 0) apart.
pub const WINDOW_NS: u64 = 250_000_000;
/// Most packets waiting for a copy; beyond it the oldest give up (counted
/// as unmatched). Bounds memory at high packet rates.
const MAX_WAITING: usize = 1 << 18;
/// Hooks one packet can be matched across (a flooded packet reaches every
/// port of a bridge).
const MAX_HOOKS: usize = 8;

/// One hook: interface id and direction.
pub type HookId = (u32, Direction);

struct Waiting {
    fingerprint: u64,
    /// Sequence number of the previous waiting packet with the same
    /// fingerprint (a chain through `waiting`).
    prev: Option<u64>,
    id: u64,
    /// Where and when the packet last entered the host (a tc ingress
    /// hook) and last left it (an egress hook).
    last_ingress: Option<(HookId, u64)>,
    last_egress: Option<(HookId, u64)>,
    /// Time of the latest copy.
    last_ts: u64,
    hooks: [HookId; MAX_HOOKS],
    nhooks: u8,
    /// A later copy could not tell this packet from another one.
    ambiguous: bool,
}

impl Waiting {
    fn seen_on(&self, hook: HookId) -> bool {
        self.hooks[..self.nhooks as usize].contains(&hook)
    }
}

/// One hop: from one hook to another, per transport protocol.
pub struct HopGroup {
    pub from: HookId,
    pub to: HookId,
    pub proto: Proto,
    pub latencies: Latencies,
}

#[derive(Default)]
pub struct HopMatcher {
    /// False with fewer than two hooks: nothing can match, so packets only
    /// get ids.
    pub enabled: bool,
    waiting: VecDeque<Waiting>,
    /// Sequence number of `waiting[0]`.
    base: u64,
    /// Fingerprint → newest waiting packet with it.
    newest: HashMap<u64, u64>,
    next_id: u64,
    pub groups: Vec<HopGroup>,
    group_index: HashMap<(HookId, HookId, Proto), usize>,
    pub matched: u64,
    pub unmatched: u64,
    pub ambiguous: u64,
}

impl HopMatcher {
    /// Handles one packet seen on `hook` (a tc ingress hook when `ingress`)
    /// at `ts`; returns its packet id (shared with its earlier copy when it
    /// matched one).
    ///
    /// A hop goes through the host (in at an ingress hook, out at an egress
    /// hook) or through a namespace (out at an egress hook, back in at an
    /// ingress hook). Two egress copies are clones of a flooded packet: each
    /// is a hop from where the packet entered, not from each other.
    pub fn packet(&mut self, hook: HookId, ingress: bool, ts: u64, fingerprint: u64, proto: Proto) -> u64 {
        if !self.enabled {
            return self.new_id();
        }
        self.expire(ts);
        let mut candidate = None;
        let mut candidates = 0;
        let mut next = self.newest.get(&fingerprint).copied();
        while let Some(seq) = next {
            let Some(w) = seq.checked_sub(self.base).and_then(|i| self.waiting.get(i as usize)) else { break };
            let from = if ingress { w.last_egress } else { w.last_ingress };
            if w.fingerprint == fingerprint
                && !w.seen_on(hook)
                && (w.nhooks as usize) < MAX_HOOKS
                && from.is_some_and(|(_, t)| ts >= t && ts - t <= WINDOW_NS)
            {
                candidates += 1;
                candidate = Some(seq);
            }
            next = w.prev;
        }
        match (candidates, candidate) {
            (1, Some(seq)) => {
                let i = (seq - self.base) as usize;
                let w = &mut self.waiting[i];
                let last = if ingress { &mut w.last_egress } else { &mut w.last_ingress };
                let Some((from, t)) = *last else { return self.new_id() };
                let hop_ns = ts - t;
                w.hooks[w.nhooks as usize] = hook;
                w.nhooks += 1;
                if ingress {
                    w.last_ingress = Some((hook, ts));
                } else {
                    w.last_egress = Some((hook, ts));
                }
                w.last_ts = w.last_ts.max(ts);
                let id = w.id;
                let g = self.group(from, hook, proto);
                self.groups[g].latencies.record(hop_ns);
                self.matched += 1;
                id
            }
            (0, _) => {
                let id = self.new_id();
                if self.waiting.len() >= MAX_WAITING {
                    self.pop_oldest();
                }
                let seq = self.base + self.waiting.len() as u64;
                let prev = self.newest.insert(fingerprint, seq);
                let mut hooks = [hook; MAX_HOOKS];
                hooks[0] = hook;
                self.waiting.push_back(Waiting {
                    fingerprint,
                    prev,
                    id,
                    last_ingress: ingress.then_some((hook, ts)),
                    last_egress: (!ingress).then_some((hook, ts)),
                    last_ts: ts,
                    hooks,
                    nhooks: 1,
                    ambiguous: false,
                });
                id
            }
            _ => {
                // Mark every candidate, so none is later reported as a
                // packet that nobody else saw.
                let mut next = self.newest.get(&fingerprint).copied();
                while let Some(seq) = next {
                    let Some(w) = seq.checked_sub(self.base).and_then(|i| self.waiting.get_mut(i as usize)) else {
                        break;
                    };
                    if w.fingerprint == fingerprint && !w.seen_on(hook) {
                        w.ambiguous = true;
                    }
                    next = w.prev;
                }
                self.ambiguous += 1;
                self.new_id()
            }
        }
    }

    /// An id for a packet that takes no part in matching.
    pub fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn group(&mut self, from: HookId, to: HookId, proto: Proto) -> usize {
        let groups = &mut self.groups;
        *self.group_index.entry((from, to, proto)).or_insert_with(|| {
            groups.push(HopGroup { from, to, proto, latencies: Latencies::default() });
            groups.len() - 1
        })
    }

    /// Gives up on packets that waited longer than the window.
    fn expire(&mut self, now: u64) {
        while let Some(w) = self.waiting.front() {
            if w.last_ts.saturating_add(WINDOW_NS) >= now {
                break;
            }
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        let Some(w) = self.waiting.pop_front() else { return };
        if w.nhooks == 1 && !w.ambiguous {
            self.unmatched += 1;
        }
        if self.newest.get(&w.fingerprint) == Some(&self.base) {
            self.newest.remove(&w.fingerprint);
        }
        self.base += 1;
    }

    /// End of capture: everything still waiting is final.
    pub fn finish(&mut self) {
        while !self.waiting.is_empty() {
            self.pop_oldest();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Host ends of two containers' veths: what A sends enters the host at
    // A's ingress hook, what B receives leaves it at B's egress hook.
    const A_OUT: HookId = (0, Direction::Out);
    const B_IN: HookId = (1, Direction::In);
    const C_IN: HookId = (2, Direction::In);

    fn matcher() -> HopMatcher {
        HopMatcher { enabled: true, ..Default::default() }
    }

    #[test]
    fn copy_on_another_hook_shares_the_id_and_gives_a_hop() {
        let mut m = matcher();
        let id = m.packet(A_OUT, true, 1_000, 7, Proto::Udp);
        assert_eq!(m.packet(B_IN, false, 1_500, 7, Proto::Udp), id);
        let other = m.packet(A_OUT, true, 2_000, 8, Proto::Udp);
        assert_ne!(other, id);
        m.finish();
        assert_eq!((m.matched, m.unmatched, m.ambiguous), (1, 1, 0));
        assert_eq!(m.groups.len(), 1);
        assert_eq!(m.groups[0].latencies.summary().min_ns, 500);
    }

    #[test]
    fn two_waiting_candidates_are_ambiguous_not_guessed() {
        let mut m = matcher();
        let a = m.packet(A_OUT, true, 1_000, 7, Proto::Udp);
        let b = m.packet(A_OUT, true, 1_100, 7, Proto::Udp);
        let c = m.packet(B_IN, false, 1_200, 7, Proto::Udp);
        assert!(c != a && c != b);
        m.finish();
        assert_eq!((m.matched, m.unmatched, m.ambiguous), (0, 0, 1));
    }

    #[test]
    fn repeated_packet_after_its_copy_matches_its_own_copy() {
        let mut m = matcher();
        let a = m.packet(A_OUT, true, 1_000, 7, Proto::Udp);
        assert_eq!(m.packet(B_IN, false, 1_100, 7, Proto::Udp), a);
        let b = m.packet(A_OUT, true, 2_000, 7, Proto::Udp);
        assert_ne!(a, b);
        assert_eq!(m.packet(B_IN, false, 2_100, 7, Proto::Udp), b);
        assert_eq!((m.matched, m.ambiguous), (2, 0));
    }

    #[test]
    fn flooded_clones_are_hops_from_the_sender_not_from_each_other() {
        let mut m = matcher();
        let a = m.packet(A_OUT, true, 1_000, 7, Proto::Icmp);
        assert_eq!(m.packet(B_IN, false, 1_500, 7, Proto::Icmp), a);
        assert_eq!(m.packet(C_IN, false, 1_700, 7, Proto::Icmp), a);
        assert_eq!(m.groups.len(), 2);
        assert!(m.groups.iter().all(|g| g.from == A_OUT));
        // Clones of a packet that entered where cnet does not watch (the
        // bridge's own address) do not match each other.
        let b = m.packet(B_IN, false, 2_000, 9, Proto::Icmp);
        assert_ne!(m.packet(C_IN, false, 2_100, 9, Proto::Icmp), b);
        m.finish();
        assert_eq!((m.matched, m.unmatched, m.ambiguous), (2, 2, 0));
    }

    #[test]
    fn copies_outside_the_window_do_not_match() {
        let mut m = matcher();
        let a = m.packet(A_OUT, true, 1_000, 7, Proto::Udp);
        assert_ne!(m.packet(B_IN, false, 1_000 + WINDOW_NS + 1, 7, Proto::Udp), a);
        m.finish();
        assert_eq!((m.matched, m.unmatched), (0, 2));
    }
}
