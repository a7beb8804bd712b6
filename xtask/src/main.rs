//! `cargo xtask`: the jobs that are more than a `cargo build`: installing the toolchain,
//! building the Go test targets, running every test, the demo and the benchmark.

mod arm64;
mod bench;
mod cleanroot;
mod corpus;
mod dashboard;
mod demo;
mod fuzz;
mod generate;
mod goker;
mod gotargets;
mod image;
mod run;
mod toolchain;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what is missing (nightly rust-src, bpf-linker, Go toolchains, test tools).
    Setup,
    /// Build target/release/gprof (with the eBPF object embedded), installing the toolchain first.
    Build,
    /// Run every test: unit tests and end-to-end tests against real Go programs.
    Test {
        /// `arm64`: only the tests on the emulated arm64 machine (tests/arm64.rs), which the
        /// whole run includes.
        #[arg(long)]
        arch: Option<String>,
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Prepare what the tests need (toolchain, Go test programs, the corpus) without running
    /// them, and print the environment to run one test file by hand with `cargo test`.
    Targets,
    /// Start a Go program that leaks goroutines and open `gprof top` on it.
    Demo,
    /// Build gprof's container image (amd64 and arm64) as an OCI image layout, without a
    /// container engine: target/image/oci and target/image/gprof-oci.tar.
    Image,
    /// Regenerate the files derived from others (PrometheusRule, config checksum).
    Generate {
        /// Only check that they are up to date.
        #[arg(long)]
        check: bool,
    },
    /// Measure gprof's overhead on a worst-case goroutine-churn program.
    Bench(bench::Options),
    /// Draw the dashboard's main panels from real data (a real Prometheus scraping a real
    /// daemon) into docs/dashboard.png, by running the dashboard test.
    Picture,
}

fn main() -> std::process::ExitCode {
    match run_command() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cargo xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_command() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Setup => {
            toolchain::ensure_ebpf()?;
            toolchain::ensure_test_tools()?;
            Ok(())
        }
        Command::Build => build(),
        Command::Test { arch, args } => test(arch.as_deref(), &args),
        Command::Targets => {
            let env = TestEnv::prepare()?;
            for (name, value) in env.vars() {
                println!("export {name}={:?}", value.to_string_lossy());
            }
            Ok(())
        }
        Command::Demo => demo::run(),
        Command::Image => image::build().map(|_| ()),
        Command::Bench(o) => bench::run(&o),
        Command::Generate { check } => generate::run(check),
        Command::Picture => picture(),
    }
}

/// The release build of gprof, toolchain included.
pub fn build() -> anyhow::Result<()> {
    toolchain::ensure_ebpf()?;
    run::cargo(&[
        "build",
        "--release",
        "--package",
        "profiler",
        "--bin",
        "gprof",
    ])?;
    println!(
        "built {}",
        run::workspace().join("target/release/gprof").display()
    );
    Ok(())
}

/// The tests take about 43 minutes here (43 min 12 s on 2026-12-07 with the rebuild, the
/// emulated arm64 machine 7.5 of them); CI stops everything at 90, setup included.
const TEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(55 * 60);

fn test(arch: Option<&str>, args: &[String]) -> anyhow::Result<()> {
    let only_arm64 = match arch {
        None | Some("x86_64") => false,
        Some("arm64" | "aarch64") => true,
        Some(other) => {
            anyhow::bail!("--arch {other}: the tests run on x86_64 (here) and arm64 (emulated)")
        }
    };
    let allow_skip = std::env::var("GPROF_ALLOW_SKIP").is_ok_and(|v| v == "1");
    if toolchain::effective_uid() != 0 && !allow_skip {
        anyhow::bail!(
            "cargo xtask test must run as root: its end-to-end tests load eBPF programs, attach \
             uprobes to real Go programs and read their memory (run `sudo -E cargo xtask test`; \
             GPROF_ALLOW_SKIP=1 runs what can run without root and lists what was skipped)"
        );
    }
    let env = TestEnv::prepare()?;
    // Every test binary runs even when one fails, so that a run shows every failure.
    let mut cmd = vec![
        "test",
        "--release",
        "--no-fail-fast",
        "--workspace",
        "--exclude",
        "profiler-ebpf",
    ];
    if only_arm64 {
        cmd.extend(["--package", "profiler", "--test", "arm64"]);
    }
    cmd.extend(args.iter().map(String::as_str));
    // Each parser of untrusted input, fuzzed for half a minute.
    if !only_arm64 {
        fuzz::run_all(std::time::Duration::from_secs(30))?;
    }
    // Tests that could not run (only with GPROF_ALLOW_SKIP=1) write a line here.
    let skip_log = run::workspace().join("target/gprof-skipped-tests.txt");
    let _ = std::fs::remove_file(&skip_log);
    let mut vars = env.vars();
    vars.push(("GPROF_SKIP_LOG", skip_log.as_os_str()));
    let result = run::cargo_within(&cmd, &vars, TEST_DEADLINE);
    let skipped = std::fs::read_to_string(&skip_log).unwrap_or_default();
    if skipped.is_empty() {
        println!("\nno test was skipped");
    } else {
        let lines: Vec<&str> = skipped.lines().collect();
        println!(
            "\n{} test(s) SKIPPED (GPROF_ALLOW_SKIP=1), not passed:",
            lines.len()
        );
        for l in lines {
            println!("  {l}");
        }
    }
    result
}

/// What the tests need: the toolchain and tools, the Go targets built, the corpus downloaded.
pub(crate) struct TestEnv {
    targets: std::path::PathBuf,
    corpus: std::path::PathBuf,
    arm64: std::path::PathBuf,
    path: std::ffi::OsString,
}

impl TestEnv {
    pub(crate) fn prepare() -> anyhow::Result<Self> {
        toolchain::ensure_ebpf()?;
        toolchain::ensure_test_tools()?;
        generate::run(true)?;
        let targets = gotargets::build_all()?;
        goker::build()?;
        // Real third-party Go programs: the binaries we did not build ourselves.
        let corpus = corpus::ensure()?;
        // The arm64 machine: its kernel, busybox and gprof built for aarch64.
        let arm64 = arm64::prepare()?;
        // What setup installs, checked in a clean root: enough for all of the above.
        cleanroot::ensure(&arm64)?;
        Ok(Self {
            targets,
            corpus,
            arm64,
            path: toolchain::test_path(),
        })
    }

    pub(crate) fn vars(&self) -> Vec<(&'static str, &std::ffi::OsStr)> {
        vec![
            (gotargets::ENV, self.targets.as_os_str()),
            (corpus::ENV, self.corpus.as_os_str()),
            (arm64::ENV, self.arm64.as_os_str()),
            ("PATH", self.path.as_os_str()),
        ]
    }
}

/// docs/dashboard.png, drawn by the dashboard test from what a real Prometheus scraped.
fn picture() -> anyhow::Result<()> {
    let env = TestEnv::prepare()?;
    let out = run::workspace().join("docs/dashboard.png");
    let mut vars = env.vars();
    vars.push(("GPROF_DASHBOARD_PNG", out.as_os_str()));
    run::cargo_with_env(
        &[
            "test",
            "--release",
            "--package",
            "profiler",
            "--test",
            "dashboard",
            "--",
            "--nocapture",
        ],
        &vars,
    )?;
    println!("wrote {}", out.display());
    Ok(())
}
