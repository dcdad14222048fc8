//! Bounded fuzzing (proptest) of the inputs cnet parses that an attacker or
//! a broken peer can shape: ring-buffer records, capture files, container
//! names and patterns, and the command line. The property is always the
//! same: any input gives a value or an error, never a panic.

use std::io::Cursor;

use clap::Parser;
use cnet::cli::Cli;
use cnet::codec::capture_file::for_each_packet_in;
use cnet::pipeline::collect::parse_record;
use cnet::pipeline::resolve::select::NameSpec;
use proptest::prelude::*;

/// A valid little-endian pcapng section header + Ethernet IDB, so the
/// fuzzed bytes after it reach the block parsers rather than the magic check.
fn pcapng_prefix() -> Vec<u8> {
    let mut v = Vec::new();
    // SHB: type, length 28, byte-order magic, version 1.0, section length -1, length
    v.extend_from_slice(&0x0a0d0d0au32.to_le_bytes());
    v.extend_from_slice(&28u32.to_le_bytes());
    v.extend_from_slice(&0x1a2b3c4du32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&0u16.to_le_bytes());
    v.extend_from_slice(&(-1i64).to_le_bytes());
    v.extend_from_slice(&28u32.to_le_bytes());
    // IDB: type 1, length 20, linktype 1, reserved, snaplen
    v.extend_from_slice(&1u32.to_le_bytes());
    v.extend_from_slice(&20u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&0u16.to_le_bytes());
    v.extend_from_slice(&65535u32.to_le_bytes());
    v.extend_from_slice(&20u32.to_le_bytes());
    v
}

/// An EPB header for interface 0 with the given declared lengths, then `body`.
fn epb(total: u32, cap: u32, orig: u32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [6u32, total, 0, 0, 0, cap, orig] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.extend_from_slice(body);
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn ring_records_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_record(&bytes);
    }

    #[test]
    fn capture_files_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut data = pcapng_prefix();
        data.extend_from_slice(&tail);
        let _ = for_each_packet_in(Cursor::new(data), "fuzz", |_, _| true);
    }

    #[test]
    fn packet_blocks_with_lying_lengths_never_panic(
        total in any::<u32>(), cap in any::<u32>(), orig in any::<u32>(),
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut data = pcapng_prefix();
        data.extend_from_slice(&epb(total, cap, orig, &body));
        let _ = for_each_packet_in(Cursor::new(data), "fuzz", |_, _| true);
    }

    #[test]
    fn classic_pcap_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut data = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0];
        data.extend_from_slice(&tail);
        let _ = for_each_packet_in(Cursor::new(data), "fuzz", |_, _| true);
    }

    #[test]
    fn container_names_and_patterns_never_panic(text in "\\PC{0,40}") {
        let _ = NameSpec::parse(&text);
    }

    #[test]
    fn qualified_names_never_panic(rt in "(docker|podman|containerd|netns|x)?", sep in "[:/]{0,2}", rest in "[a-z*?\\[\\]{}/:-]{0,20}") {
        let _ = NameSpec::parse(&format!("{rt}{sep}{rest}"));
    }

    #[test]
    fn command_lines_never_panic(args in proptest::collection::vec(
        prop_oneof![
            Just("capture".to_string()), Just("-i".to_string()), Just("--netns".to_string()),
            Just("--container".to_string()), Just("-w".to_string()), Just("-s".to_string()),
            Just("-c".to_string()), Just("-C".to_string()), Just("-G".to_string()), Just("-W".to_string()),
            Just("--all".to_string()), Just("--iface".to_string()), Just("--mode".to_string()),
            Just("read".to_string()), Just("list".to_string()), Just("--".to_string()),
            "\\PC{0,12}",
        ],
        0..8,
    )) {
        let mut argv = vec!["cnet".to_string()];
        argv.extend(args);
        if let Ok(cli) = Cli::try_parse_from(&argv)
            && let cnet::cli::Command::Capture(a) = cli.command
        {
            let _ = a.into_options();
        }
    }
}
