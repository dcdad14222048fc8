//! Command-line interface. Flags follow tcpdump where tcpdump has one.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::cmd::capture::{CaptureOptions, Output};
use crate::cmd::read::ReadOptions;
use crate::model::Direction;
use crate::model::Target;
use crate::pipeline::attach::AttachMode;
use crate::pipeline::sinks::print::{Dump, PrintOptions, TimeFormat};
use crate::pipeline::sinks::rotate::Rotation;

#[derive(Debug, Parser)]
#[command(name = "cnet", version = crate::version::string(), about = "Capture container network traffic by name, with eBPF", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses argv like `Cli::parse`, and records the command-line order of
    /// the target flags so interfaces appear in the file in the order the
    /// user named them (as with tcpdump's repeated -i).
    pub fn parse_ordered() -> Cli {
        let matches = Cli::command().try_get_matches().unwrap_or_else(|e| exit_with_habit(e));
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        #[allow(irrefutable_let_patterns)]
        if let (Command::Capture(args), Some(("capture", sub))) = (&mut cli.command, matches.subcommand()) {
            args.order = target_order(sub);
        }
        cli
    }
}

/// tcpdump options cnet does not have, with what to do instead. Only
/// options cnet lacks belong here: one cnet has (or gains) is parsed by
/// clap before this table is consulted, so an entry can never shadow it.
pub const TCPDUMP_HABITS: &[(&str, &str, &str)] = &[
    (
        "-p",
        "no promiscuous mode",
        "cnet never sets promiscuous mode: its tc hooks see only the interface's own traffic; drop -p",
    ),
    (
        "--no-promiscuous-mode",
        "no promiscuous mode",
        "cnet never sets promiscuous mode: its tc hooks see only the interface's own traffic; drop it",
    ),
    (
        "-I",
        "monitor mode (Wi-Fi)",
        "cnet captures veths and other Ethernet-like interfaces, which have no monitor mode; drop -I",
    ),
    (
        "--monitor-mode",
        "monitor mode (Wi-Fi)",
        "cnet captures veths and other Ethernet-like interfaces, which have no monitor mode; drop it",
    ),
    ("-j", "time stamp type", "cnet stamps every packet with the kernel's clock in nanoseconds; drop -j"),
    (
        "--time-stamp-type",
        "time stamp type",
        "cnet stamps every packet with the kernel's clock in nanoseconds; drop it",
    ),
    ("-J", "list of time stamp types", "cnet has one: the kernel's clock, in nanoseconds"),
    ("--list-time-stamp-types", "list of time stamp types", "cnet has one: the kernel's clock, in nanoseconds"),
    ("--time-stamp-precision", "time stamp precision", "cnet always writes nanoseconds (if_tsresol 9); drop it"),
    ("--nano", "nanosecond time stamps", "cnet always writes nanoseconds; drop it"),
    ("--micro", "microsecond time stamps", "cnet always writes nanoseconds; drop it"),
    ("-K", "no checksum verification", "cnet never verifies checksums; drop -K"),
    ("--dont-verify-checksums", "no checksum verification", "cnet never verifies checksums; drop it"),
    ("-O", "no filter optimiser", "cnet always compiles filters with libpcap's optimiser; drop -O"),
    ("--no-optimize", "no filter optimiser", "cnet always compiles filters with libpcap's optimiser; drop it"),
    ("-y", "link type", "cnet writes each interface's own link type (Ethernet for veths); drop -y"),
    ("--linktype", "link type", "cnet writes each interface's own link type (Ethernet for veths); drop it"),
    ("-L", "list of link types", "cnet writes each interface's own link type (Ethernet for veths)"),
    ("--list-data-link-types", "list of link types", "cnet writes each interface's own link type (Ethernet for veths)"),
    (
        "-z",
        "post-rotate command",
        "run the command on the finished files yourself (-C/-G start a new file; the previous one is complete then)",
    ),
    (
        "-M",
        "TCP-MD5 secret",
        "open the capture in Wireshark, which validates TCP-MD5 (tcp.check_checksum and TCP preferences)",
    ),
    ("-E", "ESP decryption secret", "write a file with -w and decrypt it in Wireshark (Preferences › Protocols › ESP)"),
    ("-T", "packet type interpretation", "write a file with -w and use Wireshark's Decode As"),
    ("-d", "dump of the compiled filter", "`tcpdump -d EXPRESSION` shows it: cnet compiles with the same libpcap"),
    ("-b", "BGP ASDOT notation", "write a file with -w and read it with Wireshark or tcpdump -r"),
    ("-H", "802.11s mesh headers", "cnet captures Ethernet-like interfaces only; drop -H"),
    ("-N", "short host names", "cnet never resolves names; drop -N"),
    ("-f", "numeric foreign addresses", "cnet never resolves names; drop -f"),
    ("-u", "undecoded NFS handles", "write a file with -w and read it with Wireshark or tcpdump -r"),
    ("-m", "SMI MIB module", "write a file with -w and read it with Wireshark or tcpdump -r"),
    ("-V", "list of files to read", "read each file with `cnet read FILE`"),
    (
        "--immediate-mode",
        "immediate mode",
        "cnet is always immediate on pipes, fifos and the terminal (files are flushed every 250 ms); drop it",
    ),
    ("--number", "packet numbers", "write a file with -w and read it with Wireshark or tcpdump -r"),
    ("-#", "packet numbers", "write a file with -w and read it with Wireshark or tcpdump -r"),
];

