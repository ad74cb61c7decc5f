//! Resource statistics: the [`Stats`] types, shaped like the `data` of
//! runc's `events --stats` JSON, and the readers that fill them from the v1
//! and v2 control files.
//!
//! A file the kernel does not provide leaves its field at zero (runc's JSON
//! omits most zero fields, and so does [`Stats`]' serialisation); a file
//! that exists but cannot be read is an error. Which hierarchy each reader
//! gets is decided in the parent module.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::files;
use super::CgroupError;

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Resource statistics, shaped like runc's `events --stats` data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// CPU time and throttling.
    pub cpu: CpuStats,
    /// Memory, swap and kernel memory usage.
    pub memory: MemoryStats,
    /// Process count.
    pub pids: PidsStats,
    /// Block I/O.
    pub blkio: BlkioStats,
    /// Huge page usage per page size (`"2MB"`).
    pub hugetlb: BTreeMap<String, HugetlbStats>,
}

/// `cpu`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CpuStats {
    /// CPU time used.
    pub usage: CpuUsage,
    /// CFS bandwidth throttling.
    pub throttling: Throttling,
}

/// `cpu.usage`; all times in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CpuUsage {
    /// Total CPU time.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub total: u64,
    /// Total CPU time per CPU (v1 only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    /// Kernel-mode time per CPU (v1 only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    /// User-mode time per CPU (v1 only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    /// Time in kernel mode.
    #[serde(default)]
    pub kernel: u64,
    /// Time in user mode.
    #[serde(default)]
    pub user: u64,
}

/// `cpu.throttling`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Throttling {
    /// Enforcement periods elapsed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub periods: u64,
    /// Periods in which the cgroup was throttled.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Total time throttled, in nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

/// `memory`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct MemoryStats {
    /// Page cache (v1 `total_cache`, v2 `file`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache: u64,
    /// Memory.
    pub usage: MemoryEntry,
    /// Memory plus swap, as in v1 (`memsw`); on v2, swap plus memory.
    pub swap: MemoryEntry,
    /// Kernel memory (v1 only).
    pub kernel: MemoryEntry,
    /// Kernel TCP buffers (v1 only).
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// `memory.stat`, key by key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

/// One memory counter. A limit of `u64::MAX` means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MemoryEntry {
    /// The limit.
    #[serde(default)]
    pub limit: u64,
    /// The usage now.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// The highest usage seen.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    /// How often the limit was hit.
    #[serde(default)]
    pub failcnt: u64,
}

/// `pids`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PidsStats {
    /// Tasks in the cgroup.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub current: u64,
    /// `pids.max`; 0 means unlimited (as in runc).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub limit: u64,
}

/// `blkio`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct BlkioStats {
    /// Bytes transferred, per device and operation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    /// Operations performed, per device and operation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

/// One block I/O counter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BlkioEntry {
    /// The device's major number.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub major: u64,
    /// The device's minor number.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub minor: u64,
    /// `Read`, `Write`, `Sync`, `Async`, `Discard` or `Total`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub op: String,
    /// The counter.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub value: u64,
}

/// Huge page usage of one page size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HugetlbStats {
    /// Bytes in use.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// Highest usage seen (v1 only).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    /// How often an allocation failed on the limit.
    #[serde(default)]
    pub failcnt: u64,
}

fn flat(dir: &Path, file: &str) -> Result<BTreeMap<String, u64>, CgroupError> {
    Ok(files::read_opt(dir, file)?
        .map(|t| files::parse_flat_keyed(&t))
        .unwrap_or_default())
}

fn number(dir: &Path, file: &str) -> Result<u64, CgroupError> {
    Ok(files::read_u64_opt(dir, file)?.unwrap_or(0))
}

