//! The dynamic loader of a root: which rules it follows and where it looks.
//!
//! A [`Loader`] describes the glibc (or musl) loader that a root would run
//! with: its version (which decides the glibc-hwcaps and legacy hwcaps
//! rules), its built-in system directories (read from the loader binary
//! itself: Debian's are `/lib/x86_64-linux-gnu/`, `/usr/lib/x86_64-linux-gnu/`,
//! `/lib/`, `/usr/lib/`), what `$LIB` and `$PLATFORM` expand to, and its
//! parsed `/etc/ld.so.cache`. `cache.rs` reads the cache, `conf.rs`
//! `ld.so.conf`, `hwcaps.rs` the CPU-dependent subdirectories; the search
//! itself is in `crate::resolve`.

pub mod cache;
pub mod conf;
pub mod hwcaps;

use crate::platform::{CpuFeatures, LibcFamily, LibcInfo};
use crate::root::RootDir;
use cache::LdCache;
use hwcaps::LoaderCpu;

/// The program interpreter of x86-64 glibc.
pub const GLIBC_X86_64_INTERP: &str = "/lib64/ld-linux-x86-64.so.2";

/// Which family of loader rules applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Flavor {
    /// glibc's `ld.so`, of this (major, minor) version.
    Glibc(u32, u32),
    /// musl's loader.
    Musl,
}

/// The loader of a root.
#[derive(Clone, Debug)]
pub struct Loader {
    /// The rules it follows.
    pub flavor: Flavor,
    /// Its view of the CPU.
    pub cpu: LoaderCpu,
    /// The built-in search directories, each ending in `/`.
    pub system_dirs: Vec<String>,
    /// What `$LIB` expands to.
    pub dst_lib: String,
    /// The root's `/etc/ld.so.cache`, if readable and valid.
    pub cache: Option<LdCache>,
    /// Why the cache is not used, when it is not.
    pub cache_error: Option<String>,
    /// The loader's path in the root.
    pub interp: String,
}

impl Loader {
    /// The loader of `root`, running on `cpu`, for the libc found there.
    pub fn for_root(root: &RootDir, libc: &LibcInfo, cpu: &CpuFeatures) -> Loader {
        let (flavor, version) = match libc.family {
            LibcFamily::Musl => (Flavor::Musl, (0, 0)),
            // Without a libc in the root, judge with this machine's glibc
            // rules (nothing will be found anyway).
            _ => {
                let v = libc.glibc_version().unwrap_or((2, 36));
                (Flavor::Glibc(v.0, v.1), v)
            }
        };
        let cpu = LoaderCpu::for_glibc(cpu, version);
        if flavor == Flavor::Musl {
            return Loader {
                flavor,
                cpu,
                system_dirs: musl_dirs(root),
                dst_lib: "lib".into(),
                cache: None,
                cache_error: None,
                interp: libc.loader.clone().unwrap_or_default(),
            };
        }
        let interp = GLIBC_X86_64_INTERP.to_string();
        let system_dirs = root
            .read(&interp, 8 << 20)
            .ok()
            .and_then(|b| system_dirs_in(&b))
            .unwrap_or_else(|| {
                [
                    "/lib/x86_64-linux-gnu/",
                    "/usr/lib/x86_64-linux-gnu/",
                    "/lib/",
                    "/usr/lib/",
                ]
                .map(String::from)
                .to_vec()
            });
        let dst_lib = dst_lib_for(&system_dirs);
        let (cache, cache_error) = match root.read("/etc/ld.so.cache", 256 << 20) {
            Ok(bytes) => match LdCache::parse(&bytes) {
                Ok(c) => (Some(c), None),
                Err(e) => (None, Some(e.to_string())),
            },
            Err(e) => (None, Some(e.to_string())),
        };
        Loader {
            flavor,
            cpu,
            system_dirs,
            dst_lib,
            cache,
            cache_error,
            interp,
        }
    }
}

/// The `SYSTEM_DIRS` string compiled into a glibc loader: consecutive
/// NUL-terminated absolute directories ending in `/`, found by the first
/// multiarch or lib64 directory.
fn system_dirs_in(rtld: &[u8]) -> Option<Vec<String>> {
    let starts: [&[u8]; 3] = [
        b"\0/lib/x86_64-linux-gnu/\0",
        b"\0/lib64/\0",
        b"\0/usr/lib64/\0",
    ];
    for start in starts {
        let Some(at) = rtld.windows(start.len()).position(|w| w == start) else {
            continue;
        };
        let mut dirs = Vec::new();
        for s in rtld[at + 1..].split(|&b| b == 0) {
            if s.len() < 2 || s[0] != b'/' || *s.last()? != b'/' || s.len() > 256 {
                break;
            }
            dirs.push(String::from_utf8_lossy(s).into_owned());
            if dirs.len() > 16 {
                break;
            }
        }
        if !dirs.is_empty() {
            return Some(dirs);
        }
    }
    None
}

/// `DL_DST_LIB`: the first system directory without its leading `/` and
/// trailing `/` (Debian: `lib/x86_64-linux-gnu`, Fedora: `lib64`).
fn dst_lib_for(system_dirs: &[String]) -> String {
    system_dirs
        .first()
        .map(|d| d.trim_matches('/').to_string())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "lib".into())
}

/// musl's search path: `/etc/ld-musl-x86_64.path` (directories separated
/// by newlines or colons), else `/lib:/usr/local/lib:/usr/lib`.
fn musl_dirs(root: &RootDir) -> Vec<String> {
    let configured = root
        .read("/etc/ld-musl-x86_64.path", 1 << 16)
        .ok()
        .map(|b| {
            String::from_utf8_lossy(&b)
                .split(['\n', ':'])
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(|d| format!("{}/", d.trim_end_matches('/')))
                .collect::<Vec<_>>()
        });
    configured.unwrap_or_else(|| {
        ["/lib/", "/usr/local/lib/", "/usr/lib/"]
            .map(String::from)
            .to_vec()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_dirs_of_this_machines_loader() {
        let Ok(rtld) = std::fs::read(GLIBC_X86_64_INTERP) else {
            return;
        };
        let dirs = system_dirs_in(&rtld).expect("SYSTEM_DIRS");
        // `ld.so --list-diagnostics` prints them as path.system_dirs[N].
        let out = std::process::Command::new(GLIBC_X86_64_INTERP)
            .arg("--list-diagnostics")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let expected: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("path.system_dirs["))
            .map(|l| l.split('"').nth(1).unwrap().to_string())
            .collect();
        assert_eq!(dirs, expected);
        let dst_lib = text
            .lines()
            .find(|l| l.starts_with("dl_dst_lib="))
            .map(|l| l.split('"').nth(1).unwrap().to_string())
            .unwrap();
        assert_eq!(dst_lib_for(&dirs), dst_lib);
    }
}
