//! The fleet's whole operating model on a real distribution: a copy of a debootstrapped
//! Debian root is the `dir:` platform of 100 containers made by `plinth apply`, each a small
//! server on loopback in its own network namespace; the supervisor is killed with
//! SIGKILL in the middle of the apply and the next apply converges with nothing leaked;
//! then a newer build of one library package (from `apt-get download`) is installed into
//! the platform with dpkg, and `plinth upgrade` restarts exactly the containers that map
//! that library, reports the container that shadows it, and touches nothing else.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{require, require_root, require_tool, TestDir};
use serde_json::Value;

const LIB: &str = "usr/lib/x86_64-linux-gnu/libcrypt.so.1.1.0";
const PREFIX: &str = "plat-";

use common::fleet::{get_in_netns, plinth};

fn ls(td: &TestDir) -> BTreeMap<String, Value> {
    let v = plinth(td).args(["ls", "--format", "json"]).json();
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c.clone()))
        .collect()
}

fn pids(td: &TestDir) -> BTreeMap<String, i64> {
    ls(td)
        .into_iter()
        .map(|(n, c)| {
            assert_eq!(c["state"], "running", "{c}");
            (n, c["pid"].as_i64().unwrap())
        })
        .collect()
}

/// A copy of the cached Debian root that dpkg may change without touching the cache
/// (a directory on the host's own filesystem, which idmapped mounts support; an
/// overlay of the cache would not serve containers with user namespaces).
fn platform_copy(td: &TestDir, cached: &Path) -> PathBuf {
    let root = td.path().join("platform");
    let ok = Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(cached)
        .arg(&root)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a {}", cached.display());
    root
}

/// Removes the test's containers and stops its supervisor (before the platform goes).
struct FleetGuard<'a>(&'a TestDir);

impl Drop for FleetGuard<'_> {
    fn drop(&mut self) {
        // The manifest, emptied: it removes what it made.
        let manifest = self.0.path().join("fleet.toml");
        let _ = fs::write(&manifest, "");
        let _ = plinth(self.0).arg("apply").arg(&manifest).output();
        let _ = plinth(self.0).args(["daemon", "--stop"]).output();
    }
}

/// Inodes of the files a process maps, by path.
fn maps(pid: i64) -> BTreeMap<String, u64> {
    fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.get(5)?.to_string(), f.get(4)?.parse().ok()?))
        })
        .collect()
}

/// What the test can see of a fleet on the host: its root mounts and network
/// namespaces, the runtime's container directories and the cgroups named after its
/// containers.
fn host_traces(td: &TestDir) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
    let state = td.path().join("state/containers");
    let mounts: BTreeSet<String> = common::mountinfo()
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|m| m.starts_with(&state.to_string_lossy().to_string()))
        .collect();
    let runtime: BTreeSet<String> = fs::read_dir(td.path().join("root/fleet"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    // Every v1 hierarchy (a container has cgroups in some of them only), or
    // the cgroup2 mount of a pure v2 host.
    let mut cgroups: BTreeSet<String> = BTreeSet::new();
    let roots = fs::read_dir("/sys/fs/cgroup")
        .map(|d| d.flatten().map(|e| e.path().join("plinth")).collect())
        .unwrap_or_else(|_| Vec::new());
    for dir in roots
        .into_iter()
        .chain([PathBuf::from("/sys/fs/cgroup/plinth")])
    {
        if let Ok(d) = fs::read_dir(&dir) {
            cgroups.extend(
                d.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| n.starts_with(PREFIX)),
            );
        }
    }
    (mounts, runtime, cgroups)
}

/// A newer build of `package`: the archive's .deb from `apt-get download`, rebuilt
/// with its version raised (as a binNMU or a security rebuild would).
fn newer_build(td: &TestDir, package: &str) -> PathBuf {
    let dir = td.path().join("deb");
    fs::create_dir_all(&dir).unwrap();
    let ok = Command::new("apt-get")
        .args(["download", package])
        .current_dir(&dir)
        .status()
        .unwrap()
        .success();
    assert!(ok, "apt-get download {package}");
    let deb = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .unwrap();
    let tree = dir.join("tree");
    assert!(Command::new("dpkg-deb")
        .arg("-R")
        .arg(&deb)
        .arg(&tree)
        .status()
        .unwrap()
        .success());
    let control = tree.join("DEBIAN/control");
    let text = fs::read_to_string(&control).unwrap();
    let text: String = text
        .lines()
        .map(|l| match l.strip_prefix("Version: ") {
            Some(v) => format!("Version: {v}+plinth1\n"),
            None => format!("{l}\n"),
        })
        .collect();
    fs::write(&control, text).unwrap();
    let out = dir.join(format!("{package}-newer.deb"));
    let built = Command::new("dpkg-deb")
        .args(["--root-owner-group", "-b"])
        .arg(&tree)
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(built.success());
    out
}

