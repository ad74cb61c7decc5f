//! One file's dependency closure, loaded the way `ld.so` loads it in trace
//! mode (`LD_TRACE_LOADED_OBJECTS=1 ld.so FILE`), then version-checked.
//!
//! The rules, from glibc 2.36's `elf/dl-load.c`, `dl-deps.c`, `dl-version.c`:
//!
//! - Breadth first: the file, then its `DT_NEEDED` in order, then theirs.
//! - A name first matches an object already loaded: a name it was loaded
//!   by, its path, or its `DT_SONAME`. The loader itself (`ld-linux*.so.2`)
//!   is loaded from the start, under the program's `PT_INTERP` and its
//!   soname.
//! - A name with a `/` is opened as is (after `$ORIGIN`... expansion).
//! - Otherwise: unless the requesting object has `DT_RUNPATH`, the
//!   `DT_RPATH` of that object, then of the object that loaded it, and so
//!   on up to the program, then the program's `DT_RPATH`; then the
//!   requesting object's own `DT_RUNPATH` (never inherited); then
//!   ld.so.cache (skipped for `DF_1_NODEFLIB` objects when the entry is in
//!   a system directory); then the system directories (unless
//!   `DF_1_NODEFLIB`). In every directory the glibc-hwcaps (and before
//!   2.37 legacy hwcaps) subdirectories come first.
//! - A candidate of another class or machine is skipped and the search
//!   goes on; a file that is no valid ELF (a linker script, a truncated
//!   file) stops the whole load with an error.
//! - A file with the same (device, inode) as a loaded object is that
//!   object.
//! - A missing library is noted ("not found") and loading goes on.
//! - Then every loaded object's version needs are checked against the
//!   object loaded under that file name: a missing version is an error,
//!   unless `VER_FLG_WEAK`; a library without any version definitions
//!   satisfies every need (the loader only warns).

use std::fmt;
use std::sync::Arc;

use super::dst::{decompose, expand, origin_of, SearchDir, Tokens};
use super::{Object, Probe, RootSel, World};
use crate::elf::{ElfInfo, NeededKind, DF_1_NODEFLIB, DF_1_PIE};
use crate::loader::cache::X86_64_FLAGS;
use crate::loader::Flavor;

/// Something that makes the loader refuse (or warn about) a file.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadProblem {
    /// A needed library was not found anywhere.
    MissingLibrary {
        /// The name searched for.
        name: String,
        /// Who needs it (path relative to its root).
        needed_by: String,
    },
    /// A needed library was found but cannot be loaded; the loader stops.
    BadLibrary {
        /// The name searched for.
        name: String,
        /// What was found.
        path: String,
        /// Who needs it.
        needed_by: String,
        /// The loader's reason.
        reason: String,
    },
    /// A needed symbol version is not defined by the library loaded for it.
    MissingVersion {
        /// The version (`GLIBC_2.38`).
        version: String,
        /// The file name it is needed from (`libc.so.6`).
        file: String,
        /// Who needs it.
        needed_by: String,
        /// The library that was loaded under that name.
        defined_by: String,
        /// Whether the need is weak (then only a warning).
        weak: bool,
    },
    /// A version record the loader refuses.
    BadVersionRecord {
        /// The object.
        path: String,
        /// The loader's message.
        reason: String,
    },
    /// A library has no version definitions while versions are needed
    /// from it: the loader warns and accepts.
    NoVersionInfo {
        /// The file name it is needed from.
        file: String,
        /// The library loaded for it.
        path: String,
        /// Who needs it.
        needed_by: String,
    },
}

impl LoadProblem {
    /// Whether the loader refuses the file (as opposed to a warning).
    pub fn is_fatal(&self) -> bool {
        match self {
            LoadProblem::MissingVersion { weak, .. } => !weak,
            LoadProblem::NoVersionInfo { .. } => false,
            _ => true,
        }
    }
}

