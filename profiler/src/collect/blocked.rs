//! Blocked goroutines over time: how long each has waited at the same place, which are stuck,
//! and which groups of stuck goroutines leak.
//!
//! A goroutine is followed by its g's address and goid from one census to the next. It has
//! waited at the same place since it was first seen there, unless it ran in between: its
//! `trackingSeq` changes whenever it stops running, and its `waitsince` (stamped by each GC on
//! the goroutines it finds blocked, cleared when one runs) either stays or was never set.
//! `waitsince` does not date a wait: the GC stamps the start of the *previous* cycle's mark
//! termination, which can be a whole GC interval before the goroutine blocked (the runtime's
//! tracebacks print it as an approximation); so ages count from the first census that saw the
//! goroutine waiting, and waits older than gprof's attach are dated from it. Goroutines
//! blocked for `stuck_after` or longer are *stuck*.
//!
//! Goroutines are grouped by (creation site, place they wait at, wait reason); each group's
//! stuck count goes through the [`crate::model::verdict`]. Goroutines the runtime itself marked
//! leaked (Go 1.26+'s `_Gleaked`, after a goroutineleak profile) form groups of their own,
//! leaking by definition.

use foldhash::HashMap;
use std::borrow::Cow;
use std::hash::BuildHasher;
use std::sync::Arc;

use crate::collect::sites::SiteName;
use crate::inspect::census::{BlockedG, CreationSite};
use crate::inspect::goruntime::status;
use crate::inspect::unwind::Start;
use crate::model::snapshot::BlockedGroup;
use crate::model::verdict::{CHECKPOINTS, LeakHistory, Verdict};

/// Groups followed per process at most; goroutines of further groups count in one "other"
/// group.
pub const MAX_GROUPS: usize = 256;
/// Groups shown (`blocked_groups`).
pub const TOP_GROUPS: usize = 20;
/// `allgs` indices per chunk: a census reads and follows the gs chunk by chunk.
pub const CHUNK: u64 = 1024;
/// What the tracker keeps per goroutine it follows between censuses.
pub const BYTES_PER_TRACKED: usize = std::mem::size_of::<Tracked>();
/// Raw keys (creation site, return address, wait reason) remembered per process before the
/// memo is emptied.
const MAX_RAW_KEYS: usize = 4096;

/// What a group is keyed by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupKey {
    pub created_at: Arc<SiteName>,
    /// `function (file:line)` of the frame it waits in.
    pub blocked_at: Arc<str>,
    pub wait_reason: Cow<'static, str>,
    /// Marked leaked by the runtime.
    pub leaked: bool,
}

impl GroupKey {
    fn other() -> Self {
        Self {
            created_at: Arc::new(SiteName::other()),
            blocked_at: "other".into(),
            wait_reason: Cow::Borrowed(""),
            leaked: false,
        }
    }

    fn is_other(&self) -> bool {
        self.blocked_at.as_ref() == "other" && self.created_at.function == "other"
    }
}

/// Which blocked goroutines are followed one by one: all, or one in `2^k`, picked by a hash
/// of the g's address (so the same ones from census to census, and the ones of a sparser
/// sample among those of a denser one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleRate {
    shift: u32,
}

impl SampleRate {
    pub const ALL: Self = Self { shift: 0 };
    const MAX_SHIFT: u32 = 20;

    /// The densest sample of at most `fraction` of the goroutines (at least one in 2^20).
    pub fn at_most(fraction: f64) -> Self {
        if fraction.is_nan() || fraction >= 1.0 {
            return Self::ALL;
        }
        let shift = (-fraction.max(1e-9).log2()).ceil() as u32;
        Self {
            shift: shift.min(Self::MAX_SHIFT),
        }
    }

    /// The share of goroutines followed.
    pub fn fraction(&self) -> f64 {
        1.0 / (1u64 << self.shift) as f64
    }

