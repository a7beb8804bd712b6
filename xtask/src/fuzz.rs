//! The fuzz targets (`fuzz/`, cargo-fuzz with libFuzzer): each runs for a fixed time inside
//! `cargo xtask test`, seeded with real Go binaries and their function tables. A crash (a
//! panic, an overflow, an out-of-bounds read) fails the run and leaves the input in
//! `fuzz/artifacts/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;

use crate::{gotargets, run};

/// Every target in fuzz/Cargo.toml.
const TARGETS: &[&str] = &["parse_binary", "parse_pclntab", "workload_text"];

fn corpus(target: &str) -> PathBuf {
    run::workspace().join("target/fuzz-corpus").join(target)
}

/// Seeds: a small Go binary of the oldest and the newest release, their `.gopclntab`, and
/// procfs and cgroup text of the kinds workloads control.
fn seed() -> anyhow::Result<()> {
    let binaries: Vec<PathBuf> = ["1.19", "1.27.3"]
        .iter()
        .map(|r| gotargets::dir().join("workload").join(r).join("stripped"))
        .collect();
    let dir = corpus("parse_binary");
    std::fs::create_dir_all(&dir)?;
    for (i, b) in binaries.iter().enumerate() {
        std::fs::copy(b, dir.join(format!("seed-{i}")))
            .with_context(|| format!("seeding from {}", b.display()))?;
    }
    let dir = corpus("parse_pclntab");
    std::fs::create_dir_all(&dir)?;
    for (i, b) in binaries.iter().enumerate() {
        run::status(
            Command::new("objcopy")
                .args(["-O", "binary", "--only-section=.gopclntab"])
                .arg(b)
                .arg(dir.join(format!("seed-{i}"))),
        )?;
    }
    let dir = corpus("workload_text");
    std::fs::create_dir_all(&dir)?;
    let texts = [
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1c2d3e4f_aaaa_bbbb_cccc_0123456789ab.slice/cri-containerd-4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a.scope\n",
        "12:memory:/kubepods/burstable/pod1c2d3e4f-aaaa-bbbb-cccc-0123456789ab/4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a\n0::/\n",
        "1234 (my (odd) prog) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 7 0 98765 1000 200 18446744073709551615",
        "PATH=/bin\0GPROF_TENANT=insure-prod\0",
        "payments_api-5f7c9_1c2d3e4f-aaaa-bbbb-cccc-0123456789ab",
        "555555554000-555555556000 r--p 00000000 fd:01 42 /usr/bin/app\n",
    ];
    for (i, t) in texts.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i}")), t)?;
    }
    Ok(())
}

/// Builds the targets once, then runs each for `each`.
pub fn run_all(each: Duration) -> anyhow::Result<()> {
    seed()?;
    let fuzz_dir = run::workspace().join("fuzz");
    run::status(
        Command::new("cargo")
            .current_dir(run::workspace())
            .args(["+nightly", "fuzz", "build", "--fuzz-dir"])
            .arg(&fuzz_dir),
    )?;
    for target in TARGETS {
        fuzz_one(&fuzz_dir, target, each)?;
    }
    Ok(())
}

fn fuzz_one(fuzz_dir: &Path, target: &str, each: Duration) -> anyhow::Result<()> {
    println!("xtask: fuzzing {target} for {}s", each.as_secs());
    let corpus = corpus(target);
    let started = std::time::Instant::now();
    let out = Command::new("cargo")
        .current_dir(run::workspace())
        .args(["+nightly", "fuzz", "run", "--fuzz-dir"])
        .arg(fuzz_dir)
        .arg(target)
        .arg(&corpus)
        .args([
            "--",
            &format!("-max_total_time={}", each.as_secs()),
            "-max_len=8388608",
            "-rss_limit_mb=4096",
            "-print_final_stats=1",
        ])
        .output()
        .context("running cargo fuzz")?;
    let log = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        anyhow::bail!(
            "fuzz target {target} failed after {:.0?}:\n{}",
            started.elapsed(),
            tail.join("\n")
        );
    }
    let runs = log
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .map(str::trim)
        .unwrap_or("?");
    println!(
        "xtask: fuzz target {target}: {runs} inputs in {:.0?}, no crash",
        started.elapsed()
    );
    Ok(())
}
