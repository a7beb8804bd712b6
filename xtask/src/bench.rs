//! `cargo xtask bench`: the cost gprof puts on its target. A worst-case goroutine-churn Go
//! program runs alternately without and with `gprof top` attached, in one run, and the
//! medians give the overhead ratio and the cost of one probe hit.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::{gotargets, run, toolchain};

#[derive(clap::Args)]
pub struct Options {
    /// Rounds; each runs the program once without and once with gprof.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Goroutines each run starts.
    #[arg(long, default_value_t = 2_000_000)]
    goroutines: u64,
    /// Go release of the program.
    #[arg(long, default_value = "1.27.3")]
    go: String,
    /// Instead of the churn ratio, measure the daemon's own CPU and memory while it watches
    /// this many Go processes.
    #[arg(long)]
    daemon_processes: Option<usize>,
    /// Seconds the daemon measurement lasts.
    #[arg(long, default_value_t = 60)]
    daemon_seconds: u64,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn run(o: &Options) -> anyhow::Result<()> {
    if o.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    crate::build()?;
    toolchain::ensure_go(&o.go)?;
    if let Some(n) = o.daemon_processes {
        return daemon(o, n);
    }
    let churn = gotargets::build(
        &run::workspace().join("testdata/go/churn"),
        &o.go,
        gotargets::variant("stripped"),
    )?;
    let gprof = run::workspace().join("target/release/gprof");
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for round in 0..o.rounds {
        // Alternate the order so that drift on the machine hits both sides alike.
        for attached in if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        } {
            let secs = one_run(&churn, &gprof, o.goroutines, attached)?;
            eprintln!(
                "xtask: round {} {:<15} {secs:.3} s",
                round + 1,
                if attached {
                    "with gprof"
                } else {
                    "without gprof"
                }
            );
            if attached {
                with.push(secs)
            } else {
                without.push(secs)
            }
        }
    }
    let (w, wo) = (median(&mut with), median(&mut without));
    // Every goroutine hits two probes: creation (newproc1) and exit (gfput).
    let hits = 2.0 * o.goroutines as f64;
    println!(
        "workload: {} goroutines with empty bodies, Go {} (stripped), {} rounds",
        o.goroutines, o.go, o.rounds
    );
    println!(
        "median without gprof: {wo:.3} s ({:.0} ns per goroutine)",
        wo / o.goroutines as f64 * 1e9
    );
    println!("median with gprof:    {w:.3} s");
    println!("overhead ratio:       {:.2}", w / wo);
    println!(
        "cost per probe hit:   {:.0} ns ({} hits per run)",
        (w - wo) / hits * 1e9,
        hits
    );
    Ok(())
}

fn one_run(
    churn: &std::path::Path,
    gprof: &std::path::Path,
    n: u64,
    attached: bool,
) -> anyhow::Result<f64> {
    let mut target = Command::new(churn)
        .args(["-wait", "-n", &n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut profiler: Option<Child> = None;
    if attached {
        let mut p = Command::new(gprof)
            .args([
                "top",
                "--batch",
                "--interval",
                "0.2",
                "--pid",
                &target.id().to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()?;
        // The first JSON line means the probes are attached.
        let mut line = String::new();
        BufReader::new(p.stdout.as_mut().context("gprof stdout")?).read_line(&mut line)?;
        if line.is_empty() {
            let _ = target.kill();
            bail!("gprof did not attach (see its error above)");
        }
        profiler = Some(p);
    } else {
        std::thread::sleep(Duration::from_millis(200));
    }
    target.stdin.take().context("stdin")?.write_all(b"go\n")?;
    let out = target.wait_with_output()?;
    if let Some(mut p) = profiler {
        let _ = p.kill();
        let _ = p.wait();
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("churn printed {:?}", String::from_utf8_lossy(&out.stdout)))?;
    v["seconds"]
        .as_f64()
        .context("no seconds in the churn output")
}

/// The daemon's CPU and resident memory while it watches `n` Go processes (each leaking
/// 1 goroutine/s beside 100 short-lived ones/s, with a GC every 2 s).
fn daemon(o: &Options, n: usize) -> anyhow::Result<()> {
    let workload = gotargets::build(
        &run::workspace().join("testdata/go/workload"),
        &o.go,
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
    while t0.elapsed() < Duration::from_secs(o.daemon_seconds) {
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
        n, o.go
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
