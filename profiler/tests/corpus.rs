//! Real third-party Go programs (`testdata/corpus.json`: prebuilt binaries from npm, PyPI and
//! Debian, every release from 1.17 to 1.27, with and without build info, PIE, cgo), each
//! started idle: gprof must read it, its live and system goroutines must equal the program's
//! own SIGQUIT dump's exactly, `gprof dump --system` must equal that dump goroutine by
//! goroutine, and its code must be restored byte for byte after gprof leaves.

mod common;

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use profiler::inspect::binary::GoBinary;
use profiler::inspect::plan;
use profiler::inspect::process::Process;
use serde_json::Value;

/// Goroutines of an idle program's SIGQUIT dump that may go uncompared (moving between
/// gprof's two dumps, running, or created after them). README: "every goroutine" compared in
/// the runs here; a wake-up of a timer or ticker between the dumps is allowed.
const MOST_UNCOMPARED: usize = 1;

fn corpus() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/corpus.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("testdata/corpus.json"))
        .expect("corpus.json is JSON")
}

fn entries(c: &Value) -> &Vec<Value> {
    c["entries"].as_array().expect("entries")
}

/// The corpus covers what the issue asks: every release from 1.17 to 1.27, a binary without
/// build info, a PIE and a cgo one, at least 12 binaries.
#[test]
fn the_corpus_covers_every_release_and_build() {
    let c = corpus();
    let e = entries(&c);
    assert!(e.len() >= 12, "{} binaries", e.len());
    let minors: BTreeSet<u32> = e
        .iter()
        .filter_map(|x| {
            let v = profiler::inspect::goruntime::GoVersion::parse(x["go_release"].as_str()?)?;
            Some(v.minor)
        })
        .collect();
    for minor in 17..=27 {
        assert!(minors.contains(&minor), "no go1.{minor} binary");
    }
    for (flag, want) in [("buildinfo", false), ("pie", true), ("cgo", true)] {
        assert!(
            e.iter().any(|x| x[flag] == want),
            "no binary with {flag} = {want}"
        );
    }
}

#[test]
fn counts_user_goroutines_by_their_start_function() {
    let dump = "SIGQUIT: quit\n\ngoroutine 0 gp=0x1 m=0 [idle]:\nruntime.futex()\n\tx.s:1\n\n\
goroutine 1 [chan receive]:\nmain.main()\n\tm.go:5\nruntime.main()\n\tproc.go:1\nruntime.goexit({})\n\ta.s:1\n\n\
goroutine 2 [force gc (idle)]:\nruntime.gopark(0x0)\n\tproc.go:2\nruntime.forcegchelper()\n\tproc.go:3\nruntime.goexit({})\n\ta.s:1\ncreated by runtime.init.7 in goroutine 1\n\tproc.go:4\n\n\
goroutine 6 [chan receive]:\nruntime.chanrecv1(0x0)\n\tchan.go:1\nruntime.unique_runtime_registerUniqueMapCleanup.gowrap1()\n\tmgc.go:1\nruntime.goexit({})\n\ta.s:1\ncreated by unique.runtime_registerUniqueMapCleanup in goroutine 1\n\tmgc.go:2\n\n\
goroutine 7 [select]:\nos/exec.(*Cmd).Start.func2()\n\texec.go:1\nruntime.goexit({})\n\ta.s:1\ncreated by os/exec.(*Cmd).Start in goroutine 1\n\texec.go:2\n";
    assert_eq!(common::dumps::user_goroutines(dump), 2);
}

/// One corpus program started idle in its own session (it and whatever it starts are killed
/// on drop).
struct Idle {
    child: std::process::Child,
    dir: PathBuf,
    stderr: PathBuf,
}

