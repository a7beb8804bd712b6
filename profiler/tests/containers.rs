//! Go programs in containers, for real: their own PID and mount namespaces, binaries that only
//! their mount namespace sees, real cgroups named as the kubelet names them (the systemd
//! driver's layout in the cgroup v2 hierarchy, the cgroupfs driver's in a v1 hierarchy). The
//! daemon must watch them within 2 s and attribute pod UID, container ID and tenant (the pod's
//! namespace), and `gprof top --pid` must read them, by host PID, exactly.

mod common;

use std::time::{Duration, Instant};

use common::container::{Cgroup, Container, cgroup1_root, cgroup2_root};
use common::daemon::{Daemon, label_value, pid_label, series_line};
use common::*;

struct Case {
    driver: &'static str,
    namespace: &'static str,
    pod: &'static str,
    uid: String,
    container_id: String,
    cgroup: Cgroup,
}

#[test]
fn containers_in_kubelet_cgroups_are_watched_and_attributed() {
    let test = "containers_in_kubelet_cgroups_are_watched_and_attributed";
    if !require_root(test) {
        return;
    }
    let Some(bin) = go_target(test, "workload", "1.27.3", "stripped") else {
        return;
    };
    let (Some(v2), Some(v1)) = (cgroup2_root(), cgroup1_root("pids")) else {
        skip(
            test,
            "needs the cgroup v2 hierarchy and the v1 pids hierarchy (a hybrid host)",
        );
        return;
    };
    if which("unshare").is_none() {
        skip(test, "unshare (util-linux) is needed");
        return;
    }
    let tag = std::process::id();
    let top = format!("gprof-test-{tag}");
    let uid = |n: u32| format!("{tag:08x}-{n:04x}-4000-8000-0000deadbeef");
    let cid = |n: u32| format!("{:064x}", u64::from(tag) << 8 | u64::from(n));
    let cases = [
        Case {
            driver: "systemd (cgroup v2)",
            namespace: "payments",
            pod: "api-7d4b9",
            uid: uid(1),
            container_id: cid(1),
            cgroup: Cgroup::create(
                &v2,
                &format!(
                    "{top}.slice/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{}.scope",
                    uid(1).replace('-', "_"),
                    cid(1)
                ),
            ),
        },
        Case {
            driver: "cgroupfs (cgroup v1)",
            namespace: "search",
            pod: "indexer-0",
            uid: uid(2),
            container_id: cid(2),
            cgroup: Cgroup::create(
                &v1,
                &format!("{top}/kubepods/besteffort/pod{}/{}", uid(2), cid(2)),
            ),
        },
    ];
    // The kubelet's pod directories map a pod UID to its namespace and name.
    let pods = std::env::temp_dir().join(format!("gprof-pods-{tag}"));
    for c in &cases {
        std::fs::create_dir_all(pods.join(format!("{}_{}_{}", c.namespace, c.pod, c.uid))).unwrap();
    }
    let daemon = Daemon::start(
        &format!(
            "interval: 1s\ndiscovery:\n  interval: 500ms\ntenants:\n  from: [namespace, env]\n  pods_dir: {}\n",
            pods.display()
        ),
        &[],
    );
    for c in &cases {
        // Claims another tenant in its environment: the namespace wins.
        let started = Instant::now();
        let ct = Container::start(
            &bin,
            &[
                "-churn-rate",
                "0",
                "-leak-rate",
                "0",
                "-parked",
                "25",
                "-report",
                "1s",
            ],
            &c.cgroup,
            &[("GPROF_TENANT", "billing")],
        );
        assert!(
            !ct.mount.join("app").exists(),
            "{test}: the binary must be visible only inside its mount namespace"
        );
        let pid = ct.host_pid;
        let watched = format!("watching pid={pid} ");
        assert!(
            wait_for(Duration::from_secs(5), || daemon.logged(&watched).is_some()),
            "{test} {}: not watched: {}",
            c.driver,
            daemon.log_text()
        );
        let after = daemon.logged(&watched).unwrap().duration_since(started);
        assert!(
            after <= Duration::from_secs(2),
            "{test} {}: watched after {after:?}",
            c.driver
        );
        let line = daemon
            .log_text()
            .lines()
            .find(|l| l.contains(&watched))
            .unwrap()
            .to_string();
        assert!(
            line.contains(&format!(
                "tenant={} pod={}/{}",
                c.namespace, c.namespace, c.pod
            )),
            "{test} {}: {line}",
            c.driver
        );
        // The metrics carry the pod UID, the container ID and the namespace as tenant.
        let mut series = None;
        assert!(wait_for(Duration::from_secs(5), || {
            series = series_line(&daemon.metrics(), "gprof_goroutines", &pid_label(pid))
                .map(str::to_string);
            series.is_some()
        }));
        let series = series.unwrap();
        assert_eq!(
            label_value(&series, "pod_uid").as_deref(),
            Some(c.uid.as_str()),
            "{series}"
        );
        assert_eq!(
            label_value(&series, "container_id").as_deref(),
            Some(c.container_id.as_str()),
            "{series}"
        );
        assert_eq!(
            label_value(&series, "tenant").as_deref(),
            Some(c.namespace),
            "{series}"
        );

        // gprof top by host PID reads it exactly: the live count is the program's own.
        let (ok, lines, err) = run_gprof(&[
            "top",
            "--batch",
            "--interval",
            "0.5",
            "--iterations",
            "3",
            "--pid",
            &pid.to_string(),
        ]);
        assert!(ok, "{test} {}: {err}", c.driver);
        let gprof_count = lines.last().expect("a sample")["goroutines"]
            .as_u64()
            .unwrap();
        let own = ct.process.snapshot();
        let own_count = own.last().expect("the program's report")["num_goroutine"]
            .as_u64()
            .unwrap();
        assert_eq!(
            gprof_count, own_count,
            "{test} {}: gprof {gprof_count}, runtime {own_count}",
            c.driver
        );
        println!(
            "{test} {}: pid {pid} watched after {:.2} s, pod {}/{} uid {}, container {}…, tenant {}, goroutines {gprof_count} (runtime {own_count})",
            c.driver,
            after.as_secs_f64(),
            c.namespace,
            c.pod,
            c.uid,
            &c.container_id[..12],
            c.namespace
        );
        drop(ct);
    }
    let _ = std::fs::remove_dir_all(&pods);
}
