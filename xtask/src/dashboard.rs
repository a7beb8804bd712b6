//! The Grafana dashboard (`deploy/grafana/gprof.json`) and the ConfigMap that hands it to
//! Grafana's dashboard sidecar (`deploy/kubernetes/grafana-dashboard.yaml`), generated here so
//! that the queries live in one place; `tests/dashboard.rs` runs every one of them against a
//! real Prometheus scraping a real daemon.

use serde_json::{Value, json};

pub const DASHBOARD: &str = "deploy/grafana/gprof.json";
pub const CONFIGMAP: &str = "deploy/kubernetes/grafana-dashboard.yaml";

/// The selector every query carries: the node and tenant template variables.
const SEL: &str = r#"node=~"$node", tenant=~"$tenant""#;

fn datasource() -> Value {
    json!({"type": "prometheus", "uid": "${datasource}"})
}

/// A query of a panel: PromQL (with `{SEL}` for the selector), legend, and whether it is an
/// instant query shown as a table.
struct Query {
    expr: String,
    legend: &'static str,
    table: bool,
}

fn q(expr: &str, legend: &'static str) -> Query {
    Query {
        expr: expr.replace("{SEL}", SEL),
        legend,
        table: false,
    }
}

fn table(expr: &str) -> Query {
    Query {
        expr: expr.replace("{SEL}", SEL),
        legend: "",
        table: true,
    }
}

fn targets(queries: &[Query]) -> Value {
    let refs = ["A", "B", "C", "D", "E", "F", "G", "H"];
    queries
        .iter()
        .zip(refs)
        .map(|(query, id)| {
            let mut t = json!({
                "datasource": datasource(),
                "refId": id,
                "expr": query.expr,
                "legendFormat": query.legend,
            });
            if query.table {
                t["instant"] = json!(true);
                t["range"] = json!(false);
                t["format"] = json!("table");
            }
            t
        })
        .collect()
}

struct Layout {
    next_id: u64,
    y: u64,
    x: u64,
}

impl Layout {
    /// Places a panel `w` wide (of 24) and `h` high, left to right, then on the next row.
    fn place(&mut self, mut panel: Value, w: u64, h: u64) -> Value {
        if self.x + w > 24 {
            self.x = 0;
            self.y += h;
        }
        panel["id"] = json!(self.next_id);
        panel["gridPos"] = json!({"x": self.x, "y": self.y, "w": w, "h": h});
        panel["datasource"] = datasource();
        self.next_id += 1;
        self.x += w;
        if self.x >= 24 {
            self.x = 0;
            self.y += h;
        }
        panel
    }
}

fn timeseries(title: &str, description: &str, unit: &str, queries: &[Query]) -> Value {
    json!({
        "type": "timeseries",
        "title": title,
        "description": description,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull", "max"]}},
        "targets": targets(queries),
    })
}

fn table_panel(title: &str, description: &str, queries: &[Query], rename: Value) -> Value {
    json!({
        "type": "table",
        "title": title,
        "description": description,
        "targets": targets(queries),
        "transformations": [
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {
                "excludeByName": {"Time": true, "job": true, "instance": true, "__name__": true,
                                  "container_id": true},
                "renameByName": rename,
            }},
        ],
    })
}

