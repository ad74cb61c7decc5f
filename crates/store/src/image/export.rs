//! Export: an image of the store written as an oci-archive (an OCI image
//! layout in a tar) that `podman load` and `docker load` read.
//!
//! Each layer directory is turned back into a layer tar: entries in name
//! order (so the same layer exports to the same digest), whiteout devices
//! as `.wh.NAME` files, `trusted.overlay.opaque=y` as `.wh..wh..opq`, hard
//! links as links to the first name, `user.*`, ACL and capability
//! attributes as PAX records. Layers are written uncompressed straight
//! into the archive: a placeholder header goes first, the tar is hashed as
//! it streams, and the header is rewritten once the digest (its name) and
//! the size are known, so nothing is staged on disk. The config is the
//! imported one with `rootfs.diff_ids` set to the new layers' digests.
//! The archive appears by rename only when complete.

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tar::{EntryType, Header};

use super::{Image, ImageError, Progress};
use crate::digest::{Digest, HashWriter};

const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";

pub(crate) fn write_oci_archive(
    image: &Image,
    config_json: &Value,
    out: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), ImageError> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".plinth-export-")
        .tempfile_in(dir)
        .map_err(|e| ImageError::io(dir, e))?;
    let werr = |e: io::Error| ImageError::io(out, e);
    let mut ar = tar::Builder::new(BufWriter::with_capacity(1 << 20, tmp.as_file()));
    progress(Progress::Start {
        layers: image.layers.len(),
        bytes: image.size,
    });
    let mut layers = Vec::new();
    let mut written: Vec<Digest> = Vec::new();
    for (i, layer) in image.layers.iter().enumerate() {
        progress(Progress::Layer {
            index: i + 1,
            size: image.size,
            reused: false,
        });
        let (digest, size) =
            append_layer_blob(&mut ar, layer, &mut *progress).map_err(|e| ImageError::Io {
                path: layer.clone(),
                source: e,
            })?;
        written.push(digest.clone());
        layers.push(json!({"mediaType": LAYER_TYPE, "digest": digest.to_string(), "size": size}));
    }
    let mut config = config_json.clone();
    config["rootfs"] = json!({
        "type": "layers",
        "diff_ids": written.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
    });
    let config_bytes = serde_json::to_vec(&config).expect("JSON serializes");
    let config_digest = Digest::of(&config_bytes);
    append_file(&mut ar, &blob(&config_digest), &config_bytes).map_err(werr)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": config_digest.to_string(), "size": config_bytes.len()},
        "layers": layers,
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("JSON serializes");
    let manifest_digest = Digest::of(&manifest_bytes);
    append_file(&mut ar, &blob(&manifest_digest), &manifest_bytes).map_err(werr)?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [{
            "mediaType": MANIFEST_TYPE,
            "digest": manifest_digest.to_string(),
            "size": manifest_bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": image.name},
        }],
    });
    append_file(
        &mut ar,
        "index.json",
        &serde_json::to_vec(&index).expect("JSON serializes"),
    )
    .map_err(werr)?;
    append_file(&mut ar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(werr)?;
    let mut w = ar.into_inner().map_err(werr)?;
    w.flush().map_err(werr)?;
    drop(w);
    // A temp file is 0600; an archive is for others to read.
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(werr)?;
    tmp.as_file().sync_all().map_err(werr)?;
    tmp.persist(out).map_err(|e| werr(e.error))?;
    Ok(())
}

