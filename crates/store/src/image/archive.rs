//! What an import reads from: a directory (an OCI image layout) or a tar
//! file (oci-archive, docker-archive, or a plain root filesystem), seen
//! as a set of named members.
//!
//! A tar is indexed once (names to data offsets, seeking over the data),
//! and members are then read in place with `pread`, so a 200 MB archive is
//! never copied. Member names are only ever lookup keys here: nothing is
//! written from them. Symlinks and hard links between members (docker
//! writes them for repeated layers) are followed inside the archive only.
//! Directories are read with `openat2(RESOLVE_IN_ROOT)`, so a symlink in
//! the layout cannot lead out of it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::ImageError;
use crate::sys;

/// One member of a tar.
#[derive(Debug, Clone)]
pub(crate) enum Member {
    Data { offset: u64, size: u64 },
    Truncated { offset: u64, size: u64 },
    Hardlink(String),
    Symlink(String),
    Other,
}

/// The input of an import.
pub(crate) enum Container {
    Dir {
        path: PathBuf,
        fd: OwnedFd,
    },
    Tar {
        path: PathBuf,
        file: File,
        len: u64,
        members: HashMap<String, Member>,
    },
}

/// `a/./b//c` as `a/b/c`; None for names that leave the archive.
pub(crate) fn normalize(name: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}

impl Container {
    pub(crate) fn dir(path: &Path) -> Result<Container, ImageError> {
        let fd = sys::open_dir(path).map_err(|e| ImageError::io(path, e.into()))?;
        Ok(Container::Dir {
            path: path.to_path_buf(),
            fd,
        })
    }

