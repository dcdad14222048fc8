//! `cargo xtask demo`: two "containers" (network namespaces on a bridge,
//! laid out like docker0), traffic between them, captured by name with cnet.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cnet_tests::{Cnet, Lab, traffic};

/// Builds a release cnet, then captures the lab for `seconds` into `output`.
pub fn run(output: &Path, seconds: u64) -> Result<()> {
    crate::setup::run(false)?;
    crate::util::require_root("the demo creates network namespaces and loads eBPF programs")?;
    let bin = crate::cnet_build::cnet(true)?;
    capture_lab(&bin, output, seconds)
}

fn capture_lab(cnet: &Path, output: &Path, seconds: u64) -> Result<()> {
    let pid = std::process::id();
    let names = vec![format!("demo-web-{pid}"), format!("demo-db-{pid}")];
    eprintln!("demo: building a lab: netns {} and {} on a bridge", names[0], names[1]);
    let lab = Lab::build(&format!("cnd{:x}", pid & 0xffff), &names)?;
    let out = output.to_string_lossy().into_owned();
    let secs = seconds.to_string();
    let cap = Cnet::start_bin(
        cnet,
        &["capture", "--netns", &names[0], "--netns", &names[1], "-w", &out, "--duration", &secs],
    )
    .context("starting cnet")?;

    let (web, db) = (0, 1);
    let start = Instant::now();
    let mut round = 0u16;
    while start.elapsed() < Duration::from_secs(seconds.saturating_sub(1).max(1)) {
        let request = format!("GET /item/{round} HTTP/1.0\r\nHost: db\r\n\r\n").into_bytes();
        let reply = format!("HTTP/1.0 200 OK\r\n\r\nitem {round} from db\n").into_bytes();
        traffic::tcp_exchange(&lab, web, db, 8000 + round, request, reply)?;
        traffic::udp_burst(&lab, web, db, 5353, "demo", 3)?;
        let _ = lab.ping(db, web, 1);
        round += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut cap = cap;
    let result = cap.wait()?;
    drop(lab);
    eprintln!("demo: lab removed\n");
    eprintln!("{}", result.stderr);
    anyhow::ensure!(result.status.success(), "cnet failed");

    println!("\nWrote {out}. Open it with:\n  wireshark {out}");
    println!(
        "or list the labels of each packet with:\n  tshark -r {out} -T fields -e frame.interface_description -e frame.packet_flags_direction -e frame.comment\n"
    );
    // The first packets as cnet prints them: who sent what, in which direction.
    if let Ok(o) = Command::new(cnet).args(["read", "-c", "12", &out]).output()
        && o.status.success()
    {
        println!("First packets (`cnet read -c 12 {out}`):");
        print!("{}", String::from_utf8_lossy(&o.stdout));
    }
    Ok(())
}
