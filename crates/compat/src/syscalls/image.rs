//! What the system call analysis needs from an ELF file, beyond the
//! loader's view in `crate::elf`: the executable bytes by address, where
//! functions start, the dynamic symbols a file exports and imports, which
//! GOT slot holds which symbol, and every code address stored in data (a
//! function that may be called through a pointer).
//!
//! Program headers give the segments (what is mapped); symbols and
//! relocations come from the section headers, which stripped files keep.
//! Every read is bounds checked: a damaged table is skipped, never trusted.

use std::collections::HashMap;

use object::elf::{self, FileHeader64};
use object::read::elf::{Dyn, FileHeader, ProgramHeader, Rela, SectionHeader, Sym};
use object::LittleEndian as LE;

const PT_GNU_EH_FRAME: u32 = 0x6474_e550;
const PF_X: u32 = 1;

/// An executable range of the file, by virtual address.
pub(crate) struct CodeRange<'a> {
    pub addr: u64,
    pub bytes: &'a [u8],
}

/// What a GOT slot (or any pointer-sized relocated word) holds.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Slot {
    /// An undefined symbol: an index into [`Image::imports`].
    pub import: Option<u32>,
    /// A defined address in this file (a local symbol, a relative
    /// relocation's addend, an ifunc resolver).
    pub local: Option<u64>,
}

/// The parts of one x86-64 ELF file that the analysis reads.
pub(crate) struct Image<'a> {
    data: &'a [u8],
    loads: Vec<(u64, u64, u64, u64)>, // vaddr, offset, filesz, memsz
    /// The executable segments.
    pub code: Vec<CodeRange<'a>>,
    /// `e_entry` (0: none).
    pub entry: u64,
    /// Where functions start: `.eh_frame_hdr`, symbol tables, init/fini.
    pub starts: Vec<u64>,
    /// Defined dynamic function symbols: name → address.
    pub exports: HashMap<String, u64>,
    /// Undefined dynamic symbols, by index.
    pub imports: Vec<String>,
    /// Relocated words: address → what it holds.
    pub slots: HashMap<u64, Slot>,
    /// Code addresses stored in data (relocations and init/fini arrays):
    /// functions callable through a pointer.
    pub data_code_refs: Vec<u64>,
    /// Init and fini functions (`DT_INIT`, `DT_FINI`, the arrays).
    pub init_fini: Vec<u64>,
    /// `DT_INIT_ARRAY`, `DT_FINI_ARRAY`, `DT_PREINIT_ARRAY`: address, size.
    array_ranges: [(u64, u64); 3],
}

