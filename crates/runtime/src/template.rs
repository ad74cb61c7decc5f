//! The default `config.json` written by `plinth spec`, and its seccomp
//! profile.
//!
//! [`default_spec`] is what `runc spec` writes (same process, mounts,
//! masked and read-only paths, namespaces, `--rootless` rewrite) with
//! `hostname` "plinth" and a seccomp profile, [`default_seccomp`]. This
//! module only builds data; writing the file is the binary's business and
//! compiling the profile is [`crate::seccomp`]'s.
//!
//! # The default seccomp profile
//!
//! An allowlist in the spirit of Docker's and containerd's default
//! profiles, for an unprivileged container holding the three default
//! capabilities (`CAP_AUDIT_WRITE`, `CAP_KILL`, `CAP_NET_BIND_SERVICE`).
//! Every syscall falls in one of three classes:
//!
//! - **allowed**: the lists below, some with argument conditions
//!   (`personality` with the personas Docker allows, `clone` without
//!   namespace flags);
//! - **refused**: known syscalls that a container must not use (mounting,
//!   modules, kexec, the clock, keyrings, namespaces, BPF, ...) fail with
//!   `EPERM`, the answer a program gets when it lacks the privilege;
//! - **unknown**: everything else, including syscalls newer than this
//!   profile, fails with `ENOSYS` (the default action), the answer of a
//!   kernel that lacks the call. Libraries fall back on `ENOSYS` and treat
//!   `EPERM` as fatal: glibc 2.34+ tries `clone3` and falls back to `clone`
//!   on `ENOSYS` only. `clone3` is therefore deliberately in this class: its
//!   flags live in memory, where seccomp cannot check them for namespace
//!   bits, so it cannot be allowed the way `clone` is.
//!
//! `ptrace`, `process_vm_readv`/`writev`, `kcmp`, `pidfd_getfd` and
//! `process_madvise` are allowed (Docker allows them from Linux 4.8): since
//! 4.8 the kernel re-checks the filter after a tracer rewrites a syscall, so
//! a traced process cannot escape it, and the kernel's ptrace access checks
//! keep a container from reaching anything but its own processes. On an
//! older kernel a container could use `ptrace` to bypass this profile.
//!
//! Syscalls that libseccomp 2.5.4 does not know (`mseal`, `statmount`,
//! `listmount`, `lsm_*`, `*xattrat`, `file_getattr`/`file_setattr`,
//! `open_tree_attr`, `uretprobe`) are not listed: with that libseccomp
//! every `plinth create` would skip them with a warning. They fall in the
//! unknown class, and callers see a kernel that lacks them. Removed syscalls (`_sysctl`, `create_module`,
//! `nfsservctl`, ...) are left to the default too.
//!
//! `personality` with another persona, and `clone` with namespace flags,
//! also fail: `clone` with `EPERM` (a refused privilege), `personality`
//! with `ENOSYS` (the default; seccomp cannot express "none of these
//! values" in a single rule).

use oci_spec::runtime::{
    Arch, Capability, LinuxCapabilities, LinuxDeviceCgroup, LinuxIdMapping, LinuxIdMappingBuilder,
    LinuxNamespace, LinuxNamespaceType, LinuxResources, LinuxSeccomp, LinuxSeccompAction,
    LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompOperator, LinuxSyscall, Mount,
    PosixRlimitBuilder, PosixRlimitType, Process, Root, Spec, User,
};

/// The answer to a refused syscall.
const EPERM: u32 = libc::EPERM as u32;

/// The answer to a syscall the profile does not know.
const ENOSYS: u32 = libc::ENOSYS as u32;

// ---------------------------------------------------------------------------
// Allowed syscalls, by purpose. Names as libseccomp spells them; the
// 32-bit names (`*32`, `*64`, `*_time64`, `socketcall`, `ipc`, ...) serve
// x86 and arm binaries on 64-bit kernels.
// ---------------------------------------------------------------------------

