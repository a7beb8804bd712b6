//! gprof: an eBPF health profiler for Go services.
//!
//! The pipeline, one module per stage:
//! `binary` + `goruntime` (what to probe) -> `probes` (where, validated) -> `kernel` (load,
//! attach, read maps) -> `collector` (per process) -> `snapshot` (the one model) -> `render`.

pub mod binary;
pub mod disasm;
pub mod goruntime;
pub mod globals;
pub mod probes;
