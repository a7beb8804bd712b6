//! `cargo xtask bench`: the cost gprof puts on its targets. The machines this runs on are
//! virtual and noisy (runs of the same program differ by 5-15 %), so each measurement runs
//! two copies of the workload side by side on the same CPU: A, which gprof watches, and B,
//! which nothing watches. The scheduler gives both the same CPU time, so the ratio of the
//! work they get done is what gprof costs A, whatever the machine does meanwhile. Each round
//! measures three modes: nothing attached (A against B: the method's own error), `gprof top`
//! under its default budget, and `gprof top --budget off`, rotating their order. A last part
//! measures the daemon's own CPU and memory while it watches many processes.
//! `docs/performance.md` explains the method and records the results.

mod census;
mod churn;
mod daemon;
mod dump;
mod gprof;
mod http;
mod idle;
mod leaks;
pub mod limits;

use anyhow::bail;

use crate::toolchain;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Millions of goroutines with empty bodies: the worst case.
    Churn,
    /// A Go HTTP server under wrk, a goroutine per request.
    Http,
    /// A mostly idle service.
    Idle,
    /// The daemon watching many Go processes: its own CPU and memory.
    Daemon,
    /// The leak verdict on scenario programs that print their own truth.
    Leaks,
    /// The census of a million parked goroutines: under `gprof top`, then the daemon.
    Census,
    /// `gprof dump`: 100,000 parked goroutines, and a loaded HTTP server dumped back to back.
    Dump,
    /// The leak verdict on GoBench's GoKer kernels beside Go's own detector, and on their
    /// fixed variants (runs tests/goker.rs for `--goker-seconds` and prints its table).
    Goker,
}

#[derive(clap::Args)]
pub struct Options {
    /// Workloads to run (default: all).
    #[arg(value_enum)]
    workloads: Vec<Workload>,
    /// The same, as an option (repeat it).
    #[arg(long = "workload", value_enum)]
    workload: Vec<Workload>,
    /// Rounds; each runs the workload without gprof and under gprof's budget (and every
    /// third round also with no budget). 11 pairs give the median a 95 % interval between
    /// the 2nd and 10th.
    #[arg(long, default_value_t = 11)]
    rounds: usize,
    /// Go release of the workloads.
    #[arg(long, default_value = "1.27.3")]
    go: String,
    /// Seconds per churn run (a run includes the jump from idle to the churn, whose first
    /// census and hot-probe window cost most: 5 s runs weigh them three times as much as 15 s
    /// ones).
    #[arg(long, default_value_t = 10)]
    churn_seconds: u64,
    /// Seconds of load per HTTP run.
    #[arg(long, default_value_t = 8)]
    http_seconds: u64,
    /// Seconds per idle-service run.
    #[arg(long, default_value_t = 20)]
    idle_seconds: u64,
    /// Go processes the daemon watches (above 50: measured at 50, half and this many).
    /// Given alone, only the daemon workload runs.
    #[arg(long)]
    daemon_processes: Option<usize>,
    /// Seconds the daemon measurement lasts.
    #[arg(long, default_value_t = 60)]
    daemon_seconds: u64,
    /// Leaks: gprof's --stuck-after.
    #[arg(long, default_value_t = 300)]
    stuck_after: u64,
    /// Leaks: seconds each scenario runs (default: stuck-after + 3 minutes).
    #[arg(long)]
    leak_seconds: Option<u64>,
    /// Census: parked goroutines.
    #[arg(long, default_value_t = 1_000_000)]
    census_goroutines: u64,
    /// Census: seconds of each part (top, daemon).
    #[arg(long, default_value_t = 300)]
    census_seconds: u64,
    /// Census: the parts to run ("top", "daemon", or both, comma-separated).
    #[arg(long, default_value = "top,daemon")]
    census_parts: String,
    /// Seconds the GoKer kernels run under the daemon.
    #[arg(long, default_value_t = 300)]
    goker_seconds: u64,
}

/// How the workload runs in one measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Without,
    /// `gprof top` with its default budget (1 % of a core).
    Budget,
    /// `gprof top --budget off`: every probe attached all the time.
    Unlimited,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Without, Mode::Budget, Mode::Unlimited];

    fn label(self) -> &'static str {
        match self {
            Mode::Without => "without gprof",
            Mode::Budget => "gprof, budget 1%",
            Mode::Unlimited => "gprof, no budget",
        }
    }

    /// `gprof top`'s arguments for the mode; None: gprof does not run.
    pub fn gprof_args(self) -> Option<&'static [&'static str]> {
        match self {
            Mode::Without => None,
            Mode::Budget => Some(&[]),
            Mode::Unlimited => Some(&["--budget", "off"]),
        }
    }

    /// The modes of round `round`, in rotated order: the no-budget mode (whose cost is
    /// large and guarded by nothing) only every third round.
    fn order(round: usize) -> Vec<Mode> {
        let mut m = Self::ALL;
        m.rotate_left(round % 3);
        m.into_iter()
            .filter(|&m| m != Mode::Unlimited || round.is_multiple_of(3))
            .collect()
    }
}

