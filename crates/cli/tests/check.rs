//! `plinth platform` and `plinth check` from the command line: JSON shapes, verdicts on a
//! small root built at test time, `--binary`, and the self-contained HTML report.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{host_busybox_is_static, require, runtime_bin, TestDir};
use serde_json::Value;

/// `plinth` without the state `--root` that `TestDir::plinth` adds (for `platform`,
/// `--root` names the root filesystem).
fn plinth(td: &TestDir) -> common::TestCommand {
    td.command(runtime_bin())
}

#[test]
fn platform_json_on_this_host() {
    let td = TestDir::new("platform");
    let v = plinth(&td).args(["platform", "--format", "json"]).json();
    assert_eq!(v["arch"], std::env::consts::ARCH);
    assert_eq!(v["id"].as_str().unwrap().len(), 64);
    let os = fs::read_to_string("/etc/os-release").unwrap_or_default();
    if os.contains("VERSION_ID=\"12\"") && os.contains("ID=debian") {
        assert_eq!(v["libc"]["family"], "glibc");
        assert_eq!(v["libc"]["version"], "2.36");
        assert_eq!(v["os"]["id"], "debian");
        assert_eq!(v["os"]["version_id"], "12");
    }
    assert!(v["search_path"]["cache"]["entries"].as_u64().unwrap_or(0) > 0);
    // The same platform twice: the same id.
    let again = plinth(&td).args(["platform", "--format", "json"]).json();
    assert_eq!(v["id"], again["id"]);
}

#[test]
fn platform_of_another_root_reads_that_root() {
    let td = TestDir::new("platform-root");
    let root = td.fresh("root");
    fs::create_dir_all(root.join("usr/lib")).unwrap();
    fs::write(
        root.join("usr/lib/os-release"),
        "ID=example\nVERSION_ID=7\n",
    )
    .unwrap();
    let v = plinth(&td)
        .args(["platform", "--format", "json", "--root"])
        .arg(&root)
        .json();
    assert_eq!(v["os"]["id"], "example");
    assert_eq!(v["libc"]["family"], "none");
    let text = plinth(&td).args(["platform", "--root"]).arg(&root).stdout();
    assert!(text.contains("kernel:"), "{text}");
}

/// Copies `file` of the host into `root` at the same path, with its dependencies as
/// this machine's loader resolves them.
fn copy_with_libraries(file: &str, root: &Path) {
    let out = Command::new("/lib64/ld-linux-x86-64.so.2")
        .args(["--list", file])
        .output()
        .unwrap();
    let mut paths = vec![file.to_string(), "/lib64/ld-linux-x86-64.so.2".to_string()];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((_, rest)) = line.split_once("=> ") {
            if let Some(p) = rest.split_whitespace().next() {
                paths.push(p.to_string());
            }
        }
    }
    for p in paths {
        let real = fs::canonicalize(&p).unwrap();
        let dest = root.join(p.trim_start_matches('/'));
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(&real, &dest).unwrap();
    }
}

fn by_path(report: &Value) -> std::collections::HashMap<String, Value> {
    report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap().to_string(), f.clone()))
        .collect()
}

