//! Regression tests for known container escapes. Each one attempts the escape from inside
//! a busybox container (with static C helpers where a shell cannot do it) and asserts
//! that it fails and that the host is unchanged: the host's root beyond pivot_root and
//! chroot, the runtime binary (CVE-2019-5736), descriptors leaked into the container
//! (CVE-2024-21626), symlinks in mount destinations (CVE-2021-30465), a symlinked
//! `/dev/null` or `/dev/console` (CVE-2025-31133, CVE-2025-52565), and EPERM where the
//! default seccomp profile must say ENOSYS.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{
    compile_static, container_id, require_cc, require_container_host, run_bundle, run_ok,
    BusyboxBundle, TestCommand, TestDir, SETTLE,
};
use serde_json::json;

// ---------------------------------------------------------------------------------------
// pivot_root: the host's root stays out of reach
// ---------------------------------------------------------------------------------------

/// A C program that tries the classic chroot breakout: chroot into a subdirectory while
/// keeping its cwd outside, walk up with "..", chroot there, then report what `/` holds
/// and whether `probe` (a host path) can be opened.
const CHROOT_BREAKOUT_C: &str = r#"
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
int main(int argc, char **argv) {
    mkdir("/breakout", 0755);
    if (chroot("/breakout") != 0) { perror("chroot breakout"); return 1; }
    for (int i = 0; i < 64; i++) chdir("..");
    if (chroot(".") != 0) { perror("chroot ."); return 1; }
    DIR *d = opendir("/");
    struct dirent *e;
    while (d && (e = readdir(d))) printf("entry %s\n", e->d_name);
    int fd = open(argv[1], O_RDONLY);
    printf("probe %s\n", fd >= 0 ? "reachable" : "unreachable");
    return 0;
}
"#;

#[test]
fn the_host_root_is_not_reachable() {
    if !require_container_host() || !require_cc() {
        return;
    }
    let td = TestDir::new("sec-pivot");
    // A marker on the host, by its host path.
    let marker_dir = td.path().join("host-only");
    fs::create_dir(&marker_dir).unwrap();
    let marker = marker_dir.join("marker");
    fs::write(&marker, "host\n").unwrap();
    let host_root_dev = root_device();
    let mut bundle = td
        .bundle()
        .set("/root/readonly", json!(false))
        .set("/process/capabilities/bounding/-", json!("CAP_SYS_CHROOT"))
        .set("/process/capabilities/effective/-", json!("CAP_SYS_CHROOT"))
        .set("/process/capabilities/permitted/-", json!("CAP_SYS_CHROOT"))
        .write();
    compile_static(&td, CHROOT_BREAKOUT_C, &bundle.rootfs().join("breakout-c"));
    let script = format!(
        "cat {m} 2>&1; echo ---; /breakout-c {m}; echo ---; \
         mkdir -p /x && cd / && chroot /x /bin/sh -c 'cd ../../../..; ls' 2>&1; echo ---; \
         cat /proc/self/mountinfo",
        m = marker.display()
    );
    bundle.config["process"]["args"] = json!(["sh", "-c", script]);
    bundle.write_config();
    let out = run_ok(&td, &bundle);
    let parts: Vec<&str> = out.stdout.split("---\n").collect();
    assert_eq!(parts.len(), 4, "{out}");
    assert!(parts[0].contains("No such file"), "marker visible\n{out}");
    assert!(
        parts[1].contains("probe unreachable"),
        "the breakout reached the host\n{out}"
    );
    let entries: Vec<&str> = parts[1]
        .lines()
        .filter_map(|l| l.strip_prefix("entry "))
        .collect();
    for e in ["bin", "etc", "breakout", "breakout-c"] {
        assert!(
            entries.contains(&e),
            "/ after the breakout lacks {e}\n{out}"
        );
    }
    for host_only in ["boot", "lib", "work"] {
        assert!(
            !entries.contains(&host_only),
            "/ after the breakout shows the host's {host_only}\n{out}"
        );
    }
    // busybox chroot changes to the new root: the shell variant ends in /x.
    assert!(!parts[2].contains("boot"), "{out}");
    // No mount of the host's root filesystem at its own root.
    for line in parts[3].lines() {
        let f: Vec<&str> = line.split(' ').collect();
        assert!(
            !(f[2] == host_root_dev && f[3] == "/"),
            "the host's root is mounted inside: {line}\n{out}"
        );
    }
}

