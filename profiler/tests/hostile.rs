//! Tenants that lie. Programs that rewrite their own runtime's bookkeeping after the daemon
//! attached (`testdata/go/hostile`), beside an honest service: none is reported with its lie,
//! each is unwatched with a reason within two sampling intervals, the floods of the kernel's
//! maps stay within each process's share, and the daemon keeps to its CPU and memory while
//! the honest service is sampled every interval.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, pid_label, series};
use common::*;

/// Attacks that forge the bookkeeping: the process must be unwatched.
const LIES: &[&str] = &["allglen", "duplicates", "random", "goidclash", "stacks"];
/// Attacks that flood what the kernel side keeps: the process stays, bounded.
const FLOODS: &[&str] = &["sites", "gcflood"];
const INTERVAL: f64 = 2.0;
/// The DaemonSet's memory limit.
const MEMORY_LIMIT: f64 = 128.0 * 1024.0 * 1024.0;
/// The node's CPU target for the daemon.
const CPU_LIMIT: f64 = 0.03;
/// The hostile programs' own goroutines: 1000 parked, up to 2000 more while flooding sites.
const MOST_GOROUTINES: f64 = 5000.0;

#[test]
fn lying_tenants_are_unwatched_and_floods_bounded() {
    let test = "lying_tenants_are_unwatched_and_floods_bounded";
    if !require_root(test) {
        return;
    }
    // The plain build: its symbols give gprof runtime.allglen itself (a stripped one reads
    // len(allgs) instead, which the allglen attack leaves alone).
    let (Some(hostile), Some(workload)) = (
        go_target(test, "hostile", "1.27.3", "plain"),
        go_target(test, "workload", "1.27.3", "stripped"),
    ) else {
        return;
    };
    let honest = Spawned::start(Command::new(&workload).args([
        "-leak-rate",
        "0",
        "-churn-rate",
        "50",
        "-gc-every",
        "1s",
        "-parked",
        "200",
        "-report",
        "500ms",
    ]));
    let mut tenants: BTreeMap<&str, Spawned> = BTreeMap::new();
    for &attack in LIES.iter().chain(FLOODS) {
        let mut cmd = Command::new(&hostile);
        cmd.args(["-attack", attack, "-seconds", "40"])
            .stdin(Stdio::piped())
            .env("GOMAXPROCS", "1");
        tenants.insert(attack, Spawned::start(&mut cmd));
    }
    let daemon = Daemon::start("interval: 2s\nleaks:\n  stuck_after: 10s\n", &[]);
    let all: Vec<u32> = tenants
        .values()
        .map(Spawned::pid)
        .chain([honest.pid()])
        .collect();
    let watched = |m: &str, pid: u32| series(m, "gprof_goroutines", &pid_label(pid));
    assert!(
        wait_for(Duration::from_secs(30), || {
            let m = daemon.metrics();
            all.iter().all(|&pid| watched(&m, pid).is_some())
        }),
        "not all watched: {}\n{}",
        daemon.metrics(),
        daemon.log_text()
    );
    // Before the attack: every process's census done, and two rounds since (a quiet
    // process's census stands in for it).
    let mut since = None;
    assert!(
        wait_for(Duration::from_secs(60), || {
            let m = daemon.metrics();
            let now = metric(&m, "gprof_snapshot_timestamp_seconds").unwrap_or(0.0);
            if all
                .iter()
                .all(|&pid| series(&m, "gprof_census_age_seconds", &pid_label(pid)).is_some())
            {
                since.get_or_insert(now);
            }
            since.is_some_and(|t| now >= t + 2.0 * INTERVAL)
        }),
        "not every census done\n{}",
        daemon.log_text()
    );
    let m = daemon.metrics();
    let t0 = metric(&m, "gprof_snapshot_timestamp_seconds").unwrap();
    let cpu0 = metric(&m, "gprof_daemon_cpu_seconds_total").unwrap();
    let cycles0 = series(&m, "gprof_gc_cycles_total", &pid_label(honest.pid())).unwrap();
    for s in tenants.values() {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(s.pid() as i32, libc::SIGUSR1) };
    }
    let attacked = Instant::now();
    let mut gone: BTreeMap<&str, f64> = BTreeMap::new();
    let (mut worst_round, mut worst_late, mut peak_rss) = (0.0f64, 0.0f64, 0.0f64);
    let mut honest_missing = 0;
    let mut polls = 0;
    while attacked.elapsed() < Duration::from_secs(40) {
        let m = daemon.metrics();
        polls += 1;
        for (&attack, s) in &tenants {
            match watched(&m, s.pid()) {
                // Never the lie: 2^31, 4 million, 200,000 gs.
                Some(n) => assert!(
                    n <= MOST_GOROUTINES,
                    "{attack}: reported {n} goroutines\n{}",
                    daemon.log_text()
                ),
                None => {
                    gone.entry(attack)
                        .or_insert(attacked.elapsed().as_secs_f64());
                }
            }
        }
        honest_missing += usize::from(watched(&m, honest.pid()).is_none());
        worst_round = worst_round.max(metric(&m, "gprof_daemon_round_seconds").unwrap_or(0.0));
        worst_late = worst_late.max(metric(&m, "gprof_daemon_round_late_seconds").unwrap_or(0.0));
        peak_rss = peak_rss.max(metric(&m, "gprof_daemon_resident_memory_bytes").unwrap_or(0.0));
        std::thread::sleep(Duration::from_millis(250));
    }
    let m = daemon.metrics();
    let log = daemon.log_text();
    let cpu = (metric(&m, "gprof_daemon_cpu_seconds_total").unwrap() - cpu0)
        / attacked.elapsed().as_secs_f64();
    eprintln!(
        "unwatched after (s): {gone:?}; daemon {:.2} % of a core, peak RSS {:.1} MiB, longest round {worst_round:.3} s, latest start {worst_late:.3} s, {polls} polls",
        cpu * 100.0,
        peak_rss / 1048576.0
    );
    for &attack in LIES {
        let after = gone.get(attack).copied();
        // Two intervals, plus the poll's own period.
        assert!(
            after.is_some_and(|s| s <= 2.0 * INTERVAL + 0.25),
            "{attack}: unwatched after {after:?} s\n{log}"
        );
        let pid = tenants[attack].pid();
        let said = log
            .lines()
            .filter(|l| l.contains("no longer watching") && l.contains(&format!("PID {pid} ")))
            .count();
        assert_eq!(said, 1, "{attack}: logged {said} times\n{log}");
        assert!(
            !m.contains(&format!("pid=\"{pid}\"")),
            "{attack}: series left\n{m}"
        );
    }
    assert_eq!(
        series(
            &m,
            "gprof_unwatched_processes",
            "reason=\"self_check_failed\""
        ),
        Some(LIES.len() as f64),
        "{m}"
    );
    // The floods stay watched, each within its share of the kernel's maps.
    for &attack in FLOODS {
        assert!(!gone.contains_key(attack), "{attack} was unwatched\n{log}");
    }
    let sites = pid_label(tenants["sites"].pid());
    let refused = series(&m, "gprof_kernel_sites_refused_total", &sites).unwrap();
    assert!(refused > 0.0, "no site refused\n{m}");
    // Its quota, in the kernel's own map: 512 sites, its "other" key, and at most one more
    // per CPU (each CPU counts the entries it made; a count read stale lets one more in).
    let entries = common::daemon::kernel_site_entries(daemon.pid());
    let flooder = entries.get(&tenants["sites"].pid()).copied().unwrap_or(0);
    let cpus = std::thread::available_parallelism().unwrap().get();
    let quota = profiler_common::MAX_SITES_PER_PROC as usize + 1 + cpus;
    assert!(
        flooder >= profiler_common::MAX_SITES_PER_PROC as usize && flooder <= quota,
        "the flooding process holds {flooder} entries of the kernel's site map (quota {quota}): {entries:?}"
    );
    eprintln!(
        "the site flood holds {flooder} entries of the kernel's map (quota {quota}), {refused} refused"
    );
    let flood = pid_label(tenants["gcflood"].pid());
    assert!(series(&m, "gprof_kernel_records_throttled_total", &flood).unwrap() > 0.0);
    assert_eq!(
        metric(&m, "gprof_kernel_events_dropped_total"),
        Some(0.0),
        "{m}"
    );
    // The honest service: sampled every interval, its GC cycles all seen.
    assert_eq!(honest_missing, 0, "the honest service went missing");
    assert!(
        worst_round < INTERVAL / 2.0 && worst_late < INTERVAL / 2.0,
        "rounds took up to {worst_round} s, began up to {worst_late} s late"
    );
    // Its GC cycles (one a second) against its own count over the same rounds: every one
    // seen (a round samples a process up to its whole length before the snapshot's time, so
    // each end may be one cycle off).
    let cycles = series(&m, "gprof_gc_cycles_total", &pid_label(honest.pid())).unwrap() - cycles0;
    let t1 = metric(&m, "gprof_snapshot_timestamp_seconds").unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || honest
            .snapshot()
            .last()
            .is_some_and(|l| f(l, "unix") > t1)),
        "the honest service stopped reporting"
    );
    let own = honest.snapshot();
    let own_cycles = interpolate(&own, "num_gc", t1).expect("reports after the last round")
        - interpolate(&own, "num_gc", t0).expect("reports around the first");
    assert!(
        (cycles - own_cycles).abs() <= 2.0 && cycles >= 0.9 * (t1 - t0),
        "{cycles} GC cycles of the honest service seen in {:.0} s, its own count {own_cycles:.1}",
        t1 - t0
    );
    assert!(
        cpu < CPU_LIMIT,
        "the daemon used {:.2} % of a core",
        cpu * 100.0
    );
    assert!(
        peak_rss < MEMORY_LIMIT,
        "the daemon's RSS reached {peak_rss}"
    );
}
