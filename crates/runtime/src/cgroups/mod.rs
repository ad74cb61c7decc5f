//! Control groups: layout detection (v1, hybrid, v2), creating a container's
//! cgroup, applying `linux.resources`, freezing, statistics and removal.
//!
//! [`Layout::detect`] reads `/proc/self/mountinfo` and never assumes a mount
//! point. [`Cgroup::open`] resolves the container's directory in every
//! hierarchy (every v1 hierarchy, `name=systemd` included, and the cgroup2
//! mount) without touching anything; the resulting [`Cgroup`] is plain data,
//! stored in the container's `state.json` so that later commands act on the
//! same directories. On a hybrid host each controller is used where it is:
//! in the v1 hierarchy that has it, else in the unified hierarchy if its
//! `cgroup.controllers` lists it; a resource that no hierarchy can enforce
//! is an error naming the controller, never silently dropped.
//!
//! Submodules: `layout` (mounts), `files` (control-file I/O), `resources`
//! (which controller gets which part of `linux.resources`), `v1` and `v2`
//! (the files of each version), `devices` and `bpf` (device rules, v1
//! files and the v2 eBPF filter), `stats` (statistics). Mounting cgroupfs
//! inside the container and the systemd cgroup driver are not handled here.
//!
//! ```no_run
//! use plinth_runtime::cgroups::Cgroup;
//! # fn main() -> Result<(), plinth_runtime::cgroups::CgroupError> {
//! let cg = Cgroup::open(Some("/libpod_parent/libpod-abc"), "abc")?;
//! cg.create()?;
//! cg.apply(&oci_spec::runtime::LinuxResources::default())?;
//! cg.add_task(nix::unistd::Pid::this())?;
//! # Ok(())
//! # }
//! ```

mod bpf;
mod devices;
mod files;
mod layout;
mod resources;
mod stats;
mod v1;
mod v2;

#[cfg(test)]
mod root_tests;
#[cfg(test)]
mod testkit;

use std::collections::BTreeSet;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

pub use layout::{Hierarchy, Layout};
pub use stats::{
    BlkioEntry, BlkioStats, CpuStats, CpuUsage, HugetlbStats, MemoryEntry, MemoryStats, PidsStats,
    Stats, Throttling,
};

