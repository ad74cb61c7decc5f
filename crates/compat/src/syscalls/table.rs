//! The system call table: names, numbers per architecture, the first kernel
//! release that has each call, and the kconfig option it needs.
//!
//! The data is `data/syscalls.csv` (its provenance is in `data/README.md`),
//! embedded at build time and parsed once.

use std::collections::HashMap;
use std::sync::OnceLock;

/// The architectures the table covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Arch {
    /// x86-64 (the 64-bit system call ABI).
    X86_64,
    /// AArch64.
    Aarch64,
}

impl Arch {
    /// The libseccomp name of the architecture (`SCMP_ARCH_X86_64`).
    pub fn seccomp_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "SCMP_ARCH_X86_64",
            Arch::Aarch64 => "SCMP_ARCH_AARCH64",
        }
    }
}

/// A kernel release as `(major, minor)`.
pub type KernelVersion = (u32, u32);

/// One row of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyscallInfo {
    /// The name user space knows it by, in strace, libseccomp and OCI
    /// seccomp profiles (`fstat`, where the kernel says `newfstat`).
    pub name: &'static str,
    /// The kernel's own name (`newfstat`), as in the table.
    pub kernel_name: &'static str,
    /// The number on x86-64, if the call exists there.
    pub x86_64: Option<u32>,
    /// The number on AArch64, if the call exists there.
    pub aarch64: Option<u32>,
    /// The first release with the call on x86-64.
    pub x86_64_since: Option<KernelVersion>,
    /// The first release with the call on AArch64.
    pub aarch64_since: Option<KernelVersion>,
    /// The kconfig option the call needs (`IO_URING`), without `CONFIG_`.
    pub kconfig: Option<&'static str>,
}

impl SyscallInfo {
    /// The number on `arch`.
    pub fn number(&self, arch: Arch) -> Option<u32> {
        match arch {
            Arch::X86_64 => self.x86_64,
            Arch::Aarch64 => self.aarch64,
        }
    }

    /// The first release with the call on `arch`.
    pub fn since(&self, arch: Arch) -> Option<KernelVersion> {
        match arch {
            Arch::X86_64 => self.x86_64_since,
            Arch::Aarch64 => self.aarch64_since,
        }
    }
}

/// The whole table, indexed by name and by number.
#[derive(Debug)]
pub struct SyscallTable {
    rows: Vec<SyscallInfo>,
    by_name: HashMap<&'static str, usize>,
    x86_64: HashMap<u32, usize>,
    aarch64: HashMap<u32, usize>,
}

const CSV: &str = include_str!("../../data/syscalls.csv");

/// The highest x86-64 number plus one that a [`super::SyscallSet`] holds.
pub const MAX_NR: u32 = 512;

impl SyscallTable {
    /// The embedded table.
    pub fn get() -> &'static SyscallTable {
        static TABLE: OnceLock<SyscallTable> = OnceLock::new();
        TABLE.get_or_init(|| SyscallTable::parse(CSV).expect("embedded syscalls.csv is valid"))
    }

    fn parse(text: &'static str) -> Result<SyscallTable, String> {
        let mut lines = text.lines();
        let header = lines.next().ok_or("empty table")?;
        if header != "name,x86_64_nr,x86_64_since,aarch64_nr,aarch64_since,kconfig" {
            return Err(format!("unexpected header {header:?}"));
        }
        let mut t = SyscallTable {
            rows: Vec::new(),
            by_name: HashMap::new(),
            x86_64: HashMap::new(),
            aarch64: HashMap::new(),
        };
        for (i, line) in lines.enumerate() {
            let f: Vec<&'static str> = line.split(',').collect();
            let [name, xnr, xsince, anr, asince, kconfig] = f[..] else {
                return Err(format!("line {}: {} fields", i + 2, f.len()));
            };
            let num = |s: &str| -> Result<Option<u32>, String> {
                (!s.is_empty())
                    .then(|| s.parse().map_err(|_| format!("line {}: {s:?}", i + 2)))
                    .transpose()
            };
            let row = SyscallInfo {
                name: abi_name(name),
                kernel_name: name,
                x86_64: num(xnr)?,
                aarch64: num(anr)?,
                x86_64_since: parse_version(xsince),
                aarch64_since: parse_version(asince),
                kconfig: (!kconfig.is_empty()).then_some(kconfig),
            };
            let idx = t.rows.len();
            if let Some(n) = row.x86_64 {
                if n >= MAX_NR {
                    return Err(format!("line {}: x86_64 number {n} too large", i + 2));
                }
                t.x86_64.insert(n, idx);
            }
            if let Some(n) = row.aarch64 {
                t.aarch64.insert(n, idx);
            }
            t.by_name.insert(name, idx);
            t.by_name.insert(abi_name(name), idx);
            t.rows.push(row);
        }
        Ok(t)
    }

    /// The call of this number on `arch`.
    pub fn by_number(&self, arch: Arch, nr: u32) -> Option<&SyscallInfo> {
        let map = match arch {
            Arch::X86_64 => &self.x86_64,
            Arch::Aarch64 => &self.aarch64,
        };
        map.get(&nr).map(|&i| &self.rows[i])
    }

    /// The call of this name.
    pub fn by_name(&self, name: &str) -> Option<&SyscallInfo> {
        self.by_name.get(name).map(|&i| &self.rows[i])
    }

    /// Every row.
    pub fn rows(&self) -> &[SyscallInfo] {
        &self.rows
    }
}

