//! The runtime's side of the fork protocol, shared by create and exec.

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::{Hooks, LinuxIdMapping};

use crate::cgroups::Cgroup;
use crate::error::Error;
use crate::hooks;
use crate::process::channel::{self, Channel, Message};
use crate::process::{init, ChildArgs};
use crate::sys;

/// What the runtime does when the child asks.
pub(super) struct Parent<'a> {
    pub cgroup: Option<&'a Cgroup>,
    pub uid_mappings: &'a [LinuxIdMapping],
    pub gid_mappings: &'a [LinuxIdMapping],
    pub console_socket: Option<&'a Path>,
    /// Hooks to run at `RunRuntimeHooks`, and the state they read.
    pub hooks: Option<&'a Hooks>,
    pub hook_state: serde_json::Value,
    pub oom_score_adj: Option<i32>,
    pub listener: Option<(&'a Path, Option<&'a str>)>,
    pub container_state: serde_json::Value,
}

/// What came back.
pub(super) struct Spawned {
    /// The container process.
    pub pid: Pid,
    /// The channel, still open: for exec, end-of-file means it exec'd.
    pub channel: Channel,
    /// The pty master, when a terminal was asked for without a console
    /// socket.
    pub console: Option<OwnedFd>,
}

/// Forks the first child with `args` and serves it until it reports
/// `Ready` (create, `until_ready`) or, for exec, until the new process has
/// exec'd (end-of-file after its pid). On error, every process that was
/// started has been killed.
pub(super) fn spawn(
    args: ChildArgs<'_>,
    parent: &mut Parent<'_>,
    until_ready: bool,
) -> Result<Spawned, Error> {
    let (ours, theirs) = channel::pair().map_err(|e| Error::sys("socketpair", e))?;
    // The first child joins the cgroup without being moved: forked straight
    // into the cgroup2 directory, it moves itself into the v1 ones (see
    // `JoinHandles::join_v1`). Everything it forks inherits the cgroup.
    let join = parent.cgroup.map(Cgroup::join_handles).transpose()?;
    let unified = join.as_ref().and_then(|j| j.unified.as_ref());
    // Kernels before 5.7, or a cgroup2 directory that does not take
    // processes this way: a plain fork, and the runtime moves the child.
    let into = unified.and_then(|(_, dir)| sys::fork_into_cgroup(dir.as_fd()).ok());
    let move_unified = unified.is_some() && into.is_none();
    let forked = match into {
        Some(r) => Ok(r),
        None => sys::fork(),
    };
    let stage1 = match forked.map_err(|e| Error::sys("fork", e))? {
        ForkResult::Child => {
            drop(ours);
            init::stage1(args, theirs, join.as_ref())
        }
        ForkResult::Parent { child } => child,
    };
    drop(theirs);
    drop(args);
    drop(join);
    let mut pid = None;
    let result = match (parent.cgroup, move_unified) {
        (Some(cg), true) => cg.add_task_unified(stage1).map_err(Error::from),
        _ => Ok(()),
    }
    .and_then(|()| serve(&ours, parent, stage1, &mut pid, until_ready));
    match result {
        Ok(console) => Ok(Spawned {
            pid: pid.expect("serve returns Ok only with a pid"),
            channel: ours,
            console,
        }),
        Err(e) => {
            for p in [Some(stage1), pid].into_iter().flatten() {
                let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
            }
            let _ = waitpid(stage1, None);
            Err(e)
        }
    }
}

