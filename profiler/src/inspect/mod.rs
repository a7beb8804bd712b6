//! What is probed, and where: the target's executable (ELF, `.gopclntab`, DWARF), the Go
//! runtime's layouts per release, validated probe addresses (the attach plan), and reads of
//! the live runtime's memory (counters, the goroutine census, stacks).

pub mod binary;
pub mod census;
pub mod clock;
pub mod disasm;
pub mod globals;
pub mod goruntime;
pub mod plan;
pub mod process;
pub mod runtime_state;
pub mod selfcheck;
pub mod stacks;
pub mod unwind;
