//! File rotation like tcpdump's `-C`, `-G` and `-W`: a sink that writes a
//! series of complete pcapng files, each with its own section header, every
//! interface's IDB and, when it is closed, an ISB per interface.
//!
//! Rotation happens between two packets, so every packet is written to
//! exactly one file. File names follow tcpdump:
//! - `-C` alone: `FILE`, `FILE1`, `FILE2`, …
//! - `-C` with `-W N`: a ring `FILE0` … `FILE<N-1>` (zero-padded), reused
//!   in turn;
//! - `-G`: `FILE` is a strftime pattern in local time (`cap-%H%M%S.pcapng`);
//!   when two files would get the same name a counter is appended;
//!   `-W N` keeps the N newest files and deletes older ones (tcpdump stops
//!   instead).
//!
//! A name cnet refuses to use (a symbolic link, a file or FIFO of another
//! user: see `safefs::create_output`) does not end the capture: the file
//! gets a suffix (`NAME.1`), and if no name can be opened at all the
//! current file goes on. Either is reported at once and again at the end,
//! where `finish` fails so that cnet exits non-zero.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::format::{Item, StrftimeItems};

use super::Sink;
use super::output::{BlockFile, create_output_for};
use super::pcapng::PcapngSink;
use crate::model::{Iface, IfaceStats, Packet};
use crate::pipeline::collect::Clock;
use crate::platform::safefs::{self, OutputOwner};

/// When to start a new file and how many to keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// `-w` argument: a file name, a strftime pattern with `-G`.
    pub pattern: String,
    /// `-C`: start a new file once the current one is larger than this.
    pub max_bytes: Option<u64>,
    /// `-G`: start a new file after this long.
    pub interval: Option<Duration>,
    /// `-W`: keep at most this many files.
    pub max_files: Option<u32>,
    /// Permissions of each file (`--mode`).
    pub mode: u32,
}

impl Rotation {
    /// Checks the pattern and limits; errors say what to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_bytes.is_none() && self.interval.is_none() {
            return Err("-W needs -C SIZE or -G SECS to say when to start a new file".into());
        }
        if self.max_files == Some(0) {
            return Err("-W must be at least 1".into());
        }
        if self.interval.is_some() && StrftimeItems::new(&self.pattern).any(|i| matches!(i, Item::Error)) {
            return Err(format!(
                "-w {:?} is not a valid strftime pattern (use %Y, %m, %d, %H, %M, %S, …; write %% for a literal %)",
                self.pattern
            ));
        }
        Ok(())
    }

    /// Whether names come from a fixed ring `FILE0` … `FILE<N-1>`.
    fn is_ring(&self) -> bool {
        self.interval.is_none() && self.max_bytes.is_some() && self.max_files.is_some()
    }
}

struct Part {
    sink: PcapngSink<BlockFile>,
    path: PathBuf,
    /// When the file was started, or last kept on because the next one
    /// could not be opened.
    opened: Instant,
    /// The file's length when it was last kept on (the size limit counts
    /// from there).
    held_bytes: u64,
    start_ns: u64,
    packets: u64,
    /// Packets per interface in this file.
    delivered: Vec<u64>,
}

pub struct RotatingSink {
    rotation: Rotation,
    os: String,
    ifaces: Vec<Iface>,
    part: Option<Part>,
    /// Files opened so far.
    opened: u64,
    /// Name stem of the current file and how many files used it (for the
    /// counter that keeps names unique).
    last_stem: String,
    same_stem: u64,
    /// Files written, oldest first (deleted beyond `max_files`).
    kept: VecDeque<PathBuf>,
    /// Who the files belong to (`-Z`).
    owner: OutputOwner,
    /// What did not go as asked (names refused, files kept on), for the end.
    problems: Vec<String>,
}

impl RotatingSink {
    /// Opens the first file, so a bad path fails before capture starts.
    pub fn new(rotation: Rotation, os: &str) -> io::Result<Self> {
        Self::new_for(rotation, os, OutputOwner::current())
    }

