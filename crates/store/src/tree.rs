//! The portable model of a tree: one [`Entry`] per path (type, mode,
//! owner, mtime, device number, extended attributes, size and sha256 of a
//! file's content, a symlink's target, the path a hardlink shares its
//! inode with), the [`Manifest`] of a snapshot (every path of it, in
//! walk order) with its digest, which is the snapshot's identity, and the
//! difference between two manifests that an incremental stream carries.
//!
//! Paths are relative byte strings without a leading `/`; the root of the
//! tree is the empty path. They are ordered as a depth-first walk that
//! visits names in byte order ([`PathKey`]), so a directory comes before
//! what it holds, and the first path of a set of hardlinks (its leader)
//! comes before the others.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::{StoreError, StreamError};

/// The longest path a stream may name.
pub(crate) const MAX_PATH: usize = 4096;
const MAX_XATTR: usize = 64 * 1024;
const MAX_XATTRS: u32 = 1024;

/// A path, ordered as a depth-first walk: `/` sorts before every other
/// byte, so `a/b` comes before `a-b` and a directory's contents follow it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PathKey(pub Vec<u8>);

impl Ord for PathKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let map = |b: &u8| if *b == b'/' { 0 } else { *b };
        self.0.iter().map(map).cmp(other.0.iter().map(map))
    }
}

impl PartialOrd for PathKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PathKey {
    /// Whether `self` is below `dir` (strictly).
    pub fn is_below(&self, dir: &PathKey) -> bool {
        if dir.0.is_empty() {
            return !self.0.is_empty();
        }
        self.0.len() > dir.0.len() && self.0.starts_with(&dir.0) && self.0[dir.0.len()] == b'/'
    }
}

/// Shows a path of a stream for messages.
pub(crate) fn show(path: &[u8]) -> String {
    if path.is_empty() {
        "/".into()
    } else {
        format!("/{}", String::from_utf8_lossy(path))
    }
}

/// The type of a tree entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir = 1,
    File = 2,
    Symlink = 3,
    Char = 4,
    Block = 5,
    Fifo = 6,
    Socket = 7,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Dir,
            2 => Kind::File,
            3 => Kind::Symlink,
            4 => Kind::Char,
            5 => Kind::Block,
            6 => Kind::Fifo,
            7 => Kind::Socket,
            _ => return None,
        })
    }

    /// From `st_mode`.
    pub fn from_mode(mode: u32) -> Option<Kind> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFREG => Kind::File,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFCHR => Kind::Char,
            libc::S_IFBLK => Kind::Block,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            _ => return None,
        })
    }
}

/// Everything plinth keeps of one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub kind: Kind,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_ns: u32,
    /// Device number of a character or block device (a whiteout is 0).
    pub rdev: u64,
    /// Sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// A file's size.
    pub size: u64,
    /// The sha256 of a file's content (holes read as zeros).
    pub hash: [u8; 32],
    /// A symlink's target.
    pub target: Vec<u8>,
    /// For the second and later paths of one inode: the first one.
    pub link: Option<Vec<u8>>,
}

