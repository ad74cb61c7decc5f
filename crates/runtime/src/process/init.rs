//! The children of the fork path.
//!
//! [`stage1`] runs in the first child: it waits until the runtime has put
//! it into the container's cgroup, joins namespaces by fd (the user
//! namespace first, the others before a new user namespace is made),
//! creates the new ones (asking the runtime to write
//! the id maps of a new user namespace), writes time-namespace offsets
//! and forks the container's process, whose pid it reports before it
//! exits. That process runs [`child`]: for a new container it builds the
//! root filesystem, has the runtime run the createRuntime hooks, runs
//! createContainer, pivots, reports `Ready` and blocks on `exec.fifo`
//! until `start`; for `exec` it only sets up its terminal. Both end in
//! [`super::exec_process`].

use std::convert::Infallible;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::Mode;
use nix::unistd::{ForkResult, Gid, Uid};

use super::channel::{Channel, Message};
use super::{console, exec_process, ChildArgs, Mode as ChildMode};
use crate::cgroups::JoinHandles;
use crate::error::{InitError, InitStage};
use crate::hooks;
use crate::rootfs;
use crate::sys;

fn expect_continue(channel: &Channel) -> Result<(), InitError> {
    match channel.recv() {
        Ok(Some((Message::Continue, _))) => Ok(()),
        Ok(other) => Err(InitError::reason(
            InitStage::Protocol,
            "",
            format!("expected Continue, got {other:?}"),
        )),
        Err(e) => Err(InitError::new(InitStage::Protocol, "", e)),
    }
}

/// Set once the runtime has been told `Ready`: from then on the `create`
/// process may be gone, so failures are also written to the container's
/// stderr, where the engine that runs it collects them.
static REPORTED_READY: AtomicBool = AtomicBool::new(false);

fn fail_and_exit(channel: &Channel, e: InitError) -> ! {
    if REPORTED_READY.load(Ordering::Relaxed) {
        let _ = writeln!(std::io::stderr(), "plinth: container init: {e}");
    }
    let _ = channel.send(&Message::Failed(e), None);
    sys::exit_now(1)
}

/// The first child. Never returns.
pub(crate) fn stage1(mut args: ChildArgs<'_>, channel: Channel, cgroup: Option<&JoinHandles>) -> ! {
    // Into the container's cgroup first, while this process still has the
    // host's namespaces and one thread: whatever it forks is born there.
    if let Some(cg) = cgroup {
        if let Err(e) = cg.join_v1() {
            fail_and_exit(
                &channel,
                InitError::reason(InitStage::Cgroup, "", e.to_string()),
            )
        }
    }
    if let Err(e) = stage1_steps(&args, &channel) {
        fail_and_exit(&channel, e)
    }
    match sys::fork() {
        Err(e) => fail_and_exit(&channel, InitError::new(InitStage::Fork, "", e)),
        Ok(ForkResult::Parent { child }) => {
            let code = match channel.send(&Message::Pid(child.as_raw()), None) {
                Ok(()) => 0,
                Err(_) => 1,
            };
            sys::exit_now(code)
        }
        Ok(ForkResult::Child) => {
            let Err(e) = child(&mut args, &channel);
            fail_and_exit(&channel, e)
        }
    }
}

