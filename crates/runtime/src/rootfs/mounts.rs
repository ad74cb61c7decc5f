//! Performing the `mounts` of config.json inside the new mount namespace.
//!
//! Each destination is resolved inside the rootfs by [`super::resolve`]
//! and the mount targets the resulting fd through `/proc/self/fd/N`.
//! Options follow mount(8) and the runtime spec: flags (`ro`, `nosuid`,
//! ...), propagation (`rprivate`, `shared`, ...), recursive attributes
//! through `mount_setattr(2)` (`rro`, `rnosuid`, ...), and everything else
//! as filesystem data. Bind mounts are remounted to apply their flags,
//! keeping the flags the kernel locks on mounts from a more privileged
//! namespace. `cgroup` mounts are expanded for the host's cgroup layout.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::statvfs::{fstatvfs, FsFlags};
use oci_spec::runtime::Mount;

use super::resolve::{self, fd_path, Create};
use crate::cgroups::Layout;
use crate::error::{InitError, InitStage};
use crate::sys::{self, MountAttr};

/// Parsed mount options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountOptions {
    pub flags: MsFlags,
    pub propagation: Vec<MsFlags>,
    pub recursive: MountAttr,
    pub data: Vec<String>,
    pub bind: bool,
    /// `idmap`/`ridmap` was asked for (not supported yet).
    pub idmap: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            propagation: Vec::new(),
            recursive: MountAttr::default(),
            data: Vec::new(),
            bind: false,
            idmap: false,
        }
    }
}

impl MountOptions {
    pub(crate) fn parse(options: &[String]) -> Self {
        let mut o = MountOptions::default();
        for opt in options {
            let opt = opt.as_str();
            let (set, flag) = match opt {
                "ro" => (true, MsFlags::MS_RDONLY),
                "rw" => (false, MsFlags::MS_RDONLY),
                "nosuid" => (true, MsFlags::MS_NOSUID),
                "suid" => (false, MsFlags::MS_NOSUID),
                "nodev" => (true, MsFlags::MS_NODEV),
                "dev" => (false, MsFlags::MS_NODEV),
                "noexec" => (true, MsFlags::MS_NOEXEC),
                "exec" => (false, MsFlags::MS_NOEXEC),
                "sync" => (true, MsFlags::MS_SYNCHRONOUS),
                "async" => (false, MsFlags::MS_SYNCHRONOUS),
                "dirsync" => (true, MsFlags::MS_DIRSYNC),
                "remount" => (true, MsFlags::MS_REMOUNT),
                "mand" => (true, MsFlags::MS_MANDLOCK),
                "nomand" => (false, MsFlags::MS_MANDLOCK),
                "atime" => (false, MsFlags::MS_NOATIME),
                "noatime" => (true, MsFlags::MS_NOATIME),
                "diratime" => (false, MsFlags::MS_NODIRATIME),
                "nodiratime" => (true, MsFlags::MS_NODIRATIME),
                "relatime" => (true, MsFlags::MS_RELATIME),
                "norelatime" => (false, MsFlags::MS_RELATIME),
                "strictatime" => (true, MsFlags::MS_STRICTATIME),
                "nostrictatime" => (false, MsFlags::MS_STRICTATIME),
                "lazytime" => (true, MsFlags::MS_LAZYTIME),
                "nolazytime" => (false, MsFlags::MS_LAZYTIME),
                "silent" => (true, MsFlags::MS_SILENT),
                "loud" => (false, MsFlags::MS_SILENT),
                "bind" => {
                    o.bind = true;
                    (true, MsFlags::MS_BIND)
                }
                "rbind" => {
                    o.bind = true;
                    (true, MsFlags::MS_BIND | MsFlags::MS_REC)
                }
                "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
                | "unbindable" | "runbindable" => {
                    o.propagation
                        .push(propagation_flag(opt).expect("listed above"));
                    continue;
                }
                // runc-specific hints that have no kernel meaning here.
                "tmpcopyup" | "defaults" => continue,
                "idmap" | "ridmap" => {
                    o.idmap = true;
                    continue;
                }
                _ => {
                    if let Some((set, bit)) = MountAttr::from_recursive_option(opt) {
                        if set {
                            o.recursive.set |= bit;
                        } else {
                            o.recursive.clear |= bit;
                        }
                    } else {
                        o.data.push(opt.to_string());
                    }
                    continue;
                }
            };
            if set {
                o.flags |= flag;
            } else {
                o.flags &= !flag;
            }
        }
        o
    }
}

