//! The command line, as clap structs: runc's global flags and verbs.

use std::path::PathBuf;

use clap::{ArgMatches, Args, FromArgMatches, Parser, Subcommand, ValueEnum};

/// plinth: a Linux container runtime with runc's command line.
#[derive(Debug, Parser)]
#[command(name = "plinth", version = concat!(env!("CARGO_PKG_VERSION"), "\nspec: 1.2.0"), about)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Directory for the state of containers [default: /run/plinth]. For
    /// `platform`: the root filesystem whose user space is fingerprinted
    /// [default: /].
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Log file (default: stderr).
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log debug messages.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Use systemd to manage cgroups (not supported: plinth manages cgroupfs itself).
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for runc compatibility (rootless mode is detected).
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,
    /// Accepted for runc compatibility; checkpointing is not supported.
    #[arg(long, global = true, hide = true)]
    pub criu: Option<PathBuf>,
    /// Directory of images, layers and the fleet's records [default:
    /// $PLINTH_STATE_DIR, else /var/lib/plinth].
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl GlobalArgs {
    /// The state directory of containers.
    pub fn state_root(&self) -> PathBuf {
        self.root
            .clone()
            .unwrap_or_else(|| PathBuf::from("/run/plinth"))
    }

    /// The data directory: `--data-dir`, else `$PLINTH_STATE_DIR` (when
    /// not empty), else `/var/lib/plinth`.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .or_else(|| {
                std::env::var_os("PLINTH_STATE_DIR")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from("/var/lib/plinth"))
    }
}

/// A verb's arguments (or sub-verbs), added to its clap command only when
/// that verb is the one being parsed (`Command::defer`). plinth starts on
/// every container start, twice (the sealed re-exec), and building every
/// verb's arguments up front was most of its parsing time.
#[derive(Debug)]
pub struct Lazy<T>(pub T);

impl<T> std::ops::Deref for Lazy<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: FromArgMatches> FromArgMatches for Lazy<T> {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches(m).map(Lazy)
    }
    fn from_arg_matches_mut(m: &mut ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches_mut(m).map(Lazy)
    }
    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(m)
    }
    fn update_from_arg_matches_mut(&mut self, m: &mut ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches_mut(m)
    }
}

impl<T: Args> Args for Lazy<T> {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.defer(T::augment_args)
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        cmd.defer(T::augment_args_for_update)
    }
    fn group_id() -> Option<clap::Id> {
        T::group_id()
    }
}

