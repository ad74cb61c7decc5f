//! The loader's view of the CPU: glibc-hwcaps subdirectories and their
//! priorities, the legacy hwcap subdirectories, `$PLATFORM`.
//!
//! glibc 2.33 added `glibc-hwcaps/x86-64-v{4,3,2}` subdirectories, tried
//! first in every search directory for the levels the CPU supports, best
//! first. Until 2.36 the loader also tried the legacy subdirectories: the
//! power set of the hwcap names (`x86_64`, `avx512_1`), the platform
//! (`x86_64`, or `haswell`/`xeon_phi` on Intel CPUs) and `tls`, largest
//! set first; glibc 2.37 removed them. On this machine (glibc 2.36, an
//! x86-64-v3 CPU) `ld.so --help` and `LD_DEBUG=libs` show exactly this
//! list: `glibc-hwcaps/x86-64-v3`, `glibc-hwcaps/x86-64-v2`,
//! `tls/x86_64/x86_64`, `tls/x86_64`, `tls/x86_64`, `tls`,
//! `x86_64/x86_64`, `x86_64`, `x86_64`, then the directory itself.

use crate::platform::CpuFeatures;

const HWCAP_X86_64: u64 = 1 << 1;
const HWCAP_X86_AVX512_1: u64 = 1 << 2;
/// `_DL_FIRST_PLATFORM`.
const FIRST_PLATFORM: u32 = 48;
/// x86-64 platform names by index (`_dl_x86_platforms`), from index 2.
const PLATFORMS: [&str; 4] = ["i586", "i686", "haswell", "xeon_phi"];

/// How a given glibc loader sees the CPU it runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoaderCpu {
    /// Active glibc-hwcaps subdirectory names, best first.
    pub hwcaps: Vec<&'static str>,
    /// GNU_PROPERTY_X86_ISA_1 bits the CPU supports (1 baseline, 2 v2,
    /// 4 v3, 8 v4).
    pub isa_1: u32,
    /// `dl_platform`: what `$PLATFORM` expands to.
    pub platform: String,
    /// `dl_hwcap & hwcap_mask`.
    pub dl_hwcap: u64,
    /// Subdirectories tried in each search directory, in order; the last
    /// is the directory itself (`""`). Each non-empty one ends with `/`.
    pub subdirs: Vec<String>,
}

impl LoaderCpu {
    /// The view of a glibc `version` (major, minor) loader running on `cpu`.
    pub fn for_glibc(cpu: &CpuFeatures, version: (u32, u32)) -> LoaderCpu {
        let mut hwcaps = Vec::new();
        if version >= (2, 33) {
            for (name, level) in [("x86-64-v4", 4), ("x86-64-v3", 3), ("x86-64-v2", 2)] {
                if cpu.level >= level {
                    hwcaps.push(name);
                }
            }
        }
        let isa_1 = (0..cpu.level.min(4) as u32).fold(0, |acc, l| acc | (1 << l));
        let mut dl_hwcap = HWCAP_X86_64;
        let mut platform = None;
        if cpu.is_intel() {
            if cpu.avx512cd {
                if cpu.avx512er_pf.0 {
                    if cpu.avx512er_pf.1 {
                        platform = Some("xeon_phi");
                    }
                } else if cpu.avx512_bw_dq_vl {
                    dl_hwcap |= HWCAP_X86_AVX512_1;
                }
            }
            if platform.is_none() && cpu.haswell {
                platform = Some("haswell");
            }
        }
        let platform = platform.unwrap_or("x86_64").to_string();
        let mut subdirs: Vec<String> = hwcaps
            .iter()
            .map(|h| format!("glibc-hwcaps/{h}/"))
            .collect();
        if version < (2, 37) {
            let mut temp: Vec<&str> = Vec::new();
            if dl_hwcap & HWCAP_X86_64 != 0 {
                temp.push("x86_64");
            }
            if dl_hwcap & HWCAP_X86_AVX512_1 != 0 {
                temp.push("avx512_1");
            }
            temp.push(&platform);
            temp.push("tls");
            let n = temp.len();
            for mask in (1..(1u32 << n)).rev() {
                let mut s = String::new();
                for i in (0..n).rev() {
                    if mask & (1 << i) != 0 {
                        s.push_str(temp[i]);
                        s.push('/');
                    }
                }
                subdirs.push(s);
            }
        }
        subdirs.push(String::new());
        LoaderCpu {
            hwcaps,
            isa_1,
            platform,
            dl_hwcap,
            subdirs,
        }
    }

