//! Images: the [`Store`] of layers and image records under a data
//! directory, importing archives into it, listing, removing, exporting,
//! and the read-only overlay [`View`] of an image.
//!
//! On disk, under the data directory (`/var/lib/plinth` by default):
//! - `layers/sha256/<diff_id hex>/`: one extracted layer, stored once
//!   however many images use it, usable as an overlayfs lower layer as it
//!   is (whiteouts are 0:0 character devices, opaque directories carry
//!   `trusted.overlay.opaque=y`);
//! - `images/<name>.json`: the record of one image (`/` in the name is
//!   written `%2F`): its layers bottom first, its config;
//! - `images/.lock`: held while layers are put in place or removed and
//!   records written.
//!
//! A layer is extracted into `layers/.tmp-<pid>-*` and renamed into place
//! only after both of its digests matched; the record is written last, by
//! rename. A failed import therefore leaves neither a partial layer nor a
//! record, and temp directories of a killed import are removed by the next
//! one.

mod archive;
mod config;
mod export;
mod layer;
mod layout;

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use config::ImageConfig;
pub use layer::{
    extract_layer, Compression, EntryProblem, LayerError, LayerOptions, LayerSummary, Warning,
    WarningKind,
};
pub use layout::Format;

use crate::digest::Digest;
use crate::sys;
use archive::Container;
use layout::{LayerRef, Plan};

/// Why an image operation failed. Each message names the file (archive,
/// member, record) and the problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The input is none of the formats plinth reads.
    #[error("{}: not an image: {why}", path.display())]
    NotAnImage {
        /// The input.
        path: PathBuf,
        /// What it is instead.
        why: String,
    },
    /// A metadata member is missing a field, is not JSON, is too large.
    #[error("{}: {member}: {detail}", archive.display())]
    Malformed {
        /// The archive.
        archive: PathBuf,
        /// The member.
        member: String,
        /// What is wrong.
        detail: String,
    },
    /// A member named by the image is not in the archive.
    #[error("{}: {member}: missing from the archive", archive.display())]
    Missing {
        /// The archive.
        archive: PathBuf,
        /// The member.
        member: String,
    },
    /// A blob's content does not have the digest that names it.
    #[error("{}: {member}: digest mismatch: expected {expected}, content is {actual}", archive.display())]
    DigestMismatch {
        /// The archive.
        archive: PathBuf,
        /// The member.
        member: String,
        /// The digest the image names.
        expected: Digest,
        /// The digest of what was read.
        actual: Digest,
    },
    /// A layer was refused.
    #[error("{}: layer {index}/{count} ({member}): {source}", archive.display())]
    Layer {
        /// The archive.
        archive: PathBuf,
        /// The layer's member.
        member: String,
        /// 1-based, bottom first.
        index: usize,
        /// Layers in the image.
        count: usize,
        /// What is wrong.
        #[source]
        source: LayerError,
    },
    /// The archive holds several images and none was chosen.
    #[error("{}: holds {count} images; name the one to import with --name", archive.display())]
    Several {
        /// The archive.
        archive: PathBuf,
        /// How many.
        count: usize,
    },
    /// The archive names no image and none was given.
    #[error("{}: the archive names no image; give one with --name", archive.display())]
    NoName {
        /// The archive.
        archive: PathBuf,
    },
    /// An image name plinth does not accept.
    #[error("{name:?}: not a valid image name: {why}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        why: &'static str,
    },
    /// No image of that name.
    #[error("image {0}: no such image")]
    NotFound(String),
    /// The image is used by containers.
    #[error("image {name}: in use by {}; remove them first", users.join(", "))]
    InUse {
        /// The image.
        name: String,
        /// The containers.
        users: Vec<String>,
    },
    /// An image record could not be read.
    #[error("{}: not an image record: {detail}", path.display())]
    Record {
        /// The record.
        path: PathBuf,
        /// The parse error.
        detail: String,
    },
    /// The overlay of an image could not be mounted.
    #[error("image {name}: mounting its layers on {}: {source}", target.display())]
    Mount {
        /// The image.
        name: String,
        /// The mount point.
        target: PathBuf,
        /// The error.
        #[source]
        source: nix::errno::Errno,
    },
}

