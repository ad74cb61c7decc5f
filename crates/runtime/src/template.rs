//! The default `config.json` written by `plinth spec`.
//!
//! INTERFACE STUB: filled in by the seccomp work.
#![allow(missing_docs)]

use oci_spec::runtime::{LinuxSeccomp, Spec};

pub fn default_seccomp() -> LinuxSeccomp {
    todo!()
}

pub fn default_spec(rootless: bool) -> Spec {
    let _ = rootless;
    todo!()
}
