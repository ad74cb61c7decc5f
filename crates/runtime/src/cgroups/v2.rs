//! The cgroup v2 files: creating a cgroup with its controllers enabled
//! from the mount root down, the values written for memory, cpu, io and
//! hugetlb, `cgroup.freeze`, and `cgroup.kill`.
//!
//! Nothing here assumes where cgroup2 is mounted: every function takes the
//! mount root or the cgroup directory, so the same code serves a pure v2
//! host (`/sys/fs/cgroup`), the unified hierarchy of a hybrid host
//! (`/sys/fs/cgroup/unified`), and tests. The value conversions are pure
//! functions returning [`Write`]s so that they can be checked on hosts
//! whose v2 hierarchy lacks the controller. Settings that only exist in v1
//! (kernel memory, swappiness, OOM-killer switch, leaf weights) are skipped
//! with a warning, as runc does; real-time CPU limits, which v2 cannot
//! express at all, are an error.

use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory};

use super::files::{self, Write};
use super::{CgroupError, FreezerState};

/// Creates `dir` (and its parents) below the cgroup2 mount `mountpoint`,
/// enabling in `cgroup.subtree_control` of every level above `dir` the
/// controllers the mount root offers, as runc does. Enabling is best
/// effort: a level that has processes of its own cannot delegate domain
/// controllers, and a resource that needs a missing controller fails later
/// with an error naming it.
pub(crate) fn create(mountpoint: &Path, dir: &Path) -> Result<(), CgroupError> {
    let rel = dir.strip_prefix(mountpoint).unwrap_or(Path::new(""));
    let available = files::read_opt(mountpoint, "cgroup.controllers")?.unwrap_or_default();
    let controllers: Vec<&str> = available.split_whitespace().collect();
    let mut current = mountpoint.to_path_buf();
    for part in rel.components() {
        if !controllers.is_empty() {
            enable_controllers(&current, &controllers);
        }
        current.push(part);
        match std::fs::create_dir(&current) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(CgroupError::Io {
                    path: current,
                    source,
                })
            }
        }
    }
    Ok(())
}

