//! `cargo xtask build`, and the cnet binary the other verbs run: cnet-user
//! built with cargo (its build script builds and embeds the eBPF object).

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;

use crate::util::{self, workspace_root};

/// The `build` verb: setup, then a release cnet.
pub fn run() -> Result<()> {
    crate::setup::run(false)?;
    cnet(true).map(|_| ())
}

/// Builds cnet and returns the binary's path.
pub fn cnet(release: bool) -> Result<PathBuf> {
    let root = workspace_root();
    let mut cmd = Command::new("cargo");
    cmd.args(["build", "-p", "cnet-user", "--bin", "cnet"]).current_dir(&root);
    if release {
        cmd.arg("--release");
    }
    util::run(&mut cmd)?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or(root.join("target"));
    Ok(target.join(if release { "release" } else { "debug" }).join("cnet"))
}