/// The major:minor of the host's `/`, as mountinfo writes it.
fn root_device() -> String {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .and_then(|l| l.split(' ').nth(2).map(String::from))
        .expect("a mount at /")
}

#[test]
fn no_pivot_still_runs() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("sec-nopivot");
    let bundle = td
        .bundle()
        .args(&["sh", "-c", "echo in-container; cat /etc/hostname; ls /"])
        .write();
    let id = container_id();
    let _g = td.guard(&id);
    let out = td
        .plinth()
        .args(["run", "--no-pivot", "--bundle"])
        .arg(bundle.path())
        .arg(&id)
        .assert_success();
    let lines = out.stdout_lines();
    assert_eq!(lines[..2], ["in-container", "plinth-test"], "{out}");
    assert!(!lines.contains(&"boot"), "{out}");
}

// ---------------------------------------------------------------------------------------
// CVE-2019-5736: overwriting the runtime binary through /proc/<pid>/exe
// ---------------------------------------------------------------------------------------

/// A copy of the runtime under test in the test dir (never the build output itself).
fn runtime_copy(td: &TestDir) -> PathBuf {
    let dir = td.path().join("runtime-bin");
    fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("plinth-copy");
    fs::copy(common::runtime_bin(), &copy).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

/// The copy with `--root` preset.
fn copy_cmd(td: &TestDir, copy: &Path) -> TestCommand {
    let mut cmd = td.command(copy);
    cmd.arg("--root").arg(td.root());
    cmd
}

fn digest(path: &Path) -> Vec<u8> {
    // Byte-for-byte comparison is as good as a hash here.
    fs::read(path).unwrap()
}

fn wait_for_file(path: &Path, timeout: Duration) -> String {
    let start = Instant::now();
    loop {
        if let Ok(s) = fs::read_to_string(path) {
            if s.ends_with('\n') {
                return s;
            }
        }
        if start.elapsed() > timeout {
            panic!("{} did not appear within {timeout:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn start_container_hook_cannot_overwrite_the_runtime() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("sec-5736-hook");
    let copy = runtime_copy(&td);
    let before = digest(&copy);
    let hook = json!({
        "path": "/bin/sh",
        "args": ["sh", "-c",
                 "readlink /proc/1/exe > /exe-link; exec 3</proc/1/exe; \
                  (sleep 1; echo PWNED > /proc/self/fd/3; echo rc=$? > /result) \
                  >/dev/null 2>&1 &"]
    });
    let bundle = td
        .bundle()
        .set("/root/readonly", json!(false))
        .set("/hooks/startContainer", json!([hook]))
        .args(&["sleep", "1000"])
        .write();
    let id = container_id();
    let _g = td.guard(&id);
    copy_cmd(&td, &copy)
        .args(["run", "--detach", "--bundle"])
        .arg(bundle.path())
        .arg(&id)
        .assert_success();
    // `run --detach` has returned, so no runtime process is left, and the write (a
    // second after the hook) has not happened yet.
    let result_path = bundle.rootfs().join("result");
    assert!(
        !result_path.exists(),
        "the write came before the runtime exited"
    );
    let result = wait_for_file(&result_path, SETTLE);
    assert_ne!(
        result.trim(),
        "rc=0",
        "the write through /proc/1/exe succeeded"
    );
    let link = fs::read_to_string(bundle.rootfs().join("exe-link")).unwrap();
    assert_sealed_exe(link.trim_end(), &copy);
    assert!(
        digest(&copy) == before,
        "the runtime binary on the host changed"
    );
}

/// What `/proc/PID/exe` of a runtime process inside a container may name:
/// the sealed memfd copy, or the runtime's file on its private read-only
/// overlay (where the link reads as `/<file name>`), never the host's path.
fn assert_sealed_exe(link: &str, copy: &std::path::Path) {
    let name = copy.file_name().unwrap().to_string_lossy();
    assert_ne!(
        link,
        copy.to_string_lossy(),
        "the container reached the host's runtime binary"
    );
    assert!(
        link == "/memfd:plinth-sealed (deleted)" || link == format!("/{name}"),
        "unexpected exe of the runtime process: {link}"
    );
}

/// Runs in the container: watches /proc for a process whose exe is the runtime (an
/// `exec` on its way in), keeps that exe open, waits until the runtime has exited, then
/// tries to write through the descriptor. Reports to /watch.out.
const WATCH_C: &str = r#"
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(void) {
    char link[512], path[64];
    int fd = -1, pid = 0;
    for (int round = 0; round < 200000 && fd < 0; round++) {
        DIR *d = opendir("/proc");
        struct dirent *e;
        while (d && (e = readdir(d)) && fd < 0) {
            int p = atoi(e->d_name);
            if (p <= 1 || p == getpid()) continue;
            snprintf(path, sizeof path, "/proc/%d/exe", p);
            ssize_t n = readlink(path, link, sizeof link - 1);
            if (n <= 0) continue;
            link[n] = 0;
            if (strstr(link, "plinth") || strstr(link, "memfd")) {
                fd = open(path, O_RDONLY);
                if (fd >= 0) pid = p;
            }
        }
        if (d) closedir(d);
        usleep(200);
    }
    FILE *out = fopen("/watch.out.tmp", "w");
    if (fd < 0) { fprintf(out, "found nothing\n"); fclose(out); rename("/watch.out.tmp", "/watch.out"); return 0; }
    fprintf(out, "exe %s\n", link);
    while (kill(pid, 0) == 0) usleep(1000);
    sleep(1);
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int w = open(path, O_WRONLY | O_TRUNC);
    fprintf(out, "open-trunc %d %d\n", w, w < 0 ? errno : 0);
    w = open(path, O_WRONLY);
    int err = errno;
    ssize_t n = w >= 0 ? write(w, "PWNED", 5) : -1;
    fprintf(out, "open %d %d write %zd %d\n", w, w < 0 ? err : 0, n, n < 0 ? errno : 0);
    fclose(out);
    rename("/watch.out.tmp", "/watch.out");
    pause();
    return 0;
}
"#;

#[test]
fn exec_cannot_overwrite_the_runtime_even_through_a_shebang() {
    if !require_container_host() || !require_cc() {
        return;
    }
    let td = TestDir::new("sec-5736-exec");
    let copy = runtime_copy(&td);
    let before = digest(&copy);
    let bundle = td
        .bundle()
        .set("/root/readonly", json!(false))
        .args(&["/watch"])
        .write();
    compile_static(&td, WATCH_C, &bundle.rootfs().join("watch"));
    // The #!/proc/self/exe variant: exec'ing this runs the runtime itself in the
    // container.
    let evil = bundle.rootfs().join("bin/evil");
    fs::write(&evil, "#!/proc/self/exe\n").unwrap();
    fs::set_permissions(&evil, fs::Permissions::from_mode(0o755)).unwrap();
    let id = container_id();
    let _g = td.guard(&id);
    copy_cmd(&td, &copy)
        .args(["run", "--detach", "--bundle"])
        .arg(bundle.path())
        .arg(&id)
        .assert_success();
    let report = bundle.rootfs().join("watch.out");
    let start = Instant::now();
    while !report.exists() && start.elapsed() < SETTLE {
        // Whatever it prints, the exec'd runtime must not have done harm.
        let _ = copy_cmd(&td, &copy)
            .args(["exec", &id, "/bin/evil"])
            .output();
        let _ = copy_cmd(&td, &copy).args(["exec", &id, "true"]).output();
    }
    let text = wait_for_file(&report, SETTLE);
    let lines: Vec<&str> = text.lines().collect();
    let exe = lines[0].strip_prefix("exe ").unwrap_or(lines[0]);
    assert_sealed_exe(exe, &copy);
    let fields = |l: &str| l.split_whitespace().map(String::from).collect::<Vec<_>>();
    let trunc = fields(lines[1]);
    assert_eq!(
        trunc[1], "-1",
        "O_TRUNC open of the runtime succeeded\n{text}"
    );
    let w = fields(lines[2]);
    assert!(
        w[1] == "-1" || w[4] == "-1",
        "writing to the runtime's exe succeeded\n{text}"
    );
    assert!(
        digest(&copy) == before,
        "the runtime binary on the host changed"
    );
}

// ---------------------------------------------------------------------------------------
// CVE-2024-21626: descriptors of the runtime leaking into the container
// ---------------------------------------------------------------------------------------

/// Checks what a run with a cwd through `/proc/self/fd/N` did: either refused with one
/// line naming the cwd, or ran inside the container's root.
fn assert_cwd_stays_inside(out: &common::CmdOutput, what: &str) {
    if out.status.success() {
        let lines = out.stdout_lines();
        assert!(lines[0].starts_with('/'), "{what}: pwd {}\n{out}", lines[0]);
        for host_only in ["boot", "lib", "work"] {
            assert!(
                !lines.contains(&host_only),
                "{what}: `ls ..` shows the host's {host_only}\n{out}"
            );
        }
        assert!(lines.contains(&"bin"), "{what}\n{out}");
    } else {
        assert_eq!(out.stderr.trim_end().lines().count(), 1, "{what}\n{out}");
        assert!(
            out.stderr.contains("cwd") && out.stdout.is_empty(),
            "{what}: the error names the cwd, the program never ran\n{out}"
        );
    }
}

#[test]
fn process_cwd_through_a_leaked_fd_is_refused() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("sec-21626-cwd");
    for n in 3..10 {
        let bundle = td
            .bundle()
            .set("/process/cwd", json!(format!("/proc/self/fd/{n}")))
            .args(&["sh", "-c", "pwd; ls -a .."])
            .write();
        let out = run_bundle(&td, &bundle);
        assert_cwd_stays_inside(&out, &format!("process.cwd /proc/self/fd/{n}"));
    }
}

#[test]
fn exec_cwd_through_a_leaked_fd_is_refused() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("sec-21626-exec");
    let bundle = td.bundle().args(&["sleep", "1000"]).write();
    let c = common::run_detached(&td, &bundle);
    for n in 3..10 {
        let out = td
            .plinth()
            .args(["exec", "--cwd", &format!("/proc/self/fd/{n}"), &c.id])
            .args(["sh", "-c", "pwd; ls -a .."])
            .output();
        assert_cwd_stays_inside(&out, &format!("exec --cwd /proc/self/fd/{n}"));
    }
}

#[test]
fn only_stdio_and_preserved_fds_reach_the_container() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("sec-21626-fds");
    // Simple commands, not last (busybox sh execs the last one, which would list its
    // own directory fd), and no pipeline (the shell holds the pipe while setting it up).
    let bundle = td
        .bundle()
        .args(&["sh", "-c", "ls /proc/1/fd; true"])
        .write();
    let out = run_ok(&td, &bundle);
    assert_eq!(fd_list(&out.stdout), [0, 1, 2], "{out}");

    // exec'd processes too.
    let sleeper = td.bundle().args(&["sleep", "1000"]).write();
    let c = common::run_detached(&td, &sleeper);
    let out = td
        .plinth()
        .args(["exec", &c.id, "sh", "-c", "ls /proc/$$/fd; true"])
        .assert_success();
    assert_eq!(fd_list(&out.stdout), [0, 1, 2], "{out}");

    // --preserve-fds 1 hands fd 3 through, and nothing past it.
    let passed = td.path().join("passed.txt");
    fs::write(&passed, "passed-through\n").unwrap();
    let bundle = td
        .bundle()
        .args(&["sh", "-c", "cat <&3; ls /proc/1/fd; true"])
        .write();
    let id = container_id();
    let _g = td.guard(&id);
    let out = td
        .plinth()
        .pass_fd(fs::File::open(&passed).unwrap().into(), 3)
        .args(["run", "--preserve-fds", "1", "--bundle"])
        .arg(bundle.path())
        .arg(&id)
        .assert_success();
    let (first, rest) = out.stdout.split_once('\n').unwrap();
    assert_eq!(first, "passed-through", "{out}");
    assert_eq!(fd_list(rest), [0, 1, 2, 3], "{out}");
}

/// The numbers `ls /proc/PID/fd` printed, sorted.
fn fd_list(text: &str) -> Vec<u32> {
    let mut fds: Vec<u32> = text
        .split_whitespace()
        .map(|f| f.parse().unwrap_or_else(|_| panic!("not an fd: {f}")))
        .collect();
    fds.sort_unstable();
    fds
}

// ---------------------------------------------------------------------------------------
// CVE-2021-30465: symlinks in mount destinations
// ---------------------------------------------------------------------------------------

#[test]
fn symlinked_mount_destinations_stay_in_the_rootfs() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("sec-30465");
    let host_dir = td.path().join("host-target");
    fs::create_dir(&host_dir).unwrap();
    fs::write(host_dir.join("host-file"), "host\n").unwrap();
    let host_dir2 = td.path().join("host-target-2");
    fs::create_dir(&host_dir2).unwrap();
    fs::write(host_dir2.join("host-file"), "host\n").unwrap();
    let bind_src = td.path().join("bind-src");
    fs::create_dir(&bind_src).unwrap();
    fs::write(bind_src.join("from-bind"), "bind\n").unwrap();
    let rel: String = "../".repeat(12) + host_dir2.strip_prefix("/").unwrap().to_str().unwrap();
    let bundle = td
        .bundle()
        .set("/root/readonly", json!(false))
        .set(
            "/mounts/-",
            json!({"destination": "/abs-link/sub", "type": "tmpfs", "source": "tmpfs"}),
        )
        .set(
            "/mounts/-",
            json!({"destination": "/rel-link", "type": "bind", "source": bind_src, "options": ["rbind"]}),
        )
        .args(&[
            "sh",
            "-c",
            "touch /abs-link/sub/written; ls /abs-link; echo ---; ls /rel-link; echo ---; \
             awk '{print $5}' /proc/self/mountinfo",
        ])
        .write();
    symlink(&host_dir, bundle.rootfs().join("abs-link")).unwrap();
    symlink(&rel, bundle.rootfs().join("rel-link")).unwrap();
    let out = run_ok(&td, &bundle);
    // The host directories are untouched: no new entry, no mount.
    for dir in [&host_dir, &host_dir2] {
        let entries: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(entries, ["host-file"], "{} changed\n{out}", dir.display());
    }
    let parts: Vec<&str> = out.stdout.split("---\n").collect();
    // Inside, the symlinks resolve within the rootfs: the host file is not there.
    assert_eq!(parts[0].lines().collect::<Vec<_>>(), ["sub"], "{out}");
    assert_eq!(parts[1].lines().collect::<Vec<_>>(), ["from-bind"], "{out}");
    let host_path = host_dir.to_str().unwrap();
    let mps: Vec<&str> = parts[2].lines().collect();
    assert!(mps.contains(&format!("{host_path}/sub").as_str()), "{out}");
    assert!(mps.contains(&host_dir2.to_str().unwrap()), "{out}");
    // Both mounts were made under the rootfs, at the in-root resolution of the links.
    let in_root = bundle.rootfs().join(host_dir.strip_prefix("/").unwrap());
    assert!(in_root.join("sub").is_dir(), "{}", in_root.display());
    let in_root2 = bundle.rootfs().join(host_dir2.strip_prefix("/").unwrap());
    assert!(in_root2.is_dir(), "{}", in_root2.display());
}

