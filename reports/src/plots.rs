//! Plots beside the report, drawn with plotters: SVG for the report, PNG (a path ending in
//! `.png`, through the bitmap backend) to look at them.
//!
//! Every series has its own colour ([`PALETTE`]: Okabe–Ito extended with Paul Tol's muted
//! colours, colour-blind safe) *and* its own marker shape ([`Marker`]), in the plot and in the
//! legend, so no two series look alike, even in greyscale. Intervals are error bars; the
//! seeds' targets and the decisions' bars are labelled dashed lines; axes where zero matters
//! are linear from zero.
//!
//! plotters draws text through `ab_glyph` with fonts registered at run time (DejaVu Sans,
//! embedded by the `dejavu` crate), so no system font library is needed.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::element::{DashedPathElement, Drawable, PointCollection};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};
use plotters_backend::{BackendCoord, DrawingErrorKind};

use crate::analysis::{geomean, Analysis};
use crate::decide::{Decision, Decisions, DECISION_ORDER};
use crate::ids::{MessageKind, PoolVariant, PortFlavour, RowOp, RowVariant, Width};
use crate::results::{Results, RunResult, Soak};

/// Registers DejaVu Sans as `sans-serif`; call once before drawing.
pub fn register_fonts() -> Result<()> {
    register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| anyhow!("DejaVu Sans regular is not a valid font"))?;
    register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold()).map_err(|_| anyhow!("DejaVu Sans bold is not a valid font"))?;
    Ok(())
}

/// Series colours: Okabe–Ito's seven (yellow left out: unreadable on white) and black, then
/// Paul Tol's muted wine, olive and indigo, a mid grey and a brown. Every pair differs by at
/// least 25 ΔE (CIE76); the closest pair is Okabe–Ito's blue and sky blue.
pub const PALETTE: [RGBColor; 12] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(230, 159, 0),   // orange
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(0, 0, 0),       // black
    RGBColor(136, 34, 85),   // wine
    RGBColor(153, 153, 51),  // olive
    RGBColor(51, 34, 136),   // indigo
    RGBColor(119, 119, 119), // grey
    RGBColor(140, 86, 75),   // brown
];

/// The most series one plot draws with a colour and a marker of its own (more wrap around the
/// palette with a shifted marker, so the pair stays unique).
pub const MAX_SERIES: usize = PALETTE.len();

/// A marker shape: one per series, on every point, bar top and legend entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Marker {
    /// Filled circle.
    Circle,
    /// Filled square.
    Square,
    /// Filled triangle pointing up.
    Triangle,
    /// Filled diamond.
    Diamond,
    /// Filled triangle pointing down.
    TriangleDown,
    /// Diagonal cross.
    Cross,
    /// Upright cross.
    Plus,
    /// Open circle.
    OpenCircle,
    /// Open square.
    OpenSquare,
    /// Open triangle pointing up.
    OpenTriangle,
    /// Open diamond.
    OpenDiamond,
    /// Open triangle pointing down.
    OpenTriangleDown,
}

/// Every marker, in the order series take them.
pub const MARKERS: [Marker; 12] = [
    Marker::Circle,
    Marker::Triangle,
    Marker::Square,
    Marker::Diamond,
    Marker::TriangleDown,
    Marker::Cross,
    Marker::OpenCircle,
    Marker::OpenTriangle,
    Marker::OpenSquare,
    Marker::OpenDiamond,
    Marker::Plus,
    Marker::OpenTriangleDown,
];

impl Marker {
    /// The marker centred on `at`, `r` pixels from centre to edge.
    pub fn at<C>(self, at: C, r: i32, colour: RGBAColor) -> MarkerAt<C> {
        MarkerAt {
            at,
            marker: self,
            r,
            colour,
        }
    }
}

/// A [`Marker`] placed on a point: a plotters element (in data or pixel coordinates).
#[derive(Debug, Clone)]
pub struct MarkerAt<C> {
    at: C,
    marker: Marker,
    r: i32,
    colour: RGBAColor,
}

impl<'a, C> PointCollection<'a, C> for &'a MarkerAt<C> {
    type Point = &'a C;
    type IntoIter = std::iter::Once<&'a C>;
    fn point_iter(self) -> Self::IntoIter {
        std::iter::once(&self.at)
    }
}

impl<C, DB: DrawingBackend> Drawable<DB> for MarkerAt<C> {
    fn draw<I: Iterator<Item = BackendCoord>>(
        &self,
        mut pos: I,
        backend: &mut DB,
        _: (u32, u32),
    ) -> Result<(), DrawingErrorKind<DB::ErrorType>> {
        let Some((x, y)) = pos.next() else { return Ok(()) };
        let r = self.r;
        let fill = ShapeStyle {
            color: self.colour,
            filled: true,
            stroke_width: 1,
        };
        let line = ShapeStyle {
            color: self.colour,
            filled: false,
            stroke_width: 2,
        };
        let thick = line.stroke_width(3);
        let at = |pts: &[(i32, i32)]| pts.iter().map(|(dx, dy)| (x + dx, y + dy)).collect::<Vec<_>>();
        let mut shape = |pts: &[(i32, i32)], filled: bool| {
            let pts = at(pts);
            if filled {
                backend.fill_polygon(pts, &fill)
            } else {
                let mut closed = pts.clone();
                closed.push(pts[0]);
                backend.draw_path(closed, &line)
            }
        };
        let square = [(-r, -r), (r, -r), (r, r), (-r, r)];
        let up = [(0, -r - 1), (r + 1, r - 1), (-r - 1, r - 1)];
        let down = [(0, r + 1), (r + 1, -r + 1), (-r - 1, -r + 1)];
        let diamond = [(0, -r - 1), (r + 1, 0), (0, r + 1), (-r - 1, 0)];
        match self.marker {
            Marker::Circle => backend.draw_circle((x, y), r as u32, &fill, true),
            Marker::OpenCircle => backend.draw_circle((x, y), r as u32, &line, false),
            Marker::Square => shape(&square, true),
            Marker::OpenSquare => shape(&square, false),
            Marker::Triangle => shape(&up, true),
            Marker::OpenTriangle => shape(&up, false),
            Marker::TriangleDown => shape(&down, true),
            Marker::OpenTriangleDown => shape(&down, false),
            Marker::Diamond => shape(&diamond, true),
            Marker::OpenDiamond => shape(&diamond, false),
            Marker::Cross => {
                backend.draw_line((x - r, y - r), (x + r, y + r), &thick)?;
                backend.draw_line((x - r, y + r), (x + r, y - r), &thick)
            }
            Marker::Plus => {
                backend.draw_line((x - r - 1, y), (x + r + 1, y), &thick)?;
                backend.draw_line((x, y - r - 1), (x, y + r + 1), &thick)
            }
        }
    }
}

/// How a series looks: its colour and its marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    /// Line, bar and marker colour.
    pub colour: RGBColor,
    /// Marker shape.
    pub marker: Marker,
}

/// The look of the `i`-th series of a plot: unique (colour and marker both) for
/// `i < MAX_SERIES`, and a unique pair beyond.
pub fn look(i: usize) -> Look {
    Look {
        colour: PALETTE[i % PALETTE.len()],
        marker: MARKERS[(i + i / PALETTE.len()) % MARKERS.len()],
    }
}

/// Tools keep one look across plots (peers, memory): FlowEngine is always blue circles.
fn tool_look(tool: &str) -> Look {
    const KNOWN: [&str; 6] = ["flowengine", "polars", "duckdb", "csv-floor", "flowengine-prototype", "gnu-sort"];
    match KNOWN.iter().position(|t| *t == tool) {
        Some(i) => look(i),
        None => look(KNOWN.len() + tool.bytes().map(usize::from).sum::<usize>() % (MAX_SERIES - KNOWN.len())),
    }
}

/// A labelled reference line: a seed's target, a decision's bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Guide {
    /// Where it is on the value axis (for a diagonal: the slope, `y = value · x`).
    pub value: f64,
    /// What it is, e.g. `seed 001: row operations < 100 ns`.
    pub label: String,
}

