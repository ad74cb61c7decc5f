//! Which system calls a file can make, found without running it.
//!
//! Each ELF file is analysed once, when it is read (`analyse`): its code is
//! disassembled (`x86_64.rs`, behind the architecture-neutral
//! `summary` types, so that AArch64 can follow), `syscall` sites are
//! resolved to numbers by data flow (`flow.rs`), and functions, their
//! calls, their imports and the functions reachable through pointers in
//! data are recorded. For a program, `program.rs` then walks from the
//! program's own code through the imports it calls into its libraries,
//! resolved in the loader's scope, and its interpreter, and collects every
//! number reached. `judge.rs` turns the result into problems against a
//! platform: a kernel without a call, a kernel config without it, calls
//! and files that namespaces do not isolate. `seccomp.rs` writes a
//! least-privilege profile from the same sets.

mod flow;
mod image;
pub(crate) mod judge;
pub(crate) mod program;
pub mod seccomp;
pub(crate) mod summary;
pub mod table;
mod x86_64;

pub use table::{Arch, SyscallInfo, SyscallTable};

use summary::CodeSummary;

/// A set of x86-64 system call numbers.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SyscallSet([u64; (table::MAX_NR / 64) as usize]);

impl SyscallSet {
    /// Adds `nr` (numbers beyond the table are ignored).
    pub fn insert(&mut self, nr: u32) {
        if nr < table::MAX_NR {
            self.0[(nr / 64) as usize] |= 1 << (nr % 64);
        }
    }

    /// Whether `nr` is in the set.
    pub fn contains(&self, nr: u32) -> bool {
        nr < table::MAX_NR && self.0[(nr / 64) as usize] & (1 << (nr % 64)) != 0
    }

    /// Adds every number of `other`.
    pub fn union(&mut self, other: &SyscallSet) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a |= b;
        }
    }

    /// The numbers, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..table::MAX_NR).filter(|&n| self.contains(n))
    }

    /// How many numbers.
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The x86-64 names, sorted; numbers the table does not know are
    /// written `syscall_N`.
    pub fn names(&self) -> Vec<String> {
        let t = SyscallTable::get();
        let mut v: Vec<String> = self
            .iter()
            .map(|n| match t.by_number(Arch::X86_64, n) {
                Some(i) => i.name.to_string(),
                None => format!("syscall_{n}"),
            })
            .collect();
        v.sort();
        v
    }
}

impl std::fmt::Debug for SyscallSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

/// Files that show host-wide state which namespaces do not isolate, with
/// what they show.
pub(crate) const HOST_FILES: [(&str, &str); 7] = [
    (
        "/proc/meminfo",
        "shows the host's memory, not the container's memory limit",
    ),
    (
        "/proc/cpuinfo",
        "lists every CPU of the host, not the container's cpuset or CPU quota",
    ),
    ("/proc/stat", "holds host-wide CPU and process counters"),
    ("/proc/uptime", "shows the host's uptime"),
    ("/proc/loadavg", "shows the host's load"),
    ("/proc/swaps", "lists the host's swap devices"),
    (
        "/sys/devices/system/cpu",
        "lists every CPU of the host, not the container's cpuset or CPU quota",
    ),
];

/// What the analysis learned about one file.
#[derive(Debug)]
pub(crate) struct CodeFacts {
    pub summary: CodeSummary,
    /// Indices into [`HOST_FILES`] of the paths the file's bytes name.
    pub host_files: Vec<usize>,
}

/// Analyses the bytes of an ELF file already read as `info`; `None` for
/// files whose code this analysis cannot read (other architectures, 32-bit
/// files, relocatable objects).
pub(crate) fn analyse(data: &[u8], info: &crate::elf::ElfInfo) -> Option<CodeFacts> {
    let executable = info.e_type == 2 || info.e_type == 3;
    if info.class != Some(crate::elf::ElfClass::Elf64)
        || info.machine != crate::elf::EM_X86_64
        || !executable
    {
        return None;
    }
    let summary = match image::Image::read(data) {
        Some(img) => x86_64::analyse(&img),
        None => CodeSummary {
            error: Some("its headers cannot be read".into()),
            ..Default::default()
        },
    };
    let host_files = HOST_FILES
        .iter()
        .enumerate()
        .filter(|(_, (path, _))| memchr::memmem::find(data, path.as_bytes()).is_some())
        .map(|(i, _)| i)
        .collect();
    Some(CodeFacts {
        summary,
        host_files,
    })
}

