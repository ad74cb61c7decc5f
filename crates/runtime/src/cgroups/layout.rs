//! How the cgroup hierarchies are mounted: [`Layout`] detection from
//! `/proc/self/mountinfo`, and the calling process's own cgroups from
//! `/proc/self/cgroup`.
//!
//! Nothing here assumes a mount point: a host is pure v2 when it has a
//! `cgroup2` mount and no `cgroup` (v1) mount, and legacy (v1, or hybrid
//! when a `cgroup2` mount sits beside the v1 ones) otherwise. Mounts hidden
//! by a later mount on the same or a parent directory are ignored, and a
//! hierarchy mounted twice (bind mounts) is counted once. Which hierarchy a
//! controller is used in, and the container's directories, are decided by
//! the parent module.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::CgroupError;

const MOUNTINFO: &str = "/proc/self/mountinfo";
const SELF_CGROUP: &str = "/proc/self/cgroup";

/// How the cgroup hierarchies are mounted on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// Pure cgroup v2 at the mount point.
    Unified(PathBuf),
    /// v1 controllers, and possibly a cgroup2 mount beside them (hybrid).
    Legacy {
        /// The v1 hierarchies, in mountinfo order.
        hierarchies: Vec<Hierarchy>,
        /// The cgroup2 mount point of a hybrid host.
        unified: Option<PathBuf>,
    },
}

/// One v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hierarchy {
    /// Where the hierarchy is mounted.
    pub mountpoint: PathBuf,
    /// Controllers (and `name=` options) co-mounted there.
    pub controllers: Vec<String>,
    /// The cgroup that is mounted at `mountpoint` (`/` unless only a
    /// subtree of the hierarchy is visible, as in some containers).
    #[serde(default = "root_path")]
    pub root: PathBuf,
}

fn root_path() -> PathBuf {
    PathBuf::from("/")
}

impl Hierarchy {
    /// Whether `controller` (e.g. `memory`, `name=systemd`) is mounted here.
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// Mount options of a `cgroup` (v1) mount that are not controllers.
const NOT_CONTROLLERS: &[&str] = &[
    "rw",
    "ro",
    "noprefix",
    "clone_children",
    "xattr",
    "cpuset_v2_mode",
    "favordynmods",
    "nofavor",
    "none",
    "all",
];

impl Layout {
    /// Detects the layout of this host from `/proc/self/mountinfo`.
    pub fn detect() -> Result<Self, CgroupError> {
        let text = std::fs::read_to_string(MOUNTINFO).map_err(|source| CgroupError::Io {
            path: MOUNTINFO.into(),
            source,
        })?;
        Self::from_mountinfo(&text)
    }

    /// Computes the layout described by the text of a mountinfo file.
    pub fn from_mountinfo(text: &str) -> Result<Self, CgroupError> {
        struct Mount {
            mountpoint: PathBuf,
            root: PathBuf,
            v2: bool,
            controllers: Vec<String>,
        }
        let mut mounts: Vec<Mount> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |message: &'static str| CgroupError::MountInfo {
                path: MOUNTINFO.into(),
                line: n + 1,
                message,
            };
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields
                .iter()
                .position(|f| *f == "-")
                .ok_or_else(|| bad("no \" - \" separator"))?;
            if sep < 6 || fields.len() < sep + 3 {
                return Err(bad("too few fields"));
            }
            let root = PathBuf::from(unescape(fields[3]));
            let mountpoint = PathBuf::from(unescape(fields[4]));
            // Anything mounted here hides what was mounted at or below it.
            mounts.retain(|m| !m.mountpoint.starts_with(&mountpoint));
            let fstype = fields[sep + 1];
            let superopts = fields.get(sep + 3).copied().unwrap_or("");
            match fstype {
                "cgroup2" => mounts.push(Mount {
                    mountpoint,
                    root,
                    v2: true,
                    controllers: Vec::new(),
                }),
                "cgroup" => {
                    let controllers: Vec<String> = superopts
                        .split(',')
                        .filter(|o| {
                            !o.is_empty()
                                && !NOT_CONTROLLERS.contains(o)
                                && (o.starts_with("name=") || !o.contains('='))
                        })
                        .map(str::to_owned)
                        .collect();
                    if controllers.is_empty() {
                        continue;
                    }
                    mounts.push(Mount {
                        mountpoint,
                        root,
                        v2: false,
                        controllers,
                    });
                }
                _ => {}
            }
        }

