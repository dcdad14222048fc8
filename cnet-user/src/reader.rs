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

use pcap_file::DataLink;
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::PcapNgReader;
use pcap_file::pcapng::blocks::Block;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::blocks::interface_statistics::InterfaceStatisticsOption;
use pcap_file::pcapng::blocks::opt_common::CommonOption;

use crate::sinks::Direction;

/// One interface of a capture file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileInterface {
    pub name: String,
    pub description: String,
    pub linktype: u32,
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

fn read_pcapng<R: Read>(r: R, path: &str, out: &mut CaptureFile, f: &mut OnPacket<'_>) -> Result<(), ReadError> {
    let mut reader = PcapNgReader::new(r).map_err(|e| malformed(path, e))?;
    // Interface ids restart in each section; keep a per-section base.
    let mut section_base = 0u32;
    loop {
        let Some(block) = reader.next_block() else { break };
        let (block, _state) = block.map_err(|e| malformed(path, e))?;
        match block {
            Block::SectionHeader(_) => section_base = out.interfaces.len() as u32,
            Block::InterfaceDescription(idb) => {
                let mut iface = FileInterface { linktype: u32::from(idb.linktype), ..Default::default() };
                for o in &idb.options {
                    match o {
                        InterfaceDescriptionOption::IfName(n) => iface.name = n.to_string(),
                        InterfaceDescriptionOption::IfDescription(d) => iface.description = d.to_string(),
                        _ => {}
                    }
                }
                out.interfaces.push(iface);
            }
            Block::EnhancedPacket(epb) => {
                let mut direction = None;
                let mut comment = None;
                for o in &epb.options {
                    match o {
                        EnhancedPacketOption::Flags(f) => {
                            direction = match f & 0b11 {
                                0b01 => Some(Direction::In),
                                0b10 => Some(Direction::Out),
                                _ => None,
                            }
                        }
                        EnhancedPacketOption::Common(CommonOption::Comment(c)) => comment = Some(c.to_string()),
                        _ => {}
                    }
                }
                let labels = comment.as_deref().map(parse_labels).unwrap_or_default();
                let pkt = FilePacket {
                    ts_ns: epb.timestamp.as_nanos() as u64,
                    interface: section_base + epb.interface_id,
                    orig_len: epb.original_len,
                    data: epb.data.to_vec(),
                    direction,
                    comment,
                    labels,
                };
                if !f(out, pkt) {
                    return Ok(());
                }
            }
            Block::SimplePacket(spb) => {
                // No interface id: SPBs belong to the section's first interface.
                let pkt = FilePacket {
                    ts_ns: 0,
                    interface: section_base,
                    orig_len: spb.original_len,
                    data: spb.data.to_vec(),
                    direction: None,
                    comment: None,
                    labels: BTreeMap::new(),
                };
                if !f(out, pkt) {
                    return Ok(());
                }
            }
            Block::InterfaceStatistics(isb) => {
                let mut s = FileStats { interface: section_base + isb.interface_id, ..Default::default() };
                for o in &isb.options {
                    match o {
                        InterfaceStatisticsOption::IsbIfRecv(v) => s.ifrecv = Some(*v),
                        InterfaceStatisticsOption::IsbIfDrop(v) => s.ifdrop = Some(*v),
                        InterfaceStatisticsOption::IsbFilterAccept(v) => s.filter_accept = Some(*v),
                        InterfaceStatisticsOption::IsbOsDrop(v) => s.osdrop = Some(*v),
                        InterfaceStatisticsOption::IsbUsrDeliv(v) => s.usrdeliv = Some(*v),
                        _ => {}
                    }
                }
                out.stats.push(s);
            }
            _ => {}
        }
    }
    Ok(())
}

fn read_pcap<R: Read>(r: R, path: &str, out: &mut CaptureFile, f: &mut OnPacket<'_>) -> Result<(), ReadError> {
    let mut reader = PcapReader::new(r).map_err(|e| malformed(path, e))?;
    let header = reader.header();
    out.interfaces.push(FileInterface { linktype: u32::from(header.datalink), ..Default::default() });
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

/// Whether a file's link type is Ethernet (else raw IP for cnet's purposes).
pub fn is_ethernet(linktype: u32) -> bool {
    linktype == u32::from(DataLink::ETHERNET)
}
