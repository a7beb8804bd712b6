//! A Go HTTP server under load from wrk on loopback: each request runs its work in a
//! goroutine of its own, and one in 100 leaves a goroutine behind. Two copies run side by
//! side on CPU 1 (GOMAXPROCS=1), each loaded by its own wrk on CPU 0 (with gprof, which
//! watches A). Which side wins the race for CPU 0 and 1 moves raw throughput by ±15 % from
//! run to run, so the ratio is requests per CPU-second of A over B's: what a saturated
//! server's throughput is. gprof's leak and creation rates are checked against A's own
//! counts.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;

use super::gprof::{self, Attached, JsonLines, interpolate, num};
use super::{Measure, Mode, Run};
use crate::run;

const LEAK_EVERY: u64 = 100;
const CONNECTIONS: u32 = 32;
/// gprof's sampling interval: short, so that the budget's windows (one interval each) come
/// and go several times within a run and the run shows their average cost.
const INTERVAL: &str = "0.1";

pub struct Http {
    copies: [PathBuf; 2],
    go: String,
    seconds: u64,
    /// Runs so far.
    runs: u64,
}

/// The server and the figures it prints about itself.
struct Server {
    child: Child,
    addr: String,
    reports: JsonLines,
}

impl Server {
    fn start(program: &PathBuf) -> anyhow::Result<Self> {
        let mut child = Command::new("taskset")
            .args(["-c", "1"])
            .arg(program)
            .args(["-leak-every", &LEAK_EVERY.to_string(), "-report", "100ms"])
            .env("GOMAXPROCS", "1")
            .stdout(Stdio::piped())
            .spawn()?;
        let (reports, _) = JsonLines::collect(child.stdout.take().context("stdout")?);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let addr = loop {
            if let Some(a) = reports
                .get(0)
                .and_then(|v| Some(v["addr"].as_str()?.to_string()))
            {
                break a;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                bail!("the HTTP server printed no address");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Ok(Self {
            child,
            addr,
            reports,
        })
    }

    /// Loads the server for `seconds` with wrk on CPU 0; returns requests per second.
    fn load(&self, seconds: u64) -> anyhow::Result<f64> {
        let out = run::output(
            Command::new("taskset")
                .args(["-c", "0", "wrk", "-t1"])
                .args([
                    format!("-c{CONNECTIONS}"),
                    format!("-d{seconds}s"),
                    format!("http://{}/", self.addr),
                ]),
        )?;
        let rate = out
            .lines()
            .find_map(|l| l.strip_prefix("Requests/sec:"))
            .and_then(|v| v.trim().parse::<f64>().ok());
        match rate {
            Some(r) if !out.contains("Non-2xx") && !out.contains("Socket errors") => Ok(r),
            _ => bail!("wrk failed:\n{out}"),
        }
    }

    fn reports(&self) -> Vec<Value> {
        self.reports.all()
    }
}

fn least_squares_slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(x, y), &(px, py)| (x + px / n, y + py / n));
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(xy, xx), &(x, y)| {
        (xy + (x - mx) * (y - my), xx + (x - mx) * (x - mx))
    });
    (points.len() >= 2 && sxx > 0.0).then(|| sxy / sxx)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Http {
    pub fn new(go: &str, seconds: u64) -> anyhow::Result<Self> {
        Ok(Self {
            copies: super::pair("bench/httpserver", go)?,
            go: go.into(),
            seconds,
            runs: 0,
        })
    }

    pub fn measure(&self) -> Measure {
        Measure {
            title: format!(
                "HTTP server, Go {} (stripped, GOMAXPROCS=1): a goroutine per request, two copies side by side on one CPU, each under wrk -c{CONNECTIONS} for {} s on loopback",
                self.go, self.seconds
            ),
            ratio: "requests per CPU-second",
            unit: "requests/s",
        }
    }

    pub fn run(&mut self, mode: Mode) -> anyhow::Result<Run> {
        let first = Server::start(&self.copies[0])?;
        let second = Server::start(&self.copies[1])?;
        // Every other run watches the copy started second: whatever favours one side (start
        // order, which wrk the scheduler prefers) cancels out in the medians.
        self.runs += 1;
        let (a, b) = if self.runs.is_multiple_of(2) {
            (&second, &first)
        } else {
            (&first, &second)
        };
        let window = self.seconds.to_string();
        let attached = match mode.gprof_args() {
            Some(args) => {
                let mut all = vec!["--leak-window", &window, "--rate-window", &window];
                all.extend_from_slice(args);
                Some(Attached::start(a.child.id(), INTERVAL, &all, Some("0"))?)
            }
            None => None,
        };
        // Connections and warm caches before the measured part.
        std::thread::scope(|s| {
            let warm = s.spawn(|| b.load(1));
            a.load(1)?;
            warm.join().expect("wrk thread")
        })?;
        let gprof_cpu0 = attached
            .as_ref()
            .and_then(|g| gprof::cpu_seconds(g.pid()))
            .unwrap_or(0.0);
        let before = attached.as_ref().and_then(Attached::latest);
        let cpu = |s: &Server| gprof::threads_cpu_ns(s.child.id()).context("server CPU time");
        let (cpu_a, cpu_b) = (cpu(a)?, cpu(b)?);
        let (rate_a, rate_b) = std::thread::scope(|s| {
            let other = s.spawn(|| b.load(self.seconds));
            let mine = a.load(self.seconds);
            (mine, other.join().expect("wrk thread"))
        });
        let (rate_a, rate_b) = (rate_a?, rate_b?);
        let per_cpu = |rate: f64, s: &Server, before: u64| -> anyhow::Result<f64> {
            let used = cpu(s)?.saturating_sub(before) as f64 / 1e9;
            Ok(rate / used)
        };
        let mut result = Run {
            ratio: per_cpu(rate_a, a, cpu_a)? / per_cpu(rate_b, b, cpu_b)?,
            value: rate_a,
            note: Some(format!("throughput A/B {:.3}", rate_a / rate_b)),
            ..Run::default()
        };
        let Some(g) = attached else {
            return Ok(result);
        };
        let end = g.latest().context("no gprof sample")?;
        let before = before.context("no gprof sample")?;
        let (cpu, rss) = g.usage(gprof_cpu0);
        result.gprof_cpu = Some(cpu);
        result.gprof_rss = Some(rss);
        result.hits_per_s = gprof::hits_per_s(&before, &end);
        result.duty = gprof::attached_share(&before, &end);
        g.stop();
        // gprof's rates over the load against the server's own counts over the same span.
        let own = a.reports();
        let t1 = num(&end, "unix").unwrap_or(0.0);
        let span = self.seconds as f64;
        let own_rate = |key: &str| {
            Some((interpolate(&own, key, t1)? - interpolate(&own, key, t1 - span)?) / span)
        };
        // The leak rate is a least-squares slope of live goroutines over the window: the same
        // from the server's own NumGoroutine over the same span.
        let own_slope = least_squares_slope(
            &own.iter()
                .filter_map(|v| Some((num(v, "unix")?, num(v, "num_goroutine")?)))
                .filter(|&(t, _)| t > t1 - span && t <= t1)
                .collect::<Vec<_>>(),
        );
        if let (Some(want), Some(got)) = (own_slope, num(&end, "goroutine_leak_rate_per_min")) {
            result
                .errors
                .push(("leak rate", (got / 60.0 - want) / want));
        }
        if let (Some(want), Some(got)) = (
            own_rate("created_metric"),
            num(&end, "goroutine_create_rate_per_s"),
        ) {
            result.errors.push(("creation rate", (got - want) / want));
        }
        Ok(result)
    }
}

