//! config.json's `linux.seccomp` and `hooks`, checked from inside the container and from
//! the files the hooks write: errno actions, argument conditions, the default action, the
//! kill action, the notify listener, `plinth spec`'s own profile, and the six hook kinds
//! with their order, their state on stdin, their failure and their timeout.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    assert_unchanged, compile_static, container_id, readlink, require_cc, require_container_host,
    run_bundle, run_detached, run_ok, Bundle, BusyboxBundle, FdReceiver, HostSnapshot, TestDir,
    SETTLE,
};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------
// Seccomp
// ---------------------------------------------------------------------------------------

/// A bundle whose root is writable, so that a refused syscall is seccomp's doing.
fn writable(td: &TestDir) -> BusyboxBundle {
    td.bundle().set("/root/readonly", json!(false))
}

#[test]
fn seccomp_errno_action_with_errno_ret() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("sc-errno");
    let bundle = writable(&td)
        .set(
            "/linux/seccomp",
            json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                              "errnoRet": 18}]
            }),
        )
        .args(&[
            "sh",
            "-c",
            "mkdir /tmp/d 2>&1; echo rc=$?; touch /tmp/f && echo touch-ok",
        ])
        .write();
    let out = run_ok(&td, &bundle);
    let lines = out.stdout_lines();
    assert!(
        lines[0].contains("Invalid cross-device link"),
        "mkdir gets EXDEV (18)\n{out}"
    );
    assert_eq!(&lines[1..], ["rc=1", "touch-ok"], "{out}");
}

#[test]
fn seccomp_argument_conditions() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("sc-args");
    // chmod(path, mode) and fchmodat(dirfd, path, mode, flags): refuse mode 0700 only.
    let bundle = writable(&td)
        .set(
            "/linux/seccomp",
            json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                     "args": [{"index": 1, "value": 0o700, "op": "SCMP_CMP_EQ"}]},
                    {"names": ["fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                     "args": [{"index": 2, "value": 0o700, "op": "SCMP_CMP_EQ"}]}
                ]
            }),
        )
        .args(&[
            "sh",
            "-c",
            "touch /tmp/f; chmod 755 /tmp/f; echo rc=$?; chmod 700 /tmp/f 2>&1; echo rc=$?; \
             stat -c %a /tmp/f",
        ])
        .write();
    let out = run_ok(&td, &bundle);
    let lines = out.stdout_lines();
    assert_eq!(lines[0], "rc=0", "{out}");
    assert!(lines[1].contains("Operation not permitted"), "{out}");
    assert_eq!(&lines[2..], ["rc=1", "755"], "{out}");
}

/// The profile `plinth spec` writes.
fn spec_profile(td: &TestDir) -> Value {
    let dir = td.fresh("spec");
    fs::create_dir_all(&dir).unwrap();
    td.plinth()
        .args(["spec", "--bundle"])
        .arg(&dir)
        .assert_success();
    serde_json::from_str(&fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

#[test]
fn seccomp_default_action_applies_to_unlisted_syscalls() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("sc-default");
    // The default profile, without mkdir/mkdirat in its allow lists, and EXDEV as the
    // default errno: mkdir now meets the default action.
    let mut seccomp = spec_profile(&td)["linux"]["seccomp"].clone();
    let mut removed = 0;
    for rule in seccomp["syscalls"].as_array_mut().unwrap() {
        if let Some(names) = rule["names"].as_array_mut() {
            let before = names.len();
            names.retain(|n| n != "mkdir" && n != "mkdirat");
            removed += before - names.len();
        }
    }
    assert!(removed >= 2, "the default profile allows mkdir and mkdirat");
    seccomp["defaultErrnoRet"] = json!(18);
    let bundle = writable(&td)
        .set("/linux/seccomp", seccomp)
        .args(&[
            "sh",
            "-c",
            "mkdir /tmp/d 2>&1; echo rc=$?; touch /tmp/f && echo touch-ok",
        ])
        .write();
    let out = run_ok(&td, &bundle);
    let lines = out.stdout_lines();
    assert!(lines[0].contains("Invalid cross-device link"), "{out}");
    assert_eq!(&lines[1..], ["rc=1", "touch-ok"], "{out}");
}

#[test]
fn seccomp_kill_action_kills() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("sc-kill");
    let bundle = writable(&td)
        .set(
            "/linux/seccomp",
            json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL"}]
            }),
        )
        .args(&["mkdir", "/tmp/d"])
        .write();
    let out = run_bundle(&td, &bundle);
    // SCMP_ACT_KILL kills the thread with SIGSYS (31): run exits 128 + 31.
    assert_eq!(out.code(), Some(128 + 31), "{out}");
    assert!(!bundle.rootfs().join("tmp/d").exists());
}

