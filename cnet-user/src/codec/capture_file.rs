//! Reading capture files back: pcapng (cnet's, dumpcap's, anyone's) and
//! classic pcap (tcpdump's default), with cnet's labels recovered from the
//! interface descriptions, direction flags and packet comments.
//!
//! Errors carry the part of the file read before them (a killed capture's
//! file is still worth reading), hence the large `Err` variants: each is
//! returned once per file, so their size costs nothing.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use pcap_file::pcap::PcapReader;

use crate::model::Direction;

/// One interface of a capture file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileInterface {
    pub name: String,
    pub description: String,
    pub linktype: u32,
    /// Bytes kept of each packet; 0 when the file does not say (no limit).
    pub snaplen: u32,
}

/// Interface statistics (ISB) found in the file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileStats {
    pub interface: u32,
    pub ifrecv: Option<u64>,
    pub ifdrop: Option<u64>,
    pub filter_accept: Option<u64>,
    pub osdrop: Option<u64>,
    pub usrdeliv: Option<u64>,
}

/// A packet read from a file, with the labels cnet wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilePacket {
    pub ts_ns: u64,
    pub interface: u32,
    pub orig_len: u32,
    pub data: Vec<u8>,
    pub direction: Option<Direction>,
    pub comment: Option<String>,
    /// `key=value` pairs of the comment (container, ns, iface, dir, …).
    pub labels: BTreeMap<String, String>,
}

/// Everything in a capture file.
#[derive(Clone, Debug, Default)]
pub struct CaptureFile {
    pub interfaces: Vec<FileInterface>,
    pub packets: Vec<FilePacket>,
    pub stats: Vec<FileStats>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot open {path}: {source}")]
    Open { path: String, source: std::io::Error },
    #[error("{path} is neither pcapng nor pcap (first bytes {magic:02x?})")]
    NotACapture { path: String, magic: Vec<u8> },
    #[error("{path}: {msg} (the packets before it were read)")]
    Malformed { path: String, msg: String },
    /// The file goes beyond what cnet reads (see [`MAX_SECTION_INTERFACES`]).
    #[error("{path}: {msg} (the packets before it were read)")]
    Limit { path: String, msg: String },
}

/// Parses cnet's `key=value` comments (values plain or quoted, see
/// [`crate::text`]).
pub fn parse_labels(comment: &str) -> BTreeMap<String, String> {
    crate::text::parse_labels(comment)
}

/// Reads a whole file. A truncated or corrupt tail (a capture that was killed)
/// ends the read with `Malformed`, keeping what came before in `partial`.
pub fn read_file(path: &Path) -> Result<CaptureFile, (ReadError, CaptureFile)> {
    let mut packets = Vec::new();
    let mut out = CaptureFile::default();
    let r = scan(path, &mut out, &mut |_, p| {
        packets.push(p);
        true
    });
    out.packets = packets;
    match r {
        Ok(()) => Ok(out),
        Err(e) => Err((e, out)),
    }
}

/// Streams the packets of a file (`-` = standard input) to `f` as they are
/// read, with the interfaces known so far; `f` returns false to stop.
/// Returns the file's interfaces and statistics (without packets).
pub fn for_each_packet(
    path: &Path,
    mut f: impl FnMut(&CaptureFile, FilePacket) -> bool,
) -> Result<CaptureFile, (ReadError, CaptureFile)> {
    let mut out = CaptureFile::default();
    match scan(path, &mut out, &mut f) {
        Ok(()) => Ok(out),
        Err(e) => Err((e, out)),
    }
}

/// Like [`for_each_packet`] on any byte stream; `name` names it in errors.
pub fn for_each_packet_in(
    source: impl Read,
    name: &str,
    mut f: impl FnMut(&CaptureFile, FilePacket) -> bool,
) -> Result<CaptureFile, (ReadError, CaptureFile)> {
    let mut out = CaptureFile::default();
    match scan_stream(source, name.to_string(), &mut out, &mut f) {
        Ok(()) => Ok(out),
        Err(e) => Err((e, out)),
    }
}

type OnPacket<'a> = dyn FnMut(&CaptureFile, FilePacket) -> bool + 'a;

fn scan(path: &Path, out: &mut CaptureFile, f: &mut OnPacket<'_>) -> Result<(), ReadError> {
    let p = path.display().to_string();
    let source: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(File::open(path).map_err(|source| ReadError::Open { path: p.clone(), source })?)
    };
    scan_stream(source, p, out, f)
}

