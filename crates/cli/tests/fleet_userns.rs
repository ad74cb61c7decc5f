//! User namespaces of fleet containers from the command line: by default a container is
//! root over a range of host ids of its own (disjoint from every other container's),
//! sees the platform's files as its own through an idmapped lower layer and writes
//! shifted host ids into its upper layer; `--userns host` keeps the host's ids, `--user`
//! picks the process's ids, and an `apply` that switches a container between the two
//! moves the owners of its upper layer. Checked from the host (`/proc/PID/status`,
//! `/proc/PID/uid_map`, file owners in the upper layer) and from inside (`id`, `stat`).

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::fleet::{container_dir, entry, plinth, wait_for, FleetGuard};
use common::{require, require_root, TestDir};

fn ready() -> bool {
    require_root() && require(common::host_busybox_is_static(), "a static /bin/busybox")
}

/// A platform root with the static busybox and files owned by host root (mode 0600),
/// by host uid 1000 (0640) and by host uid 70000 (0600, beyond any container's range).
fn platform(td: &TestDir) -> PathBuf {
    let root = td.path().join("platform");
    for d in ["bin", "etc", "srv"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    fs::write(root.join("etc/hostname"), "platform\n").unwrap();
    for (name, uid, mode, text) in [
        ("srv/secret", 0, 0o600, "root's"),
        ("srv/mapped", 1000, 0o640, "user's"),
        ("srv/foreign", 70000, 0o600, "foreign"),
    ] {
        let p = root.join(name);
        fs::write(&p, text).unwrap();
        std::os::unix::fs::chown(&p, Some(uid), Some(uid)).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }
    root
}

/// `(host_id, size)` of `name`'s range, from `plinth ls`.
fn range(td: &TestDir, name: &str) -> (u64, u64) {
    let ids = &entry(td, name)["ids"];
    (
        ids["host_id"].as_u64().unwrap(),
        ids["size"].as_u64().unwrap(),
    )
}

/// The `Uid:` line of a process: real, effective, saved, filesystem.
fn host_uids(pid: i64) -> Vec<u64> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect()
}

