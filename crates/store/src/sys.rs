//! The kernel interfaces of the store, as small typed wrappers; every
//! `unsafe` block of the crate is here.
//!
//! - Untrusted trees: opening a path below a directory without ever
//!   following a symlink or leaving it (`openat2` with `RESOLVE_IN_ROOT |
//!   RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`), extended attributes on a
//!   descriptor, free space, the overlay mount and the data directory's lock.
//!   Paths handed to these functions are relative names that the caller has
//!   already reduced to plain components (no `..`, no leading `/`); the
//!   resolve flags make the kernel enforce what the string check promises.
//! - Snapshots and streams: the btrfs ioctls (`linux/btrfs.h`),
//!   `FICLONERANGE` and the extended attributes of a name in a directory
//!   given as a descriptor.

#![allow(unsafe_code)]

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use std::ffi::CString;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// `BTRFS_SUPER_MAGIC` from `linux/magic.h`.
pub(crate) const BTRFS_SUPER_MAGIC: i64 = 0x9123_683e;
/// The inode number of a subvolume's root directory
/// (`BTRFS_FIRST_FREE_OBJECTID`).
pub(crate) const BTRFS_FIRST_FREE_OBJECTID: u64 = 256;
/// `BTRFS_SUBVOL_RDONLY`.
const BTRFS_SUBVOL_RDONLY: u64 = 1 << 1;

const BTRFS_IOCTL_MAGIC: u64 = 0x94;

const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (BTRFS_IOCTL_MAGIC << 8) | nr
}
const W: u64 = 1;
const R: u64 = 2;

/// `struct btrfs_ioctl_vol_args`.
#[repr(C)]
struct VolArgs {
    fd: i64,
    name: [u8; 4088],
}

/// `struct btrfs_ioctl_vol_args_v2` (the `name` arm of its last union).
#[repr(C)]
struct VolArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    unused: [u64; 4],
    name: [u8; 4040],
}

/// `struct btrfs_ioctl_send_args` (64-bit).
#[repr(C)]
struct SendArgs {
    send_fd: i64,
    clone_sources_count: u64,
    clone_sources: *const u64,
    parent_root: u64,
    flags: u64,
    version: u32,
    reserved: [u8; 28],
}

/// `struct btrfs_ioctl_timespec`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct IoctlTimespec {
    sec: u64,
    nsec: u32,
}

/// `struct btrfs_ioctl_received_subvol_args`.
#[repr(C)]
struct ReceivedSubvolArgs {
    uuid: [u8; 16],
    stransid: u64,
    rtransid: u64,
    stime: IoctlTimespec,
    rtime: IoctlTimespec,
    flags: u64,
    reserved: [u64; 16],
}

/// `struct btrfs_ioctl_get_subvol_info_args`.
#[repr(C)]
struct GetSubvolInfoArgs {
    treeid: u64,
    name: [u8; 256],
    parent_id: u64,
    dirid: u64,
    generation: u64,
    flags: u64,
    uuid: [u8; 16],
    parent_uuid: [u8; 16],
    received_uuid: [u8; 16],
    ctransid: u64,
    otransid: u64,
    stransid: u64,
    rtransid: u64,
    ctime: IoctlTimespec,
    otime: IoctlTimespec,
    stime: IoctlTimespec,
    rtime: IoctlTimespec,
    reserved: [u64; 8],
}

/// `struct btrfs_ioctl_clone_range_args` (`FICLONERANGE`).
#[repr(C)]
struct CloneRangeArgs {
    src_fd: i64,
    src_offset: u64,
    src_length: u64,
    dest_offset: u64,
}

const _: () = assert!(std::mem::size_of::<VolArgs>() == 4096);
const _: () = assert!(std::mem::size_of::<VolArgsV2>() == 4096);
const _: () = assert!(std::mem::size_of::<SendArgs>() == 72);
const _: () = assert!(std::mem::size_of::<ReceivedSubvolArgs>() == 200);
const _: () = assert!(std::mem::size_of::<GetSubvolInfoArgs>() == 504);

