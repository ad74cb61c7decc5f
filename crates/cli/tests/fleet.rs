//! Host-platform containers from the command line: `plinth new`, `start NAME`, `stop`,
//! `rm`, `ls`, on the host's root and on a Debian root as the platform, with real
//! overlay mounts, namespaces and cgroups.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::fleet::{container_dir, entry, get_in_netns, ls, plinth, FleetGuard};
use common::{require, require_root, TestDir};

fn mounted(path: &Path) -> bool {
    let p = path.to_string_lossy().to_string();
    common::mountinfo().iter().any(|m| m.mount_point == p)
}

#[test]
fn a_host_container_from_new_to_rm() {
    if !require_root() {
        return;
    }
    let td = TestDir::new("fleet-host");
    let _g = FleetGuard(&td, vec![]);
    plinth(&td)
        .args([
            "new", "web", "--base", "host", "--memory", "64M", "--pids", "64", "--cpus", "0.5",
            "--",
        ])
        .args([
            "/bin/busybox",
            "sh",
            "-c",
            "echo written > /marker; exec /bin/busybox sleep 1000",
        ])
        .assert_success();
    let c = entry(&td, "web");
    assert_eq!(c["state"], "stopped");
    assert_eq!(c["base"], "host");
    assert!(c["pid"].is_null());

    plinth(&td).args(["start", "web"]).assert_success();
    let c = entry(&td, "web");
    assert_eq!(c["state"], "running", "{c}");
    let pid = c["pid"].as_i64().unwrap();
    assert!(c["started_at"].is_string());
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    // The platform is the lower layer; the container's writes go to its upper layer.
    assert!(root.join("etc/os-release").is_file());
    let upper = container_dir(&td, "web").join("upper");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !upper.join("marker").exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        fs::read_to_string(upper.join("marker")).unwrap(),
        "written\n"
    );
    assert!(!Path::new("/marker").exists(), "a write reached the host");
    // Hidden by default: /root is empty in the container, not on the host.
    assert!(fs::read_dir("/root").unwrap().next().is_some());
    assert_eq!(fs::read_dir(root.join("root")).unwrap().count(), 0);
    // Its own network namespace, and the limits in its cgroup.
    assert_ne!(
        fs::read_link(format!("/proc/{pid}/ns/net")).unwrap(),
        fs::read_link("/proc/self/ns/net").unwrap()
    );
    let limit = common::host_cgroup_file(pid as u32, "pids", "pids.max");
    assert_eq!(fs::read_to_string(limit).unwrap().trim(), "64");
    let memory = common::host_cgroup_file(pid as u32, "memory", "memory.limit_in_bytes");
    let memory = match memory.exists() {
        true => memory,
        false => memory.with_file_name("memory.max"),
    };
    assert_eq!(fs::read_to_string(memory).unwrap().trim(), "67108864");
    let quota = common::host_cgroup_file(pid as u32, "cpu", "cpu.cfs_quota_us");
    let quota = match quota.exists() {
        true => fs::read_to_string(quota).unwrap(),
        false => fs::read_to_string(quota.with_file_name("cpu.max")).unwrap(),
    };
    assert!(quota.starts_with("50000"), "{quota}");
    // With limits, the container sees its own cgroups.
    let inside = fs::read_to_string(root.join("sys/fs/cgroup/pids/pids.max"))
        .or_else(|_| fs::read_to_string(root.join("sys/fs/cgroup/pids.max")))
        .unwrap();
    assert_eq!(inside.trim(), "64");
    assert!(mounted(&container_dir(&td, "web").join("rootfs")));

    // Running: rm refuses without --force, start refuses.
    let out = plinth(&td).args(["rm", "web"]).assert_failure();
    assert!(out.stderr.contains("web: running"), "{out}");
    let out = plinth(&td).args(["start", "web"]).assert_failure();
    assert!(out.stderr.contains("web: already running"), "{out}");

    plinth(&td)
        .args(["stop", "--timeout", "5", "web"])
        .assert_success();
    let c = entry(&td, "web");
    assert_eq!(c["state"], "stopped");
    // Gone, or a zombie until its reaper collects it: not running.
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    assert!(
        status.is_empty() || status.contains("State:\tZ"),
        "{status}"
    );
    assert!(!mounted(&container_dir(&td, "web").join("rootfs")));
    // The upper layer outlives a stop, and the next start sees it.
    assert!(upper.join("marker").is_file());
    plinth(&td).args(["start", "web"]).assert_success();
    assert_eq!(entry(&td, "web")["state"], "running");
    plinth(&td).args(["rm", "--force", "web"]).assert_success();
    assert!(ls(&td).is_empty());
    assert!(!container_dir(&td, "web").exists());
    assert!(
        fs::read_dir(td.root().join("fleet"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0
    );
}

/// The line of `/proc/PID/cgroup` for the v1 hierarchy that has `controller`.
fn v1_cgroup_of(pid: i64, controller: &str) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines()
        .map(|l| l.splitn(3, ':').collect::<Vec<_>>())
        .find(|p| p.len() == 3 && p[1].split(',').any(|c| c == controller))
        .map(|p| p[2].to_owned())
}