fn scan_stream(source: impl Read, p: String, out: &mut CaptureFile, f: &mut OnPacket<'_>) -> Result<(), ReadError> {
    let mut r = BufReader::with_capacity(1 << 16, source);
    // Peek at the magic without consuming it, so pipes work too.
    let magic: Vec<u8> = loop {
        match r.fill_buf() {
            Ok(b) => break b.iter().take(4).copied().collect(),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(ReadError::Open { path: p, source }),
        }
    };
    match magic[..] {
        [0x0a, 0x0d, 0x0d, 0x0a] => read_pcapng(r, &p, out, f),
        [0xd4, 0xc3, 0xb2, 0xa1] | [0xa1, 0xb2, 0xc3, 0xd4] | [0x4d, 0x3c, 0xb2, 0xa1] | [0xa1, 0xb2, 0x3c, 0x4d] => {
            read_pcap(r, &p, out, f)
        }
        _ => Err(ReadError::NotACapture { path: p, magic }),
    }
}

fn malformed(path: &str, e: impl std::fmt::Display) -> ReadError {
    ReadError::Malformed { path: path.to_string(), msg: e.to_string() }
}

/// Most interfaces one section may define. A capture file names the
/// interfaces it captured (cnet's kernel tables hold 8192, dumpcap writes
/// one per `-i`), so this is far above any real file; but every interface
/// stays in memory for the packets that refer to it, and without a bound
/// an endless stream of interface blocks (a hostile file on standard
/// input) grows memory without end.
pub const MAX_SECTION_INTERFACES: usize = 65536;

/// Most memory the interfaces and statistics of one file may take (their
/// names, descriptions and entries): interfaces of every section are kept,
/// since packets name them by a file-wide number. 65536 interfaces with
/// long descriptions fit; a stream of sections does not grow past it.
pub const MAX_KEPT_BYTES: usize = 256 << 20;

/// Largest block read: above Wireshark's largest packet (128 MiB, D-Bus)
/// with room for options. The block's bytes are read as they arrive, so a
/// header that claims more than the file holds costs no memory.
pub const MAX_BLOCK: usize = 130 << 20;

const SHB: u32 = 0x0a0d_0d0a;
const IDB: u32 = 1;
const OPB: u32 = 2;
const SPB: u32 = 3;
const ISB: u32 = 5;
const EPB: u32 = 6;

/// What the reader keeps of an interface to decode its packets.
struct IfParams {
    /// `if_tsresol`: 10^-n seconds, or 2^-n with the high bit set.
    tsresol: u8,
    /// `if_tsoffset`, seconds.
    tsoffset: i64,
    snaplen: u32,
}

/// Byte order of the current section.
#[derive(Clone, Copy)]
struct Order {
    big: bool,
}

impl Order {
    fn u16(self, b: &[u8], i: usize) -> u16 {
        let v = [b[i], b[i + 1]];
        if self.big { u16::from_be_bytes(v) } else { u16::from_le_bytes(v) }
    }
    fn u32(self, b: &[u8], i: usize) -> u32 {
        let v = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if self.big { u32::from_be_bytes(v) } else { u32::from_le_bytes(v) }
    }
    fn u64(self, b: &[u8], i: usize) -> u64 {
        let v = [b[i], b[i + 1], b[i + 2], b[i + 3], b[i + 4], b[i + 5], b[i + 6], b[i + 7]];
        if self.big { u64::from_be_bytes(v) } else { u64::from_le_bytes(v) }
    }
}

/// Calls `f(code, value)` for each option in `b` (up to `opt_endofopt`).
fn for_each_option<'a>(mut b: &'a [u8], order: Order, mut f: impl FnMut(u16, &'a [u8])) -> Result<(), String> {
    while b.len() >= 4 {
        let (code, len) = (order.u16(b, 0), usize::from(order.u16(b, 2)));
        if code == 0 {
            break;
        }
        let value = b.get(4..4 + len).ok_or_else(|| format!("option {code} of {len} bytes runs past its block"))?;
        f(code, value);
        b = b.get(4 + len.next_multiple_of(4)..).unwrap_or_default();
    }
    Ok(())
}

/// Option text as written, with invalid UTF-8 replaced (U+FFFD), as
/// Wireshark reads it: one damaged string must not cost the file.
fn text(value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
}

