//! The storage of plinth: images imported from OCI and docker archives,
//! kept as layer directories that overlayfs stacks as they are; and the
//! layers, snapshots, clones and streams of containers.
//!
//! ## Images
//!
//! A [`Store`] lives in a data directory (`/var/lib/plinth` by default).
//! [`Store::import`] reads an OCI image layout (directory or
//! oci-archive), a docker-archive (`docker save`, `podman save`) or a
//! plain root filesystem tar, verifies every digest and extracts each
//! layer once, by its diff_id, under `layers/sha256/`. The extractor
//! ([`extract_layer`]) treats every archive as hostile: nothing it reads
//! can write outside the layer directory, and a refused archive leaves no
//! partial layer or record. An [`Image`] gives its layer directories
//! bottom first, [`Image::lowers`] in overlayfs order, and its
//! [`ImageConfig`] (Env, Cmd, Entrypoint, WorkingDir, User, ...), which
//! containers take as their defaults. [`Store::export`] writes an image
//! back as an oci-archive.
//!
//! ```no_run
//! use std::path::Path;
//! use plinth_store::{ImportOptions, Store};
//!
//! # fn main() -> Result<(), plinth_store::ImageError> {
//! let store = Store::open("/var/lib/plinth")?;
//! let report = store.import(
//!     Path::new("busybox.tar"),
//!     &ImportOptions { name: Some("busybox".into()), ..Default::default() },
//!     &mut |_progress| {},
//! )?;
//! println!("{} layers new", report.layers_new);
//!
//! let image = store.image("busybox")?;
//! println!("lowerdir={}", image.lowerdir()?);
//! println!("runs {:?}", image.config.command());
//!
//! // A read-only overlay of the image, unmounted when dropped.
//! let view = store.view("busybox")?;
//! assert!(view.path().join("bin").exists());
//! drop(view);
//!
//! // Refused while a container uses it.
//! store.remove("busybox", &["web-1".to_string()]).unwrap_err();
//! store.remove("busybox", &[])?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Snapshots and streams
//!
//! A container's writable layer is a btrfs subvolume when its directory is
//! on btrfs, a plain directory elsewhere ([`make_layer`], [`remove_all`]).
//! [`Layers`] owns what can be done with it: read-only snapshots
//! ([`Layers::snapshot`]), writable clones ([`Layers::clone_to`]), and
//! streams of a snapshot to another host ([`Layers::send`],
//! [`Layers::receive`]), full or incremental on an earlier snapshot.
//!
//! On btrfs a snapshot is a read-only subvolume snapshot and a stream is
//! the kernel's send stream (`BTRFS_IOC_SEND`), which the receiver parses
//! and applies itself. Elsewhere a snapshot is a copy of the layer with a
//! manifest (path, metadata, sha256 of every entry) and a stream is
//! plinth's portable format. Either goes in plinth's envelope
//! ([`PayloadWriter`], [`PayloadReader`]): a header naming the snapshot,
//! its parent and the container's record, the zstd-compressed payload, and
//! a sha256 of the whole stream at its end. A receiver stages everything
//! and makes nothing visible before the whole stream is checked.
//!
//! ```no_run
//! use plinth_store::{Layers, PayloadReader};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let web = Layers::new("/var/lib/plinth/containers/web");
//! web.snapshot("monday")?;
//! let mut stream = Vec::new();
//! web.send(Some("monday"), None, serde_json::json!({"name": "web"}), &mut stream)?;
//!
//! // On the other host: a new directory for the container, then
//! let copy = Layers::new("/var/lib/plinth/containers/web");
//! let staged = copy.receive(PayloadReader::new(&stream[..])?)?;
//! staged.commit()?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod btrfs;
mod btrfs_recv;
mod copy;
mod digest;
mod image;
mod layers;
mod portable;
mod root;
mod stream;
mod sys;
mod tree;

pub use digest::Digest;
pub use image::{
    extract_layer, validate_name, Compression, EntryProblem, Format as ImageFormat, Image,
    ImageConfig, ImageError, ImportOptions, ImportReport, ImportWarning, LayerError, LayerOptions,
    LayerSummary, Progress, Store, View, Warning, WarningKind,
};
pub use layers::{
    backend_of, check_snapshot_name, is_plain_name, make_layer, remove_all, remove_stale_work,
    work_owner, Backend, Layers, SendReport, SnapshotInfo, Staged,
};
pub use stream::{Format, PayloadReader, PayloadWriter, StreamHeader};

use thiserror::Error;

/// Why a storage operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file system or kernel operation.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the file.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A name or option is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// No snapshot of that name.
    #[error("{0}: no such snapshot")]
    NoSnapshot(String),
    /// A snapshot of that name exists.
    #[error("{0}: a snapshot of that name exists")]
    SnapshotExists(String),
    /// An incremental stream's parent is missing or not the same.
    #[error("{0}")]
    NoParent(String),
    /// Stored data is not what plinth wrote.
    #[error("{0}")]
    Damaged(String),
    /// The stream is not acceptable.
    #[error(transparent)]
    Stream(#[from] StreamError),
}

/// What is wrong with a stream.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StreamError {
    /// Nothing to read.
    #[error("the stream is empty")]
    Empty,
    /// It does not start as a plinth stream.
    #[error("not a plinth stream (it does not start with \"plinth-stream\")")]
    NotAStream,
    /// A version this plinth does not read.
    #[error("stream version {0} is not supported (this plinth reads version 1)")]
    Version(u16),
    /// It ends early.
    #[error("the stream is cut short (it ends after {0} bytes)")]
    Truncated(u64),
    /// The trailing digest does not match.
    #[error("the stream is corrupted: its sha256 does not match its trailing digest")]
    Digest,
    /// Its content does not make sense.
    #[error("the stream is corrupted: {0}")]
    Corrupt(String),
    /// A valid stream with something this plinth cannot apply.
    #[error("the stream holds {0}, which plinth does not support")]
    Unsupported(String),
    /// Reading it failed.
    #[error("reading the stream: {0}")]
    Io(std::io::Error),
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
    let what = what.into();
    move |source| StoreError::Io { what, source }
}
