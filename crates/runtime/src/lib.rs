//! The OCI runtime engine of plinth.
//!
//! This crate owns everything between a bundle on disk and a running
//! container process: reading and validating `config.json`
//! ([`Bundle`]), the single-threaded fork path that creates namespaces
//! and the root filesystem, process attributes (user, capabilities,
//! rlimits, seccomp, LSM labels), lifecycle hooks, cgroups (v1, hybrid and
//! v2) and the runc-compatible state directory. It prints nothing: the
//! `plinth` binary formats results and maps [`Error`] to exit codes.
//!
//! The verbs of the OCI runtime command line live in [`container`]: each is
//! a function that takes a [`RuntimeRoot`] (the `--root` directory) and the
//! container id.
//!
//! ```no_run
//! use plinth_runtime::{container, Bundle, CreateOptions, RuntimeRoot};
//!
//! # fn main() -> Result<(), plinth_runtime::Error> {
//! let root = RuntimeRoot::new("/run/plinth");
//! let bundle = Bundle::load("/var/lib/bundles/busybox")?;
//! container::create(&root, "demo", &bundle, &CreateOptions::default())?;
//! container::start(&root, "demo")?;
//! let state = container::state(&root, "demo")?;
//! println!("{} is {:?}", state.id, state.status);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod bundle;
pub mod cgroups;
pub mod container;
mod error;
mod features;
mod hooks;
mod lsm;
mod process;
mod rootfs;
pub mod seccomp;
mod state;
mod sys;
pub mod template;

pub use bundle::Bundle;
pub use container::{CreateOptions, ExecOptions};
pub use error::{Error, InitError, InitStage};
pub use features::features;
pub use rootfs::resolve::is_file_in_root;
pub use state::{proc_start_time, write_atomic, ContainerState, RuntimeRoot, Status};

/// The runtime-spec version that this runtime implements.
pub const OCI_VERSION: &str = "1.2.0";

/// Re-executes the running program from a sealed in-memory copy of
/// itself, unless it already runs from one. Commands that put a process
/// into a container call this first, so that no container process can
/// ever reach (and overwrite) the host's `plinth` binary through
/// `/proc/PID/exe` (the CVE-2019-5736 class). Returns only when there is
/// nothing to do, or on failure.
pub fn ensure_sealed_binary() -> Result<(), Error> {
    if sys::running_sealed() {
        return Ok(());
    }
    use std::os::unix::ffi::OsStrExt;
    let cstr = |s: &std::ffi::OsStr| std::ffi::CString::new(s.as_bytes()).ok();
    let argv: Vec<_> = std::env::args_os().filter_map(|a| cstr(&a)).collect();
    let envp: Vec<_> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            cstr(&kv)
        })
        .collect();
    // The read-only overlay costs a few syscalls; the memfd copy works
    // where overlayfs is missing.
    if let Err(e) = sys::reexec_from_readonly_overlay(&argv, &envp) {
        tracing::debug!("read-only overlay re-exec unavailable ({e}); copying to a sealed memfd");
    }
    sys::reexec_sealed(&argv, &envp).map_err(|e| Error::sys("re-executing from a sealed copy", e))
}

/// The current time as RFC 3339 UTC with nanoseconds, as runc writes it
/// in state and logs.
pub fn timestamp() -> String {
    state::now_rfc3339()
}

/// Reads an exec `process.json` (the `process` object of the runtime
/// spec), naming the field at fault on error.
pub fn read_process(path: &std::path::Path) -> Result<oci_spec::runtime::Process, Error> {
    bundle::read_json(path)
}
