//! config.json's `linux.resources` and `linux.cgroupsPath` on this hybrid host (cgroup v1
//! controllers, cgroup2 with hugetlb at /sys/fs/cgroup/unified), checked from inside the
//! container through its /sys/fs/cgroup and from the host; pause/resume, `events --stats`
//! and `update`; and a pure cgroup v2 host made in a test-private mount namespace.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{
    container_id, host_cgroup_file, require_container_host, require_tool, run_detached, run_ok,
    runtime_bin, TestCommand, TestDir, SETTLE,
};
use serde_json::{json, Value};

fn read_trim(p: impl AsRef<Path>) -> String {
    fs::read_to_string(p.as_ref())
        .unwrap_or_else(|e| panic!("read {}: {e}", p.as_ref().display()))
        .trim()
        .to_string()
}

#[test]
fn memory_limit() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("cg-memory");
    let bundle = td
        .bundle()
        .set(
            "/linux/resources/memory",
            json!({"limit": 64 * 1024 * 1024, "reservation": 32 * 1024 * 1024}),
        )
        .args(&[
            "cat",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.soft_limit_in_bytes",
        ])
        .write();
    let out = run_ok(&td, &bundle);
    assert_eq!(out.stdout_lines(), ["67108864", "33554432"], "{out}");
}

#[test]
fn cpu_shares_quota_and_period() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("cg-cpu");
    let bundle = td
        .bundle()
        .set(
            "/linux/resources/cpu",
            json!({"shares": 512, "quota": 50000, "period": 100000}),
        )
        .args(&[
            "cat",
            "/sys/fs/cgroup/cpu/cpu.shares",
            "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
            "/sys/fs/cgroup/cpu/cpu.cfs_period_us",
        ])
        .write();
    let out = run_ok(&td, &bundle);
    assert_eq!(out.stdout_lines(), ["512", "50000", "100000"], "{out}");
}

#[test]
fn cpuset_pins_the_process() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("cg-cpuset");
    let bundle = td
        .bundle()
        .set("/linux/resources/cpu", json!({"cpus": "0", "mems": "0"}))
        .args(&[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/cpuset/cpuset.cpus /sys/fs/cgroup/cpuset/cpuset.mems; \
             grep Cpus_allowed_list /proc/self/status; nproc",
        ])
        .write();
    let out = run_ok(&td, &bundle);
    let lines = out.stdout_lines();
    assert_eq!(lines[..2], ["0", "0"], "{out}");
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["Cpus_allowed_list:", "0"],
        "{out}"
    );
    assert_eq!(lines[3], "1", "{out}");
}

#[test]
fn pids_limit_stops_forks() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("cg-pids");
    let bundle = td
        .bundle()
        .set("/linux/resources/pids", json!({"limit": 8}))
        .args(&[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/pids/pids.max; \
             (for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 2 & done); \
             read n < /sys/fs/cgroup/pids/pids.current; echo $n",
        ])
        .write();
    let out = run_ok(&td, &bundle);
    let lines = out.stdout_lines();
    assert_eq!(lines[0], "8", "{out}");
    // A fork failure ends the subshell; the sleeps it started stay counted.
    let current: u32 = lines
        .get(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        current <= 8,
        "pids.current {current} above the limit\n{out}"
    );
    assert!(
        out.stderr.contains("can't fork"),
        "forks past the limit fail\n{out}"
    );
}

#[test]
fn blkio_weight() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("cg-blkio");
    let bundle = td
        .bundle()
        .set("/linux/resources/blockIO", json!({"weight": 500}))
        .args(&[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/blkio/blkio.bfq.weight 2>/dev/null || \
             cat /sys/fs/cgroup/blkio/blkio.weight",
        ])
        .write();
    // No CFQ on this kernel: BFQ's blkio.bfq.weight (in non-root cgroups) takes it.
    let out = run_ok(&td, &bundle);
    assert_eq!(out.stdout_trimmed(), "500", "{out}");
}

