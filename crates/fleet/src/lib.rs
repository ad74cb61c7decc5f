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
//! The verbs that run or stop containers go through the supervisor
//! ([`serve`], `plinth daemon`), which is the subreaper of every init it
//! starts; [`Client`] talks to it.
//!
//! ```no_run
//! use plinth_fleet::{Base, Client, ContainerSpec, Fleet};
//! # fn main() -> Result<(), plinth_fleet::FleetError> {
//! let mut fleet = Fleet::open("/var/lib/plinth", "/run/plinth/fleet", "/usr/bin/plinth")?;
//! let spec = ContainerSpec::new("web-1", Base::Host, vec!["/bin/sleep".into(), "1000".into()])?;
//! fleet.create(spec)?;
//! let supervisor = Client::connect("/run/plinth/plinth.sock".as_ref()).expect("plinth daemon runs");
//! fleet.attach(supervisor);
//! fleet.start("web-1")?;
//! fleet.stop("web-1", std::time::Duration::from_secs(10))?;
//! fleet.remove("web-1", false)?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod api;
mod apply;
mod bridge;
mod bundle;
mod daemon;
mod db;
mod ipam;
mod logs;
mod namespaces;
mod netlink;
mod netns;
mod packages;
mod spec;
mod storage;
mod sys;
mod upgrade;
mod userns;

pub use api::Client;
pub use apply::{Action, Manifest, Plan};
pub use bridge::{BridgeConfig, DEFAULT_BRIDGE, DEFAULT_SUBNET};
pub use daemon::{serve, supervisor_runs, DaemonOptions};
pub use db::Record;
pub use ipam::Subnet;
pub use logs::{follow, LogRotation};
pub use spec::{
    parse_size, Base, Bind, ContainerSpec, HealthCheck, Network, Restart, User, UserNs,
    DEFAULT_HIDE,
};
pub use storage::Received;
pub use upgrade::{Affected, UpgradeReport};
pub use userns::IdRange;

use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// The supervisor could not be reached or refused.
    #[error("supervisor: {0}")]
    Daemon(String),
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
    /// `running` or `stopped`: what it was last asked to be.
    pub desired: String,
    /// The exit status of its last run.
    pub exit_code: Option<i32>,
    /// How often the supervisor restarted it.
    pub restarts: i64,
    /// `starting`, `healthy` or `unhealthy` when it has a health command.
    pub health: Option<String>,
    /// A bridge container's address.
    pub address: Option<std::net::Ipv4Addr>,
    /// A private user namespace's host ids.
    pub ids: Option<IdRange>,
}