#[test]
fn seccomp_listener_gets_the_process_state_and_the_fd() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("sc-listener");
    let sock = td.path().join("agent.sock");
    let receiver = FdReceiver::bind(sock.clone());
    let bundle = writable(&td)
        .set(
            "/linux/seccomp",
            json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "listenerPath": sock,
                "listenerMetadata": "agent-metadata",
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
            }),
        )
        .args(&["sleep", "1000"])
        .write();
    let c = run_detached(&td, &bundle);
    let got = receiver.wait(SETTLE);
    let ps: Value = serde_json::from_slice(&got.data)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&got.data)));
    assert_eq!(ps["fds"], json!(["seccompFd"]), "{ps}");
    assert_eq!(ps["pid"], json!(c.pid), "{ps}");
    assert_eq!(ps["metadata"], "agent-metadata", "{ps}");
    assert!(ps["ociVersion"].as_str().is_some(), "{ps}");
    let st = &ps["state"];
    assert_eq!(st["id"], c.id.as_str(), "{ps}");
    assert_eq!(st["pid"], json!(c.pid), "{ps}");
    assert_eq!(st["bundle"], bundle.path().to_str().unwrap(), "{ps}");
    assert!(st["status"].as_str().is_some(), "{ps}");
    assert_eq!(got.fds.len(), 1, "one fd: {got:?}");
    let link = readlink(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&got.fds[0])
    ));
    assert_eq!(link, "anon_inode:seccomp notify");
}

const PROBE_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
int main(void) {
    long r;
    errno = 0; r = syscall(1000, 0, 0, 0);
    printf("unknown %ld %d\n", r, errno);
    errno = 0; r = syscall(SYS_clone3, NULL, 0);
    printf("clone3 %ld %d\n", r, errno);
    errno = 0; r = mount("none", "/tmp", "tmpfs", 0, NULL);
    printf("mount %ld %d\n", r, errno);
    return 0;
}
"#;

/// The bundle `plinth spec` writes, with the busybox rootfs, no terminal, and the
/// syscall probe as its process.
pub fn spec_bundle_with_probe(td: &TestDir) -> Bundle {
    let mut bundle = td.bundle().write();
    let mut spec = spec_profile(td);
    spec["root"]["path"] = json!("rootfs");
    spec["process"]["terminal"] = json!(false);
    spec["process"]["args"] = json!(["/probe"]);
    compile_static(td, PROBE_C, &bundle.rootfs().join("probe"));
    bundle.config = spec;
    bundle.write_config();
    bundle
}

#[test]
fn spec_profile_gives_enosys_for_unknown_syscalls_and_clone3() {
    if !require_container_host() || !require_cc() {
        return;
    }
    let td = TestDir::new("sc-spec");
    let bundle = spec_bundle_with_probe(&td);
    assert!(bundle.config["linux"]["seccomp"].is_object());
    let out = run_ok(&td, &bundle);
    assert_eq!(
        out.stdout_lines(),
        ["unknown -1 38", "clone3 -1 38", "mount -1 1"],
        "ENOSYS (38) for unknown syscalls and clone3, EPERM (1) for mount\n{out}"
    );
}

// ---------------------------------------------------------------------------------------
// Hooks
// ---------------------------------------------------------------------------------------

const HOOK_KINDS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// A hook that saves its stdin to `<dir>/<name>.json` and appends `name` to
/// `<dir>/order`; `dir` is as the hook sees it.
fn recording_hook(name: &str, dir: &str) -> Value {
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("cat > {dir}/{name}.json; echo {name} >> {dir}/order")],
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
    })
}

