//! `cnet capture`: resolve targets → attach hooks → collect records → sinks.

use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};
use std::os::fd::RawFd;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cnet_common::{Counters, Hook, MAX_SNAPLEN};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::model::{Direction, IfaceStats};
use crate::model::{Endpoint, EndpointEvent, Target};
use crate::pipeline::attach::{AttachMode, Hooks, LoadOptions};
use crate::pipeline::collect::{BATCH, Clock, Collector, Ring};
use crate::pipeline::resolve;
use crate::pipeline::resolve::select::Selection;
use crate::pipeline::resolve::watch::Watcher;
use crate::pipeline::sinks::Sink;
pub use crate::pipeline::sinks::output::Output;
use crate::pipeline::sinks::output::{Stream, fifo_reader, open_stream, pipe_fd, reader_gone};
use crate::pipeline::sinks::pcapng::{IF_FILTER_MAX, PcapngSink};
use crate::pipeline::sinks::print::{PacketBuffered, PrintOptions, Printer, Tee};
use crate::pipeline::sinks::rotate::RotatingSink;
use crate::platform::netlink::{LinkEvents, LinkNews, link_exists};
use crate::platform::privileges;
use crate::platform::safefs::OutputOwner;
use cnet_filter::Filter;

#[derive(Clone, Debug)]
pub struct CaptureOptions {
    pub targets: Vec<Target>,
    /// tcpdump filter expression, evaluated in the kernel.
    pub filter: Option<String>,
    pub output: Output,
    pub count: Option<u64>,
    pub snaplen: u32,
    pub buffer_kib: u32,
    pub duration: Option<Duration>,
    pub attach: AttachMode,
    pub ebpf_log: bool,
    /// Suppress the "capturing on" and status lines (the summary stays).
    pub quiet: bool,
    /// Permissions of a created output file.
    pub file_mode: u32,
    /// Switch to this user after attaching (`-Z`).
    pub drop_to: Option<privileges::User>,
    /// Keep only packets in this direction (relative to the target).
    pub direction: Option<Direction>,
    /// A container name that matches nothing yet is waited for, not an error.
    pub wait: bool,
    /// An existing FIFO of this user is accepted as output besides the
    /// output's own user's (extcap: the user whose Wireshark made the FIFO
    /// and started cnet through sudo).
    pub fifo_owner: Option<u32>,
    /// tcpdump's printing options (`-v`, `-e`, `-x`, `-t`, …, `--print`, `-U`).
    pub print: PrintOptions,
}

/// What a finished capture reports.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub captured: u64,
    pub received_by_filter: u64,
    pub dropped_by_kernel: u64,
    pub interfaces: Vec<(String, IfaceStats)>,
}

/// Longest time a packet may sit in cnet's buffer before reaching the file.
const FLUSH_INTERVAL: Duration = Duration::from_millis(250);
/// The kernel wakes the reader only per batch (see `Config::wakeup_bytes`);
/// below the watermark records are picked up by this timer when the output
/// is live. Files are drained by the FLUSH_INTERVAL timer instead: draining
/// them more often than they are flushed would only cost wakeups.
const DRAIN_INTERVAL: Duration = Duration::from_millis(10);

pub async fn run(opts: CaptureOptions) -> Result<Summary> {
    run_with_sink(opts, open_output).await
}

/// An opened output: the sink, whether it is live (flushed after every
/// batch: pipes, fifos, terminals) and the descriptor of a pipe whose reader
/// may go away.
pub struct Opened<'s> {
    pub sink: Box<dyn Sink + 's>,
    pub live: bool,
    pub watch: Option<RawFd>,
}

