//! The census at scale: a stripped Go 1.27 program with a million parked goroutines at three
//! sites (`testdata/go/crowd`), under `gprof top` and then under the daemon beside fifty
//! small services. The live count stays exact, every goroutine is stuck within 30 s more
//! than `stuck_after` under `gprof top` and 90 s more under the daemon (the README's bounds),
//! the groups' counts are exact (all of them fit in the census's memory limit) and estimated within 5 %
//! under a limit that holds a fifth of them, gprof stays within 64 MiB (the daemon 72 MiB),
//! and the small services keep their interval.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, pid_label, series};
use common::*;
use serde_json::Value;

const PARKED: u64 = 1_000_000;
const STUCK_AFTER: f64 = 10.0;
/// How long after blocking (or after attach, for goroutines blocked before) each must be
/// stuck: under `gprof top` (measured on 2026-12-08: 23 s after they parked, twice)...
const STUCK_WITHIN_TOP: f64 = STUCK_AFTER + 30.0;
/// ...and under the daemon beside fifty small services, from its start (56-85 s in five
/// runs: its first census of the million takes 2.2-2.4 s of CPU beside them, over 40-50 s of
/// rounds at the census's 2 % of a core).
const STUCK_WITHIN_DAEMON: f64 = STUCK_AFTER + 90.0;
/// Peak resident memory: `gprof top` (55 MiB measured), the daemon (63 MiB).
const RSS_LIMIT_TOP_KIB: u64 = 64 * 1024;
const RSS_LIMIT_DAEMON_KIB: u64 = 72 * 1024;
const SMALL: usize = 50;
/// The census memory limit of the sampled run, and its samples: 8 MiB follow 209,715
/// goroutines (40 bytes each), so one in 8 of the million is followed.
const SAMPLED_MEMORY_MIB: u64 = 8;
const SAMPLED_SAMPLES: u32 = 20;
/// The groups' estimated counts against the truth (each estimate rests on about 41,700
/// goroutines followed: a binomial spread of 0.5 %; the hash of the g's address spreads a
/// little wider: -1.3 % to +1.2 % in two runs).
const SAMPLED_TOLERANCE: f64 = 0.05;