impl Guide {
    fn new(value: f64, label: impl Into<String>) -> Self {
        Guide {
            value,
            label: label.into(),
        }
    }
}

/// One series of a bar chart: a value (or nothing) per category.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend name.
    pub name: String,
    /// One value per category.
    pub values: Vec<Option<f64>>,
    /// Interval per category (`lower`, `upper`), drawn as an error bar; empty for none.
    pub bounds: Vec<Option<(f64, f64)>>,
    /// A second value per category, drawn as a light bar behind the first with its own
    /// error bar (peers: the rate from the time inside the tool); empty for none.
    pub light: Vec<Option<f64>>,
    /// Intervals of `light`; empty for none.
    pub light_bounds: Vec<Option<(f64, f64)>>,
    /// Colour and marker.
    pub look: Look,
}

impl Series {
    fn new(name: impl Into<String>, look: Look, values: Vec<Option<f64>>) -> Self {
        Series {
            name: name.into(),
            values,
            bounds: Vec::new(),
            light: Vec::new(),
            light_bounds: Vec::new(),
            look,
        }
    }
}

/// A grouped bar chart: one group per category, one bar per series.
#[derive(Debug, Clone)]
pub struct BarChart {
    /// Title.
    pub title: String,
    /// Value axis description.
    pub y_label: String,
    /// Group labels, under the x axis.
    pub categories: Vec<String>,
    /// The bars.
    pub series: Vec<Series>,
    /// Value formatter (axis, value labels).
    pub y_fmt: fn(f64) -> String,
    /// Log value axis (else linear from zero).
    pub log: bool,
    /// Dashed horizontal lines.
    pub guides: Vec<Guide>,
    /// Print each bar's value above it.
    pub value_labels: bool,
    /// Extra legend entries (name, look, light) explaining the bar styles.
    pub key: Vec<(String, Look, bool)>,
}

/// One point of a line, with its interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinePoint {
    /// x.
    pub x: f64,
    /// y.
    pub y: f64,
    /// Interval of y, drawn as an error bar.
    pub bounds: Option<(f64, f64)>,
}

impl LinePoint {
    fn new(x: f64, y: f64) -> Self {
        LinePoint { x, y, bounds: None }
    }
}

/// One line of a line chart.
#[derive(Debug, Clone)]
pub struct Line {
    /// Legend name.
    pub name: String,
    /// Colour and marker.
    pub look: Look,
    /// Points (sorted by x when drawn).
    pub points: Vec<LinePoint>,
}

/// A line chart.
#[derive(Debug, Clone)]
pub struct LineChart {
    /// Title.
    pub title: String,
    /// x axis description.
    pub x_label: String,
    /// y axis description.
    pub y_label: String,
    /// The lines.
    pub lines: Vec<Line>,
    /// x formatter.
    pub x_fmt: fn(f64) -> String,
    /// y formatter.
    pub y_fmt: fn(f64) -> String,
    /// Log x axis (else linear from zero).
    pub log_x: bool,
    /// Log y axis (else linear from zero).
    pub log_y: bool,
    /// Dashed horizontal lines.
    pub guides: Vec<Guide>,
    /// Dashed lines through the origin, `y = value · x`.
    pub diagonals: Vec<Guide>,
    /// Draw a legend (right of the plot).
    pub legend: bool,
}

const W: u32 = 1100;
const H: u32 = 560;
const TITLE: u32 = 20;
const TEXT: u32 = 13;
const GUIDE_INK: RGBColor = RGBColor(40, 40, 40);

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotters: {e:?}")
}

fn is_png(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"))
}

/// Runs `$draw(&root, args…)` on an SVG or, for a `.png` path, a bitmap canvas.
macro_rules! on_canvas {
    ($path:expr, $size:expr, $draw:ident ( $($arg:expr),* $(,)? )) => {{
        let path: &Path = $path;
        if is_png(path) {
            let root = BitMapBackend::new(path, $size).into_drawing_area();
            root.fill(&WHITE).map_err(plot_err)?;
            $draw(&root, $($arg),*)?;
            root.present().map_err(plot_err)?;
        } else {
            let root = SVGBackend::new(path, $size).into_drawing_area();
            root.fill(&WHITE).map_err(plot_err)?;
            $draw(&root, $($arg),*)?;
            root.present().map_err(plot_err)?;
        }
    }};
}

fn finite_pos(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

/// An axis number: whole numbers without decimals, others to three significant digits.
fn num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        crate::fmt::sig3(v)
    }
}

/// What a legend entry shows beside its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Swatch {
    /// A bar (light: the lighter second bar) and the marker its top carries.
    Bar { light: bool },
    /// A line through the marker.
    Line,
}

/// The legend, drawn to the right of the plot (never over the data).
struct Legend(Vec<(String, Look, Swatch)>);

impl Legend {
    fn width(&self) -> u32 {
        if self.0.is_empty() {
            return 0;
        }
        let chars = self.0.iter().map(|(n, _, _)| n.chars().count()).max().unwrap_or(0) as u32;
        (chars * 7 + 56).clamp(110, 330)
    }

    /// Draws the entries top-down from `(x, y)` on `root` (pixels), framed.
    /// `(x, y)` are backend pixels, as the chart reports them.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, x: i32, y: i32) -> Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        let (x, y) = local(root, (x, y));
        let row = 20;
        let w = self.width() as i32 - 12;
        let h = row * self.0.len() as i32 + 10;
        root.draw(&Rectangle::new([(x, y), (x + w, y + h)], WHITE.filled()))
            .map_err(plot_err)?;
        root.draw(&Rectangle::new([(x, y), (x + w, y + h)], RGBColor(90, 90, 90).stroke_width(1)))
            .map_err(plot_err)?;
        let style = TextStyle::from(("sans-serif", TEXT).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        for (i, (name, look, swatch)) in self.0.iter().enumerate() {
            let cy = y + 5 + row / 2 + row * i as i32;
            let x0 = x + 8;
            let Look { colour, marker } = *look;
            match swatch {
                Swatch::Bar { light } => {
                    let fill = if *light { colour.mix(0.3).filled() } else { colour.filled() };
                    root.draw(&Rectangle::new([(x0, cy - 6), (x0 + 12, cy + 7)], fill))
                        .map_err(plot_err)?;
                    root.draw(&Rectangle::new([(x0, cy - 6), (x0 + 12, cy + 7)], colour.stroke_width(1)))
                        .map_err(plot_err)?;
                    root.draw(&marker.at((x0 + 24, cy), 5, colour.to_rgba())).map_err(plot_err)?;
                }
                Swatch::Line => {
                    root.draw(&PathElement::new(vec![(x0, cy), (x0 + 30, cy)], colour.stroke_width(2)))
                        .map_err(plot_err)?;
                    root.draw(&marker.at((x0 + 15, cy), 5, colour.to_rgba())).map_err(plot_err)?;
                }
            }
            root.draw(&Text::new(name.clone(), (x0 + 38, cy), style.clone()))
                .map_err(plot_err)?;
        }
        Ok(())
    }
}

/// Text on a white box (so a label stays readable over bars and lines), at pixel `at`.
/// Backend pixels (what `ChartContext::backend_coord` gives) to pixels of `root`, which may be
/// a panel of the canvas.
fn local<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, (x, y): (i32, i32)) -> (i32, i32) {
    let (bx, by) = root.get_base_pixel();
    (x - bx, y - by)
}

