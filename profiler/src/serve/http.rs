//! The daemon's HTTP endpoint (axum): `GET /metrics` (Prometheus text format) and
//! `GET /healthz`; HEAD too, other methods get 405, other paths 404.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::model::snapshot::DaemonSnapshot;
use crate::render::prometheus::{self, SelfUsage};

/// A client must send a request's head within this.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection (keep-alive included) is closed after this.
const CONNECTION_LIMIT: Duration = Duration::from_secs(60);

/// What the daemon publishes: each round's snapshot, rendered as /metrics text when scraped
/// (once per round: scrapes in between reuse the text), and when it last sampled (/healthz).
pub struct Shared {
    latest: Mutex<Latest>,
    /// When the last sampling round ended (the start, before the first).
    last_sample: RwLock<Instant>,
    /// Sampling stalled this long: /healthz fails.
    stall_after: Duration,
}

#[derive(Default)]
struct Latest {
    snapshot: Option<Arc<DaemonSnapshot>>,
    text: Option<Arc<String>>,
}

pub type Published = Arc<Shared>;

impl Shared {
    /// `interval`: the sampling interval; /healthz fails after three without a sample.
    pub fn new(interval: Duration) -> Published {
        Arc::new(Self {
            latest: Mutex::new(Latest::default()),
            last_sample: RwLock::new(Instant::now()),
            stall_after: interval * 3,
        })
    }

    /// A sampling round ended with this snapshot.
    pub fn publish(&self, snapshot: DaemonSnapshot) {
        if let Ok(mut l) = self.latest.lock() {
            *l = Latest {
                snapshot: Some(Arc::new(snapshot)),
                text: None,
            };
        }
        if let Ok(mut t) = self.last_sample.write() {
            *t = Instant::now();
        }
    }

    /// The last round as /metrics text, rendered on the first scrape after the round.
    fn metrics(&self) -> Arc<String> {
        let snapshot = {
            let Ok(l) = self.latest.lock() else {
                return Arc::default();
            };
            if let Some(text) = &l.text {
                return text.clone();
            }
            match &l.snapshot {
                Some(s) => s.clone(),
                None => return Arc::default(),
            }
        };
        let text = Arc::new(prometheus::render(
            &snapshot,
            env!("CARGO_PKG_VERSION"),
            self_usage(),
        ));
        if let Ok(mut l) = self.latest.lock()
            && l.snapshot
                .as_ref()
                .is_some_and(|s| Arc::ptr_eq(s, &snapshot))
        {
            l.text = Some(text.clone());
        }
        text
    }

    /// None when healthy, else why not.
    fn stalled(&self) -> Option<String> {
        let since = self.last_sample.read().map(|t| t.elapsed()).ok()?;
        (since > self.stall_after).then(|| {
            format!(
                "sampling stalled: no sample for {:.1}s (limit {:.1}s, three intervals)\n",
                since.as_secs_f64(),
                self.stall_after.as_secs_f64()
            )
        })
    }
}

/// Serves `/metrics` and `/healthz` (also `/-/ready`) until the runtime stops. Each
/// connection is served by hyper with a time limit on reading a request's head, so that
/// slow or idle clients cannot hold connections open.
pub async fn serve(listener: TcpListener, state: Published) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/-/ready", get(healthz))
        .with_state(state);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                log::warn!("metrics endpoint: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIMIT, connection).await;
        });
    }
}

async fn metrics(State(state): State<Published>) -> impl IntoResponse {
    // Rendering a node's worth of processes takes a while: off the I/O thread.
    let text = tokio::task::spawn_blocking(move || state.metrics())
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text.as_str().to_owned(),
    )
}

/// gprof's own CPU time (user + system) and resident memory, from /proc/self.
fn self_usage() -> SelfUsage {
    use procfs::WithCurrentSystemInfo as _;
    match procfs::process::Process::myself().and_then(|p| p.stat()) {
        Ok(stat) => SelfUsage {
            cpu_seconds: (stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64,
            resident_bytes: stat.rss_bytes().get() as f64,
        },
        Err(_) => SelfUsage::default(),
    }
}

async fn healthz(State(state): State<Published>) -> impl IntoResponse {
    match state.stalled() {
        None => (StatusCode::OK, "ok\n".to_string()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}
