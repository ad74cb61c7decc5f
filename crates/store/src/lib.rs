//! The image store of plinth: images imported from OCI and docker
//! archives, kept as layer directories that overlayfs stacks as they are.
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
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod digest;
mod image;
mod sys;

pub use digest::Digest;
pub use image::{
    extract_layer, validate_name, Compression, EntryProblem, Format, Image, ImageConfig,
    ImageError, ImportOptions, ImportReport, ImportWarning, LayerError, LayerOptions, LayerSummary,
    Progress, Store, View, Warning, WarningKind,
};
