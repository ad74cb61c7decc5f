//! `plinth daemon`, the supervisor of the fleet's containers, driven from the command
//! line: it is the subreaper of every init it starts, applies restart policies with
//! backoff, runs health checks, rotates logs, and a supervisor killed with SIGKILL loses
//! no container: the next one re-adopts what runs and restarts what ended meanwhile.
//! Also `logs [-f]`, `exec NAME` and `shell NAME`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{require_root, require_tool, TestDir};
use serde_json::Value;

use common::fleet::{plinth, FleetGuard};

/// The same command as a plain `std::process::Command`, for processes the test keeps
/// running (a supervisor, `logs -f`).
fn plinth_std(td: &TestDir) -> Command {
    let _ = plinth(td); // makes the test dir searchable, as containers need
    let mut cmd = Command::new(common::runtime_bin());
    cmd.arg("--root")
        .arg(td.path().join("root"))
        .env("PLINTH_STATE_DIR", td.path().join("state"));
    cmd
}

fn info(td: &TestDir, name: &str) -> Value {
    let v = plinth(td).args(["ls", "--format", "json"]).json();
    v.as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed"))
        .clone()
}

/// Polls `what` until it holds, or fails the test after `limit`.
fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn daemon_pid(td: &TestDir) -> i32 {
    let text = std::fs::read_to_string(td.path().join("state/daemon.lock")).unwrap();
    text.trim().parse().unwrap()
}

fn ppid(pid: i64) -> i64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(1).unwrap().parse().unwrap()
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn new(td: &TestDir, name: &str, opts: &[&str], command: &[&str]) {
    plinth(td)
        .args(["new", name, "--base", "host"])
        .args(opts)
        .arg("--")
        .args(command)
        .assert_success();
}

