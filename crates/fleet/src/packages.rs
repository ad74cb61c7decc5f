//! The platform's package state: the packages dpkg says are installed in
//! a platform root (`var/lib/dpkg/status`), with their versions. The
//! supervisor records it for each container when the container starts
//! (`platform_states` in the database, one row per distinct state), and
//! `plinth upgrade` names the packages that changed since then.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Installed packages: `name` (or `name:arch` for a foreign
/// architecture) to version.
pub(crate) type Packages = BTreeMap<String, String>;

/// Parses dpkg's status file: the paragraphs whose `Status` ends in
/// `installed`.
pub(crate) fn parse_status(text: &str) -> Packages {
    let native = text
        .split("\n\n")
        .find_map(|p| field(p, "Architecture").filter(|a| *a != "all"))
        .unwrap_or("amd64")
        .to_string();
    let mut out = Packages::new();
    for para in text.split("\n\n") {
        let (Some(name), Some(version), Some(status)) = (
            field(para, "Package"),
            field(para, "Version"),
            field(para, "Status"),
        ) else {
            continue;
        };
        if !status.ends_with(" installed") {
            continue;
        }
        let key = match field(para, "Architecture") {
            Some(a) if a != "all" && a != native => format!("{name}:{a}"),
            _ => name.to_string(),
        };
        out.insert(key, version.to_string());
    }
    out
}

fn field<'a>(para: &'a str, name: &str) -> Option<&'a str> {
    para.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

/// The changes from `old` to `new`, as `name OLD → NEW`, `name (new) NEW`
/// and `name OLD (removed)`.
pub(crate) fn diff(old: &Packages, new: &Packages) -> Vec<String> {
    let mut out = Vec::new();
    for (name, v) in new {
        match old.get(name) {
            Some(o) if o != v => out.push(format!("{name} {o} → {v}")),
            Some(_) => {}
            None => out.push(format!("{name} (new) {v}")),
        }
    }
    for (name, o) in old {
        if !new.contains_key(name) {
            out.push(format!("{name} {o} (removed)"));
        }
    }
    out
}

/// Reads platform package states, parsing each status file once for as
/// long as it does not change (a fleet of a thousand containers on one
/// platform parses it once).
#[derive(Default)]
pub(crate) struct Cache {
    seen: std::cell::RefCell<BTreeMap<PathBuf, Seen>>,
}

/// A status file's size and mtime when it was read, its key and packages.
struct Seen {
    stamp: (u64, i64, i64),
    key: String,
    packages: Packages,
}

impl Cache {
    /// The state of the platform `root` and its key (a hash of the
    /// packages); `None` when it has no dpkg database.
    pub(crate) fn state(&self, root: &Path) -> Option<(String, Packages)> {
        let path = root.join("var/lib/dpkg/status");
        let meta = std::fs::metadata(&path).ok()?;
        let stamp = (meta.len(), meta.mtime(), meta.mtime_nsec());
        if let Some(seen) = self.seen.borrow().get(&path) {
            if seen.stamp == stamp {
                return Some((seen.key.clone(), seen.packages.clone()));
            }
        }
        let packages = parse_status(&std::fs::read_to_string(&path).ok()?);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        packages.hash(&mut h);
        let key = format!("{:016x}-{}", h.finish(), packages.len());
        let seen = Seen {
            stamp,
            key: key.clone(),
            packages: packages.clone(),
        };
        self.seen.borrow_mut().insert(path, seen);
        Some((key, packages))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_diff() {
        let text = "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36-9\n\n\
                    Package: libc6\nStatus: install ok installed\nArchitecture: i386\nVersion: 2.36-9\n\n\
                    Package: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1\n\n\
                    Package: tzdata\nStatus: install ok installed\nArchitecture: all\nVersion: 2024a\n";
        let old = parse_status(text);
        assert_eq!(old.len(), 3);
        assert_eq!(old["libc6:i386"], "2.36-9");
        assert!(!old.contains_key("gone"));
        let mut new = old.clone();
        new.insert("libc6".into(), "2.36-9+deb12u1".into());
        new.remove("tzdata");
        new.insert("curl".into(), "7.88".into());
        assert_eq!(
            diff(&old, &new),
            [
                "curl (new) 7.88",
                "libc6 2.36-9 → 2.36-9+deb12u1",
                "tzdata 2024a (removed)"
            ]
        );
    }
}