/// A timestamp in the interface's resolution, as nanoseconds since the epoch.
fn timestamp_ns(raw: u64, p: &IfParams) -> u64 {
    let raw = u128::from(raw);
    let e = u32::from(p.tsresol & 0x7f);
    let ns = if p.tsresol & 0x80 != 0 {
        (raw * 1_000_000_000) >> e.min(127)
    } else if e <= 9 {
        raw * 10u128.pow(9 - e)
    } else {
        10u128.checked_pow(e - 9).map_or(0, |d| raw / d)
    };
    let ns = ns as i128 + i128::from(p.tsoffset) * 1_000_000_000;
    ns.clamp(0, i128::from(u64::MAX)) as u64
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads pcapng block by block (the format is simple, and reading it here
/// keeps every bound and every lossy decoding under cnet's control).
fn read_pcapng<R: Read>(mut r: R, path: &str, out: &mut CaptureFile, f: &mut OnPacket<'_>) -> Result<(), ReadError> {
    let io = |e: std::io::Error| malformed(path, format!("cannot read: {e}"));
    let limit = |msg: String| ReadError::Limit { path: path.to_string(), msg };
    let mut order = Order { big: false };
    // Interfaces of the current section; packets number them from 0.
    let mut section: Option<Vec<IfParams>> = None;
    let mut section_base = 0u32;
    let mut kept = out.interfaces.len() * std::mem::size_of::<FileInterface>();
    let mut body = Vec::new();
    loop {
        let mut head = [0u8; 12];
        match read_full(&mut r, &mut head[..8]).map_err(io)? {
            0 => return Ok(()),
            8 => {}
            _ => return Err(malformed(path, "the file ends inside a block header")),
        }
        let kind = order.u32(&head, 0);
        let mut have = 0;
        if kind == SHB {
            // The section's byte order comes from its byte-order magic.
            if read_full(&mut r, &mut head[8..12]).map_err(io)? < 4 {
                return Err(malformed(path, "the file ends inside a section header"));
            }
            order = match head[8..12] {
                [0x1a, 0x2b, 0x3c, 0x4d] => Order { big: true },
                [0x4d, 0x3c, 0x2b, 0x1a] => Order { big: false },
                _ => {
                    let m = &head[8..12];
                    return Err(malformed(path, format!("section header with byte-order magic {m:02x?}")));
                }
            };
            have = 4;
        }
        let no_section = || malformed(path, format!("block of type {kind:#x} before any section header"));
        if kind != SHB && section.is_none() {
            return Err(no_section());
        }
        let len = order.u32(&head, 4) as usize;
        if len < 12 + have || !len.is_multiple_of(4) {
            return Err(malformed(path, format!("block of type {kind:#x} has an invalid length of {len} bytes")));
        }
        if len > MAX_BLOCK {
            return Err(limit(format!(
                "a block of {len} bytes (type {kind:#x}) is larger than cnet reads ({MAX_BLOCK} bytes)"
            )));
        }
        body.clear();
        body.extend_from_slice(&head[8..8 + have]);
        (&mut r).take((len - 8 - have) as u64).read_to_end(&mut body).map_err(io)?;
        if body.len() != len - 8 {
            return Err(malformed(path, "the file ends inside a block"));
        }
        let trailer = order.u32(&body, len - 12);
        if trailer as usize != len {
            return Err(malformed(
                path,
                format!("block of type {kind:#x}: length {len} at its start, {trailer} at its end"),
            ));
        }
        let b = &body[..len - 12];
        let short = || malformed(path, format!("block of type {kind:#x} is too short ({len} bytes)"));
        match kind {
            SHB => {
                if b.len() < 16 {
                    return Err(short());
                }
                let major = order.u16(b, 4);
                if major != 1 {
                    return Err(malformed(path, format!("pcapng version {major} is not supported (only 1.x)")));
                }
                section = Some(Vec::new());
                section_base = out.interfaces.len() as u32;
            }
            IDB => {
                let Some(ifaces) = section.as_mut() else { return Err(no_section()) };
                if b.len() < 8 {
                    return Err(short());
                }
                if ifaces.len() >= MAX_SECTION_INTERFACES {
                    return Err(limit(format!(
                        "more than {MAX_SECTION_INTERFACES} interfaces in one section, more than any capture \
                         writes; cnet stops here, as it keeps every interface in memory"
                    )));
                }
                let mut iface = FileInterface {
                    linktype: u32::from(order.u16(b, 0)),
                    snaplen: order.u32(b, 4),
                    ..Default::default()
                };
                let mut p = IfParams { tsresol: 6, tsoffset: 0, snaplen: order.u32(b, 4) };
                for_each_option(&b[8..], order, |code, v| match code {
                    2 => iface.name = text(v),
                    3 => iface.description = text(v),
                    9 if !v.is_empty() => p.tsresol = v[0],
                    14 if v.len() == 8 => p.tsoffset = order.u64(v, 0) as i64,
                    _ => {}
                })
                .map_err(|e| malformed(path, e))?;
                kept += std::mem::size_of::<FileInterface>() + iface.name.len() + iface.description.len();
                if kept > MAX_KEPT_BYTES {
                    return Err(limit(format!(
                        "the file's interfaces take more than {} MiB; cnet stops here, as it keeps every \
                         interface in memory",
                        MAX_KEPT_BYTES >> 20
                    )));
                }
                ifaces.push(p);
                out.interfaces.push(iface);
            }
            EPB | OPB => {
                let Some(ifaces) = section.as_ref() else { return Err(no_section()) };
                if b.len() < 20 {
                    return Err(short());
                }
                let id = if kind == EPB { order.u32(b, 0) } else { u32::from(order.u16(b, 0)) };
                let Some(p) = ifaces.get(id as usize) else {
                    return Err(malformed(
                        path,
                        format!("a packet names interface {id}, but its section has {} interfaces", ifaces.len()),
                    ));
                };
                let ts = (u64::from(order.u32(b, 4)) << 32) | u64::from(order.u32(b, 8));
                let caplen = order.u32(b, 12) as usize;
                let data = b.get(20..20 + caplen).ok_or_else(|| {
                    malformed(path, format!("a packet of {caplen} captured bytes runs past its block"))
                })?;
                let mut direction = None;
                let mut comment = None;
                let opts = b.get(20 + caplen.next_multiple_of(4)..).unwrap_or_default();
                for_each_option(opts, order, |code, v| match code {
                    1 => comment = Some(text(v)),
                    2 if v.len() == 4 => {
                        direction = match order.u32(v, 0) & 0b11 {
                            0b01 => Some(Direction::In),
                            0b10 => Some(Direction::Out),
                            _ => None,
                        }
                    }
                    _ => {}
                })
                .map_err(|e| malformed(path, e))?;
                let labels = comment.as_deref().map(parse_labels).unwrap_or_default();
                let pkt = FilePacket {
                    ts_ns: timestamp_ns(ts, p),
                    interface: section_base + id,
                    orig_len: order.u32(b, 16),
                    data: data.to_vec(),
                    direction,
                    comment,
                    labels,
                };
                if !f(out, pkt) {
                    return Ok(());
                }
            }
            SPB => {
                if b.len() < 4 {
                    return Err(short());
                }
                // No interface id: SPBs belong to the section's first interface.
                let orig_len = order.u32(b, 0);
                let snaplen = section.as_ref().and_then(|s| s.first()).map_or(0, |p| p.snaplen);
                let mut caplen = (orig_len as usize).min(b.len() - 4);
                if snaplen > 0 {
                    caplen = caplen.min(snaplen as usize);
                }
                let pkt = FilePacket {
                    ts_ns: 0,
                    interface: section_base,
                    orig_len,
                    data: b[4..4 + caplen].to_vec(),
                    direction: None,
                    comment: None,
                    labels: BTreeMap::new(),
                };
                if !f(out, pkt) {
                    return Ok(());
                }
            }
            ISB => {
                if b.len() < 12 {
                    return Err(short());
                }
                let mut s = FileStats { interface: section_base + order.u32(b, 0), ..Default::default() };
                for_each_option(&b[12..], order, |code, v| {
                    let Some(v) = (v.len() == 8).then(|| order.u64(v, 0)) else { return };
                    match code {
                        4 => s.ifrecv = Some(v),
                        5 => s.ifdrop = Some(v),
                        6 => s.filter_accept = Some(v),
                        7 => s.osdrop = Some(v),
                        8 => s.usrdeliv = Some(v),
                        _ => {}
                    }
                })
                .map_err(|e| malformed(path, e))?;
                kept += std::mem::size_of::<FileStats>();
                if kept > MAX_KEPT_BYTES {
                    return Err(limit(format!(
                        "the file's interfaces and statistics take more than {} MiB; cnet stops here",
                        MAX_KEPT_BYTES >> 20
                    )));
                }
                out.stats.push(s);
            }
            _ => {}
        }
    }
}

fn read_pcap<R: Read>(r: R, path: &str, out: &mut CaptureFile, f: &mut OnPacket<'_>) -> Result<(), ReadError> {
    let mut reader = PcapReader::new(r).map_err(|e| malformed(path, e))?;
    let header = reader.header();
    out.interfaces.push(FileInterface {
        linktype: u32::from(header.datalink),
        snaplen: header.snaplen,
        ..Default::default()
    });
    while let Some(p) = reader.next_packet() {
        let p = p.map_err(|e| malformed(path, e))?;
        let pkt = FilePacket {
            ts_ns: p.timestamp().as_nanos() as u64,
            interface: 0,
            orig_len: p.orig_len(),
            data: p.data().to_vec(),
            direction: None,
            comment: None,
            labels: BTreeMap::new(),
        };
        if !f(out, pkt) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Iface, IfaceStats, Packet};
    use crate::pipeline::sinks::Sink;
    use crate::pipeline::sinks::pcapng::PcapngSink;

    /// A pcapng block in the given byte order: type, length, body, length.
    fn block(big: bool, kind: u32, body: &[u8]) -> Vec<u8> {
        let u32b = |v: u32| if big { v.to_be_bytes() } else { v.to_le_bytes() };
        let len = 12 + body.len().next_multiple_of(4);
        let mut b = Vec::new();
        b.extend_from_slice(&u32b(kind));
        b.extend_from_slice(&u32b(len as u32));
        b.extend_from_slice(body);
        b.resize(8 + body.len().next_multiple_of(4), 0);
        b.extend_from_slice(&u32b(len as u32));
        b
    }

    fn option(big: bool, code: u16, value: &[u8]) -> Vec<u8> {
        let u16b = |v: u16| if big { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut o = [u16b(code), u16b(value.len() as u16)].concat();
        o.extend_from_slice(value);
        o.resize(4 + value.len().next_multiple_of(4), 0);
        o
    }

    fn shb(big: bool) -> Vec<u8> {
        let mut body =
            if big { vec![0x1a, 0x2b, 0x3c, 0x4d, 0, 1, 0, 0] } else { vec![0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0] };
        body.extend_from_slice(&[0xff; 8]);
        block(big, SHB, &body)
    }

    fn idb(big: bool, name: &[u8]) -> Vec<u8> {
        let mut body = if big { vec![0, 1, 0, 0, 0, 0, 0xff, 0xff] } else { vec![1, 0, 0, 0, 0xff, 0xff, 0, 0] };
        body.extend(option(big, 2, name));
        body.extend(option(big, 9, &[9]));
        body.extend([0; 4]);
        block(big, IDB, &body)
    }

    fn epb(big: bool, ts_ns: u64, data: &[u8], comment: &[u8]) -> Vec<u8> {
        let u32b = |v: u32| if big { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut body = Vec::new();
        for v in [0, (ts_ns >> 32) as u32, ts_ns as u32, data.len() as u32, data.len() as u32] {
            body.extend_from_slice(&u32b(v));
        }
        body.extend_from_slice(data);
        body.resize(20 + data.len().next_multiple_of(4), 0);
        body.extend(option(big, 2, &u32b(0b10)));
        body.extend(option(big, 1, comment));
        body.extend([0; 4]);
        block(big, EPB, &body)
    }

    fn read(bytes: &[u8]) -> (Result<CaptureFile, ReadError>, Vec<FilePacket>) {
        let mut packets = Vec::new();
        let r = for_each_packet_in(bytes, "test", |_, p| {
            packets.push(p);
            true
        });
        (r.map_err(|(e, _)| e), packets)
    }

    #[test]
    fn invalid_utf8_comment_costs_nothing_but_its_bytes() {
        for big in [false, true] {
            let mut f = shb(big);
            f.extend(idb(big, b"veth\xff7"));
            f.extend(epb(big, 1_000_000_001, &[1, 2, 3], b"ns=blue dir=out"));
            f.extend(epb(big, 2, &[4], b"ns=\xc3\x28bad \xff dir=in"));
            f.extend(epb(big, 3, &[5, 6], b"ns=blue"));
            let (r, packets) = read(&f);
            let file = r.unwrap();
            assert_eq!(packets.len(), 3, "every packet after the damaged comment is read");
            assert_eq!(file.interfaces[0].name, "veth\u{fffd}7");
            assert_eq!(packets[0].ts_ns, 1_000_000_001);
            assert_eq!(packets[0].direction, Some(Direction::Out));
            assert_eq!(packets[1].labels["ns"], "\u{fffd}(bad");
            assert_eq!(packets[2].data, [5, 6]);
        }
    }

    #[test]
    fn endless_interface_blocks_end_with_a_clear_error() {
        let mut f = shb(false);
        let one = idb(false, b"x");
        for _ in 0..MAX_SECTION_INTERFACES + 5 {
            f.extend_from_slice(&one);
        }
        let (r, _) = read(&f);
        let e = r.unwrap_err();
        assert!(matches!(e, ReadError::Limit { .. }), "{e}");
        assert!(e.to_string().contains("more than 65536 interfaces in one section"), "{e}");
        // A new section starts a new count.
        let mut f = shb(false);
        for _ in 0..3 {
            f.extend(shb(false));
            for _ in 0..MAX_SECTION_INTERFACES / 2 {
                f.extend_from_slice(&one);
            }
        }
        f.extend(epb(false, 1, &[1], b""));
        let (r, packets) = read(&f);
        assert_eq!(r.unwrap().interfaces.len(), 3 * MAX_SECTION_INTERFACES / 2);
        assert_eq!(packets[0].interface, MAX_SECTION_INTERFACES as u32);
    }

    #[test]
    fn damaged_blocks_are_errors_not_panics() {
        let mut f = shb(false);
        f.extend(idb(false, b"x"));
        let good = f.len();
        f.extend(epb(false, 1, &[1, 2, 3, 4], b"c"));
        // Cut anywhere inside the last block, or lie about lengths.
        for cut in good + 1..f.len() {
            let (r, packets) = read(&f[..cut]);
            assert!(matches!(r, Err(ReadError::Malformed { .. })), "cut at {cut}");
            assert!(packets.is_empty());
        }
        let mut bad = f.clone();
        bad[good + 20..good + 24].copy_from_slice(&1000u32.to_le_bytes()); // caplen
        assert!(matches!(read(&bad).0, Err(ReadError::Malformed { .. })));
        let mut bad = f.clone();
        bad[good + 8..good + 12].copy_from_slice(&7u32.to_le_bytes()); // interface id
        assert!(read(&bad).0.unwrap_err().to_string().contains("interface 7"));
        let mut bad = f.clone();
        bad[good + 4..good + 8].copy_from_slice(&u32::MAX.to_le_bytes() /* not a multiple of 4 */);
        assert!(matches!(read(&bad).0, Err(ReadError::Malformed { .. })));
        let mut bad = f;
        bad[good + 4..good + 8].copy_from_slice(&(MAX_BLOCK as u32 + 4).to_le_bytes());
        assert!(matches!(read(&bad).0, Err(ReadError::Limit { .. })));
    }

    proptest::proptest! {
        #[test]
        fn reader_never_panics(tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let mut f = shb(false);
            f.extend(idb(false, b"x"));
            f.extend(tail);
            let _ = read(&f);
        }
    }

    #[test]
    fn hostile_labels_read_back_exactly() {
        let mut ep = crate::pipeline::sinks::pcapng::tests::endpoint();
        let names = ["evil dir=in ns=blue", "a\"b\\c", "\x1b[2J\r\nfake", "", "x=y", "ünï cödé\u{202e}"];
        let mut sink = PcapngSink::new(Vec::new(), "Linux test").unwrap();
        for (i, name) in names.iter().enumerate() {
            ep.label.owner = format!("netns:{name}");
            ep.label.iface = name.to_string();
            ep.label.comment_fields = vec![("ns".into(), name.to_string()), ("netns".into(), "42".into())];
            let iface = Iface::new(i as u32, ep.clone(), 96);
            sink.add_interface(&iface).unwrap();
            sink.packet(&iface, &Packet { ts_ns: 1, dir: Direction::In, orig_len: 1, data: &[0] }).unwrap();
        }
        sink.finish(&vec![IfaceStats::default(); names.len()]).unwrap();
        let (r, packets) = read(sink.get_ref());
        let file = r.unwrap();
        assert_eq!(packets.len(), names.len());
        for (p, name) in packets.iter().zip(names) {
            let want: BTreeMap<String, String> = [("ns", name), ("netns", "42"), ("iface", name), ("dir", "in")]
                .map(|(k, v)| (k.into(), v.into()))
                .into();
            assert_eq!(p.labels, want);
            let iface = &file.interfaces[p.interface as usize];
            assert_eq!(crate::cmd::read::owner(iface), (!name.is_empty()).then(|| format!("netns:{name}")));
        }
    }
}
