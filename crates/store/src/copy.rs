//! Copies a tree with everything a container layer holds: modes, owners,
//! extended attributes (`trusted.overlay.*` whiteout markers and opaque
//! directories included), times to the nanosecond, symlinks, device nodes
//! (overlayfs whiteouts are character devices 0:0), fifos, sockets,
//! hardlinks, and holes (data is copied segment by segment found with
//! `SEEK_DATA`/`SEEK_HOLE`). The same walk, with hashing on, makes the
//! [`Manifest`] of a snapshot.
//!
//! The source is walked through directory descriptors, never by path, so
//! a container that swaps a directory for a symlink while it is copied
//! cannot make the copy read outside its layer.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, SeekFrom};
use sha2::{Digest, Sha256};

use crate::root::{list_dir, op_err, Root};
use crate::tree::{Entry, Kind, Manifest, PathKey};
use crate::{io_err, StoreError};

/// Bytes read or written at once.
pub(crate) const BLOCK: usize = 256 * 1024;
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// Feeds `n` zero bytes to `h`.
pub(crate) fn hash_zeros(h: &mut Sha256, mut n: u64) {
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        h.update(&ZEROS[..k]);
        n -= k as u64;
    }
}

/// The data segments of the open file `fd` below `size`: `(offset, len)`.
pub(crate) fn segments(fd: BorrowedFd<'_>, size: u64) -> io::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut off = 0u64;
    while off < size {
        let data = match rustix::fs::seek(fd, SeekFrom::Data(off)) {
            Ok(d) => d,
            Err(rustix::io::Errno::NXIO) => break,
            // No SEEK_DATA here: all of it is data.
            Err(rustix::io::Errno::INVAL) => {
                out.push((off, size - off));
                break;
            }
            Err(e) => return Err(e.into()),
        };
        if data >= size {
            break;
        }
        let hole = match rustix::fs::seek(fd, SeekFrom::Hole(data)) {
            Ok(h) => h.min(size),
            Err(e) => return Err(e.into()),
        };
        out.push((data, hole - data));
        off = hole;
    }
    Ok(out)
}

/// Reads `len` bytes at `off` into `buf` (fewer at the end of the file).
pub(crate) fn pread_full(fd: BorrowedFd<'_>, buf: &mut [u8], off: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match rustix::io::pread(fd, &mut buf[got..], off + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(got)
}

pub(crate) fn pwrite_all(fd: BorrowedFd<'_>, mut buf: &[u8], mut off: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match rustix::io::pwrite(fd, buf, off) {
            Ok(n) => {
                buf = &buf[n..];
                off += n as u64;
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Copies the content of `src` (`size` bytes) to the new, empty `dst`
/// keeping holes; returns the sha256 of the content when `hash`. A file
/// that shrinks while it is read is copied as zeros past its new end, so
/// the copy and its hash agree.
fn copy_data(
    src: BorrowedFd<'_>,
    dst: Option<BorrowedFd<'_>>,
    size: u64,
    hash: bool,
) -> io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut at = 0u64;
    let mut buf = vec![0u8; BLOCK];
    for (off, len) in segments(src, size)? {
        if hash {
            hash_zeros(&mut h, off - at);
        }
        if let (Some(dst), false) = (dst, hash) {
            if copy_range(src, dst, off, len).is_ok() {
                at = off + len;
                continue;
            }
        }
        let mut pos = off;
        while pos < off + len {
            let want = ((off + len - pos) as usize).min(BLOCK);
            let got = pread_full(src, &mut buf[..want], pos)?;
            if got == 0 {
                break;
            }
            if hash {
                h.update(&buf[..got]);
            }
            if let Some(dst) = dst {
                pwrite_all(dst, &buf[..got], pos)?;
            }
            pos += got as u64;
        }
        if hash {
            hash_zeros(&mut h, off + len - pos);
        }
        at = off + len;
    }
    if hash {
        hash_zeros(&mut h, size - at);
    }
    if let Some(dst) = dst {
        rustix::fs::ftruncate(dst, size)?;
    }
    Ok(h.finalize().into())
}

/// `copy_file_range` of one segment (in the kernel; shares extents where
/// the filesystem can).
fn copy_range(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, off: u64, len: u64) -> io::Result<()> {
    let (mut i, mut o) = (off, off);
    let end = off + len;
    while i < end {
        let want = (end - i).min(1 << 30) as usize;
        let n = rustix::fs::copy_file_range(src, Some(&mut i), dst, Some(&mut o), want)?;
        if n == 0 {
            break;
        }
    }
    Ok(())
}

/// The entry of `name` in `dir` as `st` describes it (content fields and
/// hardlinks are filled in by the caller).
fn entry_of(
    dir: BorrowedFd<'_>,
    name: &[u8],
    st: &rustix::fs::Stat,
    path: &[u8],
) -> io::Result<Entry> {
    let kind = Kind::from_mode(st.st_mode).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: unknown file type", crate::tree::show(path)),
        )
    })?;
    let target = if kind == Kind::Symlink {
        rustix::fs::readlinkat(dir, OsStr::from_bytes(name), Vec::new())
            .map_err(io::Error::from)
            .map_err(op_err("read the symlink", path))?
            .into_bytes()
    } else {
        Vec::new()
    };
    Ok(Entry {
        kind,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: st.st_mtime,
        mtime_ns: st.st_mtime_nsec as u32,
        rdev: if matches!(kind, Kind::Char | Kind::Block) {
            st.st_rdev
        } else {
            0
        },
        xattrs: crate::sys::xattrs_at(dir, name).map_err(op_err("read the xattrs of", path))?,
        size: 0,
        hash: [0; 32],
        target,
        link: None,
    })
}