/// The sink `cnet capture` writes to.
pub fn open_output<'s>(opts: &CaptureOptions, os: &str) -> Result<Opened<'s>> {
    let owner = output_owner(opts);
    let (sink, live, watch): (Box<dyn Sink>, bool, Option<RawFd>) = match (opts.output.stream(), &opts.output) {
        (Some(to), _) => {
            let Stream { file, live, watch } = open_stream(to, opts.file_mode, &owner)?;
            let sink = PcapngSink::new(file, os).with_context(|| output_context(&opts.output))?;
            (Box::new(sink), live, watch)
        }
        (None, Output::Rotate(r)) => {
            let sink =
                RotatingSink::new_for(r.clone(), os, owner).with_context(|| format!("cannot write {}", r.pattern))?;
            (Box::new(sink), false, None)
        }
        (None, _) => {
            let printer = Printer::with_options(io::BufWriter::new(io::stdout()), opts.print);
            (Box::new(printer), true, pipe_fd(&io::stdout()))
        }
    };
    let sink: Box<dyn Sink + 's> = match opts.output {
        Output::Print => sink,
        _ if opts.print.packet_buffered => Box::new(PacketBuffered(sink)),
        _ => sink,
    };
    // `--print -w FILE`: the printed lines are live even when the file is not.
    let (sink, live): (Box<dyn Sink + 's>, bool) = match opts.output {
        Output::Print => (sink, live),
        _ if opts.print.also_print => {
            let printer = Printer::with_options(io::BufWriter::new(io::stdout()), opts.print);
            (Box::new(Tee { file: sink, printer }), true)
        }
        _ => (sink, live),
    };
    Ok(Opened { sink, live, watch })
}

/// libpcap's `inbound`/`outbound` need the direction of a live Linux
/// handle, which cnet's filters (compiled as for a saved file) do not have:
/// libpcap refuses them or emits a load cnet cannot translate. cnet filters
/// direction itself, so say that instead.
pub fn check_direction_words(filter: &str) -> anyhow::Result<()> {
    let word = filter
        // Words end at spaces, parentheses and operators; a host name such
        // as inbound.example.com is not the keyword.
        .split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | '!' | '&' | '|'))
        .find(|w| matches!(*w, "inbound" | "outbound"));
    match word {
        Some(w) => {
            let d = if w == "inbound" { "in" } else { "out" };
            anyhow::bail!(
                "the filter word {w:?} is not available in cnet's filters: cnet filters direction itself with -Q {d} (or --direction {d}); remove {w:?} from the expression"
            )
        }
        None => Ok(()),
    }
}

/// Who output files belong to: the -Z user, else cnet's own user.
pub fn output_owner(opts: &CaptureOptions) -> OutputOwner {
    let mut owner = match &opts.drop_to {
        Some(u) => OutputOwner::user(u.uid, u.gid),
        None => OutputOwner::current(),
    };
    owner.fifo_owner = opts.fifo_owner;
    owner
}

/// Runs the capture pipeline into the sink that `open` returns (`cnet
/// latency` passes its own). `open` is called after the targets are resolved
/// and before anything is attached.
pub async fn run_with_sink<'s>(
    opts: CaptureOptions,
    open: impl FnOnce(&CaptureOptions, &str) -> Result<Opened<'s>>,
) -> Result<Summary> {
    // First thing: from here on a SIGINT, SIGTERM or any other terminating
    // signal ends the capture cleanly (hooks detached, file finished)
    // instead of killing cnet halfway through attaching.
    let mut stop = StopSignals::install()?;
    let Some(prepared) = prepare(&opts, &mut stop).await? else { return Ok(Summary::default()) };
    // A fifo opens only once a reader is there, and a blocked open() does
    // not answer signals: wait for the reader here, where they are heard.
    let held = match &opts.output {
        Output::File(path) => match stop.unless(fifo_reader(path, &output_owner(&opts))).await {
            Ok(held) => held,
            Err(sig) => return Ok(stopped_before_start(&sig)),
        },
        _ => None,
    };
    // Open the output before attaching anything: a bad path must leave
    // nothing behind.
    let Opened { sink, live, watch } = open(&opts, &os_description())?;
    // The fifo's own writer is open now; ours kept the reader from seeing
    // an end of file in between.
    drop(held);
    let (mut session, ring) = Session::attach(&opts, prepared, sink, live, watch)?;
    let mut ring = register(ring)?;
    let write_error = session.run(&mut ring, &mut stop, opts.duration).await;
    session.finish(ring.get_mut(), write_error, &opts.output)
}

/// What a capture needs before it opens its output and attaches: the
/// compiled filter, the endpoints found so far, and the runtime watcher
/// that follows container targets.
struct Prepared {
    snaplen: u32,
    filter: Option<Filter>,
    endpoints: Vec<Endpoint>,
    watcher: Option<Watcher>,
}

