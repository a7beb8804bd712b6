//! The interactive commands: `gprof top`, `gprof dump` and `gprof check`.

pub mod check;
pub mod dump;
pub mod top;
