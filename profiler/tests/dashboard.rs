//! The Grafana dashboard against real data: a real Prometheus scrapes a real daemon watching
//! real Go programs (one of them leaking), and every query of every panel, with the template
//! variables substituted as Grafana would, must return data through Prometheus's HTTP API.
//! The main panels are also drawn (plotters) from the same queries: `cargo xtask picture`
//! writes that picture to docs/dashboard.png for the README.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::daemon::{Daemon, Prometheus};
use common::*;
use serde_json::Value;

const NODE: &str = "node-a";

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/gprof.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("read the dashboard"))
        .expect("the dashboard is JSON")
}

/// Grafana's substitution for this test: the node and the tenants selected (a multi-value
/// variable becomes a regex alternation), and the rate interval.
fn substitute(expr: &str, tenants: &[&str]) -> String {
    expr.replace("$node", NODE)
        .replace("$tenant", &format!("({})", tenants.join("|")))
        .replace("$__rate_interval", "30s")
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn the_dashboard_is_valid_grafana() {
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64().unwrap() >= 36, "schemaVersion");
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty()), "uid");
    let vars = d["templating"]["list"].as_array().unwrap();
    let ds = vars
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(ds["query"], "prometheus");
    let names: BTreeSet<&str> = vars.iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(names, BTreeSet::from(["datasource", "node", "tenant"]));
    let panels = d["panels"].as_array().unwrap();
    let ids: BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    let wanted = [
        "Health score by tenant",
        "Confirmed leak rate by tenant",
        "Stuck and leaking goroutines by tenant",
        "Stuck goroutines by place",
        "GC stop-the-world pauses",
        "Free-G pool and live goroutines",
        "Processes",
    ];
    for title in wanted {
        assert!(
            panels.iter().any(|p| p["title"] == title),
            "no panel {title}"
        );
    }
    for p in panels {
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()));
        }
    }
    assert!(panels.iter().any(|p| p["type"] == "heatmap"));
}

#[test]
fn every_panel_query_returns_data_from_a_real_prometheus() {
    let test = "every_panel_query_returns_data_from_a_real_prometheus";
    if !require_root(test) {
        return;
    }
    let (Some(scenarios), Some(workload)) = (
        go_target(test, "scenarios", "1.27.3", "stripped"),
        go_target(test, "workload", "1.24.11", "plain"),
    ) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("gprof-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let started = now();
    let daemon = Daemon::start(
        "interval: 1s\nleaks:\n  stuck_after: 5s\nwindows:\n  leak: 30s\n",
        &[],
    );
    let Some(prom) = Prometheus::for_test(test, &dir, daemon.port, &[("node", NODE)]) else {
        return;
    };
    // Tenant "pay" leaks (one goroutine blocked for good in about 2 % of requests); "shop"
    // runs a busy service (2,000 goroutines a second, a GC every 2 s) and an idle one.
    let _leaking = Spawned::start(Command::new(&scenarios).env("GPROF_TENANT", "pay").args([
        "-scenario",
        "leak",
        "-share",
        "0.02",
    ]));
    let busy = |churn: &str| {
        Spawned::start(Command::new(&workload).env("GPROF_TENANT", "shop").args([
            "-leak-rate",
            "0",
            "-churn-rate",
            churn,
            "-gc-every",
            "2s",
            "-report",
            "0",
        ]))
    };
    let _busy = busy("2000");
    let _idle = busy("0");

    // Until Prometheus holds a group the verdict calls leaking.
    let tenants = ["pay", "shop"];
    let leaking = substitute(
        r#"gprof_goroutine_group_leaking{node=~"$node", tenant=~"$tenant"} == 1"#,
        &tenants,
    );
    assert!(
        wait_for(Duration::from_secs(150), || prom
            .query(&leaking)
            .is_ok_and(|r| !r.is_empty())),
        "{test}: no group was confirmed leaking within 150 s; daemon log:\n{}",
        daemon.log_text()
    );

    // The template variables resolve as Grafana would ask.
    let d = dashboard();
    let vars = d["templating"]["list"].as_array().unwrap();
    for (name, expect) in [("node", vec![NODE]), ("tenant", tenants.to_vec())] {
        let var = vars.iter().find(|v| v["name"] == name).unwrap();
        let query = var["query"]["query"].as_str().unwrap();
        let (label, matcher) = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .and_then(|q| q.rsplit_once(", "))
            .map(|(m, l)| (l, m))
            .unwrap_or_else(|| panic!("{name}: not a label_values query: {query}"));
        let values = prom
            .label_values(label, &substitute(matcher, &tenants))
            .unwrap();
        for e in expect {
            assert!(
                values.iter().any(|v| v == e),
                "{name}: {values:?} lacks {e}"
            );
        }
    }

    // Every query of every panel returns data. Queries over a rate window wait for it.
    let start = Instant::now();
    let mut failures = Vec::new();
    loop {
        failures.clear();
        let mut checked = 0;
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                let expr = substitute(t["expr"].as_str().unwrap(), &tenants);
                checked += 1;
                match prom.query(&expr) {
                    Ok(r) if !r.is_empty() => {}
                    Ok(_) => failures.push(format!("{}: no data from {expr}", p["title"])),
                    Err(e) => failures.push(format!("{}: {e}", p["title"])),
                }
            }
        }
        if failures.is_empty() {
            println!(
                "{test}: {checked} queries of {} panels returned data",
                d["panels"].as_array().unwrap().len()
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "{test}: queries without data:\n{}",
            failures.join("\n")
        );
        std::thread::sleep(Duration::from_secs(2));
    }

    // For the README's picture (`cargo xtask picture`), a few minutes of the leak confirmed.
    let out = match std::env::var_os("GPROF_DASHBOARD_PNG") {
        Some(path) => {
            std::thread::sleep(Duration::from_secs(150));
            PathBuf::from(path)
        }
        None => Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png"),
    };
    picture::draw(&prom, &d, &tenants, started, now(), &out);
    let png = std::fs::read(&out).expect("the picture");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{}",
        out.display()
    );
    println!("{test}: drew {}", out.display());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The dashboard's main panels drawn from Prometheus's range queries.
