//! Loss plots of a training run (`loss.png`, `loss.svg`), drawn with `plotters`.
//!
//! The upper panel shows the loss per step, the logged interval means of the total loss and of every
//! term on a linear scale (so that a negative NLL term stays visible), and the learning rate on a second
//! axis; the lower panel shows the loss per t bin at the start, middle and end of training. Text uses
//! an embedded DejaVu Sans subset, so plots render the same on machines without fonts.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::{Result, RuntimeError};

/// DejaVu Sans reduced to ASCII and a few symbols (licence: `runtime/assets/fonts/LICENSE-DejaVu`).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-subset.ttf");
const FAMILY: &str = "sans-serif";
const WIDTH: u32 = 900;
const HEIGHT: u32 = 720;
/// Width in pixels of the upper panel's learning-rate axis.
const RIGHT_AXIS: u32 = 80;
/// Free space above the points of the lower panel, as a fraction of their range: the upper half of its
/// plot (about 90 of 185 pixels) holds the legend (three lines, about 70 pixels) above every point.
const LEGEND_HEADROOM: f64 = 1.0;
/// The same for the upper panel (about 330 pixels high; its legend has up to six lines).
const CURVES_HEADROOM: f64 = 0.6;

/// One line of `metrics.jsonl`, as far as the plots need it.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub step: u64,
    /// Mean total loss over the steps since the previous record.
    pub loss: f64,
    /// Each loss term's unweighted value at the record's step.
    pub terms: BTreeMap<String, f64>,
    pub lr: f64,
    /// Loss per t bin (`None` for an empty bin).
    pub loss_by_t: Vec<Option<f64>>,
}

impl LogRecord {
    /// Parses one metrics line; `None` for a line that is not a training record.
    pub fn from_json(line: &serde_json::Value) -> Option<LogRecord> {
        let terms = match line.get("terms") {
            Some(serde_json::Value::Object(m)) => {
                m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_f64()?))).collect()
            }
            _ => BTreeMap::new(),
        };
        let loss_by_t = match line.get("mse_by_t") {
            Some(serde_json::Value::Array(a)) => a.iter().map(|v| v.as_f64()).collect(),
            _ => Vec::new(),
        };
        Some(LogRecord {
            step: line.get("step")?.as_u64()?,
            loss: line.get("loss")?.as_f64()?,
            terms,
            lr: line.get("lr").and_then(|v| v.as_f64()).unwrap_or(f64::NAN),
            loss_by_t,
        })
    }
}

/// Reads the training records of a metrics log (lines that do not parse are skipped).
pub fn read_log(path: &Path) -> Result<Vec<LogRecord>> {
    let text = std::fs::read_to_string(path).map_err(|e| RuntimeError::io(path, e))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|j| LogRecord::from_json(&j))
        .collect())
}

/// What a loss plot shows.
#[derive(Debug, Clone, Default)]
pub struct LossPlot<'a> {
    pub title: &'a str,
    /// `(step, loss)` of every step (drawn faintly behind the logged means); may be empty.
    pub per_step: &'a [(u64, f64)],
    pub records: &'a [LogRecord],
}

/// Writes `stem.png` and `stem.svg` (e.g. `runs/x/loss.png`, `runs/x/loss.svg`), each atomically.
pub fn write_loss_plots(stem: &Path, plot: &LossPlot) -> Result<()> {
    register_font();
    let png = stem.with_extension("png");
    let mut buffer = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, plot).map_err(|e| plot_error(&png, e))?;
        root.present().map_err(|e| plot_error(&png, e))?;
    }
    let img = image::RgbImage::from_raw(WIDTH, HEIGHT, buffer).ok_or_else(|| RuntimeError::Plot {
        path: png.clone(),
        what: "the bitmap has the wrong size".into(),
    })?;
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png)
        .map_err(|e| RuntimeError::Image { path: png.clone(), source: e })?;
    crate::engine::checkpoint::write_atomic(&png, bytes.get_ref())?;

    let svg_path = stem.with_extension("svg");
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, plot).map_err(|e| plot_error(&svg_path, e))?;
        root.present().map_err(|e| plot_error(&svg_path, e))?;
    }
    crate::engine::checkpoint::write_atomic(&svg_path, svg.as_bytes())
}

