//! `list` and `ps`.

use nix::unistd::Pid;

use crate::error::Error;
use crate::state::{ContainerState, RuntimeRoot};

/// Every container under `root`, with its status refreshed. Containers
/// whose state cannot be read are skipped with a warning.
pub fn list(root: &RuntimeRoot) -> Result<Vec<ContainerState>, Error> {
    let mut out = Vec::new();
    for id in root.ids()? {
        match ContainerState::load(root, &id) {
            Ok(st) => out.push(st),
            Err(e) => tracing::warn!("{e}"),
        }
    }
    Ok(out)
}

/// The pids of container `id` (every process of its cgroup).
pub fn ps(root: &RuntimeRoot, id: &str) -> Result<Vec<Pid>, Error> {
    let st = ContainerState::load(root, id)?;
    let pids = st.processes()?;
    Ok(if pids.is_empty() && st.init_alive() {
        vec![Pid::from_raw(st.pid)]
    } else {
        pids
    })
}
