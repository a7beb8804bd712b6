//! The layout self-check: before gprof trusts a table of struct offsets (its own, one read
//! from DWARF, or the newest entry assumed for a release newer than the table), it reads
//! every g of the live process at those offsets and checks that what it finds is what a
//! runtime holds. A wrong layout fails nearly every check at once; a right one fails only
//! where a g changed under the reads, which the tolerance absorbs.
//!
//! - every g's status (without the `_Gscan` bit) is one the release has;
//! - every live g has a goid in `1..=sched.goidgen` and, unless lent to a C thread (no
//!   creation site), a stack whose bounds are ordered and whose size is a power of two of at
//!   least 2 KiB, and a creation site (`gopc`) and start function (`startpc`) in the text;
//! - every waiting g's saved stack pointer is inside its stack and its saved pc in the text,
//!   and its wait reason names one of the release's (when gprof knows them);
//! - the live gs number what the runtime's own counters say (allglen, the free lists and
//!   ngsys read at the globals' offsets), and the free lists hold no more gs than are dead.

use std::ops::Range;

use crate::inspect::census::GFields;
use crate::inspect::goruntime::status;
use crate::inspect::runtime_state::{RuntimeCounts, RuntimeReader, StateError};

/// Statuses every supported release has (`_Gidle` to `_Gpreempted`; 5 and 7 are unused).
const STATUSES: &[u32] = &[0, 1, 2, 3, 4, 6, 8, 9];
/// Go 1.26+: `_Gleaked`, `_Gdeadextra`.
const STATUSES_126: &[u32] = &[10, 11];
/// The smallest goroutine stack.
const MIN_STACK: u64 = 2048;
/// Bytes a g takes at least, in every supported release (`sizeof(runtime.g)` is 376 to 456):
/// a process cannot hold more gs than its address space has room for at this size.
pub const MIN_G_BYTES: u64 = 256;

/// What the self-check is given about the binary.
#[derive(Clone, Debug)]
pub struct Expect {
    /// The program's text, as runtime addresses.
    pub text: Range<u64>,
    /// Go 1.26 or newer (two more statuses).
    pub go126: bool,
    /// How many wait reasons the release has, when gprof knows them.
    pub wait_reasons: Option<usize>,
    /// Go <= 1.21: where the GC pauses' clock readings are.
    pub clocks: Option<GcClocks>,
}

impl Expect {
    /// What a process of a binary of release `version`, whose Go code spans `text` (file
    /// addresses), planned as `plan` and loaded `bias` higher, must hold.
    pub fn new(
        version: &crate::inspect::goruntime::GoVersion,
        text: Range<u64>,
        plan: &crate::inspect::plan::ProbePlan,
        bias: u64,
    ) -> Self {
        let clocks = match plan.layout.pause_clock {
            crate::inspect::goruntime::PauseClock::Globals {
                last_gc_unix,
                last_gc_nanotime,
                ..
            } => plan.globals.last_gc_nanotime.map(|nanotime| GcClocks {
                pause_start: plan.globals.pause_start.map(|a| a + bias),
                last_gc_nanotime: nanotime + bias,
                last_gc_unix: nanotime + bias - (last_gc_nanotime - last_gc_unix),
            }),
            crate::inspect::goruntime::PauseClock::Registers => None,
        };
        Self {
            text: text.start + bias..text.end + bias,
            go126: version.major > 1 || version.minor >= 26,
            wait_reasons: crate::inspect::goruntime::wait_reasons(version).map(<[&str]>::len),
            clocks,
        }
    }
}

/// The words Go <= 1.21 keeps its GC pause bounds in (runtime addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcClocks {
    /// `work.pauseStart` (nanotime).
    pub pause_start: Option<u64>,
    /// `memstats.last_gc_nanotime` and `memstats.last_gc_unix`.
    pub last_gc_nanotime: u64,
    pub last_gc_unix: u64,
}

/// One check over the gs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub checked: u64,
    pub failed: u64,
    /// The first failure, described.
    pub example: Option<String>,
    /// A single reading, which races nothing: no failure allowed.
    pub strict: bool,
}

impl Check {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            ..Default::default()
        }
    }

    fn record(&mut self, ok: bool, example: impl FnOnce() -> String) {
        self.checked += 1;
        if !ok {
            self.failed += 1;
            self.example.get_or_insert_with(example);
        }
    }

    /// Failures beyond what gs changing under the reads explain (two, or 1 %).
    fn passed(&self) -> bool {
        if self.strict {
            self.failed == 0
        } else {
            self.failed <= 2.max(self.checked / 100)
        }
    }
}

