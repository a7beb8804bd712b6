//! Hundreds of short-lived Go processes come and go under the daemon: its memory stays
//! bounded, nothing of the exited ones remains (series, kernel filter entries, probes).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::daemon::Daemon;
use common::*;

const PROCESSES: usize = 300;
const AT_ONCE: usize = 10;

#[test]
fn hundreds_of_short_lived_processes() {
    let test = "hundreds_of_short_lived_processes";
    if !require_root(test) {
        return;
    }
    let binaries = [
        go_target(test, "workload", "1.27.3", "stripped"),
        go_target(test, "workload", "1.19", "plain"),
        go_target(test, "workload", "1.23.9", "plain"),
    ];
    let Some(binaries) = binaries.into_iter().collect::<Option<Vec<_>>>() else {
        return;
    };
    let mut daemon = Daemon::start("interval: 500ms\ndiscovery:\n  interval: 200ms\n", &[]);
    let metrics = || daemon.metrics();

    let mut running: Vec<Child> = Vec::new();
    let mut pids = Vec::new();
    let mut rss_early = None;
    let mut peak_watched: f64 = 0.0;
    let started = Instant::now();
    for i in 0..PROCESSES {
        while running.len() >= AT_ONCE {
            running.retain_mut(|c| c.try_wait().ok().flatten().is_none());
            std::thread::sleep(Duration::from_millis(20));
        }
        let child = Command::new(&binaries[i % binaries.len()])
            .env("GPROF_TENANT", format!("t{}", i % 7))
            .args([
                "-duration",
                "1200ms",
                "-leak-rate",
                "10",
                "-churn-rate",
                "200",
                "-report",
                "0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        pids.push(child.id());
        running.push(child);
        if i == 50 {
            rss_early = metric(&metrics(), "gprof_daemon_resident_memory_bytes");
        }
        peak_watched =
            peak_watched.max(metric(&metrics(), "gprof_watched_processes").unwrap_or(0.0));
    }
    for mut c in running {
        c.wait().unwrap();
    }
    let elapsed = started.elapsed();
    // Two sampling rounds after the last one ended, nothing of them remains.
    let ended = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        wait_for(Duration::from_secs(10), || metric(
            &metrics(),
            "gprof_snapshot_timestamp_seconds"
        )
        .is_some_and(|t| t >= ended + 1.0)),
        "the daemon stopped sampling"
    );
    let m = metrics();
    for pid in &pids {
        assert!(
            !m.contains(&format!("pid=\"{pid}\"")),
            "stale series of PID {pid}:\n{m}\n{}",
            daemon.log_text()
        );
    }
    let watched = metric(&m, "gprof_watched_processes").unwrap();
    let entries = metric(&m, "gprof_kernel_filter_entries").unwrap();
    assert_eq!(
        entries, watched,
        "kernel filter entries of exited processes remain"
    );
    // Creation sites: a handful per watched process, none of the exited ones.
    let sites = metric(&m, "gprof_kernel_site_entries").unwrap();
    assert!(
        sites <= 20.0 * watched.max(1.0),
        "{sites} kernel site entries for {watched} watched processes"
    );
    // Executables keep their probes for a grace period after their last process, no more
    // than the three binaries the processes ran.
    let executables = metric(&m, "gprof_attached_executables").unwrap();
    assert!(executables <= 3.0, "{executables} executables attached");
    for t in 0..7 {
        assert!(
            !m.contains(&format!("tenant=\"t{t}\"")),
            "tenant t{t} still has series"
        );
    }
    let rss_early = rss_early.unwrap();
    let rss_late = metric(&m, "gprof_daemon_resident_memory_bytes").unwrap();
    assert!(
        rss_late <= rss_early + 8.0 * 1024.0 * 1024.0,
        "daemon memory grew from {rss_early} to {rss_late} bytes"
    );
    assert!(
        peak_watched >= 3.0,
        "the daemon never watched the processes (peak {peak_watched})"
    );
    assert!(daemon.is_running(), "the daemon died");
    eprintln!(
        "{test}: {PROCESSES} processes in {elapsed:?}, up to {peak_watched} watched at once; RSS {:.1} MiB after 50, {:.1} MiB after {PROCESSES}",
        rss_early / 1048576.0,
        rss_late / 1048576.0
    );
    // SIGTERM: clean exit.
    assert!(daemon.stop());
}
