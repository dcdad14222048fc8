//! Wireshark's extcap protocol (`cnet extcap …`), so cnet's targets show up
//! as capture interfaces in Wireshark and tshark, and `cnet extcap install`
//! to put a launcher where Wireshark looks for extcap programs.
//!
//! Wireshark calls the program with `--extcap-interfaces`, `--extcap-dlts`,
//! `--extcap-config` and finally `--capture --fifo PATH`; cnet then writes
//! its labeled pcapng into the fifo until Wireshark stops it (SIGTERM) or
//! closes the fifo.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cmd::capture::{self, CaptureOptions, Output};
use crate::model::Direction;
use crate::model::Target;
use crate::pipeline::attach::AttachMode;
use crate::pipeline::resolve::{self, HostLinks, ResolveError};
use crate::platform::safefs;
use crate::text;

/// Interface that captures every target at once.
pub const ALL: &str = "cnet-all";
/// Marks the launcher script as cnet's, so uninstall removes only that.
const MARKER: &str = "# Wireshark extcap launcher for cnet";
const LAUNCHER_NAME: &str = "cnet";

/// One capturable target as Wireshark lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtcapTarget {
    /// Interface name (`cnet-netns-blue`): letters, digits, `.`, `_`, `-`.
    pub interface: String,
    /// What Wireshark shows (`cnet: netns blue`).
    pub display: String,
    pub target: Target,
}

/// The targets offered as interfaces: today the named network namespaces
/// (`ip netns`) that have a veth whose peer is in cnet's namespace.
/// Containers (by runtime) are to be added here, in this one place.
pub async fn list_targets() -> Vec<ExtcapTarget> {
    let mut out = Vec::new();
    // Without the capabilities to attach, nothing can be captured: offer
    // nothing rather than interfaces that fail when Wireshark starts them.
    if !crate::platform::privileges::missing(false).is_empty() {
        return out;
    }
    // Containers of every runtime that answers, one interface each.
    if let Ok(rows) = crate::cmd::list::rows().await {
        for r in rows.into_iter().filter(|r| r.not_capturable.is_none() && !r.interfaces.is_empty()) {
            let q = r.container.qualified_name();
            let c = &r.container;
            // `containerd:default/web` → cnet-containerd-default-web.
            let name = match &c.namespace {
                Some(ns) => format!("{ns}/{}", c.name),
                None => c.name.clone(),
            };
            let image = if c.image.is_empty() { String::new() } else { format!(" ({})", c.image) };
            out.push(ExtcapTarget {
                interface: format!("cnet-{}", interface_safe(&q.replace([':', '/'], "-"))),
                display: format!("cnet: {} {name}{image}", c.runtime),
                target: Target::Container(q),
            });
        }
    }
    let Ok(host) = HostLinks::read() else { return out };
    let mut names: Vec<String> = std::fs::read_dir("/var/run/netns")
        .map(|d| d.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    names.sort();
    for name in names {
        let path = resolve::netns_path(&name);
        let capturable = match resolve::resolve_netns(&path, &format!("netns:{name}"), Vec::new(), &host) {
            Ok(_) => true,
            // Without the privilege to look inside (a user without
            // CAP_SYS_ADMIN), a capture of it would fail: not offered.
            Err(ResolveError::Permission(_)) => false,
            Err(_) => false,
        };
        if capturable {
            out.push(ExtcapTarget {
                interface: format!("cnet-netns-{}", interface_safe(&name)),
                display: format!("cnet: netns {name}"),
                target: Target::Netns(name),
            });
        }
    }
    out
}

/// Wireshark's Help button: cnet's README as a file: URL, when one lies
/// next to the binary (`README.md`, `../share/doc/cnet/README.md`, or the
/// source tree of a `cargo build`). cnet has no web page of its own, so
/// without a README there is no help field rather than a made-up address.
fn help_field() -> String {
    let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(std::path::Path::to_path_buf)) else {
        return String::new();
    };
    ["README.md", "../share/doc/cnet/README.md", "../../README.md"]
        .iter()
        .filter_map(|rel| std::fs::canonicalize(dir.join(rel)).ok())
        .find(|p| p.is_file())
        .and_then(|p| p.to_str().map(|p| format!("{{help=file://{}}}", field(p))))
        .unwrap_or_default()
}

/// Replaces characters that do not belong in an interface name.
fn interface_safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect()
}

