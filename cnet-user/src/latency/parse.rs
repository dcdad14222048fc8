//! Just enough header parsing for latency: addresses, transport ports, TCP
//! sequence numbers and flags, the DNS header, and a fingerprint of the
//! fields a packet keeps on its way through a bridge. Works on truncated
//! packets (a small snap length keeps only headers), never allocates, and
//! returns `None` rather than panicking on anything malformed.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use crate::codec::link::Link;

/// Transport protocol, as far as latency cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
    Other,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
            Proto::Other => "other",
        }
    }
}

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tcp {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// Payload bytes on the wire (from the IP length, not the snap length).
    pub payload_len: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp(Tcp),
    /// `dns` is (query id, is a response) when the datagram is to or from
    /// port 53 and its captured part holds the DNS header.
    Udp {
        dns: Option<(u16, bool)>,
    },
    /// Anything else, or a non-first IP fragment.
    Other,
}

/// What latency needs from one IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Headers {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub proto: Proto,
    pub transport: Transport,
    /// Hash of the fields that no bridge changes: addresses, IP id or IPv6
    /// flow label, lengths, and every captured byte from the transport
    /// header on (ports, TCP sequence and acknowledgment numbers, options,
    /// checksum, payload prefix). TTL / hop limit and the IPv4 header
    /// checksum are left out: a router changes them.
    pub fingerprint: u64,
}

/// Parses one captured packet; `orig_len` is its length on the wire (needed
/// when the IP length field is 0, as in BIG TCP super-packets).
pub fn parse(link: Link, data: &[u8], orig_len: u32) -> Option<Headers> {
    let (ip, l2_len) = match link {
        Link::Raw => (data, 0usize),
        Link::Ethernet | Link::LinuxSll => {
            let mut off = link.ethertype_offset().unwrap_or(12);
            let mut ethertype = be16(data, off)?;
            // Up to two VLAN tags (802.1Q, 802.1ad).
            for _ in 0..2 {
                if ethertype == 0x8100 || ethertype == 0x88a8 {
                    off += 4;
                    ethertype = be16(data, off)?;
                }
            }
            if ethertype != 0x0800 && ethertype != 0x86dd {
                return None;
            }
            (data.get(off + 2..)?, off + 2)
        }
    };
    let wire_len = (orig_len as usize).saturating_sub(l2_len);
    match ip.first()? >> 4 {
        4 => parse_v4(ip, wire_len),
        6 => parse_v6(ip, wire_len),
        _ => None,
    }
}

fn parse_v4(ip: &[u8], wire_len: usize) -> Option<Headers> {
    let ihl = (ip.first()? & 0x0f) as usize * 4;
    if ihl < 20 || ip.len() < ihl {
        return None;
    }
    let total = be16(ip, 2)? as usize;
    let id = be16(ip, 4)?;
    let frag = be16(ip, 6)?;
    let proto = ip[9];
    let src = IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
    let total = if total == 0 { wire_len } else { total };
    let l4_len = total.saturating_sub(ihl);
    let mut h = DefaultHasher::new();
    (4u8, src, dst, proto, id, total, frag).hash(&mut h);
    // Options are hashed with the transport bytes (they do not change).
    h.write(&ip[20..]);
    let fingerprint = h.finish();
    // A non-first fragment carries no transport header.
    let first_fragment = frag & 0x1fff == 0;
    transport(src, dst, proto, if first_fragment { Some(&ip[ihl..]) } else { None }, l4_len, fingerprint)
}

fn parse_v6(ip: &[u8], wire_len: usize) -> Option<Headers> {
    if ip.len() < 40 {
        return None;
    }
    let flow_label = u32::from_be_bytes([0, ip[1] & 0x0f, ip[2], ip[3]]);
    let payload_len = be16(ip, 4)? as usize;
    let src = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).ok()?));
    let dst = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).ok()?));
    let payload_len = if payload_len == 0 { wire_len.saturating_sub(40) } else { payload_len };
    let mut h = DefaultHasher::new();
    (6u8, src, dst, flow_label, payload_len, ip[6]).hash(&mut h);
    h.write(&ip[40..]);
    let fingerprint = h.finish();

    // Walk the extension headers to the transport header.
    let mut next = ip[6];
    let mut off = 40usize;
    let mut first_fragment = true;
    for _ in 0..8 {
        match next {
            // hop-by-hop, routing, destination options
            0 | 43 | 60 => {
                let len = (*ip.get(off + 1)? as usize + 1) * 8;
                next = *ip.get(off)?;
                off += len;
            }
            // fragment
            44 => {
                first_fragment = be16(ip, off + 2)? & 0xfff8 == 0;
                next = *ip.get(off)?;
                off += 8;
            }
            // authentication header
            51 => {
                let len = (*ip.get(off + 1)? as usize + 2) * 4;
                next = *ip.get(off)?;
                off += len;
            }
            _ => break,
        }
    }
    let l4_len = (40 + payload_len).saturating_sub(off);
    let l4 = if first_fragment { ip.get(off..) } else { None };
    transport(src, dst, next, l4, l4_len, fingerprint)
}

