//! Reading what an image consists of from its container: the OCI image
//! layout (`oci-layout`, `index.json`, `blobs/sha256/...`, as an
//! oci-archive tar or a directory) and docker-archive (`manifest.json`,
//! a config named by its digest, layer tars), down to a [`Plan`]: the
//! verified config, and the layers to extract with the digests they must
//! have.
//!
//! Every blob read here is checked against its digest before it is
//! parsed; layers are checked while they are extracted (`image::import`).

use serde::Deserialize;

use super::archive::{normalize, Container};
use super::config::{self, ConfigFile, ImageConfig};
use super::ImageError;
use crate::digest::Digest;

/// JSON metadata files are small; more than this is refused.
const JSON_CAP: u64 = 8 << 20;

/// The formats an import understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Format {
    /// An OCI image layout directory.
    OciDir,
    /// An OCI image layout in a tar.
    OciArchive,
    /// `docker save` / `podman save --format docker-archive`.
    DockerArchive,
    /// A tar (possibly gzip or zstd) of a root filesystem: one layer.
    Rootfs,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::OciDir => "oci-dir",
            Format::OciArchive => "oci-archive",
            Format::DockerArchive => "docker-archive",
            Format::Rootfs => "rootfs",
        })
    }
}

/// One layer to extract.
#[derive(Debug, Clone)]
pub(crate) struct LayerRef {
    /// Its member in the container.
    pub member: String,
    /// The digest the blob must have (OCI descriptors).
    pub digest: Option<Digest>,
    /// The digest the uncompressed tar must have (the config's diff_id).
    pub diff_id: Digest,
}

/// What to import.
#[derive(Debug)]
pub(crate) struct Plan {
    pub format: Format,
    /// The name the archive gives the image, if any.
    pub name: Option<String>,
    /// The config blob, verified, and its digest.
    pub config_bytes: Vec<u8>,
    pub config_digest: Digest,
    pub config_file: ConfigFile,
    pub config: ImageConfig,
    /// Bottom first.
    pub layers: Vec<LayerRef>,
}

fn malformed(c: &Container, member: &str, detail: impl Into<String>) -> ImageError {
    ImageError::Malformed {
        archive: c.path().to_path_buf(),
        member: member.to_string(),
        detail: detail.into(),
    }
}

fn json<T: for<'de> Deserialize<'de>>(
    c: &Container,
    member: &str,
    bytes: &[u8],
) -> Result<T, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| malformed(c, member, e.to_string()))
}

/// Reads a blob and checks its digest.
fn verified_blob(c: &Container, digest: &Digest, what: &str) -> Result<Vec<u8>, ImageError> {
    let member = blob_path(digest);
    let bytes = c.read_small(&member, JSON_CAP)?;
    let actual = Digest::of(&bytes);
    if &actual != digest {
        return Err(ImageError::DigestMismatch {
            archive: c.path().to_path_buf(),
            member: format!("{member} ({what})"),
            expected: digest.clone(),
            actual,
        });
    }
    Ok(bytes)
}

pub(crate) fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    #[serde(default)]
    media_type: String,
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// This machine's architecture, as image platforms name it.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn digest_of(c: &Container, member: &str, d: &Descriptor) -> Result<Digest, ImageError> {
    Digest::parse(&d.digest).ok_or_else(|| {
        malformed(
            c,
            member,
            format!("descriptor digest {:?} is not sha256:<64 hex>", d.digest),
        )
    })
}

