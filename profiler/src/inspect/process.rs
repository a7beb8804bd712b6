//! A target process, seen through procfs: identity (PID plus start time, so that a reused PID
//! is never mistaken for the process gprof attached to), executable, memory.
//!
//! Paths go through `/proc/PID/...`, which also reaches processes in containers: PIDs are
//! host PIDs, `/proc/PID/exe` opens the file inside the container's mount namespace.

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::inspect::binary::ExecutableInfo;

/// Linux's PID_MAX_LIMIT: no PID is larger.
pub const PID_MAX: i64 = 4_194_304;
/// `task_struct.flags` bit of kernel threads (field 9 of /proc/PID/stat).
const PF_KTHREAD: u64 = 0x0020_0000;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{0} is not a valid PID (a positive integer up to {PID_MAX})")]
    InvalidPid(i64),
    #[error("no process with PID {0}")]
    NotFound(u32),
    #[error("PID {0} is a kernel thread, not a Go program")]
    KernelThread(u32),
    #[error("PID {0} has exited (zombie)")]
    Zombie(u32),
    #[error(
        "permission denied reading {0}: gprof needs root, or CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH to read another user's process (its memory, environment and executable are that user's alone)"
    )]
    Permission(PathBuf),
    #[error(
        "permission denied reading {0} even as root: the process holds privileges gprof lacks (capabilities outside its bounding set) or a security module forbids access"
    )]
    PermissionAsRoot(PathBuf),
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unexpected contents in {path}: {why}")]
    Parse { path: PathBuf, why: String },
    #[error("cannot find where {0} is mapped in the process")]
    NotMapped(PathBuf),
}

/// The permission error that fits who we run as.
pub fn permission_error(path: PathBuf) -> ProcessError {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        ProcessError::PermissionAsRoot(path)
    } else {
        ProcessError::Permission(path)
    }
}

fn io_error(pid: u32, path: PathBuf, source: std::io::Error) -> ProcessError {
    match source.kind() {
        ErrorKind::NotFound => ProcessError::NotFound(pid),
        ErrorKind::PermissionDenied => permission_error(path),
        _ => ProcessError::Io { path, source },
    }
}

/// A process identity that survives PID reuse: the PID and its start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcessId {
    pub pid: u32,
    /// Start time in clock ticks after boot (field 22 of /proc/PID/stat).
    pub start_time: u64,
}

/// The fields of /proc/PID/stat gprof uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub comm: String,
    pub state: char,
    pub flags: u64,
    pub start_time: u64,
    /// CPU time in clock ticks, user plus system (fields 14 and 15).
    pub cpu_ticks: u64,
    /// The size of its address space in bytes (field 23): what it can hold at most.
    pub vsize: u64,
}

impl Stat {
    /// CPU time in seconds.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let hz = procfs::ticks_per_second();
        (hz > 0).then(|| self.cpu_ticks as f64 / hz as f64)
    }
}

/// Parses /proc/PID/stat (procfs's parser: `comm` may hold spaces and parentheses).
pub fn parse_stat(text: &str) -> Option<Stat> {
    use procfs::FromRead as _;
    // The kernel writes `pid (comm) state ...`; procfs slices around the first '(' and the
    // last ')' and panics on text not of that shape, so the shape is checked first.
    let line = text.trim();
    let b = line.as_bytes();
    let (open, close) = (line.find('(')?, line.rfind(')')?);
    if open == 0 || b[open - 1] != b' ' || close <= open || b.get(close + 1) != Some(&b' ') {
        return None;
    }
    let stat = procfs::process::Stat::from_read(line.as_bytes()).ok()?;
    Some(Stat {
        // The process names itself: no control characters reach a log line or a label.
        comm: stat
            .comm
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect(),
        state: stat.state,
        flags: u64::from(stat.flags),
        start_time: stat.starttime,
        cpu_ticks: stat.utime.checked_add(stat.stime)?,
        vsize: stat.vsize,
    })
}