/// Side in pixels of a scatter plot.
const SCATTER_SIDE: u32 = 640;

/// Writes a PNG scatter plot of point sets (`sets[i]` = the (x, y) points of sample i, one colour
/// each) over `reference` points in grey, under `caption`.
pub fn write_scatter(
    path: &Path,
    sets: &[Vec<(f64, f64)>],
    reference: &[(f64, f64)],
    caption: &str,
) -> Result<()> {
    register_font();
    let all = || sets.iter().flatten().chain(reference).filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all() {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (-1.0, 1.0, -1.0, 1.0);
    }
    let pad = |lo: f64, hi: f64| {
        let m = ((hi - lo) * 0.05).max(1e-3);
        (lo - m)..(hi + m)
    };
    let side = SCATTER_SIDE;
    let mut buffer = vec![255u8; (side * side * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (side, side)).into_drawing_area();
        draw_scatter(&root, sets, reference, caption, (pad(x0, x1), pad(y0, y1)))
            .map_err(|e| plot_error(path, e))?;
        root.present().map_err(|e| plot_error(path, e))?;
    }
    let img = image::RgbImage::from_raw(side, side, buffer).ok_or_else(|| RuntimeError::Plot {
        path: path.to_path_buf(),
        what: "the bitmap has the wrong size".into(),
    })?;
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png)
        .map_err(|e| RuntimeError::Image { path: path.to_path_buf(), source: e })?;
    crate::engine::checkpoint::write_atomic(path, bytes.get_ref())
}

fn draw_scatter<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    sets: &[Vec<(f64, f64)>],
    reference: &[(f64, f64)],
    caption: &str,
    (xs, ys): (std::ops::Range<f64>, std::ops::Range<f64>),
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(root)
        .caption(caption, (FAMILY, 15))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(40)
        .build_cartesian_2d(xs, ys)?;
    chart
        .configure_mesh()
        .label_style((FAMILY, 12))
        .x_label_formatter(&|x| short(*x))
        .y_label_formatter(&|y| short(*y))
        .draw()?;
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let grey = RGBColor(190, 190, 190).filled();
    chart.draw_series(reference.iter().filter(finite).map(|&p| Circle::new(p, 2, grey)))?;
    for (i, set) in sets.iter().enumerate() {
        let color = COLORS[i % COLORS.len()].filled();
        chart.draw_series(set.iter().filter(finite).map(|&p| Circle::new(p, 3, color)))?;
    }
    Ok(())
}

fn plot_error(path: &Path, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Plot { path: path.to_path_buf(), what: e.to_string() }
}

fn register_font() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // The font is embedded and known to parse (tested); a failure would only drop the text.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

/// Series colours (Tableau 10, readable on white and for common colour blindness).
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

type DrawResult<DB> = std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, plot: &LossPlot) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let (upper, lower) = root.split_vertically(HEIGHT * 62 / 100);
    draw_curves(&upper, plot)?;
    draw_by_t(&lower, plot.records)
}

/// `lo..hi` padded by 5% on both sides; a flat or empty range becomes a unit-wide one.
fn padded(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = 0.05 * (hi - lo);
    (lo - pad, hi + pad)
}

