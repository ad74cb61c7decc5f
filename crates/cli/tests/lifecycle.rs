//! The OCI command line of `plinth`, driven the way runc's users drive it: `run`,
//! `create`/`start`/`state`/`kill`/`delete`, `list`, `ps`, `pause`/`resume`, `exec`,
//! `events`, `update`, `spec` and `features`, each against a busybox bundle built at test
//! time. Every container is force-deleted by a guard, even when the test fails.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::{container_id, host_cgroup_file, require_container_host, TestDir};
use serde_json::{json, Value};

/// How long a container may take to reach a state after a signal.
const SETTLE: Duration = Duration::from_secs(10);

/// `run --detach` a busybox container running `args`; returns its id and guard.
fn run_detached(td: &TestDir, args: &[&str]) -> (String, common::ContainerGuard) {
    let bundle = td.bundle().args(args).write();
    start_detached(td, &bundle)
}

fn start_detached(td: &TestDir, bundle: &common::Bundle) -> (String, common::ContainerGuard) {
    let id = container_id();
    let guard = td.guard(&id);
    td.plinth()
        .arg("run")
        .arg("--detach")
        .arg("--bundle")
        .arg(bundle.path())
        .arg(&id)
        .assert_success();
    td.wait_for_status(&id, "running", SETTLE);
    (id, guard)
}

fn pid_of(state: &Value) -> u32 {
    let pid = state["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("state has no pid: {state}"));
    assert!(pid > 0, "state pid is 0: {state}");
    pid as u32
}

/// Whether the cgroup of `pid` is frozen: v1 `freezer.state`, else v2 `cgroup.freeze`.
fn is_frozen(pid: u32) -> bool {
    let v1 = host_cgroup_file(pid, "freezer", "freezer.state");
    if let Ok(state) = fs::read_to_string(&v1) {
        return state.trim() == "FROZEN";
    }
    let v2 = host_cgroup_file(pid, "freezer", "cgroup.freeze");
    fs::read_to_string(&v2)
        .unwrap_or_else(|e| panic!("read {} or {}: {e}", v1.display(), v2.display()))
        .trim()
        == "1"
}

fn assert_gone(td: &TestDir, id: &str) {
    let out = td.plinth().args(["state", id]).assert_failure();
    let err = out.stderr.to_lowercase();
    assert!(
        err.contains("not exist") || err.contains("not found") || err.contains("no such"),
        "state of a deleted container should say it does not exist\n{out}"
    );
    assert!(
        !td.root().join(id).exists(),
        "state directory of {id} left under --root"
    );
}

#[test]
fn run_prints_from_inside_the_container() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("run-echo");
    let bundle = td
        .bundle()
        .hostname("inside-plinth")
        .args(&["sh", "-c", "echo hello-from-plinth; hostname"])
        .write();
    let id = container_id();
    let _guard = td.guard(&id);
    let out = td
        .plinth()
        .args(["run", "--bundle"])
        .arg(bundle.path())
        .arg(&id)
        .assert_success();
    assert_eq!(
        out.stdout_lines(),
        ["hello-from-plinth", "inside-plinth"],
        "{out}"
    );
    // A foreground run deletes the container when its process exits.
    assert_gone(&td, &id);
}

#[test]
fn run_accepts_older_spec_versions() {
    // podman 4.3 writes "1.0.2-dev", runc 1.1's `spec` too.
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("run-version");
    for version in ["1.0.2-dev", "1.0.0", "1.1.0"] {
        let bundle = td
            .bundle()
            .set("/ociVersion", json!(version))
            .args(&["echo", version])
            .write();
        let id = container_id();
        let _guard = td.guard(&id);
        let out = td
            .plinth()
            .args(["run", "--bundle"])
            .arg(bundle.path())
            .arg(&id)
            .assert_success();
        assert_eq!(out.stdout_trimmed(), version, "{out}");
    }
}

#[test]
fn run_exit_status_propagates() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("run-exit");
    for (script, want) in [("exit 3", 3), ("true", 0), ("exit 255", 255)] {
        let bundle = td.bundle().args(&["sh", "-c", script]).write();
        let id = container_id();
        let _guard = td.guard(&id);
        td.plinth()
            .args(["run", "-b"])
            .arg(bundle.path())
            .arg(&id)
            .assert_exit_code(want);
    }
}

