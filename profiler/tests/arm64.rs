//! gprof on arm64, for real: an arm64 machine emulated by qemu (`qemu-system-aarch64`, TCG, two
//! Neoverse-N1 cores) boots Debian's arm64 kernel with an initramfs made here: Debian's static
//! busybox, gprof cross-built for aarch64 (its eBPF programs verified and its uprobes placed by
//! that kernel), the workload and freelist programs cross-built with Go 1.19, 1.23 and 1.27
//! (`GOARCH=arm64`, one stripped), and esbuild's arm64 binaries from npm. A shell script inside
//! runs every check and prints what it saw on the serial console between markers; the figures
//! are checked here, by the same code as on amd64.
//!
//! The emulator runs the machine about 20 times slower than this one runs natively, so the
//! workload runs at a tenth of the acceptance check's rates (2 leaked and 200 short-lived
//! goroutines a second).

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::accuracy::{self, Rates};
use common::*;
use profiler::inspect::binary::GoBinary;
use profiler::inspect::plan;
use serde_json::Value;

/// The workload's rates on the emulated machine.
const RATES: Rates = Rates {
    leak_per_s: 2.0,
    churn_per_s: 200.0,
};
/// One-second samples per accuracy run: the leak must be confirmed within them (goroutines
/// stuck after 5 s, a 30 s leak window: a horizon decides once it covers three quarters).
const SAMPLES: u32 = 45;
/// Attach/detach cycles on one workload, whose output must equal an unprobed run's.
const CYCLES: u32 = 20;
/// The whole run inside the machine, boot included, at most.
const DEADLINE: Duration = Duration::from_secs(20 * 60);
/// The uprobe instruction arm64 kernels write at a probed address (`BRK #0x5`, little-endian).
const UPROBE_BRK: [u8; 4] = [0xa0, 0x00, 0x20, 0xd4];

/// The machine's files prepared by `cargo xtask test` (kernel, busybox, gprof for aarch64).
fn machine_dir() -> PathBuf {
    PathBuf::from(
        std::env::var_os("GPROF_ARM64").expect("GPROF_ARM64: run `cargo xtask test --arch arm64`"),
    )
}

/// The machine's qemu arguments, as `cargo xtask` wrote them (xtask/src/arm64.rs: the same
/// machine its clean-root check boots).
fn machine_args() -> Vec<String> {
    let file = machine_dir().join("qemu-machine");
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run `cargo xtask test --arch arm64`)",
                file.display()
            )
        })
        .lines()
        .map(str::to_string)
        .collect()
}

/// One program placed in the machine, with the addresses gprof will probe and the code there.
struct Placed {
    name: String,
    sites: Vec<u64>,
    original: Vec<[u8; 4]>,
}

