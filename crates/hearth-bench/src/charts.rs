//! SVG charts drawn with `plotters`' SVG backend.
//!
//! Text is written as SVG `<text>` elements in a generic `sans-serif`
//! family and laid out with plotters' built-in size estimate (its `ttf` and
//! `ab_glyph` features are off), so drawing reads no font files: the
//! viewer's browser picks the font.

use crate::report::{Curve, CurvePoint};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("nothing to draw: {0}")]
    Empty(String),
    #[error("drawing the chart: {0}")]
    Draw(String),
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

const SIZE: (u32, u32) = (900, 560);
const PANELS_SIZE: (u32, u32) = (1400, 560);
/// A CDF is drawn through at most this many points per series.
const CDF_POINTS: usize = 400;

/// Tableau 10: distinguishable on white, unlike plotters' default palette
/// (whose yellow is hard to read).
const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

fn color(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

fn draw_err(e: impl std::error::Error) -> ChartError {
    ChartError::Draw(e.to_string())
}

/// Renders into a string, then writes the file (the backend's own file
/// writing would drop I/O errors).
fn render(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), ChartError>,
) -> Result<(), ChartError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        draw(&root)?;
        root.present().map_err(draw_err)?;
    }
    std::fs::write(path, svg).map_err(|source| ChartError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Empirical CDFs of `series` (name, samples in `unit`): latency on a log10
/// x axis, cumulative share 0–100 % on y, one line per series.
/// Non-positive samples are drawn at the axis' left edge.
pub fn latency_cdf(
    path: &Path,
    title: &str,
    series: &[(&str, &[f64])],
    unit: &str,
) -> Result<(), ChartError> {
    let cdfs: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, samples)| (*name, cdf_points(samples)))
        .filter(|(_, pts)| !pts.is_empty())
        .collect();
    let (lo, hi) = padded_log_bounds(cdfs.iter().flat_map(|(_, p)| p.iter().map(|(x, _)| *x)))
        .ok_or_else(|| ChartError::Empty(format!("{title}: no finite samples")))?;
    render(path, SIZE, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d((lo..hi).log_scale(), 0.0..100.0)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .max_light_lines(4)
            .x_desc(format!("latency ({unit}, log scale)"))
            .y_desc("share of samples at or below (%)")
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(draw_err)?;
        for (i, (name, pts)) in cdfs.iter().enumerate() {
            let color = color(i);
            let clamped = pts.iter().map(|(x, y)| (x.max(lo), *y));
            chart
                .draw_series(LineSeries::new(clamped, color.stroke_width(2)))
                .map_err(draw_err)?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(draw_err)
    })
}

/// Policy trade-off curves, two panels side by side, each against idle
/// memory-time (GB·s, log scale): cold starts as a share of invocations
/// (left, log scale: zeros sit on the bottom edge) and the 75th percentile
/// of per-function cold-start rate (right, linear, in %). One line with
/// points per policy, in sweep order; empty curves are left out.
pub fn replay_curves(path: &Path, title: &str, curves: &[Curve]) -> Result<(), ChartError> {
    let curves: Vec<&Curve> = curves.iter().filter(|c| !c.points.is_empty()).collect();
    let points = || curves.iter().flat_map(|c| c.points.iter());
    let x = padded_log_bounds(points().map(|p| p.idle_gb_s))
        .ok_or_else(|| ChartError::Empty(format!("{title}: no curve points")))?;
    let cold = padded_log_bounds(points().map(|p| p.cold_start_pct)).unwrap_or((0.01, 100.0));
    let p75_max = points()
        .map(|p| 100.0 * p.p75_function_cold_rate)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let p75_max = if p75_max > 0.0 { p75_max * 1.05 } else { 1.0 };
    render(path, PANELS_SIZE, |root| {
        let root = root.titled(title, ("sans-serif", 22)).map_err(draw_err)?;
        let panels = root.split_evenly((1, 2));
        let left = Panel {
            curves: &curves,
            x,
            y_floor: cold.0,
            y_desc: "cold starts (% of invocations, log scale)",
            measure: |p| p.cold_start_pct,
            legend: true,
        };
        left.draw(&panels[0], (cold.0..cold.1).log_scale())?;
        let right = Panel {
            curves: &curves,
            x,
            y_floor: 0.0,
            y_desc: "p75 per-function cold-start rate (%)",
            measure: |p| 100.0 * p.p75_function_cold_rate,
            legend: false,
        };
        right.draw(&panels[1], 0.0..p75_max)
    })
}

