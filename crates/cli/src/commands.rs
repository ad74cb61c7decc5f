//! One function per verb: turn parsed flags into runtime calls and print
//! the result.

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{
    LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources,
    LinuxResourcesBuilder, Process,
};
use plinth_runtime::{container, Bundle, CreateOptions, ExecOptions, RuntimeRoot};

use crate::cli::{Cli, Command, CreateArgs, ExecArgs, Format, UpdateArgs};
use clap::Parser as _;

/// Runs the command; returns the exit code.
pub fn dispatch(cli: Cli) -> Result<i32> {
    let g = &cli.global;
    if g.systemd_cgroup {
        bail!("--systemd-cgroup is not supported: plinth manages cgroups through cgroupfs; configure the engine's cgroup manager as cgroupfs");
    }
    let root = RuntimeRoot::new(g.state_root());
    match cli.command {
        Command::Create(args) => {
            plinth_runtime::ensure_sealed_binary()?;
            let (bundle, opts) = create_options(&args)?;
            container::create(&root, &args.id, &bundle, &opts)?;
            Ok(0)
        }
        Command::Run { create, detach, .. } => {
            plinth_runtime::ensure_sealed_binary()?;
            let (bundle, opts) = create_options(&create)?;
            Ok(container::run(&root, &create.id, &bundle, &opts, detach)?)
        }
        Command::Start { id } => {
            // An OCI container of that id first (engines call `start ID`),
            // else the fleet container of that name.
            if container::state(&root, &id).is_err() {
                if let Some(fleet) = crate::fleet::existing(g)? {
                    if fleet.exists(&id)? {
                        return crate::fleet::start(g, fleet, &id);
                    }
                }
            }
            container::start(&root, &id)?;
            Ok(0)
        }
        Command::New(args) => crate::fleet::new(g, args.0),
        Command::Stop { timeout, names } => crate::fleet::stop(g, &names, timeout),
        Command::Restart { timeout, names } => crate::fleet::restart(g, &names, timeout),
        Command::Rm { force, names } => crate::fleet::rm(g, &names, force),
        Command::Logs { follow, tail, name } => crate::fleet::logs(g, &name, follow, tail),
        Command::Shell { name, shell } => {
            let line = ["plinth", "exec", "--tty", "--", &name, &shell];
            let Command::Exec(args) = Cli::try_parse_from(line)?.command else {
                unreachable!("`exec` parses as Command::Exec");
            };
            exec(&RuntimeRoot::new(g.state_root().join("fleet")), args.0)
        }
        Command::Daemon(args) => crate::fleet::daemon(g, &args),
        Command::Ls { format } => crate::fleet::ls(g, format),
        Command::Snapshot(args) => crate::storage::snapshot(g, args.0),
        Command::Clone { source, dest } => crate::storage::clone(g, &source, &dest),
        Command::Send { target, from } => crate::storage::send(g, &target, from.as_deref()),
        Command::Receive { name } => crate::storage::receive(g, name.as_deref()),
        Command::Apply { manifest, dry_run } => crate::fleet::apply(g, &manifest, dry_run),
        Command::Hook { action, apt_dir } => crate::fleet::hook(&action, &apt_dir),
        Command::Upgrade {
            dry_run,
            parallel,
            timeout,
            format,
        } => crate::fleet::upgrade(g, dry_run, parallel, timeout, format),
        Command::State { id } => {
            let st = container::state(&root, &id)?;
            println!("{}", serde_json::to_string_pretty(&st.oci_state())?);
            Ok(0)
        }
        Command::Kill { all, id, signal } => {
            let sig = container::parse_signal(&signal)?;
            container::kill(&root, &id, sig, all)?;
            Ok(0)
        }
        Command::Delete { force, id } => {
            container::delete(&root, &id, force)?;
            Ok(0)
        }
        Command::Exec(args) => {
            // As with `start`: an OCI container first, else a fleet one.
            if container::state(&root, &args.id).is_err() {
                let fleet_root = RuntimeRoot::new(g.state_root().join("fleet"));
                if container::state(&fleet_root, &args.id).is_ok() {
                    return exec(&fleet_root, args.0);
                }
            }
            exec(&root, args.0)
        }
        Command::Ps { format, id, .. } => ps(&root, &id, format),
        Command::List { format, quiet } => list(&root, format, quiet),
        Command::Pause { id } => {
            container::pause(&root, &id)?;
            Ok(0)
        }
        Command::Resume { id } => {
            container::resume(&root, &id)?;
            Ok(0)
        }
        Command::Update(args) => {
            let res = update_resources(&args)?;
            container::update(&root, &args.id, &res)?;
            Ok(0)
        }
        Command::Events {
            stats,
            interval,
            id,
        } => events(&root, &id, stats, &interval),
        Command::Spec { rootless, bundle } => {
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("{}: exists already; remove it first", path.display());
            }
            let spec = plinth_runtime::template::default_spec(rootless);
            let text = serde_json::to_string_pretty(&spec)?;
            std::fs::write(&path, text + "\n").with_context(|| path.display().to_string())?;
            Ok(0)
        }
        Command::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&plinth_runtime::features())?
            );
            Ok(0)
        }
        Command::Platform(args) => crate::platform::run(g, &args),
        Command::Check(args) => crate::check::run(g, &args),
        Command::Seccomp(args) => crate::check::seccomp(g, &args),
        Command::Image(cmd) => crate::image::run(g, cmd.0),
        Command::Completion { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "plinth", &mut std::io::stdout());
            Ok(0)
        }
    }
}

