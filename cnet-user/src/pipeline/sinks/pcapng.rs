//! pcapng output: SHB, one IDB per captured interface, EPBs with direction
//! flags and a label comment, and an ISB per interface at the end.
//!
//! The section, interface and statistics blocks go through the pcap-file
//! crate. Enhanced Packet Blocks, the hot path, are encoded here into the
//! same buffer without any per-packet allocation.
//!
//! Blocks are encoded into memory and reach the output only whole, in large
//! writes: a cnet killed at any moment leaves a file that ends on a block
//! boundary (see also [`super::output::BlockFile`] for failed writes).

use std::borrow::Cow;
use std::io::{self, IoSlice, Write};
use std::time::Duration;

use pcap_file::Endianness;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption, InterfaceTsResolution,
};
use pcap_file::pcapng::blocks::interface_statistics::{InterfaceStatisticsBlock, InterfaceStatisticsOption};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};

use super::Sink;
use crate::codec::link::Link;
use crate::model::{Direction, Iface, IfaceStats, Packet};

/// Longest value of one pcapng option: its length field has 16 bits.
pub const MAX_OPTION: usize = u16::MAX as usize;

/// Text bounded to one option's length, cut at a character boundary with a
/// marker (`…[truncated]`): a longer value would overflow the length field,
/// and a reader would then take the rest of the value for more options or
/// blocks (or refuse the file).
fn bound_text(s: &str) -> Cow<'_, str> {
    crate::text::truncate(s, MAX_OPTION)
}

/// [`bound_text`] for option bytes that hold UTF-8 text (the comment).
fn bound_bytes(b: &[u8]) -> Cow<'_, [u8]> {
    if b.len() <= MAX_OPTION {
        return Cow::Borrowed(b);
    }
    let marker = crate::text::TRUNCATED.as_bytes();
    let mut end = MAX_OPTION - marker.len();
    // Back to the start of a UTF-8 character (not a continuation byte).
    while end > 0 && b[end] & 0xc0 == 0x80 {
        end -= 1;
    }
    Cow::Owned([&b[..end], marker].concat())
}

/// Longest expression an `if_filter` option holds: an option's value is at
/// most 65535 bytes, the first of them the filter type.
pub const IF_FILTER_MAX: usize = 65534;

/// Value of the `if_filter` option for a libpcap filter string: a type byte
/// (0 = libpcap filter string) followed by the expression, or, for an
/// expression longer than an option holds, its start and a note that says
/// it is cut (the capture itself uses the whole expression).
pub fn if_filter_value(expression: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + expression.len().min(IF_FILTER_MAX));
    v.push(0);
    if expression.len() <= IF_FILTER_MAX {
        v.extend_from_slice(expression.as_bytes());
        return v;
    }
    let note =
        format!(" [cut by cnet: the expression has {} bytes, a pcapng option holds {IF_FILTER_MAX}]", expression.len());
    let mut end = IF_FILTER_MAX - note.len();
    while !expression.is_char_boundary(end) {
        end -= 1;
    }
    v.extend_from_slice(&expression.as_bytes()[..end]);
    v.extend_from_slice(note.as_bytes());
    v
}

pub struct PcapngSink<W: Write> {
    /// Encodes blocks into memory.
    writer: PcapNgWriter<Vec<u8>>,
    out: W,
    /// Buffered bytes that trigger a write to `out`.
    batch: usize,
    /// Bytes already handed to `out`.
    written: u64,
    /// Per interface id, the EPB option bytes (flags, comment, end of
    /// options) for [inbound, outbound], encoded once when the interface is
    /// added instead of for every packet.
    epb_options: Vec<[Vec<u8>; 2]>,
}

/// Default size of one write to the output.
pub const BATCH_BYTES: usize = 1 << 20;

