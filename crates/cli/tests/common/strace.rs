//! What a program really asks of the kernel: the system calls that `strace -f -qq -n`
//! records while it runs, the ground truth that `plinth check --syscalls` must cover
//! (its recall) and that a `plinth seccomp` profile must allow.
//!
//! This module owns running the tracer ([`traced_command`]) and reading its output
//! ([`Trace::parse`]); which programs run, and what is compared with what, is the tests'
//! business. The output of `strace -f -qq -n -o FILE` has one line per event, each
//! starting with the pid that made it:
//!
//! ```text
//! 2524  [ 435] clone3({flags=CLONE_VM|...} => {parent_tid=[2525]}, 88) = 2525
//! 2525  [ 334] rseq(0x7f0436752fe0, 0x20, 0, 0x53053053 <unfinished ...>
//! 2524  [  14] rt_sigprocmask(SIG_SETMASK, [],  <unfinished ...>
//! 2525  [ 334] <... rseq resumed>)        = 0
//! 2524 --- SIGCHLD {si_signo=SIGCHLD, ...} ---
//! 2525  [ 202] --- SIGURG {si_signo=SIGURG, ...} ---
//! 2524 +++ exited with 0 +++
//! ```
//!
//! A call is counted by its number (`[ 435]`), named through the syscall table, because
//! the tracer may be older than the kernel and print `syscall_0x1c4` for a call it does
//! not know. Only calls made by the program under test count: those of the process from
//! its own successful `execve` of the target on (not the `execve` itself, nor what the
//! tracer or `chroot` did before), and every call of the processes and threads it
//! creates with `clone`, `clone3`, `fork` or `vfork`. A counted process that executes
//! another program is an error: the workload left the program under test.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Calls the kernel makes on a program's behalf rather than the program itself:
/// `restart_syscall` is what a process resumes with after a signal interrupted a
/// `nanosleep`, `poll` or `futex` wait with a timeout. No instruction of the program
/// names it, so no static analysis predicts it, yet a seccomp filter sees it; a profile
/// must allow it whatever the program.
pub const KERNEL_MADE: &[&str] = &["restart_syscall"];

/// x86-64 system call numbers to the kernel's names, from the table plinth embeds
/// (`crates/compat/data/syscalls.csv`).
pub struct SyscallTable {
    by_nr: HashMap<u32, String>,
    by_name: HashMap<String, u32>,
}

impl SyscallTable {
    /// Where the table lives in this checkout.
    pub fn path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../compat/data/syscalls.csv")
    }

    /// Read the table; panics when it is missing or malformed.
    pub fn load() -> SyscallTable {
        let path = SyscallTable::path();
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read the syscall table {}: {e}", path.display()));
        SyscallTable::parse(&text)
    }

    /// Parse the CSV text: a header naming the columns `name` and `x86_64_nr`, then one
    /// row per call; rows without an x86-64 number are skipped.
    pub fn parse(text: &str) -> SyscallTable {
        let mut lines = text.lines();
        let header: Vec<&str> = lines
            .next()
            .expect("syscall table header")
            .split(',')
            .collect();
        let col = |want: &str| {
            header
                .iter()
                .position(|c| c.trim() == want)
                .unwrap_or_else(|| panic!("syscall table: no column {want} in {header:?}"))
        };
        let (name_col, nr_col) = (col("name"), col("x86_64_nr"));
        let mut by_nr = HashMap::new();
        let mut by_name = HashMap::new();
        for line in lines.filter(|l| !l.trim().is_empty()) {
            let fields: Vec<&str> = line.split(',').collect();
            let nr = fields.get(nr_col).map(|f| f.trim()).unwrap_or("");
            if nr.is_empty() {
                continue;
            }
            let nr: u32 = nr
                .parse()
                .unwrap_or_else(|_| panic!("syscall table: bad number in {line:?}"));
            by_nr.insert(nr, fields[name_col].trim().to_string());
            by_name.insert(fields[name_col].trim().to_string(), nr);
        }
        SyscallTable { by_nr, by_name }
    }

    /// The kernel's name of x86-64 call `nr`.
    pub fn name(&self, nr: u32) -> Option<&str> {
        self.by_nr.get(&nr).map(String::as_str)
    }

    /// The x86-64 number of the call the table names `name`.
    pub fn number(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }
}

