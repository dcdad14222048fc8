//! File-system steps for a root process working in places other users can
//! change (their home, /tmp). Every step goes through a descriptor of the
//! folder it works in, never again through a path that could have been
//! swapped since it was checked, and no symbolic link is followed where
//! another user could have planted it.
//!
//! - [`create_output`]: capture files (`-w`): a new file is created with
//!   `O_CREAT|O_EXCL|O_NOFOLLOW`; an existing one is replaced (unlinked, then
//!   created anew) only when it is a regular file of the output's user with
//!   no other link, and written into only when it is a FIFO of that user or
//!   a character device (`/dev/null`).
//! - [`open_dir`], [`Creation`], [`replace_file`], [`read_entry`],
//!   [`remove_entry`]: the extcap launcher in a user's home, in folders
//!   opened one component at a time and created as the home's owner.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// cnet declined to use a path because another user could have put it
/// there: the message says what was found and what to do.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

pub fn refused(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, Refused(msg.into()))
}

/// Whether `e` is a refusal (see [`Refused`]) rather than a failed system call.
pub fn is_refused(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|r| r.is::<Refused>())
}

fn euid() -> u32 {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::geteuid() }
}

fn egid() -> u32 {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::getegid() }
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    if name.as_bytes().contains(&b'/') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{name:?} is not a single file name")));
    }
    CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{name:?} contains a NUL byte")))
}

fn open_at(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: a valid descriptor and NUL-terminated name; the returned
    // descriptor is owned by nobody else.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) };
    // SAFETY: a new descriptor that nothing else owns.
    if fd < 0 { Err(io::Error::last_os_error()) } else { Ok(unsafe { OwnedFd::from_raw_fd(fd) }) }
}

fn open_path(path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the path contains a NUL byte"))?;
    // SAFETY: as in `open_at`.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    // SAFETY: a new descriptor that nothing else owns.
    if fd < 0 { Err(io::Error::last_os_error()) } else { Ok(unsafe { OwnedFd::from_raw_fd(fd) }) }
}

