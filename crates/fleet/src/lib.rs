//! Host-platform containers: every container is a thin OverlayFS upper
//! layer over one read-only platform root (the host's `/`, or a directory
//! holding a distribution), with its own /proc, /sys, /dev and /tmp.
//!
//! [`Fleet`] keeps its records in SQLite (`db.rs`) under the state
//! directory (`/var/lib/plinth`), one directory per container with its
//! upper and work layers and its OCI bundle, and runs containers with
//! plinth's own OCI runtime under a runtime root of its own
//! (`/run/plinth/fleet`). A container's process is started by a separate
//! `plinth run --detach` process (the fork path stays single-threaded and
//! the container's output goes to its log file), then belongs to no shim.
//!
//! ```no_run
//! use plinth_fleet::{Base, ContainerSpec, Fleet};
//! # fn main() -> Result<(), plinth_fleet::FleetError> {
//! let fleet = Fleet::open("/var/lib/plinth", "/run/plinth/fleet", "/usr/bin/plinth")?;
//! let spec = ContainerSpec::new("web-1", Base::Host, vec!["/bin/sleep".into(), "1000".into()])?;
//! fleet.create(spec)?;
//! fleet.start("web-1")?;
//! fleet.stop("web-1", std::time::Duration::from_secs(10))?;
//! fleet.remove("web-1", false)?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod apply;
mod bundle;
mod db;
mod netns;
mod spec;
mod storage;
mod upgrade;

pub use apply::{Action, Manifest, Plan};
pub use db::Record;
pub use spec::{parse_size, Base, Bind, ContainerSpec, Network, Restart, DEFAULT_HIDE};
pub use storage::Received;
pub use upgrade::{Affected, UpgradeReport};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use plinth_runtime::{RuntimeRoot, Status};
use serde::Serialize;
use thiserror::Error;

