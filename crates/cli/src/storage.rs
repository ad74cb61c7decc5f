//! The storage verbs of fleet containers: `snapshot NAME[@SNAP]`,
//! `snapshot ls NAME`, `snapshot rm NAME@SNAP`, `clone SRC[@SNAP] DST`,
//! `send NAME[@SNAP] [--from SNAP] > STREAM`, `receive [NAME] < STREAM`.

use std::io::{IsTerminal, Write};

use anyhow::{bail, Context, Result};

use crate::cli::{Format, GlobalArgs, SnapshotAction, SnapshotArgs};
use crate::fleet::open;

/// `NAME` or `NAME@SNAP`.
fn split(target: &str) -> Result<(&str, Option<&str>)> {
    match target.split_once('@') {
        None => Ok((target, None)),
        Some((name, snap)) if !name.is_empty() && !snap.is_empty() => Ok((name, Some(snap))),
        Some(_) => bail!("{target:?}: expected NAME or NAME@SNAPSHOT"),
    }
}

/// `plinth snapshot`.
pub fn snapshot(g: &GlobalArgs, a: SnapshotArgs) -> Result<i32> {
    let fleet = open(g)?;
    match (a.action, a.target) {
        (Some(SnapshotAction::Ls { name, format }), _) => {
            let list = fleet.snapshots(&name)?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&list)?),
                Format::Table => {
                    println!("{:<28} {:<6} {:<21} ID", "SNAPSHOT", "KIND", "CREATED");
                    for s in list {
                        let kind = match s.backend {
                            plinth_store::Backend::Btrfs => "btrfs",
                            plinth_store::Backend::Tree => "copy",
                        };
                        println!("{:<28} {:<6} {:<21} {}", s.name, kind, s.created, s.id);
                    }
                }
            }
        }
        (Some(SnapshotAction::Rm { target }), _) => {
            let (name, snap) = split(&target)?;
            let snap =
                snap.with_context(|| format!("{target}: name the snapshot: NAME@SNAPSHOT"))?;
            fleet.delete_snapshot(name, snap)?;
        }
        (None, Some(target)) => {
            let (name, snap) = split(&target)?;
            let info = fleet.snapshot(name, snap)?;
            println!("{name}@{}", info.name);
        }
        (None, None) => bail!("snapshot: give NAME[@SNAPSHOT], or ls NAME, or rm NAME@SNAPSHOT"),
    }
    Ok(0)
}

/// `plinth clone`.
pub fn clone(g: &GlobalArgs, source: &str, dest: &str) -> Result<i32> {
    let (src, snap) = split(source)?;
    open(g)?.clone_container(src, snap, dest)?;
    Ok(0)
}

/// `plinth send`: the stream goes to standard output, a summary to
/// standard error.
pub fn send(g: &GlobalArgs, target: &str, from: Option<&str>) -> Result<i32> {
    let (name, snap) = split(target)?;
    let stdout = std::io::stdout();
    if stdout.is_terminal() {
        bail!("send: standard output is a terminal; redirect the stream to a file or a pipe");
    }
    let fleet = open(g)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let report = fleet.send(name, snap, from, &mut out)?;
    out.flush().context("write the stream")?;
    let what = match &report.snapshot {
        Some(s) => format!("{name}@{s}"),
        None => format!("{name} (a temporary snapshot)"),
    };
    let kind = match &report.parent {
        Some(p) => format!("incremental on {p}"),
        None => "full".into(),
    };
    eprintln!(
        "sent {what}: {kind}, {} bytes ({} before compression)",
        report.bytes, report.payload_bytes
    );
    Ok(0)
}

/// `plinth receive`.
pub fn receive(g: &GlobalArgs, name: Option<&str>) -> Result<i32> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        bail!("receive: standard input is a terminal; give it a stream of `plinth send`");
    }
    let fleet = open(g)?;
    let mut input = std::io::BufReader::with_capacity(1 << 20, stdin.lock());
    let r = fleet
        .receive(name, &mut input)
        .context("receive from standard input")?;
    let snap = r
        .snapshot
        .as_deref()
        .map(|s| format!("@{s}"))
        .unwrap_or_default();
    match (&r.parent, r.created) {
        (Some(p), _) => println!("{}{snap}: updated (incremental on {p})", r.name),
        (None, true) => println!("{}{snap}: new container", r.name),
        (None, false) => println!("{}{snap}: updated", r.name),
    }
    Ok(0)
}
