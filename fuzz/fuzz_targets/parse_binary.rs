//! Any bytes as an executable: reading, planning and DWARF parsing must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(bin) = profiler::inspect::binary::GoBinary::parse(std::path::Path::new("fuzz"), data.to_vec()) {
        let _ = profiler::inspect::plan::plan(&bin);
        let _ = bin.dwarf_types();
    }
});
