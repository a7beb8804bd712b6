//! Faults injected on purpose, for tests that prove gprof survives them: set in gprof's own
//! environment (`GPROF_FAULTS`), which no workload can reach. Unset, every hook is a no-op.
//!
//! `GPROF_FAULTS="pause_before_attach=2s;sample_errors=1234:3;stall_sample=5:10s"`:
//! - `pause_before_attach=D`: wait D after planning a process, before attaching to it;
//! - `sample_errors=PID:N`: the next N samples of PID fail as if its memory were unreadable;
//! - `stall_sample=K:D`: the daemon's K-th sampling round hangs for D.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::config::parse_duration;

#[derive(Debug, Default)]
struct Faults {
    pause_before_attach: Option<Duration>,
    sample_errors: Mutex<HashMap<u32, u32>>,
    stall_sample: Option<(u64, Duration)>,
}

static FAULTS: OnceLock<Faults> = OnceLock::new();

fn parse(spec: &str) -> Result<Faults, String> {
    let mut f = Faults::default();
    for item in spec.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?}: expected key=value"))?;
        let pair = |v: &str| -> Result<(String, String), String> {
            v.split_once(':')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| format!("{key}: expected A:B, got {v:?}"))
        };
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{key}: {v:?} is not a number"))
        };
        match key {
            "pause_before_attach" => f.pause_before_attach = Some(parse_duration(value)?),
            "sample_errors" => {
                let (pid, n) = pair(value)?;
                let (pid, n) = (number(&pid)?, number(&n)?);
                f.sample_errors
                    .get_mut()
                    .expect("not shared yet")
                    .insert(pid as u32, n as u32);
            }
            "stall_sample" => {
                let (k, d) = pair(value)?;
                f.stall_sample = Some((number(&k)?, parse_duration(&d)?));
            }
            _ => return Err(format!("unknown fault {key:?}")),
        }
    }
    Ok(f)
}

/// Reads `GPROF_FAULTS` once, at start; a malformed value is an error.
pub fn init() -> Result<(), String> {
    let spec = std::env::var("GPROF_FAULTS").unwrap_or_default();
    let faults = parse(&spec).map_err(|e| format!("GPROF_FAULTS: {e}"))?;
    if !spec.trim().is_empty() {
        log::warn!("GPROF_FAULTS is set: injecting faults for a test: {spec}");
    }
    let _ = FAULTS.set(faults);
    Ok(())
}

fn get() -> Option<&'static Faults> {
    FAULTS.get()
}

pub fn pause_before_attach(pid: u32) {
    if let Some(d) = get().and_then(|f| f.pause_before_attach) {
        log::warn!("fault: pausing {d:?} before attaching to pid={pid}");
        std::thread::sleep(d);
    }
}

/// Whether this sample of `pid` fails (each call uses up one injected failure).
pub fn sample_error(pid: u32) -> bool {
    let Some(f) = get() else { return false };
    let mut left = f.sample_errors.lock().unwrap_or_else(|e| e.into_inner());
    match left.get_mut(&pid) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    }
}

/// Before the daemon's `round`-th sampling round (counted from 1).
pub fn stall_sample(round: u64) {
    if let Some((k, d)) = get().and_then(|f| f.stall_sample)
        && k == round
    {
        log::warn!("fault: sampling round {round} stalls for {d:?}");
        std::thread::sleep(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let f = parse("pause_before_attach=2s; sample_errors=42:3;stall_sample=5:10s").unwrap();
        assert_eq!(f.pause_before_attach, Some(Duration::from_secs(2)));
        assert_eq!(f.sample_errors.lock().unwrap().get(&42), Some(&3));
        assert_eq!(f.stall_sample, Some((5, Duration::from_secs(10))));
        assert!(parse("").unwrap().pause_before_attach.is_none());
        assert!(parse("nonsense").is_err());
        assert!(parse("sample_errors=x:1").is_err());
        assert!(parse("explode=1").is_err());
    }
}