    /// Like [`RotatingSink::new`], with every file, the first included,
    /// belonging to `owner` (`-Z`: the first is created before cnet switches
    /// to that user, the others after).
    pub fn new_for(rotation: Rotation, os: &str, owner: OutputOwner) -> io::Result<Self> {
        rotation.validate().map_err(io::Error::other)?;
        let mut s = RotatingSink {
            rotation,
            os: os.to_string(),
            ifaces: Vec::new(),
            part: None,
            opened: 0,
            last_stem: String::new(),
            same_stem: 0,
            kept: VecDeque::new(),
            owner,
            problems: Vec::new(),
        };
        // The first name is not replaced by another: nothing is captured
        // yet, so the error is the better answer.
        let (part, path) = s.open_part(false)?;
        s.part = Some(part);
        s.keep(path);
        Ok(s)
    }

    /// Name of the next file.
    fn next_name(&mut self) -> String {
        let r = &self.rotation;
        if r.is_ring() {
            let n = r.max_files.unwrap_or(1);
            let width = (n.saturating_sub(1)).to_string().len();
            return format!("{}{:0width$}", r.pattern, self.opened % u64::from(n));
        }
        let stem = if r.interval.is_some() {
            let mut s = String::new();
            // Validated in `new`, and `write!` reports rather than panics.
            let _ = write!(s, "{}", chrono::Local::now().format_with_items(StrftimeItems::new(&r.pattern)));
            s
        } else {
            r.pattern.clone()
        };
        if stem == self.last_stem {
            self.same_stem += 1;
        } else {
            self.last_stem = stem.clone();
            self.same_stem = 0;
        }
        if self.same_stem == 0 { stem } else { format!("{stem}{}", self.same_stem) }
    }

    /// Opens the next file; with `alternatives`, a name cnet refuses is
    /// replaced by `NAME.1` … `NAME.9`.
    fn open_part(&mut self, alternatives: bool) -> io::Result<(Part, PathBuf)> {
        let name = self.next_name();
        // The ring moves on even when this name cannot be used.
        self.opened += 1;
        let mode = self.rotation.mode;
        let mut path = PathBuf::from(&name);
        let file = match create_output_for(&path, mode, &self.owner) {
            Ok(f) => f,
            Err(e) if alternatives && safefs::is_refused(&e) => {
                let mut found = None;
                for k in 1..=9 {
                    let alt = PathBuf::from(format!("{name}.{k}"));
                    match create_output_for(&alt, mode, &self.owner) {
                        Ok(f) => {
                            found = Some((f, alt));
                            break;
                        }
                        Err(e) if safefs::is_refused(&e) => continue,
                        Err(e) => return Err(e),
                    }
                }
                let Some((f, alt)) = found else { return Err(e) };
                log::warn!("{e}; writing {} instead", alt.display());
                self.problems.push(format!("{name} was refused and written as {}", alt.display()));
                path = alt;
                f
            }
            Err(e) => return Err(e),
        };
        let mut sink = PcapngSink::new(file, &self.os)?;
        for iface in &self.ifaces {
            sink.add_interface(iface)?;
        }
        let part = Part {
            sink,
            path: path.clone(),
            opened: Instant::now(),
            held_bytes: 0,
            start_ns: Clock::now_wall_ns(),
            packets: 0,
            delivered: vec![0; self.ifaces.len()],
        };
        Ok((part, path))
    }

    /// Records a file written, deleting the oldest beyond `-W`.
    fn keep(&mut self, path: PathBuf) {
        if self.rotation.is_ring() {
            return;
        }
        self.kept.retain(|p| p != &path);
        self.kept.push_back(path);
        if let Some(max) = self.rotation.max_files {
            while self.kept.len() > max as usize {
                if let Some(old) = self.kept.pop_front()
                    && let Err(e) = std::fs::remove_file(&old)
                {
                    log::warn!("cannot remove old capture file {}: {e}", old.display());
                }
            }
        }
    }