/// Errors of cgroup operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CgroupError {
    /// Reading a file or creating or listing a directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The kernel refused a value written to a control file.
    #[error("{path}: cannot write {value:?}: {source}")]
    Write {
        /// The control file.
        path: PathBuf,
        /// The value.
        value: String,
        /// The kernel's answer.
        source: io::Error,
    },
    /// The kernel accepted a value but stored another (e.g. cpu.shares
    /// outside 2..262144).
    #[error("{path}: wrote {wanted:?} but the kernel set {got:?}")]
    Clamped {
        /// The control file.
        path: PathBuf,
        /// What was written.
        wanted: String,
        /// What reads back.
        got: String,
    },
    /// A control file holds something unexpected.
    #[error("{path}: unexpected content {content:?}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The start of its content.
        content: String,
        /// What was expected.
        reason: &'static str,
    },
    /// A line of `/proc/self/mountinfo` or `/proc/self/cgroup` is malformed.
    #[error("{path}:{line}: {message}")]
    MountInfo {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: &'static str,
    },
    /// No cgroup filesystem is mounted.
    #[error("{path}: no cgroup or cgroup2 filesystem is mounted")]
    NoCgroupMounts {
        /// The mount table that was read.
        path: PathBuf,
    },
    /// The calling process has no cgroup in a hierarchy, so a relative
    /// cgroups path cannot be resolved there.
    #[error("/proc/self/cgroup has no entry for the {hierarchy} hierarchy")]
    NoOwnCgroup {
        /// The hierarchy's controllers (`unified` for cgroup2).
        hierarchy: String,
    },
    /// `linux.cgroupsPath` (or the container id it defaults to) is unusable.
    #[error("invalid cgroups path {path:?}: {reason}")]
    InvalidPath {
        /// The path.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// A resource needs a controller that no hierarchy provides.
    #[error("{field}: the {controller} controller is not available")]
    ControllerUnavailable {
        /// The config field (`linux.resources.hugepageLimits`).
        field: &'static str,
        /// The controller.
        controller: String,
    },
    /// A resource needs a v1 controller whose hierarchy the container
    /// inherits (see [`V1_INHERIT_ANNOTATION`]).
    #[error(
        "{field}: the container has no {controller} cgroup of its own \
         (annotation {annotation} lists {controller}), so no limit can be set there",
        annotation = V1_INHERIT_ANNOTATION
    )]
    Inherited {
        /// The config field.
        field: &'static str,
        /// The controller.
        controller: String,
    },
    /// A setting that the cgroup version in use cannot express.
    #[error("{field}: {reason}")]
    Unsupported {
        /// The config field.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// A value that is wrong whatever the host.
    #[error("{field}: invalid value {value:?}: {reason}")]
    InvalidValue {
        /// The config field.
        field: &'static str,
        /// The value.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// An entry of `linux.resources.unified` cannot be written.
    #[error("linux.resources.unified[{key:?}]: {reason}")]
    UnifiedKey {
        /// The file name.
        key: String,
        /// Why.
        reason: &'static str,
    },
    /// An entry of `linux.resources.devices` is malformed.
    #[error("linux.resources.devices[{index}]: {reason}")]
    InvalidDeviceRule {
        /// Its index in the list.
        index: usize,
        /// Why.
        reason: &'static str,
    },
    /// A device rule list that cgroup v1 cannot express exactly: a later
    /// rule takes back part, but not all, of an earlier wildcard.
    #[error(
        "linux.resources.devices: cgroup v1 cannot express \"{rule}\" after \"{earlier}\" \
         (a rule that covers part of an earlier wildcard rule)"
    )]
    DevicesInexpressible {
        /// The later rule.
        rule: String,
        /// The earlier, wider rule.
        earlier: String,
    },
    /// A `bpf(2)` call for the v2 device filter failed.
    #[error("{path}: bpf({op}): {source}{}", if verifier_log.is_empty() { String::new() } else { format!("; verifier log:\n{verifier_log}") })]
    Bpf {
        /// The command (`BPF_PROG_LOAD`, `BPF_PROG_ATTACH`, ...).
        op: &'static str,
        /// The cgroup directory.
        path: PathBuf,
        /// The errno.
        source: Errno,
        /// The verifier's log, for a program the kernel refused.
        verifier_log: String,
    },
    /// Freezing or thawing did not complete in time.
    #[error("{path}: still {state} after asking for {target:?}")]
    FreezeTimeout {
        /// The state file.
        path: PathBuf,
        /// What was asked.
        target: FreezerState,
        /// What the kernel last reported.
        state: String,
    },
    /// Sending a signal to a process of the cgroup failed.
    #[error("kill({pid}, SIGKILL): {source}")]
    Signal {
        /// The process.
        pid: i32,
        /// The errno.
        source: Errno,
    },
    /// A cgroup directory could not be removed because it stays busy.
    #[error("{path}: cannot remove: {source} (processes left: {pids:?})")]
    Busy {
        /// The directory.
        path: PathBuf,
        /// The processes still in it when giving up.
        pids: Vec<i32>,
        /// The last error.
        source: io::Error,
    },
}

/// The annotation naming v1 controllers (comma-separated, e.g. `memory`)
/// in whose hierarchies the container gets no cgroup of its own: its
/// processes stay in the cgroup of the process that created it, and no
/// limit can be set there (and, for `devices`, no device policy is
/// written). A hierarchy is left out when every controller mounted in it
/// is listed (`cpu,cpuacct` needs both; `name=systemd`
/// names the named hierarchy). On a host with cgroup v1 controllers a cgroup
/// costs kernel memory in every hierarchy, and a memory cgroup most (its
/// per-cgroup shrinker state grows with the number of mounted
/// filesystems): a fleet of small containers without memory limits can
/// leave it out. `devices` can be listed only for a container in a user
/// namespace. On a pure cgroup2 host the annotation has no
/// effect, and `cgroup2` in the list names the cgroup2 mount of a hybrid
/// host (the one beside the v1 hierarchies).
pub const V1_INHERIT_ANNOTATION: &str = "io.github.plinth.cgroup.v1-inherit";

/// The name of a hybrid host's cgroup2 hierarchy in
/// [`V1_INHERIT_ANNOTATION`].
const HYBRID_CGROUP2: &str = "cgroup2";

/// The state of a cgroup's freezer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FreezerState {
    /// Every task is stopped.
    Frozen,
    /// Tasks run.
    Thawed,
}

/// The container's directory in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupDir {
    /// Whether this is the cgroup2 hierarchy.
    pub unified: bool,
    /// The v1 hierarchy's controllers (with `name=` entries); empty for
    /// cgroup2.
    pub controllers: Vec<String>,
    /// The hierarchy's mount point.
    pub mountpoint: PathBuf,
    /// The container's directory.
    pub path: PathBuf,
}

/// A container's cgroup in whichever layout the host has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    /// The cgroups path as resolved: absolute (from each hierarchy's root),
    /// or relative to the creating process's cgroups.
    cgroup: PathBuf,
    /// Whether the host is pure v2.
    pure_v2: bool,
    /// One directory per hierarchy.
    dirs: Vec<CgroupDir>,
    /// Controllers of the v1 hierarchies the container inherits
    /// (see [`V1_INHERIT_ANNOTATION`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    inherited: Vec<String>,
}

