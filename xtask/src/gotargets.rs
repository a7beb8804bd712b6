//! Builds the Go test programs in `testdata/go/` once per Go release and variant, into
//! `target/go-targets/PROGRAM/RELEASE/VARIANT`. The tests find them through [`ENV`].

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run;
use crate::toolchain::{self, GO_RELEASES};

/// Environment variable that tells the tests where the built programs are.
pub const ENV: &str = "GPROF_GO_TARGETS";

/// Build variants: name and extra `go build` flags.
pub const VARIANTS: &[(&str, &[&str])] = &[("plain", &[]), ("stripped", &["-ldflags=-s -w"])];

pub fn dir() -> PathBuf {
    run::workspace().join("target/go-targets")
}

fn programs() -> anyhow::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(run::workspace().join("testdata/go"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("main.go").exists())
        .collect();
    out.sort();
    Ok(out)
}

fn newest_source(program: &Path) -> std::time::SystemTime {
    std::fs::read_dir(program)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.metadata().ok()?.modified().ok())
        .max()
        .unwrap_or(std::time::UNIX_EPOCH)
}

/// Builds every program for every release and variant (skipping up-to-date outputs).
pub fn build_all() -> anyhow::Result<PathBuf> {
    for program in programs()? {
        for release in GO_RELEASES {
            for (variant, flags) in VARIANTS {
                build(&program, release, variant, flags)?;
            }
        }
    }
    Ok(dir())
}

/// The path of one built program.
pub fn path(program: &str, release: &str, variant: &str) -> PathBuf {
    dir().join(program).join(release).join(variant)
}

pub fn build(
    program: &Path,
    release: &str,
    variant: &str,
    flags: &[&str],
) -> anyhow::Result<PathBuf> {
    let name = program
        .file_name()
        .expect("program dir")
        .to_string_lossy()
        .into_owned();
    let out = path(&name, release, variant);
    let fresh = out
        .metadata()
        .and_then(|m| m.modified())
        .is_ok_and(|built| built >= newest_source(program));
    if fresh {
        return Ok(out);
    }
    run::status(
        Command::new(toolchain::go_binary(release))
            .current_dir(program)
            .env("GOTOOLCHAIN", "local")
            .env("CGO_ENABLED", "0")
            .env("GOFLAGS", "-mod=mod")
            .args(["build", "-o"])
            .arg(&out)
            .args(flags)
            .arg("."),
    )?;
    Ok(out)
}
