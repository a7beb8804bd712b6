//! gprof: an eBPF health profiler for Go services.
//!
//! Data flows one way, one module per stage:
//!
//!   binary, goruntime (what is probed) -> disasm, globals, probes (where, validated)
//!   -> kernel (eBPF programs and maps) -> target, collector (per process)
//!   -> snapshot (the one model) -> render (TUI, JSON)
//!
//! `top` and `check` are the commands that wire the stages together.

pub mod alerts;
pub mod binary;
pub mod blocked;
pub mod budget;
pub mod census;
pub mod check;
pub mod collector;
pub mod config;
pub mod daemon;
pub mod disasm;
pub mod discovery;
pub mod faults;
pub mod globals;
pub mod goruntime;
pub mod health;
pub mod http;
pub mod kernel;
pub mod logging;
pub mod notify;
pub mod probes;
pub mod process;
pub mod render;
pub mod runtime_state;
pub mod selfcheck;
pub mod sites;
pub mod snapshot;
pub mod stats;
pub mod target;
pub mod tenancy;
pub mod top;
pub mod unwind;
pub mod verdict;
