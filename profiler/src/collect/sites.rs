//! Goroutines by creation site: names for the census's sites (from `.gopclntab`, so also in
//! stripped binaries), their live counts over time, and the leak suspects among them.

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::sync::Arc;

use crate::inspect::binary::frames::FrameTable;
use crate::inspect::census::CreationSite;
use crate::inspect::unwind::MemoCode;
use crate::model::snapshot::SiteSnapshot;
use crate::model::stats::{Series, slope};

/// At most this many sites are followed per process (the most populous); the rest are
/// summed into one "other" site.
pub const MAX_SITES: usize = 128;
/// Sites shown (`top_leak_sites`, `gprof_goroutines_by_site`).
pub const TOP_SITES: usize = 10;
/// A site whose live count grows by less than this per minute is not a suspect.
const MIN_SUSPECT_GROWTH_PER_MIN: f64 = 1.0;

/// Names of the sites of one census.
pub type SiteNames = HashMap<CreationSite, Arc<SiteName>>;

/// A creation site in source terms.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SiteName {
    /// The function holding the `go` statement, and the statement's file and line.
    pub function: String,
    pub file: String,
    pub line: u32,
    /// The function the goroutines start in.
    pub started: String,
    /// Started by the runtime for itself (`runtime.*` other than `runtime.main`): not counted
    /// by `runtime.NumGoroutine`, never a suspect.
    pub system: bool,
}

impl SiteName {
    fn unknown(key: CreationSite) -> Self {
        Self {
            function: format!("{:#x}", key.gopc),
            file: "?".into(),
            line: 0,
            started: format!("{:#x}", key.startpc),
            system: false,
        }
    }

    pub(crate) fn other() -> Self {
        Self {
            function: "other".into(),
            file: String::new(),
            line: 0,
            started: String::new(),
            system: false,
        }
    }

    /// Where it is, for ordering ties stably without formatting a label.
    fn place(&self) -> (&str, &str, u32) {
        (&self.function, &self.file, self.line)
    }

    /// `function (file:line)`.
    pub fn label(&self) -> String {
        if self.file.is_empty() {
            self.function.clone()
        } else {
            format!("{} ({}:{})", self.function, self.file, self.line)
        }
    }
}

/// Names the code addresses of one executable: creation sites and the places goroutines wait
/// at. Keyed by file addresses, so that processes of a PIE loaded at different addresses
/// share it; names come from the executable's frame table (read on demand from the file).
#[derive(Debug)]
pub struct Symbolizer {
    frames: Option<MemoCode<FrameTable>>,
    /// The release's `abi.FuncIDWrapper` (a `go` statement's wrapper is named through it).
    wrapper_func_id: u8,
    names: HashMap<CreationSite, Arc<SiteName>>,
    places: HashMap<u64, Arc<str>>,
}

/// A runtime site key as file addresses (0 stays 0: the kernel's "other").
fn unbiased(k: CreationSite, bias: u64) -> CreationSite {
    let file = |a: u64| if a == 0 { 0 } else { a.wrapping_sub(bias) };
    CreationSite {
        gopc: file(k.gopc),
        startpc: file(k.startpc),
    }
}

impl Symbolizer {
    pub fn new(frames: Option<FrameTable>, wrapper_func_id: u8) -> Self {
        Self {
            frames: frames.map(MemoCode::new),
            wrapper_func_id,
            names: HashMap::new(),
            places: HashMap::new(),
        }
    }

    /// The executable's frame table (None when its file could not be kept open).
    pub fn frames(&self) -> Option<&FrameTable> {
        self.frames.as_ref().map(MemoCode::inner)
    }

    /// The executable's code as the unwinder asks about it (answers kept per pc).
    pub fn code(&self) -> Option<&MemoCode<FrameTable>> {
        self.frames.as_ref()
    }

    /// The name of one site (a runtime address; `bias` is the PIE load bias).
    pub fn name(&mut self, key: CreationSite, bias: u64) -> Arc<SiteName> {
        let f = unbiased(key, bias);
        if let Some(n) = self.names.get(&f) {
            return n.clone();
        }
        if self.names.len() > 8 * MAX_SITES {
            self.names.clear();
        }
        let name = Arc::new(self.lookup(f));
        self.names.insert(f, name.clone());
        name
    }

