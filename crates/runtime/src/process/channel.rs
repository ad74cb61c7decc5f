//! The typed channel between the runtime and the container's init.
//!
//! A `SOCK_SEQPACKET` socketpair: each message is one packet holding a
//! small JSON-encoded [`Message`], and may carry one file descriptor
//! (the console's pty master, a seccomp listener) by `SCM_RIGHTS`.
//! Both ends are close-on-exec: when the init execs the user's program,
//! the runtime reads end-of-file, which is how it learns that exec worked.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use serde::{Deserialize, Serialize};

use crate::error::InitError;

/// What the two sides say to each other.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Message {
    /// init → runtime: write my uid/gid maps (I am in a new user namespace).
    NeedIdMaps,
    /// runtime → init: go on.
    Continue,
    /// init → runtime: the pid of the container's process (in the
    /// runtime's pid namespace).
    Pid(i32),
    /// init → runtime: the environment is ready for the prestart and
    /// createRuntime hooks (before pivot_root).
    RunRuntimeHooks,
    /// init → runtime: the pty master follows as an attached fd.
    ConsoleMaster,
    /// init → runtime: the seccomp listener fd follows as an attached fd.
    SeccompListener,
    /// init → runtime: created; now waiting for `start`.
    Ready,
    /// init → runtime: failed.
    Failed(InitError),
}

/// One end of the channel.
pub(crate) struct Channel {
    fd: OwnedFd,
}

/// A new connected pair.
pub(crate) fn pair() -> nix::Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

const MAX_MESSAGE: usize = 64 * 1024;

impl Channel {
    /// Sends a message, with an fd attached if given.
    pub(crate) fn send(&self, msg: &Message, fd: Option<RawFd>) -> nix::Result<()> {
        let bytes = serde_json::to_vec(msg).expect("messages always serialise");
        let iov = [IoSlice::new(&bytes)];
        let fds = fd.map(|f| [f]);
        let cmsgs: Vec<ControlMessage<'_>> = match &fds {
            Some(f) => vec![ControlMessage::ScmRights(f)],
            None => vec![],
        };
        loop {
            match sendmsg::<()>(
                self.fd.as_raw_fd(),
                &iov,
                &cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => return other.map(drop),
            }
        }
    }

    /// Receives the next message and any fd attached to it; `Ok(None)` at
    /// end-of-file (the other side exited or exec'd).
    pub(crate) fn recv(&self) -> nix::Result<Option<(Message, Option<OwnedFd>)>> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let (len, fd) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e),
                Ok(r) => {
                    let mut fd = None;
                    for c in r.cmsgs()? {
                        if let ControlMessageOwned::ScmRights(fds) = c {
                            for f in fds {
                                let owned = crate::sys::take_received_fd(f);
                                fd.get_or_insert(owned);
                            }
                        }
                    }
                    break (r.bytes, fd);
                }
            }
        };
        if len == 0 {
            return Ok(None);
        }
        let msg = serde_json::from_slice(&buf[..len]).map_err(|_| nix::errno::Errno::EPROTO)?;
        Ok(Some((msg, fd)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_fds_cross() {
        let (a, b) = pair().unwrap();
        a.send(&Message::Pid(42), None).unwrap();
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        a.send(&Message::ConsoleMaster, Some(file.as_raw_fd()))
            .unwrap();
        match b.recv().unwrap() {
            Some((Message::Pid(42), None)) => {}
            other => panic!("{other:?}"),
        }
        match b.recv().unwrap() {
            Some((Message::ConsoleMaster, Some(_fd))) => {}
            other => panic!("{other:?}"),
        }
        drop(a);
        assert!(b.recv().unwrap().is_none());
    }
}
