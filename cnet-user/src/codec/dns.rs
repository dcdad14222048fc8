//! DNS header and question section (RFC 1035 §4.1), parsed by hand: enough
//! to name what a packet asks for. Bounded and panic-free on any input:
//! every read is checked, name compression follows at most `MAX_JUMPS`
//! pointers and names stop at 255 bytes.

use serde::Serialize;

const HEADER_LEN: usize = 12;
const MAX_QUESTIONS: usize = 8;
const MAX_JUMPS: usize = 16;
const MAX_NAME: usize = 255;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Dns {
    pub id: u16,
    pub response: bool,
    pub opcode: u8,
    pub rcode: u8,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
    pub questions: Vec<Question>,
    /// The message ended (or was malformed) before the questions did.
    pub truncated: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Question {
    /// Dotted name with the trailing root dot: `example.com.`.
    pub name: String,
    /// Mnemonic (`A`, `AAAA`, …) or `TYPE<n>`.
    pub qtype: String,
    pub qclass: u16,
}

/// Parses a DNS message; `None` when it is shorter than the 12-byte header.
pub fn parse(msg: &[u8]) -> Option<Dns> {
    let h = msg.get(..HEADER_LEN)?;
    let be = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
    let mut dns = Dns {
        id: be(0),
        response: h[2] & 0x80 != 0,
        opcode: (h[2] >> 3) & 0x0f,
        rcode: h[3] & 0x0f,
        qdcount: be(4),
        ancount: be(6),
        nscount: be(8),
        arcount: be(10),
        ..Default::default()
    };
    let mut pos = HEADER_LEN;
    for _ in 0..usize::from(dns.qdcount).min(MAX_QUESTIONS) {
        let Some((name, next)) = read_name(msg, pos) else {
            dns.truncated = true;
            break;
        };
        let Some(tc) = msg.get(next..next + 4) else {
            dns.truncated = true;
            break;
        };
        dns.questions.push(Question {
            name,
            qtype: type_name(u16::from_be_bytes([tc[0], tc[1]])),
            qclass: u16::from_be_bytes([tc[2], tc[3]]),
        });
        pos = next + 4;
    }
    Some(dns)
}

/// Reads a possibly compressed name at `pos`: (name, offset after it).
fn read_name(msg: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut end = None;
    let mut jumps = 0;
    loop {
        let len = *msg.get(pos)?;
        match len {
            0 => {
                if name.is_empty() {
                    name.push('.');
                }
                return Some((name, end.unwrap_or(pos + 1)));
            }
            l if l & 0xc0 == 0xc0 => {
                let lo = *msg.get(pos + 1)?;
                jumps += 1;
                if jumps > MAX_JUMPS {
                    return None;
                }
                end.get_or_insert(pos + 2);
                pos = (usize::from(l & 0x3f) << 8) | usize::from(lo);
            }
            l if l & 0xc0 == 0 => {
                let label = msg.get(pos + 1..pos + 1 + usize::from(l))?;
                for &b in label {
                    // Printable ASCII as is, anything else escaped like dig.
                    if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                        name.push(b as char);
                    } else {
                        name.push_str(&format!("\\{b:03}"));
                    }
                }
                name.push('.');
                if name.len() > MAX_NAME * 4 {
                    return None;
                }
                pos += 1 + usize::from(l);
            }
            // 0x40 and 0x80 label types are obsolete or unassigned.
            _ => return None,
        }
    }
}

fn type_name(t: u16) -> String {
    let s = match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        41 => "OPT",
        64 => "SVCB",
        65 => "HTTPS",
        255 => "ANY",
        _ => return format!("TYPE{t}"),
    };
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut v = id.to_be_bytes().to_vec();
        v.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for l in name.trim_end_matches('.').split('.') {
            v.push(l.len() as u8);
            v.extend_from_slice(l.as_bytes());
        }
        v.push(0);
        v.extend_from_slice(&qtype.to_be_bytes());
        v.extend_from_slice(&1u16.to_be_bytes());
        v
    }

    #[test]
    fn parses_a_query() {
        let d = parse(&query(0x1234, "www.example.com", 28)).unwrap();
        assert_eq!(d.id, 0x1234);
        assert!(!d.response);
        assert!(!d.truncated);
        assert_eq!(d.questions, vec![Question { name: "www.example.com.".into(), qtype: "AAAA".into(), qclass: 1 }]);
    }

    #[test]
    fn truncated_question_is_marked() {
        let q = query(1, "example.com", 1);
        for cut in 12..q.len() {
            let d = parse(&q[..cut]).unwrap();
            assert!(d.truncated, "cut at {cut}");
        }
        assert!(parse(&q[..11]).is_none());
    }

    #[test]
    fn pointer_loops_end() {
        // A question whose name points at itself.
        let mut v = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1];
        assert!(parse(&v).unwrap().truncated);
        v[13] = 200;
        assert!(parse(&v).unwrap().truncated);
    }
}
