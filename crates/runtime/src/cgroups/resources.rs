//! Applying `linux.resources`: which controller enforces each part, in
//! which hierarchy, and in which order the parts are written.
//!
//! Only the parts the spec sets are written, and a part with nothing set
//! (`"memory": {}`) needs no controller. The order is runc's v1 order
//! (cpuset, devices, memory, cpu, pids, blkio, hugetlb, network, rdma),
//! with `unified` last so that its raw values win. The files themselves are
//! [`super::v1`]'s and [`super::v2`]'s business; the formats shared by both
//! versions (`pids.max`, `rdma.max`, `cpuset.*`) are here.

use std::path::Path;

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxHugepageLimit, LinuxMemory, LinuxResources,
};

use super::files;
use super::{bpf, devices, v1, v2, Cgroup, CgroupError, Target};

/// Writes everything `r` asks for into the cgroup.
pub(crate) fn apply(cg: &Cgroup, r: &LinuxResources) -> Result<(), CgroupError> {
    if let Some(cpu) = r.cpu() {
        let writes = v1::cpuset_writes(cpu);
        if !writes.is_empty() {
            let (Target::V1(dir) | Target::V2(dir)) =
                cg.target("cpuset", "cpuset", "linux.resources.cpu.cpus")?;
            files::write_all(dir, &writes)?;
        }
    }
    if let Some(list) = r.devices() {
        apply_devices(cg, list)?;
    }
    if let Some(mem) = r.memory().as_ref().filter(|m| memory_is_set(m)) {
        match cg.target("memory", "memory", "linux.resources.memory")? {
            Target::V1(dir) => v1::memory(dir, mem)?,
            Target::V2(dir) => files::write_all(dir, &v2::memory_writes(mem)?)?,
        }
    }
    if let Some(cpu) = r.cpu().as_ref().filter(|c| cpu_is_set(c)) {
        match cg.target("cpu", "cpu", "linux.resources.cpu")? {
            Target::V1(dir) => v1::cpu(dir, cpu)?,
            Target::V2(dir) => files::write_all(dir, &v2::cpu_writes(cpu)?)?,
        }
    }
    if let Some(pids) = r.pids() {
        let (Target::V1(dir) | Target::V2(dir)) =
            cg.target("pids", "pids", "linux.resources.pids")?;
        files::write(dir, "pids.max", &pids_max(pids.limit()))?;
    }
    if let Some(io) = r.block_io().as_ref().filter(|io| blkio_is_set(io)) {
        match cg.target("blkio", "io", "linux.resources.blockIO")? {
            Target::V1(dir) => v1::blkio(dir, io)?,
            Target::V2(dir) => {
                let bfq = dir.join("io.bfq.weight").exists();
                files::write_all(dir, &v2::io_writes(io, bfq))?;
            }
        }
    }
    if let Some(limits) = r.hugepage_limits().as_ref().filter(|l| !l.is_empty()) {
        check_page_sizes(limits)?;
        match cg.target("hugetlb", "hugetlb", "linux.resources.hugepageLimits")? {
            Target::V1(dir) => files::write_all(dir, &v1::hugetlb_writes(limits))?,
            Target::V2(dir) => files::write_all(dir, &v2::hugetlb_writes(limits))?,
        }
    }
    if let Some(net) = r.network() {
        if net.class_id().is_some() {
            let dir = v1_only(cg, "net_cls", "linux.resources.network.classID")?;
            v1::net_cls(dir, net)?;
        }
        if net.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
            let dir = v1_only(cg, "net_prio", "linux.resources.network.priorities")?;
            v1::net_prio(dir, net)?;
        }
    }
    if let Some(rdma) = r.rdma().as_ref().filter(|m| !m.is_empty()) {
        let (Target::V1(dir) | Target::V2(dir)) =
            cg.target("rdma", "rdma", "linux.resources.rdma")?;
        let mut names: Vec<_> = rdma.keys().collect();
        names.sort();
        for name in names {
            let limit = &rdma[name];
            let mut line = name.clone();
            if let Some(h) = limit.hca_handles() {
                line.push_str(&format!(" hca_handle={h}"));
            }
            if let Some(o) = limit.hca_objects() {
                line.push_str(&format!(" hca_object={o}"));
            }
            if line != *name {
                files::write(dir, "rdma.max", &line)?;
            }
        }
    }
    if let Some(unified) = r.unified().as_ref().filter(|u| !u.is_empty()) {
        apply_unified(cg, unified)?;
    }
    Ok(())
}

fn memory_is_set(m: &LinuxMemory) -> bool {
    m.limit().is_some()
        || m.reservation().is_some()
        || m.swap().is_some()
        || m.kernel().is_some()
        || m.kernel_tcp().is_some()
        || m.swappiness().is_some()
        || m.disable_oom_killer().is_some()
        || m.use_hierarchy().is_some()
}

/// Whether the cpu controller's part (not cpuset's) of `cpu` is set.
fn cpu_is_set(c: &LinuxCpu) -> bool {
    c.shares().is_some()
        || c.quota().is_some()
        || c.period().is_some()
        || c.burst().is_some()
        || c.idle().is_some()
        || c.realtime_runtime().is_some()
        || c.realtime_period().is_some()
}

fn blkio_is_set(io: &LinuxBlockIo) -> bool {
    io.weight().is_some()
        || io.leaf_weight().is_some()
        || io.weight_device().as_ref().is_some_and(|v| !v.is_empty())
        || [
            io.throttle_read_bps_device(),
            io.throttle_write_bps_device(),
            io.throttle_read_iops_device(),
            io.throttle_write_iops_device(),
        ]
        .iter()
        .any(|l| l.as_ref().is_some_and(|v| !v.is_empty()))
}

