//! Bad input gets one clear line on stderr and a non-zero exit, never a panic.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// Runs gprof and checks the one-line error; returns the message.
fn fails(args: &[&str]) -> String {
    let out = Command::new(gprof())
        .args(args)
        .output()
        .expect("run gprof");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "gprof {args:?} should fail; stderr: {stderr}"
    );
    assert_ne!(
        out.status.code(),
        Some(101),
        "gprof {args:?} panicked: {stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "gprof {args:?} panicked: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "gprof {args:?}: want one line, got {stderr:?}"
    );
    assert!(lines[0].starts_with("gprof: error: "), "{stderr}");
    stderr
}

fn top(pid: &str) -> String {
    fails(&["top", "--batch", "--iterations", "1", "--pid", pid])
}

#[test]
fn impossible_pids() {
    for pid in ["0", "-1", "-42", "4194305", "99999999999"] {
        let e = top(pid);
        assert!(e.contains("not a valid PID"), "{pid}: {e}");
    }
}

#[test]
fn missing_process() {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let e = top(&pid.to_string());
    assert!(e.contains(&format!("no process with PID {pid}")), "{e}");
}

#[test]
fn non_go_process() {
    let sleeper = Spawned::start(Command::new("sleep").arg("30"));
    let e = top(&sleeper.pid().to_string());
    assert!(e.contains("not a Go program (no Go function table"), "{e}");
    assert!(e.contains("(sleep)"), "{e}");
    let e = fails(&["check", "--pid", &sleeper.pid().to_string()]);
    assert!(e.contains("not a Go program (no Go function table"), "{e}");
}

#[test]
fn not_an_executable() {
    let e = fails(&["check", "/etc/hostname"]);
    assert!(e.contains("not an ELF executable"), "{e}");
    let e = fails(&["check", "/nonexistent/binary"]);
    assert!(e.contains("cannot read /nonexistent/binary"), "{e}");
}

#[test]
fn zombie_process() {
    // A child that exited and that this test never reaps stays a zombie.
    let child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    assert!(wait_for(Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
    }));
    let e = top(&pid.to_string());
    assert!(e.contains("exited (zombie)"), "{e}");
    std::mem::forget(child);
}

#[test]
fn kernel_thread() {
    let kthread = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit(')')
                        .next()?
                        .split_whitespace()
                        .nth(6)?
                        .parse::<u64>()
                        .ok()
                })
                .is_some_and(|flags| flags & 0x0020_0000 != 0)
        });
    let Some(pid) = kthread else {
        skip(
            "kernel_thread",
            "no kernel thread visible in this PID namespace",
        );
        return;
    };
    let e = top(&pid.to_string());
    assert!(e.contains("kernel thread"), "{e}");
}

/// A release older than 1.17 is refused by name; a binary whose recorded release has
/// another layout than its code (a stripped go1.21 claiming go1.19) is refused by the
/// self-check at attach, before any probe, and left running untouched.
#[test]
fn unsupported_releases_and_layouts_that_do_not_fit() {
    let test = "unsupported_releases_and_layouts_that_do_not_fit";
    let Some(old) = relabeled(test, "1.19", "stripped", "go1.19.8", "go1.16.9") else {
        return;
    };
    let e = fails(&["check", old.to_str().unwrap()]);
    assert!(e.contains("go1.16.9 is older than go1.17"), "{e}");
    let Some(misfit) = relabeled(test, "1.21.13", "stripped", "go1.21.13", "go1.19.13") else {
        return;
    };
    if require_root(test) {
        for (bin, want) in [
            (&old, "go1.16.9 is older than go1.17"),
            (
                &misfit,
                "go1.19.13's runtime layout does not fit the live process, so gprof will not read or probe it: self-check failed",
            ),
        ] {
            let target =
                Spawned::start(Command::new(bin).args(["-report", "100ms", "-churn-rate", "10"]));
            assert!(
                wait_for(Duration::from_secs(10), || !target.snapshot().is_empty()),
                "{test}: the program does not report"
            );
            let e = top(&target.pid().to_string());
            assert!(e.contains(want), "{e}");
            // Untouched: still running, still reporting.
            let before = target.snapshot().len();
            std::thread::sleep(Duration::from_millis(500));
            assert!(
                target.snapshot().len() > before,
                "{}: stopped reporting",
                bin.display()
            );
        }
    }
    let _ = std::fs::remove_file(old);
    let _ = std::fs::remove_file(misfit);
}

#[test]
fn missing_privileges() {
    if !is_root() {
        // Already unprivileged: gprof itself must say what it lacks.
        skip(
            "missing_privileges",
            "needs root to drop privileges with setpriv",
        );
        return;
    }
    let Some(bin) = go_target("missing_privileges", "workload", "1.27.3", "plain") else {
        return;
    };
    let target = Spawned::start(Command::new(&bin).args(["-report", "0"]));
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ])
        .arg(gprof())
        .args([
            "top",
            "--batch",
            "--iterations",
            "1",
            "--pid",
            &target.pid().to_string(),
        ])
        .output()
        .expect("setpriv (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("CAP_SYS_PTRACE") || stderr.contains("CAP_BPF"),
        "{stderr}"
    );
}

#[test]
fn bad_arguments() {
    let out = Command::new(gprof())
        .args(["top", "--pid", "1", "--interval", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "clap usage errors exit 2");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a number of seconds"));
}

#[test]
fn version_names_this_gprof() {
    let out = Command::new(gprof()).arg("--version").output().unwrap();
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(v.contains("not GNU gprof") && v.contains("eBPF"), "{v}");
}

#[test]
fn kernel_without_uprobes_or_btf() {
    if !is_root() {
        // Without root the missing privileges are reported first.
        skip(
            "kernel_without_uprobes_or_btf",
            "needs root to get past the privilege check",
        );
        return;
    }
    let Some(bin) = go_target(
        "kernel_without_uprobes_or_btf",
        "workload",
        "1.27.3",
        "plain",
    ) else {
        return;
    };
    let target = Spawned::start(Command::new(&bin).args(["-report", "0"]));
    let pid = target.pid().to_string();
    let sys = std::env::temp_dir().join(format!("gprof-fake-sys-{}", std::process::id()));
    std::fs::create_dir_all(&sys).unwrap();
    let run = || {
        let out = Command::new(gprof())
            .env("GPROF_SYSFS", &sys)
            .args(["top", "--batch", "--iterations", "1", "--pid", &pid])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let e = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(e.lines().count(), 1, "{e}");
        e
    };
    let e = run();
    assert!(
        e.contains("no uprobe support") && e.contains("CONFIG_UPROBE_EVENTS"),
        "{e}"
    );
    std::fs::create_dir_all(sys.join("bus/event_source/devices/uprobe")).unwrap();
    let e = run();
    assert!(
        e.contains("no BTF") && e.contains("CONFIG_DEBUG_INFO_BTF"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&sys);
}