impl fmt::Display for LoadProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadProblem::MissingLibrary { name, needed_by } => {
                write!(f, "{name}, needed by {needed_by}, is not found")
            }
            LoadProblem::BadLibrary {
                name,
                path,
                needed_by,
                reason,
            } => write!(
                f,
                "{name}, needed by {needed_by}, resolves to {path}, which cannot be loaded: {reason}"
            ),
            LoadProblem::MissingVersion {
                version,
                file,
                needed_by,
                defined_by,
                weak,
            } => write!(
                f,
                "{}{version}, needed from {file} by {needed_by}, is not defined by {defined_by}",
                if *weak { "weak version " } else { "" }
            ),
            LoadProblem::BadVersionRecord { path, reason } => write!(f, "{path}: {reason}"),
            LoadProblem::NoVersionInfo {
                file,
                path,
                needed_by,
            } => write!(
                f,
                "{path} (loaded for {file}) has no version information, required by {needed_by}"
            ),
        }
    }
}

/// One loaded object (a `struct link_map`).
struct Map {
    /// `l_libname`: the names it was requested by.
    names: Vec<String>,
    /// `l_name`: the path it was opened at.
    l_name: String,
    soname_added: bool,
    faked: bool,
    obj: Option<Arc<Object>>,
    id: Option<(u64, u64)>,
    root: RootSel,
    origin: Option<String>,
    /// `l_loader`: the object whose dependency loaded it.
    loader: Option<usize>,
    /// Whether it is in the breadth-first list already (`l_reserved`).
    reserved: bool,
}

impl Map {
    fn info(&self) -> Option<&ElfInfo> {
        self.obj.as_ref().and_then(|o| o.info.as_ref().ok())
    }

    fn soname(&self) -> Option<&str> {
        self.info()?.dynamic.as_ref()?.soname.as_deref()
    }

    /// `_dl_name_match_p`.
    fn name_match(&self, name: &str) -> bool {
        self.l_name == name || self.names.iter().any(|n| n == name)
    }

    /// The path for people: relative to its root, `.` and `..` folded
    /// (lexically; the loader itself keeps `$ORIGIN/..` as is).
    fn display(&self) -> String {
        normalize(&self.l_name)
    }
}

/// `/usr/bin/../lib/x` → `usr/lib/x`.
fn normalize(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

/// The state of one simulated load.
struct Session<'w> {
    world: &'w World,
    maps: Vec<Map>,
    problems: Vec<LoadProblem>,
}

/// The outcome of loading one file.
#[derive(Debug, Default)]
pub struct Closure {
    /// Every problem the loader would report, in order.
    pub problems: Vec<LoadProblem>,
    /// The objects loaded besides the file and the loader itself, with
    /// their paths (relative to their root).
    pub loaded: Vec<(String, Arc<Object>)>,
    /// The program interpreter, as loaded.
    pub interp: Option<(String, Arc<Object>)>,
}

/// Loads `path` (in the tree, already parsed as `obj`) with its closure.
/// A fatal error ends the load, as it ends `ld.so`.
pub fn resolve_closure(world: &World, path: &str, obj: Arc<Object>) -> Closure {
    let mut s = Session {
        world,
        maps: Vec::new(),
        problems: Vec::new(),
    };
    let interp = obj
        .info
        .as_ref()
        .ok()
        .and_then(|i| i.interp.clone())
        .unwrap_or_else(|| world.loader().interp.clone());
    s.maps.push(Map {
        names: vec![path.to_string()],
        l_name: path.to_string(),
        soname_added: false,
        faked: false,
        obj: Some(obj),
        id: None,
        root: RootSel::Tree,
        origin: origin_of(path),
        loader: None,
        reserved: true,
    });
    s.add_rtld(&interp);
    let rtld = s.maps.get(1).map(|m| (m.display(), m.obj.clone()));
    if s.load_deps().is_ok() {
        let _ = s.check_versions();
    }
    let loaded = s
        .maps
        .iter()
        .skip(1)
        .filter(|m| !m.faked && m.loader.is_some())
        .filter_map(|m| Some((m.display(), m.obj.clone()?)))
        .collect();
    Closure {
        problems: s.problems,
        loaded,
        interp: rtld.and_then(|(path, obj)| Some((path, obj?))),
    }
}

