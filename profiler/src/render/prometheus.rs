//! The daemon's snapshot in Prometheus text format (`prometheus` crate encoder). Names carry
//! the `gprof_` prefix and base units; every process series carries `tenant`, `pid`, `comm`,
//! `pod_uid` and `container_id` (empty when unknown), and disappears with its process.

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::{Encoder, TextEncoder};

use crate::model::snapshot::{DaemonSnapshot, ProcessRecord};

/// Upper bounds (ns) of the exported pause histogram: every second power of two from 1 µs
/// to 1 s, which the kernel's log2 buckets sum into exactly.
const PAUSE_BOUNDS_LOG2: &[u32] = &[10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30];
/// Groups of blocked goroutines exported per process (`gprof_goroutines_blocked`).
const TOP_GROUPS_EXPORTED: usize = 10;

/// The daemon's own resource use.
#[derive(Clone, Copy, Debug, Default)]
pub struct SelfUsage {
    pub cpu_seconds: f64,
    pub resident_bytes: f64,
}

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name(k.to_string());
            l.set_value(v.to_string());
            l
        })
        .collect()
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

fn gauge(l: Vec<LabelPair>, v: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(v);
    let mut m = Metric::from_label(l);
    m.set_gauge(g);
    m
}

fn counter(l: Vec<LabelPair>, v: f64) -> Metric {
    let mut c = Counter::default();
    c.set_value(v);
    let mut m = Metric::from_label(l);
    m.set_counter(c);
    m
}

fn process_labels(r: &ProcessRecord) -> Vec<LabelPair> {
    let pid = r.snapshot.pid.to_string();
    labels(&[
        ("tenant", &r.tenant),
        ("pid", &pid),
        ("comm", &r.snapshot.comm),
        ("pod_uid", r.pod_uid.as_deref().unwrap_or("")),
        ("container_id", r.container_id.as_deref().unwrap_or("")),
    ])
}

fn pause_histogram(r: &ProcessRecord) -> Metric {
    let s = &r.snapshot;
    let mut buckets = Vec::new();
    for &log2 in PAUSE_BOUNDS_LOG2 {
        let bound = (1u64 << log2) as f64 / 1e9;
        let cumulative: u64 = s
            .gc_pause_buckets
            .iter()
            .filter(|b| b.le_seconds <= bound)
            .map(|b| b.count)
            .sum();
        let mut b = Bucket::default();
        b.set_upper_bound(bound);
        b.set_cumulative_count(cumulative);
        buckets.push(b);
    }
    let mut h = Histogram::default();
    h.set_sample_count(s.gc_pauses_total);
    h.set_sample_sum(s.gc_pause_seconds_total);
    h.set_bucket(buckets);
    let mut m = Metric::from_label(process_labels(r));
    m.set_histogram(h);
    m
}

