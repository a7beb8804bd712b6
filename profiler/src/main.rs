//! `gprof`: the command line. Errors are reported in one line, with a non-zero exit.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use profiler::collector::Windows;

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

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of seconds between 0 and 86400"
        )),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    profiler::logging::init(log::LevelFilter::Warn);
    let result = match cli.command {
        Command::Top {
            pid,
            interval,
            batch,
            iterations,
            leak_window,
            rate_window,
        } => profiler::top::run(&profiler::top::TopOptions {
            pid,
            interval: Duration::from_secs_f64(interval),
            batch,
            iterations,
            windows: Windows {
                leak_seconds: leak_window,
                rate_seconds: rate_window,
                ..Windows::default()
            },
        }),
        Command::Check { pid, binary } => profiler::check::run(pid, binary.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gprof: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
