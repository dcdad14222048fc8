//! `cargo xtask setup`: the toolchain and packages every other verb needs.
//! The nightly toolchain with rust-src, bpf-linker built against that
//! toolchain's own libLLVM, protoc and libpcap's headers; with `test_deps`
//! also the packages the tests and the bench run (apt). Idempotent: only what
//! is missing is installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{self, cmd_ok, output, require_root};

/// Nightly toolchain, rust-src, bpf-linker; then test packages if asked.
pub fn run(test_deps: bool) -> Result<()> {
    ensure_nightly()?;
    let sysroot =
        PathBuf::from(output(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))?);
    ensure_rust_src(&sysroot)?;
    ensure_bpf_linker(&sysroot)?;
    // containerd's API client compiles its protobuf definitions at build time.
    ensure_packages(&[("protoc", "protobuf-compiler")])?;
    // cnet links libpcap, which compiles capture filter expressions.
    ensure_dev_packages(&[("/usr/include/pcap/pcap.h", "libpcap-dev")])?;
    if test_deps {
        ensure_packages(&[
            ("tshark", "tshark"),
            ("tcpdump", "tcpdump"),
            ("ip", "iproute2"),
            ("ping", "iputils-ping"),
            ("bpftool", "bpftool"),
            ("iperf3", "iperf3"),
            // Renders `cnet latency --plot` output in the tests.
            ("chromium", "chromium"),
        ])?;
    }
    Ok(())
}

/// What `cargo xtask dist` needs on top of `run`: the musl target for a
/// static cnet, musl-gcc, flex and bison to build libpcap from its source,
/// dpkg-source to unpack and verify that source. Idempotent.
pub fn ensure_dist_tools() -> Result<()> {
    ensure_packages(&[
        ("musl-gcc", "musl-tools"),
        ("flex", "flex"),
        ("bison", "bison"),
        ("dpkg-source", "dpkg-dev"),
        ("make", "make"),
        ("strip", "binutils"),
    ])?;
    ensure_rust_target(crate::dist::TARGET)
}

/// Adds a target to the default (stable) toolchain unless it is there.
fn ensure_rust_target(target: &str) -> Result<()> {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if installed.lines().any(|l| l.trim() == target) {
        return Ok(());
    }
    eprintln!("xtask: adding the {target} target");
    util::run(Command::new("rustup").args(["target", "add", target]))
        .with_context(|| format!("could not add the {target} target; run `rustup target add {target}`"))
}

fn ensure_nightly() -> Result<()> {
    if cmd_ok(Command::new("rustup").args(["run", "nightly", "rustc", "--version"])) {
        return Ok(());
    }
    eprintln!("xtask: installing the nightly toolchain");
    util::run(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))
        .context("the nightly toolchain is missing and rustup could not install it; install it with `rustup toolchain install nightly`")
}

fn ensure_rust_src(sysroot: &Path) -> Result<()> {
    let src = sysroot.join("lib/rustlib/src/rust");
    if src.join("library/core/Cargo.toml").exists() {
        return Ok(());
    }
    eprintln!("xtask: adding rust-src to the nightly toolchain");
    if cmd_ok(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"])) {
        return Ok(());
    }
    eprintln!("xtask: rustup could not fetch rust-src; trying Debian's rust-src package");
    rust_src_from_debian(sysroot)
        .context("could not install rust-src: run `rustup component add rust-src --toolchain nightly`")
}

/// Fallback when rustup cannot download rust-src: Debian's `rust-src`
/// package of the same version, fetched through a private apt source list
/// (the system's apt configuration is not touched) and unpacked into the
/// toolchain.
fn rust_src_from_debian(sysroot: &Path) -> Result<()> {
    let version = output(Command::new("rustup").args(["run", "nightly", "rustc", "--version"]))?;
    // "rustc 1.97.0-nightly (…)" -> "1.97"
    let v = version.split_whitespace().nth(1).unwrap_or_default();
    let major_minor: String = v.split('.').take(2).collect::<Vec<_>>().join(".");
    let tmp = std::env::temp_dir().join("cnet-rust-src");
    let _ = std::fs::remove_dir_all(&tmp);
    for d in ["lists/partial", "cache/archives/partial", "etc"] {
        std::fs::create_dir_all(tmp.join(d))?;
    }
    std::fs::write(tmp.join("etc/sources.list"), "deb http://deb.debian.org/debian sid main\n")?;
    let apt_opts = [
        format!("-oDir::Etc::SourceList={}", tmp.join("etc/sources.list").display()),
        "-oDir::Etc::SourceParts=/nonexistent".to_string(),
        format!("-oDir::State::Lists={}", tmp.join("lists").display()),
        format!("-oDir::Cache::Archives={}", tmp.join("cache/archives").display()),
    ];
    util::run(Command::new("apt-get").args(&apt_opts).arg("update"))?;
    let policy = output(Command::new("apt-cache").args(&apt_opts).args(["madison", "rust-src"]))?;
    let pkg_version = policy
        .lines()
        .filter_map(|l| l.split('|').nth(1).map(str::trim))
        .find(|ver| ver.contains(&major_minor))
        .with_context(|| format!("Debian has no rust-src {major_minor}"))?
        .to_string();
    util::run(
        Command::new("apt-get")
            .args(&apt_opts)
            .arg("download")
            .arg(format!("rust-src={pkg_version}"))
            .current_dir(&tmp),
    )?;
    let deb = std::fs::read_dir(&tmp)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download produced no .deb")?;
    let unpack = tmp.join("unpack");
    util::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpack))?;
    let from = unpack.join("usr/lib/rustlib/src/rust");
    let to = sysroot.join("lib/rustlib/src/rust");
    std::fs::create_dir_all(sysroot.join("lib/rustlib/src"))?;
    util::run(Command::new("cp").arg("-a").arg(&from).arg(&to))?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

