//! Text output: one line per packet, tcpdump style, with cnet's label.

use std::io::{self, Write};

use super::Sink;
use crate::codec::decode::{self, Decoded, Link};
use crate::model::{Direction, Iface, IfaceStats, Packet};
use crate::text;

pub struct Printer<W: Write> {
    out: W,
}

impl<W: Write> Printer<W> {
    pub fn new(out: W) -> Self {
        Printer { out }
    }
}

/// `HH:MM:SS.nnnnnnnnn` (UTC) of a timestamp in ns since the epoch.
pub fn clock_time(ts_ns: u64) -> String {
    let secs = ts_ns / 1_000_000_000;
    let ns = ts_ns % 1_000_000_000;
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}.{:09}", day / 3600, day / 60 % 60, day % 60, ns)
}

/// The line printed for one live packet (without the newline).
pub fn line(iface: &Iface, pkt: &Packet<'_>) -> String {
    let link = Link::of_interface(iface.endpoint.link_type);
    format_line(pkt.ts_ns, &iface.short, Some(pkt.dir), &decode::decode(link, pkt.data))
}

/// The one format shared by live capture and `cnet read`:
/// `time label dir summary`; an unknown direction prints as `-`. The label
/// (names from runtimes, namespaces or a file) and the summary (text from
/// the packet) are escaped: no byte of them reaches the terminal as a
/// control character or a line break.
pub fn format_line(ts_ns: u64, label: &str, dir: Option<Direction>, decoded: &Decoded) -> String {
    format!(
        "{} {} {:<3} {}",
        clock_time(ts_ns),
        text::escape(label),
        dir.map_or("-", Direction::as_str),
        text::escape(&decoded.summary())
    )
}

impl<W: Write> Sink for Printer<W> {
    fn add_interface(&mut self, _iface: &Iface) -> io::Result<()> {
        Ok(())
    }

    fn packet(&mut self, iface: &Iface, pkt: &Packet<'_>) -> io::Result<()> {
        writeln!(self.out, "{}", line(iface, pkt))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn finish(&mut self, _stats: &[IfaceStats]) -> io::Result<()> {
        self.out.flush()
    }
}
