//! User namespaces of containers (`--userns private`, the default): each
//! container holds a range of 65536 host ids, mapped to 0..65535 inside,
//! recorded in the fleet database's `id_ranges` table from `new` to `rm`
//! (its upper layer stores files with those host ids, so a range never
//! changes while the container exists, and no two containers ever hold
//! the same one).
//!
//! The platform root is owned by host ids, mostly 0. Its lower layer is
//! an idmapped mount (`open_tree` + `mount_setattr(MOUNT_ATTR_IDMAP)`)
//! through the container's own user namespace, so the platform's root
//! files show as the container root's, and the files it copies up or
//! makes land in the upper layer with the shifted host ids. Host ids
//! beyond the range (65536 and up) stay unmapped: the container sees them
//! as `nobody` (65534) and cannot change them.
//!
//! The directories `new` makes in the upper layer (its root, the hidden
//! paths and their parents) take the owner and mode of the platform's
//! directory at the same path, shifted into the range; an `apply` that
//! switches a container between `--userns host` and `private` shifts the
//! owners of its whole upper layer.

use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::mount::{umount2, MntFlags};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::{io, FleetError};

/// The first host id plinth gives out: the ranges sit above the ids of
/// users and of `/etc/subuid` ranges (100000 and up, by default) and below
/// systemd's foreign-id area (0x70000000).
pub const FIRST_HOST_ID: u32 = 0x4000_0000;
/// Ids per container: the 16-bit id space a distribution uses.
pub const RANGE_SIZE: u32 = 0x1_0000;
/// How many ranges fit before 0x70000000.
const RANGES: u32 = (0x7000_0000 - FIRST_HOST_ID) / RANGE_SIZE;

/// The host ids a container's user namespace maps to 0..size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    /// The host id of the container's root.
    pub host_id: u32,
    /// How many ids.
    pub size: u32,
}

impl IdRange {
    /// The host id of container id `id`, if mapped.
    pub fn to_host(&self, id: u32) -> Option<u32> {
        (id < self.size).then(|| self.host_id + id)
    }

    /// The container id of host id `id`, if in the range.
    pub fn to_container(&self, id: u32) -> Option<u32> {
        id.checked_sub(self.host_id).filter(|i| *i < self.size)
    }
}

fn db(e: rusqlite::Error) -> FleetError {
    FleetError::Db(format!("id ranges: {e}"))
}

/// The range `name` holds, or the lowest free one, recorded for it.
pub(crate) fn allocate(conn: &Connection, name: &str) -> Result<IdRange, FleetError> {
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate).map_err(db)?;
    if let Some(r) = held_in(&tx, name)? {
        tx.commit().map_err(db)?;
        return Ok(r);
    }
    let mut free = FIRST_HOST_ID;
    {
        let mut stmt = tx
            .prepare("SELECT host_id, size FROM id_ranges WHERE host_id >= ?1 ORDER BY host_id")
            .map_err(db)?;
        let used = stmt
            .query_map(params![FIRST_HOST_ID], |r| {
                Ok((r.get::<_, u32>(0)?, r.get::<_, u32>(1)?))
            })
            .map_err(db)?;
        for u in used {
            let (start, size) = u.map_err(db)?;
            if start >= free.saturating_add(RANGE_SIZE) {
                break;
            }
            free = free.max(start.saturating_add(size));
        }
    }
    if free >= FIRST_HOST_ID + RANGES * RANGE_SIZE {
        return Err(FleetError::Invalid(format!(
            "{name}: all {RANGES} user id ranges are taken"
        )));
    }
    tx.execute(
        "INSERT INTO id_ranges (name, host_id, size) VALUES (?1, ?2, ?3)",
        params![name, free, RANGE_SIZE],
    )
    .map_err(db)?;
    tx.commit().map_err(db)?;
    Ok(IdRange {
        host_id: free,
        size: RANGE_SIZE,
    })
}

fn held_in(conn: &Connection, name: &str) -> Result<Option<IdRange>, FleetError> {
    conn.query_row(
        "SELECT host_id, size FROM id_ranges WHERE name = ?1",
        params![name],
        |r| {
            Ok(IdRange {
                host_id: r.get(0)?,
                size: r.get(1)?,
            })
        },
    )
    .optional()
    .map_err(db)
}

/// The range `name` holds, if any.
pub(crate) fn held(conn: &Connection, name: &str) -> Result<Option<IdRange>, FleetError> {
    held_in(conn, name)
}

/// Frees `name`'s range.
pub(crate) fn release(conn: &Connection, name: &str) -> Result<(), FleetError> {
    conn.execute("DELETE FROM id_ranges WHERE name = ?1", params![name])
        .map(drop)
        .map_err(db)
}