    pub fn keeps(&self, g: u64) -> bool {
        self.shift == 0
            || foldhash::fast::FixedState::with_seed(0x9e37).hash_one(g) >> (64 - self.shift) == 0
    }
}

/// A followed goroutine (40 bytes: [`BYTES_PER_TRACKED`]).
#[derive(Clone, Copy, Debug)]
struct Tracked {
    goid: u64,
    waitsince: i64,
    /// Saved pc and the depth of the saved sp below the stack's top: a stack the GC moved
    /// keeps its depth, and frames below an unmoved pair are unchanged.
    pc: u64,
    depth: u32,
    /// Since when it has waited at its place (deciseconds of collector time).
    since: u32,
    /// Its group's index, or [`SYSTEM`] / [`UNPLACED`].
    group: u32,
    /// Its index in its chunk.
    slot: u16,
    seq: u8,
    /// Its status (waiting, in a system call, or leaked: the runtime's leak profile marks a
    /// goroutine without running it).
    status: u8,
}

/// The runtime's own goroutines: followed (their stacks are not walked again), not grouped.
const SYSTEM: u32 = u32::MAX;
/// Goroutines whose stack could not be walked: walked again at the next census.
const UNPLACED: u32 = u32::MAX - 1;

/// The followed goroutines of one chunk of `allgs`, as the census that read it last saw them.
#[derive(Debug, Default)]
struct Chunk {
    /// When it was read (collector seconds).
    t: f64,
    /// By slot.
    entries: Box<[Tracked]>,
}

#[derive(Debug)]
struct Group {
    key: GroupKey,
    /// Kept once the group had a stuck goroutine.
    history: Option<LeakHistory>,
    goroutines: u64,
    stuck: u64,
    oldest: f64,
    /// Its history's checkpoints at the last count, and how many of its goroutines had been
    /// stuck since each (the verdict tells a leak from a backlog by them).
    checkpoints: [f64; CHECKPOINTS],
    stuck_by: [u64; CHECKPOINTS],
    verdict: Verdict,
    /// One of its goroutines, for a reader to look at: (index in `allgs`, goid).
    example: Option<(u64, u64)>,
}

/// The groups of one process, by index (the goroutines refer to them by it).
#[derive(Debug, Default)]
struct Groups {
    slots: Vec<Option<Group>>,
    free: Vec<u32>,
    ids: HashMap<GroupKey, u32>,
    /// (site, return address, wait reason, status) -> group: a new goroutine at a known
    /// place costs no name lookup.
    raw: HashMap<(CreationSite, u64, u8, u32), u32>,
    other: Option<u32>,
}

impl Groups {
    fn live(&self) -> usize {
        self.ids.len()
    }

    fn insert(&mut self, key: GroupKey) -> u32 {
        let group = Group {
            key: key.clone(),
            history: None,
            goroutines: 0,
            stuck: 0,
            oldest: 0.0,
            checkpoints: [f64::NEG_INFINITY; CHECKPOINTS],
            stuck_by: [0; CHECKPOINTS],
            verdict: Verdict::default(),
            example: None,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(group);
                id
            }
            None => {
                self.slots.push(Some(group));
                (self.slots.len() - 1) as u32
            }
        };
        self.ids.insert(key, id);
        id
    }

    fn other(&mut self) -> u32 {
        match self.other {
            Some(id) => id,
            None => {
                let id = self.insert(GroupKey::other());
                self.other = Some(id);
                id
            }
        }
    }

    /// The group of a goroutine of `site` waiting at `at` (a file address).
    fn of(
        &mut self,
        g: &BlockedG,
        at: u64,
        key_of: &mut impl FnMut(&BlockedG, u64) -> Option<GroupKey>,
    ) -> u32 {
        let raw = (g.site, at, g.waitreason, g.status);
        if let Some(&id) = self.raw.get(&raw) {
            return id;
        }
        let id = match key_of(g, at) {
            None => SYSTEM,
            Some(key) => match self.ids.get(&key) {
                Some(&id) => id,
                // Room is kept for "other".
                None if self.live() + 1 < MAX_GROUPS => self.insert(key),
                None => self.other(),
            },
        };
        if self.raw.len() >= MAX_RAW_KEYS {
            self.raw.clear();
        }
        self.raw.insert(raw, id);
        id
    }

    fn get_mut(&mut self, id: u32) -> Option<&mut Group> {
        self.slots.get_mut(id as usize)?.as_mut()
    }

    fn iter(&self) -> impl Iterator<Item = &Group> {
        self.slots.iter().flatten()
    }

    /// Drops the groups `keep` refuses (no goroutine refers to them any more).
    fn retain(&mut self, mut keep: impl FnMut(&mut Group) -> bool) {
        let mut gone = foldhash::HashSet::default();
        for (id, slot) in self.slots.iter_mut().enumerate() {
            if let Some(g) = slot
                && !keep(g)
            {
                self.ids.remove(&g.key);
                if self.other == Some(id as u32) {
                    self.other = None;
                }
                *slot = None;
                self.free.push(id as u32);
                gone.insert(id as u32);
            }
        }
        if !gone.is_empty() {
            self.raw.retain(|_, id| !gone.contains(id));
        }
    }
}