/// `strace -f -qq -n -o out` followed by the program and its arguments: every process
/// and thread followed, no attach/exit chatter, each call with its number.
pub fn traced_command(out: &Path) -> Command {
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-n", "-o"]).arg(out);
    cmd
}

/// One system call as the tracer saw it.
#[derive(Clone, Debug)]
struct Call {
    nr: u32,
    /// The tracer's name for it, for messages.
    strace_name: String,
    /// The return value, when the call returned one (`exit_group` does not).
    ret: Option<i64>,
    /// For `execve`/`execveat`: the path it was given.
    exec_path: Option<String>,
}

impl Call {
    fn is_exec(&self) -> bool {
        matches!(self.strace_name.as_str(), "execve" | "execveat")
    }

    fn creates_task(&self) -> bool {
        matches!(
            self.strace_name.as_str(),
            "clone" | "clone3" | "fork" | "vfork"
        )
    }
}

/// Why a trace cannot be read as the workload of one program.
#[derive(Debug)]
pub enum TraceError {
    /// A line that none of the rules knows.
    Unparsed {
        /// Its line number (1-based).
        line: usize,
        /// The line.
        text: String,
    },
    /// No process executed the target successfully.
    TargetNeverRan {
        /// The path the test executed.
        target: String,
        /// Every successful exec in the trace.
        execs: Vec<String>,
    },
    /// A process of the program under test executed another program.
    LeftTheProgram {
        /// The pid.
        pid: u32,
        /// What it executed.
        path: String,
    },
    /// A call number the syscall table does not know.
    UnknownNumber {
        /// The number.
        nr: u32,
        /// What the tracer called it.
        strace_name: String,
    },
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::Unparsed { line, text } => write!(f, "line {line}: cannot read {text:?}"),
            TraceError::TargetNeverRan { target, execs } => write!(
                f,
                "no process executed {target} successfully (successful execs: {execs:?})"
            ),
            TraceError::LeftTheProgram { pid, path } => write!(
                f,
                "process {pid} of the program under test executed {path}: the workload must \
                 stay in one program"
            ),
            TraceError::UnknownNumber { nr, strace_name } => write!(
                f,
                "system call number {nr} ({strace_name}) is not in {}",
                SyscallTable::path().display()
            ),
        }
    }
}

/// The system calls one program made, read from a trace.
#[derive(Debug, Default)]
pub struct Trace {
    /// How many times each call was made, by kernel name; the calls of [`KERNEL_MADE`]
    /// are not here.
    pub calls: BTreeMap<String, usize>,
    /// The calls of [`KERNEL_MADE`] that the kernel made for the program.
    pub kernel_made: BTreeMap<String, usize>,
    /// How many times each call was made, by number; the calls of [`KERNEL_MADE`]
    /// are not here.
    pub numbers: BTreeMap<u32, usize>,
    /// Processes and threads counted, the first one included.
    pub tasks: usize,
}

