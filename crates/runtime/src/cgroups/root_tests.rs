//! Tests against the real cgroup filesystems of this host (compiled only
//! for tests). They need root: without it they print why they skip, and
//! under `CI=true` they fail instead. Tests that need a particular layout
//! (a v1 hierarchy, a cgroup2 mount) skip with a message on hosts that lack
//! it. Every test uses its own cgroup name and destroys it even on failure.

use std::path::Path;

use oci_spec::runtime::{
    LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxHugepageLimitBuilder,
    LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
    LinuxThrottleDeviceBuilder,
};

use super::bpf;
use super::devices::{self, DeviceRule};
use super::testkit::{host_layout, need_root, skip, unique, Child, Guard};
use super::{files, Cgroup, CgroupError, FreezerState, Layout};

fn read(dir: &Path, file: &str) -> String {
    files::read(dir, file).unwrap().trim().to_owned()
}

fn open(layout: &Layout, name: &str) -> Guard {
    let path = unique(name);
    Guard(Cgroup::open_in(layout, Some(&path), "t").unwrap())
}

fn v1_host(test: &str, controllers: &[&str]) -> Option<Layout> {
    if !need_root(test) {
        return None;
    }
    let layout = host_layout();
    for c in controllers {
        if layout.hierarchy(c).is_none() {
            skip(test, &format!("no v1 {c} hierarchy on this host"));
            return None;
        }
    }
    Some(layout)
}

/// The cgroup2 mount of this host, used as if it were a pure v2 host.
fn v2_host(test: &str) -> Option<Layout> {
    if !need_root(test) {
        return None;
    }
    match host_layout().unified_mountpoint() {
        Some(mp) => Some(Layout::Unified(mp.to_owned())),
        None => {
            skip(test, "no cgroup2 mount on this host");
            None
        }
    }
}

/// The whole disk that holds `/`, as `major:minor`, if there is one.
fn root_disk() -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata("/").ok()?.dev();
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let sys = Path::new("/sys/dev/block").join(format!("{major}:{minor}"));
    let sys = if sys.join("partition").exists() {
        sys.canonicalize().ok()?.parent()?.to_owned()
    } else {
        sys
    };
    files::parse_dev(&std::fs::read_to_string(sys.join("dev")).ok()?)
}

