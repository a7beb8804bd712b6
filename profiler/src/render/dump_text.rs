//! A dump in the runtime's own text format: what `runtime.Stack(buf, true)` and
//! `/debug/pprof/goroutine?debug=2` print, or with `system` what a SIGQUIT dump prints
//! (`GOTRACEBACK=system`: runtime goroutines and frames, `fp= sp= pc=`, and since Go 1.22 the
//! g and its M in the header). Arguments are printed as `(...)`.

use std::io::{self, Write};

use crate::inspect::goruntime::traceback::{self, Elision, Style, status};
use crate::model::dump::{Frame, Goroutine, Stack};

/// Frames printed at each end of a long stack (Go 1.21+), and physical frames before 1.21.
const INNER: usize = 50;
const OUTER: usize = 50;
const OLD_MAX_PHYSICAL: usize = 100;

/// Whether the goroutine is printed at this level.
pub fn shown(g: &Goroutine, system: bool) -> bool {
    system || !g.system
}

/// One goroutine's block, followed by a blank line.
pub fn write(w: &mut impl Write, style: &Style, g: &Goroutine, system: bool) -> io::Result<()> {
    write!(w, "goroutine {}", g.id)?;
    if system && style.header_g_and_m {
        write!(w, " gp={:#x}", g.g)?;
        match g.m {
            Some(m) => write!(w, " m={} mp={:#x}", m.id, m.addr)?,
            None => write!(w, " m=nil")?,
        }
    }
    write!(w, " [{}", g.state)?;
    if g.status == status::LEAKED && style.leaked_status {
        write!(w, " (leaked)")?;
    }
    if g.scan {
        write!(w, " (scan)")?;
    }
    if g.wait_minutes >= 1 {
        write!(w, ", {} minutes", g.wait_minutes)?;
    }
    if g.locked_to_thread {
        write!(w, ", locked to thread")?;
    }
    writeln!(w, "]:")?;
    match &g.stack {
        Stack::Running => writeln!(w, "\tgoroutine running on other thread; stack unavailable")?,
        Stack::Unreadable { why } => {
            writeln!(w, "\tgoroutine stack unavailable from outside ({why})")?
        }
        Stack::Frames { frames } => write_frames(w, style, frames, system)?,
    }
    if let Some(c) = &g.created_by
        && (system || traceback::shows_frame(style, &c.function, c.func_id, false, ""))
    {
        write!(
            w,
            "created by {}",
            traceback::print_name(style, &c.function)
        )?;
        if let Some(parent) = c.goroutine {
            write!(w, " in goroutine {parent}")?;
        }
        write!(w, "\n\t{}:{}", c.file, c.line)?;
        if c.offset > 0 {
            write!(w, " +{:#x}", c.offset)?;
        }
        writeln!(w)?;
    }
    writeln!(w)
}

/// The frames a traceback prints at this level, in order (innermost first).
pub fn visible<'a>(style: &Style, frames: &'a [Frame], system: bool) -> Vec<&'a Frame> {
    if system {
        return frames.iter().collect();
    }
    let mut out = Vec::new();
    let mut callee = "";
    for f in frames {
        if traceback::shows_frame(style, &f.function, f.func_id, out.is_empty(), callee) {
            out.push(f);
        }
        callee = &f.function;
    }
    if out.is_empty() {
        // A goroutine of runtime frames only is printed with them all.
        return frames.iter().collect();
    }
    out
}

fn write_frames(
    w: &mut impl Write,
    style: &Style,
    frames: &[Frame],
    system: bool,
) -> io::Result<()> {
    match style.elision {
        Elision::InnerOuter50 => {
            let shown = visible(style, frames, system);
            if shown.len() > INNER + OUTER {
                for f in &shown[..INNER] {
                    write_frame(w, style, f, system)?;
                }
                writeln!(w, "...{} frames elided...", shown.len() - INNER - OUTER)?;
                for f in &shown[shown.len() - OUTER..] {
                    write_frame(w, style, f, system)?;
                }
            } else {
                for f in shown {
                    write_frame(w, style, f, system)?;
                }
            }
        }
        Elision::Physical100 => {
            // The frames of the first 100 physical frames (a physical frame is one pc and sp).
            let mut physical = 0;
            let mut last = None;
            let mut cut = frames.len();
            for (i, f) in frames.iter().enumerate() {
                if last != Some((f.pc, f.sp)) {
                    physical += 1;
                    last = Some((f.pc, f.sp));
                    if physical > OLD_MAX_PHYSICAL {
                        cut = i;
                        break;
                    }
                }
            }
            let shown = visible(style, &frames[..cut], system);
            for f in &shown {
                write_frame(w, style, f, system)?;
            }
            // The runtime compares the frames it printed (not the physical ones it walked)
            // with its limit.
            if shown.len() == OLD_MAX_PHYSICAL {
                writeln!(w, "...additional frames elided...")?;
            }
        }
    }
    Ok(())
}