impl<'a> Image<'a> {
    /// Reads `data`; `None` when it is not a little-endian ELF64 file with
    /// readable program headers.
    pub fn read(data: &'a [u8]) -> Option<Image<'a>> {
        let header = FileHeader64::<LE>::parse(data).ok()?;
        let endian = header.endian().ok()?;
        let phdrs = header.program_headers(endian, data).ok()?;
        let mut img = Image {
            data,
            loads: Vec::new(),
            code: Vec::new(),
            entry: header.e_entry(endian),
            starts: Vec::new(),
            exports: HashMap::new(),
            imports: Vec::new(),
            slots: HashMap::new(),
            data_code_refs: Vec::new(),
            init_fini: Vec::new(),
            array_ranges: [(0, 0); 3],
        };
        let mut dynamic = None;
        let mut eh_hdr = None;
        for ph in phdrs {
            match ph.p_type(endian) {
                elf::PT_LOAD => {
                    let (vaddr, off) = (ph.p_vaddr(endian), ph.p_offset(endian));
                    let (filesz, memsz) = (ph.p_filesz(endian), ph.p_memsz(endian));
                    img.loads.push((vaddr, off, filesz, memsz));
                    if ph.p_flags(endian) & PF_X != 0 {
                        if let Ok(bytes) = ph.data(endian, data) {
                            img.code.push(CodeRange { addr: vaddr, bytes });
                        }
                    }
                }
                elf::PT_DYNAMIC => dynamic = ph.dynamic(endian, data).ok().flatten(),
                PT_GNU_EH_FRAME => eh_hdr = Some((ph.p_vaddr(endian), ph.data(endian, data).ok())),
                _ => {}
            }
        }
        if let Some((addr, Some(bytes))) = eh_hdr {
            img.read_eh_frame_hdr(addr, bytes);
        }
        if let Some(dynamic) = dynamic {
            img.read_dynamic(endian, dynamic);
        }
        if let Ok(sections) = header.sections(endian, data) {
            if let Some((_, sec)) = sections.section_by_name(endian, b".gopclntab") {
                if let Ok(bytes) = sec.data(endian, data) {
                    img.read_gopclntab(bytes);
                }
            }
            img.read_symbols(endian, &sections);
            img.read_relocations(endian, &sections);
        }
        if img.entry != 0 {
            img.starts.push(img.entry);
        }
        img.starts.extend(img.init_fini.iter().copied());
        let mut starts = std::mem::take(&mut img.starts);
        starts.retain(|&a| img.is_code(a));
        img.starts = starts;
        img.starts.sort_unstable();
        img.starts.dedup();
        let init_fini: Vec<u64> = img
            .init_fini
            .iter()
            .copied()
            .filter(|&a| img.is_code(a))
            .collect();
        img.init_fini = init_fini;
        img.init_fini.sort_unstable();
        img.init_fini.dedup();
        let mut refs = std::mem::take(&mut img.data_code_refs);
        refs.retain(|&a| img.is_code(a));
        img.data_code_refs = refs;
        img.data_code_refs.sort_unstable();
        img.data_code_refs.dedup();
        Some(img)
    }

    /// Whether `addr` is in an executable segment.
    pub fn is_code(&self, addr: u64) -> bool {
        self.code
            .iter()
            .any(|c| addr >= c.addr && addr - c.addr < c.bytes.len() as u64)
    }

    /// The bytes of the file at a virtual address, up to `len`.
    fn at(&self, addr: u64, len: usize) -> Option<&'a [u8]> {
        let &(vaddr, off, filesz, _) = self
            .loads
            .iter()
            .find(|&&(v, _, f, _)| addr >= v && addr - v < f)?;
        let start = off.checked_add(addr - vaddr)?;
        let avail = filesz - (addr - vaddr);
        let end = start.checked_add((len as u64).min(avail))?;
        self.data
            .get(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
    }

    /// The 64-bit word at a virtual address.
    pub fn word(&self, addr: u64) -> Option<u64> {
        let b = self.at(addr, 8)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }

    /// Function starts from the binary search table of `.eh_frame_hdr`
    /// (`DW_EH_PE_datarel | DW_EH_PE_sdata4` entries, as every toolchain
    /// writes them).
    fn read_eh_frame_hdr(&mut self, hdr_addr: u64, b: &[u8]) {
        if b.len() < 12 || b[0] != 1 || b[3] != 0x3b {
            return;
        }
        // eh_frame_ptr is 4 bytes in every encoding seen here (pcrel|sdata4).
        if b[1] & 0x0f != 0x0b || b[2] != 0x03 {
            return;
        }
        let count = u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize;
        let table = &b[12..];
        for entry in table.chunks_exact(8).take(count) {
            let rel = i32::from_le_bytes([entry[0], entry[1], entry[2], entry[3]]);
            self.starts.push(hdr_addr.wrapping_add(rel as i64 as u64));
        }
    }

    /// Function starts from Go's function table (`.gopclntab`, Go 1.18 and
    /// later), which stripped Go binaries keep: the runtime needs it.
    fn read_gopclntab(&mut self, b: &[u8]) {
        let word = |off: usize| -> Option<u64> {
            Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
        };
        let magic = b
            .get(..4)
            .map(|m| u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
        // 0xfffffff0: Go 1.18 and 1.19; 0xfffffff1: Go 1.20 and later.
        if !matches!(magic, Some(0xffff_fff0 | 0xffff_fff1)) || b.get(7) != Some(&8) {
            return;
        }
        let (Some(nfunc), Some(text), Some(functab)) = (word(8), word(24), word(64)) else {
            return;
        };
        let Ok(functab) = usize::try_from(functab) else {
            return;
        };
        for i in 0..nfunc.min(1 << 22) as usize {
            let off = functab + 8 * i;
            let Some(e) = b.get(off..off + 4) else { return };
            let entry = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
            self.starts.push(text.wrapping_add(entry as u64));
        }
    }

    fn read_dynamic(&mut self, endian: LE, dynamic: &[elf::Dyn64<LE>]) {
        let mut arrays = [(0u64, 0u64); 3];
        for d in dynamic {
            let val = d.d_val(endian);
            match d.d_tag(endian) as u32 {
                elf::DT_NULL => break,
                elf::DT_INIT | elf::DT_FINI => self.init_fini.push(val),
                elf::DT_INIT_ARRAY => arrays[0].0 = val,
                elf::DT_INIT_ARRAYSZ => arrays[0].1 = val,
                elf::DT_FINI_ARRAY => arrays[1].0 = val,
                elf::DT_FINI_ARRAYSZ => arrays[1].1 = val,
                elf::DT_PREINIT_ARRAY => arrays[2].0 = val,
                elf::DT_PREINIT_ARRAYSZ => arrays[2].1 = val,
                _ => {}
            }
        }
        for (addr, size) in arrays {
            // Words as stored (absolute in executables; relocations add
            // the rest, see read_relocations).
            for i in 0..(size / 8).min(1 << 16) {
                if let Some(w) = self.word(addr + 8 * i) {
                    self.init_fini.push(w);
                }
            }
        }
        self.init_fini.sort_unstable();
        self.init_fini.dedup();
        self.array_ranges = arrays;
    }

    fn read_symbols(
        &mut self,
        endian: LE,
        sections: &object::read::elf::SectionTable<'a, FileHeader64<LE>>,
    ) {
        for kind in [elf::SHT_SYMTAB, elf::SHT_DYNSYM] {
            let Ok(table) = sections.symbols(endian, self.data, kind) else {
                continue;
            };
            for sym in table.iter() {
                let ty = sym.st_type();
                let defined = sym.st_shndx(endian) != elf::SHN_UNDEF;
                if defined && (ty == elf::STT_FUNC || ty == elf::STT_GNU_IFUNC) {
                    let value = sym.st_value(endian);
                    self.starts.push(value);
                    if kind == elf::SHT_DYNSYM && sym.st_bind() != elf::STB_LOCAL {
                        if let Ok(name) = table.symbol_name(endian, sym) {
                            self.exports
                                .insert(String::from_utf8_lossy(name).into_owned(), value);
                        }
                    }
                }
            }
        }
    }

    fn read_relocations(
        &mut self,
        endian: LE,
        sections: &object::read::elf::SectionTable<'a, FileHeader64<LE>>,
    ) {
        let dynsyms = sections.symbols(endian, self.data, elf::SHT_DYNSYM).ok();
        let mut import_ids: HashMap<String, u32> = HashMap::new();
        for section in sections.iter() {
            match section.sh_type(endian) {
                elf::SHT_RELA => {
                    let Ok(Some((relas, _link))) = section.rela(endian, self.data) else {
                        continue;
                    };
                    for r in relas {
                        let offset = r.r_offset(endian);
                        let addend = r.r_addend(endian) as u64;
                        let sym_index = r.r_sym(endian, false);
                        let mut slot = Slot::default();
                        match r.r_type(endian, false) {
                            elf::R_X86_64_RELATIVE | elf::R_X86_64_IRELATIVE => {
                                slot.local = Some(addend)
                            }
                            elf::R_X86_64_64 | elf::R_X86_64_GLOB_DAT | elf::R_X86_64_JUMP_SLOT => {
                                let Some(syms) = &dynsyms else { continue };
                                let Ok(sym) = syms.symbol(object::SymbolIndex(sym_index as usize))
                                else {
                                    continue;
                                };
                                if sym.st_shndx(endian) != elf::SHN_UNDEF {
                                    slot.local = Some(sym.st_value(endian).wrapping_add(addend));
                                } else if let Ok(name) = syms.symbol_name(endian, sym) {
                                    if name.is_empty() {
                                        continue;
                                    }
                                    let name = String::from_utf8_lossy(name).into_owned();
                                    let next = self.imports.len() as u32;
                                    let id = *import_ids.entry(name.clone()).or_insert(next);
                                    if id == next {
                                        self.imports.push(name);
                                    }
                                    slot.import = Some(id);
                                }
                            }
                            _ => continue,
                        }
                        if let Some(local) = slot.local {
                            self.data_code_refs.push(local);
                        }
                        self.slots.insert(offset, slot);
                    }
                }
                elf::SHT_RELR => {
                    let Ok(Some(relrs)) = section.relr(endian, self.data) else {
                        continue;
                    };
                    for offset in relrs.take(1 << 22) {
                        if let Some(w) = self.word(offset) {
                            self.data_code_refs.push(w);
                            self.slots.insert(
                                offset,
                                Slot {
                                    import: None,
                                    local: Some(w),
                                },
                            );
                        }
                    }
                }
                _ => {}
            }
        }
        // Relocated init/fini array entries.
        for (addr, size) in self.array_ranges {
            for (&off, slot) in &self.slots {
                if off >= addr && off < addr.saturating_add(size) {
                    if let Some(l) = slot.local {
                        self.init_fini.push(l);
                    }
                }
            }
        }
        // Every undefined dynamic symbol is an import, relocated or not
        // (a program may name a function it only takes the address of).
        if let Some(syms) = &dynsyms {
            for sym in syms.iter() {
                if sym.st_shndx(endian) == elf::SHN_UNDEF {
                    if let Ok(name) = syms.symbol_name(endian, sym) {
                        if !name.is_empty() {
                            let name = String::from_utf8_lossy(name).into_owned();
                            let next = self.imports.len() as u32;
                            if *import_ids.entry(name.clone()).or_insert(next) == next {
                                self.imports.push(name);
                            }
                        }
                    }
                }
            }
        }
    }
}
