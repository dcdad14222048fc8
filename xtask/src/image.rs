//! `cargo xtask image`: the OCI image `cnet:VERSION`, `FROM scratch` plus the
//! static release binary (docker/Dockerfile), built with the local Docker.
//! No base image is pulled: the build needs no registry.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::util::{self, cmd_ok, output, workspace_root};

/// The `image` verb: the release (reused when up to date), then the image.
pub fn run() -> Result<()> {
    let started = Instant::now();
    let dist = crate::dist::build()?;
    let tag = build(&dist)?;
    let bytes: u64 = output(Command::new("docker").args(["image", "inspect", "--format", "{{.Size}}", &tag]))?
        .parse()
        .context("reading the image's size")?;
    println!("image {tag}: {:.1} MiB", bytes as f64 / (1024.0 * 1024.0));
    eprintln!("xtask: image took {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Builds `cnet:VERSION` from `dist`'s binary and returns the tag.
pub fn build(dist: &crate::dist::Dist) -> Result<String> {
    if !cmd_ok(Command::new("docker").arg("info")) {
        bail!(
            "Docker does not answer on its socket; start dockerd (the tests' `bash scripts/start-runtimes.sh` starts one) and run `cargo xtask image` again"
        );
    }
    let root = workspace_root();
    // A context with only the binary: nothing else of the tree reaches the
    // daemon.
    let context = dist.staging.with_file_name("image-context");
    let _ = std::fs::remove_dir_all(&context);
    std::fs::create_dir_all(&context)?;
    std::fs::copy(&dist.binary, context.join("cnet"))?;
    let revision = output(Command::new("git").args(["rev-parse", "--short", "HEAD"]).current_dir(&root))
        .unwrap_or_else(|_| "unknown".to_string());
    let tag = format!("cnet:{}", dist.version);
    let id = |tag: &str| output(Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", tag])).ok();
    let previous = id(&tag);
    util::run(
        Command::new("docker")
            .arg("build")
            .args(["-t", &tag, "-f"])
            .arg(root.join("docker/Dockerfile"))
            .args(["--build-arg", &format!("VERSION={}", dist.version)])
            .args(["--build-arg", &format!("REVISION={revision}")])
            .arg(&context),
    )
    .context("docker build failed; see the output above")?;
    // The image this tag named before (an older binary) would stay behind
    // untagged after every rebuild; a container still using it keeps it.
    if let Some(old) = previous
        && id(&tag).as_ref() != Some(&old)
    {
        let _ = Command::new("docker").args(["image", "rm", &old]).output();
    }
    Ok(tag)
}
