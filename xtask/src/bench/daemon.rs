//! The daemon's own CPU and memory while it watches many Go processes, from /proc, while a
//! scraper reads its /metrics every 15 s as the ServiceMonitor does.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::{gotargets, run};

/// What the daemon cost watching some number of processes.
struct Measured {
    processes: usize,
    watched: f64,
    cpu_percent: f64,
    rss_mib: f64,
    peak_rss_mib: f64,
}

/// The daemon's CPU and resident memory while it watches `n` Go processes: a node's mix of
/// idle services (70 %: no goroutine created, no GC but the runtime's forced one every 2
/// minutes), busy ones (20 %: 100 goroutines/s, 1 leaked/s, a GC every 2 s) and short-lived
/// ones (10 %: 10 goroutines/s, a GC every 2 s; each runs 10 s and is started again). Above 50 processes it is
/// measured at 50, n/2 and n, and the growth per process is stated.
pub fn run(go: &str, n: usize, seconds: u64) -> anyhow::Result<()> {
    let workload = gotargets::build(
        &run::workspace().join("testdata/go/workload"),
        go,
        gotargets::variant("stripped"),
    )?;
    let sizes: Vec<usize> = if n > 50 { vec![50, n / 2, n] } else { vec![n] };
    let mut results = Vec::new();
    for &size in &sizes {
        let m = measure(&workload, size, seconds)?;
        println!(
            "daemon watching {:.0} of {size} Go processes (Go {go}; 70 % idle, 20 % busy, 10 % short-lived), sampling every 2 s, for {seconds} s:",
            m.watched
        );
        println!("  CPU:  {:.2} % of one core", m.cpu_percent);
        println!(
            "  RSS:  {:.1} MiB at the end, {:.1} MiB at most",
            m.rss_mib, m.peak_rss_mib
        );
        // The README's limits are stated at 300 processes (`--daemon-processes 300`).
        if size == 300 {
            let note = format!("{:.0} watched", m.watched);
            super::limits::report(super::limits::DAEMON_CPU, m.cpu_percent, None, &note);
            super::limits::report(super::limits::DAEMON_RSS, m.peak_rss_mib, None, &note);
        }
        results.push(m);
    }
    if let (Some(a), Some(b)) = (results.first(), results.last())
        && b.processes > a.processes
    {
        let more = (b.processes - a.processes) as f64;
        println!(
            "growth from {} to {} processes: {:.4} % of a core and {:.1} KiB of RSS per process",
            a.processes,
            b.processes,
            (b.cpu_percent - a.cpu_percent) / more,
            (b.peak_rss_mib - a.peak_rss_mib) * 1024.0 / more
        );
    }
    Ok(())
}

/// One target of the mix: index `i` of `n`.
fn spawn_target(workload: &std::path::Path, i: usize) -> std::io::Result<Child> {
    let mut cmd = Command::new(workload);
    cmd.env("GPROF_TENANT", format!("tenant-{}", i % 5));
    match i % 10 {
        // Busy.
        0 | 5 => cmd.args([
            "-leak-rate",
            "1",
            "-churn-rate",
            "100",
            "-gc-every",
            "2s",
            "-report",
            "0",
        ]),
        // Short-lived.
        3 => cmd.args([
            "-leak-rate",
            "0",
            "-churn-rate",
            "10",
            "-duration",
            "10s",
            "-report",
            "0",
        ]),
        // Idle: nothing created, no GC but the runtime's own (forced every 2 minutes).
        _ => cmd.args([
            "-leak-rate",
            "0",
            "-churn-rate",
            "0",
            "-gc-every",
            "0",
            "-report",
            "0",
        ]),
    };
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn()
}

fn measure(workload: &std::path::Path, n: usize, seconds: u64) -> anyhow::Result<Measured> {
    let gprof = run::workspace().join("target/release/gprof");
    let dir = std::env::temp_dir().join(format!("gprof-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("gprof.yaml"),
        "interval: 2s\nthresholds:\n  - metric: goroutine_leak_rate_per_min\n    warning: 600\n",
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut targets: Vec<Child> = (0..n)
        .map(|i| spawn_target(workload, i))
        .collect::<Result<_, _>>()?;
    // Short-lived targets that ended are started again.
    let restart = |targets: &mut Vec<Child>| -> std::io::Result<()> {
        for (i, t) in targets.iter_mut().enumerate() {
            if t.try_wait()?.is_some() {
                *t = spawn_target(workload, i)?;
            }
        }
        Ok(())
    };
    let mut daemon = Command::new(&gprof)
        .args(["daemon", "--config"])
        .arg(dir.join("gprof.yaml"))
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::null())
        .spawn()?;
    let watched = || -> Option<f64> {
        let body = http_get(port)?;
        body.lines()
            .find(|l| l.split_whitespace().next() == Some("gprof_watched_processes"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    // The daemon's CPU seconds and resident bytes, from /proc (as the kernel counts them).
    let pid = daemon.id();
    let usage = || -> Option<(f64, f64)> {
        use procfs::WithCurrentSystemInfo as _;
        let stat = procfs::process::Process::new(pid as i32)
            .ok()?
            .stat()
            .ok()?;
        let cpu = (stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64;
        Some((cpu, stat.rss_bytes().get() as f64))
    };
    // Warm up until the long-lived processes are watched.
    let steady = n - n.div_ceil(10);
    let deadline = std::time::Instant::now() + Duration::from_secs(60 + n as u64 / 5);
    while watched().is_none_or(|w| (w as usize) < steady) {
        if std::time::Instant::now() > deadline {
            bail!(
                "the daemon did not watch {steady} of {n} processes: {:?}",
                watched()
            );
        }
        restart(&mut targets)?;
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(5));
    let (cpu0, _) = usage().context("the daemon's /proc/PID/stat")?;
    let t0 = std::time::Instant::now();
    let (mut peak_rss, mut watched_sum, mut scrapes) = (0.0f64, 0.0, 0u32);
    let mut next_scrape = t0;
    while t0.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        restart(&mut targets)?;
        if let Some((_, rss)) = usage() {
            peak_rss = peak_rss.max(rss);
        }
        // Scraped as the ServiceMonitor does, every 15 s.
        if std::time::Instant::now() >= next_scrape {
            next_scrape += Duration::from_secs(15);
            if let Some(w) = watched() {
                watched_sum += w;
                scrapes += 1;
            }
        }
    }
    let (cpu1, rss) = usage().context("the daemon's /proc/PID/stat")?;
    let secs = t0.elapsed().as_secs_f64();
    for t in &mut targets {
        let _ = t.kill();
        let _ = t.wait();
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Measured {
        processes: n,
        watched: watched_sum / f64::from(scrapes.max(1)),
        cpu_percent: (cpu1 - cpu0) / secs * 100.0,
        rss_mib: rss / 1048576.0,
        peak_rss_mib: peak_rss.max(rss) / 1048576.0,
    })
}

/// The daemon's /metrics on loopback `port`.
pub fn metrics(port: u16) -> Option<String> {
    http_get(port)
}

fn http_get(port: u16) -> Option<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}