/// Replaces clap's "to pass '-p' as a value, use '-- -p'" for a tcpdump
/// option cnet lacks with what the option is and what to do instead; any
/// other error is clap's own.
fn exit_with_habit(e: clap::Error) -> ! {
    if let Some(line) = habit_message(&e) {
        eprintln!("cnet: error: {line}");
        std::process::exit(2);
    }
    e.exit()
}

fn habit_message(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else { return None };
    // `--time-stamp-precision=nano` names the option before `=`.
    let name = arg.split_once('=').map_or(arg.as_str(), |(n, _)| n);
    let (opt, what, instead) = TCPDUMP_HABITS.iter().find(|(o, _, _)| *o == name)?;
    Some(format!("{opt} is tcpdump's {what}; cnet does not support it: {instead}"))
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
    /// Print the packets of a pcapng or pcap file with cnet's labels.
    Read(ReadArgs),
    /// Wireshark extcap interface (`cnet extcap install` sets it up).
    #[command(disable_help_flag = true)]
    Extcap(ExtcapArgs),
    /// List the containers of every runtime found, with their interfaces.
    List(ListArgs),
    /// Measure latency per flow (TCP handshake, request/response, DNS) and
    /// per hop (the same packet on two captured interfaces).
    Latency(LatencyArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print cnet's manual page (roff) on standard output: `cnet man | man -l -`.
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for, e.g. `cnet completions bash > /etc/bash_completion.d/cnet`.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// A command's own page (capture, read, list, latency, extcap) instead of cnet's.
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
}

impl CompletionsArgs {
    pub fn write(&self, out: &mut dyn std::io::Write) {
        clap_complete::generate(self.shell, &mut Cli::command(), "cnet", out);
    }
}

impl ManArgs {
    pub fn write(&self, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
        let mut cmd = Cli::command();
        cmd.build();
        let page = match &self.command {
            None => cmd,
            Some(name) => {
                let names: Vec<String> = cmd.get_subcommands().map(|c| c.get_name().to_string()).collect();
                let sub = cmd
                    .find_subcommand(name)
                    .with_context(|| format!("no command {name:?}: cnet has {}", names.join(", ")))?;
                // clap names are 'static; one page is printed, then cnet exits.
                sub.clone().name(String::leak(format!("cnet-{name}")) as &'static str)
            }
        };
        clap_mangen::Man::new(page).render(out)?;
        Ok(())
    }
}

/// Direction relative to the captured container or namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DirectionArg {
    In,
    Out,
    /// Both directions (tcpdump's `-Q inout`).
    Inout,
}

impl DirectionArg {
    /// The direction to keep; `None` keeps both.
    pub fn keep(self) -> Option<Direction> {
        match self {
            DirectionArg::In => Some(Direction::In),
            DirectionArg::Out => Some(Direction::Out),
            DirectionArg::Inout => None,
        }
    }
}

/// tcpdump's printing options, shared by `cnet capture` and `cnet read`.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Printing (as tcpdump)")]
pub struct PrintArgs {
    /// Accepted for tcpdump's sake: cnet never resolves addresses or ports
    /// to names.
    #[arg(short = 'n', action = clap::ArgAction::Count)]
    pub numeric: u8,
    /// More detail: -v adds the IP header (tos, ttl, id, offset, flags,
    /// proto, length), TCP, ICMP and IPv6 checksums and the packet an ICMP
    /// error quotes; -vv also UDP checksums and the sequence number of
    /// every TCP segment.
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print the link-layer header: `02:… > 02:…, ethertype IPv4 (0x0800),
    /// length 98: …`.
    #[arg(short = 'e')]
    pub link_header: bool,
    /// Dump each packet in hex after its line, without the link-layer
    /// header (-xx: with it).
    #[arg(short = 'x', action = clap::ArgAction::Count)]
    pub hex: u8,
    /// Dump each packet in hex and ASCII (-XX: with the link-layer header).
    #[arg(short = 'X', action = clap::ArgAction::Count)]
    pub hex_ascii: u8,
    /// Print each packet as ASCII text (-AA: with the link-layer header).
    #[arg(short = 'A', action = clap::ArgAction::Count)]
    pub ascii: u8,
    /// Time stamps: -t none, -tt seconds since 1970, -ttt time since the
    /// previous packet, -tttt date and time, -ttttt time since the first
    /// packet. cnet prints UTC with nanoseconds.
    #[arg(short = 't', action = clap::ArgAction::Count)]
    pub time: u8,
    /// Absolute TCP sequence numbers (default: relative to the first
    /// segment with ACK of each conversation, like tcpdump).
    #[arg(short = 'S', long = "absolute-tcp-sequence-numbers")]
    pub absolute_seq: bool,
    /// Flush each printed line at once (cnet already flushes after every
    /// batch of packets when printing).
    #[arg(short = 'l')]
    pub line_buffered: bool,
    /// Flush the -w output after every packet (cnet already flushes a pipe
    /// after every batch, and a file every 250 ms).
    #[arg(short = 'U', long = "packet-buffered")]
    pub packet_buffered: bool,
    /// With -r (or `cnet read`): print only the number of matching packets.
    #[arg(long = "count")]
    pub count_only: bool,
}

impl PrintArgs {
    pub fn options(&self) -> PrintOptions {
        let link = |n: u8| n > 1;
        PrintOptions {
            time: TimeFormat::from_count(self.time),
            verbose: self.verbose,
            link_header: self.link_header,
            dump: if self.hex_ascii > 0 {
                Dump::HexAscii { link: link(self.hex_ascii) }
            } else if self.hex > 0 {
                Dump::Hex { link: link(self.hex) }
            } else if self.ascii > 0 {
                Dump::Ascii { link: link(self.ascii) }
            } else {
                Dump::None
            },
            absolute_seq: self.absolute_seq,
            line_buffered: self.line_buffered,
            packet_buffered: self.packet_buffered,
            also_print: false,
        }
    }
}

/// `cnet read`: the same selection as `cnet capture -r` (see
/// [`CaptureArgs::read_options`]), plus `--json`.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// pcapng or pcap file ("-" for standard input).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Only packets of this container or namespace (a container=, ns= or
    /// pid= label, the owner such as netns:blue, or a host interface name).
    #[arg(long, value_name = "NAME")]
    pub container: Option<String>,
    /// Only packets in this direction (-Q as in tcpdump).
    #[arg(short = 'Q', long, value_enum)]
    pub direction: Option<DirectionArg>,
    /// One JSON object per packet (labels, timestamps, decoded headers).
    #[arg(long)]
    pub json: bool,
    /// Stop after COUNT packets.
    #[arg(short = 'c', value_name = "COUNT", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Read the filter expression from FILE (`#` starts a comment).
    #[arg(short = 'F', value_name = "FILE")]
    pub filter_file: Option<PathBuf>,
    /// Only packets matching this filter, in tcpdump's pcap-filter syntax
    /// (compiled by libpcap for each interface's link type, as tcpdump -r).
    #[arg(value_name = "EXPRESSION")]
    pub expression: Vec<String>,
    #[command(flatten)]
    pub print: PrintArgs,
}