impl Trace {
    /// Read the trace in `text` of a run that executes `target` (the path given to
    /// `execve`, as the program sees it), naming calls through `table`.
    pub fn parse(text: &str, target: &str, table: &SyscallTable) -> Result<Trace, TraceError> {
        let per_pid = parse_lines(text)?;
        // Where each counted pid starts counting: the root process after its exec of the
        // target, the tasks it creates from their first call.
        let mut start: HashMap<u32, usize> = HashMap::new();
        let mut execs = Vec::new();
        for (&pid, calls) in &per_pid {
            for (i, c) in calls.iter().enumerate() {
                if c.is_exec() && c.ret == Some(0) {
                    let path = c.exec_path.clone().unwrap_or_default();
                    if path == target && !start.contains_key(&pid) {
                        start.insert(pid, i + 1);
                    }
                    execs.push(path);
                }
            }
        }
        if start.is_empty() {
            return Err(TraceError::TargetNeverRan {
                target: target.to_string(),
                execs,
            });
        }
        // Children of counted tasks, transitively.
        let mut todo: Vec<u32> = start.keys().copied().collect();
        while let Some(pid) = todo.pop() {
            let from = start[&pid];
            for c in per_pid.get(&pid).map(Vec::as_slice).unwrap_or(&[])[from..].iter() {
                if c.creates_task() {
                    if let Some(child) = c.ret.filter(|&r| r > 0) {
                        let child = child as u32;
                        if let std::collections::hash_map::Entry::Vacant(e) = start.entry(child) {
                            e.insert(0);
                            todo.push(child);
                        }
                    }
                }
            }
        }
        let mut trace = Trace {
            tasks: start.len(),
            ..Trace::default()
        };
        for (&pid, &from) in &start {
            for c in per_pid.get(&pid).map(Vec::as_slice).unwrap_or(&[])[from..].iter() {
                if c.is_exec() && c.ret == Some(0) {
                    return Err(TraceError::LeftTheProgram {
                        pid,
                        path: c.exec_path.clone().unwrap_or_default(),
                    });
                }
                let name = table.name(c.nr).ok_or_else(|| TraceError::UnknownNumber {
                    nr: c.nr,
                    strace_name: c.strace_name.clone(),
                })?;
                if KERNEL_MADE.contains(&name) {
                    *trace.kernel_made.entry(name.to_string()).or_default() += 1;
                } else {
                    *trace.calls.entry(name.to_string()).or_default() += 1;
                    *trace.numbers.entry(c.nr).or_default() += 1;
                }
            }
        }
        Ok(trace)
    }

    /// The distinct calls the program made (without [`KERNEL_MADE`]).
    pub fn names(&self) -> BTreeSet<String> {
        self.calls.keys().cloned().collect()
    }

    /// How many calls of `name` were made.
    pub fn count(&self, name: &str) -> usize {
        self.calls.get(name).copied().unwrap_or(0)
    }

    /// How many tasks (processes or threads) the program created.
    pub fn created_tasks(&self) -> usize {
        self.tasks.saturating_sub(1)
    }
}

/// Split the trace into each pid's calls, in order, joining `<unfinished ...>` lines
/// with their `<... NAME resumed>` ends.
fn parse_lines(text: &str) -> Result<BTreeMap<u32, Vec<Call>>, TraceError> {
    let mut per_pid: BTreeMap<u32, Vec<Call>> = BTreeMap::new();
    // The index of each pid's call still waiting for its end.
    let mut pending: HashMap<u32, usize> = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let bad = || TraceError::Unparsed {
            line: n + 1,
            text: line.to_string(),
        };
        if line.trim().is_empty() {
            continue;
        }
        let (pid, rest) = line.split_once(' ').ok_or_else(bad)?;
        let pid: u32 = pid.parse().map_err(|_| bad())?;
        let rest = rest.trim_start();
        // Signals delivered, exits and kills: not calls.
        if rest.starts_with("---") || rest.starts_with("+++") {
            continue;
        }
        let rest = rest.strip_prefix('[').ok_or_else(bad)?;
        let (nr, rest) = rest.split_once(']').ok_or_else(bad)?;
        let nr: u32 = nr.trim().parse().map_err(|_| bad())?;
        let rest = rest.trim_start();
        // A signal, or the end of a task, is shown with the number of the call it
        // interrupted.
        if rest.starts_with("---") || rest.starts_with("+++") {
            continue;
        }
        let calls = per_pid.entry(pid).or_default();
        if let Some(resumed) = rest.strip_prefix("<... ") {
            let (name, tail) = resumed.split_once(" resumed>").ok_or_else(bad)?;
            let i = pending.remove(&pid).ok_or_else(bad)?;
            let call = &mut calls[i];
            if call.strace_name != name {
                return Err(bad());
            }
            call.ret = return_value(tail);
            continue;
        }
        let (name, args) = rest.split_once('(').ok_or_else(bad)?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(bad());
        }
        let unfinished = rest.trim_end().ends_with("<unfinished ...>");
        let exec_path = matches!(name, "execve" | "execveat")
            .then(|| exec_path(name, args))
            .flatten();
        calls.push(Call {
            nr,
            strace_name: name.to_string(),
            ret: if unfinished { None } else { return_value(args) },
            exec_path,
        });
        if unfinished {
            pending.insert(pid, calls.len() - 1);
        }
    }
    Ok(per_pid)
}