fn numbers(dir: &Path, file: &str) -> Result<Vec<u64>, CgroupError> {
    Ok(files::read_opt(dir, file)?
        .map(|t| {
            t.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default())
}

/// The length of a clock tick in nanoseconds (for `cpuacct.stat`).
fn tick_ns() -> u64 {
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|hz| *hz > 0)
        .unwrap_or(100) as u64;
    1_000_000_000 / hz
}

/// v1 `cpuacct` and `cpu` (either may be absent).
pub(crate) fn v1_cpu(cpuacct: Option<&Path>, cpu: Option<&Path>) -> Result<CpuStats, CgroupError> {
    let mut s = CpuStats::default();
    if let Some(dir) = cpuacct {
        s.usage.total = number(dir, "cpuacct.usage")?;
        s.usage.percpu = numbers(dir, "cpuacct.usage_percpu")?;
        s.usage.percpu_kernel = numbers(dir, "cpuacct.usage_percpu_sys")?;
        s.usage.percpu_user = numbers(dir, "cpuacct.usage_percpu_user")?;
        let stat = flat(dir, "cpuacct.stat")?;
        let tick = tick_ns();
        s.usage.user = stat.get("user").copied().unwrap_or(0) * tick;
        s.usage.kernel = stat.get("system").copied().unwrap_or(0) * tick;
    }
    if let Some(dir) = cpu {
        let stat = flat(dir, "cpu.stat")?;
        s.throttling.periods = stat.get("nr_periods").copied().unwrap_or(0);
        s.throttling.throttled_periods = stat.get("nr_throttled").copied().unwrap_or(0);
        s.throttling.throttled_time = stat.get("throttled_time").copied().unwrap_or(0);
    }
    Ok(s)
}

/// v2 `cpu.stat` (present even without the cpu controller).
pub(crate) fn v2_cpu(dir: &Path) -> Result<CpuStats, CgroupError> {
    let stat = flat(dir, "cpu.stat")?;
    let get = |k: &str| stat.get(k).copied().unwrap_or(0);
    let mut s = CpuStats::default();
    s.usage.total = get("usage_usec") * 1000;
    s.usage.user = get("user_usec") * 1000;
    s.usage.kernel = get("system_usec") * 1000;
    s.throttling.periods = get("nr_periods");
    s.throttling.throttled_periods = get("nr_throttled");
    s.throttling.throttled_time = get("throttled_usec") * 1000;
    Ok(s)
}

fn v1_entry(dir: &Path, prefix: &str) -> Result<MemoryEntry, CgroupError> {
    Ok(MemoryEntry {
        limit: number(dir, &format!("{prefix}.limit_in_bytes"))?,
        usage: number(dir, &format!("{prefix}.usage_in_bytes"))?,
        max: number(dir, &format!("{prefix}.max_usage_in_bytes"))?,
        failcnt: number(dir, &format!("{prefix}.failcnt"))?,
    })
}

/// v1 `memory`.
pub(crate) fn v1_memory(dir: &Path) -> Result<MemoryStats, CgroupError> {
    let raw = flat(dir, "memory.stat")?;
    Ok(MemoryStats {
        cache: raw.get("total_cache").copied().unwrap_or(0),
        usage: v1_entry(dir, "memory")?,
        swap: v1_entry(dir, "memory.memsw")?,
        kernel: v1_entry(dir, "memory.kmem")?,
        kernel_tcp: v1_entry(dir, "memory.kmem.tcp")?,
        raw,
    })
}

/// v2 `memory`. As runc does, `swap` reports swap plus memory so that it
/// means the same as v1's memsw.
pub(crate) fn v2_memory(dir: &Path) -> Result<MemoryStats, CgroupError> {
    let raw = flat(dir, "memory.stat")?;
    let events = flat(dir, "memory.events")?;
    let usage = MemoryEntry {
        limit: files::read_u64_opt(dir, "memory.max")?.unwrap_or(u64::MAX),
        usage: number(dir, "memory.current")?,
        max: number(dir, "memory.peak")?,
        failcnt: events.get("max").copied().unwrap_or(0),
    };
    let swap_events = flat(dir, "memory.swap.events")?;
    let swap = match files::read_u64_opt(dir, "memory.swap.current")? {
        Some(current) => MemoryEntry {
            limit: files::read_u64_opt(dir, "memory.swap.max")?
                .unwrap_or(u64::MAX)
                .saturating_add(usage.limit),
            usage: current + usage.usage,
            max: 0,
            failcnt: swap_events.get("max").copied().unwrap_or(0),
        },
        None => MemoryEntry::default(),
    };
    Ok(MemoryStats {
        cache: raw.get("file").copied().unwrap_or(0),
        usage,
        swap,
        kernel: MemoryEntry::default(),
        kernel_tcp: MemoryEntry::default(),
        raw,
    })
}

/// `pids.current` and `pids.max` (same files in v1 and v2).
pub(crate) fn pids(dir: &Path) -> Result<PidsStats, CgroupError> {
    let limit = number(dir, "pids.max")?;
    Ok(PidsStats {
        current: number(dir, "pids.current")?,
        limit: if limit == u64::MAX { 0 } else { limit },
    })
}

/// Parses a v1 `blkio.*_recursive` file (`8:0 Read 4096` lines).
fn v1_blkio_entries(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.split_whitespace();
            let (major, minor) = files::parse_dev(it.next()?)?;
            let op = it.next()?.to_owned();
            let value = it.next()?.parse().ok()?;
            Some(BlkioEntry {
                major,
                minor,
                op,
                value,
            })
        })
        .collect()
}

