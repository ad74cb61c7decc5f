//! A least-privilege seccomp profile: the `linux.seccomp` object of an OCI
//! `config.json` that allows exactly the system calls found, and answers
//! every other one with `ENOSYS` (the answer a kernel without the call
//! gives, which C libraries handle by falling back; `EPERM` from `clone3`
//! is fatal to glibc 2.34 and later).

use serde::{Deserialize, Serialize};

use super::table::Arch;

/// `ENOSYS` on Linux.
pub const ENOSYS: u32 = 38;

/// What a runtime's container init calls after loading the filter and
/// before `execve` of the container's program completes: when
/// `process.noNewPrivileges` is false the filter has to be loaded while
/// the init still has its capabilities, so it also covers switching user,
/// dropping capabilities, marking descriptors close-on-exec, changing
/// directory, finding the program and resetting signals (with the
/// fallbacks of older kernels: `/proc/self/fd` for want of `close_range`),
/// and reporting a failure to the runtime.
pub const RUNTIME_AFTER_FILTER: [&str; 25] = [
    "capget",
    "capset",
    "chdir",
    "close",
    "close_range",
    "execve",
    "exit_group",
    "faccessat",
    "faccessat2",
    "access",
    "fcntl",
    "getcwd",
    "getdents64",
    "newfstatat",
    "openat",
    "prctl",
    "rt_sigaction",
    "rt_sigprocmask",
    "sendmsg",
    "setgroups",
    "setresgid",
    "setresuid",
    "statx",
    "umask",
    "write",
];

/// The `linux.seccomp` object of an OCI runtime configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeccompProfile {
    /// `SCMP_ACT_ERRNO`.
    pub default_action: String,
    /// `ENOSYS`.
    pub default_errno_ret: u32,
    /// The architectures of the analysed files (`SCMP_ARCH_X86_64`).
    pub architectures: Vec<String>,
    /// One rule allowing every name.
    pub syscalls: Vec<SeccompRule>,
}

/// One rule of a profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompRule {
    /// System call names, sorted.
    pub names: Vec<String>,
    /// `SCMP_ACT_ALLOW`.
    pub action: String,
}

impl SeccompProfile {
    /// A profile allowing `names` (plus [`RUNTIME_AFTER_FILTER`]) on `arch`.
    pub fn allowing<S: AsRef<str>>(
        names: impl IntoIterator<Item = S>,
        arch: Arch,
    ) -> SeccompProfile {
        let mut all: Vec<String> = names
            .into_iter()
            .map(|s| s.as_ref().to_string())
            .chain(RUNTIME_AFTER_FILTER.iter().map(|s| s.to_string()))
            .collect();
        all.sort();
        all.dedup();
        SeccompProfile {
            default_action: "SCMP_ACT_ERRNO".into(),
            default_errno_ret: ENOSYS,
            architectures: vec![arch.seccomp_name().into()],
            syscalls: vec![SeccompRule {
                names: all,
                action: "SCMP_ACT_ALLOW".into(),
            }],
        }
    }

    /// How many names the profile allows.
    pub fn len(&self) -> usize {
        self.syscalls.iter().map(|r| r.names.len()).sum()
    }

    /// Whether it allows nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape() {
        let p = SeccompProfile::allowing(["read", "write", "read"], Arch::X86_64);
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(v["defaultErrnoRet"], 38);
        assert_eq!(v["architectures"][0], "SCMP_ARCH_X86_64");
        let names = v["syscalls"][0]["names"].as_array().unwrap();
        assert!(names.iter().any(|n| n == "execve"));
        assert_eq!(names.iter().filter(|n| *n == "read").count(), 1);
        // Every name is one the table knows.
        let t = super::super::SyscallTable::get();
        for n in names {
            assert!(t.by_name(n.as_str().unwrap()).is_some(), "{n}");
        }
    }
}
