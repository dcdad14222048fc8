//! `cnet latency`: capture with the latency engine as the sink, then print
//! the report (table or JSON) and the plot.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::cmd::capture::{self, CaptureOptions, Output};
use crate::latency::LatencySink;
use crate::latency::plot::{self, PlotFormat};
use crate::pipeline::sinks::Sink;
use crate::pipeline::sinks::output::open_stream;

pub struct LatencyOptions {
    pub capture: CaptureOptions,
    pub json: bool,
    pub plot: Option<PathBuf>,
}

/// Runs `cnet latency`: capture until stopped, then report.
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
    let pcap_on_stdout = opts.capture.output == Output::Stdout;
    let quiet = opts.capture.quiet;
    let mut sink: Option<LatencySink> = None;
    let mut plot_file: Option<File> = None;
    let summary = capture::run_with_sink(opts.capture, |capture_opts, os| {
        if let Some(path) = &opts.plot {
            plot_file = Some(File::create(path).with_context(|| format!("cannot write {}", path.display()))?);
        }
        // The same outputs as `cnet capture` (safe creation, the -Z user,
        // fifos and pipes live and watched), but one stream only.
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
    // No sink: a signal stopped cnet before the capture started (it said
    // so), and there is nothing to report.
    let Some(sink) = sink else { return Ok(()) };
    let report = sink.engine.report();

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