/// `at` is in backend pixels.
fn boxed_text<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, text: &str, at: (i32, i32), pos: Pos) -> Result<()> {
    let at = local(root, at);
    let style = TextStyle::from(("sans-serif", TEXT).into_font()).color(&GUIDE_INK).pos(pos);
    let (w, h) = root.estimate_text_size(text, &style).map_err(plot_err)?;
    let (w, h) = (w as i32, h as i32);
    let x0 = match pos.h_pos {
        HPos::Left => at.0,
        HPos::Center => at.0 - w / 2,
        HPos::Right => at.0 - w,
    };
    let y0 = match pos.v_pos {
        VPos::Top => at.1,
        VPos::Center => at.1 - h / 2,
        VPos::Bottom => at.1 - h,
    };
    root.draw(&Rectangle::new(
        [(x0 - 3, y0 - 2), (x0 + w + 3, y0 + h + 2)],
        WHITE.mix(0.85).filled(),
    ))
    .map_err(plot_err)?;
    root.draw(&Text::new(text.to_owned(), at, style)).map_err(plot_err)?;
    Ok(())
}

/// Every value a bar chart draws (values, light values, bounds).
fn bar_values(c: &BarChart) -> Vec<f64> {
    let mut out = Vec::new();
    for s in &c.series {
        out.extend(s.values.iter().chain(&s.light).flatten().copied());
        for (lo, hi) in s.bounds.iter().chain(&s.light_bounds).flatten() {
            out.extend([*lo, *hi]);
        }
    }
    out.retain(|v| v.is_finite() && *v >= 0.0);
    out
}

/// Draws a grouped bar chart. Returns `false` (and writes nothing) when there is nothing to
/// draw: no positive value on a log axis, no value at all on a linear one.
pub fn grouped_bars(path: &Path, c: &BarChart) -> Result<bool> {
    let vals = bar_values(c);
    let drawn: Vec<f64> = c
        .series
        .iter()
        .flat_map(|s| s.values.iter().chain(&s.light).flatten().copied())
        .filter(|v| if c.log { finite_pos(*v) } else { v.is_finite() && *v >= 0.0 })
        .collect();
    if drawn.is_empty() || c.categories.is_empty() {
        return Ok(false);
    }
    let guides = c.guides.iter().map(|g| g.value);
    let size = (W, H);
    if c.log {
        let all: Vec<f64> = vals.into_iter().chain(guides).filter(|v| finite_pos(*v)).collect();
        let lo = all.iter().copied().fold(f64::INFINITY, f64::min) / 2.0;
        let hi = all.iter().copied().fold(0.0, f64::max) * 2.5;
        on_canvas!(path, size, bars_on(c, (lo..hi).log_scale(), lo));
    } else {
        let hi = vals.into_iter().chain(guides).fold(0.0, f64::max);
        let hi = if hi > 0.0 { hi * 1.12 } else { 1.0 };
        on_canvas!(path, size, bars_on(c, 0.0..hi, 0.0));
    }
    Ok(true)
}

fn bars_on<DB: DrawingBackend, Y>(root: &DrawingArea<DB, Shift>, c: &BarChart, y: Y, base: f64) -> Result<()>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut legend = Legend(
        c.series
            .iter()
            .map(|s| {
                let any = s.values.iter().chain(&s.light).flatten().any(|v| v.is_finite());
                let name = if any { s.name.clone() } else { format!("{} (no data)", s.name) };
                (name, s.look, Swatch::Bar { light: false })
            })
            .collect(),
    );
    legend
        .0
        .extend(c.key.iter().map(|(n, l, light)| (n.clone(), *l, Swatch::Bar { light: *light })));
    let label_lines = c.categories.iter().map(|c| c.lines().count()).max().unwrap_or(1) as u32;
    let n = c.categories.len().max(1);
    let mut chart = ChartBuilder::on(root)
        .caption(&c.title, ("sans-serif", TITLE))
        .margin(16)
        .margin_right(16 + legend.width())
        .x_label_area_size(24 + 16 * label_lines)
        .y_label_area_size(96)
        .build_cartesian_2d(0f64..n as f64, y)
        .map_err(plot_err)?;
    let y_fmt = c.y_fmt;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_max_light_lines(if c.log { 8 } else { 1 })
        .y_desc(&c.y_label)
        .y_label_formatter(&|v| y_fmt(*v))
        .label_style(("sans-serif", TEXT))
        .draw()
        .map_err(plot_err)?;
    let k = c.series.len().max(1) as f64;
    let slot = 0.84 / k;
    let bar = slot * 0.86;
    let x_of = |si: usize, ci: usize| ci as f64 + 0.08 + si as f64 * slot;
    let px_per_unit = f64::from(chart.plotting_area().dim_in_pixel().0) / n as f64;
    let cap = ((bar * 0.3) * px_per_unit).clamp(2.0, 7.0) as i32;
    let r = ((bar * 0.4) * px_per_unit).clamp(3.0, 6.0) as i32;
    for (si, s) in c.series.iter().enumerate() {
        let Look { colour, marker } = s.look;
        let light_style = ShapeStyle {
            color: colour.mix(0.3),
            filled: true,
            stroke_width: 0,
        };
        // Light bars first (behind), outlined in the series' colour.
        for (ci, v) in s.light.iter().enumerate() {
            let Some(v) = v.filter(|v| v.is_finite() && *v >= base) else {
                continue;
            };
            let x0 = x_of(si, ci);
            chart
                .draw_series([
                    Rectangle::new([(x0, base), (x0 + bar, v)], light_style),
                    Rectangle::new([(x0, base), (x0 + bar, v)], colour.stroke_width(1)),
                ])
                .map_err(plot_err)?;
            let mut top = v;
            if let Some(Some((lo, hi))) = s.light_bounds.get(ci) {
                whisker(&mut chart, x0 + bar * 0.5, *lo, *hi, colour.mix(0.8), cap)?;
                top = top.max(*hi);
            }
            chart
                .draw_series([EmptyElement::at((x0 + bar * 0.5, top)) + marker.at((0, -r - 4), r, colour.mix(0.6))])
                .map_err(plot_err)?;
        }
        for (ci, v) in s.values.iter().enumerate() {
            let Some(v) = v.filter(|v| v.is_finite() && *v >= base) else {
                continue;
            };
            let x0 = x_of(si, ci);
            let xc = x0 + bar * 0.5;
            chart
                .draw_series([Rectangle::new([(x0, base), (x0 + bar, v)], colour.filled())])
                .map_err(plot_err)?;
            let mut top = v;
            if let Some(Some((lo, hi))) = s.bounds.get(ci) {
                whisker(&mut chart, xc, *lo, *hi, GUIDE_INK, cap)?;
                top = top.max(*hi);
            }
            let light_top = s.light.get(ci).copied().flatten().filter(|l| *l > v);
            // The marker sits on the bar top (a zero bar still shows whose it is); inside a
            // taller light bar, the light bar's marker says whose it is.
            if light_top.is_none() {
                chart
                    .draw_series([EmptyElement::at((xc, top)) + marker.at((0, -r - 4), r, colour.to_rgba())])
                    .map_err(plot_err)?;
            }
            if c.value_labels && light_top.is_none() {
                let style = TextStyle::from(("sans-serif", TEXT - 1).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
                chart
                    .draw_series([EmptyElement::at((xc, top)) + Text::new(y_fmt(v), (0, -2 * r - 8), style)])
                    .map_err(plot_err)?;
            }
        }
    }
    for g in &c.guides {
        hguide(root, &mut chart, 0.0, n as f64, g)?;
    }
    let style = TextStyle::from(("sans-serif", TEXT).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    for (i, cat) in c.categories.iter().enumerate() {
        let (px, py) = local(root, chart.backend_coord(&(i as f64 + 0.5, base)));
        for (l, line) in cat.lines().enumerate() {
            root.draw(&Text::new(line.to_owned(), (px, py + 8 + 16 * l as i32), style.clone()))
                .map_err(plot_err)?;
        }
    }
    let area = chart.plotting_area().get_pixel_range();
    legend.draw(root, area.0.end + 12, area.1.start)?;
    Ok(())
}

type Chart2d<'a, DB, X, Y> = ChartContext<'a, DB, plotters::coord::cartesian::Cartesian2d<X, Y>>;

/// A vertical error bar from `lo` to `hi` at `x`, with caps `cap` pixels wide each side.
fn whisker<DB: DrawingBackend, X, Y>(
    chart: &mut Chart2d<'_, DB, X, Y>,
    x: f64,
    lo: f64,
    hi: f64,
    colour: impl Color,
    cap: i32,
) -> Result<()>
where
    X: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    if !(lo.is_finite() && hi.is_finite()) {
        return Ok(());
    }
    let st = colour.stroke_width(2);
    chart
        .draw_series([PathElement::new(vec![(x, lo), (x, hi)], st)])
        .map_err(plot_err)?;
    chart
        .draw_series([lo, hi].map(|v| EmptyElement::at((x, v)) + PathElement::new(vec![(-cap, 0), (cap, 0)], st)))
        .map_err(plot_err)?;
    Ok(())
}