impl ImageError {
    pub(crate) fn io(path: &Path, source: io::Error) -> ImageError {
        ImageError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The name to store the image under (default: the one the archive
    /// gives, or a root filesystem tar's file name).
    pub name: Option<String>,
    /// Rules for the layers.
    pub layer: LayerOptions,
}

/// What an import or export is doing, for progress displays.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Progress {
    /// The image has this many layers, of this many bytes in all (blob
    /// sizes).
    Start {
        /// Layers.
        layers: usize,
        /// Bytes.
        bytes: u64,
    },
    /// A layer begins (1-based index); `reused` when it is already
    /// stored.
    Layer {
        /// Which.
        index: usize,
        /// Its blob's size.
        size: u64,
        /// Already in the store.
        reused: bool,
    },
    /// More bytes were read.
    Bytes(u64),
}

/// A warning of an import: what was neutralised, and where.
#[derive(Debug, Clone)]
pub struct ImportWarning {
    /// The layer's member in the archive.
    pub layer: String,
    /// What happened.
    pub warning: Warning,
}

/// What an import did.
#[derive(Debug)]
pub struct ImportReport {
    /// The image as stored.
    pub image: Image,
    /// The input's format.
    pub format: Format,
    /// Layers extracted now.
    pub layers_new: usize,
    /// Layers already stored.
    pub layers_reused: usize,
    /// What was neutralised.
    pub warnings: Vec<ImportWarning>,
}

/// One layer of a record.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LayerRecord {
    diff_id: Digest,
    /// Bytes of file content.
    size: u64,
}

/// `images/<name>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    name: String,
    id: Digest,
    format: Format,
    source: PathBuf,
    imported: u64,
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    layers: Vec<LayerRecord>,
    config: ImageConfig,
    /// The image config file as imported, for export.
    config_json: serde_json::Value,
}

/// An image of the store.
#[derive(Debug, Clone, Serialize)]
pub struct Image {
    /// Its name (`localhost/busybox:latest`).
    pub name: String,
    /// The digest of its config (the image id).
    pub id: Digest,
    /// Its layer directories, bottom first.
    pub layers: Vec<PathBuf>,
    /// The layers' digests (uncompressed), bottom first.
    pub diff_ids: Vec<Digest>,
    /// How to run it.
    pub config: ImageConfig,
    /// Bytes of file content in its layers.
    pub size: u64,
    /// The format it was imported from.
    pub format: Format,
    /// The file it was imported from.
    pub source: PathBuf,
    /// When it was imported (seconds since the epoch).
    pub imported: u64,
    /// When it was built, as the image says (RFC 3339).
    pub created: Option<String>,
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `linux`.
    pub os: String,
}

impl Image {
    /// The layer directories in overlayfs `lowerdir=` order: top first.
    pub fn lowers(&self) -> Vec<&Path> {
        self.layers.iter().rev().map(PathBuf::as_path).collect()
    }

    /// The `lowerdir=` value for overlayfs (`top:...:bottom`). Fails when
    /// a path holds a character overlayfs options cannot carry.
    pub fn lowerdir(&self) -> Result<String, ImageError> {
        let mut parts = Vec::new();
        for p in self.lowers() {
            let s = p.to_str().filter(|s| !s.contains([',', ':', '\\', '\n']));
            let Some(s) = s else {
                return Err(ImageError::Mount {
                    name: self.name.clone(),
                    target: p.to_path_buf(),
                    source: nix::errno::Errno::EINVAL,
                });
            };
            parts.push(s);
        }
        Ok(parts.join(":"))
    }

