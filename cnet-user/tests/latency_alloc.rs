//! Once warm (histograms created, tables sized), the latency sink's
//! per-packet path (parse, flow tracking, hop matching) allocates nothing.

mod common;

use cnet::latency::LatencySink;
use cnet::model::Endpoint;
use cnet::model::{Direction, Iface, IfaceStats, Packet};
use cnet::pipeline::sinks::Sink;

#[global_allocator]
static GLOBAL: common::Counting = common::Counting;

fn iface(id: u32, owner: &str, addr: &str) -> Iface {
    let mut ep = Endpoint::veth_peer(10 + id, &format!("veth{id}"), owner, "eth0", 1 + id as u64);
    ep.label.addrs = vec![format!("{addr}/24")];
    Iface::new(id, ep, 128)
}

/// Ethernet + IPv4 + TCP (ACK|PSH) with a 16-byte payload.
fn segment(buf: &mut [u8; 70], from_client: bool, ip_id: u16, seq: u32, ack: u32) {
    let (src, dst, sport, dport) = if from_client {
        ([10, 0, 0, 1], [10, 0, 0, 2], 40000u16, 80u16)
    } else {
        ([10, 0, 0, 2], [10, 0, 0, 1], 80, 40000)
    };
    buf.fill(0);
    buf[12] = 0x08;
    buf[14..26].copy_from_slice(&[0x45, 0, 0, 56, (ip_id >> 8) as u8, ip_id as u8, 0x40, 0, 64, 6, 0, 0]);
    buf[26..30].copy_from_slice(&src);
    buf[30..34].copy_from_slice(&dst);
    buf[34..36].copy_from_slice(&sport.to_be_bytes());
    buf[36..38].copy_from_slice(&dport.to_be_bytes());
    buf[38..42].copy_from_slice(&seq.to_be_bytes());
    buf[42..46].copy_from_slice(&ack.to_be_bytes());
    buf[46] = 0x50;
    buf[47] = 0x18;
}

#[test]
fn warm_latency_path_allocates_nothing_per_packet() {
    let a = iface(0, "netns:a", "10.0.0.1");
    let b = iface(1, "netns:b", "10.0.0.2");
    let mut sink = LatencySink::new(None, "Linux").unwrap();
    sink.add_interface(&a).unwrap();
    sink.add_interface(&b).unwrap();
    let mut buf = [0u8; 70];
    let mut ts = 1_000_000_000u64;
    let mut run = |sink: &mut LatencySink, exchanges: u32, start: u32| {
        for i in start..start + exchanges {
            // A request from a to b, seen on both veths, then the answer
            // 2 ms later, also on both.
            for (from_client, t) in [(true, 0u64), (false, 2_000_000)] {
                let (seq, ack) = if from_client { (1 + i * 16, 1 + i * 16) } else { (1 + i * 16, 17 + i * 16) };
                segment(&mut buf, from_client, i as u16, seq, ack);
                let (first, second) = if from_client { (&a, &b) } else { (&b, &a) };
                let p1 = Packet { ts_ns: ts + t, dir: Direction::Out, orig_len: 70, data: &buf };
                sink.packet(first, &p1).unwrap();
                let p2 = Packet { ts_ns: ts + t + 3_000, dir: Direction::In, orig_len: 70, data: &buf };
                sink.packet(second, &p2).unwrap();
            }
            ts += 5_000_000;
        }
    };
    // Warm-up: long enough for the hop window to expire entries and the
    // periodic sweep to run.
    run(&mut sink, 20_000, 0);
    let allocs = common::allocations_during(|| run(&mut sink, 20_000, 20_000));
    assert_eq!(allocs, 0, "allocations for 80000 packets on the warm latency path");

    sink.finish(&[IfaceStats::default(), IfaceStats::default()]).unwrap();
    let report = sink.engine.report();
    let rr = report.flows.iter().find(|f| f.seen_at == "client" && f.stats.count > 1000).expect("request/response row");
    assert_eq!(rr.stats.count, 40_000);
    assert_eq!(report.hop_matching.matched, 80_000);
}