/// Checks the options, compiles the filter and resolves the targets. None
/// when a signal stopped cnet meanwhile (nothing is attached or written).
async fn prepare(opts: &CaptureOptions, stop: &mut StopSignals) -> Result<Option<Prepared>> {
    if opts.targets.is_empty() {
        bail!(
            "nothing to capture: name a target with -i IFACE, --netns NAME|PATH, --pid PID, --container NAME or --all"
        );
    }
    let snaplen = if opts.snaplen == 0 { MAX_SNAPLEN } else { opts.snaplen.min(MAX_SNAPLEN) };
    // A bad expression is reported before anything else happens. libpcap
    // takes seconds over a long expression and cannot be interrupted: it
    // compiles on a thread of its own, and a signal ends cnet meanwhile.
    let filter = match &opts.filter {
        Some(expr) => match stop.unless(compile_off_thread(expr.clone(), snaplen)).await {
            Ok(compiled) => Some(compiled?),
            Err(sig) => {
                stopped_before_start(&sig);
                return Ok(None);
            }
        },
        None => None,
    };
    if let Some(expr) = &opts.filter
        && expr.len() > IF_FILTER_MAX
        && opts.output != Output::Print
    {
        log::warn!(
            "the filter expression has {} bytes and a pcapng option holds at most {IF_FILTER_MAX}: the files' if_filter keeps its start and says it is cut; the capture uses the whole expression",
            expr.len()
        );
    }
    let enters_netns = opts.targets.iter().any(|t| !matches!(t, Target::Interface(_)));
    privileges::check(enters_netns)?;
    if opts.drop_to.is_some() && opts.targets.iter().any(Target::is_container) {
        bail!(
            "-Z cannot be used with --container, --all or --pod: following containers needs root for the whole capture (use --netns or --pid for a fixed target)"
        );
    }
    let mut endpoints = resolve::resolve_all(&opts.targets)?;
    // Container targets are followed: the watcher sends endpoint changes.
    let mut watcher = None;
    if let Some(selection) = Selection::from_targets(&opts.targets)? {
        // A runtime that is slow to answer must not make cnet deaf to signals.
        let (w, found) = match stop.unless(Watcher::start(selection, opts.wait)).await {
            Ok(started) => started?,
            Err(sig) => {
                stopped_before_start(&sig);
                return Ok(None);
            }
        };
        for ep in found {
            if !endpoints.iter().any(|e| e.ifindex == ep.ifindex) {
                endpoints.push(ep);
            }
        }
        watcher = Some(w);
    }
    Ok(Some(Prepared { snaplen, filter, endpoints, watcher }))
}

/// A running capture: the hooks, the collector and the sink it feeds, and
/// what the loop watches besides the ring.
struct Session<'s> {
    hooks: Hooks,
    collector: Collector,
    sink: Box<dyn Sink + 's>,
    /// Flushed after every batch (pipes, fifos, terminals).
    live: bool,
    /// A pipe whose reader may go away.
    watch: Option<RawFd>,
    /// The one-line status on a terminal while writing a file.
    status_line: bool,
    logger: Option<AsyncFd<aya_log::EbpfLogger<&'static dyn log::Log>>>,
    changes: Option<tokio::sync::mpsc::Receiver<EndpointEvent>>,
    /// Link notifications, which tell that a hooked interface went away
    /// (deleted, or destroyed with its namespace). None when they cannot be
    /// had: the flush tick then looks for the interfaces itself.
    links: Option<AsyncFd<LinkEvents>>,
    snaplen: u32,
    quiet: bool,
    start_ns: u64,
}

