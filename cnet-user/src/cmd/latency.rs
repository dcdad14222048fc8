//! `cnet latency`: capture with the latency engine as the sink, or feed it
//! the packets of a file (`-r`), then print the report (table or JSON) and
//! the plot.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::cmd::capture::{self, CaptureOptions, Output};
use crate::cmd::read::{self, ReadOptions, Selection};
use crate::codec::capture_file::{self, FileInterface};
use crate::codec::link::Link;
use crate::latency::plot::{self, PlotFormat};
use crate::latency::report::Report;
use crate::latency::{Engine, LatencySink};
use crate::model::{ARPHRD_ETHER, Endpoint, Iface, Label, Packet};
use crate::pipeline::sinks::Sink;
use crate::pipeline::sinks::output::open_stream;

/// Where the packets come from.
pub enum Source {
    Live(CaptureOptions),
    /// `-r FILE`, with the packet selection of `cnet read`.
    File(ReadOptions),
}

pub struct LatencyOptions {
    pub source: Source,
    pub json: bool,
    pub plot: Option<PathBuf>,
    pub quiet: bool,
}

/// The interface of the engine for interface `id` of a file: cnet's labels
/// where the description has them (owner, interface, addresses: the same
/// vantage as the live capture had), else the file's interface name.
fn file_iface(id: u32, fi: &FileInterface) -> Iface {
    let ifname = if fi.name.is_empty() { format!("if{id}") } else { fi.name.clone() };
    let endpoint = match read::owner_label(fi) {
        Some((owner, iface, addrs)) => Endpoint {
            ifindex: id,
            ifname,
            link_type: ARPHRD_ETHER,
            peer_view: true,
            label: Label { owner, iface, addrs, ..Label::default() },
        },
        None => Endpoint::host_interface(id, &ifname, ARPHRD_ETHER),
    };
    Iface::new(id, endpoint, fi.snaplen)
}

