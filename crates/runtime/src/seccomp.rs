//! seccomp: compiling `linux.seccomp` into a libseccomp filter.
//!
//! INTERFACE STUB: filled in by the seccomp work; signatures are the contract.
#![allow(missing_docs, unused_variables, dead_code)]

use std::os::fd::OwnedFd;
use std::path::Path;

use oci_spec::runtime::LinuxSeccomp;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeccompError {
    #[error("linux.seccomp: {0}")]
    Invalid(String),
}

/// A compiled filter, built in the runtime before forking and loaded by
/// the container's init.
pub struct Filter {}

impl Filter {
    pub fn compile(seccomp: &LinuxSeccomp) -> Result<Self, SeccompError> {
        todo!()
    }
    pub fn needs_listener(&self) -> bool {
        todo!()
    }
    pub fn listener(&self) -> Option<(std::path::PathBuf, Option<String>)> {
        todo!()
    }
    pub fn load(self) -> Result<Option<OwnedFd>, SeccompError> {
        todo!()
    }
}

pub fn features() -> serde_json::Value {
    todo!()
}

pub fn send_to_listener(
    listener_path: &Path,
    listener_fd: &OwnedFd,
    pid: i32,
    metadata: Option<&str>,
    state: &serde_json::Value,
) -> Result<(), SeccompError> {
    todo!()
}
