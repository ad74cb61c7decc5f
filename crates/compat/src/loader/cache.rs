//! `/etc/ld.so.cache`: parsing and lookup, as glibc's loader does them.
//!
//! Three layouts exist: the current `glibc-ld.so.cache1.1` format alone, the
//! old `ld.so-1.7.0` format alone, and the old format with the new one
//! following it. The new format may carry an extension directory whose
//! glibc-hwcaps section names the subdirectories (`x86-64-v3`, ...) that
//! hwcaps entries live in. [`LdCache::lookup`] is glibc 2.36's
//! `search_cache`: a binary search with the loader's own name order
//! (numbers compare numerically), then the first usable entry, where
//! glibc-hwcaps entries compete by priority and legacy hwcap bits and
//! platform bits exclude entries the CPU cannot use.

use std::cmp::Ordering;

use serde::Serialize;
use thiserror::Error;

use super::hwcaps::LoaderCpu;

const MAGIC_OLD: &[u8] = b"ld.so-1.7.0";
const MAGIC_NEW: &[u8] = b"glibc-ld.so.cache1.1";
const HEADER_OLD: usize = 16;
const HEADER_NEW: usize = 48;
const ENTRY_OLD: usize = 12;
const ENTRY_NEW: usize = 24;
const EXTENSION_MAGIC: u32 = (-358_342_284i32) as u32;
const TAG_GENERATOR: u32 = 0;
const TAG_GLIBC_HWCAPS: u32 = 1;
/// `DL_CACHE_HWCAP_EXTENSION`.
const HWCAP_EXTENSION: u64 = 1 << 62;
/// `FLAG_ELF_LIBC6 | FLAG_X8664_LIB64`: the only flags the x86-64 loader
/// accepts.
pub const X86_64_FLAGS: i32 = 0x303;

/// Why a cache file is not usable.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheError {
    /// Neither magic string was found where the loader looks.
    #[error("not an ld.so.cache file")]
    BadMagic,
    /// The header announces more entries than the file holds.
    #[error("truncated: the header announces {0} entries")]
    Truncated(u32),
    /// The cache was written for the other byte order.
    #[error("written for another byte order")]
    WrongEndian,
}

/// The layout a cache file was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum CacheFormat {
    /// `glibc-ld.so.cache1.1` alone.
    New,
    /// `ld.so-1.7.0` followed by `glibc-ld.so.cache1.1`.
    OldWithNew,
    /// `ld.so-1.7.0` alone.
    Old,
}

/// One cache entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CacheEntry {
    /// The entry's flags (0x303 for an x86-64 libc6 library).
    pub flags: i32,
    /// The soname the entry is found by; `None` if its string index is
    /// outside the file.
    pub name: Option<String>,
    /// The path it leads to; `None` if its string index is outside the file.
    pub path: Option<String>,
    /// The hwcap word (0 in the old format).
    pub hwcap: u64,
    /// For a glibc-hwcaps entry, its subdirectory name (`x86-64-v3`).
    pub hwcaps_subdir: Option<String>,
}

impl CacheEntry {
    /// Whether this is a glibc-hwcaps (extension) entry.
    fn named_hwcap(&self) -> bool {
        ((self.hwcap >> 32) & !0x3ff) == (HWCAP_EXTENSION >> 32)
    }
}

/// A parsed `ld.so.cache`.
#[derive(Clone, Debug)]
pub struct LdCache {
    format: CacheFormat,
    entries: Vec<CacheEntry>,
    /// The keys as raw bytes, for the loader's comparison; `None` when
    /// the index is bogus.
    keys: Vec<Option<Vec<u8>>>,
    /// The glibc-hwcaps section: subdirectory names by index (`None` when
    /// an index is outside the file).
    hwcaps: Vec<Option<String>>,
    generator: Option<String>,
}

