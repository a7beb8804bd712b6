//! The daemon's HTTP endpoint (axum): `GET /metrics` (Prometheus text format),
//! `GET /healthz`, and when enabled `GET /debug/pprof/goroutine?pid=N` (a watched process's
//! goroutine dump: pprof's format, `&debug=2` the runtime's text); HEAD too, other methods get
//! 405, other paths 404.

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
    /// Goroutine dumps are served.
    dumps: bool,
    /// PIDs whose dump is under way (one at a time per process).
    dumping: Mutex<std::collections::HashSet<u32>>,
}

#[derive(Default)]
struct Latest {
    snapshot: Option<Arc<DaemonSnapshot>>,
    text: Option<Arc<String>>,
}

pub type Published = Arc<Shared>;

impl Shared {
    /// `interval`: the sampling interval; /healthz fails after three without a sample.
    pub fn new(interval: Duration, dumps: bool) -> Published {
        Arc::new(Self {
            latest: Mutex::new(Latest::default()),
            last_sample: RwLock::new(Instant::now()),
            stall_after: interval * 3,
            dumps,
            dumping: Mutex::default(),
        })
    }

    /// The watched process with this PID in the last round (its start time).
    fn watched(&self, pid: u32) -> Option<u64> {
        let l = self.latest.lock().ok()?;
        l.snapshot
            .as_ref()?
            .processes
            .iter()
            .find(|p| p.snapshot.pid == pid)
            .map(|p| p.start_time)
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
        .route("/debug/pprof/goroutine", get(goroutine_dump))
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

/// Dumps written at once over all processes, and the largest answer.
const MAX_DUMPS: usize = 2;
const MAX_DUMP_BYTES: usize = 64 << 20;
static DUMPS_UNDER_WAY: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// `GET /debug/pprof/goroutine?pid=N[&debug=2]`: the goroutine dump of a watched process.
async fn goroutine_dump(
    State(state): State<Published>,
    uri: axum::http::Uri,
) -> axum::response::Response {
    use crate::render::dump::Format;
    let reply = |code: StatusCode, why: String| (code, why + "\n").into_response();
    if !state.dumps {
        return reply(
            StatusCode::NOT_FOUND,
            "goroutine dumps are off: set `dumps: {enabled: true}` in the configuration".into(),
        );
    }
    let query: std::collections::HashMap<&str, &str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let Some(pid) = query.get("pid").and_then(|p| p.parse::<u32>().ok()) else {
        return reply(StatusCode::BAD_REQUEST, "pid=N is required".into());
    };
    let (format, system) = match query.get("debug").copied().unwrap_or("0") {
        "0" => (Format::Pprof, false),
        "2" => (Format::Text, false),
        other => {
            return reply(
                StatusCode::BAD_REQUEST,
                format!("debug={other}: 0 (pprof) and 2 (text) are served"),
            );
        }
    };
    let Some(start_time) = state.watched(pid) else {
        return reply(
            StatusCode::NOT_FOUND,
            format!("PID {pid} is not a Go process this daemon watches"),
        );
    };
    if !state.dumping.lock().is_ok_and(|mut d| d.insert(pid)) {
        return reply(
            StatusCode::TOO_MANY_REQUESTS,
            format!("a dump of PID {pid} is under way"),
        );
    }
    let under_way = DUMPS_UNDER_WAY.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let result = if under_way >= MAX_DUMPS {
        Err((
            StatusCode::TOO_MANY_REQUESTS,
            format!("{MAX_DUMPS} dumps are under way"),
        ))
    } else {
        tokio::task::spawn_blocking(move || dump_of(pid, start_time, format, system))
            .await
            .unwrap_or_else(|e| Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())))
    };
    DUMPS_UNDER_WAY.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    if let Ok(mut d) = state.dumping.lock() {
        d.remove(&pid);
    }
    match result {
        Ok(body) => {
            let kind = match format {
                Format::Pprof => "application/octet-stream",
                _ => "text/plain; charset=utf-8",
            };
            ([(header::CONTENT_TYPE, kind)], body).into_response()
        }
        Err((code, why)) => reply(code, why),
    }
}

/// One dump of a watched process, read afresh (nothing of the sampler's is shared).
fn dump_of(
    pid: u32,
    start_time: u64,
    format: crate::render::dump::Format,
    system: bool,
) -> Result<Vec<u8>, (StatusCode, String)> {
    use crate::collect::dump::Dumper;
    use crate::inspect::process::Process;
    let gone = |why: String| (StatusCode::NOT_FOUND, why);
    let process = Process::open(pid).map_err(|e| gone(e.to_string()))?;
    if process.id.start_time != start_time {
        return Err(gone(format!("PID {pid} is another process now")));
    }
    let mut dumper =
        Dumper::open(process).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    let mut body = Capped(Vec::new());
    crate::render::dump::write(&mut dumper, format, system, &mut body)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    Ok(body.0)
}

/// A buffer that refuses to grow past [`MAX_DUMP_BYTES`].
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_DUMP_BYTES {
            return Err(std::io::Error::other(format!(
                "the dump is larger than {} MiB",
                MAX_DUMP_BYTES >> 20
            )));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
