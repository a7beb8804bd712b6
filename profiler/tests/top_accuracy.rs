//! `gprof top --batch` against real Go programs that print their own runtime figures
//! (`runtime.NumGoroutine`, `debug.ReadGCStats`, runtime/metrics): every figure gprof shows is
//! compared with the runtime's.

mod common;

use common::accuracy;

const SAMPLES: u32 = 40;

#[test]
fn go119_unstripped() {
    accuracy::run("go119_unstripped", "1.19", "plain", SAMPLES);
}

#[test]
fn go119_stripped() {
    accuracy::run("go119_stripped", "1.19", "stripped", SAMPLES);
}

#[test]
fn go127_unstripped() {
    accuracy::run("go127_unstripped", "1.27.3", "plain", SAMPLES);
}

#[test]
fn go127_stripped() {
    accuracy::run("go127_stripped", "1.27.3", "stripped", SAMPLES);
}
