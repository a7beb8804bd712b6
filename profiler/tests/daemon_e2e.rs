//! The daemon end to end, with a real Prometheus scraping it and a real Alertmanager receiving
//! its alerts, all on loopback: two Go programs under tenants `insure-prod` (leaking 40
//! goroutines/s) and `billing` (not leaking).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::{Alertmanager, Daemon, Prometheus, pid_label, series};
use common::*;
use serde_json::Value;

#[test]
fn tenants_alerts_prometheus_and_alertmanager() {
    let test = "tenants_alerts_prometheus_and_alertmanager";
    if !require_root(test) {
        return;
    }
    let Some(workload) = go_target(test, "workload", "1.27.3", "stripped") else {
        return;
    };
    let Some(old_workload) = go_target(test, "workload", "1.19", "plain") else {
        return;
    };
    let Some(alertmanager) = which("prometheus-alertmanager") else {
        skip(
            test,
            "prometheus-alertmanager is needed (cargo xtask setup)",
        );
        return;
    };
    let dir = std::env::temp_dir().join(format!("gprof-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // A real Alertmanager on loopback.
    let am = Alertmanager::start(&alertmanager, &dir);

    // The configuration, ports changed; goroutines stuck after 5 s, so that the leak
    // verdict comes within the test.
    let config = "metrics_addr: \"127.0.0.1:9477\"\ninterval: 2s\nleaks:\n  stuck_after: 5s\ntenants:\n  env_var: GPROF_TENANT\n  default: unassigned\nthresholds:\n  - metric: goroutine_leak_rate_per_min\n    warning: 600\n    critical: 1200\n    for: 10s\nalerting:\n  alertmanager_url: \"http://127.0.0.1:9093\"\n";
    let daemon = Daemon::start(config, &["--alertmanager-url", &am.url()]);

    // A real Prometheus scraping the daemon every second.
    let Some(prom) = Prometheus::for_test(test, &dir, daemon.port, &[]) else {
        return;
    };

    // The two tenants' programs start after the daemon: each must be watched within 2 s.
    let started = Instant::now();
    let tenant_program = |bin: &std::path::Path, tenant: &str, leak_per_s: &str| {
        Spawned::start(Command::new(bin).env("GPROF_TENANT", tenant).args([
            "-leak-rate",
            leak_per_s,
            "-churn-rate",
            "200",
            "-gc-every",
            "2s",
            "-report",
            "0",
        ]))
    };
    let leaking = tenant_program(&workload, "insure-prod", "40");
    let healthy = tenant_program(&old_workload, "billing", "0");
    for (p, tenant) in [(&leaking, "insure-prod"), (&healthy, "billing")] {
        let needle = format!("watching pid={} ", p.pid());
        assert!(
            wait_for(Duration::from_secs(5), || daemon.logged(&needle).is_some()),
            "{}",
            daemon.log_text()
        );
        let after = daemon.logged(&needle).unwrap() - started;
        assert!(
            after <= Duration::from_secs(2),
            "{tenant}: attached after {after:?}"
        );
        assert!(daemon.log_text().contains(&format!("tenant={tenant}")));
    }

    // The alert: from when the tenant's leak rate is above 1200/min for good, Alertmanager
    // has it within `for` (10 s) + one interval (2 s) + 1 s for delivery. The early estimates
    // (a slope over few samples) may cross and fall back; the hold restarts each time.
    let leak = |m: &str, t: &str| {
        series(
            m,
            "gprof_tenant_goroutine_leak_rate_per_minute",
            &format!("tenant=\"{t}\""),
        )
    };
    let mut above_since: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(45);
    let fired_at = loop {
        assert!(
            Instant::now() < deadline,
            "no alert in Alertmanager: {}",
            daemon.log_text()
        );
        if am
            .alerts()
            .iter()
            .any(|a| a["labels"]["tenant"] == "insure-prod")
        {
            break Instant::now();
        }
        match leak(&daemon.metrics(), "insure-prod") {
            Some(v) if v > 1200.0 => {
                above_since.get_or_insert(Instant::now());
            }
            _ => above_since = None,
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let delay = fired_at - above_since.expect("the leak rate was never above the threshold");
    assert!(
        delay <= Duration::from_secs(13),
        "alert reached Alertmanager {delay:?} after the threshold held"
    );
    let alerts = am.alerts();
    let ours: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["labels"]["alertname"] == "GprofGoroutineLeak")
        .collect();
    assert_eq!(ours.len(), 1, "one firing alert: {alerts:?}");
    assert_eq!(ours[0]["labels"]["severity"], "critical");
    assert!(
        ours[0]["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("tenant insure-prod")
    );

    // Within a minute and a half: the leak verdict per tenant (the leaked goroutines stuck
    // after 5 s, their growth confirmed over the leak window), then leak rates and health per
    // tenant, as Prometheus scraped them.
    let confirmed = |m: &str, t: &str| {
        series(
            m,
            "gprof_tenant_goroutine_confirmed_leak_rate_per_minute",
            &format!("tenant=\"{t}\""),
        )
    };
    assert!(
        wait_for(Duration::from_secs(90), || confirmed(
            &daemon.metrics(),
            "insure-prod"
        )
        .is_some_and(|c| (c - 2400.0).abs() <= 2400.0 * 0.1)),
        "insure-prod's leak never confirmed at 2400/min: {:?}",
        confirmed(&daemon.metrics(), "insure-prod")
    );
    let m = daemon.metrics();
    assert_eq!(confirmed(&m, "billing"), Some(0.0));
    let insure = leak(&m, "insure-prod").unwrap();
    let billing = leak(&m, "billing").unwrap();
    assert!(
        (insure - 2400.0).abs() <= 2400.0 * 0.05,
        "insure-prod leaks {insure}/min"
    );
    assert!(billing.abs() <= 30.0, "billing leaks {billing}/min");
    let health =
        |t: &str| series(&m, "gprof_tenant_health_score", &format!("tenant=\"{t}\"")).unwrap();
    assert!(health("insure-prod") < health("billing"), "{m}");
    let scraped = prom
        .query("gprof_goroutine_leak_rate_per_minute")
        .expect("Prometheus answers");
    let by_tenant = |t: &str| {
        scraped
            .iter()
            .find(|r| r["metric"]["tenant"] == t)
            .and_then(|r| r["value"][1].as_str()?.parse::<f64>().ok())
    };
    let scraped_insure = by_tenant("insure-prod").expect("Prometheus has insure-prod's series");
    assert!(
        (scraped_insure - 2400.0).abs() <= 120.0,
        "Prometheus: {scraped_insure}"
    );
    assert!(
        by_tenant("billing")
            .expect("Prometheus has billing's series")
            .abs()
            <= 30.0
    );
    let scraped_pid = scraped
        .iter()
        .find(|r| r["metric"]["tenant"] == "insure-prod")
        .map(|r| r["metric"]["pid"].clone())
        .unwrap();
    assert_eq!(scraped_pid, leaking.pid().to_string());
    assert!(
        !am.alerts()
            .iter()
            .any(|a| a["labels"]["tenant"] == "billing"),
        "billing must get no alert"
    );
    assert!(m.contains("gprof_alerts_firing{tenant=\"insure-prod\",alertname=\"GprofGoroutineLeak\",severity=\"critical\"} 1"));
    eprintln!(
        "{test}: leak insure-prod {insure:.0}/min, billing {billing:.1}/min; health {} vs {}; alert after {delay:?}",
        health("insure-prod"),
        health("billing")
    );

    // The leaking process exits: its series go, and the alert resolves.
    let pid = leaking.pid();
    drop(leaking);
    assert!(wait_for(Duration::from_secs(8), || !daemon
        .metrics()
        .contains(&pid_label(pid))));
    assert!(
        wait_for(Duration::from_secs(10), || !am
            .alerts()
            .iter()
            .any(|a| a["labels"]["tenant"] == "insure-prod")),
        "the alert did not resolve: {:?}",
        am.alerts()
    );
    assert!(daemon.log_text().contains("alert=resolved"));
    drop(healthy);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Alertmanager down: the daemon keeps sampling, serving metrics and logging alerts, and
/// counts the failed deliveries.
#[test]
fn alertmanager_down_does_not_stall_the_daemon() {
    let test = "alertmanager_down_does_not_stall_the_daemon";
    if !require_root(test) {
        return;
    }
    let Some(workload) = go_target(test, "workload", "1.27.3", "plain") else {
        return;
    };
    let dead = free_port();
    let config = "interval: 500ms\nthresholds:\n  - metric: goroutines\n    warning: 1\n";
    let daemon = Daemon::start(
        config,
        &["--alertmanager-url", &format!("http://127.0.0.1:{dead}")],
    );
    let target = Spawned::start(Command::new(&workload).env("GPROF_TENANT", "lonely").args([
        "-leak-rate",
        "5",
        "-report",
        "0",
    ]));
    assert!(wait_for(Duration::from_secs(10), || daemon
        .log_text()
        .contains("alert=firing")));
    let failed =
        || metric(&daemon.metrics(), "gprof_alert_notifications_failed_total").unwrap_or(0.0);
    assert!(
        wait_for(Duration::from_secs(10), || failed() >= 1.0),
        "{}",
        daemon.log_text()
    );
    // Sampling goes on at its pace: the goroutine count keeps rising.
    let goroutines = || {
        series(
            &daemon.metrics(),
            "gprof_goroutines",
            &pid_label(target.pid()),
        )
    };
    let before = goroutines().unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || goroutines()
            .is_some_and(|after| after >= before + 10.0)),
        "sampling stalled: {before} then {:?}",
        goroutines()
    );
    assert!(
        daemon.log_text().contains("retrying in"),
        "{}",
        daemon.log_text()
    );
}

/// Go processes the daemon cannot watch are counted by reason and each executable is logged
/// once: a release older than 1.17, and a binary whose recorded release has another layout
/// than its code (refused by the self-check). They are dropped from the count when they exit.
#[test]
fn unwatched_go_processes_are_counted_by_reason() {
    let test = "unwatched_go_processes_are_counted_by_reason";
    if !require_root(test) {
        return;
    }
    let (Some(old), Some(misfit)) = (
        relabeled(test, "1.19", "stripped", "go1.19.8", "go1.16.9"),
        relabeled(test, "1.21.13", "stripped", "go1.21.13", "go1.19.13"),
    ) else {
        return;
    };
    let daemon = Daemon::start("interval: 1s\n", &[]);
    let start = |bin: &std::path::Path| {
        Spawned::start(Command::new(bin).args(["-report", "0", "-churn-rate", "10"]))
    };
    let programs = [start(&old), start(&misfit), start(&misfit)];
    let unwatched = |reason: &str| {
        series(
            &daemon.metrics(),
            "gprof_unwatched_processes",
            &format!("reason=\"{reason}\""),
        )
    };
    assert!(
        wait_for(Duration::from_secs(10), || unwatched("unsupported_release")
            == Some(1.0)
            && unwatched("self_check_failed") == Some(2.0)),
        "{test}: {:?} {:?}\n{}",
        unwatched("unsupported_release"),
        unwatched("self_check_failed"),
        daemon.log_text()
    );
    assert_eq!(unwatched("permission"), Some(0.0), "every reason is listed");
    // One log line per executable, however many of its processes.
    let log = daemon.log_text();
    let name = misfit.file_name().unwrap().to_string_lossy().to_string();
    let said = log
        .lines()
        .filter(|l| l.contains("reason=self_check_failed"))
        .count();
    assert_eq!(said, 1, "{test}: {log}");
    assert!(log.contains("go1.16.9 is older than go1.17"), "{log}");
    assert!(log.contains(&name[..15.min(name.len())]), "{log}");
    drop(programs);
    assert!(
        wait_for(Duration::from_secs(10), || unwatched("self_check_failed")
            == Some(0.0)
            && unwatched("unsupported_release") == Some(0.0)),
        "{test}: exited processes still counted"
    );
    let _ = std::fs::remove_file(old);
    let _ = std::fs::remove_file(misfit);
}
