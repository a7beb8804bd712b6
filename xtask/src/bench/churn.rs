//! The worst case: a Go program that starts goroutines with empty bodies as fast as the
//! runtime can. Two copies run side by side on CPU 1 (GOMAXPROCS=1) for the same seconds,
//! gprof (on CPU 0) watching A; the time ratio is how much longer A takes per goroutine
//! than B. gprof's figures are checked at the end against A's own: live goroutines (its
//! leaked ones) and goroutines created.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

use super::gprof::{self, Attached, num};
use super::{Measure, Mode, Run};

/// Goroutines of the churn that block until the end: the live count gprof must find.
const LEAKED: u64 = 1000;

pub struct Churn {
    copies: [PathBuf; 2],
    go: String,
    seconds: u64,
    /// Runs so far: every other one watches the other file (so that a difference between
    /// the two copies cancels out).
    runs: usize,
}

/// One copy, waiting for the start signal.
struct Copy(Child);

impl Copy {
    fn start(program: &PathBuf, seconds: u64) -> anyhow::Result<Self> {
        Ok(Self(
            Command::new("taskset")
                .args(["-c", "1"])
                .arg(program)
                .env("GOMAXPROCS", "1")
                .args(["-wait", "-hold", "-seconds", &seconds.to_string()])
                .args(["-leak", &LEAKED.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()?,
        ))
    }

    fn go(&mut self) -> anyhow::Result<()> {
        let stdin = self.0.stdin.as_mut().context("stdin")?;
        stdin.write_all(b"go\n")?;
        Ok(stdin.flush()?)
    }

    /// Its report: goroutines started and seconds taken.
    fn report(&mut self) -> anyhow::Result<Value> {
        let mut line = String::new();
        BufReader::new(self.0.stdout.as_mut().context("stdout")?).read_line(&mut line)?;
        serde_json::from_str(&line).with_context(|| format!("churn printed {line:?}"))
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Churn {
    pub fn new(go: &str, seconds: u64) -> anyhow::Result<Self> {
        Ok(Self {
            copies: super::pair("churn", go)?,
            go: go.into(),
            seconds,
            runs: 0,
        })
    }

    pub fn measure(&self) -> Measure {
        Measure {
            title: format!(
                "Worst-case churn: goroutines with empty bodies, as many as two copies side by side on one CPU start in {} s, Go {} (stripped, GOMAXPROCS=1)",
                self.seconds, self.go
            ),
            ratio: "time per goroutine",
            unit: "goroutines/s",
        }
    }

    pub fn run(&mut self, mode: Mode) -> anyhow::Result<Run> {
        self.runs += 1;
        let (a, b) = if self.runs.is_multiple_of(2) {
            (1, 0)
        } else {
            (0, 1)
        };
        let mut a = Copy::start(&self.copies[a], self.seconds)?;
        let mut b = Copy::start(&self.copies[b], self.seconds)?;
        let attached = match mode.gprof_args() {
            Some(args) => Some(Attached::start(a.0.id(), "0.2", args, Some("0"))?),
            None => None,
        };
        let before = attached.as_ref().and_then(Attached::latest);
        let gprof_cpu0 = attached
            .as_ref()
            .and_then(|g| gprof::cpu_seconds(g.pid()))
            .unwrap_or(0.0);
        a.go()?;
        b.go()?;
        let (own_a, own_b) = (a.report()?, b.report()?);
        let rate = |v: &Value| -> anyhow::Result<f64> {
            Ok(num(v, "goroutines").context("no count")? / num(v, "seconds").context("no time")?)
        };
        let (rate_a, rate_b) = (rate(&own_a)?, rate(&own_b)?);
        let mut result = Run {
            ratio: rate_b / rate_a,
            value: rate_a,
            ..Run::default()
        };
        let Some(g) = attached else {
            return Ok(result);
        };
        // A sample of the end state (the copies hold until stdin closes).
        let end = g
            .next_sample(Duration::from_secs(5))
            .context("gprof stopped sampling")?;
        let before = before.context("no sample before the run")?;
        let (cpu, rss) = g.usage(gprof_cpu0);
        result.gprof_cpu = Some(cpu);
        result.gprof_rss = Some(rss);
        let seconds = num(&own_a, "seconds").unwrap_or(1.0);
        // Hits over the churn itself, not the idle time around it.
        let hits = num(&end, "probe_hits_total").unwrap_or(0.0)
            - num(&before, "probe_hits_total").unwrap_or(0.0);
        result.hits_per_s = Some(hits / seconds);
        result.duty = gprof::attached_share(&before, &end);
        let created = num(&end, "goroutines_created_total").unwrap_or(0.0)
            - num(&before, "goroutines_created_total").unwrap_or(0.0);
        // Its goroutines and the spawners that started them.
        let want_created =
            num(&own_a, "goroutines").unwrap_or(0.0) + num(&own_a, "spawners").unwrap_or(0.0);
        let live = num(&end, "goroutines").unwrap_or(0.0);
        let want_live = num(&own_a, "num_goroutine").unwrap_or(0.0);
        result.errors = vec![
            ("live", (live - want_live) / want_live),
            ("created", (created - want_created) / want_created),
        ];
        g.stop();
        Ok(result)
    }
}