#[test]
fn create_start_state_kill_delete() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("lifecycle");
    let bundle = td.bundle().args(&["sleep", "1000"]).write();
    let id = container_id();
    let _guard = td.guard(&id);
    let pid_file = td.path().join("container.pid");

    td.plinth()
        .args(["create", "--bundle"])
        .arg(bundle.path())
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&id)
        .assert_success();
    let state = td.state(&id);
    assert_eq!(state["status"], "created", "{state}");
    assert_eq!(state["id"], id.as_str(), "{state}");
    assert_eq!(
        state["bundle"],
        bundle.path().to_str().unwrap(),
        "state.bundle is the absolute bundle path: {state}"
    );
    assert!(
        state["ociVersion"].as_str().is_some(),
        "state has no ociVersion: {state}"
    );
    let pid = pid_of(&state);
    let from_file = fs::read_to_string(&pid_file).expect("pid file written by create");
    assert_eq!(from_file.trim(), pid.to_string(), "pid file vs state");
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "created container's init {pid} is not alive"
    );

    td.plinth().args(["start", &id]).assert_success();
    let state = td.wait_for_status(&id, "running", SETTLE);
    assert_eq!(pid_of(&state), pid, "pid changed on start");

    td.plinth().args(["kill", &id, "KILL"]).assert_success();
    td.wait_for_status(&id, "stopped", SETTLE);

    td.plinth().args(["delete", &id]).assert_success();
    assert_gone(&td, &id);
}

#[test]
fn kill_takes_default_named_and_numbered_signals() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("kill");
    // PID 1 ignores signals it has no handler for, so the first container traps TERM.
    let (trapper, _g1) = run_detached(
        &td,
        &[
            "sh",
            "-c",
            "trap 'exit 0' TERM; while true; do sleep 0.1; done",
        ],
    );
    let (by_name, _g2) = run_detached(&td, &["sleep", "1000"]);
    let (by_number, _g3) = run_detached(&td, &["sleep", "1000"]);

    td.plinth().args(["kill", &trapper]).assert_success(); // SIGTERM
    td.plinth()
        .args(["kill", &by_name, "SIGKILL"])
        .assert_success();
    td.plinth().args(["kill", &by_number, "9"]).assert_success();
    for id in [&trapper, &by_name, &by_number] {
        td.wait_for_status(id, "stopped", SETTLE);
        td.plinth().args(["delete", id]).assert_success();
        assert_gone(&td, id);
    }
}

#[test]
fn detached_run_list_ps_pause_resume_force_delete() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("detached");
    let (id, _guard) = run_detached(&td, &["sleep", "1000"]);
    let pid = pid_of(&td.state(&id));

    let list = td.plinth().args(["list", "--format", "json"]).json();
    let entries = list.as_array().unwrap_or_else(|| panic!("list: {list}"));
    let entry = entries
        .iter()
        .find(|e| e["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not in list: {list}"));
    assert_eq!(entry["status"], "running", "{entry}");
    assert_eq!(entry["pid"], json!(pid), "{entry}");

    let quiet = td.plinth().args(["list", "-q"]).stdout();
    assert_eq!(quiet.lines().collect::<Vec<_>>(), [id.as_str()]);
    let table = td.plinth().arg("list").stdout();
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().next() == Some(&id)),
        "list table lacks {id}:\n{table}"
    );

    let ps = td.plinth().args(["ps", "--format", "json", &id]).json();
    let pids: Vec<u64> = ps
        .as_array()
        .unwrap_or_else(|| panic!("ps json is not an array: {ps}"))
        .iter()
        .map(|p| p.as_u64().unwrap_or_else(|| panic!("ps: {ps}")))
        .collect();
    assert!(pids.contains(&(pid as u64)), "ps {pids:?} lacks init {pid}");

    td.plinth().args(["pause", &id]).assert_success();
    assert_eq!(td.state(&id)["status"], "paused");
    assert!(is_frozen(pid), "pause did not freeze the cgroup of {pid}");
    td.plinth().args(["resume", &id]).assert_success();
    assert_eq!(td.state(&id)["status"], "running");
    assert!(!is_frozen(pid), "resume did not thaw the cgroup of {pid}");

    td.plinth()
        .args(["delete", "--force", &id])
        .assert_success();
    assert_gone(&td, &id);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true),
        "init {pid} still alive after delete --force"
    );
}

