//! The system calls that the rest of the crate may not make directly.
//!
//! Every `unsafe` block of the runtime crate lives here, each behind a
//! small typed function: forking, `mount_setattr(2)`, `close_range(2)`,
//! pidfds, terminal ioctls, signal dispositions, `setdomainname(2)`,
//! `personality(2)` and the sealed-memfd re-execution that keeps the
//! host's `plinth` binary out of every container. Callers get `OwnedFd`s
//! and `nix::Result`s; nothing here knows about containers.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::{ForkResult, Pid};

/// Forks the calling process.
///
/// plinth only forks from a process that has never started a thread, so
/// the child may run ordinary Rust code until it execs or exits.
pub(crate) fn fork() -> nix::Result<ForkResult> {
    // SAFETY: the runtime is single-threaded on every path that reaches
    // here (DESIGN.md: the fork path is single-threaded), so the child
    // inherits no lock held by another thread.
    unsafe { nix::unistd::fork() }
}

/// Forks the calling process straight into the cgroup2 directory `cgroup`
/// (`clone3` with `CLONE_INTO_CGROUP`, Linux 5.7): the child never has to
/// be migrated, so nobody waits for the grace period a migration costs.
/// Same contract as [`fork`].
pub(crate) fn fork_into_cgroup(cgroup: BorrowedFd<'_>) -> nix::Result<ForkResult> {
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..Default::default()
    };
    // SAFETY: as for fork(): the caller is single-threaded. With no stack
    // given, the child runs on a copy of the parent's, like fork.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match Errno::result(r)? {
        0 => Ok(ForkResult::Child),
        pid => Ok(ForkResult::Parent {
            child: Pid::from_raw(pid as i32),
        }),
    }
}

/// Ends the calling process at once, without running destructors or
/// flushing stdio buffers shared with the parent.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is always safe to call; it never returns.
    unsafe { libc::_exit(code) }
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// Mount attributes for `mount_setattr(2)`, applied recursively.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MountAttr {
    pub set: u64,
    pub clear: u64,
}

impl MountAttr {
    /// The attribute bit of a recursive mount option (`rro`, `rnosuid`, ...),
    /// with whether it sets or clears it.
    pub(crate) fn from_recursive_option(opt: &str) -> Option<(bool, u64)> {
        Some(match opt {
            "rro" => (true, MOUNT_ATTR_RDONLY),
            "rrw" => (false, MOUNT_ATTR_RDONLY),
            "rnosuid" => (true, MOUNT_ATTR_NOSUID),
            "rsuid" => (false, MOUNT_ATTR_NOSUID),
            "rnodev" => (true, MOUNT_ATTR_NODEV),
            "rdev" => (false, MOUNT_ATTR_NODEV),
            "rnoexec" => (true, MOUNT_ATTR_NOEXEC),
            "rexec" => (false, MOUNT_ATTR_NOEXEC),
            "rnoatime" => (true, MOUNT_ATTR_NOATIME),
            "ratime" => (false, MOUNT_ATTR_NOATIME),
            "rstrictatime" => (true, MOUNT_ATTR_STRICTATIME),
            "rnodiratime" => (true, MOUNT_ATTR_NODIRATIME),
            "rdiratime" => (false, MOUNT_ATTR_NODIRATIME),
            "rnosymfollow" => (true, MOUNT_ATTR_NOSYMFOLLOW),
            "rsymfollow" => (false, MOUNT_ATTR_NOSYMFOLLOW),
            _ => return None,
        })
    }
}

