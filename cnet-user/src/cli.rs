//! Command-line interface. Flags follow tcpdump where tcpdump has one.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::attach::AttachMode;
use crate::capture::{CaptureOptions, Output};
use crate::resolve::Target;

#[derive(Debug, Parser)]
#[command(name = "cnet", version, about = "Capture container network traffic by name, with eBPF", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses argv like `Cli::parse`, and records the command-line order of
    /// the target flags so interfaces appear in the file in the order the
    /// user named them (as with tcpdump's repeated -i).
    pub fn parse_ordered() -> Cli {
        let matches = Cli::command().get_matches();
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        #[allow(irrefutable_let_patterns)]
        if let (Command::Capture(args), Some(("capture", sub))) = (&mut cli.command, matches.subcommand()) {
            args.order = target_order(sub);
        }
        cli
    }
}

/// (argv index, flag id, occurrence) of every target flag, sorted by index.
fn target_order(m: &ArgMatches) -> Vec<(usize, &'static str, usize)> {
    let mut v = Vec::new();
    for id in ["interfaces", "netns", "pids"] {
        if let Some(idx) = m.indices_of(id) {
            for (n, i) in idx.enumerate() {
                v.push((i, id, n));
            }
        }
    }
    v.sort();
    v
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Capture packets from containers, namespaces or interfaces.
    Capture(CaptureArgs),
    /// Measure latency per flow (TCP handshake, request/response, DNS) and
    /// per hop (the same packet on two captured interfaces).
    Latency(LatencyArgs),
}

/// `cnet latency`: the capture options (same targets), a smaller default
/// snap length (headers are enough), and report options.
#[derive(Debug, Args)]
#[command(mut_arg("snaplen", |a| a.default_value("128")))]
#[command(mut_arg("write", |a| a.help("Also write the packets as pcapng to FILE (\"-\" for standard output), copies of one packet with the same packet id")))]
pub struct LatencyArgs {
    #[command(flatten)]
    pub capture: CaptureArgs,
    /// Print the report as JSON on standard output (the table then goes to
    /// standard error).
    #[arg(long)]
    pub json: bool,
    /// Draw the latency distributions into FILE.svg or FILE.html.
    #[arg(long, value_name = "FILE.svg|FILE.html")]
    pub plot: Option<PathBuf>,
}

impl LatencyArgs {
    pub fn into_options(self) -> anyhow::Result<crate::latency::LatencyOptions> {
        Ok(crate::latency::LatencyOptions { capture: self.capture.into_options()?, json: self.json, plot: self.plot })
    }
}

#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// Host interface to capture on (repeatable).
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    pub interfaces: Vec<String>,
    /// Network namespace: a name from `ip netns` or a path such as
    /// /proc/PID/ns/net. Captures the host end of each of its veths.
    #[arg(long = "netns", value_name = "NAME|PATH")]
    pub netns: Vec<String>,
    /// Capture the network namespace of this process.
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// Write pcapng to FILE ("-" for standard output) instead of printing.
    #[arg(short = 'w', value_name = "FILE")]
    pub write: Option<PathBuf>,
    /// Stop after COUNT packets.
    #[arg(short = 'c', value_name = "COUNT", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Bytes to keep of each packet (0 = all, up to 65535).
    #[arg(short = 's', long = "snapshot-length", value_name = "SNAPLEN", default_value_t = 65535)]
    pub snaplen: u32,
    /// Kernel ring buffer size in KiB (rounded up to a power of two).
    #[arg(short = 'B', long = "buffer-size", value_name = "KiB", default_value_t = 32768,
          value_parser = clap::value_parser!(u32).range(4..=1048576))]
    pub buffer_kib: u32,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// How to attach to tc hooks.
    #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
    pub attach: AttachMode,
    /// Forward diagnostics from the eBPF programs (aya-log) to stderr.
    #[arg(long)]
    pub ebpf_log: bool,
    /// Only print the closing summary on stderr.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Command-line order of the target flags (see `Cli::parse_ordered`).
    #[arg(skip)]
    pub order: Vec<(usize, &'static str, usize)>,
}

impl CaptureArgs {
    pub fn into_options(self) -> anyhow::Result<CaptureOptions> {
        let mut targets: Vec<Target> = Vec::new();
        if self.order.is_empty() {
            targets.extend(self.interfaces.iter().cloned().map(Target::Interface));
            targets.extend(self.netns.iter().cloned().map(Target::Netns));
            targets.extend(self.pids.iter().copied().map(Target::Pid));
        }
        for (_, id, n) in &self.order {
            targets.push(match *id {
                "interfaces" => Target::Interface(self.interfaces[*n].clone()),
                "netns" => Target::Netns(self.netns[*n].clone()),
                _ => Target::Pid(self.pids[*n]),
            });
        }
        let output = match self.write {
            None => Output::Print,
            Some(p) if p.as_os_str() == "-" => Output::Stdout,
            Some(p) => Output::File(p),
        };
        let duration = match self.duration {
            None => None,
            Some(d) if d.is_finite() && d > 0.0 => Some(Duration::from_secs_f64(d)),
            Some(d) => anyhow::bail!("--duration must be a positive number of seconds, not {d}"),
        };
        Ok(CaptureOptions {
            targets,
            output,
            count: self.count,
            snaplen: self.snaplen,
            buffer_kib: self.buffer_kib,
            duration,
            attach: self.attach,
            ebpf_log: self.ebpf_log,
            quiet: self.quiet,
        })
    }
}
