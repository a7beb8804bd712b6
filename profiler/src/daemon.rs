//! `gprof daemon`: watches every Go process on the node. Discovery attaches to new processes
//! (probes per executable file, shared by its processes), sampling turns them into one
//! [`DaemonSnapshot`] per interval, and the snapshot feeds the alert engine, Alertmanager and
//! `/metrics`.
//!
//! The kernel work runs on this thread; the HTTP endpoint and Alertmanager delivery run on a
//! small tokio runtime beside it, so that neither can stall sampling.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;

use crate::alerts::AlertEngine;
use crate::budget::{BudgetConfig, HotControl, HotLoad, SURGE_CHECK};
use crate::collector::HotProbes;
use crate::collector::Windows;
use crate::config::Config;
use crate::discovery::Discovery;
use crate::health::HealthModel;
use crate::http::{self, Published};
use crate::kernel::{ExeKey, Kernel, Scope};
use crate::notify::Notifier;
use crate::process::{Process, ProcessId};
use crate::render::prometheus::{self, SelfUsage};
use crate::snapshot::{DaemonSnapshot, DaemonStats, ProcessRecord, TenantSnapshot};
use crate::target::{self, Executable, Inspected, Target, TargetError, monotonic_ns};
use crate::tenancy::{Facts, Placement, Tenancy};

/// Executables refused (unsupported release, unreadable layout) are remembered so that each
/// is reported once; the set is cleared when it grows past this.
const MAX_REFUSED: usize = 4096;
/// How long an executable keeps its probes (and its plan) after its last process exits:
/// processes that run it again (restarts, cron jobs, short-lived workers) reuse them instead
/// of paying for a new plan and attachment each time.
const EXE_GRACE: Duration = Duration::from_secs(60);
/// Idle executables kept attached at most (the longest idle go first).
const MAX_IDLE_EXECUTABLES: usize = 64;

struct Watched {
    target: Target,
    placement: Placement,
    /// Samples failed in a row; the process is sampled again after 1, 2, 4 ... 32 rounds.
    failures: u32,
    /// No sample before this (a failing process backs off).
    retry_at: Option<Instant>,
}

/// Why a sample failed: the `reason` label of `gprof_sample_errors_total`.
pub const SAMPLE_ERROR_REASONS: &[&str] =
    &["process_read", "permission", "runtime_read", "kernel_map"];

fn sample_error_reason(e: &TargetError) -> &'static str {
    use crate::process::ProcessError;
    match e {
        TargetError::Process(ProcessError::Permission(_) | ProcessError::PermissionAsRoot(_)) => {
            "permission"
        }
        TargetError::State { .. } => "runtime_read",
        TargetError::Kernel(_) => "kernel_map",
        _ => "process_read",
    }
}

/// The longest back-off of a failing process, in sampling rounds.
const MAX_BACKOFF_ROUNDS: u32 = 32;

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
    use crate::probes::PlanError;
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
            crate::process::ProcessError::Permission(_)
            | crate::process::ProcessError::PermissionAsRoot(_),
        ) => "permission",
        _ => "attach_failed",
    }
}

/// The set of watched processes and their shared probes.
pub struct Watcher {
    kernel: Kernel,
    discovery: Discovery,
    tenancy: Tenancy,
    windows: Windows,
    health: HealthModel,
    targets: BTreeMap<u32, Watched>,
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
    sample_errors: BTreeMap<String, u64>,
    census_errors: u64,
    /// The hot probes of each attached executable, under the budget.
    hot: HashMap<ExeKey, HotControl>,
    budget: BudgetConfig,
    interval: Duration,
    /// When surges are looked for next.
    next_surge_check: Instant,
}

/// Surge checks read one word per process: with many processes they space out, so that they
/// cost at most about 500 reads per second.
const SURGE_CHECK_PER_PROCESS: Duration = Duration::from_millis(2);

impl Watcher {
    pub fn new(kernel: Kernel, config: &Config) -> Self {
        Self {
            kernel,
            discovery: Discovery::new(config.discovery.exclude_comm.clone()),
            tenancy: Tenancy::new(config.tenants.clone()),
            windows: config.windows(),
            health: config.health,
            targets: BTreeMap::new(),
            executables: HashMap::new(),
            idle: HashMap::new(),
            refused: HashMap::new(),
            failed_logged: HashSet::new(),
            unwatched: HashMap::new(),
            pending: VecDeque::new(),
            queued: HashSet::new(),
            attach_failures: 0,
            sample_errors: SAMPLE_ERROR_REASONS
                .iter()
                .map(|r| (r.to_string(), 0))
                .collect(),
            census_errors: 0,
            hot: HashMap::new(),
            budget: config.budget.config(),
            interval: config.interval.0,
            next_surge_check: Instant::now(),
        }
    }

