//! `cnet read FILE` (and `cnet capture -r FILE`): prints the packets of a
//! pcapng or pcap file with cnet's labels, in the same one-line format as a
//! live capture, or as one JSON object per packet.
//!
//! Labels come from what cnet writes (see the README): the interface
//! description (`netns:blue eth0 [10.0.0.2/24] (netns inode …)`), the
//! direction flags and the `k=v` packet comment. Files from other tools
//! (tcpdump, dumpcap) print with their interface name and direction `-`.
//!
//! A filter expression selects packets as `tcpdump -r` does: libpcap
//! compiles it for the link type of each interface of the file and judges
//! each packet in userspace ([`FileFilter`]).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use cnet_filter::Filter;
use serde::Serialize;

use crate::codec::capture_file::{self, FileInterface, FilePacket};
use crate::codec::decode::{self, Decoded, Link};
use crate::model::Direction;
use crate::pipeline::sinks::print::{LineFormatter, PrintOptions};
use crate::text;

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
    /// pcap-filter expression (tcpdump's syntax); None prints every packet.
    pub filter: Option<String>,
    /// tcpdump's printing options (`-v`, `-e`, `-x`, `-t`, …).
    pub print: PrintOptions,
    /// `--count`: print only the number of matching packets.
    pub count_only: bool,
}

/// A filter expression compiled once per link type of a file's interfaces
/// (a pcapng may mix Ethernet, raw IP and Linux cooked interfaces, and the
/// same expression reads different offsets on each), judged by libpcap in
/// userspace as `tcpdump -r FILE EXPRESSION` does.
pub struct FileFilter {
    expression: String,
    /// (link type, its compiled filter); a file has few link types.
    compiled: Vec<(u32, Filter)>,
}

impl FileFilter {
    pub fn new(expression: &str) -> FileFilter {
        FileFilter { expression: expression.to_string(), compiled: Vec::new() }
    }

    /// Whether `pkt`, seen on `iface` (interface `id` of the file), matches.
    /// Errors are libpcap's (tcpdump's) words, with the link type when it
    /// is not Ethernet (an Ethernet-only primitive on a raw IP interface).
    pub fn matches(&mut self, iface: Option<&FileInterface>, id: u32, pkt: &FilePacket) -> Result<bool> {
        let (linktype, snaplen) = iface.map_or((1, 0), |i| (i.linktype, i.snaplen));
        let i = match self.compiled.iter().position(|(lt, _)| *lt == linktype) {
            Some(i) => i,
            None => {
                let f = Filter::compile_for(&self.expression, linktype, snaplen).map_err(|e| {
                    if linktype == 1 {
                        anyhow::anyhow!("{e}")
                    } else {
                        anyhow::anyhow!("{e} (interface {id} of the file has link type {linktype})")
                    }
                })?;
                self.compiled.push((linktype, f));
                self.compiled.len() - 1
            }
        };
        Ok(self.compiled[i].1.matches(&pkt.data, pkt.orig_len))
    }

    /// Checks the expression when no packet needed it (an empty file), so
    /// that a mistyped expression is an error whatever the file holds.
    pub fn check(&mut self, file: &capture_file::CaptureFile) -> Result<()> {
        if !self.compiled.is_empty() {
            return Ok(());
        }
        let (linktype, snaplen) = file.interfaces.first().map_or((1, 0), |i| (i.linktype, i.snaplen));
        Filter::compile_for(&self.expression, linktype, snaplen).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    }
}

/// One packet as `--json` prints it; the decoded layers are top-level keys
/// (`ethernet`, `ip`, `tcp`, `udp`, `icmp`, `dns`, `truncated`).
#[derive(Debug, Serialize)]
pub struct JsonPacket<'a> {
    /// Nanoseconds since the Unix epoch. Beyond 2^53, so jq and JavaScript
    /// (doubles) round it: `ts_sec` and `ts_nsec` keep every digit.
    pub ts_ns: u64,
    /// Whole seconds since the Unix epoch.
    pub ts_sec: u64,
    /// Nanoseconds within the second (0 to 999999999).
    pub ts_nsec: u32,
    /// RFC 3339, UTC, nanoseconds.
    pub time: String,
    pub interface: JsonInterface<'a>,
    /// `netns:blue`, `container:web`, …; absent for files without cnet labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
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

/// The owner at the start of a cnet interface description, `kind:name`
/// with the name read as a label value (`netns:blue`; `netns:"a b"` gives
/// `netns:a b`), and the rest of the description.
fn parse_owner(description: &str) -> Option<(String, &str)> {
    let (kind, rest) = description.split_once(':')?;
    if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return None;
    }
    let (name, rest) = text::parse_value(rest);
    (!name.is_empty() && (rest.is_empty() || rest.starts_with(char::is_whitespace)))
        .then(|| (format!("{kind}:{name}"), rest))
}

