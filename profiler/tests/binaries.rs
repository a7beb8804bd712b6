//! Reading real Go binaries of every built release and variant, without any process: release,
//! text base, probe placement, and the stripped-binary paths checked against `.symtab`.

mod common;

use common::*;
use profiler::inspect::binary::{GoBinary, SymbolSource};
use profiler::inspect::disasm::ProbePlacement;
use profiler::inspect::globals;
use std::collections::{BTreeSet, HashMap};

use profiler::inspect::goruntime::Stack;
use profiler::inspect::plan::{self, LayoutSource};

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
        let plan = plan::plan(&bin).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
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
                let expected = match (p.spec.at, p.spec.stack) {
                    (profiler::inspect::goruntime::ProbeAt::Returns, _) => {
                        vec![ProbePlacement::Return]
                    }
                    (_, Stack::System) => {
                        vec![ProbePlacement::StackCheckBranch, ProbePlacement::Entry]
                    }
                    (_, Stack::Goroutine) => vec![ProbePlacement::AfterStackCheck],
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
                ProbePlacement::StackCheckBranch,
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
        let plan = plan::plan(&bin).unwrap();
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
        let stripped_plan = plan::plan(&stripped).unwrap();
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

/// `go tool objdump`'s RET instructions per function: (entry address -> addresses).
fn objdump_returns(go: &std::path::Path, bin: &std::path::Path) -> HashMap<u64, BTreeSet<u64>> {
    let out = std::process::Command::new(go)
        .args(["tool", "objdump"])
        .arg(bin)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", go.display()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rets: HashMap<u64, BTreeSet<u64>> = HashMap::new();
    let mut entry = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.starts_with("TEXT ") {
            entry = None;
            continue;
        }
        // "  file.go:12\t0x49e38\t\td65f03c0\t\tRET\t"
        let fields: Vec<&str> = line
            .split('\t')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .collect();
        let Some(addr) = fields
            .get(1)
            .and_then(|a| u64::from_str_radix(a.strip_prefix("0x")?, 16).ok())
        else {
            continue;
        };
        let e = *entry.get_or_insert(addr);
        let set = rets.entry(e).or_default();
        // "RET", or "RET R27" (a return through another register).
        if fields
            .get(3)
            .is_some_and(|m| *m == "RET" || m.starts_with("RET "))
        {
            set.insert(addr);
        }
    }
    rets
}

/// arm64 RETs are found by decoding the instructions reachable from the entry, never by
/// matching words (Go's arm64 text holds literal pools): in every function of the runtime,
/// of every release built for arm64, gprof finds exactly the RETs Go's own disassembler
/// lists, or refuses the function.
#[test]
fn arm64_returns_are_exactly_those_go_objdump_lists() {
    let test = "arm64_returns_are_exactly_those_go_objdump_lists";
    let targets: Vec<_> = all_targets("workload")
        .into_iter()
        .filter(|t| t.1 == "arm64")
        .collect();
    let Some(dir) = std::env::var_os("GPROF_GO_TARGETS") else {
        skip(test, "no Go targets: run `cargo xtask test`");
        return;
    };
    let toolchains = std::fs::read_to_string(std::path::Path::new(&dir).join("toolchains.tsv"))
        .expect("toolchains.tsv, written by cargo xtask test");
    let go_of = |release: &str| {
        toolchains
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{release}\t")))
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| panic!("no toolchain for {release}"))
    };
    assert!(targets.len() >= 8, "{test}: arm64 builds: {targets:?}");
    for (release, _, path) in &targets {
        let bin = GoBinary::open(path).unwrap();
        let truth = objdump_returns(&go_of(release), path);
        let (mut exact, mut refused, mut pool_lookalikes) = (0, 0, 0);
        for f in bin
            .functions()
            .iter()
            .filter(|f| f.name.starts_with("runtime."))
        {
            let Some(want) = truth.get(&f.entry) else {
                continue;
            };
            let code = bin.code(f).unwrap();
            // Words that read as RET but are not one Go's disassembler lists: data.
            pool_lookalikes += code
                .chunks_exact(4)
                .enumerate()
                .filter(|(i, w)| {
                    u32::from_le_bytes((*w).try_into().unwrap()) == 0xd65f03c0
                        && !want.contains(&(f.entry + 4 * *i as u64))
                })
                .count();
            match profiler::inspect::disasm::return_sites(&bin, f) {
                Ok(sites) => {
                    let got: BTreeSet<u64> = sites.iter().map(|s| s.addr).collect();
                    assert_eq!(&got, want, "{test}: {release} {}", f.name);
                    exact += 1;
                }
                Err(_) => refused += 1,
            }
        }
        let stw = bin.function("runtime.startTheWorldWithSema").unwrap();
        assert!(
            profiler::inspect::disasm::return_sites(&bin, stw).is_ok(),
            "{test}: {release}: the probed function is refused"
        );
        assert!(
            exact > 500,
            "{test}: {release}: only {exact} functions compared"
        );
        eprintln!(
            "{test}: go{release} arm64: {exact} runtime functions with exactly objdump's RETs, {refused} refused (an indirect jump, or no RET: functions that never return), {pool_lookalikes} RET-like data words ignored"
        );
    }
}
