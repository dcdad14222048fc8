//! Text output: one line per packet, tcpdump style, with cnet's label.
//! [`PrintOptions`] are tcpdump's printing letters (`-t…`, `-v`, `-e`,
//! `-x`/`-X`/`-A`, `-S`); [`LineFormatter`] keeps what they need across
//! packets (the previous and first time stamps, TCP conversations).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::IpAddr;

use super::Sink;
use crate::codec::decode::{self, Decoded, Link, Style, TcpBase};
use crate::codec::hexdump;
use crate::model::{Direction, Iface, IfaceStats, Packet};
use crate::text;

/// How time stamps print (tcpdump's `-t` repeated).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimeFormat {
    /// `HH:MM:SS.nnnnnnnnn`, UTC.
    #[default]
    Clock,
    /// `-t`: none.
    None,
    /// `-tt`: seconds since the epoch, `1700000000.123456789`.
    Epoch,
    /// `-ttt`: time since the previous packet, ` 00:00:00.000123456`.
    SincePrevious,
    /// `-tttt`: date and time, `2024-01-31 12:00:00.123456789`, UTC.
    Date,
    /// `-ttttt`: time since the first packet.
    SinceFirst,
}

impl TimeFormat {
    /// The format of `-t` given `count` times.
    pub fn from_count(count: u8) -> TimeFormat {
        match count {
            0 => TimeFormat::Clock,
            1 => TimeFormat::None,
            2 => TimeFormat::Epoch,
            3 => TimeFormat::SincePrevious,
            4 => TimeFormat::Date,
            _ => TimeFormat::SinceFirst,
        }
    }
}

/// The bytes dumped after each packet's line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dump {
    #[default]
    None,
    /// `-x` (`-xx` with the link-layer header).
    Hex { link: bool },
    /// `-X` (`-XX`).
    HexAscii { link: bool },
    /// `-A` (`-AA`).
    Ascii { link: bool },
}

/// tcpdump's printing options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrintOptions {
    pub time: TimeFormat,
    /// `-v` given this many times.
    pub verbose: u8,
    /// `-e`.
    pub link_header: bool,
    pub dump: Dump,
    /// `-S`: absolute TCP sequence numbers.
    pub absolute_seq: bool,
    /// `-l`: printed lines reach standard output one by one.
    pub line_buffered: bool,
    /// `-U`: each packet written to a `-w` file or pipe is flushed at once.
    pub packet_buffered: bool,
    /// `--print` with `-w`: print the packets too.
    pub also_print: bool,
}

/// Formats packets one after the other with the state tcpdump keeps.
#[derive(Debug, Default)]
pub struct LineFormatter {
    opts: PrintOptions,
    first_ns: Option<u64>,
    previous_ns: Option<u64>,
    /// tcpdump's `tcp_seq_hash`: per conversation (in a fixed order of its
    /// two ends), the initial sequence numbers of each end.
    conversations: HashMap<(IpAddr, IpAddr, u16, u16), (u32, u32)>,
}

impl LineFormatter {
    pub fn new(opts: PrintOptions) -> Self {
        LineFormatter { opts, ..Default::default() }
    }

