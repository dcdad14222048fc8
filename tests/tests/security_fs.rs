//! Files that other users can influence, attacked for real: a throwaway
//! local user plants links, files and FIFOs where root's cnet writes (its
//! home for `cnet extcap install`, a shared folder for `-w`), and the tests
//! show that root's files stay as they were and nothing reaches the user.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cnet::codec::capture_file::read_file;
use cnet_tests::users::ThrowawayUser;
use cnet_tests::{Cnet, Lab, cnet_bin, cnet_output, hooked_programs, traffic, tshark_fields};

static SCRATCH: AtomicU32 = AtomicU32::new(0);

/// A folder /tmp/csf-TAG-PID-N with the given mode, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str, mode: u32) -> Scratch {
        let n = SCRATCH.fetch_add(1, Ordering::Relaxed);
        let p = PathBuf::from(format!("/tmp/csf-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        Scratch(p)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A root-only folder (0700) holding a root-only file (0600): what an
/// attacker would like root's cnet to overwrite or expose.
struct Vault {
    dir: Scratch,
    secret: PathBuf,
}

const SECRET: &[u8] = b"root's secret, not for users\n";

impl Vault {
    fn new() -> Vault {
        let dir = Scratch::new("vault", 0o700);
        let secret = dir.join("secret");
        std::fs::write(&secret, SECRET).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        Vault { dir, secret }
    }

    /// The secret file is as it was: content, mode and owner.
    fn assert_intact(&self) {
        let m = std::fs::symlink_metadata(&self.secret).unwrap();
        assert!(m.file_type().is_file());
        assert_eq!(m.mode() & 0o7777, 0o600, "the secret's mode changed");
        assert_eq!((m.uid(), m.gid()), (0, 0));
        assert_eq!(std::fs::read(&self.secret).unwrap(), SECRET, "the secret was overwritten");
        assert_eq!(self.dir.names(), ["secret"], "cnet wrote into the vault");
    }
}

/// `cnet extcap install|uninstall --user` as root for `home`, with `path`
/// as PATH when given (a PATH without tshark: both personal folders).
fn extcap(verb: &str, home: &Path, path: Option<&str>) -> Output {
    let mut cmd = Command::new(cnet_bin());
    cmd.args(["extcap", verb, "--user"]).env("HOME", home).env_remove("XDG_CONFIG_HOME");
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

#[test]
fn extcap_install_never_follows_a_link_the_user_planted() {
    let user = ThrowawayUser::new("csf").unwrap();
    let vault = Vault::new();
    let secret = shell_quote(&vault.secret);

    // The launcher's name points at root's file.
    user.sh(&format!("mkdir -p ~/.config/wireshark/extcap && ln -s {secret} ~/.config/wireshark/extcap/cnet")).unwrap();
    let out = extcap("install", &user.home, None);
    assert!(!out.status.success(), "install went through a link: {}", stderr(&out));
    assert!(stderr(&out).contains("is a symbolic link to") && stderr(&out).contains("remove it"), "{}", stderr(&out));
    vault.assert_intact();
    let link = user.home.join(".config/wireshark/extcap/cnet");
    assert_eq!(std::fs::read_link(&link).unwrap(), vault.secret);

    // The extcap folder itself points at root's folder.
    user.sh(&format!(
        "rm -r ~/.config/wireshark/extcap && ln -s {} ~/.config/wireshark/extcap",
        shell_quote(&vault.dir.0)
    ))
    .unwrap();
    let out = extcap("install", &user.home, None);
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is a symbolic link") && stderr(&out).contains("does not follow"),
        "{}",
        stderr(&out)
    );
    vault.assert_intact();

    // Without tshark both personal folders are used: a link at either one,
    // or higher up (~/.local/lib), is refused the same way.
    user.sh(&format!(
        "rm ~/.config/wireshark/extcap && mkdir -p ~/.local && ln -s {} ~/.local/lib",
        shell_quote(&vault.dir.0)
    ))
    .unwrap();
    let out = extcap("install", &user.home, Some("/csf-no-tshark"));
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(".local/lib is a symbolic link"), "{}", stderr(&out));
    vault.assert_intact();
}

#[test]
fn extcap_install_survives_a_link_swapped_in_and_out() {
    let user = ThrowawayUser::new("csf").unwrap();
    let vault = Vault::new();
    user.sh("mkdir -p ~/.config/wireshark/extcap").unwrap();
    // The user flips the launcher's name between a link to root's file, a
    // file of its own and nothing, as fast as it can, while root installs.
    let script = format!(
        "cd ~/.config/wireshark/extcap && while :; do ln -sfn {s} cnet; rm -f cnet; echo mine > cnet; rm -f cnet; ln -sfn {s} cnet; done",
        s = shell_quote(&vault.secret)
    );
    let mut flipper =
        user.command("sh").args(["-c", &script]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let mut installed = 0;
    for _ in 0..40 {
        if extcap("install", &user.home, None).status.success() {
            installed += 1;
        }
    }
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(flipper.id() as i32, libc::SIGKILL) };
    let _ = flipper.wait();
    println!("{installed} of 40 installs went through while the user flipped the name");
    vault.assert_intact();
    // Nothing cnet made is left behind under a temporary name, and nothing
    // in the folder is root's: the launchers cnet wrote are the user's.
    let dir = user.home.join(".config/wireshark/extcap");
    for e in std::fs::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        assert!(!e.file_name().to_string_lossy().starts_with(".cnet."), "left behind: {:?}", e.file_name());
        let m = std::fs::symlink_metadata(e.path()).unwrap();
        assert_eq!(m.uid(), user.uid, "{:?} belongs to uid {}", e.file_name(), m.uid());
    }
}

