//! Applies a btrfs send stream (version 1, as `BTRFS_IOC_SEND` writes it)
//! without the `btrfs` program: the stream is parsed command by command
//! (`u32 len, u16 cmd, u32 crc32c` then type-length-value attributes; see
//! the kernel's `fs/btrfs/send.h`), each command's CRC is checked, and
//! each is carried out in a new subvolume through a [`Root`], so no path
//! of the stream can reach outside it.
//!
//! The first command makes the subvolume: `subvol` an empty one,
//! `snapshot` a writable snapshot of the local subvolume whose received
//! UUID (or UUID) is the stream's parent. `clone` shares extents from the
//! subvolume being received or from a local one found the same way. The
//! caller seals the result (`BTRFS_IOC_SET_RECEIVED_SUBVOL`, then
//! read-only) only after the envelope's digest is checked.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;

use crate::root::Root;
use crate::stream::PayloadReader;
use crate::tree::{check_path, corrupt, show, Kind, Reader};
use crate::{btrfs, io_err, StoreError, StreamError};

const MAGIC: &[u8; 13] = b"btrfs-stream\0";
/// `BTRFS_SEND_BUF_SIZE_V1`: no version 1 command is larger.
const MAX_CMD: usize = 64 * 1024;

// Commands (`enum btrfs_send_cmd`, version 1).
const C_SUBVOL: u16 = 1;
const C_SNAPSHOT: u16 = 2;
const C_MKFILE: u16 = 3;
const C_MKDIR: u16 = 4;
const C_MKNOD: u16 = 5;
const C_MKFIFO: u16 = 6;
const C_MKSOCK: u16 = 7;
const C_SYMLINK: u16 = 8;
const C_RENAME: u16 = 9;
const C_LINK: u16 = 10;
const C_UNLINK: u16 = 11;
const C_RMDIR: u16 = 12;
const C_SET_XATTR: u16 = 13;
const C_REMOVE_XATTR: u16 = 14;
const C_WRITE: u16 = 15;
const C_CLONE: u16 = 16;
const C_TRUNCATE: u16 = 17;
const C_CHMOD: u16 = 18;
const C_CHOWN: u16 = 19;
const C_UTIMES: u16 = 20;
const C_END: u16 = 21;
const C_UPDATE_EXTENT: u16 = 22;

// Attributes (`BTRFS_SEND_A_*`, version 1).
const A_UUID: u16 = 1;
const A_CTRANSID: u16 = 2;
const A_SIZE: u16 = 4;
const A_MODE: u16 = 5;
const A_UID: u16 = 6;
const A_GID: u16 = 7;
const A_RDEV: u16 = 8;
const A_MTIME: u16 = 10;
const A_ATIME: u16 = 11;
const A_XATTR_NAME: u16 = 13;
const A_XATTR_DATA: u16 = 14;
const A_PATH: u16 = 15;
const A_PATH_TO: u16 = 16;
const A_PATH_LINK: u16 = 17;
const A_FILE_OFFSET: u16 = 18;
const A_DATA: u16 = 19;
const A_CLONE_UUID: u16 = 20;
const A_CLONE_PATH: u16 = 22;
const A_CLONE_OFFSET: u16 = 23;
const A_CLONE_LEN: u16 = 24;

/// CRC-32C as btrfs send computes it: seed 0 and no final inversion.
fn crc(data: &[&[u8]]) -> u32 {
    let mut c = !0u32;
    for d in data {
        c = crc32c::crc32c_append(c, d);
    }
    !c
}

/// One command's attributes.
struct Cmd<'a> {
    kind: u16,
    attrs: Vec<(u16, &'a [u8])>,
}

impl<'a> Cmd<'a> {
    fn parse(kind: u16, mut body: &'a [u8]) -> Result<Cmd<'a>, StreamError> {
        let mut attrs = Vec::new();
        while !body.is_empty() {
            if body.len() < 4 {
                return Err(corrupt("a btrfs attribute header is cut"));
            }
            let t = u16::from_le_bytes([body[0], body[1]]);
            let n = u16::from_le_bytes([body[2], body[3]]) as usize;
            if body.len() < 4 + n {
                return Err(corrupt(format!("btrfs attribute {t} is cut")));
            }
            attrs.push((t, &body[4..4 + n]));
            body = &body[4 + n..];
        }
        Ok(Cmd { kind, attrs })
    }

    fn raw(&self, t: u16) -> Result<&'a [u8], StreamError> {
        self.attrs
            .iter()
            .find(|(k, _)| *k == t)
            .map(|(_, v)| *v)
            .ok_or_else(|| corrupt(format!("btrfs command {} lacks attribute {t}", self.kind)))
    }