impl ReadArgs {
    pub fn into_options(self) -> anyhow::Result<ReadOptions> {
        Ok(ReadOptions {
            filter: filter_expression(self.filter_file.as_deref(), &self.expression)?,
            path: self.file,
            container: self.container,
            direction: self.direction.and_then(DirectionArg::keep),
            json: self.json,
            count: self.count,
            print: self.print.options(),
            count_only: self.print.count_only,
        })
    }
}

/// The filter expression of the words or the -F file (not both); None for
/// none or an empty one, which matches everything, as in tcpdump.
fn filter_expression(file: Option<&std::path::Path>, words: &[String]) -> anyhow::Result<Option<String>> {
    let filter = match (file, words.is_empty()) {
        (Some(_), false) => anyhow::bail!("give the filter expression either as arguments or with -F, not both"),
        (Some(path), true) => Some(
            cnet_filter::read_filter_file(path)
                .with_context(|| format!("cannot read filter file {}", path.display()))?,
        ),
        (None, false) => Some(words.join(" ")),
        (None, true) => None,
    };
    Ok(filter.filter(|f| !f.trim().is_empty()))
}

/// Everything after `cnet extcap`, parsed by the extcap module: Wireshark
/// passes options clap should not reject (`--extcap-version=4.0`, `--debug`).
#[derive(Debug, Args)]
pub struct ExtcapArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<String>,
}

