//! `gprof dump`: how fast a dump of many parked goroutines is (wall time and gprof's peak
//! memory, `testdata/go/crowd` with 100,000 goroutines), and what dumps back to back cost a
//! loaded HTTP server: its requests per CPU-second against its undumped twin's, beside the
//! same pair with no dump (the bench's noise).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::gprof::{JsonLines, num};
use crate::{gotargets, run};

/// Runs `cmd` to its end: wall seconds and peak RSS (KiB), from the kernel's accounting.
fn timed(cmd: &mut Command) -> anyhow::Result<(f64, i64)> {
    let t0 = Instant::now();
    let child = cmd.stdout(Stdio::null()).spawn()?;
    let mut status = 0;
    // SAFETY: rusage is plain data the kernel fills; the PID is our child's.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    if pid < 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("{cmd:?} failed");
    }
    Ok((t0.elapsed().as_secs_f64(), usage.ru_maxrss))
}

pub fn run(go: &str, goroutines: u64, http_seconds: u64, rounds: usize) -> anyhow::Result<()> {
    let crowd = gotargets::build(
        &run::workspace().join("testdata/go/crowd"),
        go,
        gotargets::variant("stripped"),
    )?;
    let gprof = run::workspace().join("target/release/gprof");
    let mut program = Command::new(&crowd)
        .args(["-n", &goroutines.to_string(), "-report", "0"])
        .stdout(Stdio::piped())
        .spawn()?;
    let (lines, _reader) = JsonLines::collect(program.stdout.take().context("crowd stdout")?);
    let deadline = Instant::now() + Duration::from_secs(120);
    while lines.all().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let live = lines.get(0).and_then(|l| num(&l, "num_goroutine"));
    println!("\n## gprof dump of {goroutines} parked goroutines (Go {go}, stripped)\n");
    println!("| format | wall | gprof peak RSS |\n|---|---|---|");
    let pid = program.id().to_string();
    let mut result = Ok(());
    for (name, args) in [
        ("text", &["--format", "text"][..]),
        ("text --system", &["--system"][..]),
        ("pprof", &["--format", "pprof"][..]),
        ("json", &["--format", "json"][..]),
    ] {
        let mut best = (f64::MAX, 0);
        for _ in 0..3 {
            match timed(
                Command::new(&gprof)
                    .args(["dump", "--pid", &pid])
                    .args(args),
            ) {
                Ok((wall, rss)) if wall < best.0 => best = (wall, rss),
                Ok(_) => {}
                Err(e) => result = Err(e),
            }
        }
        println!(
            "| {name} | {:.2} s | {:.1} MiB |",
            best.0,
            best.1 as f64 / 1024.0
        );
        if name == "text" && goroutines == 100_000 && best.0 < f64::MAX {
            super::limits::report(super::limits::DUMP_SECONDS, best.0, None, "best of 3");
            super::limits::report(
                super::limits::DUMP_RSS,
                best.1 as f64 / 1024.0,
                None,
                "best of 3",
            );
        }
    }
    let _ = program.kill();
    let _ = program.wait();
    result?;
    if live.is_none() {
        bail!("crowd did not report");
    }
    println!(
        "\n## A loaded HTTP server dumped back to back for {http_seconds} s, paired against its twin\n"
    );
    println!(
        "| round | no dump: throughput A/B | per CPU-second A/B | A dumped: throughput A/B | per CPU-second A/B | dumps | each |\n|---|---|---|---|---|---|---|"
    );
    let runs = super::http::dumped(go, http_seconds, rounds)?;
    for (i, r) in runs.iter().enumerate() {
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {:.0} ms |",
            i + 1,
            r.undumped.throughput,
            r.undumped.per_cpu,
            r.dumped.throughput,
            r.dumped.per_cpu,
            r.dumps,
            r.took / r.dumps as f64 * 1e3
        );
    }
    let summary = |what: &str, pick: &dyn Fn(&super::http::DumpRound) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(pick).collect();
        let m = super::median(&mut v);
        println!(
            "{what}: median {m:.3} (range {:.3}-{:.3}, {} rounds)",
            v[0],
            v[v.len() - 1],
            v.len()
        );
    };
    summary("no dump, throughput A/B", &|r| r.undumped.throughput);
    summary("A dumped, throughput A/B", &|r| r.dumped.throughput);
    summary("no dump, requests per CPU-second A/B", &|r| {
        r.undumped.per_cpu
    });
    summary("A dumped, requests per CPU-second A/B", &|r| {
        r.dumped.per_cpu
    });
    let per_cpu: Vec<f64> = runs.iter().map(|r| r.dumped.per_cpu).collect();
    let (median, interval) = super::limits::median_interval(&per_cpu);
    super::limits::report(
        super::limits::DUMPED_SERVER,
        median,
        interval,
        &format!("median of {} rounds", runs.len()),
    );
    Ok(())
}
