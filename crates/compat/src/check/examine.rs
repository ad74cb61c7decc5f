//! Judging one file: reading it (once), then its architecture,
//! interpreter, kernel and ISA requirements and its dependency closure.

use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::sync::Arc;

use super::report::{FileReport, Problem, ProblemKind};
use crate::elf::{machine_name, ElfClass, EM_X86_64};
use crate::platform::Platform;
use crate::resolve::{read_object, resolve_closure, LoadProblem, Object, RootSel, World};
use crate::syscalls::program::{Member, ProgramCalls};

/// What a check shares with every file.
pub(super) struct Context<'a> {
    pub world: &'a World,
    pub platform: &'a Platform,
    /// Files were named with `--binary`: report whatever they are.
    pub explicit: bool,
}

/// A file after reading.
pub(super) enum Read {
    Elf { rel: String, obj: Arc<Object> },
    Script { rel: String, interp: String },
    Unreadable { rel: String, reason: String },
    Skipped,
}

impl Read {
    /// Whether judging it resolves a dependency closure.
    pub fn needs_resolution(&self) -> bool {
        matches!(self, Read::Elf { obj, .. } if obj.info.as_ref().is_ok_and(|i| i.is_dynamic()))
    }
}

/// Reads `rel`: ELF files are parsed (once per inode), scripts' `#!` lines
/// read, everything else skipped. Never blocks: the open is non-blocking
/// and only regular files are read.
pub(super) fn read_file(ctx: &Context<'_>, rel: &str) -> Read {
    let unreadable = |reason: String| Read::Unreadable {
        rel: rel.to_string(),
        reason,
    };
    let tree = ctx.world.root(RootSel::Tree);
    // Named files are checked with fstat first.
    let file = match tree.open_file(rel) {
        Ok(o) if o.meta.is_file() => o.file,
        Ok(_) => return unreadable("not a regular file".into()),
        Err(e) => return unreadable(e.to_string()),
    };
    read_opened(ctx, rel, file)
}

/// Reads a file the walk found to be regular (by its directory entry) and
/// opened without following a symlink: `fstat` only what turns out to be
/// ELF or a script.
pub(super) fn read_walked(
    ctx: &Context<'_>,
    rel: String,
    file: std::io::Result<std::fs::File>,
) -> Read {
    match file {
        Ok(f) => read_opened(ctx, &rel, f),
        Err(e) => Read::Unreadable {
            rel,
            reason: e.to_string(),
        },
    }
}

fn read_opened(ctx: &Context<'_>, rel: &str, file: std::fs::File) -> Read {
    let unreadable = |reason: String| Read::Unreadable {
        rel: rel.to_string(),
        reason,
    };
    let tree = ctx.world.root(RootSel::Tree);
    let mut head = [0u8; 256];
    let n = match file.read_at(&mut head, 0) {
        Ok(n) => n,
        // A directory or other non-regular file swapped in since the walk.
        Err(e) if e.raw_os_error() == Some(libc::EISDIR) => return Read::Skipped,
        Err(e) => return unreadable(e.to_string()),
    };
    let head = &head[..n];
    let is_elf = head.starts_with(b"\x7fELF");
    if !is_elf && !head.starts_with(b"#!") {
        return Read::Skipped;
    }
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => return unreadable(e.to_string()),
    };
    if !meta.is_file() || (!ctx.explicit && meta.dev() != tree.dev()) {
        return Read::Skipped;
    }
    if is_elf {
        let id = (meta.dev(), meta.ino());
        let obj = ctx.world.object(id, || {
            read_object(&file, meta.len(), ctx.world.analyses_code())
        });
        return Read::Elf {
            rel: rel.to_string(),
            obj,
        };
    }
    if ctx.explicit || meta.permissions().mode() & 0o111 != 0 {
        if let Some(interp) = shebang(head) {
            return Read::Script {
                rel: rel.to_string(),
                interp,
            };
        }
    }
    Read::Skipped
}

/// The interpreter of a `#!` line (the kernel reads at most 256 bytes).
pub(super) fn shebang(head: &[u8]) -> Option<String> {
    let line = head.strip_prefix(b"#!")?;
    let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    let line = &line[..end];
    let start = line.iter().position(|&b| b != b' ' && b != b'\t')?;
    let rest = &line[start..];
    let stop = rest
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(rest.len());
    let interp = String::from_utf8_lossy(&rest[..stop]).into_owned();
    (!interp.is_empty()).then_some(interp)
}

