//! The state directory: one folder per container under `--root`.
//!
//! `ROOT/ID/state.json` holds what later commands need (the init's pid and
//! start time, the bundle, the cgroup, the hooks to run at delete), written
//! atomically (temp file + rename). `ROOT/ID/exec.fifo` exists while the
//! container is created but not started. The status is never stored: it is
//! derived from the live process (pid plus start time, so a reused pid is
//! not mistaken for the container), the fifo and the freezer.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use nix::unistd::Pid;
use oci_spec::runtime::Hooks;
use serde::{Deserialize, Serialize};

use crate::cgroups::{Cgroup, FreezerState};
use crate::error::Error;

/// The `--root` directory that holds the state of every container.
#[derive(Debug, Clone)]
pub struct RuntimeRoot {
    path: PathBuf,
}

impl RuntimeRoot {
    /// A root at `path` (created on first use).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RuntimeRoot { path: path.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn container_dir(&self, id: &str) -> Result<PathBuf, Error> {
        validate_id(id)?;
        Ok(self.path.join(id))
    }

    /// Ids of every container with a state directory, sorted.
    pub fn ids(&self) -> Result<Vec<String>, Error> {
        let mut ids = Vec::new();
        let entries = match fs::read_dir(&self.path) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
            Err(e) => return Err(Error::io(&self.path, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.path, e))?;
            if entry.path().join(STATE_FILE).exists() {
                if let Some(name) = entry.file_name().to_str() {
                    ids.push(name.to_string());
                }
            }
        }
        ids.sort();
        Ok(ids)
    }
}

/// A container id may not be empty, start with a dot or hold a slash.
pub(crate) fn validate_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_string()))
    }
}

pub(crate) const STATE_FILE: &str = "state.json";
pub(crate) const EXEC_FIFO: &str = "exec.fifo";

/// The lifecycle status of a container (runtime-spec `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being created.
    Creating,
    /// Created; the user's program has not started.
    Created,
    /// The user's program runs.
    Running,
    /// Frozen by `pause`.
    Paused,
    /// The init has exited.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What `state.json` records about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    /// The runtime-spec version.
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    /// The container id.
    pub id: String,
    /// The status as of the last read (derived from the live system, never stored).
    pub status: Status,
    /// The init's pid in the runtime's pid namespace.
    pub pid: i32,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// config.json's annotations.
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// The init's start time (field 22 of /proc/PID/stat), to tell a live
    /// init from a reused pid.
    pub init_start_time: u64,
    /// When the container was created (RFC 3339, UTC).
    pub created: String,
    /// The container's cgroup.
    pub cgroup: Option<Cgroup>,
    /// The hooks of config.json (poststart and poststop run after create).
    #[serde(default)]
    pub hooks: Option<Hooks>,
    /// The rootfs.
    pub rootfs: PathBuf,
    /// The uid that owns the container (the runtime's caller).
    #[serde(default)]
    pub owner: u32,
    /// Whether the init shares the host's pid namespace (then `kill` of
    /// the container must signal every process of its cgroup).
    #[serde(default)]
    pub shared_pid_ns: bool,
    /// The configuration the container was created from (exec joins its
    /// namespaces and applies its seccomp profile).
    #[serde(default)]
    pub spec: Option<oci_spec::runtime::Spec>,
}

