//! Finding Go processes: scans /proc for processes not seen before and keeps those whose
//! executable is a Go program (judged by the file, not the process name; verdicts are cached
//! per executable file).
//!
//! A scan lists /proc and reads only the processes it has not seen, or has seen for a short
//! while (a young process may still exec its program: a container's entrypoint script does);
//! every [`FULL_SCAN_EVERY`] scans it reads them all, which also catches PIDs reused in
//! between and old processes that exec. Processes the daemon watches are never read: their
//! exit or exec ends the watch (the sampler sees it at once), and the daemon hands the PID
//! back with [`ProcessScanner::forget`]. Kernel threads are read again only by full scans.
//! On a node with hundreds of processes this keeps a scan to one directory listing.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::attach::kernel::ExeKey;
use crate::config::Pattern;
use crate::inspect::binary;
use crate::inspect::process::{Process, ProcessError, ProcessId};

/// Executable verdicts kept before the cache is cleared (bounds memory on busy hosts).
const MAX_VERDICTS: usize = 8192;
/// A process seen for less than this is read again at every scan.
const YOUNG: Duration = Duration::from_secs(5);
/// Every this many scans, every process is read again.
const FULL_SCAN_EVERY: u64 = 20;

/// A process as a scan saw it.
#[derive(Clone, Copy)]
struct Seen {
    id: ProcessId,
    exe: ExeKey,
    since: Instant,
}

#[derive(Default)]
pub struct ProcessScanner {
    /// Every process seen in the last scan, watched or not, with the executable it ran (a
    /// process that execs another program is seen anew).
    seen: HashMap<u32, Seen>,
    scans: u64,
    /// Whether an executable file is a Go program.
    verdicts: HashMap<ExeKey, bool>,
    exclude_comm: Vec<Pattern>,
    own_pid: u32,
    /// PIDs the daemon watches: not read while it does.
    watched: HashSet<u32>,
    /// Kernel threads of the last scan.
    kernel_threads: HashSet<u32>,
}

impl ProcessScanner {
    pub fn new(exclude_comm: Vec<Pattern>) -> Self {
        Self {
            exclude_comm,
            own_pid: std::process::id(),
            ..Default::default()
        }
    }

    /// Go processes that appeared since the last scan.
    pub fn scan(&mut self) -> Vec<Process> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let full = self.scans.is_multiple_of(FULL_SCAN_EVERY);
        self.scans += 1;
        let now = Instant::now();
        let mut now_seen = HashMap::new();
        let mut kernel_threads = HashSet::new();
        let mut found = Vec::new();
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == self.own_pid {
                continue;
            }
            let before = self.seen.get(&pid).copied();
            if let Some(s) = before
                && (self.watched.contains(&pid) || (!full && now.duration_since(s.since) >= YOUNG))
            {
                now_seen.insert(pid, s);
                continue;
            }
            if !full && self.kernel_threads.contains(&pid) {
                kernel_threads.insert(pid);
                continue;
            }
            let process = match Process::open(pid) {
                Ok(p) => p,
                Err(ProcessError::KernelThread(_)) => {
                    kernel_threads.insert(pid);
                    continue;
                }
                // Zombies, vanished or foreign processes: nothing to watch.
                Err(ProcessError::Zombie(_) | ProcessError::NotFound(_)) => continue,
                Err(e) => {
                    log::debug!("discovery: PID {pid}: {e}");
                    continue;
                }
            };
            let exe = ExeKey::of(&process);
            if let Some(s) = before
                && s.id == process.id
                && s.exe == exe
            {
                now_seen.insert(pid, s);
                continue;
            }
            now_seen.insert(
                pid,
                Seen {
                    id: process.id,
                    exe,
                    since: now,
                },
            );
            if self
                .exclude_comm
                .iter()
                .any(|p| p.0.is_match(&process.comm))
            {
                continue;
            }
            if self.is_go(&process) {
                found.push(process);
            }
        }
        self.seen = now_seen;
        self.kernel_threads = kernel_threads;
        self.watched.retain(|pid| self.seen.contains_key(pid));
        found
    }

    /// The daemon watches `pid`: scans leave it alone until [`Self::forget`].
    pub fn watching(&mut self, pid: u32) {
        self.watched.insert(pid);
    }

    /// Reads `pid` again at the next scan (the daemon stopped watching it: it may have execed).
    pub fn forget(&mut self, pid: u32) {
        self.seen.remove(&pid);
        self.watched.remove(&pid);
    }

    fn is_go(&mut self, p: &Process) -> bool {
        let key = ExeKey::of(p);
        if let Some(&v) = self.verdicts.get(&key) {
            return v;
        }
        let verdict = match binary::is_go_executable(&p.exe_path()) {
            Ok(v) => v,
            Err(e) => {
                log::debug!("discovery: PID {} ({}): {e}", p.pid(), p.comm);
                return false;
            }
        };
        if self.verdicts.len() >= MAX_VERDICTS {
            self.verdicts.clear();
        }
        self.verdicts.insert(key, verdict);
        verdict
    }
}
