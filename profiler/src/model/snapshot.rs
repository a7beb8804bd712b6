//! The one model every renderer reads: what gprof knows about a process at one instant.
//! Field names are the `--batch` JSON schema (and the base of the Prometheus names).

use profiler_common::PAUSE_BUCKETS;
use serde::Serialize;

use crate::model::health::Health;

/// Where the live goroutine count comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GoroutineSource {
    /// Read from the runtime's globals as `runtime.NumGoroutine` computes it.
    Runtime,
    /// The last GC cycle's stack-scan census (which includes system goroutines) followed by
    /// the creations and exits since; used only when the globals cannot be validated.
    GcCensus,
    /// Nothing to go on yet (no globals, no GC cycle seen).
    Unknown,
}

/// Where creation and exit counts come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CountsSource {
    /// The runtime's goroutine ID generator and counts (exact, no probe needed).
    Runtime,
    /// The creation and exit probes.
    Probes,
}

/// What the health score's leak penalty weighs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeakSignal {
    /// The confirmed leak rate: growth of the groups of stuck goroutines called leaking.
    StuckGoroutines,
    /// The net growth of live goroutines, when no census of the goroutines can be taken.
    NetGrowth,
}

/// One histogram bucket: pauses of at most `le_seconds` (and more than the previous bound).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Bucket {
    pub le_seconds: f64,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProcessSnapshot {
    /// Wall-clock time of the sample, seconds since the epoch (millisecond resolution).
    pub unix: f64,
    pub pid: u32,
    pub comm: String,
    pub go_version: String,
    /// Seconds since gprof attached; every `_total` counts from then.
    pub attached_seconds: f64,

    pub goroutines: i64,
    pub goroutines_source: GoroutineSource,
    /// System goroutines (not in `goroutines`, as in `runtime.NumGoroutine`).
    pub system_goroutines: Option<i64>,
    pub goroutines_created_total: u64,
    pub goroutines_exited_total: u64,
    pub counts_source: CountsSource,
    pub goroutine_create_rate_per_s: f64,
    pub goroutine_exit_rate_per_s: f64,
    /// Net growth of live goroutines per minute over the leak window (least-squares slope):
    /// load steps move it as much as leaks do; the leak verdict is `confirmed_leak_rate_per_min`.
    pub goroutine_leak_rate_per_min: f64,
    /// Exited goroutines kept by the runtime for reuse (global and per-P free lists).
    pub gfree_pool_size: Option<i64>,
    pub gomaxprocs: Option<u32>,

    /// Completed GC cycles.
    pub gc_cycles_total: u64,
    /// Stop-the-world pauses of the GC (two per cycle, more when mark termination restarts).
    pub gc_pauses_total: u64,
    pub gc_pause_seconds_total: f64,
    pub gc_pause_max_seconds: f64,
    /// p99 of the GC pauses within the pause window (0 when there were none).
    pub gc_pause_p99_seconds: f64,
    /// Pauses by log2 bucket, non-cumulative (JSON lists the non-empty ones).
    #[serde(serialize_with = "non_empty")]
    pub gc_pause_buckets: Vec<Bucket>,
    /// Stop-the-world pauses outside GC (ReadMemStats, GOMAXPROCS, tracing...).
    pub other_pauses_total: u64,
    pub other_pause_seconds_total: f64,

    /// Goroutine stacks scanned by the GC.
    pub stack_scans_total: u64,
    pub stack_scanned_bytes_total: u64,
    /// The last completed GC cycle's census: live goroutine stacks (system ones included)
    /// and their total size.
    pub last_gc_stacks_scanned: Option<u64>,
    pub last_gc_stack_bytes: Option<u64>,

    /// Share of the time the hot probes (creation, exit, stack scan) are attached: below 1
    /// when the overhead budget runs them in windows.
    pub hot_probes_duty: f64,
    /// How long the hot probes have been attached since gprof attached (equal to
    /// `attached_seconds` while within budget).
    pub hot_probes_attached_seconds_total: f64,
    /// Figures that are sampled (from windowed probes) rather than exact.
    pub sampled: Vec<&'static str>,
    /// Probe hits in this process counted by the kernel since attach (every probe: creation,
    /// exit and stack scan while attached, two per stop-the-world, one per GC cycle).
    pub probe_hits_total: u64,
    /// The hot probes' hits per second were they attached all the time, estimated from the
    /// runtime's counts (what the budget weighs); None before two samples.
    pub hot_probe_demand_per_s: Option<f64>,

    /// Creation sites: leak suspects first (by growth), then the most populous (from the
    /// goroutine census; empty when the census cannot run).
    pub top_leak_sites: Vec<SiteSnapshot>,
    /// The stacks goroutines hold (from the census), and stack growth (from the probes).
    pub goroutine_stacks: Option<StackSnapshot>,

    /// Blocked goroutines grouped by creation site, place they wait at and wait reason: up
    /// to 20, leaking first, then by stuck count (from the census).
    pub blocked_groups: Vec<BlockedGroup>,
    /// Goroutines blocked at the same place for `stuck_after` or longer (system ones aside).
    pub stuck_goroutines: u64,
    /// The stuck goroutines of the groups called leaking.
    pub leaking_goroutines: u64,
    /// Growth per minute of the leaking groups' stuck counts: the leak verdict's rate.
    pub confirmed_leak_rate_per_min: f64,
    /// What `health.leak_penalty` weighs.
    pub leak_signal: LeakSignal,
    /// What the kernel refused this process: records beyond its share per second (its pause
    /// totals stay exact; the p99 is then over the records kept), and creations and exits
    /// counted under its "other" site beyond its quota of sites.
    pub kernel_records_throttled_total: u64,
    pub kernel_sites_refused_total: u64,
    /// The census behind the sites, stacks and blocked groups: how old it is, and what it
    /// costs (see [`CensusFigures`]); None without a census.
    pub census: Option<CensusFigures>,

    pub health_score: f64,
    pub health: Health,
}

