//! Bad input to the OCI commands: each must fail with a non-zero exit code and a message
//! on stderr, and leave nothing behind: no state under `--root`, no mount, no cgroup
//! (compared with a `HostSnapshot` taken before). These tests hold the host lock
//! exclusively, so no other plinth test changes the host while they look.

mod common;

use std::fs;
use std::time::Duration;

use common::{
    assert_unchanged, container_id, require_container_host, Bundle, HostSnapshot, TestDir,
};
use serde_json::json;

/// A control: the runtime runs a good bundle here, so a failure below is the bad input's
/// doing and not a runtime that fails at everything.
fn runtime_works(td: &TestDir) {
    let bundle = td.bundle().args(&["true"]).write();
    let id = container_id();
    let _guard = td.guard(&id);
    td.plinth()
        .args(["run", "--bundle"])
        .arg(bundle.path())
        .arg(&id)
        .assert_success();
}

/// Run `plinth <verb> --bundle B ID` expecting failure, and check the host is as before.
fn fails_cleanly(td: &TestDir, verb: &str, bundle: &Bundle) -> common::CmdOutput {
    runtime_works(td);
    let id = container_id();
    let _guard = td.guard(&id);
    let before = HostSnapshot::capture(td.root(), &id);
    let out = td
        .plinth()
        .args([verb, "--bundle"])
        .arg(bundle.path())
        .arg(&id)
        .assert_failure();
    let after = HostSnapshot::capture(td.root(), &id);
    assert_unchanged(&before, &after);
    out
}

#[test]
fn create_without_a_bundle_leaves_nothing() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::exclusive("bad-no-bundle");
    runtime_works(&td);
    let id = container_id();
    let _guard = td.guard(&id);
    let before = HostSnapshot::capture(td.root(), &id);
    td.plinth()
        .args(["create", "--bundle"])
        .arg(td.path().join("no-such-bundle"))
        .arg(&id)
        .assert_failure();
    assert_unchanged(&before, &HostSnapshot::capture(td.root(), &id));
}

#[test]
fn create_with_invalid_config_json_leaves_nothing() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::exclusive("bad-json");
    let bundle = td.bundle().write();
    fs::write(
        bundle.config_path(),
        "{\"ociVersion\": \"1.2.0\", \"process\": ",
    )
    .unwrap();
    fails_cleanly(&td, "create", &bundle);

    // Well-formed JSON of the wrong shape.
    fs::write(bundle.config_path(), json!({"process": "sh"}).to_string()).unwrap();
    fails_cleanly(&td, "create", &bundle);
}

#[test]
fn create_with_empty_args_leaves_nothing() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::exclusive("bad-args");
    let bundle = td.bundle().args(&[]).write();
    fails_cleanly(&td, "create", &bundle);
}

#[test]
fn run_of_a_missing_executable_leaves_nothing() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::exclusive("bad-exe");
    let bundle = td.bundle().args(&["/no/such/binary"]).write();
    fails_cleanly(&td, "run", &bundle);
}

#[test]
fn run_with_a_missing_rootfs_leaves_nothing() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::exclusive("bad-rootfs");
    let bundle = td
        .bundle()
        .args(&["true"])
        .set("/root/path", json!("no-such-rootfs"))
        .write();
    fails_cleanly(&td, "run", &bundle);
}

#[test]
fn run_with_an_unknown_mount_type_leaves_nothing() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::exclusive("bad-mount");
    let bundle = td
        .bundle()
        .args(&["true"])
        .set(
            "/mounts/-",
            json!({ "destination": "/mnt", "type": "no-such-fs", "source": "none" }),
        )
        .write();
    fails_cleanly(&td, "run", &bundle);
}

#[test]
fn create_of_an_existing_id_fails_and_keeps_the_first() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::exclusive("bad-dup");
    let bundle = td.bundle().args(&["sleep", "1000"]).write();
    let id = container_id();
    let _guard = td.guard(&id);
    td.plinth()
        .args(["run", "--detach", "--bundle"])
        .arg(bundle.path())
        .arg(&id)
        .assert_success();
    let state = td.wait_for_status(&id, "running", Duration::from_secs(10));

    let before = HostSnapshot::capture(td.root(), &id);
    td.plinth()
        .args(["create", "--bundle"])
        .arg(bundle.path())
        .arg(&id)
        .assert_failure();
    assert_unchanged(&before, &HostSnapshot::capture(td.root(), &id));
    let again = td.state(&id);
    assert_eq!(again["status"], "running");
    assert_eq!(again["pid"], state["pid"]);
}

#[test]
fn ids_that_are_not_names_are_refused() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::exclusive("bad-id");
    runtime_works(&td);
    let bundle = td.bundle().args(&["true"]).write();
    for bad in ["../escape", "a/b", "", ".", ".."] {
        let before = HostSnapshot::capture(td.root(), "escape");
        td.plinth()
            .args(["create", "--bundle"])
            .arg(bundle.path())
            .arg(bad)
            .assert_failure();
        assert_unchanged(&before, &HostSnapshot::capture(td.root(), "escape"));
        assert!(
            !td.path().join("escape").exists(),
            "id {bad:?} wrote outside --root"
        );
    }
}

