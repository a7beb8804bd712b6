//! Builds the Go test programs in `testdata/go/` once per Go release and build variant, into
//! `target/go-targets/PROGRAM/RELEASE/VARIANT`. The tests find them through [`ENV`].

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run;
use crate::toolchain::{self, GO_RELEASES};

/// Environment variable that tells the tests where the built programs are.
pub const ENV: &str = "GPROF_GO_TARGETS";

/// One way of building a Go program.
pub struct Variant {
    pub name: &'static str,
    /// GOARCH when not the host's (such builds are read and planned, not run).
    pub goarch: Option<&'static str>,
    pub cgo: bool,
    pub flags: &'static [&'static str],
    pub ldflags: &'static [&'static str],
}

/// The build variants of the release matrix.
pub const VARIANTS: &[Variant] = &[
    Variant {
        name: "plain",
        goarch: None,
        cgo: false,
        flags: &[],
        ldflags: &[],
    },
    // No .symtab, no DWARF: functions from .gopclntab, globals from machine code.
    Variant {
        name: "stripped",
        goarch: None,
        cgo: false,
        flags: &[],
        ldflags: &["-s", "-w"],
    },
    Variant {
        name: "trimpath",
        goarch: None,
        cgo: false,
        flags: &["-trimpath"],
        ldflags: &[],
    },
    // cgo with external linking: runtime.text is no longer the start of .text.
    Variant {
        name: "cgo",
        goarch: None,
        cgo: true,
        flags: &[],
        ldflags: &[],
    },
    // Position-independent: loaded at a random address (load bias), pointers relocated.
    Variant {
        name: "pie",
        goarch: None,
        cgo: false,
        flags: &["-buildmode=pie"],
        ldflags: &[],
    },
    // Cross-built for arm64: decoded and planned by the tests here, run on the emulated arm64
    // machine (tests/arm64.rs).
    Variant {
        name: "arm64",
        goarch: Some("arm64"),
        cgo: false,
        flags: &[],
        ldflags: &[],
    },
    Variant {
        name: "arm64-stripped",
        goarch: Some("arm64"),
        cgo: false,
        flags: &[],
        ldflags: &["-s", "-w"],
    },
];

/// Which variants each program needs (the accuracy matrix runs the workload in all of them).
fn variants_of(program: &str) -> &'static [&'static str] {
    match program {
        "workload" => &[
            "plain",
            "stripped",
            "trimpath",
            "cgo",
            "pie",
            "arm64",
            "arm64-stripped",
        ],
        // The dump's test compares every amd64 variant with the runtime's own dump.
        "stacks" => &["plain", "stripped", "trimpath", "cgo", "pie"],
        // The free-G pool at quiet checkpoints, on the arm64 machine too.
        "freelist" => &["plain", "stripped", "arm64"],
        _ => &["plain", "stripped"],
    }
}

/// The releases a program is built with: hostile writes Go 1.27's struct offsets, and crowd
/// (the census at scale) needs one release only.
fn releases_of(program: &str) -> &'static [&'static str] {
    match program {
        "hostile" | "crowd" => &["1.27.3"],
        _ => GO_RELEASES,
    }
}

/// Extra linker flags a program needs on a release.
fn program_ldflags(program: &str, release: &str) -> &'static [&'static str] {
    let minor: u32 = release
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    // freelist reads runtime.allglen (hostile writes it) through go:linkname, which Go 1.23+
    // refuses by default.
    if matches!(program, "freelist" | "hostile") && minor >= 23 {
        &["-checklinkname=0"]
    } else {
        &[]
    }
}

/// The host's architecture as Go names it.
fn host_goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

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

/// Builds every program for every release and variant it needs (skipping up-to-date
/// outputs), two releases at a time.
pub fn build_all() -> anyhow::Result<PathBuf> {
    let programs = programs()?;
    let jobs: Vec<(&Path, &str, &Variant)> = programs
        .iter()
        .flat_map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let releases = releases_of(&name);
            releases.iter().flat_map(move |r| {
                let wanted = variants_of(&name);
                VARIANTS
                    .iter()
                    .filter(move |v| wanted.contains(&v.name))
                    .map(move |v| (p.as_path(), *r, v))
            })
        })
        .collect();
    let results: Vec<anyhow::Result<PathBuf>> = std::thread::scope(|s| {
        let halves: Vec<_> = [0, 1]
            .into_iter()
            .map(|half| {
                let mine: Vec<_> = jobs
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % 2 == half)
                    .map(|(_, j)| *j)
                    .collect();
                s.spawn(move || {
                    mine.into_iter()
                        .map(|(p, r, v)| build(p, r, v))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        halves
            .into_iter()
            .flat_map(|h| h.join().expect("build thread"))
            .collect()
    });
    for r in results {
        r?;
    }
    // Which `go` built each release, for tests that compare with Go's own tools.
    let toolchains: String = GO_RELEASES
        .iter()
        .map(|r| format!("{r}\t{}\n", toolchain::go_binary(r).display()))
        .collect();
    std::fs::write(dir().join("toolchains.tsv"), toolchains)?;
    Ok(dir())
}

/// The variant called `name`.
pub fn variant(name: &str) -> &'static Variant {
    VARIANTS
        .iter()
        .find(|v| v.name == name)
        .expect("known variant")
}

pub fn build(program: &Path, release: &str, variant: &Variant) -> anyhow::Result<PathBuf> {
    let name = program
        .file_name()
        .expect("program dir")
        .to_string_lossy()
        .into_owned();
    let out = dir().join(&name).join(release).join(variant.name);
    let fresh = out
        .metadata()
        .and_then(|m| m.modified())
        .is_ok_and(|built| built >= newest_source(program));
    if fresh {
        return Ok(out);
    }
    let mut ldflags: Vec<&str> = variant.ldflags.to_vec();
    ldflags.extend(program_ldflags(&name, release));
    let mut cmd = Command::new(toolchain::go_binary(release));
    cmd.current_dir(program)
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", if variant.cgo { "1" } else { "0" })
        .env("GOFLAGS", "-mod=mod")
        .env("GOARCH", variant.goarch.unwrap_or(host_goarch()))
        .args(["build", "-o"])
        .arg(&out)
        .args(variant.flags);
    if !ldflags.is_empty() {
        cmd.arg(format!("-ldflags={}", ldflags.join(" ")));
    }
    run::status(cmd.arg("."))?;
    Ok(out)
}