fn blob(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn append_file<W: Write>(ar: &mut tar::Builder<W>, name: &str, data: &[u8]) -> io::Result<()> {
    let mut h = Header::new_ustar();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_mtime(0);
    ar.append_data(&mut h, name, data)
}

/// Writes one layer as a blob member: placeholder header, the layer tar
/// (hashed as written), padding, then the real header.
fn append_layer_blob<W: Write + Seek>(
    ar: &mut tar::Builder<W>,
    layer: &Path,
    progress: &mut dyn FnMut(Progress),
) -> io::Result<(Digest, u64)> {
    let w = ar.get_mut();
    let start = w.stream_position()?;
    w.write_all(&[0u8; 512])?;
    let mut inner = tar::Builder::new(HashWriter::new(&mut *w));
    write_layer(&mut inner, layer, progress)?;
    let (_, digest, size) = inner.into_inner()?.finish();
    let pad = (512 - size % 512) % 512;
    w.write_all(&vec![0u8; pad as usize])?;
    let end = w.stream_position()?;
    let mut h = Header::new_ustar();
    h.set_path(blob(&digest))?;
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(0);
    h.set_cksum();
    w.seek(SeekFrom::Start(start))?;
    w.write_all(h.as_bytes())?;
    w.seek(SeekFrom::Start(end))?;
    Ok((digest, size))
}

/// The attributes exported with a file (what import writes).
fn exported_xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(names) = xattr::list(path) else {
        return out;
    };
    for n in names {
        let Some(name) = n.to_str() else { continue };
        let keep = name.starts_with("user.")
            || name == "security.capability"
            || name == "system.posix_acl_access"
            || name == "system.posix_acl_default";
        if keep {
            if let Ok(Some(v)) = xattr::get(path, name) {
                out.push((name.to_string(), v));
            }
        }
    }
    out
}

fn header_for(meta: &fs::Metadata, kind: EntryType) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(meta.uid() as u64);
    h.set_gid(meta.gid() as u64);
    h.set_mtime(meta.mtime().max(0) as u64);
    h.set_size(0);
    h
}

/// Writes the tar of one layer directory.
fn write_layer<W: Write>(
    ar: &mut tar::Builder<W>,
    root: &Path,
    progress: &mut dyn FnMut(Progress),
) -> io::Result<()> {
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut names: Vec<_> = fs::read_dir(&dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let mut subdirs = Vec::new();
        for name in names {
            let rel = rel.join(&name);
            let path = root.join(&rel);
            let meta = fs::symlink_metadata(&path)?;
            let ft = meta.file_type();
            let xattrs = exported_xattrs(&path);
            if !xattrs.is_empty() && !ft.is_symlink() {
                let records: Vec<(String, &[u8])> = xattrs
                    .iter()
                    .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
                    .collect();
                ar.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))?;
            }
            if ft.is_dir() {
                let mut h = header_for(&meta, EntryType::Directory);
                ar.append_data(&mut h, &rel, io::empty())?;
                if xattr::get(&path, "trusted.overlay.opaque")?.as_deref() == Some(b"y") {
                    let mut h = header_for(&meta, EntryType::Regular);
                    h.set_mode(0o600);
                    ar.append_data(&mut h, rel.join(".wh..wh..opq"), io::empty())?;
                }
                subdirs.push(rel);
            } else if ft.is_char_device() && meta.rdev() == 0 {
                let mut h = header_for(&meta, EntryType::Regular);
                h.set_mode(0o600);
                let mut wh = std::ffi::OsString::from(".wh.");
                wh.push(&name);
                ar.append_data(&mut h, rel.with_file_name(wh), io::empty())?;
            } else if ft.is_symlink() {
                let target = fs::read_link(&path)?;
                let mut h = header_for(&meta, EntryType::Symlink);
                ar.append_link(&mut h, &rel, &target)?;
            } else if ft.is_file() {
                let key = (meta.dev(), meta.ino());
                if meta.nlink() > 1 {
                    if let Some(first) = links.get(&key) {
                        let mut h = header_for(&meta, EntryType::Link);
                        ar.append_link(&mut h, &rel, first)?;
                        continue;
                    }
                    links.insert(key, rel.clone());
                }
                let mut h = header_for(&meta, EntryType::Regular);
                h.set_size(meta.len());
                let file = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)?;
                ar.append_data(&mut h, &rel, io::Read::take(file, meta.len()))?;
                progress(Progress::Bytes(meta.len()));
            } else if ft.is_fifo() {
                let mut h = header_for(&meta, EntryType::Fifo);
                ar.append_data(&mut h, &rel, io::empty())?;
            }
            // Nothing else is ever written by import.
        }
        // Depth first, in name order.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(())
}
