//! config.json, feature by feature, checked from inside the container: namespaces,
//! mounts, devices and sysctls. Each test runs a busybox bundle whose program prints what
//! it sees, and compares that with what the config asked for. The process's attributes
//! are in `features_process.rs`, seccomp and hooks in `features_seccomp.rs`, cgroups in
//! `features_cgroups.rs`.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::{readlink, require_container_host, run_detached, run_ok, HostMount, TestDir};
use serde_json::json;

// ---------------------------------------------------------------------------------------
// Namespaces
// ---------------------------------------------------------------------------------------

#[test]
fn pid_namespace_makes_the_process_pid_1() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("ns-pid");
    let bundle = td
        .bundle()
        .args(&[
            "sh",
            "-c",
            "echo $$; ls /proc | grep -E '^[0-9]+$' | sort -n",
        ])
        .write();
    let out = run_ok(&td, &bundle);
    let lines = out.stdout_lines();
    assert_eq!(lines[0], "1", "the container's process is pid 1\n{out}");
    // Only the shell and its children (ls, grep, sort) are in the namespace.
    let pids: Vec<u32> = lines[1..].iter().map(|l| l.parse().unwrap()).collect();
    assert_eq!(pids[0], 1, "{out}");
    assert!(
        pids.len() <= 5,
        "the pid namespace shows host processes\n{out}"
    );
}

#[test]
fn network_namespace_has_only_lo() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("ns-net");
    let bundle = td.bundle().args(&["ls", "/sys/class/net"]).write();
    let out = run_ok(&td, &bundle);
    assert_eq!(out.stdout_lines(), ["lo"], "{out}");
    // And the host has more than that, so the test can tell.
    let host: Vec<_> = fs::read_dir("/sys/class/net").unwrap().collect();
    assert!(
        host.len() > 1,
        "the host has only lo: the test proves nothing"
    );
}

#[test]
fn ipc_namespace_hides_host_sysv_objects() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("ns-ipc");
    // A message queue on the host, removed at the end.
    // SAFETY: plain SysV IPC calls with no pointers.
    let qid = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) };
    assert!(qid >= 0, "msgget: {}", std::io::Error::last_os_error());
    struct Rm(i32);
    impl Drop for Rm {
        fn drop(&mut self) {
            // SAFETY: IPC_RMID takes no buffer.
            unsafe { libc::msgctl(self.0, libc::IPC_RMID, std::ptr::null_mut()) };
        }
    }
    let _rm = Rm(qid);
    let host = fs::read_to_string("/proc/sysvipc/msg").unwrap();
    assert!(host.lines().count() >= 2, "the host queue is not listed");

    let bundle = td
        .bundle()
        .args(&[
            "sh",
            "-c",
            "wc -l < /proc/sysvipc/msg; readlink /proc/self/ns/ipc",
        ])
        .write();
    let out = run_ok(&td, &bundle);
    let lines = out.stdout_lines();
    assert_eq!(lines[0].trim(), "1", "only the header line inside\n{out}");
    assert_ne!(lines[1], readlink("/proc/self/ns/ipc"), "{out}");
}

#[test]
fn uts_namespace_sets_hostname_and_domainname() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("ns-uts");
    let bundle = td
        .bundle()
        .hostname("feature-host")
        .set("/domainname", json!("feature.example"))
        .args(&[
            "sh",
            "-c",
            "hostname; cat /proc/sys/kernel/domainname; uname -n",
        ])
        .write();
    let out = run_ok(&td, &bundle);
    assert_eq!(
        out.stdout_lines(),
        ["feature-host", "feature.example", "feature-host"],
        "{out}"
    );
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host.trim(), "feature-host", "the host's hostname changed");
    let host_dom = fs::read_to_string("/proc/sys/kernel/domainname").unwrap();
    assert_ne!(
        host_dom.trim(),
        "feature.example",
        "the host's domain changed"
    );
}

