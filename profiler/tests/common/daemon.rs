//! `gprof daemon` and a real Alertmanager for the end-to-end tests, and reading series from
//! the daemon's /metrics.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Spawned, free_port, gprof, http_get, metric, wait_for};

/// The daemon, with its log lines collected (stderr); stopped with SIGTERM on drop.
pub struct Daemon {
    child: Child,
    log: Arc<Mutex<Vec<(Instant, String)>>>,
    pub port: u16,
}

impl Daemon {
    /// Starts `gprof daemon` with `config` (YAML) on a free metrics port, plus `args`, and
    /// waits until it serves.
    pub fn start(config: &str, args: &[&str]) -> Self {
        Self::start_with_env(config, args, &[])
    }

    /// [`Self::start`] with variables added to the daemon's environment.
    pub fn start_with_env(config: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "gprof-daemon-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gprof.yaml");
        std::fs::write(&path, config).unwrap();
        let port = free_port();
        let mut child = Command::new(gprof())
            .args(["daemon", "--config"])
            .arg(&path)
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push((Instant::now(), line));
            }
        });
        let d = Self { child, log, port };
        assert!(
            wait_for(Duration::from_secs(20), || http_get(port, "/healthz")
                .is_some()),
            "the daemon did not start: {:?}",
            d.log.lock().unwrap()
        );
        d
    }

    pub fn metrics(&self) -> String {
        http_get(self.port, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// An unlabelled gauge of the daemon's own (NaN when missing).
    pub fn gauge(&self, name: &str) -> f64 {
        metric(&self.metrics(), name).unwrap_or(f64::NAN)
    }

    /// When the daemon logged a line containing `needle`.
    pub fn logged(&self, needle: &str) -> Option<Instant> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .find(|(_, l)| l.contains(needle))
            .map(|(t, _)| *t)
    }

    pub fn log_text(&self) -> String {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    /// SIGTERM: the daemon detaches and exits. Returns whether it did within 10 s.
    pub fn stop(&mut self) -> bool {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        wait_for(Duration::from_secs(10), || !self.is_running())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !self.stop() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The first sample of `name` whose labels contain `label` (e.g. `pid="42"`), whole.
pub fn series_line<'a>(text: &'a str, name: &str, label: &str) -> Option<&'a str> {
    let prefix = format!("{name}{{");
    text.lines()
        .find(|l| l.starts_with(&prefix) && l.contains(label))
}

/// The value of that sample.
pub fn series(text: &str, name: &str, label: &str) -> Option<f64> {
    series_line(text, name, label).and_then(series_value)
}

/// The value of one series line of the text format.
pub fn series_value(line: &str) -> Option<f64> {
    line.rsplit(' ').next()?.parse().ok()
}

/// The value of label `name` in one series line of the text format (unescaped: a `\"` does
/// not end it).
pub fn label_value(line: &str, name: &str) -> Option<String> {
    let key = format!("{name}=\"");
    let at = line.find(&key)? + key.len();
    let mut value = String::new();
    let mut chars = line[at..].chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => value.push(chars.next()?),
            '"' => return Some(value),
            c => value.push(c),
        }
    }
    None
}

/// The `pid` label of a process, for [`series`].
pub fn pid_label(pid: u32) -> String {
    format!("pid=\"{pid}\"")
}

