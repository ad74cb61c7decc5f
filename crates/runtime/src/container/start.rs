//! `start`: lets a created container's init exec the user's program.
//!
//! The init blocks opening `exec.fifo` for writing; `start` opens it for
//! reading, reads the init's byte, waits for the end-of-file that the
//! init's exec of the user's program causes, removes the fifo (so the
//! status becomes `running`) and runs the poststart hooks.

use std::io::Read;
use std::os::fd::AsFd;
use std::time::Duration;

use nix::fcntl::{open, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::stat::Mode;

use crate::error::Error;
use crate::hooks;
use crate::state::{ContainerState, RuntimeRoot, Status, EXEC_FIFO};

/// `plinth start`.
pub fn start(root: &RuntimeRoot, id: &str) -> Result<(), Error> {
    let mut st = ContainerState::load(root, id)?;
    if st.status != Status::Created {
        return Err(Error::WrongStatus {
            id: id.into(),
            status: st.status.to_string(),
            operation: "start (it is not created)",
        });
    }
    let dir = root.container_dir(id)?;
    let fifo_path = dir.join(EXEC_FIFO);
    // Non-blocking, so that a dead init cannot hang `start`.
    let fd = open(
        &fifo_path,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open {}", fifo_path.display()), e))?;
    let mut file = std::fs::File::from(fd);
    let mut byte = [0u8; 1];
    loop {
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => {}
            Ok(_) => match file.read(&mut byte) {
                Ok(1) => break,
                Ok(_) => std::thread::sleep(Duration::from_millis(1)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(Error::io(&fifo_path, e)),
            },
            Err(e) => return Err(Error::sys("poll exec.fifo", e)),
        }
        if !st.init_alive() {
            return Err(Error::WrongStatus {
                id: id.into(),
                status: "stopped".into(),
                operation: "start (its init exited)",
            });
        }
    }
    // The init keeps its end open (close-on-exec) through the
    // startContainer hooks until it executes the user's program:
    // end-of-file means it did (or it died).
    loop {
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => {}
            Ok(_) => match file.read(&mut byte) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(Error::io(&fifo_path, e)),
            },
            Err(e) => return Err(Error::sys("poll exec.fifo", e)),
        }
        if !st.init_alive() {
            break;
        }
    }
    let _ = std::fs::remove_file(&fifo_path);
    st.status = Status::Running;
    if let Some(h) = st.hooks.as_ref().and_then(|h| h.poststart().as_ref()) {
        // The spec: a failing poststart hook is logged, not fatal.
        if let Err(e) = hooks::run(hooks::Kind::Poststart, h, &st.oci_state()) {
            tracing::warn!("{e}");
        }
    }
    Ok(())
}
