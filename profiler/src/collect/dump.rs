//! A goroutine dump of one process, read from outside while it runs: every g of
//! `runtime.allgs` in chunks, each stack unwound whole ([`crate::inspect::stacks`]), each g read
//! again after its stack: one that ran meanwhile (its status, saved registers or stop count
//! moved) is read once more, then reported unreadable rather than with frames it may no longer
//! have. Memory stays bounded by the chunk whatever the number of goroutines: each goroutine
//! goes to the caller as soon as it is read.

use std::sync::Arc;

use crate::collect::target::{TargetError, plan_executable};
use crate::inspect::binary::frames::FrameTable;
use crate::inspect::census::GFields;
use crate::inspect::clock::monotonic_ns;
use crate::inspect::goruntime::traceback::{self, Style, status};
use crate::inspect::process::{ProcMem, Process};
use crate::inspect::runtime_state::{GsBuffers, RuntimeReader};
use crate::inspect::selfcheck;
use crate::inspect::stacks::{self, GStart, StackMemory};
use crate::model::dump::{CreatedBy, DumpInfo, DumpTotals, Frame, Goroutine, MRef, Stack};

/// gs read at once.
const CHUNK: u64 = 1024;
/// Bytes of each stack read with the chunk (the rest as the walk needs it).
const STACK_PREFETCH: u64 = 8 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("PID {pid}: its executable has no function table gprof can read")]
    NoFrames { pid: u32 },
    #[error("PID {pid}: {why}")]
    Unreadable { pid: u32, why: String },
}

/// What a dump reads a process with: opened and checked once.
pub struct Dumper {
    pid: u32,
    reader: RuntimeReader,
    exe: Arc<crate::collect::target::Executable>,
    bias: u64,
    info: DumpInfo,
    /// How this release's traceback prints.
    style: Style,
}

impl Dumper {
    /// Opens `process` for dumps: its executable planned, the layout self-checked against
    /// the live process (as attaching does), nothing attached.
    pub fn open(process: Process) -> Result<Self, DumpError> {
        let pid = process.pid();
        let exe = Arc::new(plan_executable(&process)?);
        let state = |source| TargetError::State { pid, source };
        let bias = process.load_bias(&exe.info).map_err(TargetError::Process)?;
        let mem = process.memory().map_err(TargetError::Process)?;
        let reader =
            RuntimeReader::new(mem, &exe.plan.layout, &exe.plan.globals, bias).map_err(state)?;
        let expect =
            selfcheck::Expect::new(&exe.info.version, exe.info.text.clone(), &exe.plan, bias);
        let check = selfcheck::run(&reader, &expect).map_err(state)?;
        if !check.passed() {
            return Err(TargetError::SelfCheck {
                pid,
                comm: process.comm.clone(),
                release: exe.info.version.to_string(),
                why: check.describe(),
            }
            .into());
        }
        if !reader.has_census() {
            return Err(DumpError::Unreadable {
                pid,
                why: "runtime.allgs was not found in its binary".into(),
            });
        }
        let info = DumpInfo {
            pid,
            executable: exe.info.path.display().to_string(),
            go_version: exe.info.version.to_string(),
            taken_at: 0.0,
        };
        let style = traceback::style(&exe.info.version);
        Ok(Self {
            pid,
            reader,
            exe,
            bias,
            info,
            style,
        })
    }

    pub fn info(&self) -> &DumpInfo {
        &self.info
    }

    /// How the process's release prints tracebacks (what the renderers follow).
    pub fn style(&self) -> Style {
        self.style
    }

    /// What reading goroutines of this process takes, now.
    fn context<'a>(&'a self, frames: &'a FrameTable) -> Context<'a> {
        Context {
            frames,
            mem: self.reader.memory(),
            bias: self.bias,
            arch: frames.arch,
            style: self.style,
            wait_reasons: self.exe.wait_reasons,
            m_id: self.exe.plan.layout.m_id,
            now: monotonic_ns() as i64,
        }
    }

