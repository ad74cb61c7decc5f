//! Handing a seccomp user-notification fd to the agent at
//! `linux.seccomp.listenerPath`.
//!
//! The runtime spec fixes the protocol: connect a `SOCK_STREAM` unix
//! socket to the path and send the *container process state* as JSON, with
//! the notification fd attached by `SCM_RIGHTS` to the same message. The
//! state names the fd it carries: `fds: ["seccompFd"]`.

use std::io::{IoSlice, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::errno::Errno;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
use oci_spec::runtime::{ContainerProcessState, State, SECCOMP_FD_NAME};

use super::SeccompError;

/// Sends `seccomp_fd` to the seccomp agent listening at `listener_path`,
/// with the container process state: `pid` (the container process as the
/// runtime sees it), `metadata` (`linux.seccomp.listenerMetadata`) and
/// `state` (the container's state, as `plinth state` reports it).
pub fn send_to_listener(
    listener_path: &Path,
    seccomp_fd: BorrowedFd<'_>,
    pid: i32,
    metadata: Option<&str>,
    state: &State,
) -> Result<(), SeccompError> {
    let json = process_state_json(pid, metadata, state)?;
    let mut stream =
        UnixStream::connect(listener_path).map_err(|source| SeccompError::ListenerConnect {
            path: listener_path.to_owned(),
            source,
        })?;
    let send_error = |source: std::io::Error| SeccompError::ListenerSend {
        path: listener_path.to_owned(),
        source,
    };
    let fds = [seccomp_fd.as_raw_fd()];
    let sent = loop {
        match sendmsg::<UnixAddr>(
            stream.as_raw_fd(),
            &[IoSlice::new(&json)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Err(Errno::EINTR) => continue,
            result => break result.map_err(|errno| send_error(errno.into()))?,
        }
    };
    // A stream socket may take part of a long message; the fd travelled
    // with the first byte, the rest follows as plain data.
    stream.write_all(&json[sent..]).map_err(send_error)?;
    Ok(())
}

/// The container process state of the runtime spec, as JSON.
pub(super) fn process_state_json(
    pid: i32,
    metadata: Option<&str>,
    state: &State,
) -> Result<Vec<u8>, SeccompError> {
    let mut process_state = ContainerProcessState::default();
    process_state
        .set_version(crate::OCI_VERSION.to_owned())
        .set_fds(vec![SECCOMP_FD_NAME.to_owned()])
        .set_pid(pid)
        .set_metadata(metadata.map(str::to_owned))
        .set_state(state.clone());
    serde_json::to_vec(&process_state).map_err(|source| SeccompError::ProcessState { source })
}
