//! The layer extractor on arbitrary bytes (plain, gzip or zstd, as the
//! magic says): it must return a summary or an error, never panic or loop
//! without end, and never create anything outside its target directory.
//! Each input is unpacked into a fresh directory inside a fresh parent; the
//! parent must hold nothing else afterwards.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plinth_store::{extract_layer, LayerOptions};

fuzz_target!(|data: &[u8]| {
    let parent = tempfile::tempdir().expect("temp dir");
    let target = parent.path().join("layer");
    std::fs::create_dir(&target).expect("target dir");
    let opts = LayerOptions {
        max_entry_size: 1 << 20,
        max_layer_size: 4 << 20,
        blob_size: Some(data.len() as u64),
        ..LayerOptions::default()
    };
    let _ = extract_layer(data, &target, &opts);
    let names: Vec<_> = std::fs::read_dir(parent.path())
        .expect("read parent")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["layer"], "something was written beside the layer");
});
