//! `gprof top --batch` attached to a benchmark's target, and what the benchmark reads about
//! processes from /proc.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::run;

/// The JSON lines a child prints, collected as they come.
#[derive(Clone, Default)]
pub struct JsonLines(Arc<Mutex<Vec<Value>>>);

impl JsonLines {
    /// Collects from `from` on a thread of its own, until end of file.
    pub fn collect(
        from: impl std::io::Read + Send + 'static,
    ) -> (Self, std::thread::JoinHandle<()>) {
        let lines = Self::default();
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(from).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.0.lock().unwrap().push(v);
                }
            }
        });
        (lines, reader)
    }

    pub fn all(&self) -> Vec<Value> {
        self.0.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    pub fn get(&self, i: usize) -> Option<Value> {
        self.0.lock().unwrap().get(i).cloned()
    }

    pub fn last(&self) -> Option<Value> {
        self.0.lock().unwrap().last().cloned()
    }
}

pub struct Attached {
    child: Child,
    samples: JsonLines,
    reader: Option<std::thread::JoinHandle<()>>,
    started: Instant,
}

impl Attached {
    /// Starts `gprof top --batch` on `pid` (pinned to `cpu` when given) and waits for its
    /// first sample: from then on the probes are attached.
    pub fn start(
        pid: u32,
        interval: &str,
        args: &[&str],
        cpu: Option<&str>,
    ) -> anyhow::Result<Self> {
        // A target started through taskset runs taskset until it execs the program.
        let exe = format!("/proc/{pid}/exe");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(&exe).is_ok_and(|p| p.ends_with("taskset"))
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        let gprof = run::workspace().join("target/release/gprof");
        let mut cmd = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpu]).arg(&gprof);
                c
            }
            None => Command::new(&gprof),
        };
        let pid = pid.to_string();
        cmd.args(["top", "--batch", "--interval", interval, "--pid", &pid])
            .args(args)
            .stdout(Stdio::piped());
        let mut child = cmd.spawn().context("starting gprof")?;
        let (samples, reader) = JsonLines::collect(child.stdout.take().context("gprof stdout")?);
        let mut me = Self {
            child,
            samples,
            reader: Some(reader),
            started: Instant::now(),
        };
        if me.next_sample(Duration::from_secs(30)).is_none() {
            let _ = me.child.kill();
            bail!("gprof did not attach to PID {pid} (see its error above)");
        }
        me.started = Instant::now();
        Ok(me)
    }

    pub fn latest(&self) -> Option<Value> {
        self.samples.last()
    }

    /// Waits for a sample taken after this call.
    pub fn next_sample(&self, timeout: Duration) -> Option<Value> {
        let seen = self.samples.len();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(v) = self.samples.get(seen) {
                return Some(v);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// gprof's CPU since its first sample (share of one core) and its peak resident memory.
    pub fn usage(&self, cpu_at_start: f64) -> (f64, u64) {
        let pid = self.child.id();
        let cpu = cpu_seconds(pid).unwrap_or(0.0) - cpu_at_start;
        (
            cpu / self.started.elapsed().as_secs_f64(),
            peak_rss(pid).unwrap_or(0),
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// User and system CPU seconds of a process, exited threads included (10 ms resolution).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on Linux whatever the kernel's HZ.
    Some(ticks / 100.0)
}

/// CPU nanoseconds of the live threads of a process (scheduler accounting, ns resolution).
pub fn threads_cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let s = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += s.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Peak resident memory of a process (VmHWM), in bytes.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// A number from a JSON sample.
pub fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key)?.as_f64()
}

/// Linear interpolation of `key` at `t` in time-ordered samples with a `unix` field.
pub fn interpolate(lines: &[Value], key: &str, t: f64) -> Option<f64> {
    let i = lines
        .iter()
        .position(|l| num(l, "unix").is_some_and(|u| u >= t))?;
    if i == 0 {
        return None;
    }
    let (a, b) = (&lines[i - 1], &lines[i]);
    let (ta, tb) = (num(a, "unix")?, num(b, "unix")?);
    let (va, vb) = (num(a, key)?, num(b, key)?);
    Some(va + (vb - va) * (t - ta) / (tb - ta).max(1e-9))
}

/// Probe hits per second between two gprof samples.
pub fn hits_per_s(a: &Value, b: &Value) -> Option<f64> {
    let dt = num(b, "attached_seconds")? - num(a, "attached_seconds")?;
    Some((num(b, "probe_hits_total")? - num(a, "probe_hits_total")?) / dt.max(1e-9))
}

/// Share of the time the hot probes were attached between two gprof samples.
pub fn attached_share(a: &Value, b: &Value) -> Option<f64> {
    let dt = num(b, "attached_seconds")? - num(a, "attached_seconds")?;
    let on =
        num(b, "hot_probes_attached_seconds_total")? - num(a, "hot_probes_attached_seconds_total")?;
    Some(on / dt.max(1e-9))
}
