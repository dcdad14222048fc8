use std::io::Write;
use std::process::ExitCode;

use cnet::cli::{Cli, Command};
use cnet::cmd::{capture, extcap, latency, read as readback};
use cnet::pipeline::resolve::any;
use cnet::text;

fn main() -> ExitCode {
    let cli = Cli::parse_ordered();
    // Messages for humans: "cnet: warning: …", no timestamps or module paths.
    // They quote names from runtimes, files and packets: escaped, so that
    // none can move the cursor, recolour or clear the terminal, or forge a
    // line.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format(|buf, record| {
            let level = match record.level() {
                log::Level::Warn => "warning".to_string(),
                l => l.as_str().to_lowercase(),
            };
            writeln!(buf, "cnet: {level}: {}", text::escape(&record.args().to_string()))
        })
        .init();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Capture(mut args) => {
                if args.list_interfaces {
                    return cnet::cmd::list::interfaces().await;
                }
                if let Some(file) = args.read.take() {
                    // `cnet capture -r FILE`, tcpdump's way of reading a file.
                    readback::run(&args.read_options(file)?)?;
                    return anyhow::Ok(());
                }
                let mut opts = args.into_options()?;
                opts.targets = any::expand(opts.targets).await?;
                let summary = capture::run(opts).await?;
                capture::print_summary(&summary);
                anyhow::Ok(())
            }
            Command::Read(args) => {
                readback::run(&args.into_options()?)?;
                anyhow::Ok(())
            }
            Command::Extcap(args) => extcap::run(&args.args).await,
            Command::List(args) => cnet::cmd::list::run(args.json).await,
            Command::Latency(args) => {
                let mut opts = args.into_options()?;
                if let latency::Source::Live(capture) = &mut opts.source {
                    capture.targets = any::expand(std::mem::take(&mut capture.targets)).await?;
                }
                latency::run(opts).await
            }
            Command::Completions(args) => {
                let mut out = Vec::new();
                args.write(&mut out);
                write_stdout(&out)
            }
            Command::Man(args) => {
                let mut out = Vec::new();
                args.write(&mut out)?;
                write_stdout(&out)
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Writes generated text (completions, the manual page) to standard output;
/// a reader that goes away early (`cnet man | head`) is not an error.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn fail(e: &anyhow::Error) -> ExitCode {
    // Error messages may quote such names too (see the logger above).
    eprintln!("cnet: error: {}", text::escape(&format!("{e:#}")));
    ExitCode::FAILURE
}