/// Creating, running and reaping processes; process groups and sessions.
#[rustfmt::skip]
const PROCESSES: &[&str] = &[
    "execve", "execveat", "exit", "exit_group", "fork", "vfork", "wait4", "waitid", "waitpid",
    "getpid", "getppid", "gettid", "getpgid", "setpgid", "getpgrp", "getsid", "setsid",
    "set_tid_address", "set_robust_list", "get_robust_list", "rseq", "restart_syscall", "prctl",
    "seccomp", "pidfd_open", "pidfd_send_signal",
];

/// Credentials and limits (the kernel checks the capabilities they need).
#[rustfmt::skip]
const CREDENTIALS: &[&str] = &[
    "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups", "setuid",
    "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid", "setfsgid",
    "setgroups", "capget", "capset", "getrlimit", "setrlimit", "prlimit64", "ugetrlimit",
    "getrusage", "times", "umask", "getpriority", "setpriority", "nice",
];

/// i386 and arm: the credential calls that take 32-bit ids (there the
/// unsuffixed ones take 16-bit ids).
#[rustfmt::skip]
const CREDENTIALS_32: &[&str] = &[
    "getuid32", "geteuid32", "getgid32", "getegid32", "getresuid32", "getresgid32",
    "getgroups32", "setuid32", "setgid32", "setreuid32", "setregid32", "setresuid32",
    "setresgid32", "setfsuid32", "setfsgid32", "setgroups32", "chown32", "fchown32", "lchown32",
];

/// Signals, timers that deliver them, and waiting for them.
#[rustfmt::skip]
const SIGNALS: &[&str] = &[
    "kill", "tkill", "tgkill", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
    "rt_sigsuspend", "rt_sigpending", "rt_sigtimedwait", "rt_sigtimedwait_time64",
    "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack", "signalfd", "signalfd4", "sigaction",
    "sigprocmask", "sigreturn", "sigsuspend", "sigpending", "pause", "alarm", "getitimer",
    "setitimer",
];

/// The address space: mappings, protection, locking, barriers.
#[rustfmt::skip]
const MEMORY: &[&str] = &[
    "brk", "mmap", "mmap2", "munmap", "mremap", "mprotect", "madvise", "mincore", "msync",
    "mlock", "mlock2", "munlock", "mlockall", "munlockall", "remap_file_pages", "membarrier",
    "memfd_create", "memfd_secret", "pkey_alloc", "pkey_free", "pkey_mprotect",
    "map_shadow_stack", "process_mrelease",
];

/// Opening, reading, writing and syncing files and descriptors.
#[rustfmt::skip]
const FILE_IO: &[&str] = &[
    "open", "openat", "openat2", "creat", "close", "close_range", "read", "write", "readv",
    "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2", "lseek",
    "_llseek", "dup", "dup2", "dup3", "fcntl", "fcntl64", "flock", "ioctl", "fsync",
    "fdatasync", "sync", "syncfs", "sync_file_range", "truncate", "truncate64", "ftruncate",
    "ftruncate64", "fallocate", "fadvise64", "fadvise64_64", "readahead", "sendfile",
    "sendfile64", "splice", "tee", "vmsplice", "copy_file_range", "cachestat",
];

/// Inodes: metadata, names, directories, permissions, timestamps.
#[rustfmt::skip]
const FILESYSTEM: &[&str] = &[
    "stat", "fstat", "lstat", "stat64", "fstat64", "lstat64", "newfstatat", "fstatat64",
    "statx", "statfs", "fstatfs", "statfs64", "fstatfs64", "access", "faccessat", "faccessat2",
    "getcwd", "chdir", "fchdir", "getdents", "getdents64", "mkdir", "mkdirat", "rmdir",
    "rename", "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat", "unlink",
    "unlinkat", "readlink", "readlinkat", "mknod", "mknodat", "chmod", "fchmod", "fchmodat",
    "fchmodat2", "chown", "fchown", "lchown", "fchownat", "utime", "utimes", "futimesat",
    "utimensat", "utimensat_time64",
];

/// Extended attributes.
#[rustfmt::skip]
const XATTRS: &[&str] = &[
    "getxattr", "lgetxattr", "fgetxattr", "setxattr", "lsetxattr", "fsetxattr", "listxattr",
    "llistxattr", "flistxattr", "removexattr", "lremovexattr", "fremovexattr",
];

