//! Walking a tree: every regular file once, without leaving its
//! filesystem.
//!
//! Directories on another device than the root, and mount points listed in
//! `/proc/self/mountinfo` below the root (bind mounts of the same device
//! included), are not entered; `/proc` and `/sys` of a live root are
//! mounts and so are never read. Symlinks are not followed and not listed.
//! Paths are relative to the root without a leading slash; directories
//! are read in parallel and the files of each directory read as they are
//! listed, opened relative to the directory.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Walks `root` in parallel and calls `read` on every regular file, opened
/// relative to its directory (non-blocking, not following symlinks), with
/// its path relative to the root; collects what `read` returns. The same
/// rules as the module doc decide what is entered.
pub fn walk_read<T, F>(root: &Path, read: &F) -> std::io::Result<Vec<T>>
where
    T: Send,
    F: Fn(std::io::Result<fs::File>, String) -> Option<T> + Sync,
{
    let dev = fs::metadata(root)?.dev();
    let canonical = fs::canonicalize(root)?;
    let mounts = mount_points_below(&canonical);
    let out = std::sync::Mutex::new(Vec::new());
    let walker = Walker {
        dev,
        canonical: &canonical,
        mounts: &mounts,
        read,
        out: &out,
    };
    rayon::scope(|s| walker.visit(s, root.to_path_buf(), String::new()));
    Ok(out.into_inner().unwrap_or_else(|e| e.into_inner()))
}

struct Walker<'a, T, F> {
    dev: u64,
    canonical: &'a Path,
    mounts: &'a HashSet<PathBuf>,
    read: &'a F,
    out: &'a std::sync::Mutex<Vec<T>>,
}

impl<'a, T, F> Walker<'a, T, F>
where
    T: Send,
    F: Fn(std::io::Result<fs::File>, String) -> Option<T> + Sync,
{
    fn visit<'s>(&'s self, s: &rayon::Scope<'s>, dir: PathBuf, rel: String)
    where
        'a: 's,
    {
        let (Ok(entries), Ok(dirfd)) = (fs::read_dir(&dir), fs::File::open(&dir)) else {
            return;
        };
        let mut local = Vec::new();
        for entry in entries.flatten() {
            let Ok(ft) = entry.file_type() else {
                continue;
            };
            let name = entry.file_name();
            let child_rel = if rel.is_empty() {
                name.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", name.to_string_lossy())
            };
            if ft.is_dir() {
                let Ok(m) = entry.metadata() else {
                    continue;
                };
                if m.dev() != self.dev || self.mounts.contains(&self.canonical.join(&child_rel)) {
                    continue;
                }
                let path = entry.path();
                s.spawn(move |s| self.visit(s, path, child_rel));
            } else if ft.is_file() {
                let file = crate::sys::openat_nofollow(&dirfd, &name).map(fs::File::from);
                if let Some(t) = (self.read)(file, child_rel) {
                    local.push(t);
                }
            }
        }
        if !local.is_empty() {
            self.out
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .append(&mut local);
        }
    }
}

/// Mount points strictly below `root`, from this process's mountinfo.
fn mount_points_below(root: &Path) -> HashSet<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p != root && p.starts_with(root))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn lists_regular_files_only() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("usr/bin")).unwrap();
        fs::write(t.path().join("usr/bin/a"), "x").unwrap();
        fs::write(t.path().join("top"), "y").unwrap();
        symlink("usr/bin", t.path().join("bin")).unwrap();
        symlink("loop", t.path().join("loop")).unwrap();
        let mut names = walk_read(t.path(), &|f, rel| f.ok().map(|_| rel)).unwrap();
        names.sort();
        assert_eq!(names, ["top", "usr/bin/a"]);
    }

    #[test]
    fn does_not_enter_proc() {
        // Walk a directory that contains a mount point: /proc under / is
        // one; use the mount point list directly to avoid walking all of /.
        let mounts = mount_points_below(Path::new("/"));
        assert!(mounts.contains(Path::new("/proc")));
    }

    #[test]
    fn unescapes_mountinfo() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
