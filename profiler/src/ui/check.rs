//! `gprof check`: what gprof finds in a binary or process, probe by probe, and whether it
//! can attach. The first thing to run when something looks wrong.

use std::fmt::Write as _;
use std::path::Path;

use crate::attach::kernel;
use crate::inspect::binary::GoBinary;
use crate::inspect::plan::{self, ProbePlan};
use crate::inspect::process::Process;
use crate::inspect::runtime_state::RuntimeReader;
use crate::inspect::selfcheck;

pub fn run(pid: Option<i64>, binary: Option<&Path>) -> anyhow::Result<()> {
    let report = match (pid, binary) {
        (Some(pid), _) => {
            let process = Process::from_user_pid(pid)?;
            let bin = GoBinary::open(&process.exe_path())
                .map_err(|e| anyhow::anyhow!("PID {} ({}): {e}", process.pid(), process.comm))?;
            report(&bin, Some(&process))
        }
        (None, Some(path)) => report(
            &GoBinary::open(path).map_err(|e| match e {
                crate::inspect::binary::BinaryError::Io { .. } => anyhow::Error::from(e),
                e => anyhow::anyhow!("{}: {e}", path.display()),
            })?,
            None,
        ),
        (None, None) => anyhow::bail!("give a binary or --pid"),
    };
    print!("{}", report.text);
    if report.ok {
        Ok(())
    } else {
        anyhow::bail!("gprof cannot attach: {}", report.verdict)
    }
}

pub struct CheckReport {
    pub text: String,
    pub ok: bool,
    pub verdict: String,
}

pub fn report(bin: &GoBinary, process: Option<&Process>) -> CheckReport {
    let mut t = String::new();
    if let Some(p) = process {
        let _ = writeln!(t, "process:        PID {} ({})", p.pid(), p.comm);
    }
    let _ = writeln!(t, "binary:         {}", bin.path.display());
    let _ = writeln!(
        t,
        "go release:     {} (from {})",
        bin.version,
        bin.version_source.describe()
    );
    let _ = writeln!(
        t,
        "architecture:   {}{}",
        bin.arch.name(),
        if bin.pie { " (PIE)" } else { "" }
    );
    let _ = writeln!(t, "symbols:        {}", bin.symbol_source.name());
    let _ = writeln!(
        t,
        "DWARF:          {}",
        if bin.has_dwarf { "present" } else { "absent" }
    );
    let _ = writeln!(
        t,
        "text base:      {:#x} (runtime.firstmoduledata at {:#x}, validated against the function table)",
        bin.text.text, bin.text.moduledata
    );
    let plan = match plan::plan(bin) {
        Ok(plan) => plan,
        Err(e) => {
            let _ = writeln!(t, "can attach:     no: {e}");
            return CheckReport {
                text: t,
                ok: false,
                verdict: e.to_string(),
            };
        }
    };
    describe_plan(&mut t, &plan);
    let mut verdict = String::from("yes");
    let mut ok = true;
    let host = std::env::consts::ARCH;
    if bin.arch.name() != host {
        // Planned as it would be on its own architecture, but not attachable from here.
        ok = false;
        verdict = format!(
            "not from this host: the binary is {}, this gprof runs on {host}",
            bin.arch.name()
        );
    }
    if let Some(p) = process {
        let info = bin.info();
        let live = p
            .load_bias(&info)
            .map_err(anyhow::Error::from)
            .and_then(|bias| {
                let reader = RuntimeReader::new(p.memory()?, &plan.layout, &plan.globals, bias)?;
                let expect = selfcheck::Expect::new(&bin.version, info.text.clone(), &plan, bias);
                Ok((reader.read()?, selfcheck::run(&reader, &expect)?))
            });
        match live {
            Ok((c, check)) => {
                let _ = writeln!(
                    t,
                    "runtime now:    {} goroutines ({} system), free-G pool {}, GOMAXPROCS {}",
                    c.goroutines(),
                    c.ngsys,
                    c.free_pool(),
                    c.procs
                );
                let _ = writeln!(t, "self-check:     {}", check.describe());
                if !check.passed() {
                    ok = false;
                    verdict = format!(
                        "no: {}'s runtime layout does not fit this process (self-check {})",
                        bin.version,
                        check.describe()
                    );
                }
            }
            Err(e) => {
                let _ = writeln!(t, "runtime now:    unreadable ({e:#})");
                ok = false;
                verdict = format!(
                    "no: {}'s runtime layout does not fit this process (self-check failed: {e:#})",
                    bin.version
                );
            }
        }
        if let Err(e) = kernel::check_privileges() {
            ok = false;
            verdict = e.to_string();
        }
    }
    let _ = writeln!(t, "can attach:     {verdict}");
    CheckReport {
        text: t,
        ok,
        verdict,
    }
}

fn describe_plan(t: &mut String, plan: &ProbePlan) {
    let _ = writeln!(t, "struct offsets: {}", plan.layout_source.describe());
    let _ = writeln!(t, "probes:");
    for p in &plan.probes {
        for (site, offset) in p.sites.iter().zip(&p.offsets) {
            let _ = writeln!(
                t,
                "  {:<32} {:#x} = {}+{:#x} (file offset {:#x}) {}: {}  [{}]",
                p.spec.program,
                site.addr,
                p.function.name,
                site.addr - p.function.entry,
                offset,
                site.placement.describe(),
                site.instruction,
                p.spec.purpose
            );
        }
    }
    let g = &plan.globals;
    let source = g.source.describe();
    let list = |v: &[u64]| {
        v.iter()
            .map(|a| format!("{a:#x}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(t, "globals ({source}):");
    let _ = writeln!(t, "  {:<32} {:#x}", "runtime.sched", g.sched);
    let _ = writeln!(t, "  {:<32} {}", "runtime.allglen", list(&g.allglen));
    let _ = writeln!(t, "  {:<32} {}", "runtime.allgs (census)", list(&g.allgs));
    let _ = writeln!(t, "  {:<32} {}", "runtime.allp", list(&g.allp));
    for (name, addr) in [
        ("work.pauseStart", g.pause_start),
        ("memstats.last_gc_nanotime", g.last_gc_nanotime),
    ] {
        if let Some(a) = addr {
            let _ = writeln!(t, "  {name:<32} {a:#x}");
        }
    }
}