#[test]
fn a_container_without_limits_gets_only_the_v1_cgroups_plinth_needs() {
    if !require_root() {
        return;
    }
    let td = TestDir::new("fleet-lean");
    let _g = FleetGuard(&td, vec![]);
    // With the host's user ids, and in a user namespace of its own.
    for (name, userns) in [("rooted", "host"), ("lean", "private")] {
        plinth(&td)
            .args(["new", name, "--base", "host", "--userns", userns, "--"])
            .args(["/bin/busybox", "sleep", "1000"])
            .assert_success();
        plinth(&td).args(["start", name]).assert_success();
    }
    let rooted = entry(&td, "rooted")["pid"].as_i64().unwrap();
    let pid = entry(&td, "lean")["pid"].as_i64().unwrap();
    let Some(memory) = v1_cgroup_of(pid, "memory") else {
        eprintln!("no v1 memory hierarchy on this host: nothing to check");
        plinth(&td)
            .args(["rm", "--force", "lean", "rooted"])
            .assert_success();
        return;
    };
    // Its own cgroup where plinth needs one: the device policy of a
    // container whose root is the host's; elsewhere, the cgroup of the
    // supervisor that started it.
    assert_eq!(v1_cgroup_of(rooted, "devices").unwrap(), "/plinth/rooted");
    let rule = fs::read_to_string("/sys/fs/cgroup/devices/plinth/rooted/devices.list").unwrap();
    assert!(!rule.contains("a *:* rwm"), "{rule}");
    let supervisor = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("PPid:")
                .map(|p| p.trim().parse::<i64>().unwrap())
        })
        .unwrap();
    assert_eq!(memory, v1_cgroup_of(supervisor, "memory").unwrap());
    assert!(!memory.ends_with("/lean"), "{memory}");
    for c in ["cpuset", "blkio", "freezer", "pids", "devices"] {
        assert_eq!(v1_cgroup_of(pid, c), v1_cgroup_of(supervisor, c), "{c}");
    }
    assert!(!Path::new("/sys/fs/cgroup/memory/plinth/lean").exists());
    // Nothing of its own to show: no cgroup filesystem inside.
    let mounts = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    assert!(
        !mounts.contains(" /sys/fs/cgroup"),
        "a cgroup filesystem in a container without limits:\n{mounts}"
    );
    plinth(&td)
        .args(["rm", "--force", "lean", "rooted"])
        .assert_success();
    assert!(!Path::new("/sys/fs/cgroup/devices/plinth/rooted").exists());
}

#[test]
fn a_debian_root_as_the_platform() {
    let Some(base) = common::debian::debian_root("bullseye") else {
        return;
    };
    let td = TestDir::new("fleet-dir");
    let _g = FleetGuard(&td, vec![]);
    plinth(&td)
        .args(["new", "deb", "--network", "host", "--hide", "/srv"])
        .arg(format!("--base=dir:{}", base.display()))
        .args(["--", "/bin/sleep", "1000"])
        .assert_success();
    plinth(&td).args(["start", "deb"]).assert_success();
    let pid = entry(&td, "deb")["pid"].as_i64().unwrap();
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    let version = fs::read_to_string(root.join("etc/debian_version")).unwrap();
    assert!(version.starts_with("11."), "{version}");
    assert_eq!(
        fs::read_link(format!("/proc/{pid}/ns/net")).unwrap(),
        fs::read_link("/proc/self/ns/net").unwrap()
    );
    plinth(&td).args(["rm", "--force", "deb"]).assert_success();
}