#[test]
fn mount_namespace_keeps_container_mounts_off_the_host() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("ns-mnt");
    let bundle = td
        .bundle()
        .set("/root/readonly", json!(false))
        .set("/process/capabilities/bounding/-", json!("CAP_SYS_ADMIN"))
        .set("/process/capabilities/effective/-", json!("CAP_SYS_ADMIN"))
        .set("/process/capabilities/permitted/-", json!("CAP_SYS_ADMIN"))
        .args(&[
            "sh",
            "-c",
            "mkdir -p /mnt/inner && mount -t tmpfs inner /mnt/inner && \
             grep -c ' /mnt/inner ' /proc/self/mountinfo && \
             readlink /proc/self/ns/mnt && sleep 1000",
        ])
        .write();
    let c = run_detached(&td, &bundle);
    // The host sees none of the container's mounts.
    let rootfs = bundle.rootfs().to_string_lossy().into_owned();
    let host = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !host.contains(&rootfs),
        "a container mount is in the host's mount table:\n{host}"
    );
    let inside = readlink(format!("/proc/{}/ns/mnt", c.pid));
    assert_ne!(inside, readlink("/proc/self/ns/mnt"));
    let mi = fs::read_to_string(format!("/proc/{}/mountinfo", c.pid)).unwrap();
    assert!(mi.contains(" /mnt/inner "), "{mi}");
}

#[test]
fn user_namespace_maps_ids() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("ns-user");
    // The container's root (host uid 100000) must reach the bundle and the shared dir.
    fs::set_permissions(td.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let shared = td.path().join("shared");
    fs::create_dir(&shared).unwrap();
    std::os::unix::fs::chown(&shared, Some(100_000), Some(100_000)).unwrap();
    let bundle = td
        .bundle()
        .set("/linux/namespaces/-", json!({"type": "user"}))
        .set(
            "/linux/uidMappings",
            json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
        )
        .set(
            "/linux/gidMappings",
            json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
        )
        .set(
            "/mounts/-",
            json!({"destination": "/shared", "type": "bind", "source": shared, "options": ["rbind"]}),
        )
        .set("/process/capabilities/bounding/-", json!("CAP_CHOWN"))
        .set("/process/capabilities/effective/-", json!("CAP_CHOWN"))
        .set("/process/capabilities/permitted/-", json!("CAP_CHOWN"))
        .args(&[
            "sh",
            "-c",
            "cat /proc/self/uid_map /proc/self/gid_map; id -u; \
             touch /shared/made-inside && chown 1000:2000 /shared/made-inside && echo ok",
        ])
        .write();
    // The rootfs belongs to host root, unmapped inside: the mount point must exist.
    fs::create_dir(bundle.rootfs().join("shared")).unwrap();
    let out = run_ok(&td, &bundle);
    let lines: Vec<Vec<&str>> = out
        .stdout_lines()
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["0", "100000", "65536"], "uid_map\n{out}");
    assert_eq!(lines[1], ["0", "100000", "65536"], "gid_map\n{out}");
    assert_eq!(lines[2], ["0"], "{out}");
    assert_eq!(lines[3], ["ok"], "{out}");
    let meta = fs::metadata(shared.join("made-inside")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (101_000, 102_000),
        "a file made by container uid 1000/gid 2000 is owned by the mapped ids on the host"
    );
}

/// A `sleep` in new namespaces (`flags`), as an engine keeps namespaces it made before
/// the runtime runs; with a user namespace, container ids 0..65535 map to host 200000...
/// Killed on drop.
struct HeldNamespaces(std::process::Child);

impl HeldNamespaces {
    fn new(flags: nix::sched::CloneFlags) -> HeldNamespaces {
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new("/bin/busybox");
        cmd.args(["sleep", "1000"]);
        // SAFETY: unshare is async-signal-safe; nothing else runs before exec.
        unsafe {
            cmd.pre_exec(move || nix::sched::unshare(flags).map_err(std::io::Error::from));
        }
        let child = cmd.spawn().expect("spawn a namespace holder");
        if flags.contains(nix::sched::CloneFlags::CLONE_NEWUSER) {
            for f in ["uid_map", "gid_map"] {
                fs::write(format!("/proc/{}/{f}", child.id()), "0 200000 65536\n").unwrap();
            }
        }
        HeldNamespaces(child)
    }

    fn ns(&self, kind: &str) -> String {
        format!("/proc/{}/ns/{kind}", self.0.id())
    }
}