#[test]
fn v1_limits_are_written_and_updated() {
    let test = "v1_limits_are_written_and_updated";
    let Some(layout) = v1_host(test, &["memory", "cpu", "cpuset", "pids", "blkio"]) else {
        return;
    };
    let cg = open(&layout, "v1-limits");
    cg.create().unwrap();
    let disk = root_disk();
    let mut io = LinuxBlockIoBuilder::default().weight(200u16);
    if let Some((major, minor)) = disk {
        io = io.throttle_read_bps_device(vec![LinuxThrottleDeviceBuilder::default()
            .major(major as i64)
            .minor(minor as i64)
            .rate(1_048_576u64)
            .build()
            .unwrap()]);
    }
    let resources = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64 << 20)
                .swap(128 << 20)
                .reservation(32 << 20)
                .swappiness(10u64)
                .disable_oom_killer(true)
                .build()
                .unwrap(),
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(50_000)
                .period(100_000u64)
                .realtime_period(1_000_000u64)
                .realtime_runtime(1000)
                .cpus("0")
                .mems("0")
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(42).build().unwrap())
        .block_io(io.build().unwrap())
        .build()
        .unwrap();
    cg.apply(&resources).unwrap();

    let mem = cg.v1_path("memory").unwrap();
    assert_eq!(
        read(mem, "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(
        read(mem, "memory.soft_limit_in_bytes"),
        (32u64 << 20).to_string()
    );
    assert_eq!(read(mem, "memory.swappiness"), "10");
    assert!(read(mem, "memory.oom_control").contains("oom_kill_disable 1"));
    if mem.join("memory.memsw.limit_in_bytes").exists() {
        assert_eq!(
            read(mem, "memory.memsw.limit_in_bytes"),
            (128u64 << 20).to_string()
        );
    }
    let cpu = cg.v1_path("cpu").unwrap();
    assert_eq!(read(cpu, "cpu.shares"), "512");
    assert_eq!(read(cpu, "cpu.cfs_quota_us"), "50000");
    assert_eq!(read(cpu, "cpu.cfs_period_us"), "100000");
    assert_eq!(read(cpu, "cpu.rt_runtime_us"), "1000");
    let cpuset = cg.v1_path("cpuset").unwrap();
    assert_eq!(read(cpuset, "cpuset.cpus"), "0");
    assert_eq!(read(cpuset, "cpuset.mems"), "0");
    assert_eq!(read(cg.v1_path("pids").unwrap(), "pids.max"), "42");
    let blkio = cg.v1_path("blkio").unwrap();
    let weight = if blkio.join("blkio.weight").exists() {
        "blkio.weight"
    } else {
        "blkio.bfq.weight"
    };
    assert!(
        read(blkio, weight).contains("200"),
        "{}",
        read(blkio, weight)
    );
    if let Some((major, minor)) = disk {
        assert_eq!(
            read(blkio, "blkio.throttle.read_bps_device"),
            format!("{major}:{minor} 1048576")
        );
    }

    // update: grow memory (memsw must go first), lift the pids limit.
    let update = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(256 << 20)
                .swap(512 << 20)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(-1).build().unwrap())
        .build()
        .unwrap();
    cg.apply(&update).unwrap();
    assert_eq!(
        read(mem, "memory.limit_in_bytes"),
        (256u64 << 20).to_string()
    );
    assert_eq!(read(cg.v1_path("pids").unwrap(), "pids.max"), "max");
    // ... and shrink it again (memory must go first).
    let shrink = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(16 << 20)
                .swap(16 << 20)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    cg.apply(&shrink).unwrap();
    assert_eq!(
        read(mem, "memory.limit_in_bytes"),
        (16u64 << 20).to_string()
    );

    // The kernel refuses a CPU that does not exist: the error names the
    // file and the value.
    let bad = LinuxResourcesBuilder::default()
        .cpu(LinuxCpuBuilder::default().cpus("4095").build().unwrap())
        .build()
        .unwrap();
    let err = cg.apply(&bad).unwrap_err();
    assert!(matches!(err, CgroupError::Write { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("cpuset.cpus") && msg.contains("\"4095\""),
        "{msg}"
    );
    // The kernel clamps shares: reported, not ignored.
    let clamp = LinuxResourcesBuilder::default()
        .cpu(LinuxCpuBuilder::default().shares(1u64).build().unwrap())
        .build()
        .unwrap();
    assert!(matches!(cg.apply(&clamp), Err(CgroupError::Clamped { .. })));

    cg.destroy().unwrap();
    for d in cg.dirs() {
        assert!(!d.path.exists(), "{} left behind", d.path.display());
    }
}

#[test]
fn nested_cpuset_is_filled_at_every_level() {
    let test = "nested_cpuset_is_filled_at_every_level";
    let Some(layout) = v1_host(test, &["cpuset"]) else {
        return;
    };
    let parent = unique("cpuset");
    let cg = Guard(Cgroup::open_in(&layout, Some(&format!("{parent}/a/b")), "t").unwrap());
    let top = Guard(Cgroup::open_in(&layout, Some(&parent), "t").unwrap());
    cg.create().unwrap();
    let root = layout.hierarchy("cpuset").unwrap().mountpoint.clone();
    let want = read(&root, "cpuset.cpus");
    let leaf = cg.v1_path("cpuset").unwrap();
    for dir in [leaf, leaf.parent().unwrap(), top.v1_path("cpuset").unwrap()] {
        assert_eq!(read(dir, "cpuset.cpus"), want, "{}", dir.display());
        assert!(!read(dir, "cpuset.mems").is_empty());
    }
    // A task can join the leaf.
    let child = Child::spawn(&[]);
    cg.add_task(child.pid).unwrap();
    assert_eq!(cg.pids().unwrap(), [child.pid]);
    drop(child);
    cg.destroy().unwrap();
    top.destroy().unwrap();
    assert!(!top.v1_path("cpuset").unwrap().exists());
}

#[test]
fn hugetlb_goes_to_the_unified_hierarchy_when_v1_lacks_it() {
    let test = "hugetlb_goes_to_the_unified_hierarchy_when_v1_lacks_it";
    if !need_root(test) {
        return;
    }
    let layout = host_layout();
    let sizes = super::stats::hugepage_sizes();
    if layout.hierarchy("hugetlb").is_some() || layout.unified_mountpoint().is_none() {
        skip(
            test,
            "hugetlb is not a cgroup2-only controller on this host",
        );
        return;
    }
    let Some(size) = sizes.first().cloned() else {
        skip(test, "no huge page sizes");
        return;
    };
    let root_controllers =
        files::read(layout.unified_mountpoint().unwrap(), "cgroup.controllers").unwrap();
    if !root_controllers.split_whitespace().any(|c| c == "hugetlb") {
        skip(test, "the cgroup2 hierarchy has no hugetlb controller");
        return;
    }
    let cg = open(&layout, "hugetlb");
    cg.create().unwrap();
    let r = LinuxResourcesBuilder::default()
        .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
            .page_size(size.clone())
            .limit(4 << 20)
            .build()
            .unwrap()])
        .build()
        .unwrap();
    cg.apply(&r).unwrap();
    let dir = cg.unified_path().unwrap();
    assert_eq!(
        read(dir, &format!("hugetlb.{size}.max")),
        (4u64 << 20).to_string()
    );
    let stats = cg.stats().unwrap();
    assert!(stats.hugetlb.contains_key(&size), "{stats:?}");
    // The same through linux.resources.unified.
    let mut unified = std::collections::HashMap::new();
    unified.insert(format!("hugetlb.{size}.max"), (8u64 << 20).to_string());
    let r = LinuxResourcesBuilder::default()
        .unified(unified)
        .build()
        .unwrap();
    cg.apply(&r).unwrap();
    assert_eq!(
        read(dir, &format!("hugetlb.{size}.max")),
        (8u64 << 20).to_string()
    );
    cg.destroy().unwrap();
    assert!(!dir.exists());
}

