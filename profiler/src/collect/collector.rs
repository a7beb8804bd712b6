//! Per-process collection: turns raw readings (kernel counters, GC state, streamed events,
//! the runtime's own counts) into a [`ProcessSnapshot`], keeping the short history that rates
//! and trends need. No I/O here: `target` does the reading.

use std::collections::VecDeque;
use std::sync::Arc;

use profiler_common::{Counters, Event, GcState, STACK_BUCKET_SHIFT, event_kind, stw_kind};

use crate::collect::blocked::{BlockedSummary, BlockedTracker, TOP_GROUPS};
use crate::collect::sites::{SiteName, SiteNames, SiteTracker, TOP_SITES};
use crate::config::params::{HealthModel, Windows};
use crate::inspect::census::Census;
use crate::inspect::runtime_state::RuntimeCounts;
use crate::model::health::HealthInputs;
use crate::model::snapshot::buckets;
use crate::model::snapshot::{
    CensusFigures, CountsSource, GoroutineSource, LeakSignal, ProcessSnapshot, StackSize,
    StackSnapshot,
};
use crate::model::stats::{Series, quantile};

/// What does not change while a process is watched.
#[derive(Clone, Debug)]
pub struct Identity {
    pub pid: u32,
    pub comm: String,
    pub go_version: String,
}

/// One round of raw readings.
#[derive(Clone, Copy, Debug)]
pub struct Reading {
    /// Seconds since attach (monotonic).
    pub t: f64,
    /// Wall clock, seconds since the epoch.
    pub unix: f64,
    pub counters: Counters,
    pub gc: GcState,
    pub runtime: Option<RuntimeCounts>,
    pub hot: HotProbes,
    /// The hot probes' estimated hits per second were they always attached.
    pub hot_demand: Option<f64>,
    /// Where the census stands (None without one).
    pub census: Option<CensusStatus>,
}

/// Where a process's census stands at a reading.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CensusStatus {
    /// Collector seconds when the census shown began.
    pub began: Option<f64>,
    pub cpu_seconds_total: f64,
    /// CPU seconds the last census took.
    pub last_cpu_seconds: Option<f64>,
}

/// The state of the hot probes (creation, exit, stack scan), which the budget may window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HotProbes {
    /// Monotonic ns since when they are attached without a break; None while detached.
    pub on_since_ns: Option<u64>,
    /// The last period they were attached and no longer are: (from, to) in monotonic ns.
    pub last_window_ns: Option<(u64, u64)>,
    /// The share of time they are attached (1: always).
    pub duty: f64,
}

impl HotProbes {
    pub const ALWAYS: HotProbes = HotProbes {
        on_since_ns: Some(0),
        last_window_ns: None,
        duty: 1.0,
    };
}

/// Figures estimated from a sample of the blocked goroutines when the census's memory limit
/// has it follow only some of them one by one.
pub const BLOCKED_SAMPLE_FIGURES: &[&str] = &[
    "blocked_groups.goroutines",
    "blocked_groups.stuck",
    "stuck_goroutines",
    "leaking_goroutines",
    "confirmed_leak_rate_per_min",
];

/// Figures that come from the hot probes, and so are sampled while those run in windows.
pub const HOT_PROBE_FIGURES: &[&str] = &[
    "stack_scans_total",
    "stack_scanned_bytes_total",
    "last_gc_stacks_scanned",
    "last_gc_stack_bytes",
    "goroutine_stacks.stack_growths_total",
    "goroutine_stacks.stack_growth_sizes",
    "top_leak_sites.created_total",
    "top_leak_sites.exited_total",
    "top_leak_sites.create_rate_per_s",
];