impl Drop for HeldNamespaces {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn user_namespace_joined_by_path_with_the_network_namespace_it_owns() {
    if !require_container_host() {
        return;
    }
    use nix::sched::CloneFlags;
    let td = TestDir::new("ns-user-join");
    fs::set_permissions(td.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let held = HeldNamespaces::new(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET);
    // No maps in the config: the namespace has them. The init (host uid 200000) must
    // still open exec.fifo, and sysfs mounts, since the network namespace is the user
    // namespace's own.
    let bundle = td
        .bundle()
        .set(
            "/linux/namespaces/1",
            json!({"type": "network", "path": held.ns("net")}),
        )
        .set(
            "/linux/namespaces/-",
            json!({"type": "user", "path": held.ns("user")}),
        )
        .args(&[
            "sh",
            "-c",
            "cat /proc/self/uid_map; id -u; readlink /proc/self/ns/user; ls /sys/class/net",
        ])
        .write();
    let out = run_ok(&td, &bundle);
    let lines = out.stdout_lines();
    let map: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(map, ["0", "200000", "65536"], "{out}");
    assert_eq!(lines[1], "0", "{out}");
    assert_eq!(lines[2], readlink(held.ns("user")), "{out}");
    assert_eq!(
        lines[3..],
        ["lo"],
        "its own sysfs shows its own network\n{out}"
    );
}

#[test]
fn a_new_user_namespace_joins_a_network_namespace_of_the_host_user_namespace() {
    if !require_container_host() {
        return;
    }
    use nix::sched::CloneFlags;
    let td = TestDir::new("ns-user-netns");
    fs::set_permissions(td.path(), fs::Permissions::from_mode(0o755)).unwrap();
    // A network namespace the host's user namespace owns, as an engine makes one; the
    // container's new user namespace has no say over it, so it is joined first.
    let held = HeldNamespaces::new(CloneFlags::CLONE_NEWNET);
    let bundle = td
        .bundle()
        .set(
            "/linux/namespaces/1",
            json!({"type": "network", "path": held.ns("net")}),
        )
        .set("/linux/namespaces/-", json!({"type": "user"}))
        .set(
            "/linux/uidMappings",
            json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
        )
        .set(
            "/linux/gidMappings",
            json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
        )
        .args(&["sh", "-c", "readlink /proc/self/ns/net; id -u"])
        .write();
    let out = run_ok(&td, &bundle);
    assert_eq!(
        out.stdout_lines(),
        [readlink(held.ns("net")).as_str(), "0"],
        "{out}"
    );
}

#[test]
fn cgroup_namespace_roots_the_container_cgroup() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("ns-cgroup");
    let bundle = td
        .bundle()
        .set("/linux/namespaces/-", json!({"type": "cgroup"}))
        .args(&["cat", "/proc/self/cgroup"])
        .write();
    let out = run_ok(&td, &bundle);
    let lines = out.stdout_lines();
    assert!(!lines.is_empty(), "{out}");
    for l in lines {
        assert!(l.ends_with(":/"), "every cgroup is / inside: {l}\n{out}");
    }
    // Without it, the host path shows.
    let bundle = td.bundle().args(&["cat", "/proc/self/cgroup"]).write();
    let out = run_ok(&td, &bundle);
    assert!(
        out.stdout_lines().iter().any(|l| !l.ends_with(":/")),
        "without a cgroup namespace the container's cgroup path shows\n{out}"
    );
}

#[test]
fn time_namespace_offsets_boottime_and_monotonic() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("ns-time");
    const DAY: u64 = 86_400;
    let bundle = td
        .bundle()
        .set("/linux/namespaces/-", json!({"type": "time"}))
        .set(
            "/linux/timeOffsets",
            json!({
                "boottime": {"secs": 10 * DAY, "nanosecs": 0},
                "monotonic": {"secs": 20 * DAY, "nanosecs": 0}
            }),
        )
        .args(&["cat", "/proc/uptime"])
        .write();
    let host_before: f64 = uptime();
    let out = run_ok(&td, &bundle);
    let host_after: f64 = uptime();
    let inside: f64 = out
        .stdout
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    let off = (10 * DAY) as f64;
    assert!(
        inside >= host_before + off - 1.0 && inside <= host_after + off + 1.0,
        "uptime inside {inside}, host {host_before}..{host_after}: want +10 days"
    );
}