/// The figures of all groups at one census.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BlockedSummary {
    pub groups: Vec<BlockedGroup>,
    pub stuck: u64,
    pub leaking: u64,
    pub confirmed_leak_rate_per_min: f64,
    /// The share of blocked goroutines followed one by one (1: all; less when the census's
    /// memory limit made it sample them): below 1, `goroutines` and `stuck` are estimates.
    pub sample_fraction: f64,
}

#[derive(Debug)]
pub struct BlockedTracker {
    stuck_after: f64,
    window: f64,
    chunks: Vec<Chunk>,
    groups: Groups,
    /// The sample of the census under way, and of the last one finished.
    rate: SampleRate,
    shown_rate: SampleRate,
    tracked: usize,
    /// When the groups were last counted, every chunk dated then (by [`Self::restate`]):
    /// until `next_stuck`, when the first goroutine not yet stuck becomes so, a restatement
    /// only ages the groups (no pass over the goroutines).
    counted: Option<(f64, f64)>,
}

fn deciseconds(t: f64) -> u32 {
    (t * 10.0).clamp(0.0, u32::MAX as f64) as u32
}

impl BlockedTracker {
    pub fn new(stuck_after: f64, window: f64) -> Self {
        Self {
            stuck_after,
            window,
            chunks: Vec::new(),
            groups: Groups::default(),
            rate: SampleRate::ALL,
            shown_rate: SampleRate::ALL,
            tracked: 0,
            counted: None,
        }
    }

    /// Goroutines followed one by one now.
    pub fn tracked(&self) -> usize {
        self.tracked
    }

    /// A census begins: it follows the goroutines `rate` picks.
    pub fn begin(&mut self, rate: SampleRate) {
        self.rate = rate;
    }

