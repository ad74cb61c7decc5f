//! `create` and `run`: a new container from a bundle.
//!
//! Everything that can be checked is checked before anything is made
//! (config fields, rlimits against this process's hard limits, the
//! seccomp profile, namespace paths). Then the state directory, the
//! `exec.fifo`, the cgroup and the processes are made in that order, and a
//! guard undoes all of them if a later step fails: a failed `create`
//! leaves no directory, cgroup, mount or process behind.

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;

use nix::fcntl::{open, OFlag};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::spawn::{spawn, Parent};
use super::CreateOptions;
use crate::bundle::{check_process, Bundle};
use crate::cgroups::Cgroup;
use crate::error::Error;
use crate::lsm::Labels;
use crate::process::channel::{Channel, Message};
use crate::process::{attrs, ChildArgs, JoinNs, Mode as ChildMode};
use crate::seccomp::Filter;
use crate::state::{self, ContainerState, RuntimeRoot, Status, EXEC_FIFO};

/// Removes what a failed create made, unless disarmed.
struct Undo {
    dir: PathBuf,
    cgroup: Option<Cgroup>,
    armed: bool,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(cg) = &self.cgroup {
            let _ = cg.destroy();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

pub(super) fn ns_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// `plinth create`: makes container `id` from `bundle`, leaving its init
/// waiting for `start`.
pub fn create(
    root: &RuntimeRoot,
    id: &str,
    bundle: &Bundle,
    opts: &CreateOptions,
) -> Result<ContainerState, Error> {
    create_inner(root, id, bundle, opts, false).map(|c| c.state)
}

/// `plinth run`: create and start, then wait for the container's init to
/// exit, forwarding signals to it, and delete the container. Returns the
/// exit status to exit with (128+N for a signal).
pub fn run(
    root: &RuntimeRoot,
    id: &str,
    bundle: &Bundle,
    opts: &CreateOptions,
    detach: bool,
) -> Result<i32, Error> {
    if detach {
        create(root, id, bundle, opts)?;
        super::start(root, id)?;
        return Ok(0);
    }
    // The init is a grandchild: become its subreaper to wait for it.
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| Error::sys("PR_SET_CHILD_SUBREAPER", e))?;
    let signals = super::wait::block_forwarded_signals()?;
    let created = create_inner(root, id, bundle, opts, true)?;
    let status = match super::start(root, id) {
        Ok(()) => super::wait::wait_forwarding(
            nix::unistd::Pid::from_raw(created.state.pid),
            &signals,
            created.console.as_ref(),
        ),
        Err(e) => Err(e),
    };
    // The init closes the channel when it execs; a message means it
    // failed between start and exec.
    let status = match created.channel.recv() {
        Ok(Some((Message::Failed(e), _))) => Err(e.into()),
        _ => status,
    };
    let deleted = super::delete(root, id, true);
    let status = status?;
    deleted?;
    Ok(status)
}

fn invalid(bundle: &Bundle, field: impl Into<String>, message: impl Into<String>) -> Error {
    Error::InvalidConfig {
        path: bundle.dir().join("config.json"),
        field: field.into(),
        message: message.into(),
    }
}

struct Created {
    state: ContainerState,
    console: Option<OwnedFd>,
    channel: Channel,
}

fn create_inner(
    root: &RuntimeRoot,
    id: &str,
    bundle: &Bundle,
    opts: &CreateOptions,
    foreground: bool,
) -> Result<Created, Error> {
    let dir = root.container_dir(id)?;
    let spec: &Spec = bundle.spec();
    let process = spec
        .process()
        .as_ref()
        .expect("Bundle::load checks process");
    check_process(process, "process").map_err(|(f, m)| invalid(bundle, f, m))?;
    attrs::check_rlimits(
        process.rlimits().as_deref().unwrap_or(&[]),
        "process.rlimits",
    )
    .map_err(|(f, m)| invalid(bundle, f, m))?;
    let linux = spec.linux().clone().unwrap_or_default();
    // What a mount asks for that cannot work is said before anything is
    // made: an unsupported option, a bind source that does not exist.
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let has = |names: &[&str]| {
            m.options()
                .iter()
                .flatten()
                .any(|o| names.contains(&o.as_str()))
        };
        if has(&["idmap", "ridmap"]) {
            return Err(invalid(
                bundle,
                format!("mounts[{i}].options"),
                "idmap mounts are not supported by plinth yet",
            ));
        }
        let is_bind = has(&["bind", "rbind"]);
        if let (true, Some(src)) = (is_bind, m.source()) {
            let src = bundle.dir().join(src);
            if let Err(e) = std::fs::metadata(&src) {
                return Err(invalid(
                    bundle,
                    format!("mounts[{i}].source"),
                    format!("{}: {e}", src.display()),
                ));
            }
        }
    }
    if process.terminal().unwrap_or(false) && !foreground && opts.console_socket.is_none() {
        return Err(invalid(
            bundle,
            "process.terminal",
            "a detached container's terminal needs --console-socket to receive it",
        ));
    }