/// Picks one image of an index: the one named `want`, else the only one,
/// else the one for this machine's platform.
fn pick<'a>(
    c: &Container,
    member: &str,
    list: &'a [Descriptor],
    want: Option<&str>,
) -> Result<&'a Descriptor, ImageError> {
    if let Some(w) = want {
        if let Some(d) = list
            .iter()
            .find(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(w))
        {
            return Ok(d);
        }
    }
    match list {
        [] => Err(malformed(c, member, "lists no image")),
        [one] => Ok(one),
        many => {
            let host: Vec<&Descriptor> = many
                .iter()
                .filter(|d| {
                    d.platform
                        .as_ref()
                        .is_some_and(|p| p.os == "linux" && p.architecture == host_arch())
                })
                .collect();
            match host.as_slice() {
                [one] => Ok(one),
                _ => Err(ImageError::Several {
                    archive: c.path().to_path_buf(),
                    count: many.len(),
                }),
            }
        }
    }
}

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Reads an OCI image layout.
pub(crate) fn read_oci(
    c: &Container,
    format: Format,
    want: Option<&str>,
) -> Result<Plan, ImageError> {
    let layout: serde_json::Value = json(c, "oci-layout", &c.read_small("oci-layout", JSON_CAP)?)?;
    if layout
        .get("imageLayoutVersion")
        .and_then(|v| v.as_str())
        .is_none()
    {
        return Err(malformed(c, "oci-layout", "no imageLayoutVersion"));
    }
    let index: Index = json(c, "index.json", &c.read_small("index.json", JSON_CAP)?)?;
    let mut chosen = pick(c, "index.json", &index.manifests, want)?;
    let name = chosen
        .annotations
        .get(REF_NAME)
        .or_else(|| chosen.annotations.get("io.containerd.image.name"))
        .cloned();
    let _ = index.media_type;
    // A multi-platform image: one more index level.
    let nested: Index;
    let mut nested_member = String::new();
    if INDEX_TYPES.contains(&chosen.media_type.as_str()) {
        let d = digest_of(c, "index.json", chosen)?;
        nested_member = blob_path(&d);
        nested = json(c, &nested_member, &verified_blob(c, &d, "image index")?)?;
        chosen = pick(c, &nested_member, &nested.manifests, None)?;
    }
    let from = if nested_member.is_empty() {
        "index.json"
    } else {
        nested_member.as_str()
    };
    let manifest_digest = digest_of(c, from, chosen)?;
    let manifest_member = blob_path(&manifest_digest);
    let manifest: Manifest = json(
        c,
        &manifest_member,
        &verified_blob(c, &manifest_digest, "manifest")?,
    )?;
    let config_digest = digest_of(c, &manifest_member, &manifest.config)?;
    let config_bytes = verified_blob(c, &config_digest, "config")?;
    let config_member = blob_path(&config_digest);
    let (config_file, config) =
        config::parse(&config_bytes).map_err(|e| malformed(c, &config_member, e))?;
    if config_file.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(malformed(
            c,
            &manifest_member,
            format!(
                "{} layers, but the config lists {} diff_ids",
                manifest.layers.len(),
                config_file.rootfs.diff_ids.len()
            ),
        ));
    }
    let mut layers = Vec::new();
    for (d, diff_id) in manifest.layers.iter().zip(&config_file.rootfs.diff_ids) {
        let digest = digest_of(c, &manifest_member, d)?;
        let mt = d.media_type.as_str();
        let tar_like = mt.is_empty()
            || mt.starts_with("application/vnd.oci.image.layer.")
            || mt.starts_with("application/vnd.docker.image.rootfs.");
        if !tar_like || mt.contains("encrypted") {
            return Err(malformed(
                c,
                &manifest_member,
                format!("layer {digest} has media type {mt:?}, not a tar layer"),
            ));
        }
        let _ = d.size;
        layers.push(LayerRef {
            member: blob_path(&digest),
            digest: Some(digest),
            diff_id: diff_id.clone(),
        });
    }
    Ok(Plan {
        format,
        name,
        config_bytes,
        config_digest,
        config_file,
        config,
        layers,
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Reads a docker-archive (`manifest.json` at the top).
pub(crate) fn read_docker(c: &Container, want: Option<&str>) -> Result<Plan, ImageError> {
    let list: Vec<DockerEntry> = json(
        c,
        "manifest.json",
        &c.read_small("manifest.json", JSON_CAP)?,
    )?;
    let entry = match (want, list.as_slice()) {
        (_, []) => return Err(malformed(c, "manifest.json", "lists no image")),
        (_, [one]) => one,
        (Some(w), many) => many
            .iter()
            .find(|e| e.repo_tags.iter().flatten().any(|t| t == w))
            .ok_or(ImageError::Several {
                archive: c.path().to_path_buf(),
                count: many.len(),
            })?,
        (None, many) => {
            return Err(ImageError::Several {
                archive: c.path().to_path_buf(),
                count: many.len(),
            })
        }
    };
    let config_member = normalize(&entry.config)
        .ok_or_else(|| malformed(c, "manifest.json", "Config leaves the archive"))?;
    // The config is named by its digest (`<hex>.json`, or
    // `blobs/sha256/<hex>` since docker 25): that is what verifies it.
    let stem = config_member
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .trim_end_matches(".json");
    let config_digest = Digest::from_hex(stem).ok_or_else(|| {
        malformed(
            c,
            &config_member,
            "the config's file name is not its sha256 digest, so it cannot be verified",
        )
    })?;
    let config_bytes = c.read_small(&config_member, JSON_CAP)?;
    let actual = Digest::of(&config_bytes);
    if actual != config_digest {
        return Err(ImageError::DigestMismatch {
            archive: c.path().to_path_buf(),
            member: format!("{config_member} (config)"),
            expected: config_digest,
            actual,
        });
    }
    let (config_file, config) =
        config::parse(&config_bytes).map_err(|e| malformed(c, &config_member, e))?;
    if config_file.rootfs.diff_ids.len() != entry.layers.len() {
        return Err(malformed(
            c,
            "manifest.json",
            format!(
                "{} layers, but the config lists {} diff_ids",
                entry.layers.len(),
                config_file.rootfs.diff_ids.len()
            ),
        ));
    }
    let mut layers = Vec::new();
    for (l, diff_id) in entry.layers.iter().zip(&config_file.rootfs.diff_ids) {
        let member = normalize(l).ok_or_else(|| {
            malformed(
                c,
                "manifest.json",
                format!("layer {l:?} leaves the archive"),
            )
        })?;
        layers.push(LayerRef {
            member,
            digest: None,
            diff_id: diff_id.clone(),
        });
    }
    let name = entry
        .repo_tags
        .iter()
        .flatten()
        .find(|t| want.is_none_or(|w| w == *t))
        .or(entry.repo_tags.iter().flatten().next())
        .cloned();
    Ok(Plan {
        format: Format::DockerArchive,
        name,
        config_bytes,
        config_digest,
        config_file,
        config,
        layers,
    })
}