// ---------------------------------------------------------------------------------------
// CVE-2025-31133 / CVE-2025-52565: a symlinked /dev/null or /dev/console
// ---------------------------------------------------------------------------------------

/// A bundle whose `/dev` is the image's own directory (no tmpfs over it), so that what
/// the image put there is what the runtime finds.
fn image_dev_bundle(td: &TestDir) -> BusyboxBundle {
    let mut b = td.bundle().set("/root/readonly", json!(false));
    let mounts = b.config_mut()["mounts"].as_array_mut().unwrap();
    mounts.retain(|m| m["destination"] != "/dev");
    b
}

#[test]
fn a_symlinked_dev_null_is_never_bound_over_masked_paths() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("sec-31133");
    let core_pattern = fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let host_file = td.path().join("host-sensitive");
    fs::write(&host_file, "sensitive\n").unwrap();
    let targets = [
        PathBuf::from("/proc/sys/kernel/core_pattern"),
        host_file.clone(),
    ];
    for target in targets {
        let bundle = image_dev_bundle(&td)
            .args(&[
                "sh",
                "-c",
                "stat -c '%F %t:%T' /proc/keys /proc/timer_list; cat /proc/keys | wc -c; \
                 (echo '|/tmp/pwned' > /proc/keys) 2>/dev/null; \
                 (echo '|/tmp/pwned' > /proc/timer_list) 2>/dev/null; \
                 stat -c '%F %t:%T' /dev/null",
            ])
            .write();
        let dev = bundle.rootfs().join("dev");
        symlink(&target, dev.join("null")).unwrap();
        let out = run_bundle(&td, &bundle);
        assert_eq!(
            fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
            core_pattern,
            "core_pattern changed (dev/null -> {})\n{out}",
            target.display()
        );
        assert_eq!(fs::read_to_string(&host_file).unwrap(), "sensitive\n");
        if out.status.success() {
            let lines = out.stdout_lines();
            assert_eq!(
                lines[..2],
                ["character special file 1:3", "character special file 1:3"],
                "masked with something other than the null device ({})\n{out}",
                target.display()
            );
            assert_eq!(lines[2].trim(), "0", "{out}");
            assert_eq!(lines[3], "character special file 1:3", "{out}");
        } else {
            assert_eq!(out.stderr.trim_end().lines().count(), 1, "{out}");
            assert!(out.stderr.contains("/dev/null"), "{out}");
        }
    }
}

