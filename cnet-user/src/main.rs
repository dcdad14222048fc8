use std::process::ExitCode;

use clap::Parser;
use cnet::capture;
use cnet::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .format_target(false)
        .init();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Capture(args) => {
                let opts = args.into_options()?;
                let summary = capture::run(opts).await?;
                capture::print_summary(&summary);
                anyhow::Ok(())
            }
            Command::List(args) => cnet::list::run(args.json).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("cnet: error: {e:#}");
    ExitCode::FAILURE
}
