//! gprof: an eBPF health profiler for Go services.
//!
//! Data flows one way, and the folders follow it (docs/architecture.md has the picture):
//!
//!   config (plain data) < model (the snapshot) < inspect (the binary and the runtime)
//!   < attach (the kernel side) < collect (one process, sampled) < render (views)
//!   < serve (the daemon) and ui (`top`, `check`)
//!
//! A module uses only folders to its left; `tests/layers.rs` fails on an edge back.

pub mod attach;
pub mod collect;
pub mod config;
pub mod faults;
pub mod inspect;
pub mod logging;
pub mod model;
pub mod render;
pub mod serve;
pub mod ui;
