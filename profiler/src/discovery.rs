//! Finding Go processes: scans /proc for processes not seen before and keeps those whose
//! executable is a Go program (judged by the file, not the process name; verdicts are cached
//! per executable file).

use std::collections::{HashMap, HashSet};

use crate::binary;
use crate::config::Pattern;
use crate::kernel::ExeKey;
use crate::process::{Process, ProcessError, ProcessId};

/// Executable verdicts kept before the cache is cleared (bounds memory on busy hosts).
const MAX_VERDICTS: usize = 8192;

#[derive(Default)]
pub struct Discovery {
    /// Every process seen in the last scan, watched or not, with the executable it ran (a
    /// process that execs another program is seen anew).
    seen: HashSet<(ProcessId, ExeKey)>,
    /// Whether an executable file is a Go program.
    verdicts: HashMap<ExeKey, bool>,
    exclude_comm: Vec<Pattern>,
    own_pid: u32,
}

impl Discovery {
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
        let mut now_seen = HashSet::new();
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
            let process = match Process::open(pid) {
                Ok(p) => p,
                // Kernel threads, zombies, vanished or foreign processes: nothing to watch.
                Err(
                    ProcessError::KernelThread(_)
                    | ProcessError::Zombie(_)
                    | ProcessError::NotFound(_),
                ) => continue,
                Err(e) => {
                    log::debug!("discovery: PID {pid}: {e}");
                    continue;
                }
            };
            let key = (process.id, ExeKey::of(&process));
            now_seen.insert(key);
            if self.seen.contains(&key) {
                continue;
            }
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
        found
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