struct Walk<'a> {
    hash: bool,
    /// Link the files of `dst` to those of the source instead of copying
    /// them (see [`share_tree`]).
    share: bool,
    dst: Option<&'a Root>,
    links: HashMap<(u64, u64), Vec<u8>>,
    manifest: Manifest,
    /// Directories whose metadata is set once their content is there.
    dirs: Vec<(Vec<u8>, Entry)>,
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        name.to_vec()
    } else {
        let mut p = parent.to_vec();
        p.push(b'/');
        p.extend_from_slice(name);
        p
    }
}

impl Walk<'_> {
    /// Makes `p` in the destination a hard link of `name` in `sdir`;
    /// `false` when the filesystem refuses (another filesystem, too many
    /// links, a protected link), for the caller to copy it instead.
    fn link_from(&self, sdir: BorrowedFd<'_>, name: &OsStr, p: &[u8]) -> io::Result<bool> {
        let Some(dst) = self.dst else {
            return Ok(false);
        };
        let to = dst.at(p)?;
        match rustix::fs::linkat(sdir, name, &to.dir, to.name_os(), AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(
                rustix::io::Errno::XDEV
                | rustix::io::Errno::MLINK
                | rustix::io::Errno::PERM
                | rustix::io::Errno::ACCESS,
            ) => Ok(false),
            Err(e) => Err(op_err("link", p)(e.into())),
        }
    }

    fn dir(&mut self, sdir: BorrowedFd<'_>, path: &[u8]) -> io::Result<()> {
        for name in list_dir(sdir).map_err(op_err("list", path))? {
            let p = join(path, &name);
            let os = OsStr::from_bytes(&name);
            let st = match rustix::fs::statat(sdir, os, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // Removed while we walk: it is not in the copy.
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => return Err(op_err("stat", &p)(e.into())),
            };
            let mut e = entry_of(sdir, &name, &st, &p)?;
            match e.kind {
                Kind::Dir => {
                    let sub = rustix::fs::openat(
                        sdir,
                        os,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(io::Error::from)
                    .map_err(op_err("open", &p))?;
                    if let Some(dst) = self.dst {
                        dst.create(&p, Kind::Dir, 0, &[])?;
                    }
                    self.manifest.entries.insert(PathKey(p.clone()), e.clone());
                    self.dirs.push((p.clone(), e));
                    self.dir(sub.as_fd(), &p)?;
                    continue;
                }
                Kind::File if self.share && self.link_from(sdir, os, &p)? => {
                    // The same inode: its metadata is already the source's,
                    // and must not be touched (chown would drop setuid
                    // bits of the source too, if only for a moment).
                    e.size = st.st_size as u64;
                    self.manifest.entries.insert(PathKey(p), e);
                    continue;
                }
                Kind::File => {
                    let key = (st.st_dev, st.st_ino);
                    if st.st_nlink > 1 {
                        if let Some(leader) = self.links.get(&key) {
                            let l = &self.manifest.entries[&PathKey(leader.clone())];
                            e.size = l.size;
                            e.hash = l.hash;
                            e.link = Some(leader.clone());
                            if let Some(dst) = self.dst {
                                dst.link(leader, &p)?;
                            }
                            self.manifest.entries.insert(PathKey(p), e);
                            continue;
                        }
                        self.links.insert(key, p.clone());
                    }
                    let src: OwnedFd = rustix::fs::openat(
                        sdir,
                        os,
                        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
                        Mode::empty(),
                    )
                    .map_err(io::Error::from)
                    .map_err(op_err("open", &p))?;
                    let size = rustix::fs::fstat(&src)?.st_size as u64;
                    e.size = size;
                    let out = match self.dst {
                        Some(dst) => {
                            dst.create(&p, Kind::File, 0, &[])?;
                            Some(dst.open_file(&p, OFlags::WRONLY)?)
                        }
                        None => None,
                    };
                    e.hash = copy_data(
                        src.as_fd(),
                        out.as_ref().map(|f| f.as_fd()),
                        size,
                        self.hash,
                    )
                    .map_err(op_err("copy", &p))?;
                }
                _ => {
                    if let Some(dst) = self.dst {
                        dst.create(&p, e.kind, e.rdev, &e.target)?;
                    }
                }
            }
            if let Some(dst) = self.dst {
                dst.set_meta(&p, &e)?;
            }
            self.manifest.entries.insert(PathKey(p), e);
        }
        Ok(())
    }
}

