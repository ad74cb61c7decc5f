//! The CPU: vendor, model name and the features the loader cares about,
//! from CPUID and XGETBV.
//!
//! The x86-64 micro-architecture level follows the psABI (and glibc's
//! `get_isa_level`): v2 = CMPXCHG16B, LAHF-SAHF, POPCNT, SSE3, SSE4_1,
//! SSE4_2, SSSE3; v3 = AVX, AVX2, BMI1, BMI2, F16C, FMA, LZCNT, MOVBE,
//! OSXSAVE; v4 = AVX512F, AVX512BW, AVX512CD, AVX512DQ, AVX512VL. A feature
//! that needs operating-system support (AVX, AVX-512) counts only when XCR0
//! says the kernel saves its registers, as glibc's "usable" does. This file
//! is the crate's only user of `unsafe`.
#![allow(unsafe_code)]

use serde::Serialize;

/// What the CPU offers, as far as loading libraries is concerned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CpuFeatures {
    /// `GenuineIntel`, `AuthenticAMD`, ...
    pub vendor: String,
    /// The brand string (`AMD EPYC 7B13`), trimmed.
    pub model: String,
    /// The x86-64 level: 1 (baseline) to 4; 0 when unknown (not x86-64).
    pub level: u8,
    /// AVX2, FMA, BMI1, BMI2, LZCNT, MOVBE and POPCNT are usable: glibc's
    /// "haswell" platform on Intel CPUs.
    pub haswell: bool,
    /// AVX512CD is usable.
    pub avx512cd: bool,
    /// AVX512ER and AVX512PF are usable (Xeon Phi).
    pub avx512er_pf: (bool, bool),
    /// AVX512BW, AVX512DQ and AVX512VL are usable.
    pub avx512_bw_dq_vl: bool,
}

impl CpuFeatures {
    /// A baseline x86-64 CPU of no particular vendor.
    pub fn baseline() -> CpuFeatures {
        CpuFeatures {
            vendor: String::new(),
            model: String::new(),
            level: 1,
            haswell: false,
            avx512cd: false,
            avx512er_pf: (false, false),
            avx512_bw_dq_vl: false,
        }
    }

    /// Whether the vendor is Intel (glibc names legacy platforms for Intel
    /// CPUs only).
    pub fn is_intel(&self) -> bool {
        self.vendor == "GenuineIntel"
    }