    /// Reads every goroutine (dead ones left out, as the runtime leaves them out) and hands
    /// each to `out`, in `allgs` order.
    pub fn dump(&mut self, mut out: impl FnMut(Goroutine)) -> Result<DumpTotals, DumpError> {
        let pid = self.pid;
        let unreadable = |e: crate::inspect::runtime_state::StateError| DumpError::Unreadable {
            pid,
            why: e.to_string(),
        };
        self.info.taken_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let symbols = self.exe.symbols.lock().unwrap_or_else(|p| p.into_inner());
        let frames = symbols.frames().ok_or(DumpError::NoFrames { pid })?;
        let allgs =
            self.reader
                .allgs()
                .map_err(unreadable)?
                .ok_or_else(|| DumpError::Unreadable {
                    pid,
                    why: "runtime.allgs is not readable".into(),
                })?;
        let ctx = self.context(frames);
        let mut totals = DumpTotals::default();
        let mut buffers = GsBuffers::default();
        let mut start = 0;
        while start < allgs.len {
            let end = (start + CHUNK).min(allgs.len);
            let mut gs: Vec<(u64, GFields)> = Vec::with_capacity((end - start) as usize);
            self.reader
                .read_gs(allgs, start..end, &mut buffers, |_, addr, g| {
                    if let Some(g) = g {
                        gs.push((addr, g));
                    }
                })
                .map_err(unreadable)?;
            gs.retain(|(_, g)| !ctx.dead(g));
            let mut read = ctx.read_chunk(&gs);
            // Read again: a g whose fields moved ran while its stack was read.
            let mut again = Vec::new();
            let addrs: Vec<u64> = gs.iter().map(|(a, _)| *a).collect();
            let now = self.reader.read_g_fields(&addrs, &mut buffers);
            for (i, fields) in now.into_iter().enumerate() {
                if !fields.is_some_and(|f| same_run(&gs[i].1, &f)) {
                    again.push(i);
                }
            }
            for i in again {
                totals.reread += 1;
                let addr = gs[i].0;
                let Some(Some(fresh)) = self
                    .reader
                    .read_g_fields(&[addr], &mut buffers)
                    .into_iter()
                    .next()
                else {
                    read[i] = None;
                    continue;
                };
                let mut g = ctx.read_chunk(&[(addr, fresh)]).pop().flatten();
                let after = self.reader.read_g_fields(&[addr], &mut buffers);
                if !after
                    .first()
                    .copied()
                    .flatten()
                    .is_some_and(|f| same_run(&fresh, &f))
                    && let Some(g) = &mut g
                {
                    g.stack = Stack::Unreadable {
                        why: "it ran while its stack was read".into(),
                    };
                }
                read[i] = g;
            }
            for g in read.into_iter().flatten() {
                totals.goroutines += 1;
                match g.stack {
                    Stack::Running => totals.running += 1,
                    Stack::Unreadable { .. } => totals.unreadable += 1,
                    Stack::Frames { .. } => {}
                }
                out(g);
            }
            start = end;
        }
        Ok(totals)
    }
}

impl Dumper {
    /// The goroutine at `index` of `allgs`, if it is still `goid` (None: it is not).
    pub fn goroutine_at(&mut self, index: u64, goid: u64) -> Result<Option<Goroutine>, DumpError> {
        let pid = self.pid;
        let unreadable = |e: crate::inspect::runtime_state::StateError| DumpError::Unreadable {
            pid,
            why: e.to_string(),
        };
        let symbols = self.exe.symbols.lock().unwrap_or_else(|p| p.into_inner());
        let frames = symbols.frames().ok_or(DumpError::NoFrames { pid })?;
        let Some(allgs) = self.reader.allgs().map_err(unreadable)? else {
            return Ok(None);
        };
        let mut buffers = GsBuffers::default();
        let mut found = None;
        self.reader
            .read_gs(allgs, index..index + 1, &mut buffers, |_, addr, g| {
                found = g.filter(|g| g.goid == goid).map(|g| (addr, g));
            })
            .map_err(unreadable)?;
        let Some(g) = found else { return Ok(None) };
        let ctx = self.context(frames);
        Ok(ctx.read_chunk(&[g]).pop().flatten())
    }
}

/// The g did not run between the two reads.
fn same_run(a: &GFields, b: &GFields) -> bool {
    a.status == b.status
        && a.goid == b.goid
        && a.sched_sp == b.sched_sp
        && a.sched_pc == b.sched_pc
        && a.syscallsp == b.syscallsp
        && a.syscallpc == b.syscallpc
        && a.stack_lo == b.stack_lo
        && a.stack_hi == b.stack_hi
        && a.tracking_seq == b.tracking_seq
}

struct Context<'a> {
    frames: &'a FrameTable,
    mem: &'a ProcMem,
    bias: u64,
    arch: crate::inspect::binary::Arch,
    style: Style,
    wait_reasons: Option<&'static [&'static str]>,
    m_id: u64,
    now: i64,
}