#[test]
fn forked_child_shows_up_in_pids_and_stats() {
    let test = "forked_child_shows_up_in_pids_and_stats";
    if !need_root(test) {
        return;
    }
    let layout = host_layout();
    let cg = open(&layout, "pids");
    cg.create().unwrap();
    let child = Child::spawn(&[]);
    cg.add_task(child.pid).unwrap();
    assert_eq!(cg.pids().unwrap(), [child.pid]);
    for d in cg.dirs() {
        let procs = read(&d.path, "cgroup.procs");
        assert_eq!(procs, child.pid.to_string(), "{}", d.path.display());
    }
    let stats = cg.stats().unwrap();
    if layout.hierarchy("pids").is_some() {
        assert_eq!(stats.pids.current, 1);
    }
    let json = serde_json::to_value(&stats).unwrap();
    assert!(json["cpu"]["usage"].is_object(), "{json}");
    if layout.hierarchy("memory").is_some() || layout.unified_mountpoint().is_some() {
        assert!(json["memory"]["raw"].is_object() || json["memory"]["usage"].is_object());
    }
    assert!(cg.oom_kills().unwrap().is_some_and(|n| n == 0) || cg.oom_kills().unwrap().is_none());
    // destroy kills the child and removes every directory.
    cg.destroy().unwrap();
    for d in cg.dirs() {
        assert!(!d.path.exists(), "{} left behind", d.path.display());
    }
    assert!(cg.pids().unwrap().is_empty());
    // Idempotent.
    cg.destroy().unwrap();
    drop(child);
}

#[test]
fn freeze_and_thaw_v1() {
    let test = "freeze_and_thaw_v1";
    let Some(layout) = v1_host(test, &["freezer"]) else {
        return;
    };
    let cg = open(&layout, "freeze-v1");
    cg.create().unwrap();
    let child = Child::spawn(&[]);
    cg.add_task(child.pid).unwrap();
    assert_eq!(cg.freezer_state().unwrap(), FreezerState::Thawed);
    cg.freeze(FreezerState::Frozen).unwrap();
    assert_eq!(cg.freezer_state().unwrap(), FreezerState::Frozen);
    assert_eq!(
        read(cg.v1_path("freezer").unwrap(), "freezer.state"),
        "FROZEN"
    );
    cg.freeze(FreezerState::Thawed).unwrap();
    assert_eq!(cg.freezer_state().unwrap(), FreezerState::Thawed);
    // destroy works on a frozen cgroup too.
    cg.freeze(FreezerState::Frozen).unwrap();
    cg.destroy().unwrap();
    drop(child);
    for d in cg.dirs() {
        assert!(!d.path.exists(), "{} left behind", d.path.display());
    }
}