/// `-C` size: millions of bytes like tcpdump, or with a k/m/g suffix
/// KiB/MiB/GiB.
fn parse_size(s: &str) -> Result<u64, String> {
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c.to_ascii_lowercase()),
        _ => (s, ' '),
    };
    let mult: u64 = match unit {
        ' ' => 1_000_000,
        'k' => 1 << 10,
        'm' => 1 << 20,
        'g' => 1 << 30,
        _ => return Err(format!("unknown size suffix {unit:?}: use k, m or g")),
    };
    let n: u64 = num.trim().parse().map_err(|_| format!("{s:?} is not a size: use e.g. 100 (MB), 512k or 2g"))?;
    n.checked_mul(mult).filter(|&b| b > 0).ok_or_else(|| format!("{s:?} must be between 1 byte and 16 EB"))
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `cnet latency`: the capture options (same targets, no file rotation:
/// the latency sink writes one file), a smaller default snap length
/// (headers are enough), and report options; `-r` analyses a file instead.
#[derive(Debug, Args)]
#[command(mut_arg("snaplen", |a| a.default_value("128")))]
#[command(mut_arg("write", |a| a.help("Also write the packets as pcapng to FILE (\"-\" for standard output), copies of one packet with the same packet id")))]
#[command(mut_arg("read", |a| a.help("Analyse the packets of FILE (pcapng or pcap, e.g. from cnet latency -w or tcpdump -w) instead of capturing")))]
pub struct LatencyArgs {
    #[command(flatten)]
    pub capture: CaptureArgs<NoRotation>,
    /// Print the report as JSON on standard output (the table then goes to
    /// standard error).
    #[arg(long)]
    pub json: bool,
    /// Draw the latency distributions into FILE.svg or FILE.html.
    #[arg(long, value_name = "FILE.svg|FILE.html")]
    pub plot: Option<PathBuf>,
}

impl LatencyArgs {
    pub fn into_options(mut self) -> anyhow::Result<crate::cmd::latency::LatencyOptions> {
        use crate::cmd::latency::Source;
        let quiet = self.capture.quiet;
        let source = match self.capture.read.take() {
            Some(file) => Source::File(self.capture.read_options(file)?),
            None => Source::Live(self.capture.into_options()?),
        };
        Ok(crate::cmd::latency::LatencyOptions { source, json: self.json, plot: self.plot, quiet })
    }
}

/// The file rotation flags, which only `cnet capture` offers.
pub trait RotationFlags: Args + FromArgMatches + std::fmt::Debug {
    /// (-C bytes, -G seconds, -W files).
    fn values(&self) -> (Option<u64>, Option<u64>, Option<u32>);
}

#[derive(Debug, Args)]
pub struct RotationArgs {
    /// Start a new file when the current one is larger than SIZE (millions
    /// of bytes, or with a k/m/g suffix).
    #[arg(short = 'C', value_name = "SIZE", value_parser = parse_size)]
    pub file_size: Option<u64>,
    /// Start a new file every SECS seconds; -w is then a strftime pattern
    /// (e.g. cap-%Y%m%d-%H%M%S.pcapng).
    #[arg(short = 'G', value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub rotate_secs: Option<u64>,
    /// Keep at most N files (with -C alone: a ring FILE0 … FILE<N-1>).
    #[arg(short = 'W', value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub file_count: Option<u32>,
}

impl RotationFlags for RotationArgs {
    fn values(&self) -> (Option<u64>, Option<u64>, Option<u32>) {
        (self.file_size, self.rotate_secs, self.file_count)
    }
}

/// No rotation flags: `cnet latency` writes one file.
#[derive(Debug, Args)]
pub struct NoRotation {}

impl RotationFlags for NoRotation {
    fn values(&self) -> (Option<u64>, Option<u64>, Option<u32>) {
        (None, None, None)
    }
}

#[derive(Debug, Args)]
pub struct CaptureArgs<R: RotationFlags = RotationArgs> {
    /// Host interface to capture on (repeatable). `any`: every veth whose
    /// other end is in another network namespace, labeled with its owner.
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    pub interfaces: Vec<String>,
    /// Print the interfaces cnet can capture, numbered as tcpdump -D does,
    /// with their owners, and exit.
    #[arg(short = 'D', long = "list-interfaces")]
    pub list_interfaces: bool,
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
    #[arg(short = 's', long = "snapshot-length", value_name = "SNAPLEN", default_value_t = 65535,
          value_parser = clap::value_parser!(u32).range(0..=65535))]
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
    /// Permissions of the -w file, in octal.
    #[arg(long, value_name = "OCTAL", default_value = "600", value_parser = parse_mode)]
    pub mode: u32,
    /// After attaching, switch to USER (like tcpdump); the -w file is
    /// created for that user.
    #[arg(short = 'Z', long = "relinquish-privileges", value_name = "USER")]
    pub user: Option<String>,
    /// Keep only packets in this direction (relative to the container; -Q
    /// as in tcpdump).
    #[arg(short = 'Q', long, value_enum)]
    pub direction: Option<DirectionArg>,
    /// Read packets from FILE instead of capturing (same as `cnet read
    /// FILE`; --container, --direction, -c and the filter select packets).
    #[arg(short = 'r', value_name = "FILE")]
    pub read: Option<PathBuf>,
    #[command(flatten)]
    pub rotation: R,
    /// Read the filter expression from FILE (`#` starts a comment).
    #[arg(short = 'F', value_name = "FILE")]
    pub filter_file: Option<PathBuf>,
    /// Capture filter in tcpdump's pcap-filter syntax, e.g. `tcp port 80`;
    /// the words are joined with spaces. Evaluated in the kernel.
    #[arg(value_name = "EXPRESSION")]
    pub expression: Vec<String>,
    /// With -w: print the packets as well as writing them (tcpdump's --print).
    #[arg(long = "print", help_heading = "Printing (as tcpdump)")]
    pub also_print: bool,
    #[command(flatten)]
    pub print: PrintArgs,
    /// Command-line order of the target flags (see `Cli::parse_ordered`).
    #[arg(skip)]
    pub order: Vec<(usize, &'static str, usize)>,
}