#[test]
fn commands_on_an_unknown_id_fail() {
    let td = TestDir::exclusive("bad-unknown");
    let id = container_id();
    let before = HostSnapshot::capture(td.root(), &id);
    let verbs: [&[&str]; 10] = [
        &["start"],
        &["state"],
        &["kill"],
        &["delete"],
        &["pause"],
        &["resume"],
        &["ps"],
        &["events", "--stats"],
        &["update", "--pids-limit", "10"],
        &["exec"],
    ];
    for verb in verbs {
        let mut cmd = td.plinth();
        cmd.args(verb).arg(&id);
        if verb == ["exec"] {
            cmd.arg("true");
        }
        cmd.assert_failure();
    }
    assert_unchanged(&before, &HostSnapshot::capture(td.root(), &id));

    // As with runc, a forced delete of an unknown id succeeds: engines call it to clean
    // up after a create that failed half-way.
    td.plinth()
        .args(["delete", "--force", &id])
        .assert_success();
    assert_unchanged(&before, &HostSnapshot::capture(td.root(), &id));
}

#[test]
fn wrong_state_transitions_fail_and_change_nothing() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::exclusive("bad-transition");
    let bundle = td.bundle().args(&["sleep", "1000"]).write();
    let id = container_id();
    let _guard = td.guard(&id);
    td.plinth()
        .args(["run", "--detach", "--bundle"])
        .arg(bundle.path())
        .arg(&id)
        .assert_success();
    td.wait_for_status(&id, "running", Duration::from_secs(10));
    let before = HostSnapshot::capture(td.root(), &id);

    // A running container cannot be started again, nor deleted without --force.
    td.plinth().args(["start", &id]).assert_failure();
    td.plinth().args(["delete", &id]).assert_failure();
    // An unknown signal is an error, not a default.
    td.plinth()
        .args(["kill", &id, "NOSUCHSIGNAL"])
        .assert_failure();
    td.plinth().args(["resume", &id]).assert_failure();

    assert_unchanged(&before, &HostSnapshot::capture(td.root(), &id));
    assert_eq!(td.state(&id)["status"], "running");
}

/// `run` of `bundle` fails cleanly (see [`fails_cleanly`]) with one line on stderr that
/// contains every one of `names` (the field at fault, and what else must be said).
fn fails_naming(td: &TestDir, bundle: &Bundle, names: &[&str]) {
    let out = fails_cleanly(td, "run", bundle);
    let err = out.stderr.trim_end();
    assert_eq!(err.lines().count(), 1, "a one-line error\n{out}");
    for name in names {
        assert!(err.contains(name), "the error should name {name}\n{out}");
    }
}

#[test]
fn config_that_is_not_json_names_the_file() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::exclusive("bad-notjson");
    let bundle = td.bundle().args(&["true"]).write();
    fs::write(bundle.config_path(), "this is not json\n").unwrap();
    fails_naming(&td, &bundle, &["config.json"]);
}

#[test]
fn unknown_namespace_type_names_the_field() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::exclusive("bad-nstype");
    let bundle = td
        .bundle()
        .args(&["true"])
        .set(
            "/linux/namespaces/-",
            json!({ "type": "no-such-namespace" }),
        )
        .write();
    fails_naming(
        &td,
        &bundle,
        &["linux.namespaces[5].type", "no-such-namespace"],
    );
}

#[test]
fn missing_rootfs_names_the_field() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::exclusive("bad-rootfs-field");
    let bundle = td
        .bundle()
        .args(&["true"])
        .set("/root/path", json!("no-such-rootfs"))
        .write();
    fails_naming(&td, &bundle, &["root.path", "no-such-rootfs"]);
}

#[test]
fn missing_mount_source_names_the_mount() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::exclusive("bad-mount-src");
    let missing = td.path().join("no-such-source");
    let bundle = td
        .bundle()
        .args(&["true"])
        .set(
            "/mounts/-",
            json!({ "destination": "/mnt", "type": "bind", "source": missing,
                    "options": ["rbind"] }),
        )
        .write();
    fails_naming(&td, &bundle, &["mounts[7]", "no-such-source"]);
}

#[test]
fn rlimit_above_the_hard_limit_names_the_rlimit_and_the_capability() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::exclusive("bad-rlimit");
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .expect("getrlimit");
    let bundle = td
        .bundle()
        .args(&["true"])
        .set(
            "/process/rlimits",
            json!([
                { "type": "RLIMIT_CORE", "soft": 0, "hard": 0 },
                { "type": "RLIMIT_NOFILE", "soft": 1024, "hard": hard + 1 }
            ]),
        )
        .write();
    fails_naming(&td, &bundle, &["process.rlimits[1]", "CAP_SYS_RESOURCE"]);
}

#[test]
fn detached_terminal_without_console_socket_names_the_field() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::exclusive("bad-tty-detached");
    let bundle = td
        .bundle()
        .args(&["true"])
        .set("/process/terminal", json!(true))
        .write();
    // A foreground run proxies the terminal; a detached create has nobody to give it to.
    let out = fails_cleanly(&td, "create", &bundle);
    let err = out.stderr.trim_end();
    assert_eq!(err.lines().count(), 1, "a one-line error\n{out}");
    assert!(
        err.contains("process.terminal") && err.contains("--console-socket"),
        "{out}"
    );
}

#[test]
fn idmap_mounts_are_refused_naming_the_option() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::exclusive("bad-idmap");
    let src = td.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let bundle = td
        .bundle()
        .args(&["true"])
        .set(
            "/mounts/-",
            json!({ "destination": "/mnt", "type": "bind", "source": src,
                    "options": ["rbind", "idmap"] }),
        )
        .write();
    fails_naming(&td, &bundle, &["mounts[7].options", "idmap"]);
}
