//! Delivery of alerts to Alertmanager (API v2), off the daemon's main loop. Alertmanager
//! being slow or down never blocks the daemon: updates go through a bounded channel, are
//! merged by label set (the newest state of each alert wins), and are retried with
//! exponential backoff until delivered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::alerts::{Alert, alertmanager_body};

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
    tx: mpsc::Sender<Vec<Alert>>,
    pub stats: Arc<NotifyStats>,
}

impl Notifier {
    /// Starts the delivery task on the current tokio runtime. `expiry` is how long
    /// Alertmanager keeps a firing alert that is not re-sent.
    pub fn spawn(
        runtime: &tokio::runtime::Handle,
        url: String,
        expiry: Duration,
        generator: String,
    ) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL);
        let stats = Arc::new(NotifyStats::default());
        runtime.spawn(deliver(rx, url, expiry, generator, stats.clone()));
        Self { tx, stats }
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

async fn deliver(
    mut rx: mpsc::Receiver<Vec<Alert>>,
    url: String,
    expiry: Duration,
    generator: String,
    stats: Arc<NotifyStats>,
) {
    let mut pending: BTreeMap<BTreeMap<String, String>, Alert> = BTreeMap::new();
    let mut backoff = Duration::from_secs(1);
    let merge = |pending: &mut BTreeMap<_, _>, batch: Vec<Alert>| {
        for a in batch {
            pending.insert(a.labels.clone(), a);
        }
        while pending.len() > MAX_PENDING {
            pending.pop_first();
            stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    };
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(batch) => merge(&mut pending, batch),
                None => return,
            }
        }
        while let Ok(batch) = rx.try_recv() {
            merge(&mut pending, batch);
        }
        let alerts: Vec<Alert> = pending.values().cloned().collect();
        let body = alertmanager_body(&alerts, SystemTime::now(), expiry, &generator);
        match post(&url, "/api/v2/alerts", body.as_bytes()).await {
            Ok(status) if (200..300).contains(&status) => {
                stats
                    .delivered
                    .fetch_add(alerts.len() as u64, Ordering::Relaxed);
                pending.clear();
                backoff = Duration::from_secs(1);
                continue;
            }
            Ok(status) => {
                log::warn!("alertmanager {url} answered {status}; retrying in {backoff:?}")
            }
            Err(e) => log::warn!("alertmanager {url}: {e}; retrying in {backoff:?}"),
        }
        stats.failed.fetch_add(1, Ordering::Relaxed);
        // Wait out the backoff, but keep taking updates so that the retry sends the latest.
        let sleep = tokio::time::sleep(backoff);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => break,
                batch = rx.recv() => match batch {
                    Some(b) => merge(&mut pending, b),
                    None => return,
                },
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// POSTs JSON to `base` + `path` (base is `http://host[:port][/prefix]`) and returns the
/// status code.
pub async fn post(base: &str, path: &str, body: &[u8]) -> Result<u16, String> {
    let rest = base
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (authority, prefix) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let target = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let request_path = format!("/{}{path}", prefix.trim_matches('/')).replace("//", "/");
    let exchange = async {
        let mut stream = TcpStream::connect(&target)
            .await
            .map_err(|e| format!("connect {target}: {e}"))?;
        let head = format!(
            "POST {request_path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        stream.write_all(body).await.map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        let mut buf = [0u8; 1024];
        while !response.windows(2).any(|w| w == b"\r\n") && response.len() < 8192 {
            let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buf[..n]);
        }
        let line = String::from_utf8_lossy(&response);
        line.split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad response {:?}", line.lines().next().unwrap_or("")))
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {TIMEOUT:?}"))?
}
