//! `cargo xtask bench leaks`: the leak verdict on scenario programs that print their own truth
//! (`testdata/go/scenarios`): slow leaks of several rates beneath bursty load, a leak that
//! stops, leaks on locks, WaitGroups, reads and unreachable channels, and no-leak scenarios
//! (load steps, pools warming up, thousands of connections coming and going, goroutines in
//! select with timers). Every scenario runs at once, each watched by its own `gprof top`;
//! per scenario: time to a leaking verdict, false verdicts, the confirmed rate against the
//! truth. `docs/leaks.md` records the results.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use serde_json::Value;

use super::gprof::{JsonLines, interpolate, num};

/// One scenario: its flags and which truth position its leak blocks at (None: no leak).
struct Scenario {
    name: &'static str,
    args: Vec<String>,
    /// The truth position (`positions` key) where leaked goroutines block.
    blocks_at: Option<&'static str>,
    /// When the leak stops, seconds after the start.
    stops_after: Option<f64>,
}

fn scenarios(stuck_after: u64) -> Vec<Scenario> {
    let s = |name, args: Vec<String>, blocks_at, stops_after| Scenario {
        name,
        args,
        blocks_at,
        stops_after,
    };
    let life = format!("{}s", 2 * stuck_after);
    // Load alternates between 100 and 10 requests/s every 10 s (bursty, light enough for
    // a dozen programs on two cores).
    let load = ["-high", "100", "-low", "10"];
    let with =
        |more: &[&str]| -> Vec<String> { load.iter().chain(more).map(|a| a.to_string()).collect() };
    vec![
        s(
            "slow leak 6/min",
            with(&["-scenario", "slowleak", "-per-min", "6"]),
            Some("send"),
            None,
        ),
        s(
            "slow leak 30/min",
            with(&["-scenario", "slowleak", "-per-min", "30"]),
            Some("send"),
            None,
        ),
        s(
            "leak 120/min",
            with(&["-scenario", "slowleak", "-per-min", "120"]),
            Some("send"),
            None,
        ),
        s(
            "leak 0.5 % of requests",
            with(&["-scenario", "leak", "-share", "0.005"]),
            Some("send"),
            None,
        ),
        s(
            "leak that stops after 90 s",
            with(&[
                "-scenario",
                "leakstops",
                "-share",
                "0.02",
                "-stop-after",
                "90s",
            ]),
            Some("send"),
            Some(90.0),
        ),
        s(
            "leak on a global mutex (goroutineleak profile every 5 s)",
            with(&["-scenario", "mutex", "-share", "0.01", "-leakprofile", "5s"]),
            Some("lock"),
            None,
        ),
        s(
            "leak on a WaitGroup",
            with(&["-scenario", "waitgroup", "-share", "0.01"]),
            Some("wait"),
            None,
        ),
        s(
            "leak on a read (IO wait)",
            with(&["-scenario", "ioleak", "-share", "0.01"]),
            Some("read"),
            None,
        ),
        s(
            "50 goroutines on unreachable channels (goroutineleak profile every 2 s)",
            with(&["-scenario", "goleak"]),
            Some("unreachable send"),
            None,
        ),
        s(
            "load step + 300 connections",
            with(&["-scenario", "loadstep", "-conns", "300"]),
            None,
            None,
        ),
        s(
            "pool of 300 warming up in 2 s",
            with(&["-scenario", "pool", "-conns", "300"]),
            None,
            None,
        ),
        s(
            "2000 connections living about 2 x stuck-after, replaced as they close",
            with(&["-scenario", "conns", "-conns", "2000", "-life", &life]),
            None,
            None,
        ),
        s(
            "2000 goroutines in select with timers",
            with(&["-scenario", "timers", "-conns", "2000"]),
            None,
            None,
        ),
    ]
}

struct Running {
    scenario: Scenario,
    program: Child,
    truth: JsonLines,
    gprof: Child,
    samples: JsonLines,
    started: f64,
}

