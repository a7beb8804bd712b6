//! Truncated and corrupted Go binaries (proptest): reading, planning and DWARF parsing return
//! errors, never panic. Mutations aim at what the parser reads (ELF headers, section headers,
//! .go.buildinfo, .gopclntab, the moduledata, DWARF) as well as anywhere in the file.

mod common;

use std::ops::Range;
use std::path::Path;

use common::*;
use object::{Object, ObjectSection};
use profiler::inspect::binary::GoBinary;
use profiler::inspect::plan;
use proptest::prelude::*;

/// The byte ranges worth corrupting in `bytes`.
fn regions(bytes: &[u8]) -> Vec<Range<usize>> {
    let file = object::File::parse(bytes).expect("a real binary");
    let mut out = Vec::with_capacity(4);
    out.push(0..64.min(bytes.len()));
    for name in [
        ".go.buildinfo",
        ".gopclntab",
        ".go.module",
        ".noptrdata",
        ".debug_info",
        ".debug_abbrev",
    ] {
        if let Some((off, size)) = file.section_by_name(name).and_then(|s| s.file_range()) {
            let (off, size) = (off as usize, (size as usize).min(1 << 16));
            out.push(off..off + size);
        }
    }
    // The section headers.
    if let object::File::Elf64(elf) = &file {
        use object::read::elf::FileHeader;
        let h = elf.elf_header();
        let e = object::Endianness::Little;
        let start = h.e_shoff(e) as usize;
        let len = h.e_shnum(e) as usize * h.e_shentsize(e) as usize;
        out.push(start..(start + len).min(bytes.len()));
    }
    out
}

/// Everything gprof does with a binary before touching a process.
fn exercise(bytes: Vec<u8>) {
    if let Ok(bin) = GoBinary::parse(Path::new("corrupt"), bytes) {
        let _ = plan::plan(&bin);
        let _ = bin.dwarf_types();
    }
}

/// Real binaries to corrupt (read once): go1.27 plain and stripped, go1.19 PIE.
fn originals() -> &'static [Vec<u8>] {
    static ALL: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        ["plain", "stripped"]
            .iter()
            .filter_map(|v| go_target("corrupt_binaries", "workload", "1.27.3", v))
            .chain(go_target("corrupt_binaries", "workload", "1.19", "pie"))
            .map(|p| std::fs::read(p).unwrap())
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn truncated(which in 0usize..3, cut in 0.0f64..1.0) {
        let all = originals();
        if let Some(b) = all.get(which % all.len().max(1)) {
            exercise(b[..(b.len() as f64 * cut) as usize].to_vec());
        }
    }

    #[test]
    fn corrupted_where_the_parser_reads(
        which in 0usize..3,
        edits in prop::collection::vec((0usize..64, 0.0f64..1.0, any::<u64>(), 1usize..9), 1..12),
    ) {
        let all = originals();
        let Some(original) = all.get(which % all.len().max(1)) else { return Ok(()) };
        let mut b = original.clone();
        let targets = regions(&b);
        for (region, at, value, width) in edits {
            let r = &targets[region % targets.len()];
            if r.is_empty() {
                continue;
            }
            let pos = r.start + ((r.len() as f64 * at) as usize).min(r.len() - 1);
            let bytes = value.to_le_bytes();
            let end = (pos + width).min(b.len());
            b[pos..end].copy_from_slice(&bytes[..end - pos]);
        }
        exercise(b);
    }

    #[test]
    fn corrupted_anywhere(which in 0usize..3, flips in prop::collection::vec((0.0f64..1.0, any::<u8>()), 1..64)) {
        let all = originals();
        let Some(original) = all.get(which % all.len().max(1)) else { return Ok(()) };
        let mut b = original.clone();
        for (at, v) in flips {
            let pos = ((b.len() as f64 * at) as usize).min(b.len() - 1);
            b[pos] = v;
        }
        exercise(b);
    }
}