impl<R: RotationFlags> CaptureArgs<R> {
    /// `-r FILE`: the options that select packets of a file (--container,
    /// --direction, -c, the filter); the capture-only ones are refused
    /// rather than ignored.
    pub fn read_options(self, file: PathBuf) -> anyhow::Result<ReadOptions> {
        let (c, g, w) = self.rotation.values();
        let given = [
            ("-i", !self.interfaces.is_empty()),
            ("--netns", !self.netns.is_empty()),
            ("--pid", !self.pids.is_empty()),
            ("--all", self.all),
            ("--pod", !self.pods.is_empty()),
            ("--iface", !self.container_ifaces.is_empty()),
            ("--wait", self.wait),
            ("-w", self.write.is_some()),
            ("--duration", self.duration.is_some()),
            ("-Z", self.user.is_some()),
            ("-C", c.is_some()),
            ("-G", g.is_some()),
            ("-W", w.is_some()),
        ];
        let refused: Vec<&str> = given.iter().filter(|(_, on)| *on).map(|(f, _)| *f).collect();
        if !refused.is_empty() {
            anyhow::bail!("-r reads a file instead of capturing: drop {}, or drop -r", refused.join(", "));
        }
        if self.containers.len() > 1 {
            anyhow::bail!("with -r, --container selects the packets of one owner: give it once");
        }
        Ok(ReadOptions {
            filter: filter_expression(self.filter_file.as_deref(), &self.expression)?,
            path: file,
            container: self.containers.into_iter().next(),
            direction: self.direction.and_then(DirectionArg::keep),
            json: false,
            count: self.count,
            print: self.print.options(),
            count_only: self.print.count_only,
        })
    }

