//! The layers of one container and what can be done with them: its
//! writable `upper` layer, read-only snapshots of it, clones of either,
//! and streams of a snapshot (full, or incremental on an earlier one) to
//! another host.
//!
//! ```text
//! DIR/upper                 the layer: a btrfs subvolume, or a directory
//! DIR/snapshots/SNAP        a read-only subvolume snapshot, or a copy
//! DIR/manifests/SNAP        (copies only) the snapshot's manifest
//! ```
//!
//! The backend follows the upper layer: a subvolume gets subvolume
//! snapshots and btrfs send streams, a directory gets copies with a
//! manifest and portable streams. Names starting with `.` are work in
//! progress (a temporary snapshot, a receive being staged) and never
//! listed.

use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use crate::stream::{Format, PayloadReader, PayloadWriter, StreamHeader};
use crate::tree::Manifest;
use crate::{btrfs, btrfs_recv, copy, io_err, portable, root, StoreError};

/// How a layer is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A btrfs subvolume.
    Btrfs,
    /// A plain directory.
    Tree,
}

/// The backend a new layer in the directory `dir` gets: btrfs when `dir`
/// is on btrfs.
pub fn backend_of(dir: &Path) -> Result<Backend, StoreError> {
    if btrfs::is_btrfs(dir).map_err(io_err(dir.display().to_string()))? {
        Ok(Backend::Btrfs)
    } else {
        Ok(Backend::Tree)
    }
}

/// Makes `path` (which must not exist) an empty layer: a subvolume when
/// its directory is on btrfs, else a directory (mode 0755).
pub fn make_layer(path: &Path) -> Result<Backend, StoreError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    match backend_of(parent)? {
        Backend::Btrfs => {
            btrfs::create(path).map_err(io_err(format!(
                "{}: create a btrfs subvolume",
                path.display()
            )))?;
            Ok(Backend::Btrfs)
        }
        Backend::Tree => {
            std::fs::create_dir(path).map_err(io_err(format!("{}: mkdir", path.display())))?;
            Ok(Backend::Tree)
        }
    }
}

/// Removes `path` and everything in it, btrfs subvolumes (read-only
/// ones included) as whole subvolumes; nothing there is fine. It never
/// crosses into another mounted filesystem.
pub fn remove_all(path: &Path) -> Result<(), StoreError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let Some(name) = path.file_name() else {
        return Err(StoreError::Invalid(format!(
            "{}: not a removable path",
            path.display()
        )));
    };
    let dir = match root::Root::open(parent) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(parent.display().to_string())(e)),
    };
    root::remove_at(dir.fd(), name.as_bytes()).map_err(io_err(format!("remove {}", path.display())))
}

/// One snapshot of a container.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotInfo {
    /// Its name.
    pub name: String,
    /// How it is stored.
    pub backend: Backend,
    /// Its identity: the subvolume's UUID, or the digest of its manifest.
    pub id: String,
    /// For a received btrfs snapshot: the UUID of the snapshot it was
    /// sent from.
    pub received_from: Option<String>,
    /// When it was taken or received (UTC, RFC 3339).
    pub created: String,
}

/// What a send wrote.
#[derive(Clone, Debug, Serialize)]
pub struct SendReport {
    /// The payload's format.
    pub format: Format,
    /// The snapshot sent (`None`: a temporary one).
    pub snapshot: Option<String>,
    /// The parent of an incremental stream.
    pub parent: Option<String>,
    /// Bytes of the whole stream.
    pub bytes: u64,
    /// Bytes of the payload before compression.
    pub payload_bytes: u64,
}

/// Whether `name` can name a container or a snapshot, which become
/// directory names and ids: 1 to 64 letters, digits, `-`, `_` or `.`, not
/// starting with `.` or `-`.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.')
        && !name.starts_with('-')
}