fn stat_of(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: all-zero bytes are a valid `stat` (integers only).
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat fills the struct we own.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// `lstat` of `name` in `dir`: a symbolic link is described, not followed.
fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<libc::stat> {
    // SAFETY: all-zero bytes are a valid `stat` (integers only).
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstatat fills the struct we own; the name is NUL-terminated.
    if unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

fn readlink_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<PathBuf> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: the buffer is as long as we say.
    let n = unsafe { libc::readlinkat(dir.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(PathBuf::from(OsString::from_vec(buf)))
}

fn unlink_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: a valid descriptor and NUL-terminated name.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn kind(st: &libc::stat) -> libc::mode_t {
    st.st_mode & libc::S_IFMT
}

/// "a symbolic link", "a FIFO", … for messages.
pub fn describe(st: &libc::stat) -> &'static str {
    match kind(st) {
        libc::S_IFLNK => "a symbolic link",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFDIR => "a folder",
        libc::S_IFSOCK => "a socket",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        _ => "a regular file",
    }
}

/// `root`, `uid 1001 (alice)` or `uid 1001`.
pub fn user_name(uid: u32) -> String {
    if uid == 0 {
        return "root".into();
    }
    // SAFETY: all-zero bytes are a valid `passwd` (null pointers, integers).
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwuid_r writes into our struct and buffer only.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc == 0 && !found.is_null() && !pw.pw_name.is_null() {
        // SAFETY: pw_name points into `buf`, NUL-terminated.
        let name = unsafe { CStr::from_ptr(pw.pw_name) }.to_string_lossy().into_owned();
        return format!("uid {uid} ({name})");
    }
    format!("uid {uid}")
}

/// Who an output file belongs to: root (cnet's own user), or the `-Z` user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputOwner {
    pub uid: u32,
    pub gid: u32,
    /// A FIFO of this user is accepted as well: the user who started cnet
    /// through sudo for Wireshark, whose Wireshark created the FIFO.
    pub fifo_owner: Option<u32>,
}

impl OutputOwner {
    /// cnet's own (effective) user.
    pub fn current() -> OutputOwner {
        OutputOwner { uid: euid(), gid: egid(), fifo_owner: None }
    }

    /// Files that belong to `uid`:`gid` (`-Z`).
    pub fn user(uid: u32, gid: u32) -> OutputOwner {
        OutputOwner { uid, gid, fifo_owner: None }
    }

    /// Whether an existing file of `uid` may be replaced or written into:
    /// the output's user's, or cnet's own (root's files before `-Z` takes
    /// effect, the `-Z` user's after).
    fn accepts(&self, uid: u32) -> bool {
        uid == self.uid || uid == euid()
    }

    /// Whether the existing FIFO `meta` (not followed through a link) is
    /// one cnet may write into for this owner: the rule of
    /// [`create_output`], for code that waits on a FIFO before opening it.
    pub fn accepts_fifo(&self, meta: &std::fs::Metadata) -> bool {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        meta.file_type().is_fifo()
            && (self.accepts(meta.uid()) || self.fifo_owner == Some(meta.uid()))
            && meta.nlink() <= 1
    }

    /// "root", "alice or root": whose files are accepted, for messages.
    fn names(&self) -> String {
        let (a, b) = (self.uid, euid());
        if a == b { user_name(a) } else { format!("{} or {}", user_name(a), user_name(b)) }
    }
}

/// Creates the output file `path` for `owner` with `mode` permissions (see
/// the module comment for what an existing file may be).
pub fn create_output(path: &Path, mode: u32, owner: &OutputOwner) -> io::Result<File> {
    let shown = path.display();
    let cant = |e: io::Error| io::Error::new(e.kind(), format!("cannot write {shown}: {e}"));
    let Some(name) = path.file_name() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("cannot write {shown}: name a file")));
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // The folder is opened once: every later step works on this
    // descriptor, so swapping a folder of the path midway changes nothing.
    // O_PATH needs no read permission on the folder (after -Z).
    let dir = open_path(parent, libc::O_PATH | libc::O_DIRECTORY).map_err(cant)?;
    let cname = c_name(name).map_err(cant)?;
    // Another process may recreate the name between unlink and create; a
    // few rounds tell a race from a determined opponent.
    for _ in 0..8 {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        match open_at(dir.as_fd(), &cname, flags, mode & 0o777) {
            Ok(fd) => {
                let file = File::from(fd);
                // The umask may have narrowed the mode.
                file.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(cant)?;
                if owner.uid != euid() || owner.gid != egid() {
                    std::os::unix::fs::fchown(&file, Some(owner.uid), Some(owner.gid)).map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot hand {shown} to {}: {e}", user_name(owner.uid)))
                    })?;
                }
                return Ok(file);
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(cant(e)),
        }
        let st = match stat_at(dir.as_fd(), &cname) {
            Ok(st) => st,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(cant(e)),
        };
        check_existing(path, &st, owner)?;
        if kind(&st) == libc::S_IFREG {
            // Replaced, not truncated: the new file is created with O_EXCL,
            // so whatever is at the name by then is never written into.
            match unlink_at(dir.as_fd(), &cname) {
                Ok(()) => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => return Err(cant(e)),
            }
        }
        // A FIFO (opens once a reader is there) or a character device.
        let fd = open_at(dir.as_fd(), &cname, libc::O_WRONLY | libc::O_NOFOLLOW, 0).map_err(cant)?;
        let now = stat_of(fd.as_fd()).map_err(cant)?;
        check_existing(path, &now, owner)?;
        if kind(&now) == libc::S_IFREG {
            // Swapped for a regular file between the two looks: start over.
            continue;
        }
        return Ok(File::from(fd));
    }
    Err(io::Error::other(format!(
        "cannot write {shown}: another program keeps creating it while cnet replaces it; choose another name"
    )))
}

/// Whether an existing `st` at `path` may be replaced (regular file) or
/// written into (FIFO, character device).
fn check_existing(path: &Path, st: &libc::stat, owner: &OutputOwner) -> io::Result<()> {
    let shown = path.display();
    let what = describe(st);
    match kind(st) {
        libc::S_IFLNK => {
            Err(refused(format!("refusing to write {shown}: it is a symbolic link; give the path of a regular file")))
        }
        libc::S_IFREG | libc::S_IFIFO => {
            let fifo_ok = kind(st) == libc::S_IFIFO && owner.fifo_owner == Some(st.st_uid);
            if !owner.accepts(st.st_uid) && !fifo_ok {
                return Err(refused(format!(
                    "refusing to write into {shown}: it is {what} owned by {}, not by {}; remove it or choose another name",
                    user_name(st.st_uid),
                    owner.names()
                )));
            }
            if st.st_nlink > 1 {
                return Err(refused(format!(
                    "refusing to write into {shown}: it is {what} with {} hard links, so another name would change too; remove it or choose another name",
                    st.st_nlink
                )));
            }
            Ok(())
        }
        // Only root makes device nodes (/dev/null).
        libc::S_IFCHR => Ok(()),
        _ => Err(refused(format!(
            "refusing to write into {shown}: it is {what}, not a regular file; choose another name"
        ))),
    }
}

