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
    /// Read the filter expression from FILE (`#` starts a comment).
    #[arg(short = 'F', value_name = "FILE")]
    pub filter_file: Option<PathBuf>,
    /// Capture filter in tcpdump's pcap-filter syntax, e.g. `tcp port 80`;
    /// the words are joined with spaces. Evaluated in the kernel.
    #[arg(value_name = "EXPRESSION")]
    pub expression: Vec<String>,
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
        let filter = match (&self.filter_file, self.expression.is_empty()) {
            (Some(_), false) => anyhow::bail!("give the filter expression either as arguments or with -F, not both"),
            (Some(path), true) => Some(crate::filter::read_filter_file(path)?),
            (None, false) => Some(self.expression.join(" ")),
            (None, true) => None,
        };
        // An empty expression matches everything, as in tcpdump.
        let filter = filter.filter(|f| !f.trim().is_empty());
        Ok(CaptureOptions {
            targets,
            filter,
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