#[test]
fn extcap_install_makes_the_users_folders_as_the_user() {
    let user = ThrowawayUser::new("csf").unwrap();
    assert!(!user.home.join(".config").exists());
    let out = extcap("install", &user.home, None);
    assert!(out.status.success(), "{}", stderr(&out));
    for d in [".config", ".config/wireshark", ".config/wireshark/extcap"] {
        let m = std::fs::symlink_metadata(user.home.join(d)).unwrap();
        assert!(m.is_dir());
        assert_eq!((m.uid(), m.gid()), (user.uid, user.gid), "{d} does not belong to the user");
    }
    let launcher = user.home.join(".config/wireshark/extcap/cnet");
    let m = std::fs::symlink_metadata(&launcher).unwrap();
    assert!(m.is_file());
    assert_eq!((m.uid(), m.gid()), (user.uid, user.gid), "the launcher does not belong to the user");
    assert_eq!(m.mode() & 0o777, 0o755);
    assert!(std::fs::read_to_string(&launcher).unwrap().contains("Wireshark extcap launcher for cnet"));
    // The user can still use its own ~/.config.
    user.sh("touch ~/.config/csf-mine && mkdir ~/.config/csf-dir").unwrap();

    // Installing again replaces cnet's own launcher.
    let out = extcap("install", &user.home, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = extcap("uninstall", &user.home, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("removed"), "{}", stderr(&out));
    assert!(!launcher.exists());
}

#[test]
fn extcap_uninstall_removes_only_cnets_own_launcher() {
    let user = ThrowawayUser::new("csf").unwrap();
    // Root's own launcher somewhere the user can point at.
    let root_home = Scratch::new("roothome", 0o755);
    let out = extcap("install", &root_home.0, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let root_dir = root_home.join(".config/wireshark/extcap");
    let root_launcher = root_dir.join("cnet");
    let original = std::fs::read(&root_launcher).unwrap();

    // The user's extcap folder is a link to root's.
    user.sh(&format!("mkdir -p ~/.config/wireshark && ln -s {} ~/.config/wireshark/extcap", shell_quote(&root_dir)))
        .unwrap();
    let out = extcap("uninstall", &user.home, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("left alone"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&root_launcher).unwrap(), original, "root's launcher was removed through a link");

    // The launcher's name is a link to root's launcher.
    user.sh(&format!(
        "rm ~/.config/wireshark/extcap && mkdir ~/.config/wireshark/extcap && ln -s {} ~/.config/wireshark/extcap/cnet",
        shell_quote(&root_launcher)
    ))
    .unwrap();
    let out = extcap("uninstall", &user.home, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("is a symbolic link") && stderr(&out).contains("left alone"), "{}", stderr(&out));
    let link = user.home.join(".config/wireshark/extcap/cnet");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the user's link was removed");
    assert_eq!(std::fs::read(&root_launcher).unwrap(), original);

    // A launcher of the user's own making.
    user.sh(
        "rm ~/.config/wireshark/extcap/cnet && printf '#!/bin/sh\\necho mine\\n' > ~/.config/wireshark/extcap/cnet",
    )
    .unwrap();
    let out = extcap("uninstall", &user.home, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("not written by cnet; left alone"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&link).unwrap(), b"#!/bin/sh\necho mine\n");
}

#[test]
fn output_planted_by_another_user_is_refused() {
    let lab = Lab::new(1).unwrap();
    let veth = lab.host(0).host_veth.clone();
    let user = ThrowawayUser::new("csf").unwrap();
    let shared = Scratch::new("shared", 0o1777);

    // A file of the user's at the output name.
    let file = shared.join("x.pcapng");
    user.sh(&format!("printf mine > {}", shell_quote(&file))).unwrap();
    let r = cnet_output(&["capture", "-i", &veth, "-w", file.to_str().unwrap(), "--duration", "1"]).unwrap();
    assert!(!r.status.success(), "{}", r.stderr);
    let want = format!(
        "refusing to write into {}: it is a regular file owned by uid {} ({})",
        file.display(),
        user.uid,
        user.name
    );
    assert!(r.stderr.contains(&want) && r.stderr.contains("remove it or choose another name"), "{}", r.stderr);
    assert_eq!(std::fs::read(&file).unwrap(), b"mine");
    assert_eq!(std::fs::metadata(&file).unwrap().uid(), user.uid);
    assert!(hooked_programs(&veth).unwrap().is_empty());

    // A FIFO of the user's, with the user waiting at the other end.
    let fifo = shared.join("f.pcapng");
    user.sh(&format!("mkfifo {}", shell_quote(&fifo))).unwrap();
    let stolen = user.home.join("stolen");
    let mut reader = user
        .command("sh")
        .args(["-c", &format!("exec cat {} > {}", shell_quote(&fifo), shell_quote(&stolen))])
        .spawn()
        .unwrap();
    let r = cnet_output(&["capture", "-i", &veth, "-w", fifo.to_str().unwrap(), "--duration", "1"]).unwrap();
    assert!(!r.status.success(), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("it is a FIFO owned by uid {}", user.uid)), "{}", r.stderr);
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(reader.id() as i32, libc::SIGKILL) };
    let _ = reader.wait();
    assert_eq!(std::fs::metadata(&stolen).map(|m| m.len()).unwrap_or(0), 0, "the user received capture data");

    // Root's own file, but with a second name.
    let linked = shared.join("h.pcapng");
    std::fs::write(&linked, b"root's").unwrap();
    std::fs::hard_link(&linked, shared.join("h-other")).unwrap();
    let r = cnet_output(&["capture", "-i", &veth, "-w", linked.to_str().unwrap(), "--duration", "1"]).unwrap();
    assert!(!r.status.success(), "{}", r.stderr);
    assert!(r.stderr.contains("2 hard links"), "{}", r.stderr);
    assert_eq!(std::fs::read(shared.join("h-other")).unwrap(), b"root's");

    // Root's own file is replaced by a new one, root's own FIFO is written.
    let own = shared.join("own.pcapng");
    std::fs::write(&own, b"old").unwrap();
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = cnet_output(&["capture", "-i", &veth, "-w", own.to_str().unwrap(), "--duration", "0.3"]).unwrap();
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(std::fs::metadata(&own).unwrap().mode() & 0o777, 0o600);
    tshark_fields(&own, None, &["frame.number"]).unwrap();
    let root_fifo = shared.join("root.fifo");
    cnet_tests::run(&["mkfifo", root_fifo.to_str().unwrap()]).unwrap();
    let path = root_fifo.clone();
    let got = std::thread::spawn(move || std::fs::read(path).unwrap());
    let r = cnet_output(&["capture", "-i", &veth, "-w", root_fifo.to_str().unwrap(), "--duration", "0.3"]).unwrap();
    if !r.status.success() {
        // Lets the reader thread's open return before failing.
        let _ = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&root_fifo);
        panic!("{}", r.stderr);
    }
    assert_eq!(&got.join().unwrap()[..4], &[0x0a, 0x0d, 0x0d, 0x0a], "no pcapng section header in root's FIFO");
}

