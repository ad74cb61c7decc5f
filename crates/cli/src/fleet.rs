//! The fleet verbs: `new`, `start NAME`, `stop`, `rm`, `ls`.
//!
//! Records live in `--data-dir` (else `$PLINTH_STATE_DIR`, else
//! `/var/lib/plinth`); running containers under `<--root>/fleet` (default
//! `/run/plinth/fleet`). The storage verbs (`snapshot`, `clone`, `send`,
//! `receive`) are in `storage.rs`.

use std::path::PathBuf;
use std::time::Duration;

use std::io::Write;

use anyhow::{Context, Result};
use plinth_fleet::{parse_size, Action, Base, Bind, ContainerSpec, Fleet, Manifest, Network};

use crate::cli::{Format, GlobalArgs, NewArgs};

/// `--data-dir`, else `$PLINTH_STATE_DIR`, else `/var/lib/plinth`.
fn state_dir(g: &GlobalArgs) -> PathBuf {
    g.data_dir
        .clone()
        .or_else(|| {
            std::env::var_os("PLINTH_STATE_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from("/var/lib/plinth"))
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
    let state = state_dir(g);
    let exe = std::env::current_exe().context("the plinth binary")?;
    Ok(Fleet::open(state, g.state_root().join("fleet"), exe)?)
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
    spec.network = match a.network.as_str() {
        "none" => Network::None,
        "host" => Network::Host,
        "bridge" => anyhow::bail!("--network bridge: not supported yet; use none or host"),
        other => anyhow::bail!("--network {other}: expected none or host"),
    };
    spec.memory = a.memory.as_deref().map(parse_size).transpose()?;
    spec.cpus = a.cpus;
    spec.pids = a.pids;
    open(g)?.create(spec)?;
    Ok(0)
}

/// `plinth start NAME`.
pub fn start(fleet: &Fleet, name: &str) -> Result<i32> {
    let pid = fleet.start(name)?;
    println!("{name}: running, pid {pid}");
    Ok(0)
}

/// `plinth stop`.
pub fn stop(g: &GlobalArgs, name: &str, timeout: u64) -> Result<i32> {
    open(g)?.stop(name, Duration::from_secs(timeout))?;
    Ok(0)
}

/// `plinth rm`.
pub fn rm(g: &GlobalArgs, name: &str, force: bool) -> Result<i32> {
    open(g)?.remove(name, force)?;
    Ok(0)
}

/// `plinth ls`.
pub fn ls(g: &GlobalArgs, format: Format) -> Result<i32> {
    let list = open(g)?.list()?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&list)?),
        Format::Table => {
            println!(
                "{:<24} {:<8} {:>8}  {:<24} COMMAND",
                "NAME", "STATE", "PID", "BASE"
            );
            for c in list {
                println!(
                    "{:<24} {:<8} {:>8}  {:<24} {}",
                    c.name,
                    c.state,
                    c.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                    c.base,
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
    let fleet = open(g)?;
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
    let fleet = open(g)?;
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