/// v1 `blkio`: the CFQ files if present, else BFQ's, else the throttling
/// layer's (which counts every I/O), as runc does.
pub(crate) fn v1_blkio(dir: &Path) -> Result<BlkioStats, CgroupError> {
    for prefix in ["blkio", "blkio.bfq", "blkio.throttle"] {
        let Some(bytes) = files::read_opt(dir, &format!("{prefix}.io_service_bytes_recursive"))?
        else {
            continue;
        };
        let ops = files::read_opt(dir, &format!("{prefix}.io_serviced_recursive"))?;
        let bytes = v1_blkio_entries(&bytes);
        let ops = ops.map(|t| v1_blkio_entries(&t)).unwrap_or_default();
        if prefix != "blkio.throttle" && bytes.is_empty() && ops.is_empty() {
            continue;
        }
        return Ok(BlkioStats {
            io_service_bytes_recursive: bytes,
            io_serviced_recursive: ops,
        });
    }
    Ok(BlkioStats::default())
}

/// v2 `io.stat`.
pub(crate) fn v2_io(dir: &Path) -> Result<BlkioStats, CgroupError> {
    let mut s = BlkioStats::default();
    let Some(text) = files::read_opt(dir, "io.stat")? else {
        return Ok(s);
    };
    for line in files::parse_nested_keyed(&text) {
        let (major, minor) = (line.major, line.minor);
        for (key, value) in line.pairs {
            let (list, op) = match key.as_str() {
                "rbytes" => (&mut s.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut s.io_service_bytes_recursive, "Write"),
                "rios" => (&mut s.io_serviced_recursive, "Read"),
                "wios" => (&mut s.io_serviced_recursive, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.to_owned(),
                value,
            });
        }
    }
    Ok(s)
}

/// The huge page sizes of this machine, named as in cgroup files (`2MB`).
pub(crate) fn hugepage_sizes() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let mut sizes: Vec<(u64, String)> = dir
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some((kb, page_size_name(kb)))
        })
        .collect();
    sizes.sort();
    sizes.into_iter().map(|(_, n)| n).collect()
}

/// `2048` (kB) → `2MB`, as the kernel names hugetlb files.
pub(crate) fn page_size_name(kb: u64) -> String {
    let units = ["KB", "MB", "GB", "TB", "PB"];
    let (mut value, mut unit) = (kb, 0);
    while value >= 1024 && value % 1024 == 0 && unit + 1 < units.len() {
        value /= 1024;
        unit += 1;
    }
    format!("{value}{}", units[unit])
}

/// v1 `hugetlb.<size>.*`.
pub(crate) fn v1_hugetlb(
    dir: &Path,
    sizes: &[String],
) -> Result<BTreeMap<String, HugetlbStats>, CgroupError> {
    let mut out = BTreeMap::new();
    for size in sizes {
        let p = format!("hugetlb.{size}");
        out.insert(
            size.clone(),
            HugetlbStats {
                usage: number(dir, &format!("{p}.usage_in_bytes"))?,
                max: number(dir, &format!("{p}.max_usage_in_bytes"))?,
                failcnt: number(dir, &format!("{p}.failcnt"))?,
            },
        );
    }
    Ok(out)
}

/// v2 `hugetlb.<size>.current` and `.events`.
pub(crate) fn v2_hugetlb(
    dir: &Path,
    sizes: &[String],
) -> Result<BTreeMap<String, HugetlbStats>, CgroupError> {
    let mut out = BTreeMap::new();
    for size in sizes {
        let events = flat(dir, &format!("hugetlb.{size}.events"))?;
        out.insert(
            size.clone(),
            HugetlbStats {
                usage: number(dir, &format!("hugetlb.{size}.current"))?,
                max: 0,
                failcnt: events.get("max").copied().unwrap_or(0),
            },
        );
    }
    Ok(out)
}