/// Upper panel: loss (all series) against step, learning rate on the right axis.
fn draw_curves<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, plot: &LossPlot) -> DrawResult<DB> {
    let records = plot.records;
    let last_step =
        records.iter().map(|r| r.step).chain(plot.per_step.iter().map(|p| p.0)).max().unwrap_or(1).max(1)
            as f64;
    // The y range holds the logged means and terms and the per-step losses after the first 5% of the
    // steps: the start of the run shows, but one spike in its first steps does not flatten the rest of
    // the curve (the per-step line is clipped there).
    let (lo, hi) = padded(
        plot.per_step
            .iter()
            .skip(plot.per_step.len() / 20)
            .map(|p| p.1)
            .chain(records.iter().flat_map(|r| std::iter::once(r.loss).chain(r.terms.values().copied()))),
    );
    let (_, lr_hi) = padded(records.iter().map(|r| r.lr).chain(std::iter::once(0.0)));
    // Headroom above both scales for the legend (up to five lines and the terms), so that it hides
    // neither the start of the loss nor the learning rate.
    let shown = hi;
    let hi = hi + CURVES_HEADROOM * (hi - lo);
    let lr_hi = lr_hi * (1.0 + CURVES_HEADROOM);
    let mut chart = ChartBuilder::on(area)
        .caption(plot.title, (FAMILY, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .right_y_label_area_size(RIGHT_AXIS)
        .build_cartesian_2d(0f64..last_step, lo..hi)?
        .set_secondary_coord(0f64..last_step, 0f64..lr_hi);
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss")
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .light_line_style(RGBColor(235, 235, 235))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| short(*y))
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("learning rate")
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .y_label_formatter(&|y| format!("{y:.1e}"))
        .draw()?;
    let clip = |v: f64| v.clamp(lo, shown);
    if !plot.per_step.is_empty() {
        let faint = COLORS[0].mix(0.25);
        chart
            .draw_series(LineSeries::new(plot.per_step.iter().map(|&(s, v)| (s as f64, clip(v))), faint))?
            .label("loss per step")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], faint));
    }
    if !records.is_empty() {
        let total = COLORS[0];
        chart
            .draw_series(LineSeries::new(
                records.iter().map(|r| (r.step as f64, clip(r.loss))),
                total.stroke_width(2),
            ))?
            .label("total loss (logged mean)")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], total.stroke_width(2)));
        let names: Vec<&String> = records
            .iter()
            .flat_map(|r| r.terms.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for (i, name) in names.into_iter().enumerate() {
            let color = COLORS[(i + 1) % COLORS.len()];
            let points = records.iter().filter_map(|r| Some((r.step as f64, clip(*r.terms.get(name)?))));
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(format!("{name} term"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        let lr_color = BLACK;
        let lr_style = ShapeStyle { color: lr_color.to_rgba(), filled: false, stroke_width: 1 };
        chart
            .draw_secondary_series(DashedLineSeries::new(
                records.iter().filter(|r| r.lr.is_finite()).map(|r| (r.step as f64, r.lr)),
                6,
                4,
                lr_style,
            ))?
            .label("learning rate (right axis)")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], lr_style));
    }
    if lo < 0.0 && hi > 0.0 {
        chart.draw_series(LineSeries::new([(0.0, 0.0), (last_step, 0.0)], BLACK.mix(0.4)))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .draw()
}

