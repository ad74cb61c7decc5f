//! Changes under one directory, by relative path, that never leave it: the
//! parent of every path is opened with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV)` and the last component is
//! changed with an `*at` call that does not follow it. A stream that
//! names `a/b` after making `a` a symlink to `/etc` fails instead of
//! writing to the host. Both receivers (btrfs and portable) write through
//! a [`Root`].

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, Timestamps};
use rustix::time::Timespec;

use crate::sys;
use crate::tree::{show, Entry, Kind};

/// A directory that relative paths are resolved in.
pub(crate) struct Root {
    fd: OwnedFd,
}

fn resolve() -> ResolveFlags {
    ResolveFlags::BENEATH
        | ResolveFlags::NO_SYMLINKS
        | ResolveFlags::NO_MAGICLINKS
        | ResolveFlags::NO_XDEV
}

/// A path's parent directory (open) and last component; the root itself
/// is the root's descriptor and an empty name.
pub(crate) struct At {
    pub dir: OwnedFd,
    pub name: Vec<u8>,
}

impl At {
    pub fn name_os(&self) -> &OsStr {
        OsStr::from_bytes(if self.name.is_empty() {
            b"."
        } else {
            &self.name
        })
    }
}

/// An error of an operation on a path of the tree.
pub(crate) fn op_err(op: &str, path: &[u8]) -> impl FnOnce(io::Error) -> io::Error {
    let what = format!("{op} {}", show(path));
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl Root {
    /// Opens `dir` as a root.
    pub fn open(dir: &Path) -> io::Result<Root> {
        let fd = rustix::fs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root { fd })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens `rel` (a directory below the root, or the root for an empty
    /// path) as an `O_PATH` descriptor.
    pub fn dir(&self, rel: &[u8]) -> io::Result<OwnedFd> {
        let rel = if rel.is_empty() { &b"."[..] } else { rel };
        Ok(rustix::fs::openat2(
            &self.fd,
            OsStr::from_bytes(rel),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            resolve(),
        )?)
    }

    /// The parent of `path`, opened, and its last component.
    pub fn at(&self, path: &[u8]) -> io::Result<At> {
        if path.is_empty() {
            return Ok(At {
                dir: self.dir(b"")?,
                name: Vec::new(),
            });
        }
        let (parent, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&b""[..], path),
        };
        Ok(At {
            dir: self
                .dir(parent)
                .map_err(op_err("open the directory of", path))?,
            name: name.to_vec(),
        })
    }

    /// Opens the file `path` (not following it) with `flags`.
    pub fn open_file(&self, path: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
        Ok(rustix::fs::openat2(
            &self.fd,
            OsStr::from_bytes(path),
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
            resolve(),
        )?)
    }

    /// The type of what is at `path`, if anything.
    pub fn kind(&self, path: &[u8]) -> io::Result<Option<Kind>> {
        let at = self.at(path)?;
        match rustix::fs::statat(&at.dir, at.name_os(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Kind::from_mode(st.st_mode)),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes `path` and, for a directory, everything in it (on the same
    /// filesystem; a nested btrfs subvolume is deleted as one).
    pub fn remove(&self, path: &[u8]) -> io::Result<()> {
        let at = self.at(path)?;
        remove_at(at.dir.as_fd(), &at.name).map_err(op_err("remove", path))
    }

    /// Creates `path` as an empty `kind` (a file, directory, device, fifo
    /// or socket with mode 0600, a symlink to `target`).
    pub fn create(&self, path: &[u8], kind: Kind, rdev: u64, target: &[u8]) -> io::Result<()> {
        let at = self.at(path)?;
        let name = at.name_os();
        let m = Mode::from_raw_mode(0o600);
        let r = match kind {
            Kind::Dir => rustix::fs::mkdirat(&at.dir, name, Mode::from_raw_mode(0o700)),
            Kind::File => rustix::fs::openat(
                &at.dir,
                name,
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
                m,
            )
            .map(drop),
            Kind::Symlink => rustix::fs::symlinkat(OsStr::from_bytes(target), &at.dir, name),
            Kind::Char => rustix::fs::mknodat(
                &at.dir,
                name,
                rustix::fs::FileType::CharacterDevice,
                m,
                rdev,
            ),
            Kind::Block => {
                rustix::fs::mknodat(&at.dir, name, rustix::fs::FileType::BlockDevice, m, rdev)
            }
            Kind::Fifo => rustix::fs::mknodat(&at.dir, name, rustix::fs::FileType::Fifo, m, 0),
            Kind::Socket => rustix::fs::mknodat(&at.dir, name, rustix::fs::FileType::Socket, m, 0),
        };
        r.map_err(io::Error::from).map_err(op_err("create", path))
    }

    /// `link(existing, path)`.
    pub fn link(&self, existing: &[u8], path: &[u8]) -> io::Result<()> {
        let from = self.at(existing)?;
        let to = self.at(path)?;
        rustix::fs::linkat(
            &from.dir,
            from.name_os(),
            &to.dir,
            to.name_os(),
            AtFlags::empty(),
        )
        .map_err(io::Error::from)
        .map_err(op_err("link", path))
    }

    /// `rename(from, to)`.
    pub fn rename(&self, from: &[u8], to: &[u8]) -> io::Result<()> {
        let a = self.at(from)?;
        let b = self.at(to)?;
        rustix::fs::renameat(&a.dir, a.name_os(), &b.dir, b.name_os())
            .map_err(io::Error::from)
            .map_err(op_err("rename", from))
    }

    /// `unlink(path)` or `rmdir(path)`.
    pub fn unlink(&self, path: &[u8], dir: bool) -> io::Result<()> {
        let at = self.at(path)?;
        let flags = if dir {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        rustix::fs::unlinkat(&at.dir, at.name_os(), flags)
            .map_err(io::Error::from)
            .map_err(op_err("remove", path))
    }

    pub fn chown(&self, path: &[u8], uid: u32, gid: u32) -> io::Result<()> {
        let at = self.at(path)?;
        let flags = if at.name.is_empty() {
            AtFlags::empty()
        } else {
            AtFlags::SYMLINK_NOFOLLOW
        };
        // SAFETY-free: ids are plain numbers.
        rustix::fs::chownat(
            &at.dir,
            at.name_os(),
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            flags,
        )
        .map_err(io::Error::from)
        .map_err(op_err("chown", path))
    }

    /// chmod of anything but a symlink (which has no mode of its own).
    pub fn chmod(&self, path: &[u8], mode: u32) -> io::Result<()> {
        let at = self.at(path)?;
        rustix::fs::chmodat(
            &at.dir,
            at.name_os(),
            Mode::from_raw_mode(mode & 0o7777),
            AtFlags::empty(),
        )
        .map_err(io::Error::from)
        .map_err(op_err("chmod", path))
    }

    pub fn utimes(&self, path: &[u8], atime: (i64, u32), mtime: (i64, u32)) -> io::Result<()> {
        let at = self.at(path)?;
        let ts = |(s, ns): (i64, u32)| Timespec {
            tv_sec: s,
            tv_nsec: ns as _,
        };
        let times = Timestamps {
            last_access: ts(atime),
            last_modification: ts(mtime),
        };
        let flags = if at.name.is_empty() {
            AtFlags::empty()
        } else {
            AtFlags::SYMLINK_NOFOLLOW
        };
        rustix::fs::utimensat(&at.dir, at.name_os(), &times, flags)
            .map_err(io::Error::from)
            .map_err(op_err("set the times of", path))
    }

    pub fn set_xattr(&self, path: &[u8], key: &[u8], value: &[u8]) -> io::Result<()> {
        let at = self.at(path)?;
        sys::set_xattr_at(at.dir.as_fd(), &at.name, key, value).map_err(op_err(
            &format!("set {} on", String::from_utf8_lossy(key)),
            path,
        ))
    }

    pub fn remove_xattr(&self, path: &[u8], key: &[u8]) -> io::Result<()> {
        let at = self.at(path)?;
        sys::remove_xattr_at(at.dir.as_fd(), &at.name, key).map_err(op_err(
            &format!("remove {} of", String::from_utf8_lossy(key)),
            path,
        ))
    }

    pub fn xattrs(&self, path: &[u8]) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let at = self.at(path)?;
        sys::xattrs_at(at.dir.as_fd(), &at.name).map_err(op_err("read the xattrs of", path))
    }

    /// Gives `path` the metadata of `e` (owner, mode, exactly its extended
    /// attributes, times), in the order that keeps each: chown clears
    /// set-id bits and file capabilities, so it goes first.
    pub fn set_meta(&self, path: &[u8], e: &Entry) -> io::Result<()> {
        self.chown(path, e.uid, e.gid)?;
        if e.kind != Kind::Symlink {
            self.chmod(path, e.mode)?;
        }
        let have = self.xattrs(path)?;
        for (k, _) in &have {
            if !e.xattrs.iter().any(|(n, _)| n == k) {
                self.remove_xattr(path, k)?;
            }
        }
        for (k, v) in &e.xattrs {
            if !have.iter().any(|(n, old)| n == k && old == v) {
                self.set_xattr(path, k, v)?;
            }
        }
        self.utimes(path, (e.mtime, e.mtime_ns), (e.mtime, e.mtime_ns))
    }
}

/// Removes `name` in `dir`: unlink, or empty and rmdir a directory (never
/// leaving its filesystem), or delete a btrfs subvolume whole.
pub(crate) fn remove_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let os = OsStr::from_bytes(name);
    let st = match rustix::fs::statat(dir, os, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Ok(rustix::fs::unlinkat(dir, os, AtFlags::empty())?);
    }
    let sub = rustix::fs::openat(
        dir,
        os,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if st.st_ino == sys::BTRFS_FIRST_FREE_OBJECTID && sys::fs_magic(&sub)? == sys::BTRFS_SUPER_MAGIC
    {
        // The ioctl needs a descriptor that is not O_PATH.
        let parent = rustix::fs::openat(
            dir,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let dir = parent.as_fd();
        match sys::snap_destroy(dir, name) {
            Ok(()) => return Ok(()),
            // Holds nested subvolumes: empty it first, then retry.
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {}
            Err(e) => return Err(e),
        }
        clear_dir(sub.as_fd(), st.st_dev)?;
        return sys::snap_destroy(dir, name);
    }
    clear_dir(sub.as_fd(), st.st_dev)?;
    Ok(rustix::fs::unlinkat(dir, os, AtFlags::REMOVEDIR)?)
}

/// Removes everything in the directory `fd` (on device `dev`).
fn clear_dir(fd: BorrowedFd<'_>, dev: u64) -> io::Result<()> {
    let names = list_dir(fd)?;
    for n in names {
        let st = match rustix::fs::statat(fd, OsStr::from_bytes(&n), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        if st.st_dev != dev && st.st_ino != sys::BTRFS_FIRST_FREE_OBJECTID {
            return Err(io::Error::other(format!(
                "{}: another filesystem is mounted there",
                String::from_utf8_lossy(&n)
            )));
        }
        remove_at(fd, &n)?;
    }
    Ok(())
}

/// The names in the directory `fd`, sorted, without `.` and `..`.
pub(crate) fn list_dir(fd: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    let mut dir = rustix::fs::Dir::read_from(fd)?;
    let mut names = Vec::new();
    while let Some(ent) = dir.read() {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    names.sort();
    Ok(names)
}
