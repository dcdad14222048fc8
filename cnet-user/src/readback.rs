//! `cnet read FILE` (and `cnet capture -r FILE`): prints the packets of a
//! pcapng or pcap file with cnet's labels, in the same one-line format as a
//! live capture, or as one JSON object per packet.
//!
//! Labels come from what cnet writes (see the README): the interface
//! description (`netns:blue eth0 [10.0.0.2/24] (netns inode …)`), the
//! direction flags and the `k=v` packet comment. Files from other tools
//! (tcpdump, dumpcap) print with their interface name and direction `-`.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::decode::{self, Decoded, Link};
use crate::reader::{self, FileInterface, FilePacket};
use crate::sinks::Direction;
use crate::sinks::print::format_line;

#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// File to read; `-` is standard input.
    pub path: PathBuf,
    /// Only packets whose owner matches (see [`owner_matches`]).
    pub container: Option<String>,
    pub direction: Option<Direction>,
    pub json: bool,
    /// Stop after this many printed packets.
    pub count: Option<u64>,
}

/// One packet as `--json` prints it; the decoded layers are top-level keys
/// (`ethernet`, `ip`, `tcp`, `udp`, `icmp`, `dns`, `truncated`).
#[derive(Debug, Serialize)]
pub struct JsonPacket<'a> {
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// RFC 3339, UTC, nanoseconds.
    pub time: String,
    pub interface: JsonInterface<'a>,
    /// `netns:blue`, `container:web`, …; absent for files without cnet labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: &'a BTreeMap<String, String>,
    pub orig_len: u32,
    #[serde(flatten)]
    pub decoded: &'a Decoded,
}

#[derive(Debug, Serialize)]
pub struct JsonInterface<'a> {
    pub id: u32,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub description: &'a str,
    pub linktype: u32,
}