impl LdCache {
    /// Parses a cache file's bytes.
    pub fn parse(data: &[u8]) -> Result<LdCache, CacheError> {
        let u32_at = |o: usize| -> Option<u32> {
            Some(u32::from_le_bytes(
                data.get(o..o.checked_add(4)?)?.try_into().ok()?,
            ))
        };
        if data.len() > HEADER_NEW && data.starts_with(MAGIC_NEW) {
            let nlibs = u32_at(20).unwrap_or(0);
            if (data.len() - HEADER_NEW) / ENTRY_NEW < nlibs as usize {
                return Err(CacheError::Truncated(nlibs));
            }
            return LdCache::parse_new(data, 0, CacheFormat::New);
        }
        if data.len() > HEADER_OLD && data.starts_with(MAGIC_OLD) {
            let nlibs = u32_at(12).unwrap_or(0) as usize;
            if (data.len() - HEADER_OLD) / ENTRY_OLD < nlibs {
                return Err(CacheError::Truncated(nlibs as u32));
            }
            let end_old = HEADER_OLD + nlibs * ENTRY_OLD;
            let new_at = (end_old + 7) & !7;
            if data.len() >= new_at + HEADER_NEW && data[new_at..].starts_with(MAGIC_NEW) {
                return LdCache::parse_new(data, new_at, CacheFormat::OldWithNew);
            }
            // Old format only: strings follow the entries.
            let strings = &data[end_old..];
            let mut cache = LdCache {
                format: CacheFormat::Old,
                entries: Vec::with_capacity(nlibs),
                keys: Vec::with_capacity(nlibs),
                hwcaps: Vec::new(),
                generator: None,
            };
            for i in 0..nlibs {
                let at = HEADER_OLD + i * ENTRY_OLD;
                let flags = u32_at(at).unwrap_or(0) as i32;
                let key = cstr(strings, u32_at(at + 4).unwrap_or(u32::MAX) as usize);
                let value = cstr(strings, u32_at(at + 8).unwrap_or(u32::MAX) as usize);
                cache.push(flags, key, value, 0, None);
            }
            return Ok(cache);
        }
        Err(CacheError::BadMagic)
    }

    fn parse_new(data: &[u8], base: usize, format: CacheFormat) -> Result<LdCache, CacheError> {
        let u32_at = |o: usize| -> Option<u32> {
            Some(u32::from_le_bytes(
                data.get(o..o.checked_add(4)?)?.try_into().ok()?,
            ))
        };
        let u64_at = |o: usize| -> Option<u64> {
            Some(u64::from_le_bytes(
                data.get(o..o.checked_add(8)?)?.try_into().ok()?,
            ))
        };
        let flags = data.get(base + 28).copied().unwrap_or(0);
        if flags != 0 && flags & 3 != 2 {
            return Err(CacheError::WrongEndian);
        }
        let nlibs = u32_at(base + 20).unwrap_or(0) as usize;
        // String indices are relative to the new header; the loader bounds
        // them by the file size only.
        let strings = &data[base..];
        let mut cache = LdCache {
            format,
            entries: Vec::new(),
            keys: Vec::new(),
            hwcaps: Vec::new(),
            generator: None,
        };
        // Extension directory (offsets are from the start of the file).
        let ext = u32_at(base + 32).unwrap_or(0) as usize;
        if ext != 0 && ext % 4 == 0 && u32_at(ext) == Some(EXTENSION_MAGIC) {
            let count = u32_at(ext + 4).unwrap_or(0) as usize;
            let fits = count
                .checked_mul(16)
                .and_then(|n| n.checked_add(ext + 8))
                .is_some_and(|end| end <= data.len());
            if fits {
                for i in 0..count {
                    let s = ext + 8 + i * 16;
                    let (Some(tag), Some(off), Some(size)) =
                        (u32_at(s), u32_at(s + 8), u32_at(s + 12))
                    else {
                        break;
                    };
                    let (off, size) = (off as usize, size as usize);
                    if off.checked_add(size).is_none_or(|end| end > data.len()) {
                        // The loader drops every extension then.
                        cache.hwcaps.clear();
                        cache.generator = None;
                        break;
                    }
                    match tag {
                        TAG_GENERATOR => {
                            cache.generator =
                                Some(String::from_utf8_lossy(&data[off..off + size]).into_owned());
                        }
                        TAG_GLIBC_HWCAPS if size > 0 && size % 4 == 0 && off % 4 == 0 => {
                            cache.hwcaps = (0..size / 4)
                                .map(|k| {
                                    let idx = u32_at(off + 4 * k).unwrap_or(u32::MAX) as usize;
                                    cstr(strings, idx).map(|b| String::from_utf8_lossy(&b).into())
                                })
                                .collect();
                        }
                        _ => {}
                    }
                }
            }
        }
        for i in 0..nlibs {
            let at = base + HEADER_NEW + i * ENTRY_NEW;
            let (Some(flags), Some(key), Some(value), Some(hwcap)) =
                (u32_at(at), u32_at(at + 4), u32_at(at + 8), u64_at(at + 16))
            else {
                break;
            };
            let key = cstr(strings, key as usize);
            let value = cstr(strings, value as usize);
            cache.push(flags as i32, key, value, hwcap, None);
        }
        for e in &mut cache.entries {
            if e.named_hwcap() {
                let idx = (e.hwcap & 0xffff_ffff) as usize;
                e.hwcaps_subdir = cache.hwcaps.get(idx).cloned().flatten();
            }
        }
        Ok(cache)
    }

