//! Faults, injected through `GPROF_FAULTS` (see profiler/src/faults.rs) or caused for real:
//! gprof places no probe from a stale plan, keeps watching a process that could not be read
//! for a while, and says when its own sampling stalls.

mod common;

use std::process::Command;
use std::time::Duration;

use common::daemon::{Daemon, pid_label, series};
use common::*;
use profiler::inspect::binary::GoBinary;
use profiler::inspect::plan;

/// The probe addresses gprof plans for a binary (non-PIE: file addresses are runtime ones),
/// all or only the cold ones (always attached; the budget may detach the hot ones).
fn planned_sites(bin: &std::path::Path, cold_only: bool) -> Vec<u64> {
    let plan = plan::plan(&GoBinary::open(bin).unwrap()).unwrap();
    plan.probes
        .iter()
        .filter(|p| !(cold_only && p.spec.hot))
        .flat_map(|p| p.sites.iter().map(|s| s.addr))
        .collect()
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a process the test started.
    unsafe { libc::kill(pid as i32, sig) };
}

#[test]
fn an_exec_between_plan_and_attach_places_no_stale_probe() {
    let test = "an_exec_between_plan_and_attach_places_no_stale_probe";
    if !require_root(test) {
        return;
    }
    let (Some(before), Some(after)) = (
        go_target(test, "workload", "1.19", "plain"),
        go_target(test, "workload", "1.27.3", "stripped"),
    ) else {
        return;
    };
    let stale = planned_sites(&before, false);
    let fresh = planned_sites(&after, false);
    let fresh_cold = planned_sites(&after, true);
    // The program execs `after` on SIGUSR1.
    let target = Spawned::start(
        Command::new(&before)
            .args(["-report", "0", "-churn-rate", "200", "-exec"])
            .arg(&after),
    );
    let pid = target.pid();
    let daemon = Daemon::start_with_env(
        "interval: 500ms\ndiscovery:\n  interval: 200ms\n",
        &[],
        &[("GPROF_FAULTS", "pause_before_attach=3s")],
    );
    // gprof has planned `before` and waits: now the process becomes `after`.
    assert!(
        wait_for(Duration::from_secs(10), || daemon
            .logged(&format!("pausing 3s before attaching to pid={pid}"))
            .is_some()),
        "{test}: {}",
        daemon.log_text()
    );
    signal(pid, libc::SIGUSR1);
    let runs_after = || std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == after);
    assert!(
        wait_for(Duration::from_secs(5), runs_after),
        "{test}: no exec"
    );
    let pristine = code_bytes(pid, &stale);
    // gprof notices, plans `after` and attaches to it.
    assert!(
        wait_for(Duration::from_secs(20), || daemon
            .logged(&format!("watching pid={pid} comm=stripped go=go1.27.3"))
            .is_some()),
        "{test}: {}",
        daemon.log_text()
    );
    // The code at the stale plan's addresses is the new program's, untouched; the new
    // plan's own sites carry the breakpoints.
    let now = code_bytes(pid, &stale);
    for (i, (&a, (&was, &is))) in stale.iter().zip(pristine.iter().zip(&now)).enumerate() {
        if fresh.contains(&a) {
            continue;
        }
        assert_eq!(
            was, is,
            "{test}: stale site {i} at {a:#x}: {was:#04x} became {is:#04x}"
        );
    }
    assert!(
        code_bytes(pid, &fresh_cold).iter().all(|&b| b == 0xcc),
        "{test}: the new program's probes are not in place"
    );
    assert!(
        daemon
            .logged(&format!("watching pid={pid} comm=plain"))
            .is_none(),
        "{test}: attached from the stale plan: {}",
        daemon.log_text()
    );
    // The program lives on and ends its run normally.
    std::thread::sleep(Duration::from_secs(1));
    signal(pid, libc::SIGTERM);
    let (ok, lines, err) = target.finish();
    assert!(ok, "{test}: the target failed: {err}");
    assert!(
        lines.last().is_some_and(|l| l["done"] == true),
        "{test}: no final line: {lines:?} {err}"
    );
    eprintln!(
        "{test}: {} stale sites untouched, {} fresh sites probed",
        stale.len(),
        fresh.len()
    );
}

