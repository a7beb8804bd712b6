//! The daemon's configuration file (YAML). Unknown keys are rejected, and every error names
//! the key and the line, e.g. `thresholds[0]: unknown field `fro` at line 7 column 5`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use crate::config::params::HealthModel;
use crate::config::params::Windows;

pub mod label;
pub mod params;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// A duration written as `500ms`, `2s`, `10s`, `1m30s`, `1h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

/// Parses a duration with jiff's friendly format (`500ms`, `1m30s`, `1.5s`, `1h`, also
/// `1 minute` or ISO 8601 `PT90S`); negative ones are refused.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (use e.g. 500ms, 10s, 1m30s, 1h)");
    let d: jiff::SignedDuration = s.trim().parse().map_err(|_| bad())?;
    Duration::try_from(d).map_err(|_| bad())
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

/// A regular expression, checked when the file is read.
#[derive(Clone, Debug)]
pub struct Pattern(pub Regex);

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Regex::new(&s).map(Pattern).map_err(|e| {
            // The syntax error's last line says what is wrong (the others draw a caret).
            let text = e.to_string();
            let why = text
                .lines()
                .last()
                .unwrap_or("")
                .trim_start_matches("error: ");
            serde::de::Error::custom(format!("invalid regex {s:?}: {why}"))
        })
    }
}

fn default_metrics_addr() -> SocketAddr {
    "0.0.0.0:9477".parse().expect("valid address")
}

fn default_interval() -> Dur {
    Dur(Duration::from_secs(2))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where `/metrics` is served.
    #[serde(default = "default_metrics_addr")]
    pub metrics_addr: SocketAddr,
    /// How often processes are sampled and thresholds evaluated.
    #[serde(default = "default_interval")]
    pub interval: Dur,
    #[serde(default)]
    pub tenants: Tenants,
    #[serde(default)]
    pub thresholds: Vec<Threshold>,
    #[serde(default)]
    pub alerting: Alerting,
    /// Weights and references of the health score (see `health.rs`).
    #[serde(default)]
    pub health: HealthModel,
    #[serde(default)]
    pub windows: WindowsConfig,
    #[serde(default)]
    pub leaks: Leaks,
    #[serde(default)]
    pub discovery: DiscoverySettings,
    #[serde(default)]
    pub budget: BudgetSettings,
    #[serde(default)]
    pub census: CensusSettings,
    #[serde(default)]
    pub dumps: DumpSettings,
}

/// Goroutine dumps served at `/debug/pprof/goroutine?pid=N` (off by default: stacks show the
/// code's layout to whoever reaches the metrics address).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DumpSettings {
    #[serde(default)]
    pub enabled: bool,
}

/// What the goroutine census may cost, for every process together (see
/// `collect/census_budget.rs`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CensusSettings {
    /// Percent of one core, on average.
    #[serde(default = "CensusSettings::default_percent")]
    pub cpu_percent: f64,
    /// Memory for following blocked goroutines one by one (`48MiB`, `1GiB`, or bytes).
    #[serde(default = "CensusSettings::default_memory")]
    pub memory: Bytes,
}

impl CensusSettings {
    fn default_percent() -> f64 {
        crate::config::params::CensusLimits::default().cpu_share * 100.0
    }
    fn default_memory() -> Bytes {
        Bytes(crate::config::params::CensusLimits::default().memory_bytes)
    }

    pub fn limits(&self) -> crate::config::params::CensusLimits {
        crate::config::params::CensusLimits {
            cpu_share: self.cpu_percent / 100.0,
            memory_bytes: self.memory.0,
        }
    }
}

impl Default for CensusSettings {
    fn default() -> Self {
        Self {
            cpu_percent: Self::default_percent(),
            memory: Self::default_memory(),
        }
    }
}

/// A size in bytes, written as `48MiB`, `64MB`, `1GiB`, `512KiB` or a number of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bytes(pub u64);