    fn push(
        &mut self,
        flags: i32,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        hwcap: u64,
        hwcaps_subdir: Option<String>,
    ) {
        self.entries.push(CacheEntry {
            flags,
            name: key.as_ref().map(|k| String::from_utf8_lossy(k).into()),
            path: value.map(|v| String::from_utf8_lossy(&v).into()),
            hwcap,
            hwcaps_subdir,
        });
        self.keys.push(key);
    }

    /// The layout the file was found in.
    pub fn format(&self) -> CacheFormat {
        self.format
    }

    /// Every entry, in file order.
    pub fn entries(&self) -> &[CacheEntry] {
        &self.entries
    }

    /// The glibc-hwcaps subdirectory names of the extension section.
    pub fn hwcaps_subdirs(&self) -> impl Iterator<Item = &str> {
        self.hwcaps.iter().flatten().map(String::as_str)
    }

    /// The glibc version that wrote the cache (generator extension).
    pub fn generator(&self) -> Option<&str> {
        self.generator.as_deref()
    }

    /// The path the loader takes from the cache for `name`, for a loader
    /// running on `cpu` with `flags` the accepted entry flags.
    pub fn lookup(&self, name: &str, cpu: &LoaderCpu, flags: i32) -> Option<&str> {
        let name = name.as_bytes();
        let entries = &self.entries;
        let hwcap_exclude = !(cpu.dl_hwcap | cpu.platform_mask() | (1u64 << 63));
        let platform = cpu.platform_bit();
        let (mut left, mut right) = (0i64, entries.len() as i64 - 1);
        let mut best: Option<&str> = None;
        let mut best_priority = 0u32;
        while left <= right {
            let mut middle = (left + right) / 2;
            let key = self.keys[middle as usize].as_deref()?;
            let cmp = libcmp(name, key);
            if cmp == Ordering::Equal {
                left = middle;
                while middle > 0 {
                    match self.keys[middle as usize - 1].as_deref() {
                        Some(k) if libcmp(name, k) == Ordering::Equal => middle -= 1,
                        _ => break,
                    }
                }
                while middle <= right {
                    let lib = &entries[middle as usize];
                    let this = middle;
                    middle += 1;
                    if this > left {
                        match self.keys[this as usize].as_deref() {
                            Some(k) if libcmp(name, k) == Ordering::Equal => {}
                            _ => break,
                        }
                    }
                    if lib.flags != flags {
                        continue;
                    }
                    let Some(path) = lib.path.as_deref() else {
                        continue;
                    };
                    let named = lib.named_hwcap();
                    if self.format != CacheFormat::Old {
                        if named && !cpu.isa_level_compatible(lib.hwcap) {
                            continue;
                        }
                        if !named && best.is_some() {
                            break;
                        }
                        if lib.hwcap & hwcap_exclude != 0 && !named {
                            continue;
                        }
                        let pbits = lib.hwcap & cpu.platform_mask();
                        if pbits != 0 && pbits != platform {
                            continue;
                        }
                        if named {
                            let priority = self.hwcaps_priority(lib.hwcap, cpu);
                            if priority == 0 || (best.is_some() && priority >= best_priority) {
                                continue;
                            }
                            best_priority = priority;
                        }
                    }
                    best = Some(path);
                    if !named && lib.flags == flags {
                        break;
                    }
                }
                break;
            }
            // ldconfig sorts the entries in descending order.
            if cmp == Ordering::Less {
                left = middle + 1;
            } else {
                right = middle - 1;
            }
        }
        best
    }

