//! The layer extractor: one layer tar (gzip, zstd or plain, told apart by
//! their magic bytes) unpacked into an empty directory that overlayfs can
//! use as a lower layer as it is.
//!
//! Every archive is hostile until proven otherwise. The rules:
//! - names are reduced to plain components; an absolute name or a `..`
//!   component refuses the layer;
//! - the parent of every entry is opened with `openat2(RESOLVE_IN_ROOT |
//!   RESOLVE_NO_SYMLINKS)` below the layer directory, so nothing is ever
//!   written through a symlink, the layer's own included; a later entry of
//!   the same name replaces the earlier one (tar's rule) by unlinking it,
//!   never by following it;
//! - hard links must name an entry already in this layer, resolved the
//!   same way;
//! - device nodes are not created (with a warning: a container's `/dev`
//!   is its runtime's), except the 0:0 character device of an overlayfs
//!   whiteout; `.wh.NAME` becomes such a whiteout and
//!   `.wh..wh..opq` the `trusted.overlay.opaque=y` attribute of its
//!   directory; `trusted.*` attributes in the archive are dropped;
//! - setuid and setgid bits of files, and file capabilities, are stripped
//!   with a warning unless the caller keeps them;
//! - an entry larger than the cap, than the rest of an uncompressed
//!   stream, than a gzip stream of this size can expand to, or than the
//!   free space of the target file system is refused before a byte of it
//!   is written.
//!
//! The caller owns the target directory: on any error it removes it, so a
//! failed layer leaves nothing behind (see `image::import`).

use std::borrow::Cow;
use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{fchmod, fstatat, mkdirat, mknodat, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid};
use serde::Serialize;
use tar::EntryType;

use crate::digest::{Digest, HashReader};
use crate::sys;

/// How a layer blob is compressed, as its first bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// zstd (`28 b5 2f fd`).
    Zstd,
}

impl Compression {
    /// Tells the compression from the first bytes of a blob; `Err` names
    /// a compression plinth does not read.
    pub fn sniff(head: &[u8]) -> Result<Compression, &'static str> {
        match head {
            [0x1f, 0x8b, ..] => Ok(Compression::Gzip),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Ok(Compression::Zstd),
            [0xfd, b'7', b'z', b'X', b'Z', ..] => Err("xz"),
            [b'B', b'Z', b'h', ..] => Err("bzip2"),
            _ => Ok(Compression::None),
        }
    }
}

/// Limits and choices for one layer.
#[derive(Debug, Clone)]
pub struct LayerOptions {
    /// Keep setuid/setgid bits and file capabilities (default: strip them
    /// with a warning).
    pub keep_setuid: bool,
    /// The largest file accepted, in bytes.
    pub max_entry_size: u64,
    /// The most file content one layer may hold, in bytes.
    pub max_layer_size: u64,
    /// The size of the blob, when known: bounds what an entry can declare.
    pub blob_size: Option<u64>,
}

impl Default for LayerOptions {
    fn default() -> LayerOptions {
        LayerOptions {
            keep_setuid: false,
            max_entry_size: 16 << 30,
            max_layer_size: 64 << 30,
            blob_size: None,
        }
    }
}

/// What an extracted layer holds and how it read.
#[derive(Debug, Clone)]
pub struct LayerSummary {
    /// The digest of the blob as stored (compressed, if it was).
    pub digest: Digest,
    /// The digest of the uncompressed tar (the OCI `diff_id`).
    pub diff_id: Digest,
    /// The blob's compression.
    pub compression: Compression,
    /// Entries read.
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// What was neutralised rather than refused.
    pub warnings: Vec<Warning>,
}

/// Something in a layer that was changed rather than refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The entry's name in the archive.
    pub entry: String,
    /// What was done.
    pub kind: WarningKind,
}

