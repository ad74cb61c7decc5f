//! The cgroup v1 controller files: memory, cpu, cpuset, blkio, hugetlb,
//! net_cls and net_prio writers, the freezer, and the cpuset copy-down that
//! a new cpuset cgroup needs before any task can join it.
//!
//! Each function takes the container's directory in the one hierarchy that
//! has the controller; choosing that hierarchy, and whether v1 or v2 is
//! used for a controller at all, is [`super::resources`]' job. The write
//! orders that depend on the current values (memory before or after
//! memory+swap, CFS and RT period before or after the runtime) follow runc.

use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxNetwork};

use super::files::{self, Write};
use super::{CgroupError, FreezerState};

/// The writes for `linux.resources.memory`. `current_limit` is the value
/// of `memory.limit_in_bytes` now; it decides whether memory+swap is
/// written before or after the memory limit, so that the kernel's rule
/// `memsw >= memory` holds after each write.
pub(crate) fn memory_writes(
    mem: &LinuxMemory,
    current_limit: u64,
) -> Result<Vec<Write>, CgroupError> {
    const LIMIT: &str = "memory.limit_in_bytes";
    const MEMSW: &str = "memory.memsw.limit_in_bytes";
    let limit = mem.limit().unwrap_or(0);
    let swap = mem.swap().unwrap_or(0);
    if limit > 0 && swap > 0 && swap < limit {
        return Err(CgroupError::InvalidValue {
            field: "linux.resources.memory.swap",
            value: swap.to_string(),
            reason: "memory+swap must not be lower than the memory limit",
        });
    }
    let mut w = Vec::new();
    if limit == -1 && mem.swap().is_none() {
        // Unlimited memory with swap unset means unlimited swap too; this
        // only restates the default when there is no swap accounting.
        w.push(Write::new(LIMIT, "-1"));
        w.push(Write::missing_ok(MEMSW, "-1"));
    } else if limit != 0 && swap != 0 {
        if swap == -1 || current_limit < swap as u64 {
            w.push(Write::new(MEMSW, swap.to_string()));
            w.push(Write::new(LIMIT, limit.to_string()));
        } else {
            w.push(Write::new(LIMIT, limit.to_string()));
            w.push(Write::new(MEMSW, swap.to_string()));
        }
    } else if limit != 0 {
        w.push(Write::new(LIMIT, limit.to_string()));
    } else if swap != 0 {
        w.push(Write::new(MEMSW, swap.to_string()));
    }
    if let Some(r) = mem.reservation() {
        w.push(Write::new("memory.soft_limit_in_bytes", r.to_string()));
    }
    if let Some(k) = mem.kernel() {
        w.push(Write::new("memory.kmem.limit_in_bytes", k.to_string()));
    }
    if let Some(k) = mem.kernel_tcp() {
        w.push(Write::new("memory.kmem.tcp.limit_in_bytes", k.to_string()));
    }
    if let Some(s) = mem.swappiness() {
        if s > 100 {
            return Err(CgroupError::InvalidValue {
                field: "linux.resources.memory.swappiness",
                value: s.to_string(),
                reason: "must be between 0 and 100",
            });
        }
        w.push(Write::new("memory.swappiness", s.to_string()));
    }
    if let Some(d) = mem.disable_oom_killer() {
        w.push(Write::new("memory.oom_control", if d { "1" } else { "0" }));
    }
    if let Some(h) = mem.use_hierarchy() {
        w.push(Write::new(
            "memory.use_hierarchy",
            if h { "1" } else { "0" },
        ));
    }
    Ok(w)
}

/// Applies `linux.resources.memory`.
pub(crate) fn memory(dir: &Path, mem: &LinuxMemory) -> Result<(), CgroupError> {
    let current = files::read_u64_opt(dir, "memory.limit_in_bytes")?.unwrap_or(u64::MAX);
    files::write_all(dir, &memory_writes(mem, current)?)
}