/// One run of a workload in one mode: the watched copy (A) against the unwatched one (B).
#[derive(Clone, Debug, Default)]
pub struct Run {
    /// A's cost relative to B in the workload's terms (time, CPU: above 1 is worse) or its
    /// throughput relative to B (below 1 is worse).
    pub ratio: f64,
    /// A's own figure (goroutines/s, requests/s, ms of CPU per s).
    pub value: f64,
    /// gprof's probe hits per second in A during the run.
    pub hits_per_s: Option<f64>,
    /// Share of the run the hot probes were attached (gprof's own figure).
    pub duty: Option<f64>,
    /// gprof's CPU (share of one core) and peak resident memory.
    pub gprof_cpu: Option<f64>,
    pub gprof_rss: Option<u64>,
    /// How far gprof's figures were from A's own (relative errors, by name).
    pub errors: Vec<(&'static str, f64)>,
    /// More to log about the run.
    pub note: Option<String>,
}

/// What a workload's runs measure, for the report.
pub struct Measure {
    pub title: String,
    /// What `Run::ratio` is ("time ratio", "throughput ratio"...).
    pub ratio: &'static str,
    /// Unit of `Run::value`.
    pub unit: &'static str,
}

/// Two copies (A and B) of `testdata/go/PROGRAM` built stripped with Go `go`, so that probes
/// on A's file never touch B.
pub fn pair(program: &str, go: &str) -> anyhow::Result<[std::path::PathBuf; 2]> {
    let workspace = crate::run::workspace();
    let built = crate::gotargets::build(
        &workspace.join("testdata/go").join(program),
        go,
        crate::gotargets::variant("stripped"),
    )?;
    let dir = workspace.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let name = program.rsplit('/').next().unwrap_or(program);
    let copies = ["a", "b"].map(|side| dir.join(format!("{name}-{side}")));
    for c in &copies {
        // A fresh file each time (a running copy cannot be overwritten in place).
        let _ = std::fs::remove_file(c);
        std::fs::copy(&built, c)?;
    }
    Ok(copies)
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// tests/goker.rs for `seconds`, its table printed.
fn goker(seconds: u64) -> anyhow::Result<()> {
    let env = crate::TestEnv::prepare()?;
    let seconds = seconds.to_string();
    let mut vars = env.vars();
    vars.push(("GPROF_GOKER_SECONDS", std::ffi::OsStr::new(&seconds)));
    crate::run::cargo_with_env(
        &[
            "test",
            "--release",
            "--package",
            "profiler",
            "--test",
            "goker",
            "--",
            "--nocapture",
            "gokers_leaks",
        ],
        &vars,
    )
}

pub fn run(o: &Options) -> anyhow::Result<()> {
    if o.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    crate::build()?;
    // wrk, taskset and the Go releases.
    toolchain::ensure_test_tools()?;
    toolchain::ensure_go(&o.go)?;
    let mut workloads: Vec<Workload> = o.workloads.iter().chain(&o.workload).copied().collect();
    if workloads.is_empty() && o.daemon_processes.is_some() {
        workloads = vec![Workload::Daemon];
    }
    if workloads.is_empty() {
        workloads = vec![
            Workload::Churn,
            Workload::Http,
            Workload::Idle,
            Workload::Daemon,
            Workload::Leaks,
            Workload::Census,
            Workload::Dump,
            Workload::Goker,
        ];
    }
    for w in workloads {
        match w {
            Workload::Churn => {
                let mut bench = churn::Churn::new(&o.go, o.churn_seconds)?;
                rounds(o.rounds, &bench.measure(), limits::CHURN, |mode| {
                    bench.run(mode)
                })?
            }
            Workload::Http => {
                let mut bench = http::Http::new(&o.go, o.http_seconds)?;
                rounds(o.rounds, &bench.measure(), limits::HTTP, |mode| {
                    bench.run(mode)
                })?
            }
            Workload::Idle => {
                let mut bench = idle::Idle::new(&o.go, o.idle_seconds)?;
                rounds(o.rounds, &bench.measure(), limits::IDLE, |mode| {
                    bench.run(mode)
                })?
            }
            Workload::Daemon => {
                daemon::run(&o.go, o.daemon_processes.unwrap_or(50), o.daemon_seconds)?
            }
            Workload::Dump => dump::run(&o.go, 100_000, o.http_seconds, o.rounds)?,
            Workload::Goker => goker(o.goker_seconds)?,
            Workload::Census => census::run(
                &o.go,
                o.census_goroutines,
                o.census_seconds,
                &o.census_parts,
            )?,
            Workload::Leaks => leaks::run(
                &o.go,
                o.stuck_after,
                o.leak_seconds.unwrap_or(o.stuck_after + 180),
            )?,
        }
    }
    limits::verdict()
}

/// Runs every mode `n` times, rotating the order, prints the comparison, and reports the
/// budget mode's median ratio against `limit`.
fn rounds(
    n: usize,
    measure: &Measure,
    limit: limits::Limit,
    mut one: impl FnMut(Mode) -> anyhow::Result<Run>,
) -> anyhow::Result<()> {
    println!("\n## {}\n", measure.title);
    let mut runs: Vec<(Mode, Run)> = Vec::new();
    for round in 0..n {
        for mode in Mode::order(round) {
            let r = one(mode)?;
            let errors: Vec<String> = r
                .errors
                .iter()
                .map(|(n, e)| format!(", {n} error {:+.2} %", e * 100.0))
                .collect();
            eprintln!(
                "xtask: round {} {:<18} {} {:.4} (A: {:.1} {}){}{}{}",
                round + 1,
                mode.label(),
                measure.ratio,
                r.ratio,
                r.value,
                measure.unit,
                r.hits_per_s
                    .map(|h| format!(", {h:.0} probe hits/s"))
                    .unwrap_or_default(),
                r.note
                    .as_ref()
                    .map(|n| format!(", {n}"))
                    .unwrap_or_default(),
                errors.concat(),
            );
            runs.push((mode, r));
        }
    }
    report(measure, &runs);
    let budget: Vec<f64> = runs
        .iter()
        .filter(|(m, _)| *m == Mode::Budget)
        .map(|(_, r)| r.ratio)
        .collect();
    let (median, interval) = limits::median_interval(&budget);
    limits::report(limit, median, interval, &format!("median of {n} pairs"));
    Ok(())
}

fn report(measure: &Measure, runs: &[(Mode, Run)]) {
    println!(
        "| mode | {} A/B (median) | 95 % interval of the median | A: {} | probe hits/s | hot probes attached | gprof CPU | gprof peak RSS | gprof's worst error against the runtime |",
        measure.ratio, measure.unit
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for mode in Mode::ALL {
        let rs: Vec<&Run> = runs
            .iter()
            .filter(|(m, _)| *m == mode)
            .map(|(_, r)| r)
            .collect();
        let med = |f: &dyn Fn(&Run) -> Option<f64>| {
            let mut v: Vec<f64> = rs.iter().filter_map(|r| f(r)).collect();
            (!v.is_empty()).then(|| median(&mut v))
        };
        let ratios: Vec<f64> = rs.iter().map(|r| r.ratio).collect();
        let (ratio, interval) = limits::median_interval(&ratios);
        let interval = interval.map_or("-".to_string(), |(lo, hi)| format!("{lo:.3}-{hi:.3}"));
        let rss = rs.iter().filter_map(|r| r.gprof_rss).max();
        let mut errors: Vec<(&str, f64)> = Vec::new();
        for r in &rs {
            for &(name, e) in &r.errors {
                match errors.iter_mut().find(|(n, _)| *n == name) {
                    Some(slot) => slot.1 = slot.1.max(e.abs()),
                    None => errors.push((name, e.abs())),
                }
            }
        }
        println!(
            "| {} | {ratio:.3} | {interval} | {:.1} | {} | {} | {} | {} | {} |",
            mode.label(),
            med(&|r| Some(r.value)).unwrap_or(f64::NAN),
            med(&|r| r.hits_per_s).map_or("-".into(), |h| format!("{h:.0}")),
            med(&|r| r.duty).map_or("-".into(), |d| format!("{:.1} %", d * 100.0)),
            med(&|r| r.gprof_cpu).map_or("-".into(), |c| format!("{:.1} % of a core", c * 100.0)),
            rss.map_or("-".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0)),
            if errors.is_empty() {
                "-".into()
            } else {
                errors
                    .iter()
                    .map(|(n, e)| format!("{n} {:.2} %", e * 100.0))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
    }
}
