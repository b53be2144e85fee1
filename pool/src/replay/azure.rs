//! A reader for the Azure Functions 2019 trace
//! (<https://github.com/Azure/AzurePublicDataset>, `AzureFunctionsDataset2019.md`).
//!
//! Three kinds of CSV file, one per day:
//!
//! - `invocations_per_function_md.anon.dNN.csv`: `HashOwner, HashApp,
//!   HashFunction, Trigger`, then 1440 columns `1..1440` with the number of
//!   invocations in each minute of the day;
//! - `function_durations_percentiles.anon.dNN.csv`: `HashOwner, HashApp,
//!   HashFunction, Average, Count, Minimum, Maximum, percentile_Average_0,
//!   …_1, …_25, …_50, …_75, …_99, …_100` (milliseconds, without cold
//!   starts);
//! - `app_memory_percentiles.anon.dNN.csv`: `HashOwner, HashApp,
//!   SampleCount, AverageAllocatedMb, AverageAllocatedMb_pct1, …` (per
//!   application; days 13 and 14 are missing from the release).
//!
//! Per-minute counts are expanded deterministically: `c` invocations in
//! minute `m` start at `m·60 s + (i + ½)·60 s / c`, `i = 0..c`. Each
//! invocation runs for its function's `Average` duration (the trace has no
//! per-invocation durations); its `MemorySize` is the application's
//! `AverageAllocatedMb` rounded up to a memory class. The trace says nothing
//! about runtimes: one is chosen per application from a hash of its id
//! (Python, Node or `provided` in proportions 50/35/15), so the same file
//! always replays the same way. Files are read from any `BufRead`; opening
//! them is the caller's business (this crate does no I/O of its own).

use super::trace::{Trace, TraceFunction, TraceInvocation, Trigger};
use crate::clock::{MS_PER_DAY, MS_PER_MINUTE};
use crate::profile::memory_class_for;
use std::collections::HashMap;
use std::io::BufRead;

/// Why a trace file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("reading the trace: {0}")]
    Io(#[from] std::io::Error),
    #[error("the {file} file has no `{column}` column")]
    MissingColumn { file: &'static str, column: String },
    #[error("line {line} of the {file} file: `{value}` is not a number")]
    BadNumber {
        file: &'static str,
        line: usize,
        value: String,
    },
    #[error("the {file} file is empty")]
    Empty { file: &'static str },
}

/// Options for building a trace from the Azure files.
#[derive(Debug, Clone, PartialEq)]
pub struct AzureOptions {
    /// Keep only the first N functions met (in file order), to bound a
    /// replay's size.
    pub max_functions: Option<usize>,
    /// Used when a function has no duration row.
    pub default_duration_ms: u64,
    /// Used when an application has no memory row.
    pub default_memory_mb: u32,
}

impl Default for AzureOptions {
    fn default() -> Self {
        Self {
            max_functions: None,
            default_duration_ms: 1_000,
            default_memory_mb: 256,
        }
    }
}

type FunctionKey = (String, String, String);

/// Builds a [`Trace`] from one or more days of the Azure 2019 trace. Load a
/// day's durations and memory before its invocations.
#[derive(Debug, Default)]
pub struct AzureTraceBuilder {
    opts: AzureOptions,
    trace: Trace,
    index: HashMap<FunctionKey, u32>,
    durations: HashMap<FunctionKey, u64>,
    memory: HashMap<(String, String), u32>,
    /// Invocations whose duration is filled in at `finish`.
    pending: Vec<(u64, u32)>,
}

fn columns(header: &str) -> Vec<String> {
    header.split(',').map(|c| c.trim().to_owned()).collect()
}

fn find(cols: &[String], file: &'static str, name: &str) -> Result<usize, TraceError> {
    cols.iter()
        .position(|c| c == name)
        .ok_or_else(|| TraceError::MissingColumn {
            file,
            column: name.to_owned(),
        })
}

fn number(file: &'static str, line: usize, value: &str) -> Result<f64, TraceError> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(0.0);
    }
    v.parse::<f64>().map_err(|_| TraceError::BadNumber {
        file,
        line,
        value: v.to_owned(),
    })
}

/// A stable 64-bit FNV-1a hash (std's hasher is randomly seeded).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn runtime_for(app: &str) -> (&'static str, u64) {
    match fnv1a(app) % 100 {
        0..=49 => ("python3.11", 250),
        50..=84 => ("nodejs20.x", 150),
        _ => ("provided.al2023", 50),
    }
}

impl AzureTraceBuilder {
    pub fn new(opts: AzureOptions) -> Self {
        Self {
            opts,
            ..Self::default()
        }
    }

