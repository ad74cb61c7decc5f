//! seccomp: compiling `linux.seccomp` into a BPF program, installing it in
//! the container's init, and handing the user-notification fd to a seccomp
//! agent.
//!
//! [`Filter::compile`] runs in the runtime process before it forks. It
//! checks the whole profile (every error names the field of `config.json`
//! it comes from), lets libseccomp translate the rules for every
//! architecture of the profile, and keeps only the resulting BPF program.
//! [`Filter::load`] runs in the container's init and is one `seccomp(2)`
//! call: no libseccomp state crosses the fork and nothing is allocated
//! after it. [`send_to_listener`] passes the user-notification fd to the
//! agent at `listenerPath`.
//!
//! This module does not decide *when* the filter is loaded (before or
//! after capabilities are dropped, whether `no_new_privs` is set first):
//! that is the init's business. The default profile written by
//! `plinth spec` lives in [`crate::template`].
//!
//! Semantics follow runc where the runtime spec is silent:
//! - `SCMP_ACT_KILL` is `SCMP_ACT_KILL_THREAD`;
//! - `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE` without `errnoRet` use `EPERM`
//!   (1); `errnoRet` on any other action is an error (the spec says so);
//! - a syscall name that libseccomp does not know is skipped with a
//!   warning, so a profile written for a newer kernel still loads;
//! - a rule whose action equals the default action is skipped (libseccomp
//!   refuses it, and it would change nothing);
//! - within one rule, conditions on distinct arguments are ANDed; when an
//!   argument index appears more than once, each condition becomes a rule
//!   of its own, so they are ORed.
//!
//! Rules that give one syscall different actions are left to libseccomp,
//! as in runc: among unconditional rules the first wins, and an
//! unconditional rule overrides conditional ones.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext};
use libseccomp::{ScmpFilterAttr, ScmpSyscall};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};

mod listener;
mod load;
#[cfg(test)]
pub(crate) mod testing;

pub use listener::send_to_listener;

/// `EPERM`: the errno of `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE` when the
/// profile gives none (as runc).
const DEFAULT_ERRNO: u32 = libc::EPERM as u32;

/// The kernel's limit on the length of a BPF program (`BPF_MAXINSNS`).
const MAX_INSTRUCTIONS: usize = 4096;

/// Syscalls take at most six arguments.
const MAX_ARGS: usize = 6;

