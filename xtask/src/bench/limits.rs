//! What the README promises of gprof's cost, in one place. Every part of the benchmark reports
//! its figures here: each is printed beside its limit, and `cargo xtask bench` fails when one
//! is past it. A paired ratio is judged by its median, printed with the 95 % confidence
//! interval of that median, so that a reader sees how tight the estimate that guards it is.

use std::cell::RefCell;

/// A figure the README states a bound for.
#[derive(Clone, Copy, Debug)]
pub struct Limit {
    pub figure: &'static str,
    pub bound: Bound,
    /// Where the README says it.
    pub promise: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    AtMost(f64),
    AtLeast(f64),
}

impl Bound {
    fn holds(self, value: f64) -> bool {
        match self {
            Bound::AtMost(l) => value <= l,
            Bound::AtLeast(l) => value >= l,
        }
    }

    fn text(self) -> String {
        match self {
            Bound::AtMost(l) => format!("<= {l}"),
            Bound::AtLeast(l) => format!(">= {l}"),
        }
    }
}

/// The worst-case churn under `gprof top` (budget 1 %): time per goroutine, A over B.
pub const CHURN: Limit = Limit {
    figure: "worst-case churn, gprof top (budget 1 %): time per goroutine A/B",
    bound: Bound::AtMost(1.05),
    promise: "README, Overhead budget: at most 5 % on the worst churn",
};
/// An HTTP server, a goroutine per request: requests per CPU-second, A over B.
pub const HTTP: Limit = Limit {
    figure: "HTTP server, gprof top (budget 1 %): requests per CPU-second A/B",
    bound: Bound::AtLeast(0.95),
    promise: "README, Overhead budget: at most 5 % of a server's throughput",
};
/// A mostly idle service: its CPU time, A over B.
pub const IDLE: Limit = Limit {
    figure: "mostly idle service, gprof top (budget 1 %): CPU time A/B",
    bound: Bound::AtMost(1.05),
    promise: "README, Overhead budget: at most 5 % of an idle service's CPU",
};
/// The daemon at 300 processes: its CPU, in % of one core.
pub const DAEMON_CPU: Limit = Limit {
    figure: "gprof daemon at 300 processes: CPU, % of one core",
    bound: Bound::AtMost(3.0),
    promise: "README, Dashboard: the daemon's target, 3 % of a core",
};
/// The daemon at 300 processes: its peak resident memory, MiB.
pub const DAEMON_RSS: Limit = Limit {
    figure: "gprof daemon at 300 processes: peak RSS, MiB",
    bound: Bound::AtMost(64.0),
    promise: "README, Dashboard: the daemon's target, 64 MiB",
};
/// `gprof dump` of 100,000 parked goroutines, text: wall seconds (best of three).
pub const DUMP_SECONDS: Limit = Limit {
    figure: "gprof dump of 100,000 goroutines, text: wall seconds",
    bound: Bound::AtMost(0.5),
    promise: "README, gprof dump: 0.33 to 0.42 s",
};
/// The same dump's peak memory, MiB.
pub const DUMP_RSS: Limit = Limit {
    figure: "gprof dump of 100,000 goroutines, text: peak RSS, MiB",
    bound: Bound::AtMost(16.0),
    promise: "README, gprof dump: 11 MiB, memory that does not grow with the goroutines",
};
/// A loaded server dumped back to back: its requests per CPU-second, A over B.
pub const DUMPED_SERVER: Limit = Limit {
    figure: "HTTP server dumped back to back: requests per CPU-second A/B",
    bound: Bound::AtLeast(0.95),
    promise: "README, gprof dump: the target is never stopped (0.996 measured)",
};

/// The leak verdict's scenarios: the latest verdict, seconds after the first leaked goroutine
/// got stuck (`stuck_after` after the start).
pub const LEAK_FOUND: Limit = Limit {
    figure: "leak scenarios: latest verdict, seconds after the first goroutine got stuck",
    bound: Bound::AtMost(60.0),
    promise: "docs/leaks.md: every leak found within 46-56 s of its first goroutine getting stuck",
};
/// Their confirmed rates against the programs' own counts: the largest error, %.
pub const LEAK_RATE: Limit = Limit {
    figure: "leak scenarios: largest confirmed-rate error, %",
    bound: Bound::AtMost(15.0),
    promise: "docs/leaks.md: confirmed rates within -6 % to +12 %",
};
/// Groups wrongly called leaking, in every sample of every scenario.
pub const FALSE_VERDICTS: Limit = Limit {
    figure: "leak scenarios: false verdicts",
    bound: Bound::AtMost(0.0),
    promise: "docs/leaks.md: no false verdict",
};

