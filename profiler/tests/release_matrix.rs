//! Every supported Go release (1.19, 1.21-1.27) in every build variant (plain, stripped,
//! -trimpath, cgo with external linking, PIE): live goroutines, leak rate and GC cycles
//! against the runtime's own figures, and the free-G pool against the runtime's free lists.
//! Cases run four at a time, and the two tests one after the other, so that at most four
//! programs and their gprofs share the two cores; every failure is reported, with the table
//! of measured errors.

mod common;

use std::collections::VecDeque;
use std::process::Command;
use std::sync::Mutex;

use common::*;

const RELEASES: &[&str] = &[
    "1.19", "1.21.13", "1.22.10", "1.23.9", "1.24.11", "1.25.5", "1.26.6", "1.27.3",
];
const VARIANTS: &[&str] = &["plain", "stripped", "trimpath", "cgo", "pie"];
const SAMPLES: u32 = 16;
/// Goroutines stuck after 3 s and a 10 s leak window: the workload's leak is confirmed within
/// the 16 samples (a horizon decides once it covers three quarters of the window).
const VERDICT_ARGS: &[&str] = &["--stuck-after", "3", "--leak-window", "10"];
/// The confirmed leak rate against the workload's 1200/min (README: 1196.5-1201.0 for the net
/// growth; the verdict's Theil-Sen slope over 8 buckets of stuck counts is as close).
const CONFIRMED_TOLERANCE: f64 = 0.02;
const AT_ONCE: usize = 4;

/// Held by each test for its whole run, so that the two tests of this file never overlap.
static ONE_TEST_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_test_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_TEST_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `cases` on [`AT_ONCE`] threads; returns (case, Ok(result) or Err(panic message)).
fn run_all<T: Send>(
    cases: Vec<(String, String)>,
    f: impl Fn(&str, &str) -> T + Sync,
) -> Vec<(String, String, Result<T, String>)> {
    let queue = Mutex::new(cases.into_iter().collect::<VecDeque<_>>());
    let results = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..AT_ONCE {
            s.spawn(|| {
                loop {
                    // A statement of its own: in a `while let`, the queue's guard would live
                    // through the body and the cases would run one at a time.
                    let next = queue.lock().unwrap().pop_front();
                    let Some((release, variant)) = next else {
                        break;
                    };
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        f(&release, &variant)
                    }))
                    .map_err(|e| {
                        e.downcast_ref::<String>()
                            .cloned()
                            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default()
                    });
                    results.lock().unwrap().push((release, variant, r));
                }
            });
        }
    });
    let mut r = results.into_inner().unwrap();
    r.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    r
}

fn cases(variants: &[&str]) -> Vec<(String, String)> {
    RELEASES
        .iter()
        .flat_map(|r| variants.iter().map(move |v| (r.to_string(), v.to_string())))
        .collect()
}

#[test]
fn goroutines_leak_and_gc_in_every_release_and_variant() {
    let test = "goroutines_leak_and_gc_in_every_release_and_variant";
    if !require_root(test) {
        return;
    }
    let _turn = one_test_at_a_time();
    for (r, v) in cases(VARIANTS) {
        go_target(test, "workload", &r, &v).expect("built by cargo xtask test");
    }
    let results = run_all(cases(VARIANTS), |release, variant| {
        let case = format!("go{release}/{variant}");
        let (m, _) =
            accuracy::run_with(&case, release, variant, SAMPLES, VERDICT_ARGS).expect("measured");
        m.assert_confirmed(&case, accuracy::ACCEPTANCE, CONFIRMED_TOLERANCE);
        m
    });
    eprintln!(
        "\n{:<10} {:<9} {:>10} {:>12} {:>10} {:>10} {:>12} {:>10} {:>10}",
        "release",
        "variant",
        "live err",
        "leak/min",
        "create/s",
        "GC cycles",
        "pause ratio",
        "confirmed",
        "after"
    );
    let mut failures = Vec::new();
    for (release, variant, r) in &results {
        match r {
            Ok(m) => eprintln!(
                "go{release:<8} {variant:<9} {:>9.2}% {:>12.1} {:>10.1} {:>10} {:>12.3} {:>10.1} {:>9.0}s",
                m.max_live_error * 100.0,
                m.leak_per_min,
                m.create_per_s,
                m.gc_cycles,
                m.pause_ratio,
                m.confirmed_per_min,
                m.confirmed_after.unwrap_or(f64::NAN)
            ),
            Err(e) => {
                eprintln!("go{release:<8} {variant:<9} FAILED: {e}");
                failures.push(format!("go{release}/{variant}: {e}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        results.len(),
        failures.join("\n")
    );
}

/// At quiet checkpoints (nothing starts or ends), the pool gprof reads must be exactly the
/// runtime's: `allglen - NumGoroutine` is the pool plus the system goroutines in every
/// release, and from Go 1.26 runtime/metrics gives the system goroutines on their own.
#[test]
fn free_pool_equals_the_runtime_free_lists() {
    let test = "free_pool_equals_the_runtime_free_lists";
    if !require_root(test) {
        return;
    }
    let _turn = one_test_at_a_time();
    let results = run_all(cases(&["plain", "stripped"]), |release, variant| {
        let bin = go_target(test, "freelist", release, variant).expect("built by cargo xtask test");
        let program = Spawned::start(Command::new(&bin).args(accuracy::FREELIST_ARGS));
        let pid = program.pid().to_string();
        let (_, samples, err) = run_gprof(&["top", "--batch", "--interval", "0.5", "--pid", &pid]);
        let own = program.snapshot();
        accuracy::free_pool(&samples, &own, &err)
    });
    let mut failures = Vec::new();
    for (release, variant, r) in &results {
        match r {
            Ok(p) => eprintln!(
                "go{release:<8} {variant:<9} free-G pool exact in {} samples (sizes {:?})",
                p.len(),
                p
            ),
            Err(e) => failures.push(format!("go{release}/{variant}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
