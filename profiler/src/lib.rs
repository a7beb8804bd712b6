//! gprof: an eBPF health profiler for Go services.
//!
//! Data flows one way, one module per stage:
//!
//!   binary, goruntime (what is probed) -> disasm, globals, probes (where, validated)
//!   -> kernel (eBPF programs and maps) -> target, collector (per process)
//!   -> snapshot (the one model) -> render (TUI, JSON)
//!
//! `top` and `check` are the commands that wire the stages together.

pub mod binary;
pub mod check;
pub mod collector;
pub mod disasm;
pub mod globals;
pub mod goruntime;
pub mod health;
pub mod kernel;
pub mod logging;
pub mod probes;
pub mod process;
pub mod render;
pub mod runtime_state;
pub mod snapshot;
pub mod stats;
pub mod target;
pub mod top;
