//! Errors of the runtime crate.
//!
//! [`Error`] is what every public function returns. Failures inside the
//! container's init (which runs in a forked child) travel back to the
//! parent as an [`InitError`]: the stage that failed, the errno and the
//! object it was acting on (a path, a field of config.json), so the message
//! the user reads names what went wrong without strings crossing the fork
//! as free text.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cgroups::CgroupError;
use crate::seccomp::SeccompError;

/// Everything a runtime operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `config.json` could not be read.
    #[error("{path}: {source}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `config.json` (or a process.json) is not valid JSON or does not
    /// match the runtime spec.
    #[error("{path}: {field}: {message}")]
    InvalidConfig {
        /// The file.
        path: PathBuf,
        /// The JSON path of the offending field (`linux.namespaces[1].type`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A container id that is empty or could escape the state directory.
    #[error("invalid container id {0:?}: use letters, digits, '.', '_', '+' and '-' only")]
    InvalidId(String),
    /// A container with that id exists already.
    #[error("container {0:?} already exists")]
    Exists(String),
    /// No container with that id.
    #[error("container {0:?} does not exist")]
    NotFound(String),
    /// The operation does not apply to the container's current status.
    #[error("container {id:?} is {status}: cannot {operation}")]
    WrongStatus {
        /// The container.
        id: String,
        /// Its status.
        status: String,
        /// What was asked.
        operation: &'static str,
    },
    /// A system call failed in the runtime process itself.
    #[error("{what}: {source}")]
    Sys {
        /// What plinth was doing (names the path or object).
        what: String,
        /// The errno.
        source: nix::Error,
    },
    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The container's init failed before the user's process started.
    #[error("{0}")]
    Init(InitError),
    /// A cgroup operation failed.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// The seccomp profile is invalid or could not be loaded.
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    /// A lifecycle hook failed.
    #[error("{kind} hook {path:?}: {reason}")]
    Hook {
        /// prestart, createRuntime, ...
        kind: &'static str,
        /// The hook's executable.
        path: PathBuf,
        /// Exit status, timeout or spawn error.
        reason: String,
    },
    /// The state directory holds something plinth cannot read.
    #[error("{path}: corrupt state: {message}")]
    CorruptState {
        /// The state file.
        path: PathBuf,
        /// Why it is unreadable.
        message: String,
    },
    /// A feature that this build or host does not support.
    #[error("{0}")]
    Unsupported(String),
    /// Bad command-line input that the library validates.
    #[error("{0}")]
    InvalidArgument(String),
}

impl Error {
    pub(crate) fn sys(what: impl Into<String>, source: nix::Error) -> Self {
        Error::Sys {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The step of container initialisation at which a failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
#[allow(missing_docs)] // each variant names its step; the Display text is the doc
pub enum InitStage {
    JoinNamespace,
    UnshareNamespace,
    IdMapping,
    TimeOffsets,
    Fork,
    Cgroup,
    MountPropagation,
    Mount,
    Device,
    PivotRoot,
    MaskPath,
    ReadonlyPath,
    Sysctl,
    Hostname,
    Domainname,
    Console,
    Hook,
    Rlimit,
    OomScoreAdj,
    Personality,
    Apparmor,
    Selinux,
    Seccomp,
    Groups,
    User,
    Capabilities,
    NoNewPrivileges,
    Cwd,
    Exec,
    Protocol,
}

impl fmt::Display for InitStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            InitStage::JoinNamespace => "joining namespace",
            InitStage::UnshareNamespace => "creating namespaces",
            InitStage::IdMapping => "writing user namespace id mappings",
            InitStage::TimeOffsets => "writing time namespace offsets",
            InitStage::Fork => "forking the container init",
            InitStage::Cgroup => "joining the cgroup",
            InitStage::MountPropagation => "setting rootfs propagation",
            InitStage::Mount => "mount",
            InitStage::Device => "creating device",
            InitStage::PivotRoot => "pivot_root",
            InitStage::MaskPath => "masking path",
            InitStage::ReadonlyPath => "making path read-only",
            InitStage::Sysctl => "sysctl",
            InitStage::Hostname => "hostname",
            InitStage::Domainname => "domainname",
            InitStage::Console => "console",
            InitStage::Hook => "hook",
            InitStage::Rlimit => "rlimit",
            InitStage::OomScoreAdj => "oom_score_adj",
            InitStage::Personality => "personality",
            InitStage::Apparmor => "apparmor",
            InitStage::Selinux => "selinux",
            InitStage::Seccomp => "seccomp",
            InitStage::Groups => "supplementary groups",
            InitStage::User => "user",
            InitStage::Capabilities => "capabilities",
            InitStage::NoNewPrivileges => "no_new_privs",
            InitStage::Cwd => "cwd",
            InitStage::Exec => "exec",
            InitStage::Protocol => "init protocol",
        };
        f.write_str(s)
    }
}

/// A failure inside the container's init, as it crosses the fork.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitError {
    /// Where it failed.
    pub stage: InitStage,
    /// The config.json field or path it was acting on (`mounts[2] /data`).
    pub object: String,
    /// The errno, or 0 when the failure is not a system call's.
    pub errno: i32,
    /// Extra context for failures that are not an errno.
    pub reason: Option<String>,
}

impl InitError {
    pub(crate) fn new(stage: InitStage, object: impl Into<String>, errno: nix::Error) -> Self {
        InitError {
            stage,
            object: object.into(),
            errno: errno as i32,
            reason: None,
        }
    }

    pub(crate) fn reason(
        stage: InitStage,
        object: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        InitError {
            stage,
            object: object.into(),
            errno: 0,
            reason: Some(reason.into()),
        }
    }
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.stage)?;
        if !self.object.is_empty() {
            write!(f, " {}", self.object)?;
        }
        if let Some(r) = &self.reason {
            write!(f, ": {r}")?;
        }
        if self.errno != 0 {
            write!(f, ": {}", nix::errno::Errno::from_raw(self.errno).desc())?;
        }
        Ok(())
    }
}

impl std::error::Error for InitError {}

impl From<InitError> for Error {
    fn from(e: InitError) -> Self {
        Error::Init(e)
    }
}
