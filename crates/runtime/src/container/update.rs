//! `update`: changes the resources of a running container's cgroup.

use oci_spec::runtime::LinuxResources;

use crate::error::Error;
use crate::state::{ContainerState, RuntimeRoot, Status};

/// `plinth update`: applies `resources` (only the fields that are set).
pub fn update(root: &RuntimeRoot, id: &str, resources: &LinuxResources) -> Result<(), Error> {
    let st = ContainerState::load(root, id)?;
    if st.status == Status::Stopped {
        return Err(Error::WrongStatus {
            id: id.into(),
            status: st.status.to_string(),
            operation: "update",
        });
    }
    let cg = st
        .cgroup
        .as_ref()
        .ok_or_else(|| Error::Unsupported(format!("container {id:?} has no cgroup")))?;
    cg.apply(resources)?;
    Ok(())
}
