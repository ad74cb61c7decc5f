//! Platform fingerprints and binary compatibility checks for plinth.
//!
//! Two questions, answered without running anything:
//!
//! - *What is this platform?* [`Platform::detect`] combines this host's CPU
//!   (vendor, model, x86-64 level from CPUID) and kernel (release,
//!   namespaces, overlayfs, seccomp, cgroup layout) with the user space of
//!   a root directory (C library and version, distribution, library search
//!   path from `ld.so.conf` and `ld.so.cache`) and gives it a stable id.
//! - *Will these binaries load there?* [`CheckBuilder`] walks a tree and
//!   judges every ELF executable, shared object and script: architecture,
//!   interpreter, minimum kernel, ISA level, and every needed library and
//!   symbol version, resolved the way glibc's dynamic loader resolves them
//!   (RPATH/RUNPATH, `$ORIGIN`/`$LIB`/`$PLATFORM`, ld.so.cache,
//!   glibc-hwcaps, default directories), on the tree's own libraries or,
//!   with [`CheckBuilder::onto`], on another root's. The [`Report`] has a
//!   [`Verdict`] and typed [`Problem`]s per file; [`render`] turns it into
//!   text or a self-contained HTML page.
//!
//! Each file is read once (memory-mapped, parsed with `object`), in
//! parallel with rayon. This crate prints nothing.
//!
//! ```no_run
//! use plinth_compat::{CheckBuilder, Verdict};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let report = CheckBuilder::new("/srv/images/debian13")
//!     .onto("/")
//!     .build()?
//!     .run()?;
//! println!("{} of {} files fail", report.summary.fail, report.summary.files);
//! for file in report.files.iter().filter(|f| f.verdict == Verdict::Fail) {
//!     for p in &file.problems {
//!         println!("{}: {}: {}", file.path, p.kind, p.detail);
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! ```
//! // The platform of this host, with its fingerprint id.
//! let platform = plinth_compat::Platform::detect(std::path::Path::new("/")).unwrap();
//! assert_eq!(platform.id.len(), 64);
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod check;
pub mod elf;
pub mod loader;
pub mod platform;
pub mod render;
pub mod resolve;
mod root;
mod sys;
pub mod syscalls;

pub use check::{
    Cause, Check, CheckBuilder, CheckError, FileReport, Problem, ProblemKind, Progress, Report,
    Summary, Verdict,
};
pub use platform::{Platform, PlatformError};
pub use root::RootDir;