/// Parses a size (binary or decimal units, case-insensitive; `M` and `G` alone are binary,
/// as in Kubernetes' `Mi`/`Gi`).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid size {s:?} (use e.g. 48MiB, 1GiB, or a number of bytes)");
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "ki" | "kib" => 1 << 10,
        "kb" => 1_000,
        "m" | "mi" | "mib" => 1 << 20,
        "mb" => 1_000_000,
        "g" | "gi" | "gib" => 1 << 30,
        "gb" => 1_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(scale).ok_or_else(bad)
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Bytes(n)),
            Raw::S(s) => parse_bytes(&s).map(Bytes).map_err(serde::de::Error::custom),
        }
    }
}

/// The overhead budget of the hot probes (see `budget.rs`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSettings {
    /// Share of its CPU time, in percent (counted as at least half a core and at most one),
    /// the hot probes may cost each process; `null` for no limit.
    #[serde(default = "BudgetSettings::default_percent")]
    pub cpu_percent: Option<f64>,
    /// Estimated cost of one probe hit.
    #[serde(default = "BudgetSettings::default_cost")]
    pub cost_per_hit: Dur,
    /// The longest the hot probes stay detached.
    #[serde(default = "BudgetSettings::default_max_off")]
    pub max_off: Dur,
    /// What each sampling window costs beyond its counted hits, as time at the full rate.
    #[serde(default = "BudgetSettings::default_window_overhead")]
    pub window_overhead: Dur,
    /// What the census costs a process per g it reads that the process may soon write.
    #[serde(default = "BudgetSettings::default_cost_per_g_read")]
    pub cost_per_g_read: Dur,
}

impl BudgetSettings {
    fn default_percent() -> Option<f64> {
        crate::config::params::OverheadBudget::default()
            .process_cpu_share
            .map(|f| f * 100.0)
    }
    fn default_cost() -> Dur {
        Dur(crate::config::params::OverheadBudget::default().cost_per_hit)
    }
    fn default_max_off() -> Dur {
        Dur(crate::config::params::OverheadBudget::default().max_off)
    }
    fn default_window_overhead() -> Dur {
        Dur(crate::config::params::OverheadBudget::default().window_overhead)
    }
    fn default_cost_per_g_read() -> Dur {
        Dur(crate::config::params::OverheadBudget::default().cost_per_g_read)
    }

    pub fn config(&self) -> crate::config::params::OverheadBudget {
        crate::config::params::OverheadBudget {
            process_cpu_share: self.cpu_percent.map(|p| p / 100.0),
            cost_per_hit: self.cost_per_hit.0,
            max_off: self.max_off.0,
            window_overhead: self.window_overhead.0,
            cost_per_g_read: self.cost_per_g_read.0,
        }
    }
}

impl Default for BudgetSettings {
    fn default() -> Self {
        Self {
            cpu_percent: Self::default_percent(),
            cost_per_hit: Self::default_cost(),
            max_off: Self::default_max_off(),
            window_overhead: Self::default_window_overhead(),
            cost_per_g_read: Self::default_cost_per_g_read(),
        }
    }
}

/// Where a process's tenant comes from, tried in the configured order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantSource {
    /// The operator's rules (cgroup, executable, process name).
    Rules,
    /// The Kubernetes namespace of the process's pod: the pod UID from its cgroup path, the
    /// namespace from the kubelet's pod log directories. Workloads cannot forge it.
    Namespace,
    /// The environment variable `env_var`: whatever the workload says, so last by default.
    Env,
}

impl std::fmt::Display for TenantSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Rules => "rules",
            Self::Namespace => "namespace",
            Self::Env => "env",
        })
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenants {
    /// The sources tried in order; the first that gives a valid tenant wins.
    #[serde(default = "Tenants::default_from")]
    pub from: Vec<TenantSource>,
    /// The environment variable that names a process's tenant (source `env`).
    #[serde(default = "Tenants::default_env_var")]
    pub env_var: String,
    /// The tenant of processes no source assigns.
    #[serde(default = "Tenants::default_tenant", deserialize_with = "tenant_label")]
    pub default: String,
    /// Distinct tenants at most; processes of further tenants count under `other`.
    #[serde(default = "Tenants::default_max_tenants")]
    pub max_tenants: usize,
    /// The kubelet's pod log directories, `<namespace>_<pod>_<uid>` (source `namespace`).
    #[serde(default = "Tenants::default_pods_dir")]
    pub pods_dir: std::path::PathBuf,
    /// Source `rules`: tried in order, the first match wins.
    #[serde(default)]
    pub rules: Vec<TenantRule>,
}