/// Writes `first` then `second`; when the kernel refuses `first` with
/// EINVAL because the two values only fit together in the other order,
/// writes `second` and retries `first` (CFS and RT period / runtime).
fn write_pair(dir: &Path, first: Option<Write>, second: Option<Write>) -> Result<(), CgroupError> {
    let mut retry = None;
    if let Some(f) = first {
        match files::try_write(dir, &f.file, &f.value) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && second.is_some() => retry = Some(f),
            Err(source) => {
                return Err(CgroupError::Write {
                    path: dir.join(&f.file),
                    value: f.value,
                    source,
                })
            }
        }
    }
    if let Some(s) = second {
        files::write(dir, &s.file, &s.value)?;
    }
    if let Some(f) = retry {
        files::write(dir, &f.file, &f.value)?;
    }
    Ok(())
}

/// Applies the cpu controller's part of `linux.resources.cpu`.
pub(crate) fn cpu(dir: &Path, cpu: &LinuxCpu) -> Result<(), CgroupError> {
    // Real-time first: a task with an RT policy cannot join a cgroup
    // without RT runtime.
    write_pair(
        dir,
        cpu.realtime_period()
            .filter(|p| *p != 0)
            .map(|p| Write::new("cpu.rt_period_us", p.to_string())),
        cpu.realtime_runtime()
            .filter(|r| *r != 0)
            .map(|r| Write::new("cpu.rt_runtime_us", r.to_string())),
    )?;
    if let Some(shares) = cpu.shares().filter(|s| *s != 0) {
        let wanted = shares.to_string();
        files::write(dir, "cpu.shares", &wanted)?;
        let got = files::read(dir, "cpu.shares")?;
        if got.trim() != wanted {
            return Err(CgroupError::Clamped {
                path: dir.join("cpu.shares"),
                wanted,
                got: got.trim().to_owned(),
            });
        }
    }
    write_pair(
        dir,
        cpu.period()
            .filter(|p| *p != 0)
            .map(|p| Write::new("cpu.cfs_period_us", p.to_string())),
        cpu.quota()
            .filter(|q| *q != 0)
            .map(|q| Write::new("cpu.cfs_quota_us", q.to_string())),
    )?;
    if let Some(burst) = cpu.burst() {
        files::write(dir, "cpu.cfs_burst_us", &burst.to_string())?;
    }
    if let Some(idle) = cpu.idle() {
        files::write(dir, "cpu.idle", &idle.to_string())?;
    }
    Ok(())
}

/// Applies `linux.resources.cpu.cpus` and `.mems` (same files in v1 and v2).
pub(crate) fn cpuset_writes(cpu: &LinuxCpu) -> Vec<Write> {
    let mut w = Vec::new();
    if let Some(cpus) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
        w.push(Write::new("cpuset.cpus", cpus));
    }
    if let Some(mems) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
        w.push(Write::new("cpuset.mems", mems));
    }
    w
}

/// The writes for `linux.resources.blockIO`. `cfq` tells whether the
/// directory has CFQ's `blkio.weight` (else BFQ's `blkio.bfq.weight` is
/// used, as runc does).
pub(crate) fn blkio_writes(io: &LinuxBlockIo, cfq: bool) -> Vec<Write> {
    let (weight, weight_device) = if cfq {
        ("blkio.weight", "blkio.weight_device")
    } else {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    };
    let mut w = Vec::new();
    if let Some(v) = io.weight().filter(|v| *v != 0) {
        w.push(Write::new(weight, v.to_string()));
    }
    if let Some(v) = io.leaf_weight().filter(|v| *v != 0) {
        w.push(Write::new("blkio.leaf_weight", v.to_string()));
    }
    for d in io.weight_device().iter().flatten() {
        if let Some(v) = d.weight().filter(|v| *v != 0) {
            w.push(Write::new(
                weight_device,
                format!("{}:{} {v}", d.major(), d.minor()),
            ));
        }
        if let Some(v) = d.leaf_weight().filter(|v| *v != 0) {
            w.push(Write::new(
                "blkio.leaf_weight_device",
                format!("{}:{} {v}", d.major(), d.minor()),
            ));
        }
    }
    for (file, list) in [
        (
            "blkio.throttle.read_bps_device",
            io.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            io.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            io.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            io.throttle_write_iops_device(),
        ),
    ] {
        for t in list.iter().flatten() {
            w.push(Write::new(
                file,
                format!("{}:{} {}", t.major(), t.minor(), t.rate()),
            ));
        }
    }
    w
}

/// Applies `linux.resources.blockIO`.
pub(crate) fn blkio(dir: &Path, io: &LinuxBlockIo) -> Result<(), CgroupError> {
    let cfq = dir.join("blkio.weight").exists();
    files::write_all(dir, &blkio_writes(io, cfq))
}