    /// The priority of a glibc-hwcaps entry's subdirectory for this CPU (1
    /// is best; 0 is unusable).
    fn hwcaps_priority(&self, hwcap: u64, cpu: &LoaderCpu) -> u32 {
        let idx = (hwcap & 0xffff_ffff) as usize;
        match self.hwcaps.get(idx) {
            Some(Some(name)) => cpu.hwcaps_priority(name),
            _ => 0,
        }
    }
}

/// A NUL-terminated string at `off` in `strings`.
fn cstr(strings: &[u8], off: usize) -> Option<Vec<u8>> {
    let rest = strings.get(off..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some(rest[..end].to_vec())
}

/// The loader's order of library names: runs of digits compare as numbers.
pub fn libcmp(p1: &[u8], p2: &[u8]) -> Ordering {
    let (mut i, mut j) = (0usize, 0usize);
    let at = |s: &[u8], k: usize| s.get(k).copied().unwrap_or(0);
    while at(p1, i) != 0 {
        let (c1, c2) = (at(p1, i), at(p2, j));
        if c1.is_ascii_digit() {
            if !c2.is_ascii_digit() {
                return Ordering::Greater;
            }
            let mut v1: u64 = 0;
            while at(p1, i).is_ascii_digit() {
                v1 = v1.wrapping_mul(10).wrapping_add((at(p1, i) - b'0') as u64);
                i += 1;
            }
            let mut v2: u64 = 0;
            while at(p2, j).is_ascii_digit() {
                v2 = v2.wrapping_mul(10).wrapping_add((at(p2, j) - b'0') as u64);
                j += 1;
            }
            if v1 != v2 {
                return v1.cmp(&v2);
            }
        } else if c2.is_ascii_digit() {
            return Ordering::Less;
        } else if c1 != c2 {
            return c1.cmp(&c2);
        } else {
            i += 1;
            j += 1;
        }
    }
    0u8.cmp(&at(p2, j))
}

#[cfg(test)]
mod tests {
    use super::super::hwcaps::LoaderCpu;
    use super::*;
    use crate::platform::CpuFeatures;

    fn host_cpu() -> LoaderCpu {
        LoaderCpu::for_glibc(&CpuFeatures::detect(), (2, 36))
    }

    #[test]
    fn libcmp_orders_numbers_numerically() {
        assert_eq!(libcmp(b"libc.so.6", b"libc.so.6"), Ordering::Equal);
        assert_eq!(libcmp(b"libfoo.so.10", b"libfoo.so.9"), Ordering::Greater);
        assert_eq!(libcmp(b"liba.so", b"libb.so"), Ordering::Less);
        assert_eq!(libcmp(b"lib1", b"liba"), Ordering::Greater);
        assert_eq!(libcmp(b"lib", b"libx"), Ordering::Less);
    }

    #[test]
    fn host_cache_finds_libc() {
        let Ok(data) = std::fs::read("/etc/ld.so.cache") else {
            eprintln!("skipping: no /etc/ld.so.cache");
            return;
        };
        let cache = LdCache::parse(&data).unwrap();
        assert!(cache.entries().len() > 10);
        let cpu = host_cpu();
        let libc = cache.lookup("libc.so.6", &cpu, X86_64_FLAGS).unwrap();
        assert!(libc.ends_with("/libc.so.6"), "{libc}");
        assert!(std::path::Path::new(libc).exists());
        assert_eq!(
            cache.lookup("libdoes-not-exist.so.1", &cpu, X86_64_FLAGS),
            None
        );
        // Every name the cache holds is found again by the binary search.
        for e in cache.entries() {
            if e.flags == X86_64_FLAGS && e.hwcap == 0 {
                let name = e.name.as_deref().unwrap();
                assert!(cache.lookup(name, &cpu, X86_64_FLAGS).is_some(), "{name}");
            }
        }
    }

    /// Builds a new-format cache with a glibc-hwcaps extension.
    fn build_cache(entries: &[(&str, &str, u64)], hwcaps: &[&str]) -> Vec<u8> {
        let mut strings = Vec::new();
        let mut offs = Vec::new();
        let base = HEADER_NEW + entries.len() * ENTRY_NEW;
        let add = |s: &str, strings: &mut Vec<u8>| {
            let at = base + strings.len();
            strings.extend_from_slice(s.as_bytes());
            strings.push(0);
            at as u32
        };
        for (k, v, _) in entries {
            offs.push((add(k, &mut strings), add(v, &mut strings)));
        }
        let hw: Vec<u32> = hwcaps.iter().map(|h| add(h, &mut strings)).collect();
        while strings.len() % 4 != 0 {
            strings.push(0);
        }
        let ext_data = base + strings.len();
        let ext = ext_data + hw.len() * 4;
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC_NEW);
        out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        out.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        out.extend_from_slice(&[2, 0, 0, 0]);
        out.extend_from_slice(&(ext as u32).to_le_bytes());
        out.extend_from_slice(&[0; 12]);
        for ((_, _, hwcap), (k, v)) in entries.iter().zip(&offs) {
            out.extend_from_slice(&(X86_64_FLAGS as u32).to_le_bytes());
            out.extend_from_slice(&k.to_le_bytes());
            out.extend_from_slice(&v.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&hwcap.to_le_bytes());
        }
        out.extend_from_slice(&strings);
        for h in &hw {
            out.extend_from_slice(&h.to_le_bytes());
        }
        out.extend_from_slice(&EXTENSION_MAGIC.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&TAG_GLIBC_HWCAPS.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(ext_data as u32).to_le_bytes());
        out.extend_from_slice(&((hw.len() * 4) as u32).to_le_bytes());
        out
    }

    #[test]
    fn hwcaps_entries_win_by_priority() {
        // Sorted hwcaps names: x86-64-v2 (0), x86-64-v3 (1), x86-64-v4 (2).
        let ext = |i: u64| HWCAP_EXTENSION | i;
        let data = build_cache(
            &[
                ("libz.so.1", "/l/glibc-hwcaps/x86-64-v4/libz.so.1", ext(2)),
                ("libz.so.1", "/l/glibc-hwcaps/x86-64-v2/libz.so.1", ext(0)),
                ("libz.so.1", "/l/glibc-hwcaps/x86-64-v3/libz.so.1", ext(1)),
                ("libz.so.1", "/l/libz.so.1", 0),
            ],
            &["x86-64-v2", "x86-64-v3", "x86-64-v4"],
        );
        let cache = LdCache::parse(&data).unwrap();
        assert_eq!(cache.format(), CacheFormat::New);
        assert_eq!(
            cache.hwcaps_subdirs().collect::<Vec<_>>(),
            ["x86-64-v2", "x86-64-v3", "x86-64-v4"]
        );
        let mut f = CpuFeatures::baseline();
        let v1 = LoaderCpu::for_glibc(&f, (2, 36));
        assert_eq!(
            cache.lookup("libz.so.1", &v1, X86_64_FLAGS),
            Some("/l/libz.so.1")
        );
        f.level = 3;
        let v3 = LoaderCpu::for_glibc(&f, (2, 36));
        assert_eq!(
            cache.lookup("libz.so.1", &v3, X86_64_FLAGS),
            Some("/l/glibc-hwcaps/x86-64-v3/libz.so.1")
        );
        f.level = 2;
        let v2 = LoaderCpu::for_glibc(&f, (2, 36));
        assert_eq!(
            cache.lookup("libz.so.1", &v2, X86_64_FLAGS),
            Some("/l/glibc-hwcaps/x86-64-v2/libz.so.1")
        );
        // Before glibc 2.33 the loader knows no hwcaps entries.
        let old = LoaderCpu::for_glibc(&f, (2, 31));
        assert_eq!(
            cache.lookup("libz.so.1", &old, X86_64_FLAGS),
            Some("/l/libz.so.1")
        );
    }

    #[test]
    fn garbage_is_refused_without_panic() {
        assert_eq!(
            LdCache::parse(b"nothing").unwrap_err(),
            CacheError::BadMagic
        );
        let mut data = build_cache(&[("liba.so.1", "/a", 0)], &[]);
        data[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            LdCache::parse(&data),
            Err(CacheError::Truncated(_))
        ));
        let good = build_cache(&[("liba.so.1", "/a", 0), ("libb.so.1", "/b", 0)], &["x"]);
        for len in 0..good.len() {
            if let Ok(c) = LdCache::parse(&good[..len]) {
                let _ = c.lookup("liba.so.1", &host_cpu(), X86_64_FLAGS);
            }
        }
    }
}