impl<'s> Session<'s> {
    /// Loads the eBPF object, hooks every endpoint found so far, drops
    /// privileges (`-Z`), says what is captured and starts following
    /// containers. Returns the session and the ring to read.
    fn attach(
        opts: &CaptureOptions,
        prepared: Prepared,
        mut sink: Box<dyn Sink + 's>,
        live: bool,
        watch: Option<RawFd>,
    ) -> Result<(Session<'s>, Ring)> {
        let Prepared { snaplen, filter, endpoints, watcher } = prepared;
        let mut hooks = Hooks::load(&LoadOptions {
            snaplen,
            ring_bytes: opts.buffer_kib.saturating_mul(1024),
            ebpf_log: opts.ebpf_log,
            mode: opts.attach,
            run_as: opts.drop_to.as_ref().map(|u| (u.uid, u.gid)),
            filter,
        })?;
        let ring = hooks.take_ring()?;
        let logger = if opts.ebpf_log { Some(register(hooks.take_logger()?)?) } else { None };
        let mut collector = Collector::new(Clock::new(), opts.count, opts.direction);
        // Subscribed before anything is hooked, so no deletion between
        // hooking and listening goes unheard.
        let links = match LinkEvents::open().and_then(register) {
            Ok(l) => Some(l),
            Err(e) => {
                log::warn!("cannot follow interface removals ({e}); looking for them every {FLUSH_INTERVAL:?} instead");
                None
            }
        };
        for ep in endpoints {
            hooks.attach(&ep)?;
            sink.add_interface(collector.add(ep, snaplen, opts.filter.as_deref()))?;
        }
        if let Some(user) = &opts.drop_to {
            // What is still needed after attaching: removing cls_bpf filters
            // at exit needs CAP_NET_ADMIN; TCX links go away with their fds.
            let keep: &[u32] = if hooks.mode_name() == "clsact" { &[privileges::CAP_NET_ADMIN] } else { &[] };
            privileges::drop_to(user, keep).with_context(|| format!("cannot switch to user {}", user.name))?;
        }
        if !opts.quiet {
            let mut names: Vec<String> = collector.ifaces().iter().map(|i| describe(&i.endpoint)).collect();
            if names.is_empty() {
                names.push("no interface yet, waiting for containers".into());
            }
            let filter = match &opts.filter {
                Some(f) => format!(", filter \"{}\"", crate::text::escape(f)),
                None => String::new(),
            };
            let unit = if snaplen == 1 { "byte" } else { "bytes" };
            eprintln!(
                "cnet: capturing on {} ({}, snaplen {snaplen} {unit}{filter})",
                names.join(", "),
                hooks.mode_name()
            );
        }
        let changes = watcher.map(|w| {
            let (tx, rx) = tokio::sync::mpsc::channel(64);
            tokio::spawn(w.run(tx));
            rx
        });
        let status_line = !opts.quiet
            && matches!(opts.output, Output::File(_) | Output::Rotate(_))
            && !live
            && io::stderr().is_terminal();
        let session = Session {
            hooks,
            collector,
            sink,
            live,
            watch,
            status_line,
            logger,
            changes,
            links,
            snaplen,
            quiet: opts.quiet,
            start_ns: Clock::now_wall_ns(),
        };
        Ok((session, ring))
    }

    /// The capture loop: runs until a signal, the deadline, the packet
    /// limit, or an error writing the output, which it returns.
    async fn run(
        &mut self,
        ring: &mut AsyncFd<Ring>,
        stop: &mut StopSignals,
        duration: Option<Duration>,
    ) -> Option<io::Error> {
        let deadline = tokio::time::sleep(duration.unwrap_or(Duration::from_secs(u64::MAX / 4)));
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(FLUSH_INTERVAL);
        let mut drain_tick = tokio::time::interval(DRAIN_INTERVAL);
        drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut status_due = std::time::Instant::now();
        let result = loop {
            // Each arm says whether the capture goes on.
            let step: io::Result<bool> = tokio::select! {
                asked = stop.recv() => match asked {
                    Asked::Stop(_) => Ok(false),
                    Asked::Status => {
                        self.print_counters();
                        Ok(true)
                    }
                },
                _ = &mut deadline => Ok(false),
                r = ring.readable_mut() => match r {
                    Ok(mut guard) => self.drain_ready(guard.get_inner_mut()).map(|(d, caught_up)| {
                        if caught_up {
                            guard.clear_ready();
                        }
                        d
                    }),
                    Err(e) => Err(e),
                },
                _ = drain_tick.tick(), if self.live => self.drain_live(ring.get_mut()),
                _ = tick.tick() => {
                    let go_on = self.on_tick(ring.get_mut());
                    if matches!(go_on, Ok(true)) && self.status_line && status_due.elapsed() >= Duration::from_secs(1) {
                        status_due = std::time::Instant::now();
                        self.print_status();
                    }
                    go_on
                }
                Some(l) = async { match self.logger.as_mut() { Some(l) => Some(l.readable_mut().await), None => None } } => {
                    if let Ok(mut g) = l { g.get_inner_mut().flush(); g.clear_ready(); }
                    Ok(true)
                }
                Some(change) = async { match self.changes.as_mut() { Some(rx) => rx.recv().await, None => None } } => {
                    self.apply(change).map(|()| true)
                }
                Some(news) = async { match self.links.as_mut() { Some(l) => Some(read_links(l).await), None => None } } => {
                    Ok(self.on_links(news))
                }
            };
            match step {
                Ok(true) => {}
                Ok(false) => break None,
                Err(e) => break Some(e),
            }
        };
        if self.status_line {
            eprint!("\r\x1b[K");
        }
        result
    }

