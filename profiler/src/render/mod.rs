//! Renderers: each turns snapshots into one output, and computes nothing of its own.

pub mod dump;
pub mod dump_text;
pub mod json;
pub mod pprof;
pub mod prometheus;
pub mod tui;