    /// Reads a `function_durations_percentiles` file.
    pub fn add_durations(&mut self, reader: impl BufRead) -> Result<(), TraceError> {
        const FILE: &str = "durations";
        let mut lines = reader.lines();
        let header = lines.next().ok_or(TraceError::Empty { file: FILE })??;
        let cols = columns(&header);
        let (o, a, f, avg) = (
            find(&cols, FILE, "HashOwner")?,
            find(&cols, FILE, "HashApp")?,
            find(&cols, FILE, "HashFunction")?,
            find(&cols, FILE, "Average")?,
        );
        for (n, line) in lines.enumerate() {
            let line = line?;
            let fields: Vec<&str> = line.split(',').collect();
            if fields.len() <= avg.max(o).max(a).max(f) {
                continue;
            }
            let ms = number(FILE, n + 2, fields[avg])?;
            self.durations.insert(
                (
                    fields[o].to_owned(),
                    fields[a].to_owned(),
                    fields[f].to_owned(),
                ),
                ms.max(1.0).round() as u64,
            );
        }
        Ok(())
    }

    /// Reads an `app_memory_percentiles` file.
    pub fn add_memory(&mut self, reader: impl BufRead) -> Result<(), TraceError> {
        const FILE: &str = "memory";
        let mut lines = reader.lines();
        let header = lines.next().ok_or(TraceError::Empty { file: FILE })??;
        let cols = columns(&header);
        let (o, a, mb) = (
            find(&cols, FILE, "HashOwner")?,
            find(&cols, FILE, "HashApp")?,
            find(&cols, FILE, "AverageAllocatedMb")?,
        );
        for (n, line) in lines.enumerate() {
            let line = line?;
            let fields: Vec<&str> = line.split(',').collect();
            if fields.len() <= mb.max(o).max(a) {
                continue;
            }
            let v = number(FILE, n + 2, fields[mb])?;
            let class = memory_class_for(v.max(1.0).ceil() as u32).unwrap_or(10_240);
            self.memory
                .insert((fields[o].to_owned(), fields[a].to_owned()), class);
        }
        Ok(())
    }

    /// Reads an `invocations_per_function_md` file for day `day` (0-based:
    /// its minutes start at `day × 24 h`).
    pub fn add_invocations(&mut self, reader: impl BufRead, day: u32) -> Result<(), TraceError> {
        const FILE: &str = "invocations";
        let mut lines = reader.lines();
        let header = lines.next().ok_or(TraceError::Empty { file: FILE })??;
        let cols = columns(&header);
        let (o, a, f, tr) = (
            find(&cols, FILE, "HashOwner")?,
            find(&cols, FILE, "HashApp")?,
            find(&cols, FILE, "HashFunction")?,
            find(&cols, FILE, "Trigger")?,
        );
        let first_minute = find(&cols, FILE, "1")?;
        let day_start = u64::from(day) * MS_PER_DAY;
        for (n, line) in lines.enumerate() {
            let line = line?;
            let fields: Vec<&str> = line.split(',').collect();
            if fields.len() <= first_minute {
                continue;
            }
            let key: FunctionKey = (
                fields[o].to_owned(),
                fields[a].to_owned(),
                fields[f].to_owned(),
            );
            let function = match self.index.get(&key) {
                Some(i) => *i,
                None => {
                    if self
                        .opts
                        .max_functions
                        .is_some_and(|max| self.trace.functions.len() >= max)
                    {
                        continue;
                    }
                    let i = u32::try_from(self.trace.functions.len()).unwrap_or(u32::MAX);
                    let (runtime, init_ms) = runtime_for(&key.1);
                    let memory_mb = self
                        .memory
                        .get(&(key.0.clone(), key.1.clone()))
                        .copied()
                        .unwrap_or(self.opts.default_memory_mb);
                    self.trace.functions.push(TraceFunction {
                        owner: key.0.clone(),
                        app: key.1.clone(),
                        name: key.2.clone(),
                        trigger: Trigger::parse(fields[tr]),
                        runtime: runtime.to_owned(),
                        memory_mb,
                        init_ms,
                    });
                    self.index.insert(key, i);
                    i
                }
            };
            for (m, value) in fields[first_minute..].iter().take(1440).enumerate() {
                let c = number(FILE, n + 2, value)? as u64;
                let minute_start = day_start + m as u64 * MS_PER_MINUTE;
                for i in 0..c {
                    let offset = (2 * i + 1) * MS_PER_MINUTE / (2 * c);
                    self.pending.push((minute_start + offset, function));
                }
            }
        }
        Ok(())
    }