fn read_order(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join("order"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn all_six_hooks_run_in_order_with_the_state() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("hooks");
    let log = td.path().join("hooklog");
    fs::create_dir(&log).unwrap();
    let host = log.to_str().unwrap();
    let mut b = td
        .bundle()
        .set(
            "/mounts/-",
            json!({"destination": "/hooklog", "type": "bind", "source": log, "options": ["rbind"]}),
        )
        .args(&["sleep", "1000"]);
    for kind in HOOK_KINDS {
        // startContainer runs inside the container, after pivot_root.
        let dir = if kind == "startContainer" {
            "/hooklog"
        } else {
            host
        };
        let mut hook = recording_hook(kind, dir);
        if kind == "startContainer" {
            let script = format!("sleep 0.5; {}", hook["args"][2].as_str().unwrap());
            hook["args"][2] = json!(script);
        }
        b = b.set(&format!("/hooks/{kind}"), json!([hook]));
    }
    let bundle = b.write();
    let id = container_id();
    let _g = td.guard(&id);
    td.plinth()
        .args(["create", "--bundle"])
        .arg(bundle.path())
        .arg(&id)
        .assert_success();
    assert_eq!(
        read_order(&log),
        ["prestart", "createRuntime", "createContainer"],
        "after create"
    );
    let pid = td.state(&id)["pid"].as_u64().unwrap();
    td.plinth().args(["start", &id]).assert_success();
    td.wait_for_status(&id, "running", SETTLE);
    // startContainer runs in the container's init just before its exec: wait for it.
    let start = Instant::now();
    while read_order(&log).len() < 5 && start.elapsed() < SETTLE {
        std::thread::sleep(Duration::from_millis(20));
    }
    td.plinth().args(["kill", &id, "KILL"]).assert_success();
    td.wait_for_status(&id, "stopped", SETTLE);
    td.plinth().args(["delete", &id]).assert_success();
    // poststart runs after the user's process was executed, so after startContainer
    // (which is slow on purpose).
    assert_eq!(read_order(&log), HOOK_KINDS, "hook order");
    for (kind, status) in [
        ("prestart", "creating"),
        ("createRuntime", "creating"),
        ("createContainer", "creating"),
        ("startContainer", "created"),
        ("poststart", "running"),
        ("poststop", "stopped"),
    ] {
        let text = fs::read_to_string(log.join(format!("{kind}.json"))).unwrap();
        let st: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{kind}: {e}: {text}"));
        assert_eq!(st["id"], id.as_str(), "{kind}: {st}");
        assert_eq!(st["status"], status, "{kind}: {st}");
        if kind == "poststop" {
            // The spec requires the pid only while created or running.
            assert!(matches!(st["pid"].as_u64(), None | Some(0)), "{kind}: {st}");
        } else {
            assert_eq!(st["pid"], json!(pid), "{kind}: {st}");
        }
        assert_eq!(
            st["bundle"],
            bundle.path().to_str().unwrap(),
            "{kind}: {st}"
        );
        assert!(st["ociVersion"].as_str().is_some(), "{kind}: {st}");
    }
}

#[test]
fn a_failing_create_runtime_hook_fails_create_and_leaves_nothing() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::exclusive("hooks-fail");
    let marker = td.path().join("ran");
    let bundle = td
        .bundle()
        .args(&["true"])
        .set(
            "/hooks/createRuntime",
            json!([{"path": "/bin/sh", "args": ["sh", "-c", "exit 7"]}]),
        )
        .set(
            "/hooks/createContainer",
            json!([{"path": "/bin/touch", "args": ["touch", marker]}]),
        )
        .write();
    let id = container_id();
    let _g = td.guard(&id);
    let before = HostSnapshot::capture(td.root(), &id);
    let out = td
        .plinth()
        .args(["create", "--bundle"])
        .arg(bundle.path())
        .arg(&id)
        .assert_failure();
    assert_unchanged(&before, &HostSnapshot::capture(td.root(), &id));
    assert_eq!(out.stderr.trim_end().lines().count(), 1, "one line\n{out}");
    assert!(
        out.stderr.contains("createRuntime") && out.stderr.contains('7'),
        "the error names the hook and its status\n{out}"
    );
    assert!(
        !marker.exists(),
        "createContainer ran after a failed createRuntime"
    );
}

#[test]
fn a_hook_past_its_timeout_is_killed_and_reported() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::exclusive("hooks-timeout");
    let pidfile = td.path().join("hook.pid");
    let bundle = td
        .bundle()
        .args(&["true"])
        .set(
            "/hooks/prestart",
            json!([{"path": "/bin/sh",
                    "args": ["sh", "-c", format!("echo $$ > {}; exec sleep 60", pidfile.display())],
                    "timeout": 1}]),
        )
        .write();
    let id = container_id();
    let _g = td.guard(&id);
    let before = HostSnapshot::capture(td.root(), &id);
    let start = Instant::now();
    let out = td
        .plinth()
        .args(["create", "--bundle"])
        .arg(bundle.path())
        .arg(&id)
        .assert_failure();
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "create took {took:?}\n{out}"
    );
    assert!(
        out.stderr.contains("prestart") && out.stderr.contains("timed out"),
        "{out}"
    );
    assert_unchanged(&before, &HostSnapshot::capture(td.root(), &id));
    let pid = fs::read_to_string(&pidfile).expect("the hook ran");
    let alive = fs::read_to_string(format!("/proc/{}/cmdline", pid.trim()))
        .map(|c| c.starts_with("sleep"))
        .unwrap_or(false);
    assert!(!alive, "the hook (pid {}) still runs", pid.trim());
}

#[test]
fn a_filter_that_denies_the_inits_own_calls_is_an_error_not_a_crash() {
    if !require_container_host() {
        return;
    }
    // Without no_new_privs the filter is loaded before the init switches user and
    // sets the umask: a profile denying umask must give a clear error.
    let td = TestDir::new("sc-umask");
    let bundle = writable(&td)
        .set("/process/noNewPrivileges", json!(false))
        .set(
            "/linux/seccomp",
            json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": ["umask"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
            }),
        )
        .args(&["true"])
        .write();
    let out = td
        .plinth()
        .args(["run", "--bundle"])
        .arg(bundle.path())
        .arg(common::container_id())
        .assert_failure();
    assert!(out.stderr.contains("umask"), "{out}");
    assert!(
        out.stderr.contains("Function not implemented") || out.stderr.contains("ENOSYS"),
        "{out}"
    );
    assert!(!out.stderr.contains("panicked"), "{out}");
    assert_ne!(out.code(), Some(139), "{out}");
}
