//! The runtime's own counts, read from the target's memory exactly as `runtime.gcount` (what
//! `runtime.NumGoroutine` returns) computes them:
//!
//! ```text
//! live goroutines = allglen - sched free lists - sum over Ps of p free list - ngsys
//! free-G pool     = sched free lists + sum over Ps of p free list
//! goroutines created since start = sched.goidgen - unused IDs cached in the Ps
//! ```
//!
//! (every created goroutine takes a new ID; the Ps take IDs from `sched.goidgen` in batches).
//! The reads race with the running program just as `gcount`'s own reads do; no lock is taken
//! and the target is never stopped.

use crate::inspect::census::{GFields, GOffsets};
use crate::inspect::globals::Candidates;
use crate::inspect::goruntime::{Layout, globals};
use crate::inspect::process::{ProcMem, ProcessError};

/// More Ps than this is not a real `allp`: the runtime's `_MaxGomaxprocs` (every release
/// since 1.10).
pub const MAX_PROCS: u64 = 1 << 10;
/// More gs than this is not a real `allglen`.
const MAX_GS: u64 = 1 << 32;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("runtime globals failed validation in the live process: {0}")]
    Invalid(String),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("the process exec'd another program or exited while it was read")]
    ProgramChanged,
    /// Read fine, but what the runtime's bookkeeping holds is what no runtime would: the
    /// process rewrote it, or its memory is not what gprof planned for.
    #[error("the runtime's bookkeeping holds what no Go runtime would: {0}")]
    Implausible(String),
}

/// One reading of the runtime's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuntimeCounts {
    /// Every g ever allocated (live, free, system).
    pub allglen: i64,
    /// System goroutines, which `NumGoroutine` leaves out.
    pub ngsys: i64,
    /// Dead gs kept for reuse in `sched.gFree`.
    pub sched_free: i64,
    /// Dead gs kept for reuse in the Ps' local lists.
    pub p_free: i64,
    /// GOMAXPROCS (the length of `allp`).
    pub procs: u32,
    /// Goroutine IDs handed out since the process started: goroutines created (plus the few
    /// gs cgo's extra Ms take, and the IDs left in the cache of a P that GOMAXPROCS removed).
    pub goids: i64,
    /// `len(runtime.allgs)`, read with the others (None without a validated `allgs`): the
    /// runtime stores it and `allglen` together.
    pub allgs_len: Option<i64>,
}

impl RuntimeCounts {
    /// What `runtime.NumGoroutine()` would return (without its clamp to at least 1).
    pub fn goroutines(&self) -> i64 {
        self.allglen - self.sched_free - self.p_free - self.ngsys
    }

    /// The free-G pool: exited goroutines kept for reuse.
    pub fn free_pool(&self) -> i64 {
        self.sched_free + self.p_free
    }
}

/// Reads [`RuntimeCounts`] from one process, with validated addresses.
#[derive(Debug)]
pub struct RuntimeReader {
    mem: ProcMem,
    allglen: u64,
    allp: u64,
    ngsys: u64,
    sched_counts: Vec<u64>,
    p_gfree_count: u64,
    goidgen: u64,
    p_goidcache: u64,
    /// `runtime.allgs`, when a candidate held a slice as long as `allglen`.
    allgs: Option<u64>,
    g: GOffsets,
    /// The Ps as of the last reading.
    ps: std::sync::Mutex<Option<KnownPs>>,
}

/// `allp` (array address, length) and its non-nil elements.
#[derive(Clone, Debug)]
struct KnownPs {
    allp: (u64, u64),
    ps: Vec<u64>,
}

/// `runtime.allgs`: the array of every g, and its length, as one reading found them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllGs {
    pub ptr: u64,
    pub len: u64,
}

/// Buffers [`RuntimeReader::read_gs`] reuses from one call to the next.
#[derive(Debug, Default)]
pub struct GsBuffers {
    raw: Vec<u8>,
    bytes: Vec<u8>,
    addrs: Vec<u64>,
}

