//! Tenants under hostile workloads: whatever a process claims in its environment, the
//! exported tenant label values stay few and valid, and a pod cannot claim another
//! namespace's tenant when the operator trusts namespaces.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::container::{Cgroup, cgroup2_root};
use common::daemon::{Daemon, label_value, pid_label, series};
use common::*;

/// An idle Go program: nothing created, nothing leaked, no forced GC.
fn idle(bin: &Path) -> Command {
    let mut c = Command::new(bin);
    c.args([
        "-churn-rate",
        "0",
        "-leak-rate",
        "0",
        "-gc-every",
        "0",
        "-report",
        "0",
    ]);
    c
}

/// Every value of label `name` in the text format.
fn label_values(metrics: &str, name: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| label_value(l, name))
        .collect()
}

fn valid_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

#[test]
fn sixty_processes_claiming_sixty_tenants() {
    let test = "sixty_processes_claiming_sixty_tenants";
    if !require_root(test) {
        return;
    }
    let Some(bin) = go_target(test, "workload", "1.27.3", "stripped") else {
        return;
    };
    let long = "x".repeat(5000);
    let malformed = [
        "a\"b",
        "line\nbreak",
        long.as_str(),
        "../..",
        "../../etc",
        "a b",
        "-lead",
        "trail-",
        "caf\u{e9}",
        "{x=\"y\"}",
    ];
    let mut claims: Vec<String> = malformed.iter().map(|s| s.to_string()).collect();
    claims.extend((0..50).map(|i| format!("team-{i:02}")));
    let targets: Vec<Spawned> = claims
        .iter()
        .map(|t| Spawned::start(idle(&bin).env("GPROF_TENANT", t)))
        .collect();
    let daemon = Daemon::start(
        "interval: 1s\ndiscovery:\n  interval: 500ms\ntenants:\n  max_tenants: 20\n",
        &[],
    );
    let all_watched = || {
        let m = daemon.metrics();
        targets
            .iter()
            .all(|t| series(&m, "gprof_goroutines", &pid_label(t.pid())).is_some())
    };
    assert!(
        wait_for(Duration::from_secs(60), all_watched),
        "{test}: not all 60 processes are watched: {}",
        daemon.log_text()
    );
    let metrics = daemon.metrics();
    let tenants = label_values(&metrics, "tenant");
    assert!(
        tenants.len() <= 22,
        "{test}: {} tenant values: {tenants:?}",
        tenants.len()
    );
    assert!(
        tenants.iter().all(|t| valid_label_value(t)),
        "{test}: invalid tenant values exported: {tenants:?}"
    );
    for t in ["other", "unassigned"] {
        assert!(tenants.contains(t), "{test}: no tenant {t}: {tenants:?}");
    }
    // Every malformed claim falls to the default, is refused in the log once, escaped.
    let log = daemon.log_text();
    for t in &targets[..malformed.len()] {
        let line = series(&metrics, "gprof_goroutines", &pid_label(t.pid()));
        assert!(line.is_some());
        let labels =
            common::daemon::series_line(&metrics, "gprof_goroutines", &pid_label(t.pid())).unwrap();
        assert!(labels.contains("tenant=\"unassigned\""), "{test}: {labels}");
    }
    assert_eq!(
        log.matches("is not a valid label value").count(),
        malformed.len(),
        "{test}: {log}"
    );
    assert!(log.contains(r#"tenant "line\nbreak" from env"#), "{log}");
    assert!(log.contains("...(5000 bytes)"), "{log}");
    assert!(
        log.lines().all(|l| l.len() < 1000),
        "{test}: a log line carries a claim whole"
    );
    // Still serving, and healthy.
    assert_eq!(http_get(daemon.port, "/healthz").map(|r| r.0), Some(200));
    assert!(metric(&daemon.metrics(), "gprof_watched_processes").unwrap() >= 60.0);
    eprintln!(
        "{test}: 60 processes watched, {} tenant values exported: {tenants:?}",
        tenants.len()
    );
    drop(targets);
}

#[test]
fn a_pod_cannot_claim_another_namespace() {
    let test = "a_pod_cannot_claim_another_namespace";
    if !require_root(test) {
        return;
    }
    let Some(bin) = go_target(test, "workload", "1.27.3", "stripped") else {
        return;
    };
    let Some(root) = cgroup2_root() else {
        skip(test, "no cgroup v2 hierarchy is mounted");
        return;
    };
    let tag = std::process::id();
    let pay_uid = format!("{:08x}-1111-2222-3333-444455556666", tag);
    let bill_uid = format!("{:08x}-7777-8888-9999-aaaabbbbcccc", tag);
    let cid = |n: u32| format!("{:064x}", u64::from(tag) * 16 + u64::from(n));
    // The kubelet's pod log directories.
    let pods = std::env::temp_dir().join(format!("gprof-pods-{tag}"));
    std::fs::create_dir_all(pods.join(format!("payments_api-5f7c9_{pay_uid}"))).unwrap();
    std::fs::create_dir_all(pods.join(format!("billing_web-0_{bill_uid}"))).unwrap();
    // Real cgroups in the systemd driver's layout.
    let top = format!("gprof-test-{tag}.slice");
    let pod_cgroup = |uid: &str, n: u32| {
        format!(
            "{top}/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{}.scope",
            uid.replace('-', "_"),
            cid(n)
        )
    };
    let pay = Cgroup::create(&root, &pod_cgroup(&pay_uid, 1));
    let bill = Cgroup::create(&root, &pod_cgroup(&bill_uid, 2));
    // In namespace payments, claiming billing.
    let liar = Spawned::start(idle(&bin).env("GPROF_TENANT", "billing"));
    pay.enter(liar.pid());
    // In namespace billing, claiming nothing.
    let honest = Spawned::start(&mut idle(&bin));
    bill.enter(honest.pid());
    // Outside any pod: its claim is all there is.
    let host = Spawned::start(idle(&bin).env("GPROF_TENANT", "billing"));
    let config = format!(
        "interval: 1s\ndiscovery:\n  interval: 500ms\ntenants:\n  from: [namespace, env]\n  pods_dir: {}\n",
        pods.display()
    );
    let daemon = Daemon::start(&config, &[]);
    let tenant_of = |pid: u32| {
        let m = daemon.metrics();
        common::daemon::series_line(&m, "gprof_goroutines", &pid_label(pid)).map(|l| {
            label_values(l, "tenant")
                .into_iter()
                .next()
                .unwrap_or_default()
        })
    };
    assert!(
        wait_for(Duration::from_secs(20), || [
            liar.pid(),
            honest.pid(),
            host.pid()
        ]
        .iter()
        .all(|&p| tenant_of(p).is_some())),
        "{test}: {}",
        daemon.log_text()
    );
    assert_eq!(tenant_of(liar.pid()).as_deref(), Some("payments"));
    assert_eq!(tenant_of(honest.pid()).as_deref(), Some("billing"));
    assert_eq!(tenant_of(host.pid()).as_deref(), Some("billing"));
    let log = daemon.log_text();
    assert!(
        log.contains(&format!(
            "watching pid={} comm=stripped go=go1.27.3 tenant=payments pod=payments/api-5f7c9",
            liar.pid()
        )),
        "{log}"
    );
    let m = daemon.metrics();
    let liar_line =
        common::daemon::series_line(&m, "gprof_goroutines", &pid_label(liar.pid())).unwrap();
    assert!(
        liar_line.contains(&format!("pod_uid=\"{pay_uid}\"")) && liar_line.contains(&cid(1)),
        "{liar_line}"
    );
    drop((liar, honest, host));
    std::thread::sleep(Duration::from_millis(200));
    drop((pay, bill));
    let _ = std::fs::remove_dir_all(&pods);
}