/// Identity of an executable file: device and inode (processes of one file share one
/// attachment), and size and modification time (a file rewritten in place is another
/// program). Probes go only where a plan made from a file of this identity says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExeKey {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
}

impl ExeKey {
    pub fn of_metadata(m: &std::fs::Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        }
    }

    /// The identity of an open file, as it is now.
    pub fn of_file(f: &File) -> std::io::Result<Self> {
        f.metadata().map(|m| Self::of_metadata(&m))
    }

    pub fn of(p: &Process) -> Self {
        p.exe
    }
}

/// A live process.
#[derive(Clone, Debug)]
pub struct Process {
    pub id: ProcessId,
    pub comm: String,
    /// The executable it ran when opened.
    pub exe: ExeKey,
    /// Its /proc/PID/stat, kept open: read again each sample without a path lookup, and
    /// tied to this process (reads fail once it is reaped, even if its PID is reused).
    stat: Arc<File>,
}

impl Process {
    /// Validates a PID given by a user (any integer) and opens the process.
    pub fn from_user_pid(pid: i64) -> Result<Self, ProcessError> {
        if pid <= 0 || pid > PID_MAX {
            return Err(ProcessError::InvalidPid(pid));
        }
        Self::open(pid as u32)
    }

    pub fn open(pid: u32) -> Result<Self, ProcessError> {
        let path = PathBuf::from(format!("/proc/{pid}/stat"));
        let file = File::open(&path).map_err(|e| io_error(pid, path, e))?;
        let stat = read_stat(&file, pid)?;
        if stat.flags & PF_KTHREAD != 0 {
            return Err(ProcessError::KernelThread(pid));
        }
        if stat.state == 'Z' || stat.state == 'X' {
            return Err(ProcessError::Zombie(pid));
        }
        let exe = Self::exe_path_of(pid);
        let meta = std::fs::metadata(&exe).map_err(|e| io_error(pid, exe.clone(), e))?;
        Ok(Self {
            id: ProcessId {
                pid,
                start_time: stat.start_time,
            },
            comm: stat.comm,
            exe: ExeKey::of_metadata(&meta),
            stat: Arc::new(file),
        })
    }

    pub fn pid(&self) -> u32 {
        self.id.pid
    }

    fn exe_path_of(pid: u32) -> PathBuf {
        PathBuf::from(format!("/proc/{pid}/exe"))
    }

    /// `/proc/PID/exe`: opens the very file the process runs, even inside a container or
    /// after the file was replaced on disk.
    pub fn exe_path(&self) -> PathBuf {
        Self::exe_path_of(self.id.pid)
    }

    /// Its /proc/PID/stat, if this same process (not a reuse of its PID) is still running.
    pub fn live_stat(&self) -> Option<Stat> {
        read_stat(&self.stat, self.id.pid)
            .ok()
            .filter(|s| s.start_time == self.id.start_time && s.state != 'Z' && s.state != 'X')
    }

    /// Whether this same process (not a reuse of its PID) is still running.
    pub fn is_alive(&self) -> bool {
        self.live_stat().is_some()
    }

    /// CPU time used so far (user and system: probe hits are charged as system time).
    pub fn cpu_seconds(&self) -> Option<f64> {
        self.live_stat().and_then(|s| s.cpu_seconds())
    }

    /// Whether the process still runs the executable it was opened with (an `exec` keeps
    /// the PID and start time but replaces the program).
    pub fn runs_same_executable(&self) -> bool {
        self.runs(self.exe)
    }

    /// Whether the process runs the executable `key` now.
    pub fn runs(&self, key: ExeKey) -> bool {
        std::fs::metadata(self.exe_path()).is_ok_and(|m| ExeKey::of_metadata(&m) == key)
    }

    pub fn memory(&self) -> Result<ProcMem, ProcessError> {
        let path = PathBuf::from(format!("/proc/{}/mem", self.id.pid));
        let file = File::open(&path).map_err(|e| io_error(self.id.pid, path.clone(), e))?;
        Ok(ProcMem {
            file,
            path,
            pid: self.id.pid,
        })
    }

