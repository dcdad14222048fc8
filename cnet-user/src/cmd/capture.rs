//! `cnet capture`: resolve targets → attach hooks → collect records → sinks.

use std::io::{self, IsTerminal, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
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
use crate::pipeline::sinks::pcapng::{PcapngSink, create_output, stdout_file};
use crate::pipeline::sinks::print::Printer;
use crate::pipeline::sinks::rotate::{RotatingSink, Rotation};
use crate::platform::privileges;
use cnet_filter::Filter;

/// Where packets go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// One line per packet on stdout.
    Print,
    /// pcapng to a file.
    File(PathBuf),
    /// pcapng to stdout (`-w -`).
    Stdout,
    /// A series of pcapng files (`-C`, `-G`, `-W`).
    Rotate(Rotation),
}

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
    let (sink, live, watch): (Box<dyn Sink>, bool, Option<RawFd>) = match &opts.output {
        Output::Print => (Box::new(Printer::new(io::BufWriter::new(io::stdout()))), true, pipe_fd(&io::stdout())),
        Output::Stdout => {
            let out = stdout_file().context("cannot use standard output")?;
            (Box::new(PcapngSink::new(out, os)?), true, pipe_fd(&io::stdout()))
        }
        Output::File(path) => {
            let w = create_output(path, opts.file_mode)?;
            // A fifo (Wireshark's extcap pipe, or `mkfifo`) opens once a
            // reader is there, and is then treated like stdout.
            let fd = pipe_fd(w.file());
            let live = !w.file().metadata().map(|m| m.file_type().is_file()).unwrap_or(false);
            if let Some(user) = &opts.drop_to {
                privileges::chown_to(w.file(), user)
                    .with_context(|| format!("cannot hand {} to {}", path.display(), user.name))?;
            }
            (Box::new(PcapngSink::new(w, os).with_context(|| format!("cannot write {}", path.display()))?), live, fd)
        }
        Output::Rotate(r) => {
            let sink = RotatingSink::new(r.clone(), os).with_context(|| format!("cannot write {}", r.pattern))?;
            (Box::new(sink), false, None)
        }
    };
    Ok(Opened { sink, live, watch })
}

/// Runs the capture pipeline into the sink that `open` returns (`cnet
/// latency` passes its own). `open` is called after the targets are resolved
/// and before anything is attached.
pub async fn run_with_sink<'s>(
    opts: CaptureOptions,
    open: impl FnOnce(&CaptureOptions, &str) -> Result<Opened<'s>>,
) -> Result<Summary> {
    // First thing: from here on a SIGINT/SIGTERM/SIGHUP ends the capture
    // cleanly (hooks detached, file finished) instead of killing cnet
    // halfway through attaching.
    let mut stop = StopSignals::install()?;
    let Some(prepared) = prepare(&opts, &mut stop).await? else { return Ok(Summary::default()) };
    // A fifo opens only once a reader is there, and a blocked open() does
    // not answer signals: wait for the reader here, where they are heard.
    let held = match &opts.output {
        Output::File(path) => match stop.unless(fifo_reader(path)).await {
            Ok(held) => held,
            Err(sig) => return Ok(stopped_before_start(sig)),
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
                stopped_before_start(sig);
                return Ok(None);
            }
        },
        None => None,
    };
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
                stopped_before_start(sig);
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
                _ = stop.recv() => Ok(false),
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
        Ok(true)
    }

    fn print_status(&self) {
        let c = self.hooks.counters().unwrap_or_default();
        let lost: u64 = c.values().map(|v| v.lost).sum();
        eprint!("\r\x1b[Kcnet: {} packets written, {lost} dropped", self.collector.captured());
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
        drop(self.hooks);
        detach_result?;

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
        match write_error {
            None => {
                if let Err(e) = self.sink.finish(&stats)
                    && e.kind() != io::ErrorKind::BrokenPipe
                {
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

/// SIGINT, SIGTERM and SIGHUP: each ends the capture cleanly.
struct StopSignals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl StopSignals {
    fn install() -> io::Result<StopSignals> {
        Ok(StopSignals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The name of the next of these signals to arrive.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }

    /// Runs `work` unless one of the signals comes first: then its name.
    async fn unless<T>(&mut self, work: impl std::future::Future<Output = T>) -> std::result::Result<T, &'static str> {
        tokio::select! {
            r = work => Ok(r),
            sig = self.recv() => Err(sig),
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

/// Waits until the fifo at `path` has a reader, and returns a write end
/// that keeps it open until the output's own open. None, at once, when
/// `path` is not a fifo (the output's open then creates or refuses it).
async fn fifo_reader(path: &std::path::Path) -> Option<std::fs::File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    // O_PATH opens nothing but the name (no device or fifo is opened by it),
    // and O_NOFOLLOW refuses a symlink as the output's open does; the fifo
    // is then reopened through the descriptor, so it is the one inspected.
    let named = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_NOFOLLOW).open(path).ok()?;
    if !named.metadata().ok()?.file_type().is_fifo() {
        return None;
    }
    let again = format!("/proc/self/fd/{}", named.as_raw_fd());
    loop {
        // Opening a fifo's write end without blocking fails with ENXIO
        // while no reader has it open.
        match std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&again) {
            Ok(f) => return Some(f),
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(_) => return None,
        }
    }
}

/// Registers a BPF ring buffer (or aya-log's) with the runtime for reading.
fn register<T: std::os::fd::AsRawFd>(inner: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: `inner` owns its file descriptor and keeps it open and
    // unchanged for as long as the AsyncFd holds it.
    unsafe { AsyncFd::register_with_interest(inner, Interest::READABLE) }.map_err(io::Error::from)
}

/// The descriptor of `f` if it is a pipe or socket (whose reader can leave).
fn pipe_fd(f: &impl AsRawFd) -> Option<RawFd> {
    let fd = f.as_raw_fd();
    // SAFETY: all-zero bytes are a valid `stat` (integers only).
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on a descriptor we hold, into a `stat` we own.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    let kind = st.st_mode & libc::S_IFMT;
    (kind == libc::S_IFIFO || kind == libc::S_IFSOCK).then_some(fd)
}

/// Whether the reading end of the pipe `fd` has been closed: Linux reports
/// POLLERR on a pipe's write end once it has no readers (POLLHUP for a
/// socket whose peer is gone).
fn reader_gone(fd: RawFd) -> bool {
    let mut p = libc::pollfd { fd, events: 0, revents: 0 };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLERR | libc::POLLHUP) != 0
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
