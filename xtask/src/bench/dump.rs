//! `gprof dump`: how fast a dump of many parked goroutines is (wall time and gprof's peak
//! memory, `testdata/go/crowd` with 100,000 goroutines), and what ten back-to-back dumps cost
//! a loaded HTTP server, as requests per CPU-second against its undumped twin.

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
    }
    let _ = program.kill();
    let _ = program.wait();
    result?;
    if live.is_none() {
        bail!("crowd did not report");
    }
    println!("\n## Ten back-to-back dumps of a loaded HTTP server, paired against its twin\n");
    let runs = super::http::dumped(go, http_seconds, rounds)?;
    let mut ratios: Vec<f64> = runs.iter().map(|r| r.0).collect();
    for (i, (ratio, took)) in runs.iter().enumerate() {
        println!(
            "round {}: requests per CPU-second, dumped/undumped {ratio:.3}; ten dumps took {took:.2} s",
            i + 1
        );
    }
    let median = super::median(&mut ratios);
    let (lo, hi) = (ratios[0], ratios[ratios.len() - 1]);
    println!(
        "median {median:.3} (range {lo:.3}-{hi:.3}, {} rounds)",
        ratios.len()
    );
    Ok(())
}
