//! Project automation: `cargo xtask <command>`.
//!
//! - `setup`: make the eBPF toolchain ready (nightly + rust-src, bpf-linker
//!   built against the nightly toolchain's own libLLVM); `--test-deps` also
//!   installs what the tests use (tshark, tcpdump, iproute2, ping, bpftool,
//!   iperf3, chromium).
//! - `build`: setup, then build the release cnet binary.
//! - `dist`: the static release tarball; `image`: the OCI image of it.
//! - `demo`: build cnet, make a throwaway lab of two "containers", capture
//!   their traffic by name into demo.pcapng, remove the lab.
//! - `test`: setup + test deps, clippy, then run every test.
//! - `bench`: cnet against tcpdump on the same lab traffic.
//! - `soak`: a long capture of restarting Docker containers.
//!
//! This file is the command line and its dispatch; each verb lives in its own
//! module (`setup`, `cnet_build`, `dist`, `image`, `demo`, `test`, `bench`, `soak`), and
//! `util` holds the process helpers they share.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod bench;
mod cnet_build;
mod demo;
mod dist;
mod image;
mod setup;
mod soak;
mod test;
mod util;

#[derive(Parser)]
#[command(name = "xtask", about = "cnet project automation")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the eBPF toolchain pieces (idempotent).
    Setup {
        /// Also install the packages the tests use (apt).
        #[arg(long)]
        test_deps: bool,
    },
    /// Build the cnet binary (release) with its embedded eBPF object.
    Build,
    /// Build the static release tarball in dist/ (musl, libpcap built in).
    Dist,
    /// Build the OCI image cnet:VERSION from the release binary (Docker).
    Image,
    /// Capture a demo lab's traffic into demo.pcapng.
    Demo {
        /// Output file.
        #[arg(short = 'w', default_value = "demo.pcapng")]
        output: PathBuf,
        /// Seconds of traffic to capture.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// Benchmark cnet against tcpdump on the same traffic (as root).
    Bench {
        /// Seconds-long smoke run (no speed claims).
        #[arg(long)]
        quick: bool,
        /// Seconds per run (default 8, quick 2).
        #[arg(long)]
        seconds: Option<u64>,
        /// Compare `cnet latency` (both lab veths, default snap length) with
        /// no capture and with `cnet capture -s 96`, instead of cnet against
        /// tcpdump.
        #[arg(long)]
        latency: bool,
        /// Interleaved rounds (default 3, quick 1).
        #[arg(long)]
        rounds: Option<usize>,
        /// Only these loads (repeatable): tcp-bulk-1, tcp-bulk-2, udp-64B,
        /// tcp-req-resp.
        #[arg(long = "load", value_name = "LOAD")]
        loads: Vec<String>,
    },
    /// Capture restarting Docker containers for a while; report memory,
    /// descriptors, drops and leftovers (as root).
    Soak {
        /// Minutes to run.
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// Containers to start.
        #[arg(long, default_value_t = 10)]
        containers: usize,
    },
    /// Run clippy, then all tests (as root: they create namespaces and load
    /// eBPF).
    Test {
        /// Extra arguments for `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Setup { test_deps } => setup::run(test_deps),
        Cmd::Build => cnet_build::run(),
        Cmd::Dist => dist::run(),
        Cmd::Image => image::run(),
        Cmd::Demo { output, seconds } => demo::run(&output, seconds),
        Cmd::Bench { quick, seconds, rounds, loads, latency } => {
            bench::run(&bench::Options { quick, seconds, rounds, loads, latency })
        }
        Cmd::Soak { minutes, containers } => soak::run(&soak::Options { minutes, containers }),
        Cmd::Test { args } => test::run(&args),
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}
