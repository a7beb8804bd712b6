//! `gprof daemon`: watches every Go process on the node. Discovery attaches to new processes
//! (probes per executable file, shared by its processes), sampling turns them into one
//! [`DaemonSnapshot`] per interval, and the snapshot feeds the alert engine, Alertmanager and
//! `/metrics`.
//!
//! The kernel work runs on this thread; the HTTP endpoint runs on a small tokio runtime and
//! Alertmanager delivery on a thread of its own, so that neither can stall sampling.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;

use crate::attach::kernel::{AttachScope, ExeKey, Kernel};
use crate::collect::sampler::{Outcome, Sampler, SamplerSettings};
use crate::collect::target::{self, Executable, Inspected, TargetError};
use crate::config::Config;
use crate::inspect::process::{Process, ProcessId};
use crate::model::snapshot::{DaemonSnapshot, DaemonStats, ProcessRecord, TenantSnapshot};
use crate::serve::alerts::AlertEngine;
use crate::serve::discovery::ProcessScanner;
use crate::serve::http::{self, Published};
use crate::serve::notify::Notifier;
use crate::serve::tenancy::{Attribution, Facts, Tenancy};

/// Executables refused (unsupported release, unreadable layout) are remembered so that each
/// is reported once; the set is cleared when it grows past this.
const MAX_REFUSED: usize = 4096;
/// How long an executable keeps its probes (and its plan) after its last process exits:
/// processes that run it again (restarts, cron jobs, short-lived workers) reuse them instead
/// of paying for a new plan and attachment each time.
const EXE_GRACE: Duration = Duration::from_secs(60);
/// Idle executables kept attached at most (the longest idle go first).
const MAX_IDLE_EXECUTABLES: usize = 64;

/// Why a Go process is not watched: the `reason` label of `gprof_unwatched_processes`.
pub const UNWATCHED_REASONS: &[&str] = &[
    "unsupported_release",
    "unreadable_binary",
    "no_safe_probe_site",
    "globals_not_found",
    "self_check_failed",
    "permission",
    "attach_failed",
    "sample_failing",
];

fn unwatched_reason(e: &TargetError) -> &'static str {
    use crate::inspect::plan::PlanError;
    match e {
        TargetError::Plan { source, .. } => match source {
            PlanError::Unsupported(_) => "unsupported_release",
            PlanError::Binary(_) => "unreadable_binary",
            PlanError::Disasm(_) => "no_safe_probe_site",
            PlanError::Globals(_) => "globals_not_found",
        },
        TargetError::NotGo { .. } => "unreadable_binary",
        TargetError::SelfCheck { .. } => "self_check_failed",
        TargetError::Process(
            crate::inspect::process::ProcessError::Permission(_)
            | crate::inspect::process::ProcessError::PermissionAsRoot(_),
        ) => "permission",
        _ => "attach_failed",
    }
}

