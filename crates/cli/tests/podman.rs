//! plinth as podman's OCI runtime (`podman --runtime <plinth>`): the path through conmon
//! that real users take. The image is made at test time from the busybox rootfs, packed
//! with the `tar` crate and `podman import`ed once per test process; nothing is pulled.
//!
//! Every podman call passes `--cgroup-manager cgroupfs --events-backend file`, as this
//! host has no systemd. `scripts/test` also writes those (and `default_ulimits = []`) to
//! /etc/containers/containers.conf.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::{
    build_busybox_rootfs, container_id, lock_file, require_container_host, require_tool,
    runtime_bin, shell_quote, wait_timeout, TestCommand, TestDir,
};

/// The image every test runs.
const IMAGE: &str = "localhost/plinth-busybox:test";

fn podman_host() -> bool {
    require_container_host() && require_tool("podman")
}

/// `podman` with plinth as its runtime.
fn podman(td: &TestDir) -> TestCommand {
    let mut cmd = td.command("podman");
    cmd.arg("--runtime").arg(runtime_bin()).args([
        "--cgroup-manager",
        "cgroupfs",
        "--events-backend",
        "file",
    ]);
    cmd
}

/// Build and import [`IMAGE`] once per process; the machine-wide lock keeps parallel test
/// processes from importing at the same time.
fn ensure_image() {
    static IMPORTED: OnceLock<()> = OnceLock::new();
    IMPORTED.get_or_init(|| {
        let _lock = lock_file("plinth-podman-image.lock");
        let dir = tempfile::tempdir().expect("temp dir");
        let rootfs = dir.path().join("rootfs");
        build_busybox_rootfs(&rootfs, "plinth-busybox");
        let tar_path = dir.path().join("rootfs.tar");
        pack(&rootfs, &tar_path);

        let old_id = image_id();
        let out = Command::new("podman")
            .args(["import", "--quiet"])
            .arg(&tar_path)
            .arg(IMAGE)
            .output()
            .expect("run podman import");
        assert!(
            out.status.success(),
            "podman import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Drop the image this import replaced, unless a container still uses it.
        if let (Some(old), Some(new)) = (old_id, image_id()) {
            if old != new {
                let _ = Command::new("podman").args(["rmi", &old]).output();
            }
        }
    });
}

fn image_id() -> Option<String> {
    let out = Command::new("podman")
        .args(["image", "inspect", "--format", "{{.Id}}", IMAGE])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `rootfs` as an uncompressed tar, symlinks kept as symlinks.
fn pack(rootfs: &Path, tar_path: &Path) {
    let file = std::fs::File::create(tar_path).expect("create tar");
    let mut builder = tar::Builder::new(file);
    builder.follow_symlinks(false);
    builder.append_dir_all(".", rootfs).expect("pack rootfs");
    builder.into_inner().expect("finish tar");
}

/// Removes a podman container by name when dropped.
struct PodmanGuard(String);

impl Drop for PodmanGuard {
    fn drop(&mut self) {
        let child = Command::new("podman")
            .arg("--runtime")
            .arg(runtime_bin())
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .args(["rm", "--force", "--time", "0", &self.0])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Ok(mut child) = child {
            let _ = wait_timeout(&mut child, Duration::from_secs(60));
        }
    }
}

#[test]
fn podman_run_rm_prints_from_the_container() {
    if !podman_host() {
        return;
    }
    let td = TestDir::new("podman-run");
    let version = td.command("podman").arg("--version").stdout();
    eprintln!("{}", version.trim());
    assert!(version.starts_with("podman version "), "{version}");
    ensure_image();

    let name = container_id();
    let _guard = PodmanGuard(name.clone());
    let out = podman(&td)
        .args(["run", "--rm", "--name", &name, IMAGE, "echo", "ok"])
        .assert_success();
    assert_eq!(out.stdout, "ok\n", "{out}");
}

#[test]
fn podman_run_propagates_the_exit_code() {
    if !podman_host() {
        return;
    }
    let td = TestDir::new("podman-exit");
    ensure_image();
    let name = container_id();
    let _guard = PodmanGuard(name.clone());
    podman(&td)
        .args(["run", "--rm", "--name", &name, IMAGE, "sh", "-c", "exit 3"])
        .assert_exit_code(3);
}

#[test]
fn podman_run_with_a_uid_map_and_podmans_network() {
    if !podman_host() {
        return;
    }
    let td = TestDir::new("podman-userns");
    ensure_image();
    let name = container_id();
    let _guard = PodmanGuard(name.clone());
    // A new user namespace with podman's maps, and the network podman sets up for it.
    let out = podman(&td)
        .args(["run", "--rm", "--name", &name])
        .args(["--uidmap", "0:300000:65536", "--gidmap", "0:300000:65536"])
        .args([
            IMAGE,
            "sh",
            "-c",
            "cat /proc/self/uid_map; id -u; ls /sys/class/net",
        ])
        .assert_success();
    let lines = out.stdout_lines();
    let map: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(map, ["0", "300000", "65536"], "{out}");
    assert_eq!(lines[1], "0", "{out}");
    assert!(
        lines[2..].contains(&"eth0"),
        "podman's network is joined\n{out}"
    );
}

#[test]
fn podman_detached_exec_stop_rm() {
    if !podman_host() {
        return;
    }
    let td = TestDir::new("podman-detached");
    ensure_image();
    let name = container_id();
    let _guard = PodmanGuard(name.clone());
    podman(&td)
        .args(["run", "-d", "--name", &name, IMAGE, "sleep", "1000"])
        .assert_success();

    let out = podman(&td).args(["exec", &name, "echo", "hi"]).stdout();
    assert_eq!(out, "hi\n");
    podman(&td)
        .args(["exec", &name, "sh", "-c", "exit 5"])
        .assert_exit_code(5);

    // sleep as PID 1 ignores SIGTERM: stop must escalate to SIGKILL after 2 s.
    podman(&td)
        .args(["stop", "-t", "2", &name])
        .assert_success();
    let status = podman(&td)
        .args(["inspect", "--format", "{{.State.Status}}", &name])
        .stdout();
    assert_eq!(status.trim(), "exited");
    podman(&td).args(["rm", &name]).assert_success();
    podman(&td)
        .args(["container", "exists", &name])
        .assert_exit_code(1);
}

#[test]
fn podman_exec_with_a_tty() {
    // There is no terminal in CI; `script` (util-linux) gives podman one.
    if !podman_host() || !require_tool("script") {
        return;
    }
    let td = TestDir::new("podman-tty");
    ensure_image();
    let name = container_id();
    let _guard = PodmanGuard(name.clone());
    podman(&td)
        .args(["run", "-d", "--name", &name, IMAGE, "sleep", "1000"])
        .assert_success();

    let exec = format!(
        "podman --runtime {} --cgroup-manager cgroupfs --events-backend file exec -t {name} tty",
        shell_quote(runtime_bin().as_os_str())
    );
    let out = td
        .command("script")
        .args(["-q", "-e", "-c", &exec, "/dev/null"])
        .assert_success();
    assert!(
        out.stdout.contains("/dev/pts/"),
        "exec -t should run on a pty\n{out}"
    );
}
