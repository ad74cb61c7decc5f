//! The ELF reader on arbitrary bytes: it must return a summary or an error,
//! never panic, loop without end or read out of bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = plinth_compat::elf::parse(data) {
        let _ = info.is_dynamic();
        let _ = info.x86_isa_level();
    }
});
