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

/// Analyses the bytes of an ELF file; `None` for files whose code this
/// analysis cannot read (other architectures, 32-bit files, relocatable
/// objects).
pub(crate) fn analyse(data: &[u8]) -> Option<CodeFacts> {
    // e_ident: ELFCLASS64, little-endian; e_type EXEC or DYN; EM_X86_64.
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
        return None;
    }
    let e_type = u16::from_le_bytes([data[16], data[17]]);
    let machine = u16::from_le_bytes([data[18], data[19]]);
    if machine != crate::elf::EM_X86_64 || !(e_type == 2 || e_type == 3) {
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
