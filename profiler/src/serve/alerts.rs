//! Threshold alerts: each configured threshold is evaluated per tenant (or per process) every
//! interval; a level must hold for `for` before its alert fires (pending, then firing), and the
//! alert resolves when no level holds any more or its subject goes away. One alert per
//! threshold and subject fires at a time, at the highest level that has held long enough.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use crate::config::{Metric, Threshold, ThresholdScope};
use crate::inspect::process::ProcessId;
use crate::model::alert::{Alert, GroupPlace, Severity, rfc3339, round};
use crate::model::snapshot::{DaemonSnapshot, ProcessRecord, TenantSnapshot};

/// What one threshold is evaluated on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Subject {
    Tenant(String),
    Process(ProcessId),
}

/// Since when a level's condition has held.
#[derive(Clone, Copy, Debug, Default)]
struct Hold {
    since: Option<Instant>,
}

impl Hold {
    fn update(&mut self, holds: bool, now: Instant) -> Option<Duration> {
        if holds {
            Some(now - *self.since.get_or_insert(now))
        } else {
            self.since = None;
            None
        }
    }
}

#[derive(Debug, Default)]
struct Track {
    warning: Hold,
    critical: Hold,
    firing: Option<Alert>,
}

/// Alerts that changed in one evaluation.
#[derive(Debug, Default)]
pub struct Changes {
    pub fired: Vec<Alert>,
    pub resolved: Vec<Alert>,
}

pub struct AlertEngine {
    rules: Vec<Threshold>,
    tracks: HashMap<(usize, Subject), Track>,
    /// Extra labels on every alert (e.g. the node).
    common: BTreeMap<String, String>,
}

/// A value of `metric` for one subject, with the labels that subject brings.
struct Observation {
    subject: Subject,
    value: f64,
    labels: BTreeMap<String, String>,
    worst_pid: Option<u32>,
    site: Option<String>,
    group: Option<GroupPlace>,
}

fn tenant_value(metric: Metric, t: &TenantSnapshot) -> f64 {
    match metric {
        Metric::GoroutineLeakRatePerMin => t.goroutine_leak_rate_per_min,
        Metric::GcPauseP99Seconds => t.gc_pause_p99_seconds,
        Metric::GcPauseMaxSeconds => t.gc_pause_max_seconds,
        Metric::GfreePoolSize => t.gfree_pool_size as f64,
        Metric::Goroutines => t.goroutines as f64,
        Metric::HealthScore => t.health_score,
        Metric::ConfirmedLeakRatePerMin => t.confirmed_leak_rate_per_min,
        Metric::StuckGoroutines => t.stuck_goroutines as f64,
        // Per site, from the processes: see `observations`.
        Metric::SiteGoroutineGrowthPerMin => 0.0,
    }
}

/// The group that sets a stuck-goroutine metric of a process: the fastest leaking group for
/// the confirmed leak rate, the group with the most stuck goroutines for the stuck count.
fn worst_group(metric: Metric, r: &ProcessRecord) -> Option<(f64, GroupPlace)> {
    let groups = r.snapshot.blocked_groups.iter();
    let g = match metric {
        Metric::ConfirmedLeakRatePerMin => groups
            .filter(|g| g.leaking)
            .max_by(|a, b| a.stuck_growth_per_min.total_cmp(&b.stuck_growth_per_min)),
        Metric::StuckGoroutines => groups.filter(|g| g.stuck > 0).max_by_key(|g| g.stuck),
        _ => None,
    }?;
    let weight = match metric {
        Metric::ConfirmedLeakRatePerMin => g.stuck_growth_per_min,
        _ => g.stuck as f64,
    };
    Some((
        weight,
        GroupPlace {
            created_at: g.created_at.clone(),
            blocked_at: g.blocked_at.clone(),
            wait_reason: g.wait_reason.clone(),
        },
    ))
}

/// A process's fastest-growing leak suspect: (growth per minute, site); 0 without one.
fn worst_site(r: &ProcessRecord) -> (f64, Option<String>) {
    r.snapshot
        .top_leak_sites
        .iter()
        .filter(|s| s.suspect)
        .max_by(|a, b| a.growth_per_min.total_cmp(&b.growth_per_min))
        .map_or((0.0, None), |s| (s.growth_per_min, Some(s.site.clone())))
}