/// The set of watched processes and their shared probes.
pub struct Watcher {
    sampler: Sampler<Attribution>,
    discovery: ProcessScanner,
    tenancy: Tenancy,
    executables: HashMap<ExeKey, Arc<Executable>>,
    /// Executables with no watched process, since when.
    idle: HashMap<ExeKey, Instant>,
    /// Executables whose plan failed, and why (each is logged once).
    refused: HashMap<ExeKey, &'static str>,
    /// Executables whose processes could not be attached to, and why, already logged.
    failed_logged: HashSet<(ExeKey, &'static str)>,
    /// Go processes found and not yet taken on (see [`Self::discover`]).
    pending: VecDeque<Process>,
    queued: HashSet<ProcessId>,
    /// Go processes not watched, and why (gone ones are dropped each sample).
    unwatched: HashMap<ProcessId, (Process, &'static str)>,
    attach_failures: u64,
}

impl Watcher {
    pub fn new(kernel: Kernel, config: &Config) -> Self {
        let settings = SamplerSettings {
            interval: config.interval.0,
            windows: config.windows(),
            health: config.health,
            budget: config.budget.config(),
            census: config.census.limits(),
        };
        Self {
            sampler: Sampler::new(kernel, settings),
            discovery: ProcessScanner::new(config.discovery.exclude_comm.clone()),
            tenancy: Tenancy::new(config.tenants.clone()),
            executables: HashMap::new(),
            idle: HashMap::new(),
            refused: HashMap::new(),
            failed_logged: HashSet::new(),
            unwatched: HashMap::new(),
            pending: VecDeque::new(),
            queued: HashSet::new(),
            attach_failures: 0,
        }
    }

    /// Attaches to the Go processes that appeared since the last call, for `time_limit` at most:
    /// planning many new executables takes a while, and sampling must not stall meanwhile.
    /// The rest wait for the next call.
    pub fn discover(&mut self, time_limit: Duration) {
        let started = Instant::now();
        for process in self.discovery.scan() {
            if self.queued.insert(process.id) {
                self.pending.push_back(process);
            }
        }
        while started.elapsed() < time_limit
            && let Some(process) = self.pending.pop_front()
        {
            self.queued.remove(&process.id);
            if process.is_alive() {
                self.take_on(process);
            }
        }
    }

    /// Plans (once per executable) and attaches to one Go process.
    fn take_on(&mut self, process: Process) {
        let pid = process.pid();
        // The PID is watched already: the process execed another program, or the PID was
        // reused by a new process.
        if let Some(old) = self.sampler.get(pid) {
            let why = if old.target.process.id == process.id {
                "replaced its program (exec)"
            } else {
                "exited (its PID was reused)"
            };
            self.forget(pid, why);
        }
        // Refused already, running the same program (its bookkeeping was forged, say):
        // nothing more to spend on it.
        if self
            .unwatched
            .get(&process.id)
            .is_some_and(|(p, _)| p.exe == process.exe)
        {
            return;
        }
        let key = ExeKey::of(&process);
        if let Some(&reason) = self.refused.get(&key) {
            self.unwatched.insert(process.id, (process, reason));
            return;
        }
        let exe = match self.executables.get(&key) {
            Some(e) => e.clone(),
            None => match target::plan_executable(&process) {
                Ok(e) => {
                    let e = Arc::new(e);
                    self.executables.insert(key, e.clone());
                    e
                }
                Err(TargetError::Gone(_) | TargetError::Execed(_)) => return,
                Err(e) => {
                    let reason = unwatched_reason(&e);
                    log::warn!(
                        "not watching {:#} (reason={reason}; said once per executable)",
                        anyhow::Error::from(e)
                    );
                    self.attach_failures += 1;
                    if self.refused.len() >= MAX_REFUSED {
                        self.refused.clear();
                    }
                    self.refused.insert(key, reason);
                    self.unwatched.insert(process.id, (process, reason));
                    return;
                }
            },
        };
        let facts = Facts::read(pid, self.tenancy.env_var(), &process.comm);
        let in_use: HashSet<&str> = self
            .sampler
            .targets()
            .map(|s| s.tag.tenant.as_str())
            .collect();
        let attribution = self.tenancy.attribute(pid, &facts, &in_use);
        let id = process.id;
        let inspected = Inspected { process, exe };
        let tenant = attribution.tenant.clone();
        let pod = match (&attribution.pod, &attribution.pod_uid) {
            (Some(pod), _) => format!(" pod={pod}"),
            (None, Some(uid)) => format!(" pod_uid={uid}"),
            _ => String::new(),
        };
        match self
            .sampler
            .attach(&inspected, AttachScope::AllProcesses, attribution)
        {
            Ok(watched) => {
                self.discovery.watching(pid);
                log::info!(
                    "watching pid={pid} comm={} go={} tenant={tenant}{pod}",
                    watched.target.process.comm,
                    watched.target.go_version,
                );
            }
            // Gone; or it execed since it was planned: the next scan sees its new program.
            Err(TargetError::Gone(_) | TargetError::Execed(_)) => {}
            Err(e) => {
                let reason = unwatched_reason(&e);
                if self.failed_logged.len() >= MAX_REFUSED {
                    self.failed_logged.clear();
                }
                if self.failed_logged.insert((key, reason)) {
                    log::warn!(
                        "cannot watch {:#} (reason={reason}; said once per executable)",
                        anyhow::Error::from(e)
                    );
                }
                self.attach_failures += 1;
                self.unwatched
                    .insert(id, (inspected.process.clone(), reason));
            }
        }
    }

    /// Stops watching a process (its executable's probes stay for [`EXE_GRACE`]).
    fn forget(&mut self, pid: u32, why: &str) {
        self.discovery.forget(pid);
        if let Some(s) = self.sampler.remove(pid) {
            log::info!(
                "pid={pid} comm={} {why}; no longer watched",
                s.target.process.comm
            );
        }
    }

    /// Stops watching a process whose runtime's bookkeeping stopped making sense (it forged
    /// it, or its memory is not what the plan said): its series go with it, it is counted
    /// among the unwatched (`self_check_failed`), logged once, and not taken on again.
    fn distrust(&mut self, pid: u32, e: TargetError) {
        let Some(s) = self.sampler.remove(pid) else {
            return;
        };
        log::warn!(
            "no longer watching {:#} (reason=self_check_failed; said once per process)",
            anyhow::Error::from(e)
        );
        // Discovery reads the PID again (it may be reused); `take_on` refuses this process.
        self.discovery.forget(pid);
        let process = s.target.process;
        self.unwatched
            .insert(process.id, (process, "self_check_failed"));
    }

    /// Detaches executables idle for longer than [`EXE_GRACE`], or beyond
    /// [`MAX_IDLE_EXECUTABLES`].
    fn expire_idle_executables(&mut self, now: Instant) {
        let used: HashSet<ExeKey> = self.sampler.targets().map(|s| s.target.exe).collect();
        for key in self.executables.keys() {
            if used.contains(key) {
                self.idle.remove(key);
            } else {
                self.idle.entry(*key).or_insert(now);
            }
        }
        let mut idle: Vec<(ExeKey, Instant)> = self.idle.iter().map(|(k, t)| (*k, *t)).collect();
        idle.sort_by_key(|&(_, since)| since);
        let excess = idle.len().saturating_sub(MAX_IDLE_EXECUTABLES);
        for (i, (key, since)) in idle.into_iter().enumerate() {
            if i < excess || now - since >= EXE_GRACE {
                self.sampler.detach_executable(key);
                self.executables.remove(&key);
                self.idle.remove(&key);
            }
        }
    }

    /// Samples every watched process; processes that exited are forgotten.
    pub fn sample(&mut self) -> DaemonSnapshot {
        let mut processes = Vec::new();
        for (pid, outcome) in self.sampler.sample() {
            match outcome {
                Outcome::Sampled(snapshot) => {
                    let Some(s) = self.sampler.get(pid) else {
                        continue;
                    };
                    processes.push(ProcessRecord {
                        start_time: s.target.process.id.start_time,
                        tenant: s.tag.tenant.clone(),
                        pod_uid: s.tag.pod_uid.clone(),
                        container_id: s.tag.container_id.clone(),
                        snapshot: *snapshot,
                    });
                }
                Outcome::Ended(e) => self.forget(
                    pid,
                    if matches!(e, TargetError::Execed(_)) {
                        "replaced its program (exec)"
                    } else {
                        "exited"
                    },
                ),
                Outcome::Distrusted(e) => self.distrust(pid, e),
                Outcome::Failed { reason, error } => {
                    let Some(s) = self.sampler.get(pid) else {
                        continue;
                    };
                    if s.failures == 1 {
                        log::warn!(
                            "pid={pid} comm={}: sample failed (reason={reason}): {:#}; retrying, backing off",
                            s.target.process.comm,
                            anyhow::Error::from(error)
                        );
                    }
                }
            }
        }
        self.expire_idle_executables(Instant::now());
        self.unwatched.retain(|_, (p, _)| p.is_alive());
        let mut unwatched: BTreeMap<String, usize> = UNWATCHED_REASONS
            .iter()
            .map(|r| (r.to_string(), 0))
            .collect();
        for (_, reason) in self.unwatched.values() {
            *unwatched.entry(reason.to_string()).or_default() += 1;
        }
        *unwatched.entry("sample_failing".into()).or_default() +=
            self.sampler.targets().filter(|s| s.failures > 0).count();
        let mut by_tenant: BTreeMap<&str, Vec<&ProcessRecord>> = BTreeMap::new();
        for r in &processes {
            by_tenant.entry(&r.tenant).or_default().push(r);
        }
        let tenants = by_tenant
            .iter()
            .map(|(t, records)| TenantSnapshot::aggregate(t, records))
            .collect();
        DaemonSnapshot {
            unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            tenants,
            processes,
            alerts: Vec::new(),
            stats: DaemonStats {
                attached_executables: self.executables.len(),
                kernel_filter_entries: self.sampler.kernel().filter_entries(),
                kernel_site_entries: self.sampler.kernel().site_entries(),
                attach_failures_total: self.attach_failures,
                unwatched_processes: unwatched,
                sample_errors_total: self.sampler.sample_errors().clone(),
                census_errors_total: self.sampler.census_errors(),
                census_tracked_goroutines: self.sampler.tracked().0,
                census_tracked_limit: self.sampler.tracked().1,
                kernel_losses: self.sampler.kernel().losses(),
                ..Default::default()
            },
        }
    }

    pub fn watched(&self) -> usize {
        self.sampler.len()
    }

    /// Sleeps until `deadline`, looking for creation surges meanwhile.
    pub fn wait_until(&mut self, deadline: Instant) {
        self.sampler.wait_until(deadline);
    }
}

/// Runs until SIGINT or SIGTERM.
pub fn run(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("gprof-io")
        .enable_all()
        .build()
        .context("starting the I/O runtime")?;
    let kernel = Kernel::load()?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(config.metrics_addr))
        .with_context(|| format!("metrics_addr {}: cannot listen", config.metrics_addr))?;
    let published: Published = http::Shared::new(config.interval.0, config.dumps.enabled);
    runtime.spawn(http::serve(listener, published.clone()));

    let node = std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty());
    let resend = config.alerting.resend_interval.0;
    let notifier = match config.alerting.alertmanager_url.clone() {
        Some(url) => {
            let host = node
                .clone()
                .unwrap_or_else(|| config.metrics_addr.to_string());
            let generator = format!("http://{host}/metrics");
            Some(
                Notifier::spawn(url, resend * 3, generator)
                    .context("starting the Alertmanager delivery thread")?,
            )
        }
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        runtime.spawn(async move {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        log::error!("cannot watch SIGTERM: {e}");
                        return;
                    }
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            stop.store(true, Ordering::Relaxed);
        });
    }
    let common: BTreeMap<String, String> = node
        .iter()
        .map(|n| ("node".to_string(), n.clone()))
        .collect();
    let mut engine = AlertEngine::new(config.thresholds.clone(), common);
    let mut watcher = Watcher::new(kernel, &config);
    log::info!(
        "gprof daemon {}: metrics on http://{}/metrics, sampling every {:?}, alerts to {}",
        env!("CARGO_PKG_VERSION"),
        config.metrics_addr,
        config.interval.0,
        config
            .alerting
            .alertmanager_url
            .as_deref()
            .unwrap_or("the log only")
    );

    let interval = config.interval.0;
    let discovery_every = config.discovery.interval.0;
    let mut next_discovery = Instant::now();
    let mut next_sample = Instant::now() + interval;
    let mut last_sent = Instant::now();
    let mut rounds = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= next_discovery {
            watcher.discover(interval);
            next_discovery = now + discovery_every;
        }
        if now >= next_sample {
            rounds += 1;
            crate::faults::stall_sample(rounds);
            let began = Instant::now();
            let mut snapshot = watcher.sample();
            snapshot.stats.round_seconds = began.elapsed().as_secs_f64();
            snapshot.stats.round_late_seconds =
                began.saturating_duration_since(next_sample).as_secs_f64();
            // Holds are measured on the sampling schedule, not on when the thread woke, so
            // that `for: 10s` means five 2 s intervals whatever the wake-up jitter.
            let changes = engine.evaluate(&snapshot, next_sample, SystemTime::now());
            snapshot.alerts = engine.firing();
            if let Some(n) = &notifier {
                let changed = !changes.fired.is_empty() || !changes.resolved.is_empty();
                if changed || (!snapshot.alerts.is_empty() && now - last_sent >= resend) {
                    let mut batch = changes.resolved;
                    batch.extend(snapshot.alerts.iter().cloned());
                    n.send(batch);
                    last_sent = now;
                }
                snapshot.stats.alert_notifications_failed_total =
                    n.stats.failed.load(Ordering::Relaxed);
                snapshot.stats.alert_notifications_dropped_total =
                    n.stats.dropped.load(Ordering::Relaxed);
            }
            published.publish(snapshot);
            next_sample += interval;
            if next_sample < now {
                next_sample = now + interval;
            }
        }
        watcher.wait_until(next_discovery.min(next_sample));
    }
    log::info!("stopping: detaching from {} processes", watcher.watched());
    drop(watcher);
    runtime.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}
