//! Debian minimal roots for the `plinth check` exactness tests: `debootstrap
//! --variant=minbase RELEASE` from the machine's own apt source, built once into a cache
//! that outlives test runs.
//!
//! The cache itself (its place, lock, completion marker and build) is owned by the shell
//! function `debootstrap_cache` in `scripts/lib.sh`, which `scripts/test` calls before
//! `cargo test` so that no test waits on a download; this module only finds a finished
//! root, and asks that function to build a missing one, so there is one implementation.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{require, require_root, require_tool};

/// The Debian releases the exactness tests check against the host (Debian 12 bookworm):
/// one older, one newer.
pub const RELEASES: [&str; 2] = ["bullseye", "trixie"];

/// `scripts/lib.sh` of this checkout.
pub fn scripts_lib() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/lib.sh")
}

/// Where the cached roots live: `$PLINTH_TEST_CACHE/debootstrap` (default
/// `/var/cache/plinth-tests/debootstrap`), as in `debootstrap_cache_dir`.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("PLINTH_TEST_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/plinth-tests"));
    base.join("debootstrap")
}

/// The finished root of `release`, if its completion marker is there.
pub fn cached_root(release: &str) -> Option<PathBuf> {
    let root = cache_dir().join(release);
    let marker = cache_dir().join(format!("{release}.done"));
    (marker.is_file() && root.is_dir()).then_some(root)
}

/// The cached minbase root of `release`, built now if missing (as root, with
/// debootstrap; about a minute and 215 MB each here). Returns None, after printing why,
/// when the test must skip; under `CI=true` it fails instead.
pub fn debian_root(release: &str) -> Option<PathBuf> {
    if let Some(root) = cached_root(release) {
        return Some(root);
    }
    if !require_root() {
        return None;
    }
    let have_debootstrap = ["/usr/sbin/debootstrap", "/sbin/debootstrap"]
        .iter()
        .any(|p| Path::new(p).is_file());
    if !require(
        have_debootstrap,
        "debootstrap (Debian package debootstrap; scripts/test installs it)",
    ) || !require_tool("flock")
    {
        return None;
    }
    eprintln!(
        "note: building the {release} root in {} (once; scripts/test does this before cargo test)",
        cache_dir().display()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#". "$1" && debootstrap_cache "$2""#)
        .arg("bash")
        .arg(scripts_lib())
        .arg(release)
        .output()
        .expect("run bash");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        require(
            false,
            &format!("a debootstrapped {release} root; building it failed:\n{stderr}"),
        );
        return None;
    }
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let root = cached_root(release).unwrap_or_else(|| {
        panic!("debootstrap_cache {release} printed {printed:?} but left no marker\n{stderr}")
    });
    assert_eq!(Path::new(&printed), root, "debootstrap_cache's answer");
    Some(root)
}
