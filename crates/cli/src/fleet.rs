//! The fleet verbs: `new`, `start NAME`, `stop`, `restart`, `rm`, `ls`,
//! `logs`, `apply`, `upgrade`, `daemon`.
//!
//! Records live in `--data-dir` (else `$PLINTH_STATE_DIR`, default `/var/lib/plinth`);
//! running containers under `<--root>/fleet` (default `/run/plinth/fleet`); the
//! supervisor listens on `<--root>/plinth.sock`. Verbs that run or stop
//! containers go through the supervisor, and start one when none answers.
//! The storage verbs (`snapshot`, `clone`, `send`, `receive`) are in
//! `storage.rs`.

use std::path::PathBuf;
use std::time::Duration;

use std::io::Write;

use anyhow::{Context, Result};
use plinth_fleet::{
    parse_size, Action, Base, Bind, BridgeConfig, Client, ContainerSpec, DaemonOptions, Fleet,
    HealthCheck, LogRotation, Manifest, Network, Restart, Subnet, User, UserNs, DEFAULT_BRIDGE,
    DEFAULT_SUBNET,
};

use crate::cli::{DaemonArgs, Format, GlobalArgs, NewArgs};

fn state_dir(g: &GlobalArgs) -> PathBuf {
    g.data_dir()
}

/// The fleet of this host, if one was ever made (nothing is created).
pub fn existing(g: &GlobalArgs) -> Result<Option<Fleet>> {
    if state_dir(g).join("fleet.db").is_file() {
        open(g).map(Some)
    } else {
        Ok(None)
    }
}

/// The fleet of this host.
pub fn open(g: &GlobalArgs) -> Result<Fleet> {
    let bridge = bridge()?;
    let state = state_dir(g);
    let exe = std::env::current_exe().context("the plinth binary")?;
    Ok(Fleet::open(state, g.state_root().join("fleet"), exe)?.with_bridge(bridge))
}

/// `PLINTH_BRIDGE` and `PLINTH_BRIDGE_SUBNET`, or the defaults.
fn bridge() -> Result<BridgeConfig> {
    let var = |k: &str, default: &str| {
        std::env::var(k)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_string())
    };
    let subnet = Subnet::parse(&var("PLINTH_BRIDGE_SUBNET", DEFAULT_SUBNET))
        .map_err(|e| anyhow::anyhow!("PLINTH_BRIDGE_SUBNET: {e}"))?;
    BridgeConfig::new(&var("PLINTH_BRIDGE", DEFAULT_BRIDGE), subnet)
        .map_err(|e| anyhow::anyhow!("PLINTH_BRIDGE: {e}"))
}

fn socket(g: &GlobalArgs) -> PathBuf {
    g.state_root().join("plinth.sock")
}

/// The fleet, with the supervisor attached: the one that answers on the
/// socket, or a new one started for it.
pub fn connect(g: &GlobalArgs) -> Result<Fleet> {
    let fleet = open(g)?;
    attach(g, fleet)
}

/// Attaches the supervisor of this data directory, started if none answers.
fn attach(g: &GlobalArgs, mut fleet: Fleet) -> Result<Fleet> {
    let sock = socket(g);
    let client = match Client::connect(&sock) {
        Some(c) => c,
        None => start_daemon(g, &sock)?,
    };
    ensure_ours(g, &sock, &client)?;
    fleet.attach(client);
    Ok(fleet)
}

/// One socket, one data directory: a supervisor of another one would act
/// on other containers.
fn ensure_ours(g: &GlobalArgs, sock: &std::path::Path, client: &Client) -> Result<()> {
    let theirs = client.info()["data_dir"].as_str().map(PathBuf::from);
    let ours = state_dir(g);
    let same =
        |p: &std::path::Path| std::fs::canonicalize(p).ok() == std::fs::canonicalize(&ours).ok();
    if let Some(theirs) = theirs.filter(|t| !same(t)) {
        anyhow::bail!(
            "the supervisor on {} serves {}, not {}: give each data directory its own --root",
            sock.display(),
            theirs.display(),
            ours.display()
        );
    }
    Ok(())
}