#[test]
fn a_debian_platform_apply_a_killed_supervisor_and_an_upgrade() {
    if !require_root()
        || !require(common::host_busybox_is_static(), "a static /bin/busybox")
        || !require_tool("apt-get")
        || !require_tool("dpkg-deb")
    {
        return;
    }
    let Some(cached) = common::debian::debian_root("bookworm") else {
        return;
    };
    let td = TestDir::new("fleet-platform");
    let platform = platform_copy(&td, &cached);
    let _g = FleetGuard(&td);
    let root = &platform;
    // The platform gets a static busybox and a CGI script that answers with the
    // container's hostname; perl (perl-base) is the platform's own.
    fs::copy("/bin/busybox", root.join("usr/local/bin/busybox")).unwrap();
    fs::create_dir_all(root.join("srv/cgi-bin")).unwrap();
    fs::write(
        root.join("srv/cgi-bin/name"),
        "#!/usr/local/bin/busybox sh\necho 'Content-Type: text/plain'\necho\n/usr/local/bin/busybox hostname\n",
    )
    .unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(root.join("srv/cgi-bin/name"))
        .status()
        .unwrap();

    // 50 perl servers (perl maps libcrypt) and 50 static busybox ones (map nothing).
    let perl = r#"use IO::Socket::INET; my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1:8080", Listen => 64, ReuseAddr => 1) or die "listen: $!"; open(my $h, "<", "/proc/sys/kernel/hostname"); my $n = <$h>; while (my $c = $s->accept) { <$c>; print $c "HTTP/1.0 200 OK\r\n\r\n$n"; close $c }"#;
    let manifest = td.path().join("fleet.toml");
    fs::write(
        &manifest,
        format!(
            "[defaults]\nbase = \"dir:{}\"\nnetwork = \"none\"\nrestart = \"always\"\n\n\
             [[container]]\nname = \"{PREFIX}perl-{{n}}\"\ncount = 50\ncommand = [\"/usr/bin/perl\", \"-e\", {perl:?}]\n\n\
             [[container]]\nname = \"{PREFIX}bb-{{n}}\"\ncount = 50\npids = 64\n\
             command = [\"/usr/local/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"127.0.0.1:8080\", \"-h\", \"/srv\"]\n",
            root.display()
        ),
    )
    .unwrap();

    // SIGKILL to the supervisor while the apply runs.
    let _ = plinth(&td); // the test dir searchable by the containers' root users
    let mut apply = Command::new(common::runtime_bin())
        .arg("--root")
        .arg(td.path().join("root"))
        .arg("apply")
        .arg(&manifest)
        .env("PLINTH_STATE_DIR", td.path().join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lock = td.path().join("state/daemon.lock");
    let deadline = Instant::now() + Duration::from_secs(60);
    let killed = loop {
        let running = fs::read_dir(td.path().join("root/fleet"))
            .map(|d| d.count())
            .unwrap_or(0);
        if running >= 20 {
            let pid: i32 = fs::read_to_string(&lock).unwrap().trim().parse().unwrap();
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            break pid;
        }
        assert!(Instant::now() < deadline, "the apply did not get going");
        std::thread::sleep(Duration::from_millis(5));
    };
    let status = apply.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut apply.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        !status.success(),
        "the apply whose supervisor died failed: {err}"
    );
    assert!(err.contains("supervisor"), "it says why: {err}");
    eprintln!(
        "supervisor {killed} killed during the apply: {}",
        err.trim()
    );

    // The next apply starts another supervisor, which reconciles, and converges.
    let out = plinth(&td)
        .arg("apply")
        .arg(&manifest)
        .timeout(Duration::from_secs(300))
        .assert_success();
    eprintln!("{}", out.stdout.lines().last().unwrap_or(""));
    let before = pids(&td);
    assert_eq!(before.len(), 100);
    for (name, pid) in &before {
        assert_eq!(
            &get_in_netns(*pid, "/cgi-bin/name"),
            name,
            "{name} answers with its name"
        );
    }
    let again = plinth(&td).arg("apply").arg(&manifest).assert_success();
    assert!(
        again
            .stdout
            .contains("0 create, 0 update, 0 start, 0 remove, 100 unchanged"),
        "{again}"
    );
    // Nothing leaked: one root mount, one network and one user namespace and one runtime
    // state per running container, and a cgroup for each that has a limit (the busybox
    // ones, `pids = 64`), nothing else.
    let (mounts, runtime, cgroups) = host_traces(&td);
    let names: BTreeSet<String> = before.keys().cloned().collect();
    let state = td.path().join("state/containers");
    let want_mounts: BTreeSet<String> = names
        .iter()
        .flat_map(|n| {
            ["rootfs", "netns", "userns"].map(|m| state.join(n).join(m).display().to_string())
        })
        .collect();
    let odd: Vec<&String> = mounts.symmetric_difference(&want_mounts).collect();
    assert!(
        odd.is_empty(),
        "mounts that should not be there, or are missing: {odd:?}"
    );
    assert_eq!(runtime, names);
    let limited: BTreeSet<String> = names
        .iter()
        .filter(|n| n.contains("-bb-"))
        .cloned()
        .collect();
    assert_eq!(cgroups, limited);

    // One perl container keeps its own copy of the library in its upper layer.
    let shadowing = format!("{PREFIX}perl-1");
    plinth(&td)
        .args(["exec", &shadowing, "/bin/sh", "-c"])
        .arg(format!("cp -p /{LIB} /{LIB}.copy && mv /{LIB}.copy /{LIB}"))
        .assert_success();

    // A newer build of libcrypt1 goes into the platform with dpkg.
    let old_inode = fs::metadata(root.join(LIB)).unwrap().ino();
    let deb = newer_build(&td, "libcrypt1");
    let installed = Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-not-root", "-i"])
        .arg(&deb)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(installed.success(), "dpkg -i {}", deb.display());
    let new_inode = fs::metadata(root.join(LIB)).unwrap().ino();
    assert_ne!(old_inode, new_inode, "dpkg replaced the library");

    let report = plinth(&td)
        .args(["upgrade", "--parallel", "10", "--format", "json"])
        .timeout(Duration::from_secs(300))
        .json();
    let names_of = |key: &str| -> BTreeSet<String> {
        report[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().or(a.as_str()).unwrap().to_string())
            .collect()
    };
    let perl: BTreeSet<String> = (2..=50).map(|n| format!("{PREFIX}perl-{n}")).collect();
    assert_eq!(
        names_of("affected"),
        perl,
        "exactly the containers that map the library"
    );
    assert_eq!(names_of("restarted"), perl);
    // The package state recorded when they started names what changed.
    let version = |v: &str| format!("libcrypt1 {v} → {v}+plinth1");
    for a in report["affected"].as_array().unwrap() {
        let changed = a["packages_changed"].as_array().unwrap();
        assert_eq!(changed.len(), 1, "{a}");
        let text = changed[0].as_str().unwrap();
        let old = text.split(' ').nth(1).unwrap();
        assert_eq!(text, version(old), "{a}");
    }
    let shadowed: Vec<String> = report["unaffected"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["name"] == shadowing.as_str())
        .flat_map(|a| a["shadowed"].as_array().unwrap().clone())
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert_eq!(shadowed, [format!("/{LIB}")], "{report}");

    let after = pids(&td);
    for (name, pid) in &after {
        let restarted = perl.contains(name);
        assert_eq!(
            pid != &before[name],
            restarted,
            "{name}: restarted iff it maps the library"
        );
        if restarted {
            let m = maps(*pid);
            assert_eq!(
                m.get(&format!("/{LIB}")),
                Some(&new_inode),
                "{name} maps the new file"
            );
        }
        assert_eq!(&get_in_netns(*pid, "/cgi-bin/name"), name);
    }

    // The manifest, emptied, removes everything it made, and leaves nothing behind.
    fs::write(&manifest, "").unwrap();
    let out = plinth(&td).arg("apply").arg(&manifest).assert_success();
    assert!(out.stdout.contains("100 remove"), "{out}");
    let (mounts, runtime, cgroups) = host_traces(&td);
    assert!(
        mounts.is_empty() && runtime.is_empty() && cgroups.is_empty(),
        "{mounts:?} {runtime:?} {cgroups:?}"
    );
    assert!(fs::read_dir(&state).unwrap().next().is_none());
}