fn process_value(metric: Metric, r: &ProcessRecord) -> Option<f64> {
    let s = &r.snapshot;
    Some(match metric {
        Metric::GoroutineLeakRatePerMin => s.goroutine_leak_rate_per_min,
        Metric::GcPauseP99Seconds => s.gc_pause_p99_seconds,
        Metric::GcPauseMaxSeconds => s.gc_pause_max_seconds,
        Metric::GfreePoolSize => s.gfree_pool_size? as f64,
        Metric::Goroutines => s.goroutines as f64,
        Metric::HealthScore => s.health_score,
        Metric::ConfirmedLeakRatePerMin => s.confirmed_leak_rate_per_min,
        Metric::StuckGoroutines => s.stuck_goroutines as f64,
        Metric::SiteGoroutineGrowthPerMin => worst_site(r).0,
    })
}

impl AlertEngine {
    pub fn new(rules: Vec<Threshold>, common: BTreeMap<String, String>) -> Self {
        Self {
            rules,
            tracks: HashMap::new(),
            common,
        }
    }

    fn observations(rule: &Threshold, snapshot: &DaemonSnapshot) -> Vec<Observation> {
        match rule.scope {
            ThresholdScope::Tenant => snapshot
                .tenants
                .iter()
                .map(|t| {
                    let mut obs = Observation {
                        subject: Subject::Tenant(t.tenant.clone()),
                        value: tenant_value(rule.metric, t),
                        labels: BTreeMap::from([("tenant".to_string(), t.tenant.clone())]),
                        worst_pid: Some(t.worst_pid),
                        site: None,
                        group: None,
                    };
                    // The tenant's worst group, in whichever of its processes.
                    if let Some(((_, group), pid)) = snapshot
                        .processes
                        .iter()
                        .filter(|r| r.tenant == t.tenant)
                        .filter_map(|r| Some((worst_group(rule.metric, r)?, r.snapshot.pid)))
                        .max_by(|a, b| a.0.0.total_cmp(&b.0.0))
                    {
                        obs.group = Some(group);
                        obs.worst_pid = Some(pid);
                    }
                    if rule.metric == Metric::SiteGoroutineGrowthPerMin {
                        // The tenant's worst site, in whichever of its processes.
                        let worst = snapshot
                            .processes
                            .iter()
                            .filter(|r| r.tenant == t.tenant)
                            .map(|r| (worst_site(r), r.snapshot.pid))
                            .max_by(|a, b| a.0.0.total_cmp(&b.0.0));
                        if let Some(((growth, site), pid)) = worst {
                            obs.value = growth;
                            obs.site = site;
                            obs.worst_pid = Some(pid);
                        }
                    }
                    obs
                })
                .collect(),
            ThresholdScope::Process => snapshot
                .processes
                .iter()
                .filter_map(|r| {
                    let mut labels = BTreeMap::from([
                        ("tenant".to_string(), r.tenant.clone()),
                        ("pid".to_string(), r.snapshot.pid.to_string()),
                        ("comm".to_string(), r.snapshot.comm.clone()),
                    ]);
                    if let Some(p) = &r.pod_uid {
                        labels.insert("pod_uid".into(), p.clone());
                    }
                    if let Some(c) = &r.container_id {
                        labels.insert("container_id".into(), c.clone());
                    }
                    Some(Observation {
                        subject: Subject::Process(ProcessId {
                            pid: r.snapshot.pid,
                            start_time: r.start_time,
                        }),
                        value: process_value(rule.metric, r)?,
                        labels,
                        worst_pid: None,
                        site: (rule.metric == Metric::SiteGoroutineGrowthPerMin)
                            .then(|| worst_site(r).1)
                            .flatten(),
                        group: worst_group(rule.metric, r).map(|(_, g)| g),
                    })
                })
                .collect(),
        }
    }

