//! Any bytes as a .gopclntab section: parsing and walking every function must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(table) = profiler::inspect::binary::pclntab::Pclntab::parse(data, 0x500000) {
        for f in table.funcs() {
            let _ = f;
        }
        let _ = table.text_end_off();
    }
});