impl RuntimeReader {
    /// Picks the candidates that hold plausible values in the live process. `bias` is the PIE
    /// load bias (0 for ordinary executables).
    pub fn new(
        mem: ProcMem,
        layout: &Layout,
        c: &Candidates,
        bias: u64,
    ) -> Result<Self, StateError> {
        let sched = c.sched + bias;
        let allp = c
            .allp
            .iter()
            .map(|a| a + bias)
            .find(|&a| valid_allp(&mem, a).is_ok())
            .ok_or_else(|| {
                StateError::Invalid(format!(
                    "no valid runtime.allp among {} candidates",
                    c.allp.len()
                ))
            })?;
        let allglen = c
            .allglen
            .iter()
            .map(|a| a + bias)
            .find(|&a| mem.read_u64(a).is_ok_and(|n| (1..MAX_GS).contains(&n)))
            .ok_or_else(|| StateError::Invalid("no plausible runtime.allglen".into()))?;
        let reader = Self {
            mem,
            allglen,
            allp,
            ngsys: sched + layout.sched_ngsys,
            sched_counts: layout
                .sched_gfree
                .count_offsets()
                .iter()
                .map(|o| sched + o)
                .collect(),
            p_gfree_count: layout.p_gfree_count,
            goidgen: sched + layout.sched_goidgen,
            p_goidcache: layout.p_goidcache,
            allgs: None,
            g: GOffsets::of(layout),
            ps: Default::default(),
        };
        let counts = reader.read()?;
        let allgs = c.allgs.iter().map(|a| a + bias).find(|&a| {
            let ptr = reader.mem.read_u64(a).unwrap_or(0);
            let len = reader.mem.read_u64(a + 8).unwrap_or(0) as i64;
            ptr != 0 && ptr.is_multiple_of(8) && (len - counts.allglen).abs() <= 64
        });
        let reader = Self { allgs, ..reader };
        if !(0..=counts.allglen).contains(&counts.ngsys)
            || counts.sched_free < 0
            || counts.p_free < 0
            || counts.goroutines() < 1
        {
            return Err(StateError::Invalid(format!(
                "implausible counts {counts:?}"
            )));
        }
        Ok(reader)
    }

    /// `sched.goidgen` alone: one 8-byte read, cheap enough to watch for surges of creations
    /// between samples (the IDs the Ps cache make it run ahead by at most 16 per P).
    pub fn goidgen(&self) -> Result<u64, StateError> {
        Ok(self.mem.read_u64(self.goidgen)?)
    }

    /// Whether the goroutine census can run (`runtime.allgs` was found and validated).
    pub fn has_census(&self) -> bool {
        self.allgs.is_some()
    }

    /// `runtime.allgs` as it is now (None when it was not found and validated).
    pub fn allgs(&self) -> Result<Option<AllGs>, StateError> {
        let Some(allgs) = self.allgs else {
            return Ok(None);
        };
        let mut header = [0u8; 16];
        self.mem.gather(&[(allgs, 16)], &mut header)?;
        let mut fields = Fields(&header);
        Ok(Some(AllGs {
            ptr: fields.u64(),
            len: fields.u64(),
        }))
    }

    /// Reads the gs at indices `range` of `allgs` (as read by [`Self::allgs`]; the range is
    /// cut to its length) and hands each to `f` (index, address; None: unreadable).
    /// `allgs` only grows and keeps its order when it moves, so an index names the same g
    /// whichever array the runtime holds now. Confirms afterwards that the process still
    /// runs the program the reader was opened on.
    pub fn read_gs(
        &self,
        allgs: AllGs,
        range: std::ops::Range<u64>,
        buffers: &mut GsBuffers,
        mut f: impl FnMut(u64, u64, Option<GFields>),
    ) -> Result<(), StateError> {
        let (start, end) = (range.start.min(allgs.len), range.end.min(allgs.len));
        if start >= end {
            return Ok(());
        }
        let n = (end - start) as usize;
        let span = self.g.span();
        let GsBuffers { raw, bytes, addrs } = buffers;
        raw.resize(8 * n, 0);
        self.mem.gather(
            &[(allgs.ptr.wrapping_add(8u64.wrapping_mul(start)), raw.len())],
            raw,
        )?;
        addrs.clear();
        addrs.extend(
            raw.chunks_exact(8)
                .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes"))),
        );
        bytes.resize(span * n, 0);
        let ok = self.mem.read_scattered(addrs, span, bytes);
        for (i, ((b, ok), &addr)) in bytes
            .chunks_exact(span)
            .zip(ok)
            .zip(addrs.iter())
            .enumerate()
        {
            f(start + i as u64, addr, ok.then(|| self.g.parse(b)));
        }
        if !self.mem.still_opened_program(self.allglen) {
            return Err(StateError::ProgramChanged);
        }
        Ok(())
    }

