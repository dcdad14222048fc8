//! Project automation: `cargo xtask <command>`.
//!
//! - `setup`: make the eBPF toolchain ready (nightly + rust-src, bpf-linker
//!   built against the nightly toolchain's own libLLVM); `--test-deps` also
//!   installs what the tests use (tshark, tcpdump, iproute2, ping, bpftool,
//!   iperf3, chromium).
//! - `demo`: build cnet, make a throwaway lab of two "containers", capture
//!   their traffic by name into demo.pcapng, remove the lab.
//! - `test`: setup + test deps, then run every test.
//! - `bench`: cnet against tcpdump on the same lab traffic.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod bench;
mod demo;
mod soak;

#[derive(Parser)]
#[command(name = "xtask", about = "cnet project automation")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the eBPF toolchain pieces (idempotent).
    Setup {
        /// Also install the packages the tests use (apt).
        #[arg(long)]
        test_deps: bool,
    },
    /// Build the cnet binary (release) with its embedded eBPF object.
    Build,
    /// Capture a demo lab's traffic into demo.pcapng.
    Demo {
        /// Output file.
        #[arg(short = 'w', default_value = "demo.pcapng")]
        output: PathBuf,
        /// Seconds of traffic to capture.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// Benchmark cnet against tcpdump on the same traffic (as root).
    Bench {
        /// Seconds-long smoke run (no speed claims).
        #[arg(long)]
        quick: bool,
        /// Seconds per run (default 8, quick 2).
        #[arg(long)]
        seconds: Option<u64>,
        /// Compare `cnet latency` (both lab veths, default snap length) with
        /// no capture and with `cnet capture -s 96`, instead of cnet against
        /// tcpdump.
        #[arg(long)]
        latency: bool,
        /// Interleaved rounds (default 3, quick 1).
        #[arg(long)]
        rounds: Option<usize>,
        /// Only these loads (repeatable): tcp-bulk-1, tcp-bulk-2, udp-64B,
        /// tcp-req-resp.
        #[arg(long = "load", value_name = "LOAD")]
        loads: Vec<String>,
    },
    /// Capture restarting Docker containers for a while; report memory,
    /// descriptors, drops and leftovers (as root).
    Soak {
        /// Minutes to run.
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// Containers to start.
        #[arg(long, default_value_t = 10)]
        containers: usize,
    },
    /// Run all tests (as root: they create namespaces and load eBPF).
    Test {
        /// Extra arguments for `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Setup { test_deps } => setup(test_deps),
        Cmd::Build => setup(false).and_then(|_| build_cnet(true).map(|_| ())),
        Cmd::Demo { output, seconds } => setup(false).and_then(|_| {
            require_root("the demo creates network namespaces and loads eBPF programs")?;
            let bin = build_cnet(true)?;
            demo::run(&bin, &output, seconds)
        }),
        Cmd::Bench { quick, seconds, rounds, loads, latency } => setup(true).and_then(|_| {
            require_root("the benchmark creates network namespaces and loads eBPF programs")?;
            let bin = build_cnet(true)?;
            bench::run(&bin, &bench::Options { quick, seconds, rounds, loads, latency })
        }),
        Cmd::Soak { minutes, containers } => setup(true).and_then(|_| {
            require_root("the soak starts containers and loads eBPF programs")?;
            let bin = build_cnet(true)?;
            run(Command::new("bash").arg("scripts/start-runtimes.sh").current_dir(workspace_root()))?;
            let _runtimes = StopRuntimes;
            soak::run(&bin, &soak::Options { minutes, containers })
        }),
        Cmd::Test { args } => setup(true).and_then(|_| test(&args)),
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn require_root(why: &str) -> Result<()> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{why}; run as root (e.g. `sudo -E env PATH=$PATH cargo xtask …`)");
    }
    Ok(())
}

fn cmd_ok(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Nightly toolchain, rust-src, bpf-linker; then test packages if asked.
fn setup(test_deps: bool) -> Result<()> {
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

fn ensure_nightly() -> Result<()> {
    if cmd_ok(Command::new("rustup").args(["run", "nightly", "rustc", "--version"])) {
        return Ok(());
    }
    eprintln!("xtask: installing the nightly toolchain");
    run(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))
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
    run(Command::new("apt-get").args(&apt_opts).arg("update"))?;
    let policy = output(Command::new("apt-cache").args(&apt_opts).args(["madison", "rust-src"]))?;
    let pkg_version = policy
        .lines()
        .filter_map(|l| l.split('|').nth(1).map(str::trim))
        .find(|ver| ver.contains(&major_minor))
        .with_context(|| format!("Debian has no rust-src {major_minor}"))?
        .to_string();
    run(Command::new("apt-get")
        .args(&apt_opts)
        .arg("download")
        .arg(format!("rust-src={pkg_version}"))
        .current_dir(&tmp))?;
    let deb = std::fs::read_dir(&tmp)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download produced no .deb")?;
    let unpack = tmp.join("unpack");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpack))?;
    let from = unpack.join("usr/lib/rustlib/src/rust");
    let to = sysroot.join("lib/rustlib/src/rust");
    std::fs::create_dir_all(to.parent().unwrap())?;
    run(Command::new("cp").arg("-a").arg(&from).arg(&to))?;
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
    run(Command::new("cargo")
        .args(["install", "--force", "bpf-linker", "--version", "^0.13", "--no-default-features", "--features"])
        .arg(format!("llvm-{major}"))
        .env("LLVM_PREFIX", &prefix)
        .env("RUSTFLAGS", rustflags)
        .env_remove("RUSTC")
        .env_remove("RUSTC_WRAPPER"))
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
    run(Command::new("apt-get").args(["update", "-q"]).env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Builds cnet and returns the binary's path.
fn build_cnet(release: bool) -> Result<PathBuf> {
    let root = workspace_root();
    let mut cmd = Command::new("cargo");
    cmd.args(["build", "-p", "cnet-user", "--bin", "cnet"]).current_dir(&root);
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd)?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or(root.join("target"));
    Ok(target.join(if release { "release" } else { "debug" }).join("cnet"))
}

/// Stops the runtimes that scripts/start-runtimes.sh started, on any exit.
struct StopRuntimes;

impl Drop for StopRuntimes {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg("scripts/stop-runtimes.sh").current_dir(workspace_root()).status();
    }
}

fn test(args: &[String]) -> Result<()> {
    use std::io::{BufRead, BufReader};
    require_root("the tests create network namespaces and load eBPF programs")?;
    let bin = build_cnet(false)?;
    // The container tests talk to real Docker, Podman and containerd. The
    // script starts what is not running yet; the guard stops exactly that.
    run(Command::new("bash").arg("scripts/start-runtimes.sh").current_dir(workspace_root()))
        .context("starting the container runtimes for the tests")?;
    let runtimes = StopRuntimes;
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
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
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
