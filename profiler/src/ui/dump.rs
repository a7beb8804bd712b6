//! `gprof dump --pid PID`: every goroutine of a Go process with its whole stack, read from
//! outside while it runs, in the runtime's text format, pprof's or JSON.

use std::io::{BufWriter, Write};

use anyhow::Context as _;

use crate::collect::dump::Dumper;
use crate::inspect::process::Process;
use crate::render::dump::{Format, write};

#[derive(Clone, Debug)]
pub struct DumpOptions {
    pub pid: i64,
    pub format: Format,
    /// Runtime goroutines and frames too, as `GOTRACEBACK=system` (a SIGQUIT dump) shows them.
    pub system: bool,
    pub output: Option<std::path::PathBuf>,
}

pub fn run(opts: &DumpOptions) -> anyhow::Result<()> {
    let process = Process::from_user_pid(opts.pid)?;
    let mut dumper = Dumper::open(process)?;
    let out: Box<dyn Write> = match &opts.output {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(1 << 16, out);
    let totals = write(&mut dumper, opts.format, opts.system, &mut out)?;
    out.flush()?;
    log::info!(
        "PID {}: {} goroutines, {} running, {} unreadable, {} read twice",
        opts.pid,
        totals.goroutines,
        totals.running,
        totals.unreadable,
        totals.reread
    );
    Ok(())
}