    /// The fields of the gs at `addrs`, read again (None: unreadable).
    pub fn read_g_fields(&self, addrs: &[u64], buffers: &mut GsBuffers) -> Vec<Option<GFields>> {
        let span = self.g.span();
        let bytes = &mut buffers.bytes;
        bytes.resize(span * addrs.len(), 0);
        let ok = self.mem.read_scattered(addrs, span, bytes);
        bytes
            .chunks_exact(span)
            .zip(ok)
            .map(|(b, ok)| ok.then(|| self.g.parse(b)))
            .collect()
    }

    /// The target's memory, for reads beyond the runtime's bookkeeping (stacks).
    pub fn memory(&self) -> &ProcMem {
        &self.mem
    }

    /// Reads the gs of `runtime.allgs` and hands them to `f` a run at a time (address; None:
    /// unreadable), right after the run is read: every one up to `max`, else `max` of them
    /// spread over the array. Returns
    /// `allgs`'s length and how many were read (None when the census cannot run: no
    /// validated `allgs`).
    pub fn each_g(
        &self,
        max: u64,
        mut f: impl FnMut(&[(u64, Option<GFields>)]),
    ) -> Result<Option<(u64, u64)>, StateError> {
        let Some(allgs) = self.allgs()? else {
            return Ok(None);
        };
        if allgs.ptr == 0 {
            return Ok(None);
        }
        const RUN: u64 = 256;
        let mut buffers = GsBuffers::default();
        let runs = max.div_ceil(RUN).max(1);
        let stride = if allgs.len <= max {
            RUN
        } else {
            (allgs.len / runs).max(RUN)
        };
        let mut read = 0;
        let mut start = 0;
        let mut run = Vec::with_capacity(RUN as usize);
        while start < allgs.len && read < max.max(RUN) {
            let end = (start + RUN).min(allgs.len);
            run.clear();
            self.read_gs(allgs, start..end, &mut buffers, |_, addr, g| {
                run.push((addr, g))
            })?;
            f(&run);
            read += end - start;
            start += stride;
        }
        Ok(Some((allgs.len, read)))
    }

    /// One 8-byte word of the process's memory.
    pub fn word(&self, addr: u64) -> Result<u64, StateError> {
        Ok(self.mem.read_u64(addr)?)
    }

    /// Walks blocked goroutines' stacks (see [`crate::inspect::unwind`]).
    pub fn unwind(
        &self,
        starts: &[crate::inspect::unwind::Start],
        bias: u64,
        arch: crate::inspect::binary::Arch,
        code: &impl crate::inspect::unwind::Code,
    ) -> Vec<Option<u64>> {
        use crate::inspect::unwind::{StackTops, blocked_at};
        let stacks = StackTops::read(starts, &self.mem);
        let places = blocked_at(starts, bias, arch, code, &stacks);
        // Stacks read from another program say nothing.
        match self.allgs.is_none_or(|a| self.mem.still_opened_program(a)) {
            true => places,
            false => vec![None; places.len()],
        }
    }