impl Entry {
    /// Appends the encoding of the entry (without path) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.kind as u8);
        out.extend_from_slice(&self.mode.to_le_bytes());
        out.extend_from_slice(&self.uid.to_le_bytes());
        out.extend_from_slice(&self.gid.to_le_bytes());
        out.extend_from_slice(&self.mtime.to_le_bytes());
        out.extend_from_slice(&self.mtime_ns.to_le_bytes());
        out.extend_from_slice(&self.rdev.to_le_bytes());
        out.extend_from_slice(&(self.xattrs.len() as u32).to_le_bytes());
        for (k, v) in &self.xattrs {
            put_bytes(out, k);
            put_bytes(out, v);
        }
        match self.kind {
            Kind::File => {
                out.extend_from_slice(&self.size.to_le_bytes());
                out.extend_from_slice(&self.hash);
                match &self.link {
                    None => out.push(0),
                    Some(l) => {
                        out.push(1);
                        put_bytes(out, l);
                    }
                }
            }
            Kind::Symlink => put_bytes(out, &self.target),
            _ => {}
        }
    }

    /// Reads an entry as [`Entry::encode`] wrote it.
    pub fn decode(r: &mut dyn Reader) -> Result<Entry, StreamError> {
        let kind = r.u8()?;
        let kind =
            Kind::from_u8(kind).ok_or_else(|| corrupt(format!("unknown entry type {kind}")))?;
        let mode = r.u32()?;
        if mode & !0o7777 != 0 {
            return Err(corrupt(format!("mode {mode:o}")));
        }
        let uid = r.u32()?;
        let gid = r.u32()?;
        let mtime = r.u64()? as i64;
        let mtime_ns = r.u32()?;
        if mtime_ns >= 1_000_000_000 {
            return Err(corrupt(format!("{mtime_ns} nanoseconds")));
        }
        let rdev = r.u64()?;
        let n = r.u32()?;
        if n > MAX_XATTRS {
            return Err(corrupt(format!("{n} extended attributes")));
        }
        let mut xattrs = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let k = r.field(255)?;
            if k.is_empty() || k.contains(&0) {
                return Err(corrupt("an extended attribute name"));
            }
            let v = r.field(MAX_XATTR)?;
            xattrs.push((k, v));
        }
        if !xattrs.windows(2).all(|w| w[0].0 < w[1].0) {
            return Err(corrupt("extended attributes out of order"));
        }
        let mut e = Entry {
            kind,
            mode,
            uid,
            gid,
            mtime,
            mtime_ns,
            rdev,
            xattrs,
            size: 0,
            hash: [0; 32],
            target: Vec::new(),
            link: None,
        };
        match kind {
            Kind::File => {
                e.size = r.u64()?;
                r.fill(&mut e.hash)?;
                match r.u8()? {
                    0 => {}
                    1 => e.link = Some(check_path(r.field(MAX_PATH)?)?),
                    b => return Err(corrupt(format!("link flag {b}"))),
                }
            }
            Kind::Symlink => {
                e.target = r.field(MAX_PATH)?;
                if e.target.is_empty() || e.target.contains(&0) {
                    return Err(corrupt("a symlink target"));
                }
            }
            _ => {}
        }
        Ok(e)
    }

    /// Whether two entries differ in anything but their hardlink.
    pub fn same_inode_data(&self, other: &Entry) -> bool {
        let mut a = self.clone();
        a.link = other.link.clone();
        a == *other
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

pub(crate) fn corrupt(why: impl Into<String>) -> StreamError {
    StreamError::Corrupt(why.into())
}

/// Checks a path read from a stream: relative, no empty, `.` or `..`
/// component, no NUL, not too long. The root is the empty path.
pub(crate) fn check_path(p: Vec<u8>) -> Result<Vec<u8>, StreamError> {
    if p.is_empty() {
        return Ok(p);
    }
    let ok = p.len() <= MAX_PATH
        && !p.contains(&0)
        && p.split(|&b| b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b"..");
    if ok {
        Ok(p)
    } else {
        Err(corrupt(format!(
            "the path {:?} is not a plain relative path",
            String::from_utf8_lossy(&p)
        )))
    }
}

/// Little-endian reads with bounds, over a payload or a manifest file.
pub(crate) trait Reader {
    /// Fills `buf` or fails.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), StreamError>;

    fn u8(&mut self) -> Result<u8, StreamError> {
        let mut b = [0u8; 1];
        self.fill(&mut b)?;
        Ok(b[0])
    }
    fn u32(&mut self) -> Result<u32, StreamError> {
        let mut b = [0u8; 4];
        self.fill(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, StreamError> {
        let mut b = [0u8; 8];
        self.fill(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    /// A length-prefixed byte string of at most `max` bytes.
    fn field(&mut self, max: usize) -> Result<Vec<u8>, StreamError> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(corrupt(format!("a field of {n} bytes (at most {max})")));
        }
        let mut v = vec![0u8; n];
        self.fill(&mut v)?;
        Ok(v)
    }
}

impl<R: Read> Reader for crate::stream::PayloadReader<R> {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), StreamError> {
        crate::stream::PayloadReader::fill(self, buf)
    }
}

struct IoReader<R: Read>(R);

impl<R: Read> Reader for IoReader<R> {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), StreamError> {
        self.0.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                corrupt("cut short")
            } else {
                StreamError::Io(e)
            }
        })
    }
}

/// Every path of a snapshot.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Manifest {
    pub entries: BTreeMap<PathKey, Entry>,
}

const MANIFEST_MAGIC: &[u8; 16] = b"plinth-manifest\n";
const MANIFEST_VERSION: u16 = 1;

