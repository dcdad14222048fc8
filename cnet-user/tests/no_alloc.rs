//! The per-packet path (parse a ring-buffer record, convert its timestamp,
//! encode a pcapng EPB into a buffered writer) allocates nothing.

mod common;

use std::io::{self, BufWriter};

use cnet::model::{Direction, Iface, Packet};
use cnet::model::{Endpoint, Label};
use cnet::pipeline::collect::{Clock, parse_record};
use cnet::pipeline::sinks::Sink;
use cnet::pipeline::sinks::pcapng::PcapngSink;
use cnet_common::{HEADER_LEN, PacketHeader};

#[global_allocator]
static GLOBAL: common::Counting = common::Counting;

#[test]
fn hot_path_allocates_nothing_per_packet() {
    let iface = Iface::new(
        0,
        Endpoint {
            ifindex: 7,
            ifname: "veth0".into(),
            link_type: 1,
            peer_view: true,
            label: Label {
                owner: "netns:x".into(),
                iface: "eth0".into(),
                netns_inode: 1,
                addrs: vec![],
                comment_fields: vec![],
                details: String::new(),
            },
        },
        65535,
    );
    let clock = Clock::new();
    let mut sink = PcapngSink::new(BufWriter::with_capacity(1 << 16, io::sink()), "Linux").unwrap();
    sink.add_interface(&iface).unwrap();
    let mut recs = Vec::new();
    for cap in [0usize, 60, 96, 1514, 65535] {
        let h = PacketHeader {
            ts_ns: 1,
            ifindex: 7,
            orig_len: 65535,
            cap_len: cap as u32,
            mark: 0,
            hash: 0,
            hook: 1,
            _pad: [0; 3],
        };
        let mut v = vec![0u8; HEADER_LEN + 65536];
        // SAFETY: v has room for the header.
        unsafe { std::ptr::write_unaligned(v.as_mut_ptr().cast(), h) };
        recs.push(v);
    }
    let allocs = common::allocations_during(|| {
        for _ in 0..2000 {
            for rec in &recs {
                let r = parse_record(rec).unwrap();
                let pkt = Packet {
                    ts_ns: clock.wall_ns(r.header.ts_ns),
                    dir: Direction::In,
                    orig_len: r.header.orig_len,
                    data: r.data,
                };
                sink.packet(&iface, &pkt).unwrap();
            }
        }
        sink.flush().unwrap();
    });
    assert_eq!(allocs, 0, "allocations on the per-packet path");
}
