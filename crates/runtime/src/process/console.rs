//! The container's terminal (`process.terminal`).
//!
//! The pty is made inside the container, from its own devpts
//! (`/dev/ptmx`), and its peer is opened with `TIOCGPTPEER` on the master,
//! so no path under `/dev/pts` is looked up (a container cannot redirect
//! the runtime to another node, the CVE-2025-52565 class). The slave
//! becomes the process's stdio and controlling terminal; the master goes
//! back to the runtime, which passes it to `--console-socket`.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use crate::error::{InitError, InitStage};
use crate::sys;

/// A fresh pty: the master and its slave.
pub(crate) struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

/// Opens a pty from the devpts instance that `/dev/ptmx` of the current
/// root leads to.
pub(crate) fn open_pty() -> Result<Pty, InitError> {
    let err = |what: &str, e| InitError::new(InitStage::Console, what, e);
    let master = open(
        Path::new("/dev/ptmx"),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err("/dev/ptmx", e))?;
    sys::unlock_pty(master.as_fd()).map_err(|e| err("unlockpt", e))?;
    let slave = sys::open_pty_peer(master.as_fd()).map_err(|e| err("TIOCGPTPEER", e))?;
    Ok(Pty { master, slave })
}

/// Makes `slave` the stdio and controlling terminal of the calling
/// process (which must lead its own session).
pub(crate) fn attach(slave: &OwnedFd) -> Result<(), InitError> {
    let err = |what: &str, e| InitError::new(InitStage::Console, what, e);
    sys::set_controlling_terminal(slave.as_fd()).map_err(|e| err("TIOCSCTTY", e))?;
    nix::unistd::dup2_stdin(slave).map_err(|e| err("stdin", e))?;
    nix::unistd::dup2_stdout(slave).map_err(|e| err("stdout", e))?;
    nix::unistd::dup2_stderr(slave).map_err(|e| err("stderr", e))?;
    Ok(())
}

/// Sends `master` to the `--console-socket` at `path`, as runc does: one
/// message whose data names the terminal and whose `SCM_RIGHTS` carries it.
pub(crate) fn send_to_socket(path: &Path, master: &OwnedFd) -> Result<(), crate::Error> {
    use nix::sys::socket::{
        connect, sendmsg, socket, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
        UnixAddr,
    };
    let err = |e| crate::Error::sys(format!("--console-socket {}", path.display()), e);
    let sock = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(err)?;
    let addr = UnixAddr::new(path).map_err(err)?;
    connect(sock.as_raw_fd(), &addr).map_err(err)?;
    let name = b"/dev/ptmx";
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[std::io::IoSlice::new(name)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(err)?;
    Ok(())
}