const IOC_CLONE_RANGE: u64 = ioc(W, 13, std::mem::size_of::<CloneRangeArgs>());
const IOC_SUBVOL_CREATE: u64 = ioc(W, 14, std::mem::size_of::<VolArgs>());
const IOC_SNAP_DESTROY: u64 = ioc(W, 15, std::mem::size_of::<VolArgs>());
const IOC_SNAP_CREATE_V2: u64 = ioc(W, 23, std::mem::size_of::<VolArgsV2>());
const IOC_SUBVOL_GETFLAGS: u64 = ioc(R, 25, 8);
const IOC_SUBVOL_SETFLAGS: u64 = ioc(W, 26, 8);
const IOC_SET_RECEIVED_SUBVOL: u64 = ioc(R | W, 37, std::mem::size_of::<ReceivedSubvolArgs>());
const IOC_SEND: u64 = ioc(W, 38, std::mem::size_of::<SendArgs>());
const IOC_GET_SUBVOL_INFO: u64 = ioc(R, 60, std::mem::size_of::<GetSubvolInfoArgs>());

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Copies `name` into a NUL-terminated fixed buffer; refuses names that do
/// not fit or hold a NUL or a `/`.
fn fill_name(dst: &mut [u8], name: &[u8]) -> io::Result<()> {
    if name.is_empty() || name.len() >= dst.len() || name.contains(&0) || name.contains(&b'/') {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    dst[..name.len()].copy_from_slice(name);
    Ok(())
}

/// `BTRFS_IOC_SUBVOL_CREATE`: a new, empty subvolume `name` in the
/// directory `dir`.
pub(crate) fn subvol_create(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let mut args = VolArgs {
        fd: 0,
        name: [0; 4088],
    };
    fill_name(&mut args.name, name)?;
    // SAFETY: `args` is a properly sized, initialised
    // btrfs_ioctl_vol_args that lives across the call.
    check(unsafe { libc::ioctl(dir.as_raw_fd(), IOC_SUBVOL_CREATE as _, &mut args) })
}

/// `BTRFS_IOC_SNAP_CREATE_V2`: a snapshot of the subvolume `source` as
/// `name` in the directory `dir`, read-only when `readonly`.
pub(crate) fn snap_create(
    dir: BorrowedFd<'_>,
    name: &[u8],
    source: BorrowedFd<'_>,
    readonly: bool,
) -> io::Result<()> {
    let mut args = VolArgsV2 {
        fd: source.as_raw_fd() as i64,
        transid: 0,
        flags: if readonly { BTRFS_SUBVOL_RDONLY } else { 0 },
        unused: [0; 4],
        name: [0; 4040],
    };
    fill_name(&mut args.name, name)?;
    // SAFETY: `args` is a properly sized, initialised
    // btrfs_ioctl_vol_args_v2 that lives across the call; `fd` is open.
    check(unsafe { libc::ioctl(dir.as_raw_fd(), IOC_SNAP_CREATE_V2 as _, &mut args) })
}

/// `BTRFS_IOC_SNAP_DESTROY`: deletes the subvolume `name` of the
/// directory `dir`, whatever it holds (but not nested subvolumes).
pub(crate) fn snap_destroy(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let mut args = VolArgs {
        fd: 0,
        name: [0; 4088],
    };
    fill_name(&mut args.name, name)?;
    // SAFETY: as in `subvol_create`.
    check(unsafe { libc::ioctl(dir.as_raw_fd(), IOC_SNAP_DESTROY as _, &mut args) })
}

/// Whether the subvolume of `fd` is read-only.
pub(crate) fn subvol_readonly(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut flags: u64 = 0;
    // SAFETY: the ioctl writes one u64 to `flags`.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), IOC_SUBVOL_GETFLAGS as _, &mut flags) })?;
    Ok(flags & BTRFS_SUBVOL_RDONLY != 0)
}

/// Makes the subvolume of `fd` read-only or writable.
pub(crate) fn subvol_set_readonly(fd: BorrowedFd<'_>, readonly: bool) -> io::Result<()> {
    let mut flags: u64 = 0;
    // SAFETY: the ioctl writes one u64 to `flags`.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), IOC_SUBVOL_GETFLAGS as _, &mut flags) })?;
    if readonly {
        flags |= BTRFS_SUBVOL_RDONLY;
    } else {
        flags &= !BTRFS_SUBVOL_RDONLY;
    }
    // SAFETY: the ioctl reads one u64 from `flags`.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), IOC_SUBVOL_SETFLAGS as _, &flags) })
}

/// `BTRFS_IOC_SET_RECEIVED_SUBVOL`: records that the subvolume of `fd` is
/// the copy of the sent subvolume `uuid` at transaction `stransid`.
pub(crate) fn set_received(fd: BorrowedFd<'_>, uuid: [u8; 16], stransid: u64) -> io::Result<()> {
    let mut args = ReceivedSubvolArgs {
        uuid,
        stransid,
        rtransid: 0,
        stime: IoctlTimespec::default(),
        rtime: IoctlTimespec::default(),
        flags: 0,
        reserved: [0; 16],
    };
    // SAFETY: `args` is a properly sized, initialised struct the kernel
    // reads and writes during the call.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), IOC_SET_RECEIVED_SUBVOL as _, &mut args) })
}

/// What `BTRFS_IOC_GET_SUBVOL_INFO` tells of a subvolume.
#[derive(Clone, Debug)]
pub(crate) struct SubvolInfo {
    pub treeid: u64,
    pub uuid: [u8; 16],
    pub received_uuid: [u8; 16],
    pub otime: (u64, u32),
}

/// `BTRFS_IOC_GET_SUBVOL_INFO` on a subvolume's root directory.
pub(crate) fn subvol_info(fd: BorrowedFd<'_>) -> io::Result<SubvolInfo> {
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut args: GetSubvolInfoArgs = unsafe { std::mem::zeroed() };
    // SAFETY: `args` is a properly sized struct the kernel fills.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), IOC_GET_SUBVOL_INFO as _, &mut args) })?;
    Ok(SubvolInfo {
        treeid: args.treeid,
        uuid: args.uuid,
        received_uuid: args.received_uuid,
        otime: (args.otime.sec, args.otime.nsec),
    })
}

/// `BTRFS_IOC_SEND`: writes the send stream (version 1) of the read-only
/// subvolume `subvol` to `out`; incremental from the subvolume whose tree
/// id is `parent`, with `clones` as extra clone sources. Returns when the
/// whole stream is written.
pub(crate) fn send(
    subvol: BorrowedFd<'_>,
    out: BorrowedFd<'_>,
    parent: Option<u64>,
    clones: &[u64],
) -> io::Result<()> {
    let mut args = SendArgs {
        send_fd: out.as_raw_fd() as i64,
        clone_sources_count: clones.len() as u64,
        clone_sources: if clones.is_empty() {
            std::ptr::null()
        } else {
            clones.as_ptr()
        },
        parent_root: parent.unwrap_or(0),
        flags: 0,
        version: 0,
        reserved: [0; 28],
    };
    // SAFETY: `args` is a properly sized struct; `clone_sources` points to
    // `clone_sources_count` u64 values that outlive the call.
    check(unsafe { libc::ioctl(subvol.as_raw_fd(), IOC_SEND as _, &mut args) })
}

/// `FICLONERANGE`: shares `len` bytes of `src` at `src_offset` into `dst`
/// at `dst_offset` (0: to the end of `src`).
pub(crate) fn clone_range(
    dst: BorrowedFd<'_>,
    src: BorrowedFd<'_>,
    src_offset: u64,
    len: u64,
    dst_offset: u64,
) -> io::Result<()> {
    let mut args = CloneRangeArgs {
        src_fd: src.as_raw_fd() as i64,
        src_offset,
        src_length: len,
        dest_offset: dst_offset,
    };
    // SAFETY: `args` is a properly sized, initialised struct.
    check(unsafe { libc::ioctl(dst.as_raw_fd(), IOC_CLONE_RANGE as _, &mut args) })
}

/// The path that names `name` inside the directory `dir` without
/// resolving anything but `dir` itself: `/proc/self/fd/N/name`, used with
/// the `l*xattr` calls that do not follow its last component; for an
/// empty name, `/proc/self/fd/N`, used with the calls that follow it (to
/// the directory). The extended-attribute calls take paths only; this
/// keeps them from following a symlink planted on the way.
fn at_path(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<CString> {
    let mut p = format!("/proc/self/fd/{}", dir.as_raw_fd()).into_bytes();
    if !name.is_empty() {
        p.push(b'/');
        p.extend_from_slice(name);
    }
    CString::new(p).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// The extended attributes of `name` in `dir` (not following a final
/// symlink), sorted by name.
pub(crate) fn xattrs_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let path = at_path(dir, name)?;
    let mut list = vec![0u8; 1024];
    let n = loop {
        let r = if name.is_empty() {
            rustix::fs::listxattr(path.as_c_str(), &mut list[..])
        } else {
            rustix::fs::llistxattr(path.as_c_str(), &mut list[..])
        };
        match r {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) if list.len() < (1 << 20) => {
                list.resize(list.len() * 4, 0)
            }
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for key in list[..n].split(|&b| b == 0).filter(|k| !k.is_empty()) {
        let ckey = CString::new(key).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let mut val = vec![0u8; 256];
        let len = loop {
            let r = if name.is_empty() {
                rustix::fs::getxattr(path.as_c_str(), ckey.as_c_str(), &mut val[..])
            } else {
                rustix::fs::lgetxattr(path.as_c_str(), ckey.as_c_str(), &mut val[..])
            };
            match r {
                Ok(n) => break Some(n),
                Err(rustix::io::Errno::RANGE) if val.len() < (1 << 20) => {
                    val.resize(val.len() * 4, 0)
                }
                // Removed between the list and the read.
                Err(rustix::io::Errno::NODATA) => break None,
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(len) = len {
            val.truncate(len);
            out.push((key.to_vec(), val));
        }
    }
    out.sort();
    Ok(out)
}

/// Sets the extended attribute `key` of `name` in `dir` (not following a
/// final symlink).
pub(crate) fn set_xattr_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
    key: &[u8],
    value: &[u8],
) -> io::Result<()> {
    let path = at_path(dir, name)?;
    let key = CString::new(key).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let flags = rustix::fs::XattrFlags::empty();
    if name.is_empty() {
        rustix::fs::setxattr(path.as_c_str(), key.as_c_str(), value, flags)?;
    } else {
        rustix::fs::lsetxattr(path.as_c_str(), key.as_c_str(), value, flags)?;
    }
    Ok(())
}

/// Removes the extended attribute `key` of `name` in `dir`.
pub(crate) fn remove_xattr_at(dir: BorrowedFd<'_>, name: &[u8], key: &[u8]) -> io::Result<()> {
    let path = at_path(dir, name)?;
    let key = CString::new(key).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    if name.is_empty() {
        rustix::fs::removexattr(path.as_c_str(), key.as_c_str())?;
    } else {
        rustix::fs::lremovexattr(path.as_c_str(), key.as_c_str())?;
    }
    Ok(())
}

/// The filesystem magic of the filesystem holding `fd`.
pub(crate) fn fs_magic(fd: impl AsFd) -> io::Result<i64> {
    Ok(rustix::fs::fstatfs(fd)?.f_type as i64)
}

fn resolve() -> ResolveFlag {
    ResolveFlag::RESOLVE_IN_ROOT
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

/// Opens `rel` below `dir` as a directory that `*at` calls can use. Any
/// symlink on the way (the last component included) fails with `ELOOP`.
pub(crate) fn open_dir_beneath(dir: BorrowedFd<'_>, rel: &Path) -> nix::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    openat2(
        dir,
        rel,
        OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(resolve()),
    )
}

/// Opens `rel` below `dir` for reading, following symlinks as if `dir`
/// were `/` (they cannot lead out of it; magic links are refused). For
/// directories a user hands over, such as an OCI image layout.
pub(crate) fn open_file_in_root(dir: BorrowedFd<'_>, rel: &Path) -> nix::Result<File> {
    openat2(
        dir,
        rel,
        OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS),
    )
    .map(File::from)
}

/// Creates the regular file `name` in `dir` (which must not exist), for
/// writing, with mode 0600 until the caller sets the real one.
pub(crate) fn create_file(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<File> {
    openat2(
        dir,
        name,
        OpenHow::new()
            .flags(
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
            )
            .mode(Mode::from_bits_truncate(0o600))
            .resolve(resolve()),
    )
    .map(File::from)
}

/// Opens a directory path the process itself owns (the data directory).
pub(crate) fn open_dir(path: &Path) -> nix::Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Bytes available to an unprivileged writer on the file system of `fd`.
pub(crate) fn free_bytes(fd: BorrowedFd<'_>) -> Option<u64> {
    let st = nix::sys::statvfs::fstatvfs(fd).ok()?;
    Some((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
}

/// Sets an extended attribute on an open file or directory.
pub(crate) fn set_xattr(fd: &impl AsFd, name: &str, value: &[u8]) -> std::io::Result<()> {
    use xattr::FileExt;
    // FileExt is implemented for File: a duplicate of the descriptor is one.
    File::from(fd.as_fd().try_clone_to_owned()?).set_xattr(name, value)
}

/// The path of an open descriptor, for calls that only take paths.
pub(crate) fn fd_path(fd: &impl AsRawFd) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Mounts a read-only overlay of `lowerdir` (overlayfs's `a:b:c`, top
/// first) on `target`.
pub(crate) fn mount_overlay_readonly(lowerdir: &str, target: &Path) -> nix::Result<()> {
    use nix::mount::{mount, MsFlags};
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID,
        Some(format!("lowerdir={lowerdir}").as_str()),
    )
}

/// Binds `source` on `target`, read-only.
pub(crate) fn bind_readonly(source: &Path, target: &Path) -> nix::Result<()> {
    use nix::mount::{mount, MsFlags};
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )?;
    let ro = MsFlags::MS_BIND
        | MsFlags::MS_REMOUNT
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOSUID;
    mount(None::<&str>, target, None::<&str>, ro, None::<&str>).inspect_err(|_| {
        let _ = unmount(target);
    })
}

/// Detaches the mount on `target`.
pub(crate) fn unmount(target: &Path) -> nix::Result<()> {
    nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH)
}

/// Whether process `pid` exists.
pub(crate) fn pid_alive(pid: i32) -> bool {
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(Errno::ESRCH)
    )
}

/// An exclusive `flock` on a file, held until dropped.
pub(crate) struct Lock {
    _flock: nix::fcntl::Flock<File>,
}

/// Takes the exclusive lock on `path` (created if missing); blocks.
pub(crate) fn lock(path: &Path) -> std::io::Result<Lock> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    let mut file = file;
    loop {
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive) {
            Ok(flock) => return Ok(Lock { _flock: flock }),
            Err((f, Errno::EINTR)) => file = f,
            Err((_, e)) => return Err(e.into()),
        }
    }
}
