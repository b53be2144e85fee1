//! The bench's report: what was measured, on which machine, and the charts
//! that show it.
//!
//! A [`Report`] holds [`Section`]s; a section holds latency [`Scenario`]s
//! (the samples themselves, so charts can be redrawn), single-number
//! [`Figure`]s, policy-replay [`Curve`]s, baselines that were [`Skipped`]
//! (with the reason: nothing is dropped silently) and the charts to draw
//! ([`ChartSpec`]). [`Report::write`] renders `report.json`, `report.md` and
//! `charts/*.svg`; [`validate`] and [`validate_dir`] check a written report
//! is well-formed (never how fast anything was).
//!
//! ```no_run
//! use hearth_bench::report::{ChartSpec, Report, Scenario, Section};
//! use std::time::Duration;
//!
//! let direct = [Duration::from_micros(60), Duration::from_micros(70)];
//! let warm = [Duration::from_micros(110), Duration::from_micros(130)];
//! let mut report = Report::new("hearth bench", "2025-01-01T00:00:00Z", true);
//! report.sections.push(
//!     Section::new("warm", "Warm invoke", "Client-observed latency of a warm invoke.")
//!         .scenario(Scenario::from_durations("direct", "resident Python server", &direct))
//!         .scenario(Scenario::from_durations("warm", "Hearth warm", &warm).with_baseline("direct"))
//!         .chart(ChartSpec::latency_cdf("warm-cdf.svg", "Warm invoke", &["direct", "warm"])),
//! );
//! report.write(std::path::Path::new("bench-out")).unwrap();
//! ```

use crate::charts::{self, ChartError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a report could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("serialising the report: {0}")]
    Json(#[from] serde_json::Error),
    #[error("drawing chart {file}: {source}")]
    Chart { file: String, source: ChartError },
    #[error("chart {file} names scenario `{id}`, which section `{section}` does not have")]
    UnknownScenario {
        file: String,
        section: String,
        id: String,
    },
    #[error("chart file name `{0}` must be a plain `*.svg` name (no directories)")]
    BadChartFile(String),
}

/// The whole report of one bench run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub title: String,
    /// When the run started (RFC 3339, as given by the caller).
    pub started_at: String,
    /// A `--quick` smoke run: fewer samples, smaller replay.
    pub quick: bool,
    pub machine: Machine,
    pub sections: Vec<Section>,
    /// Free-form remarks shown at the end of `report.md`.
    pub notes: Vec<String>,
}

/// The machine the bench ran on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub mem_total_mib: u64,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    pub cpu_model: String,
}

/// One part of the report: a scenario family with its figures and charts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Section {
    /// Stable identifier (used in chart and baseline references).
    pub id: String,
    pub title: String,
    /// What the figures mean, in one to three sentences.
    pub description: String,
    #[serde(default)]
    pub scenarios: Vec<Scenario>,
    #[serde(default)]
    pub figures: Vec<Figure>,
    #[serde(default)]
    pub curves: Vec<Curve>,
    #[serde(default)]
    pub skipped: Vec<Skipped>,
    /// Charts drawn from this section's data into `charts/`.
    #[serde(default)]
    pub charts: Vec<ChartSpec>,
}

/// A latency distribution: the samples and their summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    pub id: String,
    pub label: String,
    pub unit: String,
    /// Every sample, in measurement order.
    pub samples: Vec<f64>,
    pub summary: Summary,
    /// The scenario (same section) this one is compared with.
    pub baseline: Option<String>,
}

/// Nearest-rank percentiles of a sample set (all 0 when it is empty).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// A single number: throughput, PSS per sandbox, an extrapolated count…
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    pub id: String,
    pub label: String,
    pub value: f64,
    pub unit: String,
    pub note: Option<String>,
    /// The figure (same section) this one is compared with.
    pub baseline: Option<String>,
}

/// One policy's trade-off curve as its main parameter varies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// The policy, e.g. `fixed-ttl`.
    pub policy: String,
    /// The swept parameter, with its unit, e.g. `ttl (min)`.
    pub parameter: String,
    pub points: Vec<CurvePoint>,
}

/// One replay of a policy at one parameter value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    pub parameter_value: f64,
    /// The setting as shown, e.g. `ttl 10 min`.
    pub label: String,
    /// Cold starts as a percentage of invocations.
    pub cold_start_pct: f64,
    /// 75th percentile over functions of cold starts / invocations (0–1).
    pub p75_function_cold_rate: f64,
    /// GB·s held by sandboxes not running code.
    pub idle_gb_s: f64,
    pub cold_starts: u64,
    pub invocations: u64,
}