    /// The load bias of a position-independent executable (0 otherwise): runtime address =
    /// file address + bias.
    pub fn load_bias(&self, exe: &ExecutableInfo) -> Result<u64, ProcessError> {
        if !exe.pie {
            return Ok(0);
        }
        let path = PathBuf::from(format!("/proc/{}/maps", self.id.pid));
        let maps =
            std::fs::read_to_string(&path).map_err(|e| io_error(self.id.pid, path.clone(), e))?;
        let (vaddr, offset) = exe
            .first_load
            .ok_or_else(|| ProcessError::NotMapped(exe.path.clone()))?;
        load_bias_from_maps(&maps, self.exe.dev, self.exe.ino, vaddr, offset)
            .ok_or_else(|| ProcessError::NotMapped(exe.path.clone()))
    }
}

/// Reads an open /proc/PID/stat from its start (the kernel writes it anew on each read).
fn read_stat(file: &File, pid: u32) -> Result<Stat, ProcessError> {
    let path = || PathBuf::from(format!("/proc/{pid}/stat"));
    let mut buf = [0u8; 1024];
    let mut len = 0;
    // One read returns the whole line (a few hundred bytes); loop in case it does not.
    while len < buf.len() {
        match file.read_at(&mut buf[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // ESRCH: the process was reaped.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                return Err(ProcessError::NotFound(pid));
            }
            Err(e) => return Err(io_error(pid, path(), e)),
        }
    }
    let malformed = || ProcessError::Parse {
        path: path(),
        why: "malformed stat line".into(),
    };
    let text = std::str::from_utf8(&buf[..len]).map_err(|_| malformed())?;
    parse_stat(text).ok_or_else(malformed)
}

/// Finds the mapping of the executable (by device and inode) that covers the file offset of
/// its first loadable segment, and returns `start - vaddr` for that segment's page.
pub fn load_bias_from_maps(maps: &str, dev: u64, ino: u64, vaddr: u64, offset: u64) -> Option<u64> {
    let page = !0xfffu64;
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (range, _perms, off, devstr, inode) =
            (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
        if inode.parse::<u64>().ok()? != ino {
            continue;
        }
        let (maj, min) = devstr.split_once(':')?;
        let (maj, min) = (
            u64::from_str_radix(maj, 16).ok()?,
            u64::from_str_radix(min, 16).ok()?,
        );
        if libc::makedev(maj as u32, min as u32) != dev {
            continue;
        }
        let start = u64::from_str_radix(range.split_once('-')?.0, 16).ok()?;
        let off = u64::from_str_radix(off, 16).ok()?;
        if off == offset & page {
            return start.checked_sub(vaddr & page);
        }
    }
    None
}

/// Reads another process's memory through /proc/PID/mem (never writes, never stops it).
#[derive(Debug)]
pub struct ProcMem {
    file: File,
    path: PathBuf,
    pid: u32,
}

impl ProcMem {
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ProcessError> {
        self.file
            .read_exact_at(buf, addr)
            .map_err(|source| ProcessError::Io {
                path: self.path.clone(),
                source,
            })
    }