fn serve(
    ch: &Channel,
    parent: &mut Parent<'_>,
    stage1: Pid,
    pid: &mut Option<Pid>,
    until_ready: bool,
) -> Result<Option<OwnedFd>, Error> {
    let proto = |e| Error::sys("init channel", e);
    ch.send(&Message::Continue, None).map_err(proto)?;
    let mut console = None;
    loop {
        let msg = ch.recv().map_err(proto)?;
        let Some((msg, fd)) = msg else {
            // The channel is close-on-exec: for exec, end-of-file once the
            // pid is known means the program runs.
            if !until_ready && pid.is_some() {
                return Ok(console);
            }
            return Err(Error::Unsupported(format!(
                "the container's init exited before it was ready{}",
                exit_detail(stage1)
            )));
        };
        match msg {
            Message::NeedIdMaps => {
                write_id_maps(stage1, parent.uid_mappings, parent.gid_mappings)?;
                ch.send(&Message::Continue, None).map_err(proto)?;
            }
            Message::Pid(p) => {
                let p = Pid::from_raw(p);
                *pid = Some(p);
                let _ = waitpid(stage1, None);
                if let Some(adj) = parent.oom_score_adj {
                    let path = format!("/proc/{p}/oom_score_adj");
                    fs::write(&path, adj.to_string()).map_err(|e| {
                        let hint = if e.raw_os_error() == Some(libc::EACCES) {
                            " (lowering it needs CAP_SYS_RESOURCE)"
                        } else {
                            ""
                        };
                        Error::InvalidArgument(format!("process.oomScoreAdj {adj}: {e}{hint}"))
                    })?;
                }
                ch.send(&Message::Pid(p.as_raw()), None).map_err(proto)?;
                if until_ready {
                    ch.send(&Message::Continue, None).map_err(proto)?;
                }
                parent.hook_state["pid"] = p.as_raw().into();
                parent.container_state["pid"] = p.as_raw().into();
            }
            Message::RunRuntimeHooks => {
                if let Some(h) = parent.hooks {
                    let st = &parent.hook_state;
                    hooks::run(
                        hooks::Kind::Prestart,
                        h.prestart().as_deref().unwrap_or(&[]),
                        st,
                    )?;
                    hooks::run(
                        hooks::Kind::CreateRuntime,
                        h.create_runtime().as_deref().unwrap_or(&[]),
                        st,
                    )?;
                }
                ch.send(&Message::Continue, None).map_err(proto)?;
            }
            Message::ConsoleMaster => {
                let fd =
                    fd.ok_or_else(|| Error::Unsupported("console message without fd".into()))?;
                match parent.console_socket {
                    Some(path) => crate::process::console::send_to_socket(path, &fd)?,
                    None => console = Some(fd),
                }
                ch.send(&Message::Continue, None).map_err(proto)?;
            }
            Message::SeccompListener => {
                let fd =
                    fd.ok_or_else(|| Error::Unsupported("listener message without fd".into()))?;
                if let Some((path, metadata)) = parent.listener {
                    let state: oci_spec::runtime::State =
                        serde_json::from_value(parent.container_state.clone()).map_err(|e| {
                            Error::Unsupported(format!("container state for the listener: {e}"))
                        })?;
                    crate::seccomp::send_to_listener(
                        path,
                        fd.as_fd(),
                        pid.map(|p| p.as_raw()).unwrap_or(0),
                        metadata,
                        &state,
                    )?;
                }
                ch.send(&Message::Continue, None).map_err(proto)?;
            }
            Message::Ready => return Ok(console),
            Message::Failed(e) => return Err(e.into()),
            Message::Continue => {}
        }
    }
}

fn exit_detail(pid: Pid) -> String {
    match waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
        Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => format!(" (exit status {c})"),
        Ok(nix::sys::wait::WaitStatus::Signaled(_, s, _)) => format!(" (killed by {s})"),
        _ => String::new(),
    }
}

fn write_id_maps(pid: Pid, uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> Result<(), Error> {
    let text = |maps: &[LinuxIdMapping]| {
        maps.iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    for (file, maps, field) in [
        ("uid_map", uid, "linux.uidMappings"),
        ("gid_map", gid, "linux.gidMappings"),
    ] {
        let path = format!("/proc/{pid}/{file}");
        fs::write(&path, text(maps))
            .map_err(|e| Error::InvalidArgument(format!("{field}: writing {path}: {e}")))?;
    }
    Ok(())
}
