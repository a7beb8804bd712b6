//! The interactive commands: `gprof top` and `gprof check`.

pub mod check;
pub mod top;