    pub fn read_u64(&self, addr: u64) -> Result<u64, ProcessError> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    pub fn read_i32(&self, addr: u64) -> Result<i32, ProcessError> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b)?;
        Ok(i32::from_le_bytes(b))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One `process_vm_readv`: the bytes at each `(addr, len)` of `parts` (at most
    /// [`IOV_MAX`]) into consecutive bytes of `out`, in order. Returns how many bytes were read
    /// (the kernel stops at the first unreadable one), or the error when none were.
    fn readv(&self, parts: &[(u64, usize)], out: &mut [u8]) -> std::io::Result<usize> {
        let total: usize = parts.iter().map(|&(_, n)| n).sum();
        assert!(out.len() >= total, "output buffer too small");
        assert!(parts.len() <= IOV_MAX, "more parts than one call takes");
        let mut local = Vec::with_capacity(parts.len());
        let mut rest = &mut out[..total];
        for &(_, n) in parts {
            let (head, tail) = rest.split_at_mut(n);
            local.push(libc::iovec {
                iov_base: head.as_mut_ptr().cast(),
                iov_len: n,
            });
            rest = tail;
        }
        let remote: Vec<libc::iovec> = parts
            .iter()
            .map(|&(a, n)| libc::iovec {
                iov_base: a as *mut libc::c_void,
                iov_len: n,
            })
            .collect();
        // SAFETY: the local iovecs cover disjoint ranges of `out` (split above); the remote
        // ones are only read by the kernel, in the other process.
        let n = unsafe {
            libc::process_vm_readv(
                self.pid as libc::pid_t,
                local.as_ptr(),
                local.len() as libc::c_ulong,
                remote.as_ptr(),
                remote.len() as libc::c_ulong,
                0,
            )
        };
        usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
    }

    /// Reads `len` bytes at each `(addr, len)` of `parts` into consecutive bytes of `out`, in
    /// order (parts on a page the part before reached are read with it); all or an error.
    /// Unlike [`ProcMem::read`] this reaches whatever program the PID runs now: confirm with
    /// [`ProcMem::still_opened_program`] afterwards.
    pub fn gather(&self, parts: &[(u64, usize)], out: &mut [u8]) -> Result<(), ProcessError> {
        let order: Vec<usize> = (0..parts.len()).collect();
        match self.read_in_order(parts, &order, out, true) {
            Ok(_) => Ok(()),
            Err(source) if source.kind() == ErrorKind::PermissionDenied => {
                Err(permission_error(self.path.clone()))
            }
            Err(source) => Err(ProcessError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Reads each `(addr, len)` of `parts` into consecutive bytes of `out`, in as few
    /// syscalls and page pins as the parts allow (they are read in address order, those on
    /// a page already reached together). Returns, per part, whether it was read whole; an
    /// unreadable one (a g freed under us) does not stop the others.
    pub fn read_each(&self, parts: &[(u64, usize)], out: &mut [u8]) -> Vec<bool> {
        let mut order: Vec<usize> = (0..parts.len()).collect();
        order.sort_by_key(|&i| parts[i].0);
        self.read_in_order(parts, &order, out, false)
            .expect("reading part by part never fails whole")
    }

    /// Reads the parts `order` names, in that order and [`Batch`] by batch, each into its
    /// place in `out` (parts laid end to end in their own order). The kernel stops at the
    /// first unreadable byte: the parts before it are whole; `whole` makes that an error,
    /// else the part it stopped in is skipped and reading resumes after it. Returns, per
    /// part, whether it was read.
    fn read_in_order(
        &self,
        parts: &[(u64, usize)],
        order: &[usize],
        out: &mut [u8],
        whole: bool,
    ) -> std::io::Result<Vec<bool>> {
        let mut ok = vec![false; parts.len()];
        let offsets = out_offsets(parts);
        let mut scratch = Vec::new();
        let mut start = 0;
        while start < order.len() {
            let batch = Batch::of(parts, &order[start..]);
            scratch.resize(batch.bytes(), 0);
            let read = match self.readv(&batch.ranges, &mut scratch) {
                Ok(n) => n,
                Err(e) if whole => return Err(e),
                Err(_) => 0,
            };
            let mut next = start + batch.at.len();
            for (k, &at) in batch.at.iter().enumerate() {
                let i = order[start + k];
                let n = parts[i].1;
                if at + n > read {
                    if whole {
                        return Err(std::io::Error::new(
                            ErrorKind::UnexpectedEof,
                            "part of the memory is unreadable",
                        ));
                    }
                    next = start + k + 1;
                    break;
                }
                out[offsets[i]..offsets[i] + n].copy_from_slice(&scratch[at..at + n]);
                ok[i] = true;
            }
            start = next;
        }
        Ok(ok)
    }

    /// Reads each `(addr, len)` of `parts` on its own: None for a part that could not be read
    /// whole, without stopping the others.
    pub fn read_parts(&self, parts: &[(u64, usize)]) -> Vec<Option<Vec<u8>>> {
        let mut out = vec![0u8; parts.iter().map(|&(_, n)| n).sum()];
        let ok = self.read_each(parts, &mut out);
        let mut rest = out.as_slice();
        parts
            .iter()
            .zip(ok)
            .map(|(&(_, n), ok)| {
                let (head, tail) = rest.split_at(n);
                rest = tail;
                ok.then(|| head.to_vec())
            })
            .collect()
    }

    /// Whether the program this handle was opened on still runs: reads through
    /// /proc/PID/mem fail once the process has exec'd or exited (the file holds the old
    /// address space), so a true answer after [`ProcMem::gather`] or
    /// [`ProcMem::read_scattered`] means those read the opened program.
    pub fn still_opened_program(&self, addr: u64) -> bool {
        self.read_u64(addr).is_ok()
    }

    /// Reads `len` bytes at each of `addrs` into consecutive slots of `out`. Returns, per
    /// address, whether it was read; an unreadable one does not stop the others.
    pub fn read_scattered(&self, addrs: &[u64], len: usize, out: &mut [u8]) -> Vec<bool> {
        let parts: Vec<(u64, usize)> = addrs.iter().map(|&a| (a, len)).collect();
        self.read_each(&parts, out)
    }
}

/// iovecs one `process_vm_readv` takes (Linux's UIO_MAXIOV).
const IOV_MAX: usize = 1024;

/// Merging parts never spans more than this (the smallest page size): a merged range reads
/// no page that none of its parts asked for.
const PAGE: u64 = 4096;

/// Where each part's bytes start in `out`, parts laid end to end.
fn out_offsets(parts: &[(u64, usize)]) -> Vec<usize> {
    parts
        .iter()
        .scan(0, |at, &(_, n)| {
            let o = *at;
            *at += n;
            Some(o)
        })
        .collect()
}

/// Parts as the remote ranges of one `process_vm_readv`. The kernel pins the pages of each
/// remote iovec on its own (under the target's mmap lock, the bulk of the call's cost), so a
/// part that starts at or after the end of the range before it, on a page that range reaches
/// already, joins it. Parts that overlap or go back start a range of their own: the caller
/// may read a word twice on purpose (before and after another).
struct Batch {
    ranges: Vec<(u64, usize)>,
    /// Per part taken (a prefix of the order given), where its bytes start in the ranges'
    /// bytes laid end to end.
    at: Vec<usize>,
}

impl Batch {
    /// The parts `order` names (indices into `parts`), from the first, until [`IOV_MAX`]
    /// ranges are full.
    fn of(parts: &[(u64, usize)], order: &[usize]) -> Self {
        let mut b = Batch {
            ranges: Vec::new(),
            at: Vec::with_capacity(order.len().min(4 * IOV_MAX)),
        };
        let mut bytes = 0;
        for &i in order {
            let (addr, n) = parts[i];
            if let Some((start, len)) = b.ranges.last_mut() {
                let end = start.wrapping_add(*len as u64);
                if addr >= end && *len > 0 && addr / PAGE == (end - 1) / PAGE {
                    let grown = (addr - *start) as usize + n;
                    b.at.push(bytes - *len + (addr - *start) as usize);
                    bytes += grown - *len;
                    *len = grown;
                    continue;
                }
            }
            if b.ranges.len() == IOV_MAX {
                break;
            }
            b.ranges.push((addr, n));
            b.at.push(bytes);
            bytes += n;
        }
        b
    }

    /// Bytes the ranges hold.
    fn bytes(&self) -> usize {
        self.ranges.iter().map(|&(_, n)| n).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_on_a_page_already_reached_share_a_range() {
        let parts = [
            (0x1000, 8),  // a range
            (0x1010, 4),  // same page, after it: joins
            (0x1ff8, 16), // same page, runs into the next: joins
            (0x2100, 8),  // starts on the page the range reached last: joins
            (0x2104, 8),  // overlaps the range: a read of its own
            (0x3000, 8),  // a page the range never reached: a read of its own
            (0x2f00, 8),  // goes back: a read of its own
        ];
        let b = Batch::of(&parts, &[0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(
            b.ranges,
            vec![(0x1000, 0x1108), (0x2104, 8), (0x3000, 8), (0x2f00, 8)]
        );
        assert_eq!(b.at, vec![0, 0x10, 0xff8, 0x1100, 0x1108, 0x1110, 0x1118]);
        assert_eq!(b.bytes(), 0x1120);
        // No more ranges than one call takes; the parts left wait for the next batch.
        let many: Vec<(u64, usize)> = (0..3000u64).map(|i| (i * 2 * PAGE, 8)).collect();
        let order: Vec<usize> = (0..many.len()).collect();
        let b = Batch::of(&many, &order);
        assert_eq!((b.ranges.len(), b.at.len()), (IOV_MAX, IOV_MAX));
    }

    #[test]
    fn scattered_reads_cross_batches_and_skip_what_is_unreadable() {
        // Our own memory: 3000 words, one unmapped address among them.
        let words: Vec<u64> = (0..3000u64).map(|i| i * 7 + 1).collect();
        let mut addrs: Vec<u64> = words.iter().map(|w| w as *const u64 as u64).collect();
        addrs[1500] = 8;
        let me = Process::open(std::process::id()).unwrap();
        let mem = me.memory().unwrap();
        let mut out = vec![0u8; 8 * addrs.len()];
        let ok = mem.read_scattered(&addrs, 8, &mut out);
        for (i, w) in out.chunks_exact(8).enumerate() {
            if i == 1500 {
                assert!(!ok[i]);
                continue;
            }
            assert!(ok[i], "word {i} not read");
            assert_eq!(u64::from_le_bytes(w.try_into().unwrap()), words[i]);
        }
    }

    #[test]
    fn gathered_reads_fill_in_order_and_fail_whole() {
        let (a, b, c) = (0x1122_3344_5566_7788u64, 0x99u32, [7u8; 16]);
        let me = Process::open(std::process::id()).unwrap();
        let mem = me.memory().unwrap();
        let parts = [
            (&b as *const u32 as u64, 4),
            (&a as *const u64 as u64, 8),
            (c.as_ptr() as u64, 16),
        ];
        let mut out = [0u8; 28];
        mem.gather(&parts, &mut out).unwrap();
        assert_eq!(out[..4], b.to_le_bytes());
        assert_eq!(out[4..12], a.to_le_bytes());
        assert_eq!(out[12..], c);
        assert!(mem.gather(&[parts[0], (8, 8)], &mut out).is_err());
        // More parts than one syscall takes (a P's fields for each of 512 Ps, say).
        let words: Vec<u64> = (0..3000u64).map(|i| i * 11 + 1).collect();
        let many: Vec<(u64, usize)> = words.iter().map(|w| (w as *const u64 as u64, 8)).collect();
        let mut out = vec![0u8; 8 * many.len()];
        mem.gather(&many, &mut out).unwrap();
        for (i, w) in out.chunks_exact(8).enumerate() {
            assert_eq!(u64::from_le_bytes(w.try_into().unwrap()), words[i]);
        }
    }

    #[test]
    fn parts_are_read_whole_or_not_at_all() {
        let words: Vec<u64> = (0..3000u64).map(|i| i * 3 + 5).collect();
        let me = Process::open(std::process::id()).unwrap();
        let mem = me.memory().unwrap();
        let mut parts: Vec<(u64, usize)> = (0..2999)
            .map(|i| (&words[i] as *const u64 as u64, 8 * (1 + i % 2)))
            .collect();
        parts[1500] = (8, 16);
        let got = mem.read_parts(&parts);
        for (i, g) in got.iter().enumerate() {
            if i == 1500 {
                assert!(g.is_none());
                continue;
            }
            let g = g.as_ref().unwrap_or_else(|| panic!("part {i} not read"));
            assert_eq!(g.len(), parts[i].1);
            assert_eq!(u64::from_le_bytes(g[..8].try_into().unwrap()), words[i]);
        }
    }

    #[test]
    fn kept_handles_see_an_exec_and_a_reaped_process() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read x; exec sleep 30"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let p = Process::open(child.id()).unwrap();
        let mem = p.memory().unwrap();
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", child.id())).unwrap();
        let first = u64::from_str_radix(maps.split('-').next().unwrap(), 16).unwrap();
        assert!(mem.still_opened_program(first));
        assert!(p.live_stat().is_some());
        drop(child.stdin.take());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while mem.still_opened_program(first) {
            assert!(std::time::Instant::now() < deadline, "exec not seen");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // Same process, another program: alive, and /proc/PID/mem opened before says so.
        assert!(p.live_stat().is_some());
        assert!(!p.runs_same_executable());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(p.live_stat().is_none());
        assert!(matches!(
            read_stat(&p.stat, p.pid()),
            Err(ProcessError::NotFound(_))
        ));
    }

    #[test]
    fn parses_stat_with_awkward_comm() {
        // As the kernel writes it (52 fields), after `comm`.
        const REST: &str = "1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 7 0 98765 3133440 416 18446744073709551615 94104743088128 94104743108009 140733652442848 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 94104743124016 94104743125632 94105407045632 140733652449821 140733652449841 140733652449841 140733652451307 0";
        let line = format!("1234 (my (odd) prog) S {REST}");
        let s = parse_stat(&line).unwrap();
        assert_eq!(s.comm, "my (odd) prog");
        assert_eq!(s.state, 'S');
        assert_eq!(s.flags, 4194560);
        assert_eq!(s.start_time, 98765);
        assert_eq!(s.cpu_ticks, 8);
        let newline = format!("1234 (a\nb\x1b) S {REST}");
        assert_eq!(parse_stat(&newline).unwrap().comm, "a?b?");
        assert!(parse_stat("1234 (x").is_none());
        // Shapes procfs's parser would panic on (found by fuzzing).
        for bad in [")(", "(x) S", "1 (x)", "1 (x)S 1", "é(x) S 1", "1 (x)é"] {
            assert!(parse_stat(bad).is_none(), "{bad}");
        }
        assert!(parse_stat("").is_none());
    }

    #[test]
    fn finds_the_load_bias_of_a_pie() {
        let dev = libc::makedev(0xfd, 0x01);
        let maps = "\
555555554000-555555556000 r--p 00000000 fd:01 42 /usr/bin/app
555555556000-555555600000 r-xp 00002000 fd:01 42 /usr/bin/app
7ffff7dd3000-7ffff7dfc000 r-xp 00000000 fd:01 7 /lib/ld.so";
        assert_eq!(
            load_bias_from_maps(maps, dev, 42, 0, 0),
            Some(0x5555_5555_4000)
        );
        assert_eq!(load_bias_from_maps(maps, dev, 43, 0, 0), None);
    }

    #[test]
    fn rejects_impossible_pids() {
        for pid in [0, -1, PID_MAX + 1, i64::MAX] {
            assert!(matches!(
                Process::from_user_pid(pid),
                Err(ProcessError::InvalidPid(_))
            ));
        }
    }

    #[test]
    fn reads_its_own_memory_and_identity() {
        let me = Process::open(std::process::id()).unwrap();
        assert!(me.is_alive());
        let value: u64 = 0x1122_3344_5566_7788;
        let mem = me.memory().unwrap();
        assert_eq!(mem.read_u64(&value as *const u64 as u64).unwrap(), value);
    }

    #[test]
    fn kernel_threads_are_refused() {
        let kthread = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .find(|&pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|t| parse_stat(&t))
                    .is_some_and(|s| s.flags & PF_KTHREAD != 0)
            });
        // The tests run in the host's PID namespace, where kthreadd (PID 2) is always seen.
        let pid = kthread.expect("no kernel thread visible in this PID namespace");
        assert!(matches!(Process::open(pid), Err(ProcessError::KernelThread(p)) if p == pid));
    }
}