impl Drop for Running {
    fn drop(&mut self) {
        for c in [&mut self.program, &mut self.gprof] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What one scenario's run showed.
struct Outcome {
    found_after: Option<f64>,
    false_verdicts: usize,
    samples: usize,
    confirmed: f64,
    truth: f64,
    cleared_after_stop: Option<f64>,
    stuck: f64,
    /// Most goroutines the runtime itself marked leaked (Go 1.26+'s goroutineleak profile).
    runtime_leaked: f64,
}

fn evaluate(r: &Running, stuck_after: f64) -> Outcome {
    let samples = r.samples.all();
    let truth = r.truth.all();
    let positions = truth.last().map(|t| t["positions"].clone());
    let line_of = |key: &str| {
        positions
            .as_ref()
            .and_then(|p| p[key]["line"].as_u64())
            .map(|l| format!("main.go:{l})"))
    };
    let expected = r.scenario.blocks_at.and_then(line_of);
    let leaking = |s: &Value| -> Vec<Value> {
        s["blocked_groups"]
            .as_array()
            .map(|g| g.iter().filter(|g| g["leaking"] == true).cloned().collect())
            .unwrap_or_default()
    };
    let right = |g: &Value| {
        expected
            .as_ref()
            .is_some_and(|want| g["blocked_at"].as_str().is_some_and(|b| b.ends_with(want)))
    };
    let mut found_after = None;
    let mut false_verdicts = 0;
    let mut cleared_after_stop = None;
    let mut runtime_leaked: f64 = 0.0;
    for s in &samples {
        let t = num(s, "unix").unwrap_or(0.0) - r.started;
        let groups = leaking(s);
        runtime_leaked = runtime_leaked.max(
            groups
                .iter()
                .filter(|g| {
                    g["wait_reason"]
                        .as_str()
                        .is_some_and(|w| w.ends_with("(leaked)"))
                })
                .filter_map(|g| num(g, "stuck"))
                .sum(),
        );
        false_verdicts += groups.iter().filter(|g| !right(g)).count();
        if groups.iter().any(&right) {
            found_after.get_or_insert(t);
        }
        if let Some(stop) = r.scenario.stops_after
            && t > stop
            && found_after.is_some()
            && cleared_after_stop.is_none()
            && groups.is_empty()
        {
            cleared_after_stop = Some(t - stop);
        }
    }
    // The confirmed rate of the last sample against the program's own leaks per minute over
    // the time its stuck count reflects (from the start to stuck_after ago).
    let last = samples.last();
    let t = last.and_then(|s| num(s, "unix")).unwrap_or(0.0);
    let leaked = |at: f64| interpolate(&truth, "leaked", at).unwrap_or(f64::NAN);
    let first = truth.first();
    let from = first.and_then(|l| num(l, "unix")).unwrap_or(t);
    let leaked_first = first.and_then(|l| num(l, "leaked")).unwrap_or(0.0);
    let until = t - stuck_after;
    Outcome {
        found_after,
        false_verdicts,
        samples: samples.len(),
        confirmed: last
            .and_then(|s| num(s, "confirmed_leak_rate_per_min"))
            .unwrap_or(0.0),
        truth: (leaked(until) - leaked_first) / (until - from) * 60.0,
        cleared_after_stop,
        stuck: last.and_then(|s| num(s, "stuck_goroutines")).unwrap_or(0.0),
        runtime_leaked,
    }
}

pub fn run(go: &str, stuck_after: u64, seconds: u64) -> anyhow::Result<()> {
    let workspace = crate::run::workspace();
    let program = crate::gotargets::build(
        &workspace.join("testdata/go/scenarios"),
        go,
        crate::gotargets::variant("stripped"),
    )?;
    let gprof = workspace.join("target/release/gprof");
    println!(
        "\n## Leak verdict: {} scenarios at once, Go {go} (stripped), --stuck-after {stuck_after}, {seconds} s each\n",
        scenarios(stuck_after).len()
    );
    let mut running = Vec::new();
    for scenario in scenarios(stuck_after) {
        running.push(start(&program, &gprof, scenario, stuck_after, seconds)?);
    }
    std::thread::sleep(Duration::from_secs(seconds + 5));
    println!(
        "| scenario | leak (truth, /min) | found after | false verdicts (samples) | confirmed /min (last sample) | error | stuck at the end | cleared after the leak stopped | marked leaked by the runtime |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let (mut latest, mut worst_error, mut false_verdicts) = (f64::NEG_INFINITY, 0.0f64, 0);
    for r in &running {
        let o = evaluate(r, stuck_after as f64);
        let leaks = r.scenario.blocks_at.is_some();
        false_verdicts += o.false_verdicts;
        if leaks {
            // A leak never found is as late as it gets.
            latest = latest.max(
                o.found_after
                    .map_or(f64::INFINITY, |t| t - stuck_after as f64),
            );
            if o.truth > 0.0 && r.scenario.stops_after.is_none() {
                worst_error = worst_error.max(((o.confirmed - o.truth) / o.truth * 100.0).abs());
            }
        }
        let dash = || "-".to_string();
        println!(
            "| {} | {} | {} | {} ({}) | {:.1} | {} | {:.0} | {} | {:.0} |",
            r.scenario.name,
            if leaks {
                format!("{:.1}", o.truth)
            } else {
                "none".into()
            },
            match (leaks, o.found_after) {
                (false, _) => dash(),
                (true, Some(t)) => format!("{t:.0} s"),
                (true, None) => "not found".into(),
            },
            o.false_verdicts,
            o.samples,
            o.confirmed,
            if leaks && o.truth > 0.0 && r.scenario.stops_after.is_none() {
                format!("{:+.0} %", (o.confirmed - o.truth) / o.truth * 100.0)
            } else {
                dash()
            },
            o.stuck,
            o.cleared_after_stop
                .map_or_else(dash, |t| format!("{t:.0} s")),
            o.runtime_leaked,
        );
    }
    use super::limits::{FALSE_VERDICTS, LEAK_FOUND, LEAK_RATE, report};
    report(LEAK_FOUND, latest, None, "the slowest scenario");
    report(LEAK_RATE, worst_error, None, "");
    report(FALSE_VERDICTS, false_verdicts as f64, None, "");
    Ok(())
}

fn start(
    program: &Path,
    gprof: &Path,
    scenario: Scenario,
    stuck_after: u64,
    seconds: u64,
) -> anyhow::Result<Running> {
    let started = now();
    let mut child = Command::new(program)
        .args(&scenario.args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting a scenario")?;
    let (truth, _) = JsonLines::collect(child.stdout.take().context("stdout")?);
    let mut watcher = Command::new(gprof)
        .args(["top", "--batch", "--pid", &child.id().to_string()])
        .args(["--stuck-after", &stuck_after.to_string()])
        .args(["--iterations", &seconds.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting gprof")?;
    let (samples, _) = JsonLines::collect(watcher.stdout.take().context("gprof stdout")?);
    Ok(Running {
        scenario,
        program: child,
        truth,
        gprof: watcher,
        samples,
        started,
    })
}
