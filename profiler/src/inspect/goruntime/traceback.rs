//! How each release's `runtime/traceback.go` prints goroutines, as data and small rules, for
//! `gprof dump` to print what `runtime.Stack(buf, true)` (and, at the system level, a SIGQUIT
//! dump) prints. Read off the sources of every release with a toolchain here (1.19, 1.21 to
//! 1.27); 1.17, 1.18 and 1.20 follow 1.19 and are checked against the corpus's dumps.

use super::GoVersion;

/// What differs between releases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    /// Go 1.22+: at the system level the header shows ` gp=0x... m=N mp=0x...` (or ` m=nil`).
    pub header_g_and_m: bool,
    /// Go 1.21+: `created by F in goroutine N`.
    pub creator_goroutine: bool,
    pub elision: Elision,
    pub names: NameStyle,
    /// `abi.FuncIDWrapper` (the compiler's wrappers), whose frames are left out.
    pub wrapper_func_id: u8,
    /// Go 1.25+: `runtime.runFinalizers` and `runtime.runCleanups` frames are always shown.
    pub shows_finalizer_frames: bool,
    /// Go 1.26+: `_Gleaked` (10) and `_Gdeadextra` (11) statuses exist.
    pub leaked_status: bool,
    /// Frames a goroutine profile keeps per stack (32 before Go 1.23's `profstackdepth`).
    pub profile_depth: usize,
}

/// Where a long stack is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elision {
    /// Go <= 1.20: the first 100 physical frames, then `...additional frames elided...`.
    Physical100,
    /// Go 1.21+: the first 50 and the last 50 printed frames, `...N frames elided...` between.
    InnerOuter50,
}

/// How function names with type parameters are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameStyle {
    /// Go <= 1.20: as the table has them (the linker already wrote `[...]`).
    Raw,
    /// Go 1.21-1.26: from the first `[` to the last `]` becomes `[...]`.
    Brackets,
    /// Go 1.27+: a generic method of a generic type keeps its name between the two `[...]`.
    BracketPairs,
}

pub fn style(version: &GoVersion) -> Style {
    let minor = if version.major > 1 {
        u32::MAX
    } else {
        version.minor
    };
    Style {
        header_g_and_m: minor >= 22,
        creator_goroutine: minor >= 21,
        elision: if minor >= 21 {
            Elision::InnerOuter50
        } else {
            Elision::Physical100
        },
        names: match minor {
            ..=20 => NameStyle::Raw,
            21..=26 => NameStyle::Brackets,
            _ => NameStyle::BracketPairs,
        },
        // The FuncID enum: 1.17 still had jmpdefer, 1.22 added corostart, 1.25 replaced
        // runfinq by runFinalizers and runCleanups; the wrapper is always last.
        wrapper_func_id: match minor {
            ..=17 => 22,
            18..=21 => 21,
            22..=24 => 22,
            _ => 23,
        },
        shows_finalizer_frames: minor >= 25,
        leaked_status: minor >= 26,
        profile_depth: if minor >= 23 { 128 } else { 32 },
    }
}

/// Goroutine statuses (`g.atomicstatus`, without `_Gscan`).
pub mod status {
    pub const IDLE: u32 = 0;
    pub const RUNNABLE: u32 = 1;
    pub const RUNNING: u32 = 2;
    pub const SYSCALL: u32 = 3;
    pub const WAITING: u32 = 4;
    pub const DEAD: u32 = 6;
    pub const COPYSTACK: u32 = 8;
    pub const PREEMPTED: u32 = 9;
    pub const LEAKED: u32 = 10;
    /// Go 1.26+: the g of an extra M, waiting for a C thread to call into Go.
    pub const DEAD_EXTRA: u32 = 11;
    pub const SCAN: u32 = 0x1000;
}

/// `gStatusStrings[status]`, `""` for the unused slots, `"???"` past the table.
pub fn status_name(style: &Style, status: u32) -> &'static str {
    match status {
        0 => "idle",
        1 => "runnable",
        2 => "running",
        3 => "syscall",
        4 => "waiting",
        5 | 7 => "",
        6 => "dead",
        8 => "copystack",
        9 => "preempted",
        10 if style.leaked_status => "leaked",
        11 if style.leaked_status => "waiting for cgo callback",
        _ => "???",
    }
}

/// A function's name as the traceback prints it (`printFuncName`).
pub fn print_name<'a>(style: &Style, name: &'a str) -> std::borrow::Cow<'a, str> {
    use std::borrow::Cow;
    if name == "runtime.gopanic" {
        return Cow::Borrowed("panic");
    }
    let (Some(i), Some(j)) = (name.find('['), name.rfind(']')) else {
        return Cow::Borrowed(name);
    };
    if style.names == NameStyle::Raw || j <= i {
        return Cow::Borrowed(name);
    }
    let interior = &name[i + 1..j];
    if style.names == NameStyle::Brackets || !interior.contains('[') {
        return Cow::Owned(format!("{}[...]{}", &name[..i], &name[j + 1..]));
    }
    // "T[...].M[...]": find the `]` that closes the first `[` and the `[` that opens the last.
    let (mut depth, mut rbr, mut lbr) = (1i32, None, None);
    for (k, c) in interior.char_indices() {
        if c == '[' {
            depth += 1;
            if depth == 1 {
                lbr = Some(k);
                break;
            }
        } else if c == ']' {
            depth -= 1;
            if depth < 0 {
                break;
            }
            if depth == 0 {
                rbr = Some(k);
            }
        }
    }
    if depth == 1 {
        match (rbr, lbr) {
            (Some(r), Some(l)) if l > r => {
                return Cow::Owned(format!(
                    "{}[...]{}[...]{}",
                    &name[..i],
                    &interior[r + 1..l],
                    &name[j + 1..]
                ));
            }
            (None, None) => {
                return Cow::Owned(format!("{}[...]{}", &name[..i], &name[j + 1..]));
            }
            _ => {}
        }
    }
    Cow::Borrowed(name)
}