        let mut hierarchies: Vec<Hierarchy> = Vec::new();
        let mut unified: Option<PathBuf> = None;
        for m in mounts {
            if m.v2 {
                if unified.is_none() {
                    unified = Some(m.mountpoint);
                }
                continue;
            }
            let mut sorted = m.controllers.clone();
            sorted.sort();
            let seen = hierarchies.iter().any(|h| {
                let mut other = h.controllers.clone();
                other.sort();
                other == sorted
            });
            if !seen {
                hierarchies.push(Hierarchy {
                    mountpoint: m.mountpoint,
                    controllers: m.controllers,
                    root: m.root,
                });
            }
        }
        match (hierarchies.is_empty(), unified) {
            (true, Some(mp)) => Ok(Layout::Unified(mp)),
            (true, None) => Err(CgroupError::NoCgroupMounts {
                path: MOUNTINFO.into(),
            }),
            (false, unified) => Ok(Layout::Legacy {
                hierarchies,
                unified,
            }),
        }
    }

    /// The cgroup2 mount point (pure v2, or the unified mount of a hybrid
    /// host).
    pub fn unified_mountpoint(&self) -> Option<&Path> {
        match self {
            Layout::Unified(mp) => Some(mp),
            Layout::Legacy { unified, .. } => unified.as_deref(),
        }
    }

    /// The v1 hierarchies (none on a pure v2 host).
    pub fn hierarchies(&self) -> &[Hierarchy] {
        match self {
            Layout::Unified(_) => &[],
            Layout::Legacy { hierarchies, .. } => hierarchies,
        }
    }

    /// The v1 hierarchy that has `controller`.
    pub fn hierarchy(&self, controller: &str) -> Option<&Hierarchy> {
        self.hierarchies().iter().find(|h| h.has(controller))
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = &bytes[i + 1..i + 4];
            if oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of `/proc/<pid>/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcCgroup {
    /// The controllers of a v1 hierarchy; empty for the v2 hierarchy.
    pub(crate) controllers: Vec<String>,
    /// The cgroup, from the hierarchy's root.
    pub(crate) path: PathBuf,
}

/// Parses the text of `/proc/<pid>/cgroup`.
pub(crate) fn parse_proc_cgroup(text: &str) -> Result<Vec<ProcCgroup>, CgroupError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(CgroupError::MountInfo {
                path: SELF_CGROUP.into(),
                line: n + 1,
                message: "expected id:controllers:path",
            });
        };
        out.push(ProcCgroup {
            controllers: ctrls
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect(),
            path: PathBuf::from(path),
        });
    }
    Ok(out)
}

/// Reads `/proc/self/cgroup`.
pub(crate) fn self_cgroups() -> Result<Vec<ProcCgroup>, CgroupError> {
    let text = std::fs::read_to_string(SELF_CGROUP).map_err(|source| CgroupError::Io {
        path: SELF_CGROUP.into(),
        source,
    })?;
    parse_proc_cgroup(&text)
}

/// The cgroup of the calling process in a v1 hierarchy (matched by its
/// controllers) or, with `controllers` empty, in the v2 hierarchy.
pub(crate) fn own_cgroup<'a>(
    entries: &'a [ProcCgroup],
    controllers: &[String],
) -> Option<&'a Path> {
    if controllers.is_empty() {
        return entries
            .iter()
            .find(|e| e.controllers.is_empty())
            .map(|e| e.path.as_path());
    }
    let mut want = controllers.to_vec();
    want.sort();
    entries
        .iter()
        .find(|e| {
            let mut have = e.controllers.clone();
            have.sort();
            have == want
        })
        .or_else(|| {
            entries
                .iter()
                .find(|e| e.controllers.iter().any(|c| controllers.contains(c)))
        })
        .map(|e| e.path.as_path())
}

/// Maps a cgroup (a path from the hierarchy's root) to its directory under
/// a mount point whose mounted root is `root`.
pub(crate) fn dir_of(mountpoint: &Path, root: &Path, cgroup: &Path) -> PathBuf {
    let rel = cgroup.strip_prefix(root).unwrap_or(cgroup);
    let mut dir = mountpoint.to_path_buf();
    for c in rel.components() {
        if let Component::Normal(part) = c {
            dir.push(part);
        }
    }
    dir
}

/// The mountinfo of a hybrid host like the development machine, for tests
/// of other modules.
#[cfg(test)]
pub(crate) fn tests_hybrid() -> &'static str {
    tests::HYBRID
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine: every v1 controller on its own mount (cpu and cpuacct
    /// apart), `name=systemd`, and cgroup2 at `/sys/fs/cgroup/unified`.
    pub(crate) const HYBRID: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A classic systemd v1 host (co-mounted cpu,cpuacct and
    /// net_cls,net_prio; a `xattr` option and a `release_agent=`).
    const CLASSIC_V1: &str = "\
25 18 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
29 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
30 25 0:28 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,net_cls,net_prio
31 25 0:29 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory
32 25 0:30 / /sys/fs/cgroup/hugetlb rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,hugetlb
33 25 0:31 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,cpuset,clone_children
34 25 0:32 / /sys/fs/cgroup/devices rw,nosuid,nodev,noexec,relatime shared:19 - cgroup cgroup rw,devices
";

    const PURE_V2: &str = "\
24 29 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
27 24 0:25 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
28 24 0:26 / /sys/fs/pstore rw,nosuid,nodev,noexec,relatime shared:10 - pstore pstore rw
";

    #[test]
    fn pure_v2() {
        let layout = Layout::from_mountinfo(PURE_V2).unwrap();
        assert_eq!(layout, Layout::Unified("/sys/fs/cgroup".into()));
        assert!(layout.hierarchies().is_empty());
        assert_eq!(
            layout.unified_mountpoint(),
            Some(Path::new("/sys/fs/cgroup"))
        );
    }

    #[test]
    fn classic_v1_co_mounts() {
        let layout = Layout::from_mountinfo(CLASSIC_V1).unwrap();
        let Layout::Legacy {
            hierarchies,
            unified,
        } = &layout
        else {
            panic!("{layout:?}")
        };
        assert!(unified.is_none());
        assert_eq!(hierarchies.len(), 7);
        assert_eq!(hierarchies[0].controllers, ["name=systemd"]);
        let cpu = layout.hierarchy("cpuacct").unwrap();
        assert_eq!(cpu.controllers, ["cpu", "cpuacct"]);
        assert_eq!(cpu.mountpoint, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(
            layout.hierarchy("net_prio").unwrap().controllers,
            ["net_cls", "net_prio"]
        );
        assert_eq!(layout.hierarchy("cpuset").unwrap().controllers, ["cpuset"]);
        assert!(layout.hierarchy("pids").is_none());
    }

    #[test]
    fn hybrid_as_on_this_machine() {
        let layout = Layout::from_mountinfo(HYBRID).unwrap();
        assert_eq!(
            layout.unified_mountpoint(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        let names: Vec<_> = layout
            .hierarchies()
            .iter()
            .map(|h| h.controllers.join(","))
            .collect();
        assert_eq!(
            names,
            [
                "cpu",
                "cpuacct",
                "cpuset",
                "memory",
                "devices",
                "freezer",
                "blkio",
                "pids",
                "name=systemd"
            ]
        );
        assert_eq!(
            layout.hierarchy("cpu").unwrap().mountpoint,
            Path::new("/sys/fs/cgroup/cpu")
        );
        assert!(layout.hierarchy("hugetlb").is_none());
    }

    #[test]
    fn shadowed_and_duplicate_mounts() {
        // cgroup2 at /sys/fs/cgroup hidden by a tmpfs over it; a v1 memory
        // hierarchy bind-mounted twice; a space in a mount point.
        let text = "\
1 0 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
2 0 0:2 / /sys/fs/cgroup rw - tmpfs tmpfs rw
3 2 0:3 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
4 2 0:3 /sub /mnt/my\\040mem rw - cgroup cgroup rw,memory
5 2 0:4 / /sys/fs/cgroup/pids rw shared:1 master:2 - cgroup cgroup rw,pids
";
        let layout = Layout::from_mountinfo(text).unwrap();
        let Layout::Legacy {
            hierarchies,
            unified,
        } = &layout
        else {
            panic!("{layout:?}")
        };
        assert!(unified.is_none());
        assert_eq!(hierarchies.len(), 2);
        assert_eq!(hierarchies[1].controllers, ["pids"]);
        assert_eq!(unescape("/mnt/my\\040mem"), "/mnt/my mem");
    }

    #[test]
    fn no_cgroups_and_garbage() {
        assert!(matches!(
            Layout::from_mountinfo("1 0 0:1 / / rw - ext4 /dev/sda rw\n"),
            Err(CgroupError::NoCgroupMounts { .. })
        ));
        assert!(matches!(
            Layout::from_mountinfo("garbage line\n"),
            Err(CgroupError::MountInfo { line: 1, .. })
        ));
    }

    #[test]
    fn proc_self_cgroup() {
        let text = "9:name=systemd:/\n4:memory:/process_api/af26\n1:cpu,cpuacct:/a\n0::/b/c\n";
        let entries = parse_proc_cgroup(text).unwrap();
        assert_eq!(
            own_cgroup(&entries, &["memory".to_owned()]),
            Some(Path::new("/process_api/af26"))
        );
        assert_eq!(
            own_cgroup(&entries, &["cpuacct".to_owned(), "cpu".to_owned()]),
            Some(Path::new("/a"))
        );
        assert_eq!(
            own_cgroup(&entries, &["name=systemd".to_owned()]),
            Some(Path::new("/"))
        );
        assert_eq!(own_cgroup(&entries, &[]), Some(Path::new("/b/c")));
        assert_eq!(own_cgroup(&entries, &["pids".to_owned()]), None);
    }

    #[test]
    fn directories_under_mounted_roots() {
        let mp = Path::new("/sys/fs/cgroup/memory");
        assert_eq!(
            dir_of(mp, Path::new("/"), Path::new("/a/b")),
            Path::new("/sys/fs/cgroup/memory/a/b")
        );
        assert_eq!(
            dir_of(mp, Path::new("/docker/x"), Path::new("/docker/x/c")),
            Path::new("/sys/fs/cgroup/memory/c")
        );
    }
}