/// Wireshark running as a user starts cnet through sudo and passes a FIFO
/// it made: accepted for the user sudo names (SUDO_UID), refused otherwise.
#[test]
fn extcap_fifo_of_the_user_behind_sudo_is_accepted() {
    let lab = Lab::new(2).unwrap();
    let user = ThrowawayUser::new("csf").unwrap();
    let shared = Scratch::new("wsfifo", 0o1777);
    let fifo = shared.join("wireshark_extcap_cnet");
    user.sh(&format!("mkfifo -m 600 {}", shell_quote(&fifo))).unwrap();
    let iface = format!("cnet-netns-{}", lab.host(0).netns);
    let extcap_capture = |sudo_uid: Option<u32>| {
        let mut cmd = Command::new(cnet_bin());
        cmd.args(["extcap", "--capture", "--extcap-interface", &iface, "--fifo", fifo.to_str().unwrap()]);
        cmd.env_remove("SUDO_UID").stdout(Stdio::null()).stderr(Stdio::piped());
        if let Some(uid) = sudo_uid {
            cmd.env("SUDO_UID", uid.to_string());
        }
        cmd
    };

    // Not the user behind sudo: refused before anything is attached (a cnet
    // that accepted the FIFO would wait for a reader: stopped at a deadline).
    let mut child = extcap_capture(None).spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cnet opened a FIFO of {} although sudo did not name that user", user.name);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&format!("it is a FIFO owned by uid {}", user.uid)), "{}", stderr(&out));

    let got = user.home.join("got.pcapng");
    let mut reader = user
        .command("sh")
        .args(["-c", &format!("exec cat {} > {}", shell_quote(&fifo), shell_quote(&got))])
        .spawn()
        .unwrap();
    let mut cnet = extcap_capture(Some(user.uid)).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    traffic::udp_burst(&lab, 0, 1, 7611, "sudo-fifo", 5).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling our own child by PID (Wireshark stops extcaps so).
    unsafe { libc::kill(cnet.id() as i32, libc::SIGTERM) };
    let status = cnet.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut cnet.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    assert!(reader.wait().unwrap().success());
    let rows = tshark_fields(&got, Some("udp.dstport == 7611"), &["frame.number"]).unwrap();
    assert_eq!(rows.len(), 5, "{err}");
    assert!(hooked_programs(&lab.host(0).host_veth).unwrap().is_empty());
}

