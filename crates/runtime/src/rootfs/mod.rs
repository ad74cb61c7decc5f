//! The container's root filesystem, built inside its mount namespace.
//!
//! [`prepare`] runs before `pivot_root`: it makes the mount tree a slave
//! of the host's (so nothing propagates back), turns the rootfs into a
//! mount point, performs config.json's mounts, creates the devices and
//! opens a verified `/dev/null` of the host for masking. [`pivot`] switches
//! to the new root (`pivot_root(".", ".")`, or `MS_MOVE` + `chroot` with
//! `--no-pivot`) and detaches the old one. [`finish`] runs after it:
//! `rootfsPropagation`, sysctls, `readonlyPaths`, `maskedPaths`, the
//! console and `root.readonly`.

pub(crate) mod devices;
pub(crate) mod mounts;
pub(crate) mod resolve;

use std::os::fd::OwnedFd;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fstat, major, minor, Mode, SFlag};
use oci_spec::runtime::Spec;

use crate::error::{InitError, InitStage};
use resolve::{fd_path, Create};

/// The container's `/dev/null`, opened without following symlinks and
/// checked to be the character device 1:3, so that masking can never bind
/// anything else over a masked path (the CVE-2025-31133 class).
fn verified_null(root: &OwnedFd) -> Result<OwnedFd, InitError> {
    let err = |e| InitError::new(InitStage::MaskPath, "/dev/null", e);
    let fd = nix::fcntl::openat2(
        root,
        "dev/null",
        nix::fcntl::OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(
                nix::fcntl::ResolveFlag::RESOLVE_IN_ROOT
                    | nix::fcntl::ResolveFlag::RESOLVE_NO_SYMLINKS,
            ),
    )
    .map_err(err)?;
    let st = fstat(&fd).map_err(err)?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFCHR
        || major(st.st_rdev) != 1
        || minor(st.st_rdev) != 3
    {
        return Err(InitError::reason(
            InitStage::MaskPath,
            "/dev/null",
            "is not the null device (1:3); refusing to mask with it",
        ));
    }
    Ok(fd)
}

/// Options that do not come from config.json.
pub(crate) struct RootfsOptions<'a> {
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub userns: bool,
    pub cgroupns: bool,
}

fn root_propagation(spec: &Spec) -> Option<MsFlags> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(mounts::propagation_flag)
}

/// Everything before `pivot_root`.
/// `join_cgroup` runs once, before the first `cgroup` mount (or after the
/// last mount): the init may build its mounts while the runtime is still
/// moving it into its cgroup.
pub(crate) fn prepare(
    spec: &Spec,
    opts: &RootfsOptions<'_>,
    join_cgroup: &mut dyn FnMut() -> Result<(), InitError>,
) -> Result<(), InitError> {
    let rootfs = opts.rootfs;
    let prop_err = |e| InitError::new(InitStage::MountPropagation, "/", e);
    // Nothing mounted from here on may propagate to the host. A shared
    // rootfsPropagation is applied to the new root after pivot_root, and
    // so is an unbindable one: the rootfs could not be bound from an
    // unbindable `/`.
    let flag = match root_propagation(spec) {
        Some(f) if !f.intersects(MsFlags::MS_SHARED | MsFlags::MS_UNBINDABLE) => f,
        _ => MsFlags::MS_SLAVE | MsFlags::MS_REC,
    };
    mount(None::<&str>, "/", None::<&str>, flag, None::<&str>).map_err(prop_err)?;
    // pivot_root needs the rootfs to be a mount point.
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| {
        InitError::new(
            InitStage::Mount,
            format!("root.path {}", rootfs.display()),
            e,
        )
    })?;
    let root = open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        InitError::new(
            InitStage::Mount,
            format!("root.path {}", rootfs.display()),
            e,
        )
    })?;

    let ctx = mounts::MountContext {
        root: &root,
        bundle: opts.bundle,
        cgroupns: opts.cgroupns,
        userns: opts.userns,
    };
    let mut dev_is_host_bind = false;
    let mut joined = None;
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if joined.is_none() && matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2")) {
            joined = Some(join_cgroup()?);
        }
        mounts::mount_one(&ctx, i, m)?;
        if m.destination() == Path::new("/dev") {
            dev_is_host_bind = m
                .options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind");
        }
    }
    if joined.is_none() {
        join_cgroup()?;
    }
    // Default devices, unless /dev is the host's own (bind-mounted).
    if !dev_is_host_bind {
        for d in devices::defaults() {
            devices::create(&root, &d, opts.userns)?;
        }
        devices::create_links(&root, Path::new("/proc/kcore").exists())?;
    }
    for (i, d) in spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        let dev = devices::Device::from_spec(d)
            .map_err(|r| InitError::reason(InitStage::Device, format!("linux.devices[{i}]"), r))?;
        devices::create(&root, &dev, opts.userns)?;
    }

    Ok(())
}

