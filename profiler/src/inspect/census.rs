//! The goroutine census: every g in `runtime.allgs`, read from the target's memory each
//! sample, tallied by creation site (the `go` statement's PC and the function it started) and
//! by stack size. It needs no probe, so the budget never thins it: live goroutines per site
//! and the stacks that live and pooled goroutines hold are exact, as of the reading. The reads
//! race with the program like `runtime.forEachGRace` does: a g that changes state meanwhile is
//! counted in one state or the other.
//!
//! Blocked goroutines (waiting, in a system call, or found leaked by the runtime) are also
//! listed one by one, with what tells where and since when they wait: the saved registers to
//! unwind their stack from, the wait reason, `waitsince`, and `trackingSeq`.

use std::collections::BTreeMap;

use foldhash::HashMap;

use crate::inspect::goruntime::status;
use crate::inspect::unwind::Start;

const G_SCAN: u32 = status::SCAN;
/// `_Gidle` (just allocated), `_Gdead` (exited or never used) and, Go 1.26+, `_Gdeadextra`
/// (a dead g parked for cgo callbacks): no goroutine runs on them.
const NOT_LIVE: [u32; 3] = [0, 6, 11];
/// Statuses a g can have at all (1.26 added 10 and 11).
const MAX_STATUS: u32 = 11;

/// Where goroutines are created: the `go` statement's PC and the function it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CreationSite {
    pub gopc: u64,
    pub startpc: u64,
}

impl CreationSite {
    /// Where sites beyond a bound are counted (the kernel's, the census's).
    pub const OTHER: Self = Self {
        gopc: 0,
        startpc: 0,
    };
}

/// The fields of one g the census reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GFields {
    pub status: u32,
    pub goid: u64,
    pub gopc: u64,
    pub startpc: u64,
    pub stack_lo: u64,
    pub stack_hi: u64,
    pub sched_sp: u64,
    pub sched_pc: u64,
    pub syscallsp: u64,
    pub syscallpc: u64,
    pub waitsince: i64,
    pub waitreason: u8,
    pub tracking_seq: u8,
    /// `g.m`: the M running it (or, for an extra M's g, its M), else 0.
    pub m: u64,
    pub lockedm: u64,
    /// Go 1.21+: the goroutine that created it (0 before).
    pub parent_goid: u64,
    /// `g.sched.lr`: arm64's link register where the goroutine stopped.
    pub sched_lr: u64,
}

/// A blocked goroutine, as one census read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockedG {
    /// The g's address: with `goid`, its identity across censuses.
    pub g: u64,
    pub goid: u64,
    /// Waiting, in a system call, or (Go 1.26+) leaked.
    pub status: u32,
    pub waitreason: u8,
    /// Nanotime (CLOCK_MONOTONIC) of the GC that found it blocked; 0 if none has since it
    /// last ran.
    pub waitsince: i64,
    /// Changes whenever the goroutine runs.
    pub tracking_seq: u8,
    pub site: CreationSite,
    /// Where its stack resumes.
    pub start: Start,
}

impl GFields {
    fn stack_size(&self) -> u64 {
        if self.stack_lo == 0 {
            0
        } else {
            self.stack_hi.saturating_sub(self.stack_lo)
        }
    }
}

/// Distinct creation sites one census tallies at most; the gs of further sites are counted
/// under the "other" site (`gopc` and `startpc` 0). gopc and startpc are read from the
/// target's memory, so a process could make every g a site of its own.
pub const MAX_CENSUS_SITES: usize = 1024;

/// One census: the figures of every g of `allgs`. Bounded whatever the gs hold: sites by
/// [`MAX_CENSUS_SITES`], stack sizes by powers of two.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Census {
    /// Live goroutines (system ones included) by creation site.
    pub sites: HashMap<CreationSite, u64>,
    pub live: u64,
    pub live_stack_bytes: u64,
    /// Live goroutines by stack size (bytes, rounded up to a power of two: the runtime's
    /// stacks are powers of two).
    pub stack_sizes: BTreeMap<u64, u64>,
    /// Dead gs: the free pool (plus gs not reused yet); some keep their stack.
    pub dead: u64,
    pub dead_with_stack: u64,
    pub dead_stack_bytes: u64,
    /// gs that could not be read, or held an impossible status.
    pub unreadable: u64,
    /// Blocked goroutines (waiting, in a system call, or leaked; system ones included).
    pub blocked: u64,
    /// The gs of cgo's extra Ms waiting for a C thread to call into Go (dead, with their M;
    /// Go 1.26+'s `_Gdeadextra`): the runtime counts them in `sched.ngsys` but no dump shows
    /// them.
    pub extra_m: u64,
}

/// Tallies the gs of one reading: (address, fields; None: unreadable).
pub fn tally(gs: impl IntoIterator<Item = (u64, Option<GFields>)>) -> (Census, Vec<BlockedG>) {
    let mut c = Census::default();
    let blocked = gs
        .into_iter()
        .filter_map(|(addr, g)| c.add(addr, g))
        .collect();
    (c, blocked)
}

