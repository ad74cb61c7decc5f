//! Resolving paths inside the container's root without leaving it.
//!
//! Every mount destination, device node and masked path is looked up with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` relative to an fd of
//! the rootfs: a symlink planted in the image (`/proc -> /`,
//! `/dev/null -> /proc/sys/kernel/core_pattern`) resolves as if the rootfs
//! were `/`, so it can never point outside it (the CVE-2021-30465 and
//! CVE-2025-31133 classes). Missing components are created one at a time
//! under the same rule. The result is an `O_PATH` fd; mounts target it as
//! `/proc/self/fd/N`, so nothing can be swapped between check and use.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, Mode, SFlag};

/// What to create when a path does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Create {
    /// Nothing: missing is an error.
    No,
    /// A directory (and its parents).
    Dir,
    /// An empty regular file (parents as directories).
    File,
}

fn how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

/// Opens `path` (absolute or relative, interpreted inside `root`) as an
/// `O_PATH` fd, creating it as asked. Symlinks inside the root are followed
/// but stay inside it; magic links (`/proc/self/fd/..`) are refused.
pub(crate) fn open_in_root(root: &impl AsFd, path: &Path, create: Create) -> nix::Result<OwnedFd> {
    let rel = relative(path);
    match openat2(root.as_fd(), &rel, how(OFlag::O_PATH)) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) if create != Create::No => {}
        Err(e) => return Err(e),
    }
    if let Some(fd) = create_last(root, &rel, create) {
        return Ok(fd);
    }
    create_in_root(root, &rel, create)
}

/// The usual case of a missing path: its parent exists and only the last
/// component is new. Makes it there and opens it without following links;
/// `None` leaves every other case (a missing parent, a dangling symlink, a
/// race, an error to report) to the walk of [`create_in_root`].
fn create_last(root: &impl AsFd, rel: &Path, create: Create) -> Option<OwnedFd> {
    let name = rel.file_name()?;
    let parent = match rel.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = openat2(
        root.as_fd(),
        parent,
        how(OFlag::O_PATH | OFlag::O_DIRECTORY),
    )
    .ok()?;
    make_entry(&dir, name, create == Create::File).ok()?;
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    openat2(dir.as_fd(), name, how).ok()
}

/// Makes the entry `name` in `dir`: an empty file (mode 0644, never over
/// an existing entry, a link included) when `file`, else a directory
/// (0755).
fn make_entry(dir: &impl AsFd, name: &std::ffi::OsStr, file: bool) -> nix::Result<()> {
    if file {
        let how = OpenHow::new()
            .flags(OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC)
            .mode(Mode::from_bits_truncate(0o644))
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS);
        openat2(dir.as_fd(), name, how).map(drop)
    } else {
        nix::sys::stat::mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(0o755))
    }
}

/// Walks `rel` from the root one component at a time, following symlinks
/// by hand (an absolute target restarts at the root, `..` stops at it)
/// and creating what is missing. Every name it acts on is a real
/// directory entry below the root; the result is reopened with
/// `RESOLVE_NO_SYMLINKS`, so a link swapped in meanwhile fails the open.
fn create_in_root(root: &impl AsFd, rel: &Path, create: Create) -> nix::Result<OwnedFd> {
    use nix::fcntl::{readlinkat, AtFlags};
    use nix::sys::stat::fstatat;
    use std::collections::VecDeque;
    use std::ffi::OsString;

    const MAX_LINKS: usize = 40;
    let no_links = |flags: OFlag| {
        OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS)
    };
    let open_dir = |stack: &[OsString]| {
        let p: PathBuf = if stack.is_empty() {
            PathBuf::from(".")
        } else {
            stack.iter().collect()
        };
        openat2(
            root.as_fd(),
            &p,
            no_links(OFlag::O_PATH | OFlag::O_DIRECTORY),
        )
    };
    let mut todo: VecDeque<OsString> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut stack: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            stack.pop();
            continue;
        }
        let dir = open_dir(&stack)?;
        match fstatat(dir.as_fd(), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(Errno::ELOOP);
                }
                let target = PathBuf::from(readlinkat(dir.as_fd(), name.as_os_str())?);
                if target.is_absolute() {
                    stack.clear();
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(n) => todo.push_front(n.to_os_string()),
                        Component::ParentDir => todo.push_front("..".into()),
                        _ => {}
                    }
                }
            }
            Ok(_) => stack.push(name),
            Err(Errno::ENOENT) if create != Create::No => {
                if todo.is_empty() && create == Create::File {
                    make_entry(&dir, &name, true)?;
                } else {
                    match make_entry(&dir, &name, false) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(e),
                    }
                }
                stack.push(name);
            }
            Err(e) => return Err(e),
        }
    }
    let p: PathBuf = if stack.is_empty() {
        PathBuf::from(".")
    } else {
        stack.iter().collect()
    };
    openat2(root.as_fd(), &p, no_links(OFlag::O_PATH))
}