    /// Opens the next file, then closes the current one (with its ISBs).
    /// When no next file can be opened the current one goes on, so that
    /// the capture loses nothing.
    fn rotate(&mut self) -> io::Result<()> {
        let (next, path) = match self.open_part(true) {
            Ok(n) => n,
            Err(e) => {
                let Some(p) = self.part.as_mut() else { return Err(e) };
                log::warn!("cannot start the next capture file: {e}; cnet keeps writing {}", p.path.display());
                self.problems.push(format!("{} was kept on instead of starting a new file ({e})", p.path.display()));
                p.opened = Instant::now();
                p.held_bytes = p.sink.len();
                return Ok(());
            }
        };
        if let Some(mut p) = self.part.replace(next) {
            p.sink.finish_part(p.start_ns, Clock::now_wall_ns(), &p.delivered)?;
        }
        self.keep(path);
        Ok(())
    }

    fn due(&self) -> bool {
        let Some(p) = &self.part else { return false };
        let by_size =
            self.rotation.max_bytes.is_some_and(|max| p.packets > 0 && p.sink.len() > max.saturating_add(p.held_bytes));
        let by_time = self.rotation.interval.is_some_and(|i| p.opened.elapsed() >= i);
        by_size || by_time
    }

    fn part(&mut self) -> io::Result<&mut Part> {
        self.part.as_mut().ok_or_else(|| io::Error::other("capture file already closed"))
    }
}

impl Sink for RotatingSink {
    fn add_interface(&mut self, iface: &Iface) -> io::Result<()> {
        self.ifaces.push(iface.clone());
        let p = self.part()?;
        p.delivered.push(0);
        p.sink.add_interface(iface)
    }