#[derive(Debug)]
pub struct ProcessCollector {
    identity: Identity,
    windows: Windows,
    health: HealthModel,
    created: Series,
    exited: Series,
    live: Series,
    /// GC pauses (monotonic ns at the end, duration ns) within the pause window.
    pauses: VecDeque<(u64, u64)>,
    last_cycle: Option<(u64, u64)>,
    /// The census baseline for [`GoroutineSource::GcCensus`]: live stacks at the last cycle,
    /// and created - exited at that moment.
    census: Option<(i64, i64)>,
    /// The runtime's counts when gprof attached: creations and exits count from there.
    baseline: Option<RuntimeCounts>,
    /// When the last GC sweep termination ended (the mark phase, and its stack scans, begin).
    mark_start_ns: u64,
    /// Monotonic ns of the last update, and how long the hot probes were attached until then.
    last_update_ns: Option<u64>,
    hot_attached_ns: u64,
    /// The creations and exits reported last.
    totals: (u64, u64),
    /// Live goroutines per creation site, from the census.
    sites: SiteTracker,
    /// The last census's stack figures.
    stacks: Option<StackSnapshot>,
    /// Blocked goroutines: ages, groups, leak verdicts.
    blocked: BlockedTracker,
    /// The groups as of the last census (None before one).
    blocked_summary: Option<BlockedSummary>,
    /// cgo's idle extra-M gs at the last census: in `sched.ngsys`, not system goroutines.
    extra_m: i64,
}

impl ProcessCollector {
    pub fn new(identity: Identity, windows: Windows, health: HealthModel) -> Self {
        let horizon = windows.rate_seconds.max(windows.leak_seconds) + 1.0;
        Self {
            identity,
            windows,
            health,
            created: Series::new(horizon),
            exited: Series::new(horizon),
            live: Series::new(horizon),
            pauses: VecDeque::new(),
            last_cycle: None,
            census: None,
            baseline: None,
            mark_start_ns: 0,
            last_update_ns: None,
            hot_attached_ns: 0,
            totals: (0, 0),
            sites: SiteTracker::new(windows.leak_seconds, windows.rate_seconds),
            stacks: None,
            blocked: BlockedTracker::new(windows.stuck_after_seconds, windows.leak_seconds),
            blocked_summary: None,
            extra_m: 0,
        }
    }

    /// Takes in the kernel's per-site creation and exit totals at `t` seconds.
    pub fn absorb_site_counts(
        &mut self,
        t: f64,
        counts: impl IntoIterator<Item = (Arc<SiteName>, u64, u64)>,
    ) {
        self.sites.record_counts(t, counts);
    }

    /// Goroutines followed one by one.
    pub fn tracked(&self) -> usize {
        self.blocked.tracked()
    }

    /// The blocked goroutines followed one by one: a census feeds them in chunk by chunk.
    pub fn blocked(&mut self) -> &mut BlockedTracker {
        &mut self.blocked
    }

    /// A census ends at `t` seconds (`allgs` holding `len` gs): its figures, its sites named.
    /// Its blocked goroutines went to [`Self::blocked`] chunk by chunk.
    pub fn absorb_census(&mut self, t: f64, census: &Census, names: &SiteNames, len: u64) {
        self.blocked.end(t, len);
        self.record_census(t, census, names);
    }

    /// Nothing happened in the process since the last census (`census`): it stands at `t`.
    pub fn restate_census(&mut self, t: f64, census: &Census, names: &SiteNames) {
        self.blocked.restate(t);
        self.record_census(t, census, names);
    }

    fn record_census(&mut self, t: f64, census: &Census, names: &SiteNames) {
        self.extra_m = census.extra_m as i64;
        self.blocked_summary = Some(self.blocked.summary(TOP_GROUPS));
        self.sites.record(
            t,
            census
                .sites
                .iter()
                .filter_map(|(k, &n)| Some((names.get(k)?.clone(), n))),
        );
        let sizes = |m: &std::collections::BTreeMap<u64, u64>| {
            m.iter()
                .map(|(&bytes, &count)| StackSize { bytes, count })
                .collect()
        };
        self.stacks = Some(StackSnapshot {
            live_goroutines: census.live,
            live_stack_bytes: census.live_stack_bytes,
            live_stack_sizes: sizes(&census.stack_sizes),
            dead_gs: census.dead,
            dead_gs_with_stack: census.dead_with_stack,
            dead_stack_bytes: census.dead_stack_bytes,
            ..StackSnapshot::default()
        });
    }