/// Where a process's goroutine census stands.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CensusFigures {
    /// Seconds since the census shown began (the blocked groups, sites and stacks are this
    /// old); None before the first census finished.
    pub age_seconds: Option<f64>,
    /// CPU time gprof spent on this process's censuses since attach, and on the last one.
    pub cpu_seconds_total: f64,
    pub last_cpu_seconds: Option<f64>,
    /// Blocked goroutines followed one by one, and the share of them (1: all; below 1 the
    /// census's memory limit has it follow a sample, and the blocked groups' `goroutines`
    /// and `stuck` are estimates).
    pub tracked_goroutines: u64,
    pub sample_fraction: f64,
}

impl ProcessSnapshot {
    /// Mean size of a live goroutine's stack in the last GC cycle.
    pub fn mean_stack_bytes(&self) -> Option<f64> {
        match (self.last_gc_stacks_scanned, self.last_gc_stack_bytes) {
            (Some(n), Some(b)) if n > 0 => Some(b as f64 / n as f64),
            _ => None,
        }
    }
}

/// Live goroutines of one creation site.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SiteSnapshot {
    /// `function (file:line)` of the `go` statement.
    pub site: String,
    pub function: String,
    pub file: String,
    pub line: u32,
    /// The function the goroutines start in.
    pub started: String,
    /// Started by the runtime for itself (not in `runtime.NumGoroutine`).
    pub system: bool,
    pub goroutines: u64,
    /// Net growth per minute over the leak window (least-squares slope).
    pub growth_per_min: f64,
    /// Its live count grows steadily: a leak suspect.
    pub suspect: bool,
    /// Goroutines created and exited here since attach, and the creation rate over the rate
    /// window, as the kernel counts them (only while the hot probes are attached: sampled
    /// under the overhead budget).
    pub created_total: Option<u64>,
    pub exited_total: Option<u64>,
    pub create_rate_per_s: Option<f64>,
}

