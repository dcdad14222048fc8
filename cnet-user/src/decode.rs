//! One-line packet summaries in tcpdump's style, decoded with etherparse.
//! Truncated or malformed packets print what could be decoded followed by a
//! `[|proto]` marker, like tcpdump; nothing here panics on any input.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{LaxNetSlice, LaxSlicedPacket, LinkSlice, TransportSlice};

/// Link layer of the bytes to decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Ethernet,
    /// Bare IPv4/IPv6 (LINKTYPE_RAW).
    Raw,
}

pub fn summarize(link: Link, data: &[u8]) -> String {
    let parsed = match link {
        Link::Ethernet => LaxSlicedPacket::from_ethernet(data).ok(),
        Link::Raw => LaxSlicedPacket::from_ip(data).ok(),
    };
    let Some(p) = parsed else {
        return format!("[|ether] {} bytes", data.len());
    };
    let mut s = String::new();
    let ether_type = match &p.link {
        Some(LinkSlice::Ethernet2(e)) => Some(e.ether_type()),
        _ => None,
    };
    match &p.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let h = ip.header();
            let src = IpAddr::V4(Ipv4Addr::from(h.source()));
            let dst = IpAddr::V4(Ipv4Addr::from(h.destination()));
            let payload_len = (h.total_len() as usize).saturating_sub(h.ihl() as usize * 4);
            s.push_str("IP ");
            transport(&mut s, &p.transport, src, dst, payload_len, u8::from(h.protocol()), ip.payload().incomplete);
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let h = ip.header();
            let src = IpAddr::V6(Ipv6Addr::from(h.source()));
            let dst = IpAddr::V6(Ipv6Addr::from(h.destination()));
            let ext_len = ip.extensions().slice().len();
            let payload_len = (h.payload_length() as usize).saturating_sub(ext_len);
            s.push_str("IP6 ");
            let proto = u8::from(ip.payload().ip_number);
            transport(&mut s, &p.transport, src, dst, payload_len, proto, ip.payload().incomplete);
        }
        Some(LaxNetSlice::Arp(arp)) => {
            let a = arp.to_packet();
            let ip = |b: &[u8]| match <[u8; 4]>::try_from(b) {
                Ok(v) => Ipv4Addr::from(v).to_string(),
                Err(_) => format!("{b:02x?}"),
            };
            match a.operation.0 {
                1 => {
                    let _ = write!(s, "ARP, Request who-has {} tell {}", ip(a.target_protocol_addr()), ip(a.sender_protocol_addr()));
                }
                2 => {
                    let _ = write!(s, "ARP, Reply {} is-at {}", ip(a.sender_protocol_addr()), mac(a.sender_hw_addr()));
                }
                op => {
                    let _ = write!(s, "ARP, op {op}");
                }
            }
        }
        None => match ether_type {
            Some(t) => {
                let _ = write!(s, "ethertype 0x{:04x}, length {}", t.0, data.len());
            }
            None => {
                let _ = write!(s, "length {}", data.len());
            }
        },
    }
    if p.stop_err.is_some() && !s.contains("[|") {
        s.push_str(" [|truncated]");
    }
    s
}