/// Switches the calling process's root to `rootfs`.
pub(crate) fn pivot(rootfs: &Path, no_pivot: bool) -> Result<(), InitError> {
    let err = |what: &str, e| InitError::new(InitStage::PivotRoot, what, e);
    nix::unistd::chdir(rootfs).map_err(|e| err("chdir rootfs", e))?;
    if no_pivot {
        mount(
            Some(rootfs),
            "/",
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )
        .map_err(|e| err("move rootfs to /", e))?;
        nix::unistd::chroot(".").map_err(|e| err("chroot", e))?;
    } else {
        let old_root = open(
            "/",
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err("open old root", e))?;
        nix::unistd::pivot_root(".", ".").map_err(|e| err("pivot_root", e))?;
        // The old root now sits on top of the new one: make it a slave so
        // that detaching it cannot unmount anything on the host. "." must
        // be the old root's mount, not the new root under it (the cwd):
        // `rslave` on the new root would undo the propagation that
        // config.json's mounts asked for (`shared`, ...).
        nix::unistd::fchdir(&old_root).map_err(|e| err("fchdir old root", e))?;
        drop(old_root);
        mount(
            None::<&str>,
            ".",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| err("old root slave", e))?;
        umount2(".", MntFlags::MNT_DETACH).map_err(|e| err("detach old root", e))?;
    }
    nix::unistd::chdir("/").map_err(|e| err("chdir /", e))?;
    Ok(())
}

/// `/dev/console` as an `O_PATH` fd to bind the pty on. The last component
/// is never followed: an image's `/dev/console` symlink (to
/// `/proc/sys/kernel/core_pattern`, say) would have the pty bound over its
/// target (the CVE-2025-52565 class), so it is replaced by an empty file.
fn console_target(root: &OwnedFd) -> nix::Result<OwnedFd> {
    use nix::fcntl::{openat, AtFlags};
    use nix::sys::stat::fstatat;
    use nix::unistd::{unlinkat, UnlinkatFlags};

    let (dev, name) = resolve::open_parent_in_root(root, Path::new("/dev/console"), true)?;
    match fstatat(&dev, &name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK => {
            unlinkat(&dev, &name, UnlinkatFlags::NoRemoveDir)?;
        }
        Ok(_) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(e),
    }
    match openat(
        &dev,
        &name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o666),
    ) {
        Ok(_) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(e),
    }
    // A symlink swapped in meanwhile makes this fail (ELOOP).
    let fd = openat(
        &dev,
        &name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    if resolve::file_type(&fd)? == SFlag::S_IFLNK {
        return Err(Errno::ELOOP);
    }
    Ok(fd)
}

/// Everything after `pivot_root`. `console` is the pty slave to bind on
/// `/dev/console`.
pub(crate) fn finish(spec: &Spec, console: Option<&OwnedFd>) -> Result<(), InitError> {
    let linux = spec.linux().as_ref();
    let root = open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| InitError::new(InitStage::PivotRoot, "/", e))?;
    if let Some(flag) = root_propagation(spec) {
        mount(None::<&str>, "/", None::<&str>, flag, None::<&str>).map_err(|e| {
            InitError::new(InitStage::MountPropagation, "linux.rootfsPropagation", e)
        })?;
    }
    if let Some(sysctl) = linux.and_then(|l| l.sysctl().as_ref()) {
        let mut keys: Vec<_> = sysctl.keys().collect();
        keys.sort();
        for key in keys {
            let rel = Path::new("proc/sys").join(key.replace('.', "/"));
            let err = |e| InitError::new(InitStage::Sysctl, format!("linux.sysctl {key}"), e);
            let fd = resolve::open_in_root(&root, &rel, Create::No).map_err(err)?;
            std::fs::write(fd_path(&fd), &sysctl[key]).map_err(|e| {
                InitError::reason(
                    InitStage::Sysctl,
                    format!("linux.sysctl {key}"),
                    e.to_string(),
                )
            })?;
        }
    }
    if let Some(slave) = console {
        let err = |e| InitError::new(InitStage::Console, "/dev/console", e);
        let target = console_target(&root).map_err(err)?;
        if resolve::file_type(&target).map_err(err)? == SFlag::S_IFREG {
            mount(
                Some(&fd_path(slave)),
                &fd_path(&target),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(err)?;
        }
    }
    for p in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        let err = |e| InitError::new(InitStage::ReadonlyPath, p.as_str(), e);
        let fd = match resolve::open_in_root(&root, Path::new(p), Create::No) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(err(e)),
        };
        mount(
            Some(&fd_path(&fd)),
            &fd_path(&fd),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(err)?;
        let top = resolve::open_in_root(&root, Path::new(p), Create::No).map_err(err)?;
        mounts::remount_bind(
            &top,
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        )
        .map_err(err)?;
    }
    let masked = linux
        .and_then(|l| l.masked_paths().as_ref())
        .filter(|m| !m.is_empty());
    let null = masked.map(|_| verified_null(&root)).transpose()?;
    // Masked directories show one empty, read-only tmpfs: the first gets
    // it, the others a bind mount of it (a superblock is kernel memory
    // that every container pays for).
    let mut empty: Option<OwnedFd> = None;
    for p in masked.into_iter().flatten() {
        let err = |e| InitError::new(InitStage::MaskPath, p.as_str(), e);
        let fd = match resolve::open_in_root(&root, Path::new(p), Create::No) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(err(e)),
        };
        if resolve::file_type(&fd).map_err(err)? == SFlag::S_IFDIR {
            if let Some(src) = &empty {
                mount(
                    Some(&fd_path(src)),
                    &fd_path(&fd),
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(err)?;
                continue;
            }
            mount(
                Some("tmpfs"),
                &fd_path(&fd),
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(err)?;
            empty = Some(resolve::open_in_root(&root, Path::new(p), Create::No).map_err(err)?);
        } else {
            mount(
                Some(&fd_path(
                    null.as_ref().expect("opened when paths are masked"),
                )),
                &fd_path(&fd),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(err)?;
        }
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        let err = |e| InitError::new(InitStage::Mount, "root.readonly", e);
        mounts::remount_bind(&root, MsFlags::MS_RDONLY).map_err(err)?;
    }
    Ok(())
}
