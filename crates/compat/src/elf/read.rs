//! Reading an [`ElfInfo`] from the bytes of a file.
//!
//! The file header and program headers are parsed with `object`'s bounds
//! checked ELF layer; the dynamic segment, string table and version records
//! are read by address, translated through the `PT_LOAD` segments, as the
//! loader sees them once mapped. Every read is bounds checked and every
//! chain walk is capped, so a truncated or hostile file yields an
//! [`ElfError`], never a panic or an unbounded loop.

use object::elf::{FileHeader32, FileHeader64};
use object::read::elf::{FileHeader, ProgramHeader};
use object::Endianness;
use thiserror::Error;

use super::notes::read_notes;
use super::version::{read_verdef, read_verneed};
use super::{Dynamic, ElfClass, ElfInfo, NeededKind, EM_X86_64};

/// Why a file could not be read as ELF.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ElfError {
    /// The file does not start with the ELF magic.
    #[error("not an ELF file")]
    NotElf,
    /// The file ends before a structure it announces.
    #[error("truncated: {0}")]
    Truncated(&'static str),
    /// A structure is inconsistent.
    #[error("malformed: {0}")]
    Malformed(String),
}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PT_NOTE: u32 = 4;
const PT_GNU_PROPERTY: u32 = 0x6474_e553;

const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_SONAME: u64 = 14;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;
const DT_RELR: u64 = 36;
const DT_FLAGS_1: u64 = 0x6fff_fffb;
const DT_VERDEF: u64 = 0x6fff_fffc;
const DT_VERNEED: u64 = 0x6fff_fffe;
const DT_AUXILIARY: u64 = 0x7fff_fffd;
const DT_FILTER: u64 = 0x7fff_ffff;

/// At most this many dynamic entries are read (a real file has < 100).
const MAX_DYN: usize = 1 << 16;
/// Strings longer than this are treated as malformed.
pub(super) const MAX_STR: usize = 1 << 16;

/// Reads the summary of an ELF file from its bytes.
pub fn parse(data: &[u8]) -> Result<ElfInfo, ElfError> {
    if data.len() < 4 || &data[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    if data.len() < 16 {
        return Err(ElfError::Truncated("ELF identification"));
    }
    let mut info = ElfInfo {
        header_error: loader_header_error(data),
        ..Default::default()
    };
    match data[4] {
        1 => {
            info.class = Some(ElfClass::Elf32);
            parse_class::<FileHeader32<Endianness>>(data, &mut info)?;
        }
        2 => {
            info.class = Some(ElfClass::Elf64);
            parse_class::<FileHeader64<Endianness>>(data, &mut info)?;
        }
        c => return Err(ElfError::Malformed(format!("unknown ELF class {c}"))),
    }
    Ok(info)
}

/// What glibc's x86-64 `open_verify` says of this header, apart from the
/// class and machine (which make it look further instead): the message of
/// the fatal error it raises, if any, in the order it checks.
fn loader_header_error(d: &[u8]) -> Option<&'static str> {
    if d.len() < 64 {
        return Some("file too short");
    }
    if d[4] != 2 {
        // Another class: not fatal, decided by the class check.
        return None;
    }
    if d[5] != 1 {
        return Some("ELF file data encoding not little-endian");
    }
    if d[6] != 1 {
        return Some("ELF file version ident does not match current one");
    }
    let (osabi, abiversion) = (d[7], d[8]);
    if osabi != 0 && osabi != 3 {
        return Some("ELF file OS ABI invalid");
    }
    // LIBC_ABI_MAX is 4 on x86-64 (default, unique, ifunc, absolute).
    if !(abiversion == 0 || (osabi == 3 && abiversion < 4)) {
        return Some("ELF file ABI version invalid");
    }
    if d[9..16].iter().any(|&b| b != 0) {
        return Some("nonzero padding in e_ident");
    }
    let e_version = u32::from_le_bytes([d[20], d[21], d[22], d[23]]);
    if e_version != 1 {
        return Some("ELF file version does not match current one");
    }
    let machine = u16::from_le_bytes([d[18], d[19]]);
    if machine != EM_X86_64 {
        // Another machine: not fatal.
        return None;
    }
    let e_type = u16::from_le_bytes([d[16], d[17]]);
    if e_type != 2 && e_type != 3 {
        return Some("only ET_DYN and ET_EXEC can be loaded");
    }
    let phentsize = u16::from_le_bytes([d[54], d[55]]);
    if phentsize != 56 {
        return Some("ELF file's phentsize not the expected size");
    }
    let phoff = u64::from_le_bytes(d[32..40].try_into().unwrap_or([0; 8]));
    let phnum = u16::from_le_bytes([d[56], d[57]]) as u64;
    if phoff.saturating_add(phnum * 56) > d.len() as u64 {
        return Some("cannot read file data");
    }
    None
}