/// The tenant of processes beyond `max_tenants`.
pub const OTHER_TENANT: &str = "other";

impl Tenants {
    fn default_from() -> Vec<TenantSource> {
        vec![
            TenantSource::Rules,
            TenantSource::Namespace,
            TenantSource::Env,
        ]
    }
    fn default_env_var() -> String {
        "GPROF_TENANT".into()
    }
    fn default_tenant() -> String {
        "unassigned".into()
    }
    fn default_max_tenants() -> usize {
        200
    }
    fn default_pods_dir() -> std::path::PathBuf {
        "/var/log/pods".into()
    }
}

impl Default for Tenants {
    fn default() -> Self {
        Self {
            from: Self::default_from(),
            env_var: Self::default_env_var(),
            default: Self::default_tenant(),
            max_tenants: Self::default_max_tenants(),
            pods_dir: Self::default_pods_dir(),
            rules: Vec::new(),
        }
    }
}

/// A tenant named in the file: a valid Kubernetes label value.
fn tenant_label<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    crate::config::label::check_label_value(&s)
        .map(|()| s.clone())
        .map_err(|why| serde::de::Error::custom(format!("invalid tenant {s:?}: {why}")))
}

/// A rule matches when every pattern it sets matches.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantRule {
    #[serde(deserialize_with = "tenant_label")]
    pub tenant: String,
    pub cgroup: Option<Pattern>,
    pub exe: Option<Pattern>,
    pub comm: Option<Pattern>,
}

/// The figures thresholds can watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    GoroutineLeakRatePerMin,
    GcPauseP99Seconds,
    GcPauseMaxSeconds,
    GfreePoolSize,
    Goroutines,
    HealthScore,
    /// The fastest-growing leak suspect among a process's creation sites.
    SiteGoroutineGrowthPerMin,
    /// Growth of the stuck goroutines of the groups the leak verdict calls leaking.
    ConfirmedLeakRatePerMin,
    /// Goroutines blocked at one place for `leaks.stuck_after` or longer.
    StuckGoroutines,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::GoroutineLeakRatePerMin => "goroutine_leak_rate_per_min",
            Metric::GcPauseP99Seconds => "gc_pause_p99_seconds",
            Metric::GcPauseMaxSeconds => "gc_pause_max_seconds",
            Metric::GfreePoolSize => "gfree_pool_size",
            Metric::Goroutines => "goroutines",
            Metric::HealthScore => "health_score",
            Metric::SiteGoroutineGrowthPerMin => "site_goroutine_growth_per_min",
            Metric::ConfirmedLeakRatePerMin => "confirmed_leak_rate_per_min",
            Metric::StuckGoroutines => "stuck_goroutines",
        }
    }

    /// A health score alerts when it falls to its thresholds; everything else when it rises.
    pub fn alerts_below(self) -> bool {
        self == Metric::HealthScore
    }

    pub fn default_alertname(self) -> &'static str {
        match self {
            Metric::GoroutineLeakRatePerMin => "GprofGoroutineLeak",
            Metric::GcPauseP99Seconds => "GprofGCPauseP99High",
            Metric::GcPauseMaxSeconds => "GprofGCPauseMaxHigh",
            Metric::GfreePoolSize => "GprofFreeGPoolLarge",
            Metric::Goroutines => "GprofGoroutinesHigh",
            Metric::HealthScore => "GprofHealthScoreLow",
            Metric::SiteGoroutineGrowthPerMin => "GprofGoroutineSiteLeak",
            Metric::ConfirmedLeakRatePerMin => "GprofGoroutineLeakConfirmed",
            Metric::StuckGoroutines => "GprofGoroutinesStuck",
        }
    }
}

/// What a threshold is evaluated on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdScope {
    /// The tenant's aggregate: sums of goroutines, leak rates and pools; the worst pause and
    /// health score of its processes.
    #[default]
    Tenant,
    /// Each process on its own (alerts carry its `pid`).
    Process,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawThreshold")]