    /// The text for one packet: `time label dir summary`, then the dump,
    /// without the final newline. The label (names from runtimes, namespaces
    /// or a file) and the summary (text from the packet) are escaped: no byte
    /// of them reaches the terminal as a control character; the line breaks
    /// are cnet's own (`-v`, dumps), and `-A` shows only graphic ASCII, tab
    /// and line feed of the packet, like tcpdump.
    pub fn format(
        &mut self,
        ts_ns: u64,
        label: &str,
        dir: Option<Direction>,
        decoded: &Decoded,
        data: &[u8],
        orig_len: usize,
    ) -> String {
        let mut out = self.time(ts_ns);
        let _ = write!(out, "{} {:<3} ", text::escape(label), dir.map_or("-", Direction::as_str));
        let style = Style { verbose: self.opts.verbose, link_header: self.opts.link_header, orig_len: Some(orig_len) };
        let base = self.tcp_base(decoded);
        let summary = decoded.render(&style, base);
        for (i, part) in summary.split('\n').enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let (indent, rest) = part.split_at(part.len() - part.trim_start_matches(['\t', ' ']).len());
            out.push_str(indent);
            out.push_str(&text::escape(rest));
        }
        let skip = decoded.link_len.min(data.len());
        match self.opts.dump {
            Dump::None => {}
            Dump::Hex { link } => hexdump::hex(if link { data } else { &data[skip..] }, &mut out),
            Dump::HexAscii { link } => hexdump::hex_ascii(if link { data } else { &data[skip..] }, &mut out),
            Dump::Ascii { link } => hexdump::ascii(if link { data } else { &data[skip..] }, &mut out),
        }
        out
    }

    /// The time stamp and the space after it (nothing for `-t`).
    fn time(&mut self, ts_ns: u64) -> String {
        let first = *self.first_ns.get_or_insert(ts_ns);
        let previous = self.previous_ns.replace(ts_ns).unwrap_or(ts_ns);
        let delta = |since: u64| {
            let (sign, d) = if ts_ns < since { ('-', since - ts_ns) } else { (' ', ts_ns - since) };
            format!("{sign}{} ", clock_time(d))
        };
        match self.opts.time {
            TimeFormat::Clock => format!("{} ", clock_time(ts_ns)),
            TimeFormat::None => String::new(),
            TimeFormat::Epoch => format!("{}.{:09} ", ts_ns / 1_000_000_000, ts_ns % 1_000_000_000),
            TimeFormat::SincePrevious => delta(previous),
            TimeFormat::SinceFirst => delta(first),
            TimeFormat::Date => {
                let secs = (ts_ns / 1_000_000_000) as i64;
                let date = chrono::DateTime::from_timestamp(secs, 0)
                    .map_or_else(|| "1970-01-01".to_string(), |t| t.format("%Y-%m-%d").to_string());
                format!("{date} {} ", clock_time(ts_ns))
            }
        }
    }

    /// tcpdump's rule for relative TCP numbers: the first segment of a
    /// conversation with ACK set (or any SYN with ACK set) records both
    /// ends' initial numbers and prints absolute; later segments print
    /// relative to them. Segments without ACK (the first SYN) print
    /// absolute. `-S` turns this off.
    fn tcp_base(&mut self, d: &Decoded) -> TcpBase {
        let (Some(ip), Some(t)) = (&d.ip, &d.tcp) else { return TcpBase::default() };
        let Some(ack) = t.ack else { return TcpBase::default() };
        if self.opts.absolute_seq || ip.fragment_offset > 0 {
            return TcpBase::default();
        }
        let octets = |a: IpAddr| match a {
            IpAddr::V4(v) => v.octets().to_vec(),
            IpAddr::V6(v) => v.octets().to_vec(),
        };
        let rev = t.src_port > t.dst_port || (t.src_port == t.dst_port && octets(ip.src) > octets(ip.dst));
        let key = if rev { (ip.dst, ip.src, t.dst_port, t.src_port) } else { (ip.src, ip.dst, t.src_port, t.dst_port) };
        let known = self.conversations.get(&key).copied();
        let (th_seq, th_ack, base) = match known {
            Some((s, a)) if !t.flags.contains('S') => {
                let base = if rev { TcpBase { seq: a, ack: s, sack: 0 } } else { TcpBase { seq: s, ack: a, sack: 0 } };
                (s, a, base)
            }
            _ => {
                let (s, a) = if rev { (ack.wrapping_sub(1), t.seq) } else { (t.seq, ack.wrapping_sub(1)) };
                self.conversations.insert(key, (s, a));
                (s, a, TcpBase::default())
            }
        };
        // SACK blocks acknowledge the other end's numbers.
        TcpBase { sack: if rev { th_seq } else { th_ack }, ..base }
    }
}

pub struct Printer<W: Write> {
    out: W,
    formatter: LineFormatter,
}

impl<W: Write> Printer<W> {
    pub fn new(out: W) -> Self {
        Printer::with_options(out, PrintOptions::default())
    }

    pub fn with_options(out: W, opts: PrintOptions) -> Self {
        Printer { out, formatter: LineFormatter::new(opts) }
    }
}

/// `HH:MM:SS.nnnnnnnnn` (UTC) of a timestamp in ns since the epoch.
pub fn clock_time(ts_ns: u64) -> String {
    let secs = ts_ns / 1_000_000_000;
    let ns = ts_ns % 1_000_000_000;
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}.{:09}", day / 3600, day / 60 % 60, day % 60, ns)
}

/// The line printed for one live packet (without the newline), with the
/// default options.
pub fn line(iface: &Iface, pkt: &Packet<'_>) -> String {
    let link = Link::of_interface(iface.endpoint.link_type);
    format_line(pkt.ts_ns, &iface.short, Some(pkt.dir), &decode::decode(link, pkt.data))
}

/// The one format shared by live capture and `cnet read`, with the default
/// options and no state: `time label dir summary`; an unknown direction
/// prints as `-`. See [`LineFormatter::format`].
pub fn format_line(ts_ns: u64, label: &str, dir: Option<Direction>, decoded: &Decoded) -> String {
    LineFormatter::default().format(ts_ns, label, dir, decoded, &[], decoded.caplen)
}

impl<W: Write> Sink for Printer<W> {
    fn add_interface(&mut self, _iface: &Iface) -> io::Result<()> {
        Ok(())
    }

