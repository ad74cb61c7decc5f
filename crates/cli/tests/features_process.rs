//! config.json's `process` (and `linux.personality`, the LSM labels), checked from
//! inside the container: args, env, cwd, user and groups, umask, the five capability
//! sets, rlimits, no_new_privs, oomScoreAdj, the terminal through `--console-socket`,
//! the LINUX32 personality, and the warnings for AppArmor and SELinux on a host that has
//! neither.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::{
    require_container_host, run_bundle, run_detached_with, run_ok, status_field, FdReceiver,
    TestDir,
};
use serde_json::json;

#[test]
fn args_env_and_cwd() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("proc-basic");
    let bundle = td
        .bundle()
        .set(
            "/process/env",
            json!(["PATH=/bin", "FOO=bar baz", "EMPTY="]),
        )
        .set("/process/cwd", json!("/etc"))
        .args(&["sh", "-c", "echo \"$0|$1|$2\"; env | sort; pwd", "a b", "c"])
        .write();
    let out = run_ok(&td, &bundle);
    let lines = out.stdout_lines();
    assert_eq!(lines[0], "a b|c|", "{out}");
    // busybox sh adds PWD and SHLVL of its own; the configured ones are there verbatim.
    for want in ["EMPTY=", "FOO=bar baz", "PATH=/bin"] {
        assert!(lines.contains(&want), "{want} missing\n{out}");
    }
    assert_eq!(lines.last().copied(), Some("/etc"), "{out}");
}

#[test]
fn user_groups_and_umask() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("proc-user");
    let bundle = td
        .bundle()
        .set(
            "/process/user",
            json!({"uid": 1000, "gid": 2000, "additionalGids": [3000, 4000], "umask": 0o027}),
        )
        .args(&[
            "sh",
            "-c",
            "id -u; id -g; id -G; umask; grep -E '^(Uid|Gid|Groups):' /proc/self/status",
        ])
        .write();
    let out = run_ok(&td, &bundle);
    let lines = out.stdout_lines();
    assert_eq!(
        &lines[..4],
        ["1000", "2000", "2000 3000 4000", "0027"],
        "{out}"
    );
    let status = lines[4..].join("\n");
    assert_eq!(
        status_field(&status, "Uid").map(|s| s.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["1000"; 4]),
        "{out}"
    );
    assert_eq!(status_field(&status, "Groups"), Some("3000 4000"), "{out}");
}

#[test]
fn capability_sets_are_exact() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("proc-caps");
    // CAP_CHOWN = 0, CAP_KILL = 5, CAP_NET_RAW = 13.
    let bundle = td
        .bundle()
        .set("/process/user", json!({"uid": 1000, "gid": 1000}))
        .set(
            "/process/capabilities",
            json!({
                "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
                "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
                "effective": ["CAP_CHOWN", "CAP_KILL"],
                "inheritable": ["CAP_KILL", "CAP_NET_RAW"],
                "ambient": ["CAP_KILL"]
            }),
        )
        .args(&["grep", "^Cap", "/proc/self/status"])
        .write();
    let out = run_ok(&td, &bundle);
    let s = &out.stdout;
    // For a non-root uid exec'ing a file without capabilities, permitted and effective
    // become the ambient set.
    for (k, v) in [
        ("CapInh", "0000000000002020"),
        ("CapPrm", "0000000000000020"),
        ("CapEff", "0000000000000020"),
        ("CapBnd", "0000000000002021"),
        ("CapAmb", "0000000000000020"),
    ] {
        assert_eq!(status_field(s, k), Some(v), "{k}\n{out}");
    }

    // Root keeps bounding | inheritable, the kernel's rule for uid 0.
    let bundle = td
        .bundle()
        .set(
            "/process/capabilities",
            json!({
                "bounding": ["CAP_CHOWN", "CAP_KILL"],
                "permitted": ["CAP_CHOWN", "CAP_KILL"],
                "effective": ["CAP_CHOWN"],
                "inheritable": [],
                "ambient": []
            }),
        )
        .args(&["grep", "^Cap", "/proc/self/status"])
        .write();
    let out = run_ok(&td, &bundle);
    for (k, v) in [
        ("CapInh", "0000000000000000"),
        ("CapPrm", "0000000000000021"),
        ("CapEff", "0000000000000021"),
        ("CapBnd", "0000000000000021"),
        ("CapAmb", "0000000000000000"),
    ] {
        assert_eq!(status_field(&out.stdout, k), Some(v), "{k}\n{out}");
    }
}

