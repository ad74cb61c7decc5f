//! The verbs of the OCI runtime command line.
//!
//! One file per verb, each a function over a [`RuntimeRoot`] and a
//! container id. [`create`] and [`exec`] share the runtime's side of the
//! fork protocol in `spawn`: place the first child in the cgroup, write
//! the id maps, run the runtime-namespace hooks, forward the console and
//! the seccomp listener, and collect the pid.

mod create;
mod delete;
mod events;
mod exec;
mod kill;
mod list;
mod pause;
mod spawn;
mod start;
mod update;
mod wait;

use std::path::PathBuf;

pub use create::{create, run};
pub use delete::delete;
pub use events::{events, stats};
pub use exec::exec;
pub use kill::{kill, parse_signal};
pub use list::{list, ps};
pub use pause::{pause, resume};
pub use start::start;
pub use update::update;

use crate::error::Error;
use crate::state::{ContainerState, RuntimeRoot};

/// Options of `create` and `run` that are not in config.json.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// `--pid-file`: where to write the init's pid.
    pub pid_file: Option<PathBuf>,
    /// `--console-socket`: where to send the pty master when
    /// `process.terminal` is set.
    pub console_socket: Option<PathBuf>,
    /// `--preserve-fds`: pass fds 3..3+N to the container.
    pub preserve_fds: i32,
    /// `--no-pivot`: use `MS_MOVE` + `chroot` instead of `pivot_root`.
    pub no_pivot: bool,
    /// `--no-new-keyring`: keep the caller's session keyring.
    pub no_new_keyring: bool,
}

/// Options of `exec`.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// `--detach`: return once the process runs.
    pub detach: bool,
    /// `--pid-file`.
    pub pid_file: Option<PathBuf>,
    /// `--console-socket`.
    pub console_socket: Option<PathBuf>,
    /// `--preserve-fds`.
    pub preserve_fds: i32,
}

/// The state of container `id` (`plinth state`).
pub fn state(root: &RuntimeRoot, id: &str) -> Result<ContainerState, Error> {
    ContainerState::load(root, id)
}