/// A dashed horizontal guide from `x0` to `x1` at `g.value`, labelled above its left end.
fn hguide<DB: DrawingBackend, X, Y>(
    root: &DrawingArea<DB, Shift>,
    chart: &mut Chart2d<'_, DB, X, Y>,
    x0: f64,
    x1: f64,
    g: &Guide,
) -> Result<()>
where
    X: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    chart
        .draw_series([DashedPathElement::new(
            vec![(x0, g.value), (x1, g.value)],
            9,
            6,
            GUIDE_INK.stroke_width(2),
        )])
        .map_err(plot_err)?;
    let (px, py) = chart.backend_coord(&(x0, g.value));
    boxed_text(root, &g.label, (px + 6, py - 4), Pos::new(HPos::Left, VPos::Bottom))
}

/// Draws a line chart. Returns `false` when there is no point to draw.
pub fn line_chart(path: &Path, c: &LineChart) -> Result<bool> {
    if usable(c).is_empty() {
        return Ok(false);
    }
    on_canvas!(path, (W, H), lines_any(c));
    Ok(true)
}

fn usable(c: &LineChart) -> Vec<(f64, f64)> {
    c.lines
        .iter()
        .flat_map(|l| l.points.iter())
        .filter(|p| p.x.is_finite() && p.y.is_finite() && (!c.log_x || p.x > 0.0) && (!c.log_y || p.y > 0.0) && p.x >= 0.0 && p.y >= 0.0)
        .map(|p| (p.x, p.y))
        .collect()
}

/// Axis ranges of a line chart: pads log axes by a factor, linear ones start at zero.
fn line_ranges(c: &LineChart) -> ((f64, f64), (f64, f64)) {
    let pts = usable(c);
    let mut ys: Vec<f64> = pts.iter().map(|p| p.1).collect();
    for l in &c.lines {
        for p in &l.points {
            if let Some((lo, hi)) = p.bounds {
                ys.extend([lo, hi]);
            }
        }
    }
    ys.extend(c.guides.iter().map(|g| g.value));
    ys.retain(|v| v.is_finite() && (!c.log_y || *v > 0.0));
    let xs: Vec<f64> = pts.iter().map(|p| p.0).collect();
    let span = |v: &[f64], log: bool| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(0.0, f64::max);
        if log {
            (lo / 1.4, hi * 1.4)
        } else {
            (0.0, if hi > 0.0 { hi * 1.12 } else { 1.0 })
        }
    };
    (span(&xs, c.log_x), span(&ys, c.log_y))
}

fn lines_any<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: &LineChart) -> Result<()> {
    let ((x0, x1), (y0, y1)) = line_ranges(c);
    match (c.log_x, c.log_y) {
        (true, true) => lines_on(root, c, (x0..x1).log_scale(), (y0..y1).log_scale()),
        (true, false) => lines_on(root, c, (x0..x1).log_scale(), y0..y1),
        (false, true) => lines_on(root, c, x0..x1, (y0..y1).log_scale()),
        (false, false) => lines_on(root, c, x0..x1, y0..y1),
    }
}

fn lines_on<DB: DrawingBackend, X, Y>(root: &DrawingArea<DB, Shift>, c: &LineChart, x: X, y: Y) -> Result<()>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let ((x0, x1), (_, y1)) = line_ranges(c);
    let legend = Legend(if c.legend {
        c.lines.iter().map(|l| (l.name.clone(), l.look, Swatch::Line)).collect()
    } else {
        Vec::new()
    });
    let mut chart = ChartBuilder::on(root)
        .caption(&c.title, ("sans-serif", TITLE))
        .margin(16)
        .margin_right(16 + legend.width())
        .x_label_area_size(48)
        .y_label_area_size(96)
        .build_cartesian_2d(x, y)
        .map_err(plot_err)?;
    let (x_fmt, y_fmt) = (c.x_fmt, c.y_fmt);
    chart
        .configure_mesh()
        .x_desc(&c.x_label)
        .y_desc(&c.y_label)
        .x_max_light_lines(if c.log_x { 8 } else { 1 })
        .y_max_light_lines(if c.log_y { 8 } else { 1 })
        .x_label_formatter(&|v| x_fmt(*v))
        .y_label_formatter(&|v| y_fmt(*v))
        .label_style(("sans-serif", TEXT))
        .draw()
        .map_err(plot_err)?;
    for g in &c.diagonals {
        // y = k·x, with enough points that a log–log chart draws it straight.
        let steps = 64;
        let pts: Vec<(f64, f64)> = (0..=steps)
            .map(|i| {
                let t = f64::from(i) / f64::from(steps);
                let xv = if c.log_x { x0 * (x1 / x0).powf(t) } else { x0 + (x1 - x0) * t };
                (xv, g.value * xv)
            })
            .filter(|(_, yv)| *yv <= y1)
            .collect();
        if pts.len() >= 2 {
            // The label sits under the line, 40 % along it.
            let (lx, ly) = pts[pts.len() * 2 / 5];
            chart
                .draw_series([DashedPathElement::new(pts, 9, 6, GUIDE_INK.stroke_width(2))])
                .map_err(plot_err)?;
            let (px, py) = chart.backend_coord(&(lx, ly));
            boxed_text(root, &g.label, (px + 10, py + 8), Pos::new(HPos::Left, VPos::Top))?;
        }
    }
    for g in &c.guides {
        hguide(root, &mut chart, x0, x1, g)?;
    }
    for l in &c.lines {
        let Look { colour, marker } = l.look;
        let mut pts: Vec<LinePoint> = l
            .points
            .iter()
            .copied()
            .filter(|p| p.x.is_finite() && p.y.is_finite() && (!c.log_x || p.x > 0.0) && (!c.log_y || p.y > 0.0))
            .collect();
        pts.sort_by(|a, b| a.x.total_cmp(&b.x));
        for p in &pts {
            if let Some((lo, hi)) = p.bounds {
                let lo = if c.log_y { lo.max(f64::MIN_POSITIVE) } else { lo };
                whisker(&mut chart, p.x, lo, hi, colour, 5)?;
            }
        }
        chart
            .draw_series(LineSeries::new(pts.iter().map(|p| (p.x, p.y)), colour.stroke_width(2)))
            .map_err(plot_err)?;
        chart
            .draw_series(pts.iter().map(|p| marker.at((p.x, p.y), 5, colour.to_rgba())))
            .map_err(plot_err)?;
    }
    let area = chart.plotting_area().get_pixel_range();
    legend.draw(root, area.0.end + 12, area.1.start)?;
    Ok(())
}

fn rows_short(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 100_000 == 0 => format!("{}M", n as f64 / 1e6),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}K", n / 1_000),
        n => n.to_string(),
    }
}