/// The user-space name of a call the kernel names otherwise (the x86-64
/// names that strace and libseccomp use).
fn abi_name(kernel: &'static str) -> &'static str {
    match kernel {
        "newfstat" => "fstat",
        "newlstat" => "lstat",
        "newstat" => "stat",
        "newuname" => "uname",
        "sendfile64" => "sendfile",
        "sysctl" => "_sysctl",
        "umount" => "umount2",
        other => other,
    }
}

/// `5.6` → `(5, 6)`; `<=4.0` → `(4, 0)` (certainly there by then);
/// `2.6.28` → `(2, 6)`: the table's precision below 3.0 does not matter to
/// any kernel that runs containers.
fn parse_version(s: &str) -> Option<KernelVersion> {
    let s = s.trim_start_matches("<=");
    let mut it = s.split('.');
    let major = it.next()?.parse().ok()?;
    let minor = it.next().unwrap_or("0").parse().ok()?;
    Some((major, minor))
}

/// A kernel release string (`6.1.0-13-amd64`, `4.19`) as `(major, minor)`.
pub fn parse_release(release: &str) -> Option<KernelVersion> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_table_reads() {
        let t = SyscallTable::get();
        assert!(t.rows().len() > 360);
        let clone3 = t.by_name("clone3").unwrap();
        assert_eq!(clone3.x86_64, Some(435));
        assert_eq!(clone3.since(Arch::X86_64), Some((5, 3)));
        assert_eq!(t.by_number(Arch::X86_64, 0).unwrap().name, "read");
        // User-space names, as libseccomp and strace spell them.
        assert_eq!(t.by_number(Arch::X86_64, 5).unwrap().name, "fstat");
        assert_eq!(
            t.by_number(Arch::X86_64, 5).unwrap().kernel_name,
            "newfstat"
        );
        assert_eq!(t.by_name("newuname").unwrap().name, "uname");
        assert_eq!(t.by_number(Arch::X86_64, 166).unwrap().name, "umount2");
        assert_eq!(t.by_number(Arch::X86_64, 437).unwrap().name, "openat2");
        assert_eq!(t.by_number(Arch::Aarch64, 63).unwrap().name, "read");
        assert_eq!(
            t.by_name("io_uring_setup").unwrap().kconfig,
            Some("IO_URING")
        );
        // open exists only on x86-64.
        assert_eq!(t.by_name("open").unwrap().aarch64, None);
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("2.6.28"), Some((2, 6)));
        assert_eq!(parse_version("<=4.0"), Some((4, 0)));
        assert_eq!(parse_version(""), None);
        assert_eq!(parse_release("6.1.0-13-amd64"), Some((6, 1)));
        assert_eq!(parse_release("4.19"), Some((4, 19)));
        assert_eq!(parse_release("x"), None);
    }
}