/// The OOM-kill counter: v1 `memory.oom_control` `oom_kill`, v2
/// `memory.events` `oom_kill`. `None` when the kernel has no such counter.
pub(crate) fn oom_kills(dir: &Path, v2: bool) -> Result<Option<u64>, CgroupError> {
    let file = if v2 {
        "memory.events"
    } else {
        "memory.oom_control"
    };
    Ok(files::read_opt(dir, file)?
        .and_then(|t| files::parse_flat_keyed(&t).get("oom_kill").copied()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_names() {
        assert_eq!(page_size_name(2048), "2MB");
        assert_eq!(page_size_name(1_048_576), "1GB");
        assert_eq!(page_size_name(64), "64KB");
        assert_eq!(page_size_name(32 * 1024 * 1024), "32GB");
    }

    #[test]
    fn v2_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let put = |f: &str, s: &str| std::fs::write(d.join(f), s).unwrap();
        put("cpu.stat", "usage_usec 100\nuser_usec 60\nsystem_usec 40\nnr_periods 5\nnr_throttled 2\nthrottled_usec 7\n");
        put("memory.current", "4096\n");
        put("memory.max", "max\n");
        put("memory.stat", "anon 1\nfile 8192\n");
        put("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n");
        put("memory.swap.current", "10\n");
        put("memory.swap.max", "100\n");
        put("pids.current", "3\n");
        put("pids.max", "max\n");
        put(
            "io.stat",
            "8:0 rbytes=512 wbytes=1024 rios=1 wios=2 dbytes=0 dios=0\n",
        );
        put("hugetlb.2MB.current", "2097152\n");
        put("hugetlb.2MB.events", "max 4\n");

        let cpu = v2_cpu(d).unwrap();
        assert_eq!(cpu.usage.total, 100_000);
        assert_eq!(cpu.usage.kernel, 40_000);
        assert_eq!(cpu.throttling.throttled_time, 7_000);
        let mem = v2_memory(d).unwrap();
        assert_eq!(mem.usage.usage, 4096);
        assert_eq!(mem.usage.limit, u64::MAX);
        assert_eq!(mem.usage.failcnt, 3);
        assert_eq!(mem.cache, 8192);
        assert_eq!(mem.swap.usage, 4106);
        assert_eq!(mem.swap.limit, u64::MAX);
        assert_eq!(oom_kills(d, true).unwrap(), Some(1));
        let p = pids(d).unwrap();
        assert_eq!((p.current, p.limit), (3, 0));
        let io = v2_io(d).unwrap();
        assert_eq!(io.io_service_bytes_recursive.len(), 2);
        assert_eq!(io.io_serviced_recursive[1].op, "Write");
        assert_eq!(io.io_serviced_recursive[1].value, 2);
        let h = v2_hugetlb(d, &["2MB".to_owned()]).unwrap();
        assert_eq!(h["2MB"].usage, 2 << 20);
        assert_eq!(h["2MB"].failcnt, 4);
    }

    #[test]
    fn v1_files_and_json_shape() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let put = |f: &str, s: &str| std::fs::write(d.join(f), s).unwrap();
        put("cpuacct.usage", "1000\n");
        put("cpuacct.usage_percpu", "600 400 \n");
        put("cpuacct.stat", "user 2\nsystem 1\n");
        put(
            "cpu.stat",
            "nr_periods 9\nnr_throttled 1\nthrottled_time 55\n",
        );
        put("memory.usage_in_bytes", "8192\n");
        put("memory.limit_in_bytes", "9223372036854771712\n");
        put("memory.failcnt", "0\n");
        put("memory.stat", "cache 4096\ntotal_cache 4096\n");
        put(
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        put(
            "blkio.throttle.io_service_bytes_recursive",
            "254:0 Read 4096\n254:0 Write 0\nTotal 4096\n",
        );
        put(
            "blkio.throttle.io_serviced_recursive",
            "254:0 Read 1\nTotal 1\n",
        );
        let cpu = v1_cpu(Some(d), Some(d)).unwrap();
        assert_eq!(cpu.usage.percpu, [600, 400]);
        assert_eq!(cpu.usage.user, 2 * tick_ns());
        assert_eq!(cpu.throttling.throttled_periods, 1);
        let mem = v1_memory(d).unwrap();
        assert_eq!(mem.cache, 4096);
        assert_eq!(mem.usage.usage, 8192);
        assert_eq!(oom_kills(d, false).unwrap(), Some(2));
        let blk = v1_blkio(d).unwrap();
        assert_eq!(blk.io_service_bytes_recursive.len(), 2);
        assert_eq!(blk.io_serviced_recursive[0].value, 1);

        let stats = Stats {
            cpu,
            memory: mem,
            blkio: blk,
            ..Stats::default()
        };
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["cpu"]["usage"]["total"], 1000);
        assert_eq!(json["cpu"]["throttling"]["throttledPeriods"], 1);
        assert_eq!(json["memory"]["usage"]["usage"], 8192);
        assert_eq!(json["memory"]["raw"]["total_cache"], 4096);
        assert!(json["memory"]["kernelTCP"].is_object());
        assert_eq!(json["blkio"]["ioServiceBytesRecursive"][0]["op"], "Read");
        assert_eq!(json["blkio"]["ioServicedRecursive"][0]["major"], 254);
        assert!(json["pids"].is_object());
    }
}