#[test]
fn exec_runs_in_the_running_container() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("exec");
    let bundle = td
        .bundle()
        .hostname("exec-host")
        .args(&["sleep", "1000"])
        .write();
    let (id, _guard) = start_detached(&td, &bundle);

    let out = td.plinth().args(["exec", &id, "hostname"]).stdout();
    assert_eq!(out.trim_end(), "exec-host");
    let out = td
        .plinth()
        .args(["exec", &id, "cat", "/etc/hostname"])
        .stdout();
    assert_eq!(out.trim_end(), "exec-host");
    // The exec'd process is in the container's pid namespace: init is pid 1 there.
    let out = td
        .plinth()
        .args(["exec", &id, "cat", "/proc/1/cmdline"])
        .stdout();
    assert_eq!(out, "sleep\u{0}1000\u{0}");

    td.plinth()
        .args(["exec", &id, "sh", "-c", "exit 7"])
        .assert_exit_code(7);
    let out = td
        .plinth()
        .args([
            "exec",
            "--env",
            "PLINTH_X=yes",
            &id,
            "sh",
            "-c",
            "echo $PLINTH_X",
        ])
        .stdout();
    assert_eq!(out.trim_end(), "yes");
    let out = td
        .plinth()
        .args(["exec", "--cwd", "/tmp", &id, "pwd"])
        .stdout();
    assert_eq!(out.trim_end(), "/tmp");
    let out = td
        .plinth()
        .args([
            "exec",
            "--user",
            "65534:65534",
            &id,
            "sh",
            "-c",
            "id -u; id -g",
        ])
        .stdout();
    assert_eq!(out, "65534\n65534\n");
    // Not PID 1 in its namespace, an exec'd process can die by a signal: 128 + 9.
    td.plinth()
        .args(["exec", &id, "sh", "-c", "kill -9 $$"])
        .assert_exit_code(128 + 9);
    td.plinth()
        .args(["exec", &id, "/no/such/binary"])
        .assert_failure();
}

#[test]
fn exec_with_process_json() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("exec-p");
    let (id, _guard) = run_detached(&td, &["sleep", "1000"]);
    let process = json!({
        "terminal": false,
        "user": { "uid": 0, "gid": 0 },
        "args": ["sh", "-c", "echo from-process-json; echo $PLINTH_VAR; pwd"],
        "env": ["PATH=/bin", "PLINTH_VAR=value-from-env"],
        "cwd": "/etc"
    });
    let path = td.path().join("process.json");
    fs::write(&path, process.to_string()).unwrap();
    let out = td
        .plinth()
        .args(["exec", "--process"])
        .arg(&path)
        .arg(&id)
        .assert_success();
    assert_eq!(
        out.stdout_lines(),
        ["from-process-json", "value-from-env", "/etc"],
        "{out}"
    );
    let out = td
        .plinth()
        .arg("exec")
        .arg("-p")
        .arg(&path)
        .arg(&id)
        .assert_success();
    assert_eq!(out.stdout_lines()[0], "from-process-json", "{out}");
}

#[test]
fn exec_detached_writes_pid_file() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("exec-d");
    let (id, _guard) = run_detached(&td, &["sleep", "1000"]);
    let pid_file = td.path().join("exec.pid");
    td.plinth()
        .args(["exec", "--detach", "--pid-file"])
        .arg(&pid_file)
        .args([&id, "sleep", "999"])
        .assert_success();
    let pid: u32 = fs::read_to_string(&pid_file)
        .expect("exec --pid-file written")
        .trim()
        .parse()
        .expect("pid file holds a pid");
    let cmdline = fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert_eq!(cmdline, "sleep\u{0}999\u{0}", "exec'd pid {pid}");
    let ps = td.plinth().args(["ps", "--format", "json", &id]).json();
    assert!(
        ps.as_array().unwrap().contains(&json!(pid)),
        "ps {ps} lacks exec'd pid {pid}"
    );
}

#[test]
fn events_stats_prints_one_json_object() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("events");
    let (id, _guard) = run_detached(&td, &["sleep", "1000"]);
    let ev = td.plinth().args(["events", "--stats", &id]).json();
    assert_eq!(ev["type"], "stats", "{ev}");
    assert_eq!(ev["id"], id.as_str(), "{ev}");
    assert!(ev["data"].is_object(), "stats event has no data: {ev}");
    let pids = &ev["data"]["pids"]["current"];
    assert!(
        pids.as_u64().is_some_and(|n| n >= 1),
        "data.pids.current should count the init: {ev}"
    );
}

