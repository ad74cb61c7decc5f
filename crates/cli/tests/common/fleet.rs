//! Driving fleet containers from a test: `plinth` with the fleet's records in the test's
//! directory, `ls --format json` entries, a guard that removes every container of the
//! test's fleet (and stops its supervisor), a GET inside a container's network
//! namespace, waiting for a file a container writes, and a plain HTTP GET over TCP.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{TestCommand, TestDir};

/// `plinth --root ROOT` with the fleet's records in `td/state`. The test dir is made
/// searchable by others: a container's root, in a user namespace, reaches its root
/// filesystem by path.
pub fn plinth(td: &TestDir) -> TestCommand {
    fs::set_permissions(td.path(), fs::Permissions::from_mode(0o711)).unwrap();
    let mut cmd = td.plinth();
    cmd.env("PLINTH_STATE_DIR", td.path().join("state"));
    cmd
}

/// `plinth ls --format json`.
pub fn ls(td: &TestDir) -> Vec<Value> {
    plinth(td)
        .args(["ls", "--format", "json"])
        .json()
        .as_array()
        .unwrap()
        .clone()
}

/// The `ls` entry of `name`.
pub fn entry(td: &TestDir, name: &str) -> Value {
    ls(td)
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed"))
}

/// The container's directory (its upper layer is `upper/`).
pub fn container_dir(td: &TestDir, name: &str) -> PathBuf {
    td.path().join("state/containers").join(name)
}

/// Waits up to 10 s for `path` to exist.
pub fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Removes every container of the test's fleet, even when the test fails.
pub struct FleetGuard<'a>(pub &'a TestDir, pub Vec<(&'static str, String)>);

impl Drop for FleetGuard<'_> {
    fn drop(&mut self) {
        let with_env = |cmd: &mut TestCommand| {
            for (k, v) in &self.1 {
                cmd.env(k, v);
            }
        };
        let mut cmd = plinth(self.0);
        with_env(&mut cmd);
        let names: Vec<String> = cmd
            .args(["ls", "--format", "json"])
            .output()
            .stdout
            .parse::<Value>()
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c["name"].as_str().map(String::from))
            .collect();
        for n in names {
            let mut cmd = plinth(self.0);
            with_env(&mut cmd);
            let _ = cmd.args(["rm", "--force", &n]).output();
        }
        let mut cmd = plinth(self.0);
        with_env(&mut cmd);
        let _ = cmd.args(["daemon", "--stop"]).output();
    }
}

/// `GET path` from `addr` (HTTP/1.0), retried until something listens (10 s):
/// (status line, body).
pub fn http_get(addr: &str, path: &str) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2)) {
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
                    .unwrap();
                let mut text = String::new();
                s.read_to_string(&mut text).unwrap();
                let status = text.lines().next().unwrap_or("").to_string();
                let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
                return (status, body.trim().to_string());
            }
            Err(e) if Instant::now() > deadline => panic!("{addr}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// `GET path` on 127.0.0.1:8080 inside the network namespace of `pid`, from a thread
/// that joins it (the test process keeps the host's), retried until something answers
/// (20 s): the answer's last line, after the HTTP (and CGI) headers.
pub fn get_in_netns(pid: i64, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.0\r\n\r\n");
    std::thread::spawn(move || {
        let ns = fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match std::net::TcpStream::connect("127.0.0.1:8080") {
                Ok(mut s) => {
                    s.write_all(request.as_bytes()).unwrap();
                    let mut body = String::new();
                    let _ = s.read_to_string(&mut body);
                    let text = body.trim_end().lines().last().unwrap_or("").trim();
                    let text = if text.starts_with("HTTP/") { "" } else { text };
                    if !text.is_empty() || Instant::now() > deadline {
                        return text.to_string();
                    }
                }
                Err(e) if Instant::now() > deadline => panic!("pid {pid}: {e}"),
                Err(_) => {}
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .join()
    .unwrap()
}
