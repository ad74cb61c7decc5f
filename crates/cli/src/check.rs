//! `plinth check`: judge a root's binaries against a platform and print
//! the report. A progress bar goes to stderr when it is a terminal.
//!
//! A root (or `--onto` platform) given as `image:NAME` is an imported
//! image: its layers are mounted as a read-only overlay on a private temp
//! directory, in a mount namespace of this process alone (so no mount
//! outlives it, whatever happens), and unmounted at the end.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use plinth_compat::platform::KernelInfo;
use plinth_compat::syscalls::seccomp::SeccompProfile;
use plinth_compat::syscalls::Arch;
use plinth_compat::{render, CheckBuilder, Progress, Report};

use crate::cli::{CheckArgs, CheckFormat, GlobalArgs, SeccompArgs};

/// A root to check: a directory, or the mounted view of an image.
struct Root {
    path: PathBuf,
    _view: Option<plinth_store::View>,
}

/// Resolves `image:NAME` to a mounted view of the image; any other path
/// is used as it is.
fn root(g: &GlobalArgs, path: &Path) -> Result<Root> {
    let Some(name) = path.to_str().and_then(|s| s.strip_prefix("image:")) else {
        return Ok(Root {
            path: path.to_path_buf(),
            _view: None,
        });
    };
    private_mounts()?;
    let store = plinth_store::Store::open(g.data_dir())?;
    let view = store.view(name)?;
    Ok(Root {
        path: view.path().to_path_buf(),
        _view: Some(view),
    })
}

/// Moves this process into a mount namespace of its own (once), whose
/// mounts do not propagate back to the host's.
fn private_mounts() -> Result<()> {
    use nix::mount::{mount, MsFlags};
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    if DONE.get().is_some() {
        return Ok(());
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| {
        anyhow::anyhow!("a private mount namespace for the image view: {e} (needs root)")
    })?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| anyhow::anyhow!("making / a slave mount: {e}"))?;
    let _ = DONE.set(());
    Ok(())
}

/// Runs the check; exit status 0 even when files fail (the report says
/// so), 1 only when the check itself cannot run.
pub fn run(g: &GlobalArgs, args: &CheckArgs) -> Result<i32> {
    let target = root(g, &args.path)?;
    let onto = args.onto.as_deref().map(|o| root(g, o)).transpose()?;
    let mut builder = CheckBuilder::new(&target.path).syscalls(args.syscalls);
    if let Some(v) = &args.kernel {
        let k = KernelInfo::as_release(v);
        if k.version.0 == 0 {
            bail!("--kernel {v}: not a kernel release (like 4.19 or 6.1.0)");
        }
        builder = builder.kernel(k);
    }
    let report = run_check(
        builder,
        onto.as_ref().map(|o| o.path.as_path()),
        &args.binary,
    )?;
    let mut out = std::io::stdout().lock();
    match args.format {
        CheckFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
        CheckFormat::Html => out.write_all(render::report_html(&report).as_bytes())?,
        CheckFormat::Text => {
            let color = std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            out.write_all(render::report_text(&report, color).as_bytes())?
        }
    }
    Ok(0)
}

/// `plinth seccomp`: the union of what the named programs (or every file)
/// can call, as a profile.
pub fn seccomp(g: &GlobalArgs, args: &SeccompArgs) -> Result<i32> {
    let target = root(g, &args.path)?;
    let onto = args.onto.as_deref().map(|o| root(g, o)).transpose()?;
    let builder = CheckBuilder::new(&target.path).syscalls(true);
    let report = run_check(
        builder,
        onto.as_ref().map(|o| o.path.as_path()),
        &args.binary,
    )?;
    let mut names = std::collections::BTreeSet::new();
    let mut unresolved = 0;
    for f in &report.files {
        match &f.syscalls {
            Some(s) => names.extend(s.iter().cloned()),
            None if !args.binary.is_empty() => bail!(
                "{}: the system calls it makes cannot be found: {}",
                args.path.join(&f.path).display(),
                f.problems
                    .first()
                    .map(|p| p.detail.as_str())
                    .unwrap_or("not an x86-64 ELF program")
            ),
            None => continue,
        }
        unresolved += f.unresolved_syscall_sites.unwrap_or(0);
        if f.problems.iter().any(|p| {
            matches!(
                p.kind,
                plinth_compat::ProblemKind::MissingLibrary
                    | plinth_compat::ProblemKind::MalformedElf
            )
        }) && !args.binary.is_empty()
        {
            eprintln!(
                "warning: {}: it does not load here ({}); libraries it cannot load are not in the profile",
                f.path, f.problems[0].detail
            );
        }
    }
    if names.is_empty() {
        bail!(
            "{}: no x86-64 ELF program found; nothing to allow",
            args.path.display()
        );
    }
    let profile = SeccompProfile::allowing(&names, Arch::X86_64);
    let text = serde_json::to_string_pretty(&profile)? + "\n";
    if args.output.as_os_str() == "-" {
        std::io::stdout().lock().write_all(text.as_bytes())?;
    } else {
        // A reader never sees half a profile; a failed write leaves none.
        plinth_runtime::write_atomic(&args.output, text.as_bytes())?;
    }
    eprintln!(
        "{}: {} system calls allowed ({} found in {} file{}{}), everything else ENOSYS",
        args.output.display(),
        profile.len(),
        names.len(),
        report.files.iter().filter(|f| f.syscalls.is_some()).count(),
        if report.files.len() == 1 { "" } else { "s" },
        if unresolved > 0 {
            format!("; warning: {unresolved} call sites with unknown numbers")
        } else {
            String::new()
        }
    );
    Ok(0)
}

/// Runs a check with a progress bar on a terminal.
fn run_check(
    mut builder: CheckBuilder,
    onto: Option<&std::path::Path>,
    binary: &[String],
) -> Result<Report> {
    if let Some(onto) = onto {
        builder = builder.onto(onto);
    }
    for b in binary {
        builder = builder.binary(b.clone());
    }
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg:12} [{bar:30}] {pos}/{len} files, {elapsed}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Some(bar)
    } else {
        None
    };
    if let Some(bar) = &bar {
        let bar = Arc::new(Mutex::new(bar.clone()));
        builder = builder.progress(move |p| {
            let Ok(bar) = bar.lock() else { return };
            match p {
                Progress::Found(n) => {
                    bar.set_message("reading");
                    if n == 0 {
                        // The tree is walked while it is read: no total.
                        bar.unset_length();
                    } else {
                        bar.set_length(n as u64);
                    }
                    bar.set_position(0);
                }
                Progress::Resolving(n) => {
                    bar.set_message("resolving");
                    bar.set_length(n as u64);
                    bar.set_position(0);
                }
                Progress::Read | Progress::Resolved => bar.inc(1),
                _ => {}
            }
        });
    }
    let report = builder.build()?.run()?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(report)
}
