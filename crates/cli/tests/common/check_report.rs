//! `plinth check --format json` as the tests read it, and its comparison with the loader
//! oracle.
//!
//! This module owns the JSON contract between `plinth check` and its tests (issue 3,
//! item 2): `{"platform": {...}, "summary": {"files", "ok", "warn", "fail"}, "files":
//! [{"path", "verdict", "problems": [{"kind", "detail"}]}]}`, paths relative to the
//! checked root without a leading slash, each regular file once, symlinks not listed,
//! every examined ELF executable or shared object listed with its verdict. [`CheckReport::
//! parse`] checks that shape; [`ExactnessDiff`] is the set comparison that DESIGN.md's
//! exactness bar asks for. What plinth decides for a particular file is the tests' affair.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};

use serde_json::Value;

use super::elf_probe::{ElfInfo, FileKey};
use super::oracle::{OracleReport, Outcome};
use super::CmdOutput;

/// The problem kinds that say "the dynamic loader would refuse this file".
pub const LOAD_KINDS: [&str; 2] = ["missing-library", "missing-symbol-version"];

/// One problem plinth reports on a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// `missing-library`, `missing-symbol-version`, `wrong-architecture`, ...
    pub kind: String,
    /// The human explanation.
    pub detail: String,
}

/// One file of the report.
#[derive(Clone, Debug)]
pub struct FileVerdict {
    /// Relative to the checked root, no leading slash.
    pub path: String,
    /// `ok`, `warn` or `fail`.
    pub verdict: String,
    /// Its problems.
    pub problems: Vec<Problem>,
}

impl FileVerdict {
    /// Whether any problem has `kind`.
    pub fn has(&self, kind: &str) -> bool {
        self.problems.iter().any(|p| p.kind == kind)
    }

    /// Whether plinth says the loader would refuse this file.
    pub fn refused_by_loader(&self) -> bool {
        LOAD_KINDS.iter().any(|k| self.has(k))
    }

    /// `verdict: kind: detail; kind: detail`, for reports.
    pub fn describe(&self) -> String {
        let p: Vec<String> = self
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.kind, p.detail))
            .collect();
        if p.is_empty() {
            format!("{} (no problems)", self.verdict)
        } else {
            format!("{}: {}", self.verdict, p.join("; "))
        }
    }
}

/// A parsed and shape-checked `plinth check --format json` report.
#[derive(Debug)]
pub struct CheckReport {
    /// The whole document.
    pub raw: Value,
    /// Its `files`, in the report's order.
    pub files: Vec<FileVerdict>,
}

