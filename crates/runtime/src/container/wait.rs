//! Waiting for a foreground container process (`run`, `exec` without
//! `--detach`) while forwarding the signals the runtime receives to it,
//! and copying a terminal's bytes when the runtime owns the pty.
//!
//! Signals are blocked before the fork and read synchronously with
//! `signalfd`, so the runtime stays single-threaded and no signal is lost.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::error::Error;

const FORWARDED: [Signal; 9] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
    Signal::SIGCHLD,
];

/// Blocks the forwarded signals (and SIGCHLD) and returns a signalfd for
/// them. The container's process unblocks them before exec.
pub(super) fn block_forwarded_signals() -> Result<SignalFd, Error> {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(|e| Error::sys("sigprocmask", e))?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| Error::sys("signalfd", e))
}

fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

/// Waits for `pid` (a child or an orphan we reap as subreaper) to exit,
/// forwarding signals; with `console`, copies stdin to the pty and the pty
/// to stdout. Returns the exit code (128+N for signal N).
pub(super) fn wait_forwarding(
    pid: Pid,
    signals: &SignalFd,
    console: Option<&OwnedFd>,
) -> Result<i32, Error> {
    let stdin = std::io::stdin();
    let mut stdin_open = console.is_some();
    let mut buf = [0u8; 8192];
    loop {
        // Reap everything that exited; stop when it is ours.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(st) if st.pid() == Some(pid) => {
                    if let Some(c) = exit_code(st) {
                        drain(console, &mut buf);
                        return Ok(c);
                    }
                }
                Ok(_) => {}
            }
        }
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        if let Some(c) = console {
            fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
            if stdin_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
        }
        match poll(&mut fds, PollTimeout::from(1000u16)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Error::sys("poll", e)),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[0] {
            while let Ok(Some(info)) = signals.read_signal() {
                let sig = Signal::try_from(info.ssi_signo as i32).ok();
                match sig {
                    Some(Signal::SIGCHLD) | None => {}
                    Some(s) => {
                        let _ = nix::sys::signal::kill(pid, s);
                    }
                }
            }
        }
        if let Some(c) = console {
            if ready.get(1).copied().unwrap_or(false) {
                match nix::unistd::read(c, &mut buf) {
                    Ok(n) if n > 0 => {
                        let _ = std::io::stdout().write_all(&buf[..n]);
                        let _ = std::io::stdout().flush();
                    }
                    _ => {}
                }
            }
            if stdin_open && ready.get(2).copied().unwrap_or(false) {
                match stdin.lock().read(&mut buf) {
                    Ok(0) | Err(_) => stdin_open = false,
                    Ok(n) => {
                        let _ = nix::unistd::write(c, &buf[..n]);
                    }
                }
            }
        }
    }
}

fn drain(console: Option<&OwnedFd>, buf: &mut [u8]) {
    let Some(c) = console else { return };
    let _ = nix::fcntl::fcntl(
        c,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    while let Ok(n) = nix::unistd::read(c, buf) {
        if n == 0 {
            break;
        }
        let _ = std::io::stdout().write_all(&buf[..n]);
    }
    let _ = std::io::stdout().flush();
}