fn to_io(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Maps pcap-file's write errors back to the underlying I/O error where there
/// is one, so a closed pipe stays recognisable as `BrokenPipe`.
fn write_err(e: pcap_file::pcapng::PcapNgWriteError) -> io::Error {
    use std::error::Error as _;
    let mut src = e.source();
    while let Some(s) = src {
        if let Some(ioe) = s.downcast_ref::<io::Error>() {
            return io::Error::new(ioe.kind(), e.to_string());
        }
        src = s.source();
    }
    to_io(e)
}

impl<W: Write> PcapngSink<W> {
    /// Writes the section header. `os` is recorded as `shb_os`.
    pub fn new(out: W, os: &str) -> io::Result<Self> {
        let shb = SectionHeaderBlock {
            endianness: if cfg!(target_endian = "big") { Endianness::Big } else { Endianness::Little },
            major_version: 1,
            minor_version: 0,
            section_length: -1,
            options: vec![
                // The same words as `cnet --version`: which build, which eBPF object.
                SectionHeaderOption::UserApplication(Cow::Owned(format!("cnet {}", crate::version::string()))),
                SectionHeaderOption::OS(Cow::Owned(bound_text(os).into_owned())),
            ],
        };
        let buf = Vec::with_capacity(BATCH_BYTES + 2 * 65536);
        let writer = PcapNgWriter::with_section_header(buf, shb).map_err(write_err)?;
        Ok(PcapngSink { writer, out, batch: BATCH_BYTES, written: 0, epb_options: Vec::new() })
    }

    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// Size of the section so far: bytes written out plus bytes buffered.
    pub fn len(&self) -> u64 {
        self.written + self.writer.get_ref().len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the buffered (whole) blocks to the output in one call.
    fn write_out(&mut self) -> io::Result<()> {
        let buf = self.writer.get_mut();
        if !buf.is_empty() {
            self.out.write_all(buf)?;
            self.written += buf.len() as u64;
            buf.clear();
        }
        Ok(())
    }

    fn maybe_write_out(&mut self) -> io::Result<()> {
        if self.writer.get_ref().len() >= self.batch { self.write_out() } else { Ok(()) }
    }

    /// Writes one packet, with `epb_packetid` when `packet_id` is given.
    pub fn packet_with_id(&mut self, iface: &Iface, pkt: &Packet<'_>, packet_id: Option<u64>) -> io::Result<()> {
        write_epb(
            self.writer.get_mut(),
            iface.id,
            pkt.ts_ns,
            pkt.orig_len,
            pkt.data,
            pkt.dir.epb_flags(),
            iface.comment(pkt.dir).as_bytes(),
            packet_id,
        )?;
        self.maybe_write_out()
    }
}

/// Writes the buffered blocks `buf` and one EPB whose packet bytes are
/// passed through from where they are (the ring buffer) in a single
/// `writev`, instead of being copied into the buffer first: for 64 KiB GSO
/// packets the copy costs more than the system call (tcpdump's stdio does
/// the same for large writes). Returns the bytes written.
fn write_through<W: Write>(
    out: &mut W,
    buf: &mut Vec<u8>,
    iface_id: u32,
    pkt: &Packet<'_>,
    options: &[u8],
) -> io::Result<u64> {
    const ZEROS: [u8; 3] = [0; 3];
    let data = pkt.data;
    let data_pad = (4 - data.len() % 4) % 4;
    let total = (28 + data.len() + data_pad + options.len() + 4) as u32;
    let head = epb_head(total, iface_id, pkt.ts_ns, pkt.orig_len, data.len() as u32);
    let trailer = total.to_ne_bytes();
    let mut bufs = [
        IoSlice::new(buf),
        IoSlice::new(&head),
        IoSlice::new(data),
        IoSlice::new(&ZEROS[..data_pad]),
        IoSlice::new(options),
        IoSlice::new(&trailer),
    ];
    write_all_vectored(out, &mut bufs)?;
    let n = buf.len() as u64 + total as u64;
    buf.clear();
    Ok(n)
}

/// Packets at least this large are written from where they are rather than
/// copied into the output buffer (see `write_through`).
const PASS_THROUGH_BYTES: usize = 16 * 1024;

/// `Write::write_all_vectored` (not stable yet).
fn write_all_vectored<W: Write>(out: &mut W, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match out.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// EPB options: `epb_flags`, an `opt_comment` unless `comment` is empty
/// (bounded to one option), and the end-of-options marker.
fn epb_options(flags: u32, comment: &[u8]) -> Vec<u8> {
    let comment = bound_bytes(comment);
    let mut v = Vec::with_capacity(16 + comment.len());
    v.extend_from_slice(&2u16.to_ne_bytes()); // epb_flags
    v.extend_from_slice(&4u16.to_ne_bytes());
    v.extend_from_slice(&flags.to_ne_bytes());
    if !comment.is_empty() {
        v.extend_from_slice(&1u16.to_ne_bytes()); // opt_comment
        v.extend_from_slice(&(comment.len() as u16).to_ne_bytes());
        v.extend_from_slice(&comment);
        v.resize(v.len().next_multiple_of(4), 0);
    }
    v.extend_from_slice(&[0; 4]); // opt_endofopt
    v
}

/// The fixed part of an Enhanced Packet Block (up to the packet bytes).
#[inline]
fn epb_head(total: u32, interface_id: u32, ts_ns: u64, orig_len: u32, cap_len: u32) -> [u8; 28] {
    let mut head = [0u8; 28];
    head[0..4].copy_from_slice(&6u32.to_ne_bytes());
    head[4..8].copy_from_slice(&total.to_ne_bytes());
    head[8..12].copy_from_slice(&interface_id.to_ne_bytes());
    head[12..16].copy_from_slice(&((ts_ns >> 32) as u32).to_ne_bytes());
    head[16..20].copy_from_slice(&(ts_ns as u32).to_ne_bytes());
    head[20..24].copy_from_slice(&cap_len.to_ne_bytes());
    head[24..28].copy_from_slice(&orig_len.to_ne_bytes());
    head
}

/// Appends an Enhanced Packet Block with already encoded `options` (see
/// [`epb_options`]) to `buf`: the per-packet path, five copies and no
/// per-packet encoding of the options.
#[inline]
fn push_epb(buf: &mut Vec<u8>, interface_id: u32, ts_ns: u64, orig_len: u32, data: &[u8], options: &[u8]) {
    assert!(options.len() >= 4, "EPB options end with opt_endofopt");
    let data_pad = (4 - data.len() % 4) % 4;
    let total = (28 + data.len() + data_pad + options.len() + 4) as u32;
    let head = epb_head(total, interface_id, ts_ns, orig_len, data.len() as u32);
    buf.reserve(total as usize);
    let len = buf.len();
    // One capacity check and straight copies (five `extend_from_slice`
    // calls cost a third of the encoding time for header-sized packets).
    // SAFETY: `reserve` made room for `total` bytes after `len`; the writes
    // below stay inside them: the four zero bytes written after the data
    // cover the padding (0–3 bytes) and are followed by at least the 4-byte
    // end-of-options marker and the 4-byte trailer, so they never pass the
    // end; every byte up to `len + total` is written before `set_len`.
    unsafe {
        let p = buf.as_mut_ptr().add(len);
        std::ptr::copy_nonoverlapping(head.as_ptr(), p, head.len());
        std::ptr::copy_nonoverlapping(data.as_ptr(), p.add(28), data.len());
        std::ptr::write_unaligned(p.add(28 + data.len()).cast::<u32>(), 0);
        let o = 28 + data.len() + data_pad;
        std::ptr::copy_nonoverlapping(options.as_ptr(), p.add(o), options.len());
        std::ptr::write_unaligned(p.add(o + options.len()).cast::<u32>(), total);
        buf.set_len(len + total as usize);
    }
}

/// Appends an Enhanced Packet Block to `out` in native byte order (the
/// section is written in native order too). `packet_id`, when given, becomes
/// `epb_packetid` (option 5): the same id on every copy of one packet seen on
/// several interfaces (Wireshark's `frame.packet_id`).
#[allow(clippy::too_many_arguments)]
pub fn write_epb<W: Write>(
    out: &mut W,
    interface_id: u32,
    ts_ns: u64,
    orig_len: u32,
    data: &[u8],
    flags: u32,
    comment: &[u8],
    packet_id: Option<u64>,
) -> io::Result<()> {
    const ZEROS: [u8; 4] = [0; 4];
    let comment = &*bound_bytes(comment);
    let pad = |n: usize| (4 - n % 4) % 4;
    let data_pad = pad(data.len());
    let comment_len = if comment.is_empty() { 0 } else { 4 + comment.len() + pad(comment.len()) };
    let packet_id_len = if packet_id.is_some() { 12 } else { 0 };
    // flags option (8) + comment option + packet id option + end of options (4)
    let options_len = 8 + comment_len + packet_id_len + 4;
    let total = 28 + data.len() + data_pad + options_len + 4;
    let mut head = [0u8; 28];
    head[0..4].copy_from_slice(&6u32.to_ne_bytes());
    head[4..8].copy_from_slice(&(total as u32).to_ne_bytes());
    head[8..12].copy_from_slice(&interface_id.to_ne_bytes());
    head[12..16].copy_from_slice(&((ts_ns >> 32) as u32).to_ne_bytes());
    head[16..20].copy_from_slice(&(ts_ns as u32).to_ne_bytes());
    head[20..24].copy_from_slice(&(data.len() as u32).to_ne_bytes());
    head[24..28].copy_from_slice(&orig_len.to_ne_bytes());
    out.write_all(&head)?;
    out.write_all(data)?;
    out.write_all(&ZEROS[..data_pad])?;
    let mut opt = [0u8; 8];
    opt[0..2].copy_from_slice(&2u16.to_ne_bytes()); // epb_flags
    opt[2..4].copy_from_slice(&4u16.to_ne_bytes());
    opt[4..8].copy_from_slice(&flags.to_ne_bytes());
    out.write_all(&opt)?;
    if !comment.is_empty() {
        let mut h = [0u8; 4];
        h[0..2].copy_from_slice(&1u16.to_ne_bytes()); // opt_comment
        h[2..4].copy_from_slice(&(comment.len() as u16).to_ne_bytes());
        out.write_all(&h)?;
        out.write_all(comment)?;
        out.write_all(&ZEROS[..pad(comment.len())])?;
    }
    if let Some(id) = packet_id {
        let mut o = [0u8; 12];
        o[0..2].copy_from_slice(&5u16.to_ne_bytes()); // epb_packetid
        o[2..4].copy_from_slice(&8u16.to_ne_bytes());
        o[4..12].copy_from_slice(&id.to_ne_bytes());
        out.write_all(&o)?;
    }
    out.write_all(&ZEROS)?; // opt_endofopt
    out.write_all(&(total as u32).to_ne_bytes())
}

impl<W: Write> Sink for PcapngSink<W> {
    fn add_interface(&mut self, iface: &Iface) -> io::Result<()> {
        let ep = &iface.endpoint;
        let mut options = vec![
            InterfaceDescriptionOption::IfName(Cow::Owned(bound_text(&ep.ifname).into_owned())),
            InterfaceDescriptionOption::IfDescription(Cow::Owned(bound_text(&ep.description()).into_owned())),
            InterfaceDescriptionOption::IfTsResol(InterfaceTsResolution::NANO),
        ];
        if let Some(expr) = &iface.filter {
            options.push(InterfaceDescriptionOption::IfFilter(Cow::Owned(if_filter_value(expr))));
        }
        options.push(InterfaceDescriptionOption::IfOs(Cow::Borrowed("Linux")));
        let idb = InterfaceDescriptionBlock {
            linktype: Link::of_interface(ep.link_type).datalink(),
            snaplen: iface.snaplen,
            options,
        };
        self.writer.write_pcapng_block(idb).map_err(write_err)?;
        let id = iface.id as usize;
        if self.epb_options.len() <= id {
            self.epb_options.resize_with(id + 1, Default::default);
        }
        self.epb_options[id] =
            [Direction::In, Direction::Out].map(|d| epb_options(d.epb_flags(), iface.comment(d).as_bytes()));
        self.maybe_write_out()
    }

    fn packet(&mut self, iface: &Iface, pkt: &Packet<'_>) -> io::Result<()> {
        if let Some(options) = self.epb_options.get(iface.id as usize).filter(|o| !o[0].is_empty()) {
            let options = &options[(pkt.dir == Direction::Out) as usize];
            if pkt.data.len() >= PASS_THROUGH_BYTES {
                self.written += write_through(&mut self.out, self.writer.get_mut(), iface.id, pkt, options)?;
                return Ok(());
            }
            push_epb(self.writer.get_mut(), iface.id, pkt.ts_ns, pkt.orig_len, pkt.data, options);
            return self.maybe_write_out();
        }
        self.packet_with_id(iface, pkt, None)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_out()?;
        self.out.flush()
    }

    fn finish(&mut self, stats: &[IfaceStats]) -> io::Result<()> {
        for (id, s) in stats.iter().enumerate() {
            let options = vec![
                InterfaceStatisticsOption::IsbStartTime(Duration::from_nanos(s.start_ns)),
                InterfaceStatisticsOption::IsbEndTime(Duration::from_nanos(s.end_ns)),
                InterfaceStatisticsOption::IsbIfRecv(s.kernel.seen),
                // Packets the ring buffer had no room for: what tcpdump
                // calls "dropped by kernel" and dumpcap records here.
                InterfaceStatisticsOption::IsbIfDrop(s.kernel.lost),
                InterfaceStatisticsOption::IsbFilterAccept(s.kernel.matched),
                InterfaceStatisticsOption::IsbOsDrop(0),
                InterfaceStatisticsOption::IsbUsrDeliv(s.delivered),
            ];
            self.write_isb(id as u32, s.end_ns, options)?;
        }
        self.flush()
    }
}

impl<W: Write> PcapngSink<W> {
    /// Closes one file of a rotated capture: an ISB per interface with the
    /// period the file covers and the packets it holds (kernel counters
    /// are only known at the end of the capture).
    pub fn finish_part(&mut self, start_ns: u64, end_ns: u64, delivered: &[u64]) -> io::Result<()> {
        for (id, n) in delivered.iter().enumerate() {
            let options = vec![
                InterfaceStatisticsOption::IsbStartTime(Duration::from_nanos(start_ns)),
                InterfaceStatisticsOption::IsbEndTime(Duration::from_nanos(end_ns)),
                InterfaceStatisticsOption::IsbUsrDeliv(*n),
            ];
            self.write_isb(id as u32, end_ns, options)?;
        }
        self.flush()
    }

    fn write_isb(&mut self, id: u32, ts_ns: u64, options: Vec<InterfaceStatisticsOption<'static>>) -> io::Result<()> {
        let isb = InterfaceStatisticsBlock { interface_id: id, timestamp: Duration::from_nanos(ts_ns), options };
        self.writer.write_pcapng_block(isb).map_err(write_err)?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::Direction;
    use crate::model::Endpoint;
    use pcap_file::pcapng::{Block, PcapNgReader};

    /// A host veth of a netns `blue`, for sink tests.
    pub(crate) fn endpoint() -> Endpoint {
        let mut ep = Endpoint::veth_peer(7, "veth7", "netns:blue", "eth0", 4026532000);
        ep.label.comment_fields = vec![("ns".into(), "blue".into())];
        ep
    }

    #[test]
    fn written_file_reads_back_with_pcap_file() {
        let iface = Iface::new(0, endpoint(), 65535);
        let mut sink = PcapngSink::new(Vec::new(), "Linux test").unwrap();
        sink.add_interface(&iface).unwrap();
        // 20001 and 65535 bytes go through `write_through`.
        for (i, len) in [0usize, 1, 3, 4, 61, 96, 20001, 65535].into_iter().enumerate() {
            let data: Vec<u8> = (0..len).map(|b| b as u8).collect();
            let pkt = Packet {
                ts_ns: 1_700_000_000_123_456_789 + i as u64,
                dir: Direction::Out,
                orig_len: len.max(1500) as u32,
                data: &data,
            };
            sink.packet(&iface, &pkt).unwrap();
        }
        sink.finish(&[IfaceStats::default()]).unwrap();
        let bytes = sink.get_ref().clone();
        assert_eq!(bytes.len() % 4, 0);

        let mut reader = PcapNgReader::new(&bytes[..]).unwrap();
        let mut epbs = 0;
        while let Some(block) = reader.next_block() {
            let (block, _) = block.unwrap();
            if let Block::EnhancedPacket(epb) = block {
                assert_eq!(epb.original_len as usize, epb.data.len().max(1500));
                assert!(epb.data.iter().enumerate().all(|(i, b)| *b == i as u8));
                assert_eq!(epb.timestamp.as_nanos() as u64, 1_700_000_000_123_456_789 + epbs);
                assert_eq!(epb.interface_id, 0);
                assert!(format!("{:?}", epb.options).contains("ns=blue iface=eth0 dir=out"));
                epbs += 1;
            }
        }
        assert_eq!(epbs, 8);
    }

    /// Every option of every block, as `(block type, option code, value)`,
    /// walked by hand: what any reader sees, whatever pcap-file accepts.
    fn options_of(bytes: &[u8]) -> Vec<(u32, u16, Vec<u8>)> {
        let u32_at = |b: &[u8], i: usize| u32::from_ne_bytes(b[i..i + 4].try_into().unwrap());
        let u16_at = |b: &[u8], i: usize| u16::from_ne_bytes(b[i..i + 2].try_into().unwrap());
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let (kind, len) = (u32_at(bytes, at), u32_at(bytes, at + 4) as usize);
            assert_eq!(u32_at(bytes, at + len - 4) as usize, len, "block trailer");
            let body = &bytes[at + 8..at + len - 4];
            let mut o = match kind {
                0x0a0d0d0a => 16,
                1 => 8,
                6 => 20 + (u32_at(body, 12) as usize).next_multiple_of(4),
                5 => 12,
                _ => body.len(),
            };
            while o + 4 <= body.len() {
                let (code, n) = (u16_at(body, o), u16_at(body, o + 2) as usize);
                if code == 0 {
                    break;
                }
                out.push((kind, code, body[o + 4..o + 4 + n].to_vec()));
                o += 4 + n.next_multiple_of(4);
            }
            at += len;
        }
        out
    }

    #[test]
    fn overlong_options_are_cut_never_wrapped() {
        // A comment of 65536 + k bytes used to be written with its length
        // modulo 65536: readers took the comment's tail for more options
        // (a forged comment); at 70 000 bytes no reader could read the file.
        for len in [65535usize, 65536, 65536 + 40, 70_000, 200_000] {
            let forged = "\0\0\x01\0\x0bns=blue dir=in";
            let long = format!("{}{forged}", "é".repeat((len - forged.len()) / 2 + 1));
            let mut ep = endpoint();
            ep.label.addrs = vec![long.clone()];
            ep.ifname = long.clone();
            let mut iface = Iface::new(0, ep, 96).with_filter(Some(&long));
            iface.comment_out = long.clone();
            let mut sink = PcapngSink::new(Vec::new(), &long).unwrap();
            sink.add_interface(&iface).unwrap();
            let data = [7u8; 60];
            sink.packet(&iface, &Packet { ts_ns: 1, dir: Direction::Out, orig_len: 60, data: &data }).unwrap();
            sink.packet_with_id(&iface, &Packet { ts_ns: 2, dir: Direction::Out, orig_len: 60, data: &data }, Some(9))
                .unwrap();
            sink.finish(&[IfaceStats::default()]).unwrap();
            let bytes = sink.get_ref().clone();
            let options = options_of(&bytes);
            for (kind, code, value) in &options {
                assert!(value.len() <= MAX_OPTION, "block {kind} option {code}: {} bytes", value.len());
                let text = if *kind == 1 && *code == 11 { &value[1..] } else { &value[..] };
                if let Ok(t) = std::str::from_utf8(text)
                    && t.len() >= long.len().min(MAX_OPTION - 1)
                {
                    // if_filter says in its own words that the expression is
                    // cut (see if_filter_value); other text ends in the marker.
                    let marker =
                        if *kind == 1 && *code == 11 { "a pcapng option holds 65534]" } else { crate::text::TRUNCATED };
                    assert!(long.len() <= MAX_OPTION || t.ends_with(marker), "{len}: {code}");
                }
            }
            let comments: Vec<_> = options.iter().filter(|(k, c, _)| *k == 6 && *c == 1).collect();
            assert_eq!(comments.len(), 2, "{len}: one comment per packet, nothing forged");
            let mut reader = PcapNgReader::new(&bytes[..]).unwrap();
            let mut epbs = 0;
            while let Some(block) = reader.next_block() {
                if let Block::EnhancedPacket(epb) = block.unwrap().0 {
                    assert_eq!(&epb.data[..], &data);
                    epbs += 1;
                }
            }
            assert_eq!(epbs, 2, "{len}");
        }
    }

    #[test]
    fn hostile_names_do_not_add_labels() {
        let mut ep = endpoint();
        ep.label.comment_fields = vec![("ns".into(), "evil dir=in ns=blue".into())];
        ep.label.iface = "eth0 container=blue".into();
        ep.label.owner = "netns:evil dir=in ns=blue".into();
        let iface = Iface::new(0, ep.clone(), 96);
        let labels = crate::text::parse_labels(iface.comment(Direction::Out));
        assert_eq!(labels.len(), 3, "{labels:?}");
        assert_eq!(labels["ns"], "evil dir=in ns=blue");
        assert_eq!(labels["iface"], "eth0 container=blue");
        assert_eq!(labels["dir"], "out");
        let d = ep.description();
        assert!(d.starts_with(r#"netns:"evil dir=in ns=blue" "eth0 container=blue" (netns inode"#), "{d}");
        // A name longer than any real one is cut, with a marker, and the
        // pairs after it stay.
        ep.label.comment_fields = vec![("container".into(), "x".repeat(100_000))];
        let iface = Iface::new(0, ep, 96);
        let labels = crate::text::parse_labels(iface.comment(Direction::In));
        assert!(labels["container"].ends_with(crate::text::TRUNCATED));
        assert!(labels["container"].len() <= crate::text::MAX_LABEL_VALUE);
        assert_eq!(labels["dir"], "in");
    }

    #[test]
    fn packet_id_option_reads_back() {
        let iface = Iface::new(0, endpoint(), 96);
        let mut sink = PcapngSink::new(Vec::new(), "Linux test").unwrap();
        sink.add_interface(&iface).unwrap();
        let data = [1u8, 2, 3, 4, 5];
        let pkt = Packet { ts_ns: 1, dir: Direction::In, orig_len: 5, data: &data };
        sink.packet_with_id(&iface, &pkt, Some(0x0102_0304_0506_0708)).unwrap();
        sink.packet_with_id(&iface, &pkt, None).unwrap();
        sink.finish(&[IfaceStats::default()]).unwrap();
        let bytes = sink.get_ref().clone();
        let mut reader = PcapNgReader::new(&bytes[..]).unwrap();
        let mut options = Vec::new();
        while let Some(block) = reader.next_block() {
            if let Block::EnhancedPacket(epb) = block.unwrap().0 {
                assert_eq!(&epb.data[..], &data);
                options.push(format!("{:?}", epb.options));
            }
        }
        assert_eq!(options.len(), 2);
        // pcap-file does not decode option 5: it shows the raw u64.
        let raw = format!("code: 5, value: {:?}", 0x0102_0304_0506_0708u64.to_ne_bytes());
        assert!(options[0].contains(&raw), "{}", options[0]);
        assert!(!options[1].contains("code: 5"), "{}", options[1]);
    }

    #[test]
    fn long_filters_are_cut_to_what_an_option_holds() {
        let exact = "x".repeat(IF_FILTER_MAX);
        assert_eq!(if_filter_value(&exact).len(), 65535);
        assert_eq!(&if_filter_value(&exact)[1..], exact.as_bytes());
        // Multi-byte characters are not split.
        let long = format!("udp and {}", "é".repeat(40_000));
        let v = if_filter_value(&long);
        assert!(v.len() <= 65535);
        let text = std::str::from_utf8(&v[1..]).unwrap();
        assert!(text.starts_with("udp and é"));
        assert!(text.ends_with(&format!(
            "[cut by cnet: the expression has {} bytes, a pcapng option holds 65534]",
            long.len()
        )));

        // The interface block is written and reads back.
        let iface = Iface::new(0, endpoint(), 96).with_filter(Some(&long));
        let mut sink = PcapngSink::new(Vec::new(), "Linux test").unwrap();
        sink.add_interface(&iface).unwrap();
        sink.finish(&[IfaceStats::default()]).unwrap();
        let bytes = sink.get_ref().clone();
        let mut reader = PcapNgReader::new(&bytes[..]).unwrap();
        let mut idbs = 0;
        while let Some(block) = reader.next_block() {
            if let Block::InterfaceDescription(_) = block.unwrap().0 {
                idbs += 1;
            }
        }
        assert_eq!(idbs, 1);
    }
}