/// One panel of [`replay_curves`].
struct Panel<'c> {
    curves: &'c [&'c Curve],
    /// Bounds of the (log) x axis.
    x: (f64, f64),
    /// Values below this are drawn at it.
    y_floor: f64,
    y_desc: &'static str,
    measure: fn(&CurvePoint) -> f64,
    legend: bool,
}

impl Panel<'_> {
    fn draw<Y>(&self, area: &DrawingArea<SVGBackend<'_>, Shift>, y: Y) -> Result<(), ChartError>
    where
        Y: AsRangedCoord<Value = f64>,
        Y::CoordDescType: ValueFormatter<f64>,
    {
        let (lo, hi) = self.x;
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d((lo..hi).log_scale(), y)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .max_light_lines(4)
            .x_desc("idle memory-time (GB·s, log scale)")
            .y_desc(self.y_desc)
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .draw()
            .map_err(draw_err)?;
        for (i, c) in self.curves.iter().enumerate() {
            let color = color(i);
            let pts: Vec<(f64, f64)> = c
                .points
                .iter()
                .map(|p| (p.idle_gb_s.max(lo), (self.measure)(p).max(self.y_floor)))
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(draw_err)?
                .label(format!("{}: {}", c.policy, c.parameter))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            chart
                .draw_series(
                    pts.iter()
                        .map(|(x, y)| Circle::new((*x, *y), 3, color.filled())),
                )
                .map_err(draw_err)?;
        }
        if self.legend {
            // Few cold starts for little memory is out of reach: the lower
            // left corner stays empty.
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(draw_err)?;
        }
        Ok(())
    }
}

/// (value, cumulative %) at each sorted sample, thinned to [`CDF_POINTS`];
/// non-finite samples are left out.
fn cdf_points(samples: &[f64]) -> Vec<(f64, f64)> {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let step = n.div_ceil(CDF_POINTS).max(1);
    let mut pts: Vec<(f64, f64)> = (0..n)
        .filter(|i| i % step == 0 || i + 1 == n)
        .map(|i| (sorted[i], 100.0 * (i + 1) as f64 / n as f64))
        .collect();
    // The curve starts at 0 % at the smallest sample.
    if let Some(&(x0, _)) = pts.first() {
        pts.insert(0, (x0, 0.0));
    }
    pts
}

/// The smallest and largest positive finite values.
fn positive_range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((f64::min(lo, v), f64::max(hi, v))),
        })
}

/// Bounds of the positive finite values with a margin, spanning at least a
/// decade, for a log axis.
fn padded_log_bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (min, max) = positive_range(values)?;
    let (mut lo, mut hi) = (min / 1.3, max * 1.3);
    if hi / lo < 10.0 {
        let widen = (10.0 * lo / hi).sqrt();
        lo /= widen;
        hi *= widen;
    }
    Some((lo, hi))
}