impl Census {
    /// Counts the g at `addr` (None: unreadable); a blocked goroutine comes back, with what
    /// tells where and since when it waits.
    pub fn add(&mut self, addr: u64, g: Option<GFields>) -> Option<BlockedG> {
        let Some(g) = g.filter(|g| g.status & !G_SCAN <= MAX_STATUS) else {
            self.unreadable += 1;
            return None;
        };
        let size = g.stack_size();
        if NOT_LIVE.contains(&(g.status & !G_SCAN)) {
            let status = g.status & !G_SCAN;
            if status == crate::inspect::goruntime::traceback::status::DEAD_EXTRA
                || (status == crate::inspect::goruntime::traceback::status::DEAD && g.m != 0)
            {
                self.extra_m += 1;
            }
            self.dead += 1;
            if size > 0 {
                self.dead_with_stack += 1;
                self.dead_stack_bytes = self.dead_stack_bytes.saturating_add(size);
            }
            return None;
        }
        self.live += 1;
        self.live_stack_bytes = self.live_stack_bytes.saturating_add(size);
        *self
            .stack_sizes
            .entry(size.checked_next_power_of_two().unwrap_or(1 << 63))
            .or_default() += 1;
        let mut site = CreationSite {
            gopc: g.gopc,
            startpc: g.startpc,
        };
        let room = self.sites.len() < MAX_CENSUS_SITES;
        match self.sites.get_mut(&site) {
            Some(n) => *n += 1,
            None if room => {
                self.sites.insert(site, 1);
            }
            None => {
                site = CreationSite::OTHER;
                *self.sites.entry(site).or_default() += 1;
            }
        }
        let s = g.status & !G_SCAN;
        let (pc, sp) = match s {
            status::WAITING | status::LEAKED => (g.sched_pc, g.sched_sp),
            status::SYSCALL => (g.syscallpc, g.syscallsp),
            _ => return None,
        };
        self.blocked += 1;
        Some(BlockedG {
            g: addr,
            goid: g.goid,
            status: s,
            waitreason: g.waitreason,
            waitsince: g.waitsince,
            tracking_seq: g.tracking_seq,
            site,
            start: Start {
                pc,
                sp,
                stack_lo: g.stack_lo,
                stack_hi: g.stack_hi,
            },
        })
    }
}

/// Where the census finds the fields in a g (per release; `g.stack` is at offset 0).
#[derive(Clone, Copy, Debug)]
pub struct GOffsets {
    pub status: u64,
    pub goid: u64,
    pub gopc: u64,
    pub startpc: u64,
    pub sched: u64,
    pub syscallsp: u64,
    pub waitsince: u64,
    pub waitreason: u64,
    pub tracking_seq: u64,
    pub m: u64,
    pub lockedm: u64,
    pub parent_goid: Option<u64>,
    /// `g.sched.lr`'s offset in the g.
    pub sched_lr: u64,
}

impl GOffsets {
    pub fn of(layout: &crate::inspect::goruntime::Layout) -> Self {
        Self {
            status: layout.g_atomicstatus,
            goid: layout.g_goid,
            gopc: layout.g_gopc,
            startpc: layout.g_startpc,
            sched: layout.g_sched,
            syscallsp: layout.g_syscallsp,
            waitsince: layout.g_waitsince,
            waitreason: layout.g_waitreason,
            tracking_seq: layout.g_tracking_seq,
            m: layout.g_m,
            lockedm: layout.g_lockedm,
            parent_goid: layout.g_parent_goid,
            sched_lr: layout.g_sched + layout.gobuf_lr,
        }
    }

    /// Bytes to read from the start of a g to cover every field.
    pub fn span(&self) -> usize {
        [
            self.status + 4,
            self.goid + 8,
            self.gopc + 8,
            self.startpc + 8,
            self.sched_lr + 8,
            self.syscallsp + 16,
            self.m + 8,
            self.lockedm + 8,
            self.parent_goid.map_or(0, |o| o + 8),
            self.waitsince + 8,
            self.waitreason + 1,
            self.tracking_seq + 1,
            16,
        ]
        .into_iter()
        .max()
        .unwrap_or(16) as usize
    }