/// `pids.max`: a limit of 0 or below means no limit.
pub(crate) fn pids_max(limit: i64) -> String {
    if limit > 0 {
        limit.to_string()
    } else {
        "max".to_owned()
    }
}

/// Page sizes go into file names: only `<digits><unit>B` is accepted.
fn check_page_sizes(limits: &[LinuxHugepageLimit]) -> Result<(), CgroupError> {
    for l in limits {
        let size = l.page_size();
        let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let unit = &size[digits.len()..];
        let ok = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
            && ["KB", "MB", "GB", "TB", "PB"].contains(&unit);
        if !ok {
            return Err(CgroupError::InvalidValue {
                field: "linux.resources.hugepageLimits",
                value: size.clone(),
                reason: "a page size is a number and a unit, like \"2MB\" or \"1GB\"",
            });
        }
    }
    Ok(())
}

fn v1_only<'a>(
    cg: &'a Cgroup,
    controller: &str,
    field: &'static str,
) -> Result<&'a Path, CgroupError> {
    cg.v1_path(controller)
        .ok_or_else(|| CgroupError::ControllerUnavailable {
            field,
            controller: controller.to_owned(),
        })
}

/// The device policy: v1 files where a devices hierarchy is mounted, else
/// an eBPF filter on the cgroup2 directory.
fn apply_devices(cg: &Cgroup, list: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    let rules = devices::rules_with_defaults(list)?;
    if let Some(dir) = cg.v1_path("devices") {
        return devices::apply_v1(dir, &rules);
    }
    if let Some(dir) = cg.unified_path() {
        return bpf::replace_filter(dir, &bpf::device_filter(&rules));
    }
    Err(CgroupError::ControllerUnavailable {
        field: "linux.resources.devices",
        controller: "devices".to_owned(),
    })
}

/// Checks a `linux.resources.unified` key: a plain file name of the form
/// `<controller>.<setting>`.
fn check_unified_key(key: &str) -> Result<(), CgroupError> {
    let bad = |reason| CgroupError::UnifiedKey {
        key: key.to_owned(),
        reason,
    };
    if key.contains('/') || key.contains('\0') {
        return Err(bad("a key is a file name and cannot contain \"/\""));
    }
    if key.contains("..") || key.starts_with('.') || key.ends_with('.') || !key.contains('.') {
        return Err(bad("a key is a control file name like \"memory.high\""));
    }
    if key == "cgroup.procs" || key == "cgroup.threads" || key == "cgroup.subtree_control" {
        return Err(bad("this file is managed by the runtime"));
    }
    Ok(())
}

fn apply_unified(
    cg: &Cgroup,
    unified: &std::collections::HashMap<String, String>,
) -> Result<(), CgroupError> {
    let mut keys: Vec<&String> = unified.keys().collect();
    keys.sort();
    for key in &keys {
        check_unified_key(key)?;
    }
    let Some(dir) = cg.unified_path() else {
        return Err(CgroupError::UnifiedKey {
            key: keys[0].clone(),
            reason: "this host has no cgroup v2 hierarchy",
        });
    };
    for key in keys {
        let value = &unified[key];
        if let Err(source) = files::try_write(dir, key, value) {
            if source.kind() == std::io::ErrorKind::NotFound {
                let controller = key.split('.').next().unwrap_or("");
                let available = v2::controllers(dir)?;
                if controller != "cgroup" && !available.iter().any(|c| c == controller) {
                    return Err(CgroupError::UnifiedKey {
                        key: key.clone(),
                        reason: "its controller is not available in the cgroup v2 hierarchy",
                    });
                }
            }
            return Err(CgroupError::Write {
                path: dir.join(key),
                value: value.clone(),
                source,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::files::Write;
    use oci_spec::runtime::{LinuxCpuBuilder, LinuxHugepageLimitBuilder};

    #[test]
    fn pids_and_cpuset_values() {
        let cpu = LinuxCpuBuilder::default()
            .cpus("0-1")
            .mems("0")
            .build()
            .unwrap();
        let w = v1::cpuset_writes(&cpu);
        assert_eq!(w[0], Write::new("cpuset.cpus", "0-1"));
        assert_eq!(w[1], Write::new("cpuset.mems", "0"));
        assert_eq!(pids_max(0), "max");
        assert_eq!(pids_max(-1), "max");
        assert_eq!(pids_max(42), "42");
        assert!(!cpu_is_set(&cpu));
    }

    #[test]
    fn page_sizes() {
        let l = |s: &str| {
            LinuxHugepageLimitBuilder::default()
                .page_size(s)
                .limit(1)
                .build()
                .unwrap()
        };
        assert!(check_page_sizes(&[l("2MB"), l("1GB"), l("64KB")]).is_ok());
        for bad in ["2M", "../x", "MB", "02MB", "2MB/..", "2 MB"] {
            assert!(check_page_sizes(&[l(bad)]).is_err(), "{bad}");
        }
    }

    #[test]
    fn unified_keys() {
        assert!(check_unified_key("memory.high").is_ok());
        assert!(check_unified_key("cgroup.freeze").is_ok());
        for bad in [
            "../memory.max",
            "memory/x",
            "..",
            "memory",
            ".x",
            "cgroup.procs",
        ] {
            let e = check_unified_key(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