impl Manifest {
    /// The snapshot's identity: sha256 over every path and entry, in
    /// order, as hex.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        let mut buf = Vec::new();
        for (p, e) in &self.entries {
            buf.clear();
            put_bytes(&mut buf, &p.0);
            e.encode(&mut buf);
            h.update(&buf);
        }
        hex(&h.finalize())
    }

    /// Writes the manifest to `path` (zstd-compressed).
    pub fn save(&self, path: &Path) -> Result<(), StoreError> {
        let what = || format!("{}: write", path.display());
        let f = std::fs::File::create(path).map_err(crate::io_err(what()))?;
        let mut enc = zstd::stream::write::Encoder::new(io::BufWriter::new(f), 3)
            .map_err(crate::io_err(what()))?;
        let mut buf = Vec::new();
        buf.extend_from_slice(MANIFEST_MAGIC);
        buf.extend_from_slice(&MANIFEST_VERSION.to_le_bytes());
        buf.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for (p, e) in &self.entries {
            put_bytes(&mut buf, &p.0);
            e.encode(&mut buf);
            if buf.len() > 1 << 16 {
                enc.write_all(&buf).map_err(crate::io_err(what()))?;
                buf.clear();
            }
        }
        enc.write_all(&buf).map_err(crate::io_err(what()))?;
        let f = enc
            .finish()
            .map_err(crate::io_err(what()))?
            .into_inner()
            .map_err(|e| crate::io_err(what())(e.into_error()))?;
        f.sync_all().map_err(crate::io_err(what()))
    }

    /// Reads a manifest [`Manifest::save`] wrote.
    pub fn load(path: &Path) -> Result<Manifest, StoreError> {
        let f = std::fs::File::open(path).map_err(crate::io_err(path.display().to_string()))?;
        let dec = zstd::stream::read::Decoder::new(f)
            .map_err(crate::io_err(path.display().to_string()))?;
        let mut r = IoReader(dec);
        let bad = |e: StreamError| StoreError::Damaged(format!("{}: {e}", path.display()));
        let mut magic = [0u8; 16];
        r.fill(&mut magic).map_err(bad)?;
        let mut v = [0u8; 2];
        r.fill(&mut v).map_err(bad)?;
        if &magic != MANIFEST_MAGIC || u16::from_le_bytes(v) != MANIFEST_VERSION {
            return Err(StoreError::Damaged(format!(
                "{}: not a plinth manifest (version 1)",
                path.display()
            )));
        }
        let n = r.u64().map_err(bad)?;
        let mut m = Manifest::default();
        for _ in 0..n {
            let p = check_path(r.field(MAX_PATH).map_err(bad)?).map_err(bad)?;
            let e = Entry::decode(&mut r).map_err(bad)?;
            m.entries.insert(PathKey(p), e);
        }
        Ok(m)
    }

    /// Removes `path` and everything below it.
    pub fn remove_tree(&mut self, path: &PathKey) {
        self.entries.remove(path);
        let below: Vec<PathKey> = self
            .entries
            .range(path.clone()..)
            .take_while(|(k, _)| k.is_below(path) || *k == path)
            .map(|(k, _)| k.clone())
            .collect();
        for k in below {
            self.entries.remove(&k);
        }
    }
}

/// What an incremental stream carries to turn `old` into `new`.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Diff {
    /// Paths to remove (with what they hold) before anything is written;
    /// no path here is below another.
    pub delete: Vec<Vec<u8>>,
    /// Paths to write, in walk order.
    pub write: Vec<Vec<u8>>,
}

/// The difference from `old` to `new`.
///
/// A path is written when it is new, or its entry changed. A file whose
/// inode data changed is written with every other path of its inode (the
/// receiver makes a new inode, and the other names must point to it); a
/// hardlink whose leader did not change is written as a link only. A path
/// is deleted when it is gone, or changed type (it is then written again).
pub(crate) fn diff(old: &Manifest, new: &Manifest) -> Diff {
    let mut d = Diff::default();
    let mut deleted: Vec<PathKey> = Vec::new();
    for (p, e) in &old.entries {
        let gone = match new.entries.get(p) {
            None => true,
            Some(n) => n.kind != e.kind,
        };
        if gone && !deleted.last().is_some_and(|last| p.is_below(last)) {
            deleted.push(p.clone());
        }
    }
    // Leaders whose inode data changed: all their paths are written.
    let mut changed_leaders: BTreeSet<&[u8]> = BTreeSet::new();
    for (p, e) in &new.entries {
        if e.kind != Kind::File || e.link.is_some() {
            continue;
        }
        let same = old
            .entries
            .get(p)
            .is_some_and(|o| o == e && !deleted.iter().any(|d| p == d || p.is_below(d)));
        if !same {
            changed_leaders.insert(&p.0);
        }
    }
    for (p, e) in &new.entries {
        let under_deleted = deleted.iter().any(|d| p == d || p.is_below(d));
        let write = match (&e.link, old.entries.get(p)) {
            _ if under_deleted => true,
            (Some(leader), _) if changed_leaders.contains(&leader[..]) => true,
            (_, None) => true,
            (_, Some(o)) => o != e,
        };
        if write {
            d.write.push(p.0.clone());
        }
    }
    d.delete = deleted.into_iter().map(|k| k.0).collect();
    d
}

