//! Symbol version records: `Verneed`/`Vernaux` and `Verdef`/`Verdaux`.
//!
//! Walked as the loader walks them: by the `*_next` offsets until one is
//! zero (the counts in the dynamic section and the records are not
//! trusted), each step bounds checked and the walk capped, so a loop or an
//! absurd count in a hostile file ends in an error.

use super::read::{ElfError, Image};
use super::{VerDef, VerNeed, VerNeedAux};

/// No real file has more version records than this.
const MAX_RECORDS: usize = 1 << 16;
const VER_FLG_BASE: u16 = 1;
const VER_FLG_WEAK: u16 = 2;

type Strings<'s> = dyn Fn(u64) -> Result<String, ElfError> + 's;

/// Reads the `Verneed` chain at file offset `off`. The second value is the
/// loader's refusal of the chain, if any (it checks `vn_version` of the
/// first record only).
pub(super) fn read_verneed(
    image: &Image<'_>,
    mut off: usize,
    string: &Strings<'_>,
) -> Result<(Vec<VerNeed>, Option<String>), ElfError> {
    let trunc = || ElfError::Truncated("version needs");
    let mut out = Vec::new();
    let mut error = None;
    let mut records = 0usize;
    loop {
        let version = image.u16_at(off).ok_or_else(trunc)?;
        if out.is_empty() && version != 1 {
            error = Some(format!("unsupported version {version} of Verneed record"));
        }
        let file = string(image.u32_at(off + 4).ok_or_else(trunc)? as u64)?;
        let aux = image.u32_at(off + 8).ok_or_else(trunc)? as usize;
        let next = image.u32_at(off + 12).ok_or_else(trunc)? as usize;
        let mut versions = Vec::new();
        let mut a = off.checked_add(aux).ok_or_else(trunc)?;
        loop {
            records += 1;
            if records > MAX_RECORDS {
                return Err(ElfError::Malformed("too many version records".into()));
            }
            let hash = image.u32_at(a).ok_or_else(trunc)?;
            let flags = image.u16_at(a + 4).ok_or_else(trunc)?;
            let name = string(image.u32_at(a + 8).ok_or_else(trunc)? as u64)?;
            let anext = image.u32_at(a + 12).ok_or_else(trunc)? as usize;
            versions.push(VerNeedAux {
                name,
                hash,
                weak: flags & VER_FLG_WEAK != 0,
            });
            if anext == 0 {
                break;
            }
            a = a.checked_add(anext).ok_or_else(trunc)?;
        }
        out.push(VerNeed { file, versions });
        if next == 0 {
            break;
        }
        off = off.checked_add(next).ok_or_else(trunc)?;
    }
    Ok((out, error))
}

/// Reads the `Verdef` chain at file offset `off`.
pub(super) fn read_verdef(
    image: &Image<'_>,
    mut off: usize,
    string: &Strings<'_>,
) -> Result<Vec<VerDef>, ElfError> {
    let trunc = || ElfError::Truncated("version definitions");
    let mut out = Vec::new();
    loop {
        if out.len() >= MAX_RECORDS {
            return Err(ElfError::Malformed("too many version definitions".into()));
        }
        let version = image.u16_at(off).ok_or_else(trunc)?;
        let flags = image.u16_at(off + 2).ok_or_else(trunc)?;
        let hash = image.u32_at(off + 8).ok_or_else(trunc)?;
        let aux = image.u32_at(off + 12).ok_or_else(trunc)? as usize;
        let next = image.u32_at(off + 16).ok_or_else(trunc)? as usize;
        let a = off.checked_add(aux).ok_or_else(trunc)?;
        let name = string(image.u32_at(a).ok_or_else(trunc)? as u64)?;
        out.push(VerDef {
            version,
            base: flags & VER_FLG_BASE != 0,
            hash,
            name,
        });
        if next == 0 {
            break;
        }
        off = off.checked_add(next).ok_or_else(trunc)?;
    }
    Ok(out)
}
