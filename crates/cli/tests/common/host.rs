//! What a runtime leaves on the host: mounts (/proc/self/mountinfo), cgroup directories,
//! the `--root` tree, and the `HostSnapshot` that bad-input tests compare.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// Mount points at or below `dir`, in mountinfo order.
pub(crate) fn mounts_under(dir: &Path) -> Vec<String> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let dir = dir.to_string_lossy().into_owned();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|mp| mp == &dir || mp.starts_with(&format!("{dir}/")))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
pub(crate) fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let n = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(n);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A mount from /proc/self/mountinfo.
#[derive(Clone, Debug)]
pub struct MountInfo {
    /// The mount's root within its filesystem.
    pub root: String,
    /// Where it is mounted.
    pub mount_point: String,
    /// Filesystem type.
    pub fstype: String,
    /// Superblock options (for cgroup v1, the controllers).
    pub super_options: Vec<String>,
}

/// The mounts of this process's mount namespace.
pub fn mountinfo() -> Vec<MountInfo> {
    let text = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            Some(MountInfo {
                root: unescape_mountinfo(fields.get(3)?),
                mount_point: unescape_mountinfo(fields.get(4)?),
                fstype: fields.get(sep + 1)?.to_string(),
                super_options: fields
                    .get(sep + 3)
                    .map(|o| o.split(',').map(String::from).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The host path of `file` in the cgroup of `pid` for `controller` (e.g. "pids"): the
/// cgroup v1 hierarchy of that controller if there is one, else the v2 hierarchy.
pub fn host_cgroup_file(pid: u32, controller: &str, file: &str) -> PathBuf {
    let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/cgroup: {e}"));
    let mounts = mountinfo();
    // v1: "N:ctrl1,ctrl2:/path"
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next(), parts.next(), parts.next());
        let (Some(ctrls), Some(path)) = (ctrls, path) else {
            continue;
        };
        if !ctrls.split(',').any(|c| c == controller) {
            continue;
        }
        let m = mounts
            .iter()
            .find(|m| m.fstype == "cgroup" && m.super_options.iter().any(|o| o == controller))
            .unwrap_or_else(|| panic!("no cgroup v1 mount for {controller}"));
        return join_cgroup(m, path).join(file);
    }
    let path = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_else(|| panic!("pid {pid}: no {controller} cgroup in\n{cgroup}"));
    let m = mounts
        .iter()
        .find(|m| m.fstype == "cgroup2")
        .expect("no cgroup2 mount");
    join_cgroup(m, path).join(file)
}

fn join_cgroup(m: &MountInfo, path: &str) -> PathBuf {
    let rel = path
        .strip_prefix(m.root.trim_end_matches('/'))
        .unwrap_or(path)
        .trim_start_matches('/');
    Path::new(&m.mount_point).join(rel)
}

/// What a runtime command may leave on the host: the `--root` tree, the mount table, and
/// cgroup directories that belong to the container or to plinth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSnapshot {
    /// Paths under `--root`, relative to it, with a trailing `/` for directories.
    pub root_listing: BTreeSet<String>,
    /// Lines of /proc/self/mountinfo.
    pub mounts: BTreeSet<String>,
    /// Cgroup directories whose path contains the container id, or "plinth" but not
    /// another test's id (`plinth-test-…`).
    pub cgroups: BTreeSet<String>,
}

/// How deep and how wide the cgroup walk may go: enough for any runtime's layout, bounded
/// on hosts with huge trees.
const CGROUP_WALK_MAX_DEPTH: usize = 8;
const CGROUP_WALK_MAX_DIRS: usize = 50_000;

impl HostSnapshot {
    /// Capture the host state around container `id` whose runtime uses `root`.
    pub fn capture(root: &Path, id: &str) -> HostSnapshot {
        let mut root_listing = BTreeSet::new();
        list_tree(root, root, &mut root_listing);
        let mounts = fs::read_to_string("/proc/self/mountinfo")
            .expect("read mountinfo")
            .lines()
            .map(String::from)
            .collect();
        let mut cgroups = BTreeSet::new();
        let mut budget = CGROUP_WALK_MAX_DIRS;
        let mut seen = BTreeSet::new();
        for m in mountinfo() {
            if (m.fstype == "cgroup" || m.fstype == "cgroup2") && seen.insert(m.mount_point.clone())
            {
                walk_cgroups(Path::new(&m.mount_point), id, 0, &mut budget, &mut cgroups);
            }
        }
        HostSnapshot {
            root_listing,
            mounts,
            cgroups,
        }
    }
}

fn list_tree(base: &Path, dir: &Path, out: &mut BTreeSet<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let rel = path
            .strip_prefix(base)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir {
            out.insert(format!("{rel}/"));
            list_tree(base, &path, out);
        } else {
            out.insert(rel);
        }
    }
}

fn walk_cgroups(
    dir: &Path,
    id: &str,
    depth: usize,
    budget: &mut usize,
    out: &mut BTreeSet<String>,
) {
    if depth >= CGROUP_WALK_MAX_DEPTH {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if *budget == 0 {
            return;
        }
        // Cgroup directories are real directories; skip files and symlinks (v1 aliases
        // such as cpu,cpuacct).
        if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        *budget -= 1;
        let path = e.path();
        let s = path.to_string_lossy();
        let other_test = s.contains("plinth-test-") && !s.contains(id);
        if s.contains(id) || (s.contains("plinth") && !other_test) {
            out.insert(s.into_owned());
        }
        walk_cgroups(&path, id, depth + 1, budget, out);
    }
}

/// Fail with a readable diff unless the two snapshots are equal.
pub fn assert_unchanged(before: &HostSnapshot, after: &HostSnapshot) {
    if before == after {
        return;
    }
    let mut report = String::from("host state changed:\n");
    for (what, b, a) in [
        ("--root", &before.root_listing, &after.root_listing),
        ("mountinfo", &before.mounts, &after.mounts),
        ("cgroups", &before.cgroups, &after.cgroups),
    ] {
        for gone in b.difference(a) {
            let _ = writeln!(report, "  {what}: - {gone}");
        }
        for new in a.difference(b) {
            let _ = writeln!(report, "  {what}: + {new}");
        }
    }
    panic!("{report}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_unescapes_spaces() {
        assert_eq!(unescape_mountinfo(r"/a\040b"), "/a b");
        assert_eq!(unescape_mountinfo(r"/plain"), "/plain");
    }

    #[test]
    fn cgroup_paths_are_joined_below_the_mount_root() {
        let m = MountInfo {
            root: "/".into(),
            mount_point: "/sys/fs/cgroup/pids".into(),
            fstype: "cgroup".into(),
            super_options: vec!["rw".into(), "pids".into()],
        };
        assert_eq!(
            join_cgroup(&m, "/a/b"),
            Path::new("/sys/fs/cgroup/pids/a/b")
        );
        let nested = MountInfo {
            root: "/outer".into(),
            ..m
        };
        assert_eq!(
            join_cgroup(&nested, "/outer/c"),
            Path::new("/sys/fs/cgroup/pids/c")
        );
    }
}