    /// Reads the counts and confirms through /proc/PID/mem that they came from the program
    /// the reader was opened on (an exec in between fails the reading). Usually one gathered
    /// read: the globals, then each P's free count and ID cache around `goidgen`, at the Ps
    /// of the last reading. `allp` changes only when GOMAXPROCS does (its elements are never
    /// freed or replaced), so when the same reading shows `allp` moved or resized, its array
    /// is read and the Ps' part again.
    pub fn read(&self) -> Result<RuntimeCounts, StateError> {
        let globals: Vec<(u64, usize)> = [(self.allglen, 8), (self.allp, 16), (self.ngsys, 4)]
            .into_iter()
            .chain(self.sched_counts.iter().map(|&a| (a, 4)))
            .chain(self.allgs.map(|a| (a + 8, 8)))
            .collect();
        // The Ps of the last reading (none at the first: then they are read as if allp moved).
        let (known_allp, mut ps) = match self.ps.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(k) => (Some(k.allp), k.ps),
            None => (None, Vec::new()),
        };
        let mut buf = Vec::new();
        self.read_with_ps(&globals, &ps, &mut buf)?;
        let mut fields = Fields(&buf);
        let allglen = fields.u64() as i64;
        let allp = (fields.u64(), fields.u64());
        let ngsys = i64::from(fields.i32());
        let sched_free: i64 = self
            .sched_counts
            .iter()
            .map(|_| i64::from(fields.i32()))
            .sum();
        let allgs_len = self.allgs.map(|_| fields.u64() as i64);
        if allp.1 == 0 || allp.1 > MAX_PROCS {
            return Err(StateError::Implausible(format!(
                "runtime.allp holds {} Ps (a runtime has 1 to {MAX_PROCS})",
                allp.1
            )));
        }
        if known_allp != Some(allp) {
            let (ptr, len) = allp;
            let mut array = vec![0u8; 8 * len as usize];
            self.mem.gather(&[(ptr, array.len())], &mut array)?;
            ps = Fields(&array)
                .words(len as usize)
                .filter(|&p| p != 0)
                .collect();
            self.read_with_ps(&[], &ps, &mut buf)?;
            fields = Fields(&buf);
        }
        let mut p_free = 0i64;
        let mut before = Vec::with_capacity(ps.len());
        for _ in &ps {
            if self.p_cache_first() {
                before.push((fields.u64(), fields.u64()));
                p_free += i64::from(fields.i32());
            } else {
                p_free += i64::from(fields.i32());
                before.push((fields.u64(), fields.u64()));
            }
        }
        let first = (fields.u64(), fields.pairs(ps.len()));
        // Further tries read `goidgen` and the caches only.
        let parts: Vec<(u64, usize)> = [(self.goidgen, 8)]
            .into_iter()
            .chain(ps.iter().map(|&p| self.id_cache(p)))
            .collect();
        let goids = self.goids(&parts, before, first)?;
        if !self.mem.still_opened_program(self.allglen) {
            return Err(StateError::ProgramChanged);
        }
        let procs = allp.1 as u32;
        *self.ps.lock().unwrap_or_else(|p| p.into_inner()) = Some(KnownPs { allp, ps });
        Ok(RuntimeCounts {
            allglen,
            ngsys,
            sched_free,
            p_free,
            procs,
            goids,
            allgs_len,
        })
    }

    /// P `p`'s ID cache (`goidcache`, `goidcacheend`). Addresses from the target's memory
    /// wrap rather than overflow: a read there fails, it never panics gprof.
    fn id_cache(&self, p: u64) -> (u64, usize) {
        (p.wrapping_add(self.p_goidcache), 16)
    }

    /// Whether a P's ID cache comes before its free count in the struct: the two are read in
    /// address order, so that they share a page pin when they share a page.
    fn p_cache_first(&self) -> bool {
        self.p_goidcache < self.p_gfree_count
    }

    /// Reads `first`, then each P's free count and ID cache, `goidgen`, and the caches
    /// again, in one gathered read (the kernel copies the parts in order) into `buf`.
    /// Addresses from the target's memory wrap rather than overflow: a read there fails, it
    /// never panics gprof.
    fn read_with_ps(
        &self,
        first: &[(u64, usize)],
        ps: &[u64],
        buf: &mut Vec<u8>,
    ) -> Result<(), StateError> {
        let parts: Vec<(u64, usize)> = first
            .iter()
            .copied()
            .chain(ps.iter().flat_map(|&p| {
                let (free, cache) = ((p.wrapping_add(self.p_gfree_count), 4), self.id_cache(p));
                match self.p_cache_first() {
                    true => [cache, free],
                    false => [free, cache],
                }
            }))
            .chain([(self.goidgen, 8)])
            .chain(ps.iter().map(|&p| self.id_cache(p)))
            .collect();
        buf.clear();
        buf.resize(parts.iter().map(|p| p.1).sum(), 0);
        Ok(self.mem.gather(&parts, buf)?)
    }

    /// IDs handed out = `goidgen` minus what the Ps hold unused. A P refilling its cache while
    /// we read would skew the sum by a batch: read the caches around `goidgen` until they
    /// hold still. Under heavy churn they never do; then the last reading stands, off by at
    /// most a batch (16) per P plus the creations during a few microseconds. `before` are the
    /// caches read just before the first (`goidgen`, caches) reading; `parts` read those two
    /// again.
    fn goids(
        &self,
        parts: &[(u64, usize)],
        mut before: Vec<(u64, u64)>,
        (mut generated, mut after): (u64, Vec<(u64, u64)>),
    ) -> Result<i64, StateError> {
        let mut buf = vec![0u8; 8 + 16 * before.len()];
        let mut tries = 1;
        while after != before && tries < 4 {
            before = after;
            self.mem.gather(parts, &mut buf)?;
            let mut fields = Fields(&buf);
            generated = fields.u64();
            after = fields.pairs(before.len());
            tries += 1;
        }
        let cached: u64 = after
            .iter()
            .map(|&(next, end)| end.saturating_sub(next))
            .sum();
        Ok(generated.saturating_sub(cached) as i64)
    }
}