fn stage1_steps(args: &ChildArgs<'_>, channel: &Channel) -> Result<(), InitError> {
    // If the runtime dies before we are done, so do we.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| InitError::new(InitStage::Protocol, "pdeathsig", e))?;
    // Wait until the runtime has placed us in the cgroup (the cgroup2
    // directory, when forking into it was refused), so that a new cgroup
    // namespace is rooted at the container's cgroup.
    expect_continue(channel)?;
    let join_err =
        |j: &super::JoinNs, e| InitError::new(InitStage::JoinNamespace, j.what.clone(), e);
    for j in args
        .join
        .iter()
        .filter(|j| j.kind == CloneFlags::CLONE_NEWUSER)
    {
        setns(j.fd.as_fd(), j.kind).map_err(|e| join_err(j, e))?;
    }
    // The other namespaces given by path are joined before a new user
    // namespace is made, as runc does: a namespace the host's user
    // namespace owns (a network namespace made by the engine) can only be
    // joined with the host's privileges, which the new one has no more.
    // After joining a user namespace by path, its own namespaces can be.
    for j in args
        .join
        .iter()
        .filter(|j| j.kind != CloneFlags::CLONE_NEWUSER)
    {
        setns(j.fd.as_fd(), j.kind).map_err(|e| join_err(j, e))?;
    }
    if args.unshare.contains(CloneFlags::CLONE_NEWUSER) {
        unshare(CloneFlags::CLONE_NEWUSER)
            .map_err(|e| InitError::new(InitStage::UnshareNamespace, "user", e))?;
        channel
            .send(&Message::NeedIdMaps, None)
            .map_err(|e| InitError::new(InitStage::Protocol, "", e))?;
        expect_continue(channel)?;
    }
    if args.in_userns {
        // Become root of the user namespace (uid 0 must be mapped).
        nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .map_err(|e| InitError::new(InitStage::IdMapping, "setresgid 0", e))?;
        nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .map_err(|e| InitError::new(InitStage::IdMapping, "setresuid 0", e))?;
    }
    // A new container's init creates its cgroup namespace itself, once the
    // runtime has moved it into its cgroup (see `init`).
    let mut rest = args.unshare - CloneFlags::CLONE_NEWUSER;
    if matches!(args.mode, ChildMode::Init { .. }) {
        rest -= CloneFlags::CLONE_NEWCGROUP;
    }
    if !rest.is_empty() {
        unshare(rest)
            .map_err(|e| InitError::new(InitStage::UnshareNamespace, format!("{rest:?}"), e))?;
    }
    if rest.contains(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME)) {
        write_time_offsets(args)?;
    }
    Ok(())
}

fn write_time_offsets(args: &ChildArgs<'_>) -> Result<(), InitError> {
    let Some(offsets) = args
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().as_ref())
    else {
        return Ok(());
    };
    let mut text = String::new();
    for (clock, off) in offsets {
        text.push_str(&format!(
            "{clock} {} {}\n",
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0)
        ));
    }
    std::fs::write("/proc/self/timens_offsets", text)
        .map_err(|e| InitError::reason(InitStage::TimeOffsets, "linux.timeOffsets", e.to_string()))
}

/// The container's process (the init of a new container, or an exec'd
/// process). Returns only on failure.
fn child(args: &mut ChildArgs<'_>, channel: &Channel) -> Result<Infallible, InitError> {
    let host_pid = match channel.recv() {
        Ok(Some((Message::Pid(p), _))) => p,
        other => {
            return Err(InitError::reason(
                InitStage::Protocol,
                "",
                format!("expected Pid, got {other:?}"),
            ))
        }
    };
    match args.mode {
        ChildMode::Init { .. } => init(args, channel, host_pid)?,
        ChildMode::Tenant => {
            if args.terminal {
                nix::unistd::setsid()
                    .map_err(|e| InitError::new(InitStage::Console, "setsid", e))?;
                let pty = console::open_pty()?;
                send_console(channel, &pty)?;
                console::attach(&pty.slave)?;
            }
        }
    }
    exec_process(args, channel)
}

fn send_console(channel: &Channel, pty: &console::Pty) -> Result<(), InitError> {
    channel
        .send(&Message::ConsoleMaster, Some(pty.master.as_raw_fd()))
        .map_err(|e| InitError::new(InitStage::Console, "send master", e))?;
    expect_continue(channel)
}