pub struct Threshold {
    pub metric: Metric,
    pub warning: Option<f64>,
    pub critical: Option<f64>,
    pub hold: Duration,
    pub scope: ThresholdScope,
    pub alertname: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThreshold {
    metric: Metric,
    warning: Option<f64>,
    critical: Option<f64>,
    #[serde(rename = "for", default)]
    hold: Option<Dur>,
    #[serde(default)]
    scope: ThresholdScope,
    alertname: Option<String>,
}

impl TryFrom<RawThreshold> for Threshold {
    type Error = String;

    fn try_from(r: RawThreshold) -> Result<Self, String> {
        let name = r.metric.name();
        if r.warning.is_none() && r.critical.is_none() {
            return Err(format!(
                "threshold on {name} sets neither warning nor critical"
            ));
        }
        for v in [r.warning, r.critical].into_iter().flatten() {
            if !v.is_finite() {
                return Err(format!("threshold on {name}: {v} is not a finite number"));
            }
        }
        if let (Some(w), Some(c)) = (r.warning, r.critical) {
            let ordered = if r.metric.alerts_below() {
                w >= c
            } else {
                w <= c
            };
            if !ordered {
                let relation = if r.metric.alerts_below() {
                    "above"
                } else {
                    "below"
                };
                return Err(format!(
                    "threshold on {name}: warning ({w}) must be {relation} critical ({c})"
                ));
            }
        }
        if let Some(a) = &r.alertname
            && (a.is_empty() || !a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(format!(
                "alertname {a:?} must be letters, digits and underscores"
            ));
        }
        Ok(Threshold {
            metric: r.metric,
            warning: r.warning,
            critical: r.critical,
            hold: r.hold.map_or(Duration::ZERO, |d| d.0),
            scope: r.scope,
            alertname: r
                .alertname
                .unwrap_or_else(|| r.metric.default_alertname().into()),
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alerting {
    /// Alertmanager's base URL (`http://host:9093`); alerts go only to the log when unset.
    #[serde(default, deserialize_with = "deserialize_url")]
    pub alertmanager_url: Option<String>,
    /// How often a firing alert is sent again (Alertmanager forgets alerts not re-sent).
    #[serde(default = "Alerting::default_resend")]
    pub resend_interval: Dur,
}

impl Alerting {
    fn default_resend() -> Dur {
        Dur(Duration::from_secs(60))
    }
}

impl Default for Alerting {
    fn default() -> Self {
        Self {
            alertmanager_url: None,
            resend_interval: Self::default_resend(),
        }
    }
}

/// Checks an Alertmanager URL: plain `http://host:port[/prefix]`.
pub fn check_url(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: only http:// URLs are supported"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

fn deserialize_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => check_url(&s).map(Some).map_err(serde::de::Error::custom),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowsConfig {
    #[serde(default = "WindowsConfig::default_leak")]
    pub leak: Dur,
    #[serde(default = "WindowsConfig::default_rate")]
    pub rate: Dur,
    #[serde(default = "WindowsConfig::default_pause")]
    pub pause: Dur,
}

impl WindowsConfig {
    fn default_leak() -> Dur {
        Dur(Duration::from_secs_f64(Windows::default().leak_seconds))
    }
    fn default_rate() -> Dur {
        Dur(Duration::from_secs_f64(Windows::default().rate_seconds))
    }
    fn default_pause() -> Dur {
        Dur(Duration::from_secs_f64(Windows::default().pause_seconds))
    }
}

/// The leak verdict's settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Leaks {
    /// A goroutine blocked at the same place this long is stuck.
    #[serde(default = "Leaks::default_stuck_after")]
    pub stuck_after: Dur,
}

impl Leaks {
    fn default_stuck_after() -> Dur {
        Dur(Duration::from_secs_f64(
            Windows::default().stuck_after_seconds,
        ))
    }
}

impl Default for Leaks {
    fn default() -> Self {
        Self {
            stuck_after: Self::default_stuck_after(),
        }
    }
}

impl Config {
    /// The collectors' windows.
    pub fn windows(&self) -> Windows {
        Windows {
            leak_seconds: self.windows.leak.0.as_secs_f64(),
            rate_seconds: self.windows.rate.0.as_secs_f64(),
            pause_seconds: self.windows.pause.0.as_secs_f64(),
            stuck_after_seconds: self.leaks.stuck_after.0.as_secs_f64(),
        }
    }
}

impl Default for WindowsConfig {
    fn default() -> Self {
        Self {
            leak: Self::default_leak(),
            rate: Self::default_rate(),
            pause: Self::default_pause(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoverySettings {
    /// How often /proc is scanned for new Go processes.
    #[serde(default = "DiscoverySettings::default_interval")]
    pub interval: Dur,
    /// Processes whose command name matches are never watched.
    #[serde(default)]
    pub exclude_comm: Vec<Pattern>,
}

impl DiscoverySettings {
    fn default_interval() -> Dur {
        Dur(Duration::from_millis(500))
    }
}

impl Default for DiscoverySettings {
    fn default() -> Self {
        Self {
            interval: Self::default_interval(),
            exclude_comm: Vec::new(),
        }
    }
}

impl Config {
    pub fn parse(path: &str, text: &str) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_string(),
            message,
        };
        let config: Config =
            serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text))
                .map_err(|e| invalid(describe(text, &e)))?;
        if config.interval.0 < Duration::from_millis(100) {
            return Err(invalid("interval: must be at least 100ms".into()));
        }
        if config.discovery.interval.0 < Duration::from_millis(50) {
            return Err(invalid("discovery.interval: must be at least 50ms".into()));
        }
        if config
            .budget
            .cpu_percent
            .is_some_and(|p| !(p > 0.0 && p <= 100.0))
        {
            return Err(invalid(
                "budget.cpu_percent: must be above 0 and at most 100".into(),
            ));
        }
        if !(config.census.cpu_percent > 0.0 && config.census.cpu_percent <= 100.0) {
            return Err(invalid(
                "census.cpu_percent: must be above 0 and at most 100".into(),
            ));
        }
        if config.census.memory.0 < 1 << 20 {
            return Err(invalid("census.memory: must be at least 1MiB".into()));
        }
        let tenants = &config.tenants;
        if tenants.from.is_empty() {
            return Err(invalid(
                "tenants.from: name at least one source (rules, namespace, env)".into(),
            ));
        }
        if let Some(dup) = tenants
            .from
            .iter()
            .enumerate()
            .find(|(i, s)| tenants.from[..*i].contains(s))
        {
            return Err(invalid(format!(
                "tenants.from[{}]: {:?} is listed twice",
                dup.0, dup.1
            )));
        }
        if tenants.max_tenants == 0 {
            return Err(invalid("tenants.max_tenants: must be at least 1".into()));
        }
        if tenants.env_var.is_empty()
            || !tenants
                .env_var
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(invalid(format!(
                "tenants.env_var: {:?} is not an environment variable name ([A-Za-z0-9_]+)",
                tenants.env_var
            )));
        }
        for (key, d) in [
            ("budget.cost_per_hit", config.budget.cost_per_hit),
            ("windows.leak", config.windows.leak),
            ("windows.rate", config.windows.rate),
            ("windows.pause", config.windows.pause),
            ("leaks.stuck_after", config.leaks.stuck_after),
            ("alerting.resend_interval", config.alerting.resend_interval),
        ] {
            if d.0.is_zero() {
                return Err(invalid(format!("{key}: must be longer than 0s")));
            }
        }
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&shown, &text)
    }
}

/// `line L: key.path: message` for a deserialization error, the line found by walking the
/// YAML text along the key path (block style), else the parser's own position.
fn describe(text: &str, e: &serde_path_to_error::Error<serde_yaml::Error>) -> String {
    let path = e.path().to_string();
    let mut message = e.inner().to_string();
    // A syntax error: the scanner's own message names its lines, the key path means little.
    if message.contains("while scanning") || message.contains("while parsing") {
        return message;
    }
    if let Some(at) = message.rfind(" at line ") {
        message.truncate(at);
    }
    // The parser prefixes its own (shorter) path: keep only the full one.
    if let Some((prefix, rest)) = message.split_once(": ")
        && path.starts_with(prefix)
        && !prefix.contains(' ')
    {
        message = rest.to_string();
    }
    let line = locate(text, e.path()).or_else(|| e.inner().location().map(|l| l.line()));
    match (line, path.as_str()) {
        (Some(l), ".") => format!("line {l}: {message}"),
        (Some(l), p) => format!("line {l}: {p}: {message}"),
        (None, ".") => message,
        (None, p) => format!("{p}: {message}"),
    }
}

/// The 1-based line of `path` in block-style YAML, or None.
fn locate(text: &str, path: &serde_path_to_error::Path) -> Option<usize> {
    use serde_path_to_error::Segment;
    // Tokens: (line, indent, is a list item marker, text). "- key: v" gives an item marker
    // and a key two columns deeper.
    let mut tokens = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut indent = raw.len() - trimmed.len();
        let mut rest = trimmed;
        while let Some(r) = rest
            .strip_prefix("- ")
            .or_else(|| (rest == "-").then_some(""))
        {
            tokens.push((n + 1, indent, true, ""));
            indent += 2 + (r.len() - r.trim_start().len());
            rest = r.trim_start();
        }
        if !rest.is_empty() {
            tokens.push((n + 1, indent, false, rest));
        }
    }
    let (mut lo, mut hi) = (0, tokens.len());
    let mut line = None;
    for segment in path.iter() {
        let base = tokens[lo..hi].iter().map(|t| t.1).min()?;
        let at_base = (lo..hi).filter(|&i| tokens[i].1 == base);
        let found = match segment {
            Segment::Map { key } => at_base.into_iter().find(|&i| {
                let t = tokens[i].3;
                !tokens[i].2
                    && [key.as_str(), &format!("\"{key}\""), &format!("'{key}'")]
                        .iter()
                        .any(|k| {
                            t.strip_prefix(k)
                                .is_some_and(|r| r.trim_start().starts_with(':'))
                        })
            }),
            Segment::Seq { index } => at_base.filter(|&i| tokens[i].2).nth(*index),
            _ => None,
        }?;
        line = Some(tokens[found].0);
        lo = found + 1;
        hi = (lo..hi).find(|&i| tokens[i].1 <= base).unwrap_or(hi);
        if lo >= hi {
            break;
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file issue 3 requires to be accepted as is.
    const EXAMPLE: &str = r#"
metrics_addr: "127.0.0.1:9477"
interval: 2s
tenants:
  env_var: GPROF_TENANT
  default: unassigned
thresholds:
  - metric: goroutine_leak_rate_per_min
    warning: 600
    critical: 1200
    for: 10s
alerting:
  alertmanager_url: "http://127.0.0.1:9093"
"#;

    fn err(text: &str) -> String {
        Config::parse("gprof.yaml", text).unwrap_err().to_string()
    }

    #[test]
    fn census_limits_with_their_units() {
        assert_eq!(parse_bytes("48MiB"), Ok(48 << 20));
        assert_eq!(parse_bytes("1Gi"), Ok(1 << 30));
        assert_eq!(parse_bytes("64MB"), Ok(64_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("lots").is_err() && parse_bytes("99999999999GiB").is_err());
        let c = Config::parse("g.yaml", "census:\n  cpu_percent: 2\n  memory: 96MiB\n").unwrap();
        assert_eq!(c.census.limits().memory_bytes, 96 << 20);
        assert_eq!(c.census.limits().cpu_share, 0.02);
        let d = Config::parse("g.yaml", "{}").unwrap();
        assert_eq!(
            d.census.limits(),
            crate::config::params::CensusLimits::default()
        );
        assert!(err("census:\n  memory: 12 parsecs\n").contains("census.memory"));
        assert!(err("census:\n  cpu_percent: 0\n").contains("census.cpu_percent"));
    }

    #[test]
    fn accepts_the_documented_example() {
        let c = Config::parse("gprof.yaml", EXAMPLE).unwrap();
        assert_eq!(c.metrics_addr, "127.0.0.1:9477".parse().unwrap());
        assert_eq!(c.interval.0, Duration::from_secs(2));
        assert_eq!(c.tenants.env_var, "GPROF_TENANT");
        assert_eq!(c.tenants.default, "unassigned");
        let t = &c.thresholds[0];
        assert_eq!(t.metric, Metric::GoroutineLeakRatePerMin);
        assert_eq!((t.warning, t.critical), (Some(600.0), Some(1200.0)));
        assert_eq!(t.hold, Duration::from_secs(10));
        assert_eq!(t.scope, ThresholdScope::Tenant);
        assert_eq!(t.alertname, "GprofGoroutineLeak");
        assert_eq!(
            c.alerting.alertmanager_url.as_deref(),
            Some("http://127.0.0.1:9093")
        );
    }

    #[test]
    fn an_empty_file_means_defaults() {
        let c = Config::parse("gprof.yaml", "{}").unwrap();
        assert_eq!(c.metrics_addr.port(), 9477);
        assert!(c.thresholds.is_empty());
        assert!(c.alerting.alertmanager_url.is_none());
    }

    #[test]
    fn errors_name_the_key_and_the_line() {
        let cases: &[(&str, &str)] = &[
            (
                "metrics_addr: \"127.0.0.1:9477\"\nintervall: 2s\n",
                "gprof.yaml: line 2: intervall: unknown field `intervall`",
            ),
            (
                "thresholds:\n  - metric: goroutines\n    warning: 10\n    fro: 10s\n",
                "gprof.yaml: line 4: thresholds[0].fro: unknown field `fro`",
            ),
            (
                "interval: 2 parsecs\n",
                "gprof.yaml: line 1: interval: invalid duration \"2 parsecs\"",
            ),
            (
                "thresholds:\n  - metric: goroutines\n    warning: 10\n    for: soon\n",
                "gprof.yaml: line 4: thresholds[0].for: invalid duration \"soon\"",
            ),
            (
                "thresholds:\n  - metric: goroutine_count\n    warning: 1\n",
                "gprof.yaml: line 2: thresholds[0].metric: unknown variant `goroutine_count`",
            ),
            (
                "thresholds:\n  - metric: goroutines\n    warning: 100\n    critical: 10\n",
                "gprof.yaml: line 2: thresholds[0]: threshold on goroutines: warning (100) must be below critical (10)",
            ),
            (
                "thresholds:\n  - metric: health_score\n    warning: 20\n    critical: 50\n",
                "gprof.yaml: line 2: thresholds[0]: threshold on health_score: warning (20) must be above critical (50)",
            ),
            (
                "thresholds:\n  - metric: goroutines\n  - metric: goroutines\n",
                "gprof.yaml: line 2: thresholds[0]: threshold on goroutines sets neither warning nor critical",
            ),
            (
                "tenants:\n  default: x\n  rules:\n    - tenant: a\n      comm: \"(\"\n",
                "gprof.yaml: line 5: tenants.rules[0].comm: invalid regex \"(\"",
            ),
            (
                "alerting:\n  alertmanager_url: https://am:9093\n",
                "gprof.yaml: line 2: alerting.alertmanager_url: \"https://am:9093\": only http:// URLs are supported",
            ),
            (
                "metrics_addr: nowhere\n",
                "gprof.yaml: line 1: metrics_addr: invalid socket address syntax",
            ),
            (
                "thresholds: 5\n",
                "gprof.yaml: line 1: thresholds: invalid type: integer `5`, expected a sequence",
            ),
            (
                "interval: 10ms\n",
                "gprof.yaml: interval: must be at least 100ms",
            ),
            (
                "health:\n  leak_wieght: 3\n",
                "gprof.yaml: line 2: health.leak_wieght: unknown field `leak_wieght`",
            ),
        ];
        for (text, want) in cases {
            let e = err(text);
            assert!(
                e.starts_with(want),
                "for {text:?}\n got: {e}\nwant: {want}..."
            );
        }
        assert!(err(": :\n  - [").starts_with("gprof.yaml: "));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(
            parse_duration("2 minutes").unwrap(),
            Duration::from_secs(120)
        );
        for bad in ["", "10", "s", "10x", "-1s", "1e400s", "1s garbage"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