    /// The CPU this process runs on.
    #[cfg(target_arch = "x86_64")]
    pub fn detect() -> CpuFeatures {
        use std::arch::x86_64::{__cpuid_count, CpuidResult};
        let cpuid = |leaf: u32, sub: u32| -> CpuidResult {
            // SAFETY: CPUID exists on every x86-64 CPU and only reads
            // identification registers.
            #[allow(unused_unsafe)]
            unsafe {
                __cpuid_count(leaf, sub)
            }
        };
        let bit = |r: u32, b: u32| r & (1 << b) != 0;
        let l0 = cpuid(0, 0);
        let max = l0.eax;
        let mut vendor = Vec::new();
        for r in [l0.ebx, l0.edx, l0.ecx] {
            vendor.extend_from_slice(&r.to_le_bytes());
        }
        let l1 = cpuid(1, 0);
        let l7 = if max >= 7 {
            cpuid(7, 0)
        } else {
            CpuidResult {
                eax: 0,
                ebx: 0,
                ecx: 0,
                edx: 0,
            }
        };
        let ext_max = cpuid(0x8000_0000, 0).eax;
        let e1 = if ext_max >= 0x8000_0001 {
            cpuid(0x8000_0001, 0).ecx
        } else {
            0
        };
        let mut model = Vec::new();
        if ext_max >= 0x8000_0004 {
            for leaf in 0x8000_0002..=0x8000_0004u32 {
                let r = cpuid(leaf, 0);
                for v in [r.eax, r.ebx, r.ecx, r.edx] {
                    model.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        let osxsave = bit(l1.ecx, 27);
        let xcr0 = if osxsave { xgetbv0() } else { 0 };
        let ymm = xcr0 & 0b110 == 0b110;
        let zmm = ymm && xcr0 & 0xe0 == 0xe0;
        let avx = ymm && bit(l1.ecx, 28);
        let baseline = bit(l1.edx, 15) // CMOV
            && bit(l1.edx, 8) // CX8
            && bit(l1.edx, 0) // FPU
            && bit(l1.edx, 24) // FXSR
            && bit(l1.edx, 23) // MMX
            && bit(l1.edx, 25) // SSE
            && bit(l1.edx, 26); // SSE2
        let v2 = bit(l1.ecx, 13) // CMPXCHG16B
            && bit(e1, 0) // LAHF-SAHF
            && bit(l1.ecx, 23) // POPCNT
            && bit(l1.ecx, 0) // SSE3
            && bit(l1.ecx, 9) // SSSE3
            && bit(l1.ecx, 19) // SSE4_1
            && bit(l1.ecx, 20); // SSE4_2
        let avx2 = avx && bit(l7.ebx, 5);
        let fma = avx && bit(l1.ecx, 12);
        let f16c = avx && bit(l1.ecx, 29);
        let (bmi1, bmi2) = (bit(l7.ebx, 3), bit(l7.ebx, 8));
        let (lzcnt, movbe, popcnt) = (bit(e1, 5), bit(l1.ecx, 22), bit(l1.ecx, 23));
        let v3 = avx && avx2 && bmi1 && bmi2 && f16c && fma && lzcnt && movbe && osxsave;
        let avx512 = |b: u32| zmm && bit(l7.ebx, 16) && bit(l7.ebx, b);
        let avx512f = zmm && bit(l7.ebx, 16);
        let (cd, bw, dq, vl) = (avx512(28), avx512(30), avx512(17), avx512(31));
        let v4 = avx512f && bw && cd && dq && vl;
        let level = match (baseline, v2, v3, v4) {
            (false, ..) => 0,
            (true, false, ..) => 1,
            (true, true, false, _) => 2,
            (true, true, true, false) => 3,
            (true, true, true, true) => 4,
        };
        CpuFeatures {
            vendor: String::from_utf8_lossy(&vendor).into_owned(),
            model: String::from_utf8_lossy(&model)
                .trim_matches(|c: char| c == '\0' || c.is_whitespace())
                .to_string(),
            level,
            haswell: avx2 && fma && bmi1 && bmi2 && lzcnt && movbe && popcnt,
            avx512cd: cd,
            avx512er_pf: (avx512(27), avx512(26)),
            avx512_bw_dq_vl: bw && dq && vl,
        }
    }

    /// The CPU this process runs on (unknown off x86-64).
    #[cfg(not(target_arch = "x86_64"))]
    pub fn detect() -> CpuFeatures {
        CpuFeatures {
            level: 0,
            ..CpuFeatures::baseline()
        }
    }
}

/// XCR0, the register states the kernel saves.
#[cfg(target_arch = "x86_64")]
fn xgetbv0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: only called when CPUID reports OSXSAVE, which makes XGETBV
    // with ECX = 0 valid in user mode; it reads a register and nothing else.
    unsafe {
        std::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi,
            options(nomem, nostack, preserves_flags));
    }
    ((hi as u64) << 32) | lo as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_a_plausible_cpu() {
        let cpu = CpuFeatures::detect();
        if cfg!(target_arch = "x86_64") {
            assert!(cpu.level >= 1, "{cpu:?}");
            assert!(!cpu.vendor.is_empty());
        }
    }

    #[test]
    fn agrees_with_the_loader_on_this_machine() {
        // glibc's own view: `ld.so --list-diagnostics` reports which
        // glibc-hwcaps subdirectories are active.
        let Ok(out) = std::process::Command::new("/lib64/ld-linux-x86-64.so.2")
            .arg("--list-diagnostics")
            .output()
        else {
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let Some(line) = text
            .lines()
            .find(|l| l.starts_with("dl_hwcaps_subdirs_active="))
        else {
            return;
        };
        let active = u32::from_str_radix(line.split("0x").nth(1).unwrap_or("0"), 16).unwrap();
        // Bits from the right: v2, v3, v4 (glibc builds the mask in reverse).
        let level = 1 + active.count_ones() as u8;
        assert_eq!(CpuFeatures::detect().level, level);
    }
}