impl CheckReport {
    /// Parse the output of `plinth check ... --format json` and check the contract's
    /// shape; panics with the command's output when it does not hold. Any exit code is
    /// accepted (the contract does not fix one for "some files fail"), a crash is not.
    pub fn parse(out: &CmdOutput) -> CheckReport {
        if out.code().is_none() {
            panic!("plinth check crashed\n{out}");
        }
        let raw: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("plinth check: stdout is not one JSON value: {e}\n{out}"));
        let fail = |what: &str| -> ! { panic!("plinth check JSON: {what}\n{out}") };
        if !raw["platform"].is_object() {
            fail("no \"platform\" object");
        }
        let count = |k: &str| -> u64 {
            raw["summary"][k]
                .as_u64()
                .unwrap_or_else(|| fail(&format!("summary.{k} is not a count")))
        };
        let (n, ok, warn, bad) = (count("files"), count("ok"), count("warn"), count("fail"));
        let Some(list) = raw["files"].as_array() else {
            fail("no \"files\" array")
        };
        let mut files = Vec::with_capacity(list.len());
        let mut seen = BTreeSet::new();
        let mut tally: BTreeMap<String, u64> = BTreeMap::new();
        for f in list {
            let path = f["path"]
                .as_str()
                .unwrap_or_else(|| fail(&format!("a file without a path: {f}")))
                .to_string();
            if path.is_empty()
                || path.starts_with('/')
                || Path::new(&path)
                    .components()
                    .any(|c| !matches!(c, Component::Normal(_)))
            {
                fail(&format!(
                    "path {path:?} is not relative to the root without a leading slash"
                ));
            }
            if !seen.insert(path.clone()) {
                fail(&format!("path {path:?} is listed twice"));
            }
            let verdict = f["verdict"].as_str().unwrap_or("").to_string();
            if !matches!(verdict.as_str(), "ok" | "warn" | "fail") {
                fail(&format!("{path}: verdict {:?}", f["verdict"]));
            }
            *tally.entry(verdict.clone()).or_insert(0) += 1;
            let Some(probs) = f["problems"].as_array() else {
                fail(&format!("{path}: no problems array"))
            };
            let problems: Vec<Problem> = probs
                .iter()
                .map(|p| match (p["kind"].as_str(), p["detail"].as_str()) {
                    (Some(kind), Some(detail)) if !kind.is_empty() => Problem {
                        kind: kind.to_string(),
                        detail: detail.to_string(),
                    },
                    _ => fail(&format!("{path}: problem {p} lacks kind or detail")),
                })
                .collect();
            let fv = FileVerdict {
                path,
                verdict,
                problems,
            };
            if fv.refused_by_loader() && fv.verdict != "fail" {
                fail(&format!(
                    "{}: the loader would refuse it but the verdict is {}",
                    fv.path, fv.verdict
                ));
            }
            files.push(fv);
        }
        let t = |v: &str| tally.get(v).copied().unwrap_or(0);
        if n != files.len() as u64 || ok != t("ok") || warn != t("warn") || bad != t("fail") {
            fail(&format!(
                "summary {} does not count the files list ({} files: {} ok, {} warn, {} fail)",
                raw["summary"],
                files.len(),
                t("ok"),
                t("warn"),
                t("fail")
            ));
        }
        CheckReport { raw, files }
    }

    /// The entry for `path`.
    pub fn file(&self, path: &str) -> Option<&FileVerdict> {
        self.files.iter().find(|f| f.path == path)
    }

    /// The entry for `path`, failing the test when it is not listed.
    pub fn expect_file(&self, path: &str) -> &FileVerdict {
        self.file(path).unwrap_or_else(|| {
            let listed: Vec<&str> = self.files.iter().map(|f| f.path.as_str()).collect();
            panic!("plinth check does not list {path}; it lists {listed:?}")
        })
    }

    /// Paths plinth says the loader would refuse.
    pub fn refused_paths(&self) -> BTreeSet<String> {
        self.files
            .iter()
            .filter(|f| f.refused_by_loader())
            .map(|f| f.path.clone())
            .collect()
    }

    /// Check that every listed path is a regular file under `root` (not a symlink).
    pub fn assert_paths_are_regular_files(&self, root: &Path) {
        let bad: Vec<String> = self
            .files
            .iter()
            .filter_map(|f| match fs::symlink_metadata(root.join(&f.path)) {
                Ok(m) if m.file_type().is_file() => None,
                Ok(m) => Some(format!("{}: {:?}", f.path, m.file_type())),
                Err(e) => Some(format!("{}: {e}", f.path)),
            })
            .collect();
        assert!(
            bad.is_empty(),
            "plinth check lists paths that are not regular files under {}:\n  {}",
            root.display(),
            bad.join("\n  ")
        );
    }
}

/// Where plinth and the loader oracle disagree about one root.
#[derive(Debug, Default)]
pub struct ExactnessDiff {
    /// The loader refuses, plinth has no missing-library/missing-symbol-version: (path,
    /// the loader's reasons, plinth's entry).
    pub misses: Vec<(String, String, String)>,
    /// Plinth says missing, the loader accepts (or the file is not dynamically linked):
    /// (path, the loader's answer, plinth's entry).
    pub false_alarms: Vec<(String, String, String)>,
    /// ELF executables and shared objects that plinth does not list under any of their
    /// hard-linked paths.
    pub unlisted: Vec<String>,
    /// Files the oracle could not answer for, with plinth's entry: notes, not failures.
    pub not_comparable: Vec<(String, String, String)>,
    /// Files that agree: refused by both, accepted by both.
    pub agree_refused: usize,
    /// See [`ExactnessDiff::agree_refused`].
    pub agree_accepted: usize,
}

