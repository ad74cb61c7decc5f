//! Resolving dependencies exactly as glibc's `ld.so` does, without running
//! it.
//!
//! A [`World`] holds the roots (the tree being checked and, with `--onto`,
//! the platform root that every library search goes to), the platform's
//! [`Loader`], and two caches shared by all threads: parsed objects by
//! (device, inode), and the loader's view of every candidate path it tried
//! ("probes"). `closure.rs` replays the loader's breadth-first loading and
//! version checks for one file on top of them; `dst.rs` expands `$ORIGIN`,
//! `$LIB` and `$PLATFORM`.

mod closure;
pub mod dst;

pub use closure::{resolve_closure, Closure, LoadProblem};

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};

use crate::elf::{self, ElfClass, ElfError, ElfInfo, EM_X86_64};
use crate::loader::Loader;
use crate::root::RootDir;

/// Which root a path lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RootSel {
    /// The tree being checked (`PATH`).
    Tree,
    /// The root whose libraries are used (`--onto ROOT`, else `PATH`).
    Libs,
}

/// A parsed object, shared.
#[derive(Debug)]
pub struct Object {
    /// The summary, or why it could not be read.
    pub info: Result<ElfInfo, ElfError>,
    /// The file size.
    pub len: u64,
    /// Its code, analysed for system calls (only when the world asks).
    pub(crate) code: Option<crate::syscalls::CodeFacts>,
}

/// What the loader makes of one candidate path.
#[derive(Clone, Debug)]
pub enum Probe {
    /// Nothing usable there: the open failed with this errno, or the file
    /// is for another class or machine (then `ENOENT`, as the loader sets).
    Skip(i32),
    /// The loader would take this file.
    Found {
        /// (device, inode).
        id: (u64, u64),
        /// The parsed file.
        obj: Arc<Object>,
    },
    /// The loader would stop with this error.
    Fatal(String),
}

const SHARDS: usize = 16;

/// A map split in shards so threads rarely wait for each other.
struct Sharded<K, V> {
    shards: Vec<Mutex<HashMap<K, V>>>,
}

impl<K: Hash + Eq, V: Clone> Sharded<K, V> {
    fn new() -> Self {
        Sharded {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, k: &K) -> &Mutex<HashMap<K, V>> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        k.hash(&mut h);
        &self.shards[h.finish() as usize % SHARDS]
    }

    fn get(&self, k: &K) -> Option<V> {
        self.shard(k)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(k)
            .cloned()
    }

    /// Inserts unless present; returns the value in the map.
    fn insert(&self, k: K, v: V) -> V {
        self.shard(&k)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(k)
            .or_insert(v)
            .clone()
    }
}

/// The roots, the loader and the shared caches of one check.
pub struct World {
    tree: RootDir,
    libs: Option<RootDir>,
    loader: Loader,
    objects: Sharded<(u64, u64), Arc<OnceLock<Arc<Object>>>>,
    probes: Sharded<(RootSel, String), Probe>,
    analyse_code: bool,
}

impl World {
    /// A world checking `tree` against the libraries of `libs` (or of
    /// `tree` itself) with `loader`, the loader of the library root.
    pub fn new(tree: RootDir, libs: Option<RootDir>, loader: Loader) -> World {
        World {
            tree,
            libs,
            loader,
            objects: Sharded::new(),
            probes: Sharded::new(),
            analyse_code: false,
        }
    }

    /// Analyse the code of every object read, for system calls.
    pub fn with_code_analysis(mut self) -> World {
        self.analyse_code = true;
        self
    }

    /// Whether objects are read with their code analysed.
    pub fn analyses_code(&self) -> bool {
        self.analyse_code
    }

    /// The root a selector names.
    pub fn root(&self, sel: RootSel) -> &RootDir {
        match (sel, &self.libs) {
            (RootSel::Libs, Some(l)) => l,
            _ => &self.tree,
        }
    }

    /// The selector to use for `sel`: without `--onto` both are the tree.
    fn canonical(&self, sel: RootSel) -> RootSel {
        if self.libs.is_none() {
            RootSel::Tree
        } else {
            sel
        }
    }