fn uptime() -> f64 {
    fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn joining_a_network_namespace_by_path() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("ns-join");
    let first = td.bundle().args(&["sleep", "1000"]).write();
    let c = run_detached(&td, &first);
    let ns = format!("/proc/{}/ns/net", c.pid);
    let want = readlink(&ns);
    let second = td
        .bundle()
        .set(
            "/linux/namespaces/1",
            json!({"type": "network", "path": ns}),
        )
        .args(&["readlink", "/proc/self/ns/net"])
        .write();
    assert_eq!(second.config["linux"]["namespaces"][1]["type"], "network");
    let out = run_ok(&td, &second);
    assert_eq!(out.stdout_trimmed(), want, "{out}");
    assert_ne!(want, readlink("/proc/self/ns/net"));
}

// ---------------------------------------------------------------------------------------
// Mounts
// ---------------------------------------------------------------------------------------

/// A host directory with a file and a tmpfs submount holding another file.
struct SourceTree {
    dir: std::path::PathBuf,
    _sub: HostMount,
}

fn source_tree(td: &TestDir) -> SourceTree {
    let dir = td.fresh("src");
    fs::create_dir_all(dir.join("sub")).unwrap();
    fs::write(dir.join("top-file"), "top\n").unwrap();
    let sub = HostMount::tmpfs(&dir.join("sub"));
    fs::write(dir.join("sub/sub-file"), "sub\n").unwrap();
    SourceTree { dir, _sub: sub }
}

#[test]
fn bind_shows_no_submounts_and_rbind_does() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("mnt-bind");
    let src = source_tree(&td);
    let bundle = td
        .bundle()
        .set(
            "/mounts/-",
            json!({"destination": "/b", "type": "bind", "source": src.dir, "options": ["bind"]}),
        )
        .set(
            "/mounts/-",
            json!({"destination": "/rb", "type": "bind", "source": src.dir, "options": ["rbind"]}),
        )
        .args(&[
            "sh",
            "-c",
            "cat /b/top-file; ls /b/sub | wc -l; cat /rb/top-file /rb/sub/sub-file",
        ])
        .write();
    let out = run_ok(&td, &bundle);
    assert_eq!(out.stdout_lines(), ["top", "0", "top", "sub"], "{out}");
}

/// The optional fields (shared:N, master:N, unbindable) of the mount at `mp` in
/// mountinfo text.
fn optional_fields(mountinfo: &str, mp: &str) -> Vec<String> {
    let line = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(mp))
        .unwrap_or_else(|| panic!("{mp} not mounted:\n{mountinfo}"));
    line.split(' ')
        .skip(6)
        .take_while(|f| *f != "-")
        .map(|f| f.split(':').next().unwrap().to_string())
        .collect()
}

#[test]
fn mount_propagation_options() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("mnt-prop");
    // A shared host mount, so that a slave can have a master.
    let dir = td.fresh("shared-src");
    fs::create_dir_all(&dir).unwrap();
    let _m = HostMount::bind(&dir, &dir);
    let _s = HostMount::make_shared(&dir);
    let mut b = td.bundle();
    for (dest, prop) in [
        ("/p-private", "private"),
        ("/p-shared", "shared"),
        ("/p-slave", "slave"),
        ("/p-unbindable", "unbindable"),
        ("/p-rprivate", "rprivate"),
        ("/p-rshared", "rshared"),
        ("/p-rslave", "rslave"),
    ] {
        b = b.set(
            "/mounts/-",
            json!({"destination": dest, "type": "bind", "source": dir, "options": ["rbind", prop]}),
        );
    }
    let bundle = b.args(&["cat", "/proc/self/mountinfo"]).write();
    let out = run_ok(&td, &bundle);
    let mi = &out.stdout;
    for (mp, want) in [
        ("/p-private", &[][..]),
        ("/p-rprivate", &[][..]),
        ("/p-shared", &["shared", "master"][..]),
        ("/p-rshared", &["shared", "master"][..]),
        ("/p-slave", &["master"][..]),
        ("/p-rslave", &["master"][..]),
        ("/p-unbindable", &["unbindable"][..]),
    ] {
        assert_eq!(optional_fields(mi, mp), want, "{mp}\n{mi}");
    }
}

