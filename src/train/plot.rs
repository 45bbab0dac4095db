//! Loss curves as PNG pictures ([`plot_losses`]): training loss against step on a log scale,
//! one smoothed line per run (several for `lstm train --compare`), the task's baseline (what
//! an input-blind guess scores) as a dashed line, axis labels, a title and a legend.
//!
//! Text is drawn with DejaVu Sans, embedded in the binary (`assets/fonts/`, Bitstream Vera
//! license) and handed to plotters' pure-Rust `ab_glyph` renderer, so plotting needs no system
//! fonts or fontconfig.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

/// The embedded font.
const FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
/// The family name plots ask for, under which [`FONT_BYTES`] is registered.
const FONT: &str = "sans-serif";
/// Picture size in pixels.
const SIZE: (u32, u32) = (1000, 640);

/// One line of a plot.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    /// The legend's entry (a cell's name).
    pub label: String,
    /// The loss of every step, in order.
    pub losses: Vec<f64>,
}

/// A horizontal reference line.
#[derive(Clone, Debug, PartialEq)]
pub struct Baseline {
    /// The legend's entry.
    pub label: String,
    /// Its height.
    pub value: f64,
}

/// Why a plot could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// There was nothing to draw.
    #[error("no loss values to plot")]
    Empty,
    /// The embedded font could not be loaded (a corrupted build).
    #[error("the embedded font cannot be loaded")]
    Font,
    /// Plotters failed to draw or to write the file.
    #[error("cannot draw `{path}`: {message}")]
    Draw {
        /// The picture's path.
        path: String,
        /// Plotters' message.
        message: String,
    },
}

/// Draws `curves` (smoothed) and `baseline` into a PNG at `path`, titled `title`.
///
/// Each curve is smoothed by a trailing moving average over 2% of its steps (at least 1),
/// which shows the trend of noisy per-batch losses without shifting where it drops.
///
/// # Errors
///
/// [`PlotError::Empty`] if no curve has a positive finite value (a log scale has nowhere to
/// put the others), [`PlotError::Draw`] if the file cannot be written.
pub fn plot_losses(
    path: &Path,
    title: &str,
    curves: &[Curve],
    baseline: Option<&Baseline>,
) -> Result<(), PlotError> {
    // Drawn into a temporary file renamed over `path`: a full disk or a kill mid-draw leaves
    // the previous picture, not a truncated one.
    let axes = ("step", "training loss (log scale, smoothed)");
    draw_atomically(path, |temporary| {
        draw_losses(temporary, path, title, axes, curves, baseline)
    })
}

/// Draws one loss per epoch of each curve (training, validation) into a PNG at `path`,
/// titled `title`, atomically as [`plot_losses`] does.
///
/// # Errors
///
/// As [`plot_losses`].
pub fn plot_epoch_losses(path: &Path, title: &str, curves: &[Curve]) -> Result<(), PlotError> {
    let axes = ("epoch", "loss (log scale)");
    draw_atomically(path, |temporary| {
        draw_losses(temporary, path, title, axes, curves, None)
    })
}

/// Runs `draw` on a temporary file that replaces `path` when it succeeds.
fn draw_atomically(
    path: &Path,
    draw: impl FnOnce(&Path) -> Result<(), PlotError>,
) -> Result<(), PlotError> {
    let mut failure = None;
    let written = lstm::io::write_atomically_with(path, ".png", |temporary| {
        draw(temporary).map_err(|err| {
            let message = err.to_string();
            failure = Some(err);
            message
        })
    });
    match (written, failure) {
        (_, Some(err)) => Err(err),
        (Err(err), None) => Err(PlotError::Draw {
            path: path.display().to_string(),
            message: err.to_string(),
        }),
        (Ok(()), None) => Ok(()),
    }
}