    fn u64(&self, t: u16) -> Result<u64, StreamError> {
        let v = self.raw(t)?;
        let b: [u8; 8] = v
            .try_into()
            .map_err(|_| corrupt(format!("btrfs attribute {t} is not a u64")))?;
        Ok(u64::from_le_bytes(b))
    }

    fn uuid(&self, t: u16) -> Result<[u8; 16], StreamError> {
        self.raw(t)?
            .try_into()
            .map_err(|_| corrupt(format!("btrfs attribute {t} is not a UUID")))
    }

    fn time(&self, t: u16) -> Result<(i64, u32), StreamError> {
        let v = self.raw(t)?;
        if v.len() != 12 {
            return Err(corrupt(format!("btrfs attribute {t} is not a timespec")));
        }
        let s = u64::from_le_bytes(v[..8].try_into().expect("8 bytes"));
        let ns = u32::from_le_bytes(v[8..].try_into().expect("4 bytes"));
        Ok((s as i64, ns))
    }

    fn path(&self, t: u16) -> Result<Vec<u8>, StreamError> {
        check_path(self.raw(t)?.to_vec())
    }
}

/// What a received subvolume was on the sending side.
pub(crate) struct Received {
    /// The sent subvolume's UUID (becomes the received UUID).
    pub uuid: [u8; 16],
    /// Its `ctransid`.
    pub ctransid: u64,
}

/// Finds, among the subvolumes in `dir`, the one whose received UUID or
/// UUID is `uuid`.
fn find_subvolume(dir: &Path, uuid: &[u8; 16]) -> Result<Option<PathBuf>, StoreError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(dir.display().to_string())(e)),
    };
    let mut by_uuid = None;
    for ent in rd {
        let p = ent.map_err(io_err(dir.display().to_string()))?.path();
        if !btrfs::is_subvolume(&p).unwrap_or(false) {
            continue;
        }
        let info = btrfs::info(&p).map_err(io_err(p.display().to_string()))?;
        if &info.received_uuid == uuid {
            return Ok(Some(p));
        }
        if &info.uuid == uuid {
            by_uuid = Some(p);
        }
    }
    Ok(by_uuid)
}

struct State<'a> {
    target: &'a Path,
    sources: &'a Path,
    root: Option<Root>,
    received: Option<Received>,
    /// The file being written, kept open across `write` commands.
    writing: Option<(Vec<u8>, OwnedFd)>,
}

