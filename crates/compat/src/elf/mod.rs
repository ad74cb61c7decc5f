//! What the checks need to know about one ELF file, read once.
//!
//! This module owns the in-memory summary of an ELF file ([`ElfInfo`]): its
//! identification, the interpreter, the dynamic section (needed names, search
//! paths, version needs and definitions), the ABI tag note and the x86 ISA
//! property. It reads them the way glibc's dynamic loader does: through the
//! program headers and the dynamic segment, never through section headers,
//! so stripped files read the same. Parsing lives in `read.rs`, version
//! records in `version.rs`, notes in `notes.rs`; what the loader makes of
//! the summary is left to `resolve`.

mod notes;
mod read;
mod version;

pub use read::{parse, ElfError};

use std::fmt;

/// `EM_X86_64`.
pub const EM_X86_64: u16 = 62;
/// `EM_386`.
pub const EM_386: u16 = 3;
/// `EM_AARCH64`.
pub const EM_AARCH64: u16 = 183;

/// The ELF class (word size) of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ElfClass {
    /// `ELFCLASS32`.
    Elf32,
    /// `ELFCLASS64`.
    Elf64,
}

impl fmt::Display for ElfClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ElfClass::Elf32 => "ELFCLASS32",
            ElfClass::Elf64 => "ELFCLASS64",
        })
    }
}

/// A machine (`e_machine`) by name, for messages.
pub fn machine_name(machine: u16) -> String {
    match machine {
        EM_386 => "i386".into(),
        EM_X86_64 => "x86_64".into(),
        EM_AARCH64 => "aarch64".into(),
        40 => "arm".into(),
        8 => "mips".into(),
        20 => "powerpc".into(),
        21 => "powerpc64".into(),
        22 => "s390".into(),
        243 => "riscv".into(),
        247 => "bpf".into(),
        other => format!("machine {other}"),
    }
}

/// The summary of one ELF file.
#[derive(Clone, Debug, Default)]
pub struct ElfInfo {
    /// `e_ident[EI_CLASS]`.
    pub class: Option<ElfClass>,
    /// `e_machine`.
    pub machine: u16,
    /// `e_type` (`ET_EXEC` = 2, `ET_DYN` = 3, ...).
    pub e_type: u16,
    /// Why glibc's `open_verify` would refuse this file outright (a fatal
    /// error for the whole load, unlike a wrong class or machine, which only
    /// makes the loader look further). `None` when the header is acceptable.
    pub header_error: Option<&'static str>,
    /// `PT_INTERP`, without its terminating NUL.
    pub interp: Option<String>,
    /// Whether the file has a `PT_LOAD` segment.
    pub has_load: bool,
    /// Whether some `PT_LOAD` has `p_vaddr - p_offset` not page aligned.
    pub load_misaligned: bool,
    /// The dynamic section, when the file has a non-empty `PT_DYNAMIC`.
    pub dynamic: Option<Dynamic>,
    /// `PT_DYNAMIC` exists but is empty (`p_filesz == 0`): debug files.
    pub empty_dynamic: bool,
    /// The `NT_GNU_ABI_TAG` note: OS and minimum kernel version.
    pub abi_tag: Option<AbiTag>,
    /// `GNU_PROPERTY_X86_ISA_1_NEEDED`: bit 0 baseline, 1 v2, 2 v3, 3 v4.
    pub x86_isa_needed: Option<u32>,
}

impl ElfInfo {
    /// Whether the file is dynamically linked: it names an interpreter or
    /// has a dynamic section (static PIE binaries have one but no
    /// interpreter and no needed libraries).
    pub fn is_dynamic(&self) -> bool {
        self.interp.is_some()
            || self
                .dynamic
                .as_ref()
                .map(|d| !d.needed.is_empty())
                .unwrap_or(false)
    }

    /// The highest x86-64 level named by the ISA property (1 = baseline).
    pub fn x86_isa_level(&self) -> Option<u8> {
        let bits = self.x86_isa_needed?;
        (0..4).rev().find(|b| bits & (1 << b) != 0).map(|b| b + 1)
    }
}

/// The `NT_GNU_ABI_TAG` note.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbiTag {
    /// 0 for Linux.
    pub os: u32,
    /// The minimum kernel version (major, minor, patch).
    pub kernel: (u32, u32, u32),
}

/// The kind of a dependency entry of the dynamic section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NeededKind {
    /// `DT_NEEDED`.
    Needed,
    /// `DT_FILTER`.
    Filter,
    /// `DT_AUXILIARY`.
    Auxiliary,
}

/// What the loader reads from the dynamic section.
#[derive(Clone, Debug, Default)]
pub struct Dynamic {
    /// `DT_NEEDED`, `DT_FILTER` and `DT_AUXILIARY` entries, in order.
    pub needed: Vec<(NeededKind, String)>,
    /// `DT_SONAME`.
    pub soname: Option<String>,
    /// `DT_RPATH`, already dropped when `DT_RUNPATH` is present (as the
    /// loader does).
    pub rpath: Option<String>,
    /// `DT_RUNPATH`.
    pub runpath: Option<String>,
    /// `DT_FLAGS_1`.
    pub flags_1: u64,
    /// Whether `DT_RELR` is present.
    pub has_relr: bool,
    /// `DT_VERNEED` records, in chain order.
    pub verneed: Vec<VerNeed>,
    /// `DT_VERDEF` records, in chain order; `None` without `DT_VERDEF`.
    pub verdef: Option<Vec<VerDef>>,
    /// A version record the loader would refuse (`vn_version != 1`).
    pub version_error: Option<String>,
}

/// `DF_1_NODEFLIB`.
pub const DF_1_NODEFLIB: u64 = 0x800;
/// `DF_1_PIE`.
pub const DF_1_PIE: u64 = 0x0800_0000;

/// One `Verneed` record: the versions needed from one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerNeed {
    /// `vn_file`: the file name, as in `DT_NEEDED`.
    pub file: String,
    /// The `Vernaux` entries.
    pub versions: Vec<VerNeedAux>,
}

/// One `Vernaux` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerNeedAux {
    /// `vna_name`.
    pub name: String,
    /// `vna_hash`.
    pub hash: u32,
    /// Whether `VER_FLG_WEAK` is set.
    pub weak: bool,
}

/// One `Verdef` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerDef {
    /// `vd_version` (the loader refuses anything but 1 when it reaches it).
    pub version: u16,
    /// Whether `VER_FLG_BASE` is set.
    pub base: bool,
    /// `vd_hash`.
    pub hash: u32,
    /// The first `Verdaux` name.
    pub name: String,
}

/// The System V ELF hash, as used for version names.
pub fn elf_hash(name: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &c in name {
        h = (h << 4).wrapping_add(c as u32);
        let g = h & 0xf000_0000;
        if g != 0 {
            h ^= g >> 24;
        }
        h &= !g;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_hash_matches_known_values() {
        // 0xfd0e42 is the hash glibc hard-codes for GLIBC_ABI_DT_RELR.
        assert_eq!(elf_hash(b"GLIBC_ABI_DT_RELR"), 0xfd0e42);
        assert_eq!(elf_hash(b""), 0);
    }

    #[test]
    fn isa_level_is_the_highest_bit() {
        let info = ElfInfo {
            x86_isa_needed: Some(0b0101),
            ..Default::default()
        };
        assert_eq!(info.x86_isa_level(), Some(3));
    }
}