mod picture {
    use super::*;
    use plotters::prelude::*;

    const PANELS: [&str; 4] = [
        "Health score by tenant",
        "Confirmed leak rate by tenant",
        "Stuck and leaking goroutines by tenant",
        "Free-G pool and live goroutines",
    ];
    const COLORS: [RGBColor; 6] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
    ];

    fn font() {
        let path = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
        let bytes = std::fs::read(path)
            .unwrap_or_else(|e| panic!("{path}: {e} (fonts-dejavu-core, cargo xtask setup)"));
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            Box::leak(bytes.into_boxed_slice()),
        );
    }

    /// (legend, points) of each series a panel's queries return.
    fn series(
        prom: &Prometheus,
        panel: &Value,
        tenants: &[&str],
        start: f64,
        end: f64,
    ) -> Vec<(String, Vec<(f64, f64)>)> {
        let mut out = Vec::new();
        for t in panel["targets"].as_array().unwrap() {
            let expr = substitute(t["expr"].as_str().unwrap(), tenants);
            let legend = t["legendFormat"].as_str().unwrap_or("");
            for s in prom.query_range(&expr, start, end, 2.0).unwrap() {
                let mut name = legend.to_string();
                if let Some(labels) = s["metric"].as_object() {
                    for (k, v) in labels {
                        name = name.replace(&format!("{{{{{k}}}}}"), v.as_str().unwrap_or(""));
                    }
                }
                let points = s["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|p| {
                        let t = p[0].as_f64()?;
                        let v: f64 = p[1].as_str()?.parse().ok()?;
                        v.is_finite().then_some((t - start, v))
                    })
                    .collect();
                out.push((name, points));
            }
        }
        out
    }

    pub fn draw(prom: &Prometheus, d: &Value, tenants: &[&str], start: f64, end: f64, out: &Path) {
        font();
        let root = BitMapBackend::new(out, (1400, 820)).into_drawing_area();
        root.fill(&WHITE).unwrap();
        let (title, body) = root.split_vertically(50);
        title
            .draw_text(
                &format!(
                    "gprof dashboard, from a real Prometheus: tenant pay leaks, tenant shop is busy ({:.0} s)",
                    end - start
                ),
                &("sans-serif", 24).into_font().color(&BLACK),
                (20, 14),
            )
            .unwrap();
        let areas = body.split_evenly((2, 2));
        for (area, name) in areas.iter().zip(PANELS) {
            let panel = d["panels"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["title"] == name)
                .unwrap_or_else(|| panic!("no panel {name}"));
            let data = series(prom, panel, tenants, start, end);
            let ymax = data
                .iter()
                .flat_map(|(_, p)| p.iter().map(|&(_, v)| v))
                .fold(1.0f64, f64::max)
                * 1.1;
            let mut chart = ChartBuilder::on(area)
                .caption(name, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(30)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..(end - start), 0.0..ymax)
                .unwrap();
            chart
                .configure_mesh()
                .x_desc("seconds since the daemon started")
                .label_style(("sans-serif", 13))
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .unwrap();
            for (i, (legend, points)) in data.into_iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                chart
                    .draw_series(LineSeries::new(points, color.stroke_width(2)))
                    .unwrap()
                    .label(legend)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .label_font(("sans-serif", 13))
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK.mix(0.3))
                .draw()
                .unwrap();
        }
        root.present().unwrap();
    }
}
