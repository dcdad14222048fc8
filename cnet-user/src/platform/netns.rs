//! Entering another network namespace safely.
//!
//! `setns(CLONE_NEWNET)` changes the namespace of the calling *thread* only.
//! Rather than switching a thread back and forth (and risking a thread left in
//! the wrong namespace after an error), [`run_in`] spawns a short-lived thread,
//! enters the namespace there, runs the closure and lets the thread die.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Identity of a network namespace: the inode of its nsfs file.
pub fn inode(path: &Path) -> io::Result<u64> {
    Ok(std::fs::metadata(path)?.ino())
}

/// Inode of cnet's own network namespace.
pub fn own_inode() -> io::Result<u64> {
    inode(Path::new("/proc/self/ns/net"))
}

/// Runs `f` in the network namespace at `path` (a `/var/run/netns/NAME` or
/// `/proc/PID/ns/net` file) and returns its result.
pub fn run_in<T, F>(path: &Path, f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let file = File::open(path)?;
    let path: PathBuf = path.to_owned();
    std::thread::spawn(move || {
        // SAFETY: plain syscall on an fd we own; affects only this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("cannot enter network namespace {}: {e}", path.display())));
        }
        Ok(f())
    })
    .join()
    .map_err(|_| io::Error::other("namespace worker thread panicked"))?
}