/// Peak RSS (VmHWM) of a live process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn groups(sample: &Value) -> Vec<(String, u64, u64)> {
    let mut out: Vec<(String, u64, u64)> = sample["blocked_groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["created_at"].as_str().unwrap().starts_with("main.main"))
        .map(|g| {
            (
                g["blocked_at"].as_str().unwrap().to_string(),
                g["goroutines"].as_u64().unwrap(),
                g["stuck"].as_u64().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_million_parked_goroutines() {
    let test = "a_million_parked_goroutines";
    if !require_root(test) {
        return;
    }
    let (Some(crowd), Some(workload)) = (
        go_target(test, "crowd", "1.27.3", "stripped"),
        go_target(test, "workload", "1.27.3", "stripped"),
    ) else {
        return;
    };
    let program = Spawned::start(Command::new(&crowd).args(["-n", &PARKED.to_string()]));
    assert!(
        wait_for(Duration::from_secs(120), || !program.snapshot().is_empty()),
        "crowd did not park its goroutines: {}",
        program.stderr_text()
    );
    let parked = program.snapshot()[0].clone();
    let live = f(&parked, "num_goroutine");
    assert_eq!(live, PARKED as f64 + 1.0, "{parked}");
    let parked_by = f(&parked, "parked_by");

    // gprof top, 100 samples a second apart.
    let mut top = Spawned::start(Command::new(gprof()).args([
        "top",
        "--pid",
        &program.pid().to_string(),
        "--batch",
        "--interval",
        "1",
        "--iterations",
        "100",
        "--stuck-after",
        &STUCK_AFTER.to_string(),
    ]));
    let top_pid = top.pid();
    let mut peak = 0;
    while top.child.try_wait().ok().flatten().is_none() {
        peak = peak.max(peak_rss_kib(top_pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(500));
    }
    let (ok, samples, stderr) = top.finish();
    assert!(ok, "{stderr}");
    assert!(samples.len() >= 95, "{} samples\n{stderr}", samples.len());
    for s in &samples {
        assert_eq!(f(s, "goroutines"), live, "{s}");
    }
    let stuck_at = samples
        .iter()
        .find(|s| f(s, "stuck_goroutines") >= PARKED as f64)
        .map(|s| f(s, "unix"));
    eprintln!(
        "top: all stuck {:?} s after they parked; peak RSS {peak} KiB",
        stuck_at.map(|t| t - parked_by)
    );
    assert!(
        stuck_at.is_some_and(|t| t - parked_by <= STUCK_WITHIN_TOP),
        "stuck at {stuck_at:?}, parked by {parked_by}"
    );
    let last = samples.last().unwrap();
    // Exact: a third of them at each site, every one stuck.
    let mut got: Vec<u64> = groups(last).iter().map(|g| g.1).collect();
    got.sort();
    assert_eq!(
        got,
        [PARKED / 3, PARKED / 3, PARKED / 3 + 1],
        "{:?}",
        groups(last)
    );
    assert!(
        groups(last).iter().all(|g| g.1 == g.2),
        "{:?}",
        groups(last)
    );
    assert_eq!(last["census"]["sample_fraction"], 1.0);
    assert!(last["census"]["tracked_goroutines"].as_u64().unwrap() >= PARKED);
    let ages: Vec<f64> = samples
        .iter()
        .filter_map(|s| s["census"]["age_seconds"].as_f64())
        .collect();
    assert!(ages.iter().all(|&a| a <= 60.0), "census ages {ages:?}");
    assert!(
        peak <= RSS_LIMIT_TOP_KIB,
        "gprof top's RSS peaked at {peak} KiB"
    );

    // Under a census memory limit that holds a fifth of them: a sample followed (one g in 8,
    // picked by a hash of its address), the groups' counts estimated from it, the live count
    // still exact.
    let sampled_run = Spawned::start(Command::new(gprof()).args([
        "top",
        "--pid",
        &program.pid().to_string(),
        "--batch",
        "--interval",
        "1",
        "--iterations",
        &SAMPLED_SAMPLES.to_string(),
        "--stuck-after",
        &STUCK_AFTER.to_string(),
        "--census-memory-mib",
        &SAMPLED_MEMORY_MIB.to_string(),
    ]));
    let (ok, samples, stderr) = sampled_run.finish();
    assert!(ok, "{stderr}");
    let last = samples.last().expect("samples");
    assert_eq!(f(last, "goroutines"), live, "{last}");
    let fraction = f(&last["census"], "sample_fraction");
    let tracked = f(&last["census"], "tracked_goroutines");
    let limit = (SAMPLED_MEMORY_MIB << 20) as f64 / 40.0;
    assert!(
        fraction < 1.0 && tracked <= limit && tracked >= limit / 2.0,
        "a sample of {fraction} ({tracked} followed) under a limit of {limit} followed goroutines"
    );
    let sampled: Vec<&str> = last["sampled"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        sampled.contains(&"blocked_groups.goroutines") && !sampled.contains(&"goroutines"),
        "{sampled:?}"
    );
    let estimates = groups(last);
    assert_eq!(estimates.len(), 3, "{estimates:?}");
    for (at, n, _) in &estimates {
        let error = (*n as f64 - (PARKED / 3) as f64) / (PARKED / 3) as f64;
        assert!(
            error.abs() <= SAMPLED_TOLERANCE,
            "{at}: {n} estimated, {} parked there ({:+.2} %)",
            PARKED / 3,
            error * 100.0
        );
    }
    eprintln!(
        "sampled: one in {:.0} followed ({tracked} goroutines), groups estimated at {:?} for {} each",
        1.0 / fraction,
        estimates.iter().map(|g| g.1).collect::<Vec<_>>(),
        PARKED / 3
    );

    // The daemon, beside fifty small services.
    let small: Vec<Spawned> = (0..SMALL)
        .map(|_| {
            Spawned::start(
                Command::new(&workload)
                    .args([
                        "-leak-rate",
                        "1",
                        "-churn-rate",
                        "20",
                        "-gc-every",
                        "2s",
                        "-parked",
                        "20",
                        "-report",
                        "0",
                    ])
                    .stdin(Stdio::null()),
            )
        })
        .collect();
    let daemon = Daemon::start("interval: 2s\nleaks:\n  stuck_after: 10s\n", &[]);
    let started = Instant::now();
    let crowd_label = pid_label(program.pid());
    let (mut worst_round, mut worst_late, mut peak_rss) = (0.0f64, 0.0f64, 0.0f64);
    let mut all_stuck = None;
    let mut missing = 0;
    let mut watched_all = false;
    while started.elapsed() < Duration::from_secs_f64(STUCK_WITHIN_DAEMON + 10.0) {
        let m = daemon.metrics();
        if let Some(n) = series(&m, "gprof_goroutines", &crowd_label) {
            assert_eq!(n, live, "the daemon's count of crowd");
        }
        if all_stuck.is_none()
            && series(&m, "gprof_goroutines_stuck", &crowd_label)
                .is_some_and(|n| n >= PARKED as f64)
        {
            all_stuck = Some(started.elapsed().as_secs_f64());
        }
        let present = small
            .iter()
            .filter(|s| series(&m, "gprof_goroutines", &pid_label(s.pid())).is_some())
            .count();
        if watched_all {
            missing += SMALL - present;
            worst_round = worst_round.max(metric(&m, "gprof_daemon_round_seconds").unwrap_or(0.0));
            worst_late =
                worst_late.max(metric(&m, "gprof_daemon_round_late_seconds").unwrap_or(0.0));
        }
        watched_all |= present == SMALL;
        peak_rss = peak_rss.max(metric(&m, "gprof_daemon_resident_memory_bytes").unwrap_or(0.0));
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "daemon: all stuck {all_stuck:?} s after it started; peak RSS {:.1} MiB; longest round {worst_round:.3} s, latest start {worst_late:.3} s",
        peak_rss / 1048576.0
    );
    assert!(
        watched_all,
        "the small services were not all watched\n{}",
        daemon.log_text()
    );
    assert!(
        all_stuck.is_some_and(|t| t <= STUCK_WITHIN_DAEMON),
        "stuck after {all_stuck:?}\n{}",
        daemon.log_text()
    );
    assert_eq!(missing, 0, "small services missing from samples");
    assert!(
        worst_round < 1.0 && worst_late < 1.0,
        "rounds took up to {worst_round} s and began up to {worst_late} s late"
    );
    assert!(
        peak_rss <= (RSS_LIMIT_DAEMON_KIB * 1024) as f64,
        "daemon RSS {peak_rss}"
    );
}