/// Every option `MountOptions::parse` understands as a flag, for
/// `plinth features`; anything else is passed to the filesystem.
pub(crate) const KNOWN_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "lazytime",
    "loud",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nolazytime",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "private",
    "rbind",
    "relatime",
    "remount",
    "ro",
    "rprivate",
    "rshared",
    "rslave",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "sync",
    "unbindable",
    "rro",
    "rrw",
    "rnosuid",
    "rsuid",
    "rnodev",
    "rdev",
    "rnoexec",
    "rexec",
    "rnoatime",
    "ratime",
    "rstrictatime",
    "rnodiratime",
    "rdiratime",
    "rnosymfollow",
    "rsymfollow",
];

/// The mount flag of a propagation keyword.
pub(crate) fn propagation_flag(opt: &str) -> Option<MsFlags> {
    Some(match opt {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// Flags that a remount of a bind mount may change.
fn remount_flags(flags: MsFlags) -> MsFlags {
    flags
        & (MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC
            | MsFlags::MS_NOATIME
            | MsFlags::MS_NODIRATIME
            | MsFlags::MS_RELATIME
            | MsFlags::MS_STRICTATIME)
}

/// The context a mount needs.
pub(crate) struct MountContext<'a> {
    /// An `O_PATH` fd of the rootfs.
    pub root: &'a OwnedFd,
    /// The bundle directory (relative bind sources are relative to it).
    pub bundle: &'a Path,
    /// Whether the container has its own cgroup namespace.
    pub cgroupns: bool,
    /// Whether the container has a user namespace (some mounts then fall
    /// back to binds).
    pub userns: bool,
}

/// Performs mount number `index` of config.json.
pub(crate) fn mount_one(ctx: &MountContext<'_>, index: usize, m: &Mount) -> Result<(), InitError> {
    let dest = m.destination();
    let object = format!("mounts[{index}] {}", dest.display());
    let err = |e: Errno| InitError::new(InitStage::Mount, object.clone(), e);
    let opts = MountOptions::parse(m.options().as_deref().unwrap_or(&[]));
    let typ = m.typ().as_deref().unwrap_or("none");
    if opts.idmap {
        return Err(InitError::reason(
            InitStage::Mount,
            object,
            "idmap mounts are not supported by plinth yet",
        ));
    }

    if typ == "cgroup" || typ == "cgroup2" && !opts.bind {
        return mount_cgroup(ctx, index, m, &opts);
    }

    if opts.bind {
        let source = m.source().as_ref().ok_or_else(|| {
            InitError::reason(InitStage::Mount, object.clone(), "bind needs a source")
        })?;
        let source = if source.is_absolute() {
            source.clone()
        } else {
            ctx.bundle.join(source)
        };
        let meta = std::fs::metadata(&source).map_err(|e| {
            InitError::reason(
                InitStage::Mount,
                format!("{object}: source {}", source.display()),
                e.to_string(),
            )
        })?;
        let create = if meta.is_dir() {
            Create::Dir
        } else {
            Create::File
        };
        let target = resolve::open_in_root(ctx.root, dest, create).map_err(err)?;
        let bind_flags = opts.flags & (MsFlags::MS_BIND | MsFlags::MS_REC);
        mount(
            Some(&source),
            &fd_path(&target),
            None::<&str>,
            bind_flags,
            None::<&str>,
        )
        .map_err(err)?;
        drop(target);
        let extra = remount_flags(opts.flags);
        if !extra.is_empty() {
            let top = resolve::open_in_root(ctx.root, dest, Create::No).map_err(err)?;
            remount_bind(&top, extra).map_err(err)?;
        }
    } else {
        let target = resolve::open_in_root(ctx.root, dest, Create::Dir).map_err(err)?;
        let source = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
        let data = opts.data.join(",");
        let flags = opts.flags & !MsFlags::MS_REMOUNT;
        let r = mount(
            Some(&source),
            &fd_path(&target),
            Some(typ),
            flags,
            (!data.is_empty()).then_some(data.as_str()),
        );
        match r {
            Ok(()) => {}
            // In a user namespace that does not own the network namespace,
            // sysfs cannot be mounted: bind the host's instead, as runc.
            Err(Errno::EPERM) if ctx.userns && typ == "sysfs" => {
                mount(
                    Some("/sys"),
                    &fd_path(&target),
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(err)?;
                let top = resolve::open_in_root(ctx.root, dest, Create::No).map_err(err)?;
                remount_bind(&top, remount_flags(flags)).map_err(err)?;
            }
            Err(Errno::EPERM) if ctx.userns && typ == "mqueue" => {
                mount(
                    Some("/dev/mqueue"),
                    &fd_path(&target),
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(err)?;
            }
            Err(e) => return Err(err(e)),
        }
    }

    if !opts.propagation.is_empty() || opts.recursive != MountAttr::default() {
        let top = resolve::open_in_root(ctx.root, dest, Create::No).map_err(err)?;
        for p in &opts.propagation {
            mount(None::<&str>, &fd_path(&top), None::<&str>, *p, None::<&str>).map_err(err)?;
        }
        if opts.recursive != MountAttr::default() {
            sys::mount_setattr_recursive(top.as_fd(), opts.recursive).map_err(err)?;
        }
    }
    Ok(())
}

/// Remounts the bind mount at `fd` with `flags`, adding the flags that
/// the kernel locked on it (a remount may not clear them).
pub(crate) fn remount_bind(fd: &OwnedFd, flags: MsFlags) -> nix::Result<()> {
    let path = fd_path(fd);
    let base = MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    match mount(
        None::<&str>,
        &path,
        None::<&str>,
        base | flags,
        None::<&str>,
    ) {
        Err(Errno::EPERM) => {
            let locked = locked_flags(fd)?;
            mount(
                None::<&str>,
                &path,
                None::<&str>,
                base | flags | locked,
                None::<&str>,
            )
        }
        other => other,
    }
}

fn locked_flags(fd: &OwnedFd) -> nix::Result<MsFlags> {
    let st = fstatvfs(fd)?;
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (a, b) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(a) {
            out |= b;
        }
    }
    Ok(out)
}

/// A `cgroup` mount: cgroup2 on a unified host; on v1 and hybrid hosts a
/// tmpfs holding one mount per hierarchy (and `unified` for the v2 part).
fn mount_cgroup(
    ctx: &MountContext<'_>,
    index: usize,
    m: &Mount,
    opts: &MountOptions,
) -> Result<(), InitError> {
    let dest = m.destination();
    let object = format!("mounts[{index}] {}", dest.display());
    let err = |e: Errno| InitError::new(InitStage::Mount, object.clone(), e);
    let layout = Layout::detect()
        .map_err(|e| InitError::reason(InitStage::Mount, object.clone(), e.to_string()))?;
    let flags = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    let target = resolve::open_in_root(ctx.root, dest, Create::Dir).map_err(err)?;
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    match &layout {
        Layout::Unified(host) => {
            mount_cgroup2_or_bind(ctx, &target, host, flags, &own).map_err(err)?;
        }
        Layout::Legacy {
            hierarchies,
            unified,
        } => {
            let tmpfs_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
            mount(
                Some("tmpfs"),
                &fd_path(&target),
                Some("tmpfs"),
                tmpfs_flags,
                Some("mode=755"),
            )
            .map_err(err)?;
            drop(target);
            for h in hierarchies {
                let Some(name) = h.mountpoint.file_name() else {
                    continue;
                };
                let sub = dest.join(name);
                let sub_object = format!("{object}/{}", name.to_string_lossy());
                let sub_err = |e: Errno| InitError::new(InitStage::Mount, sub_object.clone(), e);
                let t = resolve::open_in_root(ctx.root, &sub, Create::Dir).map_err(sub_err)?;
                let data = h.controllers.join(",");
                let r = if ctx.cgroupns {
                    mount(
                        Some("cgroup"),
                        &fd_path(&t),
                        Some("cgroup"),
                        flags,
                        Some(data.as_str()),
                    )
                } else {
                    Err(Errno::EPERM)
                };
                if r.is_err() {
                    let dir = own_cgroup_dir(&own, &h.mountpoint, &h.root, &data);
                    bind_host(&t, &dir, flags).map_err(sub_err)?;
                }
                // Co-mounted controllers get a symlink per controller, as
                // on the host (cpu -> cpu,cpuacct).
                let name = name.to_string_lossy();
                if name.contains(',') {
                    for c in name.split(',') {
                        if let Ok((dir, link)) =
                            resolve::open_parent_in_root(ctx.root, &dest.join(c), false)
                        {
                            let _ = nix::unistd::symlinkat(name.as_ref(), dir.as_fd(), &link);
                        }
                    }
                }
            }
            if let Some(host) = unified {
                let sub = dest.join("unified");
                let t = resolve::open_in_root(ctx.root, &sub, Create::Dir).map_err(err)?;
                mount_cgroup2_or_bind(ctx, &t, host, flags, &own).map_err(err)?;
            }
            if flags.contains(MsFlags::MS_RDONLY) {
                let top = resolve::open_in_root(ctx.root, dest, Create::No).map_err(err)?;
                remount_bind(&top, tmpfs_flags | MsFlags::MS_RDONLY).map_err(err)?;
            }
        }
    }
    Ok(())
}

fn mount_cgroup2_or_bind(
    ctx: &MountContext<'_>,
    target: &OwnedFd,
    host: &Path,
    flags: MsFlags,
    own: &str,
) -> nix::Result<()> {
    if ctx.cgroupns
        && mount(
            Some("cgroup2"),
            &fd_path(target),
            Some("cgroup2"),
            flags,
            None::<&str>,
        )
        .is_ok()
    {
        return Ok(());
    }
    bind_host(
        target,
        &own_cgroup_dir(own, host, Path::new("/"), ""),
        flags,
    )
}

/// The directory of the calling process's own cgroup in the hierarchy
/// mounted at `mountpoint` (whose root is `root`), from `text`, the
/// contents of `/proc/self/cgroup`; `controllers` is the hierarchy's list
/// as written there (empty for cgroup2). Without a cgroup namespace, this
/// is what a container sees at `/sys/fs/cgroup/<controller>`, as with runc.
fn own_cgroup_dir(text: &str, mountpoint: &Path, root: &Path, controllers: &str) -> PathBuf {
    let want: std::collections::BTreeSet<&str> =
        controllers.split(',').filter(|c| !c.is_empty()).collect();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrl), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let have: std::collections::BTreeSet<&str> =
            ctrl.split(',').filter(|c| !c.is_empty()).collect();
        if have != want {
            continue;
        }
        let rel = Path::new(path)
            .strip_prefix(root)
            .unwrap_or(Path::new(path));
        let rel = rel.strip_prefix("/").unwrap_or(rel);
        let dir = mountpoint.join(rel);
        if dir.is_dir() {
            return dir;
        }
    }
    mountpoint.to_path_buf()
}

/// Without a cgroup namespace, the host hierarchy is bound (read-only when
/// asked) so the container sees the same tree as the host.
fn bind_host(target: &OwnedFd, host: &Path, flags: MsFlags) -> nix::Result<()> {
    mount(
        Some(host),
        &fd_path(target),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )?;
    let r = remount_flags(flags);
    if !r.is_empty() {
        // The fd is the mountpoint underneath; remount through the path of
        // the new mount on top of it.
        let path = std::fs::read_link(fd_path(target)).map_err(|_| Errno::EIO)?;
        let top = nix::fcntl::open(
            &path,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        remount_bind(&top, r)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> MountOptions {
        MountOptions::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_and_data() {
        let o = opts(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data, vec!["mode=755", "size=65536k"]);
        assert!(!o.bind);
    }

    #[test]
    fn later_option_wins() {
        assert!(opts(&["ro", "rw"]).flags.is_empty());
        assert_eq!(opts(&["rw", "ro"]).flags, MsFlags::MS_RDONLY);
    }

    #[test]
    fn bind_propagation_and_recursive() {
        let o = opts(&["rbind", "rprivate", "rro", "rnosuid"]);
        assert!(o.bind);
        assert!(o.flags.contains(MsFlags::MS_REC | MsFlags::MS_BIND));
        assert_eq!(o.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        assert_eq!(o.recursive.set, 0x1 | 0x2);
    }
}