/// The dashboard.
pub fn dashboard() -> Value {
    let mut l = Layout {
        next_id: 1,
        y: 0,
        x: 0,
    };
    let panels = vec![
        l.place(
            {
                let mut p = timeseries(
                    "Health score by tenant",
                    "The lowest health score (0 to 100) of the tenant's processes: 100 minus the leak, GC pause, free-G pool and stack penalties.",
                    "none",
                    &[q("min by (tenant) (gprof_tenant_health_score{{SEL}})", "{{tenant}}")],
                );
                p["fieldConfig"]["defaults"]["min"] = json!(0);
                p["fieldConfig"]["defaults"]["max"] = json!(100);
                p
            },
            8,
            8,
        ),
        l.place(
            timeseries(
                "Confirmed leak rate by tenant",
                "Growth of the goroutine groups the leak verdict calls leaking (goroutines per minute): a load step or a pool warming up does not count.",
                "short",
                &[q(
                    "sum by (tenant) (gprof_tenant_goroutine_confirmed_leak_rate_per_minute{{SEL}})",
                    "{{tenant}}",
                )],
            ),
            8,
            8,
        ),
        l.place(
            timeseries(
                "Stuck and leaking goroutines by tenant",
                "Stuck: blocked at one place longer than leaks.stuck_after. Leaking: stuck in a group the verdict calls leaking.",
                "short",
                &[
                    q("sum by (tenant) (gprof_tenant_goroutines_stuck{{SEL}})", "{{tenant}} stuck"),
                    q("sum by (tenant) (gprof_tenant_goroutines_leaking{{SEL}})", "{{tenant}} leaking"),
                ],
            ),
            8,
            8,
        ),
        l.place(
            table_panel(
                "Stuck goroutines by place",
                "Where stuck goroutines were created (go statement) and where they wait, over the selected processes; leaking = 1 when the verdict calls the group leaking.",
                &[
                    table("topk(20, sum by (created_at, started, blocked_at, wait_reason) (gprof_goroutines_blocked_stuck{{SEL}}))"),
                    table("max by (created_at, started, blocked_at, wait_reason) (gprof_goroutine_group_leaking{{SEL}})"),
                ],
                json!({"Value #A": "stuck", "Value #B": "leaking"}),
            ),
            14,
            9,
        ),
        l.place(
            timeseries(
                "Leaking goroutines by place",
                "Stuck goroutines of the groups the verdict calls leaking, by where they wait.",
                "short",
                &[q(
                    "sum by (blocked_at, created_at) (gprof_goroutines_blocked_stuck{{SEL}} and on (instance, pid, created_at, blocked_at, wait_reason) (gprof_goroutine_group_leaking{{SEL}} == 1))",
                    "{{blocked_at}} <- {{created_at}}",
                )],
            ),
            10,
            9,
        ),
        l.place(
            json!({
                "type": "heatmap",
                "title": "GC stop-the-world pauses",
                "description": "GC pauses per interval by duration, from the kernel's histogram of the stop-the-world phases.",
                "options": {
                    "calculate": false,
                    "yAxis": {"unit": "s"},
                    "cellGap": 1,
                    "color": {"mode": "scheme", "scheme": "Oranges"},
                },
                "targets": [{
                    "datasource": datasource(),
                    "refId": "A",
                    "expr": format!("sum by (le) (increase(gprof_gc_pause_seconds_bucket{{{SEL}}}[$__rate_interval]))"),
                    "format": "heatmap",
                    "legendFormat": "{{le}}",
                }],
            }),
            12,
            8,
        ),
        l.place(
            timeseries(
                "Free-G pool and live goroutines",
                "The runtime's pool of reusable goroutines (free-G lists) beside the live goroutines: a pool far larger than the live count is memory the process keeps after a burst.",
                "short",
                &[
                    q("sum by (tenant) (gprof_gfree_pool_size{{SEL}})", "{{tenant}} free-G pool"),
                    q("sum by (tenant) (gprof_goroutines{{SEL}})", "{{tenant}} live"),
                ],
            ),
            12,
            8,
        ),
        l.place(
            table_panel(
                "Processes",
                "Every watched process of the selection, worst health first.",
                &[
                    table("sort(gprof_health_score{{SEL}})"),
                    table("gprof_goroutines{{SEL}}"),
                    table("gprof_goroutines_stuck{{SEL}}"),
                    table("gprof_goroutine_confirmed_leak_rate_per_minute{{SEL}}"),
                    table("gprof_gfree_pool_size{{SEL}}"),
                    table("gprof_gc_pause_max_seconds{{SEL}}"),
                ],
                json!({
                    "Value #A": "health", "Value #B": "goroutines", "Value #C": "stuck",
                    "Value #D": "confirmed leak /min", "Value #E": "free-G pool",
                    "Value #F": "GC pause max (s)",
                }),
            ),
            24,
            9,
        ),
        l.place(
            timeseries(
                "gprof on the node",
                "Go processes watched and not watched (by reason), and the daemon's own CPU (cores).",
                "short",
                &[
                    q(r#"sum by (node) (gprof_watched_processes{node=~"$node"})"#, "{{node}} watched"),
                    q(
                        r#"sum by (node, reason) (gprof_unwatched_processes{node=~"$node"})"#,
                        "{{node}} unwatched: {{reason}}",
                    ),
                    q(
                        r#"sum by (node) (rate(gprof_daemon_cpu_seconds_total{node=~"$node"}[$__rate_interval]))"#,
                        "{{node}} daemon CPU (cores)",
                    ),
                ],
            ),
            12,
            8,
        ),
        l.place(
            timeseries(
                "Sample errors and kernel losses",
                "Samples that failed (retried with backoff), and what the kernel side could not record.",
                "short",
                &[
                    q(
                        r#"sum by (node, reason) (rate(gprof_sample_errors_total{node=~"$node"}[$__rate_interval]))"#,
                        "{{node}} sample errors: {{reason}}",
                    ),
                    q(
                        r#"sum by (node) (rate(gprof_kernel_events_dropped_total{node=~"$node"}[$__rate_interval]))"#,
                        "{{node}} events dropped",
                    ),
                ],
            ),
            12,
            8,
        ),
    ];
    let variable = |name: &str, label: &str, query: &str| {
        json!({
            "name": name,
            "label": label,
            "type": "query",
            "datasource": datasource(),
            "definition": query,
            "query": {"query": query, "refId": name},
            "includeAll": true,
            "multi": true,
            "allValue": ".*",
            "current": {"selected": true, "text": ["All"], "value": ["$__all"]},
            "refresh": 2,
            "sort": 1,
            "hide": 0,
        })
    };
    json!({
        "uid": "gprof-go-health",
        "title": "gprof: Go service health",
        "description": "Goroutine leaks (stuck goroutines and the leak verdict), GC stop-the-world pauses and the free-G pool of Go processes, watched from outside by gprof.",
        "tags": ["gprof", "go"],
        "schemaVersion": 39,
        "version": 1,
        "editable": true,
        "graphTooltip": 1,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "annotations": {"list": []},
        "templating": {"list": [
            {
                "name": "datasource",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
                "refresh": 1,
                "hide": 0,
            },
            variable("node", "Node", "label_values(gprof_build_info, node)"),
            variable("tenant", "Tenant", r#"label_values(gprof_tenant_processes{node=~"$node"}, tenant)"#),
        ]},
        "panels": panels,
    })
}

/// The dashboard as the file holds it.
pub fn dashboard_text() -> String {
    let mut text = serde_json::to_string_pretty(&dashboard()).expect("JSON");
    text.push('\n');
    text
}

/// The ConfigMap Grafana's dashboard sidecar picks up (label `grafana_dashboard: "1"`).
pub fn configmap_text(dashboard: &str) -> String {
    let mut out = String::from(
        "# Generated by `cargo xtask generate` (xtask/src/dashboard.rs): edit that file.\n\
         # Grafana's dashboard sidecar loads ConfigMaps labelled grafana_dashboard=\"1\".\n\
         apiVersion: v1\n\
         kind: ConfigMap\n\
         metadata:\n  name: gprof-dashboard\n  namespace: gprof\n  labels:\n    app.kubernetes.io/name: gprof\n    grafana_dashboard: \"1\"\n\
         data:\n  gprof.json: |\n",
    );
    for line in dashboard.lines() {
        out.push_str("    ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panel_ids_are_unique_and_panels_fit_the_grid() {
        let d = dashboard();
        let panels = d["panels"].as_array().unwrap();
        let mut ids: Vec<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), panels.len());
        for p in panels {
            let g = &p["gridPos"];
            assert!(
                g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
                "{p}"
            );
            assert!(!p["targets"].as_array().unwrap().is_empty(), "{p}");
        }
    }
}
