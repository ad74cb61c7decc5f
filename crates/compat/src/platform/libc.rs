//! Which C library a root has, read from the root's own files.
//!
//! glibc: the release named in the root's `libc.so.6` ("... stable release
//! version 2.31."), else its highest `GLIBC_2.x` version definition (which
//! lags the release when a release adds no symbol version: 2.31 defines
//! nothing newer than `GLIBC_2.30`). The file is found through the root's
//! ld.so.cache, else in the usual directories. musl: an `ld-musl-*.so.1` loader in `/lib`, with the
//! version string embedded in it when there is one. Nothing here looks at
//! the host unless the root is `/`.

use serde::Serialize;

use crate::elf;
use crate::loader::cache::{LdCache, X86_64_FLAGS};
use crate::loader::hwcaps::LoaderCpu;
use crate::root::RootDir;

use super::CpuFeatures;

/// The C library family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LibcFamily {
    /// GNU libc.
    Glibc,
    /// musl.
    Musl,
    /// No C library found.
    None,
}

/// The C library of a root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LibcInfo {
    /// The family.
    pub family: LibcFamily,
    /// Its version (`2.36`, `1.2.3`), when known.
    pub version: Option<String>,
    /// The library file the version was read from, relative to the root.
    pub path: Option<String>,
    /// The dynamic loader of that libc, in the root (absolute).
    pub loader: Option<String>,
}

impl LibcInfo {
    /// The glibc version as numbers.
    pub fn glibc_version(&self) -> Option<(u32, u32)> {
        if self.family != LibcFamily::Glibc {
            return None;
        }
        parse_version(self.version.as_deref()?)
    }

    /// Finds the C library of `root`.
    pub fn detect(root: &RootDir, cpu: &CpuFeatures) -> LibcInfo {
        if let Some(info) = detect_glibc(root, cpu) {
            return info;
        }
        if let Some(info) = detect_musl(root) {
            return info;
        }
        LibcInfo {
            family: LibcFamily::None,
            version: None,
            path: None,
            loader: None,
        }
    }
}

/// `2.36` → (2, 36).
pub(crate) fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut it = v.split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn detect_glibc(root: &RootDir, cpu: &CpuFeatures) -> Option<LibcInfo> {
    let mut candidates = Vec::new();
    if let Ok(bytes) = root.read("/etc/ld.so.cache", 256 << 20) {
        if let Ok(cache) = LdCache::parse(&bytes) {
            let lcpu = LoaderCpu::for_glibc(cpu, (2, 36));
            if let Some(p) = cache.lookup("libc.so.6", &lcpu, X86_64_FLAGS) {
                candidates.push(p.to_string());
            }
        }
    }
    for dir in [
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib64",
        "/usr/lib64",
        "/lib",
        "/usr/lib",
    ] {
        candidates.push(format!("{dir}/libc.so.6"));
    }
    for path in candidates {
        let Ok(bytes) = root.read(&path, 64 << 20) else {
            continue;
        };
        let Ok(info) = elf::parse(&bytes) else {
            continue;
        };
        if info.machine != elf::EM_X86_64 && cfg!(target_arch = "x86_64") {
            continue;
        }
        let best = info
            .dynamic
            .as_ref()
            .and_then(|d| d.verdef.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|d| d.name.strip_prefix("GLIBC_"))
            .filter_map(|v| {
                let nums: Option<Vec<u32>> = v.split('.').map(|n| n.parse().ok()).collect();
                nums.map(|n| (n, v.to_string()))
            })
            .max_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, v)| v);
        return Some(LibcInfo {
            family: LibcFamily::Glibc,
            version: release_version(&bytes).or(best),
            path: Some(path.trim_start_matches('/').to_string()),
            loader: Some(crate::loader::GLIBC_X86_64_INTERP.to_string()),
        });
    }
    None
}

/// The version in glibc's banner, `... stable release version 2.31.`
/// (what `gnu_get_libc_version` answers).
fn release_version(bytes: &[u8]) -> Option<String> {
    const MARK: &[u8] = b"release version ";
    let at = bytes.windows(MARK.len()).position(|w| w == MARK)? + MARK.len();
    let v: String = bytes[at..]
        .iter()
        .take(16)
        .take_while(|b| b.is_ascii_digit() || **b == b'.')
        .map(|b| *b as char)
        .collect();
    let v = v.trim_end_matches('.');
    (v.contains('.') && !v.starts_with('.')).then(|| v.to_string())
}

fn detect_musl(root: &RootDir) -> Option<LibcInfo> {
    let name = root
        .list_dir("/lib")
        .ok()?
        .into_iter()
        .find(|n| n.starts_with("ld-musl-") && n.ends_with(".so.1"))?;
    let path = format!("/lib/{name}");
    let version = root
        .read(&path, 16 << 20)
        .ok()
        .and_then(|b| musl_version(&b));
    Some(LibcInfo {
        family: LibcFamily::Musl,
        version,
        path: Some(path.trim_start_matches('/').to_string()),
        loader: Some(path),
    })
}

/// musl embeds its version as a bare string (`1.2.3`) next to the
/// `Version %s` format of its loader's usage message; take the first
/// NUL-delimited string that looks like a version.
fn musl_version(bytes: &[u8]) -> Option<String> {
    bytes
        .split(|&b| b == 0)
        .filter(|s| (5..=12).contains(&s.len()))
        .filter_map(|s| std::str::from_utf8(s).ok())
        .find(|s| {
            let parts: Vec<&str> = s.split('.').collect();
            parts.len() == 3
                && parts[0] == "1"
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_glibc() {
        let root = RootDir::open(std::path::Path::new("/")).unwrap();
        let info = LibcInfo::detect(&root, &CpuFeatures::detect());
        if std::path::Path::new("/lib/x86_64-linux-gnu/libc.so.6").exists() {
            assert_eq!(info.family, LibcFamily::Glibc);
            let (maj, min) = info.glibc_version().unwrap();
            assert!(maj == 2 && min >= 17, "{info:?}");
        }
    }

    #[test]
    fn an_empty_root_has_no_libc() {
        let t = tempfile::tempdir().unwrap();
        let root = RootDir::open(t.path()).unwrap();
        let info = LibcInfo::detect(&root, &CpuFeatures::detect());
        assert_eq!(info.family, LibcFamily::None);
    }

    #[test]
    fn glibc_banner_version() {
        assert_eq!(
            release_version(
                b"\0GNU C Library (Debian GLIBC 2.31-13+deb11u11) stable release version 2.31.\n"
            ),
            Some("2.31".into())
        );
        assert_eq!(release_version(b"no banner here"), None);
    }

    #[test]
    fn musl_version_string() {
        assert_eq!(
            musl_version(b"\0Version %s\n\x001.2.3\0x"),
            Some("1.2.3".to_string())
        );
        assert_eq!(musl_version(b"\0nothing\0"), None);
    }
}