impl<T: Subcommand> Subcommand for Lazy<T> {
    fn augment_subcommands(cmd: clap::Command) -> clap::Command {
        cmd.defer(T::augment_subcommands)
    }
    fn augment_subcommands_for_update(cmd: clap::Command) -> clap::Command {
        cmd.defer(T::augment_subcommands_for_update)
    }
    fn has_subcommand(name: &str) -> bool {
        T::has_subcommand(name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Bundle directory (holding config.json).
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket that receives the pty master when process.terminal is set.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// File to write the container's init pid to.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Do not use pivot_root (chroot after MS_MOVE; for ramdisk roots).
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not create a new session keyring.
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass N extra file descriptors (3..3+N) to the container.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    /// Container id.
    pub id: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container; its process waits for `start`.
    Create(Lazy<CreateArgs>),
    /// Start the process of a created container; or start the fleet
    /// container NAME (made by `new`).
    Start { id: String },
    /// Make a host-platform container: an OverlayFS upper layer over the
    /// platform root, recorded under /var/lib/plinth (not started).
    New(Lazy<NewArgs>),
    /// Stop fleet containers (SIGTERM, then SIGKILL after --timeout); the
    /// supervisor leaves them stopped.
    Stop {
        /// Seconds to wait after SIGTERM.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
        /// The containers.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Stop fleet containers, then start them again.
    Restart {
        /// Seconds to wait after SIGTERM.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
        /// The containers.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove fleet containers and their upper layers.
    Rm {
        /// Stop them first if they run.
        #[arg(short, long)]
        force: bool,
        /// The containers.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Print a fleet container's output (its rotated logs first).
    Logs {
        /// Keep printing what it writes.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
        /// The container.
        name: String,
    },
    /// An interactive shell in a running fleet container (`exec -t NAME
    /// /bin/sh`).
    Shell {
        /// The container.
        name: String,
        /// The shell.
        #[arg(long, default_value = "/bin/sh")]
        shell: String,
    },
    /// The supervisor of the fleet's containers: the subreaper of their
    /// inits, restart policies, health checks, log rotation, and the API on
    /// <--root>/plinth.sock. Commands that need it start it.
    Daemon(Lazy<DaemonArgs>),
    /// Converge the host to a TOML manifest of containers: create what is
    /// missing, restart what changed, remove what the manifest made and no
    /// longer lists.
    Apply {
        /// The manifest.
        manifest: PathBuf,
        /// Print the plan only.
        #[arg(long)]
        dry_run: bool,
    },
    /// After the platform changed: restart the running containers that map
    /// changed platform files, in waves; report files that containers
    /// shadow.
    Upgrade {
        /// Report only.
        #[arg(long)]
        dry_run: bool,
        /// Containers restarted per wave.
        #[arg(long, default_value_t = 10)]
        parallel: usize,
        /// Seconds a container gets between SIGTERM and SIGKILL.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Install or remove the apt hook that runs `plinth upgrade` after
    /// every dpkg run.
    Hook {
        /// `install` or `remove`.
        #[arg(value_parser = ["install", "remove"])]
        action: String,
        /// apt's configuration directory.
        #[arg(long, default_value = "/etc/apt/apt.conf.d")]
        apt_dir: PathBuf,
    },
    /// Take a read-only snapshot of a fleet container's upper layer:
    /// `NAME@SNAP` (SNAP defaults to the time); `snapshot ls NAME` lists
    /// them, `snapshot rm NAME@SNAP` deletes one.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Snapshot(Lazy<SnapshotArgs>),
    /// Make a new fleet container DST with the spec of SRC and a copy of
    /// its upper layer (or of its snapshot SRC@SNAP).
    Clone {
        /// SRC or SRC@SNAP.
        source: String,
        /// The new container.
        dest: String,
    },
    /// Write a stream of a fleet container's snapshot to standard output
    /// (of a temporary snapshot without @SNAP), for `plinth receive`.
    Send {
        /// NAME or NAME@SNAP.
        target: String,
        /// Send only what changed since this snapshot (the receiver must
        /// hold it).
        #[arg(long, value_name = "SNAP")]
        from: Option<String>,
    },
    /// Make (or, for an incremental stream, update) a fleet container from
    /// a stream of `plinth send` on standard input.
    Receive {
        /// The container's name [default: the sender's].
        name: Option<String>,
    },
    /// List the fleet's containers.
    Ls {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Print the state of a container as runtime-spec JSON.
    State { id: String },
    /// Send a signal to the container's init (or all its processes).
    Kill {
        /// Signal every process of the container.
        #[arg(short, long)]
        all: bool,
        id: String,
        /// Signal name or number.
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container and everything the runtime made for it.
    Delete {
        /// Kill the container first if it runs.
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Create and start a container, and wait for it unless --detach.
    Run {
        #[command(flatten)]
        create: Lazy<CreateArgs>,
        /// Return once the container runs.
        #[arg(short, long)]
        detach: bool,
        /// Accepted for runc compatibility.
        #[arg(long, hide = true)]
        keep: bool,
    },
    /// Run a new process inside a running container.
    Exec(Lazy<ExecArgs>),
    /// List the processes of a container.
    Ps {
        #[arg(short, long, value_enum, default_value = "table")]
        format: Format,
        id: String,
        /// Accepted for runc compatibility and ignored.
        #[arg(trailing_var_arg = true, hide = true)]
        ps_args: Vec<String>,
    },
    /// List containers.
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        format: Format,
        /// Print ids only.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Change a container's resource limits.
    Update(Lazy<UpdateArgs>),
    /// Print resource statistics and OOM events.
    Events {
        /// Print one statistics event and exit.
        #[arg(long)]
        stats: bool,
        /// Interval between statistics events.
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
    /// Write a default config.json.
    Spec {
        /// A spec for a container run by an unprivileged user.
        #[arg(long)]
        rootless: bool,
        /// Where to write config.json.
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
    /// Print the features of this runtime as JSON.
    Features,
    /// Print a shell completion script.
    Completion { shell: clap_complete::Shell },
    /// Print the fingerprint of a platform: this host's CPU and kernel with
    /// the user space of --root (default /).
    Platform(Lazy<PlatformArgs>),
    /// Check that the ELF files and scripts of a root directory load on a
    /// platform, as glibc's dynamic loader would decide.
    Check(Lazy<CheckArgs>),
    /// Write a least-privilege seccomp profile (the `linux.seccomp` object
    /// of config.json) allowing the system calls a root's programs can make.
    Seccomp(Lazy<SeccompArgs>),
    /// Import, list, inspect, remove and export images.
    #[command(subcommand)]
    Image(Lazy<ImageCommand>),
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import an OCI image layout directory, an oci-archive, a
    /// docker-archive (`docker save`, `podman save`) or a root filesystem
    /// tar (plain, gzip or zstd).
    Import {
        /// The archive or directory.
        input: PathBuf,
        /// The name to store it under [default: the one the archive gives,
        /// or a root filesystem tar's file name].
        #[arg(long)]
        name: Option<String>,
        /// Keep setuid/setgid bits and file capabilities (stripped by
        /// default, with a warning).
        #[arg(long)]
        keep_setuid: bool,
        /// Refuse any file larger than this (64M, 2G).
        #[arg(long, value_name = "SIZE", default_value = "16G", value_parser = parse_size)]
        max_file_size: i64,
        /// Refuse a layer whose files add up to more than this.
        #[arg(long, value_name = "SIZE", default_value = "64G", value_parser = parse_size)]
        max_layer_size: i64,
    },
    /// List the images.
    Ls {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Print an image's record as JSON: layers, config, origin.
    Inspect {
        /// The image.
        name: String,
    },
    /// Remove an image, and its layers that no other image uses.
    Rm {
        /// The image.
        name: String,
    },
    /// Write an image as an oci-archive (`podman load -i FILE` reads it).
    Export {
        /// The image.
        name: String,
        /// The archive to write.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlatformFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    Text,
    Json,
    Html,
}

#[derive(Debug, Args)]
pub struct PlatformArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: PlatformFormat,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The root directory to check (never leaves its filesystem), or
    /// `image:NAME` for an imported image.
    pub path: PathBuf,
    /// Resolve libraries in this platform root instead of PATH's own.
    #[arg(long, value_name = "ROOT")]
    pub onto: Option<PathBuf>,
    /// Report only this file (relative to PATH); repeatable. What it needs
    /// is still analysed.
    #[arg(long, value_name = "REL")]
    pub binary: Vec<String>,
    /// Also find the system calls each file can make and judge them
    /// against the kernel.
    #[arg(long)]
    pub syscalls: bool,
    /// Judge against this kernel release (`4.19`) instead of the running
    /// one.
    #[arg(long, value_name = "VERSION")]
    pub kernel: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: CheckFormat,
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The container's name.
    pub name: String,
    /// The platform root: `host` (this host's /), `dir:PATH`, or `image:NAME` (an
    /// imported image's layers).
    #[arg(long, default_value = "host")]
    pub base: String,
    /// A path that is empty in the container; repeatable [default: /root
    /// /home /tmp /var/tmp].
    #[arg(long, value_name = "PATH")]
    pub hide: Vec<PathBuf>,
    /// Mount a host path: `SRC:DST[:ro]`; repeatable.
    #[arg(long, value_name = "SRC:DST[:ro]")]
    pub bind: Vec<String>,
    /// KEY=VALUE; repeatable.
    #[arg(short, long)]
    pub env: Vec<String>,
    /// The working directory.
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// The hostname [default: the name].
    #[arg(long)]
    pub hostname: Option<String>,
    /// `none` (its own network namespace), `host`, or `bridge` (its own,
    /// with eth0 on the host's bridge: PLINTH_BRIDGE, default plinth0, with
    /// an address of PLINTH_BRIDGE_SUBNET, default 10.77.0.0/16).
    #[arg(long, default_value = "none")]
    pub network: String,
    /// `private` (a user namespace with a range of host ids of its own) or
    /// `host` (the host's ids: its root is the host's root).
    #[arg(long, default_value = "private")]
    pub userns: String,
    /// Run the command as `UID[:GID]` (ids inside the container; the group
    /// defaults to the user id).
    #[arg(long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// Memory limit (64M, 1G).
    #[arg(long)]
    pub memory: Option<String>,
    /// CPU limit (0.5 = half a CPU).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Process limit.
    #[arg(long)]
    pub pids: Option<i64>,
    /// What the supervisor does when the command ends.
    #[arg(long, default_value = "no", value_parser = ["no", "on-failure", "always"])]
    pub restart: String,
    /// A shell command run in the container to tell whether it works (exit
    /// status 0: healthy).
    #[arg(long, value_name = "CMD")]
    pub health: Option<String>,
    /// Seconds between health checks once healthy.
    #[arg(long, default_value_t = 30, value_name = "S")]
    pub health_interval: u64,
    /// The command, after `--` (for `--base image:NAME`, the image's
    /// Entrypoint and Cmd by default).
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Stop the running supervisor (its containers keep running).
    #[arg(long)]
    pub stop: bool,
    /// Rotate a container's log once it is larger (bytes, or 10M, 1G).
    #[arg(long, default_value = "10M")]
    pub log_max_size: String,
    /// Rotated logs kept per container.
    #[arg(long, default_value_t = 3)]
    pub log_keep: u32,
    /// Containers started at once.
    #[arg(long, default_value_t = 8)]
    pub parallel: usize,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// NAME or NAME@SNAP.
    #[arg(required = true)]
    pub target: Option<String>,
    #[command(subcommand)]
    pub action: Option<SnapshotAction>,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotAction {
    /// List a container's snapshots.
    Ls {
        /// The container.
        name: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Delete a snapshot.
    Rm {
        /// NAME@SNAP.
        target: String,
    },
}

#[derive(Debug, Args)]
pub struct SeccompArgs {
    /// The root directory whose programs the profile is for, or
    /// `image:NAME` for an imported image.
    pub path: PathBuf,
    /// Allow what this program can call (relative to PATH); repeatable.
    /// Without it, every ELF file of the root.
    #[arg(long, value_name = "REL")]
    pub binary: Vec<String>,
    /// Resolve libraries in this platform root instead of PATH's own.
    #[arg(long, value_name = "ROOT")]
    pub onto: Option<PathBuf>,
    /// Where to write the profile (`-` for standard output).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// process.json with the whole process to run.
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Unix socket that receives the pty master.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Working directory.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Environment variable (KEY=VALUE), repeatable.
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// The user to run as: UID or UID:GID.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Additional group ids, repeatable.
    #[arg(short = 'g', long)]
    pub additional_gids: Vec<u32>,
    /// Add a capability, repeatable.
    #[arg(short, long)]
    pub cap: Vec<String>,
    /// Set no_new_privs.
    #[arg(long)]
    pub no_new_privs: bool,
    /// AppArmor profile.
    #[arg(long)]
    pub apparmor: Option<String>,
    /// SELinux label.
    #[arg(long)]
    pub process_label: Option<String>,
    /// Return once the process runs.
    #[arg(short, long)]
    pub detach: bool,
    /// File to write the process's pid to.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Pass N extra file descriptors (3..3+N).
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    /// Accepted for runc compatibility.
    #[arg(long, hide = true)]
    pub ignore_paused: bool,
    /// Container id.
    pub id: String,
    /// Command and arguments (unless --process).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// JSON file with a linux.resources object ("-" for stdin).
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    /// Memory limit (bytes, or with a unit: 100M, 1g).
    #[arg(long, value_parser = parse_size)]
    pub memory: Option<i64>,
    /// Memory soft limit (bytes, or with a unit).
    #[arg(long, value_parser = parse_size)]
    pub memory_reservation: Option<i64>,
    /// Memory plus swap limit (bytes, or with a unit; -1: unlimited).
    #[arg(long, allow_hyphen_values = true, value_parser = parse_size)]
    pub memory_swap: Option<i64>,
    /// CPU shares (relative weight).
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    /// CPU CFS period in microseconds.
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPU CFS quota in microseconds (-1: none).
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU realtime period in microseconds.
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    /// CPU realtime runtime in microseconds.
    #[arg(long)]
    pub cpu_rt_runtime: Option<i64>,
    /// CPUs to allow (0-3, 0,1).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes to allow.
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Maximum number of tasks (-1 or 0: unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Block IO weight (10-1000).
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// Container id.
    pub id: String,
}

/// A size as runc's `update` takes it: a number of bytes, optionally with a
/// binary unit (`k`, `m`, `g`, `t`, `p`, any case, with an optional `b` or
/// `ib`), or -1 for unlimited.
pub fn parse_size(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if t == "-1" {
        return Ok(-1);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (use bytes or a unit: 100M, 1g)"))?;
    let unit = unit.to_ascii_lowercase();
    let unit = unit.trim_end_matches("ib").trim_end_matches('b');
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => (1u64 << 40) as f64,
        "p" => (1u64 << 50) as f64,
        _ => return Err(format!("{s:?}: unknown unit (use k, m, g, t or p)")),
    };
    let v = n * mult;
    if !(0.0..9.2e18).contains(&v) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(v as i64)
}

#[cfg(test)]
mod tests {
    use super::{parse_size, Cli, Command, ImageCommand};
    use clap::{CommandFactory, Parser};

    #[test]
    fn every_verb_is_well_formed_once_built() {
        // Deferred verbs are built here too: clap checks each of them.
        Cli::command().debug_assert();
    }

    #[test]
    fn deferred_verbs_parse_their_own_flags() {
        let cli =
            Cli::try_parse_from(["plinth", "--root", "/r", "run", "-d", "-b", "/b", "c1"]).unwrap();
        assert_eq!(cli.global.root.as_deref(), Some(std::path::Path::new("/r")));
        let Command::Run { create, detach, .. } = cli.command else {
            panic!("run parsed as another verb");
        };
        assert!(detach);
        assert_eq!(create.bundle, std::path::Path::new("/b"));
        assert_eq!(create.id, "c1");

        let cli = Cli::try_parse_from(["plinth", "exec", "-t", "c1", "sh", "-c", "x"]).unwrap();
        let Command::Exec(exec) = cli.command else {
            panic!("exec parsed as another verb");
        };
        assert!(exec.tty);
        assert_eq!(exec.command, ["sh", "-c", "x"]);

        let cli = Cli::try_parse_from(["plinth", "image", "inspect", "busybox"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Image(ref c) if matches!(&c.0, ImageCommand::Inspect { name } if name == "busybox")
        ));
        let err = Cli::try_parse_from(["plinth", "create", "--no-such-flag", "c1"]).unwrap_err();
        assert!(err.to_string().contains("--no-such-flag"), "{err}");
    }

    #[test]
    fn sizes_as_runc_takes_them() {
        assert_eq!(parse_size("100M"), Ok(100 * 1024 * 1024));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("512kb"), Ok(512 * 1024));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("-1"), Ok(-1));
        assert!(parse_size("12x").is_err());
        assert!(parse_size("lots").is_err());
    }
}
