//! The one system call that installs a compiled filter:
//! `seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog)`.
//!
//! It is made directly rather than through libseccomp so that loading is a
//! single async-signal-safe call in the container's init, with every flag
//! of the runtime spec available whatever the libseccomp version
//! (`SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` needs libseccomp 2.6).
#![allow(unsafe_code)]

use std::os::fd::{FromRawFd, OwnedFd};

use nix::errno::Errno;

/// What a successful `seccomp(2)` call produced.
pub(super) enum Outcome {
    /// The filter is installed.
    Loaded,
    /// The filter is installed and this is its user-notification fd.
    Listener(OwnedFd),
    /// With `SECCOMP_FILTER_FLAG_TSYNC`: this thread could not be
    /// synchronised, and the filter was not installed.
    TsyncFailed(libc::pid_t),
}

/// Installs `program` on the calling thread with the `SECCOMP_FILTER_FLAG_*`
/// bits of `flags`.
///
/// `program` has at most `BPF_MAXINSNS` (4096) instructions: the caller
/// checked it.
pub(super) fn set_mode_filter(
    program: &[libc::sock_filter],
    flags: libc::c_ulong,
) -> Result<Outcome, Errno> {
    let len = u16::try_from(program.len()).map_err(|_| Errno::EINVAL)?;
    let prog = libc::sock_fprog {
        len,
        // The kernel only reads the program (`copy_from_user`); the
        // pointer is `*mut` in the C declaration only.
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points to `len` initialised instructions borrowed from
    // `program`, which outlives the call; the kernel copies the program and
    // keeps no pointer to it. The call takes no other pointers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
            flags,
            &prog as *const libc::sock_fprog,
        )
    };
    if ret < 0 {
        return Err(Errno::last());
    }
    if flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 {
        let fd = libc::c_int::try_from(ret).map_err(|_| Errno::EBADF)?;
        // SAFETY: with SECCOMP_FILTER_FLAG_NEW_LISTENER a non-negative return
        // value is a new file descriptor (close-on-exec) that nothing else
        // owns: the kernel has just allocated it for this call.
        return Ok(Outcome::Listener(unsafe { OwnedFd::from_raw_fd(fd) }));
    }
    if ret > 0 {
        // Only SECCOMP_FILTER_FLAG_TSYNC returns a positive value without a
        // listener: the id of the thread that could not be synchronised.
        return Ok(Outcome::TsyncFailed(ret as libc::pid_t));
    }
    Ok(Outcome::Loaded)
}