fn enable_controllers(dir: &Path, controllers: &[&str]) {
    let enabled = files::read_opt(dir, "cgroup.subtree_control")
        .ok()
        .flatten()
        .unwrap_or_default();
    let missing: Vec<String> = controllers
        .iter()
        .filter(|c| !enabled.split_whitespace().any(|e| e == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return;
    }
    if files::try_write(dir, "cgroup.subtree_control", &missing.join(" ")).is_err() {
        for c in &missing {
            if let Err(e) = files::try_write(dir, "cgroup.subtree_control", c) {
                tracing::debug!(dir = %dir.display(), controller = %c, error = %e,
                    "cannot enable cgroup v2 controller");
            }
        }
    }
}

/// The controllers usable in the cgroup `dir` (its `cgroup.controllers`).
pub(crate) fn controllers(dir: &Path) -> Result<Vec<String>, CgroupError> {
    Ok(files::read(dir, "cgroup.controllers")?
        .split_whitespace()
        .map(str::to_owned)
        .collect())
}

/// `-1` is `max`, anything else the number.
fn limit_str(v: i64) -> String {
    if v < 0 {
        "max".to_owned()
    } else {
        v.to_string()
    }
}

/// Converts the OCI memory+swap total to the v2 swap-only limit, as runc's
/// `ConvertMemorySwapToCgroupV2Value`: `None` means leave `memory.swap.max`
/// alone.
pub(crate) fn swap_max(
    swap: Option<i64>,
    limit: Option<i64>,
) -> Result<Option<String>, CgroupError> {
    let limit = limit.unwrap_or(0);
    let swap = match swap {
        None | Some(0) if limit == -1 => return Ok(Some("max".to_owned())),
        None | Some(0) => return Ok(None),
        Some(-1) => return Ok(Some("max".to_owned())),
        Some(s) => s,
    };
    let bad = |reason| CgroupError::InvalidValue {
        field: "linux.resources.memory.swap",
        value: swap.to_string(),
        reason,
    };
    if swap < 0 {
        return Err(bad("must be -1 (unlimited) or a number of bytes"));
    }
    if limit <= 0 {
        return Err(bad("a swap limit needs a memory limit on cgroup v2"));
    }
    if swap < limit {
        return Err(bad("memory+swap must not be lower than the memory limit"));
    }
    Ok(Some((swap - limit).to_string()))
}

/// The writes for `linux.resources.memory`.
pub(crate) fn memory_writes(mem: &LinuxMemory) -> Result<Vec<Write>, CgroupError> {
    let mut w = Vec::new();
    if let Some(swap) = swap_max(mem.swap(), mem.limit())? {
        // Without swap accounting the file is missing; that is fine when
        // the value only says "no limit" or "no swap".
        if swap == "max" || swap == "0" {
            w.push(Write::missing_ok("memory.swap.max", swap));
        } else {
            w.push(Write::new("memory.swap.max", swap));
        }
    }
    if let Some(limit) = mem.limit().filter(|l| *l != 0) {
        w.push(Write::new("memory.max", limit_str(limit)));
    }
    if let Some(low) = mem.reservation().filter(|l| *l != 0) {
        w.push(Write::new("memory.low", limit_str(low)));
    }
    for (set, name) in [
        (mem.kernel().is_some(), "kernel"),
        (mem.kernel_tcp().is_some(), "kernelTCP"),
        (mem.swappiness().is_some(), "swappiness"),
        (mem.disable_oom_killer() == Some(true), "disableOOMKiller"),
    ] {
        if set {
            tracing::warn!(
                "linux.resources.memory.{name} has no cgroup v2 equivalent and is ignored"
            );
        }
    }
    Ok(w)
}

/// runc's conversion of cgroup v1 CPU shares (2..262144) to a v2 weight
/// (1..10000); 0 means unset.
pub(crate) fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// The writes for the cpu controller's part of `linux.resources.cpu`.
pub(crate) fn cpu_writes(cpu: &LinuxCpu) -> Result<Vec<Write>, CgroupError> {
    if cpu.realtime_runtime().is_some_and(|r| r != 0)
        || cpu.realtime_period().is_some_and(|p| p != 0)
    {
        return Err(CgroupError::Unsupported {
            field: "linux.resources.cpu.realtimeRuntime",
            reason: "real-time CPU limits do not exist in cgroup v2",
        });
    }
    let mut w = Vec::new();
    if let Some(idle) = cpu.idle() {
        w.push(Write::new("cpu.idle", idle.to_string()));
    }
    let weight = shares_to_weight(cpu.shares().unwrap_or(0));
    // An idle cgroup has no weight.
    if weight != 0 && cpu.idle().unwrap_or(0) == 0 {
        w.push(Write::new("cpu.weight", weight.to_string()));
    }
    let quota = cpu.quota().unwrap_or(0);
    let period = cpu.period().unwrap_or(0);
    if quota != 0 || period != 0 {
        let quota = if quota > 0 {
            quota.to_string()
        } else {
            "max".to_owned()
        };
        let period = if period == 0 { 100_000 } else { period };
        w.push(Write::new("cpu.max", format!("{quota} {period}")));
    }
    if let Some(burst) = cpu.burst() {
        w.push(Write::new("cpu.max.burst", burst.to_string()));
    }
    Ok(w)
}

/// runc's conversion of a blkio weight (10..1000) to an `io.weight`
/// (1..10000).
pub(crate) fn blkio_to_io_weight(weight: u16) -> u64 {
    let w = u64::from(weight.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

/// The writes for `linux.resources.blockIO`. With BFQ (`io.bfq.weight`
/// present, `bfq`), weights are written there unconverted; otherwise they
/// are converted for `io.weight`.
pub(crate) fn io_writes(io: &LinuxBlockIo, bfq: bool) -> Vec<Write> {
    let mut w = Vec::new();
    if let Some(weight) = io.weight().filter(|v| *v != 0) {
        if bfq {
            w.push(Write::new("io.bfq.weight", weight.to_string()));
        } else {
            w.push(Write::new(
                "io.weight",
                blkio_to_io_weight(weight).to_string(),
            ));
        }
    }
    for d in io.weight_device().iter().flatten() {
        if let Some(weight) = d.weight().filter(|v| *v != 0) {
            let (file, value) = if bfq {
                ("io.bfq.weight", u64::from(weight))
            } else {
                ("io.weight", blkio_to_io_weight(weight))
            };
            w.push(Write::new(
                file,
                format!("{}:{} {value}", d.major(), d.minor()),
            ));
        }
    }
    if io.leaf_weight().is_some()
        || io
            .weight_device()
            .iter()
            .flatten()
            .any(|d| d.leaf_weight().is_some())
    {
        tracing::warn!(
            "linux.resources.blockIO leaf weights do not exist in cgroup v2 and are ignored"
        );
    }
    for (key, list) in [
        ("rbps", io.throttle_read_bps_device()),
        ("wbps", io.throttle_write_bps_device()),
        ("riops", io.throttle_read_iops_device()),
        ("wiops", io.throttle_write_iops_device()),
    ] {
        for t in list.iter().flatten() {
            w.push(Write::new(
                "io.max",
                format!("{}:{} {key}={}", t.major(), t.minor(), t.rate()),
            ));
        }
    }
    w
}

/// The writes for `linux.resources.hugepageLimits` (page sizes already
/// validated); the reservation limit is set too where the kernel has it.
pub(crate) fn hugetlb_writes(limits: &[LinuxHugepageLimit]) -> Vec<Write> {
    let mut w = Vec::new();
    for l in limits {
        let size = l.page_size();
        let value = limit_str(l.limit());
        w.push(Write::new(format!("hugetlb.{size}.max"), value.clone()));
        w.push(Write::missing_ok(format!("hugetlb.{size}.rsvd.max"), value));
    }
    w
}

/// Freezes or thaws through `cgroup.freeze` and waits (up to two seconds)
/// until `cgroup.events` reports `frozen 1` (or `frozen 0`).
pub(crate) fn freeze(dir: &Path, target: FreezerState) -> Result<(), CgroupError> {
    let (value, want) = match target {
        FreezerState::Frozen => ("1", "1"),
        FreezerState::Thawed => ("0", "0"),
    };
    files::write(dir, "cgroup.freeze", value)?;
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut delay = Duration::from_micros(100);
    loop {
        let events = files::read(dir, "cgroup.events")?;
        let frozen = events
            .lines()
            .find_map(|l| l.strip_prefix("frozen "))
            .map(str::trim)
            .unwrap_or("");
        if frozen == want {
            return Ok(());
        }
        if Instant::now() >= deadline {
            if target == FreezerState::Frozen {
                let _ = files::write(dir, "cgroup.freeze", "0");
            }
            return Err(CgroupError::FreezeTimeout {
                path: dir.join("cgroup.events"),
                target,
                state: format!("frozen {frozen}"),
            });
        }
        sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(10));
    }
}

/// Reads `cgroup.freeze`.
pub(crate) fn freezer_state(dir: &Path) -> Result<FreezerState, CgroupError> {
    let text = files::read(dir, "cgroup.freeze")?;
    match text.trim() {
        "0" => Ok(FreezerState::Thawed),
        "1" => Ok(FreezerState::Frozen),
        _ => Err(files::parse_error(
            dir.join("cgroup.freeze"),
            &text,
            "expected 0 or 1",
        )),
    }
}

/// Kills every process of the cgroup and its descendants through
/// `cgroup.kill` (Linux 5.14); `false` when the kernel has no such file.
pub(crate) fn kill(dir: &Path) -> Result<bool, CgroupError> {
    match files::try_write(dir, "cgroup.kill", "1") {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(CgroupError::Write {
            path: dir.join("cgroup.kill"),
            value: "1".to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxThrottleDeviceBuilder,
        LinuxWeightDeviceBuilder,
    };

    fn pairs(w: &[Write]) -> Vec<(String, String)> {
        w.iter()
            .map(|w| (w.file.clone(), w.value.clone()))
            .collect()
    }

    fn owned(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn shares_to_weight_as_runc() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(512), 20);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1), 1);
        assert_eq!(shares_to_weight(u64::MAX), 10_000);
    }

    #[test]
    fn memory_values() {
        let mem = LinuxMemoryBuilder::default()
            .limit(64 << 20)
            .swap(96 << 20)
            .reservation(32 << 20)
            .build()
            .unwrap();
        assert_eq!(
            pairs(&memory_writes(&mem).unwrap()),
            owned(&[
                ("memory.swap.max", "33554432"),
                ("memory.max", "67108864"),
                ("memory.low", "33554432"),
            ])
        );
        // -1 is max, for memory and swap alike; swap == limit is no swap.
        let mem = LinuxMemoryBuilder::default().limit(-1).build().unwrap();
        let w = memory_writes(&mem).unwrap();
        assert_eq!(
            pairs(&w),
            owned(&[("memory.swap.max", "max"), ("memory.max", "max")])
        );
        assert!(w[0].missing_ok);
        let mem = LinuxMemoryBuilder::default()
            .limit(1 << 20)
            .swap(1 << 20)
            .build()
            .unwrap();
        assert_eq!(memory_writes(&mem).unwrap()[0].value, "0");
        let mem = LinuxMemoryBuilder::default()
            .limit(1 << 20)
            .swap(-1)
            .build()
            .unwrap();
        assert_eq!(memory_writes(&mem).unwrap()[0].value, "max");
        // Swap without a memory limit, or below it, is refused.
        let mem = LinuxMemoryBuilder::default().swap(1 << 20).build().unwrap();
        assert!(memory_writes(&mem).is_err());
        let mem = LinuxMemoryBuilder::default()
            .limit(2 << 20)
            .swap(1 << 20)
            .build()
            .unwrap();
        assert!(memory_writes(&mem).is_err());
        // Only the limit.
        let mem = LinuxMemoryBuilder::default()
            .limit(1 << 20)
            .build()
            .unwrap();
        assert_eq!(
            pairs(&memory_writes(&mem).unwrap()),
            owned(&[("memory.max", "1048576")])
        );
    }

    #[test]
    fn cpu_values() {
        let cpu = LinuxCpuBuilder::default()
            .shares(1024u64)
            .quota(50_000)
            .period(100_000u64)
            .build()
            .unwrap();
        assert_eq!(
            pairs(&cpu_writes(&cpu).unwrap()),
            owned(&[("cpu.weight", "39"), ("cpu.max", "50000 100000")])
        );
        let cpu = LinuxCpuBuilder::default().quota(-1).build().unwrap();
        assert_eq!(
            pairs(&cpu_writes(&cpu).unwrap()),
            owned(&[("cpu.max", "max 100000")])
        );
        let cpu = LinuxCpuBuilder::default()
            .idle(1)
            .shares(1024u64)
            .build()
            .unwrap();
        assert_eq!(
            pairs(&cpu_writes(&cpu).unwrap()),
            owned(&[("cpu.idle", "1")])
        );
        let cpu = LinuxCpuBuilder::default()
            .realtime_runtime(1000)
            .build()
            .unwrap();
        assert!(cpu_writes(&cpu).is_err());
    }

    #[test]
    fn io_values() {
        let io = LinuxBlockIoBuilder::default()
            .weight(500u16)
            .weight_device(vec![LinuxWeightDeviceBuilder::default()
                .major(8)
                .minor(0)
                .weight(10u16)
                .build()
                .unwrap()])
            .throttle_read_bps_device(vec![LinuxThrottleDeviceBuilder::default()
                .major(8)
                .minor(0)
                .rate(1000u64)
                .build()
                .unwrap()])
            .throttle_write_iops_device(vec![LinuxThrottleDeviceBuilder::default()
                .major(8)
                .minor(16)
                .rate(20u64)
                .build()
                .unwrap()])
            .build()
            .unwrap();
        assert_eq!(
            pairs(&io_writes(&io, false)),
            owned(&[
                ("io.weight", "4950"),
                ("io.weight", "8:0 1"),
                ("io.max", "8:0 rbps=1000"),
                ("io.max", "8:16 wiops=20"),
            ])
        );
        assert_eq!(
            pairs(&io_writes(&io, true))[..2],
            owned(&[("io.bfq.weight", "500"), ("io.bfq.weight", "8:0 10")])
        );
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
    }

    #[test]
    fn hugetlb_values() {
        let l = oci_spec::runtime::LinuxHugepageLimitBuilder::default()
            .page_size("1GB")
            .limit(-1)
            .build()
            .unwrap();
        assert_eq!(
            pairs(&hugetlb_writes(&[l])),
            owned(&[("hugetlb.1GB.max", "max"), ("hugetlb.1GB.rsvd.max", "max")])
        );
    }
}
