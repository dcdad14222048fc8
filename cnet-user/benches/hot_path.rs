//! The userspace hot path of a capture: ring-buffer record → parsed header →
//! wall-clock timestamp → pcapng Enhanced Packet Block in the output buffer.
//! Reports ns per packet and bytes/s for header-only and full-size packets.

// A benchmark that cannot set up has nothing to measure: failing loudly is right.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::io::{self, BufWriter};

use cnet::model::{Direction, Iface, Packet};
use cnet::model::{Endpoint, Label};
use cnet::pipeline::collect::{Clock, parse_record};
use cnet::pipeline::sinks::Sink;
use cnet::pipeline::sinks::pcapng::PcapngSink;
use cnet_common::{HEADER_LEN, PacketHeader};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn record(cap: usize, class: usize) -> Vec<u8> {
    let h = PacketHeader {
        ts_ns: 123_456_789,
        ifindex: 7,
        orig_len: 1514,
        cap_len: cap as u32,
        mark: 0,
        hash: 0,
        hook: 0,
        _pad: [0; 3],
    };
    let mut v = vec![0x42u8; HEADER_LEN + class];
    // SAFETY: v has room for the header.
    unsafe { std::ptr::write_unaligned(v.as_mut_ptr().cast(), h) };
    v
}

fn iface() -> Iface {
    Iface::new(
        0,
        Endpoint {
            ifindex: 7,
            ifname: "veth1a2b3c4".into(),
            link_type: 1,
            peer_view: true,
            label: Label {
                owner: "netns:blue".into(),
                iface: "eth0".into(),
                netns_inode: 4026532178,
                addrs: vec![],
                comment_fields: vec![("ns".into(), "blue".into()), ("netns".into(), "4026532178".into())],
                details: String::new(),
            },
        },
        65535,
    )
}

fn bench(c: &mut Criterion) {
    let clock = Clock::new();
    let iface = iface();
    for (name, cap, class) in [("headers-96B", 96usize, 128usize), ("full-1514B", 1514, 2048)] {
        let rec = record(cap, class);
        // Output to io::sink(), a file whose writes are free: what remains
        // is cnet's own per-packet work.
        let mut sink = PcapngSink::new(BufWriter::with_capacity(1 << 20, io::sink()), "Linux").unwrap();
        sink.add_interface(&iface).unwrap();
        let mut g = c.benchmark_group("record_to_pcapng");
        g.throughput(Throughput::Bytes(cap as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let r = parse_record(black_box(&rec)).unwrap();
                let pkt = Packet {
                    ts_ns: clock.wall_ns(r.header.ts_ns),
                    dir: Direction::Out,
                    orig_len: r.header.orig_len,
                    data: r.data,
                };
                sink.packet(&iface, &pkt).unwrap();
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