fn kinds(file: &Value) -> Vec<String> {
    file["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap().to_string())
        .collect()
}

/// A small root: static busybox, a dynamic `ls` with its libraries, a script with a
/// missing interpreter, a truncated ELF, a fifo.
fn small_root(td: &TestDir) -> std::path::PathBuf {
    let root = td.fresh("rootfs");
    fs::create_dir_all(root.join("bin")).unwrap();
    if host_busybox_is_static() {
        fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    }
    copy_with_libraries("/usr/bin/ls", &root);
    fs::write(root.join("bin/script"), "#!/usr/bin/python9\nprint(1)\n").unwrap();
    fs::set_permissions(root.join("bin/script"), fs::Permissions::from_mode(0o755)).unwrap();
    let ls = fs::read("/usr/bin/ls").unwrap();
    fs::write(root.join("bin/truncated"), &ls[..300]).unwrap();
    let fifo = root.join("bin/fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    root
}

#[test]
fn check_a_small_root_on_its_own_libraries() {
    let td = TestDir::new("check-small");
    let root = small_root(&td);
    let report = plinth(&td)
        .args(["check", "--format", "json"])
        .arg(&root)
        .json();
    let files = by_path(&report);
    assert_eq!(files["usr/bin/ls"]["verdict"], "ok", "{report:#}");
    assert_eq!(files["lib/x86_64-linux-gnu/libc.so.6"]["verdict"], "ok");
    if host_busybox_is_static() {
        assert_eq!(files["bin/busybox"]["verdict"], "ok");
    }
    assert_eq!(kinds(&files["bin/script"]), ["missing-interpreter"]);
    assert_eq!(files["bin/script"]["verdict"], "fail");
    assert_eq!(kinds(&files["bin/truncated"]), ["malformed-elf"]);
    assert!(
        !files.contains_key("bin/fifo"),
        "a fifo is not a regular file"
    );
    let s = &report["summary"];
    assert_eq!(s["files"].as_u64().unwrap() as usize, files.len());
    assert_eq!(
        s["ok"].as_u64().unwrap() + s["warn"].as_u64().unwrap() + s["fail"].as_u64().unwrap(),
        s["files"].as_u64().unwrap()
    );
    assert_eq!(report["platform"]["libc"]["family"], "glibc");
}

#[test]
fn a_missing_library_fails_the_files_that_load_it() {
    let td = TestDir::new("check-missing");
    let root = small_root(&td);
    let pcre = fs::read_dir(root.join("lib/x86_64-linux-gnu"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("libpcre2-8"));
    if !require(pcre.is_some(), "ls linked with libpcre2-8 (Debian)") {
        return;
    }
    fs::remove_file(pcre.unwrap().path()).unwrap();
    let report = plinth(&td)
        .args(["check", "--format", "json", "--binary", "usr/bin/ls"])
        .arg(&root)
        .json();
    let files = by_path(&report);
    assert_eq!(files.len(), 1, "--binary limits the report");
    let ls = &files["usr/bin/ls"];
    assert_eq!(ls["verdict"], "fail");
    assert_eq!(kinds(ls), ["missing-library"]);
    // ls does not need pcre itself: libselinux does, and ls fails with it.
    let detail = ls["problems"][0]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("libpcre2-8.so.0, needed by lib/x86_64-linux-gnu/libselinux.so.1"),
        "{detail}"
    );
    let text = plinth(&td)
        .args(["check", "--binary", "usr/bin/ls"])
        .arg(&root)
        .stdout();
    assert!(text.contains("1 file needs libpcre2-8.so.0"), "{text}");
}

#[test]
fn onto_the_host_and_html() {
    let td = TestDir::new("check-html");
    let root = small_root(&td);
    // The tree's own libraries are removed: --onto / resolves on the host's.
    fs::remove_dir_all(root.join("lib")).unwrap();
    let report = plinth(&td)
        .args([
            "check",
            "--format",
            "json",
            "--onto",
            "/",
            "--binary",
            "usr/bin/ls",
        ])
        .arg(&root)
        .json();
    assert_eq!(report["files"][0]["verdict"], "ok", "{report:#}");
    let html = plinth(&td)
        .args(["check", "--format", "html", "--onto", "/"])
        .arg(&root)
        .stdout();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("bin/script") && html.contains("missing-interpreter"));
    assert!(
        !html.contains("http"),
        "self-contained: no external references"
    );
    assert!(!html.contains("<link") && !html.contains(" src="));
}

#[test]
fn bad_arguments_fail() {
    let td = TestDir::new("check-bad");
    let root = small_root(&td);
    plinth(&td)
        .args(["check", "--binary", "../x"])
        .arg(&root)
        .assert_failure();
    plinth(&td)
        .args(["check", "--binary", "no/such/file"])
        .arg(&root)
        .assert_failure();
    plinth(&td)
        .args(["check", "/no/such/root"])
        .assert_failure();
    // A fifo named explicitly: a problem on that file, not a hang.
    let v = plinth(&td)
        .args(["check", "--format", "json", "--binary", "bin/fifo"])
        .arg(&root)
        .json();
    assert_eq!(v["files"][0]["problems"][0]["kind"], "unreadable");
}

#[test]
fn syscalls_in_the_report_and_a_profile() {
    let td = TestDir::new("check-syscalls");
    let root = small_root(&td);
    let report = plinth(&td)
        .args(["check", "--syscalls", "--format", "json"])
        .arg(&root)
        .json();
    let files = by_path(&report);
    let names = |f: &Value| -> Vec<String> {
        f["syscalls"]
            .as_array()
            .unwrap_or_else(|| panic!("no syscalls: {f:#}"))
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    };
    let ls = names(&files["usr/bin/ls"]);
    for call in ["getdents64", "openat", "write", "exit_group", "uname"] {
        assert!(ls.iter().any(|n| n == call), "{call} missing from {ls:?}");
    }
    // Names as strace and libseccomp spell them, not the kernel's `newuname`.
    assert!(!ls.iter().any(|n| n == "newuname"), "{ls:?}");
    assert!(files["usr/bin/ls"]["unresolved_syscall_sites"].is_u64());
    // A script has no code of its own to analyse.
    assert!(files["bin/script"].get("syscalls").is_none());

    let profile = td.path().join("profile.json");
    plinth(&td)
        .args(["seccomp", "--binary", "usr/bin/ls", "-o"])
        .arg(&profile)
        .arg(&root)
        .assert_success();
    let text = fs::read_to_string(&profile).unwrap();
    let parsed: oci_spec::runtime::LinuxSeccomp = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed.default_errno_ret(), Some(38));
    let allowed = parsed.syscalls().as_ref().unwrap()[0].names().clone();
    for call in &ls {
        assert!(allowed.contains(call), "{call} not allowed");
    }
    assert!(allowed.iter().any(|n| n == "execve"));

    // Bad input: one line naming the file, nothing written.
    let out = plinth(&td)
        .args(["seccomp", "--binary", "bin/script", "-o"])
        .arg(td.path().join("p2.json"))
        .arg(&root)
        .assert_failure();
    assert!(
        out.stderr
            .contains("bin/script: the system calls it makes cannot be found"),
        "{out}"
    );
    assert!(!td.path().join("p2.json").exists());
    let out = plinth(&td)
        .args([
            "seccomp",
            "--binary",
            "usr/bin/ls",
            "-o",
            "/no/such/dir/p.json",
        ])
        .arg(&root)
        .assert_failure();
    assert!(out.stderr.contains("/no/such/dir/p.json"), "{out}");
    let out = plinth(&td)
        .args(["check", "--syscalls", "--kernel", "junk"])
        .arg(&root)
        .assert_failure();
    assert!(
        out.stderr.contains("--kernel junk: not a kernel release"),
        "{out}"
    );
}