#[repr(C)]
struct RawMountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, attr)`: changes
/// the attributes of the mount tree at `fd` (Linux 5.12).
pub(crate) fn mount_setattr_recursive(fd: BorrowedFd<'_>, attr: MountAttr) -> nix::Result<()> {
    let raw = RawMountAttr {
        attr_set: attr.set,
        attr_clr: attr.clear,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the path is a valid NUL-terminated empty string, `raw` lives
    // across the call and its size is passed with it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &raw as *const RawMountAttr,
            std::mem::size_of::<RawMountAttr>(),
        )
    };
    Errno::result(r).map(drop)
}

/// Marks every descriptor from `first` upwards close-on-exec
/// (`close_range(first, ~0, CLOSE_RANGE_CLOEXEC)`, Linux 5.11), falling
/// back to walking `/proc/self/fd`.
/// `umask(2)` that reports failure. umask cannot fail in the kernel, so C
/// libraries pass its result through unchecked; a seccomp filter can still
/// make it return `-errno`, which no mode can be.
pub(crate) fn set_umask(mask: u32) -> nix::Result<()> {
    // SAFETY: umask has no memory arguments.
    let old = unsafe { libc::umask(mask as libc::mode_t) };
    if old <= 0o7777 {
        return Ok(());
    }
    let raw = old as i32;
    Err(if (-4095..0).contains(&raw) {
        nix::errno::Errno::from_raw(-raw)
    } else {
        nix::errno::Errno::last()
    })
}

pub(crate) fn cloexec_from(first: RawFd) -> nix::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes descriptor flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return Ok(());
    }
    for entry in std::fs::read_dir("/proc/self/fd").map_err(|_| Errno::last())? {
        let Ok(entry) = entry else { continue };
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<RawFd>().ok())
        else {
            continue;
        };
        if fd >= first {
            // SAFETY: F_SETFD on a possibly closed fd fails harmlessly.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
    Ok(())
}

/// Clears close-on-exec on `fd` so it survives `execve` (preserved fds).
pub(crate) fn clear_cloexec(fd: RawFd) -> nix::Result<()> {
    // SAFETY: F_SETFD only changes the flags of a descriptor number.
    Errno::result(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }).map(drop)
}

/// Joins a new session keyring named `name`, so the container does not
/// share the caller's keys (`KEYCTL_JOIN_SESSION_KEYRING`).
pub(crate) fn join_session_keyring(name: &CStr) -> nix::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: the name is a valid NUL-terminated string for the call.
    let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    Errno::result(r).map(drop)
}

/// Takes ownership of a descriptor that the kernel just handed over
/// (`SCM_RIGHTS`).
pub(crate) fn take_received_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: the caller got `fd` from recvmsg's SCM_RIGHTS: it is open
    // and nobody else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// `pidfd_open(2)`.
pub(crate) fn pidfd_open(pid: Pid) -> nix::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    let fd = Errno::result(fd)?;
    // SAFETY: the kernel returned a fresh descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_send_signal(2)`: signals exactly the process the pidfd refers to,
/// even if its pid has been reused.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: Signal) -> nix::Result<()> {
    // SAFETY: plain syscall; a NULL siginfo is allowed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    Errno::result(r).map(drop)
}

/// Restores the default disposition of every catchable signal and
/// unblocks all signals, so the container's process starts clean (the
/// Rust runtime ignores SIGPIPE, and an ignored signal survives execve).
pub(crate) fn reset_signals() {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL is always a valid handler; invalid numbers fail.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
}

/// `setdomainname(2)`.
pub(crate) fn setdomainname(name: &str) -> nix::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes.
    let r = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    Errno::result(r).map(drop)
}

/// `personality(2)`.
pub(crate) fn set_personality(persona: libc::c_ulong) -> nix::Result<()> {
    // SAFETY: personality takes an integer.
    let r = unsafe { libc::personality(persona) };
    Errno::result(r).map(drop)
}

/// Makes `fd` (a terminal) the controlling terminal of the calling session.
pub(crate) fn set_controlling_terminal(fd: BorrowedFd<'_>) -> nix::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    Errno::result(r).map(drop)
}

/// Unlocks the pty master `fd` and returns the number of its slave
/// (`/dev/pts/N`).
pub(crate) fn unlock_pty(fd: BorrowedFd<'_>) -> nix::Result<u32> {
    let mut unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int through the pointer.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSPTLCK, &mut unlock) })?;
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes an unsigned int through the pointer.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGPTN, &mut n) })?;
    Ok(n)
}

/// Opens the slave of the pty master `fd` (`TIOCGPTPEER`, Linux 4.13),
/// without looking up any path.
pub(crate) fn open_pty_peer(fd: BorrowedFd<'_>) -> nix::Result<OwnedFd> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    let r = Errno::result(r)?;
    // SAFETY: the kernel returned a fresh descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// The name under which a sealed copy of plinth runs.
const SEALED_NAME: &CStr = c"plinth-sealed";

const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;

/// Whether this process runs from a copy of plinth that nobody can write:
/// a sealed memfd, or a file on a read-only overlayfs.
pub(crate) fn running_sealed() -> bool {
    if std::fs::read_link("/proc/self/exe")
        .is_ok_and(|p| p.to_string_lossy().starts_with("/memfd:plinth-sealed"))
    {
        return true;
    }
    let Ok(exe) = File::open("/proc/self/exe") else {
        return false;
    };
    let overlay = nix::sys::statfs::fstatfs(&exe)
        .is_ok_and(|s| s.filesystem_type().0 == OVERLAYFS_SUPER_MAGIC);
    let readonly = nix::sys::statvfs::fstatvfs(&exe)
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    overlay && readonly
}

fn check_fd(r: libc::c_long) -> nix::Result<OwnedFd> {
    let fd = Errno::result(r)?;
    // SAFETY: the kernel returned a fresh descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;

/// A new filesystem context of type `fstype` (`fsopen(2)`, Linux 5.2).
fn fs_open(fstype: &CStr) -> nix::Result<OwnedFd> {
    // SAFETY: the name is a valid C string; fsopen returns a new fd.
    check_fd(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) })
}

