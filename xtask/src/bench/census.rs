//! The census at scale: a stripped program with a million parked goroutines
//! (`testdata/go/crowd`) under `gprof top` for five minutes, then under the daemon beside
//! fifty small services: gprof's CPU averaged over the run and its peak memory, how soon every
//! goroutine is stuck, how stale the census gets, and whether the small services' rounds keep
//! their interval.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::gprof::{JsonLines, cpu_seconds, num, peak_rss};
use crate::{gotargets, run};

const STUCK_AFTER: &str = "10";

fn kill(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

pub fn run(go: &str, goroutines: u64, seconds: u64, parts: &str) -> anyhow::Result<()> {
    let part = |p: &str| parts.split(',').any(|x| x.trim() == p);
    let build = |program: &str| {
        gotargets::build(
            &run::workspace().join("testdata/go").join(program),
            go,
            gotargets::variant("stripped"),
        )
    };
    let (crowd, workload) = (build("crowd")?, build("workload")?);
    let mut program = Command::new(&crowd)
        .args(["-n", &goroutines.to_string(), "-report", "0"])
        .stdout(Stdio::piped())
        .spawn()?;
    let (lines, _reader) = JsonLines::collect(program.stdout.take().context("crowd stdout")?);
    let deadline = Instant::now() + Duration::from_secs(180);
    while lines.all().is_empty() {
        if Instant::now() > deadline {
            kill(program);
            bail!("crowd did not park {goroutines} goroutines");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let parked = lines.get(0).context("crowd's report")?;
    let parked_by = num(&parked, "parked_by").context("parked_by")?;
    let live = num(&parked, "num_goroutine").context("num_goroutine")?;
    println!("\n## The census of {goroutines} parked goroutines (Go {go}, stripped)\n");
    if part("top") {
        top(program.id(), parked_by, live, seconds)?;
    }
    if part("daemon") {
        daemon(&workload, program.id(), live, seconds)?;
    }
    kill(program);
    Ok(())
}

/// `gprof top` for `seconds`: CPU over the whole run, peak RSS, when all were stuck.
fn top(pid: u32, parked_by: f64, live: f64, seconds: u64) -> anyhow::Result<()> {
    let gprof = run::workspace().join("target/release/gprof");
    let mut child = Command::new(&gprof)
        .args([
            "top",
            "--batch",
            "--interval",
            "1",
            "--stuck-after",
            STUCK_AFTER,
        ])
        .args(["--pid", &pid.to_string()])
        .stdout(Stdio::piped())
        .spawn()?;
    let started = Instant::now();
    let (samples, _reader) = JsonLines::collect(child.stdout.take().context("gprof stdout")?);
    let me = child.id();
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
    }
    let cpu = cpu_seconds(me).unwrap_or(f64::NAN) / started.elapsed().as_secs_f64();
    let rss = peak_rss(me).unwrap_or(0);
    kill(child);
    let all = samples.all();
    if all.is_empty() {
        bail!("gprof top gave no sample of PID {pid}");
    }
    let exact = all
        .iter()
        .filter(|s| num(s, "goroutines") == Some(live))
        .count();
    let stuck = all
        .iter()
        .find(|s| num(s, "stuck_goroutines").is_some_and(|n| n >= live - 1.0))
        .and_then(|s| num(s, "unix"));
    let oldest = all
        .iter()
        .filter_map(|s| s["census"]["age_seconds"].as_f64())
        .fold(0.0, f64::max);
    let census_cpu = all
        .last()
        .and_then(|s| s["census"]["last_cpu_seconds"].as_f64())
        .unwrap_or(f64::NAN);
    println!(
        "gprof top --stuck-after {STUCK_AFTER}, {seconds} s: {:.2} % of a core on average (attach and first census included), peak RSS {:.1} MiB; live count exact in {exact} of {} samples; all stuck {} s after they parked; census at most {oldest:.0} s old, {:.0} ms of CPU each",
        cpu * 100.0,
        rss as f64 / 1048576.0,
        all.len(),
        stuck.map_or("never".into(), |t| format!("{:.0}", t - parked_by)),
        census_cpu * 1000.0
    );
    Ok(())
}

/// The daemon beside fifty small services for `seconds`.
fn daemon(workload: &std::path::Path, crowd: u32, live: f64, seconds: u64) -> anyhow::Result<()> {
    let small: Vec<Child> = (0..50)
        .map(|_| {
            Command::new(workload)
                .args(["-leak-rate", "1", "-churn-rate", "20", "-gc-every", "2s"])
                .args(["-parked", "20", "-report", "0"])
                .stdout(Stdio::null())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    let dir = std::env::temp_dir().join(format!("gprof-bench-census-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("gprof.yaml"),
        format!("interval: 2s\nleaks:\n  stuck_after: {STUCK_AFTER}s\n"),
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let gprof = run::workspace().join("target/release/gprof");
    let daemon = Command::new(&gprof)
        .args(["daemon", "--config"])
        .arg(dir.join("gprof.yaml"))
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::null())
        .spawn()?;
    let started = Instant::now();
    let label = format!("pid=\"{crowd}\"");
    let value = |m: &str, name: &str, label: &str| -> Option<f64> {
        m.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with('{') && l.contains(label))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    let gauge = |m: &str, name: &str| -> Option<f64> {
        m.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    let (mut worst_round, mut worst_late, mut oldest) = (0.0f64, 0.0f64, 0.0f64);
    let (mut stuck, mut exact, mut seen) = (None, 0, 0);
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        let Some(m) = super::daemon::metrics(port) else {
            continue;
        };
        if let Some(n) = value(&m, "gprof_goroutines", &label) {
            seen += 1;
            exact += usize::from(n == live);
        }
        if stuck.is_none()
            && value(&m, "gprof_goroutines_stuck", &label).is_some_and(|n| n >= live - 1.0)
        {
            stuck = Some(started.elapsed().as_secs_f64());
        }
        oldest = oldest.max(value(&m, "gprof_census_age_seconds", &label).unwrap_or(0.0));
        if started.elapsed() > Duration::from_secs(20) {
            worst_round = worst_round.max(gauge(&m, "gprof_daemon_round_seconds").unwrap_or(0.0));
            worst_late =
                worst_late.max(gauge(&m, "gprof_daemon_round_late_seconds").unwrap_or(0.0));
        }
    }
    let me = daemon.id();
    let cpu = cpu_seconds(me).unwrap_or(f64::NAN) / started.elapsed().as_secs_f64();
    let rss = peak_rss(me).unwrap_or(0);
    kill(daemon);
    for c in small {
        kill(c);
    }
    let _ = std::fs::remove_dir_all(&dir);
    if seen == 0 {
        bail!("the daemon never showed PID {crowd}");
    }
    println!(
        "gprof daemon beside 50 small services, {seconds} s: {:.2} % of a core on average (start included), peak RSS {:.1} MiB; the crowd's live count exact in {exact} of {seen} scrapes; all stuck {} s after the daemon started; census at most {oldest:.0} s old; after the first 20 s, rounds took at most {worst_round:.3} s and began at most {worst_late:.3} s late (interval 2 s)",
        cpu * 100.0,
        rss as f64 / 1048576.0,
        stuck.map_or("never".into(), |t| format!("{t:.0}")),
    );
    Ok(())
}
