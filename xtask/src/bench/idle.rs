//! A mostly idle service: 500 goroutines parked for good, 20 short-lived ones a second, no
//! forced GC. Two copies run side by side, gprof watching A; the ratio of their CPU time
//! (scheduler accounting, ns) is what gprof costs A.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

use super::gprof::{self, Attached, JsonLines, interpolate, num};
use super::{Measure, Mode, Run};

pub struct Idle {
    copies: [PathBuf; 2],
    go: String,
    seconds: u64,
    /// Runs so far: every other one watches the other file.
    runs: usize,
}

struct Service {
    child: Child,
    reports: JsonLines,
}

impl Service {
    fn start(program: &PathBuf) -> anyhow::Result<Self> {
        let mut child = Command::new(program)
            .args(["-leak-rate", "0", "-churn-rate", "20", "-gc-every", "0"])
            .args(["-parked", "500", "-report", "1s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let (reports, _) = JsonLines::collect(child.stdout.take().context("stdout")?);
        Ok(Self { child, reports })
    }

    fn cpu_ns(&self) -> anyhow::Result<u64> {
        gprof::threads_cpu_ns(self.child.id()).context("service CPU time")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Idle {
    pub fn new(go: &str, seconds: u64) -> anyhow::Result<Self> {
        Ok(Self {
            copies: super::pair("workload", go)?,
            go: go.into(),
            seconds,
            runs: 0,
        })
    }

    pub fn measure(&self) -> Measure {
        Measure {
            title: format!(
                "Mostly idle service, Go {} (stripped): 500 parked goroutines, 20 short-lived ones/s, two copies side by side for {} s",
                self.go, self.seconds
            ),
            ratio: "CPU time",
            unit: "ms CPU/s",
        }
    }

    pub fn run(&mut self, mode: Mode) -> anyhow::Result<Run> {
        self.runs += 1;
        let (a, b) = if self.runs.is_multiple_of(2) {
            (1, 0)
        } else {
            (0, 1)
        };
        let a = Service::start(&self.copies[a])?;
        let b = Service::start(&self.copies[b])?;
        std::thread::sleep(Duration::from_millis(500));
        let attached = match mode.gprof_args() {
            Some(args) => Some(Attached::start(a.child.id(), "1", args, None)?),
            None => None,
        };
        let gprof_cpu0 = attached
            .as_ref()
            .and_then(|g| gprof::cpu_seconds(g.pid()))
            .unwrap_or(0.0);
        let before = attached.as_ref().and_then(Attached::latest);
        let (a0, b0) = (a.cpu_ns()?, b.cpu_ns()?);
        let t0 = std::time::Instant::now();
        std::thread::sleep(Duration::from_secs(self.seconds));
        let (a1, b1) = (a.cpu_ns()?, b.cpu_ns()?);
        let secs = t0.elapsed().as_secs_f64();
        let mut result = Run {
            ratio: (a1 - a0) as f64 / (b1 - b0).max(1) as f64,
            value: (a1 - a0) as f64 / 1e6 / secs,
            ..Run::default()
        };
        let Some(g) = attached else {
            return Ok(result);
        };
        let end = g.latest().context("no gprof sample")?;
        let (cpu, rss) = g.usage(gprof_cpu0);
        result.gprof_cpu = Some(cpu);
        result.gprof_rss = Some(rss);
        if let Some(b) = before {
            result.hits_per_s = gprof::hits_per_s(&b, &end);
            result.duty = gprof::attached_share(&b, &end);
        }
        let want =
            num(&end, "unix").and_then(|t| interpolate(&a.reports.all(), "num_goroutine", t));
        if let (Some(live), Some(want)) = (num(&end, "goroutines"), want) {
            result.errors.push(("live", (live - want) / want));
        }
        g.stop();
        Ok(result)
    }
}