/// Checks a snapshot name ([`is_plain_name`]).
pub fn check_snapshot_name(name: &str) -> Result<(), StoreError> {
    if is_plain_name(name) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{name:?}: a snapshot name is 1 to 64 letters, digits, `-`, `_` or `.`, not starting with `.` or `-`"
        )))
    }
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`, and as the compact
/// `YYYYMMDDTHHMMSSZ` of default snapshot names.
fn civil(secs: i64) -> (String, String) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    (
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z"),
        format!("{y:04}{m:02}{d:02}T{hh:02}{mm:02}{ss:02}Z"),
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A name for work in progress, unique in this process.
fn work_name(what: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        ".{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// What the work names of this crate (and `plinth receive`'s staging
/// directory) start with, after the dot.
const WORK_KINDS: &[&str] = &[
    "snap",
    "manifest",
    "send",
    "recv-snap",
    "recv-manifest",
    "recv-upper",
    "receive",
];

/// The process that made the work file or directory `name`
/// (`.{kind}-{pid}-{n}`), if `name` is one.
pub fn work_owner(name: &std::ffi::OsStr) -> Option<i32> {
    let rest = name.to_str()?.strip_prefix('.')?;
    let mut parts = rest.rsplitn(3, '-');
    parts.next()?.parse::<u64>().ok()?;
    let pid = parts.next()?.parse::<i32>().ok().filter(|p| *p > 0)?;
    WORK_KINDS.contains(&parts.next()?).then_some(pid)
}

/// Whether `name` is work left by a process that is gone: one killed
/// mid-way, whose cleanup never ran. A live process of that pid (the
/// owner, or one that reused its pid) keeps it.
fn is_stale_work(name: &std::ffi::OsStr) -> bool {
    work_owner(name).is_some_and(|pid| {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            == Err(nix::errno::Errno::ESRCH)
    })
}

/// Removes the entries of `dir` that are work left by processes that are
/// gone: names of the form `.{kind}-{pid}-{n}` (see [`work_owner`]) whose
/// pid no process has. Best effort: what cannot be removed now is tried
/// again by the next sweep.
pub fn remove_stale_work(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if is_stale_work(&e.file_name()) {
            let _ = remove_all(&e.path());
        }
    }
}

/// Removes `paths` when dropped, unless disarmed.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = remove_all(p);
        }
    }
}

/// The layers of the container whose directory is `dir`.
#[derive(Clone, Debug)]
pub struct Layers {
    dir: PathBuf,
}

impl Layers {
    /// The layers under `dir` (nothing is read or made).
    pub fn new(dir: impl Into<PathBuf>) -> Layers {
        Layers { dir: dir.into() }
    }

    /// `DIR/upper`.
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }

    fn snap_dir(&self) -> PathBuf {
        self.dir.join("snapshots")
    }

    fn snap_path(&self, name: &str) -> PathBuf {
        self.snap_dir().join(name)
    }

    fn manifest_path(&self, name: &str) -> PathBuf {
        self.dir.join("manifests").join(name)
    }

    /// How the upper layer is stored.
    pub fn backend(&self) -> Result<Backend, StoreError> {
        let upper = self.upper();
        if btrfs::is_subvolume(&upper).map_err(io_err(upper.display().to_string()))? {
            Ok(Backend::Btrfs)
        } else {
            Ok(Backend::Tree)
        }
    }

    fn ensure_dirs(&self) -> Result<(), StoreError> {
        for d in [self.snap_dir(), self.dir.join("manifests")] {
            std::fs::create_dir_all(&d).map_err(io_err(format!("{}: mkdir", d.display())))?;
        }
        self.sweep_stale_work();
        Ok(())
    }

    /// Removes what killed snapshots, sends and receives left here.
    fn sweep_stale_work(&self) {
        for d in [&self.dir, &self.snap_dir(), &self.dir.join("manifests")] {
            remove_stale_work(d);
        }
    }

    /// A name for a snapshot taken now: `YYYYMMDDTHHMMSSZ`, with `-2`,
    /// `-3`... when taken in the same second as another.
    pub fn default_snapshot_name(&self) -> String {
        let base = civil(now()).1;
        let mut name = base.clone();
        let mut n = 1;
        while self.snap_path(&name).symlink_metadata().is_ok() {
            n += 1;
            name = format!("{base}-{n}");
        }
        name
    }

    /// Takes the snapshot `name` of the upper layer: a read-only subvolume
    /// snapshot (atomic, even while the container runs), or a copy of the
    /// upper directory with its manifest (each file as it is when the
    /// copy reaches it).
    pub fn snapshot(&self, name: &str) -> Result<SnapshotInfo, StoreError> {
        check_snapshot_name(name)?;
        self.take(name)?;
        self.snapshot_info(name)
    }

    fn take(&self, name: &str) -> Result<(), StoreError> {
        let dst = self.snap_path(name);
        if dst.symlink_metadata().is_ok() {
            return Err(StoreError::SnapshotExists(name.to_string()));
        }
        let upper = self.upper();
        if !upper.is_dir() {
            return Err(StoreError::Invalid(format!(
                "{}: no upper layer",
                upper.display()
            )));
        }
        self.ensure_dirs()?;
        match self.backend()? {
            Backend::Btrfs => btrfs::snapshot(&upper, &dst, true).map_err(io_err(format!(
                "snapshot {} as {}",
                upper.display(),
                dst.display()
            ))),
            Backend::Tree => {
                let work = self.snap_dir().join(work_name("snap"));
                let work_m = self.dir.join("manifests").join(work_name("manifest"));
                let guard = Cleanup(vec![work.clone(), work_m.clone()]);
                std::fs::create_dir(&work).map_err(io_err(format!("{}: mkdir", work.display())))?;
                let m = copy::copy_tree(&upper, Some(&work), true)?;
                m.save(&work_m)?;
                let mpath = self.manifest_path(name);
                std::fs::rename(&work_m, &mpath)
                    .map_err(io_err(format!("rename to {}", mpath.display())))?;
                std::fs::rename(&work, &dst)
                    .map_err(io_err(format!("rename to {}", dst.display())))?;
                std::mem::forget(guard);
                Ok(())
            }
        }
    }

    /// What is known of the snapshot `name`.
    pub fn snapshot_info(&self, name: &str) -> Result<SnapshotInfo, StoreError> {
        let p = self.snap_path(name);
        if p.symlink_metadata().is_err() {
            return Err(StoreError::NoSnapshot(name.to_string()));
        }
        if btrfs::is_subvolume(&p).map_err(io_err(p.display().to_string()))? {
            let i = btrfs::info(&p).map_err(io_err(format!("{}: subvolume info", p.display())))?;
            let received =
                (i.received_uuid != [0; 16]).then(|| btrfs::uuid_string(&i.received_uuid));
            return Ok(SnapshotInfo {
                name: name.to_string(),
                backend: Backend::Btrfs,
                id: btrfs::uuid_string(&i.uuid),
                received_from: received,
                created: civil(i.otime.0 as i64).0,
            });
        }
        let mp = self.manifest_path(name);
        let m = Manifest::load(&mp)?;
        let created = std::fs::metadata(&mp)
            .ok()
            .and_then(|md| md.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Ok(SnapshotInfo {
            name: name.to_string(),
            backend: Backend::Tree,
            id: m.digest(),
            received_from: None,
            created: civil(created).0,
        })
    }

    /// Every snapshot, oldest first.
    pub fn snapshots(&self) -> Result<Vec<SnapshotInfo>, StoreError> {
        let dir = self.snap_dir();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(dir.display().to_string())(e)),
        };
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(io_err(dir.display().to_string()))?;
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            out.push(self.snapshot_info(name)?);
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
        Ok(out)
    }

    /// Deletes the snapshot `name`.
    pub fn delete_snapshot(&self, name: &str) -> Result<(), StoreError> {
        check_snapshot_name(name)?;
        self.snapshot_info(name)?;
        remove_all(&self.manifest_path(name))?;
        remove_all(&self.snap_path(name))
    }

    /// Makes `dst` (which must not exist) a writable copy of the upper
    /// layer, or of the snapshot `from`: a writable subvolume snapshot on
    /// btrfs, else a full copy. A failure leaves no `dst`.
    pub fn clone_to(&self, from: Option<&str>, dst: &Path) -> Result<Backend, StoreError> {
        let src = match from {
            Some(s) => {
                check_snapshot_name(s)?;
                self.snapshot_info(s)?;
                self.snap_path(s)
            }
            None => self.upper(),
        };
        if dst.symlink_metadata().is_ok() {
            return Err(StoreError::Invalid(format!("{}: exists", dst.display())));
        }
        if btrfs::is_subvolume(&src).map_err(io_err(src.display().to_string()))? {
            btrfs::snapshot(&src, dst, false).map_err(io_err(format!(
                "snapshot {} as {}",
                src.display(),
                dst.display()
            )))?;
            return Ok(Backend::Btrfs);
        }
        let guard = Cleanup(vec![dst.to_path_buf()]);
        std::fs::create_dir(dst).map_err(io_err(format!("{}: mkdir", dst.display())))?;
        copy::copy_tree(&src, Some(dst), false)?;
        std::mem::forget(guard);
        Ok(Backend::Tree)
    }

    /// Writes the stream of the snapshot `snap` (or of a temporary
    /// snapshot of the upper layer, deleted afterwards, when `None`) to
    /// `out`, incremental on the snapshot `from` when given. `record` goes
    /// into the header for the receiver.
    pub fn send(
        &self,
        snap: Option<&str>,
        from: Option<&str>,
        record: serde_json::Value,
        out: &mut dyn Write,
    ) -> Result<SendReport, StoreError> {
        if let Some(s) = snap {
            check_snapshot_name(s)?;
        }
        let temp = match snap {
            Some(_) => None,
            None => {
                let name = work_name("send");
                self.take(&name)?;
                Some(name)
            }
        };
        let _guard = Cleanup(
            temp.iter()
                .flat_map(|t| [self.snap_path(t), self.manifest_path(t)])
                .collect(),
        );
        let name = snap
            .or(temp.as_deref())
            .expect("a snapshot or a temporary one");
        let path = self.snap_path(name);
        if path.symlink_metadata().is_err() {
            return Err(StoreError::NoSnapshot(name.to_string()));
        }
        let parent = match from {
            Some(f) => {
                check_snapshot_name(f)?;
                self.snapshot_info(f)?;
                if f == name {
                    return Err(StoreError::Invalid(format!(
                        "--from {f}: a snapshot cannot be sent incrementally on itself"
                    )));
                }
                Some(self.snap_path(f))
            }
            None => None,
        };
        let is_sub = |p: &Path| btrfs::is_subvolume(p).map_err(io_err(p.display().to_string()));
        let format = if is_sub(&path)? {
            Format::Btrfs
        } else {
            Format::Tree
        };
        if let Some(p) = &parent {
            if is_sub(p)? != (format == Format::Btrfs) {
                return Err(StoreError::Invalid(format!(
                    "--from {}: it and {name} are not stored the same way (btrfs subvolume and copy)",
                    from.unwrap_or_default()
                )));
            }
        }
        let mut header = StreamHeader {
            format,
            snapshot: snap.map(str::to_string),
            snapshot_id: String::new(),
            parent: from.map(str::to_string),
            parent_id: None,
            record,
        };
        let bytes;
        let payload_bytes;
        match format {
            Format::Btrfs => {
                let i = btrfs::info(&path).map_err(io_err(path.display().to_string()))?;
                if !btrfs::readonly(&path).map_err(io_err(path.display().to_string()))? {
                    return Err(StoreError::Invalid(format!(
                        "{}: not a read-only snapshot",
                        path.display()
                    )));
                }
                header.snapshot_id = btrfs::uuid_string(&i.uuid);
                if let Some(p) = &parent {
                    let pi = btrfs::info(p).map_err(io_err(p.display().to_string()))?;
                    // The kernel names the parent by its received UUID
                    // when it has one.
                    let id = if pi.received_uuid != [0; 16] {
                        pi.received_uuid
                    } else {
                        pi.uuid
                    };
                    header.parent_id = Some(btrfs::uuid_string(&id));
                }
                let mut w =
                    PayloadWriter::new(&mut *out, &header).map_err(io_err("write the stream"))?;
                btrfs::send(&path, parent.as_deref(), &mut w)?;
                payload_bytes = w.payload_bytes();
                bytes = w.finish().map_err(io_err("write the stream"))?.1;
            }
            Format::Tree => {
                let m = Manifest::load(&self.manifest_path(name))?;
                let pm = match from {
                    Some(f) => Some(Manifest::load(&self.manifest_path(f))?),
                    None => None,
                };
                header.snapshot_id = m.digest();
                header.parent_id = pm.as_ref().map(Manifest::digest);
                let mut w =
                    PayloadWriter::new(&mut *out, &header).map_err(io_err("write the stream"))?;
                portable::send(&path, &m, pm.as_ref(), &mut w)?;
                payload_bytes = w.payload_bytes();
                bytes = w.finish().map_err(io_err("write the stream"))?.1;
            }
        }
        Ok(SendReport {
            format,
            snapshot: snap.map(str::to_string),
            parent: from.map(str::to_string),
            bytes,
            payload_bytes,
        })
    }

    /// Applies the stream `input` to these layers, staged under names
    /// nobody lists: a full stream needs no snapshot of its name here; an
    /// incremental one needs its parent snapshot, and checks that it is
    /// the same one the sender had. Everything is checked (digest of the
    /// whole stream, every content hash or CRC, the resulting tree's
    /// identity) before [`Staged::commit`] can make it visible; dropping
    /// the [`Staged`] result, or any error, removes what was staged.
    pub fn receive<R: Read>(&self, mut input: PayloadReader<R>) -> Result<Staged, StoreError> {
        let h = input.header().clone();
        if let Some(s) = &h.snapshot {
            check_snapshot_name(s)?;
            if self.snap_path(s).symlink_metadata().is_ok() {
                return Err(StoreError::SnapshotExists(s.clone()));
            }
        }
        if let Some(p) = &h.parent {
            check_snapshot_name(p)?;
            if self.snap_path(p).symlink_metadata().is_err() {
                return Err(StoreError::NoParent(format!(
                    "the stream is incremental on the snapshot {p}, which is not here; send a full stream first"
                )));
            }
        }
        self.ensure_dirs()?;
        // Beside the snapshots: a read-only subvolume cannot move to
        // another directory.
        let snap = self.snap_dir().join(work_name("recv-snap"));
        let manifest = self.dir.join(work_name("recv-manifest"));
        let upper = self.dir.join(work_name("recv-upper"));
        let mut cleanup = Cleanup(vec![snap.clone(), manifest.clone(), upper.clone()]);
        let keep = h.snapshot.is_some();
        match h.format {
            Format::Btrfs => {
                if backend_of(&self.dir)? != Backend::Btrfs {
                    return Err(StoreError::Invalid(format!(
                        "the stream holds a btrfs snapshot and {} is not on btrfs",
                        self.dir.display()
                    )));
                }
                if let (Some(p), Some(id)) = (&h.parent, &h.parent_id) {
                    let local = self.snap_path(p);
                    let i = btrfs::info(&local).map_err(io_err(local.display().to_string()))?;
                    let ids = [
                        btrfs::uuid_string(&i.received_uuid),
                        btrfs::uuid_string(&i.uuid),
                    ];
                    if !ids.contains(id) {
                        return Err(StoreError::NoParent(format!(
                            "the snapshot {p} here is not the one the stream is incremental on ({id})"
                        )));
                    }
                }
                let got = btrfs_recv::receive(&mut input, &snap, &self.snap_dir())?;
                input.finish()?;
                if btrfs::uuid_string(&got.uuid) != h.snapshot_id {
                    return Err(crate::StreamError::Corrupt(format!(
                        "the btrfs stream is of subvolume {}, the header says {}",
                        btrfs::uuid_string(&got.uuid),
                        h.snapshot_id
                    ))
                    .into());
                }
                if keep {
                    btrfs::seal_received(&snap, got.uuid, got.ctransid)
                        .map_err(io_err(format!("{}: set received", snap.display())))?;
                    btrfs::snapshot(&snap, &upper, false)
                        .map_err(io_err(format!("snapshot {}", snap.display())))?;
                } else {
                    std::fs::rename(&snap, &upper)
                        .map_err(io_err(format!("rename {}", snap.display())))?;
                }
            }
            Format::Tree => {
                let base = match &h.parent {
                    Some(p) => {
                        let m = Manifest::load(&self.manifest_path(p))?;
                        if Some(m.digest()) != h.parent_id {
                            return Err(StoreError::NoParent(format!(
                                "the snapshot {p} here is not the one the stream is incremental on"
                            )));
                        }
                        std::fs::create_dir(&snap)
                            .map_err(io_err(format!("{}: mkdir", snap.display())))?;
                        // The stream replaces the files it changes and never
                        // writes into one, so the new snapshot can share
                        // the parent's files; only the upper layer below
                        // is a copy.
                        copy::share_tree(&self.snap_path(p), &snap)?;
                        m
                    }
                    None => {
                        std::fs::create_dir(&snap)
                            .map_err(io_err(format!("{}: mkdir", snap.display())))?;
                        Manifest::default()
                    }
                };
                let m = portable::receive(&snap, base, &mut input)?;
                input.finish()?;
                if m.digest() != h.snapshot_id {
                    return Err(crate::StreamError::Corrupt(format!(
                        "the received tree's digest {} is not the sent snapshot's {}",
                        m.digest(),
                        h.snapshot_id
                    ))
                    .into());
                }
                if keep {
                    m.save(&manifest)?;
                    std::fs::create_dir(&upper)
                        .map_err(io_err(format!("{}: mkdir", upper.display())))?;
                    copy::copy_tree(&snap, Some(&upper), false)?;
                } else {
                    std::fs::rename(&snap, &upper)
                        .map_err(io_err(format!("rename {}", snap.display())))?;
                }
            }
        }
        let staged = Staged {
            layers: self.clone(),
            header: h,
            snap,
            manifest,
            upper,
            cleanup: Cleanup(std::mem::take(&mut cleanup.0)),
        };
        Ok(staged)
    }
}

/// A received stream, checked and staged in the container's directory,
/// not yet visible. Dropping it removes it.
pub struct Staged {
    layers: Layers,
    header: StreamHeader,
    snap: PathBuf,
    manifest: PathBuf,
    upper: PathBuf,
    cleanup: Cleanup,
}

impl Staged {
    /// The stream's header.
    pub fn header(&self) -> &StreamHeader {
        &self.header
    }

    /// Makes it visible: the snapshot under its name, and the received
    /// tree as the upper layer (the old upper layer, if any, is removed).
    pub fn commit(mut self) -> Result<(), StoreError> {
        let l = &self.layers;
        if let Some(name) = &self.header.snapshot {
            if self.header.format == Format::Tree {
                let to = l.manifest_path(name);
                std::fs::rename(&self.manifest, &to)
                    .map_err(io_err(format!("rename to {}", to.display())))?;
            }
            let to = l.snap_path(name);
            std::fs::rename(&self.snap, &to)
                .map_err(io_err(format!("rename to {}", to.display())))?;
        }
        let upper = l.upper();
        if upper.symlink_metadata().is_ok() {
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                &self.upper,
                rustix::fs::CWD,
                &upper,
                rustix::fs::RenameFlags::EXCHANGE,
            )
            .map_err(|e| {
                io_err(format!(
                    "exchange {} and {}",
                    self.upper.display(),
                    upper.display()
                ))(e.into())
            })?;
            // self.upper is the old layer now; the cleanup removes it.
        } else {
            std::fs::rename(&self.upper, &upper)
                .map_err(io_err(format!("rename to {}", upper.display())))?;
        }
        self.cleanup.0.retain(|p| p == &self.upper);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    /// The pid of a process that has ended and been reaped.
    fn dead_pid() -> i32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        pid
    }

    #[test]
    fn an_incremental_tree_receive_shares_unchanged_files_with_its_parent() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (la, lb) = (Layers::new(a.path()), Layers::new(b.path()));
        // A plain directory as the upper layer: tree snapshots, on any
        // filesystem.
        let up = la.upper();
        std::fs::create_dir(&up).unwrap();
        for (name, text) in [("keep", "same"), ("change", "v1"), ("gone", "x")] {
            std::fs::write(up.join(name), text).unwrap();
        }
        std::fs::set_permissions(up.join("keep"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        let transfer = |snap: &str, from: Option<&str>| {
            la.snapshot(snap).unwrap();
            let mut stream = Vec::new();
            la.send(Some(snap), from, serde_json::json!({}), &mut stream)
                .unwrap();
            lb.receive(PayloadReader::new(&stream[..]).unwrap())
                .unwrap()
                .commit()
                .unwrap();
        };
        transfer("s1", None);
        std::fs::write(up.join("change"), "v2").unwrap();
        std::fs::remove_file(up.join("gone")).unwrap();
        std::fs::write(up.join("new"), "n").unwrap();
        transfer("s2", Some("s1"));

        let (s1, s2, upper) = (lb.snap_path("s1"), lb.snap_path("s2"), lb.upper());
        // The parent snapshot is as it was.
        assert_eq!(std::fs::read_to_string(s1.join("change")).unwrap(), "v1");
        assert!(s1.join("gone").exists());
        let mode = std::fs::metadata(s1.join("keep")).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o4755, "the parent's setuid file changed");
        // The new one and the upper layer hold the new tree.
        for dir in [&s2, &upper] {
            assert_eq!(std::fs::read_to_string(dir.join("change")).unwrap(), "v2");
            assert_eq!(std::fs::read_to_string(dir.join("new")).unwrap(), "n");
            assert_eq!(std::fs::read_to_string(dir.join("keep")).unwrap(), "same");
            assert!(!dir.join("gone").exists());
        }
        // Unchanged files are shared between snapshots, never with the upper
        // layer, which the container writes.
        assert_eq!(ino(&s1.join("keep")), ino(&s2.join("keep")));
        assert_ne!(ino(&s1.join("change")), ino(&s2.join("change")));
        assert_ne!(ino(&s2.join("keep")), ino(&upper.join("keep")));
    }

    #[test]
    fn work_names_name_their_process() {
        assert_eq!(work_owner(OsStr::new(".recv-upper-123-4")), Some(123));
        assert_eq!(work_owner(OsStr::new(".receive-77-0")), Some(77));
        assert_eq!(work_owner(OsStr::new(".send-9-12")), Some(9));
        for not in [
            "recv-upper-123-4",
            ".recv-upper-123",
            ".recv-upper-x-4",
            ".recv-upper-0-4",
            ".mine-123-4",
            "upper",
            ".",
        ] {
            assert_eq!(work_owner(OsStr::new(not)), None, "{not}");
        }
        assert_eq!(
            work_owner(OsStr::new(&work_name("recv-snap"))),
            Some(std::process::id() as i32)
        );
    }

    #[test]
    fn stale_work_of_killed_operations_is_swept_and_live_work_kept() {
        let t = tempfile::tempdir().unwrap();
        let l = Layers::new(t.path());
        l.ensure_dirs().unwrap();
        let dead = dead_pid();
        let stale = [
            t.path().join(format!(".recv-upper-{dead}-0")),
            t.path().join(format!(".recv-manifest-{dead}-1")),
            l.snap_dir().join(format!(".send-{dead}-2")),
            t.path()
                .join("manifests")
                .join(format!(".manifest-{dead}-3")),
        ];
        let live = t.path().join(work_name("recv-upper"));
        let other = t.path().join(format!(".mine-{dead}-5"));
        for d in stale.iter().chain([&live, &other]) {
            std::fs::create_dir_all(d.join("sub")).unwrap();
            std::fs::write(d.join("sub/file"), b"x").unwrap();
        }
        l.ensure_dirs().unwrap();
        for d in &stale {
            assert!(!d.exists(), "{} left", d.display());
        }
        assert!(live.join("sub/file").exists(), "live work removed");
        assert!(other.exists(), "a name that is not work removed");
    }
}