/// Lowercase hex.
pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(hash: u8, link: Option<&str>) -> Entry {
        Entry {
            kind: Kind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1,
            mtime_ns: 0,
            rdev: 0,
            xattrs: vec![],
            size: 1,
            hash: [hash; 32],
            target: vec![],
            link: link.map(|l| l.as_bytes().to_vec()),
        }
    }

    fn dir() -> Entry {
        Entry {
            kind: Kind::Dir,
            mode: 0o755,
            ..file(0, None)
        }
    }

    fn manifest(items: &[(&str, Entry)]) -> Manifest {
        Manifest {
            entries: items
                .iter()
                .map(|(p, e)| (PathKey(p.as_bytes().to_vec()), e.clone()))
                .collect(),
        }
    }

    fn strs(v: &[Vec<u8>]) -> Vec<&str> {
        v.iter().map(|p| std::str::from_utf8(p).unwrap()).collect()
    }

    #[test]
    fn walk_order() {
        let mut keys: Vec<PathKey> = ["a-b", "a/b", "a", "", "a/b/c", "b"]
            .iter()
            .map(|s| PathKey(s.as_bytes().to_vec()))
            .collect();
        keys.sort();
        let got: Vec<&str> = keys
            .iter()
            .map(|k| std::str::from_utf8(&k.0).unwrap())
            .collect();
        assert_eq!(got, ["", "a", "a/b", "a/b/c", "a-b", "b"]);
        assert!(PathKey(b"a/b".to_vec()).is_below(&PathKey(b"a".to_vec())));
        assert!(!PathKey(b"a-b".to_vec()).is_below(&PathKey(b"a".to_vec())));
        assert!(PathKey(b"a".to_vec()).is_below(&PathKey(vec![])));
    }

    #[test]
    fn entries_round_trip_and_paths_are_checked() {
        let mut e = file(3, Some("x/y"));
        e.xattrs = vec![(b"trusted.overlay.opaque".to_vec(), b"y".to_vec())];
        let mut buf = Vec::new();
        e.encode(&mut buf);
        let back = Entry::decode(&mut IoReader(&buf[..])).unwrap();
        assert_eq!(back, e);
        for bad in ["/etc", "a/../b", "a//b", "./a", "a/", "a\0b"] {
            assert!(check_path(bad.as_bytes().to_vec()).is_err(), "{bad:?}");
        }
        assert!(check_path(b"a/b.c/..d".to_vec()).is_ok());
    }

    #[test]
    fn diffs() {
        let old = manifest(&[
            ("", dir()),
            ("d", dir()),
            ("d/f", file(1, None)),
            ("d/g", file(2, None)),
            ("h1", file(5, None)),
            ("h2", file(5, Some("h1"))),
            ("k", file(7, None)),
            ("k2", file(7, Some("k"))),
            ("t", file(8, None)),
        ]);
        let new = manifest(&[
            ("", dir()),
            ("d", file(9, None)), // was a directory
            ("h1", file(6, None)),
            ("h2", file(6, Some("h1"))),
            ("k", file(7, None)),
            ("k2", file(7, Some("k"))),
            ("k3", file(7, Some("k"))),
            ("t", file(8, None)),
        ]);
        let d = diff(&old, &new);
        assert_eq!(strs(&d.delete), ["d"]);
        assert_eq!(strs(&d.write), ["d", "h1", "h2", "k3"]);
        assert_eq!(diff(&new, &new), Diff::default());
        let mut m = old.clone();
        m.remove_tree(&PathKey(b"d".to_vec()));
        assert_eq!(m.entries.len(), old.entries.len() - 3);
    }
}