/// The owner in a cnet interface description: its first word when that
/// looks like `kind:name` (`netns:blue`, `pid:42`, `container:web`).
pub fn owner(iface: &FileInterface) -> Option<&str> {
    let first = iface.description.split_whitespace().next()?;
    let (kind, name) = first.split_once(':')?;
    (!kind.is_empty() && !name.is_empty() && kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .then_some(first)
}

/// The label printed before the direction: `netns:blue eth0` for cnet's
/// files (the description up to the address list), else the interface
/// name, else `if<N>`.
fn short_label(iface: Option<&FileInterface>, id: u32) -> String {
    match iface {
        Some(i) if owner(i).is_some() => {
            let d = &i.description;
            let end = [" [", " ("].iter().filter_map(|m| d.find(m)).min().unwrap_or(d.len());
            d[..end].to_string()
        }
        Some(i) if !i.name.is_empty() => i.name.clone(),
        _ => format!("if{id}"),
    }
}

/// Whether `name` selects the packet: a `container=`, `ns=` or `pid=`
/// comment label, the owner (`netns:blue` or just `blue`), or the host
/// interface name.
pub fn owner_matches(name: &str, iface: Option<&FileInterface>, pkt: &FilePacket) -> bool {
    if ["container", "ns", "pid"].iter().any(|k| pkt.labels.get(*k).is_some_and(|v| v == name)) {
        return true;
    }
    let Some(iface) = iface else { return false };
    if let Some(o) = owner(iface)
        && (o == name || o.split_once(':').is_some_and(|(_, n)| n == name))
    {
        return true;
    }
    iface.name == name
}

/// The packet's direction: the EPB flags, else the comment's `dir=`.
fn direction(pkt: &FilePacket) -> Option<Direction> {
    pkt.direction.or_else(|| match pkt.labels.get("dir").map(String::as_str) {
        Some("in") => Some(Direction::In),
        Some("out") => Some(Direction::Out),
        _ => None,
    })
}

fn rfc3339(ts_ns: u64) -> String {
    let secs = (ts_ns / 1_000_000_000) as i64;
    let nanos = (ts_ns % 1_000_000_000) as u32;
    chrono::DateTime::from_timestamp(secs, nanos)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
        .unwrap_or_default()
}

/// Prints the file; returns the number of packets printed.
pub fn run(opts: &ReadOptions) -> Result<u64> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let limit = opts.count.unwrap_or(u64::MAX);
    let mut printed = 0u64;
    let mut write_error: Option<io::Error> = None;
    let mut unknown_links: Vec<u32> = Vec::new();
    let result = reader::for_each_packet(&opts.path, |file, pkt| {
        let iface = file.interfaces.get(pkt.interface as usize);
        let dir = direction(&pkt);
        if opts.direction.is_some() && dir != opts.direction {
            return true;
        }
        if let Some(name) = &opts.container
            && !owner_matches(name, iface, &pkt)
        {
            return true;
        }
        let linktype = iface.map_or(1, |i| i.linktype);
        let link = Link::from_linktype(linktype).unwrap_or_else(|| {
            if !unknown_links.contains(&linktype) {
                unknown_links.push(linktype);
            }
            Link::Ethernet
        });
        let decoded = decode::decode(link, &pkt.data);
        let r = if opts.json {
            let empty = FileInterface::default();
            let i = iface.unwrap_or(&empty);
            let j = JsonPacket {
                ts_ns: pkt.ts_ns,
                time: rfc3339(pkt.ts_ns),
                interface: JsonInterface { id: pkt.interface, name: &i.name, description: &i.description, linktype },
                owner: iface.and_then(owner),
                direction: dir.map(Direction::as_str),
                comment: pkt.comment.as_deref(),
                labels: &pkt.labels,
                orig_len: pkt.orig_len,
                decoded: &decoded,
            };
            serde_json::to_writer(&mut out, &j).map_err(io::Error::from).and_then(|()| out.write_all(b"\n"))
        } else {
            let label = short_label(iface, pkt.interface);
            writeln!(out, "{}", format_line(pkt.ts_ns, &label, dir, &decoded))
        };
        if let Err(e) = r {
            write_error = Some(e);
            return false;
        }
        printed += 1;
        printed < limit
    });
    let flushed = out.flush();
    for lt in unknown_links {
        log::warn!("link type {lt} is not decoded by cnet; its packets were decoded as Ethernet");
    }
    match write_error.or(flushed.err()) {
        // `cnet read … | head`: the reader having had enough is not an error.
        Some(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(printed),
        Some(e) => return Err(e).context("cannot write to standard output"),
        None => {}
    }
    match result {
        Ok(_) => Ok(printed),
        // The message already names the file and the cause; no chain.
        Err((e @ reader::ReadError::Malformed { .. }, _)) => {
            anyhow::bail!("{e}; the file is damaged or was cut short")
        }
        Err((e, _)) => anyhow::bail!("{e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cnet_iface() -> FileInterface {
        FileInterface {
            name: "veth7".into(),
            description: "netns:blue eth0 [10.0.0.2/24] (netns inode 4026532000)".into(),
            linktype: 1,
        }
    }

    fn pkt(comment: &str) -> FilePacket {
        FilePacket {
            ts_ns: 0,
            interface: 0,
            orig_len: 0,
            data: vec![],
            direction: None,
            comment: Some(comment.into()),
            labels: reader::parse_labels(comment),
        }
    }

    #[test]
    fn labels_of_cnet_and_foreign_interfaces() {
        assert_eq!(short_label(Some(&cnet_iface()), 0), "netns:blue eth0");
        assert_eq!(owner(&cnet_iface()), Some("netns:blue"));
        let host = FileInterface { name: "eth0".into(), description: "host interface eth0".into(), linktype: 1 };
        assert_eq!(short_label(Some(&host), 0), "eth0");
        assert_eq!(owner(&host), None);
        assert_eq!(short_label(None, 3), "if3");
    }

    #[test]
    fn container_selection() {
        let i = cnet_iface();
        let p = pkt("ns=blue netns=1 iface=eth0 dir=out");
        assert!(owner_matches("blue", Some(&i), &p));
        assert!(owner_matches("netns:blue", Some(&i), &p));
        assert!(owner_matches("veth7", Some(&i), &p));
        assert!(!owner_matches("red", Some(&i), &p));
        assert!(owner_matches("web", None, &pkt("container=web iface=eth0 dir=in")));
        assert_eq!(direction(&p), Some(Direction::Out));
    }
}
