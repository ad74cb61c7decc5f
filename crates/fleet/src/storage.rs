//! The storage verbs of the fleet: `snapshot`, `clone`, `send` and
//! `receive`. The layers themselves (subvolumes or directories, snapshots,
//! streams) are `plinth_store`'s; this module ties them to the records:
//! a clone or a received container gets a record of its own, and a stream
//! carries the sender's record so that the receiver can make the
//! container again.
//!
//! A snapshot of a running container is allowed: it is a point in time of
//! its upper layer (atomic on btrfs; file by file on other filesystems),
//! as consistent as a power cut would leave it.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};

use plinth_store::{Format, Layers, PayloadReader, SendReport, SnapshotInfo};
use serde::Serialize;

use crate::spec::ContainerSpec;
use crate::{bundle, io, Fleet, FleetError};

/// What `receive` made.
#[derive(Clone, Debug, Serialize)]
pub struct Received {
    /// The container.
    pub name: String,
    /// The snapshot it now holds (`None` when the sender sent a temporary
    /// one).
    pub snapshot: Option<String>,
    /// The snapshot the stream was incremental on.
    pub parent: Option<String>,
    /// `btrfs` or `tree`.
    pub format: Format,
    /// Whether a new container was made (else an existing one was
    /// updated).
    pub created: bool,
}

impl Fleet {
    fn layers(&self, name: &str) -> Result<Layers, FleetError> {
        self.record(name)?;
        Ok(Layers::new(self.dir(name)))
    }

    /// `plinth snapshot NAME[@SNAP]`: a read-only snapshot of the upper
    /// layer, named `snap` or after the time.
    pub fn snapshot(&self, name: &str, snap: Option<&str>) -> Result<SnapshotInfo, FleetError> {
        let layers = self.layers(name)?;
        let snap = match snap {
            Some(s) => s.to_string(),
            None => layers.default_snapshot_name(),
        };
        Ok(layers.snapshot(&snap)?)
    }

    /// `plinth snapshot ls NAME`: its snapshots, oldest first.
    pub fn snapshots(&self, name: &str) -> Result<Vec<SnapshotInfo>, FleetError> {
        Ok(self.layers(name)?.snapshots()?)
    }

    /// `plinth snapshot rm NAME@SNAP`.
    pub fn delete_snapshot(&self, name: &str, snap: &str) -> Result<(), FleetError> {
        Ok(self.layers(name)?.delete_snapshot(snap)?)
    }