/// Blocked goroutines with the same creation site, place they wait at and wait reason.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BlockedGroup {
    /// `function (file:line)` of the `go` statement that created them.
    pub created_at: String,
    /// The function they run (the one the `go` statement names, through the compiler's
    /// wrapper): what the runtime's own leak report names a leak by.
    pub started: String,
    /// `function (file:line)` where they wait: the first call outside the standard library's
    /// waiting and I/O machinery (see `goruntime::is_wait_machinery`).
    pub blocked_at: String,
    /// As the runtime prints it (`chan send`, `IO wait`, `syscall`...).
    pub wait_reason: String,
    pub goroutines: u64,
    /// Those blocked there for `stuck_after` or longer.
    pub stuck: u64,
    pub oldest_blocked_seconds: f64,
    /// Growth of the stuck count per minute (Theil–Sen): over the horizon that confirmed the
    /// leak, else over the leak window.
    pub stuck_growth_per_min: f64,
    /// The stuck count grows persistently (see the README's "Leak verdict").
    pub leaking: bool,
    /// The ID of one of its goroutines (`gprof dump` shows its whole stack).
    pub example_goroutine: Option<u64>,
    /// Where that goroutine's g is in `runtime.allgs` (for `top`'s stack view).
    #[serde(skip)]
    pub example_index: Option<u64>,
}

/// Stack memory, from the census of every g (exact as of the reading) and the stack growth
/// probe.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StackSnapshot {
    /// Live goroutines (system ones included) and the stack memory they hold.
    pub live_goroutines: u64,
    pub live_stack_bytes: u64,
    /// Live goroutines by stack size.
    pub live_stack_sizes: Vec<StackSize>,
    /// Dead gs (the free-G pool and gs not reused yet), how many still hold a stack, and
    /// its memory: what reused goroutines keep although nothing runs on it.
    pub dead_gs: u64,
    pub dead_gs_with_stack: u64,
    pub dead_stack_bytes: u64,
    /// Stack growths (`runtime.copystack` to a larger stack) since attach, and the sizes
    /// grown to.
    pub stack_growths_total: u64,
    pub stack_growth_sizes: Vec<StackSize>,
}

/// A stack size and how many stacks (or growths) have it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct StackSize {
    pub bytes: u64,
    pub count: u64,
}

fn non_empty<S: serde::Serializer>(buckets: &[Bucket], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(buckets.iter().filter(|b| b.count > 0))
}

/// A watched process in the daemon: its snapshot and who it belongs to.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProcessRecord {
    /// With the PID, the process's identity (a reused PID is another process).
    #[serde(skip)]
    pub start_time: u64,
    pub tenant: String,
    pub pod_uid: Option<String>,
    pub container_id: Option<String>,
    #[serde(flatten)]
    pub snapshot: ProcessSnapshot,
}

/// A tenant's processes, aggregated: sums of what adds up, the worst of what does not.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TenantSnapshot {
    pub tenant: String,
    pub processes: usize,
    pub goroutines: i64,
    pub goroutine_leak_rate_per_min: f64,
    pub stuck_goroutines: u64,
    pub leaking_goroutines: u64,
    pub confirmed_leak_rate_per_min: f64,
    pub gfree_pool_size: i64,
    pub gc_pause_p99_seconds: f64,
    pub gc_pause_max_seconds: f64,
    /// The score of its worst process.
    pub health_score: f64,
    /// The process that sets the tenant's health score.
    pub worst_pid: u32,
}