    /// Mounts a read-only overlay of the layers on `target` (the caller
    /// unmounts it). A one-layer image is bound read-only where the
    /// kernel wants two lower layers for an overlay without upper layer.
    pub fn mount_readonly(&self, target: &Path) -> Result<(), ImageError> {
        let err = |source| ImageError::Mount {
            name: self.name.clone(),
            target: target.to_path_buf(),
            source,
        };
        let lowerdir = self.lowerdir()?;
        // mount(2) reads one page of options.
        if lowerdir.len() + "lowerdir=".len() >= 4096 {
            return Err(err(nix::errno::Errno::E2BIG));
        }
        match sys::mount_overlay_readonly(&lowerdir, target) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::EINVAL) if self.layers.len() == 1 => {
                sys::bind_readonly(&self.layers[0], target).map_err(err)
            }
            Err(e) => Err(err(e)),
        }
    }
}

/// A mounted read-only view of an image in a private temporary directory;
/// unmounted and removed when dropped.
#[derive(Debug)]
pub struct View {
    dir: Option<tempfile::TempDir>,
}

impl View {
    /// Where the image's root is.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("a live view").path()
    }
}

impl Drop for View {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            if sys::unmount(dir.path()).is_ok() {
                let _ = dir.close();
            } else {
                // Never descend into what may still be mounted.
                let _ = dir.keep();
            }
        }
    }
}

/// The images and layers under a data directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A name as a file name: `/` is written `%2F` (`%` is not allowed in
/// names, so this is reversible).
fn record_file(name: &str) -> String {
    format!("{}.json", name.replace('/', "%2F"))
}