/// Whether a frame of `name` is printed below the system level (`showfuncinfo`): not the
/// compiler's wrappers (unless they called a panic), not the runtime's unexported functions.
pub fn shows_frame(style: &Style, name: &str, func_id: u8, first: bool, callee: &str) -> bool {
    if elides_wrapper(style, func_id, callee) {
        return false;
    }
    if style.shows_finalizer_frames
        && (name == "runtime.runFinalizers" || name == "runtime.runCleanups")
    {
        return true;
    }
    if name == "runtime.gopanic" && !first {
        return true;
    }
    name.contains('.') && (!name.starts_with("runtime.") || is_exported_runtime(name))
}

/// A frame of the compiler's wrappers, left out of tracebacks and profiles alike, unless it
/// called a panic rather than the function it wraps (`callee`: the frame it called).
pub fn elides_wrapper(style: &Style, func_id: u8, callee: &str) -> bool {
    func_id == style.wrapper_func_id && !called_panic(callee)
}

fn called_panic(callee: &str) -> bool {
    matches!(
        callee,
        "runtime.gopanic" | "runtime.sigpanic" | "runtime.panicwrap"
    )
}

/// `runtime.X` with X exported (`runtime.Gosched`, `runtime.GC`).
fn is_exported_runtime(name: &str) -> bool {
    name.strip_prefix("runtime.")
        .and_then(|rest| rest.chars().next())
        .is_some_and(|c| c.is_ascii_uppercase())
}

/// Functions the runtime calls into on a goroutine's behalf (a signal's injected call): the
/// frame below them stopped at the faulting instruction itself, not after a call.
pub fn injected_call(name: &str) -> bool {
    matches!(
        name,
        "runtime.sigpanic" | "runtime.asyncPreempt" | "runtime.debugCallV2"
    )
}

/// Whether a goroutine that started in `start` is the runtime's own (`isSystemGoroutine`):
/// started in package runtime, except `runtime.main` and the coroutine and wasm starts; the
/// finalizer goroutine (and 1.25+'s cleanup goroutines) only while it runs no user code,
/// which is when it waits for work (`waiting` with reason `idle`).
pub fn is_system_goroutine(start: &str, idle: bool) -> bool {
    match start {
        "runtime.main" | "runtime.corostart" | "runtime.handleAsyncEvent" => false,
        "runtime.runfinq" | "runtime.runFinalizers" | "runtime.runCleanups" => idle,
        _ => start.starts_with("runtime."),
    }
}

/// The wait reasons in which the finalizer and cleanup goroutines wait for work.
pub const FINALIZER_IDLE: &[&str] = &["finalizer wait", "cleanup wait"];

#[cfg(test)]
mod tests {
    use super::*;

    fn v(minor: u32) -> Style {
        style(&GoVersion::parse(&format!("go1.{minor}")).expect("a version"))
    }

    #[test]
    fn generic_names_print_as_each_release_prints_them() {
        let name = "main.(*List[go.shape.int]).Push[go.shape.string]";
        assert_eq!(print_name(&v(19), name), name);
        assert_eq!(print_name(&v(21), name), "main.(*List[...]");
        assert_eq!(print_name(&v(27), name), "main.(*List[...]).Push[...]");
        assert_eq!(
            print_name(&v(27), "main.Map[go.shape.int,go.shape.string]"),
            "main.Map[...]"
        );
        assert_eq!(
            print_name(&v(24), "main.Map[go.shape.[]int]"),
            "main.Map[...]"
        );
        assert_eq!(print_name(&v(27), "runtime.gopanic"), "panic");
        assert_eq!(print_name(&v(27), "main.main"), "main.main");
    }

    #[test]
    fn runtime_frames_and_wrappers_are_left_out() {
        let s = v(27);
        assert!(shows_frame(&s, "main.main", 0, true, ""));
        assert!(!shows_frame(&s, "runtime.gopark", 0, true, ""));
        assert!(shows_frame(&s, "runtime.Gosched", 0, true, ""));
        assert!(!shows_frame(
            &s,
            "main.(*T).M",
            s.wrapper_func_id,
            false,
            "main.T.M"
        ));
        assert!(shows_frame(
            &s,
            "main.(*T).M",
            s.wrapper_func_id,
            false,
            "runtime.panicwrap"
        ));
        assert!(shows_frame(&s, "runtime.runFinalizers", 0, false, ""));
        assert!(!shows_frame(&v(24), "runtime.runfinq", 0, false, ""));
        assert!(!shows_frame(&s, "nodot", 0, false, ""));
    }

    #[test]
    fn statuses_are_named_as_the_release_names_them() {
        assert_eq!(status_name(&v(27), 4), "waiting");
        assert_eq!(status_name(&v(27), 10), "leaked");
        assert_eq!(status_name(&v(25), 10), "???");
        assert_eq!(status_name(&v(19), 5), "");
    }

    #[test]
    fn system_goroutines_are_those_the_runtime_started() {
        assert!(is_system_goroutine("runtime.forcegchelper", false));
        assert!(!is_system_goroutine("runtime.main", false));
        assert!(!is_system_goroutine("main.worker", false));
        assert!(is_system_goroutine("runtime.runfinq", true));
        assert!(!is_system_goroutine("runtime.runfinq", false));
    }
}