/// Everything that can go wrong with a seccomp profile, from checking it to
/// handing its notification fd to an agent.
///
/// `field` is the JSON path of the offending value in `config.json`, such
/// as `linux.seccomp.syscalls[3].args[0]`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeccompError {
    /// An `errnoRet` that does not fit the 16 bits the kernel returns.
    #[error("{field}: errno {errno} is out of range (at most 65535)")]
    ErrnoOutOfRange {
        /// `linux.seccomp.defaultErrnoRet` or `...syscalls[i].errnoRet`.
        field: String,
        /// The value.
        errno: u32,
    },
    /// An `errnoRet` on an action that returns no errno.
    #[error("{field}: {action} takes no errno (only SCMP_ACT_ERRNO and SCMP_ACT_TRACE do)")]
    ErrnoNotSupported {
        /// The `errnoRet` field.
        field: String,
        /// The action it was given with.
        action: LinuxSeccompAction,
    },
    /// A rule with an empty `names` list.
    #[error("{field}: a rule needs at least one syscall name")]
    NoNames {
        /// `linux.seccomp.syscalls[i].names`.
        field: String,
    },
    /// An argument index past the sixth argument.
    #[error("{field}: argument index {index} is out of range (syscalls have arguments 0 to 5)")]
    ArgIndex {
        /// `linux.seccomp.syscalls[i].args[j]`.
        field: String,
        /// The index.
        index: usize,
    },
    /// `SCMP_CMP_MASKED_EQ` without the value to compare the masked
    /// argument with.
    #[error(
        "{field}: op SCMP_CMP_MASKED_EQ needs valueTwo \
         (value is the mask, valueTwo the expected masked argument)"
    )]
    MissingValueTwo {
        /// `linux.seccomp.syscalls[i].args[j]`.
        field: String,
    },
    /// An `SCMP_ACT_NOTIFY` rule in a profile without `listenerPath`.
    #[error("{field}: SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath")]
    MissingListenerPath {
        /// `linux.seccomp.syscalls[i].action`.
        field: String,
    },
    /// `SCMP_ACT_NOTIFY` as the default action: every syscall of the init,
    /// `execve` included, would wait for the agent.
    #[error("linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action")]
    NotifyAsDefault,
    /// libseccomp could not add an architecture to the filter.
    #[error("{field}: cannot add {arch} to the filter: {source}")]
    Architecture {
        /// `linux.seccomp.architectures[i]`.
        field: String,
        /// The architecture.
        arch: Arch,
        /// libseccomp's reason.
        source: libseccomp::error::SeccompError,
    },
    /// libseccomp refused a rule.
    #[error("{field}: cannot add the rule for {syscall}: {source}")]
    Rule {
        /// `linux.seccomp.syscalls[i].names[j]`.
        field: String,
        /// The syscall.
        syscall: String,
        /// libseccomp's reason.
        source: libseccomp::error::SeccompError,
    },
    /// libseccomp failed outside a particular rule (creating the filter,
    /// setting an attribute, generating the program).
    #[error("seccomp: {operation}: {source}")]
    Libseccomp {
        /// What plinth asked of libseccomp.
        operation: &'static str,
        /// libseccomp's reason.
        source: libseccomp::error::SeccompError,
    },
    /// The generated program could not be read back.
    #[error("seccomp: reading the generated BPF program: {source}")]
    Export {
        /// The I/O error.
        source: std::io::Error,
    },
    /// The program is longer than the kernel accepts.
    #[error(
        "linux.seccomp: the profile compiles to {instructions} BPF instructions, \
         the kernel accepts at most {MAX_INSTRUCTIONS}"
    )]
    TooLarge {
        /// The length of the program.
        instructions: usize,
    },
    /// The kernel refused the filter.
    #[error("loading the seccomp filter (flags {flags:?}): {source}{}", load_hint(*.source))]
    Load {
        /// The filter flags of the profile.
        flags: Vec<LinuxSeccompFilterFlag>,
        /// The errno of `seccomp(2)`.
        source: nix::errno::Errno,
    },
    /// `SECCOMP_FILTER_FLAG_TSYNC`: another thread could not take the filter.
    #[error("loading the seccomp filter: SECCOMP_FILTER_FLAG_TSYNC failed for thread {tid}")]
    Tsync {
        /// The thread that could not be synchronised.
        tid: i32,
    },
    /// The seccomp agent's socket could not be reached.
    #[error("linux.seccomp.listenerPath {path:?}: connect: {source}")]
    ListenerConnect {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The container process state could not be sent to the agent.
    #[error("linux.seccomp.listenerPath {path:?}: sending the seccomp fd: {source}")]
    ListenerSend {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The container process state could not be serialised.
    #[error("seccomp: serialising the container process state: {source}")]
    ProcessState {
        /// Why.
        source: serde_json::Error,
    },
}

/// Explains the usual causes of a refused filter.
fn load_hint(errno: nix::errno::Errno) -> &'static str {
    match errno {
        nix::errno::Errno::EACCES => {
            " (no_new_privs is not set and the process lacks CAP_SYS_ADMIN: \
             set process.noNewPrivileges or load the filter before dropping capabilities)"
        }
        nix::errno::Errno::EINVAL => " (the kernel does not support one of the flags or actions)",
        nix::errno::Errno::ENOSYS => " (the kernel has no seccomp support)",
        _ => "",
    }
}

/// A compiled seccomp filter: built in the runtime before forking, loaded
/// by the container's init.
///
/// It holds the BPF program and the few facts the init and the runtime need
/// to install it; it owns no libseccomp state, so it can cross a fork.
#[derive(Clone)]
pub struct Filter {
    program: Vec<libc::sock_filter>,
    flags: Vec<LinuxSeccompFilterFlag>,
    notify: bool,
    listener_path: Option<PathBuf>,
    listener_metadata: Option<String>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("instructions", &self.program.len())
            .field("flags", &self.flags)
            .field("notify", &self.notify)
            .field("listener_path", &self.listener_path)
            .field("listener_metadata", &self.listener_metadata)
            .finish()
    }
}