    /// Indexes a tar file. Fails on a file that is not a tar at all.
    pub(crate) fn tar(path: &Path, mut file: File) -> Result<Container, ImageError> {
        use std::io::Seek;
        file.rewind().map_err(|e| ImageError::io(path, e))?;
        let len = file.metadata().map_err(|e| ImageError::io(path, e))?.len();
        let mut members = HashMap::new();
        let mut archive = tar::Archive::new(&file);
        let bad = |e: io::Error| ImageError::NotAnImage {
            path: path.to_path_buf(),
            why: format!("not a tar archive ({e})"),
        };
        let entries = archive.entries_with_seek().map_err(bad)?;
        let mut seen = 0;
        for entry in entries {
            let entry = entry.map_err(bad)?;
            seen += 1;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let Some(name) = normalize(&name) else {
                continue;
            };
            let link = || {
                entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default()
            };
            let member = match entry.header().entry_type() {
                t if t.is_file() => {
                    let offset = entry.raw_file_position();
                    let size = entry.size();
                    if offset.checked_add(size).is_none_or(|end| end > len) {
                        // Refused when read: in a root filesystem tar this is
                        // the extractor's to report, entry by entry.
                        Member::Truncated { offset, size }
                    } else {
                        Member::Data { offset, size }
                    }
                }
                t if t.is_hard_link() => Member::Hardlink(link()),
                t if t.is_symlink() => Member::Symlink(link()),
                _ => Member::Other,
            };
            // A later member of the same name wins, as in tar.
            members.insert(name, member);
        }
        if seen == 0 {
            return Err(ImageError::NotAnImage {
                path: path.to_path_buf(),
                why: "an empty tar archive".into(),
            });
        }
        Ok(Container::Tar {
            path: path.to_path_buf(),
            file,
            len,
            members,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        match self {
            Container::Dir { path, .. } | Container::Tar { path, .. } => path,
        }
    }

    /// The data of a tar member, links followed (at most 16).
    fn resolve_tar(&self, name: &str) -> Option<Member> {
        let Container::Tar { members, .. } = self else {
            return None;
        };
        let mut name = normalize(name)?;
        for _ in 0..16 {
            match members.get(&name)? {
                m @ (Member::Data { .. } | Member::Truncated { .. }) => return Some(m.clone()),
                Member::Hardlink(t) => name = normalize(t)?,
                Member::Symlink(t) => {
                    let base = match name.rsplit_once('/') {
                        Some((dir, _)) if !t.starts_with('/') => format!("{dir}/{t}"),
                        _ => t.clone(),
                    };
                    name = normalize(&base)?;
                }
                Member::Other => return None,
            }
        }
        None
    }

    /// Whether a member exists (as a file).
    pub(crate) fn has(&self, name: &str) -> bool {
        match self {
            Container::Dir { fd, .. } => sys::open_file_in_root(fd.as_fd(), Path::new(name))
                .and_then(|f| f.metadata().map_err(|_| nix::errno::Errno::EIO))
                .is_ok_and(|m| m.is_file()),
            Container::Tar { .. } => self.resolve_tar(name).is_some(),
        }
    }

    /// A reader of a member and its size.
    pub(crate) fn open(&self, name: &str) -> Result<(Box<dyn Read + Send + '_>, u64), ImageError> {
        let missing = || ImageError::Missing {
            archive: self.path().to_path_buf(),
            member: name.to_string(),
        };
        match self {
            Container::Dir { fd, path } => {
                let f = match sys::open_file_in_root(fd.as_fd(), Path::new(name)) {
                    Ok(f) => f,
                    Err(nix::errno::Errno::ENOENT) => return Err(missing()),
                    Err(e) => return Err(ImageError::io(&path.join(name), e.into())),
                };
                let meta = f
                    .metadata()
                    .map_err(|e| ImageError::io(&path.join(name), e))?;
                if !meta.is_file() {
                    return Err(missing());
                }
                // O_NONBLOCK was only for the open (a fifo must not hang it).
                nix::fcntl::fcntl(
                    &f,
                    nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
                )
                .map_err(|e| ImageError::io(&path.join(name), e.into()))?;
                Ok((Box::new(f), meta.len()))
            }
            Container::Tar { file, len, .. } => {
                let (offset, size) = match self.resolve_tar(name).ok_or_else(missing)? {
                    Member::Data { offset, size } => (offset, size),
                    Member::Truncated { offset, size } => {
                        return Err(ImageError::Malformed {
                            archive: self.path().to_path_buf(),
                            member: name.to_string(),
                            detail: format!(
                                "declares {size} bytes at offset {offset}, past the end of the {len}-byte file (truncated?)"
                            ),
                        })
                    }
                    _ => return Err(missing()),
                };
                Ok((
                    Box::new(Section {
                        file,
                        pos: offset,
                        end: offset + size,
                    }),
                    size,
                ))
            }
        }
    }

    /// A small member (JSON) read whole; more than `cap` bytes is refused.
    pub(crate) fn read_small(&self, name: &str, cap: u64) -> Result<Vec<u8>, ImageError> {
        let (mut r, size) = self.open(name)?;
        if size > cap {
            return Err(ImageError::Malformed {
                archive: self.path().to_path_buf(),
                member: name.to_string(),
                detail: format!("{size} bytes; a metadata file may have at most {cap}"),
            });
        }
        let mut buf = Vec::with_capacity(size as usize);
        r.read_to_end(&mut buf)
            .map_err(|e| ImageError::io(&self.path().join(name), e))?;
        Ok(buf)
    }
}

/// A window of a file, read with `pread`.
struct Section<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for Section<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.pos;
        if left == 0 {
            return Ok(0);
        }
        let n = buf.len().min(left.min(usize::MAX as u64) as usize);
        let got = self.file.read_at(&mut buf[..n], self.pos)?;
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive file ends early",
            ));
        }
        self.pos += got as u64;
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn names_stay_inside() {
        assert_eq!(normalize("./a//b/./c").as_deref(), Some("a/b/c"));
        assert_eq!(normalize("a/../b").as_deref(), Some("b"));
        assert_eq!(normalize("../x"), None);
        assert_eq!(normalize("/abs/x").as_deref(), Some("abs/x"));
    }
}