/// The kinds of [`Warning`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WarningKind {
    /// Setuid/setgid bits removed from a file.
    #[error(
        "setuid/setgid bits stripped (mode {from:04o} became {to:04o}; --keep-setuid keeps them)"
    )]
    SetuidStripped {
        /// The mode in the archive.
        from: u32,
        /// The mode written.
        to: u32,
    },
    /// A `security.capability` attribute not written.
    #[error("file capabilities stripped (--keep-setuid keeps them)")]
    CapabilitiesStripped,
    /// An extended attribute plinth does not write.
    #[error("extended attribute {0} dropped")]
    XattrDropped(String),
    /// A device node not created.
    #[error("{kind} device {major}:{minor} not created (only 0:0 character devices, overlayfs whiteouts, are)")]
    DeviceSkipped {
        /// `character` or `block`.
        kind: &'static str,
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "entry {}: {}", self.entry, self.kind)
    }
}

/// Why an entry was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EntryProblem {
    /// `/x`.
    #[error("absolute path")]
    Absolute,
    /// `a/../../x`.
    #[error("path with a `..` component")]
    ParentDir,
    /// `link/x` where `link` is a symlink.
    #[error("would be written through the symlink {0}")]
    ThroughSymlink(String),
    /// `file/x` where `file` is not a directory.
    #[error("{0} is not a directory")]
    NotADirectory(String),
    /// A hard link whose target leaves the layer.
    #[error("hard link to {0}, outside the layer")]
    HardlinkOutside(String),
    /// A hard link to something not extracted before it.
    #[error("hard link to {0}, which is not an earlier entry of this layer")]
    HardlinkMissing(String),
    /// A tar entry type plinth does not extract.
    #[error("unsupported entry type {0:?}")]
    UnsupportedType(char),
    /// `.wh.` naming nothing, `.` or `..`.
    #[error("whiteout of an invalid name")]
    BadWhiteout,
    /// Larger than [`LayerOptions::max_entry_size`].
    #[error("declares {size} bytes, more than the cap of {cap}")]
    TooLarge {
        /// Declared size.
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// The layer's content would pass [`LayerOptions::max_layer_size`].
    #[error("the layer's files would pass the cap of {cap} bytes")]
    LayerTooLarge {
        /// The cap.
        cap: u64,
    },
    /// Larger than the stream could hold.
    #[error("declares {size} bytes, more than the {limit} bytes the archive can hold")]
    LargerThanArchive {
        /// Declared size.
        size: u64,
        /// What the rest of the stream can hold.
        limit: u64,
    },
    /// Larger than the free space of the target.
    #[error("declares {size} bytes, more than the {free} bytes free on the store's file system")]
    NoSpace {
        /// Declared size.
        size: u64,
        /// Free bytes.
        free: u64,
    },
    /// A uid or gid outside 32 bits, a non-numeric PAX value.
    #[error("bad header field {0}")]
    BadField(&'static str),
    /// The entry's root is not a directory.
    #[error("the layer root must be a directory")]
    RootNotDirectory,
    /// A system call failed while writing the entry.
    #[error("{op}: {source}")]
    Write {
        /// What was being done.
        op: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Why a layer could not be extracted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// One entry was refused.
    #[error("entry {entry}: {problem}")]
    Entry {
        /// The entry's name as the archive spells it.
        entry: String,
        /// What is wrong.
        problem: EntryProblem,
    },
    /// The stream could not be read (truncated, corrupt compression, a bad
    /// tar header).
    #[error("{context}: {source}")]
    Read {
        /// Where in the stream.
        context: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A compression plinth does not read.
    #[error("{0}-compressed layers are not supported (gzip, zstd or none)")]
    Compression(&'static str),
    /// The target directory could not be opened.
    #[error("{}: {source}", path.display())]
    Target {
        /// The directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

enum Decoder<R: Read> {
    Plain(BufReader<HashReader<R>>),
    Gzip(flate2::bufread::MultiGzDecoder<BufReader<HashReader<R>>>),
    Zstd(zstd::stream::read::Decoder<'static, BufReader<HashReader<R>>>),
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(r) => r.read(buf),
            Decoder::Zstd(r) => r.read(buf),
        }
    }
}

impl<R: Read> Decoder<R> {
    fn raw(&mut self) -> &mut BufReader<HashReader<R>> {
        match self {
            Decoder::Plain(r) => r,
            Decoder::Gzip(r) => r.get_mut(),
            Decoder::Zstd(r) => r.get_mut(),
        }
    }

    fn into_raw(self) -> BufReader<HashReader<R>> {
        match self {
            Decoder::Plain(r) => r,
            Decoder::Gzip(r) => r.into_inner(),
            Decoder::Zstd(r) => r.finish(),
        }
    }
}

/// Reads the layer blob `blob` and unpacks it into the empty directory
/// `target`, by the rules of this module. The digests it returns cover
/// the whole blob and the whole uncompressed stream; comparing them with
/// what the image expects is the caller's part.
pub fn extract_layer<R: Read>(
    blob: R,
    target: &Path,
    opts: &LayerOptions,
) -> Result<LayerSummary, LayerError> {
    let root = sys::open_dir(target).map_err(|e| LayerError::Target {
        path: target.to_path_buf(),
        source: e.into(),
    })?;
    let read_err = |context: &str| {
        let context = context.to_string();
        move |source: io::Error| LayerError::Read { context, source }
    };
    let mut raw = BufReader::with_capacity(256 << 10, HashReader::new(blob));
    let head = raw.fill_buf().map_err(read_err("reading the blob"))?;
    let compression = Compression::sniff(head).map_err(LayerError::Compression)?;
    if compression == Compression::None {
        // The blob is the tar: hash it once, as the diff_id.
        raw.get_mut().stop_hashing();
    }
    let decoder = match compression {
        Compression::None => Decoder::Plain(raw),
        Compression::Gzip => Decoder::Gzip(flate2::bufread::MultiGzDecoder::new(raw)),
        Compression::Zstd => {
            Decoder::Zstd(zstd::stream::read::Decoder::with_buffer(raw).map_err(read_err("zstd"))?)
        }
    };
    let mut x = Extractor {
        root,
        opts,
        compression,
        total: 0,
        entries: 0,
        warnings: Vec::new(),
        dirs: Vec::new(),
    };
    let mut archive = tar::Archive::new(HashReader::new(decoder));
    let entries = archive.entries().map_err(read_err("tar"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| LayerError::Read {
            context: format!("tar header after {} entries", x.entries),
            source: e,
        })?;
        x.entries += 1;
        let offset = entry.raw_file_position();
        x.entry(&mut entry, offset)?;
    }
    x.finish_dirs();
    let diff = archive.into_inner();
    let (mut decoder, diff_id, _) = diff.finish().map_err(read_err("after the tar's end"))?;
    let diff_id = diff_id.expect("the tar stream is hashed");
    io::copy(decoder.raw(), &mut io::sink()).map_err(read_err("after the compressed stream"))?;
    let (_, digest, _) = decoder
        .into_raw()
        .into_inner()
        .finish()
        .map_err(read_err("after the compressed stream"))?;
    let digest = digest.unwrap_or_else(|| diff_id.clone());
    Ok(LayerSummary {
        digest,
        diff_id,
        compression,
        entries: x.entries,
        bytes: x.total,
        warnings: x.warnings,
    })
}

struct Extractor<'a> {
    root: OwnedFd,
    opts: &'a LayerOptions,
    compression: Compression,
    total: u64,
    entries: u64,
    warnings: Vec<Warning>,
    /// Directories whose times are set last (their children change them).
    dirs: Vec<(PathBuf, TimeSpec)>,
}

/// A name reduced to plain components.
fn components(raw: &[u8]) -> Result<Vec<&OsStr>, EntryProblem> {
    if raw.first() == Some(&b'/') {
        return Err(EntryProblem::Absolute);
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(EntryProblem::ParentDir),
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok(out)
}

fn join(comps: &[&OsStr]) -> PathBuf {
    comps.iter().collect()
}

fn write_err(op: &'static str) -> impl FnOnce(Errno) -> EntryProblem {
    move |e| EntryProblem::Write {
        op,
        source: e.into(),
    }
}

fn io_write_err(op: &'static str) -> impl FnOnce(io::Error) -> EntryProblem {
    move |source| EntryProblem::Write { op, source }
}

/// The metadata of an entry, PAX records applied.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: TimeSpec,
    xattrs: Vec<(String, Vec<u8>)>,
    size: u64,
}

fn meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta, EntryProblem> {
    let h = entry.header();
    let mode = h.mode().map_err(|_| EntryProblem::BadField("mode"))? & 0o7777;
    let mut uid = h.uid().map_err(|_| EntryProblem::BadField("uid"))?;
    let mut gid = h.gid().map_err(|_| EntryProblem::BadField("gid"))?;
    let mut mtime = h.mtime().unwrap_or(0) as i64;
    let size = entry.size();
    let mut xattrs = Vec::new();
    if let Ok(Some(pax)) = entry.pax_extensions() {
        for ext in pax {
            let Ok(ext) = ext else {
                return Err(EntryProblem::BadField("pax record"));
            };
            let Ok(key) = ext.key() else { continue };
            let value = ext.value_bytes();
            let num = || {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.split('.').next())
                    .and_then(|v| v.parse::<i64>().ok())
            };
            match key {
                "uid" => uid = num().ok_or(EntryProblem::BadField("pax uid"))? as u64,
                "gid" => gid = num().ok_or(EntryProblem::BadField("pax gid"))? as u64,
                "mtime" => mtime = num().ok_or(EntryProblem::BadField("pax mtime"))?,
                k => {
                    if let Some(name) = k.strip_prefix("SCHILY.xattr.") {
                        xattrs.push((name.to_string(), value.to_vec()));
                    }
                }
            }
        }
    }
    let uid = u32::try_from(uid).map_err(|_| EntryProblem::BadField("uid"))?;
    let gid = u32::try_from(gid).map_err(|_| EntryProblem::BadField("gid"))?;
    Ok(Meta {
        mode,
        uid,
        gid,
        mtime: TimeSpec::new(mtime, 0),
        xattrs,
        size,
    })
}

impl Extractor<'_> {
    fn warn(&mut self, entry: &str, kind: WarningKind) {
        self.warnings.push(Warning {
            entry: entry.to_string(),
            kind,
        });
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        offset: u64,
    ) -> Result<(), LayerError> {
        let raw_name = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_name).into_owned();
        let fail = |problem| LayerError::Entry {
            entry: shown.clone(),
            problem,
        };
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader) {
            return Ok(());
        }
        let comps = components(&raw_name).map_err(fail)?;
        let meta = meta(entry).map_err(fail)?;
        self.entry_inner(entry, &shown, &comps, kind, meta, offset)
            .map_err(|problem| LayerError::Entry {
                entry: shown.clone(),
                problem,
            })
    }

    fn entry_inner<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        shown: &str,
        comps: &[&OsStr],
        kind: EntryType,
        mut meta: Meta,
        offset: u64,
    ) -> Result<(), EntryProblem> {
        let Some((name, parents)) = comps.split_last() else {
            // `./`: the layer's root directory itself.
            if !kind.is_dir() {
                return Err(EntryProblem::RootNotDirectory);
            }
            let dir = self.root.try_clone().map_err(io_write_err("dup"))?;
            self.set_dir_meta(&dir, shown, &meta)?;
            self.dirs.push((PathBuf::new(), meta.mtime));
            return Ok(());
        };
        let name_bytes = name.as_bytes();
        // Whiteouts: `.wh..wh..opq` marks the directory opaque; other
        // `.wh..wh.` names are aufs bookkeeping, skipped; `.wh.NAME` hides
        // NAME of the layers below.
        if let Some(rest) = name_bytes.strip_prefix(b".wh.") {
            let parent = self.parent(parents)?;
            if rest == b".wh..opq" {
                return sys::set_xattr(&parent, "trusted.overlay.opaque", b"y")
                    .map_err(io_write_err("setting trusted.overlay.opaque"));
            }
            if rest.starts_with(b".wh.") {
                return Ok(());
            }
            if rest.is_empty() || rest == b"." || rest == b".." {
                return Err(EntryProblem::BadWhiteout);
            }
            let hidden = OsStr::from_bytes(rest);
            self.clear(&parent, hidden, false)?;
            return self.whiteout(&parent, hidden, &meta);
        }
        let parent = self.parent(parents)?;
        match kind {
            EntryType::Directory => {
                if !self.clear(&parent, name, true)? {
                    mkdirat(&parent, *name, Mode::from_bits_truncate(0o700))
                        .map_err(write_err("mkdir"))?;
                }
                let dir =
                    sys::open_dir_beneath(parent.as_fd(), Path::new(name)).map_err(
                        |e| match e {
                            Errno::ELOOP => EntryProblem::ThroughSymlink(shown.to_string()),
                            e => write_err("open")(e),
                        },
                    )?;
                self.set_dir_meta(&dir, shown, &meta)?;
                self.dirs.push((join(comps), meta.mtime));
                Ok(())
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.check_size(meta.size, offset)?;
                self.clear(&parent, name, false)?;
                let mut file =
                    sys::create_file(parent.as_fd(), name).map_err(write_err("create"))?;
                io::copy(entry, &mut file).map_err(|e| {
                    if e.kind() == io::ErrorKind::UnexpectedEof {
                        EntryProblem::Write {
                            op: "reading its data (the archive is truncated)",
                            source: e,
                        }
                    } else {
                        EntryProblem::Write {
                            op: "writing",
                            source: e,
                        }
                    }
                })?;
                self.total += meta.size;
                self.strip_setuid(shown, &mut meta);
                fchown(
                    &file,
                    Some(Uid::from_raw(meta.uid)),
                    Some(Gid::from_raw(meta.gid)),
                )
                .map_err(write_err("chown"))?;
                fchmod(&file, Mode::from_bits_truncate(meta.mode)).map_err(write_err("chmod"))?;
                self.set_xattrs(&file, shown, &meta)?;
                nix::sys::stat::futimens(&file, &meta.mtime, &meta.mtime)
                    .map_err(write_err("set times"))?;
                Ok(())
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(Cow::into_owned)
                    .unwrap_or_default();
                if target.is_empty() {
                    return Err(EntryProblem::BadField("symlink target"));
                }
                self.clear(&parent, name, false)?;
                symlinkat(OsStr::from_bytes(&target), &parent, *name)
                    .map_err(write_err("symlink"))?;
                fchownat(
                    &parent,
                    *name,
                    Some(Uid::from_raw(meta.uid)),
                    Some(Gid::from_raw(meta.gid)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(write_err("chown"))?;
                nix::sys::stat::utimensat(
                    &parent,
                    *name,
                    &meta.mtime,
                    &meta.mtime,
                    nix::sys::stat::UtimensatFlags::NoFollowSymlink,
                )
                .map_err(write_err("set times"))?;
                Ok(())
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(Cow::into_owned)
                    .unwrap_or_default();
                let shown_target = String::from_utf8_lossy(&target).into_owned();
                let tcomps = components(&target)
                    .map_err(|_| EntryProblem::HardlinkOutside(shown_target.clone()))?;
                let Some((tname, tparents)) = tcomps.split_last() else {
                    return Err(EntryProblem::HardlinkOutside(shown_target));
                };
                let tparent = match sys::open_dir_beneath(self.root.as_fd(), &join(tparents)) {
                    Ok(fd) => fd,
                    Err(Errno::ELOOP) => return Err(EntryProblem::HardlinkOutside(shown_target)),
                    Err(_) => return Err(EntryProblem::HardlinkMissing(shown_target)),
                };
                if tcomps == comps {
                    return Err(EntryProblem::HardlinkMissing(shown_target));
                }
                if fstatat(&tparent, *tname, AtFlags::AT_SYMLINK_NOFOLLOW).is_err() {
                    return Err(EntryProblem::HardlinkMissing(shown_target));
                }
                self.clear(&parent, name, false)?;
                linkat(&tparent, *tname, &parent, *name, AtFlags::empty())
                    .map_err(write_err("link"))?;
                Ok(())
            }
            EntryType::Char | EntryType::Block => {
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                if kind == EntryType::Char && major == 0 && minor == 0 {
                    self.clear(&parent, name, false)?;
                    return self.whiteout(&parent, name, &meta);
                }
                // Never created: a container's /dev comes from its runtime.
                self.warn(
                    shown,
                    WarningKind::DeviceSkipped {
                        kind: if kind == EntryType::Char {
                            "character"
                        } else {
                            "block"
                        },
                        major,
                        minor,
                    },
                );
                Ok(())
            }
            EntryType::Fifo => {
                self.clear(&parent, name, false)?;
                mknodat(
                    &parent,
                    *name,
                    SFlag::S_IFIFO,
                    Mode::from_bits_truncate(0o600),
                    0,
                )
                .map_err(write_err("mkfifo"))?;
                fchownat(
                    &parent,
                    *name,
                    Some(Uid::from_raw(meta.uid)),
                    Some(Gid::from_raw(meta.gid)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(write_err("chown"))?;
                // A fifo just made in a directory only this process writes.
                nix::sys::stat::fchmodat(
                    &parent,
                    *name,
                    Mode::from_bits_truncate(meta.mode & 0o777),
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )
                .map_err(write_err("chmod"))?;
                Ok(())
            }
            other => Err(EntryProblem::UnsupportedType(other.as_byte() as char)),
        }
    }

    /// Refuses a file the stream, the caps or the disk cannot hold.
    fn check_size(&mut self, size: u64, offset: u64) -> Result<(), EntryProblem> {
        if let Some(blob) = self.opts.blob_size {
            let limit = match self.compression {
                Compression::None => Some(blob.saturating_sub(offset)),
                // DEFLATE expands at most 1032:1.
                Compression::Gzip => Some(blob.saturating_mul(1032)),
                Compression::Zstd => None,
            };
            if let Some(limit) = limit {
                if size > limit {
                    return Err(EntryProblem::LargerThanArchive { size, limit });
                }
            }
        }
        let cap = self.opts.max_entry_size;
        if size > cap {
            return Err(EntryProblem::TooLarge { size, cap });
        }
        if self.total.saturating_add(size) > self.opts.max_layer_size {
            return Err(EntryProblem::LayerTooLarge {
                cap: self.opts.max_layer_size,
            });
        }
        if size > 1 << 20 {
            if let Some(free) = sys::free_bytes(self.root.as_fd()) {
                if size > free {
                    return Err(EntryProblem::NoSpace { size, free });
                }
            }
        }
        Ok(())
    }

    /// The parent directory of an entry, created as needed, never through
    /// a symlink.
    fn parent(&self, parents: &[&OsStr]) -> Result<OwnedFd, EntryProblem> {
        match sys::open_dir_beneath(self.root.as_fd(), &join(parents)) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR) => {}
            Err(e) => return Err(write_err("open parent")(e)),
        }
        let mut dir = self.root.try_clone().map_err(io_write_err("dup"))?;
        for (i, c) in parents.iter().enumerate() {
            let shown = || join(&parents[..=i]).display().to_string();
            match sys::open_dir_beneath(dir.as_fd(), Path::new(c)) {
                Ok(fd) => dir = fd,
                Err(Errno::ENOENT) => {
                    match mkdirat(&dir, *c, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(write_err("mkdir")(e)),
                    }
                    dir = sys::open_dir_beneath(dir.as_fd(), Path::new(c))
                        .map_err(write_err("open parent"))?;
                }
                Err(Errno::ELOOP) => return Err(EntryProblem::ThroughSymlink(shown())),
                Err(Errno::ENOTDIR) => return Err(EntryProblem::NotADirectory(shown())),
                Err(e) => return Err(write_err("open parent")(e)),
            }
        }
        Ok(dir)
    }

    /// Makes room for `name` in `parent`: whatever is there goes (a
    /// symlink is unlinked, never followed), except a directory when a
    /// directory comes (tar merges them). Returns whether a directory was
    /// kept.
    fn clear(&self, parent: &OwnedFd, name: &OsStr, dir: bool) -> Result<bool, EntryProblem> {
        let st = match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(false),
            Err(e) => return Err(write_err("stat")(e)),
        };
        let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
        if is_dir && dir {
            return Ok(true);
        }
        if is_dir {
            // std's remove_dir_all never follows a symlink inside the tree.
            std::fs::remove_dir_all(sys::fd_path(parent).join(name))
                .map_err(io_write_err("removing the earlier directory"))?;
        } else {
            unlinkat(parent, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
                .map_err(write_err("unlink"))?;
        }
        Ok(false)
    }

    fn whiteout(&self, parent: &OwnedFd, name: &OsStr, meta: &Meta) -> Result<(), EntryProblem> {
        mknodat(parent, name, SFlag::S_IFCHR, Mode::empty(), 0)
            .map_err(write_err("mknod whiteout"))?;
        nix::sys::stat::utimensat(
            parent,
            name,
            &meta.mtime,
            &meta.mtime,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .map_err(write_err("set times"))
    }

    fn strip_setuid(&mut self, shown: &str, meta: &mut Meta) {
        if meta.mode & 0o6000 != 0 && !self.opts.keep_setuid {
            let from = meta.mode;
            meta.mode &= !0o6000;
            self.warn(
                shown,
                WarningKind::SetuidStripped {
                    from,
                    to: meta.mode,
                },
            );
        }
    }

    fn set_dir_meta(
        &mut self,
        dir: &OwnedFd,
        shown: &str,
        meta: &Meta,
    ) -> Result<(), EntryProblem> {
        fchown(
            dir,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )
        .map_err(write_err("chown"))?;
        // setgid on a directory only chooses the group of new files.
        fchmod(dir, Mode::from_bits_truncate(meta.mode & 0o3777)).map_err(write_err("chmod"))?;
        self.set_xattrs(dir, shown, meta)
    }

    /// Writes the attributes an image may carry: `user.*`, POSIX ACLs,
    /// file capabilities when kept and `trusted.overlay.opaque=y`;
    /// anything else is dropped with a warning.
    fn set_xattrs(&mut self, fd: &impl AsFd, shown: &str, meta: &Meta) -> Result<(), EntryProblem> {
        for (name, value) in &meta.xattrs {
            let allowed = name.starts_with("user.")
                || name == "system.posix_acl_access"
                || name == "system.posix_acl_default"
                || (name == "trusted.overlay.opaque" && value == b"y");
            if name == "security.capability" {
                if !self.opts.keep_setuid {
                    self.warn(shown, WarningKind::CapabilitiesStripped);
                    continue;
                }
            } else if !allowed {
                self.warn(shown, WarningKind::XattrDropped(name.clone()));
                continue;
            }
            sys::set_xattr(fd, name, value)
                .map_err(io_write_err("setting an extended attribute"))?;
        }
        Ok(())
    }

    /// Sets the times of every directory, children first.
    fn finish_dirs(&mut self) {
        for (rel, t) in self.dirs.iter().rev() {
            if let Ok(fd) = sys::open_dir_beneath(self.root.as_fd(), rel) {
                let _ = nix::sys::stat::futimens(&fd, t, t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_reduce_to_plain_components() {
        let c = |s: &str| components(s.as_bytes()).map(|v| join(&v));
        assert_eq!(c("./a//b/./c").unwrap(), PathBuf::from("a/b/c"));
        assert_eq!(c("./").unwrap(), PathBuf::new());
        assert!(matches!(c("/etc/passwd"), Err(EntryProblem::Absolute)));
        assert!(matches!(c("a/../../x"), Err(EntryProblem::ParentDir)));
        assert!(matches!(c("a/.."), Err(EntryProblem::ParentDir)));
    }

    #[test]
    fn compression_by_magic() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Ok(Compression::Gzip));
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
            Ok(Compression::Zstd)
        );
        assert_eq!(Compression::sniff(b"\xfd7zXZ\0"), Err("xz"));
        assert_eq!(Compression::sniff(b"bin/\0\0"), Ok(Compression::None));
        assert_eq!(Compression::sniff(b""), Ok(Compression::None));
    }

    #[test]
    fn an_empty_stream_is_an_empty_layer() {
        let dir = tempfile::tempdir().unwrap();
        let s = extract_layer(&[0u8; 1024][..], dir.path(), &LayerOptions::default()).unwrap();
        assert_eq!(s.entries, 0);
        assert_eq!(s.diff_id, Digest::of(&[0u8; 1024]));
        assert_eq!(s.digest, s.diff_id);
    }
}