#[test]
fn the_supervisor_is_the_subreaper_and_applies_restart_policies() {
    if !require_root() {
        return;
    }
    let td = TestDir::new("daemon-policy");
    let _g = FleetGuard(&td, vec![]);
    let sleep = ["/bin/busybox", "sleep", "1000"];
    new(&td, "always", &["--restart", "always"], &sleep);
    new(
        &td,
        "clean",
        &["--restart", "on-failure"],
        &["/bin/busybox", "sh", "-c", "sleep 0.3; exit 0"],
    );
    new(
        &td,
        "flaky",
        &["--restart", "on-failure"],
        &["/bin/busybox", "sh", "-c", "sleep 0.3; exit 3"],
    );
    new(
        &td,
        "once",
        &["--restart", "no"],
        &["/bin/busybox", "sh", "-c", "sleep 0.3; exit 5"],
    );
    for name in ["always", "clean", "flaky", "once"] {
        // The first `start` starts the supervisor too.
        plinth(&td).args(["start", name]).assert_success();
    }
    let daemon = daemon_pid(&td);
    let first = info(&td, "always")["pid"].as_i64().unwrap();
    assert_eq!(
        ppid(first),
        daemon as i64,
        "the init's parent is the supervisor (subreaper), not a shim"
    );

    // SIGKILL from outside: `always` comes back with another init.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("always restarted", Duration::from_secs(5), || {
        let c = info(&td, "always");
        c["state"] == "running" && c["pid"].as_i64().is_some_and(|p| p != first)
    });
    let c = info(&td, "always");
    assert_eq!(
        (c["restarts"].as_i64(), c["exit_code"].as_i64()),
        (Some(1), Some(137))
    );

    // A clean exit under on-failure stays stopped; exit 5 under `no` stays failed.
    wait_for("clean and once ended", Duration::from_secs(5), || {
        info(&td, "clean")["state"] == "stopped" && info(&td, "once")["state"] == "failed"
    });
    std::thread::sleep(Duration::from_millis(500));
    let (clean, once) = (info(&td, "clean"), info(&td, "once"));
    assert_eq!(
        (clean["exit_code"].as_i64(), clean["restarts"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(
        (once["exit_code"].as_i64(), once["restarts"].as_i64()),
        (Some(5), Some(0))
    );
    assert_eq!(clean["state"], "stopped");

    // exit 3 under on-failure restarts, with a growing delay: each run lasts 0.3 s and
    // the waits are 0.1, 0.2, 0.4, 0.8 s..., so 3 s hold a handful of restarts, where
    // restarting at once would make about ten.
    let t0 = Instant::now();
    wait_for("flaky restarted twice", Duration::from_secs(5), || {
        info(&td, "flaky")["restarts"].as_i64() >= Some(2)
    });
    std::thread::sleep(Duration::from_secs(3).saturating_sub(t0.elapsed()));
    let flaky = info(&td, "flaky");
    let n = flaky["restarts"].as_i64().unwrap();
    assert!(
        (2..=6).contains(&n),
        "{n} restarts in 3 s: backoff not applied"
    );
    assert_eq!(flaky["exit_code"].as_i64(), Some(3));

    // `stop` is what the operator wants: `always` is not restarted after it.
    plinth(&td)
        .args(["stop", "always", "flaky"])
        .assert_success();
    std::thread::sleep(Duration::from_millis(800));
    for name in ["always", "flaky"] {
        let c = info(&td, name);
        assert_eq!(
            (c["state"].as_str(), c["desired"].as_str()),
            (Some("stopped"), Some("stopped")),
            "{name}"
        );
    }
}

#[test]
fn a_killed_supervisor_loses_no_container() {
    if !require_root() {
        return;
    }
    let td = TestDir::new("daemon-kill");
    let _g = FleetGuard(&td, vec![]);
    for name in ["keeps", "dies"] {
        new(
            &td,
            name,
            &["--restart", "always"],
            &["/bin/busybox", "sleep", "1000"],
        );
        plinth(&td).args(["start", name]).assert_success();
    }
    let keeps = info(&td, "keeps")["pid"].as_i64().unwrap() as i32;
    let dies = info(&td, "dies")["pid"].as_i64().unwrap() as i32;
    assert_eq!(info(&td, "dies")["restarts"].as_i64(), Some(0));
    let old = daemon_pid(&td);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("the supervisor gone", Duration::from_secs(5), || {
        !alive(old)
    });
    assert!(
        alive(keeps) && alive(dies),
        "containers outlive their supervisor"
    );
    // One container ends while nobody supervises.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dies),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();

    // Staging directories of two `plinth receive`s: one still running (this test's
    // pid), one killed mid-way (a pid that is gone).
    let containers = td.path().join("state/containers");
    let live_receive = containers.join(format!(".receive-{}-0", std::process::id()));
    let gone = {
        let mut c = Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    };
    let killed_receive = containers.join(format!(".receive-{gone}-0"));
    for d in [&live_receive, &killed_receive] {
        std::fs::create_dir_all(d.join("upper")).unwrap();
    }

    // The next command that needs a supervisor starts one, which reconciles: it
    // adopts `keeps` as it runs and restarts `dies` by its policy.
    let out = plinth(&td).args(["start", "keeps"]).output();
    assert!(out.stderr.contains("already running"), "{}", out.stderr);
    let new_daemon = daemon_pid(&td);
    assert_ne!(new_daemon, old);
    wait_for("dies restarted", Duration::from_secs(5), || {
        let c = info(&td, "dies");
        c["state"] == "running" && c["pid"].as_i64().is_some_and(|p| p as i32 != dies)
    });
    assert_eq!(
        info(&td, "dies")["restarts"].as_i64(),
        Some(1),
        "a restart at reconcile is counted"
    );
    assert_eq!(
        info(&td, "keeps")["pid"].as_i64(),
        Some(keeps as i64),
        "keeps was not restarted"
    );
    assert_eq!(info(&td, "keeps")["restarts"].as_i64(), Some(0));
    assert!(
        live_receive.join("upper").is_dir(),
        "reconcile removed the staging directory of a receive under way"
    );
    assert!(
        !killed_receive.exists(),
        "reconcile left a killed receive's staging directory"
    );
    std::fs::remove_dir_all(&live_receive).unwrap();

    // The adopted init is watched: when it ends, the new supervisor restarts it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(keeps),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for(
        "keeps restarted by the new supervisor",
        Duration::from_secs(5),
        || {
            let c = info(&td, "keeps");
            c["state"] == "running" && c["pid"].as_i64().is_some_and(|p| p as i32 != keeps)
        },
    );
    let pid = info(&td, "keeps")["pid"].as_i64().unwrap();
    assert_eq!(ppid(pid), new_daemon as i64);
    // The API answers with the same records (an HTTP request written by hand).
    use std::io::{Read, Write};
    let mut s =
        std::os::unix::net::UnixStream::connect(td.path().join("root/plinth.sock")).unwrap();
    s.write_all(b"GET /v1/containers HTTP/1.1\r\nHost: plinth\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let names: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dies", "keeps"]);
}

