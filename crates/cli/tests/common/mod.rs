//! Shared fixtures for the `plinth` CLI tests: a per-test directory, a ripgrep-style
//! `TestCommand`, the busybox bundle builder, root/tool requirements, and the host
//! snapshot that bad-input tests compare before and after a failing command.
//!
//! This module owns how a test drives a binary (time limit, captured output, readable
//! failure reports) and how it builds its fixtures at test time from the host's static
//! `/bin/busybox`; it never uses the network. What plinth should do lives in the test files.
//!
//! The runtime under test is the `plinth` binary cargo built for this package. Setting
//! `PLINTH_TEST_RUNTIME` to another runc-compatible binary (e.g. `runc`) runs the same
//! tests against it, which is how the tests themselves are checked
//! (`PLINTH_TEST_OCI_VERSION` changes the bundles' `ociVersion` for runtimes that refuse
//! 1.2).
//!
//! For `plinth check` (check_exact.rs): `elf_probe` picks ELF files independently of
//! plinth, `oracle` asks glibc's real loader about them, `debian` finds the cached
//! debootstrap roots, and `check_report` reads and compares `plinth check`'s JSON.
//!
//! For `plinth check --syscalls` and `plinth seccomp` (syscalls.rs): `strace` runs a
//! program under the tracer and reads which system calls it really made.
//!
//! For fleet containers (fleet_net.rs, fleet_userns.rs): `fleet` drives `plinth new`,
//! `start`, `ls` on a fleet of the test's own and fetches over HTTP.

// Each test binary uses only part of this module.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::io::Read as _;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

mod bundle;
pub mod check_report;
pub mod debian;
pub mod elf_probe;
pub mod fleet;
mod host;
pub mod oracle;
mod probe;
pub mod strace;

pub use bundle::*;
pub use host::*;
// Only the tests that look inside containers use these.
#[allow(unused_imports)]
pub use probe::*;

/// How long one command may run before the test kills it and fails.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The runtime binary under test: `PLINTH_TEST_RUNTIME` if set, else cargo's `plinth`.
pub fn runtime_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os("PLINTH_TEST_RUNTIME") {
        Some(rt) if !rt.is_empty() => {
            let path = resolve_program(&rt)
                .unwrap_or_else(|| panic!("PLINTH_TEST_RUNTIME={rt:?}: not found"));
            eprintln!("note: PLINTH_TEST_RUNTIME: testing {}", path.display());
            path
        }
        _ => PathBuf::from(env!("CARGO_BIN_EXE_plinth")),
    })
    .clone()
}

