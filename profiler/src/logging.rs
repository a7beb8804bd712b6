//! Logging to stderr through env_logger, held back while the TUI owns the terminal (then
//! printed on exit). `GPROF_LOG` sets the level (error, warn, info, debug, trace; or
//! env_logger's per-module filters).

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use log::{Level, LevelFilter};

static HELD: AtomicBool = AtomicBool::new(false);
static BUFFER: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Stderr, or the buffer while held.
struct Sink;

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if HELD.load(Ordering::Relaxed)
            && let Ok(mut b) = BUFFER.lock()
        {
            b.extend_from_slice(bytes);
            return Ok(bytes.len());
        }
        std::io::stderr().write(bytes)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
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

/// Installs the logger; `default` applies when `GPROF_LOG` is unset. With `timestamps`
/// (the daemon's log) each line starts with an RFC 3339 time in UTC.
pub fn init(default: LevelFilter, timestamps: bool) {
    let mut builder = env_logger::Builder::new();
    builder
        .filter_level(default)
        .parse_env(env_logger::Env::new().filter("GPROF_LOG"))
        .target(env_logger::Target::Pipe(Box::new(Sink)))
        .format(move |buf, r| {
            if timestamps {
                let now = buf.timestamp_millis();
                writeln!(buf, "{now} {} {}", level_name(r.level()), r.args())
            } else {
                writeln!(buf, "gprof: {}: {}", level_name(r.level()), r.args())
            }
        });
    let _ = builder.try_init();
}

/// Holds log lines back (while a TUI draws).
pub fn hold() {
    HELD.store(true, Ordering::Relaxed);
}

/// Prints what was held back and logs directly again.
pub fn release() {
    HELD.store(false, Ordering::Relaxed);
    if let Ok(mut b) = BUFFER.lock() {
        let _ = std::io::stderr().write_all(&b);
        b.clear();
    }
}