/// The writes for `linux.resources.hugepageLimits` (page sizes already
/// validated). The reservation limit (`.rsvd.`) is set too where the
/// kernel has it.
pub(crate) fn hugetlb_writes(limits: &[LinuxHugepageLimit]) -> Vec<Write> {
    let mut w = Vec::new();
    for l in limits {
        let value = if l.limit() < 0 {
            "-1".to_owned()
        } else {
            l.limit().to_string()
        };
        let size = l.page_size();
        w.push(Write::new(
            format!("hugetlb.{size}.limit_in_bytes"),
            value.clone(),
        ));
        w.push(Write::missing_ok(
            format!("hugetlb.{size}.rsvd.limit_in_bytes"),
            value,
        ));
    }
    w
}

/// Applies `linux.resources.network.classID`.
pub(crate) fn net_cls(dir: &Path, net: &LinuxNetwork) -> Result<(), CgroupError> {
    match net.class_id() {
        Some(id) => files::write(dir, "net_cls.classid", &id.to_string()),
        None => Ok(()),
    }
}

/// Applies `linux.resources.network.priorities`.
pub(crate) fn net_prio(dir: &Path, net: &LinuxNetwork) -> Result<(), CgroupError> {
    for p in net.priorities().iter().flatten() {
        files::write(
            dir,
            "net_prio.ifpriomap",
            &format!("{} {}", p.name(), p.priority()),
        )?;
    }
    Ok(())
}

/// Freezes or thaws, and waits until `freezer.state` says so.
///
/// Freezing can stay in `FREEZING` while tasks keep forking; as runc does,
/// the write is repeated, with a short thaw every so often to let stuck
/// tasks move on, for about two seconds at most. If the cgroup does not
/// freeze in that time it is thawed again and the error names the state it
/// was stuck in.
pub(crate) fn freeze(dir: &Path, target: FreezerState) -> Result<(), CgroupError> {
    let (want, value) = match target {
        FreezerState::Frozen => ("FROZEN", "FROZEN"),
        FreezerState::Thawed => ("THAWED", "THAWED"),
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut round = 0u32;
    let mut state;
    loop {
        if target == FreezerState::Frozen && round % 50 == 49 {
            files::write(dir, "freezer.state", "THAWED")?;
            sleep(Duration::from_millis(10));
        }
        files::write(dir, "freezer.state", value)?;
        state = files::read(dir, "freezer.state")?.trim().to_owned();
        if state == want {
            return Ok(());
        }
        if Instant::now() >= deadline {
            break;
        }
        round += 1;
        sleep(Duration::from_millis(1));
    }
    if target == FreezerState::Frozen {
        // Do not leave it half frozen.
        let _ = files::write(dir, "freezer.state", "THAWED");
    }
    Err(CgroupError::FreezeTimeout {
        path: dir.join("freezer.state"),
        target,
        state,
    })
}

/// Reads the freezer state. `FROZEN` only because an ancestor is frozen
/// (`freezer.self_freezing` 0) reads as thawed, as in runc, and a
/// transient `FREEZING` is waited out for up to a second.
pub(crate) fn freezer_state(dir: &Path) -> Result<FreezerState, CgroupError> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let state = files::read(dir, "freezer.state")?;
        match state.trim() {
            "THAWED" => return Ok(FreezerState::Thawed),
            "FROZEN" => {
                let own = files::read_opt(dir, "freezer.self_freezing")?;
                return Ok(match own.as_deref().map(str::trim) {
                    Some("0") => FreezerState::Thawed,
                    _ => FreezerState::Frozen,
                });
            }
            "FREEZING" if Instant::now() < deadline => sleep(Duration::from_millis(1)),
            "FREEZING" => return Ok(FreezerState::Frozen),
            _ => {
                return Err(files::parse_error(
                    dir.join("freezer.state"),
                    &state,
                    "expected THAWED, FREEZING or FROZEN",
                ))
            }
        }
    }
}

