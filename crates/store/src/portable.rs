//! The portable payload: plinth's own records of a tree, for filesystems
//! without btrfs send. Inside the envelope of `stream.rs` (zstd, trailing
//! digest), the payload is:
//!
//! ```text
//! 1 path entry [content]    write this path (create, or replace what is there)
//! 2 path                    delete this path and what it holds
//! 3 u64 n                   end; n = the number of records before it
//! content = (u32 len, u64 offset, len bytes)* u32 0
//! ```
//!
//! A path is a `u32` length and bytes; an entry is [`Entry::encode`]. A
//! file's content follows its entry when it is not a hardlink: its data
//! segments in increasing order (holes are not sent), and the entry holds
//! its size and sha256, which the receiver checks. A full stream writes
//! every path of the snapshot; an incremental one deletes first, then
//! writes what [`crate::tree::diff`] found changed.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::OFlags;
use sha2::{Digest, Sha256};

use crate::copy::{hash_zeros, pread_full, pwrite_all, segments, BLOCK};
use crate::root::Root;
use crate::stream::PayloadReader;
use crate::tree::{check_path, corrupt, diff, show, Entry, Kind, Manifest, PathKey, Reader};
use crate::{io_err, StoreError, StreamError};

const WRITE: u8 = 1;
const DELETE: u8 = 2;
const END: u8 = 3;

fn put_path(out: &mut Vec<u8>, p: &[u8]) {
    out.extend_from_slice(&(p.len() as u32).to_le_bytes());
    out.extend_from_slice(p);
}

/// Writes the records that turn `parent` (or nothing) into the snapshot
/// whose tree is `dir` and manifest `m`.
pub(crate) fn send(
    dir: &Path,
    m: &Manifest,
    parent: Option<&Manifest>,
    out: &mut dyn Write,
) -> Result<(), StoreError> {
    let root = Root::open(dir).map_err(io_err(format!("{}: open", dir.display())))?;
    let (delete, write) = match parent {
        Some(p) => {
            let d = diff(p, m);
            (d.delete, d.write)
        }
        None => (Vec::new(), m.entries.keys().map(|k| k.0.clone()).collect()),
    };
    let werr = |e: std::io::Error| StoreError::Io {
        what: "write the stream".into(),
        source: e,
    };
    let mut records = 0u64;
    let mut buf = Vec::with_capacity(BLOCK + 64);
    for p in &delete {
        buf.clear();
        buf.push(DELETE);
        put_path(&mut buf, p);
        out.write_all(&buf).map_err(werr)?;
        records += 1;
    }
    let mut data = vec![0u8; BLOCK];
    for p in &write {
        let e = &m.entries[&PathKey(p.clone())];
        buf.clear();
        buf.push(WRITE);
        put_path(&mut buf, p);
        e.encode(&mut buf);
        out.write_all(&buf).map_err(werr)?;
        records += 1;
        if e.kind != Kind::File || e.link.is_some() {
            continue;
        }
        let what = format!("{}{}", dir.display(), show(p));
        let f = root
            .open_file(p, OFlags::RDONLY)
            .map_err(io_err(format!("{what}: open")))?;
        let mut h = Sha256::new();
        let mut at = 0u64;
        for (off, len) in segments(f.as_fd(), e.size).map_err(io_err(what.clone()))? {
            hash_zeros(&mut h, off - at);
            let mut pos = off;
            while pos < off + len {
                let want = ((off + len - pos) as usize).min(BLOCK);
                let got = pread_full(f.as_fd(), &mut data[..want], pos)
                    .map_err(io_err(format!("{what}: read")))?;
                if got == 0 {
                    break;
                }
                h.update(&data[..got]);
                buf.clear();
                buf.extend_from_slice(&(got as u32).to_le_bytes());
                buf.extend_from_slice(&pos.to_le_bytes());
                out.write_all(&buf).map_err(werr)?;
                out.write_all(&data[..got]).map_err(werr)?;
                pos += got as u64;
            }
            hash_zeros(&mut h, off + len - pos);
            at = off + len;
        }
        hash_zeros(&mut h, e.size.saturating_sub(at));
        out.write_all(&0u32.to_le_bytes()).map_err(werr)?;
        if h.finalize()[..] != e.hash[..] {
            return Err(StoreError::Damaged(format!(
                "{what}: its content changed since the snapshot was taken"
            )));
        }
    }
    buf.clear();
    buf.push(END);
    buf.extend_from_slice(&records.to_le_bytes());
    out.write_all(&buf).map_err(werr)?;
    Ok(())
}

