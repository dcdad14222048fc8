//! Reaping a child with `wait4`, which also reports its CPU time and peak
//! memory: for tests that bound a hostile input's memory and for the bench.
//! A child reaped here must not be waited for again through std's `Child`.

use std::io;
use std::time::{Duration, Instant};

/// How a reaped child ended.
#[derive(Clone, Copy, Debug)]
pub struct Reaped {
    /// The raw wait status.
    pub status: i32,
    /// Peak resident set size in KiB (`ru_maxrss`).
    pub max_rss_kib: u64,
    /// User plus system CPU seconds.
    pub cpu_s: f64,
}

impl Reaped {
    /// The exit code, or None when a signal ended the child.
    pub fn exit_code(&self) -> Option<i32> {
        libc::WIFEXITED(self.status).then(|| libc::WEXITSTATUS(self.status))
    }

    pub fn success(&self) -> bool {
        self.exit_code() == Some(0)
    }
}

/// Waits for the child `pid`: blocks when `timeout` is None, otherwise polls
/// and returns Ok(None) once `timeout` has passed with the child still
/// running.
pub fn wait4_child(pid: u32, timeout: Option<Duration>) -> io::Result<Option<Reaped>> {
    let start = Instant::now();
    let flags = if timeout.is_some() { libc::WNOHANG } else { 0 };
    loop {
        let mut status = 0;
        // SAFETY: all-zero bytes are a valid `rusage` (integers only).
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own child with valid out-pointers.
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, flags, &mut ru) };
        if r == pid as libc::pid_t {
            let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            return Ok(Some(Reaped {
                status,
                max_rss_kib: ru.ru_maxrss.max(0) as u64,
                cpu_s: secs(ru.ru_utime) + secs(ru.ru_stime),
            }));
        }
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        if timeout.is_some_and(|t| start.elapsed() > t) {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