/// Wireshark's arguments, and cnet's own config arguments.
#[derive(Debug, Default, PartialEq, Eq)]
struct Call {
    interfaces: bool,
    dlts: bool,
    config: bool,
    capture: bool,
    version: bool,
    interface: Option<String>,
    fifo: Option<PathBuf>,
    capture_filter: Option<String>,
    snaplen: Option<String>,
    targets: Vec<String>,
    direction: Option<String>,
}

/// Options that take a value (as `--opt VALUE` or `--opt=VALUE`); any other
/// unknown option is skipped alone, so new Wireshark options do no harm.
const WITH_VALUE: &[&str] = &[
    "--extcap-interface",
    "--fifo",
    "--extcap-capture-filter",
    "--extcap-control-in",
    "--extcap-control-out",
    "--extcap-reload-option",
    "--debug-file",
    "--snaplen",
    "--targets",
    "--direction",
];

fn parse(args: &[String]) -> Call {
    let mut c = Call::default();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (a, None),
        };
        let value = if WITH_VALUE.contains(&name) && inline.is_none() {
            i += 1;
            args.get(i).cloned()
        } else {
            inline
        };
        match name {
            "--extcap-interfaces" => c.interfaces = true,
            "--extcap-dlts" => c.dlts = true,
            "--extcap-config" => c.config = true,
            "--capture" => c.capture = true,
            "--extcap-version" => c.version = value.is_none(),
            "--extcap-interface" => c.interface = value,
            "--fifo" => c.fifo = value.map(PathBuf::from),
            "--extcap-capture-filter" => c.capture_filter = value,
            "--snaplen" => c.snaplen = value,
            // A multicheck arrives as one comma-separated value.
            "--targets" => {
                c.targets.extend(value.iter().flat_map(|v| v.split(',')).filter(|v| !v.is_empty()).map(String::from))
            }
            "--direction" => c.direction = value,
            _ => {}
        }
        i += 1;
    }
    c
}

/// `cnet extcap ARGS…`.
pub async fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("install") => return install(&args[1..]),
        Some("uninstall") => return uninstall(&args[1..]),
        _ => {}
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        text::print_stdout(
            "Wireshark runs `cnet extcap --extcap-interfaces …`; set it up with:\n  cnet extcap install [--user|--system]\n  cnet extcap uninstall [--user|--system]\n",
        )?;
        return Ok(());
    }
    let call = parse(args);
    let version = env!("CARGO_PKG_VERSION");
    if call.interfaces || (call.version && call.interface.is_none()) {
        let mut out = format!("extcap {{version={version}}}{}\n", help_field());
        if call.interfaces {
            let targets = list_targets().await;
            // cnet-all enters every namespace and follows containers:
            // offered only with the capabilities that needs, so that it
            // does not fail once Wireshark starts it.
            if crate::platform::privileges::missing(true).is_empty() {
                out.push_str(&format!(
                    "interface {{value={ALL}}}{{display=cnet: all containers and network namespaces}}\n"
                ));
            }
            for t in targets {
                out.push_str(&format!(
                    "interface {{value={}}}{{display={}}}\n",
                    field(&t.interface),
                    field(&t.display)
                ));
            }
        }
        text::print_stdout(&out)?;
        return Ok(());
    }
    let Some(iface) = call.interface.clone() else {
        bail!("no --extcap-interface given: this command is run by Wireshark; set it up with `cnet extcap install`");
    };
    if call.dlts {
        text::print_stdout("dlt {number=1}{name=EN10MB}{display=Ethernet (cnet pcapng with container labels)}\n")?;
        return Ok(());
    }
    if call.config {
        text::print_stdout(&config(&list_targets().await))?;
        return Ok(());
    }
    let filter = call.capture_filter.as_deref().unwrap_or("").trim();
    if !call.capture {
        // Filter validation: Wireshark shows what is printed as the reason
        // the filter is invalid; nothing printed means valid.
        if !filter.is_empty() {
            let checked = capture::check_direction_words(filter)
                .and_then(|()| cnet_filter::Filter::compile(filter, 65535).map(drop).map_err(anyhow::Error::from));
            if let Err(e) = checked {
                // One line: a line break would start a protocol line of its own.
                text::print_stdout(&format!("{}\n", field(&e.to_string())))?;
            }
        }
        return Ok(());
    }
    let fifo = call.fifo.clone().context("no --fifo given: Wireshark passes the pipe to write to")?;
    let opts = capture_options(&call, &iface, fifo, list_targets().await)?;
    // Quiet: Wireshark may show anything on stderr as an error.
    capture::run(opts).await?;
    Ok(())
}