/// Copies `bin` into the machine's `/p/NAME`, with its probe sites in `/p/NAME.sites`.
fn place(root: &Path, name: &str, bin: &Path, probed: bool) -> Placed {
    std::fs::copy(bin, root.join("p").join(name))
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    let (mut sites, mut original) = (Vec::new(), Vec::new());
    if probed {
        let binary = GoBinary::open(bin).unwrap_or_else(|e| panic!("{name}: {e}"));
        let plan = plan::plan(&binary).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        for addr in plan
            .probes
            .iter()
            .flat_map(|p| p.sites.iter().map(|s| s.addr))
        {
            let bytes = binary.bytes_at(addr, 4).unwrap();
            sites.push(addr);
            original.push([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
    }
    let list: String = sites.iter().map(|a| format!("{a}\n")).collect();
    std::fs::write(root.join("p").join(format!("{name}.sites")), list).unwrap();
    Placed {
        name: name.to_string(),
        sites,
        original,
    }
}

/// The script's helpers: sections on the console, the code at a process's probe sites, and
/// waits on a condition with a deadline (a missed one prints `=== TIMEOUT`, which fails the
/// test: the script never sleeps in place of knowing).
const PRELUDE: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t cgroup2 none /sys/fs/cgroup
ip link set lo up
echo "=== BEGIN machine"; uname -srm; grep -c ^processor /proc/cpuinfo; echo "=== END machine"
section() { echo "=== BEGIN $1"; cat "$2"; echo "=== END $1"; }
code_at() { while read a; do dd if=/proc/$1/mem bs=4 count=1 skip=$((a / 4)) 2>/dev/null | od -An -tx1 | tr -d ' \n'; echo; done < /p/$2.sites; }
within() { end=$(($(date +%s) + $1)); shift; while ! eval "$*"; do if [ $(date +%s) -ge $end ]; then echo "=== TIMEOUT: $*"; return 1; fi; sleep 0.2; done; }
lines() { if [ -f "$1" ]; then wc -l < "$1"; else echo 0; fi; }
cpu_ticks() { awk '{ print $14 + $15 }' /proc/$1/stat 2>/dev/null; }
idle() { a=$(cpu_ticks $1); sleep 0.5; [ -n "$a" ] && [ "$a" = "$(cpu_ticks $1)" ]; }
threads() { awk '/^Threads:/ { print $2 }' /proc/$1/status 2>/dev/null || echo 0; }
all_probed() { [ -z "$(code_at $1 $2 | grep -v '^a00020d4$')" ]; }
"#;

/// Runs the workload `name` under `gprof top --batch` (code read while attached and after).
fn accuracy_script(name: &str) -> String {
    let args = RATES.workload_args().join(" ");
    format!(
        r#"
/p/{name} {args} > /tmp/own 2>/dev/null & P=$!
within 60 '[ $(lines /tmp/own) -ge 10 ]'
/gprof top --pid $P --batch --interval 1 --iterations {SAMPLES} --stuck-after 5 --leak-window 30 > /tmp/got 2> /tmp/err & G=$!
within 60 'all_probed $P {name}'; code_at $P {name} > /tmp/during
wait $G; echo $? > /tmp/rc
code_at $P {name} > /tmp/after
n=$(lines /tmp/own); within 30 '[ $(lines /tmp/own) -ge $((n + 2)) ]'
kill $P; wait $P
for f in own got err rc during after; do section "accuracy {name} $f" /tmp/$f; done
"#
    )
}

/// The free-G pool at freelist's quiet checkpoints.
fn free_pool_script(name: &str) -> String {
    let args = accuracy::FREELIST_ARGS.join(" ");
    format!(
        r#"
/p/{name} {args} > /tmp/own 2>/dev/null & P=$!
/gprof top --pid $P --batch --interval 0.5 > /tmp/got 2> /tmp/err
wait $P
for f in own got err; do section "pool {name} $f" /tmp/$f; done
"#
    )
}

/// Two copies of a workload that does a fixed amount of work (stacks growing in every
/// goroutine), one attached and detached [`CYCLES`] times: their outputs must be equal.
fn cycles_script(name: &str) -> String {
    let tasks = (RATES.churn_per_s * 120.0) as u64;
    let args = format!(
        "-tasks {tasks} -churn-rate {} -leak-rate 2 -gc-every 1s -depth 40 -report 0",
        RATES.churn_per_s
    );
    format!(
        r#"
/p/{name} {args} > /tmp/ref 2>/dev/null & R=$!
/p/{name} {args} > /tmp/probed 2>/dev/null & P=$!
within 60 '[ $(threads $P) -ge 3 ]'
: > /tmp/cycles
i=0
while [ $i -lt {CYCLES} ] && kill -0 $P 2>/dev/null; do
  /gprof top --pid $P --batch --iterations 1 --interval 0.5 --budget off > /tmp/one 2>> /tmp/cycles_err
  echo "$? $(wc -c < /tmp/one)" >> /tmp/cycles
  i=$((i + 1))
done
code_at $P {name} > /tmp/after
wait $R; wait $P
for f in ref probed cycles cycles_err after; do section "cycles {name} $f" /tmp/$f; done
"#
    )
}

/// A third-party program started idle (reading a held stdin): gprof's sample and two dumps,
/// then the runtime's own (SIGQUIT).
fn third_party_script(name: &str) -> String {
    format!(
        r#"
sleep 100000 | GOTRACEBACK=system /p/{name} 2> /tmp/stderr & P=$!
within 120 'idle $P'
/gprof top --pid $P --batch --iterations 2 > /tmp/got 2> /tmp/err; echo $? > /tmp/rc
code_at $P {name} > /tmp/after
/gprof dump --system --pid $P > /tmp/d1 2>&1
sleep 0.3
/gprof dump --system --pid $P > /tmp/d2 2>&1
kill -QUIT $P; within 60 '! kill -0 $P 2>/dev/null'
killall sleep 2>/dev/null
for f in got err rc after d1 d2 stderr; do section "esbuild {name} $f" /tmp/$f; done
"#
    )
}

/// `gprof daemon` watching two workloads, its /metrics fetched after a few rounds.
fn daemon_script(a: &str, b: &str) -> String {
    let args = RATES.workload_args().join(" ");
    format!(
        r#"
/p/{a} {args} > /tmp/own_a 2>/dev/null & A=$!
/p/{b} {args} > /tmp/own_b 2>/dev/null & B=$!
printf 'interval: 2s\n' > /tmp/gprof.yaml
/gprof daemon --config /tmp/gprof.yaml --metrics-addr 127.0.0.1:9477 2> /tmp/err & D=$!
served() {{ wget -q -O /tmp/metrics http://127.0.0.1:9477/metrics && grep -q "^gprof_goroutines{{.*pid=\"$A\"" /tmp/metrics && grep -q "^gprof_goroutines{{.*pid=\"$B\"" /tmp/metrics; }}
within 120 served; echo $? > /tmp/rc
echo "$A $B" > /tmp/pids
kill $D; wait $D; kill $A $B
for f in pids rc metrics err own_a own_b; do section "daemon $f" /tmp/$f; done
"#
    )
}

/// The machine's console, cut into its sections.
fn sections(console: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    for line in console.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(name) = line.strip_prefix("=== BEGIN ") {
            current = Some((name.to_string(), Vec::new()));
        } else if let Some(name) = line.strip_prefix("=== END ") {
            if let Some((open, lines)) = current.take() {
                assert_eq!(open, name, "sections interleaved on the console");
                out.insert(open, lines.join("\n"));
            }
        } else if let Some((_, lines)) = &mut current {
            lines.push(line);
        }
    }
    out
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Boots the machine with `root` as its initramfs; returns the console once it powers off.
fn boot(root: &Path, work: &Path) -> String {
    let initrd = work.join("initrd.gz");
    let packed = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {} && find . | cpio -o -H newc --quiet | gzip -1 > {}",
            root.display(),
            initrd.display()
        ))
        .status()
        .unwrap();
    assert!(packed.success(), "packing the initramfs failed");
    let console = work.join("console.txt");
    let mut qemu = Command::new("qemu-system-aarch64")
        .args(machine_args())
        .arg("-kernel")
        .arg(machine_dir().join("vmlinuz"))
        .arg("-initrd")
        .arg(&initrd)
        .args([
            "-append",
            "console=ttyAMA0 rdinit=/init quiet loglevel=3 panic=-1",
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&console).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-aarch64 (Debian's qemu-system-arm; cargo xtask test installs it)");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = qemu.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > DEADLINE {
            let _ = qemu.kill();
            let _ = qemu.wait();
            let text = std::fs::read_to_string(&console).unwrap_or_default();
            panic!(
                "the arm64 machine still runs after {DEADLINE:?}; its console ends with:\n{}",
                &text[text.len().saturating_sub(3000)..]
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let mut err = String::new();
    qemu.stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "qemu failed: {status}: {err}");
    eprintln!(
        "arm64: the machine ran {:.0} s",
        start.elapsed().as_secs_f64()
    );
    std::fs::read_to_string(&console).unwrap()
}

fn hex(b: &[u8; 4]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The code at every probe site, as `code_at` printed it, equals `want` at each.
fn code_is(got: &str, placed: &Placed, want: impl Fn(usize) -> [u8; 4]) -> bool {
    let lines: Vec<&str> = got.lines().collect();
    lines.len() == placed.sites.len()
        && lines
            .iter()
            .enumerate()
            .all(|(i, l)| l.trim() == hex(&want(i)))
}

#[test]
fn gprof_runs_on_an_emulated_arm64_machine() {
    let test = "gprof_runs_on_an_emulated_arm64_machine";
    if !require_root(test) {
        return;
    }
    let machine = machine_dir();
    let work = std::env::temp_dir().join(format!("gprof-arm64-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let root = work.join("root");
    for d in ["bin", "proc", "sys", "dev", "tmp", "p"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(machine.join("busybox"), root.join("bin/busybox")).unwrap();
    std::fs::copy(machine.join("gprof"), root.join("gprof")).unwrap();

    // Our programs: the oldest release here, one between, the newest, and a stripped build.
    let workloads: Vec<(Placed, &str)> = [
        ("go119", "1.19", "arm64"),
        ("go123", "1.23.9", "arm64"),
        ("go127", "1.27.3", "arm64"),
        ("go127-stripped", "1.27.3", "arm64-stripped"),
    ]
    .iter()
    .map(|&(name, release, variant)| {
        let bin = go_target(test, "workload", release, variant).expect("built by cargo xtask test");
        (place(&root, name, &bin, true), release)
    })
    .collect();
    let freelist = go_target(test, "freelist", "1.27.3", "arm64").expect("built");
    place(&root, "freelist", &freelist, false);
    // Third-party programs: esbuild's arm64 builds, one per Go release since 1.17.
    let corpus_dir = PathBuf::from(std::env::var_os("GPROF_CORPUS").expect("GPROF_CORPUS"));
    let listing: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/corpus-arm64.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let third_party: Vec<(Placed, String)> = listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let id = e["id"].as_str().unwrap();
            let bin = corpus_dir
                .join(id)
                .join(e["path_in_package"].as_str().unwrap());
            let go = e["go_release"].as_str().unwrap().to_string();
            // Go 1.17 passes arguments on the stack on arm64 too: gprof refuses it.
            let supported = !go.starts_with("go1.17");
            (place(&root, id, &bin, supported), go)
        })
        .collect();

    let mut script = PRELUDE.to_string();
    for (w, _) in &workloads {
        script += &accuracy_script(&w.name);
    }
    script += &free_pool_script("freelist");
    script += &cycles_script("go127-stripped");
    for (p, _) in &third_party {
        script += &third_party_script(&p.name);
    }
    script += &daemon_script("go119", "go127");
    script += "echo '=== BEGIN end'; echo '=== END end'\npoweroff -f\n";
    let init = root.join("init");
    std::fs::write(&init, script).unwrap();
    std::fs::set_permissions(&init, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    // GPROF_ARM64_CONSOLE=FILE checks the console of an earlier run instead of booting (to
    // work on the checks): nothing ran, so it counts as skipped, never as passed.
    let console = match std::env::var_os("GPROF_ARM64_CONSOLE") {
        Some(file) => {
            skip(
                test,
                &format!(
                    "GPROF_ARM64_CONSOLE={}: an earlier run's console is checked, no machine booted",
                    file.to_string_lossy()
                ),
            );
            std::fs::read_to_string(file).unwrap()
        }
        None => boot(&root, &work),
    };
    let s = sections(&console);
    let section = |name: &str| -> &str {
        s.get(name).map(String::as_str).unwrap_or_else(|| {
            panic!(
                "the machine printed no {name:?}; its console ends with:\n{}",
                &console[console.len().saturating_sub(3000)..]
            )
        })
    };
    assert!(s.contains_key("end"), "the script did not finish");
    let timeouts: Vec<&str> = console
        .lines()
        .filter(|l| l.starts_with("=== TIMEOUT"))
        .collect();
    assert!(
        timeouts.is_empty(),
        "the machine waited in vain for: {timeouts:#?}"
    );
    eprintln!("arm64: {}", section("machine").replace('\n', ", "));
    let mut table = Vec::new();

    // The workload under gprof top: every figure against the runtime's, the leak confirmed,
    // the probes in place while attached and the code restored after.
    for (w, release) in &workloads {
        let name = &w.name;
        let get = |f: &str| section(&format!("accuracy {name} {f}"));
        assert_eq!(
            get("rc").trim(),
            "0",
            "{name}: gprof failed: {}",
            get("err")
        );
        let samples = json_lines(get("got"));
        assert_eq!(samples.len(), SAMPLES as usize, "{name}: {}", get("err"));
        // Its reports (the last line, written as it is stopped, has no time).
        let own: Vec<Value> = json_lines(get("own"))
            .into_iter()
            .filter(|r| r.get("unix").is_some())
            .collect();
        let m = accuracy::check(name, release, &samples, &own, RATES).unwrap();
        let last = samples.last().unwrap();
        let confirmed = f(last, "confirmed_leak_rate_per_min");
        let want = RATES.leak_per_s * 60.0;
        assert!(
            (confirmed - want).abs() <= want * 0.1,
            "{name}: confirmed {confirmed}/min, the workload leaks {want}/min"
        );
        assert!(!w.sites.is_empty());
        assert!(
            code_is(get("during"), w, |_| UPROBE_BRK),
            "{name}: the probes are not in place while attached:\n{}",
            get("during")
        );
        assert!(
            code_is(get("after"), w, |i| w.original[i]),
            "{name}: the code is not restored after detach:\n{}",
            get("after")
        );
        table.push(format!(
            "| {name} | {release} | {:.2} % | {:.1}/min | {confirmed:.1}/min | {:.1}/s | {} exact | {:.3} | {} sites restored |",
            m.max_live_error * 100.0,
            m.leak_per_min,
            m.create_per_s,
            m.gc_cycles,
            m.pause_ratio,
            w.sites.len()
        ));
    }

    // The free-G pool at quiet checkpoints.
    let pools = accuracy::free_pool(
        &json_lines(section("pool freelist got")),
        &json_lines(section("pool freelist own")),
        section("pool freelist err"),
    );
    eprintln!(
        "arm64: free-G pool exact in {} samples ({pools:?})",
        pools.len()
    );

    // Attach and detach cycles: every one sampled, the output unchanged, the code restored.
    let cycled = &workloads[3].0;
    let cycles: Vec<&str> = section("cycles go127-stripped cycles").lines().collect();
    assert_eq!(
        cycles.len(),
        CYCLES as usize,
        "the workload ended before {CYCLES} cycles: {}",
        section("cycles go127-stripped cycles_err")
    );
    assert!(
        cycles.iter().all(|c| c.starts_with("0 ") && c != &"0 0"),
        "a cycle failed: {cycles:?}: {}",
        section("cycles go127-stripped cycles_err")
    );
    let (reference, probed) = (
        section("cycles go127-stripped ref"),
        section("cycles go127-stripped probed"),
    );
    assert!(reference.contains("\"finished\""), "{reference}");
    assert_eq!(
        json_lines(probed),
        json_lines(reference),
        "the output changed under probing"
    );
    assert!(code_is(
        section("cycles go127-stripped after"),
        cycled,
        |i| { cycled.original[i] }
    ));
    eprintln!("arm64: {CYCLES} attach/detach cycles, output identical, code restored");

    // Third-party programs against their own dumps.
    let mut esbuild_rows = Vec::new();
    for (p, go) in &third_party {
        let name = &p.name;
        let get = |f: &str| section(&format!("esbuild {name} {f}"));
        if p.sites.is_empty() {
            assert_ne!(get("rc").trim(), "0", "{name} ({go}) was not refused");
            assert!(
                get("err").contains("1.17"),
                "{name}: the refusal does not name the release: {}",
                get("err")
            );
            esbuild_rows.push(format!(
                "| {name} | {go} | refused: {} |",
                get("err").trim()
            ));
            continue;
        }
        assert_eq!(
            get("rc").trim(),
            "0",
            "{name}: gprof failed: {}",
            get("err")
        );
        let last = json_lines(get("got")).pop().expect("a sample");
        assert!(
            last["go_version"]
                .as_str()
                .unwrap()
                .starts_with(go.as_str()),
            "{name}: {}",
            last["go_version"]
        );
        assert!(
            code_is(get("after"), p, |i| p.original[i]),
            "{name}: code not restored"
        );
        let dump = get("stderr");
        assert!(dump.contains("goroutine 1 "), "{name}: no dump: {dump}");
        let want = common::dumps::user_goroutines(dump);
        let all = common::dumps::parse(dump).len();
        let got = f(&last, "goroutines") as usize;
        let system = f(&last, "system_goroutines") as usize;
        assert_eq!(
            got, want,
            "{name}: gprof counts {got} goroutines, the dump {want}"
        );
        assert_eq!(system, all - want, "{name}: system goroutines");
        let (before, after) = (
            common::dumps::parse(get("d1")),
            common::dumps::parse(get("d2")),
        );
        let newest = common::dumps::newest(&after);
        let c = common::dumps::compare(
            get("d2"),
            dump,
            |g, _| before.get(&g) != after.get(&g),
            |g, _| g > newest,
        );
        // esbuild idles with nothing to wake it: every goroutine compared.
        c.assert_equal(name, 0);
        let compared = c.compared;
        esbuild_rows.push(format!(
            "| {name} | {go} | {got} + {system} system = the dump's {all}; {compared} goroutines' stacks equal, {} sites restored |",
            p.sites.len()
        ));
    }

    // The daemon: both programs watched, their series served.
    assert_eq!(
        section("daemon rc").trim(),
        "0",
        "{}",
        section("daemon err")
    );
    let metrics = section("daemon metrics");
    let pids: Vec<&str> = section("daemon pids").split_whitespace().collect();
    let reports = |name: &str| -> Vec<Value> {
        json_lines(section(name))
            .into_iter()
            .filter(|r| r.get("unix").is_some())
            .collect()
    };
    let (own_a, own_b) = (reports("daemon own_a"), reports("daemon own_b"));
    for (pid, own) in pids.iter().zip([&own_a, &own_b]) {
        let got = common::daemon::series(metrics, "gprof_goroutines", &format!("pid=\"{pid}\""))
            .unwrap_or_else(|| panic!("no gprof_goroutines for {pid}:\n{metrics}"));
        let truth = f(own.last().unwrap(), "num_goroutine");
        assert!(
            (got - truth).abs() <= (truth * 0.05).max(10.0),
            "pid {pid}: {got} goroutines served, the program has {truth}"
        );
    }
    eprintln!(
        "arm64 ({}):\n| program | Go | live error | leak rate | confirmed | creation rate | GC cycles | pause ratio | code |\n|---|---|---|---|---|---|---|---|---|\n{}\n| program | Go | against its dump |\n|---|---|---|\n{}",
        section("machine").replace('\n', ", "),
        table.join("\n"),
        esbuild_rows.join("\n")
    );
    let _ = std::fs::remove_dir_all(&work);
}
