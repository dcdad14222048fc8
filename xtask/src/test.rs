//! `cargo xtask test`: setup with the test packages, clippy over the
//! workspace, then every test with the container runtimes running, ending
//! with one total over all test binaries.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::util::{self, Runtimes, require_root, workspace_root};

/// Runs clippy, then `cargo test` with `args` appended.
pub fn run(args: &[String]) -> Result<()> {
    crate::setup::run(true)?;
    require_root("the tests create network namespaces and load eBPF programs")?;
    clippy()?;
    let bin = crate::cnet_build::cnet(false)?;
    // The container tests talk to real Docker, Podman and containerd. The
    // script starts what is not running yet; the guard stops exactly that.
    let runtimes = Runtimes::start().context("starting the container runtimes for the tests")?;
    let mut child = Command::new("cargo")
        .args(["test", "--workspace", "--exclude", "cnet-ebpf", "--no-fail-fast"])
        .args(args)
        .env("CNET_BIN", &bin)
        .current_dir(workspace_root())
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    // Pass the output through and add up every "test result:" line, so the
    // run ends with one total rather than the last test binary's count.
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    let stdout = child.stdout.take().context("cargo test's output is not piped")?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split(';') {
                let mut w = part.split_whitespace().rev();
                let (Some(what), Some(n)) = (w.next(), w.next()) else { continue };
                let n: u64 = n.parse().unwrap_or(0);
                match what {
                    "passed" => passed += n,
                    "failed" => failed += n,
                    "ignored" => ignored += n,
                    _ => {}
                }
            }
        }
    }
    let status = child.wait()?;
    drop(runtimes);
    println!("\ntotal: {passed} passed, {failed} failed, {ignored} skipped");
    if !status.success() {
        bail!("cargo test failed ({status})");
    }
    Ok(())
}

/// Lints every crate but the eBPF one (which only builds for the BPF target)
/// with warnings as errors, so a lint fails the run before the slow tests.
fn clippy() -> Result<()> {
    eprintln!("xtask: cargo clippy --workspace --exclude cnet-ebpf --all-targets -- -D warnings");
    util::run(
        Command::new("cargo")
            .args(["clippy", "--workspace", "--exclude", "cnet-ebpf", "--all-targets", "--", "-D", "warnings"])
            .current_dir(workspace_root()),
    )
    .context("clippy reported warnings or errors (shown above); fix them, then run the tests again")
}