#[test]
fn bad_input_makes_nothing() {
    if !require_root() {
        return;
    }
    let td = TestDir::new("fleet-bad");
    let _g = FleetGuard(&td, vec![]);
    for (args, msg) in [
        (vec!["new", "../x", "--", "/bin/true"], "a name is"),
        (
            vec!["new", "x", "--base", "dir:/no/such", "--", "/bin/true"],
            "does not hold a root",
        ),
        (
            vec!["new", "x", "--base", "image:y", "--", "/bin/true"],
            "--base image:y: image y: no such image",
        ),
        (
            vec!["new", "x", "--bind", "rel:/x", "--", "/bin/true"],
            "--bind rel:/x",
        ),
        (
            vec!["new", "x", "--memory", "lots", "--", "/bin/true"],
            "--memory lots",
        ),
        (
            vec!["new", "x", "--network", "nat", "--", "/bin/true"],
            "--network nat: expected none, host or bridge",
        ),
    ] {
        let out = plinth(&td).args(&args).assert_failure();
        assert!(out.stderr.contains(msg), "{args:?}: {out}");
    }
    assert!(ls(&td).is_empty());
    plinth(&td)
        .args(["new", "x", "--", "/no/such/program"])
        .assert_success();
    let out = plinth(&td)
        .args(["new", "x", "--", "/bin/true"])
        .assert_failure();
    assert!(
        out.stderr.contains("x: a container of that name exists"),
        "{out}"
    );
    // A command that cannot run: a clear error, a failed state, no mount left.
    let out = plinth(&td).args(["start", "x"]).assert_failure();
    assert!(out.stderr.contains("x: cannot start"), "{out}");
    assert_eq!(entry(&td, "x")["state"], "failed");
    assert!(!mounted(&container_dir(&td, "x").join("rootfs")));
    let out = plinth(&td).args(["stop", "nope"]).assert_failure();
    assert!(out.stderr.contains("nope: no such container"), "{out}");
    plinth(&td).args(["rm", "x"]).assert_success();
}

const SERVER: &str = r#"command = ["/bin/busybox", "sh", "-c", "mkdir -p /tmp/www && /bin/busybox hostname > /tmp/www/index.html && exec /bin/busybox httpd -f -p 127.0.0.1:8080 -h /tmp/www"]"#;