    /// Takes in the blocked goroutines of chunk `c` of `allgs`, read at `t` (as (slot in the
    /// chunk, goroutine), by slot). Those that have not moved since the last census keep
    /// their place; `walk` places the others (file addresses; None: not placed), and
    /// `key_of` names the group of a goroutine waiting at a place (None: the runtime's own).
    pub fn observe_chunk(
        &mut self,
        c: usize,
        t: f64,
        gs: &[(u16, BlockedG)],
        walk: impl FnOnce(&[Start]) -> Vec<Option<u64>>,
        mut key_of: impl FnMut(&BlockedG, u64) -> Option<GroupKey>,
    ) {
        if self.chunks.len() <= c {
            self.chunks.resize_with(c + 1, Chunk::default);
        }
        let old = std::mem::take(&mut self.chunks[c].entries);
        let rate = self.rate;
        let kept: Vec<&(u16, BlockedG)> = gs.iter().filter(|(_, g)| rate.keeps(g.g)).collect();
        // Each goroutine's entry at the last census, if it was the same goroutine then.
        let mut j = 0;
        let prior: Vec<Option<Tracked>> = kept
            .iter()
            .map(|(slot, g)| {
                while j < old.len() && old[j].slot < *slot {
                    j += 1;
                }
                old.get(j)
                    .filter(|o| o.slot == *slot && o.goid == g.goid)
                    .copied()
            })
            .collect();
        let depth = |g: &BlockedG| {
            g.start
                .stack_hi
                .wrapping_sub(g.start.sp)
                .min(u32::MAX as u64) as u32
        };
        let unmoved = |o: &Tracked, g: &BlockedG| {
            o.seq == g.tracking_seq
                && o.pc == g.start.pc
                && o.depth == depth(g)
                && u32::from(o.status) == g.status
                && o.group != UNPLACED
        };
        let todo: Vec<usize> = (0..kept.len())
            .filter(|&i| !prior[i].is_some_and(|o| unmoved(&o, &kept[i].1)))
            .collect();
        let places = if todo.is_empty() {
            Vec::new()
        } else {
            walk(&todo.iter().map(|&i| kept[i].1.start).collect::<Vec<_>>())
        };
        let mut places = todo.iter().copied().zip(places).peekable();
        let now = deciseconds(t);
        let mut entries = Vec::with_capacity(kept.len());
        for (i, &&(slot, g)) in kept.iter().enumerate() {
            let group = match places.next_if(|(k, _)| *k == i) {
                Some((_, Some(at))) => self.groups.of(&g, at, &mut key_of),
                Some((_, None)) => UNPLACED,
                None => prior[i].map_or(UNPLACED, |o| o.group),
            };
            // Waiting at the same place since the census that first saw it, unless it ran.
            let since = match prior[i] {
                Some(o)
                    if o.seq == g.tracking_seq
                        && o.group == group
                        && (o.waitsince == 0 || o.waitsince == g.waitsince) =>
                {
                    o.since
                }
                _ => now,
            };
            entries.push(Tracked {
                goid: g.goid,
                waitsince: g.waitsince,
                pc: g.start.pc,
                depth: depth(&g),
                since,
                group,
                slot,
                seq: g.tracking_seq,
                status: g.status as u8,
            });
        }
        self.tracked = self.tracked + entries.len() - old.len();
        self.chunks[c] = Chunk {
            t,
            entries: entries.into_boxed_slice(),
        };
    }

    /// The census ends at `t`, `allgs` holding `len` gs: the goroutines are counted into their
    /// groups and each group's stuck count goes through the verdict.
    pub fn end(&mut self, t: f64, len: u64) {
        let keep = len.div_ceil(CHUNK) as usize;
        for c in self.chunks.iter().skip(keep) {
            self.tracked -= c.entries.len();
        }
        self.chunks.truncate(keep);
        self.chunks.shrink_to_fit();
        self.shown_rate = self.rate;
        self.count();
        self.counted = None;
        self.judge(t);
    }

    /// Nothing changed in the process since the last census: its goroutines stand, older by
    /// the time since.
    pub fn restate(&mut self, t: f64) {
        for c in &mut self.chunks {
            c.t = t;
        }
        match self.counted {
            // Nobody becomes stuck before `next`: the counts stand, the ages grow.
            Some((at, next)) if t < next && t >= at => {
                for g in self.groups.slots.iter_mut().flatten() {
                    if g.goroutines > 0 {
                        g.oldest += t - at;
                    }
                }
                self.counted = Some((t, next));
            }
            _ => {
                let next = self.count();
                self.counted = Some((t, next));
            }
        }
        self.judge(t);
    }