/// The parent directory of `path` inside `root` (created if `create`), and
/// the final component's name.
pub(crate) fn open_parent_in_root(
    root: &impl AsFd,
    path: &Path,
    create: bool,
) -> nix::Result<(OwnedFd, PathBuf)> {
    let rel = relative(path);
    let name = rel.file_name().ok_or(Errno::EINVAL)?.into();
    let parent = rel.parent().unwrap_or(Path::new(""));
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let fd = open_in_root(root, parent, if create { Create::Dir } else { Create::No })?;
    if !SFlag::from_bits_truncate(fstat(&fd)?.st_mode).contains(SFlag::S_IFDIR) {
        return Err(Errno::ENOTDIR);
    }
    // Re-open as a directory fd usable with *at() calls.
    let dir = openat2(fd.as_fd(), ".", how(OFlag::O_DIRECTORY | OFlag::O_RDONLY))?;
    Ok((dir, name))
}

/// Whether `path` names a regular file inside the directory `root`,
/// resolved as the container would resolve it (symlinks followed but kept
/// inside the root, magic links refused).
pub fn is_file_in_root(root: &Path, path: &Path) -> bool {
    let Ok(dir) = nix::fcntl::open(
        root,
        OFlag::O_DIRECTORY | OFlag::O_PATH | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    ) else {
        return false;
    };
    open_in_root(&dir, path, Create::No)
        .and_then(|fd| file_type(&fd))
        .is_ok_and(|t| t == SFlag::S_IFREG)
}

/// `/proc/self/fd/N`: the path through which a mount targets an fd.
pub(crate) fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// The file type of an fd.
pub(crate) fn file_type(fd: &impl AsFd) -> nix::Result<SFlag> {
    Ok(SFlag::from_bits_truncate(fstat(fd)?.st_mode) & SFlag::S_IFMT)
}

fn relative(path: &Path) -> PathBuf {
    let rel: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::Prefix(_)))
        .collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root() -> (tempfile::TempDir, OwnedFd) {
        let t = tempfile::tempdir().unwrap();
        let fd = nix::fcntl::open(
            t.path(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        (t, fd)
    }

    fn real(fd: &OwnedFd) -> PathBuf {
        std::fs::read_link(fd_path(fd)).unwrap()
    }

    #[test]
    fn absolute_symlink_stays_inside() {
        let (t, fd) = root();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), t.path().join("escape")).unwrap();
        let got = open_in_root(&fd, Path::new("/escape/x"), Create::Dir).unwrap();
        let p = real(&got);
        assert!(p.starts_with(t.path()), "{p:?} left the root");
        assert!(!outside.path().join("x").exists());
    }

    #[test]
    fn dotdot_symlink_stays_inside() {
        let (t, fd) = root();
        symlink("../../../../../../tmp", t.path().join("up")).unwrap();
        let got = open_in_root(&fd, Path::new("up/plinth-never"), Create::File).unwrap();
        assert!(real(&got).starts_with(t.path()));
        assert!(!Path::new("/tmp/plinth-never").exists());
    }

    #[test]
    fn creates_file_and_parents() {
        let (t, fd) = root();
        let got = open_in_root(&fd, Path::new("/a/b/c"), Create::File).unwrap();
        assert_eq!(file_type(&got).unwrap(), SFlag::S_IFREG);
        assert!(t.path().join("a/b/c").is_file());
        let (_parent, name) = open_parent_in_root(&fd, Path::new("/a/b/d"), false).unwrap();
        assert_eq!(name, PathBuf::from("d"));
    }

    #[test]
    fn last_component_is_made_in_its_parent_as_resolved_inside() {
        let (t, fd) = root();
        // An absolute link whose target exists both inside the root and
        // outside it: the new directory goes inside.
        let outside = tempfile::tempdir().unwrap();
        let inside = t.path().join(outside.path().strip_prefix("/").unwrap());
        std::fs::create_dir_all(&inside).unwrap();
        symlink(outside.path(), t.path().join("link")).unwrap();
        let got = open_in_root(&fd, Path::new("/link/new"), Create::Dir).unwrap();
        assert_eq!(real(&got), inside.join("new"));
        assert_eq!(file_type(&got).unwrap(), SFlag::S_IFDIR);
        assert!(!outside.path().join("new").exists());
    }

    #[test]
    fn dangling_last_link_is_followed_inside() {
        let (t, fd) = root();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("made");
        symlink(&target, t.path().join("d")).unwrap();
        let got = open_in_root(&fd, Path::new("/d"), Create::Dir).unwrap();
        assert!(
            real(&got).starts_with(t.path()),
            "{:?} left the root",
            real(&got)
        );
        assert!(!target.exists());
        let f = open_in_root(&fd, Path::new("/d/f"), Create::File).unwrap();
        assert_eq!(file_type(&f).unwrap(), SFlag::S_IFREG);
        assert!(!target.join("f").exists());
    }

    #[test]
    fn missing_without_create_fails() {
        let (_t, fd) = root();
        assert_eq!(
            open_in_root(&fd, Path::new("/nope"), Create::No).unwrap_err(),
            Errno::ENOENT
        );
    }
}