impl TenantSnapshot {
    /// Aggregates the records of one tenant (`records` all carry `tenant`).
    pub fn aggregate(tenant: &str, records: &[&ProcessRecord]) -> Self {
        let worst = records
            .iter()
            .min_by(|a, b| a.snapshot.health_score.total_cmp(&b.snapshot.health_score));
        Self {
            tenant: tenant.to_string(),
            processes: records.len(),
            goroutines: records.iter().map(|r| r.snapshot.goroutines).sum(),
            goroutine_leak_rate_per_min: records
                .iter()
                .map(|r| r.snapshot.goroutine_leak_rate_per_min)
                .sum(),
            stuck_goroutines: records.iter().map(|r| r.snapshot.stuck_goroutines).sum(),
            leaking_goroutines: records.iter().map(|r| r.snapshot.leaking_goroutines).sum(),
            confirmed_leak_rate_per_min: records
                .iter()
                .map(|r| r.snapshot.confirmed_leak_rate_per_min)
                .fold(0.0, |a, b| a + b),
            gfree_pool_size: records
                .iter()
                .filter_map(|r| r.snapshot.gfree_pool_size)
                .sum(),
            gc_pause_p99_seconds: records
                .iter()
                .map(|r| r.snapshot.gc_pause_p99_seconds)
                .fold(0.0, f64::max),
            gc_pause_max_seconds: records
                .iter()
                .map(|r| r.snapshot.gc_pause_max_seconds)
                .fold(0.0, f64::max),
            health_score: worst.map_or(100.0, |w| w.snapshot.health_score),
            worst_pid: worst.map_or(0, |w| w.snapshot.pid),
        }
    }
}

/// Everything the daemon knows at one instant.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DaemonSnapshot {
    pub unix: f64,
    pub processes: Vec<ProcessRecord>,
    pub tenants: Vec<TenantSnapshot>,
    pub alerts: Vec<crate::model::alert::Alert>,
    pub stats: DaemonStats,
}

/// The daemon's own figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DaemonStats {
    pub attached_executables: usize,
    /// Entries in the kernel's PROCS filter map (equals the watched processes).
    pub kernel_filter_entries: usize,
    /// Entries in the kernel's creation-site map (sites of watched processes only).
    pub kernel_site_entries: usize,
    pub attach_failures_total: u64,
    /// Go processes not watched, by reason (every reason listed, 0 included).
    pub unwatched_processes: std::collections::BTreeMap<String, usize>,
    pub alert_notifications_failed_total: u64,
    pub alert_notifications_dropped_total: u64,
    /// Samples of watched processes that failed, by reason (every reason listed); each
    /// process is sampled again, backing off, until it reads again or exits.
    pub sample_errors_total: std::collections::BTreeMap<String, u64>,
    /// Censuses (reads of every goroutine) that could not run or failed midway.
    pub census_errors_total: u64,
    /// Blocked goroutines followed one by one over all processes, and the most the census's
    /// memory limit allows.
    pub census_tracked_goroutines: u64,
    pub census_tracked_limit: u64,
    /// What the kernel side could not record.
    pub kernel_losses: crate::model::snapshot::KernelLosses,
    /// The last sampling round: how long it took (every process sampled, the round's census
    /// work, the snapshot), and how late it began against the schedule.
    pub round_seconds: f64,
    pub round_late_seconds: f64,
}

