//! gprof against processes that do not hold still: 100 attach/detach cycles on a busy target,
//! targets that exit while gprof attaches, PIDs reused by another program, executables
//! replaced on disk, processes that exec another Go binary. The target's output must not
//! change, and the kernel filter must not keep entries of processes gone.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::{Daemon, pid_label, series, series_line};
use common::*;

/// A daemon that discovers and samples quickly.
const FAST_DAEMON: &str = "interval: 500ms\ndiscovery:\n  interval: 200ms\n";

/// The kernel filter holds exactly the watched processes.
fn assert_no_stale_entries(daemon: &Daemon) {
    assert!(
        wait_for(Duration::from_secs(3), || daemon
            .gauge("gprof_kernel_filter_entries")
            == daemon.gauge("gprof_watched_processes")),
        "kernel filter entries {} for {} watched processes",
        daemon.gauge("gprof_kernel_filter_entries"),
        daemon.gauge("gprof_watched_processes")
    );
}

#[test]
fn hundred_attach_detach_cycles_leave_the_target_correct() {
    let test = "hundred_attach_detach_cycles_leave_the_target_correct";
    if !require_root(test) {
        return;
    }
    let Some(bin) = go_target(test, "workload", "1.27.3", "stripped") else {
        return;
    };
    // Runs until SIGTERM: deep recursion in every short-lived goroutine (stack growth while
    // probes fire), GC every 300 ms; its final line depends on every goroutine's result.
    let target = Spawned::start(Command::new(&bin).args([
        "-churn-rate",
        "3000",
        "-leak-rate",
        "5",
        "-depth",
        "20",
        "-gc-every",
        "300ms",
        "-report",
        "0",
    ]));
    let pid = target.pid().to_string();
    let started = Instant::now();
    // Four gprof instances at a time (each cycle loads, attaches, samples once, detaches).
    let attached = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for stream in 0..4 {
            let (pid, attached) = (&pid, &attached);
            s.spawn(move || {
                for i in 0..25 {
                    let (ok, samples, err) = run_gprof(&[
                        "top",
                        "--batch",
                        "--iterations",
                        "1",
                        "--interval",
                        "0.05",
                        "--pid",
                        pid,
                    ]);
                    assert!(ok, "stream {stream}, cycle {i}: {err}");
                    assert_eq!(samples.len(), 1, "stream {stream}, cycle {i}: {err}");
                    attached.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(attached.into_inner(), 100);
    let cycles_took = started.elapsed();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(target.child.id() as i32, libc::SIGTERM) };
    let (ok, out, err) = target.finish();
    assert!(
        ok,
        "the target failed after 100 attach/detach cycles: {err}"
    );
    let done = out.last().expect("the target's final line").clone();
    let finished = done["finished"].as_u64().unwrap();
    // The same work without gprof must give the same result.
    let reference = Spawned::start(Command::new(&bin).args([
        "-tasks",
        &finished.to_string(),
        "-churn-rate",
        "20000",
        "-leak-rate",
        "0",
        "-depth",
        "20",
        "-report",
        "0",
    ]));
    let (ok_ref, out_ref, err_ref) = reference.finish();
    assert!(ok_ref, "{err_ref}");
    assert_eq!(
        done,
        *out_ref.last().unwrap(),
        "the target's results changed under probing"
    );
    eprintln!(
        "{test}: 100 cycles in {cycles_took:?}; {finished} goroutines' results identical to an unprobed run"
    );
}

#[test]
fn targets_exiting_while_gprof_attaches() {
    let test = "targets_exiting_while_gprof_attaches";
    if !require_root(test) {
        return;
    }
    let Some(bin) = go_target(test, "workload", "1.19", "stripped") else {
        return;
    };
    let mut outcomes = std::collections::BTreeMap::new();
    for i in 0..30 {
        let lifetime = format!("{}ms", 20 + (i * 37) % 300);
        let target = Spawned::start(Command::new(&bin).args([
            "-duration",
            &lifetime,
            "-report",
            "0",
            "-churn-rate",
            "500",
        ]));
        let out = Command::new(gprof())
            .args([
                "top",
                "--batch",
                "--iterations",
                "50",
                "--interval",
                "0.05",
                "--pid",
                &target.pid().to_string(),
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            !stderr.contains("panicked") && out.status.code() != Some(101),
            "{stderr}"
        );
        let line = stderr.lines().last().unwrap_or("").to_string();
        let known = ["exited", "no process with PID", "zombie"];
        assert!(
            known.iter().any(|k| line.contains(k)),
            "run {i}: unexpected ending (exit {:?}): {stderr}",
            out.status.code()
        );
        if !out.status.success() {
            assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        }
        *outcomes.entry(out.status.success()).or_insert(0) += 1;
        drop(target);
    }
    eprintln!("{test}: {outcomes:?} (true: watched then exited; false: gone before attaching)");
}

/// Sets the PID the next fork gets (root only), so that a test can reuse one.
fn next_pid_will_be(pid: u32) -> bool {
    std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).is_ok()
}

/// Kills `old`, then starts `cmd` until it gets the same PID.
fn reuse_pid(old: Spawned, cmd: &mut dyn FnMut() -> Command) -> Option<Spawned> {
    let pid = old.pid();
    drop(old);
    for _ in 0..50 {
        if !next_pid_will_be(pid) {
            return None;
        }
        let new = Spawned::start(&mut cmd());
        if new.pid() == pid {
            return Some(new);
        }
    }
    None
}

#[test]
fn reused_pid_is_another_process() {
    let test = "reused_pid_is_another_process";
    if !require_root(test) {
        return;
    }
    let Some(first) = go_target(test, "workload", "1.27.3", "plain") else {
        return;
    };
    let Some(second) = go_target(test, "workload", "1.19", "plain") else {
        return;
    };

    // gprof top: the watched process goes; another takes its PID; gprof says it exited.
    let a = Spawned::start(Command::new(&first).args(["-report", "0"]));
    let pid = a.pid();
    let top = Spawned::start(Command::new(gprof()).args([
        "top",
        "--batch",
        "--interval",
        "0.3",
        "--pid",
        &pid.to_string(),
    ]));
    assert!(wait_for(Duration::from_secs(10), || !top
        .snapshot()
        .is_empty()));
    let Some(b) = reuse_pid(a, &mut || {
        let mut c = Command::new(&second);
        c.args(["-report", "0"]);
        c
    }) else {
        skip(test, "could not get the same PID again (ns_last_pid)");
        return;
    };
    let (ok, samples, err) = top.finish();
    assert!(ok, "{err}");
    assert!(err.contains(&format!("PID {pid} exited")), "{err}");
    assert!(
        samples.iter().all(|s| s["go_version"] == "go1.27.3"),
        "a sample of the new process slipped in"
    );

    // The daemon: the old process's series go, the new one is watched under the same PID.
    let daemon = Daemon::start(FAST_DAEMON, &[]);
    assert!(wait_for(Duration::from_secs(5), || series_line(
        &daemon.metrics(),
        "gprof_goroutines",
        &pid_label(pid)
    )
    .is_some()));
    let c = reuse_pid(b, &mut || {
        let mut c = Command::new(&first);
        c.env("GPROF_TENANT", "reborn").args(["-report", "0"]);
        c
    });
    let Some(_c) = c else {
        skip(test, "could not get the same PID again (ns_last_pid)");
        return;
    };
    assert!(
        wait_for(Duration::from_secs(5), || series_line(
            &daemon.metrics(),
            "gprof_goroutines",
            &pid_label(pid)
        )
        .is_some_and(|l| l.contains("tenant=\"reborn\""))),
        "{}",
        daemon.log_text()
    );
    assert_no_stale_entries(&daemon);
}

#[test]
fn executable_replaced_on_disk() {
    let test = "executable_replaced_on_disk";
    if !require_root(test) {
        return;
    }
    let (Some(v1), Some(v2)) = (
        go_target(test, "workload", "1.19", "stripped"),
        go_target(test, "workload", "1.27.3", "stripped"),
    ) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("gprof-replace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let app = dir.join("app");
    std::fs::copy(&v1, &app).unwrap();
    let daemon = Daemon::start(FAST_DAEMON, &[]);
    let old = Spawned::start(Command::new(&app).args(["-report", "0", "-leak-rate", "10"]));
    assert!(wait_for(Duration::from_secs(5), || series_line(
        &daemon.metrics(),
        "gprof_goroutines",
        &pid_label(old.pid())
    )
    .is_some()));
    // A deployment replaces the file (new inode), then starts the new version.
    std::fs::copy(&v2, dir.join("app.new")).unwrap();
    std::fs::rename(dir.join("app.new"), &app).unwrap();
    let new = Spawned::start(Command::new(&app).args(["-report", "0", "-leak-rate", "10"]));
    assert!(
        wait_for(Duration::from_secs(5), || series_line(
            &daemon.metrics(),
            "gprof_goroutines",
            &pid_label(new.pid())
        )
        .is_some()),
        "{}",
        daemon.log_text()
    );
    assert!(
        daemon
            .log_text()
            .contains(&format!("watching pid={} comm=app go=go1.27.3", new.pid()))
    );
    // The old process, running the deleted file, is still counted.
    let created = |pid| {
        series(
            &daemon.metrics(),
            "gprof_goroutines_created_total",
            &pid_label(pid),
        )
        .unwrap_or(0.0)
    };
    let before = created(old.pid());
    assert!(
        wait_for(Duration::from_secs(10), || created(old.pid())
            > before + 10.0),
        "the old executable's probes stopped counting"
    );
    let attached = daemon.gauge("gprof_attached_executables");
    assert!(attached >= 2.0, "{attached} executables attached");
    // gprof top reaches the old process through /proc/PID/exe although the file is gone.
    let (ok, samples, err) = run_gprof(&[
        "top",
        "--batch",
        "--iterations",
        "1",
        "--pid",
        &old.pid().to_string(),
    ]);
    assert!(ok && samples[0]["go_version"] == "go1.19.8", "{err}");
    drop((old, new));
    assert_no_stale_entries(&daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn process_that_execs_another_go_binary() {
    let test = "process_that_execs_another_go_binary";
    if !require_root(test) {
        return;
    }
    let (Some(before), Some(after)) = (
        go_target(test, "workload", "1.19", "plain"),
        go_target(test, "workload", "1.27.3", "stripped"),
    ) else {
        return;
    };
    let daemon = Daemon::start(FAST_DAEMON, &[]);
    let exec_args = |d: &str| {
        let mut c = Command::new(&before);
        c.args(["-report", "0", "-duration", d, "-exec"])
            .arg(&after);
        c
    };
    let p = Spawned::start(&mut exec_args("3s"));
    let pid = p.pid();
    assert!(wait_for(Duration::from_secs(5), || daemon
        .log_text()
        .contains(&format!(
            "watching pid={pid} comm=plain go=go1.19.8"
        ))));
    assert!(
        wait_for(Duration::from_secs(8), || daemon.log_text().contains(
            &format!("watching pid={pid} comm=stripped go=go1.27.3")
        )),
        "{}",
        daemon.log_text()
    );
    assert!(
        daemon
            .log_text()
            .contains(&format!("pid={pid} comm=plain replaced its program (exec)"))
    );
    assert_no_stale_entries(&daemon);

    // gprof top says so and exits 0. The program execs on SIGUSR1, sent once top has
    // sampled: an exec before top attached would be planned again, and top would then
    // follow the new program (which runs until killed).
    let q = Spawned::start(&mut exec_args("0"));
    let top = Spawned::start(Command::new(gprof()).args([
        "top",
        "--batch",
        "--interval",
        "0.2",
        "--pid",
        &q.pid().to_string(),
    ]));
    assert!(
        wait_for(Duration::from_secs(20), || !top.snapshot().is_empty()),
        "gprof top printed no sample: {}",
        top.stderr_text()
    );
    unsafe { libc::kill(q.pid() as i32, libc::SIGUSR1) };
    let (ok, _, err) = top.finish_within(Duration::from_secs(30));
    assert!(ok, "{err}");
    assert!(err.contains("replaced its program (exec)"), "{err}");
    drop((p, q));
}