    /// Evaluates every threshold on a snapshot; returns what fired and what resolved.
    pub fn evaluate(
        &mut self,
        snapshot: &DaemonSnapshot,
        now: Instant,
        wall: SystemTime,
    ) -> Changes {
        let mut changes = Changes::default();
        let mut present = std::collections::HashSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            for obs in Self::observations(rule, snapshot) {
                let key = (i, obs.subject.clone());
                present.insert(key.clone());
                let track = self.tracks.entry(key).or_default();
                let crosses = |limit: Option<f64>| {
                    limit.is_some_and(|l| {
                        if rule.metric.alerts_below() {
                            obs.value <= l
                        } else {
                            obs.value >= l
                        }
                    })
                };
                let held = |d: Option<Duration>| d.is_some_and(|d| d >= rule.hold);
                let warning_held = held(track.warning.update(crosses(rule.warning), now));
                let critical_held = held(track.critical.update(crosses(rule.critical), now));
                let level = if critical_held {
                    Some((Severity::Critical, rule.critical))
                } else if warning_held {
                    Some((Severity::Warning, rule.warning))
                } else {
                    None
                };
                let current = track.firing.as_ref().map(|a| a.severity().to_string());
                match (level, &mut track.firing) {
                    (Some((sev, _)), Some(alert)) if current.as_deref() == Some(sev.name()) => {
                        alert.value = obs.value;
                        alert.worst_pid = obs.worst_pid;
                        alert.site = obs.site;
                        alert.group = obs.group;
                    }
                    (level, firing) => {
                        if let Some(mut old) = firing.take() {
                            old.value = obs.value;
                            old.resolved_at = Some(wall);
                            changes.resolved.push(old);
                        }
                        if let Some((sev, limit)) = level {
                            let mut labels = self.common.clone();
                            labels.extend(obs.labels);
                            labels.insert("alertname".into(), rule.alertname.clone());
                            labels.insert("severity".into(), sev.name().into());
                            let alert = Alert {
                                labels,
                                metric: rule.metric.name(),
                                value: obs.value,
                                threshold: limit.unwrap_or_default(),
                                hold_seconds: rule.hold.as_secs_f64(),
                                since: wall,
                                resolved_at: None,
                                worst_pid: obs.worst_pid,
                                site: obs.site,
                                group: obs.group,
                            };
                            changes.fired.push(alert.clone());
                            *firing = Some(alert);
                        }
                    }
                }
            }
        }
        // Subjects that went away (a process exited, a tenant lost its last process).
        let gone: Vec<_> = self
            .tracks
            .keys()
            .filter(|k| !present.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(Track {
                firing: Some(mut alert),
                ..
            }) = self.tracks.remove(&key)
            {
                alert.resolved_at = Some(wall);
                changes.resolved.push(alert);
            }
        }
        for a in changes.resolved.iter().chain(&changes.fired) {
            log::info!("{}", a.log_line());
        }
        changes
    }

    /// The alerts firing now.
    pub fn firing(&self) -> Vec<Alert> {
        let mut v: Vec<Alert> = self
            .tracks
            .values()
            .filter_map(|t| t.firing.clone())
            .collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        v
    }
}