/// A scenario or baseline that could not run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub id: String,
    pub reason: String,
}

/// A chart to draw into `charts/<file>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChartSpec {
    /// A plain file name ending in `.svg`.
    pub file: String,
    pub title: String,
    pub kind: ChartKind,
}

/// What a chart shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ChartKind {
    /// Empirical CDFs of these scenarios of the section (log latency axis).
    LatencyCdf { scenario_ids: Vec<String> },
    /// Every curve of the section: cold starts against idle memory-time.
    ReplayCurves,
}

impl ChartSpec {
    /// A latency CDF of the named scenarios.
    pub fn latency_cdf(file: &str, title: &str, scenario_ids: &[&str]) -> Self {
        Self {
            file: file.to_owned(),
            title: title.to_owned(),
            kind: ChartKind::LatencyCdf {
                scenario_ids: scenario_ids.iter().map(|s| (*s).to_owned()).collect(),
            },
        }
    }

    /// The section's replay curves.
    pub fn replay_curves(file: &str, title: &str) -> Self {
        Self {
            file: file.to_owned(),
            title: title.to_owned(),
            kind: ChartKind::ReplayCurves,
        }
    }
}

impl Summary {
    /// Summarises `samples` (nearest-rank percentiles of the sorted values).
    pub fn of(samples: &[f64]) -> Self {
        if samples.is_empty() {
            return Self {
                count: 0,
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                max: 0.0,
                mean: 0.0,
            };
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Self {
            count: sorted.len(),
            p50: nearest_rank(&sorted, 0.50),
            p90: nearest_rank(&sorted, 0.90),
            p99: nearest_rank(&sorted, 0.99),
            max: sorted[sorted.len() - 1],
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
        }
    }
}

/// The smallest value with at least `p` of the samples at or below it.
/// `sorted` must be sorted ascending and non-empty.
fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Scenario {
    /// From latency samples, in milliseconds.
    pub fn from_durations(id: &str, label: &str, samples: &[Duration]) -> Self {
        let ms = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        Self::from_samples(id, label, "ms", ms)
    }

    /// From samples already in `unit`.
    pub fn from_samples(id: &str, label: &str, unit: &str, samples: Vec<f64>) -> Self {
        Self {
            id: id.to_owned(),
            label: label.to_owned(),
            unit: unit.to_owned(),
            summary: Summary::of(&samples),
            samples,
            baseline: None,
        }
    }

    /// Compares this scenario with scenario `id` of the same section.
    pub fn with_baseline(mut self, id: &str) -> Self {
        self.baseline = Some(id.to_owned());
        self
    }
}

impl Figure {
    /// A figure without note or baseline.
    pub fn new(id: &str, label: &str, value: f64, unit: &str) -> Self {
        Self {
            id: id.to_owned(),
            label: label.to_owned(),
            value,
            unit: unit.to_owned(),
            note: None,
            baseline: None,
        }
    }

    /// Adds a remark shown beside the value (how it was measured…).
    pub fn with_note(mut self, note: &str) -> Self {
        self.note = Some(note.to_owned());
        self
    }

    /// Compares this figure with figure `id` of the same section.
    pub fn with_baseline(mut self, id: &str) -> Self {
        self.baseline = Some(id.to_owned());
        self
    }
}

impl Section {
    /// An empty section; add to it with the builder methods below.
    pub fn new(id: &str, title: &str, description: &str) -> Self {
        Self {
            id: id.to_owned(),
            title: title.to_owned(),
            description: description.to_owned(),
            scenarios: Vec::new(),
            figures: Vec::new(),
            curves: Vec::new(),
            skipped: Vec::new(),
            charts: Vec::new(),
        }
    }

    /// Adds a latency scenario.
    pub fn scenario(mut self, s: Scenario) -> Self {
        self.scenarios.push(s);
        self
    }

    /// Adds a single-number figure.
    pub fn figure(mut self, f: Figure) -> Self {
        self.figures.push(f);
        self
    }

    /// Adds policy-replay curves.
    pub fn curves(mut self, curves: Vec<Curve>) -> Self {
        self.curves.extend(curves);
        self
    }

    /// Records a scenario or baseline that could not run, and why.
    pub fn skipped(mut self, id: &str, reason: &str) -> Self {
        self.skipped.push(Skipped {
            id: id.to_owned(),
            reason: reason.to_owned(),
        });
        self
    }

