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

use foldhash::{HashMap, HashMapExt};
use std::borrow::Cow;
use std::sync::Arc;

use crate::collect::sites::SiteName;
use crate::inspect::census::BlockedG;
use crate::inspect::goruntime::status;
use crate::model::snapshot::BlockedGroup;
use crate::model::verdict::{LeakHistory, Verdict};

/// Groups followed per process at most; the rest are summed into one "other" group.
pub const MAX_GROUPS: usize = 256;
/// Groups shown (`blocked_groups`).
pub const TOP_GROUPS: usize = 20;

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
}

/// One blocked goroutine of a census, named.
#[derive(Clone, Debug)]
pub struct Observed {
    pub g: BlockedG,
    /// Where it waits (a file address); None if its stack could not be walked.
    pub at: Option<u64>,
    /// Its group (shared by its members); None for the runtime's own goroutines and those
    /// not placed.
    pub key: Option<Arc<GroupKey>>,
}

#[derive(Clone, Copy, Debug)]
struct Tracked {
    /// The census that saw it last.
    seen: u64,
    goid: u64,
    seq: u8,
    waitsince: i64,
    pc: u64,
    sp: u64,
    at: Option<u64>,
    /// Seconds (collector time) since when it has waited at `at`.
    since: f64,
}

#[derive(Debug)]
struct Group {
    /// Kept once the group had a stuck goroutine.
    history: Option<LeakHistory>,
    goroutines: u64,
    stuck: u64,
    oldest: f64,
    verdict: Verdict,
}

/// The figures of all groups at one census.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BlockedSummary {
    pub groups: Vec<BlockedGroup>,
    pub stuck: u64,
    pub leaking: u64,
    pub confirmed_leak_rate_per_min: f64,
}

#[derive(Debug)]
pub struct BlockedTracker {
    stuck_after: f64,
    window: f64,
    gs: HashMap<u64, Tracked>,
    groups: HashMap<GroupKey, Group>,
    /// Censuses recorded.
    census: u64,
}

impl BlockedTracker {
    pub fn new(stuck_after: f64, window: f64) -> Self {
        Self {
            stuck_after,
            window,
            gs: HashMap::new(),
            groups: HashMap::new(),
            census: 0,
        }
    }

    /// Where `g` waits, as found at the last census, if it has not moved since (same
    /// goroutine, not run, same saved registers): its stack need not be walked again.
    pub fn known_place(&self, g: &BlockedG) -> Option<u64> {
        let t = self.gs.get(&g.g)?;
        (t.goid == g.goid && t.seq == g.tracking_seq && t.pc == g.start.pc && t.sp == g.start.sp)
            .then_some(t.at)
            .flatten()
    }

    /// Takes in one census's blocked goroutines at `t` seconds.
    pub fn record(&mut self, t: f64, observed: Vec<Observed>) {
        self.census += 1;
        let census = self.census;
        let mut tally: HashMap<Arc<GroupKey>, (u64, u64, f64)> = HashMap::new();
        for o in observed {
            let g = &o.g;
            // Waiting at the same place since the census that first saw it, unless it ran.
            let since = match self.gs.get(&g.g) {
                Some(p)
                    if p.goid == g.goid
                        && p.seq == g.tracking_seq
                        && p.at == o.at
                        && (p.waitsince == 0 || p.waitsince == g.waitsince) =>
                {
                    p.since
                }
                _ => t,
            };
            self.gs.insert(
                g.g,
                Tracked {
                    seen: census,
                    goid: g.goid,
                    seq: g.tracking_seq,
                    waitsince: g.waitsince,
                    pc: g.start.pc,
                    sp: g.start.sp,
                    at: o.at,
                    since,
                },
            );
            let Some(key) = o.key else { continue };
            let age = t - since;
            let stuck = age >= self.stuck_after || g.status == status::LEAKED;
            let e = tally.entry(key).or_insert((0, 0, 0.0));
            e.0 += 1;
            e.1 += u64::from(stuck);
            e.2 = e.2.max(age);
        }
        // Goroutines not blocked any more are forgotten; the map keeps its room for the next
        // census unless it is far too big.
        self.gs.retain(|_, t| t.seen == census);
        if self.gs.capacity() > 4 * self.gs.len() + 1024 {
            self.gs.shrink_to_fit();
        }
        let mut tally: HashMap<GroupKey, (u64, u64, f64)> = tally
            .into_iter()
            .map(|(k, v)| (Arc::unwrap_or_clone(k), v))
            .collect();
        self.fold_overflow(&mut tally);
        for group in self.groups.values_mut() {
            (group.goroutines, group.stuck, group.oldest) = (0, 0, 0.0);
        }
        for (key, (goroutines, stuck, oldest)) in tally {
            let group = self.groups.entry(key).or_insert_with(|| Group {
                history: None,
                goroutines: 0,
                stuck: 0,
                oldest: 0.0,
                verdict: Verdict::default(),
            });
            (group.goroutines, group.stuck, group.oldest) = (goroutines, stuck, oldest);
        }
        let window = self.window;
        self.groups.retain(|key, group| {
            if group.stuck > 0 && group.history.is_none() {
                group.history = Some(LeakHistory::new(window));
            }
            let other = key.blocked_at.as_ref() == "other" && key.created_at.function == "other";
            group.verdict = match &mut group.history {
                Some(h) => {
                    let mut v = h.push(t, group.stuck as f64);
                    v.leaking = !other && (v.leaking || (key.leaked && group.stuck > 0));
                    v
                }
                None => Verdict::default(),
            };
            group.goroutines > 0 || group.history.as_ref().is_some_and(|h| !h.is_idle())
        });
    }

