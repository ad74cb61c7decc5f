//! The mount system calls that nix does not wrap: `open_tree(2)`,
//! `mount_setattr(2)` and `move_mount(2)`, as small typed functions that
//! take and return `OwnedFd`s; the only `unsafe` blocks of the idmapped
//! lower layer live here.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

fn cpath(p: &Path) -> nix::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

/// A detached copy of the mount at `path` (the mount of that directory
/// only, not the mounts below it): `open_tree(OPEN_TREE_CLONE)`.
pub(crate) fn clone_mount(path: &Path) -> nix::Result<OwnedFd> {
    let c = cpath(path)?;
    // SAFETY: `c` is NUL-terminated and outlives the call; the flags ask
    // for a new file descriptor, which is owned from here on.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    let fd = Errno::result(fd)?;
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Makes the detached mount `mnt` idmapped by the user namespace `userns`
/// (`mount_setattr(MOUNT_ATTR_IDMAP)`): files of host id N show as owned
/// by the id N maps to in that namespace.
pub(crate) fn idmap_mount(mnt: BorrowedFd<'_>, userns: BorrowedFd<'_>) -> nix::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: the path is an empty NUL-terminated string, `attr` is a
    // valid mount_attr of the size given; both outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(r).map(drop)
}

/// Attaches the detached mount `mnt` at `target`.
pub(crate) fn attach_mount(mnt: BorrowedFd<'_>, target: &Path) -> nix::Result<()> {
    let c = cpath(target)?;
    // SAFETY: both paths are NUL-terminated and outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    Errno::result(r).map(drop)
}
