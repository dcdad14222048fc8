//! Builds the eBPF programs (crate `cnet-ebpf`) for bpfel-unknown-none with
//! aya-build and leaves the object in OUT_DIR, from where `attach.rs` embeds
//! it: the `cnet` binary is self-contained.
use std::process::Command;

fn main() {
    if let Err(e) = build() {
        // Plain message, no backtrace: this is what the user has to read.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn build() -> anyhow::Result<()> {
    add_cargo_bin_to_path();
    check_toolchain()?;
    // aya-build relays every line the child cargo prints on stderr as a
    // `cargo:warning`, so its "Compiling …" status lines would appear as
    // dozens of warnings on every build and bury real ones. A quiet child
    // prints only diagnostics, which still reach the user.
    // SAFETY: the build script is single-threaded at this point.
    unsafe { std::env::set_var("CARGO_TERM_QUIET", "true") };
    let ebpf = aya_build::Package {
        name: "cnet-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../cnet-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], aya_build::Toolchain::Nightly)?;
    describe_build()
}

#[path = "src/ebpf_hash.rs"]
mod ebpf_hash;

/// What `cnet --version` says about the build (src/version.rs): the commit,
/// and the hash of the eBPF object just built, which the binary compares
/// with the object it embeds.
fn describe_build() -> anyhow::Result<()> {
    let out_dir = std::env::var_os("OUT_DIR").ok_or_else(|| anyhow::anyhow!("OUT_DIR is not set"))?;
    let object = std::path::Path::new(&out_dir).join("cnet");
    let bytes = std::fs::read(&object).map_err(|e| anyhow::anyhow!("reading {}: {e}", object.display()))?;
    println!("cargo:rustc-env=CNET_EBPF_HASH={:016x}", ebpf_hash::fnv1a64(&bytes));
    println!("cargo:rustc-env=CNET_GIT_COMMIT={}", git_commit());
    Ok(())
}

/// `git rev-parse --short HEAD`, or "unknown" outside a git checkout (a
/// source tarball). Asks cargo to run this again when HEAD moves: the files
/// that hold HEAD and the branch it names (in a worktree they live in the
/// main checkout's .git).
fn git_commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let Some(commit) = git(&["rev-parse", "--short", "HEAD"]) else { return "unknown".to_string() };
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", &name]) else { continue };
        // A missing file would make cargo rerun this script on every build.
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    commit
}

/// `cargo install` puts bpf-linker into $CARGO_HOME/bin, which is not always
/// on PATH (CI shells, sudo). aya-build finds it through PATH.
fn add_cargo_bin_to_path() {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo")));
    let Some(bin) = home.map(|h| h.join("bin")) else { return };
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|p| p == bin) {
        return;
    }
    // A PATH entry with a ':' cannot be joined; aya-build then finds what
    // the PATH it has finds.
    let Ok(joined) = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&path))) else { return };
    // SAFETY: the build script is single-threaded at this point.
    unsafe { std::env::set_var("PATH", joined) };
}

/// Fails early, with the command that fixes it, when a piece of the eBPF
/// toolchain is missing (aya-build's own errors are much less direct).
fn check_toolchain() -> anyhow::Result<()> {
    const FIX: &str = "run `cargo xtask setup` (installs nightly + rust-src and bpf-linker)";
    // The linker found on PATH, not PATH itself, decides the object: PATH
    // differs between shells, sudo, CI and xtask (each may prepend
    // ~/.cargo/bin once more), and watching it re-ran aya-build and relinked
    // cnet whenever the same build was started from another place.
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(linker) = std::env::split_paths(&path).map(|d| d.join("bpf-linker")).find(|p| p.is_file()) {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
    let linker_ok = Command::new("rustup")
        .args(["run", "nightly", "bpf-linker", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !linker_ok {
        anyhow::bail!("bpf-linker is not on PATH; {FIX}");
    }
    let sysroot = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let Some(sysroot) = sysroot else {
        anyhow::bail!("the nightly Rust toolchain is not installed; {FIX}");
    };
    let src = std::path::Path::new(&sysroot).join("lib/rustlib/src/rust/library/core");
    if !src.exists() {
        anyhow::bail!("the nightly toolchain has no rust-src component; {FIX}");
    }
    Ok(())
}
