//! The kernel side as user space drives it: loads the embedded eBPF object, attaches the
//! planned probes to executables, keeps the table of watched processes, and reads the maps.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::os::fd::{AsFd, OwnedFd};

use aya::maps::{
    Array, HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues, RingBuf,
};
use aya::programs::UProbe;
use aya::programs::uprobe::UProbeLink;
use aya::programs::uprobe::{UProbeAttachLocation, UProbeLinkId, UProbeScope};
use aya::{Ebpf, EbpfLoader};
use profiler_common::{
    Counters, Event, GcState, MAX_SLOTS, ProcConfig, SiteCounts, SiteKey, loss, maps,
};

use crate::attach::batch;
use crate::inspect::plan::ProbePlan;
use crate::model::snapshot::KernelLosses;

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/profiler"));

/// The capabilities gprof needs, as one sentence for error messages.
pub const NEEDED_CAPABILITIES: &str = "root, or CAP_SYS_ADMIN (create uprobes: kernels since mid-2025 require it; from 5.8 until then CAP_BPF + CAP_PERFMON sufficed) and CAP_SYS_PTRACE (read the target's memory)";

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("missing privileges to {action}: gprof needs {NEEDED_CAPABILITIES}")]
    Permission { action: String },
    #[error("this kernel has no uprobe support (no {0}): gprof needs CONFIG_UPROBE_EVENTS")]
    NoUprobes(String),
    #[error(
        "this kernel has no BTF (no {0}): gprof needs a kernel built with CONFIG_DEBUG_INFO_BTF"
    )]
    NoBtf(String),
    #[error("kernel {0} is too old: gprof needs Linux 5.19 or newer")]
    OldKernel(String),
    #[error("the kernel refused gprof's eBPF programs: {0}")]
    Load(String),
    #[error("cannot attach {function} in {exe}: {why}")]
    Attach {
        function: String,
        exe: String,
        why: String,
    },
    #[error("all {MAX_SLOTS} process slots are in use")]
    SlotsExhausted,
    #[error("kernel map {map}: {why}")]
    Map { map: &'static str, why: String },
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> KernelError {
    move |e| KernelError::Map {
        map,
        why: e.to_string(),
    }
}

/// The OS error deep in an error chain (aya's errors carry the syscall's `io::Error`).
fn os_error(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(code) = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
        {
            return Some(code);
        }
        cur = err.source();
    }
    None
}

/// The whole chain, for messages: "`perf_event_open` failed: Device or resource busy".
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        let more = err.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cur = err.source();
    }
    text
}

/// Whether an error chain is EPERM or EACCES.
fn is_permission(e: &(dyn std::error::Error + 'static)) -> bool {
    if matches!(os_error(e), Some(libc::EPERM) | Some(libc::EACCES)) {
        return true;
    }
    let text = e.to_string();
    text.contains("Operation not permitted") || text.contains("Permission denied")
}

/// Effective capabilities of this process (bit n = capability n).
fn effective_capabilities() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

fn has_capability(cap: u32) -> bool {
    effective_capabilities() & (1 << cap) != 0
}

/// Checks, before touching the kernel, that gprof may load probes and read other processes.
/// (Whether the kernel also wants CAP_SYS_ADMIN for uprobes shows when they are attached.)
pub fn check_privileges() -> Result<(), KernelError> {
    let has = has_capability;
    let mut missing = Vec::new();
    if !(has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))) {
        missing.push("CAP_SYS_ADMIN (or, on kernels from 5.8 until the 2025 revert, CAP_BPF and CAP_PERFMON)");
    }
    if !has(CAP_SYS_PTRACE) {
        missing.push("CAP_SYS_PTRACE");
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(KernelError::Permission {
        action: format!("profile (missing {})", missing.join(", ")),
    })
}

/// Where sysfs is: `GPROF_SYSFS`, else `/sys` (a container may mount the host's elsewhere).
pub fn sysfs() -> std::path::PathBuf {
    std::env::var_os("GPROF_SYSFS").map_or_else(|| "/sys".into(), Into::into)
}

