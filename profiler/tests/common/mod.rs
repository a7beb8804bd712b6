//! Helpers for the end-to-end tests: where the Go targets are, starting them, running gprof,
//! and the skip policy: a test that cannot run (no root, a missing tool) fails, unless
//! `GPROF_ALLOW_SKIP=1`; then it is skipped loudly and listed by `cargo xtask test`.
#![allow(dead_code)]

pub mod accuracy;
pub mod container;
pub mod daemon;
pub mod dumps;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Whether tests that cannot run may skip (`GPROF_ALLOW_SKIP=1`).
pub fn skips_allowed() -> bool {
    std::env::var("GPROF_ALLOW_SKIP").is_ok_and(|v| v == "1")
}

/// Skips (returns false) when skips are allowed, with a loud message and a line in the file
/// `GPROF_SKIP_LOG` names (`cargo xtask test` lists them at the end); else fails.
pub fn skip(test: &str, why: &str) -> bool {
    if !skips_allowed() {
        panic!("{test} cannot run: {why} (set GPROF_ALLOW_SKIP=1 to skip what cannot run)");
    }
    eprintln!("\n*** SKIPPED {test}: {why} ***\n");
    if let Some(log) = std::env::var_os("GPROF_SKIP_LOG") {
        use std::io::Write as _;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(f, "{test}: {}", why.replace('\n', " "));
        }
    }
    false
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// True when the test may load eBPF programs.
pub fn require_root(test: &str) -> bool {
    is_root()
        || skip(
            test,
            "needs root to load eBPF programs (run `sudo -E cargo xtask test`)",
        )
}

/// A Go program built by `cargo xtask test` (see xtask/src/gotargets.rs).
pub fn go_target(test: &str, program: &str, release: &str, variant: &str) -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("GPROF_GO_TARGETS") else {
        skip(
            test,
            "GPROF_GO_TARGETS is not set: run the tests with `cargo xtask test`",
        );
        return None;
    };
    let path = PathBuf::from(dir).join(program).join(release).join(variant);
    if path.exists() {
        Some(path)
    } else {
        skip(test, &format!("{} was not built", path.display()));
        None
    }
}

/// Every built target of one program: (release, variant, path).
pub fn all_targets(program: &str) -> Vec<(String, String, PathBuf)> {
    let Some(dir) = std::env::var_os("GPROF_GO_TARGETS") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let base = PathBuf::from(dir).join(program);
    for release in std::fs::read_dir(&base).into_iter().flatten().flatten() {
        for variant in std::fs::read_dir(release.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            out.push((
                release.file_name().to_string_lossy().into_owned(),
                variant.file_name().to_string_lossy().into_owned(),
                variant.path(),
            ));
        }
    }
    out.sort();
    out
}

pub fn gprof() -> &'static str {
    env!("CARGO_BIN_EXE_gprof")
}