    pub fn into_options(self) -> anyhow::Result<CaptureOptions> {
        let (file_size, rotate_secs, file_count) = self.rotation.values();
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
                anyhow::bail!(
                    "--iface selects interfaces of containers: use it with --container, --all or --pod (for a host interface use -i)"
                );
            }
            targets.extend(self.container_ifaces.into_iter().map(Target::ContainerIface));
        }
        let rotating = file_size.is_some() || rotate_secs.is_some() || file_count.is_some();
        let output = match self.write {
            None if rotating => anyhow::bail!("-C, -G and -W need a file name: add -w FILE"),
            None => Output::Print,
            Some(p) if p.as_os_str() == "-" && rotating => {
                anyhow::bail!("-C, -G and -W rotate files, not standard output: name a file with -w FILE")
            }
            Some(p) if p.as_os_str() == "-" => Output::Stdout,
            Some(p) if rotating => {
                let rotation = Rotation {
                    pattern: p.to_str().context("the -w file name must be valid UTF-8 when rotating")?.to_string(),
                    max_bytes: file_size,
                    interval: rotate_secs.map(Duration::from_secs),
                    max_files: file_count,
                    mode: self.mode,
                };
                rotation.validate().map_err(anyhow::Error::msg)?;
                Output::Rotate(rotation)
            }
            Some(p) => Output::File(p),
        };
        let duration = match self.duration {
            None => None,
            Some(d) if d.is_finite() && d > 0.0 => Some(Duration::from_secs_f64(d)),
            Some(d) => anyhow::bail!("--duration must be a positive number of seconds, not {d}"),
        };
        let filter = match (&self.filter_file, self.expression.is_empty()) {
            (Some(_), false) => anyhow::bail!("give the filter expression either as arguments or with -F, not both"),
            (Some(path), true) => Some(
                cnet_filter::read_filter_file(path)
                    .with_context(|| format!("cannot read filter file {}", path.display()))?,
            ),
            (None, false) => Some(self.expression.join(" ")),
            (None, true) => None,
        };
        if self.print.count_only {
            anyhow::bail!("--count counts the packets of a file: use it with -r FILE or `cnet read FILE`");
        }
        if self.also_print && !matches!(output, Output::File(_) | Output::Rotate(_)) {
            anyhow::bail!(
                "--print prints the packets while -w writes them to a file: add -w FILE (not -w -, which is standard output)"
            );
        }
        let print = PrintOptions { also_print: self.also_print, ..self.print.options() };
        // An empty expression matches everything, as in tcpdump.
        let filter = filter.filter(|f| !f.trim().is_empty());
        if let Some(f) = &filter {
            crate::cmd::capture::check_direction_words(f)?;
        }
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
            file_mode: self.mode,
            drop_to: match &self.user {
                Some(u) => Some(crate::platform::privileges::User::lookup(u).map_err(|e| anyhow::anyhow!("-Z: {e}"))?),
                None => None,
            },
            direction: self.direction.and_then(DirectionArg::keep),
            wait: self.wait,
            fifo_owner: None,
            print,
        })
    }
}

