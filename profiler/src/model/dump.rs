//! A goroutine dump read from outside: every goroutine with its whole stack, as the runtime
//! knows it. What `gprof dump` prints in the runtime's text format, pprof's and JSON.

use std::sync::Arc;

use serde::Serialize;

/// What a dump was taken of.
#[derive(Clone, Debug, Serialize)]
pub struct DumpInfo {
    pub pid: u32,
    pub executable: String,
    pub go_version: String,
    /// Unix time (seconds) of the read.
    pub taken_at: f64,
}

/// One goroutine.
#[derive(Clone, Debug, Serialize)]
pub struct Goroutine {
    pub id: u64,
    /// The g's address.
    pub g: u64,
    /// `g.atomicstatus` without the scan bit.
    pub status: u32,
    /// The GC was scanning its stack.
    pub scan: bool,
    /// What the header shows: the wait reason, or the status's name.
    pub state: String,
    pub wait_reason: Option<String>,
    /// Whole minutes since a GC found it blocked (the runtime's own dating, shown from 1).
    pub wait_minutes: i64,
    /// Seconds since a GC found it blocked, if one has.
    pub waited_seconds: Option<f64>,
    pub locked_to_thread: bool,
    /// The M running it (or holding it in a system call).
    pub m: Option<MRef>,
    /// Started by the runtime for its own work (not shown without `--system`).
    pub system: bool,
    /// The function the goroutine started in (`g.startpc`).
    pub start_function: Option<Arc<str>>,
    pub stack: Stack,
    pub created_by: Option<CreatedBy>,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct MRef {
    pub id: i64,
    pub addr: u64,
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Stack {
    Frames {
        frames: Vec<Frame>,
    },
    /// Running on a CPU when read: its stack is not readable then.
    Running,
    /// Its stack could not be read as it was (it ran, or moved, while read; or it does not
    /// hold together).
    Unreadable {
        why: String,
    },
}

/// One frame as a traceback prints it: a function in progress, inlined ones included.
#[derive(Clone, Debug, Serialize)]
pub struct Frame {
    pub function: Arc<str>,
    pub file: Arc<str>,
    pub line: u32,
    pub inlined: bool,
    /// The physical frame's pc less its function's entry (`+0x..`; not for inlined frames).
    pub offset: u64,
    pub pc: u64,
    pub sp: u64,
    pub fp: u64,
    #[serde(skip)]
    pub func_id: u8,
}

#[derive(Clone, Debug, Serialize)]
pub struct CreatedBy {
    pub function: Arc<str>,
    pub file: Arc<str>,
    pub line: u32,
    pub offset: u64,
    /// Go 1.21+: the goroutine whose `go` statement it was.
    pub goroutine: Option<u64>,
    #[serde(skip)]
    pub func_id: u8,
}

/// What a dump read, for its last line and the daemon's logs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DumpTotals {
    pub goroutines: u64,
    pub running: u64,
    pub unreadable: u64,
    /// Read a second time because they changed during the first read.
    pub reread: u64,
}
