//! A platform's fingerprint: CPU and kernel of the running host, user space
//! of a root.
//!
//! [`Platform::detect`] reads the CPU (`cpu.rs`, CPUID) and the kernel
//! (`kernel.rs`, `/proc`) of this machine, and the C library (`libc.rs`),
//! distribution (`osrelease.rs`) and library search path (ld.so.conf and
//! ld.so.cache, through `crate::loader`) of the root it is given, never of
//! the host when the root is not `/`. The `id` is the SHA-256 of the
//! canonical JSON (keys sorted, no spaces) of the user-space and kernel
//! facts, so two machines with the same kernel and user space share it.

mod cpu;
mod kernel;
mod libc;
mod osrelease;

pub use cpu::CpuFeatures;
pub use kernel::{parse_release, KernelInfo};
pub use libc::{LibcFamily, LibcInfo};
pub use osrelease::OsRelease;

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::loader::cache::CacheFormat;
use crate::loader::{conf, Loader};
use crate::root::RootDir;

/// Why a platform could not be read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PlatformError {
    /// The root is not a readable directory.
    #[error("{}: cannot open the root directory: {source}", path.display())]
    Root {
        /// The root.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The CPU, as reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CpuInfo {
    /// `GenuineIntel`, `AuthenticAMD`, ...
    pub vendor: String,
    /// The brand string.
    pub model: String,
    /// `x86-64-v1` .. `x86-64-v4`, or `unknown`.
    pub level: String,
}

/// The library search path of a root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SearchPath {
    /// Directories configured in `/etc/ld.so.conf` (with its includes).
    pub ld_so_conf: Vec<String>,
    /// The loader's built-in directories.
    pub system_dirs: Vec<String>,
    /// What `$LIB` expands to.
    pub dst_lib: String,
    /// What `$PLATFORM` expands to.
    pub dst_platform: String,
    /// Subdirectories tried in every directory, best first (the directory
    /// itself last, as `""`).
    pub subdirs: Vec<String>,
    /// The parsed `/etc/ld.so.cache`.
    pub cache: Option<CacheSummary>,
    /// Why there is no usable cache.
    pub cache_error: Option<String>,
}

/// A summary of an ld.so.cache.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CacheSummary {
    /// Its layout.
    pub format: CacheFormat,
    /// The number of entries.
    pub entries: usize,
    /// The glibc-hwcaps subdirectories it has entries for.
    pub hwcaps_subdirs: Vec<String>,
    /// The glibc that wrote it, when recorded.
    pub generator: Option<String>,
    /// SHA-256 of the file.
    pub sha256: String,
}

/// A platform: this host's CPU and kernel with a root's user space.
#[derive(Clone, Debug, Serialize)]
pub struct Platform {
    /// The fingerprint id (hex SHA-256 of the kernel and user-space facts).
    pub id: String,
    /// The root the user-space facts come from.
    pub root: PathBuf,
    /// The machine architecture (`x86_64`).
    pub arch: String,
    /// The CPU.
    pub cpu: CpuInfo,
    /// The kernel.
    pub kernel: KernelInfo,
    /// The C library of the root.
    pub libc: LibcInfo,
    /// The distribution of the root.
    pub os: OsRelease,
    /// The library search path of the root.
    pub search_path: SearchPath,
    #[serde(skip)]
    features: CpuFeatures,
    #[serde(skip)]
    loader: Option<Loader>,
}

impl Platform {
    /// Reads the platform made of this host's CPU and kernel and the user
    /// space under `root`.
    pub fn detect(root: &Path) -> Result<Platform, PlatformError> {
        let dir = RootDir::open(root).map_err(|source| PlatformError::Root {
            path: root.to_path_buf(),
            source,
        })?;
        Ok(Platform::detect_in(
            &dir,
            KernelInfo::detect(),
            CpuFeatures::detect(),
        ))
    }

