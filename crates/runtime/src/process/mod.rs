//! The fork path: everything that runs in the children that become a
//! container's processes.
//!
//! The runtime process (single-threaded, see DESIGN.md) forks a first
//! child that joins or creates the namespaces ([`init::stage1`]); that
//! child forks the container's init ([`init::init`]), which sets up the
//! root filesystem, waits for `start` and execs the user's program. `exec`
//! forks a child that joins the init's namespaces and forks the new
//! process ([`init::stage1`] in tenant mode). Both sides talk over a
//! [`channel::Channel`]; the last step of every container process is
//! [`exec_process`].

pub(crate) mod attrs;
pub(crate) mod channel;
pub(crate) mod console;
pub(crate) mod init;

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use oci_spec::runtime::{Process, Spec};

use crate::error::{InitError, InitStage};
use crate::lsm::Labels;
use crate::seccomp::Filter;
use crate::sys;

/// A namespace to join, opened in the runtime process.
pub(crate) struct JoinNs {
    pub kind: nix::sched::CloneFlags,
    pub fd: OwnedFd,
    pub what: String,
}

/// Whether a child builds a new container or enters an existing one.
pub(crate) enum Mode<'a> {
    /// `create`: a new container from its bundle.
    Init {
        bundle: &'a Path,
        rootfs: &'a Path,
        no_pivot: bool,
        /// `O_PATH` fd of `exec.fifo`; `None` for `run` without a fifo.
        fifo: Option<&'a OwnedFd>,
        /// `run` without `--detach`: the runtime stays and reports late
        /// failures itself.
        foreground: bool,
    },
    /// `exec`: a new process in a running container.
    Tenant,
}

/// What a child needs; it gets its own copy of memory at fork, so plain
/// references do.
pub(crate) struct ChildArgs<'a> {
    pub id: &'a str,
    pub spec: &'a Spec,
    pub process: &'a Process,
    pub mode: Mode<'a>,
    /// Namespaces to join (by path, or the init's for exec), user first.
    pub join: Vec<JoinNs>,
    /// Namespaces to create.
    pub unshare: nix::sched::CloneFlags,
    pub seccomp: Option<Filter>,
    pub labels: Labels,
    pub preserve_fds: RawFd,
    pub no_new_keyring: bool,
    /// Whether a pty is wanted (the master goes back to the runtime).
    pub terminal: bool,
    /// The container is in a user namespace (created or joined).
    pub in_userns: bool,
}

/// The last steps of every container process: labels, rlimits,
/// personality, user and capabilities, no_new_privs, fds, cwd, seccomp,
/// execve. Returns only on failure.
pub(crate) fn exec_process(
    args: &mut ChildArgs<'_>,
    channel: &channel::Channel,
) -> Result<std::convert::Infallible, InitError> {
    let process = args.process;
    let nnp = process.no_new_privileges().unwrap_or(false);
    args.labels.apply_on_exec()?;
    attrs::set_rlimits(process.rlimits().as_deref().unwrap_or(&[]))?;
    if let Some(p) = args
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.personality().as_ref())
    {
        attrs::set_personality(p)?;
    }
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it
    // while the capabilities are still there.
    let mut seccomp = args.seccomp.take();
    if !nnp {
        if let Some(f) = seccomp.take() {
            load_seccomp(f, channel)?;
        }
    }
    attrs::set_user(process, args.in_userns)?;
    if nnp {
        nix::sys::prctl::set_no_new_privs()
            .map_err(|e| InitError::new(InitStage::NoNewPrivileges, "", e))?;
    }
    // No descriptor of the runtime may survive into the container (the
    // CVE-2024-21626 class): everything above the preserved ones becomes
    // close-on-exec before the cwd is even resolved.
    let first_closed = 3 + args.preserve_fds;
    sys::cloexec_from(first_closed).map_err(|e| InitError::new(InitStage::Exec, "fds", e))?;
    for fd in 3..first_closed {
        sys::clear_cloexec(fd)
            .map_err(|e| InitError::new(InitStage::Exec, format!("preserved fd {fd}"), e))?;
    }
    let cwd = process.cwd();
    nix::unistd::chdir(cwd)
        .map_err(|e| InitError::new(InitStage::Cwd, format!("process.cwd {}", cwd.display()), e))?;
    // A cwd reached through a leaked fd lies outside the root: getcwd
    // then fails or does not start with '/'.
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => {}
        _ => {
            return Err(InitError::reason(
                InitStage::Cwd,
                format!("process.cwd {}", cwd.display()),
                "is outside the container's root",
            ))
        }
    }
    let env: Vec<CString> = process
        .env()
        .iter()
        .flatten()
        .filter_map(|e| CString::new(e.as_bytes()).ok())
        .collect();
    let argv: Vec<CString> = process
        .args()
        .iter()
        .flatten()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| InitError::reason(InitStage::Exec, "process.args", "contains a NUL byte"))?;
    let program = resolve_program(&argv[0].to_string_lossy(), process).ok_or_else(|| {
        InitError::new(
            InitStage::Exec,
            format!("process.args[0] {}", argv[0].to_string_lossy()),
            Errno::ENOENT,
        )
    })?;
    let program = CString::new(program.into_os_string().into_encoded_bytes()).map_err(|_| {
        InitError::reason(InitStage::Exec, "process.args[0]", "contains a NUL byte")
    })?;
    sys::reset_signals();
    if let Some(f) = seccomp.take() {
        load_seccomp(f, channel)?;
    }
    let e = nix::unistd::execve(&program, &argv, &env).unwrap_err();
    Err(InitError::new(
        InitStage::Exec,
        format!("{}", program.to_string_lossy()),
        e,
    ))
}

fn load_seccomp(filter: Filter, channel: &channel::Channel) -> Result<(), InitError> {
    let listener = filter
        .load()
        .map_err(|e| InitError::reason(InitStage::Seccomp, "linux.seccomp", e.to_string()))?;
    if let Some(fd) = listener {
        channel
            .send(&channel::Message::SeccompListener, Some(fd.as_raw_fd()))
            .map_err(|e| InitError::new(InitStage::Seccomp, "listener", e))?;
    }
    Ok(())
}

/// `args[0]` as execvp would find it, with the container's PATH.
fn resolve_program(name: &str, process: &Process) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    let path = process
        .env()
        .iter()
        .flatten()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    path.split(':').map(|d| Path::new(d).join(name)).find(|p| {
        nix::unistd::access(p.as_path(), nix::unistd::AccessFlags::X_OK).is_ok() && !p.is_dir()
    })
}