fn init(args: &mut ChildArgs<'_>, channel: &Channel, host_pid: i32) -> Result<(), InitError> {
    let ChildMode::Init {
        bundle,
        rootfs,
        no_pivot,
        fifo,
        foreground,
    } = args.mode
    else {
        unreachable!("init runs for new containers only")
    };
    let spec = args.spec;
    nix::unistd::setsid().map_err(|e| InitError::new(InitStage::Console, "setsid", e))?;
    if !args.no_new_keyring {
        let name = std::ffi::CString::new(format!("_ses.{}", args.id)).unwrap_or_default();
        match sys::join_session_keyring(&name) {
            // Kernels without keys, or a seccomp profile around us.
            Ok(()) | Err(Errno::ENOSYS) => {}
            Err(e) => {
                return Err(InitError::new(
                    InitStage::UnshareNamespace,
                    "session keyring",
                    e,
                ))
            }
        }
    }
    let mut state = serde_json::json!({
        "ociVersion": crate::OCI_VERSION,
        "id": args.id,
        "status": "creating",
        "pid": host_pid,
        "bundle": bundle,
        "annotations": spec.annotations().clone().unwrap_or_default(),
    });
    let cgroupns = args.unshare.contains(CloneFlags::CLONE_NEWCGROUP)
        || args
            .join
            .iter()
            .any(|j| j.kind == CloneFlags::CLONE_NEWCGROUP);
    let new_cgroupns = args.unshare.contains(CloneFlags::CLONE_NEWCGROUP);
    let mut join_cgroup = || {
        // The runtime says Continue once this process is in its cgroup.
        expect_continue(channel)?;
        if new_cgroupns {
            unshare(CloneFlags::CLONE_NEWCGROUP)
                .map_err(|e| InitError::new(InitStage::UnshareNamespace, "cgroup", e))?;
        }
        Ok(())
    };
    rootfs::prepare(
        spec,
        &rootfs::RootfsOptions {
            rootfs,
            bundle,
            userns: args.in_userns,
            cgroupns,
        },
        &mut join_cgroup,
    )?;
    channel
        .send(&Message::RunRuntimeHooks, None)
        .map_err(|e| InitError::new(InitStage::Protocol, "", e))?;
    expect_continue(channel)?;
    let hooks = spec.hooks().as_ref();
    if let Some(h) = hooks.and_then(|h| h.create_container().as_ref()) {
        hooks::run(hooks::Kind::CreateContainer, h, &state)
            .map_err(|e| InitError::reason(InitStage::Hook, "createContainer", e.to_string()))?;
    }
    rootfs::pivot(rootfs, no_pivot)?;
    let pty = if args.terminal {
        Some(console::open_pty()?)
    } else {
        None
    };
    rootfs::finish(spec, pty.as_ref().map(|p| &p.slave))?;
    if let Some(pty) = &pty {
        send_console(channel, pty)?;
        console::attach(&pty.slave)?;
    }
    drop(pty);
    let uts = args.unshare.contains(CloneFlags::CLONE_NEWUTS);
    if let Some(h) = spec.hostname().as_ref().filter(|h| !h.is_empty()) {
        if !uts {
            return Err(InitError::reason(
                InitStage::Hostname,
                "hostname",
                "needs a new uts namespace",
            ));
        }
        nix::unistd::sethostname(h)
            .map_err(|e| InitError::new(InitStage::Hostname, h.clone(), e))?;
    }
    if let Some(d) = spec.domainname().as_ref().filter(|d| !d.is_empty()) {
        if !uts {
            return Err(InitError::reason(
                InitStage::Domainname,
                "domainname",
                "needs a new uts namespace",
            ));
        }
        sys::setdomainname(d).map_err(|e| InitError::new(InitStage::Domainname, d.clone(), e))?;
    }
    // A notify listener must reach the runtime while it still waits.
    if args.seccomp.as_ref().is_some_and(|f| f.needs_listener()) {
        let f = args.seccomp.take().expect("checked above");
        let listener = f
            .load()
            .map_err(|e| InitError::reason(InitStage::Seccomp, "linux.seccomp", e.to_string()))?;
        if let Some(fd) = listener {
            channel
                .send(&Message::SeccompListener, Some(fd.as_raw_fd()))
                .map_err(|e| InitError::new(InitStage::Seccomp, "listener", e))?;
            expect_continue(channel)?;
        }
    }
    channel
        .send(&Message::Ready, None)
        .map_err(|e| InitError::new(InitStage::Protocol, "", e))?;
    REPORTED_READY.store(!foreground, Ordering::Relaxed);
    if let Some(fifo) = fifo {
        // Blocks until `start` opens the fifo for reading.
        let path = format!("/proc/self/fd/{}", fifo.as_raw_fd());
        let fd = loop {
            match open(
                path.as_str(),
                OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                Err(Errno::EINTR) => continue,
                other => break other,
            }
        }
        .map_err(|e| InitError::new(InitStage::Protocol, "exec.fifo", e))?;
        let mut f = std::fs::File::from(fd);
        let _ = f.write_all(b"0");
        // Kept open (it is close-on-exec) through the startContainer hooks
        // until the exec: `start` waits for its end-of-file, so that the
        // poststart hooks run after the user's program was executed.
        let _ = std::os::fd::IntoRawFd::into_raw_fd(f);
    }
    state["status"] = "created".into();
    if let Some(h) = hooks.and_then(|h| h.start_container().as_ref()) {
        hooks::run(hooks::Kind::StartContainer, h, &state)
            .map_err(|e| InitError::reason(InitStage::Hook, "startContainer", e.to_string()))?;
    }
    Ok(())
}