#[test]
fn freeze_and_thaw_v2() {
    let test = "freeze_and_thaw_v2";
    let Some(layout) = v2_host(test) else {
        return;
    };
    let cg = open(&layout, "freeze-v2");
    cg.create().unwrap();
    let child = Child::spawn(&[]);
    cg.add_task(child.pid).unwrap();
    assert_eq!(cg.freezer_state().unwrap(), FreezerState::Thawed);
    cg.freeze(FreezerState::Frozen).unwrap();
    let dir = cg.unified_path().unwrap();
    assert!(read(dir, "cgroup.events").contains("frozen 1"));
    assert_eq!(cg.freezer_state().unwrap(), FreezerState::Frozen);
    cg.freeze(FreezerState::Thawed).unwrap();
    assert!(read(dir, "cgroup.events").contains("frozen 0"));
    assert_eq!(cg.freezer_state().unwrap(), FreezerState::Thawed);
    // destroy of a frozen v2 cgroup (cgroup.kill).
    cg.freeze(FreezerState::Frozen).unwrap();
    cg.destroy().unwrap();
    drop(child);
    assert!(!dir.exists());
}

#[test]
fn v2_backend_on_the_unified_mount() {
    let test = "v2_backend_on_the_unified_mount";
    let Some(layout) = v2_host(test) else {
        return;
    };
    let cg = open(&layout, "v2");
    cg.create().unwrap();
    let dir = cg.unified_path().unwrap().to_owned();
    let available = super::v2::controllers(&dir).unwrap();
    // A resource without its controller is an error naming it.
    if !available.iter().any(|c| c == "memory") {
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(1 << 20)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let msg = cg.apply(&r).unwrap_err().to_string();
        assert_eq!(
            msg,
            "linux.resources.memory: the memory controller is not available"
        );
        let mut unified = std::collections::HashMap::new();
        unified.insert("memory.high".to_owned(), "1M".to_owned());
        let r = LinuxResourcesBuilder::default()
            .unified(unified)
            .build()
            .unwrap();
        let msg = cg.apply(&r).unwrap_err().to_string();
        assert!(msg.contains("\"memory.high\""), "{msg}");
    }
    // An empty part needs no controller.
    let r = LinuxResourcesBuilder::default()
        .memory(LinuxMemoryBuilder::default().build().unwrap())
        .build()
        .unwrap();
    cg.apply(&r).unwrap();
    // Core files work without any controller.
    let mut unified = std::collections::HashMap::new();
    unified.insert("cgroup.max.descendants".to_owned(), "5".to_owned());
    let r = LinuxResourcesBuilder::default()
        .unified(unified)
        .build()
        .unwrap();
    cg.apply(&r).unwrap();
    assert_eq!(read(&dir, "cgroup.max.descendants"), "5");

    let child = Child::spawn(&[]);
    cg.add_task(child.pid).unwrap();
    assert_eq!(cg.pids().unwrap(), [child.pid]);
    let stats = cg.stats().unwrap();
    let _ = stats.cpu.usage.total;
    cg.destroy().unwrap();
    assert!(!dir.exists());
    drop(child);
}

/// Rules that allow everything but `c 1:3` (/dev/null).
fn all_but_null() -> Vec<DeviceRule> {
    vec![
        DeviceRule::everything(true),
        DeviceRule::char_dev(false, 1, Some(3)),
    ]
}

#[test]
fn bpf_device_filter_denies_for_real() {
    let test = "bpf_device_filter_denies_for_real";
    let Some(layout) = v2_host(test) else {
        return;
    };
    let cg = open(&layout, "bpf");
    cg.create().unwrap();
    let dir = cg.unified_path().unwrap().to_owned();
    bpf::replace_filter(&dir, &bpf::device_filter(&all_but_null())).unwrap();
    assert_eq!(bpf::attached_count(&dir).unwrap(), 1);
    let mut child = Child::spawn(&["/dev/null", "/dev/zero"]);
    cg.add_task(child.pid).unwrap();
    assert_eq!(child.probe(), [libc::EPERM, 0]);
    drop(child);

    // Through apply: deny everything, then the defaults; applied twice,
    // the old program is replaced, not stacked.
    let r = deny_all_resources();
    cg.apply(&r).unwrap();
    cg.apply(&r).unwrap();
    assert_eq!(bpf::attached_count(&dir).unwrap(), 1);
    let mut child = Child::spawn(&["/dev/null", "/dev/zero", "/dev/kmsg"]);
    cg.add_task(child.pid).unwrap();
    assert_eq!(child.probe(), [0, 0, libc::EPERM]);
    cg.destroy().unwrap();
    assert!(!dir.exists());
}

