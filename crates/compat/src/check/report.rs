//! The result of a check: verdicts per file, problems, and the causes they
//! share.
//!
//! JSON shape (the contract `plinth check --format json` prints):
//! `{"platform": {...}, "summary": {"files", "ok", "warn", "fail"},
//! "files": [{"path", "verdict", "problems": [{"kind", "detail"}]}]}`.
//! `files` lists every ELF executable or shared object and every
//! executable script examined, `ok` ones included.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::platform::Platform;

/// What is wrong, as a stable kebab-case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ProblemKind {
    /// A needed library is not found, or what is found cannot be loaded.
    MissingLibrary,
    /// A needed symbol version is not defined by the library loaded for it
    /// (or a version record the loader refuses).
    MissingSymbolVersion,
    /// A weak symbol version need is not met (the loader accepts it).
    WeakSymbolVersion,
    /// Versions are needed from a library without version information
    /// (the loader accepts it with a warning).
    NoVersionInformation,
    /// The file is for another class or machine than the platform.
    WrongArchitecture,
    /// The program interpreter (`PT_INTERP` or `#!`) does not exist.
    MissingInterpreter,
    /// `NT_GNU_ABI_TAG` names a newer kernel than the platform's.
    KernelTooOld,
    /// The file or a library it loads needs a higher x86-64 level than
    /// the CPU has.
    IsaLevel,
    /// The file could not be read.
    Unreadable,
    /// The file is not a valid ELF file, or the loader would refuse it.
    MalformedElf,
    /// The program can make a system call the platform's kernel predates.
    KernelLacksSyscall,
    /// The program can make a system call the kernel was built without.
    KernelConfigLacksSyscall,
    /// The program can make a system call, or reads a file, that shows or
    /// changes host-wide state no namespace isolates.
    NotContainerised,
    /// A system call site whose number could not be resolved: the calls
    /// listed may be incomplete.
    UnresolvedSyscallSite,
}

impl ProblemKind {
    /// Whether this kind makes a file fail (else it only warns).
    pub fn fails(self) -> bool {
        !matches!(
            self,
            ProblemKind::WeakSymbolVersion
                | ProblemKind::NoVersionInformation
                | ProblemKind::Unreadable
                | ProblemKind::NotContainerised
                | ProblemKind::UnresolvedSyscallSite
        )
    }

    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::MissingLibrary => "missing-library",
            ProblemKind::MissingSymbolVersion => "missing-symbol-version",
            ProblemKind::WeakSymbolVersion => "weak-symbol-version",
            ProblemKind::NoVersionInformation => "no-version-information",
            ProblemKind::WrongArchitecture => "wrong-architecture",
            ProblemKind::MissingInterpreter => "missing-interpreter",
            ProblemKind::KernelTooOld => "kernel-too-old",
            ProblemKind::IsaLevel => "isa-level",
            ProblemKind::Unreadable => "unreadable",
            ProblemKind::MalformedElf => "malformed-elf",
            ProblemKind::KernelLacksSyscall => "kernel-lacks-syscall",
            ProblemKind::KernelConfigLacksSyscall => "kernel-config-lacks-syscall",
            ProblemKind::NotContainerised => "not-containerised",
            ProblemKind::UnresolvedSyscallSite => "unresolved-syscall-site",
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem of one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What is wrong.
    pub kind: ProblemKind,
    /// A sentence for people.
    pub detail: String,
    /// What files with this problem have in common (a library name, a
    /// version, an interpreter), for grouping.
    #[serde(skip)]
    pub subject: String,
}

/// A file's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Nothing wrong.
    Ok,
    /// Only warnings.
    Warn,
    /// It will not run on the platform.
    Fail,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        })
    }
}

/// The result for one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileReport {
    /// Relative to the checked tree, no leading slash.
    pub path: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Its problems (those of the libraries it loads included).
    pub problems: Vec<Problem>,
    /// With `--syscalls`: every system call running it can make (its own,
    /// its interpreter's and its libraries'), by name, sorted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscalls: Option<Vec<String>>,
    /// With `--syscalls`: how many sites in its closure have a number that
    /// could not be resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unresolved_syscall_sites: Option<usize>,
}

impl FileReport {
    /// A report whose verdict follows from its problems.
    pub fn new(path: String, mut problems: Vec<Problem>) -> FileReport {
        problems.dedup();
        let verdict = if problems.iter().any(|p| p.kind.fails()) {
            Verdict::Fail
        } else if problems.is_empty() {
            Verdict::Ok
        } else {
            Verdict::Warn
        };
        FileReport {
            path,
            verdict,
            problems,
            syscalls: None,
            unresolved_syscall_sites: None,
        }
    }
}

/// Counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Files examined.
    pub files: usize,
    /// With verdict `ok`.
    pub ok: usize,
    /// With verdict `warn`.
    pub warn: usize,
    /// With verdict `fail`.
    pub fail: usize,
}

/// A cause shared by several files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cause {
    /// The kind of problem.
    pub kind: ProblemKind,
    /// What the files have in common.
    pub subject: String,
    /// A sentence: "201 files need GLIBC_2.38 or newer; the platform's
    /// glibc is 2.36".
    pub summary: String,
    /// The files, sorted.
    pub files: Vec<String>,
}