/// The outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelfCheckReport {
    pub gs: u64,
    pub checks: Vec<Check>,
}

impl SelfCheckReport {
    pub fn passed(&self) -> bool {
        self.gs > 0 && self.checks.iter().all(Check::passed)
    }

    /// One line: what passed, or what failed and how.
    pub fn describe(&self) -> String {
        if self.passed() {
            let n: u64 = self.checks.iter().map(|c| c.checked).sum();
            return format!("passed ({} gs, {n} checks)", self.gs);
        }
        if self.gs == 0 {
            return "failed: no g could be read".into();
        }
        let failed: Vec<String> = self
            .checks
            .iter()
            .filter(|c| !c.passed())
            .map(|c| {
                format!(
                    "{}: {} of {} wrong{}",
                    c.name,
                    c.failed,
                    c.checked,
                    c.example
                        .as_ref()
                        .map(|e| format!(", e.g. {e}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        format!("failed ({})", failed.join("; "))
    }
}

/// gs the check at attach reads at most (spread over `allgs` in a larger process).
const MAX_CHECKED_GS: u64 = 1 << 16;

/// Runs the checks on the live process behind `reader`.
pub fn run(reader: &RuntimeReader, expect: &Expect) -> Result<SelfCheckReport, StateError> {
    let counts = reader.read()?;
    let goidgen = reader.goidgen()?;
    let mut tally = GsCheck::new(expect, goidgen);
    // A busy process creates goroutines while its gs are read: their goids are checked
    // against `goidgen` read after them.
    let mut goidgen_error = None;
    let Some((len, read)) = reader.each_g(MAX_CHECKED_GS, |run| {
        match reader.goidgen() {
            Ok(goidgen) => tally.raise_goidgen(goidgen),
            Err(e) => goidgen_error = Some(e),
        }
        for &(addr, g) in run {
            tally.add(addr, g);
        }
    })?
    else {
        return Err(StateError::Invalid(
            "runtime.allgs could not be read: nothing to check the layout on".into(),
        ));
    };
    if let Some(e) = goidgen_error {
        return Err(e);
    }
    let scale = len as f64 / read.max(1) as f64;
    // The counts again: goroutines created or ended while the gs were read widen the
    // tolerance (a churning process).
    let after = reader.read()?;
    let alive = |c: &RuntimeCounts| c.goroutines() + c.ngsys;
    let churn = (after.goids - counts.goids).max(0) + (alive(&after) - alive(&counts)).abs();
    let mut report = tally.finish(&after, scale, churn as u64);
    if let Some(c) = &expect.clocks {
        report.checks.push(check_clocks(reader, c)?);
    }
    Ok(report)
}

/// Goroutines a process may create per second, at most: far beyond any real one (the
/// runtime creates a few million per second per core at best).
const MAX_CREATIONS_PER_SECOND: f64 = 1e8;

/// The invariants the runtime's counts keep from one reading to the next (`prev`, read `dt`
/// seconds before `now`): checked on every sample, so that counts a process forged are never
/// reported. Cheap: the counts are already read.
pub fn counts_hold(prev: Option<(&RuntimeCounts, f64)>, now: &RuntimeCounts) -> Result<(), String> {
    let c = now;
    // The Ps' ID caches and free lists are read racing the program: a batch of IDs per P.
    let slack = 16 * i64::from(c.procs) + 64;
    if !(0..=c.allglen).contains(&c.ngsys) {
        return Err(format!("{} system goroutines of {} gs", c.ngsys, c.allglen));
    }
    if c.sched_free < 0 || c.p_free < 0 || c.free_pool() > c.allglen {
        return Err(format!(
            "free lists of {} and {} gs, of {} gs in all",
            c.sched_free, c.p_free, c.allglen
        ));
    }
    if c.goroutines() < -slack {
        return Err(format!("{} live goroutines", c.goroutines()));
    }
    if let Some(len) = c.allgs_len
        && (len - c.allglen).abs() > 64
    {
        return Err(format!(
            "allglen is {} but allgs holds {len} gs (the runtime stores them together)",
            c.allglen
        ));
    }
    // Every g took a goroutine ID when it was made (a few may be between the two).
    if c.allglen > c.goids.saturating_add(slack) {
        return Err(format!(
            "{} gs, but only {} goroutine IDs were ever handed out",
            c.allglen, c.goids
        ));
    }
    if let Some((p, dt)) = prev {
        if c.allglen < p.allglen {
            return Err(format!(
                "allglen went from {} down to {} (the runtime never frees a g)",
                p.allglen, c.allglen
            ));
        }
        let most = MAX_CREATIONS_PER_SECOND * dt.max(0.0) + f64::from(1 << 20);
        if c.goids < p.goids - slack || (c.goids - p.goids) as f64 > most {
            return Err(format!(
                "goroutine IDs handed out went from {} to {} in {dt:.1} s",
                p.goids, c.goids
            ));
        }
    }
    Ok(())
}

/// Go <= 1.21's pause clocks: readings of the monotonic clock no later than now, and a wall
/// clock reading of the last GC within the last year (0 before the first GC).
fn check_clocks(reader: &RuntimeReader, c: &GcClocks) -> Result<Check, StateError> {
    let now_mono = crate::inspect::clock::monotonic_ns();
    let now_wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let year = 365 * 86_400 * 1_000_000_000u64;
    let mut check = Check::new("GC clock readings (work.pauseStart, memstats.last_gc_*)");
    check.strict = true;
    let nanotime = reader.word(c.last_gc_nanotime)?;
    let unix = reader.word(c.last_gc_unix)?;
    let pause = match c.pause_start {
        Some(a) => reader.word(a)?,
        None => 0,
    };
    let fine = nanotime <= now_mono
        && pause <= now_mono
        && ((nanotime == 0 && unix == 0)
            || (nanotime != 0 && unix <= now_wall && unix + year >= now_wall));
    check.record(fine, || {
        format!("pauseStart {pause}, last_gc_nanotime {nanotime}, last_gc_unix {unix}")
    });
    Ok(check)
}

/// The checks over gs, fed one g at a time: at attach (the layout self-check) and on every
/// census (the process's bookkeeping, which it could rewrite at any time).
#[derive(Debug)]
pub struct GsCheck {
    expect: Expect,
    goidgen: u64,
    gs: u64,
    live: u64,
    dead: u64,
    statuses: Check,
    goids: Check,
    stacks: Check,
    sites: Check,
    waits: Check,
    /// A g listed twice in `allgs`, or two live gs with one goid: never in a runtime.
    repeats: Check,
    /// g addresses and live goids seen (all up to [`Seen::ALL`], then a hash-picked sample).
    addrs: Seen,
    goid_set: Seen,
}

/// Values seen, to find repeats: every one until [`Seen::ALL`], then one in 64 (by hash)
/// until [`Seen::MAX`]: bounded memory, and a value repeated often is found all the same.
#[derive(Debug, Default)]
struct Seen(foldhash::HashSet<u64>);

impl Seen {
    const ALL: usize = 1 << 14;
    const MAX: usize = 1 << 15;

    /// False when `v` was seen before.
    fn first(&mut self, v: u64) -> bool {
        use std::hash::BuildHasher;
        let n = self.0.len();
        if n >= Self::MAX
            || (n >= Self::ALL
                && !foldhash::fast::FixedState::with_seed(7)
                    .hash_one(v)
                    .is_multiple_of(64))
        {
            return true;
        }
        self.0.insert(v)
    }
}

impl GsCheck {
    /// Checks against what `expect` says of the binary, with `sched.goidgen` read before the
    /// gs.
    pub fn new(expect: &Expect, goidgen: u64) -> Self {
        Self {
            expect: expect.clone(),
            goidgen,
            gs: 0,
            live: 0,
            dead: 0,
            statuses: Check::new("status"),
            goids: Check::new("goid"),
            stacks: Check::new("stack bounds"),
            sites: Check::new("gopc/startpc in the text"),
            waits: Check::new("waiting g's saved registers and wait reason"),
            repeats: Check::new("gs listed twice, goids shared"),
            addrs: Seen::default(),
            goid_set: Seen::default(),
        }
    }

    /// A later `sched.goidgen`: goroutines created during a long census have higher goids.
    pub fn raise_goidgen(&mut self, goidgen: u64) {
        self.goidgen = self.goidgen.max(goidgen);
    }

    /// Whether what was read so far cannot come from a runtime, whatever follows: most gs of
    /// a check fail it (a racing g fails one now and then; a forged `allgs` fails them all).
    pub fn hopeless(&self) -> Option<String> {
        let checks = [
            &self.statuses,
            &self.goids,
            &self.stacks,
            &self.sites,
            &self.waits,
            &self.repeats,
        ];
        checks
            .into_iter()
            .find(|c| c.failed >= 16 && c.failed * 4 >= c.checked)
            .map(|c| {
                format!(
                    "{}: {} of {} wrong{}",
                    c.name,
                    c.failed,
                    c.checked,
                    c.example
                        .as_ref()
                        .map(|e| format!(", e.g. {e}"))
                        .unwrap_or_default()
                )
            })
    }

    /// Counts the g at `addr` (None: unreadable; not checked).
    pub fn add(&mut self, addr: u64, g: Option<GFields>) {
        let Some(g) = g else { return };
        self.gs += 1;
        let fresh = self.addrs.first(addr);
        self.repeats
            .record(fresh, || format!("g {addr:#x} is listed twice in allgs"));
        let s = g.status & !status::SCAN;
        let known = STATUSES.contains(&s) || (self.expect.go126 && STATUSES_126.contains(&s));
        self.statuses
            .record(known, || format!("g {addr:#x} has status {:#x}", g.status));
        if !known {
            return;
        }
        if matches!(s, 0 | 6 | 11) {
            self.dead += 1;
            return;
        }
        self.live += 1;
        let text = &self.expect.text;
        let goidgen = self.goidgen;
        // A g lent to a C thread calling into Go (cgo's extra Ms) has no creation site and
        // may run on the thread's own stack.
        let extra_m = g.gopc == 0 && g.startpc == 0;
        self.goids.record(g.goid >= 1 && g.goid <= goidgen, || {
            format!("g {addr:#x} has goid {} (goidgen {goidgen})", g.goid)
        });
        if fresh {
            let unique = self.goid_set.first(g.goid);
            self.repeats.record(unique, || {
                format!("g {addr:#x} has goid {}, as another live g has", g.goid)
            });
        }
        if extra_m {
            return;
        }
        let size = g.stack_hi.wrapping_sub(g.stack_lo);
        self.stacks.record(
            g.stack_lo < g.stack_hi && size >= MIN_STACK && size.is_power_of_two(),
            || format!("g {addr:#x} has stack {:#x}..{:#x}", g.stack_lo, g.stack_hi),
        );
        self.sites
            .record(text.contains(&g.gopc) && text.contains(&g.startpc), || {
                format!(
                    "g {addr:#x} has gopc {:#x}, startpc {:#x}",
                    g.gopc, g.startpc
                )
            });
        if s == status::WAITING {
            let reasons = self.expect.wait_reasons;
            self.waits.record(
                (g.stack_lo..=g.stack_hi).contains(&g.sched_sp)
                    && text.contains(&g.sched_pc)
                    && reasons.is_none_or(|n| (g.waitreason as usize) < n),
                || {
                    format!(
                        "waiting g {addr:#x} has sp {:#x}, pc {:#x}, wait reason {}",
                        g.sched_sp, g.sched_pc, g.waitreason
                    )
                },
            );
        }
    }

    /// The report, with the runtime's counters read around the gs. `scale`: gs in `allgs`
    /// per g read (1 when all were); `churn`: goroutines created while the gs were read
    /// (each may have exited, or been counted in one state and not the other).
    pub fn finish(self, counts: &RuntimeCounts, scale: f64, churn: u64) -> SelfCheckReport {
        // The runtime's counters, read a moment before the gs: live = allglen - free lists
        // (ngsys included), give or take what changed meanwhile.
        let live_counted = (counts.goroutines() + counts.ngsys).max(0) as u64;
        let live = (self.live as f64 * scale).round() as u64;
        let dead = (self.dead as f64 * scale).round() as u64;
        let slack = 16u64
            .max(live_counted / 50)
            .saturating_add(churn.saturating_mul(2));
        // The counters count a dead g as live while it is off the free lists: a GC freeing
        // the stacks of the free gs takes the whole list off for as long as that takes (in a
        // process held to a small CPU quota, long enough to be read: the runtime's own
        // NumGoroutine then says 20,000 where 2 goroutines live), and a goroutine being made
        // or ending is off them for a moment.
        let pool = counts.free_pool().max(0) as u64;
        let off_lists = dead.saturating_sub(pool);
        let mut totals = Check::new("live gs against the runtime's counters");
        totals.strict = true;
        totals.record(
            live <= live_counted.saturating_add(slack)
                && live.saturating_add(off_lists).saturating_add(slack) >= live_counted
                && pool <= dead.saturating_add(slack),
            || {
                format!(
                    "{live} live and {dead} dead gs read, the counters say {live_counted} live and a pool of {}",
                    counts.free_pool()
                )
            },
        );
        SelfCheckReport {
            gs: self.gs,
            checks: vec![
                self.statuses,
                self.goids,
                self.stacks,
                self.sites,
                self.waits,
                self.repeats,
                totals,
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect() -> Expect {
        Expect {
            text: 0x40_0000..0x50_0000,
            go126: false,
            wait_reasons: Some(27),
            clocks: None,
        }
    }

    fn live(goid: u64, status: u32) -> GFields {
        GFields {
            status,
            goid,
            gopc: 0x40_1000,
            startpc: 0x40_2000,
            stack_lo: 0xc000_0000 + goid * 0x2000,
            stack_hi: 0xc000_0000 + goid * 0x2000 + 0x2000,
            sched_sp: 0xc000_0000 + goid * 0x2000 + 0x1f00,
            sched_pc: 0x40_3000,
            waitreason: 14,
            ..Default::default()
        }
    }

    /// A dead g (`_Gdead`), as a free list holds it.
    fn dead() -> GFields {
        GFields {
            status: 6,
            ..Default::default()
        }
    }

    fn counts(live: i64, pool: i64) -> RuntimeCounts {
        RuntimeCounts {
            allglen: live + pool,
            ngsys: 4,
            sched_free: pool,
            p_free: 0,
            procs: 2,
            goids: 1000,
            allgs_len: Some(live + pool),
        }
    }

    #[test]
    fn a_right_layout_passes_despite_a_racing_g() {
        let e = expect();
        let mut t = GsCheck::new(&e, 1000);
        for goid in 1..=200 {
            t.add(goid * 0x100, Some(live(goid, status::WAITING)));
        }
        // One g caught mid-change, and a few dead ones.
        t.add(
            0x1,
            Some(GFields {
                status: 77,
                ..live(3, 4)
            }),
        );
        for i in 0..10 {
            t.add(0x2 + i, Some(dead()));
        }
        let r = t.finish(&counts(196, 10), 1.0, 0);
        assert!(r.passed(), "{}", r.describe());
    }

    #[test]
    fn a_wrong_layout_fails_and_says_why() {
        let e = expect();
        let mut t = GsCheck::new(&e, 1000);
        // gopc read from parentGoid: a small number, not a text address.
        for goid in 1..=200 {
            let mut g = live(goid, status::WAITING);
            g.gopc = goid;
            t.add(goid * 0x100, Some(g));
        }
        let r = t.finish(&counts(196, 0), 1.0, 0);
        assert!(!r.passed());
        assert!(
            r.describe()
                .contains("gopc/startpc in the text: 200 of 200 wrong"),
            "{}",
            r.describe()
        );
        // Statuses of another release's offsets: garbage.
        let mut t = GsCheck::new(&e, 1000);
        for i in 0..100u32 {
            t.add(
                0x100,
                Some(GFields {
                    status: 0xdead_0000 + i,
                    ..live(1, 4)
                }),
            );
        }
        let r = t.finish(&counts(0, 0), 1.0, 0);
        assert!(
            r.describe().contains("status: 100 of 100 wrong"),
            "{}",
            r.describe()
        );
        // Counters that do not match the gs.
        let mut t = GsCheck::new(&e, 1000);
        for goid in 1..=50 {
            t.add(goid * 0x100, Some(live(goid, status::WAITING)));
        }
        let r = t.finish(&counts(5000, 0), 1.0, 0);
        assert!(!r.passed(), "{}", r.describe());
        // More live gs than the counters say.
        let mut t = GsCheck::new(&e, 1000);
        for goid in 1..=500 {
            t.add(goid * 0x100, Some(live(goid, status::WAITING)));
        }
        assert!(!t.finish(&counts(50, 0), 1.0, 0).passed());
        // Nothing read at all.
        assert!(!GsCheck::new(&e, 1).finish(&counts(0, 0), 1.0, 0).passed());
    }

    #[test]
    fn dead_gs_off_the_free_lists_are_counted_live_by_the_runtime() {
        // A GC freeing the free gs' stacks holds them off the lists: the counters then say
        // 2,000 live (allglen 2,100, a pool of 100) where 50 live and 2,050 dead gs are read.
        let e = expect();
        let mut t = GsCheck::new(&e, 3000);
        for goid in 1..=50 {
            t.add(goid * 0x100, Some(live(goid, status::WAITING)));
        }
        for i in 0..2050 {
            t.add(0x100_0000 + i * 0x200, Some(dead()));
        }
        let mut c = counts(2000, 100);
        c.ngsys = 0;
        let r = t.finish(&c, 1.0, 0);
        assert!(r.passed(), "{}", r.describe());
    }

    #[test]
    fn a_forged_allgs_is_found_by_its_repeats_early() {
        let e = expect();
        // Every entry points at one real g: the first repeat is the second entry.
        let mut t = GsCheck::new(&e, 1000);
        for _ in 0..100 {
            t.add(0x1000, Some(live(7, status::WAITING)));
        }
        assert!(t.hopeless().is_some_and(|w| w.contains("listed twice")));
        let r = t.finish(&counts(100, 0), 1.0, 0);
        assert!(!r.passed());
        // Distinct gs that share goids (copies of one g).
        let mut t = GsCheck::new(&e, 1000);
        for i in 0..100 {
            t.add(0x10_0000 + i * 0x200, Some(live(7, status::WAITING)));
        }
        assert!(
            t.hopeless().is_some_and(|w| w.contains("goid 7")),
            "{:?}",
            t.hopeless()
        );
        // An honest big census: nothing repeats, whatever its size (beyond what is kept).
        let mut t = GsCheck::new(&e, 1 << 40);
        for i in 1..=200_000u64 {
            let mut g = live(i, status::WAITING);
            g.stack_lo = 0xc000_0000 + i * 0x2000;
            g.stack_hi = g.stack_lo + 0x2000;
            g.sched_sp = g.stack_hi - 0x100;
            t.add(0x1_0000_0000 + i * 0x1c8, Some(g));
        }
        assert_eq!(t.hopeless(), None);
        assert_eq!(t.repeats.failed, 0);
        assert!(t.addrs.0.len() <= Seen::MAX);
    }

    #[test]
    fn counts_a_process_forged_are_refused() {
        let honest = counts(500, 20);
        assert_eq!(counts_hold(None, &honest), Ok(()));
        let later = RuntimeCounts {
            goids: 1500,
            allglen: 600,
            allgs_len: Some(600),
            ..honest
        };
        assert_eq!(counts_hold(Some((&honest, 2.0)), &later), Ok(()));
        let forged = [
            // allglen set far past the array.
            RuntimeCounts {
                allglen: 1 << 31,
                ..honest
            },
            // allgs replaced and allglen with it, the IDs left alone.
            RuntimeCounts {
                allglen: 4_000_000,
                allgs_len: Some(4_000_000),
                ..honest
            },
            RuntimeCounts {
                ngsys: -3,
                ..honest
            },
            RuntimeCounts {
                p_free: -100,
                ..honest
            },
        ];
        for f in forged {
            assert!(counts_hold(Some((&honest, 2.0)), &f).is_err(), "{f:?}");
        }
        // The IDs forged too: they cannot jump by billions, nor go back.
        let jumped = RuntimeCounts {
            allglen: 1 << 31,
            allgs_len: Some(1 << 31),
            goids: 1 << 32,
            ..honest
        };
        assert!(counts_hold(Some((&honest, 2.0)), &jumped).is_err());
        let back = RuntimeCounts {
            goids: 10,
            allglen: 5,
            allgs_len: Some(5),
            sched_free: 0,
            ..honest
        };
        assert!(counts_hold(Some((&honest, 2.0)), &back).is_err());
    }

    #[test]
    fn leaked_statuses_only_from_1_26() {
        let mut e = expect();
        let mut t = GsCheck::new(&e, 1000);
        for goid in 1..=10 {
            t.add(goid, Some(live(goid, status::LEAKED)));
        }
        assert!(!t.finish(&counts(6, 0), 1.0, 0).passed());
        e.go126 = true;
        let mut t = GsCheck::new(&e, 1000);
        for goid in 1..=10 {
            t.add(goid, Some(live(goid, status::LEAKED)));
        }
        let r = t.finish(&counts(6, 0), 1.0, 0);
        assert!(r.passed(), "{}", r.describe());
    }
}