    /// The platform of an open root with given kernel and CPU facts.
    pub(crate) fn detect_in(dir: &RootDir, kernel: KernelInfo, features: CpuFeatures) -> Platform {
        let libc = LibcInfo::detect(dir, &features);
        let os = OsRelease::read(dir);
        let loader = Loader::for_root(dir, &libc, &features);
        let cache = loader.cache.as_ref().map(|c| CacheSummary {
            format: c.format(),
            entries: c.entries().len(),
            hwcaps_subdirs: c.hwcaps_subdirs().map(String::from).collect(),
            generator: c.generator().map(String::from),
            sha256: dir
                .read("/etc/ld.so.cache", 256 << 20)
                .map(|b| hex(&Sha256::digest(&b)))
                .unwrap_or_default(),
        });
        let search_path = SearchPath {
            ld_so_conf: conf::read_ld_so_conf(dir, "/etc/ld.so.conf"),
            system_dirs: loader.system_dirs.clone(),
            dst_lib: loader.dst_lib.clone(),
            dst_platform: loader.cpu.platform.clone(),
            subdirs: loader.cpu.subdirs.clone(),
            cache,
            cache_error: loader.cache_error.clone(),
        };
        let cpu = CpuInfo {
            vendor: features.vendor.clone(),
            model: features.model.clone(),
            level: match features.level {
                0 => "unknown".into(),
                l => format!("x86-64-v{l}"),
            },
        };
        let mut p = Platform {
            id: String::new(),
            root: dir.path().to_path_buf(),
            arch: std::env::consts::ARCH.to_string(),
            cpu,
            kernel,
            libc,
            os,
            search_path,
            features,
            loader: Some(loader),
        };
        p.id = p.fingerprint();
        p
    }

    /// The SHA-256 of the canonical JSON of the kernel and user-space facts.
    fn fingerprint(&self) -> String {
        let facts = serde_json::json!({
            "arch": self.arch,
            "kernel": self.kernel,
            "libc": self.libc,
            "os": self.os,
            "search_path": self.search_path,
        });
        hex(&Sha256::digest(canonical_json(&facts).as_bytes()))
    }

    /// The CPU features the loader cares about.
    pub fn cpu_features(&self) -> &CpuFeatures {
        &self.features
    }

    /// The kernel version as numbers.
    pub fn kernel_version(&self) -> (u32, u32, u32) {
        self.kernel.version
    }

    /// The root's loader.
    pub(crate) fn loader(&self) -> &Loader {
        self.loader.as_ref().expect("platform built by detect")
    }
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// JSON with object keys sorted and no whitespace.
pub fn canonical_json(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let body: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&map[k])))
                .collect();
            format!("{{{}}}", body.join(","))
        }
        Value::Array(items) => {
            let body: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", body.join(","))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys() {
        let v = serde_json::json!({"b": [1, {"d": 1, "c": 2}], "a": "x"});
        assert_eq!(canonical_json(&v), r#"{"a":"x","b":[1,{"c":2,"d":1}]}"#);
    }

    #[test]
    fn host_platform_is_stable() {
        let a = Platform::detect(Path::new("/")).unwrap();
        let b = Platform::detect(Path::new("/")).unwrap();
        assert_eq!(a.id, b.id);
        assert_eq!(a.id.len(), 64);
        assert_eq!(a.arch, std::env::consts::ARCH);
    }

    #[test]
    fn user_space_comes_from_the_root() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        std::fs::write(t.path().join("etc/os-release"), "ID=testos\nVERSION_ID=1\n").unwrap();
        let p = Platform::detect(t.path()).unwrap();
        assert_eq!(p.os.id.as_deref(), Some("testos"));
        assert_eq!(p.libc.family, LibcFamily::None);
        assert!(p.search_path.cache.is_none());
        let host = Platform::detect(Path::new("/")).unwrap();
        assert_ne!(p.id, host.id);
        assert_eq!(p.kernel, host.kernel);
    }
}