#[test]
fn a_process_that_cannot_be_read_for_a_while_is_watched_again() {
    let test = "a_process_that_cannot_be_read_for_a_while_is_watched_again";
    if !require_root(test) {
        return;
    }
    let Some(bin) = go_target(test, "workload", "1.27.3", "stripped") else {
        return;
    };
    let target = Spawned::start(Command::new(&bin).args([
        "-report",
        "0",
        "-churn-rate",
        "100",
        "-leak-rate",
        "5",
    ]));
    let pid = target.pid();
    let daemon = Daemon::start_with_env(
        "interval: 500ms\ndiscovery:\n  interval: 200ms\n",
        &[],
        &[("GPROF_FAULTS", &format!("sample_errors={pid}:3"))],
    );
    let errors = |d: &Daemon| {
        series(
            &d.metrics(),
            "gprof_sample_errors_total",
            "reason=\"process_read\"",
        )
        .unwrap_or(f64::NAN)
    };
    // Three failed samples (backing off 1, 2 and 4 rounds), then watched again.
    assert!(
        wait_for(Duration::from_secs(20), || daemon
            .logged(&format!(
                "pid={pid} comm=stripped sampled again after 3 failed samples"
            ))
            .is_some()),
        "{test}: {}",
        daemon.log_text()
    );
    assert_eq!(errors(&daemon), 3.0);
    let goroutines = || series(&daemon.metrics(), "gprof_goroutines", &pid_label(pid));
    assert!(wait_for(Duration::from_secs(3), || goroutines().is_some()));

    // Stopped for real (SIGSTOP) for several samples: still watched, and figures move again
    // once it runs.
    signal(pid, libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(3));
    let while_stopped = daemon.metrics();
    assert!(
        series(&while_stopped, "gprof_goroutines", &pid_label(pid)).is_some()
            || series(
                &while_stopped,
                "gprof_unwatched_processes",
                "reason=\"sample_failing\""
            ) == Some(1.0),
        "{test}: a stopped process is neither watched nor counted as failing"
    );
    signal(pid, libc::SIGCONT);
    let created = || {
        series(
            &daemon.metrics(),
            "gprof_goroutines_created_total",
            &pid_label(pid),
        )
        .unwrap_or(0.0)
    };
    let resumed_at = created();
    assert!(
        wait_for(Duration::from_secs(10), || created() > resumed_at + 100.0),
        "{test}: figures did not move after SIGCONT: {}",
        daemon.log_text()
    );
    assert_eq!(
        series(
            &daemon.metrics(),
            "gprof_unwatched_processes",
            "reason=\"sample_failing\""
        ),
        Some(0.0)
    );
    eprintln!(
        "{test}: sample errors counted {}, watched again after the injected failures and after SIGSTOP",
        errors(&daemon)
    );
    drop(target);
}

#[test]
fn healthz_fails_while_sampling_stalls() {
    let test = "healthz_fails_while_sampling_stalls";
    if !require_root(test) {
        return;
    }
    let daemon = Daemon::start_with_env(
        "interval: 500ms\n",
        &[],
        &[("GPROF_FAULTS", "stall_sample=4:4s")],
    );
    let mut seen = Vec::new();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(9) {
        if let Some((status, body)) = http_get(daemon.port, "/healthz")
            && seen
                .last()
                .is_none_or(|(s, _): &(u16, String)| *s != status)
        {
            seen.push((status, body));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let statuses: Vec<u16> = seen.iter().map(|s| s.0).collect();
    assert_eq!(statuses, [200, 503, 200], "{test}: {seen:?}");
    assert!(seen[1].1.contains("sampling stalled"), "{:?}", seen[1]);
    eprintln!("{test}: /healthz went {statuses:?}: {}", seen[1].1.trim());
}