/// Sets a string parameter of a filesystem context (`fsconfig(2)`).
fn fs_set(fs: &OwnedFd, key: &CStr, value: &CStr) -> nix::Result<()> {
    // SAFETY: key and value are valid C strings for the call.
    Errno::result(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_STRING,
            key.as_ptr(),
            value.as_ptr(),
            0,
        )
    })
    .map(drop)
}

/// Creates the superblock of a configured context and returns a detached
/// mount of it with `attrs` (`FSCONFIG_CMD_CREATE`, then `fsmount(2)`).
fn fs_mount(fs: &OwnedFd, attrs: u64) -> nix::Result<OwnedFd> {
    // SAFETY: plain syscall on our fs context.
    Errno::result(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    })?;
    // SAFETY: plain syscall; returns a new fd of the detached mount.
    check_fd(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            attrs as libc::c_uint,
        )
    })
}

/// Re-executes the current program from a detached, read-only overlayfs
/// whose only layer is the directory of its executable: no copy is made,
/// and the file that `/proc/PID/exe` then names cannot be opened for
/// writing (EROFS), whoever asks. This is the cheap form of the sealed
/// copy (a handful of syscalls instead of copying the binary). Returns
/// only on failure.
pub(crate) fn reexec_from_readonly_overlay(argv: &[CString], envp: &[CString]) -> nix::Result<()> {
    use std::os::unix::ffi::OsStrExt;

    let exe = std::fs::read_link("/proc/self/exe").map_err(io_errno)?;
    let (Some(dir), Some(name)) = (exe.parent(), exe.file_name()) else {
        return Err(Errno::EINVAL);
    };
    let dir = CString::new(dir.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let name = CString::new(name.as_bytes()).map_err(|_| Errno::EINVAL)?;
    // Without an upper layer overlayfs needs two lower ones that do not
    // overlap: the executable's directory over an empty, detached tmpfs.
    let empty = fs_mount(&fs_open(c"tmpfs")?, MOUNT_ATTR_RDONLY)?;
    let mut lower = dir.as_bytes().to_vec();
    lower.extend_from_slice(format!(":/proc/self/fd/{}", empty.as_raw_fd()).as_bytes());
    let lower = CString::new(lower).map_err(|_| Errno::EINVAL)?;
    let overlay = fs_open(c"overlay")?;
    fs_set(&overlay, c"lowerdir", &lower)?;
    let mnt = fs_mount(
        &overlay,
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID,
    )?;
    let file = nix::fcntl::openat(
        &mnt,
        name.as_c_str(),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    nix::unistd::fexecve(file.as_fd(), argv, envp)?;
    Ok(())
}

/// Re-executes the current program from a sealed, anonymous in-memory
/// copy of its executable, so that no process that later enters a
/// container maps the host's `plinth` file (CVE-2019-5736 class: a
/// container process that reaches `/proc/<pid>/exe` gets an object whose
/// contents can never change). Returns only on failure.
pub(crate) fn reexec_sealed(argv: &[CString], envp: &[CString]) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, SealFlag};
    use nix::sys::memfd::{memfd_create, MFdFlags as MFlags};

    let mut exe = File::open("/proc/self/exe").map_err(io_errno)?;
    let memfd = memfd_create(SEALED_NAME, MFlags::MFD_CLOEXEC | MFlags::MFD_ALLOW_SEALING)?;
    let mut out = File::from(memfd);
    let len = exe.metadata().map_err(io_errno)?.len();
    let mut copied = 0u64;
    while copied < len {
        // SAFETY: both descriptors are valid for the call; NULL offsets use
        // and advance the file positions.
        let n = unsafe {
            libc::sendfile(
                out.as_raw_fd(),
                exe.as_raw_fd(),
                std::ptr::null_mut(),
                (len - copied) as usize,
            )
        };
        if n <= 0 {
            // sendfile may be refused by some filesystems; copy instead.
            std::io::copy(&mut exe, &mut out).map_err(io_errno)?;
            break;
        }
        copied += n as u64;
    }
    fcntl(
        out.as_fd(),
        FcntlArg::F_ADD_SEALS(
            SealFlag::F_SEAL_SEAL
                | SealFlag::F_SEAL_SHRINK
                | SealFlag::F_SEAL_GROW
                | SealFlag::F_SEAL_FUTURE_WRITE,
        ),
    )?;
    nix::unistd::fexecve(out.as_fd(), argv, envp)?;
    Ok(())
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Keeps the permitted capabilities across the coming uid change.
pub(crate) fn set_keep_caps() -> nix::Result<()> {
    nix::sys::prctl::set_keepcaps(true)
}
