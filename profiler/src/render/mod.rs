//! Renderers: each turns snapshots into one output, and computes nothing of its own.

pub mod json;
pub mod prometheus;
pub mod tui;
