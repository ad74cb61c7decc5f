//! The loader oracle: what glibc's real dynamic loader says about every dynamically linked
//! ELF file of a root, the ground truth that `plinth check` must match exactly (DESIGN.md,
//! issue 3 item 3).
//!
//! For each file [`ElfInfo::is_dynamic`] selects, the oracle runs
//! `LD_TRACE_LOADED_OBJECTS=1 LD_BIND_NOW=1 /lib64/ld-linux-x86-64.so.2 FILE` with an
//! empty environment otherwise (cargo sets `LD_LIBRARY_PATH` for tests: it must not leak
//! in), stdin from /dev/null, a time limit, a bounded number at once; and [`classify`]
//! reads the answer. In [`Mode::Host`] the host's loader runs on the host's libraries
//! (`plinth check ROOT --onto /`); in [`Mode::Chroot`] the root's own loader runs chrooted
//! into the root (`plinth check ROOT`, which needs root).
//!
//! What the loader does in trace mode, as measured on Debian 12 (glibc 2.36):
//! - It maps the file and its dependencies, checks symbol versions, prints the list and
//!   exits 0. It does not run the program, nor relocate it: `LD_BIND_NOW` has no effect
//!   unless `LD_WARN` is set too (that is `ldd -r`), so a missing *unversioned or
//!   versioned symbol* whose version node exists goes unnoticed. The oracle answers the
//!   question "are all libraries and version nodes there", which is what plinth's
//!   `missing-library` and `missing-symbol-version` claim.
//! - A missing library is a line `\tSONAME => not found` on stdout, and the exit code is
//!   still 0; that library's own dependencies are then not looked at.
//! - A missing version node is `FILE: LIB: version `V' not found (required by OBJ)` on
//!   stderr, one line per node, again with exit code 0. `weak version ... not found` and
//!   `no version information available` are warnings: the loader would run the program.
//! - A shared object with no entry point traces like an executable (it is never run).
//!   One without DT_NEEDED prints `statically linked`.
//! - A fatal error (a dependency that is not an ELF file, wrong class...) exits 127 with
//!   `FILE: error while loading shared libraries: ...` on stderr. When the object named
//!   there is the traced file itself, the loader cannot handle the file at all (a
//!   non-native ELF): the oracle skips it rather than call it refused.
//! - A non-PIE static executable (busybox-static, a Go binary) makes the loader crash
//!   with SIGSEGV: such files are not dynamic and are never traced; a crash or a time-out
//!   of a traced file is a skip with a note.
//! - PT_INTERP is ignored when the loader is run explicitly, so files whose interpreter is
//!   not glibc's (musl) are skipped with a note: glibc's answer does not apply to them.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use super::elf_probe::{probe, walk_elf_files, ElfFile, ElfInfo, Probe, Walk};

/// glibc's x86-64 program interpreter, on the host and in every Debian root.
pub const GLIBC_LOADER: &str = "/lib64/ld-linux-x86-64.so.2";

/// How long one trace may take before the oracle gives up on that file.
pub const TRACE_TIMEOUT: Duration = Duration::from_secs(30);

/// Whose loader and libraries answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The host's loader on the host's libraries; the file is traced at its place under
    /// the root, so `$ORIGIN` points into the root (the `--onto /` question).
    Host,
    /// The root's own loader and libraries, chrooted into the root (needs root).
    Chroot,
}

/// Why the loader refuses a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `SONAME => not found`.
    NotFound {
        /// The DT_NEEDED name that nothing provides.
        soname: String,
    },
    /// `LIB: version `V' not found (required by OBJ)`.
    VersionNotFound {
        /// The version node, e.g. `GLIBC_2.38`.
        version: String,
        /// The library that lacks it, as the loader found it.
        library: String,
        /// The object that needs it (the traced file or one of its dependencies).
        required_by: String,
    },
    /// A non-zero exit with an error about a dependency.
    Fatal {
        /// The exit code.
        code: i32,
        /// The loader's message.
        message: String,
    },
    /// A line on stderr that none of the rules above knows: counted as a refusal so that
    /// it shows up in every diff until someone reads it and adds a rule.
    Unrecognised {
        /// The line.
        line: String,
    },
}

