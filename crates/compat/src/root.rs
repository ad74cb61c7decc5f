//! A root directory (an image's tree or a platform root) and how paths
//! inside it are opened.
//!
//! Every path is resolved inside the root: symlinks with absolute targets
//! and `..` stay below it, as for a process `chroot`ed there. Files are
//! opened with `O_NONBLOCK` and checked with `fstat` before anything reads
//! them, so a fifo or a device never blocks the check.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::sys;

/// An open root directory.
#[derive(Debug)]
pub struct RootDir {
    path: PathBuf,
    fd: OwnedFd,
    dev: u64,
    openat2: bool,
}

/// An opened file inside a root, with what `fstat` said.
#[derive(Debug)]
pub struct Opened {
    /// The file.
    pub file: File,
    /// Its metadata.
    pub meta: std::fs::Metadata,
}

impl RootDir {
    /// Opens `path` as a root.
    pub fn open(path: &Path) -> io::Result<RootDir> {
        let dir = File::open(path)?;
        let meta = dir.metadata()?;
        if !meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
        let fd: OwnedFd = dir.into();
        let openat2 = match sys::openat2_in_root(&fd, ".", libc::O_RDONLY | libc::O_DIRECTORY) {
            Ok(_) => true,
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => false,
            Err(_) => true,
        };
        Ok(RootDir {
            path: path.to_path_buf(),
            fd,
            dev: meta.dev(),
            openat2,
        })
    }

    /// The root's path on the host.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The device of the root directory.
    pub fn dev(&self) -> u64 {
        self.dev
    }

    /// Opens `path` (absolute or relative, either way below the root)
    /// read-only and non-blocking.
    pub fn open_file(&self, path: &str) -> io::Result<Opened> {
        let file = self.open_raw(path, 0)?;
        let meta = file.metadata()?;
        Ok(Opened { file, meta })
    }

    /// Opens a file the walk found to be regular, without following a
    /// final symlink and without `fstat` (the caller asks when it needs to).
    pub fn open_walked(&self, path: &str) -> io::Result<File> {
        self.open_raw(path, libc::O_NOFOLLOW)
    }

    fn open_raw(&self, path: &str, extra: i32) -> io::Result<File> {
        let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | extra;
        let fd = if self.openat2 {
            sys::openat2_in_root(&self.fd.as_fd(), path, flags)?
        } else {
            // Kernels before 5.6: join the path (absolute symlinks then
            // leave the root; documented in docs/check.md).
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | extra)
                .open(self.path.join(path.trim_start_matches('/')))?
                .into()
        };
        Ok(File::from(fd))
    }

    /// Whether `path` exists below the root as a regular file.
    pub fn is_file(&self, path: &str) -> bool {
        self.open_file(path)
            .map(|o| o.meta.is_file())
            .unwrap_or(false)
    }

    /// The contents of a regular file below the root, at most `limit` bytes.
    pub fn read(&self, path: &str, limit: u64) -> io::Result<Vec<u8>> {
        let o = self.open_file(path)?;
        if !o.meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let mut buf = Vec::new();
        o.file.take(limit).read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// The names in directory `path` below the root (sorted).
    pub fn list_dir(&self, path: &str) -> io::Result<Vec<String>> {
        let o = self.open_file(path)?;
        if !o.meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            ));
        }
        // Read through /proc/self/fd so the resolution inside the root holds.
        let via = PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&o.file)
        ));
        let dir = std::fs::read_dir(&via)
            .or_else(|_| std::fs::read_dir(self.path.join(path.trim_start_matches('/'))))?;
        let mut names: Vec<String> = dir
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn absolute_symlinks_stay_inside() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        std::fs::write(t.path().join("etc/hostname"), "inside\n").unwrap();
        symlink("/etc/hostname", t.path().join("link")).unwrap();
        symlink("../../../../etc/hostname", t.path().join("dotdot")).unwrap();
        let root = RootDir::open(t.path()).unwrap();
        assert_eq!(root.read("/link", 100).unwrap(), b"inside\n");
        assert_eq!(root.read("dotdot", 100).unwrap(), b"inside\n");
        assert_eq!(root.list_dir("/etc").unwrap(), ["hostname"]);
    }

    #[test]
    fn loops_and_fifos_are_errors_not_hangs() {
        let t = tempfile::tempdir().unwrap();
        symlink("b", t.path().join("a")).unwrap();
        symlink("a", t.path().join("b")).unwrap();
        let fifo = std::ffi::CString::new(t.path().join("fifo").to_str().unwrap()).unwrap();
        // SAFETY (test): mkfifo with a valid path.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) };
        assert_eq!(rc, 0);
        let root = RootDir::open(t.path()).unwrap();
        assert_eq!(
            root.open_file("a").unwrap_err().raw_os_error(),
            Some(libc::ELOOP)
        );
        assert!(root.read("fifo", 10).is_err());
        assert!(!root.is_file("fifo"));
    }
}