    let mut join = Vec::new();
    let mut unshare = CloneFlags::empty();
    for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
        let flag = ns_flag(ns.typ());
        match ns.path() {
            Some(p) => {
                let fd =
                    open(p, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| {
                        invalid(
                            bundle,
                            format!("linux.namespaces[{i}].path"),
                            format!("{}: {e}", p.display()),
                        )
                    })?;
                join.push(JoinNs {
                    kind: flag,
                    fd,
                    what: format!("linux.namespaces[{i}] {}", p.display()),
                });
            }
            None => unshare |= flag,
        }
    }
    if !unshare.contains(CloneFlags::CLONE_NEWNS) {
        return Err(invalid(
            bundle,
            "linux.namespaces",
            "a new mount namespace is required (plinth builds the root filesystem in it)",
        ));
    }
    let new_userns = unshare.contains(CloneFlags::CLONE_NEWUSER);
    let uid_maps = linux.uid_mappings().clone().unwrap_or_default();
    let gid_maps = linux.gid_mappings().clone().unwrap_or_default();
    if new_userns && (uid_maps.is_empty() || gid_maps.is_empty()) {
        return Err(invalid(
            bundle,
            "linux.uidMappings",
            "a new user namespace needs uidMappings and gidMappings",
        ));
    }
    let in_userns = new_userns || join.iter().any(|j| j.kind == CloneFlags::CLONE_NEWUSER);
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty())
        && !unshare.contains(CloneFlags::CLONE_NEWUTS)
    {
        return Err(invalid(
            bundle,
            "hostname",
            "setting it needs a new uts namespace",
        ));
    }
    let seccomp = match linux.seccomp() {
        Some(s) => Some(Filter::compile(s)?),
        None => None,
    };
    let labels = Labels::for_process(process);

    // From here on, things are made; `undo` removes them on failure.
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(root.path())
        .map_err(|e| Error::io(root.path(), e))?;
    match fs::DirBuilder::new().mode(0o711).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::Exists(id.to_string()))
        }
        Err(e) => return Err(Error::io(&dir, e)),
    }
    let mut undo = Undo {
        dir: dir.clone(),
        cgroup: None,
        armed: true,
    };
    let fifo_path = dir.join(EXEC_FIFO);
    nix::unistd::mkfifo(&fifo_path, Mode::from_bits_truncate(0o600))
        .map_err(|e| Error::sys(format!("mkfifo {}", fifo_path.display()), e))?;
    // The init opens it as the container's root, which a user namespace
    // maps to another host uid: hand the fifo to that uid, as runc does.
    let host_root = |maps: &[oci_spec::runtime::LinuxIdMapping]| {
        maps.iter()
            .find(|m| m.container_id() == 0)
            .map(|m| m.host_id())
    };
    let root_ids = if new_userns {
        Some((host_root(&uid_maps), host_root(&gid_maps)))
    } else if let Some(j) = join.iter().find(|j| j.kind == CloneFlags::CLONE_NEWUSER) {
        // A user namespace joined by path: its maps say who its root is.
        Some(joined_root_ids(&j.fd).map_err(|e| Error::sys(j.what.clone(), e))?)
    } else {
        None
    };
    if let Some((uid, gid)) = root_ids {
        nix::unistd::chown(
            &fifo_path,
            uid.map(nix::unistd::Uid::from_raw),
            gid.map(nix::unistd::Gid::from_raw),
        )
        .map_err(|e| Error::sys(format!("chown {}", fifo_path.display()), e))?;
    }
    let fifo = open(&fifo_path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::sys(format!("open {}", fifo_path.display()), e))?;

    let inherit: Vec<String> = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(crate::cgroups::V1_INHERIT_ANNOTATION))
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let cgroup = Cgroup::open_inheriting(
        &crate::cgroups::Layout::detect()?,
        linux.cgroups_path().as_ref().and_then(|p| p.to_str()),
        id,
        &inherit,
        in_userns,
    )?;
    cgroup.create()?;
    undo.cgroup = Some(cgroup.clone());
    // A container without a device list still gets the default policy:
    // the default devices and nothing else (an empty list says so). One in
    // a user namespace that asked for no devices cgroup gets none: it can
    // reach no device that the policy would keep from it.
    let mut resources = linux.resources().clone().unwrap_or_default();
    if cgroup.inherits("devices") {
        resources.set_devices(None);
    } else if resources.devices().is_none() {
        resources.set_devices(Some(Vec::new()));
    }
    cgroup.apply(&resources)?;

    let created = state::now_rfc3339();
    let annotations = spec.annotations().clone().unwrap_or_default();
    let mut st = ContainerState {
        oci_version: crate::OCI_VERSION.to_string(),
        id: id.to_string(),
        status: Status::Creating,
        pid: 0,
        bundle: bundle.dir().to_path_buf(),
        annotations,
        init_start_time: 0,
        created,
        cgroup: Some(cgroup.clone()),
        hooks: spec.hooks().clone(),
        rootfs: bundle.rootfs().to_path_buf(),
        owner: nix::unistd::getuid().as_raw(),
        shared_pid_ns: !unshare.contains(CloneFlags::CLONE_NEWPID)
            && !join.iter().any(|j| j.kind == CloneFlags::CLONE_NEWPID),
        spec: Some(spec.clone()),
    };
    let hook_state = st.oci_state();
    let terminal = process.terminal().unwrap_or(false);
    let listener_path: Option<PathBuf> = seccomp
        .as_ref()
        .and_then(|f| f.listener_path().map(PathBuf::from));
    let listener_meta: Option<String> = seccomp
        .as_ref()
        .and_then(|f| f.listener_metadata().map(String::from));
    let args = ChildArgs {
        id,
        spec,
        process,
        mode: ChildMode::Init {
            bundle: bundle.dir(),
            rootfs: bundle.rootfs(),
            no_pivot: opts.no_pivot,
            fifo: Some(&fifo),
            foreground,
        },
        join,
        unshare,
        seccomp,
        labels,
        preserve_fds: opts.preserve_fds,
        no_new_keyring: opts.no_new_keyring,
        terminal,
        in_userns,
    };
    let mut parent = Parent {
        cgroup: Some(&cgroup),
        uid_mappings: &uid_maps,
        gid_mappings: &gid_maps,
        console_socket: opts.console_socket.as_deref(),
        hooks: spec.hooks().as_ref(),
        hook_state: hook_state.clone(),
        oom_score_adj: process.oom_score_adj(),
        listener: listener_path
            .as_deref()
            .map(|p| (p, listener_meta.as_deref())),
        container_state: hook_state,
    };
    let spawned = spawn(args, &mut parent, true)?;
    st.pid = spawned.pid.as_raw();
    st.init_start_time = state::proc_start_time(spawned.pid)
        .map(|(t, _)| t)
        .ok_or_else(|| Error::Unsupported("the container's init exited during create".into()))?;
    st.status = Status::Created;
    st.save(&dir)?;
    if let Some(pf) = &opts.pid_file {
        state::write_pid_file(pf, spawned.pid)?;
    }
    undo.armed = false;
    Ok(Created {
        state: st,
        console: spawned.console,
        channel: spawned.channel,
    })
}