    /// The loader of the library root.
    pub fn loader(&self) -> &Loader {
        &self.loader
    }

    /// The parsed object with this identity, parsing `read()` at most once.
    pub fn object(&self, id: (u64, u64), read: impl FnOnce() -> Object) -> Arc<Object> {
        let cell = self.objects.insert(id, Arc::new(OnceLock::new()));
        cell.get_or_init(|| Arc::new(read())).clone()
    }

    /// What the loader makes of `path` in root `sel` (cached).
    pub fn probe(&self, sel: RootSel, path: &str) -> Probe {
        let key = (self.canonical(sel), path.to_string());
        if let Some(p) = self.probes.get(&key) {
            return p;
        }
        let p = self.probe_uncached(key.0, path);
        self.probes.insert(key, p)
    }

    fn probe_uncached(&self, sel: RootSel, path: &str) -> Probe {
        let root = self.root(sel);
        let opened = match root.open_file(path) {
            Ok(o) => o,
            Err(e) => return Probe::Skip(e.raw_os_error().unwrap_or(libc::ENOENT)),
        };
        use std::os::unix::fs::MetadataExt;
        let meta = &opened.meta;
        if meta.is_dir() {
            return Probe::Fatal("cannot read file data: Is a directory".into());
        }
        if !meta.is_file() {
            return Probe::Fatal("not a regular file".into());
        }
        let id = (meta.dev(), meta.ino());
        let obj = self.object(id, || {
            read_object(&opened.file, meta.len(), self.analyse_code)
        });
        match loader_verdict(&obj) {
            Verdict::Accept => Probe::Found { id, obj },
            Verdict::Skip => Probe::Skip(libc::ENOENT),
            Verdict::Fatal(e) => Probe::Fatal(e),
        }
    }
}

/// Reads and parses an open file (memory-mapped).
pub fn read_object(file: &std::fs::File, len: u64, analyse_code: bool) -> Object {
    if len == 0 {
        return Object {
            info: Err(ElfError::NotElf),
            len,
            code: None,
        };
    }
    // SAFETY: the map is read-only and private; a file truncated under us
    // could fault, which is the accepted risk of memory-mapping (as the
    // loader itself does).
    #[allow(unsafe_code)]
    let map = unsafe { memmap2::Mmap::map(file) };
    let (info, code) = match map {
        Ok(m) => {
            let info = elf::parse(&m);
            let code = match &info {
                Ok(i) if analyse_code => crate::syscalls::analyse(&m, i),
                _ => None,
            };
            (info, code)
        }
        Err(e) => (Err(ElfError::Malformed(format!("cannot map: {e}"))), None),
    };
    Object { info, len, code }
}

enum Verdict {
    Accept,
    Skip,
    Fatal(String),
}

/// glibc's `open_verify` on a parsed candidate: skip other classes and
/// machines, refuse broken headers.
fn loader_verdict(obj: &Object) -> Verdict {
    match &obj.info {
        Err(ElfError::NotElf) => Verdict::Fatal(if obj.len < 64 {
            "file too short".into()
        } else {
            "invalid ELF header".into()
        }),
        Err(e) => {
            if obj.len < 64 {
                Verdict::Fatal("file too short".into())
            } else {
                Verdict::Fatal(e.to_string())
            }
        }
        Ok(info) => {
            if info.header_error == Some("file too short") {
                return Verdict::Fatal("file too short".into());
            }
            if info.class != Some(ElfClass::Elf64) {
                return Verdict::Skip;
            }
            if let Some(e) = info.header_error {
                // Errors the loader checks before the machine.
                let before_machine = !matches!(
                    e,
                    "only ET_DYN and ET_EXEC can be loaded"
                        | "ELF file's phentsize not the expected size"
                        | "cannot read file data"
                );
                if before_machine || info.machine == EM_X86_64 {
                    return Verdict::Fatal(e.to_string());
                }
            }
            if info.machine != EM_X86_64 {
                return Verdict::Skip;
            }
            Verdict::Accept
        }
    }
}
