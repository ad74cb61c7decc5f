//! Just enough ELF reading for the tests to pick their own file sets, independently of
//! plinth's reader: the ELF header (class, data encoding, type, machine), the program
//! headers, the PT_INTERP string and the number of DT_NEEDED entries in PT_DYNAMIC.
//!
//! This module owns which files count as "dynamically linked" for the loader oracle
//! ([`ElfInfo::is_dynamic`]) and how a root is walked ([`walk_elf_files`]). It reads with
//! bounds checks and never trusts a count; it does not resolve libraries, read section
//! headers or symbol versions: that is plinth's job, and what the oracle checks.

use std::fs;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// `e_type` of an executable with fixed addresses.
pub const ET_EXEC: u16 = 2;
/// `e_type` of a shared object or a position-independent executable.
pub const ET_DYN: u16 = 3;
/// `e_machine` of x86-64.
pub const EM_X86_64: u16 = 62;

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
/// More than any real PT_DYNAMIC or PT_INTERP holds; larger ones are malformed here.
const MAX_SEGMENT: u64 = 1 << 20;

/// What the headers of one ELF file say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfInfo {
    /// ELFCLASS64 (else 32-bit).
    pub class64: bool,
    /// ELFDATA2LSB (else big-endian).
    pub little_endian: bool,
    /// `e_type` ([`ET_EXEC`], [`ET_DYN`], ...).
    pub e_type: u16,
    /// `e_machine` ([`EM_X86_64`], ...).
    pub machine: u16,
    /// The PT_INTERP path, without its NUL.
    pub interp: Option<String>,
    /// Whether there is a PT_DYNAMIC segment.
    pub has_dynamic: bool,
    /// How many DT_NEEDED entries PT_DYNAMIC has.
    pub needed: usize,
}

impl ElfInfo {
    /// An executable or a shared object (not a relocatable object or a core dump).
    pub fn is_loadable(&self) -> bool {
        self.e_type == ET_EXEC || self.e_type == ET_DYN
    }

    /// Dynamically linked in the oracle's sense: an executable or shared object with a
    /// program interpreter, or with a PT_DYNAMIC that names at least one needed library.
    /// Static executables, static-pie ones (`ldconfig`) and shared objects without
    /// dependencies (`ld.so` itself, some Perl XS modules) are not.
    pub fn is_dynamic(&self) -> bool {
        self.is_loadable() && (self.interp.is_some() || (self.has_dynamic && self.needed > 0))
    }

    /// 64-bit little-endian x86-64: what this host's loader can map.
    pub fn is_host_native(&self) -> bool {
        self.class64 && self.little_endian && self.machine == EM_X86_64
    }
}

/// What [`probe`] found in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// No ELF magic.
    NotElf,
    /// An ELF file whose headers could be read.
    Elf(ElfInfo),
    /// ELF magic, but headers that do not hold together.
    Malformed(String),
}

/// Read the headers of the file at `path`.
pub fn probe(path: &Path) -> io::Result<Probe> {
    let file = fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut ident = [0u8; 16];
    if len < 16 {
        return Ok(Probe::NotElf);
    }
    file.read_exact_at(&mut ident, 0)?;
    if &ident[..4] != b"\x7fELF" {
        return Ok(Probe::NotElf);
    }
    let class64 = match ident[4] {
        1 => false,
        2 => true,
        c => return Ok(Probe::Malformed(format!("EI_CLASS {c}"))),
    };
    let little_endian = match ident[5] {
        1 => true,
        2 => false,
        d => return Ok(Probe::Malformed(format!("EI_DATA {d}"))),
    };
    let r = Reader {
        file: &file,
        len,
        class64,
        little_endian,
    };
    Ok(match r.info() {
        Ok(info) => Probe::Elf(info),
        Err(why) => Probe::Malformed(why),
    })
}

struct Reader<'a> {
    file: &'a fs::File,
    len: u64,
    class64: bool,
    little_endian: bool,
}