    fn packet(&mut self, iface: &Iface, pkt: &Packet<'_>) -> io::Result<()> {
        let link = Link::of_interface(iface.endpoint.link_type);
        let decoded = decode::decode(link, pkt.data);
        let text =
            self.formatter.format(pkt.ts_ns, &iface.short, Some(pkt.dir), &decoded, pkt.data, pkt.orig_len as usize);
        writeln!(self.out, "{text}")?;
        if self.formatter.opts.line_buffered {
            self.out.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self, _stats: &[IfaceStats]) -> io::Result<()> {
        self.out.flush()
    }
}

/// `-U`: a sink flushed after every packet, so that a reader of the file
/// or pipe sees each packet as soon as it is captured.
pub struct PacketBuffered<'s>(pub Box<dyn Sink + 's>);

impl Sink for PacketBuffered<'_> {
    fn add_interface(&mut self, iface: &Iface) -> io::Result<()> {
        self.0.add_interface(iface)
    }

    fn packet(&mut self, iface: &Iface, pkt: &Packet<'_>) -> io::Result<()> {
        self.0.packet(iface, pkt)?;
        self.0.flush()
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }

    fn finish(&mut self, stats: &[IfaceStats]) -> io::Result<()> {
        self.0.finish(stats)
    }
}

/// `--print` with `-w`: every packet goes to the file and is printed.
pub struct Tee<'s> {
    pub file: Box<dyn Sink + 's>,
    pub printer: Printer<io::BufWriter<io::Stdout>>,
}

impl Sink for Tee<'_> {
    fn add_interface(&mut self, iface: &Iface) -> io::Result<()> {
        self.file.add_interface(iface)?;
        self.printer.add_interface(iface)
    }

    fn packet(&mut self, iface: &Iface, pkt: &Packet<'_>) -> io::Result<()> {
        // The file first: a printing error must not lose a captured packet.
        self.file.packet(iface, pkt)?;
        self.printer.packet(iface, pkt)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.printer.flush()
    }

    fn finish(&mut self, stats: &[IfaceStats]) -> io::Result<()> {
        let r = self.file.finish(stats);
        self.printer.finish(stats)?;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn tcp(from_client: bool, seq: u32, ack: Option<u32>, syn: bool, payload: &[u8]) -> Vec<u8> {
        let (a, b, sp, dp) = if from_client {
            ([10, 0, 0, 1], [10, 0, 0, 2], 40000, 80)
        } else {
            ([10, 0, 0, 2], [10, 0, 0, 1], 80, 40000)
        };
        let mut builder = PacketBuilder::ipv4(a, b, 64).tcp(sp, dp, seq, 1000);
        if syn {
            builder = builder.syn();
        }
        if let Some(n) = ack {
            builder = builder.ack(n);
        }
        let mut v = Vec::new();
        builder.write(&mut v, payload).unwrap();
        v
    }

    #[test]
    fn relative_sequence_numbers_like_tcpdump() {
        let mut f = LineFormatter::new(PrintOptions { time: TimeFormat::None, ..Default::default() });
        let mut line = |v: Vec<u8>| {
            let d = decode::decode(Link::Raw, &v);
            let l = f.format(0, "x", None, &d, &v, v.len());
            l.split_once(": ").unwrap().1.to_string()
        };
        assert_eq!(line(tcp(true, 1000, None, true, b"")), "Flags [S], seq 1000, win 1000, length 0");
        assert_eq!(line(tcp(false, 5000, Some(1001), true, b"")), "Flags [S.], seq 5000, ack 1001, win 1000, length 0");
        assert_eq!(line(tcp(true, 1001, Some(5001), false, b"")), "Flags [.], ack 1, win 1000, length 0");
        assert_eq!(line(tcp(true, 1001, Some(5001), false, b"hello")), "Flags [.], seq 1:6, ack 1, win 1000, length 5");
        assert_eq!(line(tcp(false, 5001, Some(1006), false, b"")), "Flags [.], ack 6, win 1000, length 0");
    }

    #[test]
    fn time_formats() {
        let mut f = LineFormatter::new(PrintOptions { time: TimeFormat::SincePrevious, ..Default::default() });
        assert_eq!(f.time(1_000_000_000), " 00:00:00.000000000 ");
        assert_eq!(f.time(1_000_123_000), " 00:00:00.000123000 ");
        let mut f = LineFormatter::new(PrintOptions { time: TimeFormat::Date, ..Default::default() });
        assert_eq!(f.time(1_700_000_000_000_000_001), "2023-11-14 22:13:20.000000001 ");
        let mut f = LineFormatter::new(PrintOptions { time: TimeFormat::Epoch, ..Default::default() });
        assert_eq!(f.time(1_700_000_000_000_000_001), "1700000000.000000001 ");
    }
}
