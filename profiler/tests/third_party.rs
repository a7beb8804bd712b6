//! Real, stripped third-party Go services from Debian (Prometheus, Alertmanager: go1.19.8,
//! cgo, stripped): gprof's figures against what the services report about themselves.
//!
//! Live goroutines come from their goroutine profile (`/debug/pprof/goroutine?debug=1`, whose
//! total is taken with the world stopped). Asking creates the two goroutines that serve the
//! request; `/metrics` would add about six more (its collectors run in goroutines of their
//! own), so `go_goroutines` measures the scrape as much as the service. GC cycles come from
//! `go_gc_duration_seconds_count` (`debug.ReadGCStats`).

mod common;

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

fn watch_service(test: &str, cmd: &str, args: &dyn Fn(u16, &std::path::Path) -> Vec<String>) {
    if !require_root(test) {
        return;
    }
    let Some(exe) = which(cmd) else {
        skip(
            test,
            &format!("{cmd} is not installed (cargo xtask setup installs it)"),
        );
        return;
    };
    let dir = std::env::temp_dir().join(format!("gprof-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let service = Spawned::start(Command::new(&exe).args(args(port, &dir)));
    assert!(
        wait_for(Duration::from_secs(30), || http_get(port, "/-/ready")
            .is_some_and(|(s, _)| s == 200)),
        "{test}: {cmd} did not become ready"
    );
    let gprof = Spawned::start(Command::new(gprof()).args([
        "top",
        "--batch",
        "--interval",
        "1",
        "--iterations",
        "15",
        "--pid",
        &service.pid().to_string(),
    ]));
    let mut scrapes = Vec::new();
    while !gprof_done(&gprof, 15) {
        let profile = http_get(port, "/debug/pprof/goroutine?debug=1");
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        if let (Some((200, profile)), Some((200, metrics))) = (profile, http_get(port, "/metrics"))
        {
            let total: f64 = profile
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("goroutine profile: total "))
                .and_then(|n| n.trim().parse().ok())
                .expect("goroutine profile header");
            let gc_count = metric(&metrics, "go_gc_duration_seconds_count")
                .expect("go_gc_duration_seconds_count");
            scrapes.push(serde_json::json!({
                "unix": unix,
                "goroutines": total,
                "gc_count": gc_count,
            }));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, samples, err) = gprof.finish();
    assert!(ok, "{test}: {err}");
    assert_eq!(samples.len(), 15, "{test}: {err}");
    let mut max_error: f64 = 0.0;
    let mut max_diff: f64 = 0.0;
    let mut cycle_offsets = Vec::new();
    for s in &samples {
        assert_eq!(s["go_version"], "go1.19.8");
        assert_eq!(s["goroutines_source"], "runtime");
        let t = f(s, "unix");
        let nearest = scrapes
            .iter()
            .min_by(|a, b| {
                (f(a, "unix") - t)
                    .abs()
                    .total_cmp(&(f(b, "unix") - t).abs())
            })
            .unwrap();
        let (got, truth) = (f(s, "goroutines"), f(nearest, "goroutines"));
        let allowed = (truth * 0.02).max(5.0);
        assert!(
            (got - truth).abs() <= allowed,
            "{test}: gprof {got}, {cmd}'s goroutine profile says {truth} ({:.0} ms apart)",
            (f(nearest, "unix") - t).abs() * 1e3
        );
        max_error = max_error.max((got - truth).abs() / truth);
        max_diff = max_diff.max((got - truth).abs());
        // GC cycles: where the service's count is the same in every scrape within 300 ms, read
        // on both sides of the sample (a cycle that ends after the last scrape before the
        // sample, with none after it, is in gprof's count and not yet in the service's).
        if let Some(count) = stable(&scrapes, "gc_count", t, 0.3) {
            cycle_offsets.push(count - f(s, "gc_cycles_total"));
        }
    }
    assert!(cycle_offsets.len() >= 5, "{test}: too few steady samples");
    assert!(
        cycle_offsets.iter().all(|&o| o == cycle_offsets[0]),
        "{test}: GC cycle counts drifted: {cycle_offsets:?}"
    );
    let cycles = f(samples.last().unwrap(), "gc_cycles_total");
    eprintln!(
        "{test}: {} goroutines, max difference {max_diff} ({:.1}%) from the goroutine profile, {cycles} GC cycles matched exactly",
        f(samples.last().unwrap(), "goroutines"),
        max_error * 100.0
    );
    drop(service);
    let _ = std::fs::remove_dir_all(&dir);
}

fn gprof_done(gprof: &Spawned, n: usize) -> bool {
    gprof.snapshot().len() >= n
}

#[test]
fn prometheus_server() {
    watch_service("prometheus_server", "prometheus", &|port, dir| {
        let config = dir.join("prometheus.yml");
        // Scraping itself every second keeps it allocating, so that it runs GC cycles.
        std::fs::write(
            &config,
            format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"),
        )
        .unwrap();
        vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ]
    });
}

#[test]
fn alertmanager() {
    watch_service("alertmanager", "prometheus-alertmanager", &|port, dir| {
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: none\nreceivers:\n  - name: none\n",
        )
        .unwrap();
        vec![
            format!("--config.file={}", config.display()),
            format!("--storage.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--cluster.listen-address=".into(),
        ]
    });
}
