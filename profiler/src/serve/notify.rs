//! Delivery of alerts to Alertmanager (API v2), off the daemon's main loop. Alertmanager
//! being slow or down never blocks the daemon: updates go through a bounded channel, are
//! merged by label set (the newest state of each alert wins), and are retried with
//! exponential backoff until delivered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::time::{Duration, Instant, SystemTime};

use crate::model::alert::Alert;
use crate::serve::alerts::alertmanager_body;

/// Batches waiting in the channel; more are dropped (and counted).
const CHANNEL: usize = 16;
/// Distinct alerts kept for delivery; beyond this the oldest pending are dropped.
const MAX_PENDING: usize = 10_000;
const TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct NotifyStats {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

pub struct Notifier {
    tx: SyncSender<Vec<Alert>>,
    pub stats: Arc<NotifyStats>,
}

impl Notifier {
    /// Starts the delivery thread. `expiry` is how long Alertmanager keeps a firing alert
    /// that is not re-sent.
    pub fn spawn(url: String, expiry: Duration, generator: String) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(CHANNEL);
        let stats = Arc::new(NotifyStats::default());
        let delivery = Delivery {
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(TIMEOUT))
                .http_status_as_error(false)
                .build()
                .into(),
            endpoint: format!("{}/api/v2/alerts", url.trim_end_matches('/')),
            url,
            expiry,
            generator,
            stats: stats.clone(),
        };
        std::thread::Builder::new()
            .name("gprof-notify".into())
            .spawn(move || delivery.run(rx))?;
        Ok(Self { tx, stats })
    }

    /// Queues alerts for delivery without waiting.
    pub fn send(&self, alerts: Vec<Alert>) {
        if alerts.is_empty() {
            return;
        }
        if self.tx.try_send(alerts).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Delivery {
    agent: ureq::Agent,
    url: String,
    endpoint: String,
    expiry: Duration,
    generator: String,
    stats: Arc<NotifyStats>,
}

impl Delivery {
    /// Until the daemon drops its [`Notifier`].
    fn run(self, rx: Receiver<Vec<Alert>>) {
        let mut pending: BTreeMap<BTreeMap<String, String>, Alert> = BTreeMap::new();
        let mut backoff = Duration::from_secs(1);
        loop {
            if pending.is_empty() {
                match rx.recv() {
                    Ok(batch) => self.merge(&mut pending, batch),
                    Err(_) => return,
                }
            }
            loop {
                match rx.try_recv() {
                    Ok(batch) => self.merge(&mut pending, batch),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            let alerts: Vec<Alert> = pending.values().cloned().collect();
            let body = alertmanager_body(&alerts, SystemTime::now(), self.expiry, &self.generator);
            let url = &self.url;
            match self
                .agent
                .post(&self.endpoint)
                .header("Content-Type", "application/json")
                .send(body.as_bytes())
            {
                Ok(r) if r.status().is_success() => {
                    self.stats
                        .delivered
                        .fetch_add(alerts.len() as u64, Ordering::Relaxed);
                    pending.clear();
                    backoff = Duration::from_secs(1);
                    continue;
                }
                Ok(r) => log::warn!(
                    "alertmanager {url} answered {}; retrying in {backoff:?}",
                    r.status().as_u16()
                ),
                Err(e) => log::warn!("alertmanager {url}: {e}; retrying in {backoff:?}"),
            }
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            // Wait out the backoff, but keep taking updates so that the retry sends the latest.
            let until = Instant::now() + backoff;
            loop {
                let left = until.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(batch) => self.merge(&mut pending, batch),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// The newest state of each alert wins; beyond [`MAX_PENDING`] the oldest are dropped.
    fn merge(&self, pending: &mut BTreeMap<BTreeMap<String, String>, Alert>, batch: Vec<Alert>) {
        for a in batch {
            pending.insert(a.labels.clone(), a);
        }
        while pending.len() > MAX_PENDING {
            pending.pop_first();
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
