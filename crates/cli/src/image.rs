//! The image verbs: `plinth image import|ls|inspect|rm|export`, over the
//! store in the data directory (`--data-dir`, `$PLINTH_STATE_DIR`,
//! `/var/lib/plinth`). Progress bars (layers, bytes) go to stderr when it
//! is a terminal; warnings always do.

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::Result;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use plinth_store::{ImportOptions, LayerOptions, Progress, Store};

use crate::cli::{Format, GlobalArgs, ImageCommand};

/// Runs one image verb.
pub fn run(g: &GlobalArgs, cmd: ImageCommand) -> Result<i32> {
    let store = Store::open(g.data_dir())?;
    match cmd {
        ImageCommand::Import {
            input,
            name,
            keep_setuid,
            max_file_size,
            max_layer_size,
        } => import(
            &store,
            &input,
            name,
            keep_setuid,
            max_file_size,
            max_layer_size,
        ),
        ImageCommand::Ls { format } => ls(&store, format),
        ImageCommand::Inspect { name } => {
            let image = store.image(&name)?;
            println!("{}", serde_json::to_string_pretty(&image)?);
            Ok(0)
        }
        ImageCommand::Rm { name } => {
            // Containers made from it keep it.
            let users = match crate::fleet::existing(g)? {
                Some(fleet) => fleet.image_users(&name)?,
                None => Vec::new(),
            };
            store.remove(&name, &users)?;
            Ok(0)
        }
        ImageCommand::Export { name, output } => {
            let mut bars = Bars::new("exporting");
            store.export(&name, &output, &mut |p| bars.update(p))?;
            bars.finish();
            eprintln!("{}: image {name}", output.display());
            Ok(0)
        }
    }
}

fn import(
    store: &Store,
    input: &Path,
    name: Option<String>,
    keep_setuid: bool,
    max_file_size: i64,
    max_layer_size: i64,
) -> Result<i32> {
    let opts = ImportOptions {
        name,
        layer: LayerOptions {
            keep_setuid,
            max_entry_size: max_file_size.max(0) as u64,
            max_layer_size: max_layer_size.max(0) as u64,
            ..Default::default()
        },
    };
    let mut bars = Bars::new("importing");
    let result = store.import(input, &opts, &mut |p| bars.update(p));
    bars.finish();
    let report = result?;
    let mut err = std::io::stderr().lock();
    let file_name = input.file_name().map(|n| n.to_string_lossy().into_owned());
    for w in &report.warnings {
        // A root filesystem tar is its own one layer: name it once.
        if Some(&w.layer) == file_name.as_ref() {
            writeln!(err, "warning: {}: {}", input.display(), w.warning)?;
        } else {
            writeln!(
                err,
                "warning: {}: {}: {}",
                input.display(),
                w.layer,
                w.warning
            )?;
        }
    }
    let image = &report.image;
    println!(
        "{}: imported {} ({}, {} layer{}: {} new, {} already stored; {})",
        input.display(),
        image.name,
        report.format,
        image.layers.len(),
        if image.layers.len() == 1 { "" } else { "s" },
        report.layers_new,
        report.layers_reused,
        human(image.size)
    );
    Ok(0)
}

fn ls(store: &Store, format: Format) -> Result<i32> {
    let images = store.list()?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&images)?),
        Format::Table => {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:<40} {:<12} {:>6} {:>10}  COMMAND",
                "NAME", "ID", "LAYERS", "SIZE"
            )?;
            for i in images {
                writeln!(
                    out,
                    "{:<40} {:<12} {:>6} {:>10}  {}",
                    i.name,
                    i.id.short(),
                    i.layers.len(),
                    human(i.size),
                    i.config.command().join(" ")
                )?;
            }
        }
    }
    Ok(0)
}

/// `12.3 MB`.
fn human(bytes: u64) -> String {
    let mut v = bytes as f64;
    for unit in ["B", "kB", "MB", "GB"] {
        if v < 1000.0 {
            return if unit == "B" {
                format!("{bytes} B")
            } else {
                format!("{v:.1} {unit}")
            };
        }
        v /= 1000.0;
    }
    format!("{v:.1} TB")
}

/// A layers bar and a bytes bar, on a terminal only.
struct Bars {
    multi: Option<MultiProgress>,
    layers: Option<ProgressBar>,
    bytes: Option<ProgressBar>,
    verb: &'static str,
}

impl Bars {
    fn new(verb: &'static str) -> Bars {
        let multi = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Bars {
            multi,
            layers: None,
            bytes: None,
            verb,
        }
    }

    fn update(&mut self, p: Progress) {
        let Some(multi) = &self.multi else { return };
        match p {
            Progress::Start { layers, bytes } => {
                let style = |t: &str| {
                    ProgressStyle::with_template(t)
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> ")
                };
                let l = multi.add(ProgressBar::new(layers as u64));
                l.set_style(style("{msg:10} [{bar:30}] {pos}/{len} layers"));
                l.set_message(self.verb);
                let b = multi.add(ProgressBar::new(bytes));
                b.set_style(style(
                    "{msg:10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}, {elapsed}",
                ));
                self.layers = Some(l);
                self.bytes = Some(b);
            }
            Progress::Layer { index, reused, .. } => {
                if let Some(l) = &self.layers {
                    l.set_position(index.saturating_sub(1) as u64);
                    l.set_message(if reused { "stored" } else { self.verb });
                }
            }
            Progress::Bytes(n) => {
                if let Some(b) = &self.bytes {
                    b.inc(n);
                }
            }
            _ => {}
        }
    }

    fn finish(&mut self) {
        for b in [self.layers.take(), self.bytes.take()]
            .into_iter()
            .flatten()
        {
            b.finish_and_clear();
        }
    }
}
