//! Where leaks come from, against real Go programs: the creation site of leaking goroutines
//! named by file and line (also in stripped binaries) with its rate, and the stack figures
//! against the runtime's own.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::daemon::{Alertmanager, Daemon, series};
use common::*;
use serde_json::Value;

/// `leaksites` leaks 20 goroutines/s at one `go` statement and 5/s at another, beside 500
/// short-lived ones/s at a third; it reports each statement's file:line (runtime.Caller).
#[test]
fn the_leaking_go_statements_are_named() {
    let test = "the_leaking_go_statements_are_named";
    if !require_root(test) {
        return;
    }
    for (release, variant) in [
        ("1.19", "plain"),
        ("1.19", "stripped"),
        ("1.27.3", "plain"),
        ("1.27.3", "stripped"),
    ] {
        let case = format!("{test} go{release} {variant}");
        let Some(program) = go_target(test, "leaksites", release, variant) else {
            return;
        };
        let target = Spawned::start(Command::new(&program).args(["-report", "500ms"]));
        // Ten-second leak window, fifteen samples: a user sees the site within a minute.
        let (ok, lines, err) = run_gprof(&[
            "top",
            "--batch",
            "--pid",
            &target.pid().to_string(),
            "--leak-window",
            "10",
            "--iterations",
            "15",
        ]);
        assert!(ok, "{case}: gprof failed: {err}");
        let own = target.snapshot();
        drop(target);
        let last = lines.last().unwrap_or_else(|| panic!("{case}: no output"));
        // The program's report nearest to gprof's last sample.
        let t = f(last, "unix");
        let own = own
            .iter()
            .min_by(|a, b| {
                (f(a, "unix") - t)
                    .abs()
                    .total_cmp(&(f(b, "unix") - t).abs())
            })
            .unwrap_or_else(|| panic!("{case}: no report"));
        let sites = last["top_leak_sites"].as_array().expect("top_leak_sites");
        let suspects: Vec<&Value> = sites.iter().filter(|s| s["suspect"] == true).collect();
        assert_eq!(
            suspects.len(),
            2,
            "{case}: want the two leaking statements as suspects: {sites:#?}"
        );
        for (i, (name, per_min)) in [("fast", 1200.0), ("slow", 300.0)].into_iter().enumerate() {
            let s = suspects[i];
            let want = &own[name];
            assert_eq!(s["file"], want["file"], "{case}: {name}: {s}");
            assert_eq!(s["line"], want["line"], "{case}: {name}: {s}");
            assert_eq!(s["started"], "main.blockForever", "{case}: {s}");
            // The kernel's count of creations there (all probes attached: a light load).
            let rate = f(s, "create_rate_per_s");
            assert!(
                (rate * 60.0 - per_min).abs() <= per_min * 0.05,
                "{case}: {name} site creates {rate}/s"
            );
            assert_eq!(f(s, "exited_total"), 0.0, "{case}: {s}");
            let growth = f(s, "growth_per_min");
            assert!(
                (growth - per_min).abs() <= per_min * 0.05,
                "{case}: {name} site grows {growth}/min, want {per_min} ±5 %"
            );
            // Its live count is the program's own count of goroutines leaked there, within
            // the leaks of a quarter second (the two readings are not simultaneous).
            let live = f(s, "goroutines");
            let leaked = f(want, "leaked");
            assert!(
                (live - leaked).abs() <= per_min / 240.0 + 2.0,
                "{case}: {name}: {live} live at the site, the program leaked {leaked}"
            );
            eprintln!(
                "{case}: {} grows {growth:.1}/min ({live} live, program {leaked})",
                s["site"]
            );
        }
        let churn = &own["churn"];
        assert!(
            sites
                .iter()
                .filter(|s| s["line"] == churn["line"])
                .all(|s| s["suspect"] == false),
            "{case}: the short-lived goroutines' site is no suspect: {sites:#?}"
        );
    }
}