/// Waiting on many descriptors; event, timer and change-notification fds;
/// POSIX asynchronous I/O.
#[rustfmt::skip]
const EVENTS: &[&str] = &[
    "select", "_newselect", "pselect6", "pselect6_time64", "poll", "ppoll", "ppoll_time64",
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2",
    "eventfd", "eventfd2", "timerfd_create", "timerfd_settime", "timerfd_settime64",
    "timerfd_gettime", "timerfd_gettime64", "inotify_init", "inotify_init1",
    "inotify_add_watch", "inotify_rm_watch", "fanotify_mark", "io_setup", "io_destroy",
    "io_submit", "io_cancel", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
];

/// Reading clocks, sleeping, per-process timers.
#[rustfmt::skip]
const TIME: &[&str] = &[
    "time", "gettimeofday", "clock_gettime", "clock_gettime64", "clock_getres",
    "clock_getres_time64", "clock_nanosleep", "clock_nanosleep_time64", "nanosleep",
    "timer_create", "timer_delete", "timer_settime", "timer_settime64", "timer_gettime",
    "timer_gettime64", "timer_getoverrun",
];

/// Scheduling, CPU affinity, I/O priority, futexes.
#[rustfmt::skip]
const SCHEDULING: &[&str] = &[
    "sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getparam", "sched_setparam",
    "sched_getscheduler", "sched_setscheduler", "sched_get_priority_max",
    "sched_get_priority_min", "sched_rr_get_interval", "sched_rr_get_interval_time64",
    "sched_getattr", "sched_setattr", "getcpu", "ioprio_get", "ioprio_set", "futex",
    "futex_time64", "futex_waitv", "futex_wait", "futex_wake", "futex_requeue",
];

/// Pipes, System V IPC and POSIX message queues (namespaced by the ipc
/// namespace).
#[rustfmt::skip]
const IPC: &[&str] = &[
    "pipe", "pipe2", "ipc", "msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop",
    "semtimedop", "semtimedop_time64", "semctl", "shmget", "shmat", "shmdt", "shmctl",
    "mq_open", "mq_unlink", "mq_timedsend", "mq_timedsend_time64", "mq_timedreceive",
    "mq_timedreceive_time64", "mq_notify", "mq_getsetattr",
];

/// Sockets (namespaced by the network namespace).
#[rustfmt::skip]
const NETWORK: &[&str] = &[
    "socket", "socketpair", "socketcall", "bind", "connect", "listen", "accept", "accept4",
    "getsockname", "getpeername", "getsockopt", "setsockopt", "send", "sendto", "sendmsg",
    "sendmmsg", "recv", "recvfrom", "recvmsg", "recvmmsg", "recvmmsg_time64", "shutdown",
];

/// About the system, its own host name (namespaced by the uts namespace),
/// randomness.
#[rustfmt::skip]
const SYSTEM: &[&str] = &[
    "uname", "sysinfo", "getrandom", "sethostname", "setdomainname",
];

/// Inspecting and debugging the container's own processes (see the module
/// documentation on kernels before 4.8).
#[rustfmt::skip]
const DEBUGGING: &[&str] = &[
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "process_madvise",
];

/// Sandboxing oneself further.
const SELF_RESTRICTION: &[&str] = &[
    "landlock_create_ruleset",
    "landlock_add_rule",
    "landlock_restrict_self",
];

/// x86: thread-local storage and segment descriptors (wine, old threading
/// libraries).
#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
const ARCH_SPECIFIC: &[&str] = &[
    "arch_prctl",
    "modify_ldt",
    "set_thread_area",
    "get_thread_area",
];

/// arm: cache maintenance, thread pointer, the arm argument orders.
#[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
#[rustfmt::skip]
const ARCH_SPECIFIC: &[&str] = &[
    "arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush",
    "set_tls",
];

/// Other architectures: nothing specific.
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm"
)))]
const ARCH_SPECIFIC: &[&str] = &[];

/// Every unconditionally allowed group.
const ALLOWED: &[&[&str]] = &[
    PROCESSES,
    CREDENTIALS,
    CREDENTIALS_32,
    SIGNALS,
    MEMORY,
    FILE_IO,
    FILESYSTEM,
    XATTRS,
    EVENTS,
    TIME,
    SCHEDULING,
    IPC,
    NETWORK,
    SYSTEM,
    DEBUGGING,
    SELF_RESTRICTION,
    ARCH_SPECIFIC,
];