/// The host uid and gid of root in the user namespace `userns`, read from
/// its `uid_map` and `gid_map` by a child that joins it (a namespace has
/// no maps of its own to read from outside).
fn joined_root_ids(userns: &OwnedFd) -> nix::Result<(Option<u32>, Option<u32>)> {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    let (r, w) = nix::unistd::pipe()?;
    match crate::sys::fork()? {
        nix::unistd::ForkResult::Child => {
            drop(r);
            // The exit status is the errno of what failed.
            let code = nix::sched::setns(userns.as_fd(), CloneFlags::CLONE_NEWUSER)
                .map_err(std::io::Error::from)
                .and_then(|()| {
                    let uid = fs::read_to_string("/proc/self/uid_map");
                    let gid = fs::read_to_string("/proc/self/gid_map");
                    let text = format!("{}-\n{}", uid?, gid?);
                    fs::File::from(w).write_all(text.as_bytes())
                })
                .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO));
            crate::sys::exit_now(code.err().unwrap_or(0))
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(w);
            let mut text = String::new();
            let read = fs::File::from(r).read_to_string(&mut text);
            let status = nix::sys::wait::waitpid(child, None)?;
            match status {
                nix::sys::wait::WaitStatus::Exited(_, 0) => {}
                nix::sys::wait::WaitStatus::Exited(_, code) => {
                    return Err(nix::errno::Errno::from_raw(code))
                }
                _ => return Err(nix::errno::Errno::ECHILD),
            }
            if read.is_err() {
                return Err(nix::errno::Errno::EIO);
            }
            let (uid, gid) = text.split_once("-\n").unwrap_or((&text, ""));
            Ok((root_of_map(uid), root_of_map(gid)))
        }
    }
}

/// The outside id of inside id 0 in an `uid_map`/`gid_map` text.
fn root_of_map(text: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        let f: Vec<u32> = l
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        match f[..] {
            [inside, outside, count] if inside == 0 && count > 0 => Some(outside),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::root_of_map;

    #[test]
    fn root_of_a_map() {
        assert_eq!(
            root_of_map("         0     100000      65536\n"),
            Some(100000)
        );
        assert_eq!(root_of_map("1000 1000 1\n0 5000 1\n"), Some(5000));
        assert_eq!(root_of_map("1 5000 10\n"), None);
        assert_eq!(root_of_map(""), None);
    }
}