/// What the receiver must still do to directories once every record is
/// applied: their times change with every entry written in them.
#[derive(Default)]
struct DirTimes {
    /// Path → (mtime, from the stream rather than as found).
    times: BTreeMap<PathKey, (i64, u32)>,
}

impl DirTimes {
    /// Remembers the times of `parent` as they are, before a change in it,
    /// unless the stream gives them.
    fn touch(&mut self, root: &Root, path: &[u8]) -> std::io::Result<()> {
        let parent = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => &path[..i],
            None if path.is_empty() => return Ok(()),
            None => &b""[..],
        };
        let key = PathKey(parent.to_vec());
        if self.times.contains_key(&key) {
            return Ok(());
        }
        let fd = root.dir(parent)?;
        let st = rustix::fs::fstat(&fd)?;
        self.times
            .insert(key, (st.st_mtime, st.st_mtime_nsec as u32));
        Ok(())
    }
}

/// Applies a portable payload to the tree `dir`, which holds `base` (the
/// parent snapshot's copy, or an empty directory for a full stream).
/// Returns the manifest of the result: `base` with every record applied,
/// each file's content checked against its hash.
pub(crate) fn receive<R: Read>(
    dir: &Path,
    base: Manifest,
    input: &mut PayloadReader<R>,
) -> Result<Manifest, StoreError> {
    let root = Root::open(dir).map_err(io_err(format!("{}: open", dir.display())))?;
    let mut m = base;
    let mut times = DirTimes::default();
    let mut records = 0u64;
    let mut buf = vec![0u8; BLOCK];
    let ioe = |p: &[u8]| io_err(format!("{}{}", dir.display(), show(p)));
    loop {
        let tag = input.u8()?;
        match tag {
            DELETE => {
                let p = check_path(input.field(crate::tree::MAX_PATH)?)?;
                if p.is_empty() {
                    return Err(corrupt("a record deletes the root").into());
                }
                times.touch(&root, &p).map_err(ioe(&p))?;
                root.remove(&p).map_err(ioe(&p))?;
                m.remove_tree(&PathKey(p));
            }
            WRITE => {
                let p = check_path(input.field(crate::tree::MAX_PATH)?)?;
                let e = Entry::decode(input)?;
                write_entry(&root, &mut m, &mut times, &p, &e, input, &mut buf).map_err(|err| {
                    match err {
                        Apply::Io(x) => ioe(&p)(x),
                        Apply::Stream(s) => s.into(),
                    }
                })?;
                let key = PathKey(p);
                let was_dir = m.entries.get(&key).is_some_and(|o| o.kind == Kind::Dir);
                if !(was_dir && e.kind == Kind::Dir) {
                    m.remove_tree(&key);
                }
                m.entries.insert(key, e);
            }
            END => {
                let n = input.u64()?;
                if n != records {
                    return Err(corrupt(format!(
                        "the end record counts {n} records, the stream had {records}"
                    ))
                    .into());
                }
                break;
            }
            t => return Err(corrupt(format!("unknown record type {t}")).into()),
        }
        records += 1;
    }
    for (p, t) in times.times.iter().rev() {
        if root.kind(&p.0).map_err(ioe(&p.0))? == Some(Kind::Dir) {
            root.utimes(&p.0, *t, *t).map_err(ioe(&p.0))?;
        }
    }
    Ok(m)
}

enum Apply {
    Io(std::io::Error),
    Stream(StreamError),
}

impl From<std::io::Error> for Apply {
    fn from(e: std::io::Error) -> Apply {
        Apply::Io(e)
    }
}

impl From<StreamError> for Apply {
    fn from(e: StreamError) -> Apply {
        Apply::Stream(e)
    }
}