    /// Reads the fields from the first [`Self::span`] bytes of a g.
    pub fn parse(&self, bytes: &[u8]) -> GFields {
        let u64_at = |o: u64| {
            let o = o as usize;
            u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"))
        };
        let s = self.status as usize;
        GFields {
            status: u32::from_le_bytes(bytes[s..s + 4].try_into().expect("4 bytes")),
            goid: u64_at(self.goid),
            gopc: u64_at(self.gopc),
            startpc: u64_at(self.startpc),
            stack_lo: u64_at(0),
            stack_hi: u64_at(8),
            sched_sp: u64_at(self.sched),
            sched_pc: u64_at(self.sched + 8),
            syscallsp: u64_at(self.syscallsp),
            syscallpc: u64_at(self.syscallsp + 8),
            waitsince: u64_at(self.waitsince) as i64,
            waitreason: bytes[self.waitreason as usize],
            tracking_seq: bytes[self.tracking_seq as usize],
            m: u64_at(self.m),
            lockedm: u64_at(self.lockedm),
            parent_goid: self.parent_goid.map_or(0, u64_at),
            sched_lr: u64_at(self.sched_lr),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(status: u32, gopc: u64, lo: u64, size: u64) -> (u64, Option<GFields>) {
        (
            lo + 0x10_0000,
            Some(GFields {
                status,
                gopc,
                startpc: gopc + 0x100,
                stack_lo: lo,
                stack_hi: lo + size,
                sched_sp: lo + 0x100,
                sched_pc: 0x4_1000,
                syscallsp: lo + 0x200,
                syscallpc: 0x4_2000,
                goid: lo / 16,
                ..Default::default()
            }),
        )
    }

    #[test]
    fn tallies_sites_stacks_and_the_pool() {
        let (c, blocked) = tally([
            g(4, 0x1000, 0xc000, 8192),
            g(4, 0x1000, 0xe000, 8192),
            g(2 | G_SCAN, 0x1000, 0x20000, 32768),
            g(1, 0x2000, 0x40000, 8192),
            g(6, 0x1000, 0x50000, 8192),
            g(6, 0x1000, 0, 0),
            g(0, 0, 0, 0),
            g(77, 0x3000, 0x60000, 8192),
            (0x7000, None),
            g(3, 0x2000, 0x70000, 8192),
            g(10, 0x2000, 0x80000, 8192),
        ]);
        let site = |gopc| CreationSite {
            gopc,
            startpc: gopc + 0x100,
        };
        assert_eq!(c.live, 6);
        assert_eq!(c.sites[&site(0x1000)], 3);
        assert_eq!(c.sites[&site(0x2000)], 3);
        assert_eq!(c.live_stack_bytes, 8192 * 5 + 32768);
        assert_eq!(c.stack_sizes[&8192], 5);
        // The two waiting, the one in a system call, the leaked one: each with the registers
        // its stack resumes from.
        assert_eq!(c.blocked, 4);
        let first = blocked[0];
        let blocked: Vec<(u32, u64, u64)> = blocked
            .iter()
            .map(|b| (b.status, b.start.pc, b.start.sp - b.start.stack_lo))
            .collect();
        assert_eq!(
            blocked,
            [
                (4, 0x4_1000, 0x100),
                (4, 0x4_1000, 0x100),
                (3, 0x4_2000, 0x200),
                (10, 0x4_1000, 0x100)
            ]
        );
        assert_eq!(first.g, 0xc000 + 0x10_0000);
        assert_eq!(first.goid, 0xc000 / 16);
        assert_eq!(c.stack_sizes[&32768], 1);
        assert_eq!(
            (c.dead, c.dead_with_stack, c.dead_stack_bytes),
            (3, 1, 8192)
        );
        assert_eq!(c.unreadable, 2);
    }

    #[test]
    fn parses_a_g_at_the_release_offsets() {
        // Go 1.27's offsets.
        let offsets = GOffsets::of(
            crate::inspect::goruntime::layout_for(
                &crate::inspect::goruntime::GoVersion::parse("go1.27.3").unwrap(),
            )
            .unwrap(),
        );
        assert_eq!(offsets.span(), 0x138);
        let mut bytes = vec![0u8; offsets.span()];
        let mut put = |at: usize, v: &[u8]| bytes[at..at + v.len()].copy_from_slice(v);
        put(0, &0xc000u64.to_le_bytes());
        put(8, &0xe000u64.to_le_bytes());
        put(0x38, &0xd800u64.to_le_bytes());
        put(0x40, &0x41_0000u64.to_le_bytes());
        put(0x68, &0xd900u64.to_le_bytes());
        put(0x70, &0x42_0000u64.to_le_bytes());
        put(0x90, &4u32.to_le_bytes());
        put(0x98, &77u64.to_le_bytes());
        put(0xa8, &123_456_789i64.to_le_bytes());
        put(0xb0, &[19]);
        put(0xbf, &[200]);
        put(0x120, &0x45_1234u64.to_le_bytes());
        put(0x130, &0x46_0000u64.to_le_bytes());
        let f = offsets.parse(&bytes);
        assert_eq!((f.status, f.gopc, f.startpc), (4, 0x45_1234, 0x46_0000));
        assert_eq!(f.stack_size(), 0x2000);
        assert_eq!((f.sched_sp, f.sched_pc), (0xd800, 0x41_0000));
        assert_eq!((f.syscallsp, f.syscallpc), (0xd900, 0x42_0000));
        assert_eq!((f.goid, f.waitsince), (77, 123_456_789));
        assert_eq!((f.waitreason, f.tracking_seq), (19, 200));
    }
}