    /// Adds a chart drawn from this section's data.
    pub fn chart(mut self, chart: ChartSpec) -> Self {
        self.charts.push(chart);
        self
    }

    fn find_scenario(&self, id: &str) -> Option<&Scenario> {
        self.scenarios.iter().find(|s| s.id == id)
    }

    fn find_skipped(&self, id: &str) -> Option<&Skipped> {
        self.skipped.iter().find(|s| s.id == id)
    }
}

impl Machine {
    /// Reads this machine's cores, memory, kernel and CPU model from
    /// `/proc`; what cannot be read is left 0 or `unknown`.
    pub fn detect() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                matches!(k.trim(), "model name" | "Model" | "cpu model").then(|| v.trim())
            })
            .unwrap_or("unknown")
            .to_owned();
        let mem_total_mib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024);
        let kernel = read("/proc/sys/kernel/osrelease").trim().to_owned();
        Self {
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            mem_total_mib,
            kernel: if kernel.is_empty() {
                "unknown".to_owned()
            } else {
                kernel
            },
            cpu_model,
        }
    }
}

impl Report {
    /// An empty report on this machine ([`Machine::detect`]).
    pub fn new(title: &str, started_at: &str, quick: bool) -> Self {
        Self {
            title: title.to_owned(),
            started_at: started_at.to_owned(),
            quick,
            machine: Machine::detect(),
            sections: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Writes `report.json`, `report.md` and `charts/*.svg` into `dir`
    /// (created if needed); returns the paths written.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
        let charts_dir = dir.join("charts");
        std::fs::create_dir_all(&charts_dir).map_err(|source| ReportError::Io {
            path: charts_dir.clone(),
            source,
        })?;
        let mut written = Vec::new();
        for section in &self.sections {
            for spec in &section.charts {
                let path = charts_dir.join(chart_file_name(&spec.file)?);
                draw_chart(section, spec, &path)?;
                written.push(path);
            }
        }
        let json = dir.join("report.json");
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        write_file(&json, &text)?;
        written.push(json);
        let md = dir.join("report.md");
        write_file(&md, &self.to_markdown())?;
        written.push(md);
        Ok(written)
    }

    /// The report as Markdown, charts linked from `charts/`.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# {}\n", self.title);
        let _ = writeln!(
            md,
            "Started {}{}. Machine: {}.\n",
            self.started_at,
            if self.quick { " (quick run)" } else { "" },
            self.machine.describe()
        );
        for section in &self.sections {
            section.write_markdown(&mut md);
        }
        if !self.notes.is_empty() {
            md.push_str("## Notes\n\n");
            for n in &self.notes {
                let _ = writeln!(md, "- {n}");
            }
            md.push('\n');
        }
        md
    }

    /// A plain-text table for the terminal.
    pub fn print_table(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{}{} — {}",
            self.title,
            if self.quick { " (quick)" } else { "" },
            self.machine.describe()
        )?;
        for section in &self.sections {
            writeln!(out, "\n== {} ==", section.title)?;
            if !section.scenarios.is_empty() {
                writeln!(
                    out,
                    "{:<46} {:>6} {:>9} {:>9} {:>9} {:>9}  vs baseline",
                    "scenario", "n", "p50", "p90", "p99", "max"
                )?;
                for s in &section.scenarios {
                    let m = &s.summary;
                    writeln!(
                        out,
                        "{:<46} {:>6} {:>9} {:>9} {:>9} {:>9}  {}",
                        format!("{} ({})", s.label, s.unit),
                        m.count,
                        num(m.p50),
                        num(m.p90),
                        num(m.p99),
                        num(m.max),
                        section.scenario_vs_baseline(s)
                    )?;
                }
            }
            for f in &section.figures {
                write!(out, "{}: {} {}", f.label, num(f.value), f.unit)?;
                let vs = section.figure_vs_baseline(f);
                if !vs.is_empty() {
                    write!(out, " ({vs})")?;
                }
                if let Some(n) = &f.note {
                    write!(out, " — {n}")?;
                }
                writeln!(out)?;
            }
            if !section.curves.is_empty() {
                writeln!(
                    out,
                    "{:<28} {:<24} {:>9} {:>8} {:>12} {:>8} {:>9}",
                    "policy", "setting", "cold %", "p75 fn", "idle GB·s", "cold", "invoked"
                )?;
                for c in &section.curves {
                    for p in &c.points {
                        writeln!(
                            out,
                            "{:<28} {:<24} {:>8.2}% {:>8.3} {:>12.0} {:>8} {:>9}",
                            c.policy,
                            p.label,
                            p.cold_start_pct,
                            p.p75_function_cold_rate,
                            p.idle_gb_s,
                            p.cold_starts,
                            p.invocations
                        )?;
                    }
                }
            }
            for s in &section.skipped {
                writeln!(out, "skipped {}: {}", s.id, s.reason)?;
            }
        }
        Ok(())
    }

    /// Checks this report as [`validate`] checks its JSON.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let v = serde_json::to_value(self).map_err(|e| vec![e.to_string()])?;
        validate(&v)
    }
}