    /// The runtime's counts at attach, from which creations and exits are counted.
    pub fn set_baseline(&mut self, counts: RuntimeCounts) {
        self.baseline = Some(counts);
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Takes the kernel's records for this process (call before [`Self::update`]). A GC
    /// cycle's stack census counts only if the hot probes were attached through its mark phase.
    pub fn absorb(&mut self, events: &[Event], counters: &Counters, hot: HotProbes) {
        for e in events {
            log::debug!("PID {}: kernel record {e:?}", self.identity.pid);
            match e.kind {
                event_kind::PAUSE if stw_kind::is_gc(e.b as u32) => {
                    self.pauses.push_back((e.ts_ns, e.a));
                    if e.b as u32 == stw_kind::GC_SWEEP_TERM {
                        self.mark_start_ns = e.ts_ns;
                    }
                }
                event_kind::GC_CYCLE
                    if hot.on_since_ns.is_some_and(|t| t <= self.mark_start_ns) =>
                {
                    self.last_cycle = Some((e.b, e.c));
                    self.census =
                        Some((e.b as i64, counters.created as i64 - counters.exited as i64));
                }
                _ => {}
            }
        }
    }

    pub fn update(&mut self, r: &Reading, now_ns: u64) -> ProcessSnapshot {
        let c = &r.counters;
        // The hot probes' attached time since the last update: the current period and the
        // last closed one (the budget switches them at most twice between two samples).
        let attach_ns = now_ns.saturating_sub((r.t * 1e9) as u64);
        let from = self.last_update_ns.unwrap_or(attach_ns);
        let overlap = |(a, b): (u64, u64)| b.min(now_ns).saturating_sub(a.max(from));
        self.hot_attached_ns += r
            .hot
            .on_since_ns
            .map_or(0, |since| overlap((since, now_ns)))
            + r.hot.last_window_ns.map_or(0, overlap);
        self.last_update_ns = Some(now_ns);
        // Creations and exits: from the runtime's goroutine IDs and counts (exact whatever
        // the probes do), else from the probes.
        let (created, exited, counts_source) = match (&r.runtime, &self.baseline) {
            (Some(now), Some(base)) => {
                let created = (now.goids - base.goids).max(0);
                let alive = |x: &RuntimeCounts| x.goroutines() + x.ngsys;
                let exited = (created - (alive(now) - alive(base))).max(0);
                (created as u64, exited as u64, CountsSource::Runtime)
            }
            _ => (c.created, c.exited, CountsSource::Probes),
        };
        // Under heavy churn a reading can be a batch of IDs behind the last one: totals are
        // counters, they never go down.
        let created = created.max(self.totals.0);
        let exited = exited.max(self.totals.1);
        self.totals = (created, exited);
        self.created.push(r.t, created as f64);
        self.exited.push(r.t, exited as f64);
        let (goroutines, source) = match (&r.runtime, self.census) {
            (Some(rt), _) => (rt.goroutines(), GoroutineSource::Runtime),
            (None, Some((scanned, net_then))) => (
                scanned + (c.created as i64 - c.exited as i64 - net_then),
                GoroutineSource::GcCensus,
            ),
            (None, None) => (0, GoroutineSource::Unknown),
        };
        if source != GoroutineSource::Unknown {
            self.live.push(r.t, goroutines as f64);
        }
        let window_ns = (self.windows.pause_seconds * 1e9) as u64;
        while self
            .pauses
            .front()
            .is_some_and(|&(end, _)| now_ns.saturating_sub(end) > window_ns)
        {
            self.pauses.pop_front();
        }
        let mut recent: Vec<u64> = self.pauses.iter().map(|&(_, d)| d).collect();
        let p99 = quantile(&mut recent, 0.99).unwrap_or(0) as f64 / 1e9;
        let leak = self
            .live
            .slope(self.windows.leak_seconds)
            .map_or(0.0, |s| s * 60.0);
        let blocked = self.blocked_summary.clone().unwrap_or_default();
        // The health score weighs confirmed leaks; without a census (no validated
        // `runtime.allgs`) only the net growth is left to weigh.
        let (leak_signal, leak_for_health) = match &self.blocked_summary {
            Some(b) => (LeakSignal::StuckGoroutines, b.confirmed_leak_rate_per_min),
            None => (LeakSignal::NetGrowth, leak),
        };
        let g = &r.gc;
        let mut snapshot = ProcessSnapshot {
            unix: (r.unix * 1000.0).round() / 1000.0,
            pid: self.identity.pid,
            comm: self.identity.comm.clone(),
            go_version: self.identity.go_version.clone(),
            attached_seconds: r.t,
            goroutines,
            goroutines_source: source,
            // As the runtime's dumps count them: without cgo's idle extra-M gs.
            system_goroutines: r.runtime.map(|rt| (rt.ngsys - self.extra_m).max(0)),
            goroutines_created_total: created,
            goroutines_exited_total: exited,
            counts_source,
            goroutine_create_rate_per_s: self
                .created
                .rate(self.windows.rate_seconds)
                .unwrap_or(0.0),
            goroutine_exit_rate_per_s: self.exited.rate(self.windows.rate_seconds).unwrap_or(0.0),
            goroutine_leak_rate_per_min: leak,
            gfree_pool_size: r.runtime.map(|rt| rt.free_pool()),
            gomaxprocs: r.runtime.map(|rt| rt.procs),
            gc_cycles_total: g.gc_cycles,
            gc_pauses_total: g.gc_pauses,
            gc_pause_seconds_total: g.gc_pause_total_ns as f64 / 1e9,
            gc_pause_max_seconds: g.gc_pause_max_ns as f64 / 1e9,
            gc_pause_p99_seconds: p99,
            gc_pause_buckets: buckets(&g.gc_pause_hist),
            other_pauses_total: g.other_pauses,
            other_pause_seconds_total: g.other_pause_total_ns as f64 / 1e9,
            stack_scans_total: c.stack_scans,
            stack_scanned_bytes_total: c.stack_scan_bytes,
            last_gc_stacks_scanned: self.last_cycle.map(|(n, _)| n),
            last_gc_stack_bytes: self.last_cycle.map(|(_, b)| b),
            hot_probes_duty: r.hot.duty,
            hot_probes_attached_seconds_total: (self.hot_attached_ns as f64 / 1e9).min(r.t),
            sampled: {
                let mut v = if r.hot.duty < 1.0 {
                    HOT_PROBE_FIGURES.to_vec()
                } else {
                    Vec::new()
                };
                if blocked.sample_fraction < 1.0 {
                    v.extend(BLOCKED_SAMPLE_FIGURES);
                }
                if g.events_throttled > 0 {
                    v.push("gc_pause_p99_seconds");
                }
                v
            },
            probe_hits_total: c.created
                + c.exited
                + c.stack_scans
                + c.stack_copies
                + 2 * (g.gc_pauses + g.other_pauses)
                + g.gc_cycles,
            hot_probe_demand_per_s: r.hot_demand,
            top_leak_sites: self.sites.top(TOP_SITES),
            blocked_groups: blocked.groups,
            stuck_goroutines: blocked.stuck,
            leaking_goroutines: blocked.leaking,
            confirmed_leak_rate_per_min: blocked.confirmed_leak_rate_per_min,
            leak_signal,
            kernel_records_throttled_total: g.events_throttled,
            kernel_sites_refused_total: c.sites_refused,
            census: r.census.map(|c| CensusFigures {
                age_seconds: c.began.map(|b| ((r.t - b).max(0.0) * 10.0).round() / 10.0),
                cpu_seconds_total: c.cpu_seconds_total,
                last_cpu_seconds: c.last_cpu_seconds,
                tracked_goroutines: self.blocked.tracked() as u64,
                sample_fraction: blocked.sample_fraction,
            }),
            goroutine_stacks: self
                .stacks
                .clone()
                .or_else(|| (c.stack_copies > 0).then(StackSnapshot::default))
                .map(|k| StackSnapshot {
                    stack_growths_total: c.stack_growths,
                    stack_growth_sizes: c
                        .stack_growth_sizes
                        .iter()
                        .enumerate()
                        .filter(|&(_, &n)| n > 0)
                        .map(|(i, &count)| StackSize {
                            bytes: 1u64 << (i as u32 + STACK_BUCKET_SHIFT),
                            count,
                        })
                        .collect(),
                    ..k
                }),
            health_score: 0.0,
            health: Default::default(),
        };
        let health = self.health.score(&HealthInputs {
            leak_rate_per_min: (source != GoroutineSource::Unknown).then_some(leak_for_health),
            gc_pause_p99_seconds: Some(p99),
            gfree_pool_size: snapshot.gfree_pool_size.map(|p| p as f64),
            goroutines: Some(goroutines as f64),
            mean_stack_bytes: snapshot.mean_stack_bytes(),
        });
        snapshot.health_score = health.score.round();
        snapshot.health = health;
        snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collector() -> ProcessCollector {
        let id = Identity {
            pid: 1,
            comm: "w".into(),
            go_version: "go1.27.3".into(),
        };
        ProcessCollector::new(id, Windows::default(), HealthModel::default())
    }

    fn reading(t: f64, created: u64, exited: u64, live: i64) -> Reading {
        Reading {
            t,
            unix: 1_700_000_000.0 + t,
            counters: Counters {
                created,
                exited,
                ..Default::default()
            },
            gc: GcState::default(),
            runtime: Some(RuntimeCounts {
                allglen: live + 10,
                ngsys: 4,
                sched_free: 4,
                p_free: 2,
                procs: 2,
                goids: created as i64 + 100,
                allgs_len: None,
            }),
            hot: HotProbes::ALWAYS,
            hot_demand: None,
            census: None,
        }
    }

    #[test]
    fn rates_and_leak_from_a_steady_workload() {
        let mut c = collector();
        // Counts from the runtime (goroutine IDs), not the probes, which report nothing here.
        c.set_baseline(reading(0.0, 0, 0, 100).runtime.unwrap());
        let mut last = None;
        for i in 0..=30 {
            let t = i as f64;
            // 2020 created/s, of which 20/s never exit.
            let s = c.update(
                &reading(t, 2020 * i, 2000 * i, 100 + 20 * i as i64),
                (t * 1e9) as u64,
            );
            last = Some(s);
        }
        let s = last.unwrap();
        assert_eq!(s.goroutines, 700);
        assert_eq!(s.goroutine_create_rate_per_s, 2020.0);
        assert_eq!(s.goroutine_exit_rate_per_s, 2000.0);
        assert!((s.goroutine_leak_rate_per_min - 1200.0).abs() < 1e-6);
        assert_eq!(s.gfree_pool_size, Some(6));
        assert_eq!(s.health.leak_penalty, 40.0);
        assert_eq!(s.health_score, 60.0);
    }

    #[test]
    fn pauses_feed_p99_and_census_fallback() {
        let id = Identity {
            pid: 1,
            comm: "w".into(),
            go_version: "go1.19.8".into(),
        };
        let mut c = ProcessCollector::new(id, Windows::default(), HealthModel::default());
        let counters = Counters {
            created: 50,
            exited: 10,
            ..Default::default()
        };
        let mut events: Vec<Event> = (1..=100)
            .map(|i| Event {
                kind: event_kind::PAUSE,
                ts_ns: 1_000_000_000,
                a: i * 1000,
                b: stw_kind::GC_MARK_TERM as u64,
                ..Default::default()
            })
            .collect();
        events.push(Event {
            kind: event_kind::PAUSE,
            a: 9_000_000_000,
            b: 7, // ReadMemStats: not a GC pause
            ..Default::default()
        });
        events.push(Event {
            kind: event_kind::GC_CYCLE,
            a: 1,
            b: 500,
            c: 500 * 8192,
            ..Default::default()
        });
        c.absorb(&events, &counters, HotProbes::ALWAYS);
        let mut r = reading(1.0, 60, 10, 0);
        r.runtime = None;
        let s = c.update(&r, 2_000_000_000);
        assert_eq!(s.gc_pause_p99_seconds, 99e-6);
        assert_eq!(s.goroutines_source, GoroutineSource::GcCensus);
        assert_eq!(s.goroutines, 510);
        assert_eq!(s.mean_stack_bytes(), Some(8192.0));
        assert_eq!(s.counts_source, CountsSource::Probes);
    }

    #[test]
    fn a_census_counts_only_when_the_scans_were_probed_throughout() {
        let mut c = collector();
        let cycle = |sweep_ns: u64, scans: u64| {
            [
                Event {
                    kind: event_kind::PAUSE,
                    ts_ns: sweep_ns,
                    a: 1000,
                    b: stw_kind::GC_SWEEP_TERM as u64,
                    ..Default::default()
                },
                Event {
                    kind: event_kind::GC_CYCLE,
                    ts_ns: sweep_ns + 5_000_000,
                    b: scans,
                    c: scans * 2048,
                    ..Default::default()
                },
            ]
        };
        let windowed = |since: Option<u64>| HotProbes {
            on_since_ns: since,
            last_window_ns: None,
            duty: 0.1,
        };
        // Attached since t=100: a cycle marking from t=200 counts.
        c.absorb(&cycle(200, 50), &Counters::default(), windowed(Some(100)));
        // Attached only from t=350, after that cycle's mark began at t=300: it does not.
        c.absorb(&cycle(300, 77), &Counters::default(), windowed(Some(350)));
        // Detached: does not either.
        c.absorb(&cycle(400, 88), &Counters::default(), windowed(None));
        let mut r = reading(1.0, 0, 0, 10);
        r.hot = windowed(None);
        let s = c.update(&r, 1_000);
        assert_eq!(s.last_gc_stacks_scanned, Some(50));
        assert_eq!(s.hot_probes_duty, 0.1);
        assert!(s.sampled.contains(&"last_gc_stacks_scanned"));
    }

    #[test]
    fn attached_time_of_the_hot_probes() {
        const S: u64 = 1_000_000_000;
        let mut c = collector();
        let at = |t: u64, on: Option<u64>, last: Option<(u64, u64)>| {
            let mut r = reading((t - 10) as f64, 0, 0, 10);
            r.hot = HotProbes {
                on_since_ns: on.map(|s| s * S),
                last_window_ns: last.map(|(a, b)| (a * S, b * S)),
                duty: 0.5,
            };
            r
        };
        // Attached at t=10 with the probes off; a window from 12 to 13, another from 14.
        assert_eq!(
            c.update(&at(11, None, None), 11 * S)
                .hot_probes_attached_seconds_total,
            0.0
        );
        let s = c.update(&at(13, None, Some((12, 13))), 13 * S);
        assert_eq!(s.hot_probes_attached_seconds_total, 1.0);
        let s = c.update(&at(15, Some(14), Some((12, 13))), 15 * S);
        assert_eq!(s.hot_probes_attached_seconds_total, 2.0);
        // Cut by a surge at 15 (right after that sample), back on at 16.
        let s = c.update(&at(17, Some(16), Some((14, 15))), 17 * S);
        assert_eq!(s.hot_probes_attached_seconds_total, 3.0);
    }
}