#[test]
fn rlimits_are_applied() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("proc-rlimit");
    let bundle = td
        .bundle()
        .set(
            "/process/rlimits",
            json!([
                {"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456},
                {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
            ]),
        )
        .args(&["sh", "-c", "ulimit -n; ulimit -Hn; ulimit -c"])
        .write();
    let out = run_ok(&td, &bundle);
    assert_eq!(out.stdout_lines(), ["123", "456", "0"], "{out}");
}

#[test]
fn no_new_privileges() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("proc-nnp");
    for (nnp, want) in [(true, "1"), (false, "0")] {
        let bundle = td
            .bundle()
            .set("/process/noNewPrivileges", json!(nnp))
            .args(&["grep", "NoNewPrivs", "/proc/self/status"])
            .write();
        let out = run_ok(&td, &bundle);
        assert_eq!(status_field(&out.stdout, "NoNewPrivs"), Some(want), "{out}");
    }
}

#[test]
fn oom_score_adj_is_raised() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("proc-oom");
    let bundle = td
        .bundle()
        .set("/process/oomScoreAdj", json!(567))
        .args(&["cat", "/proc/self/oom_score_adj"])
        .write();
    let out = run_ok(&td, &bundle);
    assert_eq!(out.stdout_trimmed(), "567", "{out}");
}

#[test]
fn terminal_goes_to_the_console_socket() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("proc-tty");
    let sock = td.path().join("console.sock");
    let receiver = FdReceiver::bind(sock.clone());
    let bundle = td
        .bundle()
        .set("/process/terminal", json!(true))
        .args(&["sh", "-c", "tty; echo done; exec sleep 1000"])
        .write();
    let c = run_detached_with(&td, &bundle, &["--console-socket", sock.to_str().unwrap()]);
    let got = receiver.wait(Duration::from_secs(10));
    assert_eq!(got.fds.len(), 1, "one fd over SCM_RIGHTS: {got:?}");
    let master = fs::File::from(got.fds.into_iter().next().unwrap());
    let text = read_pty_until(master, "done", Duration::from_secs(10));
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert_eq!(lines.first().copied(), Some("/dev/pts/0"), "{text:?}");
    assert!(lines.contains(&"done"), "{text:?}");
    drop(c);
}

/// What a pty master reads until `marker` has arrived.
fn read_pty_until(mut master: fs::File, marker: &str, timeout: Duration) -> String {
    use std::io::Read;
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // The slave may close before or after we read; poll with a deadline.
    let fd = std::os::fd::AsRawFd::as_raw_fd(&master);
    // SAFETY: fcntl on our own fd.
    unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
    loop {
        match master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&out).contains(marker) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if start.elapsed() > timeout {
                    panic!("{marker:?} did not arrive within {timeout:?}; read: {out:?}");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) => panic!("read pty: {e}"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn personality_linux32() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("proc-pers");
    let bundle = td
        .bundle()
        .set("/linux/personality", json!({"domain": "LINUX32"}))
        .args(&["uname", "-m"])
        .write();
    let out = run_ok(&td, &bundle);
    let m = out.stdout_trimmed();
    assert!(
        ["i386", "i486", "i586", "i686", "armv7l", "armv8l"].contains(&m),
        "uname -m under LINUX32: {m:?}\n{out}"
    );
    let bundle = td.bundle().args(&["uname", "-m"]).write();
    let native = run_ok(&td, &bundle);
    assert_ne!(native.stdout_trimmed(), m, "LINUX32 changed nothing");
}

#[test]
fn apparmor_and_selinux_warn_once_each_on_a_host_without_them() {
    if !require_container_host() {
        return;
    }
    let td = TestDir::new("lsm");
    let bundle = td
        .bundle()
        .set("/process/apparmorProfile", json!("plinth-test-profile"))
        .set(
            "/process/selinuxLabel",
            json!("system_u:system_r:container_t:s0"),
        )
        .args(&["echo", "ran"])
        .write();
    let out = run_bundle(&td, &bundle);
    assert!(out.status.success(), "{out}");
    assert_eq!(out.stdout_trimmed(), "ran", "{out}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    let aa: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("apparmorProfile"))
        .collect();
    let se: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("selinuxLabel"))
        .collect();
    assert_eq!(aa.len(), 1, "one AppArmor warning\n{out}");
    assert_eq!(se.len(), 1, "one SELinux warning\n{out}");
    assert_eq!(lines.len(), 2, "nothing else on stderr\n{out}");
}
