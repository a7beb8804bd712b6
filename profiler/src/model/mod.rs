//! The one model every view renders: snapshots of processes, tenants and the node, the
//! health score, and the statistics behind the leak verdict. Pure data and math, no I/O.

pub mod alert;
pub mod dump;
pub mod health;
pub mod snapshot;
pub mod stats;
pub mod verdict;