/// Row variants for read by name, by index and `with`, per measured width, with criterion's
/// confidence interval as error bars and seed 001's 100 ns line.
pub fn rows_plot(a: &Analysis, path: &Path) -> Result<bool> {
    let mut cats = Vec::new();
    let mut keys = Vec::new();
    for w in [Width::Customer, Width::Wide] {
        for op in [RowOp::ReadName, RowOp::ReadIndex, RowOp::With] {
            if RowVariant::ALL.iter().any(|v| a.rows.contains_key(&(w, op, *v))) {
                let short = match w {
                    Width::Customer => "5 fields",
                    Width::Wide => "20 fields",
                };
                cats.push(format!("{} ({short})", op.label()));
                keys.push((w, op));
            }
        }
    }
    let series: Vec<Series> = RowVariant::ALL
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let points: Vec<_> = keys.iter().map(|(w, op)| a.rows.get(&(*w, *op, *v))).collect();
            let mut s = Series::new(v.name(), look(i), points.iter().map(|p| p.map(|p| p.mean.point)).collect());
            s.bounds = points.iter().map(|p| p.map(|p| (p.mean.lower, p.mean.upper))).collect();
            s
        })
        .collect();
    let level = a.rows.values().next().map_or(0.95, |p| p.mean.level);
    grouped_bars(
        path,
        &BarChart {
            title: "Row variants: time per operation (lower is better)".into(),
            y_label: format!("time per operation, mean with {} CI (log)", crate::fmt::percent(level)),
            categories: cats,
            series,
            y_fmt: crate::fmt::time,
            log: true,
            guides: vec![Guide::new(100.0, "seed 001: row operations < 100 ns")],
            value_labels: false,
            key: Vec::new(),
        },
    )
}

/// Delivered messages per second against fan-out, one line per port flavour, with the
/// interval criterion's confidence interval gives the rate.
pub fn fan_out_plot(a: &Analysis, path: &Path) -> Result<bool> {
    let mut lines = Vec::new();
    for msg in [MessageKind::Chunk] {
        for (i, f) in PortFlavour::ALL.iter().copied().enumerate() {
            let mut by_fan: BTreeMap<u64, Vec<(f64, f64, f64)>> = BTreeMap::new();
            for p in a.ports.iter().filter(|p| p.flavour == f && p.message == msg) {
                if let (Some(n), Some(r)) = (p.fan_out, p.delivered_per_sec()) {
                    // The rate's interval: the time's interval, inverted.
                    let lo = r * p.mean.point / p.mean.upper;
                    let hi = r * p.mean.point / p.mean.lower;
                    by_fan.entry(n).or_default().push((r, lo, hi));
                }
            }
            let points: Vec<LinePoint> = by_fan
                .into_iter()
                .filter_map(|(n, rs)| {
                    let g = |k: fn(&(f64, f64, f64)) -> f64| geomean(&rs.iter().map(k).collect::<Vec<_>>());
                    let y = g(|r| r.0)?;
                    Some(LinePoint {
                        x: n as f64,
                        y,
                        bounds: g(|r| r.1).zip(g(|r| r.2)),
                    })
                })
                .collect();
            if !points.is_empty() {
                let kind = if msg == MessageKind::Chunk { "chunk" } else { "row" };
                lines.push(Line {
                    name: format!("{f} ({kind} msgs)"),
                    look: look(i),
                    points,
                });
            }
        }
    }
    line_chart(
        path,
        &LineChart {
            title: "Fan-out scaling per port (higher is better)".into(),
            x_label: "subscribers (log)".into(),
            y_label: "delivered rows / s, with CI (log)".into(),
            lines,
            x_fmt: |v| format!("{v:.0}"),
            y_fmt: crate::fmt::rate,
            log_x: true,
            log_y: true,
            guides: Vec::new(),
            diagonals: Vec::new(),
            legend: true,
        },
    )
}

/// The category a run belongs to in the peers and memory plots: its job and size.
fn run_category(r: &RunResult) -> String {
    match &r.job {
        Some(j) => format!("{j}\n{} rows", rows_short(r.rows)),
        None => format!("e2e\n{} rows\n{} cols", rows_short(r.rows), r.columns),
    }
}

/// The range of the rate over all runs (`rows / slowest`, `rows / fastest`).
fn rate_range(rows: u64, seconds: &[f64]) -> Option<(f64, f64)> {
    let s: Vec<f64> = seconds.iter().copied().filter(|s| finite_pos(*s)).collect();
    if s.len() < 2 {
        return None;
    }
    let slow = s.iter().copied().fold(0.0, f64::max);
    let fast = s.iter().copied().fold(f64::INFINITY, f64::min);
    Some((rows as f64 / slow, rows as f64 / fast))
}

/// End-to-end rows per second by tool, per job and size (peers, with FlowEngine's own e2e
/// runs): solid bars from the whole process's time, light bars from the time inside the tool
/// (start-up and imports excluded) when recorded; whiskers span the runs' fastest to slowest.
pub fn peers_plot(results: &Results, path: &Path) -> Result<bool> {
    let runs: Vec<&RunResult> = results.peers.iter().chain(results.e2e.iter()).collect();
    let mut cats: Vec<(Option<String>, u64, u64, String)> =
        runs.iter().map(|r| (r.job.clone(), r.rows, r.columns, run_category(r))).collect();
    cats.sort();
    cats.dedup();
    let mut tools: Vec<String> = runs.iter().map(|r| r.tool.clone()).collect();
    tools.sort_by_key(|t| (tool_look(t) != look(0), t.clone()));
    tools.dedup();
    let find = |t: &str, cat: &str| runs.iter().find(|r| r.tool == t && run_category(r) == cat).copied();
    let inprocess = runs.iter().any(|r| r.seconds_inprocess.is_some());
    let series: Vec<Series> = tools
        .iter()
        .map(|t| {
            let rs: Vec<Option<&RunResult>> = cats.iter().map(|c| find(t, &c.3)).collect();
            let mut s = Series::new(t.clone(), tool_look(t), rs.iter().map(|r| r.map(|r| r.rows_per_sec)).collect());
            s.bounds = rs.iter().map(|r| r.and_then(|r| rate_range(r.rows, &r.seconds_all))).collect();
            if inprocess {
                s.light = rs
                    .iter()
                    .map(|r| r.and_then(|r| r.seconds_inprocess.filter(|s| finite_pos(*s)).map(|s| r.rows as f64 / s)))
                    .collect();
                s.light_bounds = rs
                    .iter()
                    .map(|r| r.and_then(|r| rate_range(r.rows, &r.seconds_inprocess_all)))
                    .collect();
            }
            s
        })
        .collect();
    let grey = Look {
        colour: RGBColor(119, 119, 119),
        marker: Marker::Circle,
    };
    let key = if inprocess {
        vec![
            ("solid: whole process".to_owned(), grey, false),
            ("light: time inside the tool".to_owned(), grey, true),
        ]
    } else {
        Vec::new()
    };
    grouped_bars(
        path,
        &BarChart {
            title: "End-to-end throughput against peers (higher is better)".into(),
            y_label: "rows / s at the median run; whiskers: fastest–slowest (log)".into(),
            categories: cats.into_iter().map(|c| c.3).collect(),
            series,
            y_fmt: crate::fmt::rate,
            log: true,
            guides: vec![
                Guide::new(100_000.0, "seed 000: 100K rows/s pass-through"),
                Guide::new(200_000.0, "seed 001: 200K rows/s pipeline"),
            ],
            value_labels: false,
            key,
        },
    )
}

/// Allocations per operation by pool strategy and scenario, on a linear axis from zero: a
/// strategy that allocates nothing shows a zero bar, labelled.
pub fn pooling_plot(a: &Analysis, path: &Path) -> Result<bool> {
    let mut scenarios: Vec<String> = a.pool_allocs.iter().map(|(_, s, _)| s.clone()).collect();
    scenarios.sort();
    scenarios.dedup();
    let series: Vec<Series> = PoolVariant::ALL
        .iter()
        .enumerate()
        .map(|(i, v)| {
            Series::new(
                v.name(),
                look(i),
                scenarios
                    .iter()
                    .map(|s| {
                        a.pool_allocs
                            .iter()
                            .find(|(pv, ps, _)| pv == v && ps == s)
                            .map(|(_, _, d)| d.allocs_per_op)
                    })
                    .collect(),
            )
        })
        .collect();
    let labels: Vec<String> = scenarios.iter().map(|s| s.trim_matches('-').to_owned()).collect();
    grouped_bars(
        path,
        &BarChart {
            title: "Allocations per operation by pool strategy (lower is better)".into(),
            y_label: "allocations / op (dhat; linear)".into(),
            categories: labels,
            series,
            y_fmt: num,
            log: false,
            guides: Vec::new(),
            value_labels: true,
            key: Vec::new(),
        },
    )
}