/// A child process whose stdout JSON lines and stderr are collected in the background;
/// killed on drop.
pub struct Spawned {
    pub child: Child,
    pub lines: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Spawned {
    pub fn start(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let (line_sink, err_sink) = (lines.clone(), stderr.clone());
        let readers = vec![
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        line_sink.lock().unwrap().push(v);
                    }
                }
            }),
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let mut text = err_sink.lock().unwrap();
                    text.push_str(&line);
                    text.push('\n');
                }
            }),
        ];
        Self {
            child,
            lines,
            stderr,
            readers,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn snapshot(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for the process and its output; returns exit status success and stderr.
    /// A process still running after [`PROCESS_DEADLINE`] fails the test instead of hanging it.
    pub fn finish(self) -> (bool, Vec<Value>, String) {
        self.finish_within(PROCESS_DEADLINE)
    }

    pub fn finish_within(mut self, deadline: Duration) -> (bool, Vec<Value>, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if start.elapsed() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "pid {} still ran after {deadline:?}, killed; its stderr:\n{}",
                    self.child.id(),
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for r in self.readers.drain(..) {
            r.join().expect("reader thread");
        }
        (status.success(), self.snapshot(), self.stderr_text())
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs gprof to completion: (exit success, JSON lines on stdout, stderr).
/// Fails the test when gprof (or a target) has not exited by then.
pub const PROCESS_DEADLINE: Duration = Duration::from_secs(300);

pub fn run_gprof(args: &[&str]) -> (bool, Vec<Value>, String) {
    Spawned::start(Command::new(gprof()).args(args)).finish()
}

pub fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing or not a number in {v}"))
}

/// Linear interpolation of `key` over the program's own report lines at wall time `t`.
pub fn interpolate(lines: &[Value], key: &str, t: f64) -> Option<f64> {
    let after = lines.iter().position(|l| f(l, "unix") >= t)?;
    if after == 0 {
        return None;
    }
    let (a, b) = (&lines[after - 1], &lines[after]);
    let (ta, tb) = (f(a, "unix"), f(b, "unix"));
    let (va, vb) = (f(a, key), f(b, key));
    Some(va + (vb - va) * (t - ta) / (tb - ta))
}

/// The value of a step-function `key` at `t` when it is constant over `t ± margin`, read on
/// both sides of `t` (a step just before or after `t` with no reading on that side would
/// otherwise go unseen) and with readings beyond the margin on both sides.
pub fn stable(lines: &[Value], key: &str, t: f64, margin: f64) -> Option<f64> {
    let around: Vec<(f64, f64)> = lines
        .iter()
        .map(|l| (f(l, "unix"), f(l, key)))
        .filter(|(u, _)| (u - t).abs() <= margin)
        .collect();
    let first = around.first()?.1;
    let both_sides = around.iter().any(|(u, _)| *u < t) && around.iter().any(|(u, _)| *u > t);
    let before = lines.iter().any(|l| f(l, "unix") < t - margin);
    let after = lines.iter().any(|l| f(l, "unix") > t + margin);
    (before && after && both_sides && around.iter().all(|(_, v)| *v == first)).then_some(first)
}

/// Polls `cond` until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// CPU ticks (user + system) a process has used, from /proc/PID/stat.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name, which may hold spaces: fields 14 and 15 (utime, stime).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Waits until a process sits idle (no CPU tick used over half a second), at most `timeout`.
pub fn wait_idle(pid: u32, timeout: Duration) -> bool {
    wait_for(timeout, || {
        let before = cpu_ticks(pid);
        std::thread::sleep(Duration::from_millis(500));
        before.is_some() && before == cpu_ticks(pid)
    })
}

/// Waits until a Go program's runtime is up (its threads started: the main one, sysmon and
/// a worker), at most 10 s.
pub fn wait_go_started(pid: u32) -> bool {
    wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Threads:"))
                    .and_then(|n| n.trim().parse::<u32>().ok())
            })
            .is_some_and(|n| n >= 3)
    })
}

/// A free loopback port (bound, then released for the service under test).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A minimal HTTP/1.1 GET on loopback: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The value of an unlabelled sample in Prometheus text format.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

/// The path of a command, or None.
pub fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(cmd))
        .find(|p| p.is_file())
}

/// A copy of a real Go program whose recorded release is rewritten (same length), so that it
/// still runs but claims a release gprof has not verified.
pub fn relabeled(
    test: &str,
    release: &str,
    variant: &str,
    from: &str,
    to: &str,
) -> Option<PathBuf> {
    let bin = go_target(test, "workload", release, variant)?;
    let mut bytes = std::fs::read(&bin).unwrap();
    assert_eq!(from.len(), to.len());
    let mut n = 0;
    for i in 0..bytes.len().saturating_sub(from.len()) {
        if &bytes[i..i + from.len()] == from.as_bytes() {
            bytes[i..i + to.len()].copy_from_slice(to.as_bytes());
            n += 1;
        }
    }
    assert!(n > 0, "{from} not found in {}", bin.display());
    let out = std::env::temp_dir().join(format!(
        "gprof-test-{test}-{to}-{variant}-{}",
        std::process::id()
    ));
    std::fs::write(&out, bytes).unwrap();
    std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    Some(out)
}

/// The first byte of every probe site as the target's memory has it now.
pub fn code_bytes(pid: u32, sites: &[u64]) -> Vec<u8> {
    let mem = profiler::inspect::process::Process::open(pid)
        .unwrap()
        .memory()
        .unwrap();
    sites
        .iter()
        .map(|&a| {
            let mut b = [0u8; 1];
            mem.read(a, &mut b).unwrap();
            b[0]
        })
        .collect()
}