/// Why a fleet command failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FleetError {
    /// An option or name is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// No container of that name.
    #[error("{0}: no such container")]
    NotFound(String),
    /// A container of that name exists.
    #[error("{0}: a container of that name exists")]
    Exists(String),
    /// The container is in the wrong state for the command.
    #[error("{name}: {why}")]
    State {
        /// The container.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// The database.
    #[error("fleet database: {0}")]
    Db(String),
    /// A file system or kernel operation.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the file.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The runtime refused.
    #[error("{0}")]
    Runtime(String),
    /// Layers, snapshots and streams.
    #[error(transparent)]
    Store(#[from] plinth_store::StoreError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> FleetError {
    let what = what.into();
    move |source| FleetError::Io { what, source }
}

/// One line of `plinth ls`.
#[derive(Clone, Debug, Serialize)]
pub struct ContainerInfo {
    /// The name.
    pub name: String,
    /// `running`, `stopped` or `failed`.
    pub state: String,
    /// The init's host pid while running.
    pub pid: Option<i32>,
    /// `host` or `dir:PATH`.
    pub base: String,
    /// When it last started.
    pub started_at: Option<String>,
    /// When it was made.
    pub created_at: String,
    /// The command.
    pub command: Vec<String>,
}

/// The containers of one host.
pub struct Fleet {
    state_dir: PathBuf,
    runtime: RuntimeRoot,
    runtime_exe: PathBuf,
    db: db::Db,
}

impl Fleet {
    /// Opens (creating) the fleet whose records live in `state_dir` and
    /// whose running containers are under the runtime root `run_dir`;
    /// `runtime_exe` is the `plinth` binary that starts containers.
    pub fn open(
        state_dir: impl Into<PathBuf>,
        run_dir: impl Into<PathBuf>,
        runtime_exe: impl Into<PathBuf>,
    ) -> Result<Fleet, FleetError> {
        let state_dir = state_dir.into();
        let containers = state_dir.join("containers");
        std::fs::create_dir_all(&containers).map_err(io(containers.display().to_string()))?;
        let db = db::Db::open(&state_dir.join("fleet.db"))?;
        Ok(Fleet {
            state_dir,
            runtime: RuntimeRoot::new(run_dir.into()),
            runtime_exe: runtime_exe.into(),
            db,
        })
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.state_dir.join("containers").join(name)
    }

    /// Whether a container of this name is recorded.
    pub fn exists(&self, name: &str) -> Result<bool, FleetError> {
        Ok(self.db.get(name)?.is_some())
    }

    fn record(&self, name: &str) -> Result<Record, FleetError> {
        self.db
            .get(name)?
            .ok_or_else(|| FleetError::NotFound(name.to_string()))
    }

    /// `plinth new`: records the container and makes its layers (hidden
    /// paths become opaque, empty directories of the upper layer). It does
    /// not start it. A failure leaves nothing behind.
    pub fn create(&self, spec: ContainerSpec) -> Result<(), FleetError> {
        spec.validate()?;
        let dir = self.dir(&spec.name);
        if self.db.get(&spec.name)?.is_some() {
            return Err(FleetError::Exists(spec.name.clone()));
        }
        let made = bundle::make_layers(&dir, &spec);
        let made = made.and_then(|()| {
            if self.db.insert(&spec, &plinth_runtime::timestamp())? {
                Ok(())
            } else {
                Err(FleetError::Exists(spec.name.clone()))
            }
        });
        if made.is_err() {
            let _ = plinth_store::remove_all(&dir);
        }
        made
    }

    /// The live state of a recorded container: what the runtime says, or
    /// `stopped` when it has no container of that name.
    fn live(&self, rec: &Record) -> (String, Option<i32>) {
        match plinth_runtime::container::state(&self.runtime, &rec.spec.name) {
            Ok(st)
                if matches!(
                    st.status,
                    Status::Running | Status::Created | Status::Paused
                ) =>
            {
                ("running".into(), Some(st.pid))
            }
            Ok(_) if rec.state == "running" => ("failed".into(), None),
            _ if rec.state == "failed" => ("failed".into(), None),
            _ => ("stopped".into(), None),
        }
    }

    /// `plinth start NAME`: mounts the container's root and runs its
    /// command; returns the init's pid.
    pub fn start(&self, name: &str) -> Result<i32, FleetError> {
        // start_many returns the error of a failed start; on success the
        // report has the pid.
        let mut pid = 0;
        self.start_many(&[name.to_string()], 1, &mut |_, r| {
            if let Ok(p) = r {
                pid = *p;
            }
        })?;
        Ok(pid)
    }

    /// Starts `names`, with up to `parallel` runtime processes at once (each
    /// container is still made by its own single-threaded `plinth run`);
    /// `report` gets each result. Returns the first failure once all are
    /// done.
    pub fn start_many(
        &self,
        names: &[String],
        parallel: usize,
        report: &mut dyn FnMut(&str, &Result<i32, FleetError>),
    ) -> Result<(), FleetError> {
        let mut first_err = None;
        let mut running: std::collections::VecDeque<(String, std::process::Child)> =
            std::collections::VecDeque::new();
        let mut done = |name: &str, r: Result<i32, FleetError>| {
            report(name, &r);
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        };
        for name in names {
            match self.prepare_start(name) {
                Ok(child) => running.push_back((name.clone(), child)),
                Err(e) => done(name, Err(e)),
            }
            while running.len() >= parallel.max(1) {
                if let Some((n, c)) = running.pop_front() {
                    done(&n, self.finish_start(&n, c));
                }
            }
        }
        while let Some((n, c)) = running.pop_front() {
            done(&n, self.finish_start(&n, c));
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Everything before the runtime: checks, the root mount, the network
    /// namespace and the config; then the runtime process, not waited for.
    fn prepare_start(&self, name: &str) -> Result<std::process::Child, FleetError> {
        let rec = self.record(name)?;
        if self.live(&rec).0 == "running" {
            return Err(FleetError::State {
                name: name.into(),
                why: "already running".into(),
            });
        }
        // Leftovers of a container that ended without `stop`.
        let _ = plinth_runtime::container::delete(&self.runtime, name, true);
        let dir = self.dir(name);
        bundle::release(&dir);
        bundle::mount_root(&dir, &rec.spec)?;
        let netns = dir.join("netns");
        let spawned = bundle::check_command(&dir, &rec.spec)
            .and_then(|()| match rec.spec.network {
                Network::None => netns::create(&netns).map(|()| Some(netns.clone())),
                Network::Host => Ok(None),
            })
            .and_then(|ns| bundle::write_config(&dir, &rec.spec, ns.as_deref()))
            .and_then(|()| self.spawn(name, &dir));
        if spawned.is_err() {
            self.undo_start(name);
        }
        spawned
    }

    /// A start that failed leaves no runtime state, mount or namespace.
    fn undo_start(&self, name: &str) {
        let dir = self.dir(name);
        let _ = plinth_runtime::container::delete(&self.runtime, name, true);
        bundle::release(&dir);
        let _ = self.db.set_state(name, "failed", None, None);
    }

    /// Waits for the runtime process of `name` and records the result.
    fn finish_start(&self, name: &str, mut child: std::process::Child) -> Result<i32, FleetError> {
        let dir = self.dir(name);
        let started = child
            .wait()
            .map_err(io(self.runtime_exe.display().to_string()))
            .and_then(|status| {
                if status.success() {
                    plinth_runtime::container::state(&self.runtime, name)
                        .map(|st| st.pid)
                        .map_err(|e| FleetError::Runtime(format!("{name}: {e}")))
                } else {
                    let why = std::fs::read_to_string(dir.join("start-error.log"))
                        .ok()
                        .and_then(|t| t.lines().last().map(str::to_string))
                        .unwrap_or_else(|| format!("the runtime exited with {status}"));
                    Err(FleetError::Runtime(format!("{name}: cannot start: {why}")))
                }
            });
        match started {
            Ok(pid) => {
                self.db.set_state(
                    name,
                    "running",
                    Some(pid),
                    Some(&plinth_runtime::timestamp()),
                )?;
                Ok(pid)
            }
            Err(e) => {
                self.undo_start(name);
                Err(e)
            }
        }
    }

    /// Starts `plinth --root RUN run --detach` with the container's log as
    /// its output.
    fn spawn(&self, name: &str, dir: &Path) -> Result<std::process::Child, FleetError> {
        let log_path = dir.join("console.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(log_path.display().to_string()))?;
        let err_log = log
            .try_clone()
            .map_err(io(log_path.display().to_string()))?;
        let error_file = dir.join("start-error.log");
        let _ = std::fs::remove_file(&error_file);
        std::process::Command::new(&self.runtime_exe)
            .arg("--root")
            .arg(self.runtime.path())
            .arg("--log")
            .arg(&error_file)
            .args(["run", "--detach", "--bundle"])
            .arg(dir)
            .arg(name)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .spawn()
            .map_err(io(self.runtime_exe.display().to_string()))
    }

    /// `plinth stop NAME`: SIGTERM, then SIGKILL after `timeout`; the
    /// container's runtime state and root mount go away, its upper layer
    /// stays.
    pub fn stop(&self, name: &str, timeout: Duration) -> Result<(), FleetError> {
        self.stop_many(&[name.to_string()], timeout)
    }

    /// Stops `names` together: SIGTERM to all, one grace period, SIGKILL to
    /// what still runs.
    pub fn stop_many(&self, names: &[String], timeout: Duration) -> Result<(), FleetError> {
        let recs = names
            .iter()
            .map(|n| self.record(n))
            .collect::<Result<Vec<_>, _>>()?;
        let mut live = Vec::new();
        for rec in &recs {
            let name = &rec.spec.name;
            if let Ok(st) = plinth_runtime::container::state(&self.runtime, name) {
                if st.status == Status::Running || st.status == Status::Paused {
                    let term = nix::sys::signal::Signal::SIGTERM;
                    let _ = plinth_runtime::container::kill(&self.runtime, name, term, true);
                }
                live.push(rec);
            }
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline && live.iter().any(|r| self.live(r).0 == "running") {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut first_err = None;
        for rec in &recs {
            let name = &rec.spec.name;
            if live.iter().any(|r| r.spec.name == *name) {
                if let Err(e) = plinth_runtime::container::delete(&self.runtime, name, true) {
                    first_err.get_or_insert(FleetError::Runtime(format!("{name}: {e}")));
                    continue;
                }
            }
            bundle::release(&self.dir(name));
            self.db.set_state(name, "stopped", None, None)?;
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// `plinth rm NAME`: a running container needs `force` (then it is
    /// stopped first, without grace).
    pub fn remove(&self, name: &str, force: bool) -> Result<(), FleetError> {
        let rec = self.record(name)?;
        if self.live(&rec).0 == "running" {
            if !force {
                return Err(FleetError::State {
                    name: name.into(),
                    why: "running; stop it first or use --force".into(),
                });
            }
            self.stop(name, Duration::ZERO)?;
        } else {
            let _ = plinth_runtime::container::delete(&self.runtime, name, true);
        }
        let dir = self.dir(name);
        bundle::release(&dir);
        // Subvolumes (the upper layer, read-only snapshots) go whole.
        plinth_store::remove_all(&dir)?;
        self.db.remove(name)
    }

    /// `plinth ls`: every container with its live state.
    pub fn list(&self) -> Result<Vec<ContainerInfo>, FleetError> {
        Ok(self
            .db
            .all()?
            .into_iter()
            .map(|rec| {
                let (state, pid) = self.live(&rec);
                ContainerInfo {
                    name: rec.spec.name.clone(),
                    state,
                    pid,
                    base: rec.spec.base.display(),
                    started_at: rec.started_at.clone(),
                    created_at: rec.created_at.clone(),
                    command: rec.spec.command.clone(),
                }
            })
            .collect())
    }
}
