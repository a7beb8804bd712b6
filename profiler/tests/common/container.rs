//! Container-like processes without a container engine: `unshare` gives a program its own
//! PID and mount namespaces, its binary lives on a tmpfs only that mount namespace sees, and
//! it runs in a real cgroup named as the kubelet names them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{Spawned, wait_for};

/// The mount point of the cgroup v2 hierarchy (`/sys/fs/cgroup/unified` on a hybrid host).
pub fn cgroup2_root() -> Option<PathBuf> {
    cgroup_mount(|fstype, _| fstype == "cgroup2")
}

/// The mount point of the cgroup v1 hierarchy of `controller` (e.g. `pids`).
pub fn cgroup1_root(controller: &str) -> Option<PathBuf> {
    cgroup_mount(|fstype, options| {
        fstype == "cgroup" && options.split(',').any(|o| o == controller)
    })
}

fn cgroup_mount(matches: impl Fn(&str, &str) -> bool) -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 3 && matches(f[2], f[3])).then(|| PathBuf::from(f[1]))
    })
}

/// A cgroup made for a test, removed (after its processes leave) on drop, up to `levels`
/// directories.
pub struct Cgroup {
    pub path: PathBuf,
    levels: usize,
}

impl Cgroup {
    pub fn create(root: &Path, relative: &str) -> Self {
        let relative = relative.trim_matches('/');
        let path = root.join(relative);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self {
            path,
            levels: relative.split('/').count(),
        }
    }

    pub fn enter(&self, pid: u32) {
        std::fs::write(self.path.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Leaf first, up to the test's own top directory.
        let mut dir = self.path.clone();
        for _ in 0..self.levels {
            // Its processes may take a moment to leave.
            let _ = wait_for(Duration::from_secs(2), || std::fs::remove_dir(&dir).is_ok());
            if !dir.pop() {
                break;
            }
        }
    }
}

/// A Go program started as a container runtime would: in new PID and mount namespaces, from a
/// copy of its binary on a tmpfs mounted in that mount namespace only, inside `cgroup` from
/// before its first instruction.
pub struct Container {
    pub process: Spawned,
    /// Its PID as the host sees it (inside its namespace it is 1).
    pub host_pid: u32,
    /// Where the tmpfs is mounted inside (an empty directory on the host).
    pub mount: PathBuf,
}

impl Container {
    pub fn start(binary: &Path, args: &[&str], cgroup: &Cgroup, env: &[(&str, &str)]) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mount = std::env::temp_dir().join(format!("gprof-ct-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&mount).unwrap();
        let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        // `$$` is 1 in the new PID namespace, and cgroup.procs reads PIDs in the writer's.
        let script = format!(
            "set -e; echo $$ > '{procs}'; mount -t tmpfs -o size=64m gprof-ct '{dir}'; \
             cp '{bin}' '{dir}/app'; exec '{dir}/app' {args}",
            procs = cgroup.path.join("cgroup.procs").display(),
            dir = mount.display(),
            bin = binary.display(),
            args = quoted.join(" ")
        );
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--pid",
            "--fork",
            "--mount",
            "--mount-proc",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let process = Spawned::start(&mut cmd);
        let unshare = process.pid();
        let app = mount.join("app");
        let mut host_pid = 0;
        let running = wait_for(Duration::from_secs(10), || {
            let children =
                std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
                    .unwrap_or_default();
            host_pid = children
                .split_whitespace()
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            host_pid != 0
                && std::fs::read_link(format!("/proc/{host_pid}/exe")).is_ok_and(|e| e == app)
        });
        assert!(
            running,
            "the container did not start its program: {}",
            process.stderr_text()
        );
        Self {
            process,
            host_pid,
            mount,
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // SAFETY: kill(2) on a process this test started; the namespace's init takes the rest.
        unsafe { libc::kill(self.host_pid as i32, libc::SIGKILL) };
        let _ = self.process.child.kill();
        let _ = self.process.child.wait();
        let _ = std::fs::remove_dir(&self.mount);
    }
}
