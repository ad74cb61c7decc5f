//! Device nodes and the standard links of `/dev`.
//!
//! The runtime spec's default devices (null, zero, full, random, urandom,
//! tty) and every `linux.devices` entry are created with `mknodat(2)` in a
//! parent directory resolved inside the rootfs; whatever the image had at
//! that path (a planted symlink included) is unlinked first, never
//! followed. In a user namespace, where mknod is refused, the host's node
//! is bind-mounted onto an empty file instead, as runc does.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{makedev, mknodat, Mode, SFlag};
use nix::unistd::{fchownat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::resolve::{self, fd_path, Create};
use crate::error::{InitError, InitStage};

/// A device node to create.
#[derive(Debug, Clone)]
pub(crate) struct Device {
    pub path: PathBuf,
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The devices every container gets (runtime spec, "Default Devices").
pub(crate) fn defaults() -> Vec<Device> {
    [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
    .into_iter()
    .map(|(p, major, minor)| Device {
        path: p.into(),
        kind: SFlag::S_IFCHR,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

impl Device {
    /// A `linux.devices` entry.
    pub(crate) fn from_spec(d: &LinuxDevice) -> Result<Self, String> {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => return Err("type \"a\" is only valid in cgroup rules".into()),
        };
        if !d.path().is_absolute() {
            return Err(format!("{} is not an absolute path", d.path().display()));
        }
        Ok(Device {
            path: d.path().clone(),
            kind,
            major: d.major() as u64,
            minor: d.minor() as u64,
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        })
    }
}

/// Creates `dev` inside the root (`bind` = bind the host's node instead
/// of mknod, for user namespaces).
pub(crate) fn create(root: &impl AsFd, dev: &Device, bind: bool) -> Result<(), InitError> {
    let object = dev.path.display().to_string();
    let err = |e: Errno| InitError::new(InitStage::Device, object.clone(), e);
    let (dir, name) = resolve::open_parent_in_root(root, &dev.path, true).map_err(err)?;
    // Whatever is there (a file, a symlink planted by the image) goes.
    match unlinkat(dir.as_fd(), &name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(err(e)),
    }
    if !bind {
        let mode = Mode::from_bits_truncate(dev.mode);
        match mknodat(
            dir.as_fd(),
            &name,
            dev.kind,
            mode,
            makedev(dev.major, dev.minor),
        ) {
            Ok(()) => {
                // mknod applies the umask; set the exact mode and owner.
                nix::sys::stat::fchmodat(
                    dir.as_fd(),
                    &name,
                    mode,
                    nix::sys::stat::FchmodatFlags::NoFollowSymlink,
                )
                .or_else(|e| {
                    if e == Errno::EOPNOTSUPP {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .map_err(err)?;
                fchownat(
                    dir.as_fd(),
                    &name,
                    Some(Uid::from_raw(dev.uid)),
                    Some(Gid::from_raw(dev.gid)),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(err)?;
                return Ok(());
            }
            Err(Errno::EPERM) => {}
            Err(e) => return Err(err(e)),
        }
    }
    // Bind the host's node onto an empty file.
    let target = resolve::open_in_root(root, &dev.path, Create::File).map_err(err)?;
    if resolve::file_type(&target).map_err(err)? != SFlag::S_IFREG {
        return Err(err(Errno::EEXIST));
    }
    mount(
        Some(&dev.path),
        &fd_path(&target),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(err)
}

/// The symlinks of a standard `/dev`.
pub(crate) fn create_links(root: &impl AsFd, with_kcore: bool) -> Result<(), InitError> {
    let mut links = vec![
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
        ("pts/ptmx", "/dev/ptmx"),
    ];
    if with_kcore {
        links.push(("/proc/kcore", "/dev/core"));
    }
    for (target, link) in links {
        let err = |e: Errno| InitError::new(InitStage::Device, link, e);
        let (dir, name) = resolve::open_parent_in_root(root, Path::new(link), true).map_err(err)?;
        match symlinkat(target, dir.as_fd(), &name) {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                // /dev/ptmx must point to the container's devpts: replace
                // whatever the image had.
                if link == "/dev/ptmx" {
                    unlinkat(dir.as_fd(), &name, UnlinkatFlags::NoRemoveDir).map_err(err)?;
                    symlinkat(target, dir.as_fd(), &name).map_err(err)?;
                }
            }
            Err(e) => return Err(err(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::fcntl::{open, OFlag};
    use std::os::unix::fs::{symlink, FileTypeExt};

    #[test]
    fn planted_symlink_is_replaced_not_followed() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: mknod needs root");
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "CI must run as root"
            );
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let victim = tempfile::NamedTempFile::new().unwrap();
        std::fs::create_dir(t.path().join("dev")).unwrap();
        symlink(victim.path(), t.path().join("dev/null")).unwrap();
        let root = open(t.path(), OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        for d in defaults() {
            create(&root, &d, false).unwrap();
        }
        let meta = std::fs::symlink_metadata(t.path().join("dev/null")).unwrap();
        assert!(meta.file_type().is_char_device());
        assert!(std::fs::metadata(victim.path()).unwrap().is_file());
        create_links(&root, false).unwrap();
        assert_eq!(
            std::fs::read_link(t.path().join("dev/ptmx")).unwrap(),
            PathBuf::from("pts/ptmx")
        );
    }
}
