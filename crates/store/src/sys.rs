//! The system calls the store makes on untrusted trees, as small safe
//! wrappers over nix: opening a path below a directory without ever
//! following a symlink or leaving it (`openat2` with `RESOLVE_IN_ROOT |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`), extended attributes on
//! a descriptor, free space, the overlay mount and the data directory's
//! lock.
//!
//! Paths handed to these functions are relative names that the caller has
//! already reduced to plain components (no `..`, no leading `/`); the
//! resolve flags make the kernel enforce what the string check promises.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

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
