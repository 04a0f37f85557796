//! SVG plots beside the report, drawn with plotters.
//!
//! plotters draws text through `ab_glyph` with fonts registered at run time (DejaVu Sans,
//! embedded by the `dejavu` crate), so no system font library is needed.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

use crate::analysis::{geomean, Analysis};
use crate::ids::{MessageKind, PoolVariant, PortFlavour, RowOp, RowVariant, Width};
use crate::results::{Results, RunResult};

/// Registers DejaVu Sans as `sans-serif`; call once before drawing.
pub fn register_fonts() -> Result<()> {
    register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| anyhow!("DejaVu Sans regular is not a valid font"))?;
    register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold()).map_err(|_| anyhow!("DejaVu Sans bold is not a valid font"))?;
    Ok(())
}

/// One series of a bar chart: a value (or nothing) per category.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend name.
    pub name: String,
    /// One value per category.
    pub values: Vec<Option<f64>>,
}

const W: u32 = 960;
const H: u32 = 540;

fn colour(i: usize) -> RGBColor {
    const P: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    P[i % P.len()]
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotters: {e:?}")
}

fn value_range(series: &[Series]) -> Option<(f64, f64)> {
    let vals: Vec<f64> = series
        .iter()
        .flat_map(|s| s.values.iter().flatten().copied())
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = vals.iter().copied().fold(0.0, f64::max);
    (!vals.is_empty()).then_some((lo, hi))
}