    /// `plinth clone SRC[@SNAP] DST`: a new, stopped container with the
    /// spec of `src` under the name and hostname `dst`, whose upper layer
    /// is a copy of `src`'s (or of its snapshot `snap`): a writable
    /// subvolume snapshot on btrfs, else a full copy. A failure leaves
    /// nothing behind.
    pub fn clone_container(
        &self,
        src: &str,
        snap: Option<&str>,
        dst: &str,
    ) -> Result<(), FleetError> {
        let rec = self.record(src)?;
        let mut spec = rec.spec.clone();
        spec.name = dst.to_string();
        spec.hostname = dst.to_string();
        spec.validate()?;
        if self.db.get(dst)?.is_some() {
            return Err(FleetError::Exists(dst.to_string()));
        }
        let dir = self.dir(dst);
        std::fs::create_dir(&dir).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                FleetError::Invalid(format!(
                    "{dst}: {} exists without a record; remove it first",
                    dir.display()
                ))
            } else {
                io(dir.display().to_string())(e)
            }
        })?;
        let made = Layers::new(self.dir(src))
            .clone_to(snap, &dir.join("upper"))
            .map_err(FleetError::from)
            .and_then(|_| bundle::make_work_dirs(&dir))
            .and_then(|()| {
                if self.db.insert(&spec, &plinth_runtime::timestamp())? {
                    Ok(())
                } else {
                    Err(FleetError::Exists(dst.to_string()))
                }
            });
        if made.is_err() {
            let _ = plinth_store::remove_all(&dir);
        }
        made
    }

    /// `plinth send NAME[@SNAP] [--from SNAP]`: writes the stream of the
    /// snapshot `snap` (or of a temporary snapshot of the upper layer) to
    /// `out`, incremental on `from` when given, with the container's record
    /// in its header.
    pub fn send(
        &self,
        name: &str,
        snap: Option<&str>,
        from: Option<&str>,
        out: &mut dyn Write,
    ) -> Result<SendReport, FleetError> {
        let rec = self.record(name)?;
        let record = serde_json::to_value(&rec.spec).expect("a spec serializes");
        Ok(Layers::new(self.dir(name)).send(snap, from, record, out)?)
    }

    /// `plinth receive [NAME]`: applies a stream from `input`. A full stream
    /// makes a new, stopped container (named `name`, or as the sender's);
    /// an incremental one updates the stopped container that holds its
    /// parent snapshot: the new snapshot is added and becomes its upper
    /// layer (what was written there since is replaced). The whole stream
    /// is checked before anything shows: a cut or corrupted stream leaves
    /// no directory, subvolume or record.
    pub fn receive(
        &self,
        name: Option<&str>,
        input: &mut dyn Read,
    ) -> Result<Received, FleetError> {
        let reader = PayloadReader::new(input).map_err(plinth_store::StoreError::from)?;
        let h = reader.header().clone();
        let mut spec: ContainerSpec = serde_json::from_value(h.record.clone()).map_err(|e| {
            FleetError::Invalid(format!("the stream's container record does not parse: {e}"))
        })?;
        if let Some(n) = name {
            if spec.hostname == spec.name {
                spec.hostname = n.to_string();
            }
            spec.name = n.to_string();
        }
        spec.validate()?;
        let name = spec.name.clone();
        let done = |created| Received {
            name: name.clone(),
            snapshot: h.snapshot.clone(),
            parent: h.parent.clone(),
            format: h.format,
            created,
        };
        if let Some(parent) = &h.parent {
            let rec = self.db.get(&name)?.ok_or_else(|| {
                FleetError::NotFound(format!(
                    "{name} (the stream is incremental on {name}@{parent}; receive a full stream first)"
                ))
            })?;
            if self.live(&rec).0 == "running" {
                return Err(FleetError::State {
                    name,
                    why: "running; an incremental receive replaces its upper layer: stop it first"
                        .into(),
                });
            }
            Layers::new(self.dir(&name)).receive(reader)?.commit()?;
            self.db.set_spec(&spec)?;
            return Ok(done(false));
        }
        if self.db.get(&name)?.is_some() {
            return Err(FleetError::Exists(name));
        }
        let dir = self.dir(&name);
        if dir.symlink_metadata().is_ok() {
            return Err(FleetError::Invalid(format!(
                "{name}: {} exists without a record; remove it first",
                dir.display()
            )));
        }
        self.sweep_stale_receives();
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let staging = self.state_dir.join("containers").join(format!(
            ".receive-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&staging).map_err(io(staging.display().to_string()))?;
        let made = Layers::new(&staging)
            .receive(reader)
            .and_then(|staged| staged.commit())
            .map_err(FleetError::from)
            .and_then(|()| bundle::make_work_dirs(&staging))
            .and_then(|()| {
                std::fs::rename(&staging, &dir).map_err(io(format!(
                    "rename {} to {}",
                    staging.display(),
                    dir.display()
                )))
            })
            .and_then(|()| {
                if self.db.insert(&spec, &plinth_runtime::timestamp())? {
                    Ok(())
                } else {
                    Err(FleetError::Exists(name.clone()))
                }
            });
        if let Err(e) = made {
            let _ = plinth_store::remove_all(&staging);
            if self.db.get(&name)?.is_none() {
                let _ = plinth_store::remove_all(&dir);
            }
            return Err(e);
        }
        Ok(done(true))
    }

    /// Removes the staging directories of receives that were killed
    /// mid-way (their process is gone).
    pub(crate) fn sweep_stale_receives(&self) {
        plinth_store::remove_stale_work(&self.state_dir.join("containers"));
    }
}
