//! `kill`: signals a container's init, or every process of it (`--all`).
//!
//! The init is signalled through a pidfd opened after checking its start
//! time, so a recycled pid is never signalled.

use std::os::fd::AsFd;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::cgroups::FreezerState;
use crate::error::Error;
use crate::state::{proc_start_time, ContainerState, RuntimeRoot, Status};
use crate::sys;

/// Parses `KILL`, `SIGKILL`, `kill` or `9`.
pub fn parse_signal(s: &str) -> Result<Signal, Error> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n)
            .map_err(|_| Error::InvalidArgument(format!("unknown signal {s:?}")));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>()
        .map_err(|_| Error::InvalidArgument(format!("unknown signal {s:?}")))
}

/// `plinth kill [--all] ID SIGNAL`.
pub fn kill(root: &RuntimeRoot, id: &str, signal: Signal, all: bool) -> Result<(), Error> {
    let st = ContainerState::load(root, id)?;
    if st.status == Status::Stopped && !all {
        return Err(Error::WrongStatus {
            id: id.into(),
            status: st.status.to_string(),
            operation: "kill",
        });
    }
    if all || st.shared_pid_ns {
        for pid in st.processes()? {
            let _ = nix::sys::signal::kill(pid, signal);
        }
    } else {
        signal_init(&st, signal)?;
    }
    // A frozen process acts on SIGKILL only once thawed.
    if signal == Signal::SIGKILL && st.status == Status::Paused {
        if let Some(cg) = &st.cgroup {
            cg.freeze(FreezerState::Thawed)?;
        }
    }
    Ok(())
}

pub(super) fn signal_init(st: &ContainerState, signal: Signal) -> Result<(), Error> {
    let pid = Pid::from_raw(st.pid);
    let fd = sys::pidfd_open(pid).map_err(|e| Error::sys(format!("pidfd_open {pid}"), e))?;
    // Opened first, checked second: if the start time matches now, the
    // pidfd is the container's init.
    if proc_start_time(pid).map(|(t, _)| t) != Some(st.init_start_time) {
        return Err(Error::WrongStatus {
            id: st.id.clone(),
            status: "stopped".into(),
            operation: "kill",
        });
    }
    sys::pidfd_send_signal(fd.as_fd(), signal).map_err(|e| Error::sys(format!("signal {pid}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("sigterm").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("NOPE").is_err());
    }
}