impl State<'_> {
    fn root(&self) -> Result<&Root, StoreError> {
        self.root
            .as_ref()
            .ok_or_else(|| corrupt("a btrfs command before subvol or snapshot").into())
    }

    fn file(&mut self, path: &[u8]) -> Result<&OwnedFd, StoreError> {
        if self.writing.as_ref().is_none_or(|(p, _)| p != path) {
            let fd = self
                .root()?
                .open_file(path, OFlags::WRONLY)
                .map_err(io_err(format!(
                    "{}{}: open",
                    self.target.display(),
                    show(path)
                )))?;
            self.writing = Some((path.to_vec(), fd));
        }
        Ok(&self.writing.as_ref().expect("just set").1)
    }

    fn apply(&mut self, c: &Cmd<'_>) -> Result<(), StoreError> {
        if !matches!(c.kind, C_WRITE | C_CLONE | C_TRUNCATE) {
            self.writing = None;
        }
        let ioe = |p: &[u8]| io_err(format!("{}{}", self.target.display(), show(p)));
        match c.kind {
            C_SUBVOL | C_SNAPSHOT => {
                if self.root.is_some() {
                    return Err(corrupt("a second subvolume in one stream").into());
                }
                let uuid = c.uuid(A_UUID)?;
                let ctransid = c.u64(A_CTRANSID)?;
                if c.kind == C_SUBVOL {
                    btrfs::create(self.target).map_err(io_err(format!(
                        "{}: create subvolume",
                        self.target.display()
                    )))?;
                } else {
                    let parent = c.uuid(A_CLONE_UUID)?;
                    let src = find_subvolume(self.sources, &parent)?.ok_or_else(|| {
                        StoreError::NoParent(format!(
                            "the stream is incremental on the btrfs subvolume {}, which {} does not hold",
                            btrfs::uuid_string(&parent),
                            self.sources.display()
                        ))
                    })?;
                    btrfs::snapshot(&src, self.target, false).map_err(io_err(format!(
                        "{}: snapshot {}",
                        self.target.display(),
                        src.display()
                    )))?;
                }
                self.root = Some(
                    Root::open(self.target)
                        .map_err(io_err(format!("{}: open", self.target.display())))?,
                );
                self.received = Some(Received { uuid, ctransid });
            }
            C_MKFILE | C_MKDIR | C_MKFIFO | C_MKSOCK | C_SYMLINK | C_MKNOD => {
                let p = c.path(A_PATH)?;
                let (kind, rdev, target) = match c.kind {
                    C_MKFILE => (Kind::File, 0, Vec::new()),
                    C_MKDIR => (Kind::Dir, 0, Vec::new()),
                    C_MKFIFO => (Kind::Fifo, 0, Vec::new()),
                    C_MKSOCK => (Kind::Socket, 0, Vec::new()),
                    C_SYMLINK => (Kind::Symlink, 0, c.raw(A_PATH_LINK)?.to_vec()),
                    _ => {
                        let mode = c.u64(A_MODE)? as u32;
                        let kind = Kind::from_mode(mode)
                            .filter(|k| {
                                matches!(k, Kind::Char | Kind::Block | Kind::Fifo | Kind::Socket)
                            })
                            .ok_or_else(|| corrupt(format!("mknod {}: mode {mode:o}", show(&p))))?;
                        (kind, c.u64(A_RDEV)?, Vec::new())
                    }
                };
                if kind == Kind::Symlink && (target.is_empty() || target.contains(&0)) {
                    return Err(corrupt(format!("symlink {}: bad target", show(&p))).into());
                }
                self.root()?
                    .create(&p, kind, rdev, &target)
                    .map_err(ioe(&p))?;
            }
            C_RENAME => {
                let (from, to) = (c.path(A_PATH)?, c.path(A_PATH_TO)?);
                self.root()?.rename(&from, &to).map_err(ioe(&from))?;
            }
            C_LINK => {
                let (p, existing) = (c.path(A_PATH)?, c.path(A_PATH_LINK)?);
                self.root()?.link(&existing, &p).map_err(ioe(&p))?;
            }
            C_UNLINK | C_RMDIR => {
                let p = c.path(A_PATH)?;
                self.root()?
                    .unlink(&p, c.kind == C_RMDIR)
                    .map_err(ioe(&p))?;
            }
            C_SET_XATTR => {
                let p = c.path(A_PATH)?;
                let name = c.raw(A_XATTR_NAME)?;
                self.root()?
                    .set_xattr(&p, name, c.raw(A_XATTR_DATA)?)
                    .map_err(ioe(&p))?;
            }
            C_REMOVE_XATTR => {
                let p = c.path(A_PATH)?;
                self.root()?
                    .remove_xattr(&p, c.raw(A_XATTR_NAME)?)
                    .map_err(ioe(&p))?;
            }
            C_WRITE => {
                let p = c.path(A_PATH)?;
                let off = c.u64(A_FILE_OFFSET)?;
                let data = c.raw(A_DATA)?;
                let fd = self.file(&p)?;
                crate::copy::pwrite_all(fd.as_fd(), data, off).map_err(ioe(&p))?;
            }
            C_CLONE => {
                let p = c.path(A_PATH)?;
                let off = c.u64(A_FILE_OFFSET)?;
                let len = c.u64(A_CLONE_LEN)?;
                let src_uuid = c.uuid(A_CLONE_UUID)?;
                let src_path = c.path(A_CLONE_PATH)?;
                let src_off = c.u64(A_CLONE_OFFSET)?;
                let own = self.received.as_ref().is_some_and(|r| r.uuid == src_uuid);
                let src = if own {
                    self.root()?.open_file(&src_path, OFlags::RDONLY)
                } else {
                    let sub = find_subvolume(self.sources, &src_uuid)?.ok_or_else(|| {
                        StoreError::NoParent(format!(
                            "clone {}: no local subvolume {}",
                            show(&p),
                            btrfs::uuid_string(&src_uuid)
                        ))
                    })?;
                    Root::open(&sub).and_then(|r| r.open_file(&src_path, OFlags::RDONLY))
                }
                .map_err(ioe(&src_path))?;
                let fd = self.file(&p)?;
                crate::sys::clone_range(fd.as_fd(), src.as_fd(), src_off, len, off)
                    .map_err(ioe(&p))?;
            }
            C_TRUNCATE => {
                let p = c.path(A_PATH)?;
                let size = c.u64(A_SIZE)?;
                let fd = self.file(&p)?;
                rustix::fs::ftruncate(fd, size).map_err(|e| ioe(&p)(e.into()))?;
            }
            C_CHMOD => {
                let p = c.path(A_PATH)?;
                let mode = c.u64(A_MODE)? as u32;
                self.root()?.chmod(&p, mode).map_err(ioe(&p))?;
            }
            C_CHOWN => {
                let p = c.path(A_PATH)?;
                let (uid, gid) = (c.u64(A_UID)?, c.u64(A_GID)?);
                let (uid, gid) = (
                    u32::try_from(uid).map_err(|_| corrupt(format!("uid {uid}")))?,
                    u32::try_from(gid).map_err(|_| corrupt(format!("gid {gid}")))?,
                );
                self.root()?.chown(&p, uid, gid).map_err(ioe(&p))?;
            }
            C_UTIMES => {
                let p = c.path(A_PATH)?;
                let (a, m) = (c.time(A_ATIME)?, c.time(A_MTIME)?);
                self.root()?.utimes(&p, a, m).map_err(ioe(&p))?;
            }
            // Only in streams made without file data, which plinth never
            // asks for: nothing to write.
            C_UPDATE_EXTENT => {}
            k => {
                return Err(corrupt(format!(
                    "btrfs command {k} is not part of send stream version 1"
                ))
                .into())
            }
        }
        Ok(())
    }
}

