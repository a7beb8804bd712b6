//! An alert, as every surface shows it: the log, `/metrics`, Alertmanager.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// A firing (or just resolved) alert.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    /// alertname, severity, tenant, and for process alerts pid, comm, pod_uid, container_id.
    pub labels: BTreeMap<String, String>,
    pub metric: &'static str,
    pub value: f64,
    pub threshold: f64,
    pub hold_seconds: f64,
    /// When it started firing.
    #[serde(serialize_with = "as_rfc3339")]
    pub since: SystemTime,
    /// Set once resolved.
    #[serde(serialize_with = "as_rfc3339_opt")]
    pub resolved_at: Option<SystemTime>,
    /// The process that sets a tenant alert's value (the worst one), for the annotations.
    pub worst_pid: Option<u32>,
    /// For creation-site alerts: the site (`function (file:line)`) that sets the value.
    pub site: Option<String>,
    /// For stuck-goroutine alerts: the group that sets the value.
    pub group: Option<GroupPlace>,
}

/// Where a group of stuck goroutines comes from and waits.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupPlace {
    pub created_at: String,
    pub blocked_at: String,
    pub wait_reason: String,
}

impl Alert {
    pub fn alertname(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }

    pub fn severity(&self) -> &str {
        self.labels.get("severity").map_or("", String::as_str)
    }

    pub fn tenant(&self) -> &str {
        self.labels.get("tenant").map_or("", String::as_str)
    }

    pub fn summary(&self) -> String {
        let subject = match self.labels.get("pid") {
            Some(pid) => format!("PID {pid} of tenant {}", self.tenant()),
            None => format!("tenant {}", self.tenant()),
        };
        let at = match (&self.site, &self.group) {
            (Some(s), _) => format!(" at {s}"),
            (None, Some(g)) => format!(
                " at {} ({}), created at {}",
                g.blocked_at, g.wait_reason, g.created_at
            ),
            (None, None) => String::new(),
        };
        format!(
            "{subject}: {} is {}{at} ({} threshold {}, held {}s)",
            self.metric,
            round(self.value),
            self.severity(),
            round(self.threshold),
            self.hold_seconds
        )
    }

    /// One structured log line (logfmt).
    pub fn log_line(&self) -> String {
        let mut line = format!(
            "alert={} metric={} value={} threshold={}",
            if self.resolved_at.is_some() {
                "resolved"
            } else {
                "firing"
            },
            self.metric,
            round(self.value),
            round(self.threshold)
        );
        for (k, v) in &self.labels {
            line.push_str(&format!(" {k}={}", logfmt_value(v)));
        }
        if let Some(pid) = self.worst_pid {
            line.push_str(&format!(" worst_pid={pid}"));
        }
        if let Some(site) = &self.site {
            line.push_str(&format!(" site={}", logfmt_value(site)));
        }
        if let Some(g) = &self.group {
            line.push_str(&format!(
                " blocked_at={} created_at={}",
                logfmt_value(&g.blocked_at),
                logfmt_value(&g.created_at)
            ));
        }
        line
    }
}

pub fn round(v: f64) -> String {
    let r = (v * 1000.0).round() / 1000.0;
    format!("{r}")
}

fn logfmt_value(v: &str) -> String {
    if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == '"' || c == '=') {
        format!("{v:?}")
    } else {
        v.to_string()
    }
}

/// RFC 3339 in UTC with milliseconds, as Alertmanager expects.
pub fn rfc3339(t: SystemTime) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => format!("{ts:.3}"),
        // Outside jiff's range (years -9999 to 9999): not a time a clock here reads.
        Err(_) => "1970-01-01T00:00:00.000Z".to_string(),
    }
}

fn as_rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

fn as_rfc3339_opt<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&rfc3339(*t)),
        None => s.serialize_none(),
    }
}