/// Who new folders and files belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// An opened folder.
pub struct Dir {
    pub fd: OwnedFd,
    /// `fstat` of the folder when it was opened.
    pub st: libc::stat,
    /// The path it was reached by (after any links that were followed).
    pub path: PathBuf,
    /// Whether only root (or cnet's own user) can change this folder and
    /// what its path leads to: then its entries are what they were when
    /// looked at, and a link in it was put there by root.
    pub trusted: bool,
    /// Whether no other user can change what this folder's path leads to
    /// (though maybe its entries: /tmp is anchored, not trusted).
    anchored: bool,
}

impl Dir {
    fn root() -> io::Result<Dir> {
        let fd = open_path(Path::new("/"), libc::O_RDONLY | libc::O_DIRECTORY)?;
        let st = stat_of(fd.as_fd())?;
        let trusted = only_root_changes(&st);
        Ok(Dir { fd, st, path: PathBuf::from("/"), trusted, anchored: true })
    }

    fn child(&self, fd: OwnedFd, path: PathBuf) -> io::Result<Dir> {
        let st = stat_of(fd.as_fd())?;
        // In a sticky folder (/tmp) only an entry's owner, the folder's
        // owner and root can rename or remove the entry: a folder of root's
        // there stays put however many users write beside it.
        let sticky = self.st.st_mode & libc::S_ISVTX != 0;
        let anchored = self.trusted || (self.anchored && sticky && owned_by_root(&st) && owned_by_root(&self.st));
        let trusted = anchored && only_root_changes(&st);
        Ok(Dir { fd, st, path, trusted, anchored })
    }
}

fn only_root_changes(st: &libc::stat) -> bool {
    owned_by_root(st) && st.st_mode & 0o022 == 0
}

/// Owned by root or by cnet's own user.
fn owned_by_root(st: &libc::stat) -> bool {
    st.st_uid == 0 || st.st_uid == euid()
}

/// Links followed on one path at most, like the kernel's limit.
const MAX_LINKS: u32 = 40;

/// Opens the folder at the absolute `path` one component at a time with
/// `O_NOFOLLOW`. A symbolic link is followed only in a folder that only root
/// can change (`/home` → `/data/home`), resolved by cnet itself so that each
/// component of its target is checked the same way; a link anywhere else is
/// refused. Missing folders are created when `create` says for whom (see
/// [`Creation`]).
pub fn open_dir(path: &Path, create: Option<Owner>) -> io::Result<Dir> {
    if !path.is_absolute() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} is not an absolute path", path.display())));
    }
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, path);
    let mut cur = Dir::root()?;
    let mut links = 0;
    let mut created = 0;
    while let Some(name) = pending.pop() {
        if name == "." || name.is_empty() {
            continue;
        }
        if name == ".." {
            let fd = open_at(cur.fd.as_fd(), c"..", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
            let mut up = cur.path.clone();
            up.pop();
            cur = cur.child(fd, up)?;
            continue;
        }
        let c = c_name(&name)?;
        let shown = cur.path.join(&name);
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        let fd = match open_at(cur.fd.as_fd(), &c, flags, 0) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create.is_some() => {
                let owner = create.unwrap_or(Owner { uid: 0, gid: 0 });
                // Someone who removes each folder as soon as it is made
                // would otherwise keep cnet going round.
                created += 1;
                if created > 100 {
                    return Err(io::Error::other(format!("{} keeps disappearing", shown.display())));
                }
                let how = Creation::in_dir(&cur, owner)?;
                {
                    let _as = how.enter()?;
                    // SAFETY: a valid descriptor and NUL-terminated name.
                    if unsafe { libc::mkdirat(cur.fd.as_raw_fd(), c.as_ptr(), 0o755) } != 0 {
                        let e = io::Error::last_os_error();
                        if e.raw_os_error() != Some(libc::EEXIST) {
                            return Err(io::Error::new(e.kind(), format!("cannot create {}: {e}", shown.display())));
                        }
                    }
                }
                // Opened with O_NOFOLLOW as any other component: a link put
                // in its place meanwhile is refused below.
                pending.push(name);
                continue_after_create(&how, &cur, &c)?;
                continue;
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
                let st = stat_at(cur.fd.as_fd(), &c)?;
                if kind(&st) != libc::S_IFLNK {
                    return Err(io::Error::new(
                        io::ErrorKind::NotADirectory,
                        format!("{} is {}, not a folder", shown.display(), describe(&st)),
                    ));
                }
                let target = readlink_at(cur.fd.as_fd(), &c)?;
                if !cur.trusted {
                    return Err(refused(format!(
                        "{} is a symbolic link (to {}) in a folder that {} can change; cnet does not follow links there: replace it with a real folder",
                        shown.display(),
                        target.display(),
                        changer(&cur)
                    )));
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{}: too many levels of symbolic links", path.display()),
                    ));
                }
                if target.is_absolute() {
                    cur = Dir::root()?;
                }
                push_components(&mut pending, &target);
                continue;
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("cannot open {}: {e}", shown.display()))),
        };
        cur = cur.child(fd, shown)?;
    }
    Ok(cur)
}