    /// The ring woke cnet: read a batch, flush a live output. Returns
    /// whether to go on and whether the ring was read to its end.
    fn drain_ready(&mut self, ring: &mut Ring) -> io::Result<(bool, bool)> {
        let d = self.collector.drain(ring, &mut *self.sink)?;
        if self.live {
            self.sink.flush()?;
        }
        Ok((d.more, d.records < BATCH))
    }

    /// Below the wakeup watermark, records of a live output are picked up
    /// by this timer.
    fn drain_live(&mut self, ring: &mut Ring) -> io::Result<bool> {
        if !self.collector.drain_some(ring, &mut *self.sink)? {
            return Ok(false);
        }
        self.sink.flush()?;
        Ok(true)
    }

    /// Files are drained at the flush pace: drain before flushing so a
    /// packet waits at most one interval. A reader that closed the pipe is
    /// noticed here even when no packets arrive to fail a write.
    fn on_tick(&mut self, ring: &mut Ring) -> io::Result<bool> {
        if !self.live && !self.collector.drain_some(ring, &mut *self.sink)? {
            return Ok(false);
        }
        self.sink.flush()?;
        if self.watch.is_some_and(reader_gone) {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if self.links.is_none() {
            let gone: Vec<u32> = self.hooks.hooked().into_iter().filter(|i| !link_exists(*i)).collect();
            return Ok(self.vanished(&gone));
        }
        Ok(true)
    }

    /// Link notifications arrived. Returns whether the capture goes on.
    fn on_links(&mut self, news: io::Result<LinkNews>) -> bool {
        let gone: Vec<u32> = match news {
            Ok(news) if news.lost => self.hooks.hooked().into_iter().filter(|i| !link_exists(*i)).collect(),
            Ok(news) => news.removed,
            Err(e) => {
                log::warn!("cannot read interface removals ({e}); looking for them every {FLUSH_INTERVAL:?} instead");
                self.links = None;
                self.hooks.hooked().into_iter().filter(|i| !link_exists(*i)).collect()
            }
        };
        self.vanished(&gone)
    }

    /// Unhooks the interfaces among `gone` that are hooked, saying so, and
    /// tells whether the capture goes on: not once the last one is gone and
    /// none can come back (no containers followed). Their pcapng ids stay,
    /// as in [`Session::apply`].
    fn vanished(&mut self, gone: &[u32]) -> bool {
        let mut any = false;
        for &ifindex in gone {
            if !self.hooks.is_hooked(ifindex) {
                continue;
            }
            any = true;
            let name = match self.collector.ifaces().iter().rev().find(|i| i.endpoint.ifindex == ifindex) {
                Some(iface) => describe(&iface.endpoint),
                None => format!("interface {ifindex}"),
            };
            eprintln!("cnet: {name} went away");
            if let Err(e) = self.hooks.detach(ifindex) {
                log::warn!("cannot detach from {name}: {e}");
            }
        }
        if any && self.hooks.hooked().is_empty() && self.changes.is_none() {
            eprintln!("cnet: no interface left to capture on");
            return false;
        }
        true
    }

    /// The status line on a terminal: rewritten in place, cut to the
    /// terminal's width so it never wraps (a wrapped line could not be
    /// cleared).
    fn print_status(&self) {
        let c = self.hooks.counters().unwrap_or_default();
        let lost: u64 = c.values().map(|v| v.lost).sum();
        let per_target: Vec<(&str, u64)> = self
            .collector
            .ifaces()
            .iter()
            .zip(self.collector.delivered())
            .map(|(i, n)| (i.short.as_str(), *n))
            .collect();
        let elapsed = Duration::from_nanos(Clock::now_wall_ns().saturating_sub(self.start_ns));
        let status = StatusLine {
            packets: self.collector.captured(),
            bytes: self.collector.captured_bytes(),
            dropped: lost,
            elapsed,
            per_target: &per_target,
        };
        eprint!("\r\x1b[K{}", status.render(terminal_width()));
    }

    /// Hooks an interface that appeared mid-capture, or unhooks one that
    /// went away. A removed interface keeps its pcapng id and its ifindex
    /// mapping, so records still in the ring are labelled correctly.
    fn apply(&mut self, change: EndpointEvent) -> io::Result<()> {
        match change {
            EndpointEvent::Add(ep) => {
                if let Err(e) = self.hooks.attach(&ep) {
                    // The container may have stopped again already.
                    log::warn!("cannot attach to {}: {e}", describe(&ep));
                    return Ok(());
                }
                let iface = self.collector.add(ep, self.snaplen, None);
                self.sink.add_interface(iface)?;
                if !self.quiet {
                    eprintln!("cnet: attached {}", describe(&iface.endpoint));
                }
            }
            EndpointEvent::Remove(ep) => {
                if let Err(e) = self.hooks.detach(ep.ifindex) {
                    log::warn!("cannot detach from {}: {e}", describe(&ep));
                }
                if !self.quiet {
                    eprintln!("cnet: detached {}", describe(&ep));
                }
            }
        }
        Ok(())
    }

    /// The summary so far and each interface's statistics, from the hooks'
    /// counters and what the collector delivered.
    fn tally(&self, counters: &HashMap<(u32, Hook), Counters>) -> (Summary, Vec<IfaceStats>) {
        let end_ns = Clock::now_wall_ns();
        let mut summary = Summary { captured: self.collector.captured(), ..Default::default() };
        let mut stats = Vec::with_capacity(self.collector.ifaces().len());
        for (iface, delivered) in self.collector.ifaces().iter().zip(self.collector.delivered()) {
            let mut k = Counters::default();
            for hook in Hook::ALL {
                if let Some(c) = counters.get(&(iface.endpoint.ifindex, hook)) {
                    k.add(c);
                }
            }
            summary.received_by_filter += k.matched;
            summary.dropped_by_kernel += k.lost;
            let s = IfaceStats { kernel: k, delivered: *delivered, start_ns: self.start_ns, end_ns };
            summary.interfaces.push((describe(&iface.endpoint), s.clone()));
            stats.push(s);
        }
        (summary, stats)
    }

    /// SIGUSR1: the counters so far, as the summary prints them at the end;
    /// the capture goes on.
    fn print_counters(&self) {
        if self.status_line {
            eprint!("\r\x1b[K");
        }
        match self.hooks.counters() {
            Ok(counters) => print_summary(&self.tally(&counters).0),
            Err(e) => log::warn!("cannot read the counters: {e}"),
        }
    }

    /// Stops the hooks, takes what is still in the ring (so the counters
    /// read afterwards match what was delivered), and finishes the output
    /// with the statistics.
    fn finish(mut self, ring: &mut Ring, mut write_error: Option<io::Error>, output: &Output) -> Result<Summary> {
        let detach_result = self.hooks.detach_all();
        if write_error.is_none()
            && let Err(e) = self.collector.drain_all(ring, &mut *self.sink)
        {
            write_error = Some(e);
        }
        let counters = self.hooks.counters().unwrap_or_default();
        let (summary, stats) = self.tally(&counters);
        drop(self.hooks);
        detach_result?;

        match write_error {
            None => {
                if let Err(e) = self.sink.finish(&stats)
                    && e.kind() != io::ErrorKind::BrokenPipe
                {
                    print_summary(&summary);
                    // A refusal (a rotation name someone else planted) says
                    // itself where the packets went; it is not a failed write.
                    if crate::platform::safefs::is_refused(&e) {
                        return Err(e.into());
                    }
                    return Err(e).context(output_context(output));
                }
            }
            // The reader of a pipe went away: a normal way for a live capture to end.
            Some(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
            Some(e) => {
                let _ = self.sink.flush();
                print_summary(&summary);
                return Err(e).context(output_context(output));
            }
        }
        if self.collector.bad_records() > 0 {
            log::warn!("{} malformed ring-buffer records were skipped", self.collector.bad_records());
        }
        Ok(summary)
    }
}

/// Every catchable signal whose default action ends the process: each ends
/// the capture cleanly (hooks detached, summary printed, file finished)
/// instead of killing cnet with clsact filters left on the interfaces and a
/// file cut short. SIGPIPE is among them: a broken pipe on write already
/// ends the capture, and a SIGPIPE sent with kill(1) does too. Left out are
/// the signals that report a fault in cnet itself (SIGSEGV, SIGBUS, SIGILL,
/// SIGFPE, SIGABRT, SIGTRAP, SIGSYS): catching them would hide a crash.
const STOPPING: [(libc::c_int, &str); 14] = [
    (libc::SIGINT, "SIGINT"),
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGHUP, "SIGHUP"),
    (libc::SIGPIPE, "SIGPIPE"),
    (libc::SIGQUIT, "SIGQUIT"),
    (libc::SIGALRM, "SIGALRM"),
    (libc::SIGUSR2, "SIGUSR2"),
    (libc::SIGVTALRM, "SIGVTALRM"),
    (libc::SIGPROF, "SIGPROF"),
    (libc::SIGXCPU, "SIGXCPU"),
    (libc::SIGXFSZ, "SIGXFSZ"),
    (libc::SIGPWR, "SIGPWR"),
    (libc::SIGSTKFLT, "SIGSTKFLT"),
    (libc::SIGIO, "SIGIO"),
];

/// What a signal asks of a capture.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Asked {
    /// End the capture; the signal's name.
    Stop(String),
    /// SIGUSR1: print the counters so far and go on, as tcpdump does.
    Status,
}