    fn lookup(&self, f: CreationSite) -> SiteName {
        if f.gopc == 0 {
            // Sites beyond a bound (the kernel's map, the census's).
            SiteName::other()
        } else {
            self.frames()
                .and_then(|frames| name(frames, f, self.wrapper_func_id))
                .unwrap_or_else(|| SiteName::unknown(f))
        }
    }

    /// Names every key of `keys` (runtime addresses; `bias` is the PIE load bias).
    pub fn resolve<'a>(
        &mut self,
        keys: impl IntoIterator<Item = &'a CreationSite>,
        bias: u64,
    ) -> SiteNames {
        let keys: Vec<(CreationSite, CreationSite)> =
            keys.into_iter().map(|&k| (k, unbiased(k, bias))).collect();
        for &(_, f) in &keys {
            if !self.names.contains_key(&f) {
                let name = self.lookup(f);
                self.names.insert(f, Arc::new(name));
            }
        }
        // Forget sites long gone: the map stays the size of what lives.
        if self.names.len() > 4 * MAX_SITES {
            let live: HashSet<&CreationSite> = keys.iter().map(|(_, f)| f).collect();
            self.names.retain(|k, _| live.contains(k));
        }
        keys.iter()
            .filter_map(|(k, f)| Some((*k, self.names.get(f)?.clone())))
            .collect()
    }

    /// `function (file:line)` where a goroutine waits at the return address `pc` (a file
    /// address): the innermost call there outside the waiting machinery (a function inlined
    /// into the frame's code counts as a call of its own).
    pub fn place(&mut self, pc: u64) -> Arc<str> {
        if self.places.len() > 4 * crate::collect::blocked::MAX_GROUPS {
            self.places.clear();
        }
        self.places
            .entry(pc)
            .or_insert_with(|| {
                let calls = self.frames.as_ref().and_then(|f| f.inner().calls(pc));
                let at = calls.as_ref().and_then(|c| {
                    c.iter()
                        .find(|l| !crate::inspect::goruntime::is_wait_machinery(&l.function))
                        .or(c.last())
                });
                match at {
                    Some(l) => format!("{} ({}:{})", l.function, l.file, l.line).into(),
                    None => format!("{pc:#x}").into(),
                }
            })
            .clone()
    }
}

/// Names a site given as file addresses.
fn name(frames: &FrameTable, key: CreationSite, wrapper_func_id: u8) -> Option<SiteName> {
    // gopc is the return address of the call to newproc, in the innermost function (inlined
    // or not) that holds the go statement.
    let calls = frames.calls(key.gopc)?;
    let at = calls.first()?.clone();
    // The runtime counts a goroutine as its own by the function at its start pc
    // (`runtime.isSystemGoroutine`), wrapper or not; a reader names it by what it runs.
    let start: Arc<str> = frames
        .function(key.startpc)
        .map_or_else(|| format!("{:#x}", key.startpc).into(), |f| f.name);
    let started = frames
        .started_function(key.startpc, wrapper_func_id)
        .unwrap_or_else(|| start.clone())
        .to_string();
    if &*start == "runtime.main" {
        // The main goroutine: the runtime's bootstrap code starts it.
        return Some(SiteName {
            function: "runtime.main".into(),
            file: String::new(),
            line: 0,
            started,
            system: false,
        });
    }
    let system = start.starts_with("runtime.");
    Some(SiteName {
        function: at.function,
        file: at.file,
        line: at.line,
        started,
        system,
    })
}

/// Live goroutines per site over the leak window, and the kernel's creation and exit counts.
#[derive(Debug)]
pub struct SiteTracker {
    leak_seconds: f64,
    rate_seconds: f64,
    sites: HashMap<Arc<SiteName>, Series>,
    /// Per site: creations and exits counted since attach, and creations over time.
    counts: HashMap<Arc<SiteName>, (u64, u64, Series)>,
    other: Arc<SiteName>,
}