/// Applies the btrfs send stream of `input` into the new subvolume
/// `target` (which must not exist). Parents and clone sources are looked
/// up among the subvolumes in `sources`. On error the caller removes
/// `target`.
pub(crate) fn receive<R: Read>(
    input: &mut PayloadReader<R>,
    target: &Path,
    sources: &Path,
) -> Result<Received, StoreError> {
    let mut magic = [0u8; 13];
    input.fill(&mut magic)?;
    if &magic != MAGIC {
        return Err(corrupt("the payload is not a btrfs send stream").into());
    }
    let version = input.u32()?;
    if version != 1 {
        return Err(
            StreamError::Unsupported(format!("btrfs send stream version {version}")).into(),
        );
    }
    let mut st = State {
        target,
        sources,
        root: None,
        received: None,
        writing: None,
    };
    let mut body = vec![0u8; MAX_CMD];
    loop {
        let mut head = [0u8; 10];
        input.fill(&mut head)?;
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_le_bytes([head[4], head[5]]);
        let sum = u32::from_le_bytes(head[6..].try_into().expect("4 bytes"));
        if len > MAX_CMD {
            return Err(corrupt(format!("a btrfs command of {len} bytes")).into());
        }
        input.fill(&mut body[..len])?;
        head[6..].fill(0);
        if crc(&[&head, &body[..len]]) != sum {
            return Err(corrupt(format!("btrfs command {kind}: CRC mismatch")).into());
        }
        if kind == C_END {
            break;
        }
        let cmd = Cmd::parse(kind, &body[..len])?;
        st.apply(&cmd)?;
    }
    st.writing = None;
    st.received
        .ok_or_else(|| corrupt("a btrfs stream without a subvolume").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_as_btrfs_computes_it() {
        // CRC-32C (Castagnoli, reflected) from seed 0 without the final
        // inversion, bit by bit: 0x58e3fa20 for the check string.
        assert_eq!(crc(&[b"123456789"]), 0x58e3_fa20);
        assert_eq!(crc(&[b"1234", b"56789"]), 0x58e3_fa20);
        assert_eq!(crc(&[b""]), 0);
    }

    #[test]
    fn attributes() {
        let mut body = Vec::new();
        body.extend_from_slice(&A_PATH.to_le_bytes());
        body.extend_from_slice(&3u16.to_le_bytes());
        body.extend_from_slice(b"a/b");
        body.extend_from_slice(&A_SIZE.to_le_bytes());
        body.extend_from_slice(&8u16.to_le_bytes());
        body.extend_from_slice(&42u64.to_le_bytes());
        let c = Cmd::parse(C_TRUNCATE, &body).unwrap();
        assert_eq!(c.path(A_PATH).unwrap(), b"a/b");
        assert_eq!(c.u64(A_SIZE).unwrap(), 42);
        assert!(c.u64(A_MODE).is_err());
        assert!(Cmd::parse(C_TRUNCATE, &body[..body.len() - 1]).is_err());
        let mut bad = Vec::new();
        bad.extend_from_slice(&A_PATH.to_le_bytes());
        bad.extend_from_slice(&5u16.to_le_bytes());
        bad.extend_from_slice(b"../up");
        assert!(Cmd::parse(C_UNLINK, &bad).unwrap().path(A_PATH).is_err());
    }
}