impl Context<'_> {
    fn dead(&self, g: &GFields) -> bool {
        let s = g.status & !status::SCAN;
        s == status::DEAD || (self.style.leaked_status && s == status::DEAD_EXTRA)
    }

    fn function(&self, pc: u64) -> Option<crate::inspect::binary::frames::FuncInfo> {
        if pc == 0 {
            return None;
        }
        self.frames.function(pc.wrapping_sub(self.bias))
    }

    /// The goroutines of a chunk (None: a g that is not one, its fields unreadable).
    fn read_chunk(&self, gs: &[(u64, GFields)]) -> Vec<Option<Goroutine>> {
        // The stacks of those not running, read together.
        let starts: Vec<Option<GStart>> = gs.iter().map(|(_, g)| self.start(g)).collect();
        let parts: Vec<(u64, usize)> = starts
            .iter()
            .flatten()
            .map(|s| (s.sp, (s.stack_hi - s.sp).min(STACK_PREFETCH) as usize))
            .collect();
        let mut tops = self.mem.read_parts(&parts).into_iter();
        gs.iter()
            .zip(starts)
            .map(|((addr, g), start)| {
                let top = start.and_then(|_| tops.next().flatten());
                Some(self.goroutine(*addr, g, start, top))
            })
            .collect()
    }

    /// Where the unwinder starts (None: running, or no stack to read).
    fn start(&self, g: &GFields) -> Option<GStart> {
        let s = g.status & !status::SCAN;
        if s == status::RUNNING || s == status::COPYSTACK || g.stack_lo == 0 {
            return None;
        }
        let (pc, sp, lr) = if g.syscallsp != 0 {
            (g.syscallpc, g.syscallsp, 0)
        } else {
            (g.sched_pc, g.sched_sp, g.sched_lr)
        };
        (sp >= g.stack_lo && sp < g.stack_hi).then_some(GStart {
            pc,
            sp,
            lr,
            stack_lo: g.stack_lo,
            stack_hi: g.stack_hi,
        })
    }

    fn goroutine(
        &self,
        addr: u64,
        g: &GFields,
        start: Option<GStart>,
        top: Option<Vec<u8>>,
    ) -> Goroutine {
        let st = g.status & !status::SCAN;
        let reason = (g.waitreason != 0).then(|| {
            self.wait_reasons
                .and_then(|r| r.get(g.waitreason as usize))
                .map_or("unknown wait reason", |r| *r)
                .to_string()
        });
        let state = match &reason {
            Some(r) if st == status::WAITING || st == status::LEAKED => r.clone(),
            _ => traceback::status_name(&self.style, st).to_string(),
        };
        let dated = (st == status::WAITING || st == status::SYSCALL) && g.waitsince != 0;
        let waited = dated.then(|| self.now.saturating_sub(g.waitsince));
        let start_function = self.function(g.startpc).map(|f| f.name);
        let idle = reason
            .as_deref()
            .is_some_and(|r| traceback::FINALIZER_IDLE.contains(&r));
        let system = start_function
            .as_deref()
            .is_some_and(|f| traceback::is_system_goroutine(f, idle));
        let stack = match start {
            None if st == status::RUNNING => Stack::Running,
            None => Stack::Unreadable {
                why: if st == status::COPYSTACK {
                    "its stack was being moved".into()
                } else {
                    "no stack".into()
                },
            },
            Some(s) => {
                let mut mem = StackMemory::new(self.mem, s.sp, s.stack_hi, top);
                match stacks::walk(&s, self.bias, self.arch, self.frames, &mut mem) {
                    Ok(phys) => Stack::Frames {
                        frames: phys
                            .iter()
                            .flat_map(|p| {
                                let offset =
                                    p.pc.wrapping_sub(self.bias).wrapping_sub(p.func.entry);
                                p.calls.iter().map(move |c| Frame {
                                    function: c.function.clone(),
                                    file: c.file.clone(),
                                    line: c.line,
                                    inlined: c.inlined,
                                    offset: if c.inlined { 0 } else { offset },
                                    pc: p.pc,
                                    sp: p.sp,
                                    fp: p.fp,
                                    func_id: c.func_id,
                                })
                            })
                            .collect(),
                    },
                    Err(e) => Stack::Unreadable { why: e.to_string() },
                }
            }
        };
        Goroutine {
            id: g.goid,
            g: addr,
            status: st,
            scan: g.status & status::SCAN != 0,
            state,
            wait_reason: reason,
            wait_minutes: waited.map_or(0, |w| w / 60_000_000_000),
            waited_seconds: waited.map(|w| w as f64 / 1e9),
            locked_to_thread: g.lockedm != 0,
            m: (g.m != 0).then(|| MRef {
                id: self.mem.read_u64(g.m + self.m_id).map_or(-1, |v| v as i64),
                addr: g.m,
            }),
            system,
            start_function,
            stack,
            created_by: self.created_by(g),
        }
    }

    /// `printcreatedby`: the function of the `go` statement and where in it.
    fn created_by(&self, g: &GFields) -> Option<CreatedBy> {
        if g.goid == 1 {
            return None;
        }
        let f = self.function(g.gopc)?;
        let file_pc = g.gopc.wrapping_sub(self.bias);
        let trace = if file_pc > f.entry {
            file_pc - 1
        } else {
            file_pc
        };
        let calls = self.frames.logical(trace)?;
        let inner = calls.first()?;
        Some(CreatedBy {
            function: f.name.clone(),
            file: inner.file.clone(),
            line: inner.line,
            offset: file_pc - f.entry,
            goroutine: (self.style.creator_goroutine && g.parent_goid != 0)
                .then_some(g.parent_goid),
            func_id: f.func_id,
        })
    }
}
