//! The daemon's own CPU and memory while it watches many Go processes, read from its
//! Prometheus endpoint (the figures an operator sees).

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::{gotargets, run};

/// The daemon's CPU and resident memory while it watches `n` Go processes (each leaking
/// 1 goroutine/s beside 100 short-lived ones/s, with a GC every 2 s).
pub fn run(go: &str, n: usize, seconds: u64) -> anyhow::Result<()> {
    let workload = gotargets::build(
        &run::workspace().join("testdata/go/workload"),
        go,
        gotargets::variant("stripped"),
    )?;
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
        .map(|i| {
            Command::new(&workload)
                .env("GPROF_TENANT", format!("tenant-{}", i % 5))
                .args([
                    "-leak-rate",
                    "1",
                    "-churn-rate",
                    "100",
                    "-gc-every",
                    "2s",
                    "-report",
                    "0",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    let mut daemon = Command::new(&gprof)
        .args(["daemon", "--config"])
        .arg(dir.join("gprof.yaml"))
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::null())
        .spawn()?;
    let scrape = || -> Option<(f64, f64, f64)> {
        let body = http_get(port)?;
        let value = |name: &str| {
            body.lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        };
        Some((
            value("gprof_daemon_cpu_seconds_total")?,
            value("gprof_daemon_resident_memory_bytes")?,
            value("gprof_watched_processes")?,
        ))
    };
    // Warm up until every process is watched.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while scrape().is_none_or(|(_, _, w)| (w as usize) < n) {
        if std::time::Instant::now() > deadline {
            bail!("the daemon did not watch all {n} processes: {:?}", scrape());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(5));
    let (cpu0, _, _) = scrape().context("scrape")?;
    let t0 = std::time::Instant::now();
    let mut peak_rss: f64 = 0.0;
    while t0.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(2));
        if let Some((_, rss, _)) = scrape() {
            peak_rss = peak_rss.max(rss);
        }
    }
    let (cpu1, rss, watched) = scrape().context("scrape")?;
    let secs = t0.elapsed().as_secs_f64();
    for t in &mut targets {
        let _ = t.kill();
        let _ = t.wait();
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "daemon watching {watched} Go processes ({} Go {}), sampling every 2 s, for {secs:.0} s:",
        n, go
    );
    println!(
        "  CPU:  {:.2} % of one core ({:.2} s in {secs:.0} s)",
        (cpu1 - cpu0) / secs * 100.0,
        cpu1 - cpu0
    );
    println!(
        "  RSS:  {:.1} MiB at the end, {:.1} MiB at most",
        rss / 1048576.0,
        peak_rss / 1048576.0
    );
    Ok(())
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