/// Queues the components of `path` so that `pop` returns the first.
fn push_components(pending: &mut Vec<OsString>, path: &Path) {
    let names: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => None,
        })
        .collect();
    pending.extend(names.into_iter().rev());
}

/// A folder cnet created as root in a trusted folder gets its owner here;
/// one created as the owner needs nothing.
fn continue_after_create(how: &Creation, dir: &Dir, name: &CStr) -> io::Result<()> {
    if let Creation::AsSelf { chown_to: Some(o) } = how {
        let fd = open_at(dir.fd.as_fd(), name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)?;
        std::os::unix::fs::fchown(File::from(fd), Some(o.uid), Some(o.gid))?;
    }
    Ok(())
}

/// "uid 1001 (alice)" or "other users": who besides root can change `dir`.
fn changer(dir: &Dir) -> String {
    if dir.st.st_uid != 0 && dir.st.st_uid != euid() {
        user_name(dir.st.st_uid)
    } else if dir.st.st_mode & 0o022 != 0 {
        "other users".into()
    } else {
        // The folder itself is root's, one above it is not.
        "another user (through a folder above it)".into()
    }
}

/// How cnet creates or removes an entry of a folder so that the result
/// belongs to a given owner without writing anywhere that owner could not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Creation {
    /// In the owner's own folder: as the owner (file-system uid and gid),
    /// so the kernel checks the owner's permissions and the entry is theirs
    /// from the start.
    AsOwner(Owner),
    /// In a folder only root changes (or when cnet is not root): as cnet's
    /// own user, then handed to `chown_to`.
    AsSelf { chown_to: Option<Owner> },
}

impl Creation {
    pub fn in_dir(dir: &Dir, owner: Owner) -> io::Result<Creation> {
        let me = euid();
        if me != 0 {
            // Not root: the kernel's permission checks are the user's own.
            return Ok(Creation::AsSelf { chown_to: None });
        }
        if dir.st.st_uid == owner.uid {
            // Only the owner (and root) can change its own folder's entries
            // unless it lets others write, and then they are the owner's
            // problem: cnet acts as the owner there and follows no link.
            return Ok(if owner.uid == me { Creation::AsSelf { chown_to: None } } else { Creation::AsOwner(owner) });
        }
        if dir.trusted {
            return Ok(Creation::AsSelf { chown_to: (owner.uid != me).then_some(owner) });
        }
        Err(refused(format!(
            "{} can be changed by {}, and belongs neither to {} nor to root; cnet creates nothing there",
            dir.path.display(),
            changer(dir),
            user_name(owner.uid)
        )))
    }

    /// Switches the file-system ids for `AsOwner` until the guard drops.
    pub fn enter(&self) -> io::Result<FsIds> {
        match self {
            Creation::AsOwner(o) => FsIds::switch(o.uid, o.gid),
            Creation::AsSelf { .. } => Ok(FsIds(None)),
        }
    }

    /// Gives a file cnet created to its owner, when created as root.
    pub fn hand_over(&self, file: &File) -> io::Result<()> {
        match self {
            Creation::AsSelf { chown_to: Some(o) } => std::os::unix::fs::fchown(file, Some(o.uid), Some(o.gid)),
            _ => Ok(()),
        }
    }
}

