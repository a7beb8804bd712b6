//! Least privilege, tried: the daemon runs as a non-root user (nobody) holding exactly the
//! capabilities of the README's table, which must be the DaemonSet's, given as the image gives
//! them (file capabilities on the binary, bounded by the container's capability set). It must
//! watch and alert as it does as root, on Go programs run by root, one in a container; and
//! with any one capability removed it must not (each one is needed).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::container::{Cgroup, Container, cgroup2_root};
use common::daemon::Alertmanager;
use common::*;

/// The capabilities in the README's table (`| `CAP_X` | ...`), without the `CAP_` prefix.
fn readme_capabilities() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let start = readme
        .find("\n## Privileges")
        .expect("the README has a Privileges section");
    readme[start + 1..]
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| l.strip_prefix("| `CAP_"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect()
}

fn daemonset_capabilities() -> Vec<String> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/daemonset.yaml"),
    )
    .unwrap();
    let ds: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let c = &ds["spec"]["template"]["spec"]["containers"][0]["securityContext"];
    assert_eq!(c["capabilities"]["drop"][0], "ALL");
    assert_eq!(c["runAsNonRoot"], true, "the DaemonSet runs as non-root");
    c["capabilities"]["add"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// What a daemon run with `caps` did: whether it watched both targets, whether the alert
/// reached Alertmanager, and its log.
struct Run {
    watched: usize,
    alerted: bool,
    exited: bool,
    log: String,
}

fn run_daemon(
    gprof: &Path,
    caps: &[String],
    config: &Path,
    am: &Alertmanager,
    pids: &[u32],
    wait: Duration,
) -> Run {
    // File capabilities, as the image sets them; the bounding set is the container's.
    let list: Vec<String> = caps
        .iter()
        .map(|c| format!("cap_{}", c.to_lowercase()))
        .collect();
    let status = Command::new("setcap")
        .arg(format!("{}=ep", list.join(",")))
        .arg(gprof)
        .status()
        .unwrap();
    assert!(status.success(), "setcap");
    let bounding: Vec<String> = caps
        .iter()
        .map(|c| format!("+{}", c.to_lowercase()))
        .collect();
    let port = free_port();
    let mut daemon = Spawned::start(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
                &format!("--bounding-set=-all,{}", bounding.join(",")),
                "--",
            ])
            .arg(gprof)
            .args(["daemon", "--config"])
            .arg(config)
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(["--alertmanager-url", &am.url()]),
    );
    let alerts = || {
        am.alerts()
            .iter()
            .any(|a| a["labels"]["alertname"] == "GprofGoroutineLeakConfirmed")
    };
    let watched = |log: &str| {
        pids.iter()
            .filter(|p| log.contains(&format!("watching pid={p} ")))
            .count()
    };
    let mut exited = false;
    wait_for(wait, || {
        exited = daemon.child.try_wait().ok().flatten().is_some();
        exited || (watched(&daemon.stderr_text()) == pids.len() && alerts())
    });
    let log = daemon.stderr_text();
    let run = Run {
        watched: watched(&log),
        alerted: alerts(),
        exited,
        log,
    };
    let _ = daemon.child.kill();
    let _ = daemon.child.wait();
    run
}

#[test]
fn the_daemon_needs_exactly_the_daemonsets_capabilities() {
    let test = "the_daemon_needs_exactly_the_daemonsets_capabilities";
    if !require_root(test) {
        return;
    }
    let caps = readme_capabilities();
    assert_eq!(
        caps,
        daemonset_capabilities(),
        "{test}: the README's table and the DaemonSet disagree"
    );
    let (Some(leaker), Some(quiet)) = (
        go_target(test, "scenarios", "1.27.3", "stripped"),
        go_target(test, "workload", "1.24.11", "plain"),
    ) else {
        return;
    };
    for tool in ["setpriv", "setcap", "unshare"] {
        if which(tool).is_none() {
            skip(test, &format!("{tool} is needed (util-linux, libcap2-bin)"));
            return;
        }
    }
    let Some(v2) = cgroup2_root() else {
        skip(test, "no cgroup v2 hierarchy");
        return;
    };
    let Some((am, dir)) = Alertmanager::for_test(test) else {
        return;
    };
    // gprof where the unprivileged user can run it, as the image installs it.
    let bin_dir = dir.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&bin_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let gprof_copy = bin_dir.join("gprof");
    std::fs::copy(gprof(), &gprof_copy).unwrap();
    let config = dir.join("gprof.yaml");
    std::fs::write(
        &config,
        "interval: 1s\nleaks:\n  stuck_after: 5s\nwindows:\n  leak: 30s\nthresholds:\n  - metric: confirmed_leak_rate_per_min\n    warning: 0.1\n    for: 2s\n",
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();

    // Root's programs: a leaking one in a container (kubelet cgroup, binary on a tmpfs only
    // its mount namespace sees), and one whose binary only root may read (mode 0700).
    let tag = std::process::id();
    let cgroup = Cgroup::create(
        &v2,
        &format!(
            "gprof-test-{tag}.slice/kubepods.slice/kubepods-pod{tag:08x}_1111_2222_3333_444455556666.slice/cri-containerd-{:064x}.scope",
            tag
        ),
    );
    let ct = Container::start(
        &leaker,
        &["-scenario", "leak", "-share", "0.02"],
        &cgroup,
        &[],
    );
    let private = dir.join("private");
    std::fs::create_dir_all(&private).unwrap();
    let private_bin: PathBuf = private.join("service");
    std::fs::copy(&quiet, &private_bin).unwrap();
    std::fs::set_permissions(&private_bin, std::fs::Permissions::from_mode(0o700)).unwrap();
    let service = Spawned::start(Command::new(&private_bin).args([
        "-leak-rate",
        "0",
        "-churn-rate",
        "100",
        "-gc-every",
        "2s",
        "-report",
        "0",
    ]));
    let pids = [ct.host_pid, service.pid()];

    // Exactly the table's capabilities: both watched, the leak alerted.
    let full = run_daemon(
        &gprof_copy,
        &caps,
        &config,
        &am,
        &pids,
        Duration::from_secs(120),
    );
    assert!(
        full.watched == pids.len() && full.alerted && !full.exited,
        "{test}: with {caps:?} as nobody: watched {}/{}, alerted {}; log:\n{}",
        full.watched,
        pids.len(),
        full.alerted,
        full.log
    );
    println!("{test}: as nobody with {caps:?}: both watched, the leak alerted");

    // Each capability is needed: without it, something is not watched.
    for missing in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
        let run = run_daemon(
            &gprof_copy,
            &fewer,
            &config,
            &am,
            &pids,
            Duration::from_secs(8),
        );
        assert!(
            run.exited || run.watched < pids.len(),
            "{test}: without CAP_{missing} the daemon still watched everything: CAP_{missing} is unneeded; log:\n{}",
            run.log
        );
        println!(
            "{test}: without CAP_{missing}: {}",
            if run.exited {
                format!("exits: {}", run.log.lines().last().unwrap_or(""))
            } else {
                format!("watches {}/{}", run.watched, pids.len())
            }
        );
    }
    drop((ct, service));
    let _ = std::fs::remove_dir_all(&dir);
}