/// Where a controller's files are for this cgroup.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    /// In the v1 hierarchy that has the controller.
    V1(&'a Path),
    /// In the cgroup2 hierarchy.
    V2(&'a Path),
}

/// Descriptors through which a new process joins a container's cgroup
/// itself; see [`Cgroup::join_handles`].
#[derive(Debug, Default)]
pub(crate) struct JoinHandles {
    /// The cgroup2 directory and its path.
    pub unified: Option<(PathBuf, OwnedFd)>,
    /// Each v1 directory's `tasks` file and its path.
    pub v1_tasks: Vec<(PathBuf, OwnedFd)>,
}

impl JoinHandles {
    /// Moves the calling thread into every v1 directory by writing `0`
    /// to `tasks`. For a process with one thread this is the whole
    /// process, and the kernel then skips the global threadgroup lock
    /// that any other move takes: writing a pid to `cgroup.procs` waits
    /// for an RCU grace period (10 to 20 ms) on the first move of a
    /// burst. The files were opened by the runtime, and the kernel checks
    /// the opener's credentials, so this works from inside a new user
    /// namespace too.
    pub(crate) fn join_v1(&self) -> Result<(), CgroupError> {
        for (path, fd) in &self.v1_tasks {
            match nix::unistd::write(fd, b"0") {
                Ok(1) => {}
                r => {
                    return Err(CgroupError::Write {
                        path: path.clone(),
                        value: "0".into(),
                        source: r.map_or_else(io::Error::from, |_| io::ErrorKind::WriteZero.into()),
                    })
                }
            }
        }
        Ok(())
    }
}

impl Cgroup {
    /// Resolves the container's cgroup on this host. `None` means
    /// `/plinth/<id>`; an absolute path is taken from each hierarchy's
    /// root; a relative path is relative to the calling process's cgroup
    /// in each hierarchy (from `/proc/self/cgroup`). Nothing is created.
    pub fn open(cgroups_path: Option<&str>, container_id: &str) -> Result<Self, CgroupError> {
        Self::open_in(&Layout::detect()?, cgroups_path, container_id)
    }

    /// Like [`Cgroup::open`], with a given layout (for example a cgroup2
    /// mount other than the host's main one).
    pub fn open_in(
        layout: &Layout,
        cgroups_path: Option<&str>,
        container_id: &str,
    ) -> Result<Self, CgroupError> {
        Self::open_inheriting(layout, cgroups_path, container_id, &[], false)
    }

    /// Like [`Cgroup::open_in`], leaving out the v1 hierarchies of the
    /// controllers in `inherit` (the value of [`V1_INHERIT_ANNOTATION`]).
    /// `devices` may be listed only for a container in a user namespace
    /// (`userns`), which can neither make device nodes nor open those of a
    /// filesystem it mounts, so that the device cgroup adds nothing.
    pub fn open_inheriting(
        layout: &Layout,
        cgroups_path: Option<&str>,
        container_id: &str,
        inherit: &[String],
        userns: bool,
    ) -> Result<Self, CgroupError> {
        if !userns && inherit.iter().any(|c| c == "devices") {
            return Err(CgroupError::InvalidValue {
                field: V1_INHERIT_ANNOTATION,
                value: inherit.join(","),
                reason:
                    "outside a user namespace the device policy needs a devices cgroup of its own",
            });
        }
        let cgroup = cgroup_path(cgroups_path, container_id)?;
        let own = if cgroup.is_absolute() {
            Vec::new()
        } else {
            layout::self_cgroups()?
        };
        Self::resolve(layout, cgroup, &own, inherit)
    }

    fn resolve(
        layout: &Layout,
        cgroup: PathBuf,
        own: &[layout::ProcCgroup],
        inherit: &[String],
    ) -> Result<Self, CgroupError> {
        let root = Path::new("/");
        let place = |mountpoint: &Path, mroot: &Path, controllers: &[String]| {
            let full = if cgroup.is_absolute() {
                cgroup.clone()
            } else {
                let base = layout::own_cgroup(own, controllers).ok_or_else(|| {
                    CgroupError::NoOwnCgroup {
                        hierarchy: if controllers.is_empty() {
                            "unified".to_owned()
                        } else {
                            controllers.join(",")
                        },
                    }
                })?;
                base.join(&cgroup)
            };
            Ok::<_, CgroupError>(layout::dir_of(mountpoint, mroot, &full))
        };
        let mut dirs = Vec::new();
        let mut inherited = Vec::new();
        for h in layout.hierarchies() {
            if h.controllers.iter().all(|c| inherit.contains(c)) {
                inherited.extend(h.controllers.iter().cloned());
                continue;
            }
            dirs.push(CgroupDir {
                unified: false,
                controllers: h.controllers.clone(),
                mountpoint: h.mountpoint.clone(),
                path: place(&h.mountpoint, &h.root, &h.controllers)?,
            });
        }
        let hybrid = matches!(layout, Layout::Legacy { .. });
        if let Some(mp) = layout
            .unified_mountpoint()
            .filter(|_| !(hybrid && inherit.iter().any(|c| c == HYBRID_CGROUP2)))
        {
            dirs.push(CgroupDir {
                unified: true,
                controllers: Vec::new(),
                mountpoint: mp.to_owned(),
                path: place(mp, root, &[])?,
            });
        }
        Ok(Cgroup {
            cgroup,
            pure_v2: matches!(layout, Layout::Unified(_)),
            dirs,
            inherited,
        })
    }

    /// Whether the container inherits the v1 hierarchy of `controller`
    /// (see [`V1_INHERIT_ANNOTATION`]).
    pub fn inherits(&self, controller: &str) -> bool {
        self.inherited.iter().any(|c| c == controller)
    }

    /// The cgroups path as resolved (absolute, or relative to the creating
    /// process's cgroups).
    pub fn cgroup_path(&self) -> &Path {
        &self.cgroup
    }

    /// Whether the host is pure cgroup v2.
    pub fn is_pure_v2(&self) -> bool {
        self.pure_v2
    }

    /// The container's directory in every hierarchy.
    pub fn dirs(&self) -> &[CgroupDir] {
        &self.dirs
    }

    /// The container's directory in the v1 hierarchy that has `controller`
    /// (`memory`, `name=systemd`).
    pub fn v1_path(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|d| !d.unified && d.controllers.iter().any(|c| c == controller))
            .map(|d| d.path.as_path())
    }

    /// The container's directory in the cgroup2 hierarchy.
    pub fn unified_path(&self) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|d| d.unified)
            .map(|d| d.path.as_path())
    }

    /// Where `controller` (named `v2_name` in cgroup2, e.g. blkio / io) is
    /// used, or an error naming the controller and the config `field`.
    pub(crate) fn target(
        &self,
        controller: &str,
        v2_name: &str,
        field: &'static str,
    ) -> Result<Target<'_>, CgroupError> {
        if let Some(d) = self.v1_path(controller) {
            return Ok(Target::V1(d));
        }
        if let Some(d) = self.unified_path() {
            if v2::controllers(d)?.iter().any(|c| c == v2_name) {
                return Ok(Target::V2(d));
            }
        }
        if self.inherits(controller) {
            return Err(CgroupError::Inherited {
                field,
                controller: controller.to_owned(),
            });
        }
        Err(CgroupError::ControllerUnavailable {
            field,
            controller: controller.to_owned(),
        })
    }

    /// Creates the container's directory in every hierarchy (with its
    /// parents). On v1, a new cpuset cgroup gets `cpuset.cpus` and
    /// `cpuset.mems` copied down from its parent at every level; on v2 the
    /// controllers are enabled in `cgroup.subtree_control` down the path.
    /// Creating an existing cgroup is fine.
    pub fn create(&self) -> Result<(), CgroupError> {
        for d in &self.dirs {
            if d.unified {
                v2::create(&d.mountpoint, &d.path)?;
                continue;
            }
            std::fs::create_dir_all(&d.path).map_err(|source| CgroupError::Io {
                path: d.path.clone(),
                source,
            })?;
            if d.controllers.iter().any(|c| c == "cpuset") {
                v1::fill_cpuset(&d.mountpoint, &d.path)?;
            }
        }
        Ok(())
    }

    /// Moves process `pid` (with its threads) into the container's cgroup
    /// in every hierarchy, as runc joins every mounted hierarchy.
    pub fn add_task(&self, pid: Pid) -> Result<(), CgroupError> {
        for d in &self.dirs {
            files::write(&d.path, "cgroup.procs", &pid.as_raw().to_string())?;
        }
        Ok(())
    }

    /// Opens what a new process needs to join the container's cgroup
    /// without the runtime moving it: the cgroup2 directory, to fork it
    /// straight in (`clone3` with `CLONE_INTO_CGROUP`), and the `tasks`
    /// file of every v1 directory, open for writing, so that the process
    /// moves itself (see [`JoinHandles::join_v1`]).
    pub(crate) fn join_handles(&self) -> Result<JoinHandles, CgroupError> {
        use std::os::unix::fs::OpenOptionsExt;
        let open = |path: PathBuf, dir: bool| {
            let mut o = std::fs::OpenOptions::new();
            if dir {
                o.read(true).custom_flags(libc::O_DIRECTORY);
            } else {
                o.write(true);
            }
            match o.open(&path) {
                Ok(f) => Ok((path, OwnedFd::from(f))),
                Err(source) => Err(CgroupError::Io { path, source }),
            }
        };
        let mut handles = JoinHandles::default();
        for d in &self.dirs {
            if d.unified {
                handles.unified = Some(open(d.path.clone(), true)?);
            } else {
                handles.v1_tasks.push(open(d.path.join("tasks"), false)?);
            }
        }
        Ok(handles)
    }

    /// Moves process `pid` into the container's cgroup2 directory only
    /// (for a process that could not be forked into it).
    pub(crate) fn add_task_unified(&self, pid: Pid) -> Result<(), CgroupError> {
        match self.unified_path() {
            Some(d) => files::write(d, "cgroup.procs", &pid.as_raw().to_string()),
            None => Ok(()),
        }
    }

    /// Writes the files for `resources`, and only those. Works on a cgroup
    /// in use (for `update`). `devices: None` leaves the device policy as
    /// it is; a list (even empty) replaces it with the list followed by the
    /// runtime's default devices.
    pub fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        resources::apply(self, resources)
    }

    fn freezer(&self) -> Result<Target<'_>, CgroupError> {
        if let Some(d) = self.v1_path("freezer") {
            return Ok(Target::V1(d));
        }
        if let Some(d) = self.unified_path() {
            return Ok(Target::V2(d));
        }
        Err(CgroupError::ControllerUnavailable {
            field: "freezer",
            controller: "freezer".to_owned(),
        })
    }

    /// Freezes or thaws every process of the container, waiting until the
    /// kernel reports the new state. The v1 freezer is used where mounted,
    /// else `cgroup.freeze`.
    pub fn freeze(&self, state: FreezerState) -> Result<(), CgroupError> {
        match self.freezer()? {
            Target::V1(d) => v1::freeze(d, state),
            Target::V2(d) => v2::freeze(d, state),
        }
    }

    /// The freezer state.
    pub fn freezer_state(&self) -> Result<FreezerState, CgroupError> {
        match self.freezer()? {
            Target::V1(d) => v1::freezer_state(d),
            Target::V2(d) => v2::freezer_state(d),
        }
    }

    /// The directory whose `cgroup.procs` lists the container's processes:
    /// the cgroup2 one on a pure v2 host, else the first present of the
    /// pids, freezer, devices and memory hierarchies, else any.
    fn procs_dir(&self) -> Option<&Path> {
        if self.pure_v2 {
            return self.unified_path();
        }
        ["pids", "freezer", "devices", "memory"]
            .iter()
            .find_map(|c| self.v1_path(c))
            .or_else(|| self.dirs.first().map(|d| d.path.as_path()))
    }

    /// Whether one of the container's cgroups lists its processes (not so
    /// when it inherits every hierarchy that would).
    pub fn lists_processes(&self) -> bool {
        self.procs_dir().is_some()
    }

    /// The processes in the container's cgroup and its descendants.
    pub fn pids(&self) -> Result<Vec<Pid>, CgroupError> {
        let mut out = BTreeSet::new();
        if let Some(dir) = self.procs_dir() {
            collect_pids(dir, &mut out)?;
        }
        Ok(out.into_iter().map(Pid::from_raw).collect())
    }

    fn all_pids(&self) -> Result<BTreeSet<i32>, CgroupError> {
        let mut out = BTreeSet::new();
        for d in &self.dirs {
            collect_pids(&d.path, &mut out)?;
        }
        Ok(out)
    }

    /// Resource statistics, from whatever files the layout has.
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        if !self.dirs.iter().any(|d| d.path.is_dir()) {
            let path = self
                .dirs
                .first()
                .map(|d| d.path.clone())
                .unwrap_or_default();
            return Err(CgroupError::Io {
                path,
                source: io::Error::from(io::ErrorKind::NotFound),
            });
        }
        let mut s = Stats::default();
        let (cpu, cpuacct) = (self.v1_path("cpu"), self.v1_path("cpuacct"));
        if cpu.is_some() || cpuacct.is_some() {
            s.cpu = stats::v1_cpu(cpuacct, cpu)?;
        } else if let Some(d) = self.unified_path() {
            s.cpu = stats::v2_cpu(d)?;
        }
        match self.target("memory", "memory", "memory") {
            Ok(Target::V1(d)) => s.memory = stats::v1_memory(d)?,
            Ok(Target::V2(d)) => s.memory = stats::v2_memory(d)?,
            Err(_) => {}
        }
        if let Ok(Target::V1(d) | Target::V2(d)) = self.target("pids", "pids", "pids") {
            s.pids = stats::pids(d)?;
        }
        match self.target("blkio", "io", "blkio") {
            Ok(Target::V1(d)) => s.blkio = stats::v1_blkio(d)?,
            Ok(Target::V2(d)) => s.blkio = stats::v2_io(d)?,
            Err(_) => {}
        }
        let sizes = stats::hugepage_sizes();
        match self.target("hugetlb", "hugetlb", "hugetlb") {
            Ok(Target::V1(d)) => s.hugetlb = stats::v1_hugetlb(d, &sizes)?,
            Ok(Target::V2(d)) => s.hugetlb = stats::v2_hugetlb(d, &sizes)?,
            Err(_) => {}
        }
        Ok(s)
    }

    /// How many processes the kernel's OOM killer has killed in the
    /// container (v1 `memory.oom_control`, v2 `memory.events`); `None`
    /// when the kernel does not count them.
    pub fn oom_kills(&self) -> Result<Option<u64>, CgroupError> {
        match self.target("memory", "memory", "memory") {
            Ok(Target::V1(d)) => stats::oom_kills(d, false),
            Ok(Target::V2(d)) => stats::oom_kills(d, true),
            Err(_) => Ok(None),
        }
    }

    /// Kills what is left in the cgroup and removes the container's
    /// directory (and any sub-cgroups the container made) in every
    /// hierarchy. Idempotent: a missing directory is fine. Parent
    /// directories are left alone, since other containers may share them.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        // The usual end: every process gone and no cgroup made below ours,
        // so one rmdir per hierarchy does it. The kernel refuses (EBUSY)
        // while a process or a child cgroup is left; those take the long
        // way below.
        if self.dirs.iter().all(|d| removed(&d.path)) {
            return Ok(());
        }
        if !self.all_pids()?.is_empty() {
            self.kill_all()?;
            let deadline = Instant::now() + Duration::from_secs(2);
            while !self.all_pids()?.is_empty() && Instant::now() < deadline {
                sleep(Duration::from_millis(10));
            }
        }
        for d in &self.dirs {
            self.remove_tree(&d.path)?;
        }
        Ok(())
    }

    /// SIGKILLs every process: through `cgroup.kill` where the kernel has
    /// it, and one by one otherwise (with the v1 freezer, if any, frozen
    /// meanwhile so that nothing forks, then thawed so the kills land).
    fn kill_all(&self) -> Result<(), CgroupError> {
        if let Some(d) = self.unified_path().filter(|d| d.is_dir()) {
            if v2::kill(d)? && self.pure_v2 {
                return Ok(());
            }
        }
        let frozen = match self.v1_path("freezer").filter(|d| d.is_dir()) {
            Some(d) => v1::freeze(d, FreezerState::Frozen).is_ok().then_some(d),
            None => None,
        };
        let mut result = Ok(());
        for pid in self.all_pids()? {
            match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(source) => result = Err(CgroupError::Signal { pid, source }),
            }
        }
        if let Some(d) = frozen {
            v1::freeze(d, FreezerState::Thawed)?;
        }
        result
    }

    fn remove_tree(&self, dir: &Path) -> Result<(), CgroupError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(CgroupError::Io {
                    path: dir.to_owned(),
                    source,
                })
            }
        };
        for entry in entries {
            let entry = entry.map_err(|source| CgroupError::Io {
                path: dir.to_owned(),
                source,
            })?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                self.remove_tree(&entry.path())?;
            }
        }
        let mut attempt = 0;
        loop {
            match std::fs::remove_dir(dir) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 10 => {
                    attempt += 1;
                    sleep(Duration::from_millis(10 * attempt));
                }
                Err(source) if source.raw_os_error() == Some(libc::EBUSY) => {
                    let mut pids = BTreeSet::new();
                    let _ = collect_pids(dir, &mut pids);
                    return Err(CgroupError::Busy {
                        path: dir.to_owned(),
                        pids: pids.into_iter().collect(),
                        source,
                    });
                }
                Err(source) => {
                    return Err(CgroupError::Io {
                        path: dir.to_owned(),
                        source,
                    })
                }
            }
        }
    }
}