/// One field of an extcap sentence: names come from runtimes and may hold
/// line breaks or braces, which would forge interfaces or values.
fn field(s: &str) -> std::borrow::Cow<'_, str> {
    text::escape_extcap(s)
}

/// The `--extcap-config` sentences.
fn config(targets: &[ExtcapTarget]) -> String {
    let mut out = String::new();
    let mut line = |l: &str| {
        out.push_str(l);
        out.push('\n');
    };
    line(
        "arg {number=0}{call=--snaplen}{display=Snapshot length}{tooltip=Bytes kept of each packet (0 = all, at most 65535)}{type=integer}{range=0,65535}{default=65535}",
    );
    line(
        "arg {number=1}{call=--targets}{display=Capture also}{tooltip=More namespaces to capture in the same file (cnet-all: only these, if any are checked)}{type=multicheck}",
    );
    for t in targets {
        line(&format!(
            "value {{arg=1}}{{value={}}}{{display={}}}{{enabled=true}}{{default=false}}",
            field(&t.interface),
            field(&t.display)
        ));
    }
    line(
        "arg {number=2}{call=--direction}{display=Direction}{tooltip=Direction relative to the container}{type=selector}{default=both}",
    );
    line("value {arg=2}{value=both}{display=both}{default=true}");
    line("value {arg=2}{value=in}{display=in (received by the container)}{default=false}");
    line("value {arg=2}{value=out}{display=out (sent by the container)}{default=false}");
    out
}

fn capture_options(call: &Call, iface: &str, fifo: PathBuf, known: Vec<ExtcapTarget>) -> Result<CaptureOptions> {
    let lookup = |name: &str| -> Result<Target> {
        let mut found = known.iter().filter(|t| t.interface == name);
        let t = found
            .next()
            .with_context(|| format!("no capturable target {name:?} any more; refresh Wireshark's interface list"))?;
        // Names that differ only in characters an interface name cannot
        // hold map to one interface: capture neither rather than a guess.
        if let Some(other) = found.next() {
            bail!("{name} stands for both {} and {}: capture them with `cnet capture` by name", t.target, other.target);
        }
        Ok(t.target.clone())
    };
    let mut targets = Vec::new();
    if iface != ALL {
        targets.push(lookup(iface)?);
    }
    for t in &call.targets {
        let t = lookup(t)?;
        if !targets.contains(&t) {
            targets.push(t);
        }
    }
    if iface == ALL && targets.is_empty() {
        // Every container, including those that start during the capture,
        // and every network namespace.
        targets = known.into_iter().filter(|t| matches!(t.target, Target::Netns(_))).map(|t| t.target).collect();
        targets.push(Target::AllContainers);
    }
    let snaplen = match call.snaplen.as_deref() {
        None | Some("") => 65535,
        Some(s) => s
            .parse()
            .ok()
            .filter(|n| *n <= 65535)
            .with_context(|| format!("snapshot length {s:?} must be 0 to 65535"))?,
    };
    let direction = match call.direction.as_deref() {
        None | Some("") | Some("both") => None,
        Some("in") => Some(Direction::In),
        Some("out") => Some(Direction::Out),
        Some(d) => bail!("direction {d:?} must be in, out or both"),
    };
    Ok(CaptureOptions {
        targets,
        output: Output::File(fifo),
        count: None,
        snaplen,
        buffer_kib: 32768,
        duration: None::<Duration>,
        attach: AttachMode::Auto,
        ebpf_log: false,
        quiet: true,
        direction,
        file_mode: 0o600,
        drop_to: None,
        wait: false,
        fifo_owner: sudo_user(),
        print: Default::default(),
        filter: call.capture_filter.as_deref().map(str::trim).filter(|f| !f.is_empty()).map(String::from),
    })
}

/// The user who started cnet through sudo (`SUDO_UID`, set by sudo), when
/// cnet runs as root: Wireshark running as that user created the FIFO it
/// passes, and its user sees the capture in Wireshark anyway. With file
/// capabilities instead (setcap) cnet runs as that user and owns the FIFO.
fn sudo_user() -> Option<u32> {
    // SAFETY: no arguments, cannot fail.
    let (uid, euid) = unsafe { (libc::getuid(), libc::geteuid()) };
    if uid != 0 || euid != 0 {
        return None;
    }
    std::env::var("SUDO_UID").ok()?.parse().ok().filter(|&u| u != 0)
}

