//! `pause` and `resume`: the cgroup freezer.

use crate::cgroups::FreezerState;
use crate::error::Error;
use crate::state::{ContainerState, RuntimeRoot, Status};

fn freeze(root: &RuntimeRoot, id: &str, to: FreezerState, from: Status) -> Result<(), Error> {
    let st = ContainerState::load(root, id)?;
    if st.status != from {
        return Err(Error::WrongStatus {
            id: id.into(),
            status: st.status.to_string(),
            operation: if to == FreezerState::Frozen {
                "pause"
            } else {
                "resume"
            },
        });
    }
    let cg = st
        .cgroup
        .as_ref()
        .ok_or_else(|| Error::Unsupported(format!("container {id:?} has no cgroup")))?;
    cg.freeze(to)?;
    Ok(())
}

/// `plinth pause`.
pub fn pause(root: &RuntimeRoot, id: &str) -> Result<(), Error> {
    freeze(root, id, FreezerState::Frozen, Status::Running)
}

/// `plinth resume`.
pub fn resume(root: &RuntimeRoot, id: &str) -> Result<(), Error> {
    freeze(root, id, FreezerState::Thawed, Status::Paused)
}