impl Machine {
    fn describe(&self) -> String {
        format!(
            "{} cores, {} MiB, {}, Linux {}",
            self.cores, self.mem_total_mib, self.cpu_model, self.kernel
        )
    }
}

impl Section {
    fn write_markdown(&self, md: &mut String) {
        let _ = writeln!(md, "## {}\n", self.title);
        if !self.description.is_empty() {
            let _ = writeln!(md, "{}\n", self.description);
        }
        if !self.scenarios.is_empty() {
            md.push_str("| scenario | n | p50 | p90 | p99 | max | vs baseline |\n");
            md.push_str("| --- | ---: | ---: | ---: | ---: | ---: | --- |\n");
            for s in &self.scenarios {
                let m = &s.summary;
                let u = &s.unit;
                let _ = writeln!(
                    md,
                    "| {} | {} | {} {u} | {} {u} | {} {u} | {} {u} | {} |",
                    cell(&s.label),
                    m.count,
                    num(m.p50),
                    num(m.p90),
                    num(m.p99),
                    num(m.max),
                    cell(&self.scenario_vs_baseline(s))
                );
            }
            md.push('\n');
        }
        if !self.figures.is_empty() {
            md.push_str("| figure | value | vs baseline | note |\n");
            md.push_str("| --- | ---: | --- | --- |\n");
            for f in &self.figures {
                let _ = writeln!(
                    md,
                    "| {} | {} {} | {} | {} |",
                    cell(&f.label),
                    num(f.value),
                    cell(&f.unit),
                    cell(&self.figure_vs_baseline(f)),
                    cell(f.note.as_deref().unwrap_or(""))
                );
            }
            md.push('\n');
        }
        if !self.curves.is_empty() {
            md.push_str(
                "| policy | setting | cold starts | p75 per-function cold-start rate | idle GB·s | cold starts / invocations |\n",
            );
            md.push_str("| --- | --- | ---: | ---: | ---: | ---: |\n");
            for c in &self.curves {
                for p in &c.points {
                    let _ = writeln!(
                        md,
                        "| {} | {} | {:.2} % | {:.3} | {:.0} | {} / {} |",
                        cell(&c.policy),
                        cell(&p.label),
                        p.cold_start_pct,
                        p.p75_function_cold_rate,
                        p.idle_gb_s,
                        p.cold_starts,
                        p.invocations
                    );
                }
            }
            md.push('\n');
        }
        for s in &self.skipped {
            let _ = writeln!(md, "- Skipped **{}**: {}", s.id, s.reason);
        }
        if !self.skipped.is_empty() {
            md.push('\n');
        }
        for c in &self.charts {
            let _ = writeln!(md, "![{}](charts/{})\n", c.title, c.file);
        }
    }

    /// "+0.47 ms (8.4×)" against the baseline's p50, or why there is none.
    fn scenario_vs_baseline(&self, s: &Scenario) -> String {
        let Some(id) = &s.baseline else {
            return String::new();
        };
        match self.find_scenario(id) {
            Some(b) if b.summary.count > 0 => {
                difference(s.summary.p50, b.summary.p50, &s.unit, &b.label)
            }
            _ => self.missing_baseline(id),
        }
    }

    fn figure_vs_baseline(&self, f: &Figure) -> String {
        let Some(id) = &f.baseline else {
            return String::new();
        };
        match self.figures.iter().find(|b| &b.id == id) {
            Some(b) => difference(f.value, b.value, &f.unit, &b.label),
            None => self.missing_baseline(id),
        }
    }

    fn missing_baseline(&self, id: &str) -> String {
        match self.find_skipped(id) {
            Some(s) => format!("baseline {id} skipped: {}", s.reason),
            None => format!("baseline {id} not measured"),
        }
    }
}