/// This thread's file-system uid and gid switched (`setfsuid`, which Linux
/// applies per thread); the previous ones come back on drop.
pub struct FsIds(Option<(u32, u32)>);

impl FsIds {
    fn switch(uid: u32, gid: u32) -> io::Result<FsIds> {
        // SAFETY: setfsuid/setfsgid change only this thread's file-system
        // ids; -1 is never valid, so passing it reads the current id.
        unsafe {
            let old_gid = libc::setfsgid(gid) as u32;
            if libc::setfsgid(u32::MAX) as u32 != gid {
                libc::setfsgid(old_gid);
                return Err(io::Error::other(format!("cannot act as group {gid}")));
            }
            let old_uid = libc::setfsuid(uid) as u32;
            if libc::setfsuid(u32::MAX) as u32 != uid {
                libc::setfsuid(old_uid);
                libc::setfsgid(old_gid);
                return Err(io::Error::other(format!("cannot act as {}", user_name(uid))));
            }
            Ok(FsIds(Some((old_uid, old_gid))))
        }
    }
}

impl Drop for FsIds {
    fn drop(&mut self) {
        if let Some((uid, gid)) = self.0 {
            // SAFETY: back to the ids this thread had.
            unsafe {
                libc::setfsuid(uid);
                libc::setfsgid(gid);
            }
        }
    }
}

/// What is at a name in a folder.
pub enum Entry {
    Missing,
    /// A regular file and its first bytes.
    File {
        head: Vec<u8>,
    },
    /// Anything else: link, FIFO, folder…; for links, where it points.
    Other {
        what: &'static str,
        target: Option<PathBuf>,
    },
}

/// Looks at `name` in `dir` without following a link, reading at most
/// `limit` bytes of a regular file (which is opened with `O_NOFOLLOW`
/// and `O_NONBLOCK`, and checked again once open).
pub fn read_entry(dir: &Dir, name: &str, limit: u64) -> io::Result<Entry> {
    let c = c_name(OsStr::new(name))?;
    let st = match stat_at(dir.fd.as_fd(), &c) {
        Ok(st) => st,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Entry::Missing),
        Err(e) => return Err(e),
    };
    let other = |st: &libc::stat| {
        let target = (kind(st) == libc::S_IFLNK).then(|| readlink_at(dir.fd.as_fd(), &c).ok()).flatten();
        Entry::Other { what: describe(st), target }
    };
    if kind(&st) != libc::S_IFREG {
        return Ok(other(&st));
    }
    let fd = match open_at(dir.fd.as_fd(), &c, libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK, 0) {
        Ok(fd) => fd,
        // Swapped for a link since the first look.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(Entry::Other { what: "a symbolic link", target: readlink_at(dir.fd.as_fd(), &c).ok() });
        }
        Err(e) => return Err(e),
    };
    let now = stat_of(fd.as_fd())?;
    if kind(&now) != libc::S_IFREG {
        return Ok(other(&now));
    }
    let mut head = Vec::new();
    File::from(fd).take(limit).read_to_end(&mut head)?;
    Ok(Entry::File { head })
}

