//! Helpers for tests that look at a container from inside: run a bundle and collect what
//! its process printed, keep one running in the background, compile static C helpers
//! into a rootfs, receive file descriptors on a unix socket (`--console-socket`, the
//! seccomp `listenerPath`), and host-side mounts that are undone when dropped.

use std::fs;
use std::io::IoSliceMut;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{container_id, require_tool, Bundle, CmdOutput, ContainerGuard, TestDir};

/// How long a container may take to reach a state.
pub const SETTLE: Duration = Duration::from_secs(10);

/// `run --bundle B ID` in the foreground, whatever its outcome; the container is
/// force-deleted afterwards.
pub fn run_bundle(td: &TestDir, bundle: &Bundle) -> CmdOutput {
    let id = container_id();
    let _guard = td.guard(&id);
    td.plinth()
        .args(["run", "--bundle"])
        .arg(bundle.path())
        .arg(&id)
        .output()
}

/// `run` in the foreground, requiring success; returns what the process printed.
pub fn run_ok(td: &TestDir, bundle: &Bundle) -> CmdOutput {
    let out = run_bundle(td, bundle);
    if !out.status.success() {
        panic!("expected the container to run and exit 0\n{out}");
    }
    out
}

/// A container started with `run --detach`; force-deleted when dropped.
pub struct Running {
    /// Its id.
    pub id: String,
    /// Its init's pid on the host.
    pub pid: u32,
    /// Deletes it on drop.
    pub guard: ContainerGuard,
}

/// `run --detach` the bundle (plus `extra` flags before `--bundle`) and wait until it
/// runs.
pub fn run_detached_with(td: &TestDir, bundle: &Bundle, extra: &[&str]) -> Running {
    let id = container_id();
    let guard = td.guard(&id);
    td.plinth()
        .args(["run", "--detach"])
        .args(extra)
        .arg("--bundle")
        .arg(bundle.path())
        .arg(&id)
        .assert_success();
    let state = td.wait_for_status(&id, "running", SETTLE);
    let pid = state["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("state has no pid: {state}")) as u32;
    Running { id, pid, guard }
}

/// `run --detach` the bundle and wait until it runs.
pub fn run_detached(td: &TestDir, bundle: &Bundle) -> Running {
    run_detached_with(td, bundle, &[])
}

/// Whether a C compiler that can link static binaries is on PATH; see `require`.
pub fn require_cc() -> bool {
    require_tool("cc")
}

/// Compile the C program `src` with `cc -static` into `dest` (mode 0755).
pub fn compile_static(td: &TestDir, src: &str, dest: &Path) {
    let c = td.fresh("helper").with_extension("c");
    fs::write(&c, src).expect("write C source");
    if let Some(dir) = dest.parent() {
        fs::create_dir_all(dir).expect("create helper dir");
    }
    let out = td
        .command("cc")
        .args(["-static", "-O1", "-o"])
        .arg(dest)
        .arg(&c)
        .output();
    assert!(out.status.success(), "cc -static failed\n{out}");
}

/// One message received on a unix socket: its data and the descriptors it carried.
#[derive(Debug)]
pub struct Received {
    /// The bytes of the message (all of them, up to end-of-file, for the listener).
    pub data: Vec<u8>,
    /// The `SCM_RIGHTS` descriptors of the first message.
    pub fds: Vec<OwnedFd>,
}

/// A unix stream listener that accepts one connection in a thread and collects what the
/// peer sends: the first message's descriptors, and every byte until end-of-file.
pub struct FdReceiver {
    /// The socket's path.
    pub path: PathBuf,
    handle: Option<JoinHandle<Received>>,
}

impl FdReceiver {
    /// Listen at `path`.
    pub fn bind(path: PathBuf) -> FdReceiver {
        let listener =
            UnixListener::bind(&path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            recv_all(std::os::fd::AsRawFd::as_raw_fd(&stream))
        });
        FdReceiver {
            path,
            handle: Some(handle),
        }
    }

    /// Wait (at most `timeout`) for the peer to connect and finish.
    pub fn wait(mut self, timeout: Duration) -> Received {
        let handle = self.handle.take().expect("waited once");
        let start = std::time::Instant::now();
        while !handle.is_finished() {
            if start.elapsed() > timeout {
                panic!(
                    "nothing complete arrived on {} within {timeout:?}",
                    self.path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        handle.join().expect("receiver thread")
    }
}

fn recv_all(fd: RawFd) -> Received {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut data = Vec::new();
    let mut fds = Vec::new();
    loop {
        let mut buf = vec![0u8; 65536];
        let mut cmsg = nix::cmsg_space!([RawFd; 8]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = match recvmsg::<()>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(m) => m,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => panic!("recvmsg: {e}"),
        };
        for c in msg.cmsgs().expect("cmsgs") {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: the kernel just installed these descriptors in this process.
                fds.extend(raw.into_iter().map(|r| unsafe { OwnedFd::from_raw_fd(r) }));
            }
        }
        let n = msg.bytes;
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
    }
    Received { data, fds }
}

/// A host mount made by a test, detached when dropped (before the `TestDir` checks for
/// leaked mounts, if declared after it).
pub struct HostMount {
    /// Where it is mounted.
    pub target: PathBuf,
}

impl HostMount {
    fn made(what: &str, target: &Path, r: nix::Result<()>) -> HostMount {
        if let Err(e) = r {
            panic!("{what} {}: {e}", target.display());
        }
        HostMount {
            target: target.to_path_buf(),
        }
    }

    /// A tmpfs at `target`.
    pub fn tmpfs(target: &Path) -> HostMount {
        let r = nix::mount::mount(
            Some("tmpfs"),
            target,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        );
        HostMount::made("mount tmpfs on", target, r)
    }

    /// `source` bind-mounted on `target`.
    pub fn bind(source: &Path, target: &Path) -> HostMount {
        let r = nix::mount::mount(
            Some(source),
            target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        );
        HostMount::made("bind mount on", target, r)
    }

    /// The mount at `target` made shared (its guard detaches it too).
    pub fn make_shared(target: &Path) -> HostMount {
        let r = nix::mount::mount(
            None::<&str>,
            target,
            None::<&str>,
            nix::mount::MsFlags::MS_SHARED,
            None::<&str>,
        );
        HostMount::made("make shared", target, r)
    }
}

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.target, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The host's view of a file: `readlink` of a `/proc` link, for namespace inodes.
pub fn readlink(path: impl AsRef<Path>) -> String {
    fs::read_link(path.as_ref())
        .unwrap_or_else(|e| panic!("readlink {}: {e}", path.as_ref().display()))
        .to_string_lossy()
        .into_owned()
}

/// The field `key` of `/proc/<pid>/status`-style text (`"CapEff"` → its value).
pub fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}