#[test]
fn hugetlb_limit_through_the_unified_hierarchy() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("cg-hugetlb");
    let bundle = td
        .bundle()
        .set(
            "/linux/resources/hugepageLimits",
            json!([{"pageSize": "2MB", "limit": 4 * 1024 * 1024}]),
        )
        .args(&["sleep", "1000"])
        .write();
    let c = run_detached(&td, &bundle);
    let host = host_cgroup_file(c.pid, "hugetlb", "hugetlb.2MB.max");
    assert!(
        host.starts_with("/sys/fs/cgroup/unified"),
        "{}",
        host.display()
    );
    assert_eq!(read_trim(&host), "4194304", "{}", host.display());
    let inside = td
        .plinth()
        .args([
            "exec",
            &c.id,
            "cat",
            "/sys/fs/cgroup/unified/hugetlb.2MB.max",
        ])
        .stdout();
    assert_eq!(inside.trim(), "4194304");
}

#[test]
fn unified_map_sets_cgroup2_files() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("cg-unified");
    let bundle = td
        .bundle()
        .set(
            "/linux/resources/unified",
            json!({"hugetlb.2MB.max": "8388608"}),
        )
        .args(&["cat", "/sys/fs/cgroup/unified/hugetlb.2MB.max"])
        .write();
    let out = run_ok(&td, &bundle);
    assert_eq!(out.stdout_trimmed(), "8388608", "{out}");
}

#[test]
fn devices_deny_rule_is_enforced() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("cg-devices");
    let bundle = td
        .bundle()
        .set(
            "/linux/resources/devices/-",
            json!({"allow": false, "type": "c", "major": 1, "minor": 5, "access": "rwm"}),
        )
        .args(&[
            "sh",
            "-c",
            "head -c1 /dev/zero 2>&1 >/dev/null; echo rc=$?; head -c1 /dev/urandom | wc -c",
        ])
        .write();
    let out = run_ok(&td, &bundle);
    let lines = out.stdout_lines();
    assert!(lines[0].contains("Operation not permitted"), "{out}");
    assert_eq!(lines[1], "rc=1", "{out}");
    assert_eq!(lines[2].trim(), "1", "other devices still work\n{out}");
}

/// The cgroup directory of `pid` for `controller` on the host.
fn cgroup_dir(pid: u32, controller: &str) -> PathBuf {
    host_cgroup_file(pid, controller, "")
        .components()
        .collect::<PathBuf>()
}

#[test]
fn absolute_and_relative_cgroups_path() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("cg-path");
    let own_pids = fs::read_to_string("/proc/self/cgroup")
        .unwrap()
        .lines()
        .find_map(|l| l.split_once(":pids:").map(|(_, p)| p.to_string()))
        .expect("a v1 pids hierarchy");
    let abs_name = format!("plinth-abs-{}", container_id());
    let rel_name = format!("plinth-rel-{}", container_id());
    for (path, want) in [
        (
            format!("/{abs_name}/inner"),
            PathBuf::from(format!("/sys/fs/cgroup/pids/{abs_name}/inner")),
        ),
        (
            rel_name.clone(),
            Path::new("/sys/fs/cgroup/pids")
                .join(own_pids.trim_start_matches('/'))
                .join(&rel_name),
        ),
    ] {
        let bundle = td
            .bundle()
            .set("/linux/cgroupsPath", json!(path))
            .args(&["sleep", "1000"])
            .write();
        let c = run_detached(&td, &bundle);
        assert!(
            want.is_dir(),
            "{} missing for cgroupsPath {path}",
            want.display()
        );
        assert_eq!(cgroup_dir(c.pid, "pids"), want, "cgroupsPath {path}");
        let procs = read_trim(want.join("cgroup.procs"));
        assert!(
            procs.lines().any(|p| p == c.pid.to_string()),
            "{path}: {procs}"
        );
        td.plinth()
            .args(["delete", "--force", &c.id])
            .assert_success();
        assert!(!want.exists(), "{} left after delete", want.display());
    }
    let _ = fs::remove_dir(format!("/sys/fs/cgroup/pids/{abs_name}"));
}

