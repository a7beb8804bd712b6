//! The daemon's HTTP endpoint: `GET /metrics` (Prometheus text format), `GET /healthz`.
//! Only GET and HEAD; requests are small, answered once, and the connection closed.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MAX_REQUEST: usize = 16 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What the daemon publishes: the text served at /metrics, replaced every interval, and
/// when it last sampled (for /healthz).
pub struct State {
    metrics: RwLock<String>,
    /// When the last sampling round ended (the start, before the first).
    last_sample: RwLock<Instant>,
    /// Sampling stalled this long: /healthz fails.
    stall_after: Duration,
}

pub type Published = Arc<State>;

impl State {
    /// `interval`: the sampling interval; /healthz fails after three without a sample.
    pub fn new(interval: Duration) -> Published {
        Arc::new(Self {
            metrics: RwLock::new(String::new()),
            last_sample: RwLock::new(Instant::now()),
            stall_after: interval * 3,
        })
    }

    /// A sampling round ended with these metrics.
    pub fn publish(&self, text: String) {
        if let Ok(mut m) = self.metrics.write() {
            *m = text;
        }
        if let Ok(mut t) = self.last_sample.write() {
            *t = Instant::now();
        }
    }

    fn metrics(&self) -> String {
        self.metrics.read().map(|m| m.clone()).unwrap_or_default()
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

pub async fn serve(listener: TcpListener, metrics: Published) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(answer(stream, metrics.clone()));
            }
            Err(e) => {
                log::warn!("metrics endpoint: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(mut stream: TcpStream, metrics: Published) {
    let mut request = Vec::new();
    let mut buf = [0u8; 2048];
    let read = async {
        while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    if !matches!(tokio::time::timeout(READ_TIMEOUT, read).await, Ok(Ok(()))) {
        return;
    }
    let text = String::from_utf8_lossy(&request);
    let mut first = text.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.metrics(),
        ),
        ("GET" | "HEAD", "/healthz" | "/-/ready") => match metrics.stalled() {
            None => ("200 OK", "text/plain", "ok\n".to_string()),
            Some(why) => ("503 Service Unavailable", "text/plain", why),
        },
        ("GET" | "HEAD", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_string(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    if method != "HEAD" {
        let _ = stream.write_all(body.as_bytes()).await;
    }
    let _ = stream.shutdown().await;
}