/// Mounts `lower` at `at` as an idmapped mount through the user namespace
/// `userns` (an nsfs file): the clone of the one mount at `lower`, not the
/// mounts below it, as overlayfs would see it.
pub(crate) fn mount_idmapped(lower: &Path, userns: &Path, at: &Path) -> Result<(), FleetError> {
    let what = |step: &str| {
        format!(
            "{}: idmapped mount of {} ({step})",
            at.display(),
            lower.display()
        )
    };
    let ns = std::fs::File::open(userns).map_err(io(userns.display().to_string()))?;
    let tree = crate::sys::clone_mount(lower).map_err(|e| io(what("open_tree"))(e.into()))?;
    crate::sys::idmap_mount(tree.as_fd(), ns.as_fd()).map_err(|e| match e {
        // The filesystem cannot be idmapped (overlayfs, tmpfs before 6.3...).
        nix::errno::Errno::EINVAL => FleetError::Invalid(format!(
            "{}: its filesystem cannot be idmapped, so a container with a user namespace \
             cannot use it as its platform; use --userns host",
            lower.display()
        )),
        e => io(what("mount_setattr MOUNT_ATTR_IDMAP"))(e.into()),
    })?;
    crate::sys::attach_mount(tree.as_fd(), at).map_err(|e| io(what("move_mount"))(e.into()))
}

/// Detaches the idmapped mount at `at`, if any (the overlay keeps its own
/// reference to the layer).
pub(crate) fn unmount_idmapped(at: &Path) {
    let _ = umount2(at, MntFlags::MNT_DETACH);
}

/// Gives the directories `new` made in `upper` (its root, each hidden
/// path and the parents it needed) the owner and mode of the platform's
/// directory at the same path, shifted into `range` (for a path the
/// platform lacks: the range's root, 0755). Only directories still owned
/// by the host's root are changed, so an update that adds a hidden path
/// leaves the rest of the layer alone.
pub(crate) fn own_layers(
    upper: &Path,
    lower: &Path,
    hide: &[std::path::PathBuf],
    range: IdRange,
) -> Result<(), FleetError> {
    let shift = |id: u32| {
        range
            .to_host(id)
            .or(range.to_host(65534))
            .unwrap_or(range.host_id)
    };
    let mut dirs = vec![std::path::PathBuf::new()];
    for h in hide {
        let rel = h.strip_prefix("/").unwrap_or(h);
        let mut p = std::path::PathBuf::new();
        for c in rel.components() {
            p.push(c);
            if !dirs.contains(&p) {
                dirs.push(p.clone());
            }
        }
    }
    for rel in dirs {
        let here = upper.join(&rel);
        match std::fs::symlink_metadata(&here) {
            Ok(m) if m.is_dir() && m.uid() == 0 => {}
            _ => continue,
        }
        let (uid, gid, mode) = match std::fs::metadata(lower.join(&rel)) {
            Ok(m) if m.is_dir() => (m.uid(), m.gid(), m.mode() & 0o7777),
            _ => (0, 0, 0o755),
        };
        std::os::unix::fs::lchown(&here, Some(shift(uid)), Some(shift(gid)))
            .map_err(io(format!("chown {}", here.display())))?;
        std::fs::set_permissions(&here, std::fs::Permissions::from_mode(mode))
            .map_err(io(format!("chmod {}", here.display())))?;
    }
    Ok(())
}