fn write_entry<R: Read>(
    root: &Root,
    m: &mut Manifest,
    times: &mut DirTimes,
    p: &[u8],
    e: &Entry,
    input: &mut PayloadReader<R>,
    buf: &mut [u8],
) -> Result<(), Apply> {
    if p.is_empty() && e.kind != Kind::Dir {
        return Err(corrupt("the root is not a directory").into());
    }
    times.touch(root, p)?;
    let existing = root.kind(p)?;
    if e.kind == Kind::Dir {
        if existing != Some(Kind::Dir) {
            if existing.is_some() {
                root.remove(p)?;
            }
            root.create(p, Kind::Dir, 0, &[])?;
        }
        // Its times are set last, after everything written in it.
        let key = PathKey(p.to_vec());
        times.times.insert(key, (e.mtime, e.mtime_ns));
        return Ok(root.set_meta(p, e)?);
    }
    if existing.is_some() {
        root.remove(p)?;
    }
    if let Some(leader) = &e.link {
        match m.entries.get(&PathKey(leader.clone())) {
            Some(l) if l.kind == Kind::File && l.link.is_none() && l.same_inode_data(e) => {}
            _ => {
                return Err(corrupt(format!(
                    "{} is a hardlink of {}, which is not a file with the same data",
                    show(p),
                    show(leader)
                ))
                .into())
            }
        }
        return Ok(root.link(leader, p)?);
    }
    root.create(p, e.kind, e.rdev, &e.target)?;
    if e.kind == Kind::File {
        let f = root.open_file(p, OFlags::WRONLY)?;
        let mut h = Sha256::new();
        let mut at = 0u64;
        loop {
            let len = input.u32()? as usize;
            if len == 0 {
                break;
            }
            let off = input.u64()?;
            if len > BLOCK || off < at || off.checked_add(len as u64).is_none_or(|end| end > e.size)
            {
                return Err(corrupt(format!(
                    "{}: a data segment of {len} bytes at {off} (file size {})",
                    show(p),
                    e.size
                ))
                .into());
            }
            input.fill(&mut buf[..len])?;
            hash_zeros(&mut h, off - at);
            h.update(&buf[..len]);
            pwrite_all(f.as_fd(), &buf[..len], off)?;
            at = off + len as u64;
        }
        hash_zeros(&mut h, e.size - at);
        rustix::fs::ftruncate(&f, e.size).map_err(std::io::Error::from)?;
        if h.finalize()[..] != e.hash[..] {
            return Err(corrupt(format!(
                "{}: the content does not match its sha256",
                show(p)
            ))
            .into());
        }
    }
    Ok(root.set_meta(p, e)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::copy_tree;
    use crate::stream::{Format, PayloadWriter, StreamHeader};
    use std::os::unix::fs::{symlink, MetadataExt};

    fn header(id: String) -> StreamHeader {
        StreamHeader {
            format: Format::Tree,
            snapshot: Some("s".into()),
            snapshot_id: id,
            parent: None,
            parent_id: None,
            record: serde_json::Value::Null,
        }
    }

    fn round(src: &Path, base_dir: &Path, base: Manifest, parent: Option<&Manifest>) -> Manifest {
        let m = copy_tree(src, None, true).unwrap();
        let mut w = PayloadWriter::new(Vec::new(), &header(m.digest())).unwrap();
        send(src, &m, parent, &mut w).unwrap();
        let (bytes, _) = w.finish().unwrap();
        let mut r = PayloadReader::new(&bytes[..]).unwrap();
        let got = receive(base_dir, base, &mut r).unwrap();
        r.finish().unwrap();
        assert_eq!(got.digest(), m.digest());
        got
    }

    #[test]
    fn full_and_incremental_as_an_unprivileged_user_can() {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        std::fs::create_dir_all(src.join("d/e")).unwrap();
        std::fs::write(src.join("d/f"), b"hello").unwrap();
        std::fs::write(src.join("g"), vec![7u8; 600_000]).unwrap();
        std::fs::hard_link(src.join("g"), src.join("d/e/g2")).unwrap();
        symlink("../g", src.join("d/l")).unwrap();
        let sparse = std::fs::File::create(src.join("sparse")).unwrap();
        sparse.set_len(10 << 20).unwrap();
        std::fs::create_dir(&dst).unwrap();
        let m1 = round(&src, &dst, Manifest::default(), None);
        let again = copy_tree(&dst, None, true).unwrap();
        assert_eq!(again.digest(), m1.digest());
        assert_eq!(
            std::fs::metadata(dst.join("g")).unwrap().ino(),
            std::fs::metadata(dst.join("d/e/g2")).unwrap().ino()
        );
        assert!(std::fs::metadata(dst.join("sparse")).unwrap().blocks() < 100);

        std::fs::remove_dir_all(src.join("d/e")).unwrap();
        std::fs::write(src.join("d/f"), b"changed").unwrap();
        std::fs::write(src.join("new"), b"n").unwrap();
        let m2 = round(&src, &dst, m1.clone(), Some(&m1));
        assert_eq!(copy_tree(&dst, None, true).unwrap().digest(), m2.digest());
        assert!(!dst.join("d/e").exists());
        assert_eq!(std::fs::read(dst.join("d/f")).unwrap(), b"changed");
    }
}