impl SiteTracker {
    pub fn new(leak_seconds: f64, rate_seconds: f64) -> Self {
        Self {
            leak_seconds,
            rate_seconds,
            sites: HashMap::new(),
            counts: HashMap::new(),
            other: Arc::new(SiteName::other()),
        }
    }

    /// Records the kernel's per-site totals at `t` seconds (creations, exits since attach).
    pub fn record_counts(
        &mut self,
        t: f64,
        counts: impl IntoIterator<Item = (Arc<SiteName>, u64, u64)>,
    ) {
        let mut by_name: HashMap<Arc<SiteName>, (u64, u64)> = HashMap::new();
        for (name, created, exited) in counts {
            let e = by_name.entry(name).or_default();
            e.0 += created;
            e.1 += exited;
        }
        let horizon = self.rate_seconds + 1.0;
        for (name, (created, exited)) in by_name {
            let e = self
                .counts
                .entry(name)
                .or_insert_with(|| (0, 0, Series::new(horizon)));
            e.0 = created;
            e.1 = exited;
            e.2.push(t, created as f64);
        }
        // Followed sites only (the kernel forgets nothing until the process goes).
        let sites = &self.sites;
        self.counts.retain(|name, _| sites.contains_key(name));
    }

    /// Records a census at `t` seconds: live goroutines per named site.
    pub fn record(&mut self, t: f64, counts: impl IntoIterator<Item = (Arc<SiteName>, u64)>) {
        let mut by_name: HashMap<Arc<SiteName>, u64> = HashMap::new();
        for (name, n) in counts {
            *by_name.entry(name).or_default() += n;
        }
        let mut ranked: Vec<(Arc<SiteName>, u64)> = by_name.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.place().cmp(&b.0.place())));
        // Sites followed already keep their place; new ones come in by size.
        let (mut kept, mut rest): (Vec<_>, Vec<_>) = ranked
            .into_iter()
            .partition(|(n, _)| self.sites.contains_key(n));
        let room = MAX_SITES.saturating_sub(kept.len() + 1);
        let overflow = rest.split_off(room.min(rest.len()));
        kept.extend(rest);
        let other: u64 = overflow.iter().map(|(_, n)| n).sum();
        let horizon = self.leak_seconds + 1.0;
        let mut seen = HashSet::new();
        for (name, n) in kept {
            seen.insert(name.clone());
            self.sites
                .entry(name)
                .or_insert_with(|| Series::new(horizon))
                .push(t, n as f64);
        }
        if other > 0 || self.sites.contains_key(&self.other) {
            seen.insert(self.other.clone());
            self.sites
                .entry(self.other.clone())
                .or_insert_with(|| Series::new(horizon))
                .push(t, other as f64);
        }
        // A site with no goroutine left counts zero until its window holds nothing else.
        self.sites.retain(|name, series| {
            if !seen.contains(name) {
                series.push(t, 0.0);
            }
            series.window(f64::INFINITY).any(|(_, v)| v > 0.0)
        });
    }

    /// The sites to show: leak suspects by growth, then the most populous. Ranked on the
    /// figures alone; labels and strings are made for the shown sites only (this runs every
    /// sample of every process).
    pub fn top(&self, n: usize) -> Vec<SiteSnapshot> {
        let mut points = Vec::new();
        let mut ranked: Vec<(&Arc<SiteName>, u64, f64, bool)> = self
            .sites
            .iter()
            .filter_map(|(name, series)| {
                let goroutines = series.last()? as u64;
                points.clear();
                points.extend(series.window(self.leak_seconds));
                let growth = slope(&points).map_or(0.0, |s| s * 60.0);
                let span = points.last()?.0 - points.first()?.0;
                let net = points.last()?.1 - points.first()?.1;
                // Steady: the trend over the window stands well above the scatter around it
                // (sites of short-lived goroutines jitter with those in flight).
                let rise = growth / 60.0 * span;
                let suspect = !name.system
                    && name.line > 0
                    && growth >= MIN_SUSPECT_GROWTH_PER_MIN
                    && net > 0.0
                    && span >= self.leak_seconds / 2.0
                    && rise > 3.0 * scatter(&points, growth / 60.0);
                Some((name, goroutines, growth, suspect))
            })
            .collect();
        ranked.sort_by(|a, b| {
            b.3.cmp(&a.3)
                .then_with(|| {
                    if a.3 {
                        b.2.total_cmp(&a.2)
                    } else {
                        b.1.cmp(&a.1)
                    }
                })
                .then_with(|| a.0.place().cmp(&b.0.place()))
        });
        ranked
            .into_iter()
            .take(n)
            .map(|(name, goroutines, growth, suspect)| {
                let counted = self.counts.get(name);
                SiteSnapshot {
                    created_total: counted.map(|c| c.0),
                    exited_total: counted.map(|c| c.1),
                    create_rate_per_s: counted.and_then(|c| c.2.rate(self.rate_seconds)),
                    site: name.label(),
                    function: name.function.clone(),
                    file: name.file.clone(),
                    line: name.line,
                    started: name.started.clone(),
                    system: name.system,
                    goroutines,
                    growth_per_min: growth,
                    suspect,
                }
            })
            .collect()
    }
}