    /// The trace, sorted, with durations filled in.
    pub fn finish(mut self) -> Trace {
        let durations: Vec<u64> = self
            .trace
            .functions
            .iter()
            .map(|f| {
                self.durations
                    .get(&(f.owner.clone(), f.app.clone(), f.name.clone()))
                    .copied()
                    .unwrap_or(self.opts.default_duration_ms)
            })
            .collect();
        self.trace.invocations = self
            .pending
            .iter()
            .map(|(start_ms, function)| TraceInvocation {
                start_ms: *start_ms,
                function: *function,
                duration_ms: durations
                    .get(*function as usize)
                    .copied()
                    .unwrap_or(self.opts.default_duration_ms),
            })
            .collect();
        self.trace.sort();
        self.trace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Owner, app, function, trigger, and (minute, count) pairs.
    type Row<'a> = (&'a str, &'a str, &'a str, &'a str, &'a [(usize, u32)]);

    fn invocations_csv(rows: &[Row<'_>]) -> String {
        let mut s = String::from("HashOwner,HashApp,HashFunction,Trigger");
        for m in 1..=1440 {
            s.push_str(&format!(",{m}"));
        }
        s.push('\n');
        for (o, a, f, t, counts) in rows {
            let mut per = vec![0u32; 1440];
            for (m, c) in *counts {
                per[*m] = *c;
            }
            s.push_str(&format!("{o},{a},{f},{t}"));
            for c in per {
                s.push_str(&format!(",{c}"));
            }
            s.push('\n');
        }
        s
    }

    #[test]
    fn expands_per_minute_counts_deterministically() {
        let inv = invocations_csv(&[
            ("o1", "a1", "f1", "http", &[(0, 2), (10, 1)]),
            ("o1", "a1", "f2", "timer", &[(5, 1)]),
        ]);
        let durations = "HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,percentile_Average_1,percentile_Average_25,percentile_Average_50,percentile_Average_75,percentile_Average_99,percentile_Average_100\n\
                         o1,a1,f1,120.4,3,100,150,100,100,110,120,130,150,150\n";
        let memory = "HashOwner,HashApp,SampleCount,AverageAllocatedMb,AverageAllocatedMb_pct1,AverageAllocatedMb_pct5\n\
                      o1,a1,100,170,150,160\n";
        let mut b = AzureTraceBuilder::new(AzureOptions::default());
        b.add_durations(durations.as_bytes()).unwrap();
        b.add_memory(memory.as_bytes()).unwrap();
        b.add_invocations(inv.as_bytes(), 1).unwrap();
        let t = b.finish();
        assert_eq!(t.functions.len(), 2);
        assert_eq!(t.functions[0].trigger, Trigger::Http);
        assert_eq!(t.functions[1].trigger, Trigger::Timer);
        assert_eq!(t.functions[0].memory_mb, 256, "170 MB rounds up to a class");
        let day = MS_PER_DAY;
        let starts: Vec<(u64, u32, u64)> = t
            .invocations
            .iter()
            .map(|i| (i.start_ms - day, i.function, i.duration_ms))
            .collect();
        assert_eq!(
            starts,
            vec![
                (15_000, 0, 120),
                (45_000, 0, 120),
                (5 * 60_000 + 30_000, 1, 1_000),
                (10 * 60_000 + 30_000, 0, 120),
            ]
        );
        // Same runtime for the same app, every time.
        assert_eq!(t.functions[0].runtime, t.functions[1].runtime);
    }

    #[test]
    fn limits_and_errors() {
        let inv = invocations_csv(&[
            ("o", "a", "f1", "queue", &[(0, 1)]),
            ("o", "a", "f2", "queue", &[(0, 1)]),
        ]);
        let mut b = AzureTraceBuilder::new(AzureOptions {
            max_functions: Some(1),
            ..AzureOptions::default()
        });
        b.add_invocations(inv.as_bytes(), 0).unwrap();
        assert_eq!(b.finish().len(), 1);

        let mut b = AzureTraceBuilder::new(AzureOptions::default());
        let err = b
            .add_invocations("HashOwner,HashApp\n".as_bytes(), 0)
            .unwrap_err();
        assert!(matches!(err, TraceError::MissingColumn { .. }), "{err}");
        let bad = "HashOwner,HashApp,HashFunction,Trigger,1\no,a,f,http,x\n";
        let err = b.add_invocations(bad.as_bytes(), 0).unwrap_err();
        assert!(
            matches!(err, TraceError::BadNumber { line: 2, .. }),
            "{err}"
        );
        assert!(matches!(
            b.add_memory("".as_bytes()),
            Err(TraceError::Empty { .. })
        ));
    }
}
