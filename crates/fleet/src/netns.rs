//! `--network none`: a network namespace of the container's own, with its
//! loopback interface up, kept as a bind mount of its nsfs file under the
//! container's directory, which the OCI config joins by path.
//!
//! The namespace is made by a forked child (the fleet commands are
//! single-threaded): it unshares `CLONE_NEWNET`, sets `lo` up with
//! `SIOCSIFFLAGS`, and the parent bind-mounts `/proc/CHILD/ns/net`.

use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, read, write, ForkResult};

use crate::{io, FleetError};

/// Makes the namespace and mounts it at `target` (an empty file is created).
pub(crate) fn create(target: &Path) -> Result<(), FleetError> {
    std::fs::write(target, b"").map_err(io(target.display().to_string()))?;
    let (ready_r, ready_w) = pipe().map_err(|e| io("pipe")(e.into()))?;
    let (done_r, done_w) = pipe().map_err(|e| io("pipe")(e.into()))?;
    // SAFETY: the fleet commands run single-threaded; the child only
    // makes system calls and exits.
    #[allow(unsafe_code)]
    let child = match unsafe { fork() }.map_err(|e| io("fork")(e.into()))? {
        ForkResult::Child => {
            drop(ready_r);
            drop(done_w);
            let ok = unshare(CloneFlags::CLONE_NEWNET).is_ok() && loopback_up().is_ok();
            let _ = write(&ready_w, &[ok as u8]);
            let mut b = [0u8; 1];
            let _ = read(&done_r, &mut b);
            // SAFETY: _exit in a forked child, nothing to unwind.
            #[allow(unsafe_code)]
            unsafe {
                libc::_exit(if ok { 0 } else { 1 })
            }
        }
        ForkResult::Parent { child } => child,
    };
    drop(ready_w);
    drop(done_r);
    let mut b = [0u8; 1];
    let got = read(&ready_r, &mut b).unwrap_or(0);
    let result = if got == 1 && b[0] == 1 {
        let source = format!("/proc/{child}/ns/net");
        mount(
            Some(source.as_str()),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| io(format!("bind {source} on {}", target.display()))(e.into()))
    } else {
        Err(FleetError::Runtime(format!(
            "{}: cannot make a network namespace with loopback up",
            target.display()
        )))
    };
    drop(done_w);
    let _ = waitpid(child, None).map(|s| matches!(s, WaitStatus::Exited(_, 0)));
    if result.is_err() {
        let _ = std::fs::remove_file(target);
    }
    result
}

/// Unmounts and removes the namespace file (the namespace ends with its
/// last process).
pub(crate) fn remove(target: &Path) {
    let _ = umount2(target, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(target);
}

/// `lo` up, through the interface flags ioctl.
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: a plain socket, closed below.
    #[allow(unsafe_code)]
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    #[allow(unsafe_code)]
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: fd is a socket; req is a valid ifreq for both requests.
    #[allow(unsafe_code)]
    let rc = unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) < 0 {
            -1
        } else {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            libc::ioctl(fd, libc::SIOCSIFFLAGS, &req)
        }
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: closing the socket made above.
    #[allow(unsafe_code)]
    unsafe {
        libc::close(fd)
    };
    if rc < 0 {
        Err(err)
    } else {
        Ok(())
    }
}
