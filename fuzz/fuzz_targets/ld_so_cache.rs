//! The ld.so.cache parser and lookup on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plinth_compat::loader::cache::{LdCache, X86_64_FLAGS};
use plinth_compat::loader::hwcaps::LoaderCpu;
use plinth_compat::platform::CpuFeatures;

fuzz_target!(|data: &[u8]| {
    if let Ok(cache) = LdCache::parse(data) {
        let cpu = LoaderCpu::for_glibc(&CpuFeatures::baseline(), (2, 36));
        for name in ["libc.so.6", "libz.so.1", ""] {
            let _ = cache.lookup(name, &cpu, X86_64_FLAGS);
        }
    }
});