/// The containers of one host.
pub struct Fleet {
    state_dir: PathBuf,
    runtime: RuntimeRoot,
    runtime_exe: PathBuf,
    db: db::Db,
    daemon: Option<Client>,
    bridge: BridgeConfig,
    packages: packages::Cache,
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
            daemon: None,
            bridge: BridgeConfig::default(),
            packages: packages::Cache::default(),
        })
    }

    /// The bridge and subnet of `--network bridge` containers (default:
    /// [`DEFAULT_BRIDGE`] with [`DEFAULT_SUBNET`]).
    pub fn with_bridge(mut self, bridge: BridgeConfig) -> Fleet {
        self.bridge = bridge;
        self
    }

    /// Sends the verbs that run or stop containers (`start`, `stop`,
    /// `restart`, `rm`, and `apply` and `upgrade`, which use them) to the
    /// supervisor behind `client`, which becomes the subreaper of what it
    /// starts and applies restart policies.
    pub fn attach(&mut self, client: Client) {
        self.daemon = Some(client);
    }

    fn client(&self) -> Result<&Client, FleetError> {
        self.daemon.as_ref().ok_or_else(|| {
            FleetError::Daemon("no supervisor attached (`plinth daemon` runs containers)".into())
        })
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// A container's log file (`console.log`; `console.log.1` and so on
    /// are older).
    pub fn log_path(&self, name: &str) -> Result<PathBuf, FleetError> {
        self.record(name)?;
        Ok(self.dir(name).join("console.log"))
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
        let spec = self.resolve(spec)?;
        spec.validate()?;
        let dir = self.dir(&spec.name);
        if self.db.get(&spec.name)?.is_some() {
            return Err(FleetError::Exists(spec.name.clone()));
        }
        let made = bundle::make_layers(&dir, &spec);
        let made = made.and_then(|()| {
            if self.db.insert(&spec, &plinth_runtime::timestamp())? {
                self.own_layers(&spec, &dir).inspect_err(|_| {
                    let _ = self.db.remove(&spec.name);
                })
            } else {
                Err(FleetError::Exists(spec.name.clone()))
            }
        });
        if made.is_err() {
            let _ = plinth_store::remove_all(&dir);
        }
        made
    }

    /// Fills in what an image base brings: its layer directories from the
    /// image store, and, where the spec leaves them open, the image's
    /// command (entry point and arguments), environment, working directory
    /// and numeric user. Other bases are returned as they are.
    pub fn resolve(&self, mut spec: ContainerSpec) -> Result<ContainerSpec, FleetError> {
        let Base::Image { name, layers } = &mut spec.base else {
            return Ok(spec);
        };
        let image = plinth_store::Store::open(&self.state_dir)
            .and_then(|s| s.image(name))
            .map_err(|e| FleetError::Invalid(format!("--base image:{name}: {e}")))?;
        *layers = image.layers.clone();
        let config = &image.config;
        if spec.command.is_empty() {
            spec.command = config.command();
            if spec.command.is_empty() {
                return Err(FleetError::Invalid(format!(
                    "{}: no command, and image {} has neither Entrypoint nor Cmd",
                    spec.name, image.name
                )));
            }
        }
        // The image's environment first; what `new` sets wins.
        let mut env = config.env.clone();
        for e in &spec.env {
            let key = e.split('=').next().unwrap_or_default();
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(e.clone());
        }
        spec.env = env;
        if spec.workdir == Path::new("/") && !config.working_dir.is_empty() {
            spec.workdir = PathBuf::from(&config.working_dir);
        }
        if spec.user.is_none() && !config.user.is_empty() {
            spec.user = Some(User::parse(&config.user).map_err(|_| {
                FleetError::Invalid(format!(
                    "image {}: user {:?} is not numeric; give --user UID[:GID]",
                    image.name, config.user
                ))
            })?);
        }
        Ok(spec)
    }

    /// The containers whose base is image `name` (`plinth image rm`
    /// refuses to remove an image in use).
    pub fn image_users(&self, name: &str) -> Result<Vec<String>, FleetError> {
        Ok(self
            .db
            .all()?
            .into_iter()
            .filter(|r| matches!(&r.spec.base, Base::Image { name: n, .. } if n == name))
            .map(|r| r.spec.name)
            .collect())
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

    /// `plinth start NAME` (through the supervisor): mounts the container's
    /// root and runs its command; returns the init's pid.
    pub fn start(&self, name: &str) -> Result<i32, FleetError> {
        let mut pid = 0;
        self.batch("start", &[name.to_string()], None, false, &mut |_, r| {
            if let Ok(p) = r {
                pid = *p;
            }
        })?;
        Ok(pid)
    }

    /// Starts `names` through the supervisor (a few runtime processes at a
    /// time); one that already runs counts as started. `report` gets each
    /// result. Returns the first failure once all are done.
    pub fn start_many(
        &self,
        names: &[String],
        report: &mut dyn FnMut(&str, &Result<i32, FleetError>),
    ) -> Result<(), FleetError> {
        self.batch("ensure", names, None, false, report)
    }

    /// `plinth stop NAME`: SIGTERM, then SIGKILL after `timeout`; the
    /// container's runtime state and root mount go away, its upper layer
    /// stays, and the supervisor leaves it stopped.
    pub fn stop(&self, name: &str, timeout: Duration) -> Result<(), FleetError> {
        self.stop_many(&[name.to_string()], timeout)
    }

    /// Stops `names` together: SIGTERM to all, one grace period, SIGKILL to
    /// what still runs.
    pub fn stop_many(&self, names: &[String], timeout: Duration) -> Result<(), FleetError> {
        self.batch("stop", names, Some(timeout), false, &mut |_, _| {})
    }

    /// `plinth restart`: stop (as [`Fleet::stop_many`]), then start.
    pub fn restart_many(
        &self,
        names: &[String],
        timeout: Duration,
        report: &mut dyn FnMut(&str, &Result<i32, FleetError>),
    ) -> Result<(), FleetError> {
        self.batch("restart", names, Some(timeout), false, report)
    }

    fn batch(
        &self,
        verb: &str,
        names: &[String],
        timeout: Option<Duration>,
        force: bool,
        report: &mut dyn FnMut(&str, &Result<i32, FleetError>),
    ) -> Result<(), FleetError> {
        if names.is_empty() {
            return Ok(());
        }
        let (verb, ensure) = match verb {
            "ensure" => ("start", true),
            v => (v, false),
        };
        let batch = api::Batch {
            names: names.to_vec(),
            timeout_ms: timeout.map(|t| t.as_millis() as u64),
            force,
            ensure,
        };
        let mut first_err = None;
        for o in self.client()?.batch(verb, &batch)? {
            let r = match o.error {
                Some(e) => Err(FleetError::Runtime(e)),
                None => Ok(o.pid.unwrap_or(0)),
            };
            report(&o.name, &r);
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Everything before the runtime: checks, the root mount, the network
    /// namespace and the config; then the runtime process, not waited for.
    pub(crate) fn prepare_start(&self, name: &str) -> Result<std::process::Child, FleetError> {
        let rec = self.record(name)?;
        if self.live(&rec).0 == "running" {
            return Err(FleetError::State {
                name: name.into(),
                why: "already running".into(),
            });
        }
        // Leftovers of a container that ended without `stop`.
        let _ = self.clear_run(name);
        let dir = self.dir(name);
        let spawned = self.make_namespaces(&rec.spec, &dir).and_then(|ns| {
            bundle::mount_root(&dir, &rec.spec, ns.user_path())?;
            bundle::check_command(&dir, &rec.spec)?;
            self.connect(&rec.spec, &dir, &ns)?;
            bundle::write_config(&dir, &rec.spec, &ns)?;
            self.spawn(name, &dir)
        });
        match spawned {
            Ok(child) => {
                let pid = child.id() as i32;
                let op = plinth_runtime::proc_start_time(nix::unistd::Pid::from_raw(pid))
                    .map(|(start, _)| (pid, start));
                self.db.set_op(name, op)?;
                Ok(child)
            }
            Err(e) => {
                self.undo_start(name);
                Err(e)
            }
        }
    }

    /// Takes away what a run of `name` put on the host: its runtime state
    /// (and cgroup), root mount and namespaces. The runtime's answer is
    /// returned for callers that report it.
    pub(crate) fn clear_run(&self, name: &str) -> Result<(), plinth_runtime::Error> {
        let deleted = plinth_runtime::container::delete(&self.runtime, name, true);
        bundle::release(&self.dir(name));
        deleted
    }

    /// A start that failed leaves no runtime state, mount or namespace.
    fn undo_start(&self, name: &str) {
        let _ = self.clear_run(name);
        let _ = self.db.set_state(name, "failed", None, None);
        let _ = self.db.set_op(name, None);
    }

    /// After the runtime process of `name` ended (`ok`: its exit status, when
    /// known): the init's pid, recorded, or the runtime's error.
    pub(crate) fn complete_start(&self, name: &str, ok: Option<bool>) -> Result<i32, FleetError> {
        let dir = self.dir(name);
        let st = plinth_runtime::container::state(&self.runtime, name);
        let started = match (ok, st) {
            // Started, even if its command has ended already (the supervisor
            // then records how it ended).
            (Some(true), Ok(st)) => Ok(st.pid),
            (None, Ok(st)) if st.status != Status::Stopped => Ok(st.pid),
            (Some(true), Err(e)) => Err(FleetError::Runtime(format!("{name}: {e}"))),
            _ => {
                let why = std::fs::read_to_string(dir.join("start-error.log"))
                    .ok()
                    .and_then(|t| t.lines().last().map(str::to_string))
                    .unwrap_or_else(|| "the runtime failed".into());
                Err(FleetError::Runtime(format!("{name}: cannot start: {why}")))
            }
        };
        match started {
            Ok(pid) => {
                self.db.set_state(
                    name,
                    "running",
                    Some(pid),
                    Some(&plinth_runtime::timestamp()),
                )?;
                self.db.set_op(name, None)?;
                self.db.set_health(name, None)?;
                // The platform's packages as this container starts on them
                // (`upgrade` names what changed since).
                let rec = self.record(name)?;
                if !matches!(rec.spec.base, Base::Image { .. }) {
                    if let Some((key, packages)) = self.packages.state(rec.spec.base.lower()) {
                        self.db.set_platform_state(name, &key, &packages)?;
                    }
                }
                Ok(pid)
            }
            Err(e) => {
                self.undo_start(name);
                Err(e)
            }
        }
    }

    /// After the init of `name` ended: its runtime state, root mount and
    /// network namespace go; the record says `stopped` (a clean exit or a
    /// stop that was asked for) or `failed`.
    pub(crate) fn complete_exit(
        &self,
        name: &str,
        code: Option<i32>,
        asked: bool,
    ) -> Result<(), FleetError> {
        let deleted = self.clear_run(name);
        let state = if asked || code == Some(0) {
            "stopped"
        } else {
            "failed"
        };
        self.db.set_state(name, state, None, None)?;
        self.db.set_exit(name, code)?;
        self.db.set_health(name, None)?;
        deleted.map_err(|e| FleetError::Runtime(format!("{name}: {e}")))
    }

    /// Sends `signal` to every process of `name`.
    pub(crate) fn signal(&self, name: &str, signal: nix::sys::signal::Signal) {
        let _ = plinth_runtime::container::kill(&self.runtime, name, signal, true);
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

    /// `plinth rm NAME` (through the supervisor): a running container needs
    /// `force` (then it is stopped first, without grace).
    pub fn remove(&self, name: &str, force: bool) -> Result<(), FleetError> {
        self.remove_many(&[name.to_string()], force)
    }

    /// Removes `names` (see [`Fleet::remove`]).
    pub fn remove_many(&self, names: &[String], force: bool) -> Result<(), FleetError> {
        self.batch("remove", names, None, force, &mut |_, _| {})
    }

    /// Removes the files and record of a container that does not run.
    pub(crate) fn remove_stopped(&self, name: &str) -> Result<(), FleetError> {
        self.record(name)?;
        let _ = self.clear_run(name);
        let dir = self.dir(name);
        // Subvolumes (the upper layer, read-only snapshots) go whole.
        plinth_store::remove_all(&dir)?;
        self.free_ids(name)?;
        self.db.remove(name)
    }

    /// `plinth ls`: every container with its live state.
    pub fn list(&self) -> Result<Vec<ContainerInfo>, FleetError> {
        self.db
            .all()?
            .into_iter()
            .map(|rec| {
                let (state, pid) = self.live(&rec);
                let (address, ids) = self.held(&rec.spec)?;
                Ok(ContainerInfo {
                    name: rec.spec.name.clone(),
                    state,
                    pid,
                    base: rec.spec.base.display(),
                    started_at: rec.started_at.clone(),
                    created_at: rec.created_at.clone(),
                    command: rec.spec.command.clone(),
                    desired: rec.desired.clone(),
                    exit_code: rec.exit_code,
                    restarts: rec.restarts,
                    health: rec.health.clone(),
                    address,
                    ids,
                })
            })
            .collect()
    }
}