/// The number a container writes to `file` (in a host directory bound into it).
fn counter(file: &Path) -> u64 {
    fs::read_to_string(file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn pause_freezes_and_resume_thaws() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("cg-pause");
    let shared = td.path().join("shared");
    fs::create_dir(&shared).unwrap();
    let bundle = td
        .bundle()
        .set(
            "/mounts/-",
            json!({"destination": "/shared", "type": "bind", "source": shared, "options": ["rbind"]}),
        )
        .args(&[
            "sh",
            "-c",
            "i=0; while true; do i=$((i+1)); echo $i > /shared/n.tmp; mv /shared/n.tmp /shared/n; done",
        ])
        .write();
    let c = run_detached(&td, &bundle);
    let n = shared.join("n");
    wait_until(|| counter(&n) > 0, "the counter starts");
    td.plinth().args(["pause", &c.id]).assert_success();
    assert_eq!(td.state(&c.id)["status"], "paused");
    let a = counter(&n);
    std::thread::sleep(Duration::from_millis(500));
    let b = counter(&n);
    assert_eq!(a, b, "the counter advanced while paused");
    td.plinth().args(["resume", &c.id]).assert_success();
    assert_eq!(td.state(&c.id)["status"], "running");
    wait_until(|| counter(&n) > b, "the counter advances after resume");
}

fn wait_until(mut cond: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > SETTLE {
            panic!("timed out waiting until {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn events_stats_reports_memory_and_pids() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("cg-events");
    let bundle = td
        .bundle()
        .args(&["sh", "-c", "sleep 1000 & sleep 1000 & wait"])
        .write();
    let c = run_detached(&td, &bundle);
    let ev: Value = td.plinth().args(["events", "--stats", &c.id]).json();
    let data = &ev["data"];
    let usage = data["memory"]["usage"]["usage"].as_u64().unwrap_or(0);
    assert!(usage > 0, "memory.usage.usage: {ev}");
    assert_eq!(data["pids"]["current"], json!(3), "sh and two sleeps: {ev}");
}

#[test]
fn update_changes_memory_and_pids() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("cg-update");
    let bundle = td
        .bundle()
        .set(
            "/linux/resources/memory",
            json!({"limit": 256 * 1024 * 1024}),
        )
        .set("/linux/resources/pids", json!({"limit": 100}))
        .args(&["sleep", "1000"])
        .write();
    let c = run_detached(&td, &bundle);
    td.plinth()
        .args([
            "update",
            "--memory",
            "104857600",
            "--pids-limit",
            "33",
            &c.id,
        ])
        .assert_success();
    let inside = td
        .plinth()
        .args([
            "exec",
            &c.id,
            "cat",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/pids/pids.max",
        ])
        .stdout();
    assert_eq!(
        inside.lines().collect::<Vec<_>>(),
        [(100 * 1024 * 1024).to_string().as_str(), "33"]
    );
    assert_eq!(
        read_trim(host_cgroup_file(c.pid, "memory", "memory.limit_in_bytes")),
        (100 * 1024 * 1024).to_string()
    );
}

#[test]
fn update_takes_runc_size_suffixes() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("cg-update-units");
    let bundle = td.bundle().args(&["sleep", "1000"]).write();
    let c = run_detached(&td, &bundle);
    td.plinth()
        .args(["update", "--memory", "100M", &c.id])
        .assert_success();
    assert_eq!(
        read_trim(host_cgroup_file(c.pid, "memory", "memory.limit_in_bytes")),
        (100 * 1024 * 1024).to_string()
    );
}

// ---------------------------------------------------------------------------------------
// A pure cgroup v2 host
// ---------------------------------------------------------------------------------------

/// `/sys/fs/cgroup` remounted as the cgroup2 hierarchy, in a mount namespace of its own.
const V2_SETUP: &str = "mount --make-rprivate / && umount -R /sys/fs/cgroup && \
                        mount -t cgroup2 none /sys/fs/cgroup && exec \"$@\"";

/// The runtime under test (with `--root`), run where `/sys/fs/cgroup` is cgroup2.
fn plinth_v2(td: &TestDir) -> TestCommand {
    let mut cmd = td.command("unshare");
    cmd.args(["-m", "sh", "-c", V2_SETUP, "sh"])
        .arg(runtime_bin())
        .arg("--root")
        .arg(td.root());
    cmd
}

/// The host's view of the cgroup2 hierarchy, mounted at /sys/fs/cgroup/unified here.
fn host_v2_dir(id: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup/unified/plinth").join(id)
}

#[test]
fn pure_cgroup_v2_pause_ps_devices_and_delete() {
    if !require_container_host() || !require_tool("unshare") {
        return;
    }
    let td = TestDir::new("cg-v2");
    let bundle = td
        .bundle()
        .set(
            "/linux/resources/devices/-",
            json!({"allow": false, "type": "c", "major": 1, "minor": 5, "access": "rwm"}),
        )
        .args(&["sleep", "1000"])
        .write();
    let id = container_id();
    struct V2Guard<'a>(&'a TestDir, String);
    impl Drop for V2Guard<'_> {
        fn drop(&mut self) {
            let _ = plinth_v2(self.0)
                .args(["delete", "--force", &self.1])
                .output();
        }
    }
    let _g = V2Guard(&td, id.clone());
    plinth_v2(&td)
        .args(["run", "--detach", "--bundle"])
        .arg(bundle.path())
        .arg(&id)
        .assert_success();
    let state: Value = plinth_v2(&td).args(["state", &id]).json();
    assert_eq!(state["status"], "running", "{state}");
    let pid = state["pid"].as_u64().unwrap();
    let dir = host_v2_dir(&id);
    assert!(dir.is_dir(), "{} missing", dir.display());
    let procs = read_trim(dir.join("cgroup.procs"));
    assert!(procs.lines().any(|p| p == pid.to_string()), "{procs}");

    // The eBPF device filter: /dev/zero (1:5) denied, /dev/null allowed.
    let out = plinth_v2(&td)
        .args([
            "exec",
            &id,
            "sh",
            "-c",
            "head -c1 /dev/zero 2>&1 >/dev/null; echo rc=$?; echo ok > /dev/null && echo null-ok",
        ])
        .assert_success();
    let lines = out.stdout_lines();
    assert!(lines[0].contains("Operation not permitted"), "{out}");
    assert_eq!(lines[1..], ["rc=1", "null-ok"], "{out}");

    let ps: Value = plinth_v2(&td).args(["ps", "--format", "json", &id]).json();
    assert_eq!(ps, json!([pid]), "ps lists the init");

    plinth_v2(&td).args(["pause", &id]).assert_success();
    let state: Value = plinth_v2(&td).args(["state", &id]).json();
    assert_eq!(state["status"], "paused", "{state}");
    assert_eq!(read_trim(dir.join("cgroup.freeze")), "1");
    let events = read_trim(dir.join("cgroup.events"));
    assert!(events.contains("frozen 1"), "{events}");
    plinth_v2(&td).args(["resume", &id]).assert_success();
    let state: Value = plinth_v2(&td).args(["state", &id]).json();
    assert_eq!(state["status"], "running", "{state}");
    assert_eq!(read_trim(dir.join("cgroup.freeze")), "0");

    plinth_v2(&td)
        .args(["delete", "--force", &id])
        .assert_success();
    assert!(!dir.exists(), "{} left after delete", dir.display());
    assert!(
        !Path::new(&format!("/proc/{pid}/cmdline")).exists()
            || read_trim(format!("/proc/{pid}/stat")).contains(") Z "),
        "init {pid} survived delete"
    );
}