fn words(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

fn pid(td: &TestDir, name: &str) -> i64 {
    entry(td, name)["pid"].as_i64().unwrap()
}

/// What the probe writes (into the container's `/out`, its upper layer).
const PROBE: &str = "id -u > /out.id; cat /proc/self/uid_map > /out.map; \
     stat -c '%u %g' /srv/secret /srv/mapped /srv/foreign > /out.stat; \
     cat /srv/secret > /out.secret; cat /srv/foreign > /out.foreign 2>&1; \
     echo container >> /etc/hostname; touch /out.done; exec sleep 1000";

#[test]
fn private_containers_are_root_over_disjoint_ranges_of_their_own() {
    if !ready() {
        return;
    }
    let td = TestDir::new("fleet-userns");
    let _g = FleetGuard(&td, vec![]);
    let base = format!("--base=dir:{}", platform(&td).display());
    for n in ["ns-a", "ns-b"] {
        plinth(&td)
            .args(["new", n, &base, "--", "/bin/busybox", "sh", "-c", PROBE])
            .assert_success();
        plinth(&td).args(["start", n]).assert_success();
    }
    let (a, size) = range(&td, "ns-a");
    let (b, _) = range(&td, "ns-b");
    assert_eq!(size, 65536);
    assert!(a + size <= b || b + size <= a, "ranges overlap: {a} {b}");
    assert!(
        a >= 65536 && b >= 65536,
        "a range overlaps the host's own ids"
    );

    for (n, host_id) in [("ns-a", a), ("ns-b", b)] {
        let upper = container_dir(&td, n).join("upper");
        wait_for(&upper.join("out.done"));
        let read = |f: &str| fs::read_to_string(upper.join(f)).unwrap();
        // Root inside, the range's first id outside.
        assert_eq!(read("out.id").trim(), "0");
        assert_eq!(
            words(&read("out.map")),
            [["0".to_string(), host_id.to_string(), "65536".to_string()]]
        );
        assert_eq!(host_uids(pid(&td, n)), [host_id; 4]);
        let map = fs::read_to_string(format!("/proc/{}/uid_map", pid(&td, n))).unwrap();
        assert_eq!(words(&map), words(&read("out.map")));
        // What it writes is owned by its root's host id, on the host.
        let meta = fs::metadata(upper.join("out.id")).unwrap();
        assert_eq!((meta.uid() as u64, meta.gid() as u64), (host_id, host_id));
        // Copy-up of a platform file (host root's) works and lands shifted.
        assert_eq!(read("etc/hostname"), "platform\ncontainer\n");
        assert_eq!(
            fs::metadata(upper.join("etc/hostname")).unwrap().uid() as u64,
            host_id
        );
        // Through the idmapped lower layer the platform's ids are the container's own:
        // host root's files are its root's (it reads the 0600 file, as root does on the
        // platform), uid 1000 stays 1000, and an id beyond the range is nobody, which
        // even its root cannot read.
        assert_eq!(
            words(&read("out.stat")),
            [["0", "0"], ["1000", "1000"], ["65534", "65534"]]
                .map(|p| p.map(String::from).to_vec())
        );
        assert_eq!(read("out.secret"), "root's");
        assert!(
            read("out.foreign").contains("Permission denied"),
            "{}",
            read("out.foreign")
        );
    }
    let platform = td.path().join("platform");
    assert_eq!(
        fs::read_to_string(platform.join("etc/hostname")).unwrap(),
        "platform\n"
    );
    assert_eq!(
        fs::metadata(platform.join("etc/hostname")).unwrap().uid(),
        0
    );

    // rm frees a range: the next container gets it, the others keep theirs.
    plinth(&td).args(["rm", "--force", "ns-a"]).assert_success();
    plinth(&td)
        .args(["new", "ns-c", &base, "--", "/bin/busybox", "sleep", "1000"])
        .assert_success();
    assert_eq!(range(&td, "ns-c").0, a);
    assert_eq!(range(&td, "ns-b").0, b);
}

#[test]
fn host_ids_and_the_user_flag() {
    if !ready() {
        return;
    }
    let td = TestDir::new("fleet-userns-host");
    let _g = FleetGuard(&td, vec![]);
    let show = "cat /proc/self/uid_map; id -u; id -g; exec sleep 1000";
    for (name, flags) in [
        ("ids-host", vec!["--userns", "host"]),
        ("ids-user", vec!["--user", "1000:1000"]),
        (
            "ids-user-host",
            vec!["--userns", "host", "--user", "1000:2000"],
        ),
    ] {
        plinth(&td)
            .args(["new", name])
            .args(&flags)
            .args(["--", "/bin/busybox", "sh", "-c", show])
            .assert_success();
        plinth(&td).args(["start", name]).assert_success();
    }
    let log = |n: &str| {
        let path = container_dir(&td, n).join("console.log");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let text = fs::read_to_string(&path).unwrap_or_default();
            if text.lines().count() >= 3 || std::time::Instant::now() > deadline {
                return words(&text);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    // The host's ids: the identity map, no range.
    assert_eq!(
        log("ids-host"),
        [s(&["0", "0", "4294967295"]), s(&["0"]), s(&["0"])]
    );
    assert!(entry(&td, "ids-host")["ids"].is_null());
    assert_eq!(host_uids(pid(&td, "ids-host")), [0; 4]);
    // --user in a private namespace: 1000 inside, the range's 1000th id outside.
    let (h, _) = range(&td, "ids-user");
    assert_eq!(
        log("ids-user"),
        [
            s(&["0", &h.to_string(), "65536"]),
            s(&["1000"]),
            s(&["1000"])
        ]
    );
    assert_eq!(host_uids(pid(&td, "ids-user")), [h + 1000; 4]);
    assert_eq!(log("ids-user-host")[1..], [s(&["1000"]), s(&["2000"])]);
    assert_eq!(host_uids(pid(&td, "ids-user-host")), [1000; 4]);

    for (args, msg) in [
        (
            vec!["--user", "70000"],
            "--user 70000:70000: a private user namespace maps ids 0 to 65535",
        ),
        (vec!["--user", "x"], "--user x: expected UID or UID:GID"),
        (
            vec!["--userns", "auto"],
            "--userns auto: expected private or host",
        ),
    ] {
        let out = plinth(&td)
            .args(["new", "bad"])
            .args(&args)
            .args(["--", "/bin/true"])
            .assert_failure();
        assert!(out.stderr.contains(msg), "{args:?}: {out}");
    }
    assert!(!container_dir(&td, "bad").exists());
}

#[test]
fn a_state_dir_the_container_cannot_reach_is_a_clear_error() {
    if !ready() {
        return;
    }
    let td = TestDir::new("fleet-userns-dir");
    let _g = FleetGuard(&td, vec![]);
    plinth(&td)
        .args(["new", "closed", "--", "/bin/busybox", "sleep", "1000"])
        .assert_success();
    fs::set_permissions(td.path().join("state"), fs::Permissions::from_mode(0o700)).unwrap();
    let out = plinth(&td).args(["start", "closed"]).assert_failure();
    assert!(
        out.stderr
            .contains("is not searchable by the container's root"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains(&td.path().join("state").display().to_string()),
        "{out}"
    );
    let dir = container_dir(&td, "closed");
    for f in ["userns", "netns"] {
        assert!(!dir.join(f).exists(), "{f} left behind");
    }
    fs::set_permissions(td.path().join("state"), fs::Permissions::from_mode(0o711)).unwrap();
    plinth(&td).args(["start", "closed"]).assert_success();
}

/// The manifest of one container with `userns`.
fn manifest(path: &Path, userns: &str) {
    fs::write(
        path,
        format!(
            "[[container]]\nname = \"switch\"\nuserns = \"{userns}\"\n\
             command = [\"/bin/busybox\", \"sh\", \"-c\", \"echo x >> /made; mkdir -p /d; touch /d/f; trap 'exit 0' TERM; sleep 1000 & wait\"]\n"
        ),
    )
    .unwrap();
}

#[test]
fn apply_moves_the_upper_layer_between_host_and_private_ids() {
    if !ready() {
        return;
    }
    let td = TestDir::new("fleet-userns-apply");
    let _g = FleetGuard(&td, vec![]);
    let m = td.path().join("switch.toml");
    let upper = container_dir(&td, "switch").join("upper");
    let owner = |p: &str| {
        let meta = fs::metadata(upper.join(p)).unwrap();
        (meta.uid() as u64, meta.gid() as u64)
    };
    manifest(&m, "host");
    plinth(&td).arg("apply").arg(&m).assert_success();
    wait_for(&upper.join("d/f"));
    assert_eq!(owner("made"), (0, 0));
    assert!(entry(&td, "switch")["ids"].is_null());

    manifest(&m, "private");
    let out = plinth(&td).arg("apply").arg(&m).assert_success();
    assert!(out.stdout.contains("1 update"), "{out}");
    let (h, _) = range(&td, "switch");
    for p in ["made", "d", "d/f", ""] {
        assert_eq!(owner(p), (h, h), "{p}");
    }
    // It runs on its old files as their owner: its second line reached /made.
    assert_eq!(host_uids(pid(&td, "switch")), [h; 4]);
    let lines = |n: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while fs::read_to_string(upper.join("made"))
            .unwrap()
            .lines()
            .count()
            < n
        {
            assert!(
                std::time::Instant::now() < deadline,
                "/made has no line {n}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    lines(2);

    manifest(&m, "host");
    plinth(&td).arg("apply").arg(&m).assert_success();
    assert_eq!(owner("made"), (0, 0));
    assert_eq!(owner("d/f"), (0, 0));
    assert!(entry(&td, "switch")["ids"].is_null());
    lines(3);
}