fn difference(value: f64, base: f64, unit: &str, base_label: &str) -> String {
    let diff = value - base;
    let sign = if diff < 0.0 { "−" } else { "+" };
    let ratio = if base != 0.0 {
        format!("{}×", num(value / base))
    } else {
        "n/a".to_owned()
    };
    format!(
        "{sign}{} {unit} ({ratio} {base_label})",
        num(diff.abs()),
        ratio = ratio
    )
}

/// A number with about three significant digits.
fn num(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        format!("{v}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Escapes a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn write_file(path: &Path, text: &str) -> Result<(), ReportError> {
    std::fs::write(path, text).map_err(|source| ReportError::Io {
        path: path.to_owned(),
        source,
    })
}

fn chart_file_name(file: &str) -> Result<&str, ReportError> {
    let plain = !file.is_empty()
        && file.ends_with(".svg")
        && !file.contains(['/', '\\'])
        && !file.starts_with('.');
    if plain {
        Ok(file)
    } else {
        Err(ReportError::BadChartFile(file.to_owned()))
    }
}

fn draw_chart(section: &Section, spec: &ChartSpec, path: &Path) -> Result<(), ReportError> {
    let result = match &spec.kind {
        ChartKind::LatencyCdf { scenario_ids } => {
            let mut series = Vec::new();
            for id in scenario_ids {
                let s = section
                    .find_scenario(id)
                    .ok_or_else(|| ReportError::UnknownScenario {
                        file: spec.file.clone(),
                        section: section.id.clone(),
                        id: id.clone(),
                    })?;
                series.push((s.label.as_str(), s.samples.as_slice()));
            }
            let unit = scenario_ids
                .first()
                .and_then(|id| section.find_scenario(id))
                .map_or("ms", |s| s.unit.as_str());
            charts::latency_cdf(path, &spec.title, &series, unit)
        }
        ChartKind::ReplayCurves => charts::replay_curves(path, &spec.title, &section.curves),
    };
    result.map_err(|source| ReportError::Chart {
        file: spec.file.clone(),
        source,
    })
}

/// Checks a `report.json` is well-formed: every scenario has samples and
/// finite percentiles, every figure is finite, every curve has points with
/// finite values, baselines and charts name what exists. Says nothing about
/// speed. Returns every problem found.
pub fn validate(json: &Value) -> Result<(), Vec<String>> {
    let mut errs = Vec::new();
    for key in ["title", "started_at"] {
        if !json.get(key).is_some_and(Value::is_string) {
            errs.push(format!("report: `{key}` is missing or not a string"));
        }
    }
    if !json.get("quick").is_some_and(Value::is_boolean) {
        errs.push("report: `quick` is missing or not a boolean".to_owned());
    }
    if !json.get("machine").is_some_and(Value::is_object) {
        errs.push("report: `machine` is missing or not an object".to_owned());
    }
    match json.get("sections").and_then(Value::as_array) {
        Some(sections) if !sections.is_empty() => {
            for (i, s) in sections.iter().enumerate() {
                validate_section(i, s, &mut errs);
            }
        }
        Some(_) => errs.push("report: no sections".to_owned()),
        None => errs.push("report: `sections` is missing or not an array".to_owned()),
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

/// Reads `dir/report.json`, [`validate`]s it, and checks `report.md` and
/// every chart it names exist (charts must be SVG).
pub fn validate_dir(dir: &Path) -> Result<(), Vec<String>> {
    let path = dir.join("report.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| vec![format!("reading {}: {e}", path.display())])?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| vec![format!("{} is not JSON: {e}", path.display())])?;
    let mut errs = validate(&json).err().unwrap_or_default();
    if !dir.join("report.md").is_file() {
        errs.push(format!("{} has no report.md", dir.display()));
    }
    let files = json
        .get("sections")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("charts").and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c.get("file").and_then(Value::as_str));
    for file in files {
        let p = dir.join("charts").join(file);
        match std::fs::read_to_string(&p) {
            Ok(svg) if svg.trim_start().starts_with("<svg") => {}
            Ok(_) => errs.push(format!("{} is not an SVG file", p.display())),
            Err(e) => errs.push(format!("reading {}: {e}", p.display())),
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

fn validate_section(i: usize, s: &Value, errs: &mut Vec<String>) {
    let id = s.get("id").and_then(Value::as_str);
    let name = id.map_or_else(|| format!("section {i}"), |id| format!("section `{id}`"));
    if id.is_none() {
        errs.push(format!("{name}: `id` is missing or not a string"));
    }
    for key in ["title", "description"] {
        if !s.get(key).is_some_and(Value::is_string) {
            errs.push(format!("{name}: `{key}` is missing or not a string"));
        }
    }
    let array = |key: &str, errs: &mut Vec<String>| -> Vec<Value> {
        match s.get(key) {
            None => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(_) => {
                errs.push(format!("{name}: `{key}` is not an array"));
                Vec::new()
            }
        }
    };
    let scenarios = array("scenarios", errs);
    let figures = array("figures", errs);
    let curves = array("curves", errs);
    let skipped = array("skipped", errs);
    let charts = array("charts", errs);
    if scenarios.is_empty() && figures.is_empty() && curves.is_empty() && skipped.is_empty() {
        errs.push(format!(
            "{name}: reports nothing (no scenario, figure, curve or skip)"
        ));
    }
    let ids = |items: &[Value]| -> Vec<String> {
        items
            .iter()
            .filter_map(|v| v.get("id").and_then(Value::as_str).map(str::to_owned))
            .collect()
    };
    let scenario_ids = ids(&scenarios);
    let figure_ids = ids(&figures);
    let skipped_ids = ids(&skipped);
    for sc in &scenarios {
        let what = format!("{name}, scenario `{}`", str_field(sc, "id"));
        if !sc.get("label").is_some_and(Value::is_string) {
            errs.push(format!("{what}: `label` is missing"));
        }
        let count = sc
            .pointer("/summary/count")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if count == 0 {
            errs.push(format!(
                "{what}: no samples (summary.count is 0 or missing)"
            ));
        }
        for key in ["p50", "p90", "p99", "max"] {
            if !finite(sc.pointer(&format!("/summary/{key}"))) {
                errs.push(format!("{what}: summary.{key} is missing or not finite"));
            }
        }
        match sc.get("samples").and_then(Value::as_array) {
            Some(samples) => {
                if samples.len() as u64 != count {
                    errs.push(format!(
                        "{what}: {} samples but summary.count {count}",
                        samples.len()
                    ));
                }
                if !samples.iter().all(|v| finite(Some(v))) {
                    errs.push(format!("{what}: a sample is not a finite number"));
                }
            }
            None => errs.push(format!("{what}: `samples` is missing")),
        }
        check_baseline(sc, &what, &scenario_ids, &skipped_ids, errs);
    }
    for f in &figures {
        let what = format!("{name}, figure `{}`", str_field(f, "id"));
        if !finite(f.get("value")) {
            errs.push(format!("{what}: value is missing or not finite"));
        }
        check_baseline(f, &what, &figure_ids, &skipped_ids, errs);
    }
    for c in &curves {
        let what = format!("{name}, curve `{}`", str_field(c, "policy"));
        match c.get("points").and_then(Value::as_array) {
            Some(points) if !points.is_empty() => {
                for (k, p) in points.iter().enumerate() {
                    for key in [
                        "parameter_value",
                        "cold_start_pct",
                        "p75_function_cold_rate",
                        "idle_gb_s",
                        "cold_starts",
                        "invocations",
                    ] {
                        if !finite(p.get(key)) {
                            errs.push(format!(
                                "{what}, point {k}: `{key}` is missing or not finite"
                            ));
                        }
                    }
                }
            }
            _ => errs.push(format!("{what}: no points")),
        }
    }
    for sk in &skipped {
        if str_field(sk, "reason").trim().is_empty() {
            errs.push(format!(
                "{name}, skipped `{}`: no reason given",
                str_field(sk, "id")
            ));
        }
    }
    for ch in &charts {
        let file = str_field(ch, "file");
        if chart_file_name(file).is_err() {
            errs.push(format!(
                "{name}: chart file `{file}` is not a plain .svg name"
            ));
        }
        match ch.pointer("/kind/type").and_then(Value::as_str) {
            Some("latency-cdf") => {
                let wanted = ch
                    .pointer("/kind/scenario_ids")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for id in wanted.iter().filter_map(Value::as_str) {
                    if !scenario_ids.iter().any(|s| s == id) {
                        errs.push(format!(
                            "{name}: chart {file} names unknown scenario `{id}`"
                        ));
                    }
                }
            }
            Some("replay-curves") if curves.is_empty() => {
                errs.push(format!(
                    "{name}: chart {file} draws curves but there are none"
                ));
            }
            Some("replay-curves") => {}
            _ => errs.push(format!("{name}: chart {file} has no known kind")),
        }
    }
}

fn check_baseline(
    item: &Value,
    what: &str,
    ids: &[String],
    skipped: &[String],
    errs: &mut Vec<String>,
) {
    if let Some(b) = item.get("baseline").and_then(Value::as_str) {
        if !ids.iter().chain(skipped).any(|i| i == b) {
            errs.push(format!(
                "{what}: baseline `{b}` is neither measured nor skipped"
            ));
        }
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("?")
}

fn finite(v: Option<&Value>) -> bool {
    v.and_then(Value::as_f64).is_some_and(f64::is_finite)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_report() -> Report {
        let direct: Vec<Duration> = (0..100).map(|i| Duration::from_micros(50 + i)).collect();
        let warm: Vec<Duration> = (0..100)
            .map(|i| Duration::from_micros(100 + 3 * i))
            .collect();
        let replay = Curve {
            policy: "fixed-ttl".into(),
            parameter: "ttl (min)".into(),
            points: vec![
                CurvePoint {
                    parameter_value: 10.0,
                    label: "ttl 10 min".into(),
                    cold_start_pct: 3.5,
                    p75_function_cold_rate: 0.4,
                    idle_gb_s: 1200.0,
                    cold_starts: 35,
                    invocations: 1000,
                },
                CurvePoint {
                    parameter_value: 60.0,
                    label: "ttl 60 min".into(),
                    cold_start_pct: 1.5,
                    p75_function_cold_rate: 0.2,
                    idle_gb_s: 5200.0,
                    cold_starts: 15,
                    invocations: 1000,
                },
            ],
        };
        Report {
            title: "hearth bench".into(),
            started_at: "2025-01-01T00:00:00Z".into(),
            quick: true,
            machine: Machine {
                cores: 2,
                mem_total_mib: 4096,
                kernel: "6.1.0".into(),
                cpu_model: "Test CPU".into(),
            },
            sections: vec![
                Section::new("warm", "Warm invoke", "Client-observed latency.")
                    .scenario(Scenario::from_durations(
                        "direct",
                        "direct | python",
                        &direct,
                    ))
                    .scenario(
                        Scenario::from_durations("warm", "Hearth warm", &warm)
                            .with_baseline("direct"),
                    )
                    .scenario(
                        Scenario::from_durations("crun", "crun warm", &warm).with_baseline("bwrap"),
                    )
                    .figure(
                        Figure::new("tput", "throughput", 812.5, "inv/s").with_note("2 clients"),
                    )
                    .skipped("bwrap", "bubblewrap is not installed")
                    .chart(ChartSpec::latency_cdf(
                        "warm-cdf.svg",
                        "Warm invoke",
                        &["direct", "warm"],
                    )),
                Section::new(
                    "replay",
                    "Policy replay",
                    "Cold starts against idle memory.",
                )
                .curves(vec![replay])
                .chart(ChartSpec::replay_curves("replay.svg", "Policy replay")),
            ],
            notes: vec!["a note".into()],
        }
    }

    #[test]
    fn summary_is_nearest_rank() {
        let s = Summary::of(&[5.0, 1.0, 4.0, 2.0, 3.0]);
        assert_eq!(s.count, 5);
        assert_eq!(s.p50, 3.0);
        assert_eq!(s.p90, 5.0);
        assert_eq!(s.max, 5.0);
        assert_eq!(s.mean, 3.0);
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of(&hundred);
        assert_eq!((s.p50, s.p90, s.p99, s.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(Summary::of(&[]).count, 0);
    }

    #[test]
    fn durations_become_milliseconds() {
        let s = Scenario::from_durations("a", "A", &[Duration::from_micros(1500)]);
        assert_eq!(s.unit, "ms");
        assert_eq!(s.samples, vec![1.5]);
        assert_eq!(s.summary.p99, 1.5);
    }

    #[test]
    fn markdown_has_tables_baselines_skips_and_links() {
        let md = sample_report().to_markdown();
        assert!(md.starts_with("# hearth bench\n"));
        assert!(md.contains("2 cores, 4096 MiB, Test CPU, Linux 6.1.0"));
        assert!(md.contains("| scenario | n | p50 | p90 | p99 | max | vs baseline |"));
        assert!(md.contains("direct \\| python"), "pipes are escaped");
        // Warm p50 0.247 ms vs direct 0.099 ms.
        assert!(md.contains("+0.148 ms (2.49× direct \\| python)"), "{md}");
        assert!(md.contains("baseline bwrap skipped: bubblewrap is not installed"));
        assert!(
            md.contains("| throughput | 812 inv/s |  | 2 clients |"),
            "{md}"
        );
        assert!(md.contains("| fixed-ttl | ttl 10 min | 3.50 % | 0.400 | 1200 | 35 / 1000 |"));
        assert!(md.contains("- Skipped **bwrap**: bubblewrap is not installed"));
        assert!(md.contains("![Warm invoke](charts/warm-cdf.svg)"));
        assert!(md.contains("![Policy replay](charts/replay.svg)"));
        assert!(md.contains("## Notes\n\n- a note"));
    }

    #[test]
    fn terminal_table() {
        let mut out = Vec::new();
        sample_report().print_table(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("== Warm invoke =="));
        assert!(text.contains("Hearth warm (ms)"));
        assert!(text.contains("throughput: 812 inv/s — 2 clients"));
        assert!(text.contains("skipped bwrap: bubblewrap is not installed"));
        assert!(text.contains("fixed-ttl"));
    }

    #[test]
    fn writes_json_markdown_and_charts_that_validate() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let report = sample_report();
        let written = report.write(&out).unwrap();
        for name in [
            "report.json",
            "report.md",
            "charts/warm-cdf.svg",
            "charts/replay.svg",
        ] {
            assert!(written.contains(&out.join(name)), "{name} in {written:?}");
        }
        let back: Report =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap())
                .unwrap();
        // serde_json parses floats to within an ulp, not exactly.
        assert_eq!(back.sections[1], report.sections[1]);
        assert_eq!(back.sections[0].charts, report.sections[0].charts);
        for (a, b) in back.sections[0]
            .scenarios
            .iter()
            .zip(&report.sections[0].scenarios)
        {
            assert_eq!((&a.id, a.summary.count), (&b.id, b.summary.count));
            assert!(a
                .samples
                .iter()
                .zip(&b.samples)
                .all(|(x, y)| (x - y).abs() < 1e-12));
        }
        assert_eq!(validate_dir(&out), Ok(()));
        assert_eq!(report.validate(), Ok(()));
    }

    #[test]
    fn a_chart_naming_an_unknown_scenario_is_an_error() {
        let mut r = sample_report();
        r.sections[0].charts[0] = ChartSpec::latency_cdf("x.svg", "x", &["nope"]);
        let dir = tempfile::tempdir().unwrap();
        let err = r.write(dir.path()).unwrap_err();
        assert!(matches!(err, ReportError::UnknownScenario { .. }), "{err}");
        r.sections[0].charts[0] = ChartSpec::replay_curves("../escape.svg", "x");
        let err = r.write(dir.path()).unwrap_err();
        assert!(matches!(err, ReportError::BadChartFile(_)), "{err}");
    }

    #[test]
    fn validation_finds_every_problem() {
        let mut r = sample_report();
        r.sections[0].scenarios[0] = Scenario::from_samples("direct", "direct", "ms", Vec::new());
        r.sections[0].figures[0].value = f64::NAN;
        r.sections[0].skipped[0].reason = String::new();
        r.sections[1].curves[0].points[0].idle_gb_s = f64::INFINITY;
        r.sections[1].curves.push(Curve {
            policy: "empty".into(),
            parameter: "x".into(),
            points: Vec::new(),
        });
        r.sections[0].scenarios[1].baseline = Some("ghost".into());
        let errs = r.validate().unwrap_err();
        let all = errs.join("\n");
        for needle in [
            "scenario `direct`: no samples",
            "figure `tput`: value is missing or not finite",
            "skipped `bwrap`: no reason given",
            "curve `fixed-ttl`, point 0: `idle_gb_s`",
            "curve `empty`: no points",
            "baseline `ghost` is neither measured nor skipped",
        ] {
            assert!(all.contains(needle), "{needle} not in:\n{all}");
        }
        assert!(validate(&serde_json::json!({"title": 1})).is_err());
        assert!(validate(&serde_json::json!([])).is_err());
    }

    #[test]
    fn validate_dir_reports_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(validate_dir(dir.path()).is_err());
        sample_report().write(dir.path()).unwrap();
        std::fs::remove_file(dir.path().join("charts/replay.svg")).unwrap();
        let errs = validate_dir(dir.path()).unwrap_err();
        assert!(errs.iter().any(|e| e.contains("replay.svg")), "{errs:?}");
    }

    #[test]
    fn detects_this_machine() {
        let m = Machine::detect();
        assert!(m.cores >= 1);
        assert!(m.mem_total_mib > 0);
        assert!(!m.kernel.is_empty());
    }
}