/// Alertmanager API v2 (`POST /api/v2/alerts`) body for a set of alerts. Firing alerts get an
/// `endsAt` of `expiry` from now, so that Alertmanager resolves them if gprof stops re-sending.
pub fn alertmanager_body(
    alerts: &[Alert],
    now: SystemTime,
    expiry: Duration,
    generator: &str,
) -> String {
    let items: Vec<serde_json::Value> = alerts
        .iter()
        .map(|a| {
            let mut annotations = serde_json::Map::new();
            annotations.insert("summary".into(), a.summary().into());
            annotations.insert("value".into(), round(a.value).into());
            annotations.insert("threshold".into(), round(a.threshold).into());
            if let Some(pid) = a.worst_pid {
                annotations.insert("worst_pid".into(), pid.to_string().into());
            }
            if let Some(site) = &a.site {
                annotations.insert("site".into(), site.clone().into());
            }
            if let Some(g) = &a.group {
                annotations.insert("created_at".into(), g.created_at.clone().into());
                annotations.insert("blocked_at".into(), g.blocked_at.clone().into());
                annotations.insert("wait_reason".into(), g.wait_reason.clone().into());
            }
            serde_json::json!({
                "labels": a.labels,
                "annotations": annotations,
                "startsAt": rfc3339(a.since),
                "endsAt": rfc3339(a.resolved_at.unwrap_or(now + expiry)),
                "generatorURL": generator,
            })
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::model::snapshot::{ProcessSnapshot, TenantSnapshot};
    use std::time::UNIX_EPOCH;

    fn tenant(name: &str, leak: f64) -> TenantSnapshot {
        TenantSnapshot {
            tenant: name.into(),
            processes: 1,
            goroutines: 100,
            goroutine_leak_rate_per_min: leak,
            stuck_goroutines: 0,
            leaking_goroutines: 0,
            confirmed_leak_rate_per_min: 0.0,
            gfree_pool_size: 0,
            gc_pause_p99_seconds: 0.0,
            gc_pause_max_seconds: 0.0,
            health_score: 100.0,
            worst_pid: 7,
        }
    }

    fn engine() -> AlertEngine {
        let c = Config::parse(
            "t",
            "thresholds:\n  - metric: goroutine_leak_rate_per_min\n    warning: 600\n    critical: 1200\n    for: 10s\n",
        )
        .unwrap();
        AlertEngine::new(
            c.thresholds,
            BTreeMap::from([("node".to_string(), "n1".to_string())]),
        )
    }

    fn snap(tenants: Vec<TenantSnapshot>) -> DaemonSnapshot {
        DaemonSnapshot {
            tenants,
            ..Default::default()
        }
    }

    #[test]
    fn pending_then_firing_then_resolved() {
        let mut e = engine();
        let t0 = Instant::now();
        let w0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = |s: u64| (t0 + Duration::from_secs(s), w0 + Duration::from_secs(s));
        // Leaking 2400/min from t=0: pending for 10 s, then one critical alert.
        for s in [0, 2, 4, 6, 8] {
            let (t, w) = at(s);
            let c = e.evaluate(
                &snap(vec![tenant("insure-prod", 2400.0), tenant("billing", 0.0)]),
                t,
                w,
            );
            assert!(
                c.fired.is_empty() && c.resolved.is_empty(),
                "fired early at {s}s"
            );
        }
        let (t, w) = at(10);
        let c = e.evaluate(
            &snap(vec![tenant("insure-prod", 2400.0), tenant("billing", 0.0)]),
            t,
            w,
        );
        assert_eq!(c.fired.len(), 1);
        let a = &c.fired[0];
        assert_eq!(a.alertname(), "GprofGoroutineLeak");
        assert_eq!(a.severity(), "critical");
        assert_eq!(a.tenant(), "insure-prod");
        assert_eq!(a.labels["node"], "n1");
        assert_eq!(a.threshold, 1200.0);
        assert_eq!(e.firing().len(), 1);
        // Still firing: nothing new.
        let (t, w) = at(12);
        let c = e.evaluate(&snap(vec![tenant("insure-prod", 2300.0)]), t, w);
        assert!(c.fired.is_empty() && c.resolved.is_empty());
        assert_eq!(e.firing()[0].value, 2300.0);
        // Back to normal: resolved at once.
        let (t, w) = at(14);
        let c = e.evaluate(&snap(vec![tenant("insure-prod", 0.0)]), t, w);
        assert_eq!(c.resolved.len(), 1);
        assert_eq!(c.resolved[0].resolved_at, Some(w));
        assert!(e.firing().is_empty());
    }

    #[test]
    fn a_blip_shorter_than_for_never_fires() {
        let mut e = engine();
        let t0 = Instant::now();
        let w = UNIX_EPOCH;
        for (s, leak) in [
            (0, 2400.0),
            (4, 2400.0),
            (8, 0.0),
            (12, 2400.0),
            (20, 2400.0),
        ] {
            let c = e.evaluate(
                &snap(vec![tenant("a", leak)]),
                t0 + Duration::from_secs(s),
                w,
            );
            assert!(c.fired.is_empty(), "fired at {s}s");
        }
        let c = e.evaluate(
            &snap(vec![tenant("a", 2400.0)]),
            t0 + Duration::from_secs(22),
            w,
        );
        assert_eq!(c.fired.len(), 1);
    }

    #[test]
    fn escalation_replaces_the_warning_and_a_vanished_tenant_resolves() {
        let mut e = engine();
        let t0 = Instant::now();
        let w = UNIX_EPOCH;
        let at = |s| t0 + Duration::from_secs(s);
        e.evaluate(&snap(vec![tenant("a", 800.0)]), at(0), w);
        let c = e.evaluate(&snap(vec![tenant("a", 800.0)]), at(10), w);
        assert_eq!(c.fired[0].severity(), "warning");
        e.evaluate(&snap(vec![tenant("a", 1500.0)]), at(12), w);
        let c = e.evaluate(&snap(vec![tenant("a", 1500.0)]), at(22), w);
        assert_eq!(
            (c.resolved[0].severity(), c.fired[0].severity()),
            ("warning", "critical")
        );
        assert_eq!(e.firing().len(), 1);
        let c = e.evaluate(&snap(vec![]), at(24), w);
        assert_eq!(c.resolved.len(), 1);
        assert!(e.firing().is_empty());
    }

    #[test]
    fn health_score_alerts_when_it_falls() {
        let c = Config::parse(
            "t",
            "thresholds:\n  - metric: health_score\n    warning: 70\n    critical: 40\n",
        )
        .unwrap();
        let mut e = AlertEngine::new(c.thresholds, BTreeMap::new());
        let mut t = tenant("a", 0.0);
        t.health_score = 55.0;
        let c = e.evaluate(&snap(vec![t.clone()]), Instant::now(), UNIX_EPOCH);
        assert_eq!(c.fired[0].severity(), "warning");
        assert_eq!(c.fired[0].alertname(), "GprofHealthScoreLow");
    }

    #[test]
    fn alertmanager_payload() {
        let mut e = engine();
        let t0 = Instant::now();
        let w = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        e.evaluate(&snap(vec![tenant("insure-prod", 2400.0)]), t0, w);
        e.evaluate(
            &snap(vec![tenant("insure-prod", 2400.0)]),
            t0 + Duration::from_secs(10),
            w,
        );
        let body = alertmanager_body(
            &e.firing(),
            w,
            Duration::from_secs(180),
            "http://node:9477/metrics",
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let a = &v[0];
        assert_eq!(a["labels"]["alertname"], "GprofGoroutineLeak");
        assert_eq!(a["labels"]["tenant"], "insure-prod");
        assert_eq!(a["labels"]["severity"], "critical");
        assert_eq!(a["startsAt"], "2027-01-15T08:00:00.000Z");
        assert_eq!(a["endsAt"], "2027-01-15T08:03:00.000Z");
        assert_eq!(a["annotations"]["value"], "2400");
        assert!(
            a["annotations"]["summary"]
                .as_str()
                .unwrap()
                .contains("tenant insure-prod")
        );
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(951_782_400_123)),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_777_572)),
            "2026-11-27T11:06:12.000Z"
        );
    }

    #[test]
    fn a_leaking_site_is_named_in_the_alert() {
        let c = Config::parse(
            "t",
            "thresholds:\n  - metric: site_goroutine_growth_per_min\n    critical: 600\n    for: 0s\n",
        )
        .unwrap();
        assert_eq!(c.thresholds[0].alertname, "GprofGoroutineSiteLeak");
        let mut e = AlertEngine::new(c.thresholds, BTreeMap::new());
        let process = |tenant: &str, pid: u32, suspect: bool| ProcessRecord {
            start_time: 1,
            tenant: tenant.into(),
            pod_uid: None,
            container_id: None,
            snapshot: ProcessSnapshot {
                pid,
                top_leak_sites: vec![crate::model::snapshot::SiteSnapshot {
                    suspect,
                    ..crate::model::snapshot::example().top_leak_sites[0].clone()
                }],
                ..crate::model::snapshot::example()
            },
        };
        let snapshot = DaemonSnapshot {
            tenants: vec![tenant("pay", 0.0), tenant("web", 0.0)],
            processes: vec![process("pay", 7, true), process("web", 8, false)],
            ..Default::default()
        };
        let changes = e.evaluate(&snapshot, Instant::now(), UNIX_EPOCH);
        assert_eq!(changes.fired.len(), 1, "{:?}", changes.fired);
        let a = &changes.fired[0];
        assert_eq!(a.tenant(), "pay");
        assert_eq!(a.value, 1200.0);
        assert_eq!(a.worst_pid, Some(7));
        assert_eq!(a.site.as_deref(), Some("main.serve (/src/app/main.go:42)"));
        let body: serde_json::Value = serde_json::from_str(&alertmanager_body(
            &changes.fired,
            UNIX_EPOCH,
            Duration::from_secs(60),
            "g",
        ))
        .unwrap();
        assert_eq!(
            body[0]["annotations"]["site"],
            "main.serve (/src/app/main.go:42)"
        );
        assert!(
            body[0]["annotations"]["summary"]
                .as_str()
                .unwrap()
                .contains("at main.serve (/src/app/main.go:42)")
        );
    }

    #[test]
    fn a_confirmed_leak_names_where_its_goroutines_were_created_and_wait() {
        let c = Config::parse(
            "t",
            "thresholds:\n  - metric: confirmed_leak_rate_per_min\n    warning: 1\n    for: 0s\n  - metric: stuck_goroutines\n    scope: process\n    warning: 1000\n",
        )
        .unwrap();
        assert_eq!(c.thresholds[0].alertname, "GprofGoroutineLeakConfirmed");
        assert_eq!(c.thresholds[1].alertname, "GprofGoroutinesStuck");
        let mut e = AlertEngine::new(c.thresholds, BTreeMap::new());
        let r = ProcessRecord {
            start_time: 1,
            tenant: "pay".into(),
            pod_uid: None,
            container_id: None,
            snapshot: crate::model::snapshot::example(),
        };
        let snapshot = DaemonSnapshot {
            tenants: vec![TenantSnapshot::aggregate("pay", &[&r])],
            processes: vec![r],
            ..Default::default()
        };
        let changes = e.evaluate(&snapshot, Instant::now(), UNIX_EPOCH);
        assert_eq!(changes.fired.len(), 2, "{:?}", changes.fired);
        let leak = &changes.fired[0];
        assert_eq!((leak.tenant(), leak.value), ("pay", 1200.0));
        let summary = leak.summary();
        assert!(
            summary.contains(
                "at main.serve.func1 (/src/app/main.go:47) (chan send), created at main.serve (/src/app/main.go:42)"
            ),
            "{summary}"
        );
        let body: serde_json::Value = serde_json::from_str(&alertmanager_body(
            &changes.fired,
            UNIX_EPOCH,
            Duration::from_secs(60),
            "g",
        ))
        .unwrap();
        assert_eq!(
            body[0]["annotations"]["blocked_at"],
            "main.serve.func1 (/src/app/main.go:47)"
        );
        assert_eq!(
            body[0]["annotations"]["created_at"],
            "main.serve (/src/app/main.go:42)"
        );
        assert_eq!(body[0]["annotations"]["wait_reason"], "chan send");
        let stuck = &changes.fired[1];
        assert_eq!((stuck.value, stuck.labels["pid"].as_str()), (1200.0, "42"));
        assert!(
            stuck
                .log_line()
                .contains("blocked_at=\"main.serve.func1 (/src/app/main.go:47)\"")
        );
    }

    #[test]
    fn log_lines_are_logfmt() {
        let mut labels = BTreeMap::new();
        labels.insert("alertname".to_string(), "X".to_string());
        labels.insert("tenant".to_string(), "a b".to_string());
        let a = Alert {
            labels,
            metric: "goroutines",
            value: 1.23456,
            threshold: 1.0,
            hold_seconds: 0.0,
            since: UNIX_EPOCH,
            resolved_at: None,
            worst_pid: Some(3),
            site: None,
            group: None,
        };
        assert_eq!(
            a.log_line(),
            "alert=firing metric=goroutines value=1.235 threshold=1 alertname=X tenant=\"a b\" worst_pid=3"
        );
    }
}