impl Idle {
    fn start(entry: &Value, bin: &Path) -> Self {
        let id = entry["id"].as_str().unwrap();
        let dir = std::env::temp_dir().join(format!("gprof-corpus-{id}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("home")).unwrap();
        let env = [
            (
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            ),
            ("HOME", dir.join("home").display().to_string()),
            ("BIN", bin.display().to_string()),
            ("W", dir.display().to_string()),
            ("LANG", "C.UTF-8".into()),
            // The SIGQUIT dump at the system level in every release (since Go 1.19 it is
            // anyway; before, GOTRACEBACK=single left runtime goroutines and frames out).
            ("GOTRACEBACK", "system".into()),
            ("PORT", free_port().to_string()),
            ("PORT2", free_port().to_string()),
            ("PORT3", free_port().to_string()),
        ];
        let idle = &entry["idle"];
        if let Some(setup) = idle["setup"].as_str().filter(|s| !s.is_empty()) {
            let out = Command::new("bash")
                .args(["-euc", setup])
                .current_dir(&dir)
                .env_clear()
                .envs(env.clone())
                .stdin(Stdio::null())
                .output()
                .expect("bash");
            assert!(
                out.status.success(),
                "{id}: setup failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let stderr = dir.join("stderr.txt");
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(format!("exec {}", idle["cmd"].as_str().unwrap()))
            .current_dir(&dir)
            .env_clear()
            .envs(env)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .stdin(if idle["stdin"] == "hold" {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        // SAFETY: setsid is async-signal-safe; a session of its own lets the test kill
        // everything the program starts.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{id}: cannot start: {e}"));
        Self { child, dir, stderr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGQUIT, and the goroutine dump the runtime prints before it exits.
    fn dump(&mut self) -> String {
        common::dumps::sigquit(&mut self.child, &self.stderr)
    }
}

impl Drop for Idle {
    fn drop(&mut self) {
        // SAFETY: kill has no memory preconditions; the session is the child's own.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn real_programs_of_every_release_are_read_exactly() {
    let test = "real_programs_of_every_release_are_read_exactly";
    if !require_root(test) {
        return;
    }
    let Some(dir) = std::env::var_os("GPROF_CORPUS").map(PathBuf::from) else {
        skip(
            test,
            "GPROF_CORPUS is not set: run the tests with `cargo xtask test`",
        );
        return;
    };
    let c = corpus();
    let mut table = Vec::new();
    let mut dump_failures = Vec::new();
    for entry in entries(&c) {
        let id = entry["id"].as_str().unwrap();
        let bin = dir
            .join(id)
            .join(entry["path_in_package"].as_str().unwrap());
        assert!(bin.exists(), "{id}: {} missing", bin.display());
        // Where gprof will probe, and what the code there is.
        let binary = GoBinary::open(&bin).unwrap_or_else(|e| panic!("{id}: {e}"));
        let plan = plan::plan(&binary).unwrap_or_else(|e| panic!("{id}: {e}"));
        let sites: Vec<u64> = plan
            .probes
            .iter()
            .flat_map(|p| p.sites.iter().map(|s| s.addr))
            .collect();
        let original: Vec<u8> = sites
            .iter()
            .map(|&a| binary.bytes_at(a, 1).unwrap()[0])
            .collect();

        let mut idle = Idle::start(entry, &bin);
        let pid = idle.pid();
        assert!(
            wait_idle(pid, Duration::from_secs(60)),
            "{id}: the program never went idle"
        );
        let bias = Process::open(pid)
            .and_then(|p| p.load_bias(&binary.info()))
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        let live_sites: Vec<u64> = sites.iter().map(|a| a + bias).collect();
        let (ok, samples, err) = run_gprof(&[
            "top",
            "--batch",
            "--iterations",
            "2",
            "--pid",
            &pid.to_string(),
        ]);
        assert!(ok, "{id}: gprof failed: {err}");
        let last = samples.last().unwrap_or_else(|| panic!("{id}: no sample"));
        // The binary's own string, experiments included ("go1.20.3 X:nocoverageredesign").
        let version = last["go_version"].as_str().unwrap();
        assert!(
            version.starts_with(entry["go_release"].as_str().unwrap()),
            "{id}: {version}"
        );
        // Detached: the code is the file's again.
        assert_eq!(
            code_bytes(pid, &live_sites),
            original,
            "{id}: code not restored after gprof left"
        );
        let got = f(last, "goroutines") as usize;
        // gprof's dump at the system level twice, then the runtime's (SIGQUIT): goroutines
        // that stood still between gprof's two are compared with the runtime's (an idle
        // service's timers and tickers still wake a few).
        let gprof_dump = || {
            let out = Command::new(gprof())
                .args(["dump", "--system", "--pid", &pid.to_string()])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{id}: gprof dump failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        let first = gprof_dump();
        std::thread::sleep(Duration::from_millis(300));
        let ours = gprof_dump();
        let dump = idle.dump();
        let (before, after) = (common::dumps::parse(&first), common::dumps::parse(&ours));
        let moved = after
            .iter()
            .filter(|(g, b)| before.get(g) != Some(b))
            .count();
        // Goroutines that moved between gprof's two dumps are not compared (an idle
        // service's timers and tickers still wake a few), but must be in both; one the
        // runtime shows and gprof's dump lacks is a difference, unless created after it.
        let newest = common::dumps::newest(&after);
        let c = common::dumps::compare(
            &ours,
            &dump,
            |g, _| before.get(&g) != after.get(&g),
            |g, _| g > newest,
        );
        let compared = c.compared;
        if c.compared + MOST_UNCOMPARED < c.theirs {
            dump_failures.push(format!(
                "{id}: only {} of the runtime's {} goroutines compared ({} moved, {} newer)",
                c.compared, c.theirs, c.not_compared, c.newer
            ));
        }
        let diffs = c.diffs;
        dump_failures.extend(diffs.iter().map(|d| format!("{id}: {d}")));
        assert!(
            dump.contains("goroutine 1 "),
            "{id}: no goroutine dump: {}",
            &dump[..dump.len().min(400)]
        );
        let want = common::dumps::user_goroutines(&dump);
        let all = common::dumps::parse(&dump).len();
        drop(idle);
        assert_eq!(
            got, want,
            "{id}: gprof counts {got} goroutines, the dump {want}"
        );
        // System goroutines as the dump shows them (cgo's idle extra-M gs are not).
        let system = f(last, "system_goroutines") as usize;
        assert_eq!(
            system,
            all - want,
            "{id}: gprof counts {system} system goroutines, the dump {}",
            all - want
        );
        let variant = [
            (entry["buildinfo"] == false, "no buildinfo"),
            (entry["pie"] == true, "PIE"),
            (entry["cgo"] == true, "cgo"),
            (entry["stripped"] == true, "stripped"),
        ]
        .into_iter()
        .filter_map(|(on, what)| on.then_some(what))
        .collect::<Vec<_>>()
        .join(", ");
        table.push(format!(
            "| {} | {} | {} | {variant} | {got} | {want} | {compared} | {moved} | {} |",
            entry["program"].as_str().unwrap(),
            entry["package"].as_str().unwrap().to_string()
                + "@"
                + entry["version"].as_str().unwrap(),
            entry["go_release"].as_str().unwrap(),
            diffs.len(),
        ));
    }
    eprintln!(
        "{test}:\n| program | package | Go | build | gprof | dump | goroutines compared | moved between gprof's dumps | differences |\n|---|---|---|---|---|---|---|---|---|\n{}",
        table.join("\n")
    );
    assert!(dump_failures.is_empty(), "{}", dump_failures.join("\n"));
}
