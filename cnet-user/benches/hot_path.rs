//! The userspace hot path of a capture: ring-buffer record → parsed header →
//! wall-clock timestamp → pcapng Enhanced Packet Block in the output buffer.
//! Reports ns per packet and bytes/s for header-only and full-size packets.

// A benchmark that cannot set up has nothing to measure: failing loudly is right.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::io::{self, BufWriter};

use cnet::model::Endpoint;
use cnet::pipeline::collect::{Clock, Collector, encode_record};
use cnet::pipeline::sinks::Sink;
use cnet::pipeline::sinks::pcapng::PcapngSink;
use cnet_common::PacketHeader;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn record(cap: usize, class: usize) -> Vec<u8> {
    let h = PacketHeader { ts_ns: 123_456_789, ifindex: 7, orig_len: 1514, cap_len: cap as u32, ..Default::default() };
    encode_record(&h, &vec![0x42u8; cap], class)
}

fn endpoint() -> Endpoint {
    let mut ep = Endpoint::veth_peer(7, "veth1a2b3c4", "netns:blue", "eth0", 4026532178);
    ep.label.comment_fields = vec![("ns".into(), "blue".into()), ("netns".into(), "4026532178".into())];
    ep
}

fn bench(c: &mut Criterion) {
    for (name, cap, class) in [("headers-96B", 96usize, 128usize), ("full-1514B", 1514, 2048)] {
        let rec = record(cap, class);
        // The collector as a capture runs it, into a pcapng sink writing to
        // io::sink(), a file whose writes are free: what remains is cnet's
        // own per-packet work.
        let mut collector = Collector::new(Clock::new(), None, None);
        let mut sink = PcapngSink::new(BufWriter::with_capacity(1 << 20, io::sink()), "Linux").unwrap();
        sink.add_interface(collector.add(endpoint(), 65535, None)).unwrap();
        let mut g = c.benchmark_group("record_to_pcapng");
        g.throughput(Throughput::Bytes(cap as u64));
        g.bench_function(name, |b| b.iter(|| collector.record(black_box(&rec), &mut sink).unwrap()));
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
