//! The system calls that nix does not wrap, as small typed functions that
//! take and return `OwnedFd`s: `open_tree(2)`, `mount_setattr(2)` and
//! `move_mount(2)` for the idmapped lower layer, and `pidfd_open(2)` for
//! the supervisor. The crate's `unsafe` blocks live here.

use std::ffi::CString;
use std::io;
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

/// A pidfd for `pid`: readable once the process has ended. It refers to
/// that process only, so a recycled pid can never be mistaken for it.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags (none: its fds are always
    // close-on-exec) and returns a new fd or -1;
    // no memory is passed.
    #[allow(unsafe_code)]
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    #[allow(unsafe_code)]
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The exit code the kernel keeps for a process that has ended but was not
/// yet reaped by its parent (`/proc/PID/stat` field 52), as a shell shows
/// it: the code, or 128 + the signal.
pub(crate) fn zombie_exit_code(pid: i32) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the command: field 3 is the state; field 52 is index 49 here.
    if fields.first() != Some(&"Z") {
        return None;
    }
    let status: i32 = fields.get(49)?.parse().ok()?;
    Some(wait_status_code(status))
}

/// A raw wait status as a shell shows it.
pub(crate) fn wait_status_code(status: i32) -> i32 {
    if status & 0x7f == 0 {
        (status >> 8) & 0xff
    } else {
        128 + (status & 0x7f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pidfd_becomes_readable_when_its_process_ends() {
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "exit 3"])
            .spawn()
            .unwrap();
        let fd = pidfd_open(child.id() as i32).unwrap();
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&fd),
            nix::poll::PollFlags::POLLIN,
        )];
        let n = nix::poll::poll(&mut fds, 5000u16).unwrap();
        assert_eq!(n, 1);
        // Ended but not reaped: the kernel still has its exit code.
        assert_eq!(zombie_exit_code(child.id() as i32), Some(3));
        assert_eq!(child.wait().unwrap().code(), Some(3));
        assert!(pidfd_open(i32::MAX).is_err());
        assert_eq!(wait_status_code(9), 137);
        assert_eq!(wait_status_code(2 << 8), 2);
    }
}