impl Reader<'_> {
    fn bytes(&self, off: u64, n: u64) -> Result<Vec<u8>, String> {
        if off.checked_add(n).is_none_or(|end| end > self.len) {
            return Err(format!(
                "{n} bytes at offset {off} are past the end ({})",
                self.len
            ));
        }
        let mut buf = vec![0u8; n as usize];
        self.file
            .read_exact_at(&mut buf, off)
            .map_err(|e| format!("read at {off}: {e}"))?;
        Ok(buf)
    }

    fn uint(&self, b: &[u8]) -> u64 {
        let mut v = 0u64;
        if self.little_endian {
            for &x in b.iter().rev() {
                v = (v << 8) | x as u64;
            }
        } else {
            for &x in b {
                v = (v << 8) | x as u64;
            }
        }
        v
    }

    /// The word size: 8 or 4 bytes.
    fn word(&self) -> usize {
        if self.class64 {
            8
        } else {
            4
        }
    }

    fn info(&self) -> Result<ElfInfo, String> {
        let ehsize = if self.class64 { 64 } else { 52 };
        let eh = self.bytes(0, ehsize)?;
        let e_type = self.uint(&eh[16..18]) as u16;
        let machine = self.uint(&eh[18..20]) as u16;
        let (phoff, phentsize, phnum) = if self.class64 {
            (
                self.uint(&eh[32..40]),
                self.uint(&eh[54..56]),
                self.uint(&eh[56..58]),
            )
        } else {
            (
                self.uint(&eh[28..32]),
                self.uint(&eh[42..44]),
                self.uint(&eh[44..46]),
            )
        };
        let mut info = ElfInfo {
            class64: self.class64,
            little_endian: self.little_endian,
            e_type,
            machine,
            interp: None,
            has_dynamic: false,
            needed: 0,
        };
        if phnum == 0 {
            return Ok(info);
        }
        let min_phent = if self.class64 { 56 } else { 32 };
        if phentsize < min_phent {
            return Err(format!("e_phentsize {phentsize}"));
        }
        let table = self.bytes(phoff, phentsize * phnum)?;
        for ph in table.chunks_exact(phentsize as usize) {
            let p_type = self.uint(&ph[0..4]) as u32;
            let (offset, filesz) = if self.class64 {
                (self.uint(&ph[8..16]), self.uint(&ph[32..40]))
            } else {
                (self.uint(&ph[4..8]), self.uint(&ph[16..20]))
            };
            match p_type {
                PT_INTERP => {
                    if filesz > MAX_SEGMENT {
                        return Err(format!("PT_INTERP of {filesz} bytes"));
                    }
                    let raw = self.bytes(offset, filesz)?;
                    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
                    info.interp = Some(String::from_utf8_lossy(&raw[..end]).into_owned());
                }
                PT_DYNAMIC => {
                    if filesz > MAX_SEGMENT {
                        return Err(format!("PT_DYNAMIC of {filesz} bytes"));
                    }
                    info.has_dynamic = true;
                    let raw = self.bytes(offset, filesz)?;
                    let w = self.word();
                    for entry in raw.chunks_exact(2 * w) {
                        match self.uint(&entry[..w]) {
                            DT_NULL => break,
                            DT_NEEDED => info.needed += 1,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(info)
    }
}

/// Identity of a regular file: hard links share it.
pub type FileKey = (u64, u64);

/// One regular ELF file found under a root.
#[derive(Clone, Debug)]
pub struct ElfFile {
    /// Path relative to the root, without a leading slash (the report's form).
    pub rel: String,
    /// Device and inode.
    pub key: FileKey,
    /// The headers, or why they could not be read.
    pub probe: Result<ElfInfo, String>,
}

/// What a walk of a root found.
#[derive(Debug, Default)]
pub struct Walk {
    /// Every regular file with ELF magic, in path order (hard links once per path).
    pub elf: Vec<ElfFile>,
    /// Regular files that could not be opened or read, with the error.
    pub unreadable: Vec<(String, String)>,
    /// How many regular files were looked at.
    pub regular_files: usize,
}

/// Walk `root` without following symlinks and probe every regular file.
pub fn walk_elf_files(root: &Path) -> io::Result<Walk> {
    let mut walk = Walk::default();
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel_dir) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(root.join(&rel_dir))?
            .collect::<io::Result<Vec<_>>>()?
            .into_iter()
            .map(|e| e.file_name())
            .collect();
        entries.sort();
        for name in entries {
            let rel = rel_dir.join(&name);
            let path = root.join(&rel);
            let meta = fs::symlink_metadata(&path)?;
            let ft = meta.file_type();
            if ft.is_dir() {
                stack.push(rel);
            } else if ft.is_file() {
                walk.regular_files += 1;
                let rel_s = rel.to_string_lossy().into_owned();
                match probe(&path) {
                    Ok(Probe::NotElf) => {}
                    Ok(Probe::Elf(info)) => walk.elf.push(ElfFile {
                        rel: rel_s,
                        key: (meta.dev(), meta.ino()),
                        probe: Ok(info),
                    }),
                    Ok(Probe::Malformed(why)) => walk.elf.push(ElfFile {
                        rel: rel_s,
                        key: (meta.dev(), meta.ino()),
                        probe: Err(why),
                    }),
                    Err(e) => walk.unreadable.push((rel_s, e.to_string())),
                }
            }
        }
    }
    walk.elf.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(walk)
}