impl Refusal {
    /// The plinth problem kind that must report this refusal.
    pub fn plinth_kind(&self) -> &'static str {
        match self {
            Refusal::NotFound { .. } => "missing-library",
            Refusal::VersionNotFound { .. } => "missing-symbol-version",
            Refusal::Fatal { .. } | Refusal::Unrecognised { .. } => {
                "missing-library or missing-symbol-version"
            }
        }
    }

    /// A short grouping key for counts: the soname, or version and library file name.
    pub fn cause(&self) -> String {
        match self {
            Refusal::NotFound { soname } => format!("library {soname} not found"),
            Refusal::VersionNotFound {
                version, library, ..
            } => {
                let lib = Path::new(library)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| library.clone());
                format!("version {version} not found in {lib}")
            }
            Refusal::Fatal { code, .. } => format!("fatal loader error (exit {code})"),
            Refusal::Unrecognised { .. } => "unrecognised loader output".to_string(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotFound { soname } => write!(f, "{soname} => not found"),
            Refusal::VersionNotFound {
                version,
                library,
                required_by,
            } => write!(
                f,
                "{library}: version `{version}' not found (required by {required_by})"
            ),
            Refusal::Fatal { code, message } => write!(f, "exit {code}: {message}"),
            Refusal::Unrecognised { line } => write!(f, "unrecognised: {line}"),
        }
    }
}

/// The loader's answer for one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It would load; `warnings` holds lines the loader printed without refusing.
    Accepted {
        /// Non-fatal loader messages.
        warnings: Vec<String>,
    },
    /// It would not load, for these reasons (never empty).
    Refused(Vec<Refusal>),
    /// The loader cannot answer for this file; why.
    Skipped(String),
}

impl Outcome {
    /// Whether the loader refuses the file.
    pub fn is_refused(&self) -> bool {
        matches!(self, Outcome::Refused(_))
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Accepted { warnings } if warnings.is_empty() => write!(f, "accepted"),
            Outcome::Accepted { warnings } => {
                write!(f, "accepted (warnings: {})", warnings.join("; "))
            }
            Outcome::Refused(reasons) => {
                let r: Vec<String> = reasons.iter().map(|r| r.to_string()).collect();
                write!(f, "refused: {}", r.join("; "))
            }
            Outcome::Skipped(why) => write!(f, "skipped: {why}"),
        }
    }
}

/// Classify one trace. `traced` is the path as given to the loader (it prefixes the
/// loader's messages); `status` is None when the trace ran out of time.
pub fn classify(traced: &str, status: Option<ExitStatus>, stdout: &str, stderr: &str) -> Outcome {
    let Some(status) = status else {
        return Outcome::Skipped(format!("no answer within {TRACE_TIMEOUT:?}"));
    };
    if let Some(sig) = status.signal() {
        return Outcome::Skipped(format!(
            "the loader died of signal {sig} (it cannot handle this file)"
        ));
    }
    let code = status.code().unwrap_or(-1);
    let err_lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    if code != 0 {
        let message = err_lines.join(" | ");
        let itself = format!("error while loading shared libraries: {traced}: ");
        if message.contains(&itself) {
            return Outcome::Skipped(format!("the loader cannot load the file itself: {message}"));
        }
        return Outcome::Refused(vec![Refusal::Fatal { code, message }]);
    }
    let mut refusals = Vec::new();
    let mut warnings = Vec::new();
    for line in stdout.lines() {
        let line = line.trim();
        if let Some(soname) = line.strip_suffix("=> not found") {
            refusals.push(Refusal::NotFound {
                soname: soname.trim().to_string(),
            });
        }
    }
    for line in err_lines {
        let body = line.strip_prefix(&format!("{traced}: ")).unwrap_or(line);
        if body.contains("no version information available") || body.contains(": weak version `") {
            warnings.push(body.to_string());
        } else if let Some(r) = parse_version_not_found(body) {
            refusals.push(r);
        } else {
            refusals.push(Refusal::Unrecognised {
                line: line.to_string(),
            });
        }
    }
    if refusals.is_empty() {
        Outcome::Accepted { warnings }
    } else {
        Outcome::Refused(refusals)
    }
}

/// `LIB: version `V' not found (required by OBJ)`.
fn parse_version_not_found(body: &str) -> Option<Refusal> {
    let (library, rest) = body.split_once(": version `")?;
    let (version, rest) = rest.split_once("' not found (required by ")?;
    let required_by = rest.strip_suffix(')')?;
    Some(Refusal::VersionNotFound {
        version: version.to_string(),
        library: library.to_string(),
        required_by: required_by.to_string(),
    })
}

