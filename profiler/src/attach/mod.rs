//! The kernel side: loading the eBPF programs, attaching uprobes at planned addresses, and
//! reading their maps.

mod batch;
pub mod kernel;