#[test]
fn apply_converges_and_every_container_answers_in_its_own_network() {
    if !require_root() || !require(common::host_busybox_is_static(), "a static /bin/busybox") {
        return;
    }
    let td = TestDir::new("fleet-apply");
    let _g = FleetGuard(&td, vec![]);
    let manifest = td.path().join("web.toml");
    let write = |count: u32, extra: &str| {
        fs::write(
            &manifest,
            format!(
                "[defaults]\nbase = \"host\"\nnetwork = \"none\"\nrestart = \"always\"\n\n[[container]]\nname = \"web-{{n}}\"\ncount = {count}\n{SERVER}\n{extra}"
            ),
        )
        .unwrap();
    };
    write(100, "");
    let out = plinth(&td)
        .arg("apply")
        .arg(&manifest)
        .arg("--dry-run")
        .assert_success();
    assert!(
        out.stdout
            .contains("plan: 100 create, 0 update, 0 start, 0 remove, 0 unchanged"),
        "{out}"
    );
    assert!(ls(&td).is_empty(), "a dry run made containers");

    let t0 = std::time::Instant::now();
    let out = plinth(&td)
        .arg("apply")
        .arg(&manifest)
        .timeout(Duration::from_secs(300))
        .assert_success();
    eprintln!("apply of 100 containers from nothing: {:?}", t0.elapsed());
    assert!(out.stdout.contains("plan: 100 create"), "{out}");
    let list = ls(&td);
    assert_eq!(list.len(), 100);
    let pids: Vec<(String, i64)> = list
        .iter()
        .map(|c| {
            assert_eq!(c["state"], "running", "{c}");
            (
                c["name"].as_str().unwrap().to_string(),
                c["pid"].as_i64().unwrap(),
            )
        })
        .collect();
    // Each answers on its own loopback with its own name; none shares a namespace.
    let mut nets = std::collections::HashSet::new();
    for (name, pid) in &pids {
        assert_eq!(&get_in_netns(*pid, "/"), name);
        assert!(nets.insert(fs::read_link(format!("/proc/{pid}/ns/net")).unwrap()));
    }

    // Idempotent.
    let out = plinth(&td).arg("apply").arg(&manifest).assert_success();
    assert!(
        out.stdout
            .contains("plan: 0 create, 0 update, 0 start, 0 remove, 100 unchanged"),
        "{out}"
    );
    assert_eq!(
        ls(&td)[0]["pid"],
        list[0]["pid"],
        "an unchanged container restarted"
    );

    // 90 of them, one changed: 10 removed, 1 updated, the rest untouched.
    write(90, "\n[[container]]\nname = \"extra\"\nnetwork = \"host\"\ncommand = [\"/bin/busybox\", \"sleep\", \"1000\"]\n");
    let out = plinth(&td).arg("apply").arg(&manifest).assert_success();
    assert!(
        out.stdout
            .contains("plan: 1 create, 0 update, 0 start, 10 remove, 90 unchanged"),
        "{out}"
    );
    let names: Vec<String> = ls(&td)
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 91);
    assert!(!names.contains(&"web-95".to_string()));
    fs::write(
        &manifest,
        fs::read_to_string(&manifest)
            .unwrap()
            .replace("sleep\", \"1000", "sleep\", \"2000"),
    )
    .unwrap();
    let out = plinth(&td).arg("apply").arg(&manifest).assert_success();
    assert!(
        out.stdout
            .contains("plan: 0 create, 1 update, 0 start, 0 remove, 90 unchanged"),
        "{out}"
    );

    // A container made by hand is not the manifest's: never removed, never taken over.
    plinth(&td)
        .args(["new", "mine", "--", "/bin/busybox", "sleep", "1000"])
        .assert_success();
    fs::write(&manifest, "").unwrap();
    let out = plinth(&td)
        .arg("apply")
        .arg(&manifest)
        .timeout(Duration::from_secs(300))
        .assert_success();
    assert!(out.stdout.contains("91 remove"), "{out}");
    let left: Vec<String> = ls(&td)
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, ["mine"]);
    fs::write(
        &manifest,
        "[[container]]\nname = \"mine\"\ncommand = [\"/bin/true\"]\n",
    )
    .unwrap();
    let out = plinth(&td).arg("apply").arg(&manifest).assert_failure();
    assert!(out.stderr.contains("mine"), "{out}");
    plinth(&td).args(["rm", "mine"]).assert_success();
    assert!(fs::read_dir(td.path().join("state/containers"))
        .unwrap()
        .next()
        .is_none());
}

/// A small platform root: the host's dynamic `sleep` with its loader and libc, and the
/// static busybox.
fn small_platform(td: &TestDir) -> PathBuf {
    let root = td.path().join("platform");
    for (src, dst) in [
        ("/usr/bin/sleep", "usr/bin/sleep"),
        ("/lib64/ld-linux-x86-64.so.2", "lib64/ld-linux-x86-64.so.2"),
        (
            "/lib/x86_64-linux-gnu/libc.so.6",
            "lib/x86_64-linux-gnu/libc.so.6",
        ),
        ("/bin/busybox", "bin/busybox"),
    ] {
        let to = root.join(dst);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(src, &to).unwrap();
    }
    root
}

