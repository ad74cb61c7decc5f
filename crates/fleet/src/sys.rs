//! The system calls the supervisor needs that `nix` does not wrap:
//! `pidfd_open(2)`. Each is a thin typed wrapper; the rest of the crate
//! stays free of `unsafe`.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

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