/// `stackgrow`: 1000 parked goroutines holding grown stacks, then 10,000 short-lived ones
/// recursing as deep (five doublings from 2 KiB to 64 KiB each) and exiting.
#[test]
fn stack_growth_and_stack_memory_match_the_runtime() {
    let test = "stack_growth_and_stack_memory_match_the_runtime";
    if !require_root(test) {
        return;
    }
    for (release, variant) in [("1.19", "stripped"), ("1.27.3", "stripped")] {
        let case = format!("{test} go{release} {variant}");
        let Some(program) = go_target(test, "stackgrow", release, variant) else {
            return;
        };
        let mut target = Command::new(&program)
            .args([
                "-parked", "1000", "-n", "500", "-batches", "20", "-depth", "40",
            ])
            .env("GOMAXPROCS", "2")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let gprof = Spawned::start(Command::new(gprof()).args([
            "top",
            "--batch",
            "--pid",
            &target.id().to_string(),
            "--interval",
            "0.5",
            "--budget",
            "off",
        ]));
        assert!(
            wait_for(Duration::from_secs(10), || !gprof.snapshot().is_empty()),
            "{case}: gprof never sampled"
        );
        let mut stdin = target.stdin.take().unwrap();
        stdin.write_all(b"go\n").unwrap();
        let mut line = String::new();
        BufReader::new(target.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let own: Value = serde_json::from_str(&line).expect("report");
        // Two samples after the report (the program holds still meanwhile).
        let seen = gprof.snapshot().len();
        assert!(
            wait_for(Duration::from_secs(5), || gprof.snapshot().len()
                >= seen + 2),
            "{case}: gprof stopped sampling"
        );
        let last = gprof.snapshot().last().unwrap().clone();
        drop(stdin);
        let _ = target.wait();
        drop(gprof);
        let k = &last["goroutine_stacks"];
        assert!(k.is_object(), "{case}: no stack figures: {last}");

        // The parked goroutines' stacks, as the census finds them (the GC may have shrunk
        // them since they grew): the size the short-lived ones grew to is the deepest one.
        let sizes = k["live_stack_sizes"].as_array().unwrap();
        let parked: f64 = sizes
            .iter()
            .filter(|s| f(s, "bytes") >= 8192.0)
            .map(|s| f(s, "count"))
            .sum();
        assert!(parked >= 1000.0, "{case}: {sizes:?}");
        let grown = k["stack_growth_sizes"].as_array().unwrap();
        let deepest = grown.iter().map(|s| f(s, "bytes")).fold(0.0, f64::max);
        let doublings = (deepest / 2048.0).log2().round();
        let short_lived = f(&own, "short_lived");
        let want = short_lived * doublings;
        let growths = f(k, "stack_growths_total");
        assert!(
            (growths - want).abs() <= want * 0.1,
            "{case}: {growths} stack growths, want {short_lived} goroutines x {doublings} doublings"
        );
        for s in grown {
            assert!(
                (f(s, "count") - short_lived).abs() <= short_lived * 0.1,
                "{case}: every size from 4 KiB to {deepest} is grown to once per goroutine: {grown:?}"
            );
        }

        // Stack memory: what live and dead gs hold, against the runtime's StackInuse (which
        // also counts the free stacks its allocator keeps: per-P caches, partly used spans).
        let held = f(k, "live_stack_bytes") + f(k, "dead_stack_bytes");
        let inuse = f(&own, "stack_inuse");
        // runtime/metrics says the same, read a moment later.
        let metric = f(&own, "heap_stacks_metric");
        assert!(
            (metric - inuse).abs() <= inuse * 0.01,
            "{case}: {metric} vs {inuse}"
        );
        assert!(
            (held - inuse).abs() <= inuse * 0.1,
            "{case}: gprof finds {held} bytes of stacks, the runtime {inuse}"
        );
        assert!(
            held <= inuse,
            "{case}: the stacks gs hold are part of what the runtime has in use"
        );
        // Dead gs: the free-G pool, as the runtime counts it (read a moment apart).
        let pool = f(&last, "gfree_pool_size");
        assert!(
            (f(k, "dead_gs") - pool).abs() <= 2.0,
            "{case}: {} dead gs, a pool of {pool}: {k}",
            k["dead_gs"]
        );
        eprintln!(
            "{case}: {growths} growths up to {deepest} B, stacks held {held} B vs StackInuse {inuse} B ({:+.1} %), {} dead gs holding {} B",
            (held - inuse) / inuse * 100.0,
            k["dead_gs"],
            k["dead_stack_bytes"]
        );
    }
}

/// The daemon's alert on a leaking creation site reaches a real Alertmanager naming the
/// site, and the site's series are on /metrics.
#[test]
fn the_daemon_alerts_on_the_leaking_site() {
    let test = "the_daemon_alerts_on_the_leaking_site";
    if !require_root(test) {
        return;
    }
    let Some(program) = go_target(test, "leaksites", "1.27.3", "stripped") else {
        return;
    };
    let Some((am, dir)) = Alertmanager::for_test(test) else {
        return;
    };
    let config = format!(
        "interval: 1s\nwindows:\n  leak: 10s\nthresholds:\n  - metric: site_goroutine_growth_per_min\n    warning: 600\n    for: 3s\nalerting:\n  alertmanager_url: \"{}\"\n",
        am.url()
    );
    let daemon = Daemon::start(&config, &[]);
    let target = Spawned::start(
        Command::new(&program)
            .env("GPROF_TENANT", "pay")
            .args(["-report", "1s"]),
    );
    let alerts = || -> Vec<Value> {
        am.alerts()
            .into_iter()
            // Other Go programs on the host may leak too: ours is tenant pay.
            .filter(|a| {
                a["labels"]["alertname"] == "GprofGoroutineSiteLeak"
                    && a["labels"]["tenant"] == "pay"
            })
            .collect()
    };
    assert!(
        wait_for(Duration::from_secs(45), || !alerts().is_empty()),
        "{test}: no site alert reached Alertmanager"
    );
    let own = target.snapshot().last().cloned().expect("report");
    let fast = format!(
        "main.leakFast ({}:{})",
        own["fast"]["file"].as_str().unwrap(),
        own["fast"]["line"]
    );
    let alert = &alerts()[0];
    assert_eq!(alert["labels"]["tenant"], "pay", "{alert}");
    assert_eq!(alert["annotations"]["site"], fast.as_str(), "{alert}");
    let live = series(
        &daemon.metrics(),
        "gprof_goroutines_by_site",
        &format!("site=\"{fast}\""),
    )
    .unwrap_or_else(|| panic!("{test}: no gprof_goroutines_by_site for {fast}"));
    assert!(live > 0.0, "{test}: {live} live at {fast}");
    eprintln!(
        "{test}: Alertmanager got {}",
        alert["annotations"]["summary"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
