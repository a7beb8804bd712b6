//! A dump as pprof's goroutine profile (gzipped `profile.proto`, as `/debug/pprof/goroutine`
//! serves it): one sample per distinct stack with its count of goroutines; every frame but
//! `runtime.goexit` and the compiler's wrappers, runtime frames included, as many as the
//! release's own profile keeps, as the runtime's own profile has them; the calls inlined at a
//! pc are the lines of one location, innermost first.

use std::collections::HashMap;
use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use prost::Message;

use crate::inspect::goruntime::traceback::{self, Style};
use crate::model::dump::{DumpInfo, Frame, Goroutine, Stack};

/// The messages of pprof's `profile.proto` that a goroutine profile uses.
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub mapping: Vec<Mapping>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(int64, tag = "9")]
        pub time_nanos: i64,
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        #[prost(int64, tag = "12")]
        pub period: i64,
        #[prost(int64, repeated, tag = "13")]
        pub comment: Vec<i64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueType {
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Mapping {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "5")]
        pub filename: i64,
        #[prost(bool, tag = "7")]
        pub has_functions: bool,
        #[prost(bool, tag = "8")]
        pub has_filenames: bool,
        #[prost(bool, tag = "9")]
        pub has_line_numbers: bool,
        #[prost(bool, tag = "10")]
        pub has_inline_frames: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub mapping_id: u64,
        #[prost(uint64, tag = "3")]
        pub address: u64,
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        #[prost(int64, tag = "2")]
        pub line: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "2")]
        pub name: i64,
        #[prost(int64, tag = "3")]
        pub system_name: i64,
        #[prost(int64, tag = "4")]
        pub filename: i64,
    }
}

/// Builds the profile goroutine by goroutine: memory grows with distinct stacks and code
/// locations, not with goroutines.
pub struct GoroutineProfile {
    style: Style,
    strings: HashMap<String, i64>,
    profile: proto::Profile,
    functions: HashMap<(i64, i64), u64>,
    /// (pc, sp-independent) -> location: one location per pc and its inlined calls.
    locations: HashMap<u64, u64>,
    samples: HashMap<Vec<u64>, usize>,
}

impl GoroutineProfile {
    pub fn new(info: &DumpInfo, style: Style) -> Self {
        let mut p = Self {
            style,
            strings: HashMap::new(),
            profile: proto::Profile::default(),
            functions: HashMap::new(),
            locations: HashMap::new(),
            samples: HashMap::new(),
        };
        p.string("");
        let kind = proto::ValueType {
            r#type: p.string("goroutine"),
            unit: p.string("count"),
        };
        p.profile.sample_type.push(kind.clone());
        p.profile.period_type = Some(kind);
        p.profile.period = 1;
        p.profile.time_nanos = (info.taken_at * 1e9) as i64;
        let exe = p.string(&info.executable);
        p.profile.mapping.push(proto::Mapping {
            id: 1,
            filename: exe,
            has_functions: true,
            has_filenames: true,
            has_line_numbers: true,
            has_inline_frames: true,
        });
        let comment = p.string(&format!(
            "read from outside by gprof: PID {}, {}",
            info.pid, info.go_version
        ));
        p.profile.comment.push(comment);
        p
    }

    fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.profile.string_table.len() as i64;
        self.profile.string_table.push(s.to_string());
        self.strings.insert(s.to_string(), i);
        i
    }

    fn function(&mut self, name: &str, file: &str) -> u64 {
        let key = (self.string(name), self.string(file));
        if let Some(&id) = self.functions.get(&key) {
            return id;
        }
        let id = self.profile.function.len() as u64 + 1;
        self.profile.function.push(proto::Function {
            id,
            name: key.0,
            system_name: key.0,
            filename: key.1,
        });
        self.functions.insert(key, id);
        id
    }

    /// The location of one physical frame (`calls`: its logical frames, innermost first).
    fn location(&mut self, calls: &[&Frame]) -> u64 {
        let pc = calls[0].pc;
        if let Some(&id) = self.locations.get(&pc) {
            return id;
        }
        let line = calls
            .iter()
            .map(|f| proto::Line {
                function_id: self.function(&f.function, &f.file),
                line: f.line as i64,
            })
            .collect();
        let id = self.profile.location.len() as u64 + 1;
        self.profile.location.push(proto::Location {
            id,
            mapping_id: 1,
            // The call instruction, as the runtime's profile records it.
            address: pc.saturating_sub(1),
            line,
        });
        self.locations.insert(pc, id);
        id
    }

    /// Adds a goroutine (those whose stack could not be read have none to add).
    pub fn add(&mut self, g: &Goroutine) {
        let Stack::Frames { frames } = &g.stack else {
            return;
        };
        let depth = self.style.profile_depth;
        let mut stack = Vec::new();
        let mut kept = 0;
        let mut i = 0;
        let mut callee: &str = "";
        while i < frames.len() && kept < depth {
            // The logical frames of one physical frame share its pc and sp.
            let mut j = i + 1;
            while j < frames.len() && (frames[j].pc, frames[j].sp) == (frames[i].pc, frames[i].sp) {
                j += 1;
            }
            let mut calls: Vec<&Frame> = Vec::new();
            for f in &frames[i..j] {
                if kept + calls.len() < depth
                    && &*f.function != "runtime.goexit"
                    && !traceback::elides_wrapper(&self.style, f.func_id, callee)
                {
                    calls.push(f);
                }
                callee = &f.function;
            }
            if !calls.is_empty() {
                kept += calls.len();
                stack.push(self.location(&calls));
            }
            i = j;
        }
        if stack.is_empty() {
            return;
        }
        let next = self.samples.len();
        let at = *self.samples.entry(stack.clone()).or_insert(next);
        if at == self.profile.sample.len() {
            self.profile.sample.push(proto::Sample {
                location_id: stack,
                value: vec![0],
            });
        }
        self.profile.sample[at].value[0] += 1;
    }

    /// The gzipped profile.
    pub fn finish(self, w: &mut impl Write) -> std::io::Result<()> {
        let mut gz = GzEncoder::new(w, Compression::default());
        gz.write_all(&self.profile.encode_to_vec())?;
        gz.finish()?;
        Ok(())
    }
}