/// Renders everything; `version` goes into `gprof_build_info`.
pub fn render(snapshot: &DaemonSnapshot, version: &str, usage: SelfUsage) -> String {
    use MetricType::{COUNTER, GAUGE, HISTOGRAM};
    let procs = &snapshot.processes;
    let per_process =
        |f: &dyn Fn(&ProcessRecord) -> Option<f64>, kind: MetricType| -> Vec<Metric> {
            procs
                .iter()
                .filter_map(|r| {
                    let v = f(r)?;
                    Some(if kind == COUNTER {
                        counter(process_labels(r), v)
                    } else {
                        gauge(process_labels(r), v)
                    })
                })
                .collect()
        };
    let mut families = vec![
        family(
            "gprof_goroutines",
            "Live goroutines, as runtime.NumGoroutine() counts them.",
            GAUGE,
            per_process(&|r| Some(r.snapshot.goroutines as f64), GAUGE),
        ),
        family(
            "gprof_system_goroutines",
            "Runtime-internal goroutines (not in gprof_goroutines).",
            GAUGE,
            per_process(&|r| r.snapshot.system_goroutines.map(|v| v as f64), GAUGE),
        ),
        family(
            "gprof_goroutines_created_total",
            "Goroutines created since gprof attached.",
            COUNTER,
            per_process(
                &|r| Some(r.snapshot.goroutines_created_total as f64),
                COUNTER,
            ),
        ),
        family(
            "gprof_goroutines_exited_total",
            "Goroutines exited since gprof attached.",
            COUNTER,
            per_process(
                &|r| Some(r.snapshot.goroutines_exited_total as f64),
                COUNTER,
            ),
        ),
        family(
            "gprof_goroutine_leak_rate_per_minute",
            "Net growth of live goroutines per minute over the leak window (load steps move it too; see gprof_goroutine_confirmed_leak_rate_per_minute).",
            GAUGE,
            per_process(&|r| Some(r.snapshot.goroutine_leak_rate_per_min), GAUGE),
        ),
        family(
            "gprof_goroutines_stuck",
            "Goroutines blocked at one place for leaks.stuck_after or longer (system ones aside).",
            GAUGE,
            per_process(&|r| Some(r.snapshot.stuck_goroutines as f64), GAUGE),
        ),
        family(
            "gprof_goroutines_leaking",
            "Stuck goroutines of the groups the leak verdict calls leaking.",
            GAUGE,
            per_process(&|r| Some(r.snapshot.leaking_goroutines as f64), GAUGE),
        ),
        family(
            "gprof_goroutine_confirmed_leak_rate_per_minute",
            "Growth per minute of the stuck goroutines of the groups called leaking: the leak verdict's rate.",
            GAUGE,
            per_process(&|r| Some(r.snapshot.confirmed_leak_rate_per_min), GAUGE),
        ),
        family(
            "gprof_gfree_pool_size",
            "Exited goroutines the runtime keeps for reuse (free-G lists).",
            GAUGE,
            per_process(&|r| r.snapshot.gfree_pool_size.map(|v| v as f64), GAUGE),
        ),
        family(
            "gprof_gc_cycles_total",
            "Completed GC cycles since gprof attached.",
            COUNTER,
            per_process(&|r| Some(r.snapshot.gc_cycles_total as f64), COUNTER),
        ),
        family(
            "gprof_gc_pause_seconds",
            "GC stop-the-world pauses since gprof attached.",
            HISTOGRAM,
            procs.iter().map(pause_histogram).collect(),
        ),
        family(
            "gprof_gc_pause_p99_seconds",
            "p99 of the GC pauses within the pause window.",
            GAUGE,
            per_process(&|r| Some(r.snapshot.gc_pause_p99_seconds), GAUGE),
        ),
        family(
            "gprof_gc_pause_max_seconds",
            "Longest GC pause since gprof attached.",
            GAUGE,
            per_process(&|r| Some(r.snapshot.gc_pause_max_seconds), GAUGE),
        ),
        family(
            "gprof_stack_scanned_bytes",
            "Stack memory of the live goroutines the last GC cycle scanned.",
            GAUGE,
            per_process(&|r| r.snapshot.last_gc_stack_bytes.map(|v| v as f64), GAUGE),
        ),
        family(
            "gprof_stacks_scanned",
            "Live goroutine stacks the last GC cycle scanned (system goroutines included).",
            GAUGE,
            per_process(
                &|r| r.snapshot.last_gc_stacks_scanned.map(|v| v as f64),
                GAUGE,
            ),
        ),
        family(
            "gprof_probe_hits_total",
            "Probe hits in the process counted by the kernel since gprof attached.",
            COUNTER,
            per_process(&|r| Some(r.snapshot.probe_hits_total as f64), COUNTER),
        ),
        family(
            "gprof_hot_probes_duty",
            "Share of time the creation, exit and stack-scan probes are attached (below 1 when the overhead budget samples them).",
            GAUGE,
            per_process(&|r| Some(r.snapshot.hot_probes_duty), GAUGE),
        ),
        family(
            "gprof_health_score",
            "Health score of the process, 0 (bad) to 100.",
            GAUGE,
            per_process(&|r| Some(r.snapshot.health_score), GAUGE),
        ),
        family(
            "gprof_census_age_seconds",
            "Age of the goroutine census behind the blocked groups, sites and stacks (the leak verdict lags by as much).",
            GAUGE,
            per_process(&|r| r.snapshot.census.and_then(|c| c.age_seconds), GAUGE),
        ),
        family(
            "gprof_census_cpu_seconds_total",
            "CPU time gprof spent on the process's goroutine censuses.",
            COUNTER,
            per_process(&|r| r.snapshot.census.map(|c| c.cpu_seconds_total), COUNTER),
        ),
        family(
            "gprof_census_tracked_goroutines",
            "Blocked goroutines of the process followed one by one.",
            GAUGE,
            per_process(
                &|r| r.snapshot.census.map(|c| c.tracked_goroutines as f64),
                GAUGE,
            ),
        ),
        family(
            "gprof_census_sample_ratio",
            "Share of the process's blocked goroutines followed one by one (below 1 under the census memory limit: blocked and stuck counts are then estimates).",
            GAUGE,
            per_process(&|r| r.snapshot.census.map(|c| c.sample_fraction), GAUGE),
        ),
        family(
            "gprof_kernel_records_throttled_total",
            "GC pause and cycle records of the process dropped beyond its share per second (totals stay exact).",
            COUNTER,
            per_process(
                &|r| Some(r.snapshot.kernel_records_throttled_total as f64),
                COUNTER,
            ),
        ),
        family(
            "gprof_kernel_sites_refused_total",
            "Creations and exits of the process counted under its \"other\" site beyond its quota of kernel site entries.",
            COUNTER,
            per_process(
                &|r| Some(r.snapshot.kernel_sites_refused_total as f64),
                COUNTER,
            ),
        ),
    ];
    // Creation sites: the top ones of each process only, so the series stay bounded.
    let per_site = |f: &dyn Fn(&crate::model::snapshot::SiteSnapshot) -> f64| -> Vec<Metric> {
        procs
            .iter()
            .flat_map(|r| {
                r.snapshot.top_leak_sites.iter().map(move |s| {
                    let mut l = process_labels(r);
                    let line = s.line.to_string();
                    l.extend(labels(&[
                        ("site", &s.site),
                        ("function", &s.function),
                        ("file", &s.file),
                        ("line", &line),
                        ("started", &s.started),
                    ]));
                    gauge(l, f(s))
                })
            })
            .collect()
    };
    families.push(family(
        "gprof_goroutines_by_site",
        "Live goroutines by creation site (the go statement), for each process's top sites.",
        GAUGE,
        per_site(&|s| s.goroutines as f64),
    ));
    families.push(family(
        "gprof_goroutine_site_growth_per_minute",
        "Net growth of a creation site's live goroutines per minute over the leak window.",
        GAUGE,
        per_site(&|s| s.growth_per_min),
    ));
    families.push(family(
        "gprof_goroutine_site_leak_suspect",
        "1 when the site's live goroutines grow steadily (a leak suspect).",
        GAUGE,
        per_site(&|s| f64::from(u8::from(s.suspect))),
    ));
    // Groups of blocked goroutines: the top ones of each process only.
    let per_group = |f: &dyn Fn(&crate::model::snapshot::BlockedGroup) -> f64| -> Vec<Metric> {
        procs
            .iter()
            .flat_map(|r| {
                r.snapshot
                    .blocked_groups
                    .iter()
                    .take(TOP_GROUPS_EXPORTED)
                    .map(move |g| {
                        let mut l = process_labels(r);
                        l.extend(labels(&[
                            ("created_at", &g.created_at),
                            ("started", &g.started),
                            ("blocked_at", &g.blocked_at),
                            ("wait_reason", &g.wait_reason),
                        ]));
                        gauge(l, f(g))
                    })
            })
            .collect()
    };
    families.push(family(
        "gprof_goroutines_blocked",
        "Blocked goroutines by creation site, place they wait at and wait reason (each process's top groups).",
        GAUGE,
        per_group(&|g| g.goroutines as f64),
    ));
    families.push(family(
        "gprof_goroutines_blocked_stuck",
        "Stuck goroutines of a group of blocked goroutines (each process's top groups).",
        GAUGE,
        per_group(&|g| g.stuck as f64),
    ));
    families.push(family(
        "gprof_goroutine_group_leaking",
        "1 when the leak verdict calls the group leaking (each process's top groups).",
        GAUGE,
        per_group(&|g| f64::from(u8::from(g.leaking))),
    ));
    fn stacks(
        f: fn(&crate::model::snapshot::StackSnapshot) -> f64,
    ) -> impl Fn(&ProcessRecord) -> Option<f64> {
        move |r| r.snapshot.goroutine_stacks.as_ref().map(f)
    }
    families.extend([
        family(
            "gprof_goroutine_stack_bytes",
            "Stack memory held by live goroutines (system ones included).",
            GAUGE,
            per_process(&stacks(|k| k.live_stack_bytes as f64), GAUGE),
        ),
        family(
            "gprof_dead_goroutine_stack_bytes",
            "Stack memory still held by dead gs (the free-G pool) although nothing runs on it.",
            GAUGE,
            per_process(&stacks(|k| k.dead_stack_bytes as f64), GAUGE),
        ),
        family(
            "gprof_dead_goroutines_with_stack",
            "Dead gs (the free-G pool) that still hold a stack.",
            GAUGE,
            per_process(&stacks(|k| k.dead_gs_with_stack as f64), GAUGE),
        ),
        family(
            "gprof_stack_growths_total",
            "Goroutine stack growths (copies to a larger stack) since gprof attached.",
            COUNTER,
            per_process(&stacks(|k| k.stack_growths_total as f64), COUNTER),
        ),
    ]);
    let tenant_family =
        |name: &str, help: &str, f: &dyn Fn(&crate::model::snapshot::TenantSnapshot) -> f64| {
            family(
                name,
                help,
                GAUGE,
                snapshot
                    .tenants
                    .iter()
                    .map(|t| gauge(labels(&[("tenant", &t.tenant)]), f(t)))
                    .collect(),
            )
        };
    families.push(tenant_family(
        "gprof_tenant_health_score",
        "Health score of the tenant: that of its worst process.",
        &|t| t.health_score,
    ));
    families.push(tenant_family(
        "gprof_tenant_processes",
        "Watched processes of the tenant.",
        &|t| t.processes as f64,
    ));
    families.push(tenant_family(
        "gprof_tenant_goroutines",
        "Live goroutines of the tenant's processes.",
        &|t| t.goroutines as f64,
    ));
    families.push(tenant_family(
        "gprof_tenant_goroutine_leak_rate_per_minute",
        "Sum of the net growth of the tenant's processes' live goroutines per minute.",
        &|t| t.goroutine_leak_rate_per_min,
    ));
    families.push(tenant_family(
        "gprof_tenant_goroutines_stuck",
        "Stuck goroutines of the tenant's processes.",
        &|t| t.stuck_goroutines as f64,
    ));
    families.push(tenant_family(
        "gprof_tenant_goroutines_leaking",
        "Stuck goroutines of the tenant's groups called leaking.",
        &|t| t.leaking_goroutines as f64,
    ));
    families.push(tenant_family(
        "gprof_tenant_goroutine_confirmed_leak_rate_per_minute",
        "Sum of the confirmed leak rates of the tenant's processes.",
        &|t| t.confirmed_leak_rate_per_min,
    ));
    let mut firing: std::collections::BTreeMap<(String, String, String), f64> = Default::default();
    for a in &snapshot.alerts {
        *firing
            .entry((
                a.tenant().to_string(),
                a.alertname().to_string(),
                a.severity().to_string(),
            ))
            .or_default() += 1.0;
    }
    families.push(family(
        "gprof_alerts_firing",
        "Alerts firing now.",
        GAUGE,
        firing
            .iter()
            .map(|((t, n, s), v)| {
                gauge(
                    labels(&[("tenant", t), ("alertname", n), ("severity", s)]),
                    *v,
                )
            })
            .collect(),
    ));
    let st = &snapshot.stats;
    families.extend([
        family(
            "gprof_build_info",
            "gprof's version.",
            GAUGE,
            vec![gauge(labels(&[("version", version)]), 1.0)],
        ),
        family(
            "gprof_snapshot_timestamp_seconds",
            "When the figures served here were sampled (seconds since the epoch).",
            GAUGE,
            vec![gauge(vec![], snapshot.unix)],
        ),
        family(
            "gprof_watched_processes",
            "Go processes being watched.",
            GAUGE,
            vec![gauge(vec![], procs.len() as f64)],
        ),
        family(
            "gprof_attached_executables",
            "Executable files with probes attached.",
            GAUGE,
            vec![gauge(vec![], st.attached_executables as f64)],
        ),
        family(
            "gprof_kernel_filter_entries",
            "Processes in the kernel's filter map (equals gprof_watched_processes).",
            GAUGE,
            vec![gauge(vec![], st.kernel_filter_entries as f64)],
        ),
        family(
            "gprof_kernel_site_entries",
            "Creation sites in the kernel's site map (of watched processes only).",
            GAUGE,
            vec![gauge(vec![], st.kernel_site_entries as f64)],
        ),
        family(
            "gprof_attach_failures_total",
            "Go processes gprof could not attach to.",
            COUNTER,
            vec![counter(vec![], st.attach_failures_total as f64)],
        ),
        family(
            "gprof_unwatched_processes",
            "Go processes gprof is not watching, by reason (each executable is also logged once).",
            GAUGE,
            st.unwatched_processes
                .iter()
                .map(|(reason, n)| gauge(labels(&[("reason", reason)]), *n as f64))
                .collect(),
        ),
        family(
            "gprof_sample_errors_total",
            "Samples of watched processes that failed, by reason (each process is sampled again, backing off, until it reads again or exits).",
            COUNTER,
            st.sample_errors_total
                .iter()
                .map(|(reason, n)| counter(labels(&[("reason", reason)]), *n as f64))
                .collect(),
        ),
        family(
            "gprof_census_errors_total",
            "Goroutine censuses that could not run or failed midway (stuck goroutines and leak verdicts wait for the next one).",
            COUNTER,
            vec![counter(vec![], st.census_errors_total as f64)],
        ),
        family(
            "gprof_daemon_round_seconds",
            "Wall time of the last sampling round (every process sampled, the round's census work).",
            GAUGE,
            vec![gauge(vec![], st.round_seconds)],
        ),
        family(
            "gprof_daemon_round_late_seconds",
            "How late the last sampling round began against its schedule.",
            GAUGE,
            vec![gauge(vec![], st.round_late_seconds)],
        ),
        family(
            "gprof_census_tracked_goroutines_limit",
            "The most blocked goroutines the census memory limit lets gprof follow one by one, over all processes (past it, samples: see gprof_census_sample_ratio).",
            GAUGE,
            vec![gauge(vec![], st.census_tracked_limit as f64)],
        ),
        family(
            "gprof_kernel_events_throttled_total",
            "Kernel records dropped because their process streamed more than its share per second.",
            COUNTER,
            vec![counter(vec![], st.kernel_losses.events_throttled as f64)],
        ),
        family(
            "gprof_kernel_site_quota_refused_total",
            "Goroutine creations and exits counted under a process's \"other\" site because it held its quota of kernel site entries.",
            COUNTER,
            vec![counter(vec![], st.kernel_losses.sites_over_quota as f64)],
        ),
        family(
            "gprof_kernel_events_dropped_total",
            "Kernel records (GC pauses, stack events) dropped because the ring buffer was full.",
            COUNTER,
            vec![counter(vec![], st.kernel_losses.events_dropped as f64)],
        ),
        family(
            "gprof_kernel_site_map_full_total",
            "Goroutine creations and exits counted under a process's \"other\" site because the kernel's site map was full.",
            COUNTER,
            vec![counter(vec![], st.kernel_losses.sites_full as f64)],
        ),
        family(
            "gprof_kernel_site_counts_lost_total",
            "Goroutine creations and exits not counted per site at all (the site map was full, even for \"other\").",
            COUNTER,
            vec![counter(vec![], st.kernel_losses.site_counts_lost as f64)],
        ),
        family(
            "gprof_alert_notifications_failed_total",
            "Failed deliveries to Alertmanager (each is retried).",
            COUNTER,
            vec![counter(vec![], st.alert_notifications_failed_total as f64)],
        ),
        family(
            "gprof_alert_notifications_dropped_total",
            "Alert updates dropped because the delivery queue was full.",
            COUNTER,
            vec![counter(vec![], st.alert_notifications_dropped_total as f64)],
        ),
        family(
            "gprof_daemon_cpu_seconds_total",
            "CPU time used by the gprof daemon.",
            COUNTER,
            vec![counter(vec![], usage.cpu_seconds)],
        ),
        family(
            "gprof_daemon_resident_memory_bytes",
            "Resident memory of the gprof daemon.",
            GAUGE,
            vec![gauge(vec![], usage.resident_bytes)],
        ),
    ]);
    // Empty families are not written (a family needs at least one sample).
    families.retain(|f| !f.get_metric().is_empty());
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
        log::error!("encoding metrics: {e}");
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::snapshot::{ProcessSnapshot, TenantSnapshot};

    fn record(pid: u32, tenant: &str) -> ProcessRecord {
        ProcessRecord {
            start_time: 1,
            tenant: tenant.into(),
            pod_uid: Some("1c2d3e4f-aaaa-bbbb-cccc-0123456789ab".into()),
            container_id: None,
            snapshot: ProcessSnapshot {
                pid,
                goroutine_leak_rate_per_min: 2400.0,
                gc_pause_seconds_total: 0.0002,
                last_gc_stack_bytes: Some(1505 * 2048),
                ..crate::model::snapshot::example()
            },
        }
    }

    #[test]
    fn exposition_has_the_documented_series() {
        let r = record(42, "insure-prod");
        let snapshot = DaemonSnapshot {
            tenants: vec![TenantSnapshot::aggregate("insure-prod", &[&r])],
            processes: vec![r],
            ..Default::default()
        };
        let text = render(&snapshot, "0.1.0", SelfUsage::default());
        let labels = r#"tenant="insure-prod",pid="42",comm="svc",pod_uid="1c2d3e4f-aaaa-bbbb-cccc-0123456789ab",container_id="""#;
        for line in [
            format!("gprof_goroutines{{{labels}}} 1500"),
            format!("gprof_goroutines_created_total{{{labels}}} 4000"),
            format!("gprof_goroutines_exited_total{{{labels}}} 2500"),
            format!("gprof_goroutine_leak_rate_per_minute{{{labels}}} 2400"),
            format!("gprof_gfree_pool_size{{{labels}}} 40"),
            format!("gprof_gc_cycles_total{{{labels}}} 2"),
            format!("gprof_stack_scanned_bytes{{{labels}}} 3082240"),
            format!("gprof_gc_pause_seconds_bucket{{{labels},le=\"0.000016384\"}} 0"),
            format!("gprof_gc_pause_seconds_bucket{{{labels},le=\"0.000065536\"}} 3"),
            format!("gprof_gc_pause_seconds_bucket{{{labels},le=\"0.000262144\"}} 4"),
            format!("gprof_gc_pause_seconds_bucket{{{labels},le=\"+Inf\"}} 4"),
            format!("gprof_gc_pause_seconds_count{{{labels}}} 4"),
            "gprof_tenant_health_score{tenant=\"insure-prod\"} 60".to_string(),
            format!("gprof_goroutines_stuck{{{labels}}} 1200"),
            format!("gprof_goroutine_confirmed_leak_rate_per_minute{{{labels}}} 1200"),
            format!(
                "gprof_goroutines_blocked{{{labels},created_at=\"main.serve (/src/app/main.go:42)\",started=\"main.serve.func1\",blocked_at=\"main.serve.func1 (/src/app/main.go:47)\",wait_reason=\"chan send\"}} 1420"
            ),
            "gprof_tenant_goroutines_stuck{tenant=\"insure-prod\"} 1200".to_string(),
            "gprof_tenant_goroutine_confirmed_leak_rate_per_minute{tenant=\"insure-prod\"} 1200"
                .to_string(),
            "gprof_build_info{version=\"0.1.0\"} 1".to_string(),
            "# TYPE gprof_gc_pause_seconds histogram".to_string(),
            "# TYPE gprof_goroutines_created_total counter".to_string(),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("\ngo_"), "never bare go_* names");
    }

    #[test]
    fn an_exited_process_leaves_no_series() {
        let text = render(&DaemonSnapshot::default(), "0.1.0", SelfUsage::default());
        assert!(!text.contains("pid="), "{text}");
        assert!(text.contains("gprof_watched_processes 0"));
    }
}