/// The value after the last ` = ` of a finished call: decimal or hex; None for `?`.
fn return_value(tail: &str) -> Option<i64> {
    let (_, ret) = tail.rsplit_once(" = ")?;
    let tok = ret.split_whitespace().next()?;
    if let Some(hex) = tok.strip_prefix("0x") {
        return u64::from_str_radix(hex, 16).ok().map(|v| v as i64);
    }
    tok.parse().ok()
}

/// The path argument of `execve("PATH", ...)` or `execveat(FD, "PATH", ...)`.
fn exec_path(name: &str, args: &str) -> Option<String> {
    let args = if name == "execveat" {
        args.split_once(", ")?.1
    } else {
        args
    };
    let quoted = args.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "name,x86_64_nr,x86_64_since,aarch64_nr,aarch64_since,kconfig\n\
        read,0,1.0,63,1.0,\nwrite,1,1.0,64,1.0,\nexecve,59,1.0,221,1.0,\n\
        clone3,435,5.3,435,5.3,\nrseq,334,4.18,293,4.18,\nfutex,202,2.6,98,2.6,\n\
        exit_group,231,2.6,94,2.6,\nrestart_syscall,219,2.6,128,2.6,\n\
        chroot,161,1.0,51,1.0,\nfchmodat2,452,6.6,452,6.6,\nvfork,58,2.2,,,\n";

    /// A chroot run: the tracer's exec of chroot, chroot's own calls, the exec of the
    /// target, a thread whose first line comes before its parent's clone3 returns, a
    /// call the tracer does not know by name, a kernel restart and the exit.
    const CHROOT_RUN: &str = r#"100   [  59] execve("/usr/sbin/chroot", ["chroot", "/r", "/usr/bin/x"], 0x7ffd /* 1 var */) = 0
100   [   0] read(3, "abc", 3)              = 3
100   [ 161] chroot("/r")                   = 0
100   [  59] execve("/usr/bin/x", ["/usr/bin/x"], 0x7ffd /* 1 var */) = 0
100   [ 435] clone3({flags=CLONE_VM|CLONE_THREAD, child_tid=0x7f} <unfinished ...>
101   [ 334] rseq(0x7f0436752fe0, 0x20, 0, 0x53053053 <unfinished ...>
100   [ 435] <... clone3 resumed> => {parent_tid=[101]}, 88) = 101
101   [ 334] <... rseq resumed>)        = 0
101   [ 452] syscall_0x1c4(0xffffff9c, 0x5581, 0x1a4, 0x100) = 0
101   [ 219] restart_syscall(<... resuming interrupted futex ...>) = 0
101   [ 202] futex(0x7ffe5bcff058, FUTEX_WAKE_PRIVATE, 1) = 1
101   [ 202] +++ killed by SIGTERM +++
100   --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED} ---
101   [ 202] --- SIGURG {si_signo=SIGURG, si_code=SI_TKILL, si_pid=100} ---
100   [   1] write(1, "x = 1\n", 6)      = 6
100   [ 231] exit_group(0)                  = ?
100   +++ exited with 0 +++
"#;

    #[test]
    fn counts_the_target_and_its_threads_only() {
        let table = SyscallTable::parse(TABLE);
        let trace = Trace::parse(CHROOT_RUN, "/usr/bin/x", &table).unwrap();
        let names: Vec<&str> = trace.calls.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "clone3",
                "exit_group",
                "fchmodat2",
                "futex",
                "rseq",
                "write"
            ]
        );
        assert_eq!(trace.kernel_made.get("restart_syscall"), Some(&1));
        assert_eq!(trace.tasks, 2);
        let numbers: Vec<u32> = trace.numbers.keys().copied().collect();
        assert_eq!(numbers, [1, 202, 231, 334, 435, 452]);
        assert_eq!(table.number("fchmodat2"), Some(452));
        assert_eq!(table.number("syscall_0x1c4"), None);
        assert_eq!(trace.count("read"), 0, "chroot's read is not the target's");
        assert_eq!(trace.count("chroot"), 0);
    }

    #[test]
    fn a_trace_without_the_target_is_an_error() {
        let table = SyscallTable::parse(TABLE);
        let err = Trace::parse(CHROOT_RUN, "/usr/bin/y", &table).unwrap_err();
        assert!(
            matches!(&err, TraceError::TargetNeverRan { execs, .. } if execs.len() == 2),
            "{err}"
        );
    }

    #[test]
    fn a_failed_exec_does_not_start_counting() {
        let table = SyscallTable::parse(TABLE);
        let text = "7 [  59] execve(\"/usr/bin/x\", [\"x\"], 0x1 /* 0 vars */) = -1 ENOENT (No such file or directory)\n\
                    7 [   0] read(0, \"\", 1) = 0\n";
        assert!(Trace::parse(text, "/usr/bin/x", &table).is_err());
    }

    #[test]
    fn a_child_that_executes_another_program_is_refused() {
        let table = SyscallTable::parse(TABLE);
        let text = "7 [  59] execve(\"/usr/bin/x\", [\"x\"], 0x1 /* 0 vars */) = 0\n\
                    7 [  58] vfork( <unfinished ...>\n\
                    8 [  59] execve(\"/bin/sh\", [\"sh\"], 0x1 /* 0 vars */) = 0\n\
                    7 [  58] <... vfork resumed>)  = 8\n";
        let err = Trace::parse(text, "/usr/bin/x", &table).unwrap_err();
        assert!(
            matches!(&err, TraceError::LeftTheProgram { pid: 8, path } if path == "/bin/sh"),
            "{err}"
        );
    }

    #[test]
    fn unreadable_lines_and_unknown_numbers_are_errors() {
        let table = SyscallTable::parse(TABLE);
        let exec = "7 [  59] execve(\"/x\", [\"x\"], 0x1 /* 0 vars */) = 0\n";
        for bad in [
            "7 read(0)\n",
            "seven [ 0] read(0) = 0\n",
            "7 [ 0] <... write resumed>) = 1\n",
        ] {
            let err = Trace::parse(&format!("{exec}{bad}"), "/x", &table).unwrap_err();
            assert!(
                matches!(err, TraceError::Unparsed { line: 2, .. }),
                "{bad}: {err}"
            );
        }
        let err = Trace::parse(&format!("{exec}7 [ 999] what(0) = 0\n"), "/x", &table).unwrap_err();
        assert!(
            matches!(err, TraceError::UnknownNumber { nr: 999, .. }),
            "{err}"
        );
    }

    #[test]
    fn return_values_and_exec_paths() {
        assert_eq!(return_value("1, 2) = 0x7f00"), Some(0x7f00));
        assert_eq!(return_value("0) = -1 ENOENT (No such file)"), Some(-1));
        assert_eq!(return_value("0) = ?"), None);
        assert_eq!(
            exec_path("execve", r#""/a \"b\"", ["x"]"#).as_deref(),
            Some("/a \"b\"")
        );
        assert_eq!(
            exec_path("execveat", r#"3, "/usr/bin/x", ["x"], 0"#).as_deref(),
            Some("/usr/bin/x")
        );
    }
}
