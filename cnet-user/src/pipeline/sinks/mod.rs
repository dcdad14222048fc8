//! Where captured packets go: a pcapng file or pipe, or a one-line-per-packet
//! printer. Each sink sees interfaces as they are added (so containers that
//! appear mid-capture get their own interface) and packets with their labels.

use std::io;

use crate::model::{Iface, IfaceStats, Packet};

pub mod output;
pub mod pcapng;
pub mod print;
pub mod rotate;

pub trait Sink {
    fn add_interface(&mut self, iface: &Iface) -> io::Result<()>;
    fn packet(&mut self, iface: &Iface, pkt: &Packet<'_>) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()>;
    /// Writes trailing statistics and flushes. `stats[i]` belongs to the
    /// interface with id `i`.
    fn finish(&mut self, stats: &[IfaceStats]) -> io::Result<()>;
}

/// A borrowed sink is a sink: lets a caller hand the capture pipeline a sink
/// it still owns, and read its results once the capture is over.
impl<S: Sink + ?Sized> Sink for &mut S {
    fn add_interface(&mut self, iface: &Iface) -> io::Result<()> {
        (**self).add_interface(iface)
    }
    fn packet(&mut self, iface: &Iface, pkt: &Packet<'_>) -> io::Result<()> {
        (**self).packet(iface, pkt)
    }
    fn flush(&mut self) -> io::Result<()> {
        (**self).flush()
    }
    fn finish(&mut self, stats: &[IfaceStats]) -> io::Result<()> {
        (**self).finish(stats)
    }
}