/// Lower panel: loss per t bin of the first, middle and last record.
fn draw_by_t<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, records: &[LogRecord]) -> DrawResult<DB> {
    let bins = records.iter().map(|r| r.loss_by_t.len()).max().unwrap_or(0);
    let mut picks: Vec<&LogRecord> = Vec::new();
    if let (Some(first), Some(last)) = (records.first(), records.last()) {
        picks.push(first);
        let mid = &records[records.len() / 2];
        if mid.step != first.step && mid.step != last.step {
            picks.push(mid);
        }
        if last.step != first.step {
            picks.push(last);
        }
    }
    let (lo, hi) = padded(picks.iter().flat_map(|r| r.loss_by_t.iter().flatten().copied()));
    let lo = lo.min(0.0);
    // Headroom above the highest point for the legend (three lines), so that it covers no point.
    let hi = hi + LEGEND_HEADROOM * (hi - lo);
    let mut chart = ChartBuilder::on(area)
        .caption("loss per noise level t (mean squared error of the target)", (FAMILY, 18))
        .margin(12)
        // No axis on the right (this panel has one scale), but the same plot width as the upper panel.
        .margin_right(12 + RIGHT_AXIS)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..1f64, lo..hi)?;
    chart
        .configure_mesh()
        .x_desc("t (0 = clean data, 1 = pure noise)")
        .y_desc("loss")
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .light_line_style(RGBColor(235, 235, 235))
        .y_label_formatter(&|y| short(*y))
        .draw()?;
    if bins == 0 {
        return Ok(());
    }
    let shades = [RGBColor(158, 202, 225), RGBColor(66, 146, 198), RGBColor(8, 48, 107)];
    let shades = &shades[3 - picks.len().min(3)..];
    for (r, &color) in picks.iter().zip(shades) {
        let points: Vec<(f64, f64)> = r
            .loss_by_t
            .iter()
            .enumerate()
            .filter_map(|(i, v)| Some(((i as f64 + 0.5) / bins as f64, (*v)?)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(format!("step {}", r.step))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .draw()
}

/// Height in pixels of the caption band [`with_caption`] adds.
pub const CAPTION_HEIGHT: u32 = 22;

/// `img` with a white band on top holding `text` (e.g. `adaptive on test: accuracy 0.578`), clipped to
/// the image's width.
pub fn with_caption(img: &image::RgbImage, text: &str) -> Result<image::RgbImage> {
    register_font();
    let (w, h) = img.dimensions();
    let mut out = image::RgbImage::from_pixel(w, h + CAPTION_HEIGHT, image::Rgb([255, 255, 255]));
    image::imageops::replace(&mut out, img, 0, CAPTION_HEIGHT as i64);
    let mut buffer = out.into_raw();
    let err = |what: String| RuntimeError::Plot { path: "caption".into(), what };
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (w, h + CAPTION_HEIGHT)).into_drawing_area();
        root.draw_text(text, &(FAMILY, 15).into_font().color(&BLACK), (4, 3))
            .map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    let out = image::RgbImage::from_raw(w, h + CAPTION_HEIGHT, buffer)
        .ok_or_else(|| err("the bitmap has the wrong size".into()))?;
    Ok(out)
}

/// A tick label without trailing noise: `0.25`, `-1.5`, `1.2e-4`.
fn short(y: f64) -> String {
    if y == 0.0 {
        "0".into()
    } else if y.abs() >= 1e-3 && y.abs() < 1e4 {
        let s = format!("{y:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{y:.1e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<LogRecord> {
        (1..=10)
            .map(|i| {
                let s = i as f64;
                LogRecord {
                    step: i * 50,
                    loss: 1.0 / s - 0.3,
                    terms: [("mse".to_string(), 1.0 / s), ("nll".to_string(), -30.0 * (s / 10.0))].into(),
                    lr: 1e-3 * (1.0 - s / 20.0),
                    loss_by_t: (0..10)
                        .map(|b| if b == 3 { None } else { Some((b as f64 + 1.0) / s) })
                        .collect(),
                }
            })
            .collect()
    }

    #[test]
    fn the_embedded_font_parses() {
        assert!(plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    }

    #[test]
    fn writes_png_and_svg_with_axes_legend_and_negative_values() {
        let dir = std::env::temp_dir().join(format!("sr-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let per_step: Vec<(u64, f64)> = (1..=500).map(|s| (s, 1.0 / (s as f64).sqrt() - 0.4)).collect();
        let recs = records();
        let plot = LossPlot { title: "quickstart", per_step: &per_step, records: &recs };
        write_loss_plots(&dir.join("loss"), &plot).unwrap();
        let img = image::open(dir.join("loss.png")).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
        // Dark pixels (text, axes) exist in the left margin: the tick labels were drawn with the font.
        let dark_in_margin = (0..70)
            .flat_map(|x| (0..HEIGHT).map(move |y| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&c| c < 100))
            .count();
        assert!(dark_in_margin > 200, "{dark_in_margin} dark pixels in the tick-label margin");
        let svg = std::fs::read_to_string(dir.join("loss.svg")).unwrap();
        for text in [
            "step",
            "learning rate",
            "total loss (logged mean)",
            "mse term",
            "nll term",
            "quickstart",
            "step 500",
        ] {
            assert!(svg.contains(text), "the SVG lacks `{text}`");
        }
        // The nll term goes down to -30: the axis shows negative ticks.
        let ticks: Vec<&str> = svg
            .split('>')
            .filter_map(|s| s.split('<').next())
            .filter(|t| t.trim().starts_with('-'))
            .collect();
        assert!(
            ticks.iter().any(|t| t.trim().parse::<f64>().is_ok_and(|v| v <= -20.0)),
            "no tick at -20 or below: {ticks:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The numbers after `name="` in each `<tag ...>` of `svg`, by attribute.
    fn svg_elements(svg: &str, tag: &str) -> Vec<BTreeMap<String, String>> {
        svg.split(&format!("<{tag} "))
            .skip(1)
            .map(|rest| {
                let head = rest.split('>').next().unwrap_or("");
                head.split('"')
                    .collect::<Vec<_>>()
                    .chunks(2)
                    .filter(|kv| kv.len() == 2)
                    .map(|kv| (kv[0].trim().trim_end_matches('=').to_string(), kv[1].to_string()))
                    .collect()
            })
            .collect()
    }

    /// The SVG of `plot`, written to and read back from a temporary folder named after `name`.
    fn svg_of(name: &str, plot: &LossPlot) -> String {
        let dir = std::env::temp_dir().join(format!("sr-plot-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_loss_plots(&dir.join("loss"), plot).unwrap();
        let svg = std::fs::read_to_string(dir.join("loss.svg")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        svg
    }

    fn number(e: &BTreeMap<String, String>, key: &str) -> Option<f64> {
        e.get(key).and_then(|v| v.parse::<f64>().ok())
    }

    /// The one legend box (x, y, width, height) of the upper or the lower panel.
    fn legend_box(svg: &str, upper: bool) -> (f64, f64, f64, f64) {
        let split = f64::from(HEIGHT * 62 / 100);
        let boxes: Vec<(f64, f64, f64, f64)> = svg_elements(svg, "rect")
            .iter()
            .filter(|r| r.get("stroke").is_some_and(|s| s.eq_ignore_ascii_case("#B4B4B4")))
            .filter_map(|r| {
                Some((number(r, "x")?, number(r, "y")?, number(r, "width")?, number(r, "height")?))
            })
            .filter(|r| (r.1 < split) == upper)
            .collect();
        assert_eq!(
            boxes.len(),
            1,
            "one legend box in the {} panel: {boxes:?}",
            if upper { "upper" } else { "lower" }
        );
        boxes[0]
    }

    #[test]
    fn the_lower_panel_has_one_axis_and_its_legend_covers_no_point() {
        // The loss per t is highest at both ends (where an upper-corner legend would sit).
        let mut recs = records();
        for r in &mut recs {
            r.loss_by_t = (0..10).map(|b| Some(1.0 + ((b as f64 - 4.5) / 4.5).powi(2))).collect();
        }
        let svg = svg_of("lower", &LossPlot { title: "legend", per_step: &[], records: &recs });
        // One "loss" axis title per panel: the lower panel does not repeat its axis on the right.
        let titles =
            svg.split("</text>").filter(|t| t.rsplit('>').next().map(str::trim) == Some("loss")).count();
        assert_eq!(titles, 2, "{svg}");
        let split = f64::from(HEIGHT * 62 / 100);
        let points: Vec<(f64, f64)> = svg_elements(&svg, "circle")
            .iter()
            .filter_map(|c| Some((number(c, "cx")?, number(c, "cy")?)))
            .filter(|p| p.1 > split)
            .collect();
        assert_eq!(points.len(), 30, "three lines of ten points");
        let (x, y, w, h) = legend_box(&svg, false);
        for (px, py) in points {
            let inside = px + 3.0 >= x && px - 3.0 <= x + w && py + 3.0 >= y && py - 3.0 <= y + h;
            assert!(!inside, "the point ({px}, {py}) is under the legend {:?}", (x, y, w, h));
        }
    }

    #[test]
    fn the_upper_legend_hides_neither_the_loss_nor_the_learning_rate() {
        // A constant learning rate (the top of its axis) and per-step losses that start at their maximum.
        let mut recs = records();
        for r in &mut recs {
            r.lr = 2e-3;
        }
        let per_step: Vec<(u64, f64)> = (1..=500).map(|s| (s, 2.0 - s as f64 / 500.0)).collect();
        let svg = svg_of("upper", &LossPlot { title: "legend", per_step: &per_step, records: &recs });
        let split = f64::from(HEIGHT * 62 / 100);
        let (x, y, w, h) = legend_box(&svg, true);
        // Every vertex of every line right of the legend's own sample strokes.
        let vertices: Vec<(f64, f64)> = svg_elements(&svg, "polyline")
            .iter()
            .filter_map(|p| p.get("points").cloned())
            .flat_map(|pts| {
                pts.split_whitespace()
                    .filter_map(|xy| {
                        let (a, b) = xy.split_once(',')?;
                        Some((a.parse::<f64>().ok()?, b.parse::<f64>().ok()?))
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|p| p.1 < split && p.0 > x + 40.0)
            .collect();
        assert!(vertices.len() > 100, "{} vertices", vertices.len());
        for (px, py) in vertices {
            let inside = px >= x && px <= x + w && py >= y && py <= y + h;
            assert!(!inside, "the line vertex ({px}, {py}) is under the legend {:?}", (x, y, w, h));
        }
    }

    #[test]
    fn the_loss_axis_holds_the_early_steps_but_not_a_first_spike() {
        let dir = std::env::temp_dir().join(format!("sr-plot-early-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A spike in the first 5% of the steps, then losses of 4000 up to step 100 that no logged mean shows
        // (above every step number, so a tick there is on the loss axis).
        let per_step: Vec<(u64, f64)> = (1..=500)
            .map(|s| {
                (
                    s,
                    if s <= 10 {
                        1e8
                    } else if s <= 100 {
                        4000.0
                    } else {
                        0.5
                    },
                )
            })
            .collect();
        let recs = records();
        write_loss_plots(
            &dir.join("loss"),
            &LossPlot { title: "early", per_step: &per_step, records: &recs },
        )
        .unwrap();
        let svg = std::fs::read_to_string(dir.join("loss.svg")).unwrap();
        let ticks: Vec<f64> = svg
            .split('>')
            .filter_map(|s| s.split('<').next())
            .filter_map(|t| t.trim().parse().ok())
            .collect();
        assert!(
            ticks.iter().any(|&t| (2000.0..1e4).contains(&t)),
            "no tick near the early losses: {ticks:?}"
        );
        assert!(ticks.iter().all(|&t| t < 1e6), "the first spike sets the range: {ticks:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parses_metrics_lines_and_tolerates_empty_logs() {
        let line = serde_json::json!({"step": 50, "loss": -0.5, "terms": {"mse": 0.2}, "lr": 0.001, "mse_by_t": [0.1, null]});
        let r = LogRecord::from_json(&line).unwrap();
        assert_eq!((r.step, r.loss, r.lr), (50, -0.5, 0.001));
        assert_eq!(r.loss_by_t, vec![Some(0.1), None]);
        assert!(LogRecord::from_json(&serde_json::json!({"event": "eval"})).is_none());
        let dir = std::env::temp_dir().join(format!("sr-plot-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_loss_plots(&dir.join("loss"), &LossPlot { title: "empty", ..Default::default() }).unwrap();
        assert!(dir.join("loss.png").exists() && dir.join("loss.svg").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn captions_add_a_band_of_text_above_the_image() {
        let img = image::RgbImage::from_pixel(120, 40, image::Rgb([0, 0, 255]));
        let out = with_caption(&img, "adaptive on test: accuracy 0.578").unwrap();
        assert_eq!(out.dimensions(), (120, 40 + CAPTION_HEIGHT));
        let dark = out
            .enumerate_pixels()
            .filter(|(_, y, p)| *y < CAPTION_HEIGHT && p.0.iter().all(|&c| c < 128))
            .count();
        assert!(dark > 30, "{dark} text pixels in the caption band");
        assert_eq!(out.get_pixel(5, CAPTION_HEIGHT + 5).0, [0, 0, 255], "the image sits below the band");
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(short(0.25), "0.25");
        assert_eq!(short(-1.5), "-1.5");
        assert_eq!(short(0.0), "0");
        assert_eq!(short(1.2e-4), "1.2e-4");
    }
}