/// The personas a container may switch to (`personality(2)`): Linux,
/// 32-bit Linux, each with `UNAME26`, and the query `0xffffffff`.
const PERSONAS: &[u64] = &[0x0, 0x0008, 0x0002_0000, 0x0002_0008, 0xffff_ffff];

/// The `clone` flags that create namespaces: `CLONE_NEWNS`,
/// `CLONE_NEWCGROUP`, `CLONE_NEWUTS`, `CLONE_NEWIPC`, `CLONE_NEWUSER`,
/// `CLONE_NEWPID`, `CLONE_NEWNET`.
const CLONE_NAMESPACE_FLAGS: &[u64] = &[
    0x0002_0000,
    0x0200_0000,
    0x0400_0000,
    0x0800_0000,
    0x1000_0000,
    0x2000_0000,
    0x4000_0000,
];

// ---------------------------------------------------------------------------
// Refused syscalls (EPERM), by reason.
// ---------------------------------------------------------------------------

/// Mounting, changing the root, creating or entering namespaces.
#[rustfmt::skip]
const REFUSED_MOUNTS_AND_NAMESPACES: &[&str] = &[
    "mount", "umount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount",
    "fspick", "move_mount", "open_tree", "mount_setattr", "unshare", "setns",
];

/// Loading code into the kernel or replacing it.
#[rustfmt::skip]
const REFUSED_KERNEL_CODE: &[&str] = &[
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "bpf",
    "reboot",
];

/// Host-wide state that no namespace isolates.
#[rustfmt::skip]
const REFUSED_HOST_STATE: &[&str] = &[
    // The clock.
    "settimeofday", "stime", "clock_settime", "clock_settime64", "adjtimex", "clock_adjtime",
    "clock_adjtime64",
    // Swap, accounting, quotas.
    "swapon", "swapoff", "acct", "quotactl", "quotactl_fd",
    // The kernel log and tracing.
    "syslog", "perf_event_open", "fanotify_init", "lookup_dcookie",
    // The keyring, which is not namespaced.
    "add_key", "keyctl", "request_key",
    // NUMA placement of the host's memory.
    "get_mempolicy", "set_mempolicy", "set_mempolicy_home_node", "mbind", "migrate_pages",
    "move_pages",
    // The controlling terminal of other sessions.
    "vhangup",
    // Obsolete: filesystem type names, ustat, loading a.out libraries.
    "sysfs", "ustat", "uselib",
];

/// Reaching past the filesystem's and the kernel's access checks.
#[rustfmt::skip]
const REFUSED_ESCAPES: &[&str] = &[
    "open_by_handle_at", "name_to_handle_at", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register",
];

/// x86: direct I/O port access and virtual 8086 mode.
#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
const REFUSED_ARCH_SPECIFIC: &[&str] = &["iopl", "ioperm", "vm86", "vm86old"];

/// Other architectures: nothing specific.
#[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
const REFUSED_ARCH_SPECIFIC: &[&str] = &[];

/// Every refused group.
const REFUSED: &[&[&str]] = &[
    REFUSED_MOUNTS_AND_NAMESPACES,
    REFUSED_KERNEL_CODE,
    REFUSED_HOST_STATE,
    REFUSED_ESCAPES,
    REFUSED_ARCH_SPECIFIC,
];

/// The architectures of the default profile: the native one and the
/// 32-bit ABIs its kernel can run.
fn default_architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else if cfg!(target_arch = "x86") {
        vec![Arch::ScmpArchX86]
    } else if cfg!(target_arch = "arm") {
        vec![Arch::ScmpArchArm]
    } else {
        vec![Arch::ScmpArchNative]
    }
}

/// The names the default profile allows unconditionally.
pub fn default_allowed_syscalls() -> impl Iterator<Item = &'static str> {
    ALLOWED.iter().flat_map(|group| group.iter().copied())
}

/// The names the default profile refuses with `EPERM`.
pub fn default_refused_syscalls() -> impl Iterator<Item = &'static str> {
    REFUSED.iter().flat_map(|group| group.iter().copied())
}