fn create_options(args: &CreateArgs) -> Result<(Bundle, CreateOptions)> {
    let bundle = Bundle::load(&args.bundle)?;
    let opts = CreateOptions {
        pid_file: args.pid_file.clone(),
        console_socket: args.console_socket.clone(),
        preserve_fds: args.preserve_fds,
        no_pivot: args.no_pivot,
        no_new_keyring: args.no_new_keyring,
    };
    Ok((bundle, opts))
}

fn exec(root: &RuntimeRoot, args: ExecArgs) -> Result<i32> {
    plinth_runtime::ensure_sealed_binary()?;
    let process = match &args.process {
        Some(path) => plinth_runtime::read_process(path)?,
        None => exec_process_from_flags(root, &args)?,
    };
    let opts = ExecOptions {
        detach: args.detach,
        pid_file: args.pid_file.clone(),
        console_socket: args.console_socket.clone(),
        preserve_fds: args.preserve_fds,
    };
    Ok(container::exec(root, &args.id, &process, &opts)?)
}

/// runc's rule: the container's own process is the template, and flags
/// override it.
fn exec_process_from_flags(root: &RuntimeRoot, args: &ExecArgs) -> Result<Process> {
    if args.command.is_empty() {
        bail!("exec: a command is required (or --process FILE)");
    }
    let st = container::state(root, &args.id)?;
    let mut p = st
        .spec
        .as_ref()
        .and_then(|s| s.process().clone())
        .unwrap_or_default();
    p.set_args(Some(args.command.clone()));
    p.set_terminal(Some(args.tty));
    p.set_console_size(None);
    if let Some(cwd) = &args.cwd {
        p.set_cwd(cwd.clone());
    }
    if !args.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        for kv in &args.env {
            let key = kv.split('=').next().unwrap_or_default();
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(kv.clone());
        }
        p.set_env(Some(env));
    }
    let mut user = p.user().clone();
    if let Some(u) = &args.user {
        let (uid, gid) = match u.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (u.as_str(), None),
        };
        user.set_uid(
            uid.parse()
                .with_context(|| format!("--user {u}: uid must be a number"))?,
        );
        user.set_gid(match gid {
            Some(g) => g
                .parse()
                .with_context(|| format!("--user {u}: gid must be a number"))?,
            None => 0,
        });
    }
    if !args.additional_gids.is_empty() {
        user.set_additional_gids(Some(args.additional_gids.clone()));
    }
    p.set_user(user);
    if !args.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        let extra: HashSet<oci_spec::runtime::Capability> = args
            .cap
            .iter()
            .map(|c| {
                let name = if c.starts_with("CAP_") {
                    c.clone()
                } else {
                    format!("CAP_{c}")
                };
                serde_json::from_value(serde_json::Value::String(name.to_ascii_uppercase()))
                    .with_context(|| format!("--cap {c}: unknown capability"))
            })
            .collect::<Result<_>>()?;
        let add = |set: &Option<HashSet<_>>| {
            let mut s = set.clone().unwrap_or_default();
            s.extend(extra.iter().cloned());
            Some(s)
        };
        caps.set_bounding(add(caps.bounding()));
        caps.set_effective(add(caps.effective()));
        caps.set_permitted(add(caps.permitted()));
        p.set_capabilities(Some(caps));
    }
    if args.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(a) = &args.apparmor {
        p.set_apparmor_profile(Some(a.clone()));
    }
    if let Some(l) = &args.process_label {
        p.set_selinux_label(Some(l.clone()));
    }
    Ok(p)
}