/// The entries of the kernel's creation-site map (`SITES`) of the gprof process `owner`, by
/// the process (tgid) they count, as bpftool reads them: the kernel's own account, not gprof's.
pub fn kernel_site_entries(owner: u32) -> std::collections::BTreeMap<u32, usize> {
    let bpftool = |args: &[&str]| -> Value {
        let out = Command::new("bpftool")
            .arg("-j")
            .args(args)
            .output()
            .expect("bpftool (cargo xtask setup installs it)");
        assert!(
            out.status.success(),
            "bpftool {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("bpftool's JSON")
    };
    // The maps the process holds: its descriptors' `map_id` (fdinfo), by name (bpftool).
    let held: Vec<u64> = std::fs::read_dir(format!("/proc/{owner}/fdinfo"))
        .expect("the daemon's fdinfo")
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("map_id:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .collect();
    let maps = bpftool(&["map", "show"]);
    let id = maps
        .as_array()
        .expect("a list of maps")
        .iter()
        .find(|m| m["name"] == "SITES" && m["id"].as_u64().is_some_and(|id| held.contains(&id)))
        .unwrap_or_else(|| panic!("no SITES map held by PID {owner} (maps {held:?}): {maps}"))["id"]
        .to_string();
    let mut by_tgid = std::collections::BTreeMap::new();
    for entry in bpftool(&["map", "dump", "id", &id])
        .as_array()
        .expect("the map's entries")
    {
        // The key starts with the tgid (profiler_common::SiteKey), little-endian.
        let bytes: Vec<u8> = entry["key"]
            .as_array()
            .expect("a key of bytes")
            .iter()
            .map(|b| u8::from_str_radix(b.as_str().unwrap().trim_start_matches("0x"), 16).unwrap())
            .collect();
        let tgid = u32::from_le_bytes(bytes[..4].try_into().unwrap());
        *by_tgid.entry(tgid).or_insert(0) += 1;
    }
    by_tgid
}

/// A real Alertmanager on loopback that routes everything nowhere; killed on drop.
pub struct Alertmanager {
    _child: Spawned,
    pub port: u16,
}

impl Alertmanager {
    /// Debian's Alertmanager for `test`, its state in a fresh temporary folder (returned, for
    /// the test to remove); None (the test skipped) when it is not installed.
    pub fn for_test(test: &str) -> Option<(Self, std::path::PathBuf)> {
        let Some(binary) = super::which("prometheus-alertmanager") else {
            super::skip(
                test,
                "prometheus-alertmanager is needed (cargo xtask setup)",
            );
            return None;
        };
        let dir = std::env::temp_dir().join(format!("gprof-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Some((Self::start(&binary, &dir), dir))
    }

    /// Starts `binary` with its state under `dir`, and waits until it is ready.
    pub fn start(binary: &Path, dir: &Path) -> Self {
        let port = free_port();
        std::fs::write(
            dir.join("am.yml"),
            "route:\n  receiver: none\nreceivers:\n  - name: none\n",
        )
        .unwrap();
        let child = Spawned::start(Command::new(binary).args([
            format!("--config.file={}", dir.join("am.yml").display()),
            format!("--storage.path={}", dir.join("am-data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--cluster.listen-address=".into(),
        ]));
        assert!(wait_for(Duration::from_secs(20), || http_get(
            port, "/-/ready"
        )
        .is_some_and(|(s, _)| s == 200)));
        Self {
            _child: child,
            port,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The active alerts it holds.
    pub fn alerts(&self) -> Vec<Value> {
        http_get(
            self.port,
            "/api/v2/alerts?active=true&silenced=false&inhibited=false",
        )
        .and_then(|(s, b)| (s == 200).then_some(b))
        .and_then(|b| serde_json::from_str::<Value>(&b).ok())
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
    }
}

/// A real Prometheus (Debian's) on loopback, scraping one gprof daemon every second.
pub struct Prometheus {
    _child: Spawned,
    pub port: u16,
}

impl Prometheus {
    /// Starts Prometheus with its data under `dir`, scraping `127.0.0.1:target_port` with
    /// `labels` added to the target (as the ServiceMonitor's relabeling adds `node`), and waits
    /// until it is ready; None (the test skipped) when it is not installed.
    pub fn for_test(
        test: &str,
        dir: &Path,
        target_port: u16,
        labels: &[(&str, &str)],
    ) -> Option<Self> {
        let Some(binary) = super::which("prometheus") else {
            super::skip(test, "prometheus is needed (cargo xtask setup)");
            return None;
        };
        let port = free_port();
        let labels: String = labels
            .iter()
            .map(|(k, v)| format!("        {k}: '{v}'\n"))
            .collect();
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("      labels:\n{labels}")
        };
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: gprof\n    static_configs:\n    - targets: ['127.0.0.1:{target_port}']\n{labels}"
            ),
        )
        .unwrap();
        let child = Spawned::start(Command::new(binary).args([
            format!("--config.file={}", dir.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.join("prom-data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ]));
        assert!(
            wait_for(Duration::from_secs(20), || http_get(port, "/-/ready")
                .is_some_and(|(s, _)| s == 200)),
            "{test}: Prometheus did not become ready"
        );
        Some(Self {
            _child: child,
            port,
        })
    }

    fn api(&self, path: &str) -> Result<Value, String> {
        let (status, body) =
            http_get(self.port, path).ok_or_else(|| format!("no answer to {path}"))?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{path}: {e}: {body}"))?;
        if status != 200 || v["status"] != "success" {
            return Err(format!("{path}: {status} {body}"));
        }
        Ok(v["data"].clone())
    }

    /// An instant query's result vector.
    pub fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api(&format!("/api/v1/query?query={}", url_encode(expr)))?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// A range query's series, from `start` to `end` (Unix seconds) every `step` seconds.
    pub fn query_range(
        &self,
        expr: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<Value>, String> {
        let data = self.api(&format!(
            "/api/v1/query_range?query={}&start={start}&end={end}&step={step}",
            url_encode(expr)
        ))?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// The values of `label` over the series `matcher` selects (Grafana's `label_values`).
    pub fn label_values(&self, label: &str, matcher: &str) -> Result<Vec<String>, String> {
        let data = self.api(&format!(
            "/api/v1/label/{label}/values?match[]={}",
            url_encode(matcher)
        ))?;
        Ok(data
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect())
    }
}

/// Percent-encodes everything but letters, digits and `_` (for a query string).
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