/// Checks an image name: `[A-Za-z0-9._:/@+-]`, at most 255 characters,
/// starting with a letter or digit, no empty or `.`/`..` path component.
pub fn validate_name(name: &str) -> Result<(), ImageError> {
    let bad = |why| ImageError::BadName {
        name: name.to_string(),
        why,
    };
    if name.is_empty() || name.len() > 255 {
        return Err(bad("it must have 1 to 255 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._:/@+-".contains(c))
    {
        return Err(bad("use letters, digits and . _ : / @ + -"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(bad("it must start with a letter or digit"));
    }
    if name
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(bad("empty, `.` or `..` path components"));
    }
    Ok(())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A reader that reports what it reads.
struct Counting<'a, R> {
    inner: R,
    progress: &'a mut dyn FnMut(Progress),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(Progress::Bytes(n as u64));
        Ok(n)
    }
}

/// A layer extracted into its temp directory, verified.
struct Extracted {
    diff_id: Digest,
    dir: tempfile::TempDir,
    size: u64,
}

impl Store {
    /// The store under `data_dir` (created if missing).
    pub fn open(data_dir: impl Into<PathBuf>) -> Result<Store, ImageError> {
        let root = data_dir.into();
        for sub in ["layers/sha256", "images"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(|e| ImageError::io(&p, e))?;
        }
        Ok(Store { root })
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.root
    }

    fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }

    fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers/sha256").join(diff_id.hex())
    }

    fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    fn lock(&self) -> Result<sys::Lock, ImageError> {
        let p = self.images_dir().join(".lock");
        sys::lock(&p).map_err(|e| ImageError::io(&p, e))
    }

    fn read_record(&self, path: &Path) -> Result<Record, ImageError> {
        let bytes = fs::read(path).map_err(|e| ImageError::io(path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| ImageError::Record {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })
    }

    fn to_image(&self, r: Record) -> Image {
        Image {
            layers: r
                .layers
                .iter()
                .map(|l| self.layer_dir(&l.diff_id))
                .collect(),
            diff_ids: r.layers.iter().map(|l| l.diff_id.clone()).collect(),
            size: r.layers.iter().map(|l| l.size).sum(),
            name: r.name,
            id: r.id,
            config: r.config,
            format: r.format,
            source: r.source,
            imported: r.imported,
            created: r.created,
            architecture: r.architecture,
            os: r.os,
        }
    }

    fn record(&self, name: &str) -> Result<Record, ImageError> {
        let mut candidates = vec![name.to_string()];
        let tail = name.rsplit('/').next().unwrap_or(name);
        if !tail.contains(':') && !tail.contains('@') {
            candidates.push(format!("{name}:latest"));
        }
        if !name.starts_with("localhost/") {
            let more: Vec<String> = candidates
                .iter()
                .map(|c| format!("localhost/{c}"))
                .collect();
            candidates.extend(more);
        }
        for c in candidates {
            if validate_name(&c).is_err() {
                continue;
            }
            let p = self.images_dir().join(record_file(&c));
            if p.is_file() {
                return self.read_record(&p);
            }
        }
        Err(ImageError::NotFound(name.to_string()))
    }

    /// The image named `name` (also found as `name:latest` and
    /// `localhost/name[:latest]`).
    pub fn image(&self, name: &str) -> Result<Image, ImageError> {
        Ok(self.to_image(self.record(name)?))
    }

    fn records(&self) -> Result<Vec<Record>, ImageError> {
        let dir = self.images_dir();
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(|e| ImageError::io(&dir, e))? {
            let e = e.map_err(|e| ImageError::io(&dir, e))?;
            let n = e.file_name();
            let n = n.to_string_lossy();
            if n.starts_with('.') || !n.ends_with(".json") {
                continue;
            }
            out.push(self.read_record(&e.path())?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Every image, by name.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        Ok(self
            .records()?
            .into_iter()
            .map(|r| self.to_image(r))
            .collect())
    }

    /// Removes the image `name`, and every layer of it that no other image
    /// uses. `users` are the containers that use the image (the caller
    /// knows them); when there is any, nothing is removed.
    pub fn remove(&self, name: &str, users: &[String]) -> Result<(), ImageError> {
        let r = self.record(name)?;
        if !users.is_empty() {
            return Err(ImageError::InUse {
                name: r.name,
                users: users.to_vec(),
            });
        }
        let _lock = self.lock()?;
        let p = self.images_dir().join(record_file(&r.name));
        fs::remove_file(&p).map_err(|e| ImageError::io(&p, e))?;
        self.collect_garbage()
    }

    /// Removes layers no record names (left by an import that was killed
    /// after placing them, or by a replaced image). Call with the lock.
    fn collect_garbage(&self) -> Result<(), ImageError> {
        let used: HashSet<String> = self
            .records()?
            .iter()
            .flat_map(|r| r.layers.iter().map(|l| l.diff_id.hex().to_string()))
            .collect();
        let dir = self.root.join("layers/sha256");
        for e in fs::read_dir(&dir).map_err(|e| ImageError::io(&dir, e))? {
            let e = e.map_err(|e| ImageError::io(&dir, e))?;
            let n = e.file_name().to_string_lossy().into_owned();
            if !used.contains(&n) {
                fs::remove_dir_all(e.path()).map_err(|err| ImageError::io(&e.path(), err))?;
            }
        }
        Ok(())
    }

    /// Removes temp directories of imports whose process is gone.
    fn clean_stale(&self) {
        let Ok(rd) = fs::read_dir(self.layers_dir()) else {
            return;
        };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = n.strip_prefix(".tmp-") else {
                continue;
            };
            let pid = rest.split('-').next().and_then(|p| p.parse::<i32>().ok());
            if pid.is_some_and(|p| !sys::pid_alive(p)) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }

    /// A read-only overlay of image `name`, mounted on a fresh private
    /// directory under the system's temp directory.
    pub fn view(&self, name: &str) -> Result<View, ImageError> {
        let image = self.image(name)?;
        let tmp = std::env::temp_dir();
        let dir = tempfile::Builder::new()
            .prefix("plinth-image-")
            .tempdir_in(&tmp)
            .map_err(|e| ImageError::io(&tmp, e))?;
        image.mount_readonly(dir.path())?;
        Ok(View { dir: Some(dir) })
    }

    /// Writes image `name` as an oci-archive that `podman load` and
    /// `docker load` read, atomically (a failed export leaves no file).
    pub fn export(
        &self,
        name: &str,
        out: &Path,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(), ImageError> {
        let r = self.record(name)?;
        let image = self.to_image(r.clone());
        export::write_oci_archive(&image, &r.config_json, out, progress)
    }

    /// Imports the image at `path` (an OCI layout directory, an
    /// oci-archive, a docker-archive or a root filesystem tar).
    pub fn import(
        &self,
        path: &Path,
        opts: &ImportOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ImportReport, ImageError> {
        let meta = fs::metadata(path).map_err(|e| ImageError::io(path, e))?;
        let (container, plan) = if meta.is_dir() {
            let c = Container::dir(path)?;
            let plan = if c.has("oci-layout") {
                layout::read_oci(&c, Format::OciDir, opts.name.as_deref())?
            } else if c.has("manifest.json") {
                layout::read_docker(&c, opts.name.as_deref())?
            } else {
                return Err(ImageError::NotAnImage {
                    path: path.to_path_buf(),
                    why: "a directory without oci-layout or manifest.json".into(),
                });
            };
            (c, Some(plan))
        } else {
            let mut file = fs::File::open(path).map_err(|e| ImageError::io(path, e))?;
            let mut head = [0u8; 512];
            let n = read_up_to(&mut file, &mut head).map_err(|e| ImageError::io(path, e))?;
            match Compression::sniff(&head[..n]) {
                Err(kind) => {
                    return Err(ImageError::NotAnImage {
                        path: path.to_path_buf(),
                        why: format!("{kind}-compressed; plinth reads gzip, zstd or plain tars"),
                    })
                }
                Ok(Compression::Gzip | Compression::Zstd) => {
                    refuse_compressed_image_archive(path)?;
                    return self.import_rootfs(path, meta.len(), opts, progress);
                }
                Ok(_) => {}
            }
            let c = Container::tar(path, file)?;
            if c.has("oci-layout") && c.has("index.json") {
                let plan = layout::read_oci(&c, Format::OciArchive, opts.name.as_deref())?;
                (c, Some(plan))
            } else if c.has("manifest.json") {
                let plan = layout::read_docker(&c, opts.name.as_deref())?;
                (c, Some(plan))
            } else {
                (c, None)
            }
        };
        let Some(plan) = plan else {
            drop(container);
            return self.import_rootfs(path, meta.len(), opts, progress);
        };
        let name = opts
            .name
            .clone()
            .or(plan.name.clone())
            .ok_or_else(|| ImageError::NoName {
                archive: path.to_path_buf(),
            })?;
        validate_name(&name)?;
        self.import_plan(&container, plan, name, opts, progress)
    }

    fn import_plan(
        &self,
        c: &Container,
        plan: Plan,
        name: String,
        opts: &ImportOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ImportReport, ImageError> {
        let count = plan.layers.len();
        let mut sizes = Vec::new();
        for l in &plan.layers {
            sizes.push(c.open(&l.member)?.1);
        }
        progress(Progress::Start {
            layers: count,
            bytes: sizes.iter().sum(),
        });
        let mut extracted: Vec<Extracted> = Vec::new();
        let mut warnings = Vec::new();
        let mut layer_sizes: Vec<(Digest, u64)> = Vec::new();
        let mut reused = 0;
        for (i, l) in plan.layers.iter().enumerate() {
            let seen = extracted
                .iter()
                .find(|e| e.diff_id == l.diff_id)
                .map(|e| e.size);
            let stored = self.layer_dir(&l.diff_id).is_dir();
            if let Some(size) = seen {
                progress(Progress::Layer {
                    index: i + 1,
                    size: sizes[i],
                    reused: true,
                });
                progress(Progress::Bytes(sizes[i]));
                layer_sizes.push((l.diff_id.clone(), size));
                continue;
            }
            if stored {
                progress(Progress::Layer {
                    index: i + 1,
                    size: sizes[i],
                    reused: true,
                });
                progress(Progress::Bytes(sizes[i]));
                reused += 1;
                layer_sizes.push((l.diff_id.clone(), self.stored_size(&l.diff_id)));
                continue;
            }
            progress(Progress::Layer {
                index: i + 1,
                size: sizes[i],
                reused: false,
            });
            let (reader, size) = c.open(&l.member)?;
            let (e, w) =
                self.extract_one(c.path(), l, i + 1, count, reader, size, opts, progress)?;
            warnings.extend(w);
            layer_sizes.push((e.diff_id.clone(), e.size));
            extracted.push(e);
        }
        let record = Record {
            name,
            id: plan.config_digest,
            format: plan.format,
            source: absolute(c.path()),
            imported: now(),
            created: plan.config_file.created.clone(),
            architecture: plan.config_file.architecture.clone(),
            os: plan.config_file.os.clone(),
            layers: layer_sizes
                .into_iter()
                .map(|(diff_id, size)| LayerRecord { diff_id, size })
                .collect(),
            config: plan.config,
            config_json: serde_json::from_slice(&plan.config_bytes).map_err(|e| {
                ImageError::Malformed {
                    archive: c.path().to_path_buf(),
                    member: "config".into(),
                    detail: e.to_string(),
                }
            })?,
        };
        let layers_new = extracted.len();
        let image = self.commit(record, extracted)?;
        Ok(ImportReport {
            image,
            format: plan.format,
            layers_new,
            layers_reused: reused,
            warnings,
        })
    }

    /// The content size of a stored layer, from any record naming it.
    fn stored_size(&self, diff_id: &Digest) -> u64 {
        self.records()
            .ok()
            .and_then(|rs| {
                rs.iter()
                    .flat_map(|r| r.layers.iter())
                    .find(|l| &l.diff_id == diff_id)
                    .map(|l| l.size)
            })
            .unwrap_or(0)
    }

    #[allow(clippy::too_many_arguments)]
    fn extract_one(
        &self,
        archive: &Path,
        l: &LayerRef,
        index: usize,
        count: usize,
        reader: Box<dyn Read + Send + '_>,
        size: u64,
        opts: &ImportOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(Extracted, Vec<ImportWarning>), ImageError> {
        let layer_err = |source| ImageError::Layer {
            archive: archive.to_path_buf(),
            member: l.member.clone(),
            index,
            count,
            source,
        };
        let dir = self.temp_layer_dir()?;
        let mut lopts = opts.layer.clone();
        lopts.blob_size = Some(size);
        let summary = extract_layer(
            Counting {
                inner: reader,
                progress,
            },
            dir.path(),
            &lopts,
        )
        .map_err(layer_err)?;
        if let Some(d) = &l.digest {
            if &summary.digest != d {
                return Err(ImageError::DigestMismatch {
                    archive: archive.to_path_buf(),
                    member: l.member.clone(),
                    expected: d.clone(),
                    actual: summary.digest,
                });
            }
        }
        if summary.diff_id != l.diff_id {
            return Err(ImageError::DigestMismatch {
                archive: archive.to_path_buf(),
                member: format!("{} (uncompressed, against the config's diff_id)", l.member),
                expected: l.diff_id.clone(),
                actual: summary.diff_id,
            });
        }
        let warnings = summary
            .warnings
            .into_iter()
            .map(|w| ImportWarning {
                layer: l.member.clone(),
                warning: w,
            })
            .collect();
        Ok((
            Extracted {
                diff_id: summary.diff_id,
                dir,
                size: summary.bytes,
            },
            warnings,
        ))
    }

    fn temp_layer_dir(&self) -> Result<tempfile::TempDir, ImageError> {
        let parent = self.layers_dir();
        let dir = tempfile::Builder::new()
            .prefix(&format!(".tmp-{}-", std::process::id()))
            .tempdir_in(&parent)
            .map_err(|e| ImageError::io(&parent, e))?;
        // The layer's root becomes the overlay's root directory.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .map_err(|e| ImageError::io(dir.path(), e))?;
        Ok(dir)
    }

    /// A root filesystem tar (plain, gzip or zstd): one layer, an empty
    /// config.
    fn import_rootfs(
        &self,
        path: &Path,
        size: u64,
        opts: &ImportOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ImportReport, ImageError> {
        let name = match &opts.name {
            Some(n) => n.clone(),
            None => rootfs_name(path).ok_or_else(|| ImageError::NoName {
                archive: path.to_path_buf(),
            })?,
        };
        validate_name(&name)?;
        progress(Progress::Start {
            layers: 1,
            bytes: size,
        });
        progress(Progress::Layer {
            index: 1,
            size,
            reused: false,
        });
        let file = fs::File::open(path).map_err(|e| ImageError::io(path, e))?;
        let dir = self.temp_layer_dir()?;
        let mut lopts = opts.layer.clone();
        lopts.blob_size = Some(size);
        let member = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let summary = extract_layer(
            Counting {
                inner: io::BufReader::with_capacity(1 << 20, file),
                progress,
            },
            dir.path(),
            &lopts,
        )
        .map_err(|source| ImageError::Layer {
            archive: path.to_path_buf(),
            member: member.clone(),
            index: 1,
            count: 1,
            source,
        })?;
        let config_json = serde_json::json!({
            "architecture": layout_arch(),
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [summary.diff_id.to_string()]},
            "history": [{"created_by": format!("plinth image import {}", path.display())}],
        });
        let config_bytes = serde_json::to_vec(&config_json).expect("JSON serializes");
        let warnings = summary
            .warnings
            .iter()
            .cloned()
            .map(|w| ImportWarning {
                layer: member.clone(),
                warning: w,
            })
            .collect();
        let reused = self.layer_dir(&summary.diff_id).is_dir();
        let record = Record {
            name,
            id: Digest::of(&config_bytes),
            format: Format::Rootfs,
            source: absolute(path),
            imported: now(),
            created: None,
            architecture: layout_arch().into(),
            os: "linux".into(),
            layers: vec![LayerRecord {
                diff_id: summary.diff_id.clone(),
                size: summary.bytes,
            }],
            config: ImageConfig::default(),
            config_json,
        };
        let image = self.commit(
            record,
            vec![Extracted {
                diff_id: summary.diff_id,
                dir,
                size: summary.bytes,
            }],
        )?;
        Ok(ImportReport {
            image,
            format: Format::Rootfs,
            layers_new: usize::from(!reused),
            layers_reused: usize::from(reused),
            warnings,
        })
    }

    /// Puts the extracted layers in place and writes the record, under
    /// the lock; the layers of an image this one replaces that nothing
    /// else uses are removed.
    fn commit(&self, record: Record, layers: Vec<Extracted>) -> Result<Image, ImageError> {
        let _lock = self.lock()?;
        self.clean_stale();
        for e in layers {
            let dest = self.layer_dir(&e.diff_id);
            let tmp = e.dir.keep();
            match nix::fcntl::renameat2(
                nix::fcntl::AT_FDCWD,
                &tmp,
                nix::fcntl::AT_FDCWD,
                &dest,
                nix::fcntl::RenameFlags::RENAME_NOREPLACE,
            ) {
                Ok(()) => {}
                // Another import stored the same layer meanwhile.
                Err(nix::errno::Errno::EEXIST) => {
                    let _ = fs::remove_dir_all(&tmp);
                }
                Err(err) => {
                    let _ = fs::remove_dir_all(&tmp);
                    return Err(ImageError::io(&dest, err.into()));
                }
            }
        }
        // A layer found stored at the start may have been removed since
        // (`image rm` of its last other user): never record a missing one.
        for l in &record.layers {
            let dir = self.layer_dir(&l.diff_id);
            if !dir.is_dir() {
                return Err(ImageError::io(
                    &dir,
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        "the layer was removed while the image was imported; import it again",
                    ),
                ));
            }
        }
        let path = self.images_dir().join(record_file(&record.name));
        let replaced = path.is_file();
        let text = serde_json::to_vec_pretty(&record).expect("a record serializes");
        write_atomic(&path, &text)?;
        if replaced {
            self.collect_garbage()?;
        }
        Ok(self.to_image(record))
    }

    /// Names of every layer directory in use, for diagnostics and tests.
    pub fn layer_dirs(&self) -> Result<BTreeSet<PathBuf>, ImageError> {
        Ok(self.list()?.into_iter().flat_map(|i| i.layers).collect())
    }
}

fn layout_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// `busybox.tar.gz` → `busybox`.
fn rootfs_name(path: &Path) -> Option<String> {
    let mut n = path.file_name()?.to_str()?.to_string();
    for ext in [".gz", ".zst", ".tgz", ".tar"] {
        if let Some(s) = n.strip_suffix(ext) {
            n = s.to_string();
        }
    }
    validate_name(&n).ok().map(|_| n)
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A gzip or zstd file whose first tar member looks like an image
/// archive's is refused: plinth reads image archives uncompressed, and
/// would otherwise import the archive itself as a root filesystem.
fn refuse_compressed_image_archive(path: &Path) -> Result<(), ImageError> {
    let file = fs::File::open(path).map_err(|e| ImageError::io(path, e))?;
    let mut head = [0u8; 4];
    let n = read_up_to(&mut &file, &mut head).map_err(|e| ImageError::io(path, e))?;
    let file = fs::File::open(path).map_err(|e| ImageError::io(path, e))?;
    let reader: Box<dyn Read> = match Compression::sniff(&head[..n]) {
        Ok(Compression::Gzip) => Box::new(flate2::read::MultiGzDecoder::new(file)),
        Ok(Compression::Zstd) => match zstd::stream::read::Decoder::new(file) {
            Ok(d) => Box::new(d),
            Err(_) => return Ok(()),
        },
        _ => return Ok(()),
    };
    let mut archive = tar::Archive::new(reader);
    let first = archive
        .entries()
        .ok()
        .and_then(|mut e| e.next())
        .and_then(|e| e.ok())
        .map(|e| String::from_utf8_lossy(&e.path_bytes()).into_owned());
    if let Some(first) = first {
        let n = archive::normalize(&first).unwrap_or_default();
        let top = n.split('/').next().unwrap_or_default();
        let image_like = matches!(
            top,
            "oci-layout" | "index.json" | "manifest.json" | "blobs" | "repositories"
        ) || (top.len() >= 64 && Digest::from_hex(&top[..64]).is_some());
        if image_like {
            return Err(ImageError::NotAnImage {
                path: path.to_path_buf(),
                why: format!(
                    "a compressed image archive (it starts with {first}); decompress it first"
                ),
            });
        }
    }
    Ok(())
}

/// Writes `path` by a temp file and a rename in the same directory.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), ImageError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| ImageError::io(dir, e))?;
    tmp.write_all(data)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| ImageError::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| ImageError::io(path, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["busybox", "localhost/busybox:latest", "a.b/c_d-e@sha256:0f"] {
            validate_name(ok).unwrap();
        }
        for bad in [
            "", "/abs", "a//b", "a/../b", "-x", "a b", "a%2Fb", ".hidden",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert_eq!(record_file("localhost/x:1"), "localhost%2Fx:1.json");
        assert_eq!(
            rootfs_name(Path::new("/tmp/busybox.tar.gz")).as_deref(),
            Some("busybox")
        );
    }
}
