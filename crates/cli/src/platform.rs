//! `plinth platform`: print the fingerprint of a platform.

use std::path::PathBuf;

use anyhow::Result;
use plinth_compat::{render, Platform};

use crate::cli::{GlobalArgs, PlatformArgs, PlatformFormat};

/// Detects the platform of `--root` (default `/`) and prints it.
pub fn run(global: &GlobalArgs, args: &PlatformArgs) -> Result<i32> {
    let root = global.root.clone().unwrap_or_else(|| PathBuf::from("/"));
    let platform = Platform::detect(&root)?;
    match args.format {
        PlatformFormat::Json => println!("{}", serde_json::to_string_pretty(&platform)?),
        PlatformFormat::Text => print!("{}", render::platform_text(&platform)),
    }
    Ok(0)
}
