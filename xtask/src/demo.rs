//! `cargo xtask demo`: builds gprof, starts a Go program that leaks 20 goroutines per second
//! beside 2000 short-lived ones per second and a GC every 2 seconds, and opens `gprof top`
//! (goroutines stuck after 10 s).

use std::io::IsTerminal;
use std::process::{Command, Stdio};

use crate::{gotargets, run, toolchain};

const RELEASE: &str = "1.27.3";

pub fn run() -> anyhow::Result<()> {
    crate::build()?;
    toolchain::ensure_go(RELEASE)?;
    let workload = gotargets::build(
        &run::workspace().join("testdata/go/workload"),
        RELEASE,
        gotargets::variant("stripped"),
    )?;
    let mut child = Command::new(&workload)
        .args([
            "-leak-rate",
            "20",
            "-churn-rate",
            "2000",
            "-gc-every",
            "2s",
            "-report",
            "0",
        ])
        .stdout(Stdio::null())
        .spawn()?;
    let pid = child.id().to_string();
    eprintln!(
        "xtask: started {} (PID {pid}, Go {RELEASE}, stripped): leaks 20 goroutines/s beside 2000 short-lived/s",
        workload.display()
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let gprof = run::workspace().join("target/release/gprof");
    let mut top = Command::new(&gprof);
    // Goroutines waiting 10 s at one place are stuck: the leak is confirmed within about a
    // minute and a half (the default, 5 minutes, suits services better than a demo).
    top.args(["top", "--pid", &pid, "--stuck-after", "10"]);
    if !std::io::stdout().is_terminal() {
        // No terminal to draw on: show the same figures as JSON lines, until the verdict.
        top.args(["--batch", "--iterations", "90"]);
    }
    let result = run::status(&mut top);
    let _ = child.kill();
    let _ = child.wait();
    result
}