impl Filter {
    /// Checks `linux.seccomp` and compiles it into a BPF program for every
    /// architecture it lists (the native one always included).
    ///
    /// Call this in the runtime, before forking: every problem with the
    /// profile surfaces here, named by its field.
    pub fn compile(seccomp: &LinuxSeccomp) -> Result<Self, SeccompError> {
        let default_action = match seccomp.default_action() {
            LinuxSeccompAction::ScmpActNotify => return Err(SeccompError::NotifyAsDefault),
            action => scmp_action(
                action,
                seccomp.default_errno_ret(),
                "linux.seccomp.defaultErrnoRet",
            )?,
        };
        let syscalls = seccomp.syscalls().as_deref().unwrap_or_default();
        let rules = syscalls
            .iter()
            .enumerate()
            .map(|(i, rule)| Rule::check(i, rule, seccomp.listener_path().is_some()))
            .collect::<Result<Vec<_>, _>>()?;

        let mut ctx =
            ScmpFilterContext::new(default_action).map_err(|source| SeccompError::Libseccomp {
                operation: "creating the filter",
                source,
            })?;
        // A binary tree of syscall numbers instead of a linear scan: the
        // default profile has hundreds of rules.
        ctx.set_filter_attr(ScmpFilterAttr::CtlOptimize, 2)
            .map_err(|source| SeccompError::Libseccomp {
                operation: "setting the optimisation level",
                source,
            })?;
        let mut arches = vec![ScmpArch::native()];
        for (i, &arch) in seccomp.architectures().iter().flatten().enumerate() {
            let scmp = scmp_arch(arch);
            let field = || format!("linux.seccomp.architectures[{i}]");
            let present =
                ctx.is_arch_present(scmp)
                    .map_err(|source| SeccompError::Architecture {
                        field: field(),
                        arch,
                        source,
                    })?;
            if !present {
                ctx.add_arch(scmp)
                    .map_err(|source| SeccompError::Architecture {
                        field: field(),
                        arch,
                        source,
                    })?;
                arches.push(scmp);
            }
        }

        let mut notify = false;
        for rule in &rules {
            if rule.action == default_action {
                tracing::debug!(
                    rule = %format_args!("linux.seccomp.syscalls[{}]", rule.index),
                    "rule skipped: its action is the default action"
                );
                continue;
            }
            notify |= rule.add_to(&mut ctx, &arches)?;
        }

        let program = export(&ctx)?;
        if program.len() > MAX_INSTRUCTIONS {
            return Err(SeccompError::TooLarge {
                instructions: program.len(),
            });
        }
        Ok(Filter {
            program,
            flags: seccomp.flags().clone().unwrap_or_default(),
            notify,
            listener_path: seccomp.listener_path().clone(),
            listener_metadata: seccomp.listener_metadata().clone(),
        })
    }

    /// Whether the filter has `SCMP_ACT_NOTIFY` rules, so that
    /// [`Filter::load`] returns a notification fd for the agent at
    /// [`Filter::listener_path`].
    pub fn needs_listener(&self) -> bool {
        self.notify
    }

    /// `linux.seccomp.listenerPath`: the agent's unix socket.
    pub fn listener_path(&self) -> Option<&Path> {
        self.listener_path.as_deref()
    }

    /// `linux.seccomp.listenerMetadata`: opaque data for the agent.
    pub fn listener_metadata(&self) -> Option<&str> {
        self.listener_metadata.as_deref()
    }

    /// The number of BPF instructions of the compiled program.
    pub fn instructions(&self) -> usize {
        self.program.len()
    }

    /// Installs the filter on the calling thread (on every thread with
    /// `SECCOMP_FILTER_FLAG_TSYNC`), which must either have set
    /// `no_new_privs` or hold `CAP_SYS_ADMIN`.
    ///
    /// Returns the user-notification fd (close-on-exec) when the filter has
    /// `SCMP_ACT_NOTIFY` rules. This is a single system call: it is safe in
    /// a child right after `fork`.
    pub fn load(self) -> Result<Option<OwnedFd>, SeccompError> {
        let flags = kernel_flags(&self.flags, self.notify);
        match load::set_mode_filter(&self.program, flags) {
            Ok(load::Outcome::Loaded) => Ok(None),
            Ok(load::Outcome::Listener(fd)) => Ok(Some(fd)),
            Ok(load::Outcome::TsyncFailed(tid)) => Err(SeccompError::Tsync { tid }),
            Err(source) => Err(SeccompError::Load {
                flags: self.flags,
                source,
            }),
        }
    }
}