/// One file the oracle looked at.
#[derive(Clone, Debug)]
pub struct Traced {
    /// The file.
    pub file: ElfFile,
    /// The loader's answer.
    pub outcome: Outcome,
    /// The loader's stdout, for reports.
    pub stdout: String,
    /// The loader's stderr, for reports.
    pub stderr: String,
}

/// The oracle's answers for a whole root.
#[derive(Debug)]
pub struct OracleReport {
    /// The root.
    pub root: PathBuf,
    /// Whose loader answered.
    pub mode: Mode,
    /// Every ELF file under the root.
    pub walk: Walk,
    /// One entry per dynamically linked ELF file (per path), in path order.
    pub traced: Vec<Traced>,
    /// How long the traces took (wall time, in parallel).
    pub elapsed: Duration,
}

impl OracleReport {
    /// The traced files the loader refuses.
    pub fn refused(&self) -> impl Iterator<Item = &Traced> {
        self.traced.iter().filter(|t| t.outcome.is_refused())
    }

    /// The traced files the oracle could not answer for.
    pub fn skipped(&self) -> impl Iterator<Item = &Traced> {
        self.traced
            .iter()
            .filter(|t| matches!(t.outcome, Outcome::Skipped(_)))
    }

    /// The answer for the file at `rel`, if it was traced.
    pub fn outcome(&self, rel: &str) -> Option<&Outcome> {
        self.traced
            .iter()
            .find(|t| t.file.rel == rel)
            .map(|t| &t.outcome)
    }

    /// Paths of refused files.
    pub fn refused_paths(&self) -> BTreeSet<String> {
        self.refused().map(|t| t.file.rel.clone()).collect()
    }

    /// How many refused files each cause accounts for (a file counts once per cause).
    pub fn causes(&self) -> BTreeMap<String, usize> {
        let mut by = BTreeMap::new();
        for t in self.refused() {
            if let Outcome::Refused(reasons) = &t.outcome {
                let causes: BTreeSet<String> = reasons.iter().map(Refusal::cause).collect();
                for c in causes {
                    *by.entry(c).or_insert(0) += 1;
                }
            }
        }
        by
    }

    /// The counts, for the test log.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let dynamic = self.traced.len();
        let refused = self.refused().count();
        let skipped = self.skipped().count();
        let not_found = self
            .refused()
            .filter(|t| {
                matches!(&t.outcome, Outcome::Refused(r)
                    if r.iter().any(|x| matches!(x, Refusal::NotFound { .. })))
            })
            .count();
        let version = self
            .refused()
            .filter(|t| {
                matches!(&t.outcome, Outcome::Refused(r)
                    if r.iter().any(|x| matches!(x, Refusal::VersionNotFound { .. })))
            })
            .count();
        let _ = writeln!(
            s,
            "oracle ({:?}) for {}: {} regular files, {} ELF, {} dynamically linked; \
             {} refused ({} with a library not found, {} with a version not found), \
             {} accepted, {} skipped, {} unreadable; traced in {:.2?}",
            self.mode,
            self.root.display(),
            self.walk.regular_files,
            self.walk.elf.len(),
            dynamic,
            refused,
            not_found,
            version,
            dynamic - refused - skipped,
            skipped,
            self.walk.unreadable.len(),
            self.elapsed,
        );
        let mut causes: Vec<(String, usize)> = self.causes().into_iter().collect();
        causes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        for (cause, n) in causes {
            let _ = writeln!(s, "  {n:5}  {cause}");
        }
        for t in self.skipped() {
            let _ = writeln!(s, "  skipped {}: {}", t.file.rel, t.outcome);
        }
        let warned: Vec<&Traced> = self
            .traced
            .iter()
            .filter(
                |t| matches!(&t.outcome, Outcome::Accepted { warnings } if !warnings.is_empty()),
            )
            .collect();
        for t in warned {
            let _ = writeln!(s, "  accepted with warnings {}: {}", t.file.rel, t.outcome);
        }
        s
    }
}

