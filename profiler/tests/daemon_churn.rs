//! Hundreds of short-lived Go processes come and go under the daemon: its memory stays
//! bounded, nothing of the exited ones remains (series, kernel filter entries, probes).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const PROCESSES: usize = 300;
const AT_ONCE: usize = 10;

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

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
    let dir = std::env::temp_dir().join(format!("gprof-churn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("gprof.yaml"),
        "interval: 500ms\ndiscovery:\n  interval: 200ms\n",
    )
    .unwrap();
    let port = free_port();
    let log_path = dir.join("daemon.log");
    // Killed on drop, also when an assertion fails.
    let mut daemon = KillOnDrop(
        Command::new(gprof())
            .args(["daemon", "--config"])
            .arg(dir.join("gprof.yaml"))
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let metrics = || {
        http_get(port, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    };
    assert!(wait_for(Duration::from_secs(20), || !metrics().is_empty()));

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
            rss_early = gauge(&metrics(), "gprof_daemon_resident_memory_bytes");
        }
        peak_watched =
            peak_watched.max(gauge(&metrics(), "gprof_watched_processes").unwrap_or(0.0));
    }
    for mut c in running {
        c.wait().unwrap();
    }
    let elapsed = started.elapsed();
    // Two sampling intervals later, nothing of them remains.
    std::thread::sleep(Duration::from_secs(2));
    let m = metrics();
    for pid in &pids {
        assert!(
            !m.contains(&format!("pid=\"{pid}\"")),
            "stale series of PID {pid}:\n{m}\n{}",
            log()
        );
    }
    let watched = gauge(&m, "gprof_watched_processes").unwrap();
    let entries = gauge(&m, "gprof_kernel_filter_entries").unwrap();
    assert_eq!(
        entries, watched,
        "kernel filter entries of exited processes remain"
    );
    // Creation sites: a handful per watched process, none of the exited ones.
    let sites = gauge(&m, "gprof_kernel_site_entries").unwrap();
    assert!(
        sites <= 20.0 * watched.max(1.0),
        "{sites} kernel site entries for {watched} watched processes"
    );
    // Executables keep their probes for a grace period after their last process, no more
    // than the three binaries the processes ran.
    let executables = gauge(&m, "gprof_attached_executables").unwrap();
    assert!(executables <= 3.0, "{executables} executables attached");
    for t in 0..7 {
        assert!(
            !m.contains(&format!("tenant=\"t{t}\"")),
            "tenant t{t} still has series"
        );
    }
    let rss_early = rss_early.unwrap();
    let rss_late = gauge(&m, "gprof_daemon_resident_memory_bytes").unwrap();
    assert!(
        rss_late <= rss_early + 8.0 * 1024.0 * 1024.0,
        "daemon memory grew from {rss_early} to {rss_late} bytes"
    );
    assert!(
        peak_watched >= 3.0,
        "the daemon never watched the processes (peak {peak_watched})"
    );
    assert!(daemon.0.try_wait().unwrap().is_none(), "the daemon died");
    eprintln!(
        "{test}: {PROCESSES} processes in {elapsed:?}, up to {peak_watched} watched at once; RSS {:.1} MiB after 50, {:.1} MiB after {PROCESSES}",
        rss_early / 1048576.0,
        rss_late / 1048576.0
    );
    // SIGTERM: clean exit.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(daemon.0.id() as i32, libc::SIGTERM) };
    assert!(wait_for(Duration::from_secs(10), || daemon
        .0
        .try_wait()
        .ok()
        .flatten()
        .is_some()));
    let _ = std::fs::remove_dir_all(&dir);
}