/// One rule of the profile.
fn rule(
    names: impl IntoIterator<Item = &'static str>,
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    args: Option<Vec<LinuxSeccompArg>>,
) -> LinuxSyscall {
    let mut rule = LinuxSyscall::default();
    rule.set_names(names.into_iter().map(str::to_owned).collect())
        .set_action(action)
        .set_errno_ret(errno_ret)
        .set_args(args);
    rule
}

/// A condition on the first argument.
fn arg0(op: LinuxSeccompOperator, value: u64, value_two: Option<u64>) -> LinuxSeccompArg {
    let arg = LinuxSeccompArgBuilder::default()
        .index(0_usize)
        .op(op)
        .value(value);
    built(match value_two {
        Some(value_two) => arg.value_two(value_two).build(),
        None => arg.build(),
    })
}

/// The seccomp profile of the default `config.json` (see the module
/// documentation).
pub fn default_seccomp() -> LinuxSeccomp {
    let allow = LinuxSeccompAction::ScmpActAllow;
    let errno = LinuxSeccompAction::ScmpActErrno;
    let syscalls = vec![
        rule(default_allowed_syscalls(), allow, None, None),
        // One condition per persona on the same argument: any of them.
        rule(
            ["personality"],
            allow,
            None,
            Some(
                PERSONAS
                    .iter()
                    .map(|&p| arg0(LinuxSeccompOperator::ScmpCmpEq, p, None))
                    .collect(),
            ),
        ),
        // `clone` without any namespace flag...
        rule(
            ["clone"],
            allow,
            None,
            Some(vec![arg0(
                LinuxSeccompOperator::ScmpCmpMaskedEq,
                CLONE_NAMESPACE_FLAGS.iter().fold(0, |all, flag| all | flag),
                Some(0),
            )]),
        ),
        // ...and EPERM, not ENOSYS, with any of them.
        rule(
            ["clone"],
            errno,
            Some(EPERM),
            Some(
                CLONE_NAMESPACE_FLAGS
                    .iter()
                    .map(|&flag| arg0(LinuxSeccompOperator::ScmpCmpMaskedEq, flag, Some(flag)))
                    .collect(),
            ),
        ),
        rule(default_refused_syscalls(), errno, Some(EPERM), None),
    ];
    let mut seccomp = LinuxSeccomp::default();
    seccomp
        .set_default_action(errno)
        .set_default_errno_ret(Some(ENOSYS))
        .set_architectures(Some(default_architectures()))
        .set_syscalls(Some(syscalls));
    seccomp
}

/// The default `config.json`: what `runc spec [--rootless]` writes, with
/// `hostname` "plinth" and [`default_seccomp`].
///
/// `rootless` maps the calling user (its effective uid and gid, as runc) to
/// root in a new user namespace; see [`default_spec_for`].
pub fn default_spec(rootless: bool) -> Spec {
    default_spec_for(rootless.then(|| {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    }))
}

/// The default `config.json`; with `rootless = Some((uid, gid))`, rewritten
/// as `runc spec --rootless` does for that host user: a user namespace
/// mapping `uid`/`gid` to 0 (size 1), no network or cgroup namespace, no
/// `gid=` option on `/dev/pts`, `/sys` bind-mounted from the host instead of
/// a new sysfs, and no `linux.resources`.
pub fn default_spec_for(rootless: Option<(u32, u32)>) -> Spec {
    let mut linux = oci_spec::runtime::Linux::default();
    linux
        .set_masked_paths(Some(strings(&[
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/sys/firmware",
            "/proc/scsi",
        ])))
        .set_readonly_paths(Some(strings(&[
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger",
        ])))
        .set_resources(Some(deny_all_devices()))
        .set_namespaces(Some(
            [
                LinuxNamespaceType::Pid,
                LinuxNamespaceType::Network,
                LinuxNamespaceType::Ipc,
                LinuxNamespaceType::Uts,
                LinuxNamespaceType::Mount,
                LinuxNamespaceType::Cgroup,
            ]
            .into_iter()
            .map(namespace)
            .collect(),
        ))
        .set_seccomp(Some(default_seccomp()));

    let mut spec = Spec::default();
    spec.set_version(crate::OCI_VERSION.to_owned())
        .set_root(Some(root()))
        .set_process(Some(process()))
        .set_hostname(Some("plinth".to_owned()))
        .set_mounts(Some(mounts()))
        .set_annotations(None)
        .set_linux(Some(linux));
    if let Some((uid, gid)) = rootless {
        make_rootless(&mut spec, uid, gid);
    }
    spec
}