#[test]
fn update_pids_limit_reaches_the_cgroup() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("update");
    let (id, _guard) = run_detached(&td, &["sleep", "1000"]);
    let pid = pid_of(&td.state(&id));

    td.plinth()
        .args(["update", "--pids-limit", "42", &id])
        .assert_success();
    let host_file = host_cgroup_file(pid, "pids", "pids.max");
    let host_value = fs::read_to_string(&host_file)
        .unwrap_or_else(|e| panic!("read {}: {e}", host_file.display()));
    assert_eq!(host_value.trim(), "42", "{}", host_file.display());

    // The container sees its own cgroup at /sys/fs/cgroup (v1: per controller).
    let inside = td
        .plinth()
        .args([
            "exec",
            &id,
            "sh",
            "-c",
            "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max",
        ])
        .stdout();
    assert_eq!(inside.trim(), "42");

    // A resources file works too.
    let res = td.path().join("resources.json");
    fs::write(&res, json!({ "pids": { "limit": 17 } }).to_string()).unwrap();
    td.plinth()
        .args(["update", "--resources"])
        .arg(&res)
        .arg(&id)
        .assert_success();
    assert_eq!(fs::read_to_string(&host_file).unwrap().trim(), "17");
}

#[test]
fn spec_writes_a_config_with_enosys_seccomp() {
    // `spec` only writes a file: no root needed.
    let td = TestDir::new("spec");
    let dir = td.path().join("b");
    fs::create_dir(&dir).unwrap();
    td.plinth()
        .args(["spec", "--bundle"])
        .arg(&dir)
        .assert_success();
    let text = fs::read_to_string(dir.join("config.json")).expect("spec writes config.json");
    let spec: Value = serde_json::from_str(&text).expect("config.json parses");
    assert!(
        spec["ociVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "ociVersion: {}",
        spec["ociVersion"]
    );
    assert_eq!(spec["root"]["path"], "rootfs");
    assert!(spec["process"]["args"].is_array());
    let seccomp = &spec["linux"]["seccomp"];
    assert_eq!(
        seccomp["defaultErrnoRet"],
        json!(38),
        "unknown syscalls must get ENOSYS: {seccomp}"
    );
    assert_eq!(seccomp["defaultAction"], "SCMP_ACT_ERRNO");

    // It does not overwrite an existing config.
    td.plinth()
        .args(["spec", "--bundle"])
        .arg(&dir)
        .assert_failure();
    assert_eq!(fs::read_to_string(dir.join("config.json")).unwrap(), text);

    let rootless = td.path().join("rootless");
    fs::create_dir(&rootless).unwrap();
    td.plinth()
        .args(["spec", "--rootless", "--bundle"])
        .arg(&rootless)
        .assert_success();
    let spec: Value =
        serde_json::from_str(&fs::read_to_string(rootless.join("config.json")).unwrap()).unwrap();
    let namespaces = spec["linux"]["namespaces"].as_array().unwrap();
    assert!(
        namespaces.iter().any(|n| n["type"] == "user"),
        "rootless spec needs a user namespace: {}",
        spec["linux"]
    );
    assert!(spec["linux"]["uidMappings"].is_array());
}

#[test]
fn features_reports_spec_versions() {
    let td = TestDir::new("features");
    let f = td.plinth().arg("features").json();
    let min = f["ociVersionMin"].as_str().unwrap_or_else(|| panic!("{f}"));
    let max = f["ociVersionMax"].as_str().unwrap_or_else(|| panic!("{f}"));
    assert!(min.starts_with("1.0"), "ociVersionMin {min}");
    assert!(
        max.starts_with("1.2"),
        "plinth speaks runtime-spec 1.2: {max}"
    );
}

#[test]
fn concurrent_containers_do_not_interfere() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("many");
    let started = Instant::now();
    let containers: Vec<_> = (0..4)
        .map(|i| {
            let bundle = td
                .bundle()
                .hostname(&format!("many-{i}"))
                .args(&["sleep", "1000"])
                .write();
            start_detached(&td, &bundle)
        })
        .collect();
    for (i, (id, _)) in containers.iter().enumerate() {
        let out = td.plinth().args(["exec", id, "hostname"]).stdout();
        assert_eq!(out.trim_end(), format!("many-{i}"));
    }
    let ids = td.plinth().args(["list", "-q"]).stdout();
    let mut listed: Vec<&str> = ids.lines().collect();
    listed.sort_unstable();
    let mut want: Vec<&str> = containers.iter().map(|(id, _)| id.as_str()).collect();
    want.sort_unstable();
    assert_eq!(listed, want);
    eprintln!("4 containers up in {:?}", started.elapsed());
}
