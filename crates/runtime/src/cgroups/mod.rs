//! Control groups: layout detection (v1, hybrid, v2), creating a container's
//! cgroup, applying `linux.resources`, freezing, statistics and removal.
//!
//! INTERFACE STUB: filled in by the cgroups work; signatures are the contract.
#![allow(missing_docs, unused_variables, dead_code)]

use std::path::PathBuf;

use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

/// Errors of cgroup operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CgroupError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How the cgroup hierarchies are mounted on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// Pure cgroup v2 at the mount point.
    Unified(PathBuf),
    /// v1 controllers, and possibly a cgroup2 mount beside them (hybrid).
    Legacy {
        hierarchies: Vec<Hierarchy>,
        unified: Option<PathBuf>,
    },
}

/// One v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hierarchy {
    pub mountpoint: PathBuf,
    /// Controllers (and `name=` options) co-mounted there.
    pub controllers: Vec<String>,
}

impl Layout {
    pub fn detect() -> Result<Self, CgroupError> {
        todo!()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FreezerState {
    Frozen,
    Thawed,
}

/// Resource statistics, shaped like runc's `events --stats` data.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {}

/// A container's cgroup in whichever layout the host has.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cgroup {}

impl Cgroup {
    pub fn open(cgroups_path: Option<&str>, container_id: &str) -> Result<Self, CgroupError> {
        todo!()
    }
    pub fn create(&self) -> Result<(), CgroupError> {
        todo!()
    }
    pub fn add_task(&self, pid: Pid) -> Result<(), CgroupError> {
        todo!()
    }
    pub fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        todo!()
    }
    pub fn freeze(&self, state: FreezerState) -> Result<(), CgroupError> {
        todo!()
    }
    pub fn freezer_state(&self) -> Result<FreezerState, CgroupError> {
        todo!()
    }
    pub fn pids(&self) -> Result<Vec<Pid>, CgroupError> {
        todo!()
    }
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        todo!()
    }
    pub fn oom_kill_count(&self) -> Result<u64, CgroupError> {
        todo!()
    }
    pub fn destroy(&self) -> Result<(), CgroupError> {
        todo!()
    }
}