/// Starts `plinth daemon` in the background (its output goes to
/// `daemon.log` in the state directory) and waits until it answers.
fn start_daemon(g: &GlobalArgs, sock: &std::path::Path) -> Result<Client> {
    let state = state_dir(g);
    std::fs::create_dir_all(&state).with_context(|| state.display().to_string())?;
    let log_path = state.join("daemon.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| log_path.display().to_string())?;
    let exe = std::env::current_exe().context("the plinth binary")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--root")
        .arg(g.state_root())
        .arg("--data-dir")
        .arg(&state)
        .arg("daemon");
    cmd.env("PLINTH_STATE_DIR", &state)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Its own process group: a Ctrl-C meant for this command does not
    // reach the supervisor.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().context("start the supervisor")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut exited = None;
    loop {
        if let Some(c) = Client::connect(sock) {
            return Ok(c);
        }
        if exited.is_none() {
            exited = child.try_wait()?;
        }
        // Another command may have started one at the same moment: ours
        // then gives way, and the other's answers once it is up.
        if let Some(status) = exited.filter(|_| !plinth_fleet::supervisor_runs(&state)) {
            if let Some(c) = Client::connect(sock) {
                return Ok(c);
            }
            let last = std::fs::read_to_string(&log_path)
                .ok()
                .and_then(|t| t.lines().last().map(str::to_string))
                .unwrap_or_default();
            anyhow::bail!(
                "the supervisor exited ({status}) before it answered on {}: {last}",
                sock.display()
            );
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the supervisor did not answer on {} within 10 s (see {})",
            sock.display(),
            log_path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `plinth daemon`.
pub fn daemon(g: &GlobalArgs, a: &DaemonArgs) -> Result<i32> {
    let state = state_dir(g);
    if a.stop {
        let lock = state.join("daemon.lock");
        let Some(client) = Client::connect(&socket(g)) else {
            println!("no supervisor answers on {}", socket(g).display());
            return Ok(0);
        };
        ensure_ours(g, &socket(g), &client)?;
        let pid = client.info()["pid"]
            .as_i64()
            .context("the supervisor did not say its pid")? as i32;
        let pid = nix::unistd::Pid::from_raw(pid);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
            .with_context(|| format!("signal the supervisor (pid {pid}, {})", lock.display()))?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while nix::sys::signal::kill(pid, None).is_ok() {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "the supervisor (pid {pid}) did not exit within 10 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        println!("supervisor {pid} stopped; its containers keep running");
        return Ok(0);
    }
    let opts = DaemonOptions {
        socket: socket(g),
        logs: LogRotation {
            max_size: parse_size(&a.log_max_size).map_err(|_| {
                anyhow::anyhow!(
                    "--log-max-size {}: expected a size like 10M",
                    a.log_max_size
                )
            })? as u64,
            keep: a.log_keep,
        },
        parallel: a.parallel,
    };
    plinth_fleet::serve(open(g)?, opts)?;
    Ok(0)
}

/// `plinth logs`.
pub fn logs(g: &GlobalArgs, name: &str, follow: bool, tail: Option<usize>) -> Result<i32> {
    let path = open(g)?.log_path(name)?;
    let mut out = std::io::stdout().lock();
    match plinth_fleet::follow(&path, tail, follow, &mut out) {
        Ok(()) => Ok(0),
        // `plinth logs -f | head` ends when its reader does.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(e).with_context(|| path.display().to_string()),
    }
}

/// `plinth new`.
pub fn new(g: &GlobalArgs, a: NewArgs) -> Result<i32> {
    let mut spec = ContainerSpec::new(&a.name, Base::parse(&a.base)?, a.command)?;
    if !a.hide.is_empty() {
        spec.hide = a.hide;
    }
    spec.binds = a
        .bind
        .iter()
        .map(|b| Bind::parse(b))
        .collect::<Result<_, _>>()?;
    spec.env.extend(a.env);
    if let Some(w) = a.workdir {
        spec.workdir = w;
    }
    if let Some(h) = a.hostname {
        spec.hostname = h;
    }
    spec.network = Network::parse(&a.network).map_err(|e| anyhow::anyhow!("--{e}"))?;
    spec.userns = UserNs::parse(&a.userns).map_err(|e| anyhow::anyhow!("--{e}"))?;
    spec.user = a
        .user
        .as_deref()
        .map(User::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--{e}"))?;
    spec.memory = a.memory.as_deref().map(parse_size).transpose()?;
    spec.cpus = a.cpus;
    spec.pids = a.pids;
    spec.restart = Restart::parse(&a.restart)?;
    spec.health = a.health.map(|command| HealthCheck {
        command,
        interval: a.health_interval.max(1),
    });
    open(g)?.create(spec)?;
    Ok(0)
}

/// `plinth start NAME`.
pub fn start(g: &GlobalArgs, fleet: Fleet, name: &str) -> Result<i32> {
    let fleet = attach(g, fleet)?;
    let pid = fleet.start(name)?;
    println!("{name}: running, pid {pid}");
    Ok(0)
}

/// `plinth stop`.
pub fn stop(g: &GlobalArgs, names: &[String], timeout: u64) -> Result<i32> {
    connect(g)?.stop_many(names, Duration::from_secs(timeout))?;
    Ok(0)
}

/// `plinth restart`.
pub fn restart(g: &GlobalArgs, names: &[String], timeout: u64) -> Result<i32> {
    connect(g)?.restart_many(names, Duration::from_secs(timeout), &mut |name, r| {
        if let Ok(pid) = r {
            println!("{name}: running, pid {pid}");
        }
    })?;
    Ok(0)
}

/// `plinth rm`.
pub fn rm(g: &GlobalArgs, names: &[String], force: bool) -> Result<i32> {
    connect(g)?.remove_many(names, force)?;
    Ok(0)
}

/// `plinth ls`.
pub fn ls(g: &GlobalArgs, format: Format) -> Result<i32> {
    let list = open(g)?.list()?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&list)?),
        Format::Table => {
            println!(
                "{:<24} {:<8} {:>8}  {:<24} {:<15} COMMAND",
                "NAME", "STATE", "PID", "BASE", "ADDRESS"
            );
            for c in list {
                println!(
                    "{:<24} {:<8} {:>8}  {:<24} {:<15} {}",
                    c.name,
                    c.state,
                    c.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                    c.base,
                    c.address
                        .map(|a| a.to_string())
                        .unwrap_or_else(|| "-".into()),
                    c.command.join(" ")
                );
            }
        }
    }
    Ok(0)
}

/// `plinth apply`.
pub fn apply(g: &GlobalArgs, path: &std::path::Path, dry_run: bool) -> Result<i32> {
    let manifest = Manifest::read(path)?;
    let fleet = if dry_run { open(g)? } else { connect(g)? };
    let plan = fleet.plan(&manifest)?;
    let summary = format!(
        "plan: {} create, {} update, {} start, {} remove, {} unchanged",
        plan.count(Action::Create),
        plan.count(Action::Update),
        plan.count(Action::Start),
        plan.count(Action::Remove),
        plan.count(Action::Unchanged)
    );
    let word = |a: Action| match a {
        Action::Create => "create",
        Action::Update => "update",
        Action::Start => "start",
        Action::Remove => "remove",
        Action::Unchanged => "unchanged",
    };
    if dry_run {
        for (a, name) in &plan.steps {
            println!("{:<9} {name}", word(*a));
        }
        println!("{summary}");
        return Ok(0);
    }
    let mut out = std::io::stdout().lock();
    fleet.apply(&manifest, &plan, &mut |a, name| {
        if a != Action::Unchanged {
            let _ = writeln!(out, "{:<9} {name}", word(a));
        }
    })?;
    println!("{summary}");
    Ok(0)
}

/// `plinth upgrade`.
pub fn upgrade(
    g: &GlobalArgs,
    dry_run: bool,
    parallel: usize,
    timeout: u64,
    format: Format,
) -> Result<i32> {
    let fleet = if dry_run { open(g)? } else { connect(g)? };
    let table = format == Format::Table;
    let report = fleet.upgrade(
        dry_run,
        parallel,
        Duration::from_secs(timeout),
        &mut |name| {
            if table {
                println!("restarted {name}");
            }
        },
    )?;
    if !table {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for a in &report.affected {
            println!(
                "affected  {}: maps {} changed platform file(s): {}",
                a.name,
                a.changed.len(),
                a.changed.join(" ")
            );
            if !a.packages_changed.is_empty() {
                println!(
                    "  packages changed since it started: {}",
                    a.packages_changed.join(", ")
                );
            }
            for c in &a.check_failures {
                println!("  check fails on the new platform: {c}");
            }
        }
        for a in report.affected.iter().chain(&report.unaffected) {
            for s in &a.shadowed {
                println!("shadowed  {}: {s} hides a platform file changed since it started; it will not get the update", a.name);
            }
        }
        println!(
            "{} affected, {} unaffected, {} restarted{}",
            report.affected.len(),
            report.unaffected.len(),
            report.restarted.len(),
            if dry_run { " (dry run)" } else { "" }
        );
    }
    if let Some((name, why)) = &report.failed {
        anyhow::bail!("{name}: the rollout stopped: {why}");
    }
    Ok(0)
}

/// The apt hook file `plinth hook install` writes.
pub const HOOK_FILE: &str = "80plinth-upgrade";

/// `plinth hook install|remove`.
pub fn hook(action: &str, apt_dir: &std::path::Path) -> Result<i32> {
    let path = apt_dir.join(HOOK_FILE);
    if action == "remove" {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| path.display().to_string()),
        }
        return Ok(0);
    }
    let exe = std::env::current_exe().context("the plinth binary")?;
    let exe = exe
        .to_str()
        .context("the plinth binary's path is not UTF-8")?;
    anyhow::ensure!(
        !exe.contains('"') && !exe.contains('\\'),
        "{exe}: a path with quotes or backslashes cannot go into an apt hook"
    );
    let text = format!(
        "// Written by `plinth hook install`: after dpkg changed the host platform,\n\
         // restart the containers that map changed files (`plinth hook remove` undoes it).\n\
         DPkg::Post-Invoke {{ \"if [ -x {exe} ]; then {exe} upgrade || true; fi\"; }};\n"
    );
    plinth_runtime::write_atomic(&path, text.as_bytes())?;
    println!(
        "{}: plinth upgrade runs after every dpkg run",
        path.display()
    );
    Ok(0)
}
