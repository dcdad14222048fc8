//! Where a capture's bytes go: the [`Output`] the user chose, and opening
//! it. Files are created through [`crate::platform::safefs`] (never into
//! something another user planted) and written only in whole blocks
//! ([`BlockFile`]); pipes, fifos and terminals are live (flushed per batch)
//! and their reader is watched so a closed pipe ends the capture. Capture,
//! rotation and latency all open their outputs here.

use std::fs::File;
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::rotate::Rotation;
use crate::platform::safefs::OutputOwner;

/// Where packets go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// One line per packet on stdout.
    Print,
    /// pcapng to a file.
    File(PathBuf),
    /// pcapng to stdout (`-w -`).
    Stdout,
    /// A series of pcapng files (`-C`, `-G`, `-W`).
    Rotate(Rotation),
}

/// A single pcapng stream, opened: the file, whether it is live (a pipe,
/// fifo or terminal: flushed after every batch) and the descriptor of a
/// pipe whose reader may go away.
pub struct Stream {
    pub file: BlockFile,
    pub live: bool,
    pub watch: Option<RawFd>,
}

/// Where one pcapng stream goes: `-w FILE` or `-w -`.
#[derive(Clone, Copy, Debug)]
pub enum StreamTo<'a> {
    File(&'a Path),
    Stdout,
}

impl Output {
    /// The single pcapng stream this output is, if it is one (not printing,
    /// not rotation).
    pub fn stream(&self) -> Option<StreamTo<'_>> {
        match self {
            Output::File(path) => Some(StreamTo::File(path)),
            Output::Stdout => Some(StreamTo::Stdout),
            Output::Print | Output::Rotate(_) => None,
        }
    }
}

/// Opens a pcapng stream whose files belong to `owner`. Errors say what
/// could not be opened.
pub fn open_stream(to: StreamTo<'_>, mode: u32, owner: &OutputOwner) -> io::Result<Stream> {
    match to {
        StreamTo::Stdout => {
            let file = stdout_file()
                .and_then(BlockFile::new)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot use standard output: {e}")))?;
            Ok(Stream { live: true, watch: pipe_fd(&io::stdout()), file })
        }
        StreamTo::File(path) => {
            let file = create_output_for(path, mode, owner)?;
            // A fifo (Wireshark's extcap pipe, or `mkfifo`) opens once a
            // reader is there, and is then treated like stdout.
            let watch = pipe_fd(file.file());
            let live = !file.file().metadata().map(|m| m.file_type().is_file()).unwrap_or(false);
            Ok(Stream { file, live, watch })
        }
    }
}

/// Opens an output file that belongs to `owner`, behind a [`BlockFile`]:
/// created anew with `mode` permissions (`O_EXCL`, never through a symbolic
/// link), or an existing FIFO of `owner` (Wireshark's extcap pipe, `mkfifo`)
/// or a character device (`/dev/null`). cnet runs as root and must not be
/// tricked into writing into a file or FIFO that another user put there;
/// the rules are in [`crate::platform::safefs::create_output`].
pub fn create_output_for(
    path: &Path,
    mode: u32,
    owner: &crate::platform::safefs::OutputOwner,
) -> io::Result<BlockFile> {
    BlockFile::new(crate::platform::safefs::create_output(path, mode, owner)?)
}

/// Standard output as a `File` on a duplicate of fd 1: std's `Stdout` is
/// line-buffered, which would split binary output at every 0x0a byte.
pub fn stdout_file() -> io::Result<File> {
    use std::os::fd::AsFd;
    Ok(File::from(io::stdout().as_fd().try_clone_to_owned()?))
}

/// A file that only ever ends with whole blocks: when a write fails part way
/// (disk full), the file is cut back to its length before that write.
pub struct BlockFile {
    file: File,
    len: u64,
}