    /// Counts every group's goroutines and stuck ones, each chunk at its date; returns when
    /// the first one not yet stuck will be (infinity if none).
    fn count(&mut self) -> f64 {
        for g in self.groups.slots.iter_mut().flatten() {
            (g.goroutines, g.stuck, g.oldest, g.example) = (0, 0, 0.0, None);
            g.stuck_by = [0; CHECKPOINTS];
            g.checkpoints = g
                .history
                .as_ref()
                .map_or([f64::NEG_INFINITY; CHECKPOINTS], LeakHistory::checkpoints);
        }
        let mut next = f64::INFINITY;
        for (c, chunk) in self.chunks.iter().enumerate() {
            for e in chunk.entries.iter() {
                let Some(group) = self.groups.get_mut(e.group) else {
                    continue;
                };
                if group.example.is_none() {
                    group.example = Some((c as u64 * CHUNK + u64::from(e.slot), e.goid));
                }
                let seen = f64::from(e.since) / 10.0;
                let age = chunk.t - seen;
                group.goroutines += 1;
                let leaked = u32::from(e.status) == status::LEAKED;
                let stuck = age >= self.stuck_after || leaked;
                group.stuck += u64::from(stuck);
                group.oldest = group.oldest.max(age);
                if stuck {
                    let since = if leaked {
                        f64::NEG_INFINITY
                    } else {
                        seen + self.stuck_after
                    };
                    for (n, &c) in group.stuck_by.iter_mut().zip(&group.checkpoints) {
                        *n += u64::from(since <= c);
                    }
                }
                if !stuck {
                    next = next.min(seen + self.stuck_after);
                }
            }
        }
        next
    }

    /// Each group's stuck count through its verdict.
    fn judge(&mut self, t: f64) {
        let (window, scale) = (self.window, 1.0 / self.shown_rate.fraction());
        self.groups.retain(|group| {
            if group.stuck > 0 && group.history.is_none() {
                group.history = Some(LeakHistory::new(window));
            }
            let (other, leaked) = (group.key.is_other(), group.key.leaked);
            group.verdict = match &mut group.history {
                Some(h) => {
                    let by = group.stuck_by.map(|n| n as f64 * scale);
                    let mut v = h.push(t, group.stuck as f64 * scale, &by);
                    v.leaking = !other && (v.leaking || (leaked && group.stuck > 0));
                    v
                }
                None => Verdict::default(),
            };
            group.goroutines > 0 || group.history.as_ref().is_some_and(|h| !h.is_idle())
        });
    }

