//! `exec`: a new process in a running container.
//!
//! The runtime opens the init's namespace files (`/proc/PID/ns/*`, the
//! ones that differ from its own), forks a child that joins them (user
//! first) and forks the process, which joins the cgroup through its
//! parent, gets a pty if asked, the container's seccomp profile and
//! `process.json`'s attributes, and execs. Without `--detach` the runtime
//! waits for it and returns its exit code.

use nix::fcntl::{open, OFlag};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use oci_spec::runtime::Process;

use super::spawn::{spawn, Parent};
use super::ExecOptions;
use crate::bundle::check_process;
use crate::error::Error;
use crate::lsm::Labels;
use crate::process::{ChildArgs, JoinNs, Mode as ChildMode};
use crate::seccomp::Filter;
use crate::state::{self, ContainerState, RuntimeRoot, Status};

const NAMESPACES: [(&str, CloneFlags); 8] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("mnt", CloneFlags::CLONE_NEWNS),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("time", CloneFlags::from_bits_retain(libc::CLONE_NEWTIME)),
];

/// `plinth exec`. Returns the process's exit code, or 0 with `--detach`.
pub fn exec(
    root: &RuntimeRoot,
    id: &str,
    process: &Process,
    opts: &ExecOptions,
) -> Result<i32, Error> {
    let st = ContainerState::load(root, id)?;
    if !matches!(st.status, Status::Running | Status::Created) {
        return Err(Error::WrongStatus {
            id: id.into(),
            status: st.status.to_string(),
            operation: "exec",
        });
    }
    check_process(process, "process").map_err(|(f, m)| Error::InvalidConfig {
        path: "process.json".into(),
        field: f,
        message: m,
    })?;
    if process.terminal().unwrap_or(false) && opts.detach && opts.console_socket.is_none() {
        return Err(Error::InvalidArgument(
            "exec --tty --detach needs --console-socket to receive the terminal".into(),
        ));
    }
    let spec = st.spec.clone().unwrap_or_default();
    let mut join = Vec::new();
    let mut in_userns = false;
    for (name, kind) in NAMESPACES {
        let theirs = format!("/proc/{}/ns/{name}", st.pid);
        let ours = format!("/proc/self/ns/{name}");
        let (Ok(a), Ok(b)) = (std::fs::metadata(&theirs), std::fs::metadata(&ours)) else {
            continue;
        };
        use std::os::unix::fs::MetadataExt;
        if a.ino() == b.ino() && a.dev() == b.dev() {
            continue;
        }
        let fd = open(
            theirs.as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::sys(format!("open {theirs}"), e))?;
        in_userns |= kind == CloneFlags::CLONE_NEWUSER;
        join.push(JoinNs {
            kind,
            fd,
            what: theirs,
        });
    }
    // The init must still be the process whose namespaces we opened.
    if !st.init_alive() {
        return Err(Error::WrongStatus {
            id: id.into(),
            status: "stopped".into(),
            operation: "exec",
        });
    }
    let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(Filter::compile(s)?),
        None => None,
    };
    let labels = Labels::for_process(process);
    let terminal = process.terminal().unwrap_or(false);
    let signals = if opts.detach {
        None
    } else {
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| Error::sys("PR_SET_CHILD_SUBREAPER", e))?;
        Some(super::wait::block_forwarded_signals()?)
    };
    let args = ChildArgs {
        id,
        spec: &spec,
        process,
        mode: ChildMode::Tenant,
        join,
        unshare: CloneFlags::empty(),
        seccomp,
        labels,
        preserve_fds: opts.preserve_fds,
        no_new_keyring: true,
        terminal,
        in_userns,
    };
    let oci = st.oci_state();
    let mut parent = Parent {
        cgroup: st.cgroup.as_ref(),
        uid_mappings: &[],
        gid_mappings: &[],
        console_socket: opts.console_socket.as_deref(),
        hooks: None,
        hook_state: oci.clone(),
        oom_score_adj: process.oom_score_adj(),
        listener: None,
        container_state: oci,
    };
    // Served until the process has exec'd; a terminal without
    // --console-socket comes back here.
    let spawned = spawn(args, &mut parent, false)?;
    if let Some(pf) = &opts.pid_file {
        state::write_pid_file(pf, spawned.pid)?;
    }
    match signals {
        None => Ok(0),
        Some(sig) => super::wait::wait_forwarding(spawned.pid, &sig, spawned.console.as_ref()),
    }
}
