//! The target survives attach, a minute of probing and detach with its own output unchanged,
//! and its code is restored byte for byte when gprof leaves.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use profiler::inspect::binary::GoBinary;
use profiler::inspect::plan;

const TASKS: &str = "150000";

fn workload(bin: &std::path::Path) -> Spawned {
    // Deep recursion in every short-lived goroutine makes stacks grow (morestack, copystack)
    // while probes fire; the checksum depends on every goroutine's result.
    Spawned::start(Command::new(bin).args([
        "-tasks",
        TASKS,
        "-churn-rate",
        "2000",
        "-leak-rate",
        "2",
        "-gc-every",
        "1s",
        "-depth",
        "40",
        "-report",
        "0",
    ]))
}

fn survives(test: &str, release: &str, variant: &str) {
    if !require_root(test) {
        return;
    }
    let Some(bin) = go_target(test, "workload", release, variant) else {
        return;
    };
    let binary = GoBinary::open(&bin).unwrap();
    let plan = plan::plan(&binary).unwrap();
    let sites: Vec<u64> = plan
        .probes
        .iter()
        .flat_map(|p| p.sites.iter().map(|s| s.addr))
        .collect();
    let original: Vec<u8> = sites
        .iter()
        .map(|&a| binary.bytes_at(a, 1).unwrap()[0])
        .collect();

    let reference = workload(&bin);
    let probed = workload(&bin);
    let pid = probed.pid();
    assert!(wait_go_started(pid), "{test}: the workload did not start");
    let gprof = Spawned::start(Command::new(gprof()).args([
        "top",
        "--batch",
        "--interval",
        "1",
        "--iterations",
        "60",
        // Every probe attached all the time: the point is each site's safety (windows of
        // the budget are exercised by the lifecycle tests).
        "--budget",
        "off",
        "--pid",
        &pid.to_string(),
    ]));
    assert!(
        wait_for(Duration::from_secs(10), || gprof.snapshot().len() >= 3),
        "{test}: gprof produced nothing"
    );
    assert!(
        code_bytes(pid, &sites).iter().all(|&b| b == 0xcc),
        "{test}: probes not installed at {sites:x?}"
    );
    let (ok, samples, err) = gprof.finish();
    assert!(ok, "{test}: gprof failed: {err}");
    assert_eq!(samples.len(), 60, "{test}: {err}");
    assert_eq!(
        code_bytes(pid, &sites),
        original,
        "{test}: code not restored after detach"
    );

    let (ok_ref, out_ref, err_ref) = reference.finish();
    let (ok_probed, out_probed, err_probed) = probed.finish();
    assert!(ok_ref, "{test}: reference run failed: {err_ref}");
    assert!(ok_probed, "{test}: probed run failed: {err_probed}");
    assert_eq!(out_probed, out_ref, "{test}: output changed under probing");
    assert_eq!(
        out_ref.last().unwrap()["finished"],
        TASKS.parse::<u64>().unwrap()
    );
    let created = samples.last().unwrap()["goroutines_created_total"]
        .as_u64()
        .unwrap();
    assert!(
        created > 100_000,
        "{test}: only {created} creations seen in a minute"
    );
    eprintln!(
        "{test}: survived 60 s of probing ({created} creations seen), output identical, code restored"
    );
}

#[test]
fn go119_survives_a_minute_of_probing() {
    survives("go119_survives_a_minute_of_probing", "1.19", "plain");
}

#[test]
fn go127_stripped_survives_a_minute_of_probing() {
    survives(
        "go127_stripped_survives_a_minute_of_probing",
        "1.27.3",
        "stripped",
    );
}
