//! `plinth check`: judge a root's binaries against a platform and print
//! the report. A progress bar goes to stderr when it is a terminal.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use plinth_compat::{render, CheckBuilder, Progress};

use crate::cli::{CheckArgs, CheckFormat};

/// Runs the check; exit status 0 even when files fail (the report says
/// so), 1 only when the check itself cannot run.
pub fn run(args: &CheckArgs) -> Result<i32> {
    let mut builder = CheckBuilder::new(&args.path);
    if let Some(onto) = &args.onto {
        builder = builder.onto(onto);
    }
    for b in &args.binary {
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
