//! The overhead budget against a real Go program: when the hot probes would cost more than
//! the budget they run in windows, and the figures the foundation checks stay as accurate.

mod common;

use common::{accuracy, f};

/// The accuracy workload (2020 creations/s, a GC every 2 s) needs about 4,600 hot-probe
/// hits/s, 0.3 % of a core: a budget of 0.1 % puts the hot probes in windows.
#[test]
fn over_budget_the_figures_stay_exact() {
    for (release, variant) in [("1.19", "stripped"), ("1.27.3", "stripped")] {
        let test = format!("budget_go{release}_{variant}");
        let Some((m, last)) = accuracy::run_with(&test, release, variant, 40, &["--budget", "0.1"])
        else {
            return;
        };
        let duty = f(&last, "hot_probes_duty");
        assert!(
            duty > 0.1 && duty < 0.6,
            "{test}: hot probes attached {duty} of the time: {last}"
        );
        let sampled: Vec<&str> = last["sampled"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(
            sampled.contains(&"last_gc_stacks_scanned"),
            "{test}: {last}"
        );
        assert!(!sampled.contains(&"goroutines"), "{test}: {last}");
        assert_eq!(last["counts_source"], "runtime", "{test}: {last}");
        // What the budget weighs: two hits per creation plus a scan per live stack and cycle.
        let demand = f(&last, "hot_probe_demand_per_s");
        let want = 2.0 * m.create_per_s;
        assert!(
            demand >= want && demand <= want + 2000.0,
            "{test}: estimated {demand} hot hits/s, creations alone need {want}"
        );
        // The probes really were off most of the time: far fewer hits than the demand.
        let hits_per_s = f(&last, "probe_hits_total") / f(&last, "attached_seconds");
        assert!(
            hits_per_s < demand * 0.7,
            "{test}: {hits_per_s:.0} probe hits/s with the hot probes attached {duty} of the time (demand {demand:.0}/s)"
        );
        eprintln!(
            "{test}: duty {duty:.3}, {hits_per_s:.0} probe hits/s against a demand of {demand:.0}/s"
        );
    }
}

/// Within the budget (the default 1 %) nothing is sampled.
#[test]
fn within_budget_nothing_is_sampled() {
    let test = "budget_within";
    let Some((_, last)) = accuracy::run_with(test, "1.27.3", "plain", 10, &[]) else {
        return;
    };
    assert_eq!(f(&last, "hot_probes_duty"), 1.0, "{test}: {last}");
    assert!(
        last["sampled"].as_array().unwrap().is_empty(),
        "{test}: {last}"
    );
    let hits_per_s = f(&last, "probe_hits_total") / f(&last, "attached_seconds");
    assert!(
        hits_per_s > 3000.0,
        "{test}: only {hits_per_s:.0} probe hits/s with every probe attached"
    );
}