/// Decodes the transport header in `l4` (the captured bytes from the
/// transport header on; `l4_len` is its length on the wire).
fn transport(
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    l4: Option<&[u8]>,
    l4_len: usize,
    fingerprint: u64,
) -> Option<Headers> {
    let mut out =
        Headers { src, dst, sport: 0, dport: 0, proto: Proto::Other, transport: Transport::Other, fingerprint };
    out.proto = match proto {
        6 => Proto::Tcp,
        17 => Proto::Udp,
        1 | 58 => Proto::Icmp,
        _ => Proto::Other,
    };
    let Some(l4) = l4 else { return Some(out) };
    match out.proto {
        Proto::Tcp => {
            let (Some(sport), Some(dport), Some(seq), Some(ack), Some(&off), Some(&flags)) =
                (be16(l4, 0), be16(l4, 2), be32(l4, 4), be32(l4, 8), l4.get(12), l4.get(13))
            else {
                return Some(out);
            };
            let header_len = (off >> 4) as usize * 4;
            out.sport = sport;
            out.dport = dport;
            out.transport =
                Transport::Tcp(Tcp { seq, ack, flags, payload_len: l4_len.saturating_sub(header_len) as u32 });
        }
        Proto::Udp => {
            let (Some(sport), Some(dport)) = (be16(l4, 0), be16(l4, 2)) else { return Some(out) };
            out.sport = sport;
            out.dport = dport;
            let dns = if sport == 53 || dport == 53 {
                match (be16(l4, 8), l4.get(10)) {
                    (Some(id), Some(&flags)) if l4.len() >= 8 + 12 => Some((id, flags & 0x80 != 0)),
                    _ => None,
                }
            } else {
                None
            };
            out.transport = Transport::Udp { dns };
        }
        _ => {}
    }
    Some(out)
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet + IPv4 + TCP with `payload`.
    #[allow(clippy::too_many_arguments)]
    pub fn tcp4(
        src: [u8; 4],
        dst: [u8; 4],
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        ttl: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut p = vec![0u8; 14];
        p[12] = 0x08;
        let total = 20 + 20 + payload.len();
        let mut ip = vec![0x45, 0, (total >> 8) as u8, total as u8, 0x12, 0x34, 0x40, 0, ttl, 6, 0xab, 0xcd];
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        p.extend_from_slice(&ip);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ack.to_be_bytes());
        p.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn tcp_fields_and_payload_length() {
        let p = tcp4([10, 0, 0, 1], [10, 0, 0, 2], 40000, 80, 1000, 5, TCP_ACK, 64, b"hello");
        let h = parse(Link::Ethernet, &p, p.len() as u32).unwrap();
        assert_eq!(h.sport, 40000);
        assert_eq!(h.dport, 80);
        assert_eq!(h.transport, Transport::Tcp(Tcp { seq: 1000, ack: 5, flags: TCP_ACK, payload_len: 5 }));
        // Truncated after the TCP header: the payload length still comes
        // from the IP header.
        let h2 = parse(Link::Ethernet, &p[..54], p.len() as u32).unwrap();
        assert_eq!(h2.transport, h.transport);
    }

    #[test]
    fn fingerprint_ignores_ttl_and_checksum_but_not_ports() {
        let a = tcp4([10, 0, 0, 1], [10, 0, 0, 2], 40000, 80, 1, 0, TCP_SYN, 64, b"");
        let mut b = tcp4([10, 0, 0, 1], [10, 0, 0, 2], 40000, 80, 1, 0, TCP_SYN, 63, b"");
        b[14 + 10] = 0; // IP checksum
        let c = tcp4([10, 0, 0, 1], [10, 0, 0, 2], 40001, 80, 1, 0, TCP_SYN, 64, b"");
        let f = |p: &[u8]| parse(Link::Ethernet, p, p.len() as u32).unwrap().fingerprint;
        assert_eq!(f(&a), f(&b));
        assert_ne!(f(&a), f(&c));
    }

    #[test]
    fn ipv6_udp_dns_behind_an_extension_header() {
        // Raw IPv6, a hop-by-hop header, then UDP to port 53 with a DNS
        // query header (id 0xbeef, QR clear).
        let mut p = vec![0x60, 0x01, 0x23, 0x45, 0, 8 + 8 + 12, 0, 64];
        p.extend_from_slice(&[0xfd; 16]);
        p.extend_from_slice(&[0xfe; 16]);
        p.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]); // hop-by-hop → UDP
        p.extend_from_slice(&[0x30, 0x39, 0, 53, 0, 20, 0, 0]);
        p.extend_from_slice(&[0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        let h = parse(Link::Raw, &p, p.len() as u32).unwrap();
        assert_eq!((h.proto, h.sport, h.dport), (Proto::Udp, 12345, 53));
        assert_eq!(h.transport, Transport::Udp { dns: Some((0xbeef, false)) });
        // The flow label is part of the fingerprint, the hop limit is not.
        let mut q = p.clone();
        q[7] = 1;
        assert_eq!(parse(Link::Raw, &q, q.len() as u32).unwrap().fingerprint, h.fingerprint);
        q[3] = 0x46;
        assert_ne!(parse(Link::Raw, &q, q.len() as u32).unwrap().fingerprint, h.fingerprint);
    }

    #[test]
    fn non_first_fragment_has_no_ports() {
        let mut p = tcp4([10, 0, 0, 1], [10, 0, 0, 2], 40000, 80, 1, 0, TCP_ACK, 64, b"data");
        p[14 + 6] = 0x00;
        p[14 + 7] = 0x10; // fragment offset 16 × 8 bytes
        let h = parse(Link::Ethernet, &p, p.len() as u32).unwrap();
        assert_eq!((h.proto, h.transport, h.sport), (Proto::Tcp, Transport::Other, 0));
    }

    #[test]
    fn garbage_never_panics() {
        let mut x = 1u64;
        for len in 0..200 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            for link in [Link::Ethernet, Link::Raw] {
                let _ = parse(link, &data, len as u32);
                let mut v4 = data.clone();
                if !v4.is_empty() {
                    v4[0] = 0x4f;
                }
                let _ = parse(Link::Raw, &v4, 0);
                if !v4.is_empty() {
                    v4[0] = 0x60;
                }
                let _ = parse(Link::Raw, &v4, u32::MAX);
            }
        }
    }
}