#[test]
fn a_symlinked_dev_console_does_not_redirect_the_console_bind() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("sec-52565");
    let host_file = td.path().join("host-console-target");
    fs::write(&host_file, "untouched\n").unwrap();
    let core_pattern = fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    for target in [
        PathBuf::from("/proc/sys/kernel/core_pattern"),
        host_file.clone(),
    ] {
        let sock = td.fresh("console").with_extension("sock");
        let receiver = common::FdReceiver::bind(sock.clone());
        let bundle = image_dev_bundle(&td)
            .set("/process/terminal", json!(true))
            .args(&[
                "sh",
                "-c",
                "awk '{print $5}' /proc/self/mountinfo > /mounts.txt; sleep 1000",
            ])
            .write();
        symlink(&target, bundle.rootfs().join("dev/console")).unwrap();
        let id = container_id();
        let _g = td.guard(&id);
        let out = td
            .plinth()
            .args(["run", "--detach", "--console-socket"])
            .arg(&sock)
            .arg("--bundle")
            .arg(bundle.path())
            .arg(&id)
            .output();
        if out.status.success() {
            let _master = receiver.wait(SETTLE);
            let mounts = wait_for_file(&bundle.rootfs().join("mounts.txt"), SETTLE);
            assert!(
                mounts.lines().any(|l| l == "/dev/console"),
                "the pty is bound on /dev/console itself\n{mounts}"
            );
            let inside_target = target.to_str().unwrap();
            assert!(
                !mounts.lines().any(|l| l == inside_target),
                "the pty was bound over the symlink's target {inside_target}\n{mounts}"
            );
        } else {
            assert_eq!(out.stderr.trim_end().lines().count(), 1, "{out}");
            assert!(out.stderr.contains("/dev/console"), "{out}");
        }
        assert_eq!(
            fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
            core_pattern
        );
        assert_eq!(fs::read_to_string(&host_file).unwrap(), "untouched\n");
    }
}

