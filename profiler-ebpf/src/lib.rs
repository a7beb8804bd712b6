//! The eBPF programs live in `main.rs` (a `bpfel-unknown-none` binary). This empty library
//! exists so that the user-space crate can name this package as a build dependency, which
//! makes cargo rebuild the object when its sources change.
#![no_std]
