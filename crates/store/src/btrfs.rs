//! btrfs subvolumes as layers: detection (`statfs` magic
//! `BTRFS_SUPER_MAGIC`, a subvolume's root is inode 256), creation,
//! writable and read-only snapshots (`BTRFS_IOC_SNAP_CREATE_V2`), the
//! identity of a subvolume (its UUID and received UUID) and
//! `BTRFS_IOC_SEND` into a writer. Receiving a send stream is
//! `btrfs_recv.rs`.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use crate::sys::{self, SubvolInfo};
use crate::{io_err, StoreError};

fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The directory holding `path` and `path`'s last component.
fn parent_and_name(path: &Path) -> io::Result<(OwnedFd, Vec<u8>)> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((open_dir(parent)?, name.as_bytes().to_vec()))
}

/// Whether `path` is on a btrfs filesystem.
pub(crate) fn is_btrfs(path: &Path) -> io::Result<bool> {
    let fd = rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())?;
    Ok(sys::fs_magic(&fd)? == sys::BTRFS_SUPER_MAGIC)
}

/// Whether `path` is the root of a btrfs subvolume.
pub(crate) fn is_subvolume(path: &Path) -> io::Result<bool> {
    let fd = rustix::fs::open(
        path,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR
        && st.st_ino == sys::BTRFS_FIRST_FREE_OBJECTID
        && sys::fs_magic(&fd)? == sys::BTRFS_SUPER_MAGIC)
}

/// Creates `path` as an empty subvolume.
pub(crate) fn create(path: &Path) -> io::Result<()> {
    let (dir, name) = parent_and_name(path)?;
    sys::subvol_create(dir.as_fd(), &name)
}

/// Snapshots the subvolume `src` as `dst` (read-only when `readonly`).
pub(crate) fn snapshot(src: &Path, dst: &Path, readonly: bool) -> io::Result<()> {
    let s = open_dir(src)?;
    let (dir, name) = parent_and_name(dst)?;
    sys::snap_create(dir.as_fd(), &name, s.as_fd(), readonly)
}

/// What the kernel knows of the subvolume `path`.
pub(crate) fn info(path: &Path) -> io::Result<SubvolInfo> {
    sys::subvol_info(open_dir(path)?.as_fd())
}

/// Records the subvolume `path` as received from `uuid` at `ctransid`, then
/// makes it read-only (the kernel refuses the first on a read-only one).
pub(crate) fn seal_received(path: &Path, uuid: [u8; 16], ctransid: u64) -> io::Result<()> {
    let fd = open_dir(path)?;
    sys::set_received(fd.as_fd(), uuid, ctransid)?;
    sys::subvol_set_readonly(fd.as_fd(), true)
}

/// Whether the subvolume `path` is read-only.
pub(crate) fn readonly(path: &Path) -> io::Result<bool> {
    sys::subvol_readonly(open_dir(path)?.as_fd())
}

/// A UUID as `8-4-4-4-12` hex.
pub(crate) fn uuid_string(u: &[u8; 16]) -> String {
    let h = crate::tree::hex(u);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Writes the btrfs send stream of the read-only subvolume `snap` to
/// `out`, incremental from the read-only subvolume `parent` (which is
/// also its clone source). The kernel writes into a pipe from a thread
/// of its own while this one copies the pipe to `out`.
pub(crate) fn send(
    snap: &Path,
    parent: Option<&Path>,
    out: &mut dyn Write,
) -> Result<(), StoreError> {
    let what = format!("btrfs send {}", snap.display());
    let fd = open_dir(snap).map_err(io_err(format!("{}: open", snap.display())))?;
    let parent_root = parent
        .map(|p| {
            info(p)
                .map(|i| i.treeid)
                .map_err(io_err(format!("{}: subvolume info", p.display())))
        })
        .transpose()?;
    let clones: Vec<u64> = parent_root.into_iter().collect();
    let (rd, wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| io_err("pipe")(e.into()))?;
    std::thread::scope(|s| {
        let kernel = s.spawn(move || {
            let r = sys::send(fd.as_fd(), wr.as_fd(), parent_root, &clones);
            drop(wr);
            r
        });
        let mut rd = std::fs::File::from(rd);
        let mut buf = vec![0u8; 128 * 1024];
        let copied: Result<(), StoreError> = loop {
            match rd.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    if let Err(e) = out.write_all(&buf[..n]) {
                        break Err(io_err("write the stream")(e));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(io_err(what.clone())(e)),
            }
        };
        // Closing the read end makes a kernel still writing stop (EPIPE).
        drop(rd);
        let sent = kernel.join().expect("the send thread does not panic");
        copied?;
        sent.map_err(io_err(what.clone()))
    })
}