/// The signals a capture answers: [`STOPPING`], the real-time signals (whose
/// default action ends the process too) and SIGUSR1.
/// What the status line shows while a file is written.
struct StatusLine<'a> {
    packets: u64,
    bytes: u64,
    dropped: u64,
    elapsed: Duration,
    /// Packets per captured interface (label, count), shown when there are
    /// several.
    per_target: &'a [(&'a str, u64)],
}

impl StatusLine<'_> {
    /// `cnet: 1234 packets (1.2 MB), 0 dropped, 12 s | netns:a eth0 600, …`,
    /// at most `width - 1` characters.
    fn render(&self, width: usize) -> String {
        let mut s = format!(
            "cnet: {} packet{} ({}), {} dropped, {} s",
            self.packets,
            if self.packets == 1 { "" } else { "s" },
            human_bytes(self.bytes),
            self.dropped,
            self.elapsed.as_secs()
        );
        if self.per_target.len() > 1 {
            let parts: Vec<String> =
                self.per_target.iter().map(|(label, n)| format!("{} {n}", crate::text::escape(label))).collect();
            s.push_str(" | ");
            s.push_str(&parts.join(", "));
        }
        let max = width.saturating_sub(1).max(20);
        if s.chars().count() > max {
            s = s.chars().take(max - 1).collect();
            s.push('…');
        }
        s
    }
}