fn problem(kind: ProblemKind, subject: impl Into<String>, detail: String) -> Problem {
    Problem {
        kind,
        detail,
        subject: subject.into(),
    }
}

/// Whether an interpreter exists where the file would run: in the platform
/// root, or (with `--onto`) among the file's own tree.
fn interpreter_exists(ctx: &Context<'_>, path: &str) -> bool {
    ctx.world.root(RootSel::Libs).is_file(path) || ctx.world.root(RootSel::Tree).is_file(path)
}

/// The verdict for one read file; `None` for files that are not examined.
pub(super) fn judge(ctx: &Context<'_>, read: Read) -> Option<FileReport> {
    match read {
        Read::Skipped => None,
        Read::Unreadable { rel, reason } => Some(FileReport::new(
            rel.clone(),
            vec![problem(
                ProblemKind::Unreadable,
                reason.clone(),
                format!("{rel} cannot be read: {reason}"),
            )],
        )),
        Read::Script { rel, interp } => {
            let mut problems = Vec::new();
            if !interpreter_exists(ctx, &interp) {
                problems.push(problem(
                    ProblemKind::MissingInterpreter,
                    interp.clone(),
                    format!("the interpreter {interp} (#!) does not exist"),
                ));
            }
            Some(FileReport::new(rel, problems))
        }
        Read::Elf { rel, obj } => judge_elf(ctx, rel, obj),
    }
}

fn judge_elf(ctx: &Context<'_>, rel: String, obj: Arc<Object>) -> Option<FileReport> {
    let info = match &obj.info {
        Ok(info) => info,
        Err(e) => {
            return Some(FileReport::new(
                rel,
                vec![problem(
                    ProblemKind::MalformedElf,
                    e.to_string(),
                    format!("not a valid ELF file: {e}"),
                )],
            ))
        }
    };
    if (info.e_type != 2 && info.e_type != 3) || info.empty_dynamic {
        // Object files, kernel modules, core files, separate debug
        // information: never run or loaded.
        return None;
    }
    let mut problems = Vec::new();
    let (want_class, want_machine) = (ElfClass::Elf64, EM_X86_64);
    if info.class != Some(want_class) || info.machine != want_machine {
        let built = format!(
            "{} {}",
            machine_name(info.machine),
            info.class.map(|c| c.to_string()).unwrap_or_default()
        );
        problems.push(problem(
            ProblemKind::WrongArchitecture,
            built.clone(),
            format!("built for {built}; the platform is {}", ctx.platform.arch),
        ));
        return Some(FileReport::new(rel, problems));
    }
    let refusal = info.header_error.map(String::from).or_else(|| {
        // What the loader refuses when it maps the program itself.
        if !info.is_dynamic() {
            None
        } else if info.load_misaligned {
            Some("ELF load command address/offset not page-aligned".into())
        } else if !info.has_load {
            Some("object file has no loadable segments".into())
        } else if info.e_type == 3 && info.dynamic.is_none() {
            Some("object file has no dynamic section".into())
        } else {
            None
        }
    });
    if let Some(e) = refusal {
        problems.push(problem(
            ProblemKind::MalformedElf,
            e.clone(),
            format!("the dynamic loader refuses it: {e}"),
        ));
        return Some(FileReport::new(rel, problems));
    }
    if let Some(interp) = &info.interp {
        if !interpreter_exists(ctx, interp) {
            problems.push(problem(
                ProblemKind::MissingInterpreter,
                interp.clone(),
                format!("the program interpreter {interp} does not exist"),
            ));
        }
    }
    if let Some(tag) = info.abi_tag {
        let (maj, min, patch) = tag.kernel;
        if tag.os == 0 && (maj, min, patch) > ctx.platform.kernel_version() {
            let need = format!("{maj}.{min}.{patch}");
            problems.push(problem(
                ProblemKind::KernelTooOld,
                need.clone(),
                format!(
                    "needs Linux {need} or newer (NT_GNU_ABI_TAG); the kernel is {}",
                    ctx.platform.kernel.release
                ),
            ));
        }
    }
    let cpu_level = ctx.platform.cpu_features().level;
    let isa = |who: &str, o: &Object, problems: &mut Vec<Problem>| {
        let Some(level) = o.info.as_ref().ok().and_then(|i| i.x86_isa_level()) else {
            return;
        };
        if cpu_level > 0 && level > cpu_level {
            let need = format!("x86-64-v{level}");
            problems.push(problem(
                ProblemKind::IsaLevel,
                need.clone(),
                format!("{who} needs {need} (GNU_PROPERTY_X86_ISA_1_NEEDED); the CPU is x86-64-v{cpu_level}"),
            ));
        }
    };
    isa(&rel, &obj, &mut problems);
    let closure = info
        .is_dynamic()
        .then(|| resolve_closure(ctx.world, &format!("/{rel}"), obj.clone()));
    let calls = ctx
        .world
        .analyses_code()
        .then(|| program_calls(&rel, &obj, closure.as_ref()))
        .flatten();
    if let Some(closure) = closure {
        for (path, lib) in &closure.loaded {
            isa(path, lib, &mut problems);
        }
        for p in closure.problems {
            problems.push(load_problem(&rel, p));
        }
    }
    let Some((calls, host_files)) = calls else {
        return Some(FileReport::new(rel, problems));
    };
    problems.extend(crate::syscalls::judge::judge(
        &calls,
        &host_files,
        &ctx.platform.kernel,
    ));
    let mut report = FileReport::new(rel, problems);
    report.syscalls = Some(calls.set.names());
    report.unresolved_syscall_sites = Some(calls.unresolved.len());
    Some(report)
}