/// Root mean square of the points' distance from the least-squares line of slope `slope`.
fn scatter(points: &[(f64, f64)], slope: f64) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(x, y), &(px, py)| (x + px / n, y + py / n));
    let sum: f64 = points
        .iter()
        .map(|&(x, y)| (y - (my + slope * (x - mx))).powi(2))
        .sum();
    (sum / n).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(function: &str, line: u32) -> Arc<SiteName> {
        Arc::new(SiteName {
            function: function.into(),
            file: "/src/app/main.go".into(),
            line,
            started: format!("{function}.func1"),
            system: false,
        })
    }

    #[test]
    fn finds_the_leaking_sites_by_growth() {
        let (fast, slow, churn) = (site("main.a", 10), site("main.b", 20), site("main.c", 30));
        let mut sys = (*site("runtime.gcenable", 5)).clone();
        sys.system = true;
        let sys = Arc::new(sys);
        let mut t = SiteTracker::new(60.0, 10.0);
        for s in 0..=60 {
            let s = s as f64;
            t.record(
                s,
                [
                    (fast.clone(), (20.0 * s) as u64),
                    (slow.clone(), (5.0 * s) as u64),
                    // Many in flight, none kept.
                    (churn.clone(), 500 + (s as u64 % 7) * 10),
                    (sys.clone(), 4 + s as u64),
                ],
            );
        }
        let top = t.top(10);
        assert_eq!(top[0].function, "main.a");
        assert!((top[0].growth_per_min - 1200.0).abs() < 1.0, "{top:?}");
        assert!(top[0].suspect && top[1].suspect);
        assert_eq!(top[1].function, "main.b");
        assert!((top[1].growth_per_min - 300.0).abs() < 1.0);
        let churn = top.iter().find(|s| s.function == "main.c").unwrap();
        assert!(!churn.suspect, "{churn:?}");
        let sys = top
            .iter()
            .find(|s| s.function == "runtime.gcenable")
            .unwrap();
        assert!(!sys.suspect, "system goroutines are never suspects");
        assert_eq!(top[0].site, "main.a (/src/app/main.go:10)");
    }

    #[test]
    fn sites_beyond_the_limit_go_to_other_and_gone_ones_are_forgotten() {
        let mut t = SiteTracker::new(10.0, 10.0);
        let many: Vec<_> = (0..MAX_SITES as u32 + 20)
            .map(|i| site("main.f", i + 1))
            .collect();
        t.record(0.0, many.iter().map(|s| (s.clone(), 1 + s.line as u64)));
        assert_eq!(t.sites.len(), MAX_SITES);
        let other = t
            .top(MAX_SITES)
            .into_iter()
            .find(|s| s.function == "other")
            .unwrap();
        assert_eq!(
            other.goroutines,
            (1..=21).map(|l| 1 + l as u64).sum::<u64>()
        );
        // All gone: each site counts zero for a window, then disappears.
        for s in 1..=12 {
            t.record(s as f64, []);
        }
        assert!(t.sites.is_empty(), "{} sites left", t.sites.len());
    }
}