/// The `seccomp(2)` flags of a profile.
fn kernel_flags(flags: &[LinuxSeccompFilterFlag], notify: bool) -> libc::c_ulong {
    let mut bits = 0;
    for flag in flags {
        bits |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync if notify => {
                // With a listener the kernel cannot report the thread that
                // failed to synchronise in the return value, which holds the
                // fd: it fails with ESRCH instead.
                libc::SECCOMP_FILTER_FLAG_TSYNC | libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            // The kernel accepts it only together with a listener; without
            // one there is nothing to wait for.
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv if notify => {
                libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 0,
        };
    }
    if notify {
        bits |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
    }
    bits
}

/// One checked entry of `linux.seccomp.syscalls`.
struct Rule<'a> {
    index: usize,
    names: &'a [String],
    action: ScmpAction,
    conditions: Vec<ScmpArgCompare>,
    /// An argument index appears more than once: one rule per condition.
    or_conditions: bool,
}

impl<'a> Rule<'a> {
    /// Checks the `index`th rule without touching libseccomp.
    fn check(
        index: usize,
        rule: &'a LinuxSyscall,
        has_listener: bool,
    ) -> Result<Self, SeccompError> {
        let field = |name: &str| format!("linux.seccomp.syscalls[{index}].{name}");
        if rule.names().is_empty() {
            return Err(SeccompError::NoNames {
                field: field("names"),
            });
        }
        if rule.action() == LinuxSeccompAction::ScmpActNotify && !has_listener {
            return Err(SeccompError::MissingListenerPath {
                field: field("action"),
            });
        }
        let action = scmp_action(rule.action(), rule.errno_ret(), &field("errnoRet"))?;
        let args = rule.args().as_deref().unwrap_or_default();
        let conditions = args
            .iter()
            .enumerate()
            .map(|(j, arg)| condition(arg, || field(&format!("args[{j}]"))))
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = [false; MAX_ARGS];
        let or_conditions = args
            .iter()
            .any(|arg| std::mem::replace(&mut seen[arg.index()], true));
        Ok(Rule {
            index,
            names: rule.names(),
            action,
            conditions,
            or_conditions,
        })
    }

    /// Adds the rule for each of its names; returns whether a notify rule
    /// was added.
    fn add_to(
        &self,
        ctx: &mut ScmpFilterContext,
        arches: &[ScmpArch],
    ) -> Result<bool, SeccompError> {
        let mut added = false;
        for (j, name) in self.names.iter().enumerate() {
            let field = || format!("linux.seccomp.syscalls[{}].names[{j}]", self.index);
            let Some(syscall) = resolve(name, arches) else {
                tracing::warn!(
                    syscall = %name,
                    field = %field(),
                    "syscall unknown to libseccomp on every architecture of the profile: rule skipped"
                );
                continue;
            };
            let result = if self.conditions.is_empty() {
                ctx.add_rule(self.action, syscall).map(drop)
            } else if self.or_conditions {
                self.conditions.iter().try_for_each(|c| {
                    ctx.add_rule_conditional(self.action, syscall, std::slice::from_ref(c))
                        .map(drop)
                })
            } else {
                ctx.add_rule_conditional(self.action, syscall, &self.conditions)
                    .map(drop)
            };
            result.map_err(|source| SeccompError::Rule {
                field: field(),
                syscall: name.clone(),
                source,
            })?;
            added = true;
        }
        Ok(added && self.action == ScmpAction::Notify)
    }
}

/// Resolves a syscall name, or `None` when no architecture of the filter
/// knows it.
///
/// libseccomp's tables list every syscall of every architecture (with a
/// negative pseudo number where an architecture lacks it), and rules are
/// added by native number, so a name unknown natively is unknown
/// everywhere in practice; the other architectures are asked anyway.
fn resolve(name: &str, arches: &[ScmpArch]) -> Option<ScmpSyscall> {
    match ScmpSyscall::from_name(name) {
        Ok(syscall) => Some(syscall),
        Err(_) => {
            let elsewhere = arches
                .iter()
                .find(|&&arch| ScmpSyscall::from_name_by_arch(name, arch).is_ok());
            if let Some(arch) = elsewhere {
                tracing::warn!(
                    syscall = %name,
                    ?arch,
                    "syscall known on {arch:?} only, not on the native architecture: rule skipped"
                );
            }
            None
        }
    }
}