/// Draws grouped bars: one group per category, one bar per series, log-scaled y.
/// Returns `false` (and writes nothing) when there is no positive value to draw.
pub fn grouped_bars(
    path: &Path,
    title: &str,
    y_label: &str,
    categories: &[String],
    series: &[Series],
    y_fmt: fn(f64) -> String,
) -> Result<bool> {
    let Some((lo, hi)) = value_range(series) else {
        return Ok(false);
    };
    let root = SVGBackend::new(path, (W, H)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let n = categories.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(90)
        .build_cartesian_2d(0f64..n as f64, (lo / 2.0..hi * 2.0).log_scale())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(y_label)
        .y_label_formatter(&|v| y_fmt(*v))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(plot_err)?;
    let k = series.len().max(1) as f64;
    let bar = 0.8 / k;
    for (si, s) in series.iter().enumerate() {
        let c = colour(si);
        let rects: Vec<_> = s
            .values
            .iter()
            .enumerate()
            .filter_map(|(ci, v)| v.filter(|v| *v > 0.0).map(|v| (ci, v)))
            .map(|(ci, v)| {
                let x0 = ci as f64 + 0.1 + si as f64 * bar;
                Rectangle::new([(x0, lo / 2.0), (x0 + bar * 0.92, v)], c.filled())
            })
            .collect();
        chart
            .draw_series(rects)
            .map_err(plot_err)?
            .label(s.name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(plot_err)?;
    category_labels(&root, categories, |x| chart.backend_coord(&(x, lo / 2.0)))?;
    root.present().map_err(plot_err)?;
    Ok(true)
}

fn category_labels(root: &DrawingArea<SVGBackend<'_>, Shift>, categories: &[String], to_px: impl Fn(f64) -> (i32, i32)) -> Result<()> {
    let style = TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    for (i, c) in categories.iter().enumerate() {
        let (px, py) = to_px(i as f64 + 0.5);
        root.draw(&Text::new(c.clone(), (px, py + 8), style.clone())).map_err(plot_err)?;
    }
    Ok(())
}

/// Draws one line per series over log-scaled x and y. `points` maps a series name to
/// `(x, y)` pairs. Returns `false` when there is nothing to draw.
pub fn log_lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &BTreeMap<String, Vec<(f64, f64)>>,
    y_fmt: fn(f64) -> String,
) -> Result<bool> {
    let all: Vec<(f64, f64)> = points
        .values()
        .flatten()
        .copied()
        .filter(|(x, y)| *x > 0.0 && *y > 0.0 && x.is_finite() && y.is_finite())
        .collect();
    if all.is_empty() {
        return Ok(false);
    }
    let (xlo, xhi) = all.iter().fold((f64::INFINITY, 0f64), |(l, h), (x, _)| (l.min(*x), h.max(*x)));
    let (ylo, yhi) = all.iter().fold((f64::INFINITY, 0f64), |(l, h), (_, y)| (l.min(*y), h.max(*y)));
    let root = SVGBackend::new(path, (W, H)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(90)
        .build_cartesian_2d((xlo / 1.5..xhi * 1.5).log_scale(), (ylo / 2.0..yhi * 2.0).log_scale())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| y_fmt(*v))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(plot_err)?;
    for (i, (name, pts)) in points.iter().enumerate() {
        let c = colour(i);
        let mut pts = pts.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(plot_err)?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, c.filled())))
            .map_err(plot_err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(true)
}

/// Row variants for read by name and `with`, per measured width.
pub fn rows_plot(a: &Analysis, path: &Path) -> Result<bool> {
    let mut cats = Vec::new();
    let mut keys = Vec::new();
    for w in [Width::Customer, Width::Wide] {
        for op in [RowOp::ReadName, RowOp::ReadIndex, RowOp::With] {
            if RowVariant::ALL.iter().any(|v| a.rows.contains_key(&(w, op, *v))) {
                let short = match w {
                    Width::Customer => "customer",
                    Width::Wide => "wide",
                };
                cats.push(format!("{} ({short})", op.label()));
                keys.push((w, op));
            }
        }
    }
    let series: Vec<Series> = RowVariant::ALL
        .iter()
        .map(|v| Series {
            name: v.name().into(),
            values: keys
                .iter()
                .map(|(w, op)| a.rows.get(&(*w, *op, *v)).map(|p| p.mean.point))
                .collect(),
        })
        .collect();
    grouped_bars(
        path,
        "Row variants: read by name and with (lower is better)",
        "time per operation (log)",
        &cats,
        &series,
        crate::fmt::time,
    )
}

/// Delivered messages per second against fan-out, one line per port flavour.
pub fn fan_out_plot(a: &Analysis, path: &Path) -> Result<bool> {
    let mut lines = BTreeMap::new();
    for msg in [MessageKind::Chunk] {
        for f in PortFlavour::ALL.iter().copied() {
            let mut by_fan: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
            for p in a.ports.iter().filter(|p| p.flavour == f && p.message == msg) {
                if let (Some(n), Some(r)) = (p.fan_out, p.delivered_per_sec()) {
                    by_fan.entry(n).or_default().push(r);
                }
            }
            let pts: Vec<(f64, f64)> = by_fan
                .into_iter()
                .filter_map(|(n, rs)| geomean(&rs).map(|g| (n as f64, g)))
                .collect();
            if !pts.is_empty() {
                let kind = if msg == MessageKind::Chunk { "chunk" } else { "row" };
                lines.insert(format!("{f} ({kind} msgs)"), pts);
            }
        }
    }
    log_lines(
        path,
        "Fan-out scaling per port (higher is better)",
        "subscribers (log)",
        "delivered rows / s (log)",
        &lines,
        crate::fmt::rate,
    )
}

/// End-to-end rows per second by tool, per data set (peers, with FlowEngine's own e2e runs).
pub fn peers_plot(results: &Results, path: &Path) -> Result<bool> {
    let runs: Vec<&RunResult> = results.peers.iter().chain(results.e2e.iter()).collect();
    let mut datasets: Vec<String> = runs.iter().map(|r| r.dataset()).collect();
    datasets.sort();
    datasets.dedup();
    let mut tools: Vec<String> = runs.iter().map(|r| r.tool.clone()).collect();
    tools.sort();
    tools.dedup();
    let series: Vec<Series> = tools
        .iter()
        .map(|t| Series {
            name: t.clone(),
            values: datasets
                .iter()
                .map(|d| {
                    // Peers first: the comparison script runs every tool on the same files.
                    runs.iter().find(|r| &r.tool == t && &r.dataset() == d).map(|r| r.rows_per_sec)
                })
                .collect(),
        })
        .collect();
    grouped_bars(
        path,
        "End-to-end throughput against peers (higher is better)",
        "rows / s (log)",
        &datasets,
        &series,
        crate::fmt::rate,
    )
}

/// Allocations per operation by pool strategy and scenario.
pub fn pooling_plot(a: &Analysis, path: &Path) -> Result<bool> {
    let mut scenarios: Vec<String> = a.pool_allocs.iter().map(|(_, s, _)| s.clone()).collect();
    scenarios.sort();
    scenarios.dedup();
    let series: Vec<Series> = PoolVariant::ALL
        .iter()
        .map(|v| Series {
            name: v.name().into(),
            values: scenarios
                .iter()
                .map(|s| {
                    a.pool_allocs
                        .iter()
                        .find(|(pv, ps, _)| pv == v && ps == s)
                        .map(|(_, _, d)| d.allocs_per_op)
                })
                .collect(),
        })
        .collect();
    let labels: Vec<String> = scenarios.iter().map(|s| s.trim_matches('-').to_owned()).collect();
    grouped_bars(
        path,
        "Allocations per operation by pool strategy (lower is better; 0 draws no bar)",
        "allocations / op (log)",
        &labels,
        &series,
        crate::fmt::sig3,
    )
}

/// Draws every plot into `dir`; returns the file names drawn (relative to `dir`).
pub fn draw_all(results: &Results, a: &Analysis, dir: &Path) -> Result<crate::report::PlotLinks> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut links = crate::report::PlotLinks::default();
    let draw = |name: &str, ok: Result<bool>| -> Result<Option<String>> {
        Ok(ok.with_context(|| format!("drawing {name}"))?.then(|| name.to_owned()))
    };
    let p = |n: &str| dir.join(n);
    links.rows = draw("rows.svg", rows_plot(a, &p("rows.svg")))?;
    links.fan_out = draw("fan-out.svg", fan_out_plot(a, &p("fan-out.svg")))?;
    links.peers = draw("peers.svg", peers_plot(results, &p("peers.svg")))?;
    links.pooling = draw("pooling.svg", pooling_plot(a, &p("pooling.svg")))?;
    // A plot not drawn this run must not survive from an older run.
    for (name, link) in [
        ("rows.svg", &links.rows),
        ("fan-out.svg", &links.fan_out),
        ("peers.svg", &links.peers),
        ("pooling.svg", &links.pooling),
    ] {
        if link.is_none() && p(name).exists() {
            std::fs::remove_file(p(name)).with_context(|| format!("removing stale {name}"))?;
        }
    }
    Ok(links)
}