/// Peak RSS against input size, one line per job × tool (colour: the tool, marker: the job),
/// with seed 000's "memory < 2× the raw data" as the line y = 2x. Peers and FlowEngine's own
/// end-to-end runs.
pub fn memory_plot(results: &Results, path: &Path) -> Result<bool> {
    const MIB: f64 = 1024.0 * 1024.0;
    let mut lines: BTreeMap<(String, String), Vec<LinePoint>> = BTreeMap::new();
    for r in results.peers.iter().chain(results.e2e.iter()) {
        let Some(rss) = r.peak_rss_bytes.filter(|b| *b > 0) else { continue };
        if r.bytes == 0 {
            continue;
        }
        let job = r.job.clone().unwrap_or_else(|| "e2e".into());
        lines
            .entry((job, r.tool.clone()))
            .or_default()
            .push(LinePoint::new(r.bytes as f64 / MIB, rss as f64 / MIB));
    }
    let mut jobs: Vec<&str> = lines.keys().map(|(j, _)| j.as_str()).collect();
    jobs.dedup();
    let lines: Vec<Line> = lines
        .iter()
        .map(|((job, tool), pts)| {
            let j = jobs.iter().position(|x| x == job).unwrap_or(0);
            Line {
                name: format!("{job} · {tool}"),
                look: Look {
                    colour: tool_look(tool).colour,
                    marker: MARKERS[j % MARKERS.len()],
                },
                points: pts.clone(),
            }
        })
        .collect();
    line_chart(
        path,
        &LineChart {
            title: "Peak memory against input size (lower is better)".into(),
            x_label: "input size, MiB (log)".into(),
            y_label: "peak RSS, MiB (log)".into(),
            lines,
            x_fmt: num,
            y_fmt: num,
            log_x: true,
            log_y: true,
            guides: Vec::new(),
            diagonals: vec![Guide::new(2.0, "seed 000: memory < 2× the raw data (y = 2x)")],
            legend: true,
        },
    )
}

/// The soak run over time: rows per second (top) and RSS (bottom), both linear from zero,
/// with the first window's mean throughput and the RSS "flat" limit as dashed lines.
pub fn soak_plot(soak: Option<&Soak>, path: &Path) -> Result<bool> {
    let Some(s) = soak.filter(|s| !s.samples.is_empty()) else {
        return Ok(false);
    };
    const MIB: f64 = 1024.0 * 1024.0;
    let minutes = |t: f64| t / 60.0;
    let n = s.window_samples.clamp(1, s.samples.len());
    let first_mean = s.samples[..n].iter().map(|x| x.rows_per_sec).sum::<f64>() / n as f64;
    let rate = LineChart {
        title: format!(
            "Soak: throughput over {:.0} min (drift {:+.1} %, last {n} samples against the first {n})",
            s.minutes,
            s.throughput_drift * 100.0
        ),
        x_label: "minutes since start".into(),
        y_label: "rows / s (linear)".into(),
        lines: vec![Line {
            name: "rows / s".into(),
            look: look(0),
            points: s
                .samples
                .iter()
                .map(|x| LinePoint::new(minutes(x.t_seconds), x.rows_per_sec))
                .collect(),
        }],
        x_fmt: |v| format!("{v:.0}"),
        y_fmt: crate::fmt::rate,
        log_x: false,
        log_y: false,
        guides: vec![Guide::new(
            first_mean,
            format!("mean of the first {n} samples: {} rows/s", crate::fmt::rate(first_mean)),
        )],
        diagonals: Vec::new(),
        legend: false,
    };
    let limit = s.rss_first_bytes as f64 * 1.10 + 8.0 * MIB;
    let rss = LineChart {
        title: format!(
            "Soak: resident memory ({} → {}: {})",
            crate::fmt::bytes(s.rss_first_bytes as f64),
            crate::fmt::bytes(s.rss_last_bytes as f64),
            if s.rss_flat { "flat" } else { "growing" }
        ),
        x_label: "minutes since start".into(),
        y_label: "RSS, MiB (linear)".into(),
        lines: vec![Line {
            name: "RSS".into(),
            look: look(1),
            points: s
                .samples
                .iter()
                .map(|x| LinePoint::new(minutes(x.t_seconds), x.rss_bytes as f64 / MIB))
                .collect(),
        }],
        x_fmt: |v| format!("{v:.0}"),
        y_fmt: num,
        log_x: false,
        log_y: false,
        guides: vec![Guide::new(limit / MIB, "flat limit: first window's peak + 10 % + 8 MiB")],
        diagonals: Vec::new(),
        legend: false,
    };
    on_canvas!(path, (W, 2 * H - 80), two_panels(&rate, &rss));
    Ok(true)
}

fn two_panels<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, top: &LineChart, bottom: &LineChart) -> Result<()> {
    let (a, b) = root.split_vertically(root.dim_in_pixel().1 / 2);
    lines_any(&a, top)?;
    lines_any(&b, bottom)
}

/// The alternative a comparison is about: the text before ` vs `.
fn alternative(comparison: &str) -> &str {
    comparison.split(" vs ").next().unwrap_or(comparison).trim()
}

/// One plot per decision: each comparison's ratio (alternative against the incumbent, > 1 =
/// the alternative is better) with its bootstrap interval, a solid line at 1× (the
/// incumbent) and the adoption bar dashed. Returns `false` for a decision without evidence.
pub fn decision_plot(d: &Decision, path: &Path) -> Result<bool> {
    let ev: Vec<_> = d
        .evidence
        .iter()
        .filter(|e| e.ratio.is_finite() && e.lower.is_finite() && e.upper.is_finite())
        .collect();
    if ev.is_empty() {
        return Ok(false);
    }
    let rows = ev.len() as u32;
    let h = (150 + 64 * rows).max(320);
    on_canvas!(path, (W, h), decision_on(d));
    Ok(true)
}