/// `runc spec --rootless`'s rewrite of the default spec.
fn make_rootless(spec: &mut Spec, uid: u32, gid: u32) {
    if let Some(linux) = spec.linux_mut() {
        let mut namespaces = linux.namespaces().clone().unwrap_or_default();
        namespaces.retain(|ns| {
            !matches!(
                ns.typ(),
                LinuxNamespaceType::Network | LinuxNamespaceType::Cgroup | LinuxNamespaceType::User
            )
        });
        namespaces.push(namespace(LinuxNamespaceType::User));
        linux
            .set_namespaces(Some(namespaces))
            .set_uid_mappings(Some(vec![id_mapping(uid)]))
            .set_gid_mappings(Some(vec![id_mapping(gid)]))
            .set_resources(None);
    }
    if let Some(mounts) = spec.mounts_mut() {
        for mount in mounts.iter_mut() {
            if mount.destination() == std::path::Path::new("/sys") {
                *mount = self::mount(
                    "/sys",
                    "none",
                    "/sys",
                    &["rbind", "nosuid", "noexec", "nodev", "ro"],
                );
                continue;
            }
            if let Some(options) = mount.options_mut() {
                options.retain(|o| !o.starts_with("gid=") && !o.starts_with("uid="));
            }
        }
    }
}

/// `/bin/sh` on a terminal as root, with runc's environment, capabilities
/// and limits.
fn process() -> Process {
    let capabilities: oci_spec::runtime::Capabilities = [
        Capability::AuditWrite,
        Capability::Kill,
        Capability::NetBindService,
    ]
    .into_iter()
    .collect();
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(capabilities.clone()))
        .set_effective(Some(capabilities.clone()))
        .set_permitted(Some(capabilities))
        .set_inheritable(None)
        .set_ambient(None);

    let nofile = built(
        PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .hard(1024_u64)
            .soft(1024_u64)
            .build(),
    );

    let mut process = Process::default();
    process
        .set_terminal(Some(true))
        .set_console_size(None)
        .set_user(User::default())
        .set_args(Some(strings(&["sh"])))
        .set_command_line(None)
        .set_env(Some(strings(&[
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "TERM=xterm",
        ])))
        .set_cwd("/".into())
        .set_capabilities(Some(caps))
        .set_rlimits(Some(vec![nofile]))
        .set_no_new_privileges(Some(true))
        .set_apparmor_profile(None)
        .set_oom_score_adj(None)
        .set_selinux_label(None)
        .set_io_priority(None)
        .set_scheduler(None)
        .set_exec_cpu_affinity(None);
    process
}

/// `rootfs`, read-only.
fn root() -> Root {
    let mut root = Root::default();
    root.set_path("rootfs".into()).set_readonly(Some(true));
    root
}

/// runc's default mounts.
fn mounts() -> Vec<Mount> {
    vec![
        mount("/proc", "proc", "proc", &[]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ]
}

/// A mount; no `options` key when `options` is empty (as runc).
fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut mount = Mount::default();
    mount
        .set_destination(destination.into())
        .set_typ(Some(typ.to_owned()))
        .set_source(Some(source.into()))
        .set_options((!options.is_empty()).then(|| strings(options)));
    mount
}

/// `linux.resources` with runc's device rule: deny all.
fn deny_all_devices() -> LinuxResources {
    let mut deny = LinuxDeviceCgroup::default();
    deny.set_allow(false).set_access(Some("rwm".to_owned()));
    let mut resources = LinuxResources::default();
    resources.set_devices(Some(vec![deny]));
    resources
}

/// A new namespace of type `typ`.
fn namespace(typ: LinuxNamespaceType) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ).set_path(None);
    ns
}

/// Host id `id` as 0 in the container, one id long.
fn id_mapping(id: u32) -> LinuxIdMapping {
    built(
        LinuxIdMappingBuilder::default()
            .host_id(id)
            .container_id(0_u32)
            .size(1_u32)
            .build(),
    )
}

