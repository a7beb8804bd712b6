//! The attach plan for one executable: for every probe in [`goruntime::PROBES`], the validated
//! instruction addresses and file offsets, plus where the runtime globals are. Built once per
//! executable file and shared by every process running it.

use crate::binary::{BinaryError, Function, GoBinary};
use crate::disasm::{self, DisasmError, Site};
use crate::globals::{self, Candidates, GlobalsError};
use crate::goruntime::{self, Layout, ProbeSpec, UnsupportedRelease};

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
    pub sites: Vec<Site>,
    /// File offsets of `sites`, what the kernel's uprobe takes.
    pub offsets: Vec<u64>,
}

#[derive(Clone, Debug)]
pub struct ProbePlan {
    pub layout: &'static Layout,
    pub probes: Vec<PlannedProbe>,
    pub globals: Candidates,
}

pub fn plan(bin: &GoBinary) -> Result<ProbePlan, PlanError> {
    let layout = goruntime::layout_for(&bin.version)?;
    let mut probes = Vec::new();
    for spec in goruntime::PROBES {
        let function = bin.function(spec.function)?.clone();
        let sites = match spec.site {
            goruntime::Site::Entry => vec![disasm::entry_site(bin, &function, spec.stack)?],
            goruntime::Site::Returns => disasm::return_sites(bin, &function)?,
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
    validate_p_offset(bin, layout)?;
    Ok(ProbePlan {
        layout,
        probes,
        globals: globals::locate(bin, layout)?,
    })
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
