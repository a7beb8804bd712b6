//! The health score of a Go process, 0 (bad) to 100 (healthy).
//!
//! ```text
//! score = 100 - sum over signals of weight * badness
//! ```
//!
//! Each signal's badness runs from 0 (fine) to 1 (at or past its reference):
//!
//! | signal | badness | default weight, reference |
//! |---|---|---|
//! | goroutine leak | leak rate per minute / reference (growth only) | 40, 1200/min |
//! | GC pause | p99 of the window's GC pauses / reference | 30, 10 ms |
//! | free-G pool | (pool / max(live goroutines, floor) - 1) / (reference - 1) | 15, 4x, floor 1000 |
//! | stack size | (mean scanned stack - 8 KiB) / (reference - 8 KiB) | 15, 64 KiB |
//!
//! A signal that cannot be computed yet (no GC cycle seen, say) counts as fine. The pool's
//! floor keeps small services, whose pool naturally outnumbers their few live goroutines,
//! from being penalized for a few kilobytes.

use serde::Serialize;

use crate::config::params::HealthModel;

/// What the score is computed from.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HealthInputs {
    pub leak_rate_per_min: Option<f64>,
    pub gc_pause_p99_seconds: Option<f64>,
    pub gfree_pool_size: Option<f64>,
    pub goroutines: Option<f64>,
    pub mean_stack_bytes: Option<f64>,
}

/// The score and each signal's share of the deduction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Health {
    pub score: f64,
    pub leak_penalty: f64,
    pub pause_penalty: f64,
    pub pool_penalty: f64,
    pub stack_penalty: f64,
}

const BASE_STACK_BYTES: f64 = 8.0 * 1024.0;

fn unit(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

impl HealthModel {
    pub fn score(&self, i: &HealthInputs) -> Health {
        let leak = i
            .leak_rate_per_min
            .map_or(0.0, |r| unit(r / self.leak_reference_per_min));
        let pause = i
            .gc_pause_p99_seconds
            .map_or(0.0, |p| unit(p / self.pause_reference_seconds));
        let pool = match (i.gfree_pool_size, i.goroutines) {
            (Some(pool), Some(live)) if self.pool_reference_ratio > 1.0 => unit(
                (pool / live.max(self.pool_floor).max(1.0) - 1.0)
                    / (self.pool_reference_ratio - 1.0),
            ),
            _ => 0.0,
        };
        let stack = i.mean_stack_bytes.map_or(0.0, |b| {
            unit((b - BASE_STACK_BYTES) / (self.stack_reference_bytes - BASE_STACK_BYTES).max(1.0))
        });
        let h = Health {
            score: 0.0,
            leak_penalty: self.leak_weight * leak,
            pause_penalty: self.pause_weight * pause,
            pool_penalty: self.pool_weight * pool,
            stack_penalty: self.stack_weight * stack,
        };
        Health {
            score: (100.0 - h.leak_penalty - h.pause_penalty - h.pool_penalty - h.stack_penalty)
                .clamp(0.0, 100.0),
            ..h
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_process_scores_100() {
        let h = HealthModel::default().score(&HealthInputs {
            leak_rate_per_min: Some(-30.0),
            gc_pause_p99_seconds: Some(0.0),
            gfree_pool_size: Some(50.0),
            goroutines: Some(100.0),
            mean_stack_bytes: Some(4096.0),
        });
        assert_eq!(h.score, 100.0);
    }

    #[test]
    fn each_signal_deducts_up_to_its_weight() {
        let m = HealthModel::default();
        let leak = m.score(&HealthInputs {
            leak_rate_per_min: Some(600.0),
            ..Default::default()
        });
        assert_eq!((leak.score, leak.leak_penalty), (80.0, 20.0));
        let worst = m.score(&HealthInputs {
            leak_rate_per_min: Some(1e9),
            gc_pause_p99_seconds: Some(1.0),
            gfree_pool_size: Some(1e6),
            goroutines: Some(0.0),
            mean_stack_bytes: Some(1e9),
        });
        assert_eq!(worst.score, 0.0);
        let pool = m.score(&HealthInputs {
            gfree_pool_size: Some(2500.0),
            goroutines: Some(100.0),
            ..Default::default()
        });
        assert_eq!(pool.pool_penalty, 7.5, "measured against the floor of 1000");
        let small = m.score(&HealthInputs {
            gfree_pool_size: Some(40.0),
            goroutines: Some(3.0),
            ..Default::default()
        });
        assert_eq!(small.pool_penalty, 0.0);
        let big = m.score(&HealthInputs {
            gfree_pool_size: Some(25_000.0),
            goroutines: Some(10_000.0),
            ..Default::default()
        });
        assert_eq!(big.pool_penalty, 7.5);
        let pause = m.score(&HealthInputs {
            gc_pause_p99_seconds: Some(0.005),
            ..Default::default()
        });
        assert_eq!(pause.score, 85.0);
    }

    #[test]
    fn unknown_signals_count_as_fine() {
        assert_eq!(
            HealthModel::default().score(&HealthInputs::default()).score,
            100.0
        );
    }
}