fn mac(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

fn endpoint(addr: IpAddr, port: u16) -> String {
    format!("{addr}.{port}")
}

fn transport(
    s: &mut String,
    t: &Option<TransportSlice<'_>>,
    src: IpAddr,
    dst: IpAddr,
    ip_payload_len: usize,
    proto: u8,
    incomplete: bool,
) {
    match t {
        Some(TransportSlice::Tcp(tcp)) => {
            let mut flags = String::new();
            for (on, c) in [
                (tcp.syn(), 'S'),
                (tcp.fin(), 'F'),
                (tcp.rst(), 'R'),
                (tcp.psh(), 'P'),
                (tcp.urg(), 'U'),
                (tcp.ece(), 'E'),
                (tcp.cwr(), 'W'),
                (tcp.ack(), '.'),
            ] {
                if on {
                    flags.push(c);
                }
            }
            let len = ip_payload_len.saturating_sub(tcp.data_offset() as usize * 4);
            let _ = write!(
                s,
                "{} > {}: Flags [{flags}], seq {}",
                endpoint(src, tcp.source_port()),
                endpoint(dst, tcp.destination_port()),
                tcp.sequence_number()
            );
            if tcp.ack() {
                let _ = write!(s, ", ack {}", tcp.acknowledgment_number());
            }
            let _ = write!(s, ", win {}, length {len}", tcp.window_size());
        }
        Some(TransportSlice::Udp(udp)) => {
            let len = (udp.length() as usize).saturating_sub(8);
            let _ = write!(
                s,
                "{} > {}: UDP, length {len}",
                endpoint(src, udp.source_port()),
                endpoint(dst, udp.destination_port())
            );
        }
        Some(TransportSlice::Icmpv4(icmp)) => {
            let _ = write!(s, "{src} > {dst}: ICMP {}", icmp4_name(icmp.type_u8(), icmp.code_u8()));
            if matches!(icmp.type_u8(), 0 | 8) {
                let b = icmp.bytes5to8();
                let _ = write!(s, ", id {}, seq {}", u16::from_be_bytes([b[0], b[1]]), u16::from_be_bytes([b[2], b[3]]));
            }
            let _ = write!(s, ", length {ip_payload_len}");
        }
        Some(TransportSlice::Icmpv6(icmp)) => {
            let _ = write!(s, "{src} > {dst}: ICMP6, {}, length {ip_payload_len}", icmp6_name(icmp.type_u8()));
        }
        Some(_) | None => {
            let name = match proto {
                6 => "[|tcp]",
                17 => "[|udp]",
                1 => "[|icmp]",
                58 => "[|icmp6]",
                _ => "",
            };
            if name.is_empty() || !incomplete && t.is_some() {
                let _ = write!(s, "{src} > {dst}: ip-proto-{proto} {ip_payload_len}");
            } else {
                let _ = write!(s, "{src} > {dst}: {name}");
            }
        }
    }
}

fn icmp4_name(t: u8, code: u8) -> String {
    match t {
        0 => "echo reply".into(),
        3 => format!("unreachable (code {code})"),
        8 => "echo request".into(),
        11 => "time exceeded".into(),
        _ => format!("type {t} code {code}"),
    }
}

fn icmp6_name(t: u8) -> String {
    match t {
        1 => "destination unreachable".into(),
        128 => "echo request".into(),
        129 => "echo reply".into(),
        133 => "router solicitation".into(),
        134 => "router advertisement".into(),
        135 => "neighbor solicitation".into(),
        136 => "neighbor advertisement".into(),
        143 => "multicast listener report v2".into(),
        _ => format!("type {t}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    #[test]
    fn udp_line() {
        let b = PacketBuilder::ethernet2([1; 6], [2; 6]).ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).udp(1234, 53);
        let mut v = Vec::new();
        b.write(&mut v, b"hello").unwrap();
        assert_eq!(summarize(Link::Ethernet, &v), "IP 10.0.0.1.1234 > 10.0.0.2.53: UDP, length 5");
    }

    #[test]
    fn truncated_tcp_keeps_real_length() {
        let b = PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 7, 1000)
            .syn();
        let mut v = Vec::new();
        b.write(&mut v, &[0u8; 500]).unwrap();
        let line = summarize(Link::Ethernet, &v[..80]);
        assert!(line.starts_with("IP 10.0.0.1.40000 > 10.0.0.2.80: Flags [S], seq 7"), "{line}");
        assert!(line.contains("length 500"), "{line}");
    }

    #[test]
    fn garbage_never_panics() {
        for len in 0..80 {
            let v: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            let _ = summarize(Link::Ethernet, &v);
            let _ = summarize(Link::Raw, &v);
        }
    }
}