/// The result of a check.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The platform the files were judged against.
    pub platform: Platform,
    /// Counts.
    pub summary: Summary,
    /// One entry per examined file, sorted by path.
    pub files: Vec<FileReport>,
}

impl Report {
    /// A report over `files` (sorted here).
    pub fn new(platform: Platform, mut files: Vec<FileReport>) -> Report {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut summary = Summary {
            files: files.len(),
            ..Default::default()
        };
        for f in &files {
            match f.verdict {
                Verdict::Ok => summary.ok += 1,
                Verdict::Warn => summary.warn += 1,
                Verdict::Fail => summary.fail += 1,
            }
        }
        Report {
            platform,
            summary,
            files,
        }
    }

    /// The problems grouped by cause, most files first.
    pub fn causes(&self) -> Vec<Cause> {
        let mut groups: BTreeMap<(ProblemKind, String), Vec<String>> = BTreeMap::new();
        for f in &self.files {
            for p in &f.problems {
                let files = groups.entry((p.kind, p.subject.clone())).or_default();
                if files.last() != Some(&f.path) {
                    files.push(f.path.clone());
                }
            }
        }
        let glibc = self
            .platform
            .libc
            .version
            .clone()
            .unwrap_or_else(|| "unknown".into());
        let mut causes: Vec<Cause> = groups
            .into_iter()
            .map(|((kind, subject), files)| Cause {
                summary: cause_sentence(kind, &subject, files.len(), &glibc, &self.platform),
                kind,
                subject,
                files,
            })
            .collect();
        causes.sort_by(|a, b| {
            b.kind
                .fails()
                .cmp(&a.kind.fails())
                .then(b.files.len().cmp(&a.files.len()))
                .then(a.subject.cmp(&b.subject))
        });
        causes
    }
}

fn cause_sentence(kind: ProblemKind, subject: &str, n: usize, glibc: &str, p: &Platform) -> String {
    let files = if n == 1 {
        "1 file".to_string()
    } else {
        format!("{n} files")
    };
    let needs = if n == 1 { "needs" } else { "need" };
    match kind {
        ProblemKind::MissingSymbolVersion if subject.starts_with("GLIBC_2.") => {
            format!("{files} {needs} {subject} or newer; the platform's glibc is {glibc}")
        }
        ProblemKind::MissingSymbolVersion | ProblemKind::WeakSymbolVersion => {
            format!("{files} {needs} symbol version {subject}, which the platform's library does not define")
        }
        ProblemKind::NoVersionInformation => {
            format!("{files} {needs} versions from {subject}, which has no version information")
        }
        ProblemKind::MissingLibrary => {
            format!("{files} {needs} {subject}, which cannot be found or loaded on the platform")
        }
        ProblemKind::WrongArchitecture => {
            format!(
                "{files} {} built for {subject}; the platform is {}",
                if n == 1 { "is" } else { "are" },
                p.arch
            )
        }
        ProblemKind::MissingInterpreter => {
            format!("{files} {needs} the interpreter {subject}, which the platform does not have")
        }
        ProblemKind::KernelTooOld => {
            format!(
                "{files} {needs} Linux {subject} or newer; the platform's kernel is {}",
                p.kernel.release
            )
        }
        ProblemKind::IsaLevel => {
            format!("{files} {needs} {subject}; the CPU is {}", p.cpu.level)
        }
        ProblemKind::Unreadable => format!("{files} could not be read ({subject})"),
        ProblemKind::MalformedElf => format!("{files}: {subject}"),
        ProblemKind::KernelLacksSyscall => format!(
            "{files} can call {subject}; the platform's kernel is {}",
            p.kernel.release
        ),
        ProblemKind::KernelConfigLacksSyscall => {
            format!("{files} can call {subject}, which the kernel is built without")
        }
        ProblemKind::NotContainerised if subject.starts_with('/') => {
            format!("{files} read {subject}, which shows the host, not the container")
        }
        ProblemKind::NotContainerised => {
            format!("{files} can call {subject}, which namespaces do not isolate")
        }
        ProblemKind::UnresolvedSyscallSite => {
            format!("{files} have system call sites whose number could not be resolved")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(kind: ProblemKind, subject: &str) -> Problem {
        Problem {
            kind,
            detail: format!("{kind} {subject}"),
            subject: subject.into(),
        }
    }

    #[test]
    fn verdicts_follow_problems() {
        assert_eq!(FileReport::new("a".into(), vec![]).verdict, Verdict::Ok);
        let warn = FileReport::new(
            "a".into(),
            vec![problem(ProblemKind::WeakSymbolVersion, "X")],
        );
        assert_eq!(warn.verdict, Verdict::Warn);
        let fail = FileReport::new(
            "a".into(),
            vec![
                problem(ProblemKind::WeakSymbolVersion, "X"),
                problem(ProblemKind::MissingLibrary, "libx.so.1"),
            ],
        );
        assert_eq!(fail.verdict, Verdict::Fail);
    }

    #[test]
    fn json_shape() {
        let f = FileReport::new(
            "usr/bin/ls".into(),
            vec![problem(ProblemKind::MissingSymbolVersion, "GLIBC_2.38")],
        );
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["verdict"], "fail");
        assert_eq!(v["problems"][0]["kind"], "missing-symbol-version");
        assert!(v["problems"][0].get("subject").is_none());
    }
}