fn write_frame(w: &mut impl Write, style: &Style, f: &Frame, system: bool) -> io::Result<()> {
    write!(
        w,
        "{}(...)\n\t{}:{}",
        traceback::print_name(style, &f.function),
        f.file,
        f.line
    )?;
    if !f.inlined {
        if f.offset > 0 {
            write!(w, " +{:#x}", f.offset)?;
        }
        if system {
            write!(w, " fp={:#x} sp={:#x} pc={:#x}", f.fp, f.sp, f.pc)?;
        }
    }
    writeln!(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::goruntime::GoVersion;
    use crate::model::dump::{CreatedBy, MRef};

    fn frame(function: &str, line: u32, inlined: bool, pc: u64, sp: u64) -> Frame {
        Frame {
            function: function.into(),
            file: "/src/x.go".into(),
            line,
            inlined,
            offset: if inlined { 0 } else { 0x2c },
            pc,
            sp,
            fp: sp + 0x40,
            func_id: 0,
        }
    }

    fn goroutine() -> Goroutine {
        Goroutine {
            id: 7,
            g: 0xc000102000,
            status: status::WAITING,
            scan: false,
            state: "chan receive".into(),
            wait_reason: Some("chan receive".into()),
            wait_minutes: 3,
            waited_seconds: Some(200.0),
            locked_to_thread: true,
            m: None,
            system: false,
            start_function: Some("main.worker".into()),
            stack: Stack::Frames {
                frames: vec![
                    frame("runtime.gopark", 10, false, 0x401000, 0xc000050000),
                    frame("main.inner", 20, true, 0x402000, 0xc000050040),
                    frame("main.worker", 30, false, 0x402000, 0xc000050040),
                    frame("runtime.goexit", 40, false, 0x403001, 0xc000050080),
                ],
            },
            created_by: Some(CreatedBy {
                function: "main.main".into(),
                file: "/src/main.go".into(),
                line: 50,
                offset: 0x1f,
                goroutine: Some(1),
                func_id: 0,
            }),
        }
    }

    fn style(minor: u32) -> Style {
        traceback::style(&GoVersion::parse(&format!("go1.{minor}")).expect("a version"))
    }

    #[test]
    fn prints_as_the_runtime_prints_all_goroutines() {
        let mut out = Vec::new();
        write(&mut out, &style(27), &goroutine(), false).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "goroutine 7 [chan receive, 3 minutes, locked to thread]:\n\
             main.inner(...)\n\t/src/x.go:20\n\
             main.worker(...)\n\t/src/x.go:30 +0x2c\n\
             created by main.main in goroutine 1\n\t/src/main.go:50 +0x1f\n\n"
        );
    }

    #[test]
    fn prints_as_a_sigquit_dump_at_the_system_level() {
        let mut g = goroutine();
        g.m = Some(MRef {
            id: 3,
            addr: 0xc000080008,
        });
        let mut out = Vec::new();
        write(&mut out, &style(27), &g, true).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(
            "goroutine 7 gp=0xc000102000 m=3 mp=0xc000080008 [chan receive, 3 minutes, locked to thread]:\n\
             runtime.gopark(...)\n\t/src/x.go:10 +0x2c fp=0xc000050040 sp=0xc000050000 pc=0x401000\n"
        ));
        assert!(text.contains("runtime.goexit(...)\n"));
        // Go 1.21 has no g and M in the header; 1.19 no creator goroutine.
        let mut out = Vec::new();
        write(&mut out, &style(21), &g, true).unwrap();
        assert!(
            String::from_utf8(out)
                .unwrap()
                .starts_with("goroutine 7 [chan")
        );
        let mut g19 = goroutine();
        if let Some(c) = &mut g19.created_by {
            c.goroutine = None;
        }
        let mut out = Vec::new();
        write(&mut out, &style(19), &g19, false).unwrap();
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("created by main.main\n")
        );
    }

    #[test]
    fn long_stacks_are_cut_as_each_release_cuts_them() {
        let frames: Vec<Frame> = (0..130)
            .map(|i| {
                frame(
                    "main.recurse",
                    i,
                    false,
                    0x402000,
                    0xc000050000 + i as u64 * 0x40,
                )
            })
            .collect();
        let mut g = goroutine();
        g.stack = Stack::Frames { frames };
        let mut out = Vec::new();
        write(&mut out, &style(27), &g, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("main.recurse(").count(), 100);
        assert!(text.contains("...30 frames elided...\n"));
        let mut out = Vec::new();
        write(&mut out, &style(19), &g, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("main.recurse(").count(), 100);
        assert!(text.contains("...additional frames elided...\n"));
    }
}
