//! `gprof`: the command line. Errors are reported in one line, with a non-zero exit.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use profiler::config::params::Windows;

const ABOUT: &str = "gprof: an eBPF health profiler for Go services (goroutine leaks, GC pauses, \
free-G pools). Not GNU gprof, the call-graph profiler of binutils.";

#[derive(Parser)]
#[command(name = "gprof", version = version(), about = ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

fn version() -> &'static str {
    concat!(
        env!("CARGO_PKG_VERSION"),
        " (eBPF Go health profiler, not GNU gprof)"
    )
}

#[derive(Subcommand)]
enum Command {
    /// Watch one Go process live (or print JSON lines with --batch).
    Top {
        /// The process to watch (a host PID).
        #[arg(long, allow_hyphen_values = true)]
        pid: i64,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 1.0, value_parser = positive_seconds)]
        interval: f64,
        /// Print one JSON object per line per interval instead of the live screen.
        #[arg(long)]
        batch: bool,
        /// Stop after this many intervals.
        #[arg(long)]
        iterations: Option<u64>,
        /// Seconds of history behind the leak rate (net goroutine growth).
        #[arg(long, default_value_t = 60.0, value_parser = positive_seconds)]
        leak_window: f64,
        /// Seconds of history behind the creation and exit rates.
        #[arg(long, default_value_t = 10.0, value_parser = positive_seconds)]
        rate_window: f64,
        /// Seconds a goroutine must wait at the same place to count as stuck (see the
        /// README's "Leak verdict").
        #[arg(long, default_value_t = 300.0, value_parser = positive_seconds)]
        stuck_after: f64,
        /// The hot probes' cost budget, in percent of one core ("off": no limit).
        #[arg(long, default_value = "1", value_parser = budget_percent)]
        budget: CpuPercent,
        /// The goroutine census's CPU budget, in percent of one core (on average; see the
        /// README's "How it measures").
        #[arg(long, default_value_t = 2.0, value_parser = census_percent)]
        census_cpu: f64,
        /// Memory for following blocked goroutines one by one, in MiB (40 bytes each): past
        /// it, a sample of them is followed.
        #[arg(long, default_value_t = 48, value_parser = clap::value_parser!(u64).range(1..=65536))]
        census_memory_mib: u64,
    },
    /// Watch every Go process on this host: per-tenant health, alerts, Prometheus metrics.
    Daemon {
        /// The YAML configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Check the configuration and exit.
        #[arg(long)]
        dry_run: bool,
        /// Overrides `metrics_addr` of the configuration.
        #[arg(long)]
        metrics_addr: Option<std::net::SocketAddr>,
        /// Overrides `alerting.alertmanager_url` of the configuration ("" turns it off).
        #[arg(long)]
        alertmanager_url: Option<String>,
    },
    /// Every goroutine of a Go process with its whole stack, read from outside (the process
    /// is never stopped), in the runtime's own format (or pprof's, or JSON).
    Dump {
        /// The process to read (a host PID).
        #[arg(long, allow_hyphen_values = true)]
        pid: i64,
        #[arg(long, value_enum, default_value = "text")]
        format: profiler::render::dump::Format,
        /// The runtime's goroutines and frames too, with fp, sp and pc, as GOTRACEBACK=system
        /// (and a SIGQUIT dump) shows them.
        #[arg(long)]
        system: bool,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Explain what gprof finds in a Go binary or process, and whether it can attach.
    Check {
        /// A running process.
        #[arg(long, allow_hyphen_values = true, conflicts_with = "binary")]
        pid: Option<i64>,
        /// A Go executable on disk.
        #[arg(required_unless_present = "pid")]
        binary: Option<PathBuf>,
    },
}

/// `--budget`: a percentage of one core, or "off".
#[derive(Clone, Copy, Debug)]
struct CpuPercent(Option<f64>);

fn budget_percent(s: &str) -> Result<CpuPercent, String> {
    if s == "off" {
        return Ok(CpuPercent(None));
    }
    match s.trim_end_matches('%').parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(CpuPercent(Some(p / 100.0))),
        _ => Err(format!(
            "{s:?} is not a percentage of a core (0-100] or \"off\""
        )),
    }
}

fn census_percent(s: &str) -> Result<f64, String> {
    match s.trim_end_matches('%').parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => Err(format!("{s:?} is not a percentage of a core (0-100]")),
    }
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of seconds between 0 and 86400"
        )),
    }
}

fn daemon(
    path: &std::path::Path,
    dry_run: bool,
    metrics_addr: Option<std::net::SocketAddr>,
    alertmanager_url: Option<String>,
) -> anyhow::Result<()> {
    let mut config = profiler::config::Config::load(path)?;
    if let Some(addr) = metrics_addr {
        config.metrics_addr = addr;
    }
    if let Some(url) = alertmanager_url {
        config.alerting.alertmanager_url = match url.as_str() {
            "" => None,
            url => Some(
                profiler::config::check_url(url)
                    .map_err(|e| anyhow::anyhow!("--alertmanager-url: {e}"))?,
            ),
        };
    }
    if dry_run {
        println!(
            "{}: valid; metrics on {}, every {:?}, {} tenant rule(s), {} threshold(s), alerts to {}",
            path.display(),
            config.metrics_addr,
            config.interval.0,
            config.tenants.rules.len(),
            config.thresholds.len(),
            config
                .alerting
                .alertmanager_url
                .as_deref()
                .unwrap_or("the log only")
        );
        return Ok(());
    }
    profiler::serve::daemon::run(config)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let is_daemon = matches!(cli.command, Command::Daemon { .. });
    let level = if is_daemon {
        log::LevelFilter::Info
    } else {
        log::LevelFilter::Warn
    };
    profiler::logging::init(level, is_daemon);
    if let Err(e) = profiler::faults::init() {
        eprintln!("gprof: error: {e}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Top {
            pid,
            interval,
            batch,
            iterations,
            leak_window,
            rate_window,
            stuck_after,
            budget,
            census_cpu,
            census_memory_mib,
        } => profiler::ui::top::run(&profiler::ui::top::TopOptions {
            pid,
            interval: Duration::from_secs_f64(interval),
            batch,
            iterations,
            windows: Windows {
                leak_seconds: leak_window,
                rate_seconds: rate_window,
                stuck_after_seconds: stuck_after,
                ..Windows::default()
            },
            budget: profiler::config::params::OverheadBudget {
                process_cpu_share: budget.0,
                ..Default::default()
            },
            census: profiler::config::params::CensusLimits {
                cpu_share: census_cpu / 100.0,
                memory_bytes: census_memory_mib << 20,
            },
        }),
        Command::Dump {
            pid,
            format,
            system,
            output,
        } => profiler::ui::dump::run(&profiler::ui::dump::DumpOptions {
            pid,
            format,
            system,
            output,
        }),
        Command::Check { pid, binary } => profiler::ui::check::run(pid, binary.as_deref()),
        Command::Daemon {
            config,
            dry_run,
            metrics_addr,
            alertmanager_url,
        } => daemon(&config, dry_run, metrics_addr, alertmanager_url),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever the causes say.
            let message = format!("{e:#}").replace('\n', " ");
            eprintln!("gprof: error: {message}");
            ExitCode::FAILURE
        }
    }
}
