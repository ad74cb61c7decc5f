//! Lays out the `plinth` executable for a small resident set: the functions
//! that a container start enters (listed in `text-order.txt`, written by
//! `scripts/text-order` from a traced `plinth run`) go first, together,
//! through lld's `--symbol-ordering-file`.
//!
//! The kernel maps an executable's page cache in 64 KiB windows, so what a
//! `plinth run` keeps resident is the number of windows its code touches,
//! not the size of the code: about 750 KiB of functions spread over 5 MB of
//! text made nearly all of it resident. Names that the file lists and the
//! executable lacks (a function renamed, another toolchain) are skipped
//! without a word; `scripts/text-order` brings the list up to date.
//!
//! Only rust-lld (the linker of rustc 1.90 and later on x86_64 Linux) knows
//! the option; with another linker the order is left to it.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let order = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap()).join("text-order.txt");
    println!("cargo:rerun-if-changed={}", order.display());
    println!("cargo:rerun-if-changed=../../scripts/rustc-wrapper");
    println!("cargo:rerun-if-env-changed=PLINTH_LINK");
    println!("cargo:rerun-if-env-changed=PLINTH_KEEP_SYMBOLS");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    if order.is_file() && links_with_rust_lld() {
        println!(
            "cargo:rustc-link-arg-bin=plinth=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bin=plinth=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether the final link runs rust-lld: rustc 1.90 or later, for
/// x86_64-unknown-linux-gnu, with neither a linker nor linker features of
/// one's own.
fn links_with_rust_lld() -> bool {
    if env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu") {
        return false;
    }
    if env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some() {
        return false;
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.contains("linker") || flags.contains("link-self-contained") {
        return false;
    }
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("-vV").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let minor = text
        .lines()
        .find_map(|l| l.strip_prefix("release: 1."))
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse::<u32>().ok());
    minor.is_some_and(|m| m >= 90)
}
