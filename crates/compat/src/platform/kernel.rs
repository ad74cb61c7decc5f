//! The running kernel: release and the container features it has.
//!
//! Always the host's (a root directory carries no kernel): `/proc/sys/
//! kernel/osrelease`, the namespace types under `/proc/self/ns`, overlayfs
//! in `/proc/filesystems`, seccomp in `/proc/self/status`, and the cgroup
//! layout from `/proc/self/mountinfo`. The build configuration, where the
//! kernel exposes it (`/proc/config.gz`, else `/boot/config-RELEASE`), says
//! which optional system calls exist.

use std::collections::BTreeSet;
use std::io::Read;

use serde::Serialize;

/// The kernel and its container features.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KernelInfo {
    /// `uname -r`.
    pub release: String,
    /// The release as numbers (major, minor, patch).
    #[serde(skip)]
    pub version: (u32, u32, u32),
    /// Namespace types the kernel offers (`cgroup`, `ipc`, `mnt`, ...).
    pub namespaces: Vec<String>,
    /// Whether overlayfs is available.
    pub overlayfs: bool,
    /// Whether seccomp filtering is available.
    pub seccomp: bool,
    /// `v2`, `v1`, `hybrid` or `none`.
    pub cgroup: String,
    /// Where the build configuration was read from, if it could be.
    pub config_source: Option<String>,
    /// The options built in or as modules (`IO_URING`, without `CONFIG_`).
    #[serde(skip)]
    pub config: Option<BTreeSet<String>>,
}

impl KernelInfo {
    /// Reads the running kernel's facts.
    pub fn detect() -> KernelInfo {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let mut namespaces: Vec<String> = std::fs::read_dir("/proc/self/ns")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.ends_with("_for_children"))
                    .collect()
            })
            .unwrap_or_default();
        namespaces.sort();
        let overlayfs = std::fs::read_to_string("/proc/filesystems")
            .map(|s| {
                s.lines()
                    .any(|l| l.split_whitespace().last() == Some("overlay"))
            })
            .unwrap_or(false);
        let seccomp = std::fs::read_to_string("/proc/self/status")
            .map(|s| s.lines().any(|l| l.starts_with("Seccomp:")))
            .unwrap_or(false);
        let cgroup =
            cgroup_layout(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default());
        let (config_source, config) = match read_config(&release) {
            Some((source, set)) => (Some(source), Some(set)),
            None => (None, None),
        };
        KernelInfo {
            version: parse_release(&release),
            release,
            namespaces,
            overlayfs,
            seccomp,
            cgroup,
            config_source,
            config,
        }
    }

    /// This host's kernel facts, but judged as release `release` (for
    /// `--kernel 4.19`): the build configuration is then unknown.
    pub fn as_release(release: &str) -> KernelInfo {
        let mut k = KernelInfo::detect();
        k.release = release.to_string();
        k.version = parse_release(release);
        k.config = None;
        k.config_source = None;
        k
    }

    /// Whether the build configuration is known and lacks `option`
    /// (without `CONFIG_`).
    pub fn lacks_option(&self, option: &str) -> bool {
        self.config.as_ref().is_some_and(|c| !c.contains(option))
    }
}

/// The enabled options of the running kernel's build configuration.
fn read_config(release: &str) -> Option<(String, BTreeSet<String>)> {
    let mut text = String::new();
    let gz = "/proc/config.gz";
    let source = match std::fs::File::open(gz) {
        Ok(f) => {
            flate2::read::GzDecoder::new(f)
                .read_to_string(&mut text)
                .ok()?;
            gz.to_string()
        }
        Err(_) => {
            let path = format!("/boot/config-{release}");
            text = std::fs::read_to_string(&path).ok()?;
            path
        }
    };
    Some((source, parse_config(&text)))
}

/// `CONFIG_X=y` and `CONFIG_X=m` lines, as `X`.
fn parse_config(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| {
            let (name, value) = l.strip_prefix("CONFIG_")?.split_once('=')?;
            (value == "y" || value == "m").then(|| name.to_string())
        })
        .collect()
}

/// `6.1.0-18-amd64` → (6, 1, 0).
pub fn parse_release(release: &str) -> (u32, u32, u32) {
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    (
        nums.next().unwrap_or(0),
        nums.next().unwrap_or(0),
        nums.next().unwrap_or(0),
    )
}

/// The cgroup layout from mountinfo: v2 only, v1 only, both, or none.
fn cgroup_layout(mountinfo: &str) -> String {
    let (mut v1, mut v2) = (false, false);
    for line in mountinfo.lines() {
        let Some((_, post)) = line.split_once(" - ") else {
            continue;
        };
        match post.split_whitespace().next() {
            Some("cgroup2") => v2 = true,
            Some("cgroup") => v1 = true,
            _ => {}
        }
    }
    match (v1, v2) {
        (true, true) => "hybrid",
        (true, false) => "v1",
        (false, true) => "v2",
        (false, false) => "none",
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases() {
        assert_eq!(parse_release("6.1.0-18-amd64"), (6, 1, 0));
        assert_eq!(parse_release("6.18.44-fc-v782"), (6, 18, 44));
        assert_eq!(parse_release("5.10"), (5, 10, 0));
    }

    #[test]
    fn layouts() {
        let v2 = "30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup_layout(v2), "v2");
        let hybrid = format!("{v2}31 1 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n");
        assert_eq!(cgroup_layout(&hybrid), "hybrid");
        assert_eq!(cgroup_layout(""), "none");
    }

    #[test]
    fn configs() {
        let c = parse_config(
            "# comment\nCONFIG_NET=y\nCONFIG_AIO=m\n# CONFIG_IO_URING is not set\nCONFIG_HZ=250\n",
        );
        assert_eq!(c.into_iter().collect::<Vec<_>>(), ["AIO", "NET"]);
    }

    #[test]
    fn this_kernel() {
        let k = KernelInfo::detect();
        assert!(k.version.0 >= 3, "{k:?}");
        assert!(k.namespaces.iter().any(|n| n == "mnt"));
    }
}