fn ensure_bpf_linker(sysroot: &Path) -> Result<()> {
    let lib = sysroot.join("lib");
    // The nightly toolchain ships its LLVM as libLLVM.so.<major>.<minor>-rust-…
    let llvm = std::fs::read_dir(&lib)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("libLLVM.so.") && n.contains("-rust-"))
        .with_context(|| format!("no libLLVM.so.*-rust-* in {}", lib.display()))?;
    let major = llvm.trim_start_matches("libLLVM.so.").split('.').next().unwrap_or_default().to_string();
    if cmd_ok(Command::new("bpf-linker").arg("--version")) && linker_matches(&llvm) {
        return Ok(());
    }
    eprintln!("xtask: building bpf-linker against the nightly toolchain's {llvm} (about a minute)");
    // bpf-linker's build looks for lib/libLLVM.so under LLVM_PREFIX.
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let prefix = home.join(".cache/cnet/llvm").join(&llvm);
    std::fs::create_dir_all(prefix.join("lib"))?;
    let link = prefix.join("lib/libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(lib.join(&llvm), &link)?;
    // The rpath lets bpf-linker find the toolchain's libLLVM when it runs
    // outside `rustup run` (and keeps working after the toolchain updates
    // only as long as this file exists; setup rebuilds it otherwise).
    let rustflags = format!("-C link-arg=-Wl,-rpath,{}", lib.display());
    util::run(
        Command::new("cargo")
            .args(["install", "--force", "bpf-linker", "--version", "^0.13", "--no-default-features", "--features"])
            .arg(format!("llvm-{major}"))
            .env("LLVM_PREFIX", &prefix)
            .env("RUSTFLAGS", rustflags)
            .env_remove("RUSTC")
            .env_remove("RUSTC_WRAPPER"),
    )
    .context("building bpf-linker failed; see the output above")?;
    if !cmd_ok(Command::new("bpf-linker").arg("--version")) {
        bail!("bpf-linker was installed but does not run; make sure ~/.cargo/bin is on PATH");
    }
    Ok(())
}

/// Whether the installed bpf-linker loads the toolchain's current libLLVM.
fn linker_matches(llvm: &str) -> bool {
    let Ok(path) = output(Command::new("sh").args(["-c", "command -v bpf-linker"])) else { return false };
    output(Command::new("ldd").arg(path)).is_ok_and(|l| l.contains(llvm) && !l.contains("not found"))
}

/// Installs the packages (`(command, package)`) whose command is missing.
fn ensure_packages(pkgs: &[(&str, &str)]) -> Result<()> {
    apt_install_missing(pkgs, |bin| cmd_ok(Command::new("sh").args(["-c", &format!("command -v {bin}")])))
}

/// Installs the packages (`(file, package)`) whose marker file is missing
/// (headers and libraries have no command to look for).
fn ensure_dev_packages(pkgs: &[(&str, &str)]) -> Result<()> {
    apt_install_missing(pkgs, |file| Path::new(file).exists())
}

fn apt_install_missing(pkgs: &[(&str, &str)], present: impl Fn(&str) -> bool) -> Result<()> {
    let missing: Vec<&str> = pkgs.iter().filter(|(probe, _)| !present(probe)).map(|(_, pkg)| *pkg).collect();
    if missing.is_empty() {
        return Ok(());
    }
    require_root(&format!("installing {} needs apt", missing.join(" ")))?;
    eprintln!("xtask: installing {}", missing.join(" "));
    util::run(Command::new("apt-get").args(["update", "-q"]).env("DEBIAN_FRONTEND", "noninteractive"))?;
    util::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}
