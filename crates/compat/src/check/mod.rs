//! `plinth check`: judge every ELF file and script of a tree against a
//! platform.
//!
//! [`CheckBuilder`] validates the options and builds a [`Check`];
//! [`Check::run`] walks the tree (`walk.rs`), reads every regular file once
//! in parallel (ELF files memory-mapped and parsed, `#!` lines read),
//! resolves every ELF file's dependency closure in parallel
//! (`crate::resolve`), and turns what it finds into a [`Report`]
//! (`report.rs`). Per-file judgement lives in `examine.rs`.

mod examine;
mod report;
mod walk;

pub use report::{Cause, FileReport, Problem, ProblemKind, Report, Summary, Verdict};

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use thiserror::Error;

use crate::platform::{KernelInfo, Platform};
use crate::resolve::World;
use crate::root::RootDir;

/// Why a check could not run.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CheckError {
    /// A root could not be opened.
    #[error("{}: cannot open: {source}", path.display())]
    Root {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `--binary` must be a path relative to the tree, without `..`.
    #[error("--binary {0}: must be a relative path inside the tree, without `..`")]
    BadBinary(String),
    /// A `--binary` file does not exist in the tree.
    #[error("--binary {rel}: not found in {}: {source}", tree.display())]
    MissingBinary {
        /// The name given.
        rel: String,
        /// The tree.
        tree: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The tree could not be walked.
    #[error("{}: cannot walk: {source}", path.display())]
    Walk {
        /// The tree.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Progress of a running check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Progress {
    /// This many files will be read (0: unknown, the tree is walked while
    /// it is read).
    Found(usize),
    /// One more file has been read.
    Read,
    /// This many ELF files will have their closure resolved.
    Resolving(usize),
    /// One more closure is resolved.
    Resolved,
}

type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// Options of a check; build with [`CheckBuilder`].
struct Config {
    tree: PathBuf,
    onto: Option<PathBuf>,
    binaries: Vec<String>,
    progress: Option<ProgressFn>,
    kernel: Option<KernelInfo>,
    syscalls: bool,
}

/// Builds a [`Check`].
pub struct CheckBuilder {
    config: Config,
}

impl CheckBuilder {
    /// A check of the tree at `tree` on its own libraries.
    pub fn new(tree: impl Into<PathBuf>) -> CheckBuilder {
        CheckBuilder {
            config: Config {
                tree: tree.into(),
                onto: None,
                binaries: Vec::new(),
                progress: None,
                kernel: None,
                syscalls: false,
            },
        }
    }

    /// Resolve libraries in `root` (the platform root) instead of the tree.
    pub fn onto(mut self, root: impl Into<PathBuf>) -> CheckBuilder {
        self.config.onto = Some(root.into());
        self
    }

    /// Report only this file (relative to the tree); repeatable.
    pub fn binary(mut self, rel: impl Into<String>) -> CheckBuilder {
        self.config.binaries.push(rel.into());
        self
    }

    /// Call `f` as the check advances (from several threads).
    pub fn progress(mut self, f: impl Fn(Progress) + Send + Sync + 'static) -> CheckBuilder {
        self.config.progress = Some(Arc::new(f));
        self
    }

    /// Judge against these kernel facts instead of the running kernel's.
    pub fn kernel(mut self, kernel: KernelInfo) -> CheckBuilder {
        self.config.kernel = Some(kernel);
        self
    }

    /// Also find every system call each file can make, and judge them
    /// (`--syscalls`).
    pub fn syscalls(mut self, on: bool) -> CheckBuilder {
        self.config.syscalls = on;
        self
    }

    /// Validates the options.
    pub fn build(self) -> Result<Check, CheckError> {
        let mut config = self.config;
        for b in &mut config.binaries {
            let trimmed = b.trim_start_matches("./").to_string();
            let p = Path::new(&trimmed);
            if trimmed.is_empty()
                || p.is_absolute()
                || p.components().any(|c| matches!(c, Component::ParentDir))
            {
                return Err(CheckError::BadBinary(b.clone()));
            }
            *b = trimmed;
        }
        Ok(Check { config })
    }
}

/// A configured check.
pub struct Check {
    config: Config,
}

impl Check {
    /// Runs the check.
    pub fn run(&self) -> Result<Report, CheckError> {
        let c = &self.config;
        let open = |p: &Path| {
            RootDir::open(p).map_err(|source| CheckError::Root {
                path: p.to_path_buf(),
                source,
            })
        };
        let tree = open(&c.tree)?;
        let libs = c.onto.as_deref().map(open).transpose()?;
        let kernel = c.kernel.clone().unwrap_or_else(KernelInfo::detect);
        let features = crate::platform::CpuFeatures::detect();
        let platform = Platform::detect_in(libs.as_ref().unwrap_or(&tree), kernel, features);
        let mut world = World::new(tree, libs, platform.loader().clone());
        if c.syscalls {
            world = world.with_code_analysis();
        }
        let progress = |p: Progress| {
            if let Some(f) = &c.progress {
                f(p)
            }
        };

        let explicit = !c.binaries.is_empty();
        let ctx = examine::Context {
            world: &world,
            platform: &platform,
            explicit,
        };
        let read: Vec<examine::Read> = if explicit {
            let mut rels = c.binaries.clone();
            rels.dedup();
            for rel in &rels {
                if let Err(source) = world.root(crate::resolve::RootSel::Tree).open_file(rel) {
                    if source.raw_os_error() == Some(libc::ENOENT) {
                        return Err(CheckError::MissingBinary {
                            rel: rel.clone(),
                            tree: c.tree.clone(),
                            source,
                        });
                    }
                }
            }
            progress(Progress::Found(rels.len()));
            rels.par_iter()
                .map(|rel| {
                    let r = examine::read_file(&ctx, rel);
                    progress(Progress::Read);
                    r
                })
                .collect()
        } else {
            progress(Progress::Found(0));
            walk::walk_read(&c.tree, &|file, rel| {
                let r = examine::read_walked(&ctx, rel, file);
                progress(Progress::Read);
                (!matches!(r, examine::Read::Skipped)).then_some(r)
            })
            .map_err(|source| CheckError::Walk {
                path: c.tree.clone(),
                source,
            })?
        };
        let to_resolve = read.iter().filter(|r| r.needs_resolution()).count();
        progress(Progress::Resolving(to_resolve));
        let files: Vec<FileReport> = read
            .into_par_iter()
            .filter_map(|r| {
                let resolves = r.needs_resolution();
                let out = examine::judge(&ctx, r);
                if resolves {
                    progress(Progress::Resolved);
                }
                out
            })
            .collect();
        Ok(Report::new(platform, files))
    }
}

#[cfg(test)]
mod tests {
    //! Fixtures built with `cc` at test time, judged by plinth and, as a
    //! cross-check, by this machine's own `ld.so` in trace mode.
    use super::*;
    use std::fs;
    use std::process::Command;

    fn have_cc() -> bool {
        let ok = Command::new("cc").arg("--version").output().is_ok();
        if !ok {
            eprintln!("skipping: no cc");
        }
        ok
    }

    fn cc(dir: &Path, args: &[&str]) {
        let out = Command::new("cc")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cc {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Whether the real loader refuses `file` (trace mode, as the oracle).
    fn loader_refuses(file: &Path) -> bool {
        let out = Command::new(crate::loader::GLIBC_X86_64_INTERP)
            .arg(file)
            .env_clear()
            .env("LD_TRACE_LOADED_OBJECTS", "1")
            .env("LD_BIND_NOW", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        !out.status.success()
            || text
                .lines()
                .any(|l| l.contains("not found") && !l.contains("weak version"))
    }

    fn check(tree: &Path, bin: &str) -> FileReport {
        let report = CheckBuilder::new(tree)
            .onto("/")
            .binary(bin)
            .build()
            .unwrap()
            .run()
            .unwrap();
        assert_eq!(report.files.len(), 1);
        report.files[0].clone()
    }

    fn kinds(f: &FileReport) -> Vec<ProblemKind> {
        f.problems.iter().map(|p| p.kind).collect()
    }

    #[test]
    fn symbol_versions_against_the_library_that_is_loaded() {
        if !have_cc() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs::create_dir_all(d.join("lib")).unwrap();
        fs::create_dir_all(d.join("bin")).unwrap();
        fs::write(
            d.join("v2.map"),
            "MYLIB_1.0 { global: f1; local: *; };\nMYLIB_2.0 { global: f2; } MYLIB_1.0;\n",
        )
        .unwrap();
        fs::write(
            d.join("v1.map"),
            "MYLIB_1.0 { global: f1; f2; local: *; };\n",
        )
        .unwrap();
        fs::write(
            d.join("lib.c"),
            "int f1(void){return 1;} int f2(void){return 2;}\n",
        )
        .unwrap();
        fs::write(
            d.join("app.c"),
            "int f2(void); int main(void){return f2();}\n",
        )
        .unwrap();
        cc(
            d,
            &[
                "-shared",
                "-fPIC",
                "-o",
                "lib/libmy.so.1",
                "lib.c",
                "-Wl,-soname,libmy.so.1",
                "-Wl,--version-script,v2.map",
            ],
        );
        cc(
            d,
            &[
                "-o",
                "bin/app",
                "app.c",
                "-Llib",
                "-l:libmy.so.1",
                "-Wl,-rpath,$ORIGIN/../lib",
            ],
        );
        let ok = check(d, "bin/app");
        assert_eq!(ok.verdict, Verdict::Ok, "{ok:?}");
        assert!(!loader_refuses(&d.join("bin/app")));

        // Swap in a build that only defines MYLIB_1.0.
        cc(
            d,
            &[
                "-shared",
                "-fPIC",
                "-o",
                "lib/libmy.so.1",
                "lib.c",
                "-Wl,-soname,libmy.so.1",
                "-Wl,--version-script,v1.map",
            ],
        );
        let bad = check(d, "bin/app");
        assert_eq!(kinds(&bad), [ProblemKind::MissingSymbolVersion], "{bad:?}");
        assert_eq!(
            bad.problems[0].detail,
            "MYLIB_2.0, needed from libmy.so.1, is not defined by lib/libmy.so.1"
        );
        assert!(loader_refuses(&d.join("bin/app")));

        // A library without any version definitions satisfies the need
        // (the loader only warns).
        cc(
            d,
            &[
                "-shared",
                "-fPIC",
                "-o",
                "lib/libmy.so.1",
                "lib.c",
                "-Wl,-soname,libmy.so.1",
            ],
        );
        let warn = check(d, "bin/app");
        assert_eq!(warn.verdict, Verdict::Warn, "{warn:?}");
        assert_eq!(kinds(&warn), [ProblemKind::NoVersionInformation]);
        assert!(!loader_refuses(&d.join("bin/app")));
    }

    #[test]
    fn rpath_is_inherited_runpath_is_not() {
        if !have_cc() {
            return;
        }
        for (tags, refused) in [("--disable-new-dtags", false), ("--enable-new-dtags", true)] {
            let t = tempfile::tempdir().unwrap();
            let d = t.path();
            fs::create_dir_all(d.join("libs")).unwrap();
            fs::create_dir_all(d.join("bin")).unwrap();
            fs::write(d.join("b.c"), "int b(void){return 2;}\n").unwrap();
            fs::write(d.join("a.c"), "int b(void); int a(void){return b();}\n").unwrap();
            fs::write(
                d.join("app.c"),
                "int a(void); int main(void){return a();}\n",
            )
            .unwrap();
            cc(
                d,
                &[
                    "-shared",
                    "-fPIC",
                    "-o",
                    "libs/libb.so",
                    "b.c",
                    "-Wl,-soname,libb.so",
                ],
            );
            // libA needs libB but has no search path of its own.
            cc(
                d,
                &[
                    "-shared",
                    "-fPIC",
                    "-o",
                    "libs/liba.so",
                    "a.c",
                    "-Wl,-soname,liba.so",
                    "-Llibs",
                    "-lb",
                ],
            );
            let rpath = format!("-Wl,{tags},-rpath,$ORIGIN/../libs");
            cc(
                d,
                &[
                    "-o",
                    "bin/app",
                    "app.c",
                    "-Llibs",
                    "-la",
                    "-Wl,--allow-shlib-undefined",
                    &rpath,
                ],
            );
            let f = check(d, "bin/app");
            assert_eq!(loader_refuses(&d.join("bin/app")), refused, "{tags}");
            if refused {
                assert_eq!(kinds(&f), [ProblemKind::MissingLibrary], "{tags}: {f:?}");
                assert_eq!(
                    f.problems[0].detail,
                    "libb.so, needed by libs/liba.so, is not found"
                );
            } else {
                assert_eq!(f.verdict, Verdict::Ok, "{tags}: {f:?}");
            }
        }
    }

    #[test]
    fn bad_input_is_a_problem_on_that_file() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let exe = fs::read("/bin/true").unwrap();
        fs::write(d.join("truncated"), &exe[..200]).unwrap();
        fs::write(d.join("short"), b"\x7fELF\x02\x01\x01").unwrap();
        // Absurd counts: e_phnum = 0xffff pointing past the end.
        let mut absurd = exe.clone();
        absurd[56] = 0xff;
        absurd[57] = 0xff;
        fs::write(d.join("absurd"), &absurd).unwrap();
        std::os::unix::fs::symlink("loop2", d.join("loop1")).unwrap();
        std::os::unix::fs::symlink("loop1", d.join("loop2")).unwrap();
        let fifo = std::ffi::CString::new(d.join("fifo").to_str().unwrap()).unwrap();
        #[allow(unsafe_code)]
        // SAFETY (test): mkfifo with a valid path.
        let rc = unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) };
        assert_eq!(rc, 0);
        let mut script = fs::File::create(d.join("script")).unwrap();
        std::io::Write::write_all(&mut script, b"#!/no/such/interpreter\n").unwrap();
        drop(script);
        fs::set_permissions(
            d.join("script"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();

        // The walk: the fifo and the loop are not regular files.
        let report = CheckBuilder::new(d).build().unwrap().run().unwrap();
        let by: std::collections::HashMap<&str, &FileReport> =
            report.files.iter().map(|f| (f.path.as_str(), f)).collect();
        assert_eq!(kinds(by["truncated"]), [ProblemKind::MalformedElf]);
        assert_eq!(kinds(by["short"]), [ProblemKind::MalformedElf]);
        assert_eq!(kinds(by["absurd"]), [ProblemKind::MalformedElf]);
        assert_eq!(kinds(by["script"]), [ProblemKind::MissingInterpreter]);
        assert!(!by.contains_key("fifo") && !by.contains_key("loop1"));

        // Named explicitly, they are reported, never opened for reading
        // in a way that blocks.
        let report = CheckBuilder::new(d)
            .binary("fifo")
            .binary("loop1")
            .build()
            .unwrap()
            .run()
            .unwrap();
        assert_eq!(report.files.len(), 2);
        assert!(
            report
                .files
                .iter()
                .all(|f| kinds(f) == [ProblemKind::Unreadable]),
            "{report:?}"
        );
        assert!(matches!(
            CheckBuilder::new(d).binary("../etc/passwd").build(),
            Err(CheckError::BadBinary(_))
        ));
    }

    #[test]
    fn objects_written_with_object_write_parse_or_fail_cleanly() {
        use object::write::{Object as WObject, Symbol, SymbolSection};
        use object::{
            Architecture, BinaryFormat, Endianness, SymbolFlags, SymbolKind, SymbolScope,
        };
        let mut o = WObject::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
        let text = o.section_id(object::write::StandardSection::Text);
        o.add_symbol(Symbol {
            name: b"f".to_vec(),
            value: 0,
            size: 0,
            kind: SymbolKind::Text,
            scope: SymbolScope::Linkage,
            weak: false,
            section: SymbolSection::Section(text),
            flags: SymbolFlags::None,
        });
        let bytes = o.write().unwrap();
        // An ET_REL file: parsed, then not examined.
        let info = crate::elf::parse(&bytes).unwrap();
        assert_eq!(info.e_type, 1);
        // Every truncation parses or fails; none panics.
        for len in 0..bytes.len() {
            let _ = crate::elf::parse(&bytes[..len]);
        }
    }
}