/// A tick label with at most three significant digits: `0.05`, `1`, `20`,
/// `3.5k`, `12M`.
fn tick(v: f64) -> String {
    let a = v.abs();
    let (scaled, suffix) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let digits = if scaled.abs() >= 100.0 || scaled == 0.0 {
        0
    } else {
        (2 - scaled.abs().log10().floor() as i32).clamp(0, 6) as usize
    };
    let s = format!("{scaled:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    format!("{s}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::CurvePoint;

    fn point(v: f64, cold: f64, p75: f64, idle: f64) -> CurvePoint {
        CurvePoint {
            parameter_value: v,
            label: format!("{v}"),
            cold_start_pct: cold,
            p75_function_cold_rate: p75,
            idle_gb_s: idle,
            cold_starts: 1,
            invocations: 10,
        }
    }

    #[test]
    fn latency_cdf_is_svg_with_every_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdf.svg");
        let fast: Vec<f64> = (0..1000).map(|i| 0.05 + f64::from(i) * 0.0001).collect();
        let slow: Vec<f64> = (0..50).map(|i| 5.0 + f64::from(i)).collect();
        latency_cdf(
            &path,
            "Warm invoke",
            &[("direct baseline", &fast), ("hearth cold", &slow)],
            "ms",
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..60.min(svg.len())]);
        assert!(svg.trim_end().ends_with("</svg>"));
        for text in [
            "Warm invoke",
            "direct baseline",
            "hearth cold",
            "latency (ms",
        ] {
            assert!(svg.contains(text), "{text}");
        }
    }

    #[test]
    fn replay_curves_is_svg_with_every_policy_and_both_panels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replay.svg");
        let curves = vec![
            Curve {
                policy: "fixed-ttl".into(),
                parameter: "ttl (min)".into(),
                points: vec![point(1.0, 20.0, 0.9, 100.0), point(60.0, 5.0, 0.4, 9000.0)],
            },
            Curve {
                policy: "hybrid-histogram".into(),
                parameter: "range (min)".into(),
                points: vec![point(60.0, 4.0, 0.2, 700.0)],
            },
            Curve {
                policy: "empty".into(),
                parameter: "x".into(),
                points: Vec::new(),
            },
        ];
        replay_curves(&path, "Policy replay", &curves).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"));
        for text in [
            "Policy replay",
            "fixed-ttl: ttl (min)",
            "hybrid-histogram",
            "cold starts (% of invocations, log scale)",
            "p75 per-function cold-start rate",
        ] {
            assert!(svg.contains(text), "{text}");
        }
        assert!(!svg.contains("empty: x"), "empty curves are left out");
    }

    #[test]
    fn nothing_to_draw_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.svg");
        let err = latency_cdf(&p, "t", &[("a", &[])], "ms").unwrap_err();
        assert!(matches!(err, ChartError::Empty(_)), "{err}");
        assert!(matches!(
            replay_curves(&p, "t", &[]),
            Err(ChartError::Empty(_))
        ));
        let missing = dir.path().join("no/such/dir/x.svg");
        let err = latency_cdf(&missing, "t", &[("a", &[1.0])], "ms").unwrap_err();
        assert!(matches!(err, ChartError::Io { .. }), "{err}");
    }

    #[test]
    fn cdf_points_are_thinned_and_end_at_100() {
        let samples: Vec<f64> = (0..10_000).map(f64::from).collect();
        let pts = cdf_points(&samples);
        assert!(pts.len() <= CDF_POINTS + 2);
        assert_eq!(pts[0], (0.0, 0.0));
        assert_eq!(pts.last().copied(), Some((9_999.0, 100.0)));
        assert!(pts.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
    }

    #[test]
    fn bounds_and_ticks() {
        let (lo, hi) = padded_log_bounds([0.05, 50.0].into_iter()).unwrap();
        assert!(
            lo < 0.05 && lo > 0.03 && hi > 50.0 && hi < 70.0,
            "{lo} {hi}"
        );
        assert_eq!(padded_log_bounds([0.0, f64::NAN].into_iter()), None);
        assert_eq!(tick(0.05), "0.05");
        assert_eq!(tick(1.0), "1");
        assert_eq!(tick(200.0), "200");
        assert_eq!(tick(2.5), "2.5");
        assert_eq!(tick(12_345.0), "12.3k");
        assert_eq!(tick(20_000_000.0), "20M");
        assert_eq!(tick(0.0), "0");
        let (lo, hi) = padded_log_bounds([2.0, 3.0].into_iter()).unwrap();
        assert!(lo < 2.0 && hi > 3.0 && hi / lo >= 10.0 - 1e-9);
    }
}
