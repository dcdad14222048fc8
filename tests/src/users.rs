//! A throwaway local user for the security tests: a hostile user whose
//! home, files and processes attack a root cnet. Created with `useradd`,
//! removed with `userdel -r` on drop, including when a test panics; names are
//! unique to the process, so tests run in parallel.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

static USER_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A local user with a home directory, removed on drop.
pub struct ThrowawayUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl ThrowawayUser {
    /// Creates `{tag}{pid}{n}` (at most 32 characters: `tag` is cut to 12).
    pub fn new(tag: &str) -> Result<ThrowawayUser> {
        let n = USER_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tag: String = tag.chars().filter(|c| c.is_ascii_lowercase()).take(12).collect();
        let name = format!("{tag}{:x}u{n}", std::process::id());
        let out = Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/sh", "--user-group", &name])
            .output()
            .context("running useradd")?;
        if !out.status.success() {
            bail!("useradd {name} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        // From here on, Drop removes the user even if a lookup below fails.
        let mut user = ThrowawayUser { name, uid: 0, gid: 0, home: PathBuf::new() };
        let id = |flag: &str| -> Result<u32> {
            let out = Command::new("id").args([flag, &user.name]).output().context("running id")?;
            String::from_utf8_lossy(&out.stdout).trim().parse().context("parsing id's output")
        };
        user.uid = id("-u")?;
        user.gid = id("-g")?;
        let out = Command::new("getent").args(["passwd", &user.name]).output().context("running getent")?;
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        user.home = PathBuf::from(line.trim().split(':').nth(5).context("no home in getent's answer")?);
        Ok(user)
    }

    /// A command that runs as this user (uid, gid, no supplementary groups),
    /// with HOME set to the user's home.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.uid(self.uid).gid(self.gid).env("HOME", &self.home).current_dir(&self.home);
        // std drops the supplementary groups (setgroups(0)) when it sets the
        // uid of a child of root, so the user has none of root's groups.
        cmd
    }

    /// Runs `sh -c SCRIPT` as this user and returns its output, failing when
    /// the script fails.
    pub fn sh(&self, script: &str) -> Result<Output> {
        let out = self.command("sh").args(["-c", script]).output().context("running a shell as the test user")?;
        if !out.status.success() {
            bail!("`{script}` as {} failed: {}", self.name, String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(out)
    }
}

impl Drop for ThrowawayUser {
    fn drop(&mut self) {
        // Tests end the attacker processes they start by PID; this removes
        // the user, its group and its home.
        let _ = Command::new("userdel").args(["--remove", "--force", &self.name]).output();
    }
}