#[test]
fn rotation_goes_on_past_a_planted_link() {
    let lab = Lab::new(2).unwrap();
    let user = ThrowawayUser::new("csf").unwrap();
    let vault = Vault::new();
    let shared = Scratch::new("rot", 0o1777);
    let pattern = shared.join("rot.pcapng");
    // The third file's name (rot.pcapng, rot.pcapng1, rot.pcapng2).
    let planted = shared.join("rot.pcapng2");
    user.sh(&format!("ln -s {} {}", shell_quote(&vault.secret), shell_quote(&planted))).unwrap();

    let cnet =
        Cnet::start(&["capture", "--netns", &lab.host(0).netns, "-w", pattern.to_str().unwrap(), "-C", "4k"]).unwrap();
    let sent = traffic::udp_burst(&lab, 0, 1, 7612, "rot-link", 200).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let res = cnet.stop().unwrap();
    assert!(!res.status.success(), "a refused name must show in the exit status: {}", res.stderr);
    assert!(
        res.stderr.contains(&format!("refusing to write {}: it is a symbolic link", planted.display())),
        "{}",
        res.stderr
    );
    assert!(
        res.stderr.contains(&format!("{} was refused and written as {}.1", planted.display(), planted.display())),
        "{}",
        res.stderr
    );
    assert!(res.summary("captured").is_some_and(|n| n >= 200), "{}", res.stderr);
    vault.assert_intact();
    assert_eq!(std::fs::read_link(&planted).unwrap(), vault.secret);

    // Every datagram is in exactly one file, once per hook direction seen
    // on host 0's veth (outbound only: replies are not sent).
    let files: Vec<PathBuf> = shared
        .names()
        .iter()
        .map(|n| shared.join(n))
        .filter(|p| std::fs::symlink_metadata(p).unwrap().is_file())
        .collect();
    assert!(files.len() >= 4, "{files:?}");
    assert!(files.contains(&shared.join("rot.pcapng2.1")), "{files:?}");
    let mut count = vec![0; sent.len()];
    for f in &files {
        let file = read_file(f).unwrap_or_else(|(e, _)| panic!("{}: {e}", f.display()));
        for p in &file.packets {
            if let Some(i) = sent.iter().position(|s| p.data.ends_with(s)) {
                count[i] += 1;
            }
        }
        tshark_fields(f, None, &["frame.number"]).unwrap();
    }
    assert!(count.iter().all(|&c| c == 1), "{count:?}");
}