/// A realistic snapshot for the renderers' tests: a process leaking 1200 goroutines/min.
#[cfg(test)]
pub(crate) fn example() -> ProcessSnapshot {
    let mut hist = [0u64; profiler_common::PAUSE_BUCKETS];
    hist[14] = 3; // 16-32 µs
    hist[16] = 1; // 65-131 µs
    ProcessSnapshot {
        unix: 1_700_000_000.123,
        pid: 42,
        comm: "svc".into(),
        go_version: "go1.27.3".into(),
        attached_seconds: 75.0,
        goroutines: 1500,
        goroutines_source: GoroutineSource::Runtime,
        system_goroutines: Some(5),
        goroutines_created_total: 4000,
        goroutines_exited_total: 2500,
        counts_source: CountsSource::Runtime,
        goroutine_create_rate_per_s: 2020.0,
        goroutine_exit_rate_per_s: 2000.0,
        goroutine_leak_rate_per_min: 1200.0,
        gfree_pool_size: Some(40),
        gomaxprocs: Some(2),
        gc_cycles_total: 2,
        gc_pauses_total: 4,
        gc_pause_seconds_total: 0.0042,
        gc_pause_max_seconds: 0.0001,
        gc_pause_p99_seconds: 0.0001,
        gc_pause_buckets: crate::model::snapshot::buckets(&hist),
        other_pauses_total: 3,
        other_pause_seconds_total: 0.00002,
        stack_scans_total: 3000,
        stack_scanned_bytes_total: 3000 * 2048,
        last_gc_stacks_scanned: Some(1505),
        last_gc_stack_bytes: Some(1505 * 8192),
        hot_probes_duty: 1.0,
        hot_probes_attached_seconds_total: 3600.0,
        sampled: Vec::new(),
        probe_hits_total: 1_234_567,
        hot_probe_demand_per_s: Some(4040.0),
        top_leak_sites: vec![SiteSnapshot {
            site: "main.serve (/src/app/main.go:42)".into(),
            function: "main.serve".into(),
            file: "/src/app/main.go".into(),
            line: 42,
            started: "main.serve.func1".into(),
            system: false,
            goroutines: 1400,
            growth_per_min: 1200.0,
            suspect: true,
            created_total: Some(1500),
            exited_total: Some(100),
            create_rate_per_s: Some(20.0),
        }],
        goroutine_stacks: Some(StackSnapshot {
            live_goroutines: 1505,
            live_stack_bytes: 1505 * 8192,
            live_stack_sizes: vec![StackSize {
                bytes: 8192,
                count: 1505,
            }],
            dead_gs: 40,
            dead_gs_with_stack: 40,
            dead_stack_bytes: 40 * 8192,
            stack_growths_total: 12,
            stack_growth_sizes: vec![StackSize {
                bytes: 16384,
                count: 12,
            }],
        }),
        blocked_groups: vec![BlockedGroup {
            created_at: "main.serve (/src/app/main.go:42)".into(),
            started: "main.serve.func1".into(),
            blocked_at: "main.serve.func1 (/src/app/main.go:47)".into(),
            wait_reason: "chan send".into(),
            goroutines: 1420,
            stuck: 1200,
            oldest_blocked_seconds: 75.0,
            stuck_growth_per_min: 1200.0,
            leaking: true,
            example_goroutine: Some(4711),
            example_index: Some(120),
        }],
        stuck_goroutines: 1200,
        leaking_goroutines: 1200,
        confirmed_leak_rate_per_min: 1200.0,
        leak_signal: LeakSignal::StuckGoroutines,
        kernel_records_throttled_total: 0,
        kernel_sites_refused_total: 0,
        census: None,
        health_score: 60.0,
        health: crate::model::health::Health {
            score: 60.0,
            leak_penalty: 40.0,
            ..Default::default()
        },
    }
}

/// Counts of what the kernel side could not record (see `profiler_common::loss`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelLosses {
    pub events_dropped: u64,
    pub sites_full: u64,
    pub site_counts_lost: u64,
    /// Records dropped because their process streamed more than its share per second.
    pub events_throttled: u64,
    /// Creations and exits counted under a process's "other" site: it had its quota of sites.
    pub sites_over_quota: u64,
}

/// The kernel's log2 histogram as buckets with upper bounds in seconds.
pub fn buckets(hist: &[u64; PAUSE_BUCKETS]) -> Vec<Bucket> {
    hist.iter()
        .enumerate()
        .map(|(i, &count)| Bucket {
            le_seconds: if i + 1 == PAUSE_BUCKETS {
                f64::INFINITY
            } else {
                (1u64 << (i + 1)) as f64 / 1e9
            },
            count,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds_are_powers_of_two_nanoseconds() {
        let mut h = [0u64; PAUSE_BUCKETS];
        h[10] = 3;
        let b = buckets(&h);
        assert_eq!(
            b[10],
            Bucket {
                le_seconds: 2048e-9,
                count: 3
            }
        );
        assert!(b[PAUSE_BUCKETS - 1].le_seconds.is_infinite());
    }
}