#[test]
fn ro_and_recursive_rro_mounts() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("mnt-ro");
    let src = source_tree(&td);
    let bundle = td
        .bundle()
        .set(
            "/mounts/-",
            json!({"destination": "/ro", "type": "bind", "source": src.dir, "options": ["rbind", "ro"]}),
        )
        .set(
            "/mounts/-",
            json!({"destination": "/rro", "type": "bind", "source": src.dir, "options": ["rbind", "rro"]}),
        )
        .set(
            "/mounts/-",
            json!({"destination": "/rw", "type": "bind", "source": src.dir, "options": ["rbind", "rw"]}),
        )
        .args(&[
            "sh",
            "-c",
            "for p in /ro /ro/sub /rro /rro/sub /rw /rw/sub; do \
               if touch $p/new 2>/dev/null; then echo $p rw; else echo $p ro; fi; done",
        ])
        .write();
    let out = run_ok(&td, &bundle);
    assert_eq!(
        out.stdout_lines(),
        [
            "/ro ro",
            // ro is not recursive: the submount stays writable.
            "/ro/sub rw",
            "/rro ro",
            "/rro/sub ro",
            "/rw rw",
            "/rw/sub rw"
        ],
        "{out}"
    );
}

#[test]
fn tmpfs_with_size_and_mode() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("mnt-tmpfs");
    let bundle = td
        .bundle()
        .set(
            "/mounts/-",
            json!({"destination": "/t", "type": "tmpfs", "source": "tmpfs",
                   "options": ["size=1m", "mode=700", "nosuid"]}),
        )
        .args(&[
            "sh",
            "-c",
            "stat -c %a /t; df -k /t | tail -1 | awk '{print $2}'; \
             dd if=/dev/zero of=/t/big bs=1024 count=2048 2>/dev/null; echo rc=$?; \
             du -k /t/big | cut -f1; \
             grep ' /t ' /proc/self/mountinfo",
        ])
        .write();
    let out = run_ok(&td, &bundle);
    let lines = out.stdout_lines();
    assert_eq!(lines[0], "700", "{out}");
    assert_eq!(lines[1], "1024", "a 1 MiB tmpfs has 1024 KiB blocks\n{out}");
    assert_eq!(lines[2], "rc=1", "writing 2 MiB to it fails\n{out}");
    assert!(lines[3].parse::<u32>().unwrap() <= 1024, "{out}");
    assert!(
        lines[4].contains(" - tmpfs ") && lines[4].contains("nosuid"),
        "{out}"
    );
}

#[test]
fn proc_sysfs_devpts_mqueue_and_cgroup_mounts() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("mnt-special");
    let bundle = td
        .bundle()
        .args(&[
            "sh",
            "-c",
            "awk '{for (i=7; $i != \"-\"; i++); print $5, $(i+1)}' /proc/self/mountinfo; \
             echo ---; ls /sys/fs/cgroup; echo ---; ls /sys/kernel | grep -c . ; \
             tr '\\0' ' ' < /proc/1/cmdline; echo",
        ])
        .write();
    let out = run_ok(&td, &bundle);
    let (mounts, rest) = out.stdout.split_once("---\n").expect("separator");
    for (mp, typ) in [
        ("/proc", "proc"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
        ("/sys", "sysfs"),
    ] {
        assert!(
            mounts.lines().any(|l| l == format!("{mp} {typ}")),
            "{mp} is not a {typ} mount\n{out}"
        );
    }
    let (cgroups, rest) = rest.split_once("---\n").expect("separator");
    let ctrls: Vec<&str> = cgroups.lines().collect();
    for c in ["cpu", "memory", "pids", "devices", "freezer"] {
        assert!(ctrls.contains(&c), "/sys/fs/cgroup lacks {c}: {ctrls:?}");
    }
    let rest: Vec<&str> = rest.lines().collect();
    assert!(rest[0].parse::<u32>().unwrap() > 0, "/sys/kernel is empty");
    assert!(
        rest[1].starts_with("sh -c "),
        "/proc is the container's pid namespace's: pid 1 is the shell\n{out}"
    );
}