/// Moves the owners of everything in `upper` from one id mapping to
/// another (`None`: the host's own ids), when a container changes
/// between `--userns host` and `private`. An id the target cannot
/// express becomes its `nobody`. Set-id bits, which `chown` clears, are
/// put back.
pub(crate) fn shift_layer(
    upper: &Path,
    from: Option<IdRange>,
    to: Option<IdRange>,
) -> Result<(), FleetError> {
    if from == to {
        return Ok(());
    }
    let map = |id: u32| -> u32 {
        let inside = match from {
            Some(r) => r.to_container(id).unwrap_or(65534),
            None => id,
        };
        match to {
            Some(r) => r.to_host(inside).unwrap_or(r.host_id + 65534),
            None => inside,
        }
    };
    fn walk(p: &Path, map: &dyn Fn(u32) -> u32) -> Result<(), FleetError> {
        let m = std::fs::symlink_metadata(p).map_err(io(p.display().to_string()))?;
        std::os::unix::fs::lchown(p, Some(map(m.uid())), Some(map(m.gid())))
            .map_err(io(format!("chown {}", p.display())))?;
        if m.file_type().is_file() && m.mode() & 0o6000 != 0 {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m.mode() & 0o7777))
                .map_err(io(format!("chmod {}", p.display())))?;
        }
        if m.is_dir() {
            for e in std::fs::read_dir(p).map_err(io(p.display().to_string()))? {
                walk(&e.map_err(io(p.display().to_string()))?.path(), map)?;
            }
        }
        Ok(())
    }
    walk(upper, &map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &Path) -> Connection {
        let c = Connection::open(path).unwrap();
        c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        c.execute_batch(crate::db::SCHEMA).unwrap();
        c
    }

    #[test]
    fn ranges_are_kept_reused_after_release_and_never_shared() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.db");
        let c = open(&path);
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        let a = allocate(&c, "a").unwrap();
        assert_eq!(
            a,
            IdRange {
                host_id: FIRST_HOST_ID,
                size: RANGE_SIZE
            }
        );
        let b = allocate(&c, "b").unwrap();
        assert_eq!(b.host_id, FIRST_HOST_ID + RANGE_SIZE);
        assert_eq!(allocate(&c, "a").unwrap(), a);
        assert_eq!(held(&c, "b").unwrap(), Some(b));
        release(&c, "a").unwrap();
        assert_eq!(held(&c, "a").unwrap(), None);
        // The freed range goes to the next container.
        assert_eq!(allocate(&c, "c").unwrap(), a);
        assert_eq!(b.to_host(0), Some(b.host_id));
        assert_eq!(b.to_host(65536), None);
        assert_eq!(b.to_container(b.host_id + 7), Some(7));
        assert_eq!(b.to_container(a.host_id), None);

        let threads: Vec<_> = (0..6)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let c = open(&path);
                    (0..10)
                        .map(|i| allocate(&c, &format!("t{t}-{i}")).unwrap().host_id)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<u32> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.extend([a.host_id, b.host_id]);
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "a range was given twice");
    }

    #[test]
    fn layers_take_the_platforms_owners_shifted() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: chown needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (upper, lower) = (dir.path().join("upper"), dir.path().join("lower"));
        std::fs::create_dir_all(lower.join("root")).unwrap();
        std::fs::create_dir_all(lower.join("srv")).unwrap();
        std::fs::set_permissions(lower.join("root"), PermissionsExt::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(lower.join("srv"), Some(33), Some(70000)).unwrap();
        std::fs::create_dir_all(upper.join("root")).unwrap();
        std::fs::create_dir_all(upper.join("srv")).unwrap();
        std::fs::create_dir_all(upper.join("var/tmp")).unwrap();
        let r = IdRange {
            host_id: 1 << 30,
            size: RANGE_SIZE,
        };
        let hide = ["/root", "/srv", "/var/tmp"].map(std::path::PathBuf::from);
        own_layers(&upper, &lower, &hide, r).unwrap();
        let m = |p: &str| std::fs::metadata(upper.join(p)).unwrap();
        assert_eq!((m("").uid(), m("").gid()), (r.host_id, r.host_id));
        assert_eq!(m("root").mode() & 0o7777, 0o700);
        assert_eq!(
            (m("srv").uid(), m("srv").gid()),
            (r.host_id + 33, r.host_id + 65534)
        );
        assert_eq!(m("var/tmp").uid(), r.host_id);
        assert_eq!(m("var").uid(), r.host_id);
        // Only what the host's root still owns changes.
        std::fs::set_permissions(upper.join("root"), PermissionsExt::from_mode(0o750)).unwrap();
        own_layers(&upper, &lower, &hide, r).unwrap();
        assert_eq!(m("root").mode() & 0o7777, 0o750);

        // Back to host ids, and over to another range.
        std::fs::write(upper.join("srv/x"), "").unwrap();
        std::os::unix::fs::chown(upper.join("srv/x"), Some(r.host_id + 5), None).unwrap();
        std::fs::set_permissions(upper.join("srv/x"), PermissionsExt::from_mode(0o4755)).unwrap();
        shift_layer(&upper, Some(r), None).unwrap();
        assert_eq!(m("srv/x").uid(), 5);
        assert_eq!(m("srv/x").mode() & 0o7777, 0o4755, "set-uid bit kept");
        assert_eq!(m("").uid(), 0);
        let s = IdRange {
            host_id: r.host_id + RANGE_SIZE,
            size: RANGE_SIZE,
        };
        shift_layer(&upper, None, Some(s)).unwrap();
        assert_eq!(m("srv/x").uid(), s.host_id + 5);
        assert_eq!(m("srv").gid(), s.host_id + 65534);
    }
}
