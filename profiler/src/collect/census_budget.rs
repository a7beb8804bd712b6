//! What the goroutine census may cost, for every watched process together.
//!
//! **CPU.** Census work runs in slices of about [`QUANTUM`] of CPU time, after every process
//! of the round was sampled, so that no census delays another process's sample. A token
//! bucket holds the budget: it fills at `cpu_share` of a core (saving up to
//! [`CensusLimits::BURST_SECONDS`] of that) and each slice's CPU time is taken from it. The
//! processes with census work are served a slice each in turn, the one whose census is the
//! oldest first, until the bucket or the round's share of wall time ([`ROUND_SHARE`]) runs
//! out: a small process's census is one slice, a large one's is spread over rounds, so an
//! expensive process is censused less often and the others keep theirs.
//!
//! **Memory.** Following a blocked goroutine one by one costs
//! [`crate::collect::blocked::BYTES_PER_TRACKED`] bytes. The node-wide memory limit is
//! shared out like water: every process follows all its blocked goroutines if they fit;
//! otherwise the processes with the most follow a sample of them ([`SampleRate`]), each as
//! many as the one level every large process gets.

use std::time::{Duration, Instant};

use crate::collect::blocked::{BYTES_PER_TRACKED, SampleRate};
use crate::config::params::CensusLimits;

/// CPU time a slice of census work takes, about.
pub const QUANTUM: Duration = Duration::from_millis(4);
/// Census work in a round takes at most this share of the sampling interval's wall time.
pub const ROUND_SHARE: f64 = 0.25;

#[derive(Debug)]
pub struct CensusBudget {
    limits: CensusLimits,
    /// CPU seconds that may be spent (negative after a slice overran).
    tokens: f64,
    refilled: Instant,
}

impl CensusBudget {
    pub fn new(limits: CensusLimits) -> Self {
        Self {
            tokens: Self::capacity(&limits),
            limits,
            refilled: Instant::now(),
        }
    }

    fn capacity(limits: &CensusLimits) -> f64 {
        limits.cpu_share * CensusLimits::BURST_SECONDS
    }

    /// Adds what the time since the last refill earned.
    pub fn refill(&mut self, now: Instant) {
        let earned =
            now.saturating_duration_since(self.refilled).as_secs_f64() * self.limits.cpu_share;
        self.tokens = (self.tokens + earned).min(Self::capacity(&self.limits));
        self.refilled = now;
    }

    /// Whether another slice may run.
    pub fn allows(&self) -> bool {
        self.tokens > 0.0
    }

    pub fn charge(&mut self, cpu: Duration) {
        self.tokens -= cpu.as_secs_f64();
    }

    /// The wall time a round's census work may take.
    pub fn round_time(&self, interval: Duration) -> Duration {
        interval.mul_f64(ROUND_SHARE)
    }

    /// Goroutines that may be followed one by one, over all processes.
    pub fn tracked_limit(&self) -> u64 {
        self.limits.memory_bytes / BYTES_PER_TRACKED as u64
    }

    /// The sample each process follows, given how many blocked goroutines each has (`demand`,
    /// in the same order).
    pub fn rates(&self, demand: &[u64]) -> Vec<SampleRate> {
        let level = water_level(demand, self.tracked_limit());
        demand
            .iter()
            .map(|&d| match level {
                Some(level) if d > level => SampleRate::at_most(level as f64 / d as f64),
                _ => SampleRate::ALL,
            })
            .collect()
    }
}

/// The largest level `c` such that every demand capped at `c` fits in `limit` (None when all
/// of them fit uncapped).
fn water_level(demand: &[u64], limit: u64) -> Option<u64> {
    if demand.iter().sum::<u64>() <= limit {
        return None;
    }
    let mut sorted = demand.to_vec();
    sorted.sort_unstable();
    let mut left = limit;
    for (i, &d) in sorted.iter().enumerate() {
        let rest = (sorted.len() - i) as u64;
        if d.saturating_mul(rest) > left {
            return Some(left / rest);
        }
        left -= d;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_limit_is_shared_like_water() {
        assert_eq!(water_level(&[10, 20, 30], 100), None);
        // 10 fits; 90 left for two: 45 each.
        assert_eq!(water_level(&[10, 1000, 2000], 100), Some(45));
        let budget = CensusBudget::new(CensusLimits {
            cpu_share: 0.03,
            memory_bytes: 1_000_000 * BYTES_PER_TRACKED as u64,
        });
        let rates = budget.rates(&[500, 2_000_000, 4_000_000, 20]);
        assert_eq!(rates[0], SampleRate::ALL);
        assert_eq!(rates[3], SampleRate::ALL);
        // The level is about 500,000: a quarter of 2 M, an eighth of 4 M.
        assert_eq!(rates[1].fraction(), 0.125);
        assert_eq!(rates[2].fraction(), 0.0625);
        let followed: f64 = [
            500.0,
            2e6 * rates[1].fraction(),
            4e6 * rates[2].fraction(),
            20.0,
        ]
        .iter()
        .sum();
        assert!(followed <= 1e6, "{followed}");
    }

    #[test]
    fn the_bucket_fills_at_the_share_and_saves_a_burst() {
        let mut b = CensusBudget::new(CensusLimits {
            cpu_share: 0.02,
            memory_bytes: 1 << 20,
        });
        // 2 % saved up for 150 s: 3 s of CPU.
        let full = 0.02 * CensusLimits::BURST_SECONDS;
        assert!((b.tokens - full).abs() < 1e-9);
        b.charge(Duration::from_secs_f64(full + 1.0));
        assert!(!b.allows());
        // One second overdrawn: 45 s at 2 % leave it 0.1 s short, 60 s leave 0.2 s.
        let later = b.refilled + Duration::from_secs(45);
        b.refill(later);
        assert!(!b.allows());
        b.refill(later + Duration::from_secs(15));
        assert!((b.tokens - 0.2).abs() < 1e-6 && b.allows());
        b.refill(later + Duration::from_secs(1000));
        assert!((b.tokens - full).abs() < 1e-9);
    }
}