/// The libseccomp action of a profile action and its errno.
fn scmp_action(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    errno_field: &str,
) -> Result<ScmpAction, SeccompError> {
    let errno = || -> Result<u32, SeccompError> {
        let errno = errno_ret.unwrap_or(DEFAULT_ERRNO);
        if errno > u32::from(u16::MAX) {
            return Err(SeccompError::ErrnoOutOfRange {
                field: errno_field.to_owned(),
                errno,
            });
        }
        Ok(errno)
    };
    Ok(match action {
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno()? as i32),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno()? as u16),
        _ if errno_ret.is_some() => {
            return Err(SeccompError::ErrnoNotSupported {
                field: errno_field.to_owned(),
                action,
            })
        }
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
    })
}

/// The libseccomp condition of one entry of `args`.
fn condition(
    arg: &LinuxSeccompArg,
    field: impl Fn() -> String,
) -> Result<ScmpArgCompare, SeccompError> {
    let index = arg.index();
    if index >= MAX_ARGS {
        return Err(SeccompError::ArgIndex {
            field: field(),
            index,
        });
    }
    let (op, datum) = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, arg.value()),
        LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, arg.value()),
        LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, arg.value()),
        // The runtime spec (as libseccomp): `value` is the mask and
        // `valueTwo` what the masked argument must equal.
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            let expected = arg
                .value_two()
                .ok_or_else(|| SeccompError::MissingValueTwo { field: field() })?;
            (ScmpCompareOp::MaskedEqual(arg.value()), expected)
        }
    };
    // `index < MAX_ARGS` was checked above.
    Ok(ScmpArgCompare::new(index as u32, op, datum))
}

/// The libseccomp architecture of a profile architecture.
fn scmp_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