fn decision_on<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, d: &Decision) -> Result<()> {
    let ev: Vec<_> = d
        .evidence
        .iter()
        .filter(|e| e.ratio.is_finite() && e.lower.is_finite() && e.upper.is_finite())
        .collect();
    let n = ev.len();
    let hi = ev
        .iter()
        .flat_map(|e| [e.upper, e.ratio, e.threshold])
        .chain([1.0])
        .fold(0.0, f64::max);
    let x_max = hi * 1.45;
    let labels: Vec<String> = ev
        .iter()
        .map(|e| format!("{} ({} CI)", e.comparison, crate::fmt::percent(e.level)))
        .collect();
    let label_px = (labels.iter().map(|l| l.chars().count()).max().unwrap_or(10) as u32 * 15 / 2 + 24).clamp(140, 460);
    let mut alts: Vec<&str> = Vec::new();
    for e in &ev {
        let a = alternative(&e.comparison);
        if !alts.contains(&a) {
            alts.push(a);
        }
    }
    let legend = Legend(
        alts.iter()
            .enumerate()
            .map(|(i, a)| ((*a).to_owned(), look(i), Swatch::Line))
            .collect(),
    );
    let keep = d.decision == d.baseline || d.baseline.starts_with(&format!("{} ", d.decision));
    let outcome = if !d.measured {
        format!("{} kept (prior: not measured)", d.decision)
    } else if keep {
        format!("keep {} (the incumbent)", d.decision)
    } else {
        format!("adopt {} (incumbent {})", d.decision, d.baseline)
    };
    let mut chart = ChartBuilder::on(root)
        .caption(format!("{}: {outcome}", capitalised(&d.component)), ("sans-serif", TITLE))
        .margin(16)
        .margin_right(16 + legend.width())
        .x_label_area_size(48)
        .y_label_area_size(label_px)
        .build_cartesian_2d(0f64..x_max, -0.5f64..n as f64 - 0.5)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_max_light_lines(1)
        .y_labels(0)
        .x_desc("ratio against the incumbent (> 1×: the alternative is better), with its interval (linear)")
        .x_label_formatter(&|v| format!("{v:.1}×"))
        .label_style(("sans-serif", TEXT))
        .draw()
        .map_err(plot_err)?;
    // 1× is the incumbent.
    chart
        .draw_series([PathElement::new(
            vec![(1.0, -0.5), (1.0, n as f64 - 0.5)],
            RGBColor(150, 150, 150).stroke_width(2),
        )])
        .map_err(plot_err)?;
    let top = |x: f64| EmptyElement::at((x, n as f64 - 0.5));
    let small = |h: HPos| {
        TextStyle::from(("sans-serif", TEXT).into_font())
            .color(&GUIDE_INK)
            .pos(Pos::new(h, VPos::Top))
    };
    chart
        .draw_series([top(1.0) + Text::new("1× = incumbent".to_owned(), (-4, 4), small(HPos::Right))])
        .map_err(plot_err)?;
    // The bar of each comparison, dashed across its row (rows sharing a bar join up).
    let mut labelled: Vec<f64> = Vec::new();
    for (i, e) in ev.iter().enumerate() {
        let yc = (n - 1 - i) as f64;
        chart
            .draw_series([DashedPathElement::new(
                vec![(e.threshold, yc - 0.5), (e.threshold, yc + 0.5)],
                9,
                6,
                GUIDE_INK.stroke_width(2),
            )])
            .map_err(plot_err)?;
        if !labelled.iter().any(|t| (t - e.threshold).abs() < 1e-9) {
            labelled.push(e.threshold);
            let text = format!("bar {}", crate::fmt::ratio(e.threshold));
            let (px, py) = chart.backend_coord(&(e.threshold, yc + 0.5));
            boxed_text(root, &text, (px + 4, py + 3), Pos::new(HPos::Left, VPos::Top))?;
        }
    }
    for (i, e) in ev.iter().enumerate() {
        let yc = (n - 1 - i) as f64;
        let a = alternative(&e.comparison);
        let Look { colour, marker } = look(alts.iter().position(|x| *x == a).unwrap_or(0));
        let st = colour.stroke_width(3);
        chart
            .draw_series([PathElement::new(vec![(e.lower, yc), (e.upper, yc)], st)])
            .map_err(plot_err)?;
        chart
            .draw_series([e.lower, e.upper].map(|x| EmptyElement::at((x, yc)) + PathElement::new(vec![(0, -9), (0, 9)], st)))
            .map_err(plot_err)?;
        chart
            .draw_series([marker.at((e.ratio, yc), 7, colour.to_rgba())])
            .map_err(plot_err)?;
        let verdict = format!(
            "{} [{}, {}] {}",
            crate::fmt::ratio(e.ratio),
            crate::fmt::sig3(e.lower),
            crate::fmt::sig3(e.upper),
            e.outcome
        );
        let (px, py) = chart.backend_coord(&(e.upper, yc));
        boxed_text(root, &verdict, (px + 14, py), Pos::new(HPos::Left, VPos::Center))?;
        let (px, py) = local(root, chart.backend_coord(&(0.0, yc)));
        let lstyle = TextStyle::from(("sans-serif", TEXT).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
        root.draw(&Text::new(labels[i].clone(), (px - 8, py), lstyle)).map_err(plot_err)?;
    }
    let area = chart.plotting_area().get_pixel_range();
    legend.draw(root, area.0.end + 12, area.1.start)?;
    Ok(())
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next().map_or_else(String::new, |f| f.to_uppercase().chain(c).collect())
}

/// File name of a decision's plot (`decision-<key>.svg`).
pub fn decision_file(key: &str, ext: &str) -> String {
    format!("decision-{}.{ext}", key.replace('_', "-"))
}

/// Draws every plot into `dir` as SVG; returns the file names drawn (relative to `dir`).
pub fn draw_all(results: &Results, a: &Analysis, d: &Decisions, dir: &Path) -> Result<crate::report::PlotLinks> {
    draw_all_as(results, a, d, dir, "svg")
}

/// Draws every plot into `dir` with the extension `ext` (`svg`, or `png` to look at them);
/// removes plots of that extension an earlier run drew and this one did not.
pub fn draw_all_as(results: &Results, a: &Analysis, d: &Decisions, dir: &Path, ext: &str) -> Result<crate::report::PlotLinks> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut links = crate::report::PlotLinks::default();
    let name = |stem: &str| format!("{stem}.{ext}");
    let draw = |name: &str, ok: Result<bool>| -> Result<Option<String>> {
        Ok(ok.with_context(|| format!("drawing {name}"))?.then(|| name.to_owned()))
    };
    let p = |n: &str| dir.join(n);
    let n = name("rows");
    links.rows = draw(&n, rows_plot(a, &p(&n)))?;
    let n = name("fan-out");
    links.fan_out = draw(&n, fan_out_plot(a, &p(&n)))?;
    let n = name("peers");
    links.peers = draw(&n, peers_plot(results, &p(&n)))?;
    let n = name("pooling");
    links.pooling = draw(&n, pooling_plot(a, &p(&n)))?;
    let n = name("memory");
    links.memory = draw(&n, memory_plot(results, &p(&n)))?;
    let n = name("soak");
    links.soak = draw(&n, soak_plot(results.soak.as_ref(), &p(&n)))?;
    for key in DECISION_ORDER {
        if let Some(dec) = d.decisions.get(key) {
            let n = decision_file(key, ext);
            if let Some(l) = draw(&n, decision_plot(dec, &p(&n)))? {
                links.decisions.insert(key.to_owned(), l);
            }
        }
    }
    // A plot not drawn this run must not survive from an older run.
    let mut drawn: Vec<&String> = [
        &links.rows,
        &links.fan_out,
        &links.peers,
        &links.pooling,
        &links.memory,
        &links.soak,
    ]
    .into_iter()
    .flatten()
    .collect();
    drawn.extend(links.decisions.values());
    let ours = ["rows", "fan-out", "peers", "pooling", "memory", "soak"].map(name);
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let file = entry?.file_name().to_string_lossy().into_owned();
        let generated = ours.contains(&file) || (file.starts_with("decision-") && file.ends_with(&format!(".{ext}")));
        if generated && !drawn.iter().any(|d| **d == file) {
            std::fs::remove_file(p(&file)).with_context(|| format!("removing stale {file}"))?;
        }
    }
    Ok(links)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab(c: RGBColor) -> [f64; 3] {
        let lin = |u: u8| {
            let u = f64::from(u) / 255.0;
            if u > 0.04045 {
                ((u + 0.055) / 1.055).powf(2.4)
            } else {
                u / 12.92
            }
        };
        let (r, g, b) = (lin(c.0), lin(c.1), lin(c.2));
        let x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047;
        let y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
        let z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883;
        let f = |t: f64| if t > 0.008856 { t.cbrt() } else { 7.787 * t + 16.0 / 116.0 };
        [116.0 * f(y) - 16.0, 500.0 * (f(x) - f(y)), 200.0 * (f(y) - f(z))]
    }

    #[test]
    fn palette_and_markers_tell_every_series_apart() {
        for i in 0..MAX_SERIES {
            for j in 0..i {
                let (a, b) = (look(i), look(j));
                assert_ne!(a.colour, b.colour, "series {i} and {j} share a colour");
                assert_ne!(a.marker, b.marker, "series {i} and {j} share a marker");
                let (la, lb) = (lab(a.colour), lab(b.colour));
                let de = la.iter().zip(lb).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt();
                assert!(de > 25.0, "series {i} and {j}: colours only {de:.1} ΔE apart");
            }
        }
        // Beyond the palette, the (colour, marker) pair stays unique.
        let pairs: std::collections::HashSet<_> = (0..3 * MAX_SERIES).map(|i| (look(i).colour, look(i).marker)).collect();
        assert_eq!(pairs.len(), 3 * MAX_SERIES);
        // The widest plots drawn stay within the palette.
        assert!(RowVariant::ALL.len() <= MAX_SERIES && PortFlavour::ALL.len() <= MAX_SERIES && PoolVariant::ALL.len() <= MAX_SERIES);
    }

    #[test]
    fn tools_keep_their_look() {
        assert_eq!(tool_look("flowengine"), look(0));
        assert_ne!(tool_look("polars"), tool_look("duckdb"));
        assert_eq!(tool_look("some-new-tool"), tool_look("some-new-tool"));
    }

    #[test]
    fn the_alternative_is_what_comes_before_vs() {
        assert_eq!(alternative("object-pool vs none, allocations"), "object-pool");
        assert_eq!(alternative("2000 vs 5000"), "2000");
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("fe-plots-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        register_fonts().unwrap();
        d
    }

    fn peer(job: &str, tool: &str, rows: u64, seconds: f64, inproc: f64, rss_mib: u64) -> RunResult {
        RunResult {
            name: format!("{job}-{rows}"),
            tool: tool.into(),
            rows,
            columns: 6,
            bytes: rows * 55,
            seconds,
            seconds_all: vec![seconds * 0.95, seconds, seconds * 1.1],
            seconds_inprocess: Some(inproc),
            seconds_inprocess_all: vec![inproc * 0.98, inproc, inproc * 1.03],
            job: Some(job.into()),
            rows_per_sec: rows as f64 / seconds,
            peak_rss_bytes: Some(rss_mib << 20),
            ..Default::default()
        }
    }

    #[test]
    fn memory_plot_draws_each_job_and_tool_and_the_2x_line() {
        let dir = scratch("memory");
        let path = dir.join("memory.svg");
        assert!(!memory_plot(&Results::default(), &path).unwrap());
        assert!(!path.exists());
        let results = Results {
            peers: vec![
                peer("passthrough", "flowengine", 200_000, 0.4, 0.38, 22),
                peer("passthrough", "flowengine", 2_000_000, 3.5, 3.4, 25),
                peer("passthrough", "polars", 200_000, 0.6, 0.2, 95),
                peer("sort", "duckdb", 2_000_000, 1.5, 1.2, 180),
            ],
            ..Default::default()
        };
        assert!(memory_plot(&results, &path).unwrap());
        let svg = std::fs::read_to_string(&path).unwrap();
        for want in [
            "passthrough · flowengine",
            "passthrough · polars",
            "sort · duckdb",
            "2× the raw data (y = 2x)",
        ] {
            assert!(svg.contains(want), "memory.svg lacks {want:?}");
        }
        // PNG through the same code, to look at.
        assert!(memory_plot(&results, &dir.join("memory.png")).unwrap());
        assert!(std::fs::read(dir.join("memory.png")).unwrap().starts_with(b"\x89PNG"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn soak_plot_draws_rate_and_rss_from_zero_with_its_limits() {
        let dir = scratch("soak");
        let path = dir.join("soak.svg");
        assert!(!soak_plot(None, &path).unwrap());
        let mut soak = Soak {
            pipeline: "soak.yaml".into(),
            minutes: 3.0,
            interval_seconds: 60.0,
            samples: Vec::new(),
            window_samples: 1,
            throughput_drift: -0.05,
            rss_first_bytes: 30 << 20,
            rss_last_bytes: 31 << 20,
            rss_flat: true,
        };
        assert!(!soak_plot(Some(&soak), &path).unwrap(), "no samples: no plot");
        soak.samples = (1..=3)
            .map(|i| crate::results::SoakSample {
                t_seconds: 60.0 * f64::from(i),
                rows: 30_000_000 * u64::from(i as u16),
                rows_per_sec: 500_000.0 - 10_000.0 * f64::from(i),
                rss_bytes: (30 << 20) + (u64::from(i as u16) << 18),
            })
            .collect();
        assert!(soak_plot(Some(&soak), &path).unwrap());
        let svg = std::fs::read_to_string(&path).unwrap();
        for want in ["rows / s", "RSS", "mean of the first 1 samples", "flat limit", "drift -5.0 %"] {
            assert!(svg.contains(want), "soak.svg lacks {want:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn decision_plot_shows_each_alternative_against_the_bar() {
        let dir = scratch("decision");
        let path = dir.join("decision-chunk-size.svg");
        let ev = |c: &str, r: f64, lo: f64, hi: f64, out: &str| crate::decide::Evidence {
            comparison: c.into(),
            ratio: r,
            lower: lo,
            upper: hi,
            level: 0.99,
            threshold: 1.5,
            margin: lo - 1.5,
            outcome: out.into(),
        };
        let mut d = Decision {
            component: "chunk size".into(),
            baseline: "5000".into(),
            alternatives: vec!["500".into(), "50000".into()],
            decision: "5000".into(),
            measured: true,
            rule: String::new(),
            rationale: String::new(),
            evidence: Vec::new(),
            flag: None,
        };
        assert!(!decision_plot(&d, &path).unwrap());
        d.evidence = vec![
            ev("500 vs 5000", 1.05, 0.77, 1.17, "tie (within noise)"),
            ev("50000 vs 5000", 0.86, 0.67, 0.98, "loss"),
        ];
        assert!(decision_plot(&d, &path).unwrap());
        let svg = std::fs::read_to_string(&path).unwrap();
        for want in [
            "Chunk size: keep 5000 (the incumbent)",
            "500 vs 5000",
            "50000 vs 5000",
            "bar 1.50×",
            "1× = incumbent",
            "loss",
        ] {
            assert!(svg.contains(want), "decision plot lacks {want:?}");
        }
        assert_eq!(decision_file("chunk_size", "svg"), "decision-chunk-size.svg");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn peers_plot_shows_process_and_in_tool_time_and_the_targets() {
        let dir = scratch("peers");
        let path = dir.join("peers.svg");
        assert!(!peers_plot(&Results::default(), &path).unwrap());
        let results = Results {
            peers: vec![
                peer("passthrough", "flowengine", 200_000, 0.4, 0.38, 22),
                peer("passthrough", "polars", 200_000, 0.6, 0.2, 95),
                peer("sort", "polars", 200_000, 0.8, 0.3, 120),
            ],
            ..Default::default()
        };
        assert!(peers_plot(&results, &path).unwrap());
        let svg = std::fs::read_to_string(&path).unwrap();
        for want in [
            "flowengine",
            "polars",
            "passthrough",
            "sort",
            "200K rows",
            "time inside the tool",
            "100K rows/s",
        ] {
            assert!(svg.contains(want), "peers.svg lacks {want:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pooling_draws_zero_allocations_as_a_labelled_zero_bar() {
        let dir = scratch("pooling");
        let path = dir.join("pooling.svg");
        let mut a = Analysis::default();
        assert!(!pooling_plot(&a, &path).unwrap());
        let prof = |allocs: f64| crate::results::DhatProfile {
            name: String::new(),
            ops: 10,
            total_blocks: 0,
            total_bytes: 0,
            max_blocks: 0,
            max_bytes: 0,
            allocs_per_op: allocs,
            bytes_per_op: 0.0,
        };
        a.pool_allocs = vec![
            (PoolVariant::ALL[0], "raw-chunk".into(), prof(57.0)),
            (PoolVariant::ALL[1], "raw-chunk".into(), prof(0.0)),
        ];
        assert!(pooling_plot(&a, &path).unwrap());
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains(">\n0\n</text>"), "the zero bar is labelled 0");
        assert!(svg.contains("linear"));
        for v in &PoolVariant::ALL[..2] {
            assert!(svg.contains(v.name()), "{v}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
