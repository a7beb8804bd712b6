//! Reading real Go binaries of every built release and variant, without any process: release,
//! text base, probe placement, and the stripped-binary paths checked against `.symtab`.

mod common;

use common::*;
use profiler::binary::{GoBinary, SymbolSource};
use profiler::disasm::Placement;
use profiler::globals;
use profiler::goruntime::Stack;
use profiler::probes::{self, LayoutSource};

#[test]
fn every_built_release_is_read_and_planned() {
    let targets = all_targets("workload");
    if targets.is_empty() {
        skip(
            "every_built_release_is_read_and_planned",
            "no Go targets: run `cargo xtask test`",
        );
        return;
    }
    for (release, variant, path) in &targets {
        let bin = GoBinary::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            bin.version.raw.starts_with(&format!("go{release}")),
            "{}: {}",
            path.display(),
            bin.version
        );
        let stripped = variant.ends_with("stripped");
        assert_eq!(
            bin.symbol_source == SymbolSource::Pclntab,
            stripped,
            "{}",
            path.display()
        );
        assert_eq!(bin.has_dwarf, !stripped);
        let plan = probes::plan(&bin).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // Where DWARF exists, it must agree with gprof's table.
        let want = if stripped {
            LayoutSource::Table
        } else {
            LayoutSource::TableCheckedByDwarf
        };
        assert_eq!(plan.layout_source, want, "{}", path.display());
        for p in &plan.probes {
            for s in &p.sites {
                assert!(s.addr >= p.function.entry && s.addr < p.function.end);
                let expected = match (p.spec.site, p.spec.stack) {
                    (profiler::goruntime::Site::Returns, _) => vec![Placement::Return],
                    (_, Stack::System) => vec![Placement::StackCheckBranch, Placement::Entry],
                    (_, Stack::Goroutine) => vec![Placement::AfterStackCheck],
                };
                assert!(
                    expected.contains(&s.placement),
                    "{} {}: {:?}",
                    path.display(),
                    p.function.name,
                    s.placement
                );
            }
        }
        // The hot probes must sit on the emulated branch, not the single-stepped entry.
        for hot in ["runtime.newproc1", "runtime.gfput", "runtime.scanstack"] {
            let p = plan.probes.iter().find(|p| p.function.name == hot).unwrap();
            assert_eq!(
                p.sites[0].placement,
                Placement::StackCheckBranch,
                "{} {hot}",
                path.display()
            );
        }
    }
}

/// The stripped-binary methods (functions from .gopclntab, globals from machine code) give
/// what `.symtab` says, on every release.
#[test]
fn stripped_paths_agree_with_the_symbol_table() {
    let targets = all_targets("workload");
    if targets.is_empty() {
        skip(
            "stripped_paths_agree_with_the_symbol_table",
            "no Go targets: run `cargo xtask test`",
        );
        return;
    }
    for (release, variant, path) in targets.iter().filter(|t| t.1 == "plain" || t.1 == "arm64") {
        let stripped_variant = if variant == "plain" {
            "stripped"
        } else {
            "arm64-stripped"
        };
        let bin = GoBinary::open(path).unwrap();
        let plan = probes::plan(&bin).unwrap();
        let symtab =
            globals::from_symtab(&bin, &plan.layout).expect("unstripped binaries have symbols");
        let decoded =
            globals::by_decoding(&bin, &plan.layout).unwrap_or_else(|e| panic!("go{release}: {e}"));
        assert_eq!(decoded.sched, symtab.sched, "go{release}: runtime.sched");
        let allgs = bin.data_symbol("runtime.allgs").unwrap();
        assert_eq!(
            decoded.allglen,
            vec![allgs + 8],
            "go{release}: len(runtime.allgs)"
        );
        assert_eq!(
            decoded.allp.first(),
            symtab.allp.first(),
            "go{release}: runtime.allp"
        );
        assert_eq!(
            decoded.last_gc_nanotime, symtab.last_gc_nanotime,
            "go{release}: memstats.last_gc_nanotime"
        );
        assert_eq!(
            decoded.pause_start, symtab.pause_start,
            "go{release}: work.pauseStart"
        );
        assert_eq!(
            symtab.last_gc_nanotime.is_some(),
            ["1.19", "1.21.13"].contains(&release.as_str())
        );

        // The stripped build of the same program has the same code at the same addresses.
        let stripped = GoBinary::open(&path.with_file_name(stripped_variant)).unwrap();
        let stripped_plan = probes::plan(&stripped).unwrap();
        assert_eq!(stripped.text.text, bin.text.text, "go{release}: text base");
        for (a, b) in plan.probes.iter().zip(&stripped_plan.probes) {
            assert_eq!(
                a.function.entry, b.function.entry,
                "go{release}: {}",
                a.function.name
            );
            assert_eq!(a.sites, b.sites, "go{release}: {}", a.function.name);
        }
    }
}