#[test]
fn ring_files_all_belong_to_the_z_user() {
    let lab = Lab::new(2).unwrap();
    let user = ThrowawayUser::new("csf").unwrap();
    let shared = Scratch::new("ringz", 0o1777);
    let pattern = shared.join("ring.pcapng");
    let cnet = Cnet::start(&[
        "capture",
        "-i",
        &lab.host(0).host_veth,
        "-Z",
        &user.name,
        "-w",
        pattern.to_str().unwrap(),
        "-C",
        "2k",
        "-W",
        "2",
    ])
    .unwrap();
    // Enough to go round the ring several times.
    traffic::udp_burst(&lab, 0, 1, 7613, "ring-z", 200).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let res = cnet.stop().unwrap();
    assert!(res.status.success(), "{}", res.stderr);
    assert_eq!(shared.names(), ["ring.pcapng0", "ring.pcapng1"]);
    for n in shared.names() {
        let f = shared.join(&n);
        let m = std::fs::metadata(&f).unwrap();
        assert_eq!((m.uid(), m.gid()), (user.uid, user.gid), "{n} does not belong to the -Z user");
        assert_eq!(m.mode() & 0o777, 0o600);
        assert!(!tshark_fields(&f, None, &["frame.number"]).unwrap().is_empty(), "{n} is empty");
    }
}

#[test]
fn a_filter_longer_than_a_pcapng_option_is_stored_cut() {
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
    use pcap_file::pcapng::{Block, PcapNgReader};

    let lab = Lab::new(2).unwrap();
    let dir = Scratch::new("filter", 0o755);
    let file = dir.join("long.pcapng");
    // libpcap skips the blanks; the file cannot keep all 70 kB.
    let expression = format!("udp port 7614 and not (host 10.99.0.1 or host 10.99.0.2){}and udp", " ".repeat(70_000));
    let cnet =
        Cnet::start(&["capture", "--netns", &lab.host(0).netns, "-w", file.to_str().unwrap(), &expression]).unwrap();
    traffic::udp_burst(&lab, 0, 1, 7614, "long-filter", 5).unwrap();
    traffic::udp_burst(&lab, 0, 1, 7615, "not-matched", 5).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let res = cnet.stop().unwrap();
    assert!(res.status.success(), "{}", res.stderr);
    assert!(res.stderr.contains("a pcapng option holds at most 65534"), "{}", res.stderr);
    assert_eq!(tshark_fields(&file, Some("udp.dstport == 7614"), &["frame.number"]).unwrap().len(), 5);
    assert!(tshark_fields(&file, Some("udp.dstport == 7615"), &["frame.number"]).unwrap().is_empty());

    let bytes = std::fs::read(&file).unwrap();
    let mut reader = PcapNgReader::new(&bytes[..]).unwrap();
    let mut filters = Vec::new();
    while let Some(block) = reader.next_block() {
        if let Block::InterfaceDescription(idb) = block.unwrap().0 {
            for o in idb.options {
                if let InterfaceDescriptionOption::IfFilter(v) = o {
                    filters.push(v.into_owned());
                }
            }
        }
    }
    assert!(!filters.is_empty());
    for v in filters {
        assert!(v.len() <= 65535);
        let text = String::from_utf8(v[1..].to_vec()).unwrap();
        assert!(text.starts_with("udp port 7614 and not (host 10.99.0.1"), "{}", &text[..60]);
        assert!(text.ends_with(&format!(
            "[cut by cnet: the expression has {} bytes, a pcapng option holds 65534]",
            expression.len()
        )));
    }
}
