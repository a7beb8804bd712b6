//! Running commands, loudly: every command is echoed, and a failure names it.

use std::ffi::OsStr;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// The workspace root (xtask lives one level below it).
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

pub fn status(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    cargo_with_env(args, &[])
}

pub fn cargo_with_env(args: &[&str], env: &[(&str, &OsStr)]) -> anyhow::Result<()> {
    status(&mut cargo_command(args, env))
}

fn cargo_command(args: &[&str], env: &[(&str, &OsStr)]) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace()).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Like [`cargo_with_env`], but a run still going after `deadline` is killed (with every
/// process it started) and fails: a hung test then fails in minutes, not at CI's limit.
pub fn cargo_within(
    args: &[&str],
    env: &[(&str, &OsStr)],
    deadline: Duration,
) -> anyhow::Result<()> {
    let mut cmd = cargo_command(args, env);
    cmd.process_group(0);
    eprintln!("xtask: {cmd:?} (at most {} min)", deadline.as_secs() / 60);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("{cmd:?} failed: {status}");
            }
            return Ok(());
        }
        if start.elapsed() > deadline {
            // The group holds cargo and the test binary it runs (and their targets).
            // SAFETY: kill(2) with a process group id we created; no memory is involved.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            bail!(
                "{cmd:?} still ran after {} min and was killed: a test hangs (the ones \
                 'running for over 60 seconds' above are the suspects)",
                deadline.as_secs() / 60
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