/// Feeds the selected packets of a file to the engine, each interface of
/// the file a vantage point, in file order: what a live capture of the
/// same packets feeds it, so the report is the same.
fn analyse_file(opts: &ReadOptions) -> Result<Report> {
    let mut engine = Engine::default();
    let mut ifaces: Vec<Iface> = Vec::new();
    let mut selection = Selection::new(opts);
    let mut failed: Option<anyhow::Error> = None;
    let limit = opts.count.unwrap_or(u64::MAX);
    let mut taken = 0u64;
    let mut without_direction = 0u64;
    let mut unknown_links: Vec<u32> = Vec::new();
    let result = capture_file::for_each_packet(&opts.path, |file, pkt| {
        // Every interface as soon as the file describes it, as a live
        // capture adds every hooked interface before its first packet: hop
        // matching starts with the second interface.
        while ifaces.len() < file.interfaces.len() {
            let id = ifaces.len() as u32;
            let fi = &file.interfaces[id as usize];
            let link = Link::from_linktype(fi.linktype).unwrap_or_else(|| {
                unknown_links.push(fi.linktype);
                Link::Ethernet
            });
            let iface = file_iface(id, fi);
            engine.add_interface_with_link(&iface, link);
            ifaces.push(iface);
        }
        match selection.select(file, &pkt) {
            Ok(true) => {}
            Ok(false) => return true,
            Err(e) => {
                failed = Some(e);
                return false;
            }
        }
        // The reader checks that each packet names an interface it described.
        let Some(iface) = ifaces.get(pkt.interface as usize) else { return true };
        let dir = read::direction(&pkt);
        let p = Packet {
            ts_ns: pkt.ts_ns,
            dir: dir.unwrap_or(crate::model::Direction::In),
            orig_len: pkt.orig_len,
            data: &pkt.data,
        };
        if dir.is_some() {
            engine.packet(iface, &p);
        } else {
            without_direction += 1;
            engine.packet_without_direction(iface, &p);
        }
        taken += 1;
        taken < limit
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let file = match result {
        Ok(file) => file,
        // A cut-short file (a killed capture) still has a report: what came
        // before the damage, with a warning.
        Err((e @ capture_file::ReadError::Malformed { .. }, file)) => {
            log::warn!("{e}; the file is damaged or was cut short: the report covers the packets before it");
            file
        }
        Err((e, _)) => bail!("{e}"),
    };
    selection.finish(&opts.path, &file)?;
    for lt in unknown_links {
        log::warn!("link type {lt} is not decoded by cnet; its packets were read as Ethernet");
    }
    if without_direction > 0 {
        log::warn!(
            "{without_direction} packets of {} carry no direction (no pcapng direction flags, as in files from \
             tcpdump): they count for flows, not for hops",
            opts.path.display()
        );
    }
    engine.finish();
    Ok(engine.report())
}

/// Runs `cnet latency`: capture until stopped (or read the file), then report.
pub async fn run(opts: LatencyOptions) -> Result<()> {
    // A wrong plot file name is refused before anything else happens; the
    // file itself is created with the pcapng output, after the targets
    // resolved and before anything is attached.
    let plot_format = match &opts.plot {
        None => None,
        Some(path) => match PlotFormat::from_path(path) {
            Some(f) => Some(f),
            None => bail!("--plot {} must name an .svg or .html file", path.display()),
        },
    };
    let quiet = opts.quiet;
    let mut plot_file: Option<File> = None;
    let create_plot = |plot_file: &mut Option<File>| -> Result<()> {
        if let Some(path) = &opts.plot {
            *plot_file = Some(File::create(path).with_context(|| format!("cannot write {}", path.display()))?);
        }
        Ok(())
    };
    let (report, pcap_on_stdout) = match opts.source {
        Source::File(read_opts) => {
            create_plot(&mut plot_file)?;
            (analyse_file(&read_opts)?, false)
        }
        Source::Live(capture_opts) => {
            let pcap_on_stdout = capture_opts.output == Output::Stdout;
            let mut sink: Option<LatencySink> = None;
            let summary = capture::run_with_sink(capture_opts, |capture_opts, os| {
                create_plot(&mut plot_file)?;
                // The same outputs as `cnet capture` (safe creation, the -Z
                // user, fifos and pipes live and watched), one stream only.
                let stream = match capture_opts.output.stream() {
                    Some(to) => Some(open_stream(to, capture_opts.file_mode, &capture::output_owner(capture_opts))?),
                    None if matches!(capture_opts.output, Output::Rotate(_)) => {
                        bail!("cnet latency writes one file: -C, -G and -W are for cnet capture")
                    }
                    None => None,
                };
                let (live, watch) = stream.as_ref().map_or((false, None), |s| (s.live, s.watch));
                let s = sink.insert(LatencySink::new(stream.map(|s| s.file), os)?);
                Ok(capture::Opened { sink: Box::new(s) as Box<dyn Sink + '_>, live, watch })
            })
            .await?;
            capture::print_summary(&summary);
            // No sink: a signal stopped cnet before the capture started (it
            // said so), and there is nothing to report.
            let Some(sink) = sink else { return Ok(()) };
            (sink.engine.report(), pcap_on_stdout)
        }
    };

    // The report goes to standard output unless pcapng does (`-w -`); with
    // --json the JSON takes standard output and the table goes to standard
    // error for whoever watches.
    let table = report.table();
    let stdout_is_free = !pcap_on_stdout;
    let mut out = io::stdout().lock();
    let mut err = io::stderr().lock();
    let mut printed = Ok(());
    if opts.json {
        let json = report.json();
        if stdout_is_free {
            printed = writeln!(out, "{json}");
            if !quiet {
                let _ = write!(err, "{table}");
            }
        } else {
            let _ = writeln!(err, "{json}");
        }
    } else if stdout_is_free {
        printed = write!(out, "{table}");
    } else {
        let _ = write!(err, "{table}");
    }
    match printed.and_then(|()| out.flush()) {
        // The reader went away (`| head`): not an error; the plot is still written.
        Err(e) if !crate::text::is_broken_pipe(&e) => return Err(e).context("cannot write to standard output"),
        _ => {}
    }

    if let (Some(path), Some(format), Some(mut file)) = (&opts.plot, plot_format, plot_file) {
        let text = match format {
            PlotFormat::Svg => plot::svg(&report),
            PlotFormat::Html => plot::html(&report),
        }
        .map_err(anyhow::Error::msg)?;
        file.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
        if !quiet {
            let _ = writeln!(err, "cnet: plot written to {}", path.display());
        }
    }
    Ok(())
}
