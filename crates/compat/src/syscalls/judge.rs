//! A program's system calls judged against a platform.

use crate::check::{Problem, ProblemKind};
use crate::platform::KernelInfo;

use super::program::ProgramCalls;
use super::table::{Arch, SyscallTable};
use super::HOST_FILES;

/// System calls that act on, or report, host-wide state that no
/// namespace isolates, with what goes wrong in a container.
pub const NOT_CONTAINERISED: [(&str, &str); 20] = [
    (
        "sysinfo",
        "reports the host's memory, swap, load and uptime, not the container's limits",
    ),
    ("syslog", "reads or clears the host kernel's log buffer"),
    (
        "keyctl",
        "the kernel keyrings are not namespaced: keys are shared with the host",
    ),
    (
        "add_key",
        "the kernel keyrings are not namespaced: keys are shared with the host",
    ),
    (
        "request_key",
        "the kernel keyrings are not namespaced: keys are shared with the host",
    ),
    (
        "clock_settime",
        "sets the host's clock (time namespaces only offset the monotonic and boot clocks)",
    ),
    (
        "settimeofday",
        "sets the host's clock (time namespaces only offset the monotonic and boot clocks)",
    ),
    ("adjtimex", "adjusts the host's clock"),
    ("clock_adjtime", "adjusts the host's clock"),
    ("perf_event_open", "observes host-wide performance events"),
    ("bpf", "loads programs and maps into the host kernel"),
    ("init_module", "loads a module into the host kernel"),
    ("finit_module", "loads a module into the host kernel"),
    ("delete_module", "unloads a module from the host kernel"),
    ("kexec_load", "replaces the host kernel"),
    ("kexec_file_load", "replaces the host kernel"),
    ("acct", "switches process accounting for the whole host"),
    ("swapon", "changes the host's swap"),
    ("swapoff", "changes the host's swap"),
    (
        "reboot",
        "reboots the host (in a PID namespace it ends the container instead)",
    ),
];

fn problem(kind: ProblemKind, subject: String, detail: String) -> Problem {
    Problem {
        kind,
        detail,
        subject,
    }
}

/// The problems of a program with these calls on `kernel`; `host_files`
/// are the host-wide files the file itself names.
pub(crate) fn judge(
    calls: &ProgramCalls,
    host_files: &[usize],
    kernel: &KernelInfo,
) -> Vec<Problem> {
    let table = SyscallTable::get();
    let mut out = Vec::new();
    let (maj, min, _) = kernel.version;
    for nr in calls.set.iter() {
        let Some(info) = table.by_number(Arch::X86_64, nr) else {
            continue;
        };
        if let Some(since) = info.since(Arch::X86_64) {
            if maj > 0 && since > (maj, min) {
                let v = format!("{}.{}", since.0, since.1);
                out.push(problem(
                    ProblemKind::KernelLacksSyscall,
                    format!("{} (Linux {v})", info.name),
                    format!(
                        "can call {}, which Linux {v} introduced; the kernel is {}",
                        info.name, kernel.release
                    ),
                ));
            }
        }
        if let Some(option) = info.kconfig {
            if kernel.lacks_option(option) {
                out.push(problem(
                    ProblemKind::KernelConfigLacksSyscall,
                    format!("{} (CONFIG_{option})", info.name),
                    format!(
                        "can call {}, which needs CONFIG_{option}; the kernel ({}) is built without it",
                        info.name,
                        kernel.config_source.as_deref().unwrap_or("its configuration")
                    ),
                ));
            }
        }
        if let Some((name, why)) = NOT_CONTAINERISED.iter().find(|(n, _)| *n == info.name) {
            out.push(problem(
                ProblemKind::NotContainerised,
                name.to_string(),
                format!("can call {name}, which {why}"),
            ));
        }
    }
    for &i in host_files {
        let (path, why) = HOST_FILES[i];
        out.push(problem(
            ProblemKind::NotContainerised,
            path.to_string(),
            format!("names {path}, which {why}"),
        ));
    }
    if !calls.unresolved.is_empty() {
        let (path, addr) = &calls.unresolved[0];
        let n = calls.unresolved.len();
        out.push(problem(
            ProblemKind::UnresolvedSyscallSite,
            String::new(),
            format!(
                "{n} system call site{} whose number could not be resolved (the first in {path} at {addr:#x}); the calls listed may be incomplete",
                if n == 1 { "" } else { "s" }
            ),
        ));
    }
    for (path, why) in &calls.errors {
        out.push(problem(
            ProblemKind::UnresolvedSyscallSite,
            String::new(),
            format!("the code of {path} could not be analysed: {why}"),
        ));
    }
    out
}
