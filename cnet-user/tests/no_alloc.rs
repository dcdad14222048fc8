//! The per-packet path of a capture (the collector parses a ring-buffer
//! record, finds its interface, converts its timestamp, and the pcapng sink
//! encodes an EPB into a buffered writer) allocates nothing.

mod common;

use std::io::{self, BufWriter};

use cnet::model::Endpoint;
use cnet::pipeline::collect::{Clock, Collector, encode_record};
use cnet::pipeline::sinks::Sink;
use cnet::pipeline::sinks::pcapng::PcapngSink;
use cnet_common::PacketHeader;

#[global_allocator]
static GLOBAL: common::Counting = common::Counting;

#[test]
fn hot_path_allocates_nothing_per_packet() {
    let mut collector = Collector::new(Clock::new(), None, None);
    let mut sink = PcapngSink::new(BufWriter::with_capacity(1 << 16, io::sink()), "Linux").unwrap();
    sink.add_interface(collector.add(Endpoint::veth_peer(7, "veth0", "netns:x", "eth0", 1), 65535, None)).unwrap();
    let recs: Vec<Vec<u8>> = [0usize, 60, 96, 1514, 65535]
        .into_iter()
        .map(|cap| {
            let h = PacketHeader {
                ts_ns: 1,
                ifindex: 7,
                orig_len: 65535,
                cap_len: cap as u32,
                hook: 1,
                ..Default::default()
            };
            encode_record(&h, &vec![0u8; cap], 65536)
        })
        .collect();
    let allocs = common::allocations_during(|| {
        for _ in 0..2000 {
            for rec in &recs {
                assert!(collector.record(rec, &mut sink).unwrap());
            }
        }
        sink.flush().unwrap();
    });
    assert_eq!(allocs, 0, "allocations on the per-packet path");
    assert_eq!(collector.captured(), 10_000);
    assert_eq!(collector.bad_records(), 0);
}