/// One figure as measured: its value, and for a median of pairs its 95 % interval.
struct Reading {
    limit: Limit,
    value: f64,
    interval: Option<(f64, f64)>,
    note: String,
}

thread_local! {
    static READINGS: RefCell<Vec<Reading>> = const { RefCell::new(Vec::new()) };
}

/// Records a figure; prints it beside its limit at once.
pub fn report(limit: Limit, value: f64, interval: Option<(f64, f64)>, note: &str) {
    let ok = limit.bound.holds(value);
    println!(
        "{}: {value:.3}{} (limit {}){}{}",
        limit.figure,
        interval.map_or(String::new(), |(lo, hi)| format!(
            ", 95 % interval {lo:.3}-{hi:.3}"
        )),
        limit.bound.text(),
        if note.is_empty() {
            String::new()
        } else {
            format!(", {note}")
        },
        if ok { "" } else { "  PAST THE LIMIT" }
    );
    READINGS.with(|r| {
        r.borrow_mut().push(Reading {
            limit,
            value,
            interval,
            note: note.to_string(),
        })
    });
}

/// Prints every figure beside its limit; fails when one is past it.
pub fn verdict() -> anyhow::Result<()> {
    let readings = READINGS.with(|r| std::mem::take(&mut *r.borrow_mut()));
    if readings.is_empty() {
        return Ok(());
    }
    println!("\n## Figures against the README's limits\n");
    println!("| figure | measured | 95 % interval | limit | where the README says it | |");
    println!("|---|---|---|---|---|---|");
    let mut past = Vec::new();
    for r in &readings {
        let ok = r.limit.bound.holds(r.value);
        println!(
            "| {} | {:.3} | {} | {} | {} | {} |",
            r.limit.figure,
            r.value,
            r.interval
                .map_or("-".to_string(), |(lo, hi)| format!("{lo:.3}-{hi:.3}")),
            r.limit.bound.text(),
            r.limit.promise,
            if ok { "ok" } else { "PAST" }
        );
        if !ok {
            past.push(format!(
                "{}: {:.3} (limit {}){}",
                r.limit.figure,
                r.value,
                r.limit.bound.text(),
                if r.note.is_empty() {
                    String::new()
                } else {
                    format!("; {}", r.note)
                }
            ));
        }
    }
    if !past.is_empty() {
        anyhow::bail!("past the README's limits:\n  {}", past.join("\n  "));
    }
    Ok(())
}

/// The median of `v` and a distribution-free 95 % confidence interval for it: the order
/// statistics `x(k)` and `x(n+1-k)` with the largest `k` whose binomial tail
/// P(Bin(n, 1/2) < k) stays within 2.5 %. None when `v` is too short for one (n < 6).
pub fn median_interval(v: &[f64]) -> (f64, Option<(f64, f64)>) {
    let mut v: Vec<f64> = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let median = super::median(&mut v.clone());
    // P(Bin(n, 1/2) <= j), summed exactly.
    let mut tail = 0.0;
    let mut choose = 1.0f64;
    let mut k = 0;
    for j in 0..n {
        if j > 0 {
            choose = choose * (n - j + 1) as f64 / j as f64;
        }
        tail += choose * 0.5f64.powi(n as i32);
        if tail > 0.025 {
            break;
        }
        k = j + 1;
    }
    let interval = (k >= 1).then(|| (v[k - 1], v[n - k]));
    (median, interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_interval_is_the_binomial_one() {
        // n = 15: P(Bin(15, 1/2) <= 3) = 0.0176, <= 4 is 0.059: x(4) and x(12).
        let v: Vec<f64> = (1..=15).map(f64::from).collect();
        assert_eq!(median_interval(&v), (8.0, Some((4.0, 12.0))));
        // n = 6: P(<= 0) = 0.0156: x(1) and x(6).
        let v = [3.0, 1.0, 2.0, 6.0, 5.0, 4.0];
        assert_eq!(median_interval(&v), (3.5, Some((1.0, 6.0))));
        // n = 5: P(<= 0) = 0.031 > 0.025: no interval.
        assert_eq!(median_interval(&[1.0, 2.0, 3.0, 4.0, 5.0]).1, None);
    }

    #[test]
    fn a_figure_past_its_limit_fails_the_bench() {
        report(CHURN, 1.02, Some((1.0, 1.04)), "");
        assert!(verdict().is_ok());
        report(CHURN, 1.07, None, "");
        report(HTTP, 0.99, None, "");
        let e = verdict().unwrap_err().to_string();
        assert!(e.contains("1.070") && !e.contains("HTTP"), "{e}");
        assert!(verdict().is_ok(), "the readings are taken once");
    }
}