    /// `_DL_HWCAP_PLATFORM`: the platform bits of a cache entry's hwcap.
    pub fn platform_mask(&self) -> u64 {
        0xf << FIRST_PLATFORM
    }

    /// The platform bit of `dl_platform`, or all ones when the platform has
    /// no number (then no entry with platform bits matches).
    pub fn platform_bit(&self) -> u64 {
        PLATFORMS
            .iter()
            .skip(2)
            .position(|p| *p == self.platform)
            .map(|i| 1u64 << (FIRST_PLATFORM + 2 + i as u32))
            .unwrap_or(u64::MAX)
    }

    /// Whether a glibc-hwcaps cache entry's ISA level suits the CPU.
    pub fn isa_level_compatible(&self, hwcap: u64) -> bool {
        let level = ((hwcap >> 32) & 0x3ff) as u32;
        let bit = 1u32.checked_shl(level).unwrap_or(0);
        bit & self.isa_1 == bit
    }

    /// The priority of a glibc-hwcaps subdirectory name: 1 is best, 0 means
    /// not usable on this CPU.
    pub fn hwcaps_priority(&self, name: &str) -> u32 {
        self.hwcaps
            .iter()
            .position(|h| *h == name)
            .map(|i| i as u32 + 1)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(level: u8) -> CpuFeatures {
        CpuFeatures {
            level,
            ..CpuFeatures::baseline()
        }
    }

    #[test]
    fn order_on_a_v3_amd_cpu_with_glibc_2_36() {
        let l = LoaderCpu::for_glibc(&cpu(3), (2, 36));
        assert_eq!(l.hwcaps, ["x86-64-v3", "x86-64-v2"]);
        assert_eq!(
            l.subdirs,
            [
                "glibc-hwcaps/x86-64-v3/",
                "glibc-hwcaps/x86-64-v2/",
                "tls/x86_64/x86_64/",
                "tls/x86_64/",
                "tls/x86_64/",
                "tls/",
                "x86_64/x86_64/",
                "x86_64/",
                "x86_64/",
                "",
            ]
        );
        assert_eq!(l.platform, "x86_64");
        assert_eq!(l.platform_bit(), u64::MAX);
        assert_eq!(l.isa_1, 0b111);
    }

    #[test]
    fn newer_and_older_glibc() {
        let l = LoaderCpu::for_glibc(&cpu(4), (2, 41));
        assert_eq!(
            l.subdirs,
            [
                "glibc-hwcaps/x86-64-v4/",
                "glibc-hwcaps/x86-64-v3/",
                "glibc-hwcaps/x86-64-v2/",
                ""
            ]
        );
        let l = LoaderCpu::for_glibc(&cpu(4), (2, 31));
        assert!(l.hwcaps.is_empty());
        assert_eq!(l.subdirs.len(), 8);
    }

    #[test]
    fn intel_platforms() {
        let mut c = cpu(3);
        c.vendor = "GenuineIntel".into();
        c.haswell = true;
        let l = LoaderCpu::for_glibc(&c, (2, 36));
        assert_eq!(l.platform, "haswell");
        assert_eq!(l.platform_bit(), 1 << 50);
        assert_eq!(l.subdirs[2], "tls/haswell/x86_64/");
    }

    #[test]
    fn matches_this_machines_loader() {
        // `ld.so --help` lists the glibc-hwcaps subdirectories it searches.
        let Ok(out) = std::process::Command::new("/lib64/ld-linux-x86-64.so.2")
            .arg("--help")
            .output()
        else {
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        if !text.contains("glibc-hwcaps") {
            return;
        }
        let searched: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("x86-64-v") && l.contains("searched"))
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        let l = LoaderCpu::for_glibc(&CpuFeatures::detect(), (2, 36));
        assert_eq!(l.hwcaps, searched);
    }
}