/// `prog` as an absolute path: as given when it contains a slash, else looked up in PATH.
pub fn resolve_program(prog: &OsStr) -> Option<PathBuf> {
    let p = Path::new(prog);
    if p.components().count() > 1 {
        return fs::canonicalize(p).ok();
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(p))
        .find(|cand| {
            cand.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// True when `CI=true`: then nothing may skip.
pub fn in_ci() -> bool {
    std::env::var("CI").map(|v| v == "true").unwrap_or(false)
}

/// Skip (return false, with the reason on stderr) unless `ok`; under `CI=true` a missing
/// requirement is a failure instead.
pub fn require(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if in_ci() {
        panic!("CI=true and this test needs {what}: refusing to skip");
    }
    eprintln!("skipping: this test needs {what} (under CI=true this would fail)");
    false
}

/// Whether the test can run as root; see [`require`].
pub fn require_root() -> bool {
    let uid = nix::unistd::geteuid();
    require(uid.is_root(), &format!("root (running as uid {uid})"))
}

/// Whether `prog` is on PATH; see [`require`].
pub fn require_tool(prog: &str) -> bool {
    require(
        resolve_program(OsStr::new(prog)).is_some(),
        &format!("`{prog}` on PATH"),
    )
}

/// Root and a static `/bin/busybox`: what every container test needs.
pub fn require_container_host() -> bool {
    require_root()
        && require(
            host_busybox_is_static(),
            "a static /bin/busybox (Debian package busybox-static)",
        )
}

/// A fresh container id, unique within this machine for the test run.
pub fn container_id() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "plinth-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Which kind of host lock a [`TestDir`] holds; see [`TestDir::exclusive`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LockKind {
    Shared,
    Exclusive,
}

/// A machine-wide lock held for a test's lifetime. Tests that start containers hold it
/// shared; tests that compare host state before and after (bad input) hold it exclusive,
/// so no other test's containers, mounts or cgroups appear in their diff, even when the
/// test binaries run at once (cargo-nextest).
struct HostLock {
    _file: fs::File,
}

impl HostLock {
    fn acquire(kind: LockKind) -> HostLock {
        HostLock::acquire_named("plinth-tests.lock", kind)
    }

    fn acquire_named(name: &str, kind: LockKind) -> HostLock {
        let path = std::env::temp_dir().join(name);
        // Read-only is enough for flock, and works for any user once root made the file.
        let file = fs::File::open(&path)
            .or_else(|_| {
                fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
            })
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let op = match kind {
            LockKind::Shared => libc::LOCK_SH,
            LockKind::Exclusive => libc::LOCK_EX,
        };
        loop {
            // SAFETY: flock on a file descriptor we own; no memory is passed.
            let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
            if rc == 0 {
                break;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                panic!("flock {}: {err}", path.display());
            }
        }
        HostLock { _file: file }
    }
}

/// An exclusive machine-wide lock on the file `name` in the temp dir, held until dropped
/// (for fixtures shared between test processes, such as a podman image).
pub struct FileLock {
    _lock: HostLock,
}

/// Take the lock [`FileLock`] describes; blocks until it is free.
pub fn lock_file(name: &str) -> FileLock {
    FileLock {
        _lock: HostLock::acquire_named(name, LockKind::Exclusive),
    }
}

/// A test's own directory: `root/` is the runtime's `--root`; bundles and captured output
/// go beside it. Dropping it checks that no mount was left under it, then removes it.
pub struct TestDir {
    tmp: Option<tempfile::TempDir>,
    root: PathBuf,
    next: AtomicUsize,
    _lock: HostLock,
}

impl TestDir {
    /// A directory for the test `name`, holding the host lock shared.
    pub fn new(name: &str) -> TestDir {
        TestDir::with_lock(name, LockKind::Shared)
    }

    /// A directory for a test that snapshots host state: no other plinth test runs while
    /// it lives.
    pub fn exclusive(name: &str) -> TestDir {
        TestDir::with_lock(name, LockKind::Exclusive)
    }

    fn with_lock(name: &str, kind: LockKind) -> TestDir {
        let lock = HostLock::acquire(kind);
        let tmp = tempfile::Builder::new()
            .prefix(&format!("plinth-{name}-"))
            .tempdir()
            .expect("create test dir");
        let root = tmp.path().join("root");
        fs::create_dir(&root).expect("create root dir");
        TestDir {
            tmp: Some(tmp),
            root,
            next: AtomicUsize::new(0),
            _lock: lock,
        }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        self.tmp.as_ref().expect("live test dir").path()
    }

    /// The runtime's state directory (`--root`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A fresh path inside the directory, not yet created.
    pub fn fresh(&self, stem: &str) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.path().join(format!("{stem}-{n}"))
    }

    /// The runtime under test with `--root` preset.
    pub fn plinth(&self) -> TestCommand {
        let mut cmd = self.command(runtime_bin());
        cmd.arg("--root").arg(&self.root);
        cmd
    }

    /// Any program, with output captured in this directory.
    pub fn command(&self, program: impl AsRef<OsStr>) -> TestCommand {
        TestCommand::new(program, self.path().to_path_buf())
    }

    /// A busybox bundle builder for a bundle inside this directory.
    pub fn bundle(&self) -> BusyboxBundle {
        BusyboxBundle::new(self.fresh("bundle"))
    }

    /// A guard that force-deletes container `id` from this root when dropped.
    pub fn guard(&self, id: &str) -> ContainerGuard {
        ContainerGuard {
            root: self.root.clone(),
            id: id.to_string(),
        }
    }

    /// `state ID` parsed, asserting success.
    pub fn state(&self, id: &str) -> Value {
        self.plinth().args(["state", id]).json()
    }

    /// Poll `state ID` until its status is `status`; fails after `timeout`.
    pub fn wait_for_status(&self, id: &str, status: &str, timeout: Duration) -> Value {
        let start = Instant::now();
        loop {
            let out = self.plinth().args(["state", id]).output();
            if out.status.success() {
                if let Ok(v) = serde_json::from_str::<Value>(&out.stdout) {
                    if v["status"] == status {
                        return v;
                    }
                    if start.elapsed() > timeout {
                        panic!(
                            "container {id}: status {} after {timeout:?}, want {status}\n{out}",
                            v["status"]
                        );
                    }
                }
            }
            if start.elapsed() > timeout {
                panic!("container {id}: never reached {status} within {timeout:?}\n{out}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let Some(tmp) = self.tmp.take() else { return };
        // A mount left under the test dir is a leak, and remove_dir_all must not descend
        // into it: detach every one first (deepest first), then fail the test.
        let leaked = mounts_under(tmp.path());
        for m in leaked.iter().rev() {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = tmp.close();
        if !leaked.is_empty() && !thread::panicking() {
            panic!("mounts left behind under the test dir: {leaked:#?}");
        }
    }
}

/// Force-deletes a container when dropped, so every test cleans up even when it fails.
pub struct ContainerGuard {
    root: PathBuf,
    id: String,
}

impl ContainerGuard {
    /// The guarded container's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let mut cmd = Command::new(runtime_bin());
        cmd.arg("--root")
            .arg(&self.root)
            .args(["delete", "--force", &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Ok(mut child) = cmd.spawn() {
            let _ = wait_timeout(&mut child, Duration::from_secs(30));
        }
    }
}

/// Wait for `child` at most `timeout`; kill it and return None when it runs longer.
pub fn wait_timeout(child: &mut std::process::Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(e) => panic!("wait: {e}"),
        }
        if start.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// What a finished command did.
#[derive(Debug)]
pub struct CmdOutput {
    /// The command line, for reports.
    pub cmdline: String,
    /// Exit status.
    pub status: ExitStatus,
    /// Everything written to stdout, lossily decoded.
    pub stdout: String,
    /// Everything written to stderr, lossily decoded.
    pub stderr: String,
}

impl CmdOutput {
    /// The exit code, or None when killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// stdout without the trailing newline(s).
    pub fn stdout_trimmed(&self) -> &str {
        self.stdout.trim_end_matches('\n')
    }

    /// The lines of stdout.
    pub fn stdout_lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

impl std::fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = match (self.status.code(), self.status.signal()) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => format!("{:?}", self.status),
        };
        write!(
            f,
            "command: {}\nstatus: {status}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.cmdline, self.stdout, self.stderr
        )
    }
}

/// A command under test, in the style of ripgrep's `TestCommand`: build it with `arg`/
/// `args`, then run it with one of the `assert_*`/`stdout`/`json` methods. stdin is
/// `/dev/null`; stdout and stderr go to files in the test dir (not pipes, so a detached
/// container that keeps them open cannot hang the test); every run has a time limit.
pub struct TestCommand {
    cmd: Command,
    dir: PathBuf,
    timeout: Duration,
    /// Descriptors passed to the command, open until it has started.
    passed: Vec<std::os::fd::OwnedFd>,
}

impl TestCommand {
    /// `program` with output captured under `dir`.
    pub fn new(program: impl AsRef<OsStr>, dir: PathBuf) -> TestCommand {
        TestCommand {
            cmd: Command::new(program),
            dir,
            timeout: DEFAULT_TIMEOUT,
            passed: Vec::new(),
        }
    }

    /// Give the command `fd` as its descriptor number `target` (e.g. 3, for
    /// `--preserve-fds`).
    pub fn pass_fd(&mut self, fd: std::os::fd::OwnedFd, target: i32) -> &mut TestCommand {
        use std::os::unix::process::CommandExt;
        let raw = fd.as_raw_fd();
        self.passed.push(fd);
        let hook = move || {
            // SAFETY: dup2 and fcntl are async-signal-safe and touch only descriptors.
            let rc = unsafe {
                if raw == target {
                    libc::fcntl(raw, libc::F_SETFD, 0)
                } else {
                    libc::dup2(raw, target)
                }
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        };
        // SAFETY: the hook only calls async-signal-safe functions.
        unsafe { self.cmd.pre_exec(hook) };
        self
    }

    /// Add one argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut TestCommand {
        self.cmd.arg(arg);
        self
    }

    /// Add arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut TestCommand
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    /// Set an environment variable for the command.
    pub fn env(&mut self, key: impl AsRef<OsStr>, val: impl AsRef<OsStr>) -> &mut TestCommand {
        self.cmd.env(key, val);
        self
    }

    /// Change the time limit (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(&mut self, timeout: Duration) -> &mut TestCommand {
        self.timeout = timeout;
        self
    }

    /// The command line as a shell would show it.
    pub fn cmdline(&self) -> String {
        let mut s = shell_quote(self.cmd.get_program());
        for a in self.cmd.get_args() {
            s.push(' ');
            s.push_str(&shell_quote(a));
        }
        s
    }

    /// Run the command to completion and return what it did, whatever its status. Fails
    /// the test when it cannot start or outlives its time limit.
    pub fn output(&mut self) -> CmdOutput {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let out_path = self.dir.join(format!("cmd-{n}.stdout"));
        let err_path = self.dir.join(format!("cmd-{n}.stderr"));
        let out = fs::File::create(&out_path).expect("create stdout file");
        let err = fs::File::create(&err_path).expect("create stderr file");
        let cmdline = self.cmdline();
        let mut child = self
            .cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{cmdline}`: {e}"));
        self.passed.clear();
        let status = wait_timeout(&mut child, self.timeout);
        let stdout = read_lossy(&out_path);
        let stderr = read_lossy(&err_path);
        let _ = fs::remove_file(&out_path);
        let _ = fs::remove_file(&err_path);
        match status {
            Some(status) => CmdOutput {
                cmdline,
                status,
                stdout,
                stderr,
            },
            None => panic!(
                "`{cmdline}` did not finish within {:?} and was killed\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
                self.timeout
            ),
        }
    }

    /// Run and require exit code 0.
    pub fn assert_success(&mut self) -> CmdOutput {
        let out = self.output();
        if !out.status.success() {
            panic!("expected success\n{out}");
        }
        out
    }

    /// Run and require a clean failure: a non-zero exit code (a crash by signal is not one)
    /// and an explanation on stderr.
    pub fn assert_failure(&mut self) -> CmdOutput {
        let out = self.output();
        match out.code() {
            Some(0) => panic!("expected failure, got success\n{out}"),
            None => panic!("expected a clean failure, got a crash\n{out}"),
            Some(_) => {}
        }
        if out.stderr.trim().is_empty() {
            panic!("expected an error message on stderr\n{out}");
        }
        out
    }

    /// Run and require exactly this exit code.
    pub fn assert_exit_code(&mut self, code: i32) -> CmdOutput {
        let out = self.output();
        if out.code() != Some(code) {
            panic!("expected exit code {code}\n{out}");
        }
        out
    }

    /// Run, require success, return stdout.
    pub fn stdout(&mut self) -> String {
        self.assert_success().stdout
    }

    /// Run, require success, parse stdout as one JSON value.
    pub fn json(&mut self) -> Value {
        let out = self.assert_success();
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON value: {e}\n{out}"))
    }
}

fn read_lossy(path: &Path) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// `s` quoted for a POSIX shell.
pub fn shell_quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
