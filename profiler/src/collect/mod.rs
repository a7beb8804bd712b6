//! One process, sampled: the attached target, what its probes and runtime reads add up to
//! per interval, creation sites and blocked goroutines tracked over time, the overhead
//! budget, and the [`sampler::Sampler`] that `top` and the daemon both run.

pub mod blocked;
pub mod budget;
pub mod census_budget;
pub mod collector;
pub mod dump;
pub mod sampler;
pub mod sites;
pub mod target;