/// [`plot_losses`] drawing straight into `file`; errors name `shown`, the picture's final
/// path.
fn draw_losses(
    file: &Path,
    shown: &Path,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    curves: &[Curve],
    baseline: Option<&Baseline>,
) -> Result<(), PlotError> {
    register_embedded_font()?;
    let smoothed: Vec<(String, Vec<(f64, f64)>)> = curves
        .iter()
        .map(|curve| (curve.label.clone(), smooth(&curve.losses)))
        .collect();
    let steps = curves
        .iter()
        .map(|c| c.losses.len())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let (low, high) = value_range(&smoothed, baseline).ok_or(PlotError::Empty)?;
    let draw_error = |err: &dyn std::fmt::Display| PlotError::Draw {
        path: shown.display().to_string(),
        message: err.to_string(),
    };
    let root = BitMapBackend::new(file, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_error(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 26))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..steps, (low..high).log_scale())
        .map_err(|e| draw_error(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .axis_desc_style((FONT, 18))
        .label_style((FONT, 15))
        .y_labels(12)
        .y_label_formatter(&|value| tick_label(*value))
        .x_label_formatter(&|value| format!("{value:.0}"))
        .draw()
        .map_err(|e| draw_error(&e))?;
    for (index, (label, points)) in smoothed.iter().enumerate() {
        let color = line_color(index);
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| draw_error(&e))?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], color.stroke_width(3)));
    }
    if let Some(baseline) = baseline {
        let style = BLACK.mix(0.6).stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, baseline.value), (steps, baseline.value)],
                10,
                6,
                style,
            ))
            .map_err(|e| draw_error(&e))?
            .label(&baseline.label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .label_font((FONT, 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(|e| draw_error(&e))?;
    root.present().map_err(|e| draw_error(&e))?;
    Ok(())
}

/// Matplotlib's `tab10` colours: distinct from each other and readable on white.
const LINE_COLORS: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (214, 39, 40),
    (44, 160, 44),
    (255, 127, 14),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

/// The colour of the `index`th curve (the palette repeats after ten).
fn line_color(index: usize) -> RGBColor {
    let (red, green, blue) = LINE_COLORS[index % LINE_COLORS.len()];
    RGBColor(red, green, blue)
}

/// A loss axis tick: `0.5`, `0.03`, `0.002`, then `5e-4` below a thousandth.
fn tick_label(value: f64) -> String {
    if value >= 1e-3 {
        let text = format!("{value:.4}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{value:.0e}")
    }
}

/// Registers the embedded font under [`FONT`], once per process.
fn register_embedded_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let registered =
        REGISTERED.get_or_init(|| register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok());
    if *registered {
        Ok(())
    } else {
        Err(PlotError::Font)
    }
}

/// `(step, mean of the losses of the window ending there)` for every step from 1, skipping
/// non-finite losses (a diverged step would otherwise blank the whole window).
pub fn smooth(losses: &[f64]) -> Vec<(f64, f64)> {
    let window = (losses.len() / 50).max(1);
    let mut points = Vec::with_capacity(losses.len());
    let mut sum = 0.0;
    let mut count = 0usize;
    for (index, &loss) in losses.iter().enumerate() {
        if loss.is_finite() {
            sum += loss;
            count += 1;
        }
        if index >= window {
            let leaving = losses[index - window];
            if leaving.is_finite() {
                sum -= leaving;
                count -= 1;
            }
        }
        if count > 0 {
            points.push(((index + 1) as f64, sum / count as f64));
        }
    }
    points
}

/// The y range of a log-scale plot of `curves` and `baseline`: from below the smallest
/// positive value to above the largest, `None` if there is no positive finite value.
fn value_range(
    curves: &[(String, Vec<(f64, f64)>)],
    baseline: Option<&Baseline>,
) -> Option<(f64, f64)> {
    let values = curves
        .iter()
        .flat_map(|(_, points)| points.iter().map(|&(_, y)| y))
        .chain(baseline.map(|b| b.value))
        .filter(|y| y.is_finite() && *y > 0.0);
    let (low, high) = values.fold(None, |range: Option<(f64, f64)>, y| match range {
        None => Some((y, y)),
        Some((low, high)) => Some((low.min(y), high.max(y))),
    })?;
    Some((low / 1.5, high * 1.5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoothing_averages_a_trailing_window() {
        let losses: Vec<f64> = (0..100).map(f64::from).collect();
        let points = smooth(&losses);
        assert_eq!(points.len(), 100);
        assert_eq!(points[0], (1.0, 0.0));
        // Window of 2: the mean of the last two losses.
        assert_eq!(points[10], (11.0, 9.5));
        let with_nan = smooth(&[1.0, f64::NAN, 3.0]);
        // A window of one: the NaN step has no finite loss to show.
        assert_eq!(with_nan, vec![(1.0, 1.0), (3.0, 3.0)]);
    }

    #[test]
    fn ticks_are_short_decimals() {
        assert_eq!(tick_label(2.0), "2");
        assert_eq!(tick_label(0.5), "0.5");
        assert_eq!(tick_label(0.03), "0.03");
        assert_eq!(tick_label(0.002), "0.002");
        assert_eq!(tick_label(0.0005), "5e-4");
    }

    #[test]
    fn range_covers_curves_and_baseline_with_margin() {
        let curves = vec![("a".to_string(), vec![(1.0, 0.01), (2.0, 0.5)])];
        let baseline = Baseline {
            label: "mean".into(),
            value: 1.0,
        };
        let (low, high) = value_range(&curves, Some(&baseline)).unwrap();
        assert!(low < 0.01 && high > 1.0);
        assert_eq!(value_range(&[], None), None);
    }

    #[test]
    fn plots_render_without_system_fonts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.png");
        let curves = vec![
            Curve {
                label: "lstm".into(),
                losses: (1..=200).map(|s| 1.0 / f64::from(s)).collect(),
            },
            Curve {
                label: "forget_bias".into(),
                losses: (1..=150).map(|s| 0.5 / f64::from(s)).collect(),
            },
        ];
        let baseline = Baseline {
            label: "baseline".into(),
            value: 0.167,
        };
        plot_losses(&path, "adding problem", &curves, Some(&baseline)).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let empty = Curve {
            label: "x".into(),
            losses: vec![],
        };
        assert!(matches!(
            plot_losses(&path, "t", &[empty], None),
            Err(PlotError::Empty)
        ));
    }
}