// ---------------------------------------------------------------------------------------
// The default seccomp profile: ENOSYS, never EPERM, for what it does not know
// ---------------------------------------------------------------------------------------

const ENOSYS_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
struct clone_args_v0 { uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls; };
int main(void) {
    long nrs[] = {1000, 999, 600, 512 + 547};
    for (unsigned i = 0; i < sizeof nrs / sizeof nrs[0]; i++) {
        errno = 0;
        long r = syscall(nrs[i], 0, 0, 0, 0, 0, 0);
        printf("nr%ld %ld %d\n", nrs[i], r, errno);
    }
    struct clone_args_v0 a;
    memset(&a, 0, sizeof a);
    a.exit_signal = 17;
    errno = 0;
    long r = syscall(435, &a, sizeof a);
    if (r == 0) _exit(0);
    printf("clone3 %ld %d\n", r, errno);
    a.flags = CLONE_NEWUSER;
    errno = 0;
    r = syscall(435, &a, sizeof a);
    if (r == 0) _exit(0);
    printf("clone3-newuser %ld %d\n", r, errno);
    return 0;
}
"#;

#[test]
fn default_profile_answers_enosys_not_eperm() {
    if !require_container_host() || !require_cc() {
        return;
    }
    let td = TestDir::new("sec-enosys");
    let mut bundle = td.bundle().write();
    let dir = td.fresh("spec");
    fs::create_dir_all(&dir).unwrap();
    td.plinth()
        .args(["spec", "--bundle"])
        .arg(&dir)
        .assert_success();
    let mut spec: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    spec["root"]["path"] = json!("rootfs");
    spec["process"]["terminal"] = json!(false);
    spec["process"]["args"] = json!(["/enosys"]);
    compile_static(&td, ENOSYS_C, &bundle.rootfs().join("enosys"));
    bundle.config = spec;
    bundle.write_config();
    let out = run_ok(&td, &bundle);
    let lines = out.stdout_lines();
    assert_eq!(lines.len(), 6, "{out}");
    for l in lines {
        let f: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(
            f[1..],
            ["-1", "38"],
            "{} must fail with ENOSYS\n{out}",
            f[0]
        );
    }
}