    fn packet(&mut self, iface: &Iface, pkt: &Packet<'_>) -> io::Result<()> {
        // Like tcpdump: check before writing, so the packet that finds the
        // file full is the first of the next file.
        if self.due() {
            self.rotate()?;
        }
        let p = self.part()?;
        p.sink.packet(iface, pkt)?;
        p.packets += 1;
        if let Some(n) = p.delivered.get_mut(iface.id as usize) {
            *n += 1;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Called at least every 250 ms: time-based rotation happens even
        // when no packets arrive.
        if self.rotation.interval.is_some() && self.due() {
            self.rotate()?;
        }
        self.part()?.sink.flush()
    }

    fn finish(&mut self, stats: &[IfaceStats]) -> io::Result<()> {
        if let Some(mut p) = self.part.take() {
            p.sink.finish(stats)?;
        }
        if self.problems.is_empty() {
            return Ok(());
        }
        Err(safefs::refused(format!(
            "every packet was written, but not every file as asked: {}",
            self.problems.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Direction;

    fn iface() -> Iface {
        Iface::new(0, crate::pipeline::sinks::pcapng::tests::endpoint(), 65535)
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cnet-rotate-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn count_packets(path: &std::path::Path) -> usize {
        crate::codec::capture_file::read_file(path).map_err(|(e, _)| e).unwrap().packets.len()
    }

    #[test]
    fn size_ring_splits_without_loss() {
        let dir = tmpdir("ring");
        let pattern = dir.join("f").display().to_string();
        let rot = Rotation {
            pattern: pattern.clone(),
            max_bytes: Some(1000),
            interval: None,
            max_files: Some(100),
            mode: 0o600,
        };
        let mut s = RotatingSink::new(rot, "Linux").unwrap();
        let i = iface();
        s.add_interface(&i).unwrap();
        let data = [0u8; 200];
        for n in 0..20 {
            s.packet(&i, &Packet { ts_ns: n, dir: Direction::In, orig_len: 200, data: &data }).unwrap();
        }
        s.finish(&[IfaceStats::default()]).unwrap();
        let files: Vec<PathBuf> =
            (0..100).map(|n| PathBuf::from(format!("{pattern}{n:02}"))).take_while(|p| p.exists()).collect();
        assert!(files.len() > 3, "{files:?}");
        let total: usize = files.iter().map(|f| count_packets(f)).sum();
        assert_eq!(total, 20);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn keeps_at_most_w_files() {
        let dir = tmpdir("keep");
        let pattern = dir.join("g").display().to_string();
        let rot = Rotation {
            pattern: pattern.clone(),
            max_bytes: Some(500),
            interval: Some(Duration::from_secs(3600)),
            max_files: Some(2),
            mode: 0o600,
        };
        let mut s = RotatingSink::new(rot, "Linux").unwrap();
        let i = iface();
        s.add_interface(&i).unwrap();
        let data = [0u8; 300];
        for n in 0..10 {
            s.packet(&i, &Packet { ts_ns: n, dir: Direction::Out, orig_len: 300, data: &data }).unwrap();
        }
        s.finish(&[IfaceStats::default()]).unwrap();
        let left = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(left, 2);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_refused_name_gets_a_suffix_and_fails_the_end() {
        let dir = tmpdir("refused");
        let pattern = dir.join("s").display().to_string();
        let victim = dir.join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        // The second file's name is taken by a link.
        std::os::unix::fs::symlink(&victim, format!("{pattern}1")).unwrap();
        let rot =
            Rotation { pattern: pattern.clone(), max_bytes: Some(500), interval: None, max_files: None, mode: 0o600 };
        let mut s = RotatingSink::new(rot, "Linux").unwrap();
        let i = iface();
        s.add_interface(&i).unwrap();
        let data = [0u8; 300];
        for n in 0..6 {
            s.packet(&i, &Packet { ts_ns: n, dir: Direction::Out, orig_len: 300, data: &data }).unwrap();
        }
        let e = s.finish(&[IfaceStats::default()]).unwrap_err();
        assert!(safefs::is_refused(&e), "{e}");
        assert!(e.to_string().contains(&format!("{pattern}1 was refused and written as {pattern}1.1")), "{e}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(std::fs::symlink_metadata(format!("{pattern}1")).unwrap().file_type().is_symlink());
        let files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p != &victim && !p.is_symlink())
            .collect();
        assert!(files.contains(&PathBuf::from(format!("{pattern}1.1"))), "{files:?}");
        let total: usize = files.iter().map(|f| count_packets(f)).sum();
        assert_eq!(total, 6);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn with_every_name_refused_the_current_file_goes_on() {
        let dir = tmpdir("held");
        let pattern = dir.join("h").display().to_string();
        let victim = dir.join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        for name in std::iter::once(format!("{pattern}1")).chain((1..=9).map(|k| format!("{pattern}1.{k}"))) {
            std::os::unix::fs::symlink(&victim, name).unwrap();
        }
        let rot =
            Rotation { pattern: pattern.clone(), max_bytes: Some(500), interval: None, max_files: None, mode: 0o600 };
        let mut s = RotatingSink::new(rot, "Linux").unwrap();
        let i = iface();
        s.add_interface(&i).unwrap();
        let data = [0u8; 300];
        for n in 0..4 {
            s.packet(&i, &Packet { ts_ns: n, dir: Direction::Out, orig_len: 300, data: &data }).unwrap();
        }
        let e = s.finish(&[IfaceStats::default()]).unwrap_err();
        assert!(e.to_string().contains(&format!("{pattern} was kept on instead of starting a new file")), "{e}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        // The first file holds what did not fit anywhere else; the next
        // rotation (name 2) works again.
        let total =
            count_packets(std::path::Path::new(&pattern)) + count_packets(std::path::Path::new(&format!("{pattern}2")));
        assert_eq!(total, 4);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_pattern_is_reported() {
        let rot = Rotation {
            pattern: "cap-%Q".into(),
            max_bytes: None,
            interval: Some(Duration::from_secs(1)),
            max_files: None,
            mode: 0o600,
        };
        assert!(rot.validate().unwrap_err().contains("strftime"));
    }
}
