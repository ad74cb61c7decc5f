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
    /// The walk found this many regular files to read.
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
        let world = World::new(tree, libs, platform.loader().clone());
        let progress = |p: Progress| {
            if let Some(f) = &c.progress {
                f(p)
            }
        };

        let explicit = !c.binaries.is_empty();
        let rels: Vec<String> = if explicit {
            let mut v = c.binaries.clone();
            v.dedup();
            v
        } else {
            let (found, _) = walk::walk(&c.tree).map_err(|source| CheckError::Walk {
                path: c.tree.clone(),
                source,
            })?;
            found.into_iter().map(|f| f.rel).collect()
        };
        if explicit {
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
        }
        progress(Progress::Found(rels.len()));
        let ctx = examine::Context {
            world: &world,
            platform: &platform,
            explicit,
        };
        let read: Vec<examine::Read> = rels
            .par_iter()
            .map(|rel| {
                let r = examine::read_file(&ctx, rel);
                progress(Progress::Read);
                r
            })
            .collect();
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