/// Where the launcher goes: Wireshark's personal extcap folder(s) or the
/// global one.
fn extcap_dirs(system: bool) -> Result<Vec<PathBuf>> {
    let folders = Command::new("tshark").args(["-G", "folders"]).output().ok().filter(|o| o.status.success());
    let folders = folders.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let field = |key: &str| {
        folders.as_deref().and_then(|f| f.lines().find_map(|l| l.strip_prefix(key).map(|v| PathBuf::from(v.trim()))))
    };
    if system {
        // 4.2+ says "Global Extcap path", 4.0 just "Extcap path".
        let dir = field("Global Extcap path:").or_else(|| field("Extcap path:"));
        return dir.map(|d| vec![d]).context(
            "cannot find Wireshark's global extcap folder (`tshark -G folders` gave none): install tshark, or use --user",
        );
    }
    // 4.2+ prints its personal extcap folder; 4.0 keeps it in the personal
    // configuration folder.
    if let Some(d) = field("Personal Extcap path:") {
        return Ok(vec![d]);
    }
    if let Some(d) = field("Personal configuration:") {
        return Ok(vec![d.join("extcap")]);
    }
    // No tshark to ask: both places Wireshark versions use.
    let home = std::env::var_os("HOME").context("HOME is not set: cannot find the personal extcap folder")?;
    let home = PathBuf::from(home);
    Ok(vec![home.join(".config/wireshark/extcap"), home.join(".local/lib/wireshark/extcap")])
}

/// The folder `install`/`uninstall` work on: --user (the default) or
/// --system, not both. None when `--help` asked for the usage (printed).
fn scope(verb: &str, args: &[String]) -> Result<Option<bool>> {
    let (mut user, mut system) = (false, false);
    for a in args {
        match a.as_str() {
            "--user" => user = true,
            "--system" => system = true,
            "-h" | "--help" => {
                let what = if verb == "install" {
                    "Puts a launcher where Wireshark looks for extcap programs, so that cnet's targets appear as Wireshark interfaces."
                } else {
                    "Removes the launcher that `cnet extcap install` put there (nothing else)."
                };
                let usage = format!(
                    "{what}\n\nUsage: cnet extcap {verb} [--user | --system]\n\nOptions:\n  --user    your own folder, ~/.config/wireshark/extcap (the default)\n  --system  Wireshark's global folder (from `tshark -G folders`)\n  -h, --help  Print this help\n"
                );
                crate::text::print_stdout(&usage)?;
                return Ok(None);
            }
            other => bail!(
                "unknown option {:?} for `cnet extcap {verb}`: use --user (default) or --system",
                crate::text::escape(other)
            ),
        }
    }
    if user && system {
        bail!("--user and --system name different folders: give one of them");
    }
    Ok(Some(system))
}

/// `'…'` quoting for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Who the launcher and the folders made for it belong to: for `--user`
/// the owner of the home folder (`HOME`, where Wireshark looks, whoever runs
/// `cnet extcap install`), for `--system` root.
fn install_owner(system: bool) -> Result<safefs::Owner> {
    // SAFETY: no arguments, cannot fail.
    let me = unsafe { safefs::Owner { uid: libc::geteuid(), gid: libc::getegid() } };
    if system {
        return Ok(safefs::Owner { uid: 0, gid: 0 });
    }
    let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) else { return Ok(me) };
    let home = PathBuf::from(home);
    let dir =
        safefs::open_dir(&home, None).with_context(|| format!("cannot open the home folder {}", home.display()))?;
    Ok(safefs::Owner { uid: dir.st.st_uid, gid: dir.st.st_gid })
}

fn install(args: &[String]) -> Result<()> {
    let Some(system) = scope("install", args)? else { return Ok(()) };
    let exe = std::env::current_exe().and_then(std::fs::canonicalize).context("cannot find cnet's own path")?;
    let exe = exe.to_str().context("cnet's path is not valid UTF-8; move the binary")?;
    let script = format!(
        "#!/bin/sh\n{MARKER}, written by `cnet extcap install`.\n# Remove with `cnet extcap uninstall`.\nexec {} extcap \"$@\"\n",
        sh_quote(exe)
    );
    let owner = install_owner(system)?;
    for dir in extcap_dirs(system)? {
        let path = dir.join(LAUNCHER_NAME);
        // Folders are opened one by one without following links another
        // user could have planted, and missing ones are made for `owner`.
        let opened =
            safefs::open_dir(&dir, Some(owner)).with_context(|| format!("cannot install into {}", dir.display()))?;
        write_executable(&opened, &script, owner).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("cnet: installed {} (runs {exe} extcap)", path.display());
    }
    eprintln!("cnet: restart Wireshark to see cnet's interfaces; capturing needs root or cnet's capabilities");
    Ok(())
}

