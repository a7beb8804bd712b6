//! The goroutine census: every g in `runtime.allgs`, read from the target's memory each
//! sample, tallied by creation site (the `go` statement's PC and the function it started) and
//! by stack size. It needs no probe, so the budget never thins it: live goroutines per site
//! and the stacks that live and pooled goroutines hold are exact, as of the reading. The reads
//! race with the program like `runtime.forEachGRace` does: a g that changes state meanwhile is
//! counted in one state or the other.

use std::collections::{BTreeMap, HashMap};

/// `_Gscan`: set on top of a status while the GC scans the stack.
const G_SCAN: u32 = 0x1000;
/// `_Gidle` (just allocated), `_Gdead` (exited or never used) and, Go 1.26+, `_Gdeadextra`
/// (a dead g parked for cgo callbacks): no goroutine runs on them.
const NOT_LIVE: [u32; 3] = [0, 6, 11];
/// Statuses a g can have at all (1.26 added 10 and 11).
const MAX_STATUS: u32 = 11;

/// Where goroutines are created: the `go` statement's PC and the function it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SiteKey {
    pub gopc: u64,
    pub startpc: u64,
}

/// The fields of one g the census reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GFields {
    pub status: u32,
    pub gopc: u64,
    pub startpc: u64,
    pub stack_lo: u64,
    pub stack_hi: u64,
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

/// One census.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Census {
    /// Live goroutines (system ones included) by creation site.
    pub sites: HashMap<SiteKey, u64>,
    pub live: u64,
    pub live_stack_bytes: u64,
    /// Live goroutines by stack size (bytes; stacks are powers of two).
    pub stack_sizes: BTreeMap<u64, u64>,
    /// Dead gs: the free pool (plus gs not reused yet); some keep their stack.
    pub dead: u64,
    pub dead_with_stack: u64,
    pub dead_stack_bytes: u64,
    /// gs that could not be read, or held an impossible status.
    pub unreadable: u64,
}

/// Tallies the gs of one reading (None: unreadable).
pub fn tally(gs: impl IntoIterator<Item = Option<GFields>>) -> Census {
    let mut c = Census::default();
    for g in gs {
        c.add(g);
    }
    c
}

impl Census {
    /// Counts one g (None: unreadable).
    pub fn add(&mut self, g: Option<GFields>) {
        let Some(g) = g.filter(|g| g.status & !G_SCAN <= MAX_STATUS) else {
            self.unreadable += 1;
            return;
        };
        let size = g.stack_size();
        if NOT_LIVE.contains(&(g.status & !G_SCAN)) {
            self.dead += 1;
            if size > 0 {
                self.dead_with_stack += 1;
                self.dead_stack_bytes += size;
            }
            return;
        }
        self.live += 1;
        self.live_stack_bytes += size;
        *self.stack_sizes.entry(size).or_default() += 1;
        *self
            .sites
            .entry(SiteKey {
                gopc: g.gopc,
                startpc: g.startpc,
            })
            .or_default() += 1;
    }
}

/// Where the census finds the fields in a g (per release; `g.stack` is at offset 0).
#[derive(Clone, Copy, Debug)]
pub struct GOffsets {
    pub status: u64,
    pub gopc: u64,
    pub startpc: u64,
}

impl GOffsets {
    /// Bytes to read from the start of a g to cover every field.
    pub fn span(&self) -> usize {
        (self.status + 4)
            .max(self.gopc + 8)
            .max(self.startpc + 8)
            .max(16) as usize
    }

    pub fn parse(&self, bytes: &[u8]) -> GFields {
        let u64_at = |o: u64| {
            let o = o as usize;
            u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"))
        };
        let s = self.status as usize;
        GFields {
            status: u32::from_le_bytes(bytes[s..s + 4].try_into().expect("4 bytes")),
            gopc: u64_at(self.gopc),
            startpc: u64_at(self.startpc),
            stack_lo: u64_at(0),
            stack_hi: u64_at(8),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(status: u32, gopc: u64, lo: u64, size: u64) -> Option<GFields> {
        Some(GFields {
            status,
            gopc,
            startpc: gopc + 0x100,
            stack_lo: lo,
            stack_hi: lo + size,
        })
    }

    #[test]
    fn tallies_sites_stacks_and_the_pool() {
        let c = tally([
            g(4, 0x1000, 0xc000, 8192),
            g(4, 0x1000, 0xe000, 8192),
            g(2 | G_SCAN, 0x1000, 0x20000, 32768),
            g(1, 0x2000, 0x40000, 8192),
            g(6, 0x1000, 0x50000, 8192),
            g(6, 0x1000, 0, 0),
            g(0, 0, 0, 0),
            g(77, 0x3000, 0x60000, 8192),
            None,
        ]);
        let site = |gopc| SiteKey {
            gopc,
            startpc: gopc + 0x100,
        };
        assert_eq!(c.live, 4);
        assert_eq!(c.sites[&site(0x1000)], 3);
        assert_eq!(c.sites[&site(0x2000)], 1);
        assert_eq!(c.live_stack_bytes, 8192 * 3 + 32768);
        assert_eq!(c.stack_sizes[&8192], 3);
        assert_eq!(c.stack_sizes[&32768], 1);
        assert_eq!(
            (c.dead, c.dead_with_stack, c.dead_stack_bytes),
            (3, 1, 8192)
        );
        assert_eq!(c.unreadable, 2);
    }

    #[test]
    fn parses_a_g_at_the_release_offsets() {
        let offsets = GOffsets {
            status: 0x90,
            gopc: 0x118,
            startpc: 0x128,
        };
        assert_eq!(offsets.span(), 0x130);
        let mut bytes = vec![0u8; offsets.span()];
        bytes[0..8].copy_from_slice(&0xc000u64.to_le_bytes());
        bytes[8..16].copy_from_slice(&0xe000u64.to_le_bytes());
        bytes[0x90..0x94].copy_from_slice(&4u32.to_le_bytes());
        bytes[0x118..0x120].copy_from_slice(&0x45_1234u64.to_le_bytes());
        bytes[0x128..0x130].copy_from_slice(&0x46_0000u64.to_le_bytes());
        let f = offsets.parse(&bytes);
        assert_eq!((f.status, f.gopc, f.startpc), (4, 0x45_1234, 0x46_0000));
        assert_eq!(f.stack_size(), 0x2000);
    }
}
