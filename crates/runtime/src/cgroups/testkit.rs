//! Test support for the cgroups module (compiled only for tests): the
//! root check, unique cgroup names, a guard that destroys a test cgroup
//! even when the test fails, and a forked child process that waits to be
//! moved into a cgroup and then reports whether it can open devices.
//!
//! The child is made with a raw `fork()` because the test binary is
//! multi-threaded; between fork and `_exit` it only makes async-signal-safe
//! libc calls on memory prepared before the fork.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{pipe, read, write, Pid};

use super::{Cgroup, Layout};

/// Whether a root-only test can run. Without root it prints why it skips,
/// unless `CI=true`, where it fails instead.
pub(crate) fn need_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: needs root, and CI=true forbids skipping");
    }
    eprintln!("skipping {test}: needs root");
    false
}

/// Prints why a test skips on this host's layout.
pub(crate) fn skip(test: &str, reason: &str) {
    eprintln!("skipping {test}: {reason}");
}

/// The host's layout.
pub(crate) fn host_layout() -> Layout {
    Layout::detect().expect("detect the cgroup layout")
}

/// An absolute cgroups path no other test (or test run) uses.
pub(crate) fn unique(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "/plinth-test-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Destroys the cgroup when dropped, so that a failing test cleans up.
pub(crate) struct Guard(pub(crate) Cgroup);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.0.destroy() {
            eprintln!("cleanup of {:?} failed: {e}", self.0.cgroup_path());
        }
    }
}

impl std::ops::Deref for Guard {
    type Target = Cgroup;
    fn deref(&self) -> &Cgroup {
        &self.0
    }
}

/// A forked child that waits for [`Child::probe`], then tries to open each
/// of its paths read-only and reports the errno of each (0 for success).
/// Killed and reaped when dropped.
pub(crate) struct Child {
    pub(crate) pid: Pid,
    go: Option<OwnedFd>,
    results: OwnedFd,
    count: usize,
}

impl Child {
    /// Forks a child that will try to open `paths` when told to.
    pub(crate) fn spawn(paths: &[&str]) -> Child {
        let paths: Vec<CString> = paths.iter().map(|p| CString::new(*p).unwrap()).collect();
        let ptrs: Vec<&CStr> = paths.iter().map(|p| p.as_c_str()).collect();
        let (go_r, go_w) = pipe().unwrap();
        let (res_r, res_w) = pipe().unwrap();
        // SAFETY: the child only calls async-signal-safe functions (read,
        // open, close, write, _exit) on memory allocated before the fork,
        // and never returns.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: see above; the fds are valid in the child.
            unsafe {
                libc::close(go_w.as_raw_fd());
                libc::close(res_r.as_raw_fd());
                let mut byte = 0u8;
                if libc::read(go_r.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) == 1 {
                    for p in &ptrs {
                        let fd = libc::open(p.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                        let errno: i32 = if fd < 0 {
                            *libc::__errno_location()
                        } else {
                            libc::close(fd);
                            0
                        };
                        let bytes = errno.to_ne_bytes();
                        libc::write(res_w.as_raw_fd(), bytes.as_ptr().cast(), 4);
                    }
                    // Wait until the parent goes away or kills us.
                    libc::read(go_r.as_raw_fd(), (&mut byte as *mut u8).cast(), 1);
                }
                libc::_exit(0);
            }
        }
        drop(go_r);
        drop(res_w);
        Child {
            pid: Pid::from_raw(pid),
            go: Some(go_w),
            results: res_r,
            count: ptrs.len(),
        }
    }

    /// Lets the child try its opens and returns the errno of each.
    pub(crate) fn probe(&mut self) -> Vec<i32> {
        let go = self.go.as_ref().expect("probe once");
        write(go, b"x").unwrap();
        let mut out = Vec::new();
        for _ in 0..self.count {
            let mut buf = [0u8; 4];
            let mut got = 0;
            while got < 4 {
                let n = read(&self.results, &mut buf[got..]).unwrap();
                assert!(n > 0, "child exited early");
                got += n;
            }
            out.push(i32::from_ne_bytes(buf));
        }
        out
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = kill(self.pid, Signal::SIGKILL);
        let _ = waitpid(self.pid, None);
    }
}