/// What is at the launcher's name: nothing, cnet's launcher, or something
/// else (described).
enum Launcher {
    Missing,
    Ours,
    Other(String),
}

fn launcher_in(dir: &safefs::Dir) -> Result<Launcher> {
    Ok(match safefs::read_entry(dir, LAUNCHER_NAME, 64 * 1024)? {
        safefs::Entry::Missing => Launcher::Missing,
        safefs::Entry::File { head } if String::from_utf8_lossy(&head).contains(MARKER) => Launcher::Ours,
        safefs::Entry::File { .. } => Launcher::Other("a file cnet did not write".into()),
        safefs::Entry::Other { what, target: Some(t) } => Launcher::Other(format!("{what} to {}", t.display())),
        safefs::Entry::Other { what, target: None } => Launcher::Other(what.into()),
    })
}

/// Writes the launcher into `dir` (a fresh file renamed into place, mode
/// 0755, belonging to `owner`), replacing only an earlier launcher of cnet's.
fn write_executable(dir: &safefs::Dir, text: &str, owner: safefs::Owner) -> Result<()> {
    if let Launcher::Other(what) = launcher_in(dir)? {
        bail!("it is {what}, not cnet's launcher; remove it (or move it away) and run `cnet extcap install` again");
    }
    let how = safefs::Creation::in_dir(dir, owner)?;
    safefs::replace_file(dir, LAUNCHER_NAME, text.as_bytes(), 0o755, &how)?;
    Ok(())
}

fn uninstall(args: &[String]) -> Result<()> {
    let Some(system) = scope("uninstall", args)? else { return Ok(()) };
    let owner = install_owner(system)?;
    let mut removed = 0;
    for dir in extcap_dirs(system)? {
        let path = dir.join(LAUNCHER_NAME);
        let opened = match safefs::open_dir(&dir, None) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                log::warn!("{}: {e}; left alone", dir.display());
                continue;
            }
        };
        match launcher_in(&opened)? {
            Launcher::Ours => {
                let how = safefs::Creation::in_dir(&opened, owner);
                how.and_then(|how| safefs::remove_entry(&opened, LAUNCHER_NAME, &how))
                    .with_context(|| format!("cannot remove {}", path.display()))?;
                eprintln!("cnet: removed {}", path.display());
                removed += 1;
            }
            Launcher::Other(what) => log::warn!("{} is {what}, not written by cnet; left alone", path.display()),
            Launcher::Missing => {}
        }
    }
    if removed == 0 {
        eprintln!("cnet: no extcap launcher of cnet's was installed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_wireshark_calls() {
        let c = parse(&args(&["--extcap-interfaces", "--extcap-version=4.0", "--debug"]));
        assert!(c.interfaces && !c.version);
        let c = parse(&args(&[
            "--capture",
            "--extcap-interface",
            "cnet-all",
            "--fifo",
            "/tmp/f",
            "--extcap-capture-filter",
            "",
            "--snaplen=96",
            "--targets",
            "cnet-netns-a,cnet-netns-b",
            "--direction",
            "in",
            "--unknown",
        ]));
        assert!(c.capture);
        assert_eq!(c.interface.as_deref(), Some("cnet-all"));
        assert_eq!(c.fifo, Some(PathBuf::from("/tmp/f")));
        assert_eq!(c.capture_filter.as_deref(), Some(""));
        assert_eq!(c.snaplen.as_deref(), Some("96"));
        assert_eq!(c.targets, ["cnet-netns-a", "cnet-netns-b"]);
        assert_eq!(c.direction.as_deref(), Some("in"));
    }

    #[test]
    fn interface_names_are_safe() {
        assert_eq!(interface_safe("blue"), "blue");
        assert_eq!(interface_safe("a b{c}"), "a_b_c_");
        assert_eq!(sh_quote("/x/it's"), r"'/x/it'\''s'");
    }
}