/// Ask the loader about every dynamically linked ELF file under `root`.
pub fn run_oracle(root: &Path, mode: Mode) -> OracleReport {
    let root = fs::canonicalize(root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    let walk = walk_elf_files(&root).unwrap_or_else(|e| panic!("walk {}: {e}", root.display()));
    let todo: Vec<&ElfFile> = walk
        .elf
        .iter()
        .filter(|f| f.probe.as_ref().is_ok_and(ElfInfo::is_dynamic))
        .collect();
    let scratch = tempfile::Builder::new()
        .prefix("plinth-oracle-")
        .tempdir()
        .expect("oracle scratch dir");
    let jobs = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Traced>>> = Mutex::new(vec![None; todo.len()]);
    let start = Instant::now();
    thread::scope(|s| {
        for worker in 0..jobs {
            let (todo, next, results, root, scratch) = (&todo, &next, &results, &root, &scratch);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(file) = todo.get(i) else { break };
                let out = scratch.path().join(format!("{worker}.out"));
                let err = scratch.path().join(format!("{worker}.err"));
                let traced = trace_one(root, file, mode, &out, &err);
                results.lock().unwrap()[i] = Some(traced);
            });
        }
    });
    let elapsed = start.elapsed();
    let traced = results
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|t| t.expect("every file traced"))
        .collect();
    OracleReport {
        root,
        mode,
        walk,
        traced,
        elapsed,
    }
}

/// Ask the loader about one file: `rel` under `root` (e.g. `/` and `usr/bin/ls` for a
/// host binary), whatever [`ElfInfo::is_dynamic`] says of it; None when it is not an ELF
/// file whose headers can be read.
pub fn trace(root: &Path, rel: &str, mode: Mode) -> Option<Traced> {
    let walk_root = fs::canonicalize(root).ok()?;
    let path = walk_root.join(rel);
    let meta = fs::metadata(&path).ok()?;
    let info = match probe(&path).ok()? {
        Probe::Elf(info) => info,
        _ => return None,
    };
    let file = ElfFile {
        rel: rel.to_string(),
        key: (meta.dev(), meta.ino()),
        probe: Ok(info),
    };
    let scratch = tempfile::tempdir().expect("oracle scratch dir");
    let (out, err) = (scratch.path().join("out"), scratch.path().join("err"));
    Some(trace_one(&walk_root, &file, mode, &out, &err))
}

/// Trace one file; `out` and `err` are scratch files for its output.
fn trace_one(root: &Path, file: &ElfFile, mode: Mode, out: &Path, err: &Path) -> Traced {
    let info = file.probe.as_ref().expect("only probed files are traced");
    let done = |outcome| Traced {
        file: file.clone(),
        outcome,
        stdout: String::new(),
        stderr: String::new(),
    };
    if !info.is_host_native() {
        return done(Outcome::Skipped(format!(
            "not an x86-64 ELF64 LSB file (machine {}, 64-bit {}): the loader cannot map it",
            info.machine, info.class64
        )));
    }
    if let Some(interp) = info.interp.as_deref() {
        if interp != GLIBC_LOADER {
            return done(Outcome::Skipped(format!(
                "its interpreter is {interp}, not glibc's {GLIBC_LOADER}: glibc's answer does not apply"
            )));
        }
    }
    let (mut cmd, traced) = match mode {
        Mode::Host => {
            let path = root.join(&file.rel);
            let traced = path.to_string_lossy().into_owned();
            (Command::new(GLIBC_LOADER), traced)
        }
        Mode::Chroot => {
            let mut cmd = Command::new(GLIBC_LOADER);
            let dir = CString::new(root.as_os_str().as_bytes()).expect("root path without NUL");
            // SAFETY: chroot(2) and chdir(2) are async-signal-safe and the strings were
            // allocated before the fork; nothing else runs in the child before exec.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::chroot(dir.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            (cmd, format!("/{}", file.rel))
        }
    };
    cmd.arg(&traced)
        .env_clear()
        .env("LD_TRACE_LOADED_OBJECTS", "1")
        .env("LD_BIND_NOW", "1")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(fs::File::create(out).expect("oracle stdout file"))
        .stderr(fs::File::create(err).expect("oracle stderr file"));
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {GLIBC_LOADER} for {traced}: {e}"));
    let status = super::wait_timeout(&mut child, TRACE_TIMEOUT);
    let stdout = String::from_utf8_lossy(&fs::read(out).unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&fs::read(err).unwrap_or_default()).into_owned();
    let outcome = classify(&traced, status, &stdout, &stderr);
    Traced {
        file: file.clone(),
        outcome,
        stdout,
        stderr,
    }
}