/// One round of the dump bench: requests per CPU-second of the dumped copy over its twin's,
/// with no dump (the bench's noise) and with gprof dumping it back to back for the whole load.
pub struct DumpRound {
    pub undumped: Ratios,
    pub dumped: Ratios,
    /// Dumps taken during the load, and the wall seconds they took together.
    pub dumps: usize,
    pub took: f64,
}

/// The first copy's figures over the second's, both loaded at once.
#[derive(Clone, Copy, Debug)]
pub struct Ratios {
    /// Requests per second: what a stopped target would lose.
    pub throughput: f64,
    /// Requests per CPU-second of the server's own: what costs it more work.
    pub per_cpu: f64,
}

/// `gprof dump` of a loaded HTTP server, back to back (at least ten) for as long as wrk loads
/// it and its undumped twin, against a control load of both with no dump. Rounds alternate
/// which copy is dumped.
pub fn dumped(go: &str, seconds: u64, rounds: usize) -> anyhow::Result<Vec<DumpRound>> {
    let copies = super::pair("bench/httpserver", go)?;
    let gprof = run::workspace().join("target/release/gprof");
    let mut out = Vec::new();
    for round in 0..rounds {
        let first = Server::start(&copies[0])?;
        let second = Server::start(&copies[1])?;
        let (a, b) = if round % 2 == 1 {
            (&second, &first)
        } else {
            (&first, &second)
        };
        // Both loaded at once: each one's requests per CPU-second of its own (where the
        // scheduler puts the servers on two cores moves their throughputs, not this).
        let cpu = |s: &Server| gprof::threads_cpu_ns(s.child.id()).context("server CPU time");
        let both = |seconds| {
            let (cpu_a, cpu_b) = (cpu(a)?, cpu(b)?);
            let (rate_a, rate_b) = std::thread::scope(|s| {
                let other = s.spawn(|| b.load(seconds));
                let mine = a.load(seconds);
                Ok::<_, anyhow::Error>((mine?, other.join().expect("wrk thread")?))
            })?;
            let per_cpu = |rate: f64, s: &Server, before: u64| -> anyhow::Result<f64> {
                Ok(rate * seconds as f64 / (cpu(s)?.saturating_sub(before) as f64 / 1e9))
            };
            Ok::<_, anyhow::Error>(Ratios {
                throughput: rate_a / rate_b,
                per_cpu: per_cpu(rate_a, a, cpu_a)? / per_cpu(rate_b, b, cpu_b)?,
            })
        };
        // Warm caches and heaps, then the two loads in an order that alternates too.
        both(seconds)?;
        let pid = a.child.id().to_string();
        let dumping = || {
            std::thread::scope(|s| {
                let loads = s.spawn(|| both(seconds));
                let t0 = std::time::Instant::now();
                let mut n = 0;
                let mut ok = true;
                while !loads.is_finished() || n < 10 {
                    ok &= Command::new(&gprof)
                        .args(["dump", "--pid", &pid, "-o", "/dev/null"])
                        .status()
                        .is_ok_and(|s| s.success());
                    n += 1;
                }
                let took = t0.elapsed().as_secs_f64();
                (loads.join().expect("load thread"), ok.then_some((n, took)))
            })
        };
        let (undumped, (rates, dumps)) = if round % 4 < 2 {
            let control = both(seconds)?;
            (control, dumping())
        } else {
            let dumped = dumping();
            (both(seconds)?, dumped)
        };
        let (dumps, took) = dumps.context("gprof dump failed")?;
        out.push(DumpRound {
            undumped,
            dumped: rates?,
            dumps,
            took,
        });
    }
    Ok(out)
}