/// 1234567 → `1.2 MB` (decimal units, as file sizes are shown).
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

/// Columns of the terminal on standard error (80 when it cannot be read).
fn terminal_width() -> usize {
    // SAFETY: all-zero bytes are a valid `winsize` (integers only).
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills the struct we own; fd 2 may be anything.
    let ok = unsafe { libc::ioctl(2, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 { usize::from(ws.ws_col) } else { 80 }
}

struct StopSignals {
    stop: Vec<(String, Signal)>,
    usr1: Signal,
}

impl StopSignals {
    fn install() -> io::Result<StopSignals> {
        let mut stop = Vec::with_capacity(STOPPING.len() + 32);
        for (num, name) in STOPPING {
            stop.push((name.to_string(), signal(SignalKind::from_raw(num))?));
        }
        let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
        for num in min..=max {
            stop.push((format!("SIGRTMIN+{}", num - min), signal(SignalKind::from_raw(num))?));
        }
        Ok(StopSignals { stop, usr1: signal(SignalKind::user_defined1())? })
    }

    /// What the next of these signals to arrive asks.
    async fn recv(&mut self) -> Asked {
        std::future::poll_fn(|cx| {
            if self.usr1.poll_recv(cx).is_ready() {
                return std::task::Poll::Ready(Asked::Status);
            }
            for (name, sig) in &mut self.stop {
                if sig.poll_recv(cx).is_ready() {
                    return std::task::Poll::Ready(Asked::Stop(name.clone()));
                }
            }
            std::task::Poll::Pending
        })
        .await
    }

    /// Runs `work` unless a stopping signal comes first: then its name.
    /// SIGUSR1 meanwhile says that nothing is captured yet.
    async fn unless<T>(&mut self, work: impl std::future::Future<Output = T>) -> std::result::Result<T, String> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                r = &mut work => return Ok(r),
                asked = self.recv() => match asked {
                    Asked::Stop(sig) => return Err(sig),
                    Asked::Status => eprintln!("cnet: the capture has not started yet: 0 packets captured"),
                },
            }
        }
    }
}

