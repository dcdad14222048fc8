//! `cnet capture`: resolve targets → attach hooks → collect records → sinks.

use std::io::{self, IsTerminal, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cnet_common::{Counters, Hook, MAX_SNAPLEN};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{SignalKind, signal};

use crate::attach::{AttachMode, Capture, LoadOptions};
use crate::collect::{self, Clock, IfindexMap, RingReader};
use crate::filter::Filter;
use crate::privileges;
use crate::resolve::{self, Endpoint, EndpointEvent, Target};
use crate::runtime::select::Selection;
use crate::runtime::watch::Watcher;
use crate::safefs::OutputOwner;
use crate::sinks::pcapng::{IF_FILTER_MAX, PcapngSink, create_output_for, stdout_file};
use crate::sinks::print::Printer;
use crate::sinks::rotate::{RotatingSink, Rotation};
use crate::sinks::{Direction, Iface, IfaceStats, Packet, Sink};

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
    /// An existing FIFO of this user is accepted as output besides the
    /// output's own user's (extcap: the user whose Wireshark made the FIFO
    /// and started cnet through sudo).
    pub fifo_owner: Option<u32>,
}

/// What a finished capture reports.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub captured: u64,
    pub received_by_filter: u64,
    pub dropped_by_kernel: u64,
    pub interfaces: Vec<(String, IfaceStats)>,
}

/// Records read per wakeup before other work (flush, signals) gets a turn.
const BATCH: usize = 8192;
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
            let w = create_output_for(path, opts.file_mode, &output_owner(opts))?;
            // A fifo (Wireshark's extcap pipe, or `mkfifo`) opens once a
            // reader is there, and is then treated like stdout.
            let fd = pipe_fd(w.file());
            let live = !w.file().metadata().map(|m| m.file_type().is_file()).unwrap_or(false);
            (Box::new(PcapngSink::new(w, os).with_context(|| format!("cannot write {}", path.display()))?), live, fd)
        }
        Output::Rotate(r) => {
            let sink = RotatingSink::new_for(r.clone(), os, output_owner(opts))
                .with_context(|| format!("cannot write {}", r.pattern))?;
            (Box::new(sink), false, None)
        }
    };
    Ok(Opened { sink, live, watch })
}