/// A fatal error stopped the load (already recorded).
struct Stop;

impl<'w> Session<'w> {
    /// The loader is loaded before anything else.
    fn add_rtld(&mut self, interp: &str) {
        let loader = self.world.loader();
        let Probe::Found { id, obj } = self.world.probe(RootSel::Libs, &loader.interp) else {
            return;
        };
        let mut names = vec![interp.to_string()];
        if let Some(soname) = obj
            .info
            .as_ref()
            .ok()
            .and_then(|i| i.dynamic.as_ref())
            .and_then(|d| d.soname.clone())
        {
            if soname != interp {
                names.push(soname);
            }
        }
        self.maps.push(Map {
            names,
            l_name: loader.interp.clone(),
            soname_added: true,
            faked: false,
            obj: Some(obj),
            id: Some(id),
            root: RootSel::Libs,
            origin: origin_of(&loader.interp),
            loader: None,
            reserved: false,
        });
    }

    fn load_deps(&mut self) -> Result<(), Stop> {
        let mut queue = vec![0usize];
        let mut next = 0;
        while next < queue.len() {
            let l = queue[next];
            next += 1;
            if self.maps[l].faked {
                continue;
            }
            let needed: Vec<(NeededKind, String)> = match self.maps[l].info() {
                Some(i) => i
                    .dynamic
                    .as_ref()
                    .map(|d| d.needed.clone())
                    .unwrap_or_default(),
                None => continue,
            };
            for (_, raw) in needed {
                let name = if raw.contains('$') {
                    match expand(&raw, &self.tokens(l)) {
                        Some((n, _)) => n,
                        // An unknowable token: the entry is skipped.
                        None => continue,
                    }
                } else {
                    raw
                };
                let dep = self.map_object(l, &name)?;
                if !self.maps[dep].reserved {
                    self.maps[dep].reserved = true;
                    queue.push(dep);
                }
            }
        }
        Ok(())
    }

