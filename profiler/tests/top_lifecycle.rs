//! `gprof top` around its target's life and its own: the target exiting, the live screen
//! quitting on `q` with the terminal restored.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn says_so_and_exits_0_when_the_target_exits() {
    let test = "says_so_and_exits_0_when_the_target_exits";
    if !require_root(test) {
        return;
    }
    let Some(bin) = go_target(test, "workload", "1.27.3", "stripped") else {
        return;
    };
    let target = Spawned::start(Command::new(&bin).args(["-duration", "3s", "-report", "0"]));
    let pid = target.pid().to_string();
    let (ok, samples, err) = run_gprof(&["top", "--batch", "--interval", "0.5", "--pid", &pid]);
    assert!(ok, "{test}: {err}");
    assert!(
        err.contains(&format!("gprof: PID {pid} exited")),
        "{test}: {err}"
    );
    assert!(
        samples.len() >= 3,
        "{test}: {} samples before the exit",
        samples.len()
    );
}

#[test]
fn live_screen_quits_on_q_and_restores_the_terminal() {
    let test = "live_screen_quits_on_q_and_restores_the_terminal";
    if !require_root(test) {
        return;
    }
    let Some(bin) = go_target(test, "workload", "1.19", "plain") else {
        return;
    };
    let Some(script) = which("script") else {
        skip(
            test,
            "script (util-linux) is needed to give gprof a terminal",
        );
        return;
    };
    let target = Spawned::start(Command::new(&bin).args(["-report", "0"]));
    // `script` runs gprof on a pseudo-terminal and copies what it draws to stdout.
    let mut tui = Command::new(script)
        .args([
            "-qfec",
            &format!(
                "stty cols 110 rows 34; {} top --pid {}",
                gprof(),
                target.pid()
            ),
            "/dev/null",
        ])
        .env("TERM", "xterm-256color")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script");
    // What it draws, read as it comes; q once the screen shows a sample.
    let drawn = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let (mut out, drawn) = (tui.stdout.take().unwrap(), drawn.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut out, &mut buf) {
                if n == 0 {
                    break;
                }
                drawn.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let shown = |what: &str| String::from_utf8_lossy(&drawn.lock().unwrap()).contains(what);
    assert!(
        wait_for(Duration::from_secs(20), || shown("go1.19.8")),
        "{test}: the screen never showed the target"
    );
    tui.stdin.as_mut().unwrap().write_all(b"q").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tui.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "{test}: gprof did not quit on q"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = tui.wait().unwrap();
    reader.join().unwrap();
    let screen = String::from_utf8_lossy(&drawn.lock().unwrap()).into_owned();
    assert!(status.success(), "{test}: {screen}");
    assert!(
        screen.contains("\x1b[?1049h"),
        "{test}: never entered the alternate screen"
    );
    assert!(
        screen.contains("Goroutines") && screen.contains("go1.19.8"),
        "{test}: {screen}"
    );
    let left = screen.rfind("\x1b[?1049l").expect("terminal not restored");
    assert!(
        left > screen.rfind("\x1b[?1049h").unwrap(),
        "{test}: the alternate screen was not left last"
    );
}

/// A release newer than gprof's table in a stripped binary: the newest layout is assumed, and
/// gprof attaches once the self-check accepts it (go1.27.3 relabeled go1.28.0, so the figures
/// can be checked).
#[test]
fn newer_release_without_dwarf_attaches_after_the_self_check() {
    let test = "newer_release_without_dwarf_attaches_after_the_self_check";
    let Some(bin) = relabeled(test, "1.27.3", "stripped", "go1.27.3", "go1.28.0") else {
        return;
    };
    let out = Command::new(gprof())
        .arg("check")
        .arg(&bin)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("gprof's table for go1.27, assumed for a newer release"),
        "{text}"
    );
    if require_root(test) {
        let target = Spawned::start(Command::new(&bin).args([
            "-report",
            "100ms",
            "-parked",
            "500",
            "-churn-rate",
            "500",
        ]));
        assert!(wait_for(Duration::from_secs(5), || target.snapshot().len() >= 5));
        let pid = target.pid().to_string();
        let out = Command::new(gprof())
            .args(["check", "--pid", &pid])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("self-check:     passed"), "{text}");
        let (ok, samples, err) = run_gprof(&["top", "--batch", "--iterations", "5", "--pid", &pid]);
        assert!(ok, "{err}");
        assert_eq!(samples[0]["go_version"], "go1.28.0");
        let own = target.snapshot();
        for s in &samples[1..] {
            let truth = interpolate(&own, "num_goroutine", f(s, "unix")).unwrap();
            let got = f(s, "goroutines");
            assert!(
                (got - truth).abs() <= (truth * 0.02).max(5.0),
                "{got} vs {truth}"
            );
        }
    }
    let _ = std::fs::remove_file(bin);
}

/// A release newer than gprof's table, in a binary with DWARF: the layout comes from DWARF
/// (the binary here is go1.27.3 relabeled go1.28.0, so the figures can be checked).
#[test]
fn newer_release_with_dwarf_is_read_from_dwarf() {
    let test = "newer_release_with_dwarf_is_read_from_dwarf";
    let Some(bin) = relabeled(test, "1.27.3", "plain", "go1.27.3", "go1.28.0") else {
        return;
    };
    let out = Command::new(gprof())
        .args(["check"])
        .arg(&bin)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("go release:     go1.28.0"), "{text}");
    assert!(
        text.contains("release newer than the table; calling conventions of go1.27 assumed"),
        "{text}"
    );
    if require_root(test) {
        let target = Spawned::start(Command::new(&bin).args([
            "-report",
            "100ms",
            "-parked",
            "500",
            "-churn-rate",
            "500",
        ]));
        assert!(wait_for(Duration::from_secs(5), || target.snapshot().len() >= 5));
        let (ok, samples, err) = run_gprof(&[
            "top",
            "--batch",
            "--iterations",
            "5",
            "--pid",
            &target.pid().to_string(),
        ]);
        assert!(ok, "{err}");
        let own = target.snapshot();
        for s in &samples[1..] {
            let truth = interpolate(&own, "num_goroutine", f(s, "unix")).unwrap();
            let got = f(s, "goroutines");
            assert!(
                (got - truth).abs() <= (truth * 0.02).max(5.0),
                "{got} vs {truth}"
            );
        }
    }
    let _ = std::fs::remove_file(bin);
}