/// Whether `dir` is gone after an `rmdir` (or was already).
fn removed(dir: &Path) -> bool {
    match std::fs::remove_dir(dir) {
        Ok(()) => true,
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

/// Adds the pids of `dir/cgroup.procs` and of every cgroup below `dir`.
fn collect_pids(dir: &Path, out: &mut BTreeSet<i32>) -> Result<(), CgroupError> {
    let Some(procs) = files::read_opt(dir, "cgroup.procs")? else {
        return Ok(());
    };
    out.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Io {
                path: dir.to_owned(),
                source,
            })
        }
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_pids(&entry.path(), out)?;
        }
    }
    Ok(())
}

/// Validates and normalises the cgroups path; `None` is `/plinth/<id>`.
fn cgroup_path(cgroups_path: Option<&str>, container_id: &str) -> Result<PathBuf, CgroupError> {
    let raw = match cgroups_path {
        Some(p) => p.to_owned(),
        None => {
            if container_id.is_empty()
                || container_id.contains('/')
                || container_id.starts_with('.')
            {
                return Err(CgroupError::InvalidPath {
                    path: format!("/plinth/{container_id}"),
                    reason: "the container id is not a single path component",
                });
            }
            format!("/plinth/{container_id}")
        }
    };
    let bad = |reason| CgroupError::InvalidPath {
        path: raw.clone(),
        reason,
    };
    let mut out = PathBuf::new();
    for c in Path::new(&raw).components() {
        match c {
            Component::RootDir => out.push("/"),
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err(bad("\"..\" is not allowed")),
            Component::Prefix(_) => return Err(bad("not a Unix path")),
        }
    }
    if out.components().all(|c| matches!(c, Component::RootDir)) {
        return Err(bad("it names the root of the hierarchy"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hybrid() -> Layout {
        Layout::from_mountinfo(layout::tests_hybrid()).unwrap()
    }

    #[test]
    fn default_and_absolute_paths() {
        let cg = Cgroup::resolve(&hybrid(), cgroup_path(None, "abc").unwrap(), &[], &[]).unwrap();
        assert_eq!(cg.cgroup_path(), Path::new("/plinth/abc"));
        assert_eq!(
            cg.v1_path("memory"),
            Some(Path::new("/sys/fs/cgroup/memory/plinth/abc"))
        );
        assert_eq!(
            cg.v1_path("name=systemd"),
            Some(Path::new("/sys/fs/cgroup/systemd/plinth/abc"))
        );
        assert_eq!(
            cg.unified_path(),
            Some(Path::new("/sys/fs/cgroup/unified/plinth/abc"))
        );
        assert_eq!(cg.dirs().len(), 10);
        assert!(!cg.is_pure_v2());

        let podman = cgroup_path(Some("/libpod_parent/libpod-abc"), "abc").unwrap();
        let v2 = Layout::Unified("/sys/fs/cgroup".into());
        let cg = Cgroup::resolve(&v2, podman, &[], &[]).unwrap();
        assert!(cg.is_pure_v2());
        assert_eq!(
            cg.dirs(),
            [CgroupDir {
                unified: true,
                controllers: vec![],
                mountpoint: "/sys/fs/cgroup".into(),
                path: "/sys/fs/cgroup/libpod_parent/libpod-abc".into(),
            }]
        );
    }

    #[test]
    fn relative_paths_follow_own_cgroups() {
        let own = layout::parse_proc_cgroup(
            "9:name=systemd:/\n4:memory:/process_api/x\n1:cpu:/\n3:cpuset:/\n2:cpuacct:/\n\
             5:devices:/\n6:freezer:/\n7:blkio:/\n8:pids:/\n0::/user.slice\n",
        )
        .unwrap();
        let cg = Cgroup::resolve(
            &hybrid(),
            cgroup_path(Some("ctr/a"), "a").unwrap(),
            &own,
            &[],
        )
        .unwrap();
        assert_eq!(
            cg.v1_path("memory"),
            Some(Path::new("/sys/fs/cgroup/memory/process_api/x/ctr/a"))
        );
        assert_eq!(
            cg.v1_path("cpu"),
            Some(Path::new("/sys/fs/cgroup/cpu/ctr/a"))
        );
        assert_eq!(
            cg.unified_path(),
            Some(Path::new("/sys/fs/cgroup/unified/user.slice/ctr/a"))
        );
        let missing = layout::parse_proc_cgroup("4:memory:/\n").unwrap();
        assert!(matches!(
            Cgroup::resolve(&hybrid(), "rel".into(), &missing, &[]),
            Err(CgroupError::NoOwnCgroup { .. })
        ));
    }

    #[test]
    fn inherited_v1_hierarchies_get_no_directory_and_refuse_limits() {
        let inherit = vec!["memory".to_owned()];
        let cg = Cgroup::resolve(&hybrid(), "/plinth/x".into(), &[], &inherit).unwrap();
        assert_eq!(cg.v1_path("memory"), None);
        assert_eq!(cg.dirs().len(), 9);
        assert!(cg.v1_path("pids").is_some());
        assert!(cg.unified_path().is_some());
        let both = ["memory".to_owned(), "cgroup2".to_owned()];
        let cg = Cgroup::resolve(&hybrid(), "/plinth/x".into(), &[], &both).unwrap();
        assert_eq!((cg.dirs().len(), cg.unified_path()), (8, None));
        // On a pure v2 host there is nothing else to join.
        let v2 = Layout::Unified("/sys/fs/cgroup".into());
        assert!(Cgroup::resolve(&v2, "/x".into(), &[], &both)
            .unwrap()
            .unified_path()
            .is_some());
        let json = serde_json::to_string(&cg).unwrap();
        assert_eq!(serde_json::from_str::<Cgroup>(&json).unwrap(), cg);
        // Without a cgroup2 mount to fall back on, a memory limit is refused.
        let v1 = Layout::from_mountinfo(
            "1 0 0:1 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
             2 0 0:2 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
        )
        .unwrap();
        let cg = Cgroup::resolve(&v1, "/x".into(), &[], &inherit).unwrap();
        let r = oci_spec::runtime::LinuxResourcesBuilder::default()
            .memory(
                oci_spec::runtime::LinuxMemoryBuilder::default()
                    .limit(1 << 24)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        assert_eq!(
            cg.apply(&r).unwrap_err().to_string(),
            "linux.resources.memory: the container has no memory cgroup of its own \
             (annotation io.github.plinth.cgroup.v1-inherit lists memory), so no limit can be set there"
        );
        // A co-mounted hierarchy is left out only when all of it is named.
        let cg = Cgroup::resolve(&v1, "/x".into(), &[], &["cpuacct".to_owned()]).unwrap();
        assert!(cg.v1_path("cpu").is_some());
        let both = ["cpu".to_owned(), "cpuacct".to_owned()];
        let cg = Cgroup::resolve(&v1, "/x".into(), &[], &both).unwrap();
        assert_eq!(cg.v1_path("cpu"), None);
        assert!(cg.v1_path("memory").is_some());
        let devices = ["devices".to_owned()];
        let err = Cgroup::open_inheriting(&hybrid(), Some("/x"), "x", &devices, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("device policy"), "{err}");
        let cg = Cgroup::open_inheriting(&hybrid(), Some("/x"), "x", &devices, true).unwrap();
        assert_eq!(cg.v1_path("devices"), None);
        assert!(cg.inherits("devices"));
    }

    #[test]
    fn bad_paths() {
        assert!(cgroup_path(Some("/a/../b"), "x").is_err());
        assert!(cgroup_path(Some("/"), "x").is_err());
        assert!(cgroup_path(Some(""), "x").is_err());
        assert!(cgroup_path(None, "a/b").is_err());
        assert_eq!(
            cgroup_path(Some("//a/./b/"), "x").unwrap(),
            Path::new("/a/b")
        );
    }

    #[test]
    fn state_json_round_trip() {
        let cg = Cgroup::resolve(&hybrid(), "/plinth/x".into(), &[], &[]).unwrap();
        let json = serde_json::to_string(&cg).unwrap();
        let back: Cgroup = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cg);
    }

    #[test]
    fn missing_controller_is_an_error_not_a_no_op() {
        let layout = Layout::from_mountinfo(
            "1 0 0:1 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
        )
        .unwrap();
        let cg = Cgroup::resolve(&layout, "/x".into(), &[], &[]).unwrap();
        let r = oci_spec::runtime::LinuxResourcesBuilder::default()
            .hugepage_limits(vec![oci_spec::runtime::LinuxHugepageLimitBuilder::default(
            )
            .page_size("2MB")
            .limit(1 << 21)
            .build()
            .unwrap()])
            .build()
            .unwrap();
        assert_eq!(
            cg.apply(&r).unwrap_err().to_string(),
            "linux.resources.hugepageLimits: the hugetlb controller is not available"
        );
        let mut unified = std::collections::HashMap::new();
        unified.insert("memory.high".to_owned(), "1M".to_owned());
        let r = oci_spec::runtime::LinuxResourcesBuilder::default()
            .unified(unified)
            .build()
            .unwrap();
        assert_eq!(
            cg.apply(&r).unwrap_err().to_string(),
            "linux.resources.unified[\"memory.high\"]: this host has no cgroup v2 hierarchy"
        );
        assert!(matches!(
            cg.freeze(FreezerState::Frozen),
            Err(CgroupError::ControllerUnavailable { .. })
        ));
    }

    #[test]
    fn error_messages_name_the_controller() {
        let e = CgroupError::ControllerUnavailable {
            field: "linux.resources.hugepageLimits",
            controller: "hugetlb".into(),
        };
        assert_eq!(
            e.to_string(),
            "linux.resources.hugepageLimits: the hugetlb controller is not available"
        );
    }
}
