//! Process helpers shared by the verbs: where the workspace is, running
//! commands (`run`, `output`, `cmd_ok`), the root check, and the container
//! runtimes that the tests and the soak start and stop.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

pub fn workspace_root() -> PathBuf {
    // xtask/ sits at the root of the workspace.
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

pub fn require_root(why: &str) -> Result<()> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{why}; run as root (e.g. `sudo -E env PATH=$PATH cargo xtask …`)");
    }
    Ok(())
}

/// Whether the command runs and succeeds; its output is discarded.
pub fn cmd_ok(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Runs the command with inherited output; an error if it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// Runs the command and returns its trimmed stdout; an error (with its
/// stderr) if it fails.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The container runtimes started by scripts/start-runtimes.sh; stops them
/// (exactly those it started) on drop, on any exit.
pub struct Runtimes(());

impl Runtimes {
    pub fn start() -> Result<Runtimes> {
        run(Command::new("bash").arg("scripts/start-runtimes.sh").current_dir(workspace_root()))?;
        Ok(Runtimes(()))
    }
}

impl Drop for Runtimes {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg("scripts/stop-runtimes.sh").current_dir(workspace_root()).status();
    }
}