#[test]
fn rootfs_propagation() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("mnt-rootprop");
    for (prop, want) in [
        ("shared", &["shared"][..]),
        ("private", &[][..]),
        ("unbindable", &["unbindable"][..]),
    ] {
        let bundle = td
            .bundle()
            .set("/linux/rootfsPropagation", json!(prop))
            .args(&["cat", "/proc/self/mountinfo"])
            .write();
        let out = run_ok(&td, &bundle);
        assert_eq!(optional_fields(&out.stdout, "/"), want, "{prop}\n{out}");
    }
}

#[test]
fn readonly_root() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("mnt-roroot");
    let script = "touch /x 2>&1; echo rc=$?; touch /tmp/y 2>&1; echo rc=$?";
    let bundle = td
        .bundle()
        .set("/root/readonly", json!(true))
        .args(&["sh", "-c", script])
        .write();
    let out = run_ok(&td, &bundle);
    let lines = out.stdout_lines();
    assert!(lines[0].contains("Read-only file system"), "{out}");
    assert_eq!(lines[1], "rc=1", "{out}");
    assert!(lines[2].contains("Read-only file system"), "{out}");
    let bundle = td
        .bundle()
        .set("/root/readonly", json!(false))
        .args(&["sh", "-c", script])
        .write();
    let out = run_ok(&td, &bundle);
    assert_eq!(out.stdout_lines(), ["rc=0", "rc=0"], "{out}");
}

#[test]
fn masked_paths_read_empty() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("mnt-masked");
    let bundle = td
        .bundle()
        .set("/linux/maskedPaths/-", json!("/etc/secret-file"))
        .set("/linux/maskedPaths/-", json!("/etc/secret-dir"))
        .set("/linux/maskedPaths/-", json!("/etc/not-there"))
        .set("/linux/maskedPaths/-", json!("/etc/other-dir"))
        .args(&[
            "sh",
            "-c",
            "cat /etc/secret-file | wc -c; ls -A /etc/secret-dir | wc -l; \
             cat /proc/kcore | wc -c; cat /etc/hostname; \
             echo x > /etc/secret-file 2>/dev/null; cat /etc/secret-file | wc -c; \
             touch /etc/other-dir/x 2>/dev/null || echo refused; ls -A /etc/other-dir | wc -l; \
             grep -E ' /etc/(secret|other)-dir ' /proc/self/mountinfo | cut -d' ' -f3 | uniq | wc -l",
        ])
        .write();
    fs::write(bundle.rootfs().join("etc/secret-file"), "secret\n").unwrap();
    fs::create_dir(bundle.rootfs().join("etc/secret-dir")).unwrap();
    fs::write(bundle.rootfs().join("etc/secret-dir/inner"), "secret\n").unwrap();
    fs::create_dir(bundle.rootfs().join("etc/other-dir")).unwrap();
    fs::write(bundle.rootfs().join("etc/other-dir/inner"), "secret\n").unwrap();
    let out = run_ok(&td, &bundle);
    let lines: Vec<&str> = out.stdout_lines().iter().map(|l| l.trim()).collect();
    // The two masked directories: empty, read-only, one superblock.
    assert_eq!(
        lines,
        ["0", "0", "0", "plinth-test", "0", "refused", "0", "1"],
        "{out}"
    );
    assert_eq!(
        fs::read_to_string(bundle.rootfs().join("etc/secret-file")).unwrap(),
        "secret\n"
    );
}

#[test]
fn readonly_paths_refuse_writes() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("mnt-ropaths");
    let bundle = td
        .bundle()
        .set("/root/readonly", json!(false))
        .set("/linux/readonlyPaths/-", json!("/data"))
        .args(&[
            "sh",
            "-c",
            "touch /data/x 2>&1; echo rc=$?; cat /data/old; \
             (echo 1 > /proc/sys/kernel/hostname) 2>&1; echo rc=$?; touch /other && echo other-ok",
        ])
        .write();
    fs::create_dir(bundle.rootfs().join("data")).unwrap();
    fs::write(bundle.rootfs().join("data/old"), "readable\n").unwrap();
    let out = run_ok(&td, &bundle);
    let lines = out.stdout_lines();
    assert!(lines[0].contains("Read-only file system"), "{out}");
    assert_eq!(lines[1], "rc=1");
    assert_eq!(lines[2], "readable");
    assert!(lines[3].contains("Read-only file system"), "{out}");
    assert_eq!(lines[4], "rc=1");
    assert_eq!(lines[5], "other-ok");
}