/// Little-endian fields read in order from gathered bytes.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().expect("N bytes")
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }

    fn i32(&mut self) -> i32 {
        i32::from_le_bytes(self.take())
    }

    fn words(&mut self, n: usize) -> impl Iterator<Item = u64> + '_ {
        (0..n).map(|_| self.u64())
    }

    fn pairs(&mut self, n: usize) -> Vec<(u64, u64)> {
        (0..n).map(|_| (self.u64(), self.u64())).collect()
    }
}

/// `allp` is a slice of `*p` whose element `i` has `p.id == i` and a valid status.
fn valid_allp(mem: &ProcMem, addr: u64) -> Result<(), String> {
    let ptr = mem.read_u64(addr).map_err(|e| e.to_string())?;
    let len = mem.read_u64(addr + 8).map_err(|e| e.to_string())?;
    let cap = mem.read_u64(addr + 16).map_err(|e| e.to_string())?;
    if ptr == 0 || len == 0 || len > MAX_PROCS || cap < len {
        return Err(format!("not a slice of Ps (len {len}, cap {cap})"));
    }
    for i in 0..len {
        let p = mem
            .read_u64(ptr.wrapping_add(8 * i))
            .map_err(|e| e.to_string())?;
        let id = mem
            .read_i32(p.wrapping_add(globals::P_ID))
            .map_err(|e| e.to_string())?;
        let status = mem
            .read_i32(p.wrapping_add(globals::P_STATUS))
            .map_err(|e| e.to_string())?;
        if id as u64 != i || !(0..=globals::P_STATUS_MAX as i32).contains(&status) {
            return Err(format!("element {i} is not P {i}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcount_arithmetic() {
        let c = RuntimeCounts {
            allglen: 1200,
            ngsys: 6,
            sched_free: 100,
            p_free: 93,
            procs: 2,
            goids: 5000,
            allgs_len: Some(1200),
        };
        assert_eq!(c.goroutines(), 1001);
        assert_eq!(c.free_pool(), 193);
    }
}