/// The value of an oci-spec builder whose fields all have defaults and no
/// validation: its `build` cannot fail.
fn built<T>(result: Result<T, oci_spec::OciSpecError>) -> T {
    result.expect("an oci-spec builder with defaults for every field and no validation")
}

/// Owned strings.
fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|&s| s.to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::seccomp::testing::{answer_native as answer, RET_ALLOW, RET_ERRNO};
    use crate::seccomp::Filter;

    #[test]
    fn default_spec_round_trips_through_json() {
        for rootless in [false, true] {
            let spec = default_spec(rootless);
            let json = serde_json::to_string_pretty(&spec).unwrap();
            let back: Spec = serde_json::from_str(&json).unwrap();
            assert_eq!(back, spec, "rootless={rootless}");
        }
    }

    #[test]
    fn default_spec_is_runcs_with_plinths_hostname_and_seccomp() {
        let json = serde_json::to_value(default_spec(false)).unwrap();
        assert_eq!(json["ociVersion"], "1.2.0");
        assert_eq!(json["hostname"], "plinth");
        assert_eq!(
            json["root"],
            serde_json::json!({"path": "rootfs", "readonly": true})
        );
        assert!(json.get("annotations").is_none());
        let process = &json["process"];
        assert_eq!(process["terminal"], true);
        assert_eq!(process["user"], serde_json::json!({"uid": 0, "gid": 0}));
        assert_eq!(process["args"], serde_json::json!(["sh"]));
        assert_eq!(
            process["env"],
            serde_json::json!([
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ])
        );
        assert_eq!(process["cwd"], "/");
        assert_eq!(process["noNewPrivileges"], true);
        assert_eq!(
            process["rlimits"],
            serde_json::json!([{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}])
        );
        let caps: HashSet<_> = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            .into_iter()
            .collect();
        for set in ["bounding", "effective", "permitted"] {
            let got: HashSet<_> = process["capabilities"][set]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect();
            assert_eq!(got, caps, "{set}");
        }
        for set in ["inheritable", "ambient"] {
            assert!(process["capabilities"].get(set).is_none(), "{set}");
        }

        let mounts = json["mounts"].as_array().unwrap();
        let destinations: Vec<_> = mounts
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(
            destinations,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup"
            ]
        );
        assert!(mounts[0].get("options").is_none());
        assert_eq!(mounts[2]["options"][5], "gid=5");
        assert_eq!(mounts[5]["type"], "sysfs");
        assert_eq!(
            mounts[6]["options"],
            serde_json::json!(["nosuid", "noexec", "nodev", "relatime", "ro"])
        );

        let linux = &json["linux"];
        let namespaces: Vec<_> = linux["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            namespaces,
            ["pid", "network", "ipc", "uts", "mount", "cgroup"]
        );
        assert_eq!(
            linux["resources"],
            serde_json::json!({"devices": [{"allow": false, "access": "rwm"}]})
        );
        assert_eq!(linux["maskedPaths"].as_array().unwrap().len(), 10);
        assert_eq!(linux["readonlyPaths"].as_array().unwrap().len(), 5);
        assert_eq!(linux["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(linux["seccomp"]["defaultErrnoRet"], 38);
        assert!(linux.get("uidMappings").is_none());
    }

    #[test]
    fn rootless_spec_is_runcs_rewrite() {
        let json = serde_json::to_value(default_spec_for(Some((1234, 5678)))).unwrap();
        let linux = &json["linux"];
        let namespaces: Vec<_> = linux["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(namespaces, ["pid", "ipc", "uts", "mount", "user"]);
        assert_eq!(
            linux["uidMappings"],
            serde_json::json!([{"hostID": 1234, "containerID": 0, "size": 1}])
        );
        assert_eq!(
            linux["gidMappings"],
            serde_json::json!([{"hostID": 5678, "containerID": 0, "size": 1}])
        );
        assert!(linux.get("resources").is_none());
        let mounts = json["mounts"].as_array().unwrap();
        assert_eq!(
            mounts[2]["options"],
            serde_json::json!([
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620"
            ])
        );
        assert_eq!(
            mounts[5],
            serde_json::json!({"destination": "/sys", "type": "none", "source": "/sys",
                "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]})
        );
        assert_eq!(mounts.len(), 7);

        // default_spec(true) maps the calling user.
        let json = serde_json::to_value(default_spec(true)).unwrap();
        assert_eq!(
            json["linux"]["uidMappings"][0]["hostID"],
            nix::unistd::geteuid().as_raw()
        );
    }

    /// Names of the profile that libseccomp does not know on x86_64 would
    /// be skipped with a warning on every `plinth create`.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_profile_name_is_known_to_libseccomp_on_x86_64() {
        let unknown: Vec<_> = default_allowed_syscalls()
            .chain(default_refused_syscalls())
            .chain(["personality", "clone"])
            .filter(|name| {
                libseccomp::ScmpSyscall::from_name_by_arch(name, libseccomp::ScmpArch::X8664)
                    .is_err()
            })
            .collect();
        assert!(unknown.is_empty(), "unknown to libseccomp: {unknown:?}");
    }

    #[test]
    fn profile_lists_have_no_duplicates_and_do_not_overlap() {
        let mut seen = HashSet::new();
        for name in default_allowed_syscalls().chain(default_refused_syscalls()) {
            assert!(seen.insert(name), "{name} is listed twice");
        }
        for name in ["clone", "clone3", "personality"] {
            assert!(
                !seen.contains(name),
                "{name} must not be listed unconditionally"
            );
        }
        let allowed = default_allowed_syscalls().count();
        assert!((330..=380).contains(&allowed), "{allowed} allowed syscalls");
    }

    #[test]
    fn default_profile_answers_enosys_to_the_unknown_and_eperm_to_the_refused() {
        let seccomp = default_seccomp();
        assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(seccomp.default_errno_ret(), Some(38));
        let filter = Filter::compile(&seccomp).unwrap();
        let zero = [0; 6];
        assert_eq!(answer(&filter, "clone3", zero), RET_ERRNO | 38);
        assert_eq!(answer(&filter, "mount", zero), RET_ERRNO | 1);
        assert_eq!(answer(&filter, "bpf", zero), RET_ERRNO | 1);
        assert_eq!(answer(&filter, "getpid", zero), RET_ALLOW);
        assert_eq!(answer(&filter, "openat", zero), RET_ALLOW);
        for name in default_allowed_syscalls() {
            if libseccomp::ScmpSyscall::from_name(name)
                .unwrap()
                .as_raw_syscall()
                >= 0
            {
                assert_eq!(answer(&filter, name, zero), RET_ALLOW, "{name}");
            }
        }
        for name in default_refused_syscalls() {
            if libseccomp::ScmpSyscall::from_name(name)
                .unwrap()
                .as_raw_syscall()
                >= 0
            {
                assert_eq!(answer(&filter, name, zero), RET_ERRNO | 1, "{name}");
            }
        }
    }

    #[test]
    fn default_profile_conditions_on_clone_and_personality() {
        let filter = Filter::compile(&default_seccomp()).unwrap();
        let clone = |flags: u64| answer(&filter, "clone", [flags, 0, 0, 0, 0, 0]);
        // What glibc's pthread_create and fork pass.
        assert_eq!(clone(0x003d_0f00), RET_ALLOW);
        assert_eq!(clone(0x0120_0011), RET_ALLOW);
        for flag in CLONE_NAMESPACE_FLAGS {
            assert_eq!(clone(flag | 0x11), RET_ERRNO | 1, "{flag:#x}");
        }
        assert_eq!(clone(0x7e02_0000), RET_ERRNO | 1);
        // CLONE_NEWTIME (0x80) is a clone3/unshare flag; in clone it is CSIGNAL.
        assert_eq!(clone(0x80), RET_ALLOW);

        let personality = |p: u64| answer(&filter, "personality", [p, 0, 0, 0, 0, 0]);
        for &p in PERSONAS {
            assert_eq!(personality(p), RET_ALLOW, "{p:#x}");
        }
        assert_eq!(
            personality(0x0040_0000 /* READ_IMPLIES_EXEC */),
            RET_ERRNO | 38
        );
    }
}