/// Who output files belong to: the -Z user, else cnet's own user.
fn output_owner(opts: &CaptureOptions) -> OutputOwner {
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
    // First thing: from here on a SIGINT/SIGTERM/SIGHUP ends the capture
    // cleanly (hooks detached, file finished) instead of killing cnet
    // halfway through attaching.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    if opts.targets.is_empty() {
        bail!(
            "nothing to capture: name a target with -i IFACE, --netns NAME|PATH, --pid PID, --container NAME or --all"
        );
    }
    let snaplen = if opts.snaplen == 0 { MAX_SNAPLEN } else { opts.snaplen.min(MAX_SNAPLEN) };
    // A bad expression is reported before anything else happens.
    let filter = match &opts.filter {
        Some(expr) => Some(Filter::compile(expr, snaplen)?),
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
        let (w, found) = Watcher::start(selection, opts.wait).await?;
        for ep in found {
            if !endpoints.iter().any(|e| e.ifindex == ep.ifindex) {
                endpoints.push(ep);
            }
        }
        watcher = Some(w);
    }

    // Open the output before attaching anything: a bad path must leave
    // nothing behind.
    let os = os_description();
    let Opened { mut sink, live, watch } = open(&opts, &os)?;

    let mut capture = Capture::load(&LoadOptions {
        snaplen,
        ring_bytes: opts.buffer_kib.saturating_mul(1024),
        ebpf_log: opts.ebpf_log,
        mode: opts.attach,
        run_as: opts.drop_to.as_ref().map(|u| (u.uid, u.gid)),
        filter,
    })?;
    let ring = capture.take_ring()?;
    let mut logger = if opts.ebpf_log { Some(register(capture.take_logger()?)?) } else { None };

    let mut ifaces: Vec<Iface> = Vec::new();
    let mut by_ifindex = IfindexMap::new();
    for ep in &endpoints {
        capture.attach(ep)?;
        let iface = Iface::new(ifaces.len() as u32, ep.clone(), snaplen).with_filter(opts.filter.as_deref());
        sink.add_interface(&iface)?;
        by_ifindex.insert(ep.ifindex, ifaces.len());
        ifaces.push(iface);
    }
    if let Some(user) = &opts.drop_to {
        // What is still needed after attaching: removing cls_bpf filters at
        // exit needs CAP_NET_ADMIN; TCX links go away with their fds.
        let keep: &[u32] = if capture.mode_name() == "clsact" { &[privileges::CAP_NET_ADMIN] } else { &[] };
        privileges::drop_to(user, keep).with_context(|| format!("cannot switch to user {}", user.name))?;
    }
    if !opts.quiet {
        let mut names: Vec<String> = ifaces.iter().map(|i| describe(&i.endpoint)).collect();
        if names.is_empty() {
            names.push("no interface yet, waiting for containers".into());
        }
        let filter = match &opts.filter {
            Some(f) => format!(", filter \"{f}\""),
            None => String::new(),
        };
        eprintln!("cnet: capturing on {} ({}, snaplen {snaplen} bytes{filter})", names.join(", "), capture.mode_name());
    }
    let mut changes = watcher.map(|w| {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(w.run(tx));
        rx
    });

    let clock = Clock::new();
    let start_ns = Clock::now_wall_ns();
    let mut dispatch = Dispatch {
        delivered: vec![0u64; ifaces.len()],
        ifaces,
        by_ifindex,
        clock,
        captured: 0,
        limit: opts.count.unwrap_or(u64::MAX),
        bad_records: 0,
        direction: opts.direction,
    };
    let status_line = !opts.quiet
        && matches!(opts.output, Output::File(_) | Output::Rotate(_))
        && !live
        && io::stderr().is_terminal();

    let mut ring = register(ring)?;
    let deadline = tokio::time::sleep(opts.duration.unwrap_or(Duration::from_secs(u64::MAX / 4)));
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    let mut drain_tick = tokio::time::interval(DRAIN_INTERVAL);
    drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut status_due = std::time::Instant::now();
    let mut write_error: Option<io::Error> = None;

    'outer: loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = sighup.recv() => break,
            _ = &mut deadline => break,
            r = ring.readable_mut() => {
                let mut guard = r?;
                let rb = guard.get_inner_mut();
                let (n, more, err) = dispatch.drain(rb, &mut *sink);
                if n < BATCH {
                    guard.clear_ready();
                }
                if let Some(e) = err { write_error = Some(e); break 'outer; }
                if live && let Err(e) = sink.flush() { write_error = Some(e); break 'outer; }
                if !more { break 'outer; }
            }
            _ = drain_tick.tick(), if live => {
                match dispatch.drain_some(ring.get_mut(), &mut *sink) {
                    Err(e) => { write_error = Some(e); break 'outer; }
                    Ok(false) => break 'outer,
                    Ok(true) => {}
                }
                if live && let Err(e) = sink.flush() { write_error = Some(e); break 'outer; }
            }
            _ = tick.tick() => {
                // Files are drained at this pace: drain before flushing so a
                // packet waits at most one interval.
                if !live {
                    match dispatch.drain_some(ring.get_mut(), &mut *sink) {
                        Err(e) => { write_error = Some(e); break 'outer; }
                        Ok(false) => break 'outer,
                        Ok(true) => {}
                    }
                }
                if let Err(e) = sink.flush() { write_error = Some(e); break 'outer; }
                // A reader that closed the pipe is noticed here even when no
                // packets arrive to fail a write.
                if watch.is_some_and(reader_gone) {
                    write_error = Some(io::ErrorKind::BrokenPipe.into());
                    break 'outer;
                }
                if status_line && status_due.elapsed() >= Duration::from_secs(1) {
                    status_due = std::time::Instant::now();
                    let c = capture.counters().unwrap_or_default();
                    let lost: u64 = c.values().map(|v| v.lost).sum();
                    eprint!("\r\x1b[Kcnet: {} packets written, {lost} dropped", dispatch.captured);
                }
            }
            Some(l) = async { match logger.as_mut() { Some(l) => Some(l.readable_mut().await), None => None } } => {
                if let Ok(mut g) = l { g.get_inner_mut().flush(); g.clear_ready(); }
            }
            Some(change) = async { match changes.as_mut() { Some(rx) => rx.recv().await, None => None } } => {
                if let Err(e) = dispatch.apply(change, &mut capture, &mut *sink, snaplen, opts.quiet) {
                    write_error = Some(e);
                    break 'outer;
                }
            }
        }
    }
    if status_line {
        eprint!("\r\x1b[K");
    }

    // Stop the hooks, then take what is still in the ring, so the counters
    // read afterwards match what was delivered.
    let detach_result = capture.detach_all();
    if write_error.is_none() && dispatch.captured < dispatch.limit {
        let rb = ring.get_mut();
        loop {
            let (n, more, err) = dispatch.drain(rb, &mut *sink);
            if let Some(e) = err {
                write_error = Some(e);
                break;
            }
            if n < BATCH || !more {
                break;
            }
        }
    }
    let counters = capture.counters().unwrap_or_default();
    drop(capture);
    detach_result?;

    let end_ns = Clock::now_wall_ns();
    let mut summary = Summary { captured: dispatch.captured, ..Default::default() };
    let ifaces = &dispatch.ifaces;
    let mut stats = Vec::with_capacity(ifaces.len());
    for (i, iface) in ifaces.iter().enumerate() {
        let mut k = Counters::default();
        for hook in Hook::ALL {
            if let Some(c) = counters.get(&(iface.endpoint.ifindex, hook)) {
                k.add(c);
            }
        }
        summary.received_by_filter += k.matched;
        summary.dropped_by_kernel += k.lost;
        let s = IfaceStats { kernel: k, delivered: dispatch.delivered[i], start_ns, end_ns };
        summary.interfaces.push((describe(&iface.endpoint), s.clone()));
        stats.push(s);
    }
    match write_error {
        None => {
            if let Err(e) = sink.finish(&stats)
                && e.kind() != io::ErrorKind::BrokenPipe
            {
                print_summary(&summary);
                // A refusal (a rotation name someone else planted) says
                // itself where the packets went; it is not a failed write.
                if crate::safefs::is_refused(&e) {
                    return Err(e.into());
                }
                return Err(e).context(output_context(&opts.output));
            }
        }
        // The reader of a pipe went away: a normal way for a live capture to end.
        Some(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Some(e) => {
            let _ = sink.flush();
            print_summary(&summary);
            return Err(e).context(output_context(&opts.output));
        }
    }
    if dispatch.bad_records > 0 {
        log::warn!("{} malformed ring-buffer records were skipped", dispatch.bad_records);
    }
    Ok(summary)
}

/// Turns ring-buffer records into labeled packets for the sink.
struct Dispatch {
    /// Every interface ever captured, by pcapng id (never shrinks).
    ifaces: Vec<Iface>,
    by_ifindex: IfindexMap,
    clock: Clock,
    delivered: Vec<u64>,
    captured: u64,
    limit: u64,
    bad_records: u64,
    direction: Option<Direction>,
}

impl Dispatch {
    /// Hooks an interface that appeared mid-capture, or unhooks one that
    /// went away. A removed interface keeps its pcapng id and its ifindex
    /// mapping, so records still in the ring are labeled correctly.
    fn apply(
        &mut self,
        change: EndpointEvent,
        capture: &mut Capture,
        sink: &mut dyn Sink,
        snaplen: u32,
        quiet: bool,
    ) -> io::Result<()> {
        match change {
            EndpointEvent::Add(ep) => {
                if let Err(e) = capture.attach(&ep) {
                    // The container may have stopped again already.
                    log::warn!("cannot attach to {}: {e}", describe(&ep));
                    return Ok(());
                }
                let iface = Iface::new(self.ifaces.len() as u32, ep, snaplen);
                sink.add_interface(&iface)?;
                if !quiet {
                    eprintln!("cnet: attached {}", describe(&iface.endpoint));
                }
                self.by_ifindex.insert(iface.endpoint.ifindex, self.ifaces.len());
                self.ifaces.push(iface);
                self.delivered.push(0);
            }
            EndpointEvent::Remove(ep) => {
                if let Err(e) = capture.detach(ep.ifindex) {
                    log::warn!("cannot detach from {}: {e}", describe(&ep));
                }
                if !quiet {
                    eprintln!("cnet: detached {}", describe(&ep));
                }
            }
        }
        Ok(())
    }

    /// Handles one record; returns false once the packet limit is reached.
    fn record(&mut self, bytes: &[u8], sink: &mut dyn Sink) -> io::Result<bool> {
        if self.captured >= self.limit {
            return Ok(false);
        }
        let rec = match collect::parse_record(bytes) {
            Ok(r) => r,
            Err(e) => {
                self.bad_records += 1;
                if self.bad_records == 1 {
                    log::warn!("skipping malformed ring-buffer record: {e}");
                }
                return Ok(true);
            }
        };
        let Some(&idx) = self.by_ifindex.get(&rec.header.ifindex) else { return Ok(true) };
        let iface = &self.ifaces[idx];
        let hook = Hook::from_u8(rec.header.hook).unwrap_or(Hook::Ingress);
        let pkt = Packet {
            ts_ns: self.clock.wall_ns(rec.header.ts_ns),
            dir: Direction::from_hook(hook, iface.endpoint.peer_view),
            orig_len: rec.header.orig_len,
            data: rec.data,
        };
        if self.direction.is_some_and(|d| d != pkt.dir) {
            return Ok(true);
        }
        sink.packet(iface, &pkt)?;
        self.delivered[idx] += 1;
        self.captured += 1;
        Ok(self.captured < self.limit)
    }

    /// Drains the ring, bounded so that signals and flushes still get their
    /// turn when it refills as fast as it is read. Returns whether to go on.
    fn drain_some(&mut self, ring: &mut RingReader, sink: &mut dyn Sink) -> io::Result<bool> {
        for _ in 0..8 {
            let (n, more, err) = self.drain(ring, sink);
            if let Some(e) = err {
                return Err(e);
            }
            if !more {
                return Ok(false);
            }
            if n < BATCH {
                break;
            }
        }
        Ok(true)
    }

    /// Reads up to BATCH records: (records read, whether to go on, write error).
    fn drain(&mut self, ring: &mut RingReader, sink: &mut dyn Sink) -> (usize, bool, Option<io::Error>) {
        let mut more = true;
        let mut err = None;
        let n = ring.read(BATCH, |bytes| match self.record(bytes, sink) {
            Ok(m) => {
                more = m;
                m
            }
            Err(e) => {
                err = Some(e);
                false
            }
        });
        (n, more, err)
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
    // SAFETY: fstat on a descriptor we hold, into a zeroed stat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
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

fn describe(ep: &Endpoint) -> String {
    if ep.peer_view { format!("{} ({} {})", ep.ifname, ep.label.owner, ep.label.iface) } else { ep.ifname.clone() }
}

/// tcpdump's closing lines, preceded by one line per interface.
pub fn print_summary(s: &Summary) {
    let mut err = io::stderr().lock();
    for (name, st) in &s.interfaces {
        let _ = writeln!(
            err,
            "cnet: {name}: {} seen, {} captured, {} dropped",
            st.kernel.seen, st.delivered, st.kernel.lost
        );
    }
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    let _ = writeln!(err, "{} packet{} captured", s.captured, plural(s.captured));
    let _ = writeln!(err, "{} packet{} received by filter", s.received_by_filter, plural(s.received_by_filter));
    let _ = writeln!(err, "{} packet{} dropped by kernel", s.dropped_by_kernel, plural(s.dropped_by_kernel));
}

fn os_description() -> String {
    // SAFETY: uname fills the struct it is given.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return "Linux".into();
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    format!("{} {}", field(&u.sysname), field(&u.release))
}