    /// Attaches to the Go processes that appeared since the last call, for `budget` at most:
    /// planning many new executables takes a while, and sampling must not stall meanwhile.
    /// The rest wait for the next call.
    pub fn discover(&mut self, budget: Duration) {
        let started = Instant::now();
        for process in self.discovery.scan() {
            if self.queued.insert(process.id) {
                self.pending.push_back(process);
            }
        }
        while started.elapsed() < budget
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
        {
            let pid = process.pid();
            // A reused PID: the old process is gone.
            // The PID is watched already: the process execed another program, or the PID was
            // reused by a new process.
            if let Some(old) = self.targets.get(&pid) {
                let why = if old.target.process.id == process.id {
                    "replaced its program (exec)"
                } else {
                    "exited (its PID was reused)"
                };
                self.forget(pid, why);
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
                .targets
                .values()
                .map(|w| w.placement.tenant.as_str())
                .collect();
            let placement = self.tenancy.place(pid, &facts, &in_use);
            let id = process.id;
            let inspected = Inspected { process, exe };
            match Target::attach(
                &mut self.kernel,
                &inspected,
                Scope::AllProcesses,
                self.windows,
                self.health,
                self.budget.fraction_of_core.is_some(),
            ) {
                Ok(target) => {
                    log::info!(
                        "watching pid={pid} comm={} go={} tenant={}{}",
                        target.process.comm,
                        target.go_version,
                        placement.tenant,
                        match (&placement.pod, &placement.pod_uid) {
                            (Some(pod), _) => format!(" pod={pod}"),
                            (None, Some(uid)) => format!(" pod_uid={uid}"),
                            _ => String::new(),
                        }
                    );
                    self.targets.insert(
                        pid,
                        Watched {
                            target,
                            placement,
                            failures: 0,
                            retry_at: None,
                        },
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
    }

    /// Stops watching a process; detaches its executable's probes when it was the last user.
    fn forget(&mut self, pid: u32, why: &str) {
        if let Some(w) = self.targets.remove(&pid) {
            w.target.unwatch(&mut self.kernel);
            log::info!(
                "pid={pid} comm={} {why}; no longer watched",
                w.target.process.comm
            );
        }
    }

    /// Between samples: detaches the hot probes of an executable at once if creations surge
    /// in one of its processes.
    fn check_surges(&mut self) {
        let now = Instant::now();
        if now < self.next_surge_check {
            return;
        }
        let mut demand: HashMap<ExeKey, f64> = HashMap::new();
        let mut reads = 0;
        for w in self.targets.values_mut() {
            if !self
                .hot
                .get(&w.target.exe)
                .is_some_and(HotControl::watches_for_surges)
            {
                continue;
            }
            reads += 1;
            if let Some(d) = w.target.creation_demand_now() {
                let e = demand.entry(w.target.exe).or_insert(0.0);
                *e = e.max(d);
            }
        }
        self.next_surge_check = now + SURGE_CHECK.max(SURGE_CHECK_PER_PROCESS * reads);
        for (key, d) in demand {
            if let Some(control) = self.hot.get_mut(&key) {
                control.check_surge(&mut self.kernel, d);
            }
        }
    }

    /// One budget step per attached executable, on the busiest of its processes. An
    /// executable with a process whose counts need the probes keeps them attached.
    fn steer_hot_probes(&mut self) {
        let (now, now_ns) = (Instant::now(), monotonic_ns());
        let mut per_exe: HashMap<ExeKey, (HotLoad, bool)> = HashMap::new();
        for w in self.targets.values() {
            let e = per_exe
                .entry(w.target.exe)
                .or_insert((HotLoad::default(), true));
            let load = w.target.hot_load();
            if load.demand_per_s > e.0.demand_per_s {
                // The busiest process's demand, against its own CPU time.
                e.0.demand_per_s = load.demand_per_s;
                e.0.cpu_cores = load.cpu_cores;
            }
            e.0.hits = e.0.hits.max(load.hits);
            e.1 &= w.target.has_exact_counts();
        }
        self.hot.retain(|key, _| self.executables.contains_key(key));
        for (key, (load, exact)) in per_exe {
            let limited = self.hot.get(&key).is_some_and(HotControl::is_limited);
            if limited && !exact {
                // A process whose live count depends on the probes joined: back to always on.
                let _ = self.kernel.set_hot(key, true);
                self.hot.remove(&key);
            }
            let budget = self.budget;
            let attached = self.kernel.hot_is_on(key);
            let control = self
                .hot
                .entry(key)
                .or_insert_with(|| HotControl::new(key, budget, exact, attached, now_ns));
            control.step(&mut self.kernel, now, now_ns, self.interval, load);
        }
    }

    /// Detaches executables idle for longer than [`EXE_GRACE`], or beyond
    /// [`MAX_IDLE_EXECUTABLES`].
    fn expire_idle_executables(&mut self, now: Instant) {
        let used: HashSet<ExeKey> = self.targets.values().map(|w| w.target.exe).collect();
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
                self.kernel.detach(key);
                self.executables.remove(&key);
                self.idle.remove(&key);
            }
        }
    }

    /// Samples every watched process; processes that exited are forgotten.
    pub fn sample(&mut self) -> DaemonSnapshot {
        self.kernel.flush_logs();
        let events = self.kernel.drain_events();
        let sites = self.kernel.site_counts();
        let mut gone = Vec::new();
        let mut processes = Vec::new();
        let now = Instant::now();
        for (&pid, w) in &mut self.targets {
            if w.retry_at.is_some_and(|t| now < t) {
                continue;
            }
            let hot = self
                .hot
                .get(&w.target.exe)
                .map_or(HotProbes::ALWAYS, HotControl::probes);
            let result = w.target.sample(&self.kernel, &events, &sites, hot);
            self.census_errors += w.target.take_census_errors();
            match result {
                Ok(snapshot) => {
                    if w.failures > 0 {
                        log::info!(
                            "pid={pid} comm={} sampled again after {} failed samples",
                            w.target.process.comm,
                            w.failures
                        );
                    }
                    (w.failures, w.retry_at) = (0, None);
                    processes.push(ProcessRecord {
                        start_time: w.target.process.id.start_time,
                        tenant: w.placement.tenant.clone(),
                        pod_uid: w.placement.pod_uid.clone(),
                        container_id: w.placement.container_id.clone(),
                        snapshot,
                    })
                }
                Err(TargetError::Gone(_)) => gone.push((pid, "exited".to_string())),
                Err(TargetError::Execed(_)) => {
                    gone.push((pid, "replaced its program (exec)".to_string()))
                }
                // Anything else may pass (a process stopped or briefly unreadable): it stays
                // attached and is sampled again, less and less often, until it reads or exits.
                Err(e) => {
                    let reason = sample_error_reason(&e);
                    *self.sample_errors.entry(reason.to_string()).or_default() += 1;
                    w.failures += 1;
                    let rounds = (1u32 << (w.failures - 1).min(5)).min(MAX_BACKOFF_ROUNDS);
                    // Half a round early, so that the retry falls in the intended round.
                    w.retry_at = Some(now + self.interval * rounds - self.interval / 2);
                    if w.failures == 1 {
                        log::warn!(
                            "pid={pid} comm={}: sample failed (reason={reason}): {:#}; retrying, backing off",
                            w.target.process.comm,
                            anyhow::Error::from(e)
                        );
                    }
                }
            }
        }
        for (pid, why) in gone {
            self.forget(pid, &why);
        }
        self.expire_idle_executables(Instant::now());
        self.steer_hot_probes();
        self.unwatched.retain(|_, (p, _)| p.is_alive());
        let mut unwatched: BTreeMap<String, usize> = UNWATCHED_REASONS
            .iter()
            .map(|r| (r.to_string(), 0))
            .collect();
        for (_, reason) in self.unwatched.values() {
            *unwatched.entry(reason.to_string()).or_default() += 1;
        }
        *unwatched.entry("sample_failing".into()).or_default() +=
            self.targets.values().filter(|w| w.failures > 0).count();
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
                kernel_filter_entries: self.kernel.filter_entries(),
                kernel_site_entries: self.kernel.site_entries(),
                attach_failures_total: self.attach_failures,
                unwatched_processes: unwatched,
                sample_errors_total: self.sample_errors.clone(),
                census_errors_total: self.census_errors,
                kernel_losses: self.kernel.losses(),
                ..Default::default()
            },
        }
    }

    pub fn watched(&self) -> usize {
        self.targets.len()
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
    let published: Published = http::State::new(config.interval.0);
    runtime.spawn(http::serve(listener, published.clone()));

    let node = std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty());
    let resend = config.alerting.resend_interval.0;
    let notifier = config.alerting.alertmanager_url.clone().map(|url| {
        let host = node
            .clone()
            .unwrap_or_else(|| config.metrics_addr.to_string());
        Notifier::spawn(
            runtime.handle(),
            url,
            resend * 3,
            format!("http://{host}/metrics"),
        )
    });
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
            let mut snapshot = watcher.sample();
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
            let text = prometheus::render(&snapshot, env!("CARGO_PKG_VERSION"), SelfUsage::read());
            published.publish(text);
            next_sample += interval;
            if next_sample < now {
                next_sample = now + interval;
            }
        }
        let wake = next_discovery.min(next_sample);
        std::thread::sleep(
            wake.saturating_duration_since(Instant::now())
                .min(SURGE_CHECK),
        );
        watcher.check_surges();
    }
    log::info!("stopping: detaching from {} processes", watcher.watched());
    drop(watcher);
    runtime.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}