#[test]
fn logs_rotate_without_losing_lines_and_follow() {
    if !require_root() {
        return;
    }
    let td = TestDir::new("daemon-logs");
    let _g = FleetGuard(&td, vec![]);
    // A supervisor with a small rotation size, started by hand.
    let mut daemon = plinth_std(&td)
        .args(["daemon", "--log-max-size", "16k", "--log-keep", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sock = td.path().join("root/plinth.sock");
    wait_for("the supervisor listening", Duration::from_secs(10), || {
        sock.exists()
    });

    new(
        &td,
        "chatty",
        &[],
        &[
            "/bin/busybox",
            "sh",
            "-c",
            "i=0; while [ $i -lt 20000 ]; do echo \"line $i\"; i=$((i+1)); done; exec /bin/busybox sleep 1000",
        ],
    );
    plinth(&td).args(["start", "chatty"]).assert_success();
    let dir = td.path().join("state/containers/chatty");
    wait_for("the log rotated", Duration::from_secs(15), || {
        dir.join("console.log.1").exists()
            && std::fs::metadata(dir.join("console.log")).is_ok_and(|m| m.len() < 16 << 10)
    });
    let all = plinth(&td).args(["logs", "chatty"]).output().stdout;
    let want: String = (0..20000).map(|i| format!("line {i}\n")).collect();
    assert!(
        all == want,
        "the rotated and live logs together are not every line in order"
    );
    let tail = plinth(&td)
        .args(["logs", "--tail", "2", "chatty"])
        .output()
        .stdout;
    assert_eq!(tail, "line 19998\nline 19999\n");

    // `logs -f` prints what is written after it started.
    new(
        &td,
        "ticker",
        &[],
        &[
            "/bin/busybox",
            "sh",
            "-c",
            "i=0; while true; do echo \"tick $i\"; i=$((i+1)); sleep 0.1; done",
        ],
    );
    plinth(&td).args(["start", "ticker"]).assert_success();
    let mut follow = plinth_std(&td)
        .args(["logs", "-f", "--tail", "1", "ticker"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let mut seen: Vec<u64> = Vec::new();
    while seen.len() < 6 {
        let line = lines.next().unwrap().unwrap();
        seen.push(line.strip_prefix("tick ").unwrap().parse().unwrap());
    }
    follow.kill().unwrap();
    let _ = follow.wait();
    assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "{seen:?}");

    let _ = plinth(&td)
        .args(["rm", "--force", "chatty", "ticker"])
        .output();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let status = daemon.wait().unwrap();
    assert!(
        status.success(),
        "the supervisor exits cleanly on SIGTERM: {status}"
    );
    assert!(!sock.exists(), "the socket goes with it");
}

#[test]
fn health_checks_exec_and_shell() {
    if !require_root() {
        return;
    }
    let td = TestDir::new("daemon-health");
    let _g = FleetGuard(&td, vec![]);
    new(
        &td,
        "checked",
        &["--health", "test -e /ready", "--health-interval", "1"],
        &["/bin/busybox", "sleep", "1000"],
    );
    plinth(&td).args(["start", "checked"]).assert_success();
    assert_eq!(info(&td, "checked")["health"], "starting");
    plinth(&td)
        .args(["exec", "checked", "/bin/busybox", "touch", "/ready"])
        .assert_success();
    wait_for("healthy", Duration::from_secs(5), || {
        info(&td, "checked")["health"] == "healthy"
    });
    // exec runs in the container: its hostname is the container's name.
    let host = plinth(&td)
        .args(["exec", "checked", "/bin/busybox", "hostname"])
        .output();
    assert_eq!(host.stdout.trim(), "checked");
    plinth(&td)
        .args(["exec", "checked", "/bin/busybox", "rm", "/ready"])
        .assert_success();
    wait_for(
        "unhealthy after three failed checks",
        Duration::from_secs(8),
        || info(&td, "checked")["health"] == "unhealthy",
    );
    // A stop clears the verdict.
    plinth(&td).args(["stop", "checked"]).assert_success();
    assert!(info(&td, "checked")["health"].is_null());
    plinth(&td).args(["start", "checked"]).assert_success();

    // `shell` wants a terminal: `script` gives it one.
    if require_tool("script") {
        let root = td.path().join("root");
        let line = format!(
            "{} --root {} shell checked",
            common::runtime_bin().display(),
            root.display()
        );
        let mut child = Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env("PLINTH_STATE_DIR", td.path().join("state"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"echo answer-$((6*7)) $(hostname)\nexit\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("answer-42 checked"), "{text}");
    }
}

#[test]
fn a_client_that_hangs_up_leaves_its_batch_done_and_the_supervisor_idle() {
    if !require_root() {
        return;
    }
    use std::io::Write;
    let td = TestDir::new("daemon-hangup");
    let _g = FleetGuard(&td, vec![]);
    // busybox sleep as a container's PID 1 ignores SIGTERM: a stop takes its whole grace.
    new(&td, "stubborn", &[], &["/bin/busybox", "sleep", "1000"]);
    plinth(&td).args(["start", "stubborn"]).assert_success();
    let daemon = daemon_pid(&td);
    // A stop with 3 s of grace, and the client gone before the answer.
    let mut s =
        std::os::unix::net::UnixStream::connect(td.path().join("root/plinth.sock")).unwrap();
    let body = br#"{"names":["stubborn"],"timeout_ms":3000}"#;
    write!(
        s,
        "POST /v1/containers/stop HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    drop(s);
    // While the grace runs, the supervisor sleeps: under 0.1 s of CPU in a second.
    let cpu = || {
        let stat = std::fs::read_to_string(format!("/proc/{daemon}/stat")).unwrap();
        let f: Vec<u64> = stat[stat.rfind(')').unwrap() + 2..]
            .split(' ')
            .skip(11)
            .take(2)
            .map(|v| v.parse().unwrap())
            .collect();
        f[0] + f[1]
    };
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu();
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu() - before;
    assert!(spent < 10, "the supervisor spins: {spent} ticks in 1 s");
    wait_for("stubborn stopped anyway", Duration::from_secs(10), || {
        info(&td, "stubborn")["state"] == "stopped"
    });
    // Garbage gets a 400, and the supervisor goes on.
    let mut s =
        std::os::unix::net::UnixStream::connect(td.path().join("root/plinth.sock")).unwrap();
    s.write_all(b"\x00\x01 not http\r\n\r\n").unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut s, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    plinth(&td).args(["start", "stubborn"]).assert_success();
}

#[test]
fn one_socket_serves_one_data_directory() {
    if !require_root() {
        return;
    }
    let td = TestDir::new("daemon-two-dirs");
    let _g = FleetGuard(&td, vec![]);
    new(&td, "here", &[], &["/bin/busybox", "sleep", "1000"]);
    plinth(&td).args(["start", "here"]).assert_success();
    // Another data directory behind the same --root: refused, not served by the
    // supervisor of the first.
    let out = plinth(&td)
        .arg("--data-dir")
        .arg(td.path().join("elsewhere"))
        .args(["stop", "here"])
        .output();
    assert!(!out.status.success());
    assert!(
        out.stderr
            .contains("give each data directory its own --root"),
        "{}",
        out.stderr
    );
    assert_eq!(info(&td, "here")["state"], "running");

    // Nor can it stop that supervisor, or start one of its own over its socket.
    let first = daemon_pid(&td);
    let elsewhere = td.path().join("elsewhere");
    for verb in [&["daemon", "--stop"][..], &["daemon"][..]] {
        let out = plinth(&td)
            .arg("--data-dir")
            .arg(&elsewhere)
            .args(verb)
            .output();
        assert!(!out.status.success(), "{verb:?}: {}", out.stdout);
        assert!(
            out.stderr
                .contains("give each data directory its own --root"),
            "{verb:?}: {}",
            out.stderr
        );
    }
    assert!(alive(first), "the first supervisor was stopped");
    assert!(td.path().join("root/plinth.sock").exists());
    plinth(&td)
        .args(["stop", "--timeout", "1", "here"])
        .assert_success();
}

#[test]
fn a_supervisor_whose_socket_file_is_removed_binds_it_again() {
    if !require_root() {
        return;
    }
    let td = TestDir::new("daemon-socket-gone");
    let _g = FleetGuard(&td, vec![]);
    new(&td, "kept", &[], &["/bin/busybox", "sleep", "1000"]);
    plinth(&td).args(["start", "kept"]).assert_success();
    let supervisor = daemon_pid(&td);
    // A cleaned /run: the supervisor still holds the data directory's lock, so no
    // other could start; it must be reachable again by itself.
    let sock = td.path().join("root/plinth.sock");
    std::fs::remove_file(&sock).unwrap();
    wait_for("the socket bound again", Duration::from_secs(10), || {
        sock.exists()
    });
    // A dead socket file in its place (left by a killed process): replaced too.
    std::fs::remove_file(&sock).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(std::os::unix::net::UnixStream::connect(&sock).is_err());
    wait_for("a live socket again", Duration::from_secs(10), || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    plinth(&td)
        .args(["stop", "--timeout", "1", "kept"])
        .assert_success();
    assert_eq!(info(&td, "kept")["state"], "stopped");
    assert_eq!(
        daemon_pid(&td),
        supervisor,
        "a second supervisor was started"
    );
    let log = std::fs::read_to_string(td.path().join("state/daemon.log")).unwrap_or_default();
    assert!(log.contains("bound it again"), "{log}");
}

#[test]
fn a_supervisor_whose_lock_file_is_removed_ends_and_the_next_one_adopts() {
    if !require_root() {
        return;
    }
    let td = TestDir::new("daemon-lock-gone");
    let _g = FleetGuard(&td, vec![]);
    new(&td, "kept", &[], &["/bin/busybox", "sleep", "1000"]);
    plinth(&td).args(["start", "kept"]).assert_success();
    let first = daemon_pid(&td);
    let init = info(&td, "kept")["pid"].as_i64().unwrap();
    // Without its lock file the next command would start a second supervisor on a
    // new one: the first must give way, and its containers must not notice.
    std::fs::remove_file(td.path().join("state/daemon.lock")).unwrap();
    wait_for("the first supervisor gone", Duration::from_secs(10), || {
        !alive(first)
    });
    assert!(
        alive(init as i32),
        "the container ended with its supervisor"
    );
    plinth(&td)
        .args(["stop", "--timeout", "1", "kept"])
        .assert_success();
    assert_ne!(daemon_pid(&td), first);
    assert_eq!(info(&td, "kept")["state"], "stopped");
    assert!(!alive(init as i32));
}