/// What a cnet interface description says of its interface: the owner,
/// the interface name on the owner's side and its addresses
/// (`netns:blue eth0 [10.0.0.2/24, fd00::2/64] (…)`); None for a host
/// interface or a file from another tool.
pub fn owner_label(iface: &FileInterface) -> Option<(String, String, Vec<String>)> {
    let (owner, rest) = parse_owner(&iface.description)?;
    let mut rest = rest.trim_start();
    let mut name = String::new();
    if !rest.is_empty() && !rest.starts_with(['[', '(']) {
        let (n, r) = text::parse_value(rest);
        name = n;
        rest = r.trim_start();
    }
    let addrs = match rest.strip_prefix('[').and_then(|r| r.split_once(']')) {
        Some((list, _)) => list.split(',').map(|a| a.trim().to_string()).filter(|a| !a.is_empty()).collect(),
        None => Vec::new(),
    };
    Some((owner, name, addrs))
}

/// The owner in a cnet interface description (`netns:blue`, `pid:42`,
/// `docker:web`).
pub fn owner(iface: &FileInterface) -> Option<String> {
    parse_owner(&iface.description).map(|(o, _)| o)
}

/// The label printed before the direction: `netns:blue eth0` for cnet's
/// files (the owner and interface at the start of the description, as label
/// values), else the interface name, else `if<N>`. Escaped when printed.
fn short_label(iface: Option<&FileInterface>, id: u32) -> String {
    let Some(i) = iface else { return format!("if{id}") };
    if let Some((owner, rest)) = parse_owner(&i.description) {
        let rest = rest.trim_start();
        return if rest.is_empty() || rest.starts_with(['[', '(']) {
            text::owner_value(&owner)
        } else {
            text::owner_label(&owner, &text::parse_value(rest).0)
        };
    }
    if i.name.is_empty() { format!("if{id}") } else { i.name.clone() }
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
pub fn direction(pkt: &FilePacket) -> Option<Direction> {
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

/// Which packets of a file `read`, `capture -r` and `latency -r` take:
/// owner (`--container`), direction, filter expression.
pub struct Selection {
    container: Option<String>,
    direction: Option<Direction>,
    filter: Option<FileFilter>,
    /// A packet of the `--container` owner was seen.
    owner_seen: bool,
}

impl Selection {
    pub fn new(opts: &ReadOptions) -> Selection {
        Selection {
            container: opts.container.clone(),
            direction: opts.direction,
            filter: opts.filter.as_deref().map(FileFilter::new),
            owner_seen: false,
        }
    }

    /// Whether `pkt` (of `file`, read so far) is selected; an error when
    /// the filter does not compile for its interface's link type.
    pub fn select(&mut self, file: &capture_file::CaptureFile, pkt: &FilePacket) -> Result<bool> {
        let iface = file.interfaces.get(pkt.interface as usize);
        if let Some(name) = &self.container {
            if !owner_matches(name, iface, pkt) {
                return Ok(false);
            }
            self.owner_seen = true;
        }
        if self.direction.is_some() && direction(pkt) != self.direction {
            return Ok(false);
        }
        match &mut self.filter {
            Some(f) => f.matches(iface, pkt.interface, pkt),
            None => Ok(true),
        }
    }

    /// After the whole file: checks the filter (for an empty file) and
    /// turns a `--container` that named nothing into an error (exit status
    /// 1, as grep's "no match") that lists the file's owners: it is a typo
    /// or the wrong file. A filter or direction that matches nothing is not
    /// an error (exit status 0, as `tcpdump -r`).
    pub fn finish(&mut self, path: &std::path::Path, file: &capture_file::CaptureFile) -> Result<()> {
        if let Some(f) = &mut self.filter {
            f.check(file)?;
        }
        if let Some(name) = &self.container
            && !self.owner_seen
        {
            let owners = owners_of(file);
            let has = if owners.is_empty() {
                "it has no cnet labels and no interface names".to_string()
            } else {
                format!("its owners are {}", owners.join(", "))
            };
            anyhow::bail!(
                "no packet of {} belongs to {}: {has} (--container takes an owner such as netns:blue, its name, \
                 or a host interface name)",
                path.display(),
                name
            );
        }
        Ok(())
    }
}

/// The owners (or, for files without cnet's labels, the interface names)
/// of a file's interfaces, for the message when `--container` selects
/// nothing. `main` escapes the message, names included.
fn owners_of(file: &capture_file::CaptureFile) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for i in &file.interfaces {
        let name = match owner(i) {
            Some(o) => text::owner_value(&o),
            None if !i.name.is_empty() => i.name.clone(),
            None => continue,
        };
        if !v.contains(&name) {
            v.push(name);
        }
    }
    v
}

/// Prints the file; returns the number of packets printed. Errors as
/// [`Selection::finish`] says.
pub fn run(opts: &ReadOptions) -> Result<u64> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let limit = opts.count.unwrap_or(u64::MAX);
    let mut printed = 0u64;
    let mut write_error: Option<io::Error> = None;
    let mut filter_error: Option<anyhow::Error> = None;
    let mut selection = Selection::new(opts);
    let mut unknown_links: Vec<u32> = Vec::new();
    let mut formatter = LineFormatter::new(opts.print);
    let result = capture_file::for_each_packet(&opts.path, |file, pkt| {
        match selection.select(file, &pkt) {
            Ok(true) => {}
            Ok(false) => return true,
            Err(e) => {
                filter_error = Some(e);
                return false;
            }
        }
        let iface = file.interfaces.get(pkt.interface as usize);
        let dir = direction(&pkt);
        let linktype = iface.map_or(1, |i| i.linktype);
        let link = Link::from_linktype(linktype).unwrap_or_else(|| {
            if !unknown_links.contains(&linktype) {
                unknown_links.push(linktype);
            }
            Link::Ethernet
        });
        let decoded = decode::decode(link, &pkt.data);
        let r = if opts.count_only {
            Ok(())
        } else if opts.json {
            let empty = FileInterface::default();
            let i = iface.unwrap_or(&empty);
            let j = JsonPacket {
                ts_ns: pkt.ts_ns,
                ts_sec: pkt.ts_ns / 1_000_000_000,
                ts_nsec: (pkt.ts_ns % 1_000_000_000) as u32,
                time: rfc3339(pkt.ts_ns),
                interface: JsonInterface { id: pkt.interface, name: &i.name, description: &i.description, linktype },
                owner: iface.and_then(owner),
                direction: dir.map(Direction::as_str),
                comment: pkt.comment.as_deref(),
                labels: &pkt.labels,
                orig_len: pkt.orig_len,
                decoded: &decoded,
            };
            // Strings from the file go out JSON-escaped, C1 controls and bidi
            // overrides included (text::JsonFormatter).
            text::write_json(&mut out, &j).map_err(io::Error::from).and_then(|()| out.write_all(b"\n"))
        } else {
            let label = short_label(iface, pkt.interface);
            let text = formatter.format(pkt.ts_ns, &label, dir, &decoded, &pkt.data, pkt.orig_len as usize);
            writeln!(out, "{text}")
        };
        if let Err(e) = r {
            write_error = Some(e);
            return false;
        }
        printed += 1;
        printed < limit
    });
    if opts.count_only && write_error.is_none() {
        // tcpdump --count's line.
        let r = writeln!(out, "{printed} packet{}", if printed == 1 { "" } else { "s" });
        write_error = r.err();
    }
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
    if let Some(e) = filter_error {
        return Err(e);
    }
    let file = match result {
        Ok(file) => file,
        // The message already names the file and the cause; no chain.
        Err((e @ capture_file::ReadError::Malformed { .. }, _)) => {
            anyhow::bail!("{e}; the file is damaged or was cut short")
        }
        Err((e, _)) => anyhow::bail!("{e}"),
    };
    selection.finish(&opts.path, &file)?;
    Ok(printed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::sinks::print::format_line;

    fn cnet_iface() -> FileInterface {
        FileInterface {
            name: "veth7".into(),
            description: "netns:blue eth0 [10.0.0.2/24] (netns inode 4026532000)".into(),
            linktype: 1,
            snaplen: 0,
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
            labels: capture_file::parse_labels(comment),
        }
    }

    #[test]
    fn labels_of_cnet_and_foreign_interfaces() {
        assert_eq!(short_label(Some(&cnet_iface()), 0), "netns:blue eth0");
        assert_eq!(owner(&cnet_iface()).as_deref(), Some("netns:blue"));
        let (o, name, addrs) = owner_label(&cnet_iface()).unwrap();
        assert_eq!((o.as_str(), name.as_str(), addrs), ("netns:blue", "eth0", vec!["10.0.0.2/24".to_string()]));
        let host =
            FileInterface { name: "eth0".into(), description: "host interface eth0".into(), ..Default::default() };
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

    #[test]
    fn hostile_names_select_and_print_only_themselves() {
        let evil = FileInterface {
            name: "veth9".into(),
            description: r#"netns:"evil blue" "eth0\x1b[2J" (netns inode 1)"#.into(),
            linktype: 1,
            snaplen: 0,
        };
        let p = pkt(r#"ns="evil dir=in ns=blue" iface="eth0\x1b[2J" dir=out"#);
        assert_eq!(owner(&evil).as_deref(), Some("netns:evil blue"));
        assert!(!owner_matches("blue", Some(&evil), &p));
        assert!(!owner_matches("evil", Some(&evil), &p));
        assert!(owner_matches("evil blue", Some(&evil), &p));
        assert!(owner_matches("evil dir=in ns=blue", Some(&evil), &p));
        assert_eq!(direction(&p), Some(Direction::Out));
        assert_eq!(short_label(Some(&evil), 0), r#"netns:"evil blue" "eth0\x1b[2J""#);
        // Raw control characters in a foreign file are escaped when printed.
        let foreign = FileInterface { name: "eth0\x1b]0;pwned\x07\n12:00 fake".into(), ..Default::default() };
        let line = format_line(0, &short_label(Some(&foreign), 0), None, &decode::decode(Link::Ethernet, &[]));
        assert!(line.chars().all(crate::text::is_shown), "{line:?}");
        assert!(line.contains(r"eth0\x1b]0;pwned\x07\x0a12:00 fake"), "{line}");
    }
}