#[test]
fn default_devices_exist_and_work() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("dev-default");
    let bundle = td
        .bundle()
        .args(&[
            "sh",
            "-c",
            "for d in null zero full random urandom tty; do stat -c '%n %F %t:%T %a' /dev/$d; done; \
             for l in ptmx fd stdin stdout stderr; do echo /dev/$l $(readlink /dev/$l); done; \
             echo data > /dev/null && cat /dev/null | wc -c; \
             head -c 16 /dev/zero | od -An -tx1 | tr -d ' \\n'; echo; \
             head -c 32 /dev/urandom | wc -c; \
             echo hi > /dev/full 2>&1 | true; ls /dev/fd/ | sort -n | head -3 | tr '\\n' ' '; echo",
        ])
        .write();
    let out = run_ok(&td, &bundle);
    let lines = out.stdout_lines();
    assert_eq!(
        &lines[..6],
        [
            "/dev/null character special file 1:3 666",
            "/dev/zero character special file 1:5 666",
            "/dev/full character special file 1:7 666",
            "/dev/random character special file 1:8 666",
            "/dev/urandom character special file 1:9 666",
            "/dev/tty character special file 5:0 666",
        ],
        "{out}"
    );
    assert_eq!(
        &lines[6..11],
        [
            "/dev/ptmx pts/ptmx",
            "/dev/fd /proc/self/fd",
            "/dev/stdin /proc/self/fd/0",
            "/dev/stdout /proc/self/fd/1",
            "/dev/stderr /proc/self/fd/2",
        ],
        "{out}"
    );
    assert_eq!(lines[11].trim(), "0", "{out}");
    assert_eq!(lines[12], "00".repeat(16), "{out}");
    assert_eq!(lines[13].trim(), "32", "{out}");
    assert_eq!(lines[14], "0 1 2 ", "{out}");
}

#[test]
fn configured_device_node() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("dev-config");
    let bundle = td
        .bundle()
        .set(
            "/linux/devices",
            json!([{"path": "/dev/myzero", "type": "c", "major": 1, "minor": 5,
                    "fileMode": 0o640, "uid": 123, "gid": 456}]),
        )
        .set(
            "/linux/resources/devices/-",
            json!({"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"}),
        )
        .args(&[
            "sh",
            "-c",
            "stat -c '%F %t:%T %a %u %g' /dev/myzero; head -c 4 /dev/myzero | wc -c; ls -ln /dev/myzero",
        ])
        // Mode 0640 and owner 123: readable by uid 123 without CAP_DAC_OVERRIDE.
        .set("/process/user", json!({"uid": 123, "gid": 0}))
        .write();
    let out = run_ok(&td, &bundle);
    let lines = out.stdout_lines();
    assert_eq!(lines[0], "character special file 1:5 640 123 456", "{out}");
    assert_eq!(lines[1].trim(), "4", "{out}");
    let ls: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        &ls[..6],
        ["crw-r-----", "1", "123", "456", "1,", "5"],
        "{out}"
    );
}

#[test]
fn sysctls_are_set_in_the_container_namespaces() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("sysctl");
    let host_fwd = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let host_msgmax = fs::read_to_string("/proc/sys/kernel/msgmax").unwrap();
    let bundle = td
        .bundle()
        .set(
            "/linux/sysctl",
            json!({"net.ipv4.ip_forward": "1", "kernel.msgmax": "4321"}),
        )
        .args(&[
            "cat",
            "/proc/sys/net/ipv4/ip_forward",
            "/proc/sys/kernel/msgmax",
        ])
        .write();
    let out = run_ok(&td, &bundle);
    assert_eq!(out.stdout_lines(), ["1", "4321"], "{out}");
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_fwd
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/msgmax").unwrap(),
        host_msgmax
    );
}