/// Generates the BPF program of `ctx` (through a memfd: libseccomp 2.5
/// exports to a file descriptor only).
fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>, SeccompError> {
    use std::io::{Read, Seek};

    let fd =
        nix::sys::memfd::memfd_create(c"plinth-seccomp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|errno| SeccompError::Export {
                source: errno.into(),
            })?;
    let mut file = std::fs::File::from(fd);
    ctx.export_bpf(&file)
        .map_err(|source| SeccompError::Libseccomp {
            operation: "generating the BPF program",
            source,
        })?;
    let mut bytes = Vec::new();
    file.rewind()
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|source| SeccompError::Export { source })?;
    if bytes.len() % 8 != 0 {
        return Err(SeccompError::Export {
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} bytes is not a whole number of instructions",
                    bytes.len()
                ),
            ),
        });
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|insn| libc::sock_filter {
            code: u16::from_ne_bytes([insn[0], insn[1]]),
            jt: insn[2],
            jf: insn[3],
            k: u32::from_ne_bytes([insn[4], insn[5], insn[6], insn[7]]),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    /// A profile from its JSON, as it appears in `config.json`.
    fn profile(json: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(json).expect("a valid linux.seccomp")
    }

    fn compile(json: serde_json::Value) -> Filter {
        Filter::compile(&profile(json)).expect("the profile compiles")
    }

    fn compile_err(json: serde_json::Value) -> String {
        match Filter::compile(&profile(json.clone())) {
            Ok(filter) => panic!("{json} compiled to {filter:?}"),
            Err(e) => e.to_string(),
        }
    }

    use super::testing::answer_native as answer;

    #[test]
    fn every_action_compiles_to_its_return_value() {
        let filter = compile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock",
            "syscalls": [
                {"names": ["getpid"], "action": "SCMP_ACT_KILL"},
                {"names": ["getppid"], "action": "SCMP_ACT_KILL_THREAD"},
                {"names": ["gettid"], "action": "SCMP_ACT_KILL_PROCESS"},
                {"names": ["getuid"], "action": "SCMP_ACT_TRAP"},
                {"names": ["geteuid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18},
                {"names": ["getgid"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["getegid"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
                {"names": ["getpgrp"], "action": "SCMP_ACT_TRACE"},
                {"names": ["getsid"], "action": "SCMP_ACT_LOG"},
                {"names": ["getcwd"], "action": "SCMP_ACT_NOTIFY"},
            ]
        }));
        let zero = [0; 6];
        assert_eq!(answer(&filter, "getpid", zero), RET_KILL_THREAD);
        assert_eq!(answer(&filter, "getppid", zero), RET_KILL_THREAD);
        assert_eq!(answer(&filter, "gettid", zero), RET_KILL_PROCESS);
        assert_eq!(answer(&filter, "getuid", zero), RET_TRAP);
        assert_eq!(answer(&filter, "geteuid", zero), RET_ERRNO | 18);
        assert_eq!(
            answer(&filter, "getgid", zero),
            RET_ERRNO | 1,
            "EPERM by default"
        );
        assert_eq!(answer(&filter, "getegid", zero), RET_TRACE | 7);
        assert_eq!(answer(&filter, "getpgrp", zero), RET_TRACE | 1);
        assert_eq!(answer(&filter, "getsid", zero), RET_LOG);
        assert_eq!(answer(&filter, "getcwd", zero), RET_USER_NOTIF);
        assert_eq!(answer(&filter, "uname", zero), RET_ALLOW);
        assert!(filter.needs_listener());
        assert_eq!(filter.listener_path(), Some(Path::new("/run/agent.sock")));
    }

    #[test]
    fn default_action_and_default_errno() {
        let filter = compile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]
        }));
        assert_eq!(answer(&filter, "getpid", [0; 6]), RET_ALLOW);
        assert_eq!(answer(&filter, "getppid", [0; 6]), RET_ERRNO | 38);
        assert_eq!(
            eval(&filter, native_audit_arch(), 1000, [0; 6]),
            RET_ERRNO | 38
        );
        assert!(!filter.needs_listener());

        let filter = compile(serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO"}));
        assert_eq!(answer(&filter, "getpid", [0; 6]), RET_ERRNO | 1);
        let filter = compile(serde_json::json!({"defaultAction": "SCMP_ACT_KILL_PROCESS"}));
        assert_eq!(answer(&filter, "getpid", [0; 6]), RET_KILL_PROCESS);
    }

    /// One rule per operator, each on its own syscall, all on argument 1.
    #[test]
    fn every_operator_compares_as_documented() {
        let ops = [
            ("SCMP_CMP_NE", "getpid"),
            ("SCMP_CMP_LT", "getppid"),
            ("SCMP_CMP_LE", "gettid"),
            ("SCMP_CMP_EQ", "getuid"),
            ("SCMP_CMP_GE", "geteuid"),
            ("SCMP_CMP_GT", "getgid"),
        ];
        let mut rules: Vec<_> = ops
            .iter()
            .map(|(op, name)| {
                serde_json::json!({
                    "names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": 18,
                    "args": [{"index": 1, "value": 10, "op": op}]
                })
            })
            .collect();
        rules.push(serde_json::json!({
            "names": ["getegid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18,
            "args": [{"index": 1, "value": 0xf0, "valueTwo": 0x30, "op": "SCMP_CMP_MASKED_EQ"}]
        }));
        let filter = compile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules
        }));
        let hit = |name: &str, value: u64| {
            answer(&filter, name, [0, value, 0, 0, 0, 0]) == RET_ERRNO | 18
        };
        type Expected = fn(u64) -> bool;
        let table: [(&str, Expected); 7] = [
            ("getpid", |v| v != 10),
            ("getppid", |v| v < 10),
            ("gettid", |v| v <= 10),
            ("getuid", |v| v == 10),
            ("geteuid", |v| v >= 10),
            ("getgid", |v| v > 10),
            ("getegid", |v| v & 0xf0 == 0x30),
        ];
        // 64-bit values: the high word matters too.
        let values = [
            0,
            9,
            10,
            11,
            0x30,
            0x3f,
            0x130,
            0x40,
            1 << 32 | 10,
            u64::MAX,
        ];
        for (name, expected) in table {
            for value in values {
                assert_eq!(hit(name, value), expected(value), "{name}({value:#x})");
            }
        }
    }

    #[test]
    fn distinct_arguments_are_anded_repeated_ones_ored() {
        let filter = compile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "args": [
                    {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                    {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}
                ]},
                {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "args": [
                    {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                    {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}
                ]}
            ]
        }));
        let errs = |name: &str, a0: u64, a1: u64| {
            answer(&filter, name, [a0, a1, 0, 0, 0, 0]) == RET_ERRNO | 1
        };
        assert!(errs("getpid", 1, 2));
        assert!(!errs("getpid", 1, 3));
        assert!(!errs("getpid", 2, 2));
        assert!(errs("getppid", 1, 0));
        assert!(errs("getppid", 2, 0));
        assert!(!errs("getppid", 3, 0));
    }

    #[test]
    fn unknown_syscalls_and_rules_like_the_default_are_skipped() {
        let filter = compile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["no_such_syscall", "getpid"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                {"names": ["gettid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2}
            ]
        }));
        assert_eq!(answer(&filter, "getpid", [0; 6]), RET_ALLOW);
        assert_eq!(answer(&filter, "getppid", [0; 6]), RET_ERRNO | 1);
        assert_eq!(answer(&filter, "gettid", [0; 6]), RET_ERRNO | 2);

        // A NOTIFY rule whose names are all unknown needs no listener.
        let filter = compile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock",
            "listenerMetadata": "hello",
            "syscalls": [{"names": ["no_such_syscall"], "action": "SCMP_ACT_NOTIFY"}]
        }));
        assert!(!filter.needs_listener());
        assert_eq!(filter.listener_metadata(), Some("hello"));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn architectures_are_added_and_native_is_always_present() {
        let rules = serde_json::json!([
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18}
        ]);
        let filter = compile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86"],
            "syscalls": rules
        }));
        // getcwd is 79 on x86_64 and 183 on i386.
        assert_eq!(eval(&filter, AUDIT_ARCH_X86_64, 79, [0; 6]), RET_ERRNO | 18);
        assert_eq!(eval(&filter, AUDIT_ARCH_I386, 183, [0; 6]), RET_ERRNO | 18);
        assert_eq!(eval(&filter, AUDIT_ARCH_I386, 79, [0; 6]), RET_ALLOW);
        // An architecture the filter does not list is killed.
        assert_eq!(
            eval(&filter, AUDIT_ARCH_AARCH64, 17, [0; 6]),
            RET_KILL_THREAD
        );

        // x32 shares the x86_64 audit arch, with bit 30 set on the number.
        let filter = compile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": rules
        }));
        assert_eq!(
            eval(&filter, AUDIT_ARCH_X86_64, 0x4000_0000 | 79, [0; 6]),
            RET_ERRNO | 18
        );
        let without_x32 = compile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules
        }));
        assert_ne!(
            eval(&without_x32, AUDIT_ARCH_X86_64, 0x4000_0000 | 79, [0; 6]),
            RET_ERRNO | 18
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
                    {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "args": [
                        {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                        {"index": 1, "value": 255, "op": "SCMP_CMP_MASKED_EQ"}
                    ]}
                ]}),
                "linux.seccomp.syscalls[1].args[1]: op SCMP_CMP_MASKED_EQ needs valueTwo",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "args": [
                        {"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}
                    ]}
                ]}),
                "linux.seccomp.syscalls[0].args[0]: argument index 6 is out of range",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"names": [], "action": "SCMP_ACT_ERRNO"}
                ]}),
                "linux.seccomp.syscalls[0].names: a rule needs at least one syscall name",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"names": ["getpid"], "action": "SCMP_ACT_ERRNO"},
                    {"names": ["getpid"], "action": "SCMP_ACT_NOTIFY"}
                ]}),
                "linux.seccomp.syscalls[1].action: SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"names": ["getpid"], "action": "SCMP_ACT_KILL", "errnoRet": 1}
                ]}),
                "linux.seccomp.syscalls[0].errnoRet: SCMP_ACT_KILL takes no errno",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 65536}),
                "linux.seccomp.defaultErrnoRet: errno 65536 is out of range",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}),
                "linux.seccomp.defaultErrnoRet: SCMP_ACT_ALLOW takes no errno",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/a"}),
                "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action",
            ),
            (
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_PPC"]}),
                "linux.seccomp.architectures[1]: cannot add SCMP_ARCH_PPC to the filter",
            ),
        ];
        for (json, expected) in cases {
            let message = compile_err(json.clone());
            assert!(
                message.starts_with(expected),
                "{json}\n  gave: {message}\n  want: {expected}..."
            );
        }
    }

    #[test]
    fn flags_map_to_seccomp_flags() {
        use LinuxSeccompFilterFlag::*;
        let all = [
            SeccompFilterFlagTsync,
            SeccompFilterFlagLog,
            SeccompFilterFlagSpecAllow,
            SeccompFilterFlagWaitKillableRecv,
        ];
        assert_eq!(
            kernel_flags(&all, false),
            libc::SECCOMP_FILTER_FLAG_TSYNC
                | libc::SECCOMP_FILTER_FLAG_LOG
                | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
        );
        assert_eq!(
            kernel_flags(&all, true),
            libc::SECCOMP_FILTER_FLAG_TSYNC
                | libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH
                | libc::SECCOMP_FILTER_FLAG_LOG
                | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
                | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
                | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
        );
        assert_eq!(kernel_flags(&[], false), 0);
    }
}