    /// Keeps at most [`MAX_GROUPS`] groups: groups followed already stay, new ones come in by
    /// size while there is room, the rest are summed into "other".
    fn fold_overflow(&self, tally: &mut HashMap<GroupKey, (u64, u64, f64)>) {
        let room = MAX_GROUPS.saturating_sub(1);
        let known = tally
            .keys()
            .filter(|k| self.groups.contains_key(*k))
            .count();
        let new: usize = tally.len() - known;
        if known + new <= room {
            return;
        }
        let mut candidates: Vec<(GroupKey, u64)> = tally
            .iter()
            .filter(|(k, _)| !self.groups.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.0))
            .collect();
        candidates.sort_by_key(|c| std::cmp::Reverse(c.1));
        let other = GroupKey::other();
        for (key, _) in candidates.into_iter().skip(room.saturating_sub(known)) {
            if key == other {
                continue;
            }
            if let Some((n, stuck, oldest)) = tally.remove(&key) {
                let e = tally.entry(other.clone()).or_insert((0, 0, 0.0));
                e.0 += n;
                e.1 += stuck;
                e.2 = e.2.max(oldest);
            }
        }
    }

    /// The groups to show (leaking first, then by stuck count) and the totals.
    pub fn summary(&self, n: usize) -> BlockedSummary {
        let mut all: Vec<BlockedGroup> = self
            .groups
            .iter()
            .filter(|(_, g)| g.goroutines > 0 || g.verdict.leaking)
            .map(|(k, g)| BlockedGroup {
                created_at: k.created_at.label(),
                blocked_at: k.blocked_at.to_string(),
                wait_reason: if k.leaked {
                    format!("{} (leaked)", k.wait_reason)
                } else {
                    k.wait_reason.to_string()
                },
                goroutines: g.goroutines,
                stuck: g.stuck,
                oldest_blocked_seconds: (g.oldest * 10.0).round() / 10.0,
                stuck_growth_per_min: g.verdict.growth_per_min,
                leaking: g.verdict.leaking,
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
    use crate::inspect::census::CreationSite;
    use crate::inspect::unwind::Start;

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
                stack_hi: u64::MAX,
            },
        }
    }

    fn observe(b: BlockedG, k: &GroupKey) -> Observed {
        Observed {
            g: b,
            at: Some(0x5000),
            key: Some(Arc::new(k.clone())),
        }
    }

    #[test]
    fn ages_follow_a_goroutine_until_it_runs() {
        let created = site("main.serve");
        let k = key(&created, "main.worker (/src/app/main.go:20)");
        let mut t = BlockedTracker::new(10.0, 60.0);
        // g 1 stamped by a GC before gprof came: dated from the first census all the same.
        t.record(
            0.0,
            vec![
                observe(blocked(1, 11, 5, 123), &k),
                observe(blocked(2, 12, 5, 0), &k),
            ],
        );
        let s = t.summary(10);
        assert_eq!((s.groups[0].goroutines, s.groups[0].stuck), (2, 0));
        // 12 s later: g 2 is stuck; g 1 ran and blocked again (its seq moved).
        t.record(
            12.0,
            vec![
                observe(blocked(1, 11, 6, 0), &k),
                observe(blocked(2, 12, 5, 0), &k),
            ],
        );
        let s = t.summary(10);
        assert_eq!(s.groups[0].stuck, 1);
        assert_eq!(s.groups[0].oldest_blocked_seconds, 12.0);
        // A GC stamps g 1 (no run); another goroutine reuses g 2's address: a new wait.
        t.record(
            20.0,
            vec![
                observe(blocked(1, 11, 6, 456), &k),
                observe(blocked(2, 99, 5, 0), &k),
            ],
        );
        let s = t.summary(10);
        assert_eq!((s.groups[0].goroutines, s.groups[0].stuck), (2, 0));
        assert_eq!(s.groups[0].oldest_blocked_seconds, 8.0);
        // The cached place is given only for the unmoved goroutine.
        assert_eq!(t.known_place(&blocked(1, 11, 6, 456)), Some(0x5000));
        assert_eq!(t.known_place(&blocked(1, 11, 7, 456)), None);
        assert_eq!(t.known_place(&blocked(2, 12, 5, 0)), None);
    }

    #[test]
    fn a_waitsince_reset_means_the_goroutine_ran() {
        let k = key(&site("main.serve"), "main.worker (main.go:20)");
        let mut t = BlockedTracker::new(5.0, 60.0);
        t.record(0.0, vec![observe(blocked(1, 11, 5, 777), &k)]);
        t.record(6.0, vec![observe(blocked(1, 11, 5, 777), &k)]);
        assert_eq!(t.summary(1).stuck, 1);
        // Same seq (it wrapped around, say) but waitsince went back to 0: it ran.
        t.record(7.0, vec![observe(blocked(1, 11, 5, 0), &k)]);
        assert_eq!(t.summary(1).stuck, 0);
    }

    #[test]
    fn a_leaking_group_is_found_and_a_stable_one_is_not() {
        let serve = site("main.serve");
        let leak = key(&serve, "main.worker (main.go:20)");
        let conns = key(&site("main.accept"), "main.read (main.go:40)");
        let mut t = BlockedTracker::new(10.0, 60.0);
        let mut observed_at = |secs: u64| {
            // One more goroutine stuck at `leak` every second; 300 connections all along.
            let mut v: Vec<Observed> = (0..secs)
                .map(|i| observe(blocked(0x10_0000 + i, 1000 + i, 1, 0), &leak))
                .collect();
            v.extend((0..300).map(|i| observe(blocked(0x20_0000 + i, 5000 + i, 1, 0), &conns)));
            t.record(secs as f64, v);
            t.summary(TOP_GROUPS)
        };
        let mut found = None;
        for secs in 0..=90 {
            let s = observed_at(secs);
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
    }

    #[test]
    fn runtime_leaked_goroutines_are_leaking_at_once() {
        let mut k = key(&site("main.serve"), "main.worker (main.go:20)");
        k.leaked = true;
        let mut t = BlockedTracker::new(300.0, 60.0);
        let mut b = blocked(1, 11, 5, 0);
        b.status = status::LEAKED;
        t.record(0.0, vec![observe(b, &k)]);
        let s = t.summary(10);
        assert!(s.groups[0].leaking);
        assert_eq!(s.groups[0].wait_reason, "chan send (leaked)");
        assert_eq!((s.stuck, s.leaking), (1, 1));
    }

    #[test]
    fn groups_beyond_the_limit_are_summed_into_other() {
        let mut t = BlockedTracker::new(1.0, 60.0);
        let observed: Vec<Observed> = (0..MAX_GROUPS as u64 + 50)
            .map(|i| {
                let k = key(&site("main.f"), &format!("main.g (main.go:{i})"));
                observe(blocked(i + 1, i + 1, 1, 0), &k)
            })
            .collect();
        t.record(0.0, observed);
        assert_eq!(t.groups.len(), MAX_GROUPS);
        let s = t.summary(usize::MAX);
        let other = s.groups.iter().find(|g| g.blocked_at == "other").unwrap();
        assert_eq!(other.goroutines, 51);
        // Everything gone: the groups go with it (none ever had a stuck goroutine).
        t.record(2.0, Vec::new());
        assert!(t.groups.is_empty());
    }
}
