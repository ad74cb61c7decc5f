//! `delete`: removes a stopped container (or, with `--force`, kills it
//! first): its cgroup, its state directory; then runs the poststop hooks.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::error::Error;
use crate::hooks;
use crate::state::{ContainerState, RuntimeRoot, Status};

/// `plinth delete [--force] ID`.
pub fn delete(root: &RuntimeRoot, id: &str, force: bool) -> Result<(), Error> {
    let dir = root.container_dir(id)?;
    let st = match ContainerState::load(root, id) {
        Ok(st) => st,
        // A directory without state.json is a create that was cut short.
        Err(Error::NotFound(_)) if dir.exists() => {
            let _ = std::fs::remove_dir_all(&dir);
            return Ok(());
        }
        Err(Error::NotFound(_)) if force => return Ok(()),
        Err(e) => return Err(e),
    };
    match st.status {
        Status::Stopped => {}
        // A created container never ran the user's program: delete kills
        // its init, as runc does.
        Status::Created => stop(&st)?,
        _ if force => stop(&st)?,
        status => {
            return Err(Error::WrongStatus {
                id: id.into(),
                status: status.to_string(),
                operation: "delete (stop it first, or use --force)",
            })
        }
    }
    if let Some(cg) = &st.cgroup {
        cg.destroy()?;
    }
    std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    if let Some(h) = st.hooks.as_ref().and_then(|h| h.poststop().as_ref()) {
        let mut state = st.oci_state();
        state["status"] = "stopped".into();
        if let Err(e) = hooks::run(hooks::Kind::Poststop, h, &state) {
            tracing::warn!("{e}");
        }
    }
    Ok(())
}

/// Kills every process of the container and waits for the init to go.
fn stop(st: &ContainerState) -> Result<(), Error> {
    if let Some(cg) = &st.cgroup {
        let _ = cg.freeze(crate::cgroups::FreezerState::Thawed);
    }
    for pid in st.processes().unwrap_or_default() {
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
    }
    let _ = super::kill::signal_init(st, Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(10);
    while st.init_alive() {
        if Instant::now() > deadline {
            return Err(Error::Unsupported(format!(
                "container {:?}: init {} did not die within 10s of SIGKILL",
                st.id, st.pid
            )));
        }
        // Reap it if it is our child (run, or a subreaper).
        let _ = nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(st.pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}
