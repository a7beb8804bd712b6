//! `gprof top --batch` against real Go programs that print their own runtime figures
//! (`runtime.NumGoroutine`, `debug.ReadGCStats`, runtime/metrics): every figure gprof shows is
//! compared with the runtime's.

mod common;

use common::{accuracy, f};

const SAMPLES: u32 = 60;
/// The confirmed leak rate against the workload's 1200/min (README, accuracy table).
const CONFIRMED_TOLERANCE: f64 = 0.02;

/// Every figure against the runtime's, and the leak verdict: with goroutines stuck after
/// 5 s, the workload's leak (1200/min) is confirmed within the minute and costs the health
/// score its leak weight.
fn check(test: &str, release: &str, variant: &str) {
    let Some((m, last)) =
        accuracy::run_with(test, release, variant, SAMPLES, &["--stuck-after", "5"])
    else {
        return;
    };
    m.assert_confirmed(test, accuracy::ACCEPTANCE, CONFIRMED_TOLERANCE);
    let confirmed = m.confirmed_per_min;
    let health = f(&last, "health_score");
    assert!(
        health <= 61.0,
        "{test}: a confirmed 1200/min leak must cost the leak weight, score {health}"
    );
    eprintln!("{test}: confirmed {confirmed:.1}/min, health {health}");
}

#[test]
fn go119_unstripped() {
    check("go119_unstripped", "1.19", "plain");
}

#[test]
fn go119_stripped() {
    check("go119_stripped", "1.19", "stripped");
}

#[test]
fn go127_unstripped() {
    check("go127_unstripped", "1.27.3", "plain");
}

#[test]
fn go127_stripped() {
    check("go127_stripped", "1.27.3", "stripped");
}