impl BlockFile {
    pub fn new(file: File) -> io::Result<BlockFile> {
        let len = file.metadata()?.len();
        Ok(BlockFile { file, len })
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// Undoes a partial write: back to the length after the last whole one.
    fn cut_back(&mut self) {
        let _ = self.file.set_len(self.len);
        let _ = self.file.seek(SeekFrom::Start(self.len));
    }
}

impl Write for BlockFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.len += n as u64;
        Ok(n)
    }

    /// Writes all of `bufs` or nothing, like `write_all`: on error the file
    /// is cut back to its length before the call.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        const MAX: usize = 8;
        if bufs.len() > MAX {
            let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &b[..]);
            self.write_all(first)?;
            return Ok(first.len());
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let mut local = [IoSlice::new(&[]); MAX];
        local[..bufs.len()].copy_from_slice(bufs);
        let mut rest = &mut local[..bufs.len()];
        IoSlice::advance_slices(&mut rest, 0);
        while !rest.is_empty() {
            match self.file.write_vectored(rest) {
                Ok(0) => {
                    self.cut_back();
                    return Err(io::ErrorKind::WriteZero.into());
                }
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.cut_back();
                    return Err(e);
                }
            }
        }
        self.len += total as u64;
        Ok(total)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self.file.write_all(buf) {
            Ok(()) => {
                self.len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.cut_back();
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// The descriptor of `f` if it is a pipe or socket (whose reader can leave).
pub fn pipe_fd(f: &impl AsRawFd) -> Option<RawFd> {
    let fd = f.as_raw_fd();
    // SAFETY: all-zero bytes are a valid `stat` (integers only).
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on a descriptor we hold, into a `stat` we own.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    let kind = st.st_mode & libc::S_IFMT;
    (kind == libc::S_IFIFO || kind == libc::S_IFSOCK).then_some(fd)
}

/// Whether the reading end of the pipe `fd` has been closed: Linux reports
/// POLLERR on a pipe's write end once it has no readers (POLLHUP for a
/// socket whose peer is gone).
pub fn reader_gone(fd: RawFd) -> bool {
    let mut p = libc::pollfd { fd, events: 0, revents: 0 };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// Waits until the fifo at `path` has a reader, and returns a write end
/// that keeps it open until the output's own open. None, at once, when
/// `path` is not a fifo that `owner`'s output may use (the output's open
/// then creates the file or refuses with the reason): a FIFO another user
/// planted is never opened, not even to wait for its reader.
pub async fn fifo_reader(path: &std::path::Path, owner: &OutputOwner) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_PATH opens nothing but the name (no device or fifo is opened by it),
    // and O_NOFOLLOW refuses a symlink as the output's open does; the fifo
    // is then reopened through the descriptor, so it is the one inspected.
    let named = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_NOFOLLOW).open(path).ok()?;
    if !owner.accepts_fifo(&named.metadata().ok()?) {
        return None;
    }
    let again = format!("/proc/self/fd/{}", named.as_raw_fd());
    loop {
        // Opening a fifo's write end without blocking fails with ENXIO
        // while no reader has it open.
        match std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&again) {
            Ok(f) => return Some(f),
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod block_file_tests {
    use super::*;

    #[test]
    fn failed_write_is_undone() {
        // /dev/full fails every write with ENOSPC; a regular file shows the
        // cut-back: write, then fail a write by closing the fd's room is
        // hard to fake, so check the bookkeeping on a real file instead.
        let dir = std::env::temp_dir().join(format!("cnet-blockfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        let mut f = BlockFile::new(File::create(&path).unwrap()).unwrap();
        f.write_all(&[1u8; 100]).unwrap();
        assert_eq!(f.len, 100);
        let mut full = BlockFile::new(std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap()).unwrap();
        assert!(full.write_all(&[0u8; 10]).is_err());
        assert!(full.write_vectored(&[IoSlice::new(&[0u8; 10]), IoSlice::new(&[1u8; 3])]).is_err());
        assert_eq!(f.write_vectored(&[IoSlice::new(&[2u8; 10]), IoSlice::new(&[3u8; 3])]).unwrap(), 13);
        assert_eq!(f.len, 113);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 113);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
