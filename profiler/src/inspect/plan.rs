//! The attach plan for one executable: for every probe in [`goruntime::PROBES`], the validated
//! instruction addresses and file offsets, plus where the runtime globals are. Built once per
//! executable file and shared by every process running it.

use crate::inspect::binary::{BinaryError, Function, GoBinary};
use crate::inspect::disasm::{self, DisasmError, ProbePoint};
use crate::inspect::globals::{self, Candidates, GlobalsError};
use crate::inspect::goruntime::{self, Layout, ProbeSpec, UnsupportedRelease};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Unsupported(#[from] UnsupportedRelease),
    #[error(transparent)]
    Binary(#[from] BinaryError),
    #[error("refusing to probe")]
    Disasm(#[from] DisasmError),
    #[error(transparent)]
    Globals(#[from] GlobalsError),
}

/// One probe, resolved.
#[derive(Clone, Debug)]
pub struct PlannedProbe {
    pub spec: &'static ProbeSpec,
    pub function: Function,
    /// Instruction addresses (one for entry probes, one per RET for return probes).
    pub sites: Vec<ProbePoint>,
    /// File offsets of `sites`, what the kernel's uprobe takes.
    pub offsets: Vec<u64>,
}

/// Where a plan's struct offsets come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayoutSource {
    /// gprof's table (the binary has no DWARF).
    Table,
    /// gprof's table, and the binary's DWARF agrees with it.
    TableCheckedByDwarf,
    /// The binary's DWARF, which differs from the table (a patched toolchain, another
    /// GOEXPERIMENT...): the differences.
    DwarfOverTable(Vec<String>),
    /// The binary's DWARF, for a release newer than the table; conventions of go1.N assumed.
    DwarfNewerRelease(u32),
    /// A release newer than the table without usable DWARF: the layout of go1.N, the newest
    /// known, assumed; attaching needs the self-check to accept it.
    NewestAssumed(u32),
}

impl LayoutSource {
    pub fn describe(&self) -> String {
        match self {
            LayoutSource::Table => "gprof's table (no DWARF to check it against)".into(),
            LayoutSource::TableCheckedByDwarf => {
                "gprof's table, checked against the binary's DWARF".into()
            }
            LayoutSource::DwarfOverTable(d) => format!(
                "the binary's DWARF, which differs from gprof's table ({})",
                d.join("; ")
            ),
            LayoutSource::DwarfNewerRelease(m) => {
                format!(
                    "the binary's DWARF (release newer than the table; calling conventions of go1.{m} assumed)"
                )
            }
            LayoutSource::NewestAssumed(m) => format!(
                "gprof's table for go1.{m}, assumed for a newer release (the self-check at attach must accept it)"
            ),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ProbePlan {
    pub layout: Layout,
    pub layout_source: LayoutSource,
    pub probes: Vec<PlannedProbe>,
    pub globals: Candidates,
}

pub fn plan(bin: &GoBinary) -> Result<ProbePlan, PlanError> {
    let (layout, layout_source) = resolve_layout(bin)?;
    let layout_ref = &layout;
    let mut probes = Vec::new();
    for spec in goruntime::PROBES {
        let function = bin.function(spec.function)?.clone();
        let sites = match spec.at {
            goruntime::ProbeAt::Entry => vec![disasm::entry_site(bin, &function, spec.stack)?],
            goruntime::ProbeAt::Returns => disasm::return_sites(bin, &function)?,
        };
        let offsets = sites
            .iter()
            .map(|s| bin.file_offset(s.addr))
            .collect::<Result<_, _>>()?;
        probes.push(PlannedProbe {
            spec,
            function,
            sites,
            offsets,
        });
    }
    validate_p_offset(bin, layout_ref)?;
    let globals = globals::locate(bin, layout_ref)?;
    Ok(ProbePlan {
        layout,
        layout_source,
        probes,
        globals,
    })
}

/// The struct offsets to use: the table, checked against DWARF when the binary has it (DWARF
/// wins a disagreement); for a release newer than the table, DWARF alone or a refusal.
fn resolve_layout(bin: &GoBinary) -> Result<(Layout, LayoutSource), PlanError> {
    let types = || -> Option<crate::inspect::binary::dwarf::Types> {
        match bin.dwarf_types() {
            Ok(t) => t,
            Err(e) => {
                log::warn!("{}: {e}; using gprof's table", bin.path.display());
                None
            }
        }
    };
    let (table, fit) = goruntime::layout_for_arch(&bin.version, bin.arch)?;
    match fit {
        goruntime::Fit::Known => {
            let Some(types) = types() else {
                return Ok((table, LayoutSource::Table));
            };
            match goruntime::layout_from_dwarf(&types, &table) {
                Ok(d) if d == table => Ok((d, LayoutSource::TableCheckedByDwarf)),
                Ok(d) => {
                    let diff = table.differences(&d);
                    log::warn!(
                        "{}: DWARF differs from gprof's table for {}: {}",
                        bin.path.display(),
                        bin.version,
                        diff.join("; ")
                    );
                    Ok((d, LayoutSource::DwarfOverTable(diff)))
                }
                Err(e) => {
                    log::warn!("{}: {e}; using gprof's table", bin.path.display());
                    Ok((table, LayoutSource::Table))
                }
            }
        }
        goruntime::Fit::Newer => {
            let newest = table.minors.1;
            match types().map(|t| goruntime::layout_from_dwarf(&t, &table)) {
                Some(Ok(layout)) => Ok((layout, LayoutSource::DwarfNewerRelease(newest))),
                Some(Err(e)) => {
                    log::warn!(
                        "{}: {}: {e}; assuming go1.{newest}'s layout",
                        bin.path.display(),
                        bin.version
                    );
                    Ok((table, LayoutSource::NewestAssumed(newest)))
                }
                None => Ok((table, LayoutSource::NewestAssumed(newest))),
            }
        }
    }
}

/// `gfput` increments `p.gFree`'s count: the table's offset must appear in its code, which
/// catches a layout table that does not match this build before any memory is read.
fn validate_p_offset(bin: &GoBinary, layout: &Layout) -> Result<(), PlanError> {
    let f = bin.function(goruntime::globals::SCHED_USER)?;
    let disps = disasm::displacements(bin, f)?;
    if disps.contains(&layout.p_gfree_count) {
        Ok(())
    } else {
        Err(PlanError::Disasm(DisasmError::Prologue {
            function: f.name.clone(),
            why: format!(
                "does not touch p.gFree's count at {:#x}: the runtime layout of {} differs from gprof's table",
                layout.p_gfree_count, bin.version
            ),
        }))
    }
}