/// The system calls running `rel` can make, and the host-wide files it
/// names; `None` when its code is not analysed (another architecture).
fn program_calls(
    rel: &str,
    obj: &Object,
    closure: Option<&crate::resolve::Closure>,
) -> Option<(ProgramCalls, Vec<usize>)> {
    let code = obj.code.as_ref()?;
    let mut members = vec![Member {
        path: rel,
        code: &code.summary,
    }];
    let mut interp = None;
    if let Some(c) = closure {
        for (path, lib) in &c.loaded {
            if let Some(l) = &lib.code {
                members.push(Member {
                    path,
                    code: &l.summary,
                });
            }
        }
        if let Some((path, o)) = &c.interp {
            if let Some(l) = &o.code {
                interp = Some(members.len());
                members.push(Member {
                    path,
                    code: &l.summary,
                });
            }
        }
    }
    Some((
        crate::syscalls::program::program_calls(&members, interp),
        code.host_files.clone(),
    ))
}

/// A loader problem as a report problem, attributed to the checked file.
fn load_problem(rel: &str, p: LoadProblem) -> Problem {
    let by = |needed_by: &str| {
        if needed_by == rel {
            String::new()
        } else {
            format!(" by {needed_by}")
        }
    };
    match &p {
        LoadProblem::MissingLibrary { name, needed_by } => problem(
            ProblemKind::MissingLibrary,
            name.clone(),
            format!("{name}, needed{}, is not found", by(needed_by)),
        ),
        LoadProblem::BadLibrary { name, .. } => {
            problem(ProblemKind::MissingLibrary, name.clone(), p.to_string())
        }
        LoadProblem::MissingVersion {
            version,
            file,
            needed_by,
            defined_by,
            weak,
        } => problem(
            if *weak {
                ProblemKind::WeakSymbolVersion
            } else {
                ProblemKind::MissingSymbolVersion
            },
            version.clone(),
            format!(
                "{version}, needed from {file}{}, is not defined by {defined_by}",
                by(needed_by)
            ),
        ),
        LoadProblem::BadVersionRecord { reason, .. } => problem(
            ProblemKind::MissingSymbolVersion,
            reason.clone(),
            p.to_string(),
        ),
        LoadProblem::NoVersionInfo { file, .. } => problem(
            ProblemKind::NoVersionInformation,
            file.clone(),
            p.to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebangs() {
        assert_eq!(shebang(b"#!/bin/sh\necho").as_deref(), Some("/bin/sh"));
        assert_eq!(
            shebang(b"#! /usr/bin/env python3 -u\n").as_deref(),
            Some("/usr/bin/env")
        );
        assert_eq!(shebang(b"#!\t/bin/bash"), Some("/bin/bash".into()));
        assert_eq!(shebang(b"#!   \n"), None);
        assert_eq!(shebang(b"no"), None);
    }
}
