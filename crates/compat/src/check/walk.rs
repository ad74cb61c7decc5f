//! Walking a tree: every regular file once, without leaving its
//! filesystem.
//!
//! Directories on another device than the root, and mount points listed in
//! `/proc/self/mountinfo` below the root (bind mounts of the same device
//! included), are not entered; `/proc` and `/sys` of a live root are
//! mounts and so are never read. Symlinks are not followed and not listed.
//! The result is sorted, paths relative to the root without a leading
//! slash.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A regular file found by the walk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// Relative to the root, no leading slash.
    pub rel: String,
}

/// Every regular file below `root` on the root's filesystem. Directories
/// that cannot be read are skipped (and counted in the second value).
pub fn walk(root: &Path) -> std::io::Result<(Vec<Found>, usize)> {
    let meta = fs::metadata(root)?;
    let dev = meta.dev();
    let canonical = fs::canonicalize(root)?;
    let mounts = mount_points_below(&canonical);
    let mut out = Vec::new();
    let mut unreadable_dirs = 0;
    let mut stack: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            unreadable_dirs += 1;
            continue;
        };
        for entry in entries.flatten() {
            let Ok(ft) = entry.file_type() else {
                continue;
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            let child_rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if ft.is_dir() {
                let Ok(m) = entry.metadata() else {
                    unreadable_dirs += 1;
                    continue;
                };
                if m.dev() != dev || mounts.contains(&canonical.join(&child_rel)) {
                    continue;
                }
                stack.push((entry.path(), child_rel));
            } else if ft.is_file() {
                out.push(Found { rel: child_rel });
            }
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok((out, unreadable_dirs))
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
        let (files, bad) = walk(t.path()).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(names, ["top", "usr/bin/a"]);
        assert_eq!(bad, 0);
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