fn ps(root: &RuntimeRoot, id: &str, format: Format) -> Result<i32> {
    let pids = container::ps(root, id)?;
    match format {
        Format::Json => {
            let list: Vec<i32> = pids.iter().map(|p| p.as_raw()).collect();
            println!("{}", serde_json::to_string(&list)?);
        }
        Format::Table => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{:>8} {:>8} {:>6}  CMD", "PID", "PPID", "UID")?;
            for pid in pids {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let field = |name: &str| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .and_then(|v| v.split_whitespace().next())
                        .unwrap_or("?")
                        .to_string()
                };
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|b| {
                        b.split(|c| *c == 0)
                            .filter(|s| !s.is_empty())
                            .map(|s| String::from_utf8_lossy(s).into_owned())
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{:>8} {:>8} {:>6}  {cmd}",
                    pid,
                    field("PPid:"),
                    field("Uid:")
                )?;
            }
        }
    }
    Ok(0)
}

fn list(root: &RuntimeRoot, format: Format, quiet: bool) -> Result<i32> {
    let all = container::list(root)?;
    let mut out = std::io::stdout().lock();
    if quiet {
        for c in &all {
            writeln!(out, "{}", c.id)?;
        }
        return Ok(0);
    }
    match format {
        Format::Json => {
            let v: Vec<_> = all.iter().map(|c| c.oci_state()).collect();
            writeln!(out, "{}", serde_json::to_string(&v)?)?;
        }
        Format::Table => {
            writeln!(
                out,
                "{:<24} {:>8} {:<8} {:<40} {:<32} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            )?;
            for c in &all {
                let st = c.oci_state();
                writeln!(
                    out,
                    "{:<24} {:>8} {:<8} {:<40} {:<32} {}",
                    c.id,
                    st["pid"],
                    c.status,
                    c.bundle.display(),
                    c.created,
                    st["owner"].as_str().unwrap_or("")
                )?;
            }
        }
    }
    Ok(0)
}

fn update_resources(a: &UpdateArgs) -> Result<LinuxResources> {
    if let Some(path) = &a.resources {
        let text = if path.as_os_str() == "-" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
            s
        } else {
            std::fs::read_to_string(path).with_context(|| path.display().to_string())?
        };
        return serde_json::from_str(&text)
            .with_context(|| format!("{}: not a linux.resources object", path.display()));
    }
    let mut r = LinuxResourcesBuilder::default();
    if a.memory.is_some() || a.memory_reservation.is_some() || a.memory_swap.is_some() {
        let mut m = LinuxMemoryBuilder::default();
        if let Some(v) = a.memory {
            m = m.limit(v);
        }
        if let Some(v) = a.memory_reservation {
            m = m.reservation(v);
        }
        if let Some(v) = a.memory_swap {
            m = m.swap(v);
        }
        r = r.memory(m.build()?);
    }
    if a.cpu_shares.is_some()
        || a.cpu_period.is_some()
        || a.cpu_quota.is_some()
        || a.cpu_rt_period.is_some()
        || a.cpu_rt_runtime.is_some()
        || a.cpuset_cpus.is_some()
        || a.cpuset_mems.is_some()
    {
        let mut c = LinuxCpuBuilder::default();
        if let Some(v) = a.cpu_shares {
            c = c.shares(v);
        }
        if let Some(v) = a.cpu_period {
            c = c.period(v);
        }
        if let Some(v) = a.cpu_quota {
            c = c.quota(v);
        }
        if let Some(v) = a.cpu_rt_period {
            c = c.realtime_period(v);
        }
        if let Some(v) = a.cpu_rt_runtime {
            c = c.realtime_runtime(v);
        }
        if let Some(v) = &a.cpuset_cpus {
            c = c.cpus(v.clone());
        }
        if let Some(v) = &a.cpuset_mems {
            c = c.mems(v.clone());
        }
        r = r.cpu(c.build()?);
    }
    if let Some(v) = a.pids_limit {
        r = r.pids(LinuxPidsBuilder::default().limit(v).build()?);
    }
    if let Some(v) = a.blkio_weight {
        r = r.block_io(LinuxBlockIoBuilder::default().weight(v).build()?);
    }
    Ok(r.build()?)
}

fn parse_interval(s: &str) -> Result<Duration> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: f64 = num
        .parse()
        .with_context(|| format!("--interval {s}: not a duration"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        _ => bail!("--interval {s}: use ms, s or m"),
    };
    Ok(Duration::from_secs_f64(secs))
}

fn events(root: &RuntimeRoot, id: &str, stats: bool, interval: &str) -> Result<i32> {
    if stats {
        let s = container::stats(root, id)?;
        let ev = serde_json::json!({"type": "stats", "id": id, "data": s});
        println!("{ev}");
        return Ok(0);
    }
    let interval = parse_interval(interval)?;
    container::events(root, id, interval, |ev| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{ev}").is_ok() && out.flush().is_ok()
    })?;
    Ok(0)
}