fn parse_mode(s: &str) -> Result<u32, String> {
    match u32::from_str_radix(s.trim_start_matches("0o"), 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(format!("{s:?} is not an octal file mode such as 600 or 640")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_tcpdump() {
        assert_eq!(parse_size("1"), Ok(1_000_000));
        assert_eq!(parse_size("100k"), Ok(102_400));
        assert_eq!(parse_size("2M"), Ok(2 << 20));
        assert!(parse_size("0").is_err());
        assert!(parse_size("x").is_err());
        assert!(parse_size("5q").is_err());
    }

    #[test]
    fn tcpdump_habits_name_the_option_and_the_way_out() {
        let e = Cli::try_parse_from(["cnet", "capture", "-p", "--netns", "x"]).unwrap_err();
        let m = habit_message(&e).unwrap();
        assert!(m.starts_with("-p is tcpdump's no promiscuous mode; cnet does not support it: "), "{m}");
        let e = Cli::try_parse_from(["cnet", "capture", "--time-stamp-precision=nano"]).unwrap_err();
        assert!(habit_message(&e).unwrap().starts_with("--time-stamp-precision is tcpdump's"));
        // Options cnet has are never in the table.
        let cmd = Cli::command();
        let capture = cmd.find_subcommand("capture").unwrap();
        for (opt, _, _) in TCPDUMP_HABITS {
            let clash = capture.get_arguments().any(|a| {
                a.get_short().is_some_and(|c| *opt == format!("-{c}"))
                    || a.get_long().is_some_and(|l| *opt == format!("--{l}"))
            });
            assert!(!clash, "{opt} is a cnet option");
        }
        // Unknown options that are not tcpdump's keep clap's message.
        let e = Cli::try_parse_from(["cnet", "capture", "--frobnicate"]).unwrap_err();
        assert!(habit_message(&e).is_none());
    }

    #[test]
    fn direction_words_point_to_the_direction_option() {
        let e = crate::cmd::capture::check_direction_words("tcp and inbound").unwrap_err().to_string();
        assert!(e.contains("-Q in (or --direction in)"), "{e}");
        assert!(crate::cmd::capture::check_direction_words("not outbound").unwrap_err().to_string().contains("-Q out"));
        assert!(crate::cmd::capture::check_direction_words("(outbound)").is_err());
        assert!(crate::cmd::capture::check_direction_words("host inbound.example.com").is_ok());
    }

    #[test]
    fn snaplen_above_65535_is_refused() {
        let e = Cli::try_parse_from(["cnet", "capture", "-s", "65536", "-i", "lo"]).unwrap_err().to_string();
        assert!(e.contains("0..=65535"), "{e}");
        assert!(Cli::try_parse_from(["cnet", "capture", "-s", "65535", "-i", "lo"]).is_ok());
    }

    #[test]
    fn extcap_takes_wireshark_arguments() {
        let cli =
            Cli::try_parse_from(["cnet", "extcap", "--extcap-interfaces", "--extcap-version=4.0", "--debug"]).unwrap();
        let Command::Extcap(a) = cli.command else { panic!() };
        assert_eq!(a.args, ["--extcap-interfaces", "--extcap-version=4.0", "--debug"]);
    }
}
