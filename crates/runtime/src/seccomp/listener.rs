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

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd, AsRawFd};

    use oci_spec::runtime::State;

    use super::*;
    use crate::seccomp::testing::*;

    #[test]
    fn process_state_json_has_the_runtime_spec_fields() {
        let state: State = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.2.0", "id": "demo", "status": "creating", "pid": 42,
            "bundle": "/b"
        }))
        .unwrap();
        let json = listener_json(42, Some("meta"), &state);
        assert_eq!(json["ociVersion"], "1.2.0");
        assert_eq!(json["fds"], serde_json::json!(["seccompFd"]));
        assert_eq!(json["pid"], 42);
        assert_eq!(json["metadata"], "meta");
        assert_eq!(json["state"]["id"], "demo");
        assert_eq!(json["state"]["status"], "creating");
        let json = listener_json(42, None, &state);
        assert!(json.get("metadata").is_none());
    }

    fn listener_json(pid: i32, metadata: Option<&str>, state: &State) -> serde_json::Value {
        let bytes = process_state_json(pid, metadata, state).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn kernel_notify_fd_reaches_the_agent_and_works() {
        if !kernel_has_seccomp() {
            return;
        }
        in_child(
            "seccomp::listener::tests::kernel_notify_fd_reaches_the_agent_and_works",
            || {
                let dir = tempfile::tempdir().unwrap();
                let socket = dir.path().join("agent.sock");
                let agent = std::os::unix::net::UnixListener::bind(&socket).unwrap();
                let filter = compile(serde_json::json!({
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "listenerPath": socket,
                    "listenerMetadata": "agent-data",
                    "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
                    "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]
                }));
                assert!(filter.needs_listener());
                let path = filter.listener_path().unwrap().to_owned();
                let metadata = filter.listener_metadata().map(str::to_owned);
                set_no_new_privs();
                let fd = filter.load().unwrap().expect("a notification fd");

                let state: State = serde_json::from_value(serde_json::json!({
                    "ociVersion": "1.2.0", "id": "notify-test", "status": "creating",
                    "pid": std::process::id(), "bundle": "/bundle"
                }))
                .unwrap();
                let pid = std::process::id() as i32;
                send_to_listener(&path, fd.as_fd(), pid, metadata.as_deref(), &state).unwrap();
                drop(fd);

                // The agent's side: accept, receive the JSON and the fd.
                let (conn, _) = agent.accept().unwrap();
                let mut buf = vec![0_u8; 64 * 1024];
                let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
                let mut iov = [std::io::IoSliceMut::new(&mut buf)];
                let msg = nix::sys::socket::recvmsg::<()>(
                    conn.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    nix::sys::socket::MsgFlags::empty(),
                )
                .unwrap();
                let fds: Vec<_> = msg
                    .cmsgs()
                    .unwrap()
                    .flat_map(|c| match c {
                        nix::sys::socket::ControlMessageOwned::ScmRights(fds) => fds,
                        _ => vec![],
                    })
                    .collect();
                let len = msg.bytes;
                assert_eq!(fds.len(), 1, "one fd attached");
                let json: serde_json::Value = serde_json::from_slice(&buf[..len]).unwrap();
                assert_eq!(json["ociVersion"], "1.2.0");
                assert_eq!(json["fds"], serde_json::json!(["seccompFd"]));
                assert_eq!(json["pid"], pid);
                assert_eq!(json["metadata"], "agent-data");
                assert_eq!(json["state"]["id"], "notify-test");

                // The received fd works: a thread's getppid waits for the agent,
                // which answers 4242.
                let notify_fd = fds[0];
                let caller = std::thread::spawn(|| raw_syscall(libc::SYS_getppid, [0, 0, 0]));
                let req = libseccomp::ScmpNotifReq::receive(notify_fd).unwrap();
                assert_eq!(
                    req.data.syscall,
                    libseccomp::ScmpSyscall::from_name("getppid").unwrap()
                );
                libseccomp::ScmpNotifResp::new_val(
                    req.id,
                    4242,
                    libseccomp::ScmpNotifRespFlags::empty(),
                )
                .respond(notify_fd)
                .unwrap();
                assert_eq!(caller.join().unwrap(), Ok(4242));
            },
        );
    }
}