    /// The groups to show (leaking first, then by stuck count) and the totals.
    pub fn summary(&self, n: usize) -> BlockedSummary {
        let fraction = self.shown_rate.fraction();
        let estimate = |n: u64| (n as f64 / fraction).round() as u64;
        let mut all: Vec<BlockedGroup> = self
            .groups
            .iter()
            .filter(|g| g.goroutines > 0 || g.verdict.leaking)
            .map(|g| (&g.key, g))
            .map(|(k, g)| BlockedGroup {
                created_at: k.created_at.label(),
                started: k.created_at.started.clone(),
                blocked_at: k.blocked_at.to_string(),
                wait_reason: if k.leaked {
                    format!("{} (leaked)", k.wait_reason)
                } else {
                    k.wait_reason.to_string()
                },
                goroutines: estimate(g.goroutines),
                stuck: estimate(g.stuck),
                oldest_blocked_seconds: (g.oldest * 10.0).round() / 10.0,
                stuck_growth_per_min: g.verdict.growth_per_min,
                leaking: g.verdict.leaking,
                example_goroutine: g.example.map(|e| e.1),
                example_index: g.example.map(|e| e.0),
            })
            .collect();
        let summary = BlockedSummary {
            stuck: all.iter().map(|g| g.stuck).sum(),
            leaking: all.iter().filter(|g| g.leaking).map(|g| g.stuck).sum(),
            confirmed_leak_rate_per_min: all
                .iter()
                .filter(|g| g.leaking)
                .map(|g| g.stuck_growth_per_min.max(0.0))
                .fold(0.0, |a, b| a + b),
            groups: Vec::new(),
            sample_fraction: fraction,
        };
        all.sort_by(|a, b| {
            b.leaking
                .cmp(&a.leaking)
                .then(b.stuck.cmp(&a.stuck))
                .then(b.goroutines.cmp(&a.goroutines))
                .then_with(|| a.blocked_at.cmp(&b.blocked_at))
                .then_with(|| a.created_at.cmp(&b.created_at))
        });
        all.truncate(n);
        BlockedSummary {
            groups: all,
            ..summary
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(function: &str) -> Arc<SiteName> {
        Arc::new(SiteName {
            function: function.into(),
            file: "/src/app/main.go".into(),
            line: 10,
            started: format!("{function}.func1"),
            system: false,
        })
    }

    fn key(created: &Arc<SiteName>, at: &str) -> GroupKey {
        GroupKey {
            created_at: created.clone(),
            blocked_at: at.into(),
            wait_reason: Cow::Borrowed("chan send"),
            leaked: false,
        }
    }

    fn blocked(g: u64, goid: u64, seq: u8, waitsince: i64) -> BlockedG {
        BlockedG {
            g,
            goid,
            status: status::WAITING,
            waitreason: 0,
            waitsince,
            tracking_seq: seq,
            site: CreationSite {
                gopc: 0x1000,
                startpc: 0x2000,
            },
            start: Start {
                pc: 0x4000,
                sp: 0xc000_0000 + g,
                stack_lo: 0,
                stack_hi: 0xd000_0000,
            },
        }
    }

    /// One census of chunk 0 at `t`: goroutines placed at `at` (by gopc: 0x1000 -> `k`),
    /// returning how many stacks were walked.
    fn census(t: &mut BlockedTracker, secs: f64, gs: &[BlockedG], k: &GroupKey) -> usize {
        let slotted: Vec<(u16, BlockedG)> = gs.iter().map(|g| (g.g as u16, *g)).collect();
        let mut walked = 0;
        t.begin(SampleRate::ALL);
        t.observe_chunk(
            0,
            secs,
            &slotted,
            |starts| {
                walked = starts.len();
                vec![Some(0x5000); starts.len()]
            },
            |_, _| Some(k.clone()),
        );
        t.end(secs, CHUNK);
        walked
    }

    #[test]
    fn ages_follow_a_goroutine_until_it_runs() {
        let created = site("main.serve");
        let k = key(&created, "main.worker (/src/app/main.go:20)");
        let mut t = BlockedTracker::new(10.0, 60.0);
        // g 1 stamped by a GC before gprof came: dated from the first census all the same.
        let walked = census(
            &mut t,
            0.0,
            &[blocked(1, 11, 5, 123), blocked(2, 12, 5, 0)],
            &k,
        );
        assert_eq!(walked, 2);
        let s = t.summary(10);
        assert_eq!((s.groups[0].goroutines, s.groups[0].stuck), (2, 0));
        // 12 s later: g 2 is stuck; g 1 ran and blocked again (its seq moved): only its
        // stack is walked again.
        let walked = census(
            &mut t,
            12.0,
            &[blocked(1, 11, 6, 0), blocked(2, 12, 5, 0)],
            &k,
        );
        assert_eq!(walked, 1);
        let s = t.summary(10);
        assert_eq!(s.groups[0].stuck, 1);
        assert_eq!(s.groups[0].oldest_blocked_seconds, 12.0);
        // A GC stamps g 1 (no run); another goroutine reuses g 2's address: a new wait.
        let walked = census(
            &mut t,
            20.0,
            &[blocked(1, 11, 6, 456), blocked(2, 99, 5, 0)],
            &k,
        );
        assert_eq!(walked, 1);
        let s = t.summary(10);
        assert_eq!((s.groups[0].goroutines, s.groups[0].stuck), (2, 0));
        assert_eq!(s.groups[0].oldest_blocked_seconds, 8.0);
        // A stack the GC moved (same depth below its top): not walked, and still waiting.
        let mut moved = blocked(1, 11, 6, 456);
        moved.start.sp += 0x10_0000;
        moved.start.stack_hi += 0x10_0000;
        assert_eq!(census(&mut t, 21.0, &[moved, blocked(2, 99, 5, 0)], &k), 0);
        assert_eq!(t.summary(10).groups[0].oldest_blocked_seconds, 9.0);
        assert_eq!(t.tracked(), 2);
    }

    #[test]
    fn a_waitsince_reset_means_the_goroutine_ran() {
        let k = key(&site("main.serve"), "main.worker (main.go:20)");
        let mut t = BlockedTracker::new(5.0, 60.0);
        census(&mut t, 0.0, &[blocked(1, 11, 5, 777)], &k);
        census(&mut t, 6.0, &[blocked(1, 11, 5, 777)], &k);
        assert_eq!(t.summary(1).stuck, 1);
        // Same seq (it wrapped around, say) but waitsince went back to 0: it ran.
        census(&mut t, 7.0, &[blocked(1, 11, 5, 0)], &k);
        assert_eq!(t.summary(1).stuck, 0);
    }

    #[test]
    fn a_leaking_group_is_found_and_a_stable_one_is_not() {
        let serve = site("main.serve");
        let leak = key(&serve, "main.worker (main.go:20)");
        let conns = key(&site("main.accept"), "main.read (main.go:40)");
        let mut t = BlockedTracker::new(10.0, 60.0);
        let mut found = None;
        for secs in 0..=90u64 {
            // One more goroutine stuck at `leak` every second (chunk 0); 300 connections all
            // along (chunk 1).
            let leaking: Vec<(u16, BlockedG)> = (0..secs)
                .map(|i| (i as u16, blocked(0x10_0000 + i, 1000 + i, 1, 0)))
                .collect();
            let steady: Vec<(u16, BlockedG)> = (0..300u64)
                .map(|i| {
                    let mut b = blocked(0x20_0000 + i, 5000 + i, 1, 0);
                    b.site.gopc = 0x3000;
                    (i as u16, b)
                })
                .collect();
            t.begin(SampleRate::ALL);
            let at = |n: usize| vec![Some(0x5000); n];
            t.observe_chunk(
                0,
                secs as f64,
                &leaking,
                |s| at(s.len()),
                |_, _| Some(leak.clone()),
            );
            t.observe_chunk(
                1,
                secs as f64,
                &steady,
                |s| at(s.len()),
                |_, _| Some(conns.clone()),
            );
            t.end(secs as f64, 2 * CHUNK);
            let s = t.summary(TOP_GROUPS);
            let conn = s
                .groups
                .iter()
                .find(|g| g.blocked_at.contains(":40"))
                .unwrap();
            assert!(!conn.leaking, "at {secs}: {conn:?}");
            if s.groups[0].leaking && found.is_none() {
                found = Some(secs);
            }
            if secs == 90 {
                let g = &s.groups[0];
                assert!(g.leaking, "{s:?}");
                assert_eq!(g.created_at, "main.serve (/src/app/main.go:10)");
                assert!((g.stuck_growth_per_min - 60.0).abs() < 3.0, "{g:?}");
                assert_eq!(s.leaking, g.stuck);
                assert_eq!(s.stuck, g.stuck + 300);
                assert_eq!(s.confirmed_leak_rate_per_min, g.stuck_growth_per_min);
            }
        }
        assert!(found.is_some_and(|f| f <= 60), "found at {found:?}");
        // Chunks beyond allgs's length go.
        t.begin(SampleRate::ALL);
        t.end(91.0, CHUNK);
        assert_eq!(t.tracked(), 90);
    }

    #[test]
    fn runtime_leaked_goroutines_are_leaking_at_once() {
        let waiting = key(&site("main.serve"), "main.worker (main.go:20)");
        let mut k = waiting.clone();
        k.leaked = true;
        let mut t = BlockedTracker::new(300.0, 60.0);
        let mut b = blocked(1, 11, 5, 0);
        census(&mut t, 0.0, &[b], &waiting);
        assert!(!t.summary(10).groups[0].leaking);
        // The runtime's leak profile marks it without running it: its group changes.
        b.status = status::LEAKED;
        census(&mut t, 1.0, &[b], &k);
        let s = t.summary(10);
        assert!(s.groups[0].leaking);
        assert_eq!(s.groups[0].wait_reason, "chan send (leaked)");
        assert_eq!((s.stuck, s.leaking), (1, 1));
    }

    #[test]
    fn groups_beyond_the_limit_are_counted_in_other() {
        let mut t = BlockedTracker::new(1.0, 60.0);
        let gs: Vec<(u16, BlockedG)> = (0..MAX_GROUPS as u64 + 50)
            .map(|i| {
                let mut b = blocked(i + 1, i + 1, 1, 0);
                b.site.gopc = 0x1000 + i;
                (i as u16, b)
            })
            .collect();
        t.begin(SampleRate::ALL);
        t.observe_chunk(
            0,
            0.0,
            &gs,
            |s| vec![Some(0x5000); s.len()],
            |g, _| {
                Some(key(
                    &site("main.f"),
                    &format!("main.g (main.go:{})", g.site.gopc),
                ))
            },
        );
        t.end(0.0, CHUNK);
        assert_eq!(t.groups.live(), MAX_GROUPS);
        let s = t.summary(usize::MAX);
        let other = s.groups.iter().find(|g| g.blocked_at == "other").unwrap();
        assert_eq!(other.goroutines, 51);
        // Everything gone: the groups go with it (none ever had a stuck goroutine).
        t.begin(SampleRate::ALL);
        t.observe_chunk(0, 2.0, &[], |_| Vec::new(), |_, _| None);
        t.end(2.0, CHUNK);
        assert_eq!(t.groups.live(), 0);
        assert!(t.groups.raw.is_empty());
    }

    #[test]
    fn a_sample_follows_the_same_goroutines_and_estimates_the_counts() {
        let k = key(&site("main.serve"), "main.worker (main.go:20)");
        let quarter = SampleRate::at_most(0.3);
        assert_eq!(quarter.fraction(), 0.25);
        assert_eq!(SampleRate::at_most(1.0), SampleRate::ALL);
        let gs: Vec<BlockedG> = (0..40_000u64)
            .map(|i| blocked(0x100_0000 + i * 0x1c8, i + 1, 1, 0))
            .collect();
        // The same goroutines at every census; those of a sparser sample among them.
        let picked = |r: SampleRate| gs.iter().filter(|g| r.keeps(g.g)).count();
        let n = picked(quarter);
        assert!((n as f64 / 40_000.0 - 0.25).abs() < 0.01, "{n}");
        let eighth = SampleRate::at_most(0.125);
        assert!(
            gs.iter()
                .filter(|g| eighth.keeps(g.g))
                .all(|g| quarter.keeps(g.g))
        );
        let mut t = BlockedTracker::new(10.0, 60.0);
        for secs in [0.0, 11.0] {
            t.begin(quarter);
            for (c, part) in gs.chunks(CHUNK as usize).enumerate() {
                let slotted: Vec<(u16, BlockedG)> = part
                    .iter()
                    .enumerate()
                    .map(|(i, g)| (i as u16, *g))
                    .collect();
                t.observe_chunk(
                    c,
                    secs,
                    &slotted,
                    |s| vec![Some(0x5000); s.len()],
                    |_, _| Some(k.clone()),
                );
            }
            t.end(secs, 40_000);
        }
        assert_eq!(t.tracked(), n);
        let s = t.summary(1);
        assert_eq!(s.sample_fraction, 0.25);
        assert_eq!(s.groups[0].stuck, 4 * n as u64);
        assert!(
            s.groups[0].goroutines.abs_diff(40_000) < 400,
            "{:?}",
            s.groups[0]
        );
    }

    #[test]
    fn a_followed_goroutine_takes_40_bytes() {
        assert_eq!(BYTES_PER_TRACKED, 40);
    }
}