#[cfg(test)]
mod tests {
    //! Programs built with `cc` at test time, analysed whole.
    use std::path::Path;
    use std::process::Command;

    use crate::{CheckBuilder, FileReport, ProblemKind};

    fn have_cc() -> bool {
        let ok = Command::new("cc").arg("--version").output().is_ok();
        if !ok {
            eprintln!("skipping: no cc");
        }
        ok
    }

    fn build(dir: &Path, name: &str, src: &str, flags: &[&str]) {
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        let c = dir.join(format!("{name}.c"));
        std::fs::write(&c, src).unwrap();
        let out = Command::new("cc")
            .args(flags)
            .arg("-O2")
            .arg("-o")
            .arg(dir.join("bin").join(name))
            .arg(&c)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn analyse(dir: &Path, name: &str) -> FileReport {
        let report = CheckBuilder::new(dir)
            .onto("/")
            .syscalls(true)
            .binary(format!("bin/{name}"))
            .build()
            .unwrap()
            .run()
            .unwrap();
        report.files[0].clone()
    }

    fn has(f: &FileReport, name: &str) -> bool {
        f.syscalls.as_ref().unwrap().iter().any(|n| n == name)
    }

    #[test]
    fn raw_sites_wrappers_and_the_syscall_function() {
        if !have_cc() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        // An inline `syscall` with a constant number (getppid = 110),
        // libc's generic syscall() with a constant (gettid), and a plain
        // wrapper (sched_yield).
        build(
            d,
            "app",
            r#"
            #include <sched.h>
            #include <sys/syscall.h>
            #include <unistd.h>
            static long raw(void) {
                long r;
                __asm__ volatile ("syscall" : "=a"(r) : "0"(110L) : "rcx", "r11", "memory");
                return r;
            }
            int main(void) {
                sched_yield();
                return (int)(raw() + syscall(SYS_gettid));
            }
            "#,
            &[],
        );
        let f = analyse(d, "app");
        for name in ["getppid", "gettid", "sched_yield", "exit_group"] {
            assert!(has(&f, name), "{name} missing: {:?}", f.syscalls);
        }
        // What a process always does at start: the loader's and libc's.
        for name in ["mmap", "arch_prctl", "set_tid_address", "brk"] {
            assert!(has(&f, name), "{name} missing: {:?}", f.syscalls);
        }
        // Nothing that neither the program nor what it reaches in libc
        // can do.
        for name in ["mount", "ptrace", "bpf", "kexec_load", "io_uring_setup"] {
            assert!(!has(&f, name), "{name} predicted: {:?}", f.syscalls);
        }
    }

    #[test]
    fn an_unknown_number_is_reported_not_dropped() {
        if !have_cc() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        // The number comes from the command line: no analysis can know it.
        build(
            d,
            "dyn",
            r#"
            #include <stdlib.h>
            int main(int argc, char **argv) {
                long n = argc > 1 ? atol(argv[1]) : 39, r;
                __asm__ volatile ("syscall" : "=a"(r) : "0"(n) : "rcx", "r11", "memory");
                return (int)r;
            }
            "#,
            &[],
        );
        let f = analyse(d, "dyn");
        assert!(f.unresolved_syscall_sites.unwrap() >= 1, "{f:?}");
        let p = f
            .problems
            .iter()
            .find(|p| p.kind == ProblemKind::UnresolvedSyscallSite)
            .expect("an unresolved-syscall-site problem");
        assert!(p.detail.contains("bin/dyn at 0x"), "{}", p.detail);
    }

    #[test]
    fn static_binaries_and_the_kernel_they_need() {
        if !have_cc() {
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        build(
            d,
            "st",
            r#"
            #include <pthread.h>
            #include <stdio.h>
            #include <sys/sysinfo.h>
            static void *run(void *a) { return a; }
            int main(void) {
                struct sysinfo si;
                pthread_t t;
                sysinfo(&si);
                pthread_create(&t, 0, run, 0);
                pthread_join(t, 0);
                FILE *f = fopen("/proc/meminfo", "r");
                return f == 0;
            }
            "#,
            &["-static", "-pthread"],
        );
        let f = analyse(d, "st");
        for name in ["clone3", "clone", "sysinfo", "openat", "futex"] {
            assert!(has(&f, name), "{name} missing: {:?}", f.syscalls);
        }
        let kinds: Vec<(ProblemKind, &str)> = f
            .problems
            .iter()
            .map(|p| (p.kind, p.subject.as_str()))
            .collect();
        assert!(
            kinds.contains(&(ProblemKind::NotContainerised, "sysinfo")),
            "{kinds:?}"
        );
        assert!(
            kinds.contains(&(ProblemKind::NotContainerised, "/proc/meminfo")),
            "{kinds:?}"
        );
        // On this kernel clone3 exists; on 4.19 it does not.
        assert!(
            !kinds
                .iter()
                .any(|(k, _)| *k == ProblemKind::KernelLacksSyscall),
            "{kinds:?}"
        );
        let old = CheckBuilder::new(d)
            .syscalls(true)
            .kernel(crate::platform::KernelInfo::as_release("4.19"))
            .binary("bin/st")
            .build()
            .unwrap()
            .run()
            .unwrap();
        let p = old.files[0]
            .problems
            .iter()
            .find(|p| p.kind == ProblemKind::KernelLacksSyscall && p.subject.starts_with("clone3"))
            .expect("clone3 judged against 4.19");
        assert_eq!(
            p.detail,
            "can call clone3, which Linux 5.3 introduced; the kernel is 4.19"
        );
        assert_eq!(old.files[0].verdict, crate::Verdict::Fail);
    }

    #[test]
    fn go_binaries_with_and_without_symbols() {
        if Command::new("go").arg("version").output().is_err() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true and this test needs go (Debian package golang-go)"
            );
            eprintln!("skipping: no go");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(d.join("go.mod"), "module gotest\ngo 1.19\n").unwrap();
        std::fs::write(
            d.join("main.go"),
            r#"package main

import (
	"net"
	"os"
)

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.Exit(1)
	}
	go func() {
		c, _ := net.Dial("tcp", ln.Addr().String())
		c.Close()
	}()
	c, _ := ln.Accept()
	c.Close()
}
"#,
        )
        .unwrap();
        let mut sets = Vec::new();
        for (name, flags) in [("app", ""), ("stripped", "-s -w")] {
            let out = Command::new("go")
                .current_dir(d)
                .args(["build", "-ldflags", flags, "-o"])
                .arg(d.join("bin").join(name))
                .arg(".")
                .env("HOME", d)
                .env("GOCACHE", d.join("cache"))
                .env("GOPATH", d.join("gopath"))
                .env("CGO_ENABLED", "0")
                .env("GOFLAGS", "-mod=mod")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let f = analyse(d, name);
            // The Go runtime's own raw calls, and the net package's,
            // through syscall.Syscall with the number passed on.
            for call in [
                "socket",
                "bind",
                "listen",
                "accept4",
                "connect",
                "clone",
                "futex",
                "mmap",
                "rt_sigaction",
                "exit_group",
            ] {
                assert!(has(&f, call), "{name}: {call} missing: {:?}", f.syscalls);
            }
            sets.push(f.syscalls.clone().unwrap());
        }
        // The function table of .gopclntab finds in a stripped binary what
        // the symbol table finds in the other.
        assert_eq!(sets[0], sets[1]);
    }

    #[test]
    fn damaged_files_are_analysed_without_panic() {
        // As the check reads files: parsed first, then analysed.
        let analyse = |data: &[u8]| {
            if let Ok(info) = crate::elf::parse(data) {
                let _ = super::analyse(data, &info);
            }
        };
        let exe = std::fs::read("/bin/true").unwrap();
        for len in (0..exe.len()).step_by(97) {
            analyse(&exe[..len]);
        }
        let mut garbage = exe.clone();
        for (i, b) in garbage.iter_mut().enumerate().skip(64) {
            *b ^= (i * 31) as u8;
        }
        analyse(&garbage);
        // The header parses, the code is damaged: analysed without panic.
        let info = crate::elf::parse(&exe).unwrap();
        let _ = super::analyse(&garbage, &info);
    }
}
