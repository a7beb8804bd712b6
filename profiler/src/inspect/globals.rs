//! Where the runtime globals that `runtime.gcount` reads live in a binary: `.symtab` when the
//! binary has one, otherwise the addresses that always-linked runtime functions load (their
//! machine code names them even when every symbol is stripped).
//!
//! Static evidence only narrows the choice; `runtime_state` accepts a candidate only after
//! checking it in the live process.

use crate::inspect::binary::GoBinary;
use crate::inspect::disasm::{self, DisasmError, GlobalRef};
use crate::inspect::goruntime::{Layout, PauseClock, globals};

#[derive(Debug, thiserror::Error)]
pub enum GlobalsError {
    #[error("cannot locate runtime.{what} in this stripped binary: {why}")]
    NotFound { what: &'static str, why: String },
    #[error(transparent)]
    Disasm(#[from] DisasmError),
}

/// How an address was found; shown by `gprof check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Symtab,
    /// Decoded from the machine code of this runtime function.
    Decoded(&'static str),
}

impl Source {
    pub fn describe(self) -> String {
        match self {
            Source::Symtab => "symtab".to_string(),
            Source::Decoded(f) => format!("decoded from {f}"),
        }
    }
}

/// Candidate addresses of the globals, each list in order of preference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidates {
    /// `runtime.sched`.
    pub sched: u64,
    /// A word holding the number of gs ever allocated (`allglen`, or `len(allgs)`).
    pub allglen: Vec<u64>,
    /// `runtime.allgs` (a slice header of every g), for the goroutine census.
    pub allgs: Vec<u64>,
    /// `runtime.allp` (a slice header: pointer, length, capacity).
    pub allp: Vec<u64>,
    /// `work.pauseStart` and `memstats.last_gc_nanotime`, for releases that take GC pause
    /// bounds from there ([`PauseClock::Globals`]).
    pub pause_start: Option<u64>,
    pub last_gc_nanotime: Option<u64>,
    pub source: Source,
}

pub fn locate(bin: &GoBinary, layout: &Layout) -> Result<Candidates, GlobalsError> {
    match from_symtab(bin, layout) {
        Some(c) => Ok(c),
        None => by_decoding(bin, layout),
    }
}

pub fn from_symtab(bin: &GoBinary, layout: &Layout) -> Option<Candidates> {
    let (pause_start, last_gc_nanotime) = match layout.pause_clock {
        PauseClock::Registers => (None, None),
        PauseClock::Globals {
            work_pause_start,
            last_gc_nanotime,
            ..
        } => (
            Some(bin.data_symbol(globals::WORK)? + work_pause_start),
            Some(bin.data_symbol(globals::MEMSTATS)? + last_gc_nanotime),
        ),
    };
    Some(Candidates {
        pause_start,
        sched: bin.data_symbol(globals::SCHED)?,
        allglen: vec![bin.data_symbol(globals::ALLGLEN)?],
        allgs: bin.data_symbol(globals::ALLGS).into_iter().collect(),
        allp: vec![bin.data_symbol(globals::ALLP)?],
        last_gc_nanotime,
        source: Source::Symtab,
    })
}

/// The stripped-binary path (also run on unstripped binaries by the tests, to check it
/// against `.symtab`).
pub fn by_decoding(bin: &GoBinary, layout: &Layout) -> Result<Candidates, GlobalsError> {
    let refs = |function: &str| -> Result<Vec<GlobalRef>, GlobalsError> {
        let f = bin.function(function).map_err(DisasmError::from)?;
        Ok(disasm::global_refs(bin, f)?
            .into_iter()
            .filter(|r| bin.is_writable_data(r.addr, 8))
            .collect())
    };
    let (pause_start, last_gc_nanotime) = match layout.pause_clock {
        PauseClock::Registers => (None, None),
        PauseClock::Globals {
            work_t_sweep_term,
            work_pause_start,
            last_gc_unix,
            last_gc_nanotime,
        } => (
            Some(stored_pair(
                "work.pauseStart",
                &refs(globals::WORK_USER)?,
                work_t_sweep_term,
                work_pause_start,
            )?),
            Some(stored_pair(
                "memstats.last_gc_nanotime",
                &refs(globals::MEMSTATS_USER)?,
                last_gc_unix,
                last_gc_nanotime,
            )?),
        ),
    };
    Ok(Candidates {
        pause_start,
        last_gc_nanotime,
        sched: sched_from_gfput(&refs(globals::SCHED_USER)?, layout)?,
        allglen: slice_headers(&refs(globals::ALLGS_USER)?)
            .into_iter()
            .map(|h| h + 8)
            .collect(),
        allgs: slice_headers(&refs(globals::ALLGS_USER)?),
        allp: slice_headers(&refs(globals::ALLP_USER)?),
        source: Source::Decoded(
            "runtime.gfput, runtime.allgadd, runtime.procresize, runtime.gcStart, runtime.gcMarkTermination",
        ),
    })
}

/// `gfput` locks `sched.gFree`, moves gs onto its two lists and updates its counts: the one
/// base address at which all of these fields are referenced is `runtime.sched`.
fn sched_from_gfput(refs: &[GlobalRef], layout: &Layout) -> Result<u64, GlobalsError> {
    let fields = layout.sched_gfree.gfput_offsets();
    let mut bases: Vec<u64> = refs
        .iter()
        .filter_map(|r| r.addr.checked_sub(fields[0]))
        .filter(|&base| {
            fields
                .iter()
                .all(|&f| refs.iter().any(|r| r.addr == base + f))
        })
        .collect();
    bases.sort_unstable();
    bases.dedup();
    match bases.as_slice() {
        [one] => Ok(*one),
        [] => Err(GlobalsError::NotFound {
            what: "sched",
            why: "runtime.gfput does not reference sched.gFree's fields at this release's offsets"
                .into(),
        }),
        many => Err(GlobalsError::NotFound {
            what: "sched",
            why: format!("{} candidate bases", many.len()),
        }),
    }
}

/// Two fields the source stores one after the other (`work.tSweepTerm` then `pauseStart` in
/// `gcStart`, `memstats.last_gc_unix` then `last_gc_nanotime` in `gcMarkTermination`): the
/// one pair of consecutive references `second - first` apart gives the second field.
fn stored_pair(
    what: &'static str,
    refs: &[GlobalRef],
    first: u64,
    second: u64,
) -> Result<u64, GlobalsError> {
    let mut hits: Vec<u64> = refs
        .windows(2)
        .filter(|w| w[1].addr.checked_sub(w[0].addr) == Some(second - first))
        .map(|w| w[1].addr)
        .collect();
    hits.sort_unstable();
    hits.dedup();
    match hits.as_slice() {
        [one] => Ok(*one),
        other => Err(GlobalsError::NotFound {
            what,
            why: format!("{} candidate addresses", other.len()),
        }),
    }
}

/// Addresses `a` referenced together with `a+8` and `a+16`: Go slice headers (pointer,
/// length, capacity), as `append` and slice assignments touch all three.
fn slice_headers(refs: &[GlobalRef]) -> Vec<u64> {
    let has = |a: u64| refs.iter().any(|r| r.addr == a);
    let mut out: Vec<u64> = refs
        .iter()
        .map(|r| r.addr)
        .filter(|&a| a % 8 == 0 && has(a + 8) && has(a + 16))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::goruntime::{GoVersion, layout_for};

    fn r(addr: u64) -> GlobalRef {
        GlobalRef { addr, size: 8 }
    }

    #[test]
    fn sched_is_the_base_of_both_free_list_heads() {
        let layout = layout_for(&GoVersion::parse("go1.27.3").unwrap()).unwrap();
        let sched = 0x69b680;
        // As go1.27's gfput: the lock, both lists and both sizes.
        let refs: Vec<GlobalRef> = [
            0x700000,
            sched + 0xb8,
            sched + 0xc0,
            sched + 0xc8,
            sched + 0xd0,
            sched + 0xd8,
        ]
        .into_iter()
        .map(r)
        .collect();
        assert_eq!(sched_from_gfput(&refs, layout).unwrap(), sched);
        // Without the lock, three bases 0x10 apart would fit the lists alone; none fits all.
        assert!(sched_from_gfput(&refs[2..], layout).is_err());
    }

    #[test]
    fn slice_headers_need_all_three_words() {
        let refs = [r(0x1000), r(0x1008), r(0x1010), r(0x2000), r(0x2008)];
        assert_eq!(slice_headers(&refs), [0x1000]);
    }
}