fn deny_all_resources() -> LinuxResources {
    LinuxResourcesBuilder::default()
        .devices(vec![LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap()])
        .build()
        .unwrap()
}

#[test]
fn v1_devices_deny_for_real() {
    let test = "v1_devices_deny_for_real";
    let Some(layout) = v1_host(test, &["devices"]) else {
        return;
    };
    let cg = open(&layout, "devices");
    cg.create().unwrap();
    let dir = cg.v1_path("devices").unwrap().to_owned();
    devices::apply_v1(&dir, &all_but_null()).unwrap();
    assert_eq!(read(&dir, "devices.list"), "a *:* rwm");
    let mut child = Child::spawn(&["/dev/null", "/dev/zero"]);
    cg.add_task(child.pid).unwrap();
    assert_eq!(child.probe(), [libc::EPERM, 0]);
    drop(child);

    let r = deny_all_resources();
    cg.apply(&r).unwrap();
    let list = read(&dir, "devices.list");
    assert!(
        list.contains("c 1:3 rwm") && list.contains("c 136:* rwm"),
        "{list}"
    );
    assert!(!list.contains("a *:*"), "{list}");
    // Applying again changes nothing (and writes nothing it need not).
    cg.apply(&r).unwrap();
    assert_eq!(read(&dir, "devices.list"), list);
    let mut child = Child::spawn(&["/dev/null", "/dev/zero", "/dev/kmsg"]);
    cg.add_task(child.pid).unwrap();
    assert_eq!(child.probe(), [0, 0, libc::EPERM]);
    cg.destroy().unwrap();
    assert!(!dir.exists());
}

#[test]
fn destroy_of_a_cgroup_never_created_is_fine() {
    let test = "destroy_of_a_cgroup_never_created_is_fine";
    if !need_root(test) {
        return;
    }
    let cg = open(&host_layout(), "never");
    cg.destroy().unwrap();
    assert!(cg.stats().is_err());
}

#[test]
fn a_forked_child_joins_every_v1_hierarchy_by_itself() {
    let test = "a_forked_child_joins_every_v1_hierarchy_by_itself";
    let Some(layout) = v1_host(test, &["memory", "pids"]) else {
        return;
    };
    let cg = open(&layout, "self-join");
    cg.create().unwrap();
    let handles = cg.join_handles().unwrap();
    assert_eq!(handles.v1_tasks.len(), layout.hierarchies().len());
    // One pipe each way: the child reports, then waits until its cgroups
    // have been read.
    let (report_r, report_w) = nix::unistd::pipe().unwrap();
    let (done_r, done_w) = nix::unistd::pipe().unwrap();
    let child = match crate::sys::fork().unwrap() {
        nix::unistd::ForkResult::Child => {
            drop((report_r, done_w));
            let ok = handles.join_v1().is_ok();
            let _ = nix::unistd::write(&report_w, if ok { b"y" } else { b"n" });
            let _ = nix::unistd::read(&done_r, &mut [0u8; 1]);
            crate::sys::exit_now(0)
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop((report_w, done_r));
    let mut got = [0u8; 1];
    nix::unistd::read(&report_r, &mut got).unwrap();
    let own = std::fs::read_to_string(format!("/proc/{child}/cgroup")).unwrap();
    drop(done_w);
    nix::sys::wait::waitpid(child, None).unwrap();
    assert_eq!(&got, b"y", "join_v1 failed in the child");
    let name = cg.cgroup_path().to_string_lossy().into_owned();
    for line in own.lines().filter(|l| !l.starts_with("0::")) {
        assert!(line.ends_with(&name), "{line} (want {name}) in:\n{own}");
    }
    cg.destroy().unwrap();
}
