//! The namespaces plinth makes for a container before the runtime runs
//! it, each kept as a bind mount of its nsfs file under the container's
//! directory, which the OCI config joins by path:
//!
//! - `netns`: a network namespace of its own (`--network none` and
//!   `bridge`), with its loopback interface up;
//! - `userns`: a user namespace mapping the container's id range to
//!   0..size (the default, `--userns private`). The network namespace is
//!   then made inside it, so that it is the container's: sysfs can be
//!   mounted there, and the idmapped lower layer uses the same namespace.
//!
//! Both are made by one forked child (the fleet commands are
//! single-threaded): it unshares `CLONE_NEWUSER` and/or `CLONE_NEWNET`,
//! sets `lo` up with `SIOCSIFFLAGS`; the parent writes the id maps and
//! bind-mounts `/proc/CHILD/ns/{user,net}`.

use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, read, write, ForkResult};

use crate::userns::IdRange;
use crate::{io, FleetError};

/// Makes a network namespace at `net` and/or a user namespace with the
/// map of `user` at its path (the network namespace inside it). An empty
/// file is created at each target; on failure none is left.
pub(crate) fn create(net: Option<&Path>, user: Option<(&Path, IdRange)>) -> Result<(), FleetError> {
    let mut flags = CloneFlags::empty();
    let mut targets = Vec::new();
    if let Some(p) = net {
        flags |= CloneFlags::CLONE_NEWNET;
        targets.push(("net", p));
    }
    if let Some((p, _)) = user {
        flags |= CloneFlags::CLONE_NEWUSER;
        targets.push(("user", p));
    }
    if targets.is_empty() {
        return Ok(());
    }
    let made = create_inner(flags, &targets, user.map(|(_, r)| r));
    if made.is_err() {
        for (_, t) in &targets {
            remove(t);
        }
    }
    made
}

fn create_inner(
    flags: CloneFlags,
    targets: &[(&str, &Path)],
    ids: Option<IdRange>,
) -> Result<(), FleetError> {
    for (_, t) in targets {
        std::fs::write(t, b"").map_err(io(t.display().to_string()))?;
    }
    let (ready_r, ready_w) = pipe().map_err(|e| io("pipe")(e.into()))?;
    let (done_r, done_w) = pipe().map_err(|e| io("pipe")(e.into()))?;
    // SAFETY: the fleet commands run single-threaded; the child only
    // makes system calls and exits.
    #[allow(unsafe_code)]
    let child = match unsafe { fork() }.map_err(|e| io("fork")(e.into()))? {
        ForkResult::Child => {
            drop(ready_r);
            drop(done_w);
            let ok = unshare(flags).is_ok()
                && (!flags.contains(CloneFlags::CLONE_NEWNET) || loopback_up().is_ok());
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
    let mut result = if got == 1 && b[0] == 1 {
        Ok(())
    } else {
        Err(FleetError::Runtime(format!(
            "{}: cannot make the container's namespaces ({flags:?})",
            targets[0].1.display()
        )))
    };
    if let (Ok(()), Some(r)) = (&result, ids) {
        let map = format!("0 {} {}\n", r.host_id, r.size);
        for file in ["uid_map", "gid_map"] {
            let path = format!("/proc/{child}/{file}");
            if let Err(e) = std::fs::write(&path, &map) {
                result = Err(io(format!("write {path}"))(e));
                break;
            }
        }
    }
    for (kind, target) in targets {
        if result.is_err() {
            break;
        }
        let source = format!("/proc/{child}/ns/{kind}");
        result = mount(
            Some(source.as_str()),
            *target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| io(format!("bind {source} on {}", target.display()))(e.into()));
    }
    drop(done_w);
    let _ = waitpid(child, None).map(|s| matches!(s, WaitStatus::Exited(_, 0)));
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
