//! `events`: resource statistics, once (`--stats`) or at an interval, and
//! OOM notifications, as runc's JSON event objects.

use std::time::Duration;

use crate::cgroups::Stats;
use crate::error::Error;
use crate::state::{ContainerState, RuntimeRoot, Status};

/// The container's current statistics.
pub fn stats(root: &RuntimeRoot, id: &str) -> Result<Stats, Error> {
    let st = ContainerState::load(root, id)?;
    let cg = st
        .cgroup
        .as_ref()
        .ok_or_else(|| Error::Unsupported(format!("container {id:?} has no cgroup")))?;
    Ok(cg.stats()?)
}

/// Calls `emit` with a `stats` event every `interval` (and an `oom` event
/// when the OOM-kill count grows) until the container stops or `emit`
/// returns false.
pub fn events(
    root: &RuntimeRoot,
    id: &str,
    interval: Duration,
    mut emit: impl FnMut(serde_json::Value) -> bool,
) -> Result<(), Error> {
    let mut last_oom = None;
    loop {
        let st = ContainerState::load(root, id)?;
        if st.status == Status::Stopped {
            return Ok(());
        }
        let Some(cg) = st.cgroup.as_ref() else {
            return Err(Error::Unsupported(format!(
                "container {id:?} has no cgroup"
            )));
        };
        let stats = cg.stats()?;
        let oom = cg.oom_kills().ok().flatten().unwrap_or(0);
        if last_oom.is_some_and(|l| oom > l) && !emit(serde_json::json!({"type": "oom", "id": id}))
        {
            return Ok(());
        }
        last_oom = Some(oom);
        if !emit(serde_json::json!({"type": "stats", "id": id, "data": stats})) {
            return Ok(());
        }
        std::thread::sleep(interval);
    }
}