/// Makes `cpuset.cpus` and `cpuset.mems` non-empty at every level from
/// below the mount point down to `dir`, copying each from the level above.
/// A new v1 cpuset cgroup starts with both empty, and no task can join it
/// until they are set.
pub(crate) fn fill_cpuset(mountpoint: &Path, dir: &Path) -> Result<(), CgroupError> {
    let Ok(rel) = dir.strip_prefix(mountpoint) else {
        return Ok(());
    };
    let mut parent = mountpoint.to_path_buf();
    for part in rel.components() {
        let current = parent.join(part);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if files::read(&current, file)?.trim().is_empty() {
                let value = files::read(&parent, file)?;
                let value = value.trim();
                if !value.is_empty() {
                    files::write(&current, file, value)?;
                }
            }
        }
        parent = current;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxHugepageLimitBuilder, LinuxMemoryBuilder,
        LinuxThrottleDeviceBuilder, LinuxWeightDeviceBuilder,
    };

    fn pairs(w: &[Write]) -> Vec<(String, String)> {
        w.iter()
            .map(|w| (w.file.clone(), w.value.clone()))
            .collect()
    }

    #[test]
    fn memory_order_depends_on_current_limit() {
        let mem = LinuxMemoryBuilder::default()
            .limit(64 << 20)
            .swap(128 << 20)
            .build()
            .unwrap();
        // Growing from 32 MiB: memsw first.
        let w = memory_writes(&mem, 32 << 20).unwrap();
        assert_eq!(w[0].file, "memory.memsw.limit_in_bytes");
        assert_eq!(w[1].file, "memory.limit_in_bytes");
        // Shrinking from 1 GiB: memory first.
        let w = memory_writes(&mem, 1 << 30).unwrap();
        assert_eq!(w[0].file, "memory.limit_in_bytes");
    }

    #[test]
    fn memory_other_fields() {
        let mem = LinuxMemoryBuilder::default()
            .limit(-1)
            .reservation(1 << 20)
            .kernel(1 << 20)
            .swappiness(10u64)
            .disable_oom_killer(true)
            .build()
            .unwrap();
        let w = memory_writes(&mem, u64::MAX).unwrap();
        assert_eq!(
            pairs(&w),
            [
                ("memory.limit_in_bytes", "-1"),
                ("memory.memsw.limit_in_bytes", "-1"),
                ("memory.soft_limit_in_bytes", "1048576"),
                ("memory.kmem.limit_in_bytes", "1048576"),
                ("memory.swappiness", "10"),
                ("memory.oom_control", "1"),
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        assert!(w[1].missing_ok);
        let bad = LinuxMemoryBuilder::default()
            .swappiness(101u64)
            .build()
            .unwrap();
        assert!(memory_writes(&bad, 0).is_err());
        let bad = LinuxMemoryBuilder::default()
            .limit(100)
            .swap(50)
            .build()
            .unwrap();
        assert!(memory_writes(&bad, 0).is_err());
        let empty = LinuxMemoryBuilder::default().build().unwrap();
        assert!(memory_writes(&empty, 0).unwrap().is_empty());
    }

    #[test]
    fn blkio_files() {
        let io = LinuxBlockIoBuilder::default()
            .weight(300u16)
            .weight_device(vec![LinuxWeightDeviceBuilder::default()
                .major(8)
                .minor(0)
                .weight(500u16)
                .build()
                .unwrap()])
            .throttle_read_bps_device(vec![LinuxThrottleDeviceBuilder::default()
                .major(8)
                .minor(0)
                .rate(1048576u64)
                .build()
                .unwrap()])
            .build()
            .unwrap();
        let w = blkio_writes(&io, false);
        assert_eq!(
            pairs(&w),
            [
                ("blkio.bfq.weight", "300"),
                ("blkio.bfq.weight_device", "8:0 500"),
                ("blkio.throttle.read_bps_device", "8:0 1048576"),
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        assert_eq!(blkio_writes(&io, true)[0].file, "blkio.weight");
    }

    #[test]
    fn hugetlb_files() {
        let l = LinuxHugepageLimitBuilder::default()
            .page_size("2MB")
            .limit(4 << 20)
            .build()
            .unwrap();
        let w = hugetlb_writes(&[l]);
        assert_eq!(w[0].file, "hugetlb.2MB.limit_in_bytes");
        assert_eq!(w[0].value, "4194304");
        assert!(w[1].missing_ok && w[1].file == "hugetlb.2MB.rsvd.limit_in_bytes");
    }
}