impl ContainerState {
    /// Reads the state of container `id`, with its status refreshed.
    pub fn load(root: &RuntimeRoot, id: &str) -> Result<Self, Error> {
        let dir = root.container_dir(id)?;
        let path = dir.join(STATE_FILE);
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_string()))
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        let mut state: ContainerState =
            serde_json::from_slice(&text).map_err(|e| Error::CorruptState {
                path: path.clone(),
                message: e.to_string(),
            })?;
        state.refresh(&dir);
        Ok(state)
    }

    /// Writes `state.json` atomically into `dir`.
    pub(crate) fn save(&self, dir: &Path) -> Result<(), Error> {
        // The state directory lives on tmpfs (/run): the rename is what
        // makes the update atomic; there is nothing to sync.
        let bytes = serde_json::to_vec(self).expect("state serialises");
        write_atomic(&dir.join(STATE_FILE), &bytes)
    }

    /// Re-derives `status` from the live system.
    pub(crate) fn refresh(&mut self, dir: &Path) {
        self.status = if !self.init_alive() {
            Status::Stopped
        } else if dir.join(EXEC_FIFO).exists() {
            Status::Created
        } else if self
            .cgroup
            .as_ref()
            .and_then(|c| c.freezer_state().ok())
            .is_some_and(|s| s == FreezerState::Frozen)
        {
            Status::Paused
        } else {
            Status::Running
        };
    }

    /// Every process of the container: those its cgroup lists or, for a
    /// container with no cgroup of its own that lists processes (one that
    /// inherits those hierarchies, see `cgroups::V1_INHERIT_ANNOTATION`),
    /// those of its own PID namespace, found through `/proc`. `kill --all`,
    /// `ps` and `delete --force` act on these.
    pub(crate) fn processes(&self) -> Result<Vec<Pid>, Error> {
        if let Some(cg) = self.cgroup.as_ref().filter(|cg| cg.lists_processes()) {
            return Ok(cg.pids()?);
        }
        if self.shared_pid_ns || !self.init_alive() {
            return Ok(Vec::new());
        }
        let ns_of = |pid: &str| fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
        let Some(ns) = ns_of(&self.pid.to_string()) else {
            return Ok(Vec::new());
        };
        let entries = fs::read_dir("/proc").map_err(|e| Error::io("/proc", e))?;
        Ok(entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
            .filter(|pid| ns_of(&pid.to_string()).as_ref() == Some(&ns))
            .map(Pid::from_raw)
            .collect())
    }

    /// Whether the init still runs (and is not a zombie).
    pub(crate) fn init_alive(&self) -> bool {
        self.pid > 0
            && proc_start_time(Pid::from_raw(self.pid))
                .is_some_and(|(start, state)| start == self.init_start_time && state != 'Z')
    }

    /// The runtime-spec state object that hooks read on stdin and `state`
    /// prints.
    pub fn oci_state(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "ociVersion": self.oci_version,
            "id": self.id,
            "status": self.status,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": owner_name(self.owner),
        });
        if self.status != Status::Stopped {
            v["pid"] = self.pid.into();
        } else {
            v["pid"] = 0.into();
        }
        if !self.annotations.is_empty() {
            v["annotations"] = serde_json::to_value(&self.annotations).unwrap_or_default();
        }
        v
    }
}

/// The name of `uid` in `/etc/passwd`, else the number, as runc's `list`
/// shows it. The file is read directly rather than through NSS: plinth is
/// linked statically, and a static glibc would load the host's NSS modules.
fn owner_name(uid: u32) -> String {
    fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| passwd_name(&passwd, uid).map(str::to_owned))
        .unwrap_or_else(|| uid.to_string())
}

/// The first user of `uid` in a passwd(5) text.
fn passwd_name(passwd: &str, uid: u32) -> Option<&str> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?.parse::<u32>().ok()?;
        (id == uid && !name.is_empty()).then_some(name)
    })
}

/// Field 22 (start time, in clock ticks since boot) and field 3 (state) of
/// `/proc/PID/stat`.
pub fn proc_start_time(pid: Pid) -> Option<(u64, char)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    // rest starts at field 3; the start time is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, state))
}

/// The current time as RFC 3339 UTC with nanoseconds, as runc writes it.
pub(crate) fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        now.subsec_nanos()
    )
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Writes `pid` to `path` atomically (runc's `--pid-file`).
pub(crate) fn write_pid_file(path: &Path, pid: Pid) -> Result<(), Error> {
    write_atomic(path, pid.to_string().as_bytes())
}

/// Writes `bytes` to `path` through a temporary file in the same directory
/// and a rename, so a reader sees the old content or the new, never a part;
/// a failure names `path` and leaves no temporary file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    let written = fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
    written.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        for bad in ["", "..", "../x", "a/b", ".hidden", "a b"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "abc-1.2_3+x", "0123456789abcdef"] {
            assert!(validate_id(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn passwd_names() {
        let passwd = "# comment\nroot:x:0:0:root:/root:/bin/sh\nbroken\n:x:7:7::/:/bin/false\n\
                      nobody:x:65534:65534::/nonexistent:/bin/false\nalias:x:0:0::/:/bin/sh\n";
        assert_eq!(passwd_name(passwd, 0), Some("root"));
        assert_eq!(passwd_name(passwd, 65534), Some("nobody"));
        assert_eq!(passwd_name(passwd, 7), None);
        assert_eq!(passwd_name(passwd, 1000), None);
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_597), (2026, 5, 24));
    }

    #[test]
    fn own_start_time_is_readable() {
        let (start, state) = proc_start_time(nix::unistd::getpid()).unwrap();
        assert!(start > 0);
        assert!(state == 'R' || state == 'S');
    }
}