/// Copies the tree `src` into the existing, empty directory `dst` (or
/// only reads it when `dst` is `None`); returns its manifest, with content
/// hashes when `hash`.
pub(crate) fn copy_tree(
    src: &Path,
    dst: Option<&Path>,
    hash: bool,
) -> Result<Manifest, StoreError> {
    walk_tree(src, dst, hash, false)
}

/// Makes `dst` (existing and empty) a tree like `src` whose files are hard
/// links to those of `src`: new directories, symlinks and device nodes,
/// and no file data copied. Only for trees whose files are never written
/// in place, such as snapshots and a stream's receiving copy (which
/// replaces a file rather than writing into it); a file the filesystem
/// will not link is copied. The manifest has no content hashes.
pub(crate) fn share_tree(src: &Path, dst: &Path) -> Result<Manifest, StoreError> {
    walk_tree(src, Some(dst), false, true)
}

fn walk_tree(
    src: &Path,
    dst: Option<&Path>,
    hash: bool,
    share: bool,
) -> Result<Manifest, StoreError> {
    let sfd = rustix::fs::open(
        src,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err(format!("{}: open", src.display()))(e.into()))?;
    let root = dst
        .map(|d| Root::open(d).map_err(io_err(format!("{}: open", d.display()))))
        .transpose()?;
    let st = rustix::fs::fstat(&sfd).map_err(|e| io_err(src.display().to_string())(e.into()))?;
    let top = entry_of(sfd.as_fd(), b"", &st, b"").map_err(io_err(src.display().to_string()))?;
    let mut w = Walk {
        hash,
        share,
        dst: root.as_ref(),
        links: HashMap::new(),
        manifest: Manifest::default(),
        dirs: Vec::new(),
    };
    w.manifest.entries.insert(PathKey(Vec::new()), top.clone());
    w.dirs.push((Vec::new(), top));
    let what = format!(
        "copy {} to {}",
        src.display(),
        dst.map(|d| d.display().to_string()).unwrap_or_default()
    );
    w.dir(sfd.as_fd(), b"").map_err(io_err(what.clone()))?;
    if let Some(dst) = w.dst {
        // Deepest first: setting a directory's times must come after
        // everything written in it.
        for (p, e) in w.dirs.iter().rev() {
            dst.set_meta(p, e).map_err(io_err(what.clone()))?;
        }
    }
    Ok(w.manifest)
}