fn pid_of(td: &TestDir, name: &str) -> i64 {
    entry(td, name)["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("{name} has no pid"))
}

/// The inode `pid` maps for `path`.
fn mapped_inode(pid: i64, path: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .find(|l| l.ends_with(path))
        .and_then(|l| l.split_whitespace().nth(4)?.parse().ok())
        .unwrap_or_else(|| panic!("{pid} does not map {path}"))
}

#[test]
fn upgrade_restarts_exactly_the_containers_that_map_a_changed_file() {
    if !require_root() || !require(common::host_busybox_is_static(), "a static /bin/busybox") {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let td = TestDir::new("fleet-upgrade");
    let _g = FleetGuard(&td, vec![]);
    let platform = small_platform(&td);
    let base = format!("--base=dir:{}", platform.display());
    let libc = "/lib/x86_64-linux-gnu/libc.so.6";
    plinth(&td)
        .args(["new", "dynamic", &base, "--", "/usr/bin/sleep", "1000"])
        .assert_success();
    plinth(&td)
        .args([
            "new",
            "static",
            &base,
            "--",
            "/bin/busybox",
            "sleep",
            "1000",
        ])
        .assert_success();
    plinth(&td)
        .args(["new", "own-libc", &base, "--", "/usr/bin/sleep", "1000"])
        .assert_success();
    // own-libc carries its own copy of libc in its upper layer.
    let own = container_dir(&td, "own-libc")
        .join("upper")
        .join(&libc[1..]);
    fs::create_dir_all(own.parent().unwrap()).unwrap();
    fs::copy(platform.join(&libc[1..]), &own).unwrap();
    for n in ["dynamic", "static", "own-libc"] {
        plinth(&td).args(["start", n]).assert_success();
    }
    let before: Vec<i64> = ["dynamic", "static", "own-libc"]
        .iter()
        .map(|n| pid_of(&td, n))
        .collect();
    let _ = mapped_inode(before[0], libc);

    // Nothing changed yet.
    let v = plinth(&td)
        .args(["upgrade", "--dry-run", "--format", "json"])
        .json();
    assert_eq!(v["affected"].as_array().unwrap().len(), 0, "{v:#}");

    // The platform's libc is replaced the way a package manager does it: a new file
    // renamed over the old one.
    std::thread::sleep(Duration::from_millis(1100));
    let new = platform.join("lib/x86_64-linux-gnu/.libc.so.6.new");
    fs::copy(platform.join(&libc[1..]), &new).unwrap();
    fs::rename(&new, platform.join(&libc[1..])).unwrap();
    let new_inode = fs::metadata(platform.join(&libc[1..])).unwrap().ino();

    let v = plinth(&td)
        .args(["upgrade", "--dry-run", "--format", "json"])
        .json();
    let affected: Vec<&str> = v["affected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(affected, ["dynamic"], "{v:#}");
    assert!(
        v["affected"][0]["changed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == libc),
        "{v:#}"
    );
    let own_entry = v["unaffected"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "own-libc")
        .unwrap();
    assert_eq!(own_entry["shadowed"], serde_json::json!([libc]), "{v:#}");
    assert_eq!(pid_of(&td, "dynamic"), before[0], "a dry run restarted");

    let out = plinth(&td)
        .args(["upgrade", "--parallel", "2"])
        .assert_success();
    assert!(out.stdout.contains("restarted dynamic"), "{out}");
    assert!(
        out.stdout
            .contains("shadowed  own-libc: /lib/x86_64-linux-gnu/libc.so.6"),
        "{out}"
    );
    assert!(
        out.stdout.contains("1 affected, 2 unaffected, 1 restarted"),
        "{out}"
    );
    let after: Vec<i64> = ["dynamic", "static", "own-libc"]
        .iter()
        .map(|n| pid_of(&td, n))
        .collect();
    assert_ne!(after[0], before[0], "dynamic was not restarted");
    assert_eq!(after[1..], before[1..], "an unaffected container restarted");
    assert_eq!(
        mapped_inode(after[0], libc),
        new_inode,
        "the restarted process maps the new libc"
    );
    let v = plinth(&td)
        .args(["upgrade", "--dry-run", "--format", "json"])
        .json();
    assert_eq!(v["affected"].as_array().unwrap().len(), 0, "{v:#}");
}

#[test]
fn the_apt_hook() {
    let td = TestDir::new("fleet-hook");
    let dir = td.path().join("apt.conf.d");
    fs::create_dir(&dir).unwrap();
    plinth(&td)
        .args(["hook", "install", "--apt-dir"])
        .arg(&dir)
        .assert_success();
    let text = fs::read_to_string(dir.join("80plinth-upgrade")).unwrap();
    let exe = common::runtime_bin();
    assert!(
        text.contains(&format!(
            "DPkg::Post-Invoke {{ \"if [ -x {0} ]; then {0} upgrade || true; fi\"; }};",
            exe.display()
        )),
        "{text}"
    );
    // apt itself accepts the file.
    if Path::new("/usr/bin/apt-config").exists() {
        let out = std::process::Command::new("apt-config")
            .arg("-c")
            .arg(dir.join("80plinth-upgrade"))
            .args(["dump", "DPkg::Post-Invoke"])
            .output()
            .unwrap();
        let dump = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && dump.contains("upgrade || true"),
            "{dump}"
        );
    }
    plinth(&td)
        .args(["hook", "remove", "--apt-dir"])
        .arg(&dir)
        .assert_success();
    assert!(fs::read_dir(&dir).unwrap().next().is_none());
}