/// A capture stopped before it started: like tcpdump stopped by a signal,
/// cnet prints its (empty) summary and exits 0, the user having asked it
/// to stop; nothing was attached and no file was created.
fn stopped_before_start(sig: &str) -> Summary {
    eprintln!("cnet: {sig} before the capture started: nothing was attached or written");
    Summary::default()
}

/// [`Filter::compile`] on a thread of its own. When a signal ends cnet
/// first, the thread is left to finish, and ends with the process.
async fn compile_off_thread(expr: String, snaplen: u32) -> Result<Filter> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("cnet-filter".into())
        .spawn(move || {
            let _ = tx.send(Filter::compile(&expr, snaplen));
        })
        .context("cannot start a thread to compile the filter")?;
    Ok(rx.await.context("compiling the filter failed")??)
}

/// Waits for link notifications and reads them all.
async fn read_links(links: &mut AsyncFd<LinkEvents>) -> io::Result<LinkNews> {
    let mut guard = links.readable_mut().await?;
    let news = guard.get_inner_mut().read();
    // read() stops only when the socket would block (or on an error, after
    // which the socket is no longer read).
    guard.clear_ready();
    news
}

/// Registers a BPF ring buffer (or aya-log's) with the runtime for reading.
fn register<T: std::os::fd::AsRawFd>(inner: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: `inner` owns its file descriptor and keeps it open and
    // unchanged for as long as the AsyncFd holds it.
    unsafe { AsyncFd::register_with_interest(inner, Interest::READABLE) }.map_err(io::Error::from)
}

fn output_context(o: &Output) -> String {
    match o {
        Output::File(p) => format!("cannot write {}", p.display()),
        Output::Rotate(r) => format!("cannot write {}", r.pattern),
        Output::Stdout => "cannot write to standard output".into(),
        Output::Print => "cannot write to standard output".into(),
    }
}

/// `veth7 (netns:blue eth0)`, escaped for the terminal (names come from
/// runtimes and namespaces).
fn describe(ep: &Endpoint) -> String {
    let s = if ep.peer_view {
        format!("{} ({})", ep.ifname, crate::text::owner_label(&ep.label.owner, &ep.label.iface))
    } else {
        ep.ifname.clone()
    };
    crate::text::escape(&s).into_owned()
}

/// tcpdump's closing lines, preceded by one line per interface.
pub fn print_summary(s: &Summary) {
    let mut err = io::stderr().lock();
    for (name, st) in &s.interfaces {
        let _ = writeln!(
            err,
            "cnet: {}: {} seen, {} captured, {} dropped",
            crate::text::escape(name),
            st.kernel.seen,
            st.delivered,
            st.kernel.lost
        );
    }
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    let _ = writeln!(err, "{} packet{} captured", s.captured, plural(s.captured));
    let _ = writeln!(err, "{} packet{} received by filter", s.received_by_filter, plural(s.received_by_filter));
    let _ = writeln!(err, "{} packet{} dropped by kernel", s.dropped_by_kernel, plural(s.dropped_by_kernel));
}

fn os_description() -> String {
    // SAFETY: all-zero bytes are a valid `utsname` (byte arrays only).
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname fills the struct it is given.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "Linux".into();
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    format!("{} {}", field(&u.sysname), field(&u.release))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_fits_the_terminal_and_names_targets_when_several() {
        let one = [("netns:a eth0", 5u64)];
        let line =
            StatusLine { packets: 5, bytes: 1234, dropped: 0, elapsed: Duration::from_secs(3), per_target: &one };
        assert_eq!(line.render(80), "cnet: 5 packets (1.2 kB), 0 dropped, 3 s");
        let two = [("netns:a eth0", 600u64), ("netns:b eth0", 634)];
        let line = StatusLine {
            packets: 1234,
            bytes: 2_500_000,
            dropped: 2,
            elapsed: Duration::from_secs(12),
            per_target: &two,
        };
        assert_eq!(
            line.render(200),
            "cnet: 1234 packets (2.5 MB), 2 dropped, 12 s | netns:a eth0 600, netns:b eth0 634"
        );
        let cut = line.render(40);
        assert_eq!(cut.chars().count(), 39);
        assert!(cut.ends_with('…'));
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1), "1 B");
    }
}
