//! Notes: `NT_GNU_ABI_TAG` (the minimum kernel) and the GNU property note
//! (`GNU_PROPERTY_X86_ISA_1_NEEDED`, the x86-64 micro-architecture level).

use object::read::elf::{FileHeader, NoteIterator};
use object::Endianness;

use super::{AbiTag, ElfInfo};

const NT_GNU_ABI_TAG: u32 = 1;
const NT_GNU_PROPERTY_TYPE_0: u32 = 5;
const GNU_PROPERTY_X86_ISA_1_NEEDED: u32 = 0xc000_8002;

/// Reads the notes of one note segment into `info`; a malformed note ends
/// the segment quietly (the loader ignores what it cannot parse).
pub(super) fn read_notes<Elf: FileHeader<Endian = Endianness>>(
    bytes: &[u8],
    align: Elf::Word,
    endian: Endianness,
    info: &mut ElfInfo,
) {
    let Ok(mut notes) = NoteIterator::<Elf>::new(endian, align, bytes) else {
        return;
    };
    let mut count = 0;
    while let Ok(Some(note)) = notes.next() {
        count += 1;
        if count > 4096 {
            break;
        }
        if note.name() != b"GNU" {
            continue;
        }
        match note.n_type(endian) {
            NT_GNU_ABI_TAG => {
                let d = note.desc();
                if d.len() >= 16 {
                    let w = |i: usize| {
                        let b = [d[i], d[i + 1], d[i + 2], d[i + 3]];
                        if endian == Endianness::Big {
                            u32::from_be_bytes(b)
                        } else {
                            u32::from_le_bytes(b)
                        }
                    };
                    info.abi_tag = Some(AbiTag {
                        os: w(0),
                        kernel: (w(4), w(8), w(12)),
                    });
                }
            }
            NT_GNU_PROPERTY_TYPE_0 => {
                let Some(mut props) = note.gnu_properties(endian) else {
                    continue;
                };
                while let Ok(Some(p)) = props.next() {
                    if p.pr_type() == GNU_PROPERTY_X86_ISA_1_NEEDED {
                        if let Ok(v) = p.data_u32(endian) {
                            info.x86_isa_needed = Some(info.x86_isa_needed.unwrap_or(0) | v);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}