impl ExactnessDiff {
    /// Compare `report` (plinth) with `oracle` (the loader), file by file.
    pub fn compute(report: &CheckReport, oracle: &OracleReport) -> ExactnessDiff {
        let mut d = ExactnessDiff::default();
        let listed: BTreeMap<&str, &FileVerdict> =
            report.files.iter().map(|f| (f.path.as_str(), f)).collect();
        let traced: BTreeMap<&str, &Outcome> = oracle
            .traced
            .iter()
            .map(|t| (t.file.rel.as_str(), &t.outcome))
            .collect();
        // Hard links: a path that is not listed is fine when another path of the same
        // file is.
        let listed_keys: BTreeSet<FileKey> = report
            .files
            .iter()
            .filter_map(|f| fs::symlink_metadata(oracle.root.join(&f.path)).ok())
            .map(|m| (m.dev(), m.ino()))
            .collect();
        for elf in &oracle.walk.elf {
            let loadable = elf.probe.as_ref().map(ElfInfo::is_loadable).unwrap_or(true);
            if loadable && !listed.contains_key(elf.rel.as_str()) && !listed_keys.contains(&elf.key)
            {
                d.unlisted.push(elf.rel.clone());
            }
        }
        for (path, outcome) in &traced {
            let Some(f) = listed.get(path) else { continue };
            match outcome {
                Outcome::Skipped(_) => {
                    d.not_comparable
                        .push((path.to_string(), outcome.to_string(), f.describe()));
                }
                Outcome::Refused(_) if f.refused_by_loader() => d.agree_refused += 1,
                Outcome::Refused(_) => {
                    d.misses
                        .push((path.to_string(), outcome.to_string(), f.describe()));
                }
                Outcome::Accepted { .. } if f.refused_by_loader() => {
                    d.false_alarms
                        .push((path.to_string(), outcome.to_string(), f.describe()));
                }
                Outcome::Accepted { .. } => d.agree_accepted += 1,
            }
        }
        for f in &report.files {
            if f.refused_by_loader() && !traced.contains_key(f.path.as_str()) {
                d.false_alarms.push((
                    f.path.clone(),
                    "not dynamically linked (no PT_INTERP, no DT_NEEDED): nothing to load"
                        .to_string(),
                    f.describe(),
                ));
            }
        }
        d
    }

    /// Whether plinth and the loader agree on every comparable file.
    pub fn is_exact(&self) -> bool {
        self.misses.is_empty() && self.false_alarms.is_empty() && self.unlisted.is_empty()
    }

    /// The disagreements, file by file.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "agree: {} refused by both, {} accepted by both; {} misses, {} false alarms, \
             {} ELF files not listed, {} not comparable",
            self.agree_refused,
            self.agree_accepted,
            self.misses.len(),
            self.false_alarms.len(),
            self.unlisted.len(),
            self.not_comparable.len()
        );
        let mut section = |title: &str, rows: &[(String, String, String)]| {
            if rows.is_empty() {
                return;
            }
            let _ = writeln!(s, "{title}:");
            for (path, loader, plinth) in rows {
                let _ = writeln!(s, "  {path}\n    loader: {loader}\n    plinth: {plinth}");
            }
        };
        section(
            "MISSES (the loader refuses, plinth reports no missing-library or missing-symbol-version)",
            &self.misses,
        );
        section(
            "FALSE ALARMS (plinth reports a missing library or version, the loader accepts)",
            &self.false_alarms,
        );
        section(
            "not comparable (the oracle could not answer; not a failure)",
            &self.not_comparable,
        );
        if !self.unlisted.is_empty() {
            let _ = writeln!(
                s,
                "NOT LISTED (ELF executables or shared objects missing from the report):"
            );
            for p in &self.unlisted {
                let _ = writeln!(s, "  {p}");
            }
        }
        s
    }
}
