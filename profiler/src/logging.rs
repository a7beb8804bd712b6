//! Logging to stderr, held back while the TUI owns the terminal (then printed on exit).
//! The level comes from `GPROF_LOG` (error, warn, info, debug, trace).

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Logger {
    timestamps: AtomicBool,
    held: AtomicBool,
    buffer: Mutex<Vec<String>>,
}

static LOGGER: Logger = Logger {
    timestamps: AtomicBool::new(false),
    held: AtomicBool::new(false),
    buffer: Mutex::new(Vec::new()),
};

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let line = if self.timestamps.load(Ordering::Relaxed) {
            let now = crate::alerts::rfc3339(std::time::SystemTime::now());
            format!("{now} {} {}", level_name(r.level()), r.args())
        } else {
            format!("gprof: {}: {}", level_name(r.level()), r.args())
        };
        if self.held.load(Ordering::Relaxed) {
            if let Ok(mut b) = self.buffer.lock() {
                b.push(line);
            }
        } else {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    }

    fn flush(&self) {}
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::Error => "error",
        Level::Warn => "warning",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

/// Installs the logger; `default` applies when `GPROF_LOG` is unset or unparsable.
pub fn init(default: LevelFilter) {
    let level = std::env::var("GPROF_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

/// Prefixes every line with an RFC 3339 timestamp (for the daemon's log).
pub fn with_timestamps() {
    LOGGER.timestamps.store(true, Ordering::Relaxed);
}

/// Holds log lines back (while a TUI draws).
pub fn hold() {
    LOGGER.held.store(true, Ordering::Relaxed);
}

/// Prints what was held back and logs directly again.
pub fn release() {
    LOGGER.held.store(false, Ordering::Relaxed);
    if let Ok(mut b) = LOGGER.buffer.lock() {
        for line in b.drain(..) {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    }
}
