//! The one system call that installs a compiled filter:
//! `seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog)`.
//!
//! It is made directly rather than through libseccomp so that loading is a
//! single async-signal-safe call in the container's init, with every flag
//! of the runtime spec available whatever the libseccomp version
//! (`SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` needs libseccomp 2.6).
#![allow(unsafe_code)]

use std::os::fd::{FromRawFd, OwnedFd};

use nix::errno::Errno;

/// What a successful `seccomp(2)` call produced.
pub(super) enum Outcome {
    /// The filter is installed.
    Loaded,
    /// The filter is installed and this is its user-notification fd.
    Listener(OwnedFd),
    /// With `SECCOMP_FILTER_FLAG_TSYNC`: this thread could not be
    /// synchronised, and the filter was not installed.
    TsyncFailed(libc::pid_t),
}

/// Installs `program` on the calling thread with the `SECCOMP_FILTER_FLAG_*`
/// bits of `flags`.
///
/// `program` has at most `BPF_MAXINSNS` (4096) instructions: the caller
/// checked it.
pub(super) fn set_mode_filter(
    program: &[libc::sock_filter],
    flags: libc::c_ulong,
) -> Result<Outcome, Errno> {
    let len = u16::try_from(program.len()).map_err(|_| Errno::EINVAL)?;
    let prog = libc::sock_fprog {
        len,
        // The kernel only reads the program (`copy_from_user`); the
        // pointer is `*mut` in the C declaration only.
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points to `len` initialised instructions borrowed from
    // `program`, which outlives the call; the kernel copies the program and
    // keeps no pointer to it. The call takes no other pointers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
            flags,
            &prog as *const libc::sock_fprog,
        )
    };
    if ret < 0 {
        return Err(Errno::last());
    }
    if flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 {
        let fd = libc::c_int::try_from(ret).map_err(|_| Errno::EBADF)?;
        // SAFETY: with SECCOMP_FILTER_FLAG_NEW_LISTENER a non-negative return
        // value is a new file descriptor (close-on-exec) that nothing else
        // owns: the kernel has just allocated it for this call.
        return Ok(Outcome::Listener(unsafe { OwnedFd::from_raw_fd(fd) }));
    }
    if ret > 0 {
        // Only SECCOMP_FILTER_FLAG_TSYNC returns a positive value without a
        // listener: the id of the thread that could not be synchronised.
        return Ok(Outcome::TsyncFailed(ret as libc::pid_t));
    }
    Ok(Outcome::Loaded)
}

#[cfg(test)]
mod tests {
    use nix::errno::Errno;

    use crate::seccomp::testing::*;
    use crate::seccomp::Filter;

    // Real kernel: each test runs in a re-executed child.

    #[test]
    fn kernel_errno_rules_return_their_errno() {
        if !kernel_has_seccomp() {
            return;
        }
        in_child(
            "seccomp::load::tests::kernel_errno_rules_return_their_errno",
            || {
                let filter = compile(serde_json::json!({
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [
                        {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EXDEV},
                        {"names": ["uname"], "action": "SCMP_ACT_ERRNO"}
                    ]
                }));
                set_no_new_privs();
                assert!(filter.load().unwrap().is_none());
                assert_eq!(nix::unistd::getcwd(), Err(Errno::EXDEV));
                assert_eq!(nix::sys::utsname::uname().map(drop), Err(Errno::EPERM));
                assert!(nix::unistd::getpid().as_raw() > 0);
            },
        );
    }

    #[test]
    fn kernel_argument_conditions_select_calls() {
        if !kernel_has_seccomp() {
            return;
        }
        in_child(
            "seccomp::load::tests::kernel_argument_conditions_select_calls",
            || {
                let filter = compile(serde_json::json!({
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [
                        // personality: only the query 0xffffffff passes.
                        {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EXDEV,
                         "args": [{"index": 0, "value": 0xffff_ffff_u64, "op": "SCMP_CMP_NE"}]},
                        // getpriority(PRIO_PGRP, who > 0) only.
                        {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOTBLK,
                         "args": [
                            {"index": 0, "value": libc::PRIO_PGRP, "op": "SCMP_CMP_EQ"},
                            {"index": 1, "value": 0, "op": "SCMP_CMP_GT"}
                         ]}
                    ]
                }));
                set_no_new_privs();
                filter.load().unwrap();
                let personality = libc::SYS_personality;
                assert!(raw_syscall(personality, [0xffff_ffff, 0, 0]).is_ok());
                assert_eq!(raw_syscall(personality, [0, 0, 0]), Err(Errno::EXDEV));
                let getpriority = libc::SYS_getpriority;
                let pgrp = nix::unistd::getpgrp().as_raw() as libc::c_long;
                let prio_pgrp = libc::PRIO_PGRP as libc::c_long;
                assert!(raw_syscall(getpriority, [prio_pgrp, 0, 0]).is_ok());
                assert_eq!(
                    raw_syscall(getpriority, [prio_pgrp, pgrp, 0]),
                    Err(Errno::ENOTBLK)
                );
                assert!(
                    raw_syscall(getpriority, [libc::PRIO_PROCESS as libc::c_long, 0, 0]).is_ok()
                );
            },
        );
    }

    #[test]
    fn kernel_flags_are_accepted() {
        if !kernel_has_seccomp() {
            return;
        }
        in_child("seccomp::load::tests::kernel_flags_are_accepted", || {
            let filter = compile(serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                          "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
                "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18}]
            }));
            set_no_new_privs();
            assert!(filter.load().unwrap().is_none());
            assert_eq!(nix::unistd::getcwd(), Err(Errno::EXDEV));
            // TSYNC: a thread that existed before the load has the filter too.
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            assert!(status.contains("Seccomp:\t2"), "{status}");
        });
    }

    #[test]
    fn kernel_default_profile_answers_enosys_and_eperm() {
        if !kernel_has_seccomp() {
            return;
        }
        in_child(
            "seccomp::load::tests::kernel_default_profile_answers_enosys_and_eperm",
            || {
                let filter = Filter::compile(&crate::template::default_seccomp()).unwrap();
                set_no_new_privs();
                filter.load().unwrap();
                // Unknown to the profile: ENOSYS.
                assert_eq!(raw_syscall(435 /* clone3 */, [0, 0, 0]), Err(Errno::ENOSYS));
                assert_eq!(raw_syscall(1000, [0, 0, 0]), Err(Errno::ENOSYS));
                // Known and refused: EPERM.
                assert_eq!(raw_syscall(libc::SYS_mount, [0, 0, 0]), Err(Errno::EPERM));
                assert_eq!(
                    raw_syscall(
                        libc::SYS_unshare,
                        [libc::CLONE_NEWUSER as libc::c_long, 0, 0]
                    ),
                    Err(Errno::EPERM)
                );
                // Allowed.
                assert_eq!(
                    raw_syscall(libc::SYS_getpid, [0, 0, 0]),
                    Ok(std::process::id() as libc::c_long)
                );
                // glibc falls back from clone3 to clone: threads and processes
                // still start.
                assert_eq!(std::thread::spawn(|| 7).join().unwrap(), 7);
                let status = std::process::Command::new("true").status().unwrap();
                assert!(status.success());
            },
        );
    }
}