/// A `PT_LOAD` segment: where an address range lives in the file.
#[derive(Clone, Copy, Debug)]
struct Load {
    vaddr: u64,
    offset: u64,
    filesz: u64,
}

/// The bytes of a file, read by address as the loader maps them.
pub(super) struct Image<'a> {
    pub data: &'a [u8],
    pub big_endian: bool,
    loads: Vec<Load>,
}

impl<'a> Image<'a> {
    /// The file offset of virtual address `addr`.
    pub fn offset_of(&self, addr: u64) -> Option<usize> {
        self.loads
            .iter()
            .find(|l| addr >= l.vaddr && addr - l.vaddr < l.filesz)
            .and_then(|l| (addr - l.vaddr).checked_add(l.offset))
            .and_then(|o| usize::try_from(o).ok())
            .filter(|&o| o < self.data.len())
    }

    pub fn u16_at(&self, off: usize) -> Option<u16> {
        let b: [u8; 2] = self.data.get(off..off.checked_add(2)?)?.try_into().ok()?;
        Some(if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    pub fn u32_at(&self, off: usize) -> Option<u32> {
        let b: [u8; 4] = self.data.get(off..off.checked_add(4)?)?.try_into().ok()?;
        Some(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    pub fn u64_at(&self, off: usize) -> Option<u64> {
        let b: [u8; 8] = self.data.get(off..off.checked_add(8)?)?.try_into().ok()?;
        Some(if self.big_endian {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        })
    }

    /// The NUL-terminated string at file offset `off`.
    pub fn str_at(&self, off: usize) -> Result<String, ElfError> {
        let rest = self
            .data
            .get(off..)
            .ok_or(ElfError::Truncated("string table"))?;
        let end = rest
            .iter()
            .take(MAX_STR)
            .position(|&b| b == 0)
            .ok_or(ElfError::Truncated("string"))?;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }
}

fn parse_class<Elf: FileHeader<Endian = Endianness>>(
    data: &[u8],
    info: &mut ElfInfo,
) -> Result<(), ElfError> {
    let header = Elf::parse(data).map_err(|_| ElfError::Truncated("file header"))?;
    let endian = header
        .endian()
        .map_err(|_| ElfError::Malformed("unknown byte order".into()))?;
    info.machine = header.e_machine(endian);
    info.e_type = header.e_type(endian);
    let phdrs = header
        .program_headers(endian, data)
        .map_err(|_| ElfError::Truncated("program headers"))?;
    let big_endian = endian == Endianness::Big;

    let mut loads = Vec::new();
    let mut dynamic = None;
    for ph in phdrs {
        let (vaddr, offset) = (ph.p_vaddr(endian).into(), ph.p_offset(endian).into());
        let (filesz, memsz): (u64, u64) = (ph.p_filesz(endian).into(), ph.p_memsz(endian).into());
        match ph.p_type(endian) {
            PT_LOAD => {
                info.has_load = true;
                if (vaddr.wrapping_sub(offset)) & 0xfff != 0 {
                    info.load_misaligned = true;
                }
                loads.push(Load {
                    vaddr,
                    offset,
                    filesz,
                });
            }
            PT_DYNAMIC => {
                // The last PT_DYNAMIC wins, as in the loader.
                if filesz == 0 {
                    info.empty_dynamic = true;
                    dynamic = None;
                } else {
                    let _ = memsz;
                    dynamic = Some((offset, filesz));
                }
            }
            PT_INTERP => {
                let bytes = ph
                    .data(endian, data)
                    .map_err(|_| ElfError::Truncated("PT_INTERP"))?;
                let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
                // Separate debug files keep PT_INTERP without contents.
                if end > 0 {
                    info.interp = Some(String::from_utf8_lossy(&bytes[..end]).into_owned());
                }
            }
            PT_NOTE | PT_GNU_PROPERTY => {
                // A note segment that runs off the file is skipped: the
                // kernel and the loader only look at notes they can read.
                if let Ok(bytes) = ph.data(endian, data) {
                    read_notes::<Elf>(bytes, ph.p_align(endian), endian, info);
                }
            }
            _ => {}
        }
    }
    let image = Image {
        data,
        big_endian,
        loads,
    };
    if let Some((offset, size)) = dynamic {
        info.dynamic = Some(read_dynamic(&image, offset, size, info.class)?);
    }
    Ok(())
}

fn read_dynamic(
    image: &Image<'_>,
    offset: u64,
    size: u64,
    class: Option<ElfClass>,
) -> Result<Dynamic, ElfError> {
    let wide = class == Some(ElfClass::Elf64);
    let entsize: usize = if wide { 16 } else { 8 };
    let start = usize::try_from(offset).map_err(|_| ElfError::Truncated("PT_DYNAMIC"))?;
    let count = usize::try_from(size / entsize as u64)
        .unwrap_or(usize::MAX)
        .min(MAX_DYN);
    let word = |off: usize| -> Option<u64> {
        if wide {
            image.u64_at(off)
        } else {
            image.u32_at(off).map(u64::from)
        }
    };
    let mut entries = Vec::new();
    for i in 0..count {
        // Offsets come from the file: checked, never wrapped.
        let at = i.checked_mul(entsize).and_then(|o| start.checked_add(o));
        let val_at = at.and_then(|a| a.checked_add(entsize / 2));
        let (Some(tag), Some(val)) = (at.and_then(word), val_at.and_then(word)) else {
            return Err(ElfError::Truncated("dynamic section"));
        };
        if tag == DT_NULL {
            break;
        }
        entries.push((tag, val));
    }

    let last = |tag: u64| entries.iter().rev().find(|e| e.0 == tag).map(|e| e.1);
    let mut dynamic = Dynamic::default();
    let needs_strings = entries.iter().any(|e| {
        matches!(
            e.0,
            DT_NEEDED | DT_SONAME | DT_RPATH | DT_RUNPATH | DT_FILTER | DT_AUXILIARY
        )
    }) || last(DT_VERNEED).is_some()
        || last(DT_VERDEF).is_some();
    dynamic.flags_1 = last(DT_FLAGS_1).unwrap_or(0);
    dynamic.has_relr = last(DT_RELR).is_some();
    if !needs_strings {
        return Ok(dynamic);
    }
    let strtab = last(DT_STRTAB)
        .and_then(|a| image.offset_of(a))
        .ok_or_else(|| ElfError::Malformed("DT_STRTAB is missing or outside the file".into()))?;
    let string = |off: u64| -> Result<String, ElfError> {
        let at = usize::try_from(off)
            .ok()
            .and_then(|o| strtab.checked_add(o))
            .ok_or(ElfError::Truncated("string table"))?;
        image.str_at(at)
    };
    for &(tag, val) in &entries {
        let kind = match tag {
            DT_NEEDED => NeededKind::Needed,
            DT_FILTER => NeededKind::Filter,
            DT_AUXILIARY => NeededKind::Auxiliary,
            _ => continue,
        };
        dynamic.needed.push((kind, string(val)?));
    }
    dynamic.soname = last(DT_SONAME).map(string).transpose()?;
    dynamic.runpath = last(DT_RUNPATH).map(string).transpose()?;
    if dynamic.runpath.is_none() {
        dynamic.rpath = last(DT_RPATH).map(string).transpose()?;
    }
    if let Some(addr) = last(DT_VERNEED) {
        let off = image
            .offset_of(addr)
            .ok_or_else(|| ElfError::Malformed("DT_VERNEED outside the file".into()))?;
        let (needs, error) = read_verneed(image, off, &string)?;
        dynamic.verneed = needs;
        dynamic.version_error = error;
    }
    if let Some(addr) = last(DT_VERDEF) {
        let off = image
            .offset_of(addr)
            .ok_or_else(|| ElfError::Malformed("DT_VERDEF outside the file".into()))?;
        dynamic.verdef = Some(read_verdef(image, off, &string)?);
    }
    Ok(dynamic)
}

#[cfg(test)]
mod tests {

    /// Found by the `elf_reader` fuzz target: a PT_DYNAMIC whose offset is
    /// near `u64::MAX` made the entry offsets overflow.
    #[test]
    fn huge_dynamic_offset_is_an_error_not_a_panic() {
        let data = include_bytes!("../../testdata/fuzz-dynamic-offset-overflow.elf");
        assert!(parse(data).is_err());
    }

    use super::*;

    fn host_file(path: &str) -> Option<Vec<u8>> {
        std::fs::read(path).ok()
    }

    #[test]
    fn not_elf_and_short_files() {
        assert_eq!(parse(b"#!/bin/sh\n").unwrap_err(), ElfError::NotElf);
        assert_eq!(parse(b"").unwrap_err(), ElfError::NotElf);
        assert!(matches!(
            parse(b"\x7fELF\x02\x01"),
            Err(ElfError::Truncated(_))
        ));
    }

    #[test]
    fn reads_this_test_binary() {
        let exe = std::env::current_exe().unwrap();
        let data = std::fs::read(exe).unwrap();
        let info = parse(&data).unwrap();
        assert_eq!(info.class, Some(ElfClass::Elf64));
        assert_eq!(info.machine, EM_X86_64);
        assert_eq!(info.header_error, None);
        let dynamic = info.dynamic.expect("dynamic section");
        assert!(dynamic.needed.iter().any(|(_, n)| n.starts_with("libc.so")));
        assert!(dynamic.verneed.iter().any(|v| v.file.starts_with("libc.so")
            && v.versions.iter().any(|a| a.name.starts_with("GLIBC_2."))));
    }

    #[test]
    fn reads_libc_version_definitions() {
        let Some(data) = host_file("/lib/x86_64-linux-gnu/libc.so.6") else {
            return;
        };
        let info = parse(&data).unwrap();
        let dynamic = info.dynamic.unwrap();
        assert_eq!(dynamic.soname.as_deref(), Some("libc.so.6"));
        let defs = dynamic.verdef.unwrap();
        assert!(defs.iter().any(|d| d.name == "GLIBC_2.2.5"));
        assert!(defs.iter().any(|d| d.base));
        assert!(defs
            .iter()
            .all(|d| d.hash == super::super::elf_hash(d.name.as_bytes())));
    }

    #[test]
    fn every_truncation_of_a_real_binary_is_an_error_or_a_summary() {
        let exe = std::fs::read("/bin/true").unwrap_or_default();
        if exe.is_empty() {
            return;
        }
        // Step through prefixes: none may panic.
        let mut len = 0;
        while len < exe.len() {
            let _ = parse(&exe[..len]);
            len += 1 + len / 7;
        }
    }

    #[test]
    fn header_errors_follow_the_loader_order() {
        let mut d = std::fs::read("/bin/true").unwrap_or_default();
        if d.len() < 64 {
            return;
        }
        assert_eq!(loader_header_error(&d), None);
        d[9] = 1;
        assert_eq!(loader_header_error(&d), Some("nonzero padding in e_ident"));
        d[9] = 0;
        d[16] = 1; // ET_REL
        assert_eq!(
            loader_header_error(&d),
            Some("only ET_DYN and ET_EXEC can be loaded")
        );
        assert_eq!(loader_header_error(&d[..40]), Some("file too short"));
    }
}
