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
    let churn = gotargets::build(
        &run::workspace().join("testdata/go/churn"),
        &o.go,
        "stripped",
        &["-ldflags=-s -w"],
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