/// The kernel features gprof relies on: the uprobe PMU, BTF, and Linux 5.19+ (ring buffers
/// since 5.8, `bpf_map_lookup_percpu_elem` since 5.19).
pub fn check_kernel() -> Result<(), KernelError> {
    let sys = sysfs();
    let uprobe = sys.join("bus/event_source/devices/uprobe");
    if !uprobe.exists() {
        return Err(KernelError::NoUprobes(uprobe.display().to_string()));
    }
    let btf = sys.join("kernel/btf/vmlinux");
    if !btf.exists() {
        return Err(KernelError::NoBtf(btf.display().to_string()));
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    if let (Some(major), Some(minor)) = (parts.next(), parts.next())
        && (major, minor) < (5, 19)
    {
        return Err(KernelError::OldKernel(release.to_string()));
    }
    Ok(())
}

pub use crate::inspect::process::ExeKey;

/// Tries after a failed attach of one probe (not for missing privileges), and the first
/// back-off (doubled each time: 40, 80, 160 ms).
const ATTACH_RETRIES: u32 = 3;
const ATTACH_BACKOFF: std::time::Duration = std::time::Duration::from_millis(20);

/// Which processes an attachment fires for.
#[derive(Clone, Copy, Debug)]
pub enum AttachScope {
    /// Only this process: the kernel does not even trap in other processes of the file.
    Process(u32),
    /// Every process running the file; the in-kernel PROCS filter picks the watched ones.
    AllProcesses,
}

/// The probes of one executable. The file stays open so that the hot probes can be attached
/// again (through `/proc/self/fd/N`) even after the process that showed it exited or the file
/// was replaced on disk.
struct Attachment {
    file: std::fs::File,
    scope: UProbeScope,
    /// Probes that fire a few times per GC cycle: always attached.
    cold: Vec<(&'static str, UProbeLinkId)>,
    /// Creation, exit and stack-scan probes, which the budget may detach for a while.
    hot: Option<Vec<(&'static str, UProbeLinkId)>>,
    /// Where the hot probes go: (program, function, file offset).
    hot_sites: Vec<(&'static str, String, u64)>,
}

impl Attachment {
    fn path(&self) -> std::path::PathBuf {
        use std::os::fd::AsRawFd;
        format!("/proc/self/fd/{}", self.file.as_raw_fd()).into()
    }
}

/// Loaded programs and maps.
pub struct Kernel {
    ebpf: Ebpf,
    procs: BpfHashMap<MapData, u32, ProcConfig>,
    counters: PerCpuArray<MapData, Counters>,
    gc_state: Array<MapData, GcState>,
    events: RingBuf<MapData>,
    sites: PerCpuHashMap<MapData, SiteKey, SiteCounts>,
    site_entries_map: PerCpuArray<MapData, u32>,
    losses: PerCpuArray<MapData, u64>,
    nr_cpus: usize,
    attachments: HashMap<ExeKey, Attachment>,
    free_slots: Vec<u32>,
    slots: HashMap<u32, u32>,
    /// Entries of the creation-site map at the last pass of [`Self::site_counts`].
    site_entries: usize,
    /// PIDs unwatched since that pass: their sites may still be in the map.
    unswept: std::collections::HashSet<u32>,
    /// Detached links are dropped on a thread of their own: removing a uprobe waits for the
    /// kernel to synchronize (up to hundreds of milliseconds), which must not stall sampling.
    reaper: std::sync::mpsc::Sender<Vec<UProbeLink>>,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// COUNTERS and GC_STATE again, for whole-array reads.
    counters_fd: OwnedFd,
    gc_state_fd: OwnedFd,
    /// Every slot's counters, read at the start of a sampling round.
    round: Option<Round>,
}

/// Every slot's counters as one read found them; a slot given or freed since reads its own.
struct Round {
    counters: Vec<Counters>,
    gc: Vec<GcState>,
    fresh: Vec<bool>,
}

/// Two CPUs' counters of one slot, added.
fn sum_counters(mut a: Counters, c: Counters) -> Counters {
    a.created += c.created;
    a.exited += c.exited;
    a.stack_scans += c.stack_scans;
    a.stack_scan_bytes += c.stack_scan_bytes;
    a.stack_copies += c.stack_copies;
    a.stack_growths += c.stack_growths;
    a.sites_refused += c.sites_refused;
    for (sum, n) in a.stack_growth_sizes.iter_mut().zip(c.stack_growth_sizes) {
        *sum += n;
    }
    a
}

/// A second descriptor of an array map, for [`batch::lookup_array`].
fn array_fd(map: &aya::maps::Map, name: &'static str) -> Result<OwnedFd, KernelError> {
    use aya::maps::Map;
    let (Map::Array(data) | Map::PerCpuArray(data)) = map else {
        return Err(KernelError::Load(format!("map {name} is not an array")));
    };
    data.fd()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| KernelError::Load(format!("map {name}: {e}")))
}

impl Kernel {
    pub fn load() -> Result<Self, KernelError> {
        check_privileges()?;
        check_kernel()?;
        let nr_cpus =
            aya::util::nr_cpus().map_err(|(what, e)| KernelError::Load(format!("{what}: {e}")))?;
        let nr = nr_cpus as u32;
        let mut ebpf = EbpfLoader::new()
            .override_global("NR_CPUS", &nr, true)
            .load(OBJECT)
            .map_err(|e| {
                if is_permission(&e) {
                    KernelError::Permission {
                        action: "load eBPF programs".into(),
                    }
                } else {
                    KernelError::Load(e.to_string())
                }
            })?;
        // Before the programs load: they refer to the log map, which the logger keeps open.
        let logger = aya_log::EbpfLogger::init(&mut ebpf).ok();
        for name in crate::inspect::goruntime::PROBES.iter().map(|p| p.program) {
            let program: &mut UProbe = ebpf
                .program_mut(name)
                .ok_or_else(|| {
                    KernelError::Load(format!("program {name} missing from the object"))
                })?
                .try_into()
                .map_err(|e: aya::programs::ProgramError| KernelError::Load(e.to_string()))?;
            program.load().map_err(|e| match &e {
                // The verifier refusing a program also answers EACCES: its log says why.
                aya::programs::ProgramError::LoadError { verifier_log, .. }
                    if !verifier_log.to_string().trim().is_empty() =>
                {
                    let log = verifier_log.to_string();
                    let tail: Vec<&str> = log.lines().rev().take(5).collect();
                    KernelError::Load(format!(
                        "{name}: the kernel's verifier refused it: {}",
                        tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                    ))
                }
                _ if is_permission(&e) => KernelError::Permission {
                    action: format!("load {name}"),
                },
                _ => KernelError::Load(format!("{name}: {e}")),
            })?;
        }
        let mut take = |name: &'static str| {
            ebpf.take_map(name)
                .ok_or_else(|| KernelError::Load(format!("map {name} missing from the object")))
        };
        let procs = BpfHashMap::try_from(take(maps::PROCS)?).map_err(map_err(maps::PROCS))?;
        let counters = take(maps::COUNTERS)?;
        let counters_fd = array_fd(&counters, maps::COUNTERS)?;
        let counters = PerCpuArray::try_from(counters).map_err(map_err(maps::COUNTERS))?;
        let gc_state = take(maps::GC_STATE)?;
        let gc_state_fd = array_fd(&gc_state, maps::GC_STATE)?;
        let gc_state = Array::try_from(gc_state).map_err(map_err(maps::GC_STATE))?;
        let events = RingBuf::try_from(take(maps::EVENTS)?).map_err(map_err(maps::EVENTS))?;
        let sites = PerCpuHashMap::try_from(take(maps::SITES)?).map_err(map_err(maps::SITES))?;
        let site_entries_map = PerCpuArray::try_from(take(maps::SITE_ENTRIES)?)
            .map_err(map_err(maps::SITE_ENTRIES))?;
        let losses = PerCpuArray::try_from(take(maps::LOSSES)?).map_err(map_err(maps::LOSSES))?;
        let (reaper, dropped) = std::sync::mpsc::channel::<Vec<UProbeLink>>();
        std::thread::Builder::new()
            .name("gprof-detach".into())
            .spawn(move || {
                // Each detach waits for the kernel's uprobe SRCU grace period (about 0.1 s
                // here): in parallel, a window of hot probes closes in one period, not three.
                for links in dropped {
                    std::thread::scope(|s| {
                        for link in links {
                            s.spawn(move || drop(link));
                        }
                    });
                }
            })
            .map_err(|e| KernelError::Load(format!("starting the detach thread: {e}")))?;
        Ok(Self {
            ebpf,
            procs,
            reaper,
            counters,
            gc_state,
            events,
            sites,
            site_entries_map,
            losses,
            nr_cpus,
            attachments: HashMap::new(),
            free_slots: (0..MAX_SLOTS).rev().collect(),
            slots: HashMap::new(),
            site_entries: 0,
            unswept: Default::default(),
            logger,
            counters_fd,
            gc_state_fd,
            round: None,
        })
    }

    /// Attaches the probes of `plan` to `exe` (the open file the plan was made from); the
    /// hot ones only if `hot` (the budget may attach them later with [`Self::set_hot`]). All
    /// or nothing: on any failure the probes attached so far are removed again. A no-op when
    /// `key` is attached already.
    pub fn attach(
        &mut self,
        key: ExeKey,
        exe: &std::fs::File,
        plan: &ProbePlan,
        scope: AttachScope,
        hot: bool,
    ) -> Result<(), KernelError> {
        if self.attachments.contains_key(&key) {
            return Ok(());
        }
        let scope = match scope {
            AttachScope::Process(pid) => {
                NonZeroU32::new(pid).map_or(UProbeScope::AllProcesses, UProbeScope::OneProcess)
            }
            AttachScope::AllProcesses => UProbeScope::AllProcesses,
        };
        // The very file the plan was made from: its own descriptor, never a path again.
        let file = exe.try_clone().map_err(|e| KernelError::Attach {
            function: "(all)".into(),
            exe: format!("the executable (dev {:#x}, inode {})", key.dev, key.ino),
            why: e.to_string(),
        })?;
        let sites = |hot: bool| -> Vec<(&'static str, String, u64)> {
            plan.probes
                .iter()
                .filter(|p| p.spec.hot == hot)
                .flat_map(|p| {
                    p.offsets
                        .iter()
                        .map(|&o| (p.spec.program, p.function.name.clone(), o))
                })
                .collect()
        };
        let mut attachment = Attachment {
            file,
            scope,
            cold: Vec::new(),
            hot: None,
            hot_sites: sites(true),
        };
        attachment.cold = self.attach_sites(&attachment, &sites(false))?;
        if hot {
            let hot_sites = attachment.hot_sites.clone();
            match self.attach_sites(&attachment, &hot_sites) {
                Ok(links) => attachment.hot = Some(links),
                Err(e) => {
                    self.detach_links(std::mem::take(&mut attachment.cold));
                    return Err(e);
                }
            }
        }
        self.attachments.insert(key, attachment);
        Ok(())
    }

    /// Attaches programs at file offsets of the attachment's file; all or nothing.
    fn attach_sites(
        &mut self,
        a: &Attachment,
        sites: &[(&'static str, String, u64)],
    ) -> Result<Vec<(&'static str, UProbeLinkId)>, KernelError> {
        let path = a.path();
        let mut links = Vec::new();
        for (program, function, offset) in sites {
            let mut attempt = 0;
            let result = loop {
                let result = self.uprobe(program).attach(
                    UProbeAttachLocation::AbsoluteOffset(*offset),
                    &path,
                    a.scope,
                );
                match &result {
                    // The kernel may refuse while it still tears down a uprobe on the same
                    // inode (a detach on the reaper thread): a few tries, backing off.
                    Err(e) if attempt < ATTACH_RETRIES && !is_permission(e) => {
                        attempt += 1;
                        log::info!(
                            "attaching {function} at {offset:#x}: {} (try {attempt} of {ATTACH_RETRIES}, retrying)",
                            chain(e)
                        );
                        std::thread::sleep(ATTACH_BACKOFF * (1 << attempt));
                    }
                    _ => break result,
                }
            };
            match result {
                Ok(link) => links.push((*program, link)),
                Err(e) => {
                    let error = if is_permission(&e) {
                        KernelError::Permission {
                            action: if has_capability(CAP_SYS_ADMIN) {
                                "attach uprobes".into()
                            } else {
                                "attach uprobes (this kernel requires CAP_SYS_ADMIN to create them)"
                                    .into()
                            },
                        }
                    } else {
                        KernelError::Attach {
                            function: function.clone(),
                            exe: path.display().to_string(),
                            why: chain(&e),
                        }
                    };
                    self.detach_links(links);
                    return Err(error);
                }
            }
        }
        Ok(links)
    }

    /// Attaches or detaches the hot probes of one executable (the overhead budget's lever).
    pub fn set_hot(&mut self, key: ExeKey, on: bool) -> Result<(), KernelError> {
        let Some(mut a) = self.attachments.remove(&key) else {
            return Ok(());
        };
        let result = match (on, a.hot.take()) {
            (true, None) => {
                let sites = a.hot_sites.clone();
                self.attach_sites(&a, &sites)
                    .map(|links| a.hot = Some(links))
            }
            (false, Some(links)) => {
                self.detach_links(links);
                Ok(())
            }
            (_, links) => {
                a.hot = links;
                Ok(())
            }
        };
        self.attachments.insert(key, a);
        result
    }

    pub fn hot_is_on(&self, key: ExeKey) -> bool {
        self.attachments.get(&key).is_some_and(|a| a.hot.is_some())
    }

    /// Removes the probes of one executable.
    pub fn detach(&mut self, key: ExeKey) {
        if let Some(a) = self.attachments.remove(&key) {
            self.detach_links(a.cold);
            if let Some(hot) = a.hot {
                self.detach_links(hot);
            }
        }
    }

    pub fn is_attached(&self, key: ExeKey) -> bool {
        self.attachments.contains_key(&key)
    }

    fn detach_links(&mut self, links: Vec<(&'static str, UProbeLinkId)>) {
        let mut owned = Vec::new();
        for (program, link) in links {
            match self.uprobe(program).take_link(link) {
                Ok(l) => owned.push(l),
                Err(e) => log::warn!("detaching {program}: {e}"),
            }
        }
        if let Err(std::sync::mpsc::SendError(links)) = self.reaper.send(owned) {
            drop(links);
        }
    }

    fn uprobe(&mut self, name: &str) -> &mut UProbe {
        // The names come from goruntime::PROBES, all loaded as uprobes in `load`.
        self.ebpf
            .program_mut(name)
            .and_then(|p| <&mut UProbe>::try_from(p).ok())
            .expect("every probe program was loaded as a uprobe")
    }

    /// Starts counting for `pid`: gives it a zeroed slot and adds it to the in-kernel filter.
    pub fn watch(&mut self, pid: u32, mut config: ProcConfig) -> Result<u32, KernelError> {
        if let Some(&slot) = self.slots.get(&pid) {
            return Ok(slot);
        }
        let slot = self.free_slots.pop().ok_or(KernelError::SlotsExhausted)?;
        self.stale_in_round(slot);
        if self.unswept.remove(&pid) {
            // A reused PID must not inherit the sites of the process that had it.
            let theirs: Vec<SiteKey> = self
                .sites
                .keys()
                .filter_map(Result::ok)
                .filter(|k| k.tgid == pid)
                .collect();
            for k in theirs {
                let _ = self.sites.remove(&k);
            }
        }
        let zero =
            PerCpuValues::try_from(vec![Counters::default(); self.nr_cpus]).map_err(|e| {
                KernelError::Map {
                    map: maps::COUNTERS,
                    why: e.to_string(),
                }
            })?;
        let result = self
            .counters
            .set(slot, zero, 0)
            .map_err(map_err(maps::COUNTERS))
            .and_then(|()| {
                // Its quota of sites starts empty (the last holder's entries are swept).
                let zero = PerCpuValues::try_from(vec![0u32; self.nr_cpus]).map_err(|e| {
                    KernelError::Map {
                        map: maps::SITE_ENTRIES,
                        why: e.to_string(),
                    }
                })?;
                self.site_entries_map
                    .set(slot, zero, 0)
                    .map_err(map_err(maps::SITE_ENTRIES))
            })
            .and_then(|()| {
                self.gc_state
                    .set(slot, GcState::default(), 0)
                    .map_err(map_err(maps::GC_STATE))
            })
            .and_then(|()| {
                config.slot = slot;
                self.procs
                    .insert(pid, config, 0)
                    .map_err(map_err(maps::PROCS))
            });
        match result {
            Ok(()) => {
                self.slots.insert(pid, slot);
                Ok(slot)
            }
            Err(e) => {
                self.free_slots.push(slot);
                Err(e)
            }
        }
    }

    /// Stops counting for `pid` and frees its slot.
    pub fn unwatch(&mut self, pid: u32) {
        if let Some(slot) = self.slots.remove(&pid) {
            if let Err(e) = self.procs.remove(&pid) {
                log::debug!("removing pid {pid} from PROCS: {e}");
            }
            self.free_slots.push(slot);
            self.stale_in_round(slot);
            self.unswept.insert(pid);
        }
        // Its creation sites go at the next round's pass over the map (see `site_counts`):
        // one pass per round, not one per exit.
    }

    /// Goroutines created and exited per creation site since attach, summed over CPUs, for
    /// every watched process (one pass over the map per sampling round). Entries of processes
    /// no longer watched are removed on the way.
    pub fn site_counts(&mut self) -> HashMap<u32, Vec<(SiteKey, SiteCounts)>> {
        let mut out: HashMap<u32, Vec<(SiteKey, SiteCounts)>> = HashMap::new();
        let mut stale = Vec::new();
        for key in self.sites.keys().filter_map(Result::ok) {
            if !self.slots.contains_key(&key.tgid) {
                stale.push(key);
                continue;
            }
            let Ok(per_cpu) = self.sites.get(&key, 0) else {
                continue;
            };
            let sum = per_cpu
                .iter()
                .fold(SiteCounts::default(), |a, c| SiteCounts {
                    created: a.created + c.created,
                    exited: a.exited + c.exited,
                });
            out.entry(key.tgid).or_default().push((key, sum));
        }
        self.unswept.clear();
        let kept: usize = out.values().map(Vec::len).sum();
        let mut left = 0;
        for k in stale {
            left += usize::from(self.sites.remove(&k).is_err());
        }
        self.site_entries = kept + left;
        out
    }

    /// Entries of the kernel's creation-site map as the last round's pass left it (a check
    /// that exited processes leave nothing behind).
    pub fn site_entries(&self) -> usize {
        self.site_entries
    }

    pub fn watched(&self) -> usize {
        self.slots.len()
    }

    /// Entries of the in-kernel PROCS filter, counted in the map itself (a check that
    /// exited processes leave nothing behind).
    pub fn filter_entries(&self) -> usize {
        self.procs.keys().filter(Result::is_ok).count()
    }

    /// Reads every watched slot's counters at once, for [`Self::counters`] and
    /// [`Self::gc_state`] until [`Self::end_round`]. On failure each slot reads its own.
    pub fn begin_round(&mut self) {
        self.round = None;
        let Some(n) = self.slots.values().max().map(|&s| s + 1) else {
            return;
        };
        let per_cpu = batch::entry_size::<Counters>(Some(self.nr_cpus));
        let gc_size = batch::entry_size::<GcState>(None);
        let read = batch::lookup_array(self.counters_fd.as_fd(), n, per_cpu).and_then(|c| {
            Ok((
                c,
                batch::lookup_array(self.gc_state_fd.as_fd(), n, gc_size)?,
            ))
        });
        let (counters, gc) = match read {
            Ok(r) => r,
            Err(e) => {
                log::debug!("reading the counters at once failed ({e}): one lookup per slot");
                return;
            }
        };
        let one = batch::entry_size::<Counters>(Some(1));
        let slot_counters = |slot: usize| {
            (0..self.nr_cpus)
                .filter_map(|cpu| batch::read_at::<Counters>(&counters, slot * per_cpu + cpu * one))
                .fold(Counters::default(), sum_counters)
        };
        self.round = Some(Round {
            counters: (0..n as usize).map(slot_counters).collect(),
            gc: (0..n as usize)
                .map(|slot| batch::read_at::<GcState>(&gc, slot * gc_size))
                .collect::<Option<_>>()
                .unwrap_or_default(),
            fresh: vec![true; n as usize],
        });
    }

    /// A slot given or freed during a round: its counters are no longer those read.
    fn stale_in_round(&mut self, slot: u32) {
        if let Some(f) = self
            .round
            .as_mut()
            .and_then(|r| r.fresh.get_mut(slot as usize))
        {
            *f = false;
        }
    }

    /// Ends the round begun by [`Self::begin_round`]: slots read their own again.
    pub fn end_round(&mut self) {
        self.round = None;
    }

    fn read_in_round<T: Copy>(&self, slot: u32, pick: impl Fn(&Round) -> &[T]) -> Option<T> {
        let r = self.round.as_ref()?;
        let i = slot as usize;
        (*r.fresh.get(i)?)
            .then(|| pick(r).get(i).copied())
            .flatten()
    }

    /// A slot's counters, summed over CPUs.
    pub fn counters(&self, slot: u32) -> Result<Counters, KernelError> {
        if let Some(c) = self.read_in_round(slot, |r| &r.counters) {
            return Ok(c);
        }
        let per_cpu = self
            .counters
            .get(&slot, 0)
            .map_err(map_err(maps::COUNTERS))?;
        Ok(per_cpu
            .iter()
            .copied()
            .fold(Counters::default(), sum_counters))
    }

    pub fn gc_state(&self, slot: u32) -> Result<GcState, KernelError> {
        if let Some(g) = self.read_in_round(slot, |r| &r.gc) {
            return Ok(g);
        }
        self.gc_state.get(&slot, 0).map_err(map_err(maps::GC_STATE))
    }

    /// What the kernel side could not record, since it was loaded.
    pub fn losses(&self) -> KernelLosses {
        let sum = |kind: u32| {
            self.losses
                .get(&kind, 0)
                .map_or(0, |per_cpu| per_cpu.iter().sum())
        };
        KernelLosses {
            events_dropped: sum(loss::EVENTS_DROPPED),
            sites_full: sum(loss::SITES_FULL),
            site_counts_lost: sum(loss::SITE_COUNTS_LOST),
            events_throttled: sum(loss::EVENTS_THROTTLED),
            sites_over_quota: sum(loss::SITES_QUOTA),
        }
    }

    /// Every record the kernel streamed since the last call.
    pub fn drain_events(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(item) = self.events.next() {
            if item.len() >= std::mem::size_of::<Event>() {
                // SAFETY: the kernel wrote a whole `Event`; read_unaligned copes with alignment.
                out.push(unsafe { std::ptr::read_unaligned(item.as_ptr() as *const Event) });
            }
        }
        out
    }

    /// Writes the kernel-side log records (aya-log) to the `log` facade.
    pub fn flush_logs(&mut self) {
        if let Some(l) = self.logger.as_mut() {
            l.flush();
        }
    }
}