    fn tokens(&self, l: usize) -> Tokens<'_> {
        let loader = self.world.loader();
        Tokens {
            origin: self.maps[l].origin.as_deref(),
            platform: &loader.cpu.platform,
            lib: &loader.dst_lib,
        }
    }

    /// `_dl_map_object` for dependency `name` of map `loader`.
    fn map_object(&mut self, loader: usize, name: &str) -> Result<usize, Stop> {
        // musl's loader is its own libc and answers for it: a needed
        // `libc.*`, `libpthread.*`, `librt.*`, `libm.*`, `libdl.*`,
        // `libutil.*` or `libxnet.*` is the loader itself (musl's
        // ldso/dynlink.c, load_library). Its libc.so has no soname.
        if self.world.loader().flavor == Flavor::Musl && musl_reserved(name) {
            let interp = &self.world.loader().interp;
            if let Some(i) = self.maps.iter().position(|m| &m.l_name == interp) {
                return Ok(i);
            }
        }
        for (i, m) in self.maps.iter_mut().enumerate() {
            if m.faked {
                continue;
            }
            if m.name_match(name) {
                return Ok(i);
            }
            if !m.soname_added && m.soname() == Some(name) {
                m.names.push(name.to_string());
                m.soname_added = true;
                return Ok(i);
            }
        }
        let found = if name.contains('/') {
            let (path, root) = match expand(name, &self.tokens(loader)) {
                Some((p, origin)) => (p, self.dir_root(loader, origin)),
                None => (name.to_string(), RootSel::Libs),
            };
            match self.world.probe(root, &path) {
                Probe::Found { id, obj } => Some((path, root, id, obj)),
                Probe::Skip(_) => None,
                Probe::Fatal(reason) => return Err(self.fatal(loader, name, &path, reason)),
            }
        } else {
            self.search(loader, name)?
        };
        let Some((path, root, id, obj)) = found else {
            self.problems.push(LoadProblem::MissingLibrary {
                name: name.to_string(),
                needed_by: self.maps[loader].display(),
            });
            self.maps.push(Map {
                names: vec![name.to_string()],
                l_name: name.to_string(),
                soname_added: true,
                faked: true,
                obj: None,
                id: None,
                root: RootSel::Libs,
                origin: None,
                loader: Some(loader),
                reserved: false,
            });
            return Ok(self.maps.len() - 1);
        };
        if let Some(i) = self.maps.iter().position(|m| m.id == Some(id)) {
            if !self.maps[i].names.iter().any(|n| n == name) {
                self.maps[i].names.push(name.to_string());
            }
            return Ok(i);
        }
        if let Some(reason) = map_error(&obj) {
            return Err(self.fatal(loader, name, &path, reason));
        }
        self.maps.push(Map {
            names: vec![name.to_string()],
            origin: origin_of(&path),
            l_name: path,
            soname_added: false,
            faked: false,
            obj: Some(obj),
            id: Some(id),
            root,
            loader: Some(loader),
            reserved: false,
        });
        Ok(self.maps.len() - 1)
    }

    fn fatal(&mut self, loader: usize, name: &str, path: &str, reason: String) -> Stop {
        self.problems.push(LoadProblem::BadLibrary {
            name: name.to_string(),
            path: normalize(path),
            needed_by: self.maps[loader].display(),
            reason,
        });
        Stop
    }

    /// The root a path from object `l` lives in: its own with `$ORIGIN`,
    /// else the library root.
    fn dir_root(&self, l: usize, from_origin: bool) -> RootSel {
        if from_origin {
            self.maps[l].root
        } else {
            RootSel::Libs
        }
    }

    fn rpath_dirs(&self, l: usize, runpath: bool) -> Option<Vec<(String, RootSel)>> {
        let dynamic = self.maps[l].info()?.dynamic.as_ref()?;
        let s = if runpath {
            dynamic.runpath.as_deref()?
        } else {
            dynamic.rpath.as_deref()?
        };
        Some(
            decompose(s, &self.tokens(l))
                .into_iter()
                .map(|SearchDir { dir, from_origin }| (dir, self.dir_root(l, from_origin)))
                .collect(),
        )
    }

    /// The search for a name without a slash.
    #[allow(clippy::type_complexity)]
    fn search(
        &mut self,
        loader: usize,
        name: &str,
    ) -> Result<Option<(String, RootSel, (u64, u64), Arc<Object>)>, Stop> {
        let world = self.world;
        let musl = world.loader().flavor == Flavor::Musl;
        let has_runpath = self.maps[loader]
            .info()
            .and_then(|i| i.dynamic.as_ref())
            .is_some_and(|d| d.runpath.is_some());
        if musl {
            // musl: RPATH and RUNPATH alike, of the requesting object only.
            for runpath in [false, true] {
                if let Some(dirs) = self.rpath_dirs(loader, runpath) {
                    if let Some(hit) = self.open_path(loader, name, &dirs, false)? {
                        return Ok(Some(hit));
                    }
                }
            }
        } else if !has_runpath {
            let mut l = Some(loader);
            let mut did_main = false;
            while let Some(i) = l {
                if let Some(dirs) = self.rpath_dirs(i, false) {
                    if let Some(hit) = self.open_path(loader, name, &dirs, true)? {
                        return Ok(Some(hit));
                    }
                    did_main |= i == 0;
                }
                l = self.maps[i].loader;
            }
            if !did_main {
                if let Some(dirs) = self.rpath_dirs(0, false) {
                    if let Some(hit) = self.open_path(loader, name, &dirs, true)? {
                        return Ok(Some(hit));
                    }
                }
            }
        }
        if !musl && has_runpath {
            if let Some(dirs) = self.rpath_dirs(loader, true) {
                if let Some(hit) = self.open_path(loader, name, &dirs, true)? {
                    return Ok(Some(hit));
                }
            }
        }
        let nodeflib = self.maps[loader]
            .info()
            .and_then(|i| i.dynamic.as_ref())
            .is_some_and(|d| d.flags_1 & DF_1_NODEFLIB != 0);
        let system_dirs = &world.loader().system_dirs;
        if let Some(cache) = &world.loader().cache {
            if let Some(cached) = cache.lookup(name, &world.loader().cpu, X86_64_FLAGS) {
                let in_system = system_dirs.iter().any(|d| cached.starts_with(d.as_str()));
                if !(nodeflib && in_system) {
                    match world.probe(RootSel::Libs, cached) {
                        Probe::Found { id, obj } => {
                            return Ok(Some((cached.to_string(), RootSel::Libs, id, obj)))
                        }
                        Probe::Skip(_) => {}
                        Probe::Fatal(reason) => {
                            return Err(self.fatal(loader, name, cached, reason))
                        }
                    }
                }
            }
        }
        if !nodeflib {
            let dirs: Vec<(String, RootSel)> = system_dirs
                .iter()
                .map(|d| (d.clone(), RootSel::Libs))
                .collect();
            let subdirs = !musl;
            return self.open_path(loader, name, &dirs, subdirs);
        }
        Ok(None)
    }

    /// `open_path`: every directory, every (hw)caps subdirectory in it.
    #[allow(clippy::type_complexity)]
    fn open_path(
        &mut self,
        loader: usize,
        name: &str,
        dirs: &[(String, RootSel)],
        subdirs: bool,
    ) -> Result<Option<(String, RootSel, (u64, u64), Arc<Object>)>, Stop> {
        let world = self.world;
        let caps: &[String] = if subdirs {
            &world.loader().cpu.subdirs
        } else {
            &[]
        };
        let plain = [String::new()];
        let caps = if caps.is_empty() { &plain[..] } else { caps };
        for (dir, root) in dirs {
            let mut last_errno = libc::ENOENT;
            for sub in caps {
                let path = format!("{dir}{sub}{name}");
                match world.probe(*root, &path) {
                    Probe::Found { id, obj } => return Ok(Some((path, *root, id, obj))),
                    Probe::Skip(errno) => last_errno = errno,
                    Probe::Fatal(reason) => return Err(self.fatal(loader, name, &path, reason)),
                }
            }
            // "The file exists and is readable, but something went wrong":
            // the loader gives up on this list.
            if ![libc::ENOENT, libc::EACCES, libc::ENOTDIR].contains(&last_errno) {
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// `_dl_check_all_versions` in trace mode.
    fn check_versions(&mut self) -> Result<(), Stop> {
        if matches!(self.world.loader().flavor, Flavor::Musl) {
            return Ok(());
        }
        let relr_check = matches!(self.world.loader().flavor, Flavor::Glibc(2, m) if m >= 36)
            || matches!(self.world.loader().flavor, Flavor::Glibc(maj, _) if maj > 2);
        // The loader itself is checked only when something needs it.
        for l in 0..self.maps.len() {
            let m = &self.maps[l];
            if m.faked || (l == 1 && !m.reserved && m.id.is_some() && m.loader.is_none()) {
                continue;
            }
            let Some(dynamic) = m.info().and_then(|i| i.dynamic.as_ref()) else {
                continue;
            };
            if let Some(reason) = &dynamic.version_error {
                self.problems.push(LoadProblem::BadVersionRecord {
                    path: m.display(),
                    reason: reason.clone(),
                });
                return Err(Stop);
            }
            let mut relr_ref = false;
            for need in &dynamic.verneed {
                let Some(target) = self.maps.iter().find(|t| t.name_match(&need.file)) else {
                    // The loader asserts here ("needed != NULL").
                    for aux in &need.versions {
                        self.problems.push(LoadProblem::MissingVersion {
                            version: aux.name.clone(),
                            file: need.file.clone(),
                            needed_by: m.display(),
                            defined_by: format!("nothing ({} is not loaded)", need.file),
                            weak: false,
                        });
                    }
                    continue;
                };
                if target.faked {
                    continue;
                }
                let defs = target
                    .info()
                    .and_then(|i| i.dynamic.as_ref())
                    .and_then(|d| d.verdef.as_ref());
                for aux in &need.versions {
                    if aux.name == "GLIBC_ABI_DT_RELR" {
                        relr_ref = true;
                    }
                    let Some(defs) = defs else {
                        self.problems.push(LoadProblem::NoVersionInfo {
                            file: need.file.clone(),
                            path: target.display(),
                            needed_by: m.display(),
                        });
                        continue;
                    };
                    let mut found = false;
                    for d in defs {
                        if d.version != 1 {
                            self.problems.push(LoadProblem::BadVersionRecord {
                                path: target.display(),
                                reason: format!(
                                    "unsupported version {} of Verdef record",
                                    d.version
                                ),
                            });
                            found = true;
                            break;
                        }
                        if d.hash == aux.hash && d.name == aux.name {
                            found = true;
                            break;
                        }
                    }
                    if !found {
                        self.problems.push(LoadProblem::MissingVersion {
                            version: aux.name.clone(),
                            file: need.file.clone(),
                            needed_by: m.display(),
                            defined_by: target.display(),
                            weak: aux.weak,
                        });
                    }
                }
            }
            if relr_check
                && !dynamic.verneed.is_empty()
                && dynamic.has_relr
                && !relr_ref
                && dynamic
                    .needed
                    .iter()
                    .any(|(k, n)| *k == NeededKind::Needed && n.starts_with("libc.so."))
            {
                self.problems.push(LoadProblem::BadVersionRecord {
                    path: m.display(),
                    reason: "DT_RELR without GLIBC_ABI_DT_RELR dependency".into(),
                });
                return Err(Stop);
            }
        }
        Ok(())
    }
}

/// `_dl_map_object_from_fd`'s refusals of a new dependency.
/// A name that musl's loader resolves to itself.
fn musl_reserved(name: &str) -> bool {
    const RESERVED: [&str; 7] = ["c.", "pthread.", "rt.", "m.", "dl.", "util.", "xnet."];
    !name.contains('/')
        && name
            .strip_prefix("lib")
            .is_some_and(|rest| RESERVED.iter().any(|r| rest.starts_with(r)))
}

fn map_error(obj: &Object) -> Option<String> {
    let info = obj.info.as_ref().ok()?;
    if info.load_misaligned {
        return Some("ELF load command address/offset not page-aligned".into());
    }
    if !info.has_load {
        return Some("object file has no loadable segments".into());
    }
    if info.e_type != 3 {
        return Some("cannot dynamically load executable".into());
    }
    if info.dynamic.is_none() || info.empty_dynamic {
        return Some("object file has no dynamic section".into());
    }
    if info
        .dynamic
        .as_ref()
        .is_some_and(|d| d.flags_1 & DF_1_PIE != 0)
    {
        return Some("cannot dynamically load position-independent executable".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn musl_reserved_names() {
        for n in [
            "libc.so",
            "libc.musl-x86_64.so.1",
            "libpthread.so.0",
            "libm.so",
            "libdl.so.2",
        ] {
            assert!(musl_reserved(n), "{n}");
        }
        for n in [
            "libcrypto.so.3",
            "libmagic.so.1",
            "/lib/libc.so",
            "libz.so.1",
        ] {
            assert!(!musl_reserved(n), "{n}");
        }
    }
}
