//! The parameters the pipeline's stages read: the windows figures are computed over, the
//! health score's weights, and the overhead budget. Plain data with their defaults; the
//! configuration file and the command line fill them in.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Windows over which rates and trends are computed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Windows {
    /// Creation and exit rates.
    pub rate_seconds: f64,
    /// Leak rate (net growth of live goroutines).
    pub leak_seconds: f64,
    /// GC pause p99.
    pub pause_seconds: f64,
    /// A goroutine blocked at the same place for this long is stuck.
    pub stuck_after_seconds: f64,
}

impl Default for Windows {
    fn default() -> Self {
        Self {
            rate_seconds: 10.0,
            leak_seconds: 60.0,
            pause_seconds: 300.0,
            stuck_after_seconds: 300.0,
        }
    }
}

/// Weights (points out of 100) and references (where badness reaches 1).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthModel {
    pub leak_weight: f64,
    pub pause_weight: f64,
    pub pool_weight: f64,
    pub stack_weight: f64,
    pub leak_reference_per_min: f64,
    pub pause_reference_seconds: f64,
    pub pool_reference_ratio: f64,
    /// Pools up to this size never count against the score.
    pub pool_floor: f64,
    pub stack_reference_bytes: f64,
}

impl Default for HealthModel {
    fn default() -> Self {
        Self {
            leak_weight: 40.0,
            pause_weight: 30.0,
            pool_weight: 15.0,
            stack_weight: 15.0,
            leak_reference_per_min: 1200.0,
            pause_reference_seconds: 0.010,
            pool_reference_ratio: 4.0,
            pool_floor: 1000.0,
            stack_reference_bytes: 64.0 * 1024.0,
        }
    }
}

/// The overhead budget of the hot probes (see `collect/budget.rs`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OverheadBudget {
    /// Share of the process's own CPU time (counted as at least half a core and at most
    /// one) the hot probes may cost it; None: no limit.
    pub process_cpu_share: Option<f64>,
    /// Estimated cost of one probe hit (measured by `cargo xtask bench`).
    pub cost_per_hit: Duration,
    /// The longest the hot probes stay detached before the rate is measured again.
    pub max_off: Duration,
    /// What a window costs beyond the hits counted in it, as time at the full hit rate:
    /// while the probes are attached and detached they trap before and after the program
    /// counts (measured by `cargo xtask bench`: about 30 ms per window).
    pub window_overhead: Duration,
    /// What the census costs the process for each g it reads that the process may soon
    /// write (dead gs in the free pool, running and runnable ones): the read leaves those
    /// cache lines shared, and the process's next writes to them miss (measured by `cargo
    /// xtask bench`: a churning process lost 5 % of its throughput to a census a second of
    /// its 35,000 such gs, about 0.7 µs a g). Blocked goroutines are not counted: nothing
    /// writes them until they wake.
    pub cost_per_g_read: Duration,
}

impl Default for OverheadBudget {
    fn default() -> Self {
        Self {
            process_cpu_share: Some(0.01),
            cost_per_hit: Duration::from_nanos(2000),
            max_off: Duration::from_secs(300),
            window_overhead: Duration::from_millis(30),
            cost_per_g_read: Duration::from_nanos(700),
        }
    }
}

/// What the goroutine census may cost gprof, for all watched processes together (see
/// `collect/census_budget.rs`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CensusLimits {
    /// Share of one core the censuses may take on average (bursts of up to
    /// [`CensusLimits::BURST_SECONDS`] of it at once).
    pub cpu_share: f64,
    /// Memory for following blocked goroutines one by one, in bytes: past it, the processes
    /// with the most blocked goroutines follow a sample of them.
    pub memory_bytes: u64,
}

impl CensusLimits {
    /// The budget saved up at most, in seconds of its rate: a census can run in a burst (the
    /// first census of a million goroutines, 0.9 to 1.2 s of CPU, in its first seconds, with
    /// room for a slower machine: a first census that outgrows the burst waits for the rate,
    /// 40 s for every 0.8 s over it at 2 %). Over any five minutes the censuses take at most
    /// the share plus half of it.
    pub const BURST_SECONDS: f64 = 150.0;
}

impl Default for CensusLimits {
    fn default() -> Self {
        Self {
            cpu_share: 0.02,
            // About 1.25 million goroutines, in the DaemonSet's 128 MiB limit with the rest.
            memory_bytes: 48 << 20,
        }
    }
}