/// Puts a regular file `name` with `contents` and `mode` into `dir`:
/// written under a fresh name (`O_CREAT|O_EXCL|O_NOFOLLOW`), its mode and
/// owner set on the descriptor, then renamed over `name` (which replaces
/// the entry, never a file a link points to).
pub fn replace_file(dir: &Dir, name: &str, contents: &[u8], mode: u32, how: &Creation) -> io::Result<()> {
    let target = c_name(OsStr::new(name))?;
    let _as = how.enter()?;
    let mut attempt = 0u32;
    let (tmp, file) = loop {
        let tmp = c_name(OsStr::new(&format!(".{name}.cnet-{}-{attempt}", std::process::id())))?;
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        match open_at(dir.fd.as_fd(), &tmp, flags, 0o600) {
            Ok(fd) => break (tmp, File::from(fd)),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && attempt < 100 => attempt += 1,
            Err(e) => return Err(e),
        }
    };
    let result = (|| {
        let mut file = file;
        file.write_all(contents)?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        how.hand_over(&file)?;
        // SAFETY: valid descriptors and NUL-terminated names.
        if unsafe { libc::renameat(dir.fd.as_raw_fd(), tmp.as_ptr(), dir.fd.as_raw_fd(), target.as_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = unlink_at(dir.fd.as_fd(), &tmp);
    }
    result
}

/// Removes the entry `name` of `dir` (the entry itself, whatever it is).
pub fn remove_entry(dir: &Dir, name: &str, how: &Creation) -> io::Result<()> {
    let c = c_name(OsStr::new(name))?;
    let _as = how.enter()?;
    unlink_at(dir.fd.as_fd(), &c)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    /// Under the target folder: a chain of folders only root changes (not
    /// /tmp, which everyone can write to).
    fn tmpdir(tag: &str) -> PathBuf {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
        let d = std::fs::canonicalize(target).unwrap().join(format!("csf-safefs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn output_is_created_new_and_replaces_only_plain_files() {
        let d = tmpdir("out");
        let me = OutputOwner::current();
        let p = d.join("a.pcapng");
        let mut f = create_output(&p, 0o640, &me).unwrap();
        f.write_all(b"first").unwrap();
        let ino = std::fs::metadata(&p).unwrap().ino();
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o640);
        // An own file is replaced by a new one, not truncated in place.
        let mut g = create_output(&p, 0o600, &me).unwrap();
        g.write_all(b"x").unwrap();
        let m = std::fs::metadata(&p).unwrap();
        assert_ne!(m.ino(), ino);
        assert_eq!(m.mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&p).unwrap(), b"x");

        // A second link would be changed too.
        let linked = d.join("linked");
        std::fs::hard_link(&p, &linked).unwrap();
        let e = create_output(&p, 0o600, &me).unwrap_err();
        assert!(is_refused(&e) && e.to_string().contains("2 hard links"), "{e}");
        assert_eq!(std::fs::read(&linked).unwrap(), b"x");

        let victim = d.join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let link = d.join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = create_output(&link, 0o600, &me).unwrap_err();
        assert!(is_refused(&e) && e.to_string().contains("it is a symbolic link"), "{e}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");

        let e = create_output(&d, 0o600, &me).unwrap_err();
        assert!(is_refused(&e) && e.to_string().contains("a folder"), "{e}");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn foreign_files_are_refused_and_devices_accepted() {
        let d = tmpdir("foreign");
        let p = d.join("b.pcapng");
        std::fs::write(&p, b"theirs").unwrap();
        // As if cnet ran for a -Z user and the file were someone else's:
        // accepted owners are the output's user and cnet's own user.
        let other = OutputOwner { uid: euid().wrapping_add(4242), gid: 0, fifo_owner: None };
        let not_me = OutputOwner { uid: euid().wrapping_add(1), ..other.clone() };
        std::os::unix::fs::chown(&p, Some(other.uid), None).unwrap();
        let e = create_output(&p, 0o600, &not_me).unwrap_err();
        assert!(is_refused(&e) && e.to_string().contains(&format!("owned by uid {}", other.uid)), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"theirs");
        assert!(create_output(&p, 0o600, &other).is_ok());
        assert!(create_output(Path::new("/dev/null"), 0o600, &not_me).is_ok());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn dirs_are_walked_without_following_untrusted_links() {
        let d = tmpdir("walk");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        let me = Owner { uid: euid(), gid: egid() };
        let made = open_dir(&d.join("x/y/z"), Some(me)).unwrap();
        assert!(made.path.ends_with("x/y/z"));
        // A link in a folder only root changes is followed…
        std::os::unix::fs::symlink(d.join("x"), d.join("lx")).unwrap();
        assert!(open_dir(&d.join("lx/y"), None).unwrap().path.ends_with("x/y"));
        // …not in one that others can write to.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = open_dir(&d.join("lx/y"), None).err().unwrap();
        assert!(is_refused(&e) && e.to_string().contains("is a symbolic link"), "{e}");
        assert!(open_dir(&d.join("nope"), None).is_err());
        // A sticky folder that everyone writes to (as /tmp): a folder of
        // root's in it is as trusted as its own mode says; the sticky folder
        // itself is not, so a link directly in it is refused.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
        std::fs::create_dir(d.join("r")).unwrap();
        std::fs::set_permissions(d.join("r"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(d.join("x"), d.join("r/lx")).unwrap();
        assert!(open_dir(&d.join("r/lx/y"), None).unwrap().path.ends_with("x/y"));
        assert!(is_refused(&open_dir(&d.join("lx/y"), None).err().unwrap()));
        std::fs::remove_dir_all(d).unwrap();
    }
}
