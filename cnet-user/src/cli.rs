//! Command-line interface. Flags follow tcpdump where tcpdump has one.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::attach::AttachMode;
use crate::capture::{CaptureOptions, Output};
use crate::resolve::Target;

#[derive(Debug, Parser)]
#[command(name = "cnet", version, about = "Capture container network traffic by name, with eBPF", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Capture packets from containers, namespaces or interfaces.
    Capture(CaptureArgs),
    /// List the containers of every runtime found, with their interfaces.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
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
    /// Container by name, id or unique id prefix (repeatable). Qualify it
    /// as docker:NAME, podman:NAME, containerd:NAMESPACE/ID or netns:NAME;
    /// globs such as 'web-*' select every match. Followed: restarts and
    /// matching containers that start later are attached as they appear.
    #[arg(long = "container", value_name = "NAME|ID")]
    pub containers: Vec<String>,
    /// Capture every container of every runtime found, and those that start later.
    #[arg(long = "all")]
    pub all: bool,
    /// Capture the containers of a Kubernetes pod (repeatable).
    #[arg(long = "pod", value_name = "NAMESPACE/NAME")]
    pub pods: Vec<String>,
    /// With container targets: only this container-side interface (repeatable).
    #[arg(long = "iface", value_name = "IFACE")]
    pub container_ifaces: Vec<String>,
    /// With --container or --pod: wait for a container that does not exist
    /// yet instead of failing.
    #[arg(long)]
    pub wait: bool,
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
}

impl CaptureArgs {
    pub fn into_options(self) -> anyhow::Result<CaptureOptions> {
        let mut targets: Vec<Target> = self.interfaces.into_iter().map(Target::Interface).collect();
        targets.extend(self.netns.into_iter().map(Target::Netns));
        targets.extend(self.pids.into_iter().map(Target::Pid));
        for c in self.containers {
            // netns:NAME is a namespace, not a container.
            match c.strip_prefix("netns:") {
                Some(ns) => targets.push(Target::Netns(ns.to_string())),
                None => targets.push(Target::Container(c)),
            }
        }
        if self.all {
            targets.push(Target::AllContainers);
        }
        targets.extend(self.pods.into_iter().map(Target::Pod));
        if !self.container_ifaces.is_empty() {
            if !targets.iter().any(|t| matches!(t, Target::Container(_) | Target::AllContainers | Target::Pod(_))) {
                anyhow::bail!("--iface selects interfaces of containers: use it with --container, --all or --pod (for a host interface use -i)");
            }
            targets.extend(self.container_ifaces.into_iter().map(Target::ContainerIface));
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
            wait: self.wait,
        })
    }
}
