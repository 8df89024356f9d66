//! [`History::plot`]: the two-panel figure of the Keras docs (a metric and its validation
//! above, the loss and its validation below), as PNG or SVG with plotters and a bundled font.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{ModelError, Result};
use crate::logs::History;

/// DejaVu Sans (free license, see `assets/DejaVuSans-LICENSE.txt`): bitmap text needs a font,
/// and no system library is used to find one.
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

/// A line to draw: its label, its points `(epoch, value)` and its color.
type Series = (String, Vec<(f32, f32)>, RGBColor);

/// The figure's size in pixels.
const SIZE: (u32, u32) = (800, 800);

impl History {
    /// Draws the history as the Keras docs do: the first metric (e.g. accuracy) with its
    /// validation values above, the loss with its validation values below (one panel when there
    /// is no metric); validation values at the epochs that reported them. The file type follows
    /// the extension: `.svg` for SVG, anything else PNG.
    ///
    /// # Errors
    /// [`ModelError::Plot`] when the history has no `loss` or the file cannot be drawn.
    pub fn plot(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let fail = |message: String| ModelError::Plot {
            path: path.display().to_string(),
            message,
        };
        if self.get("loss").is_none_or(<[f32]>::is_empty) {
            return Err(fail(
                "expected a history with a \"loss\" entry, got none".into(),
            ));
        }
        let is_svg = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
        if is_svg {
            let root = SVGBackend::new(path, SIZE).into_drawing_area();
            self.draw(&root).map_err(fail)
        } else {
            REGISTER.call_once(|| {
                // The bundled font is valid; a failure would only leave text out.
                let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
            });
            let root = BitMapBackend::new(path, SIZE).into_drawing_area();
            self.draw(&root).map_err(fail)
        }
    }

    /// The panels: the first metric (if any), then the loss.
    fn panels(&self) -> Vec<&str> {
        let metric = self
            .keys()
            .find(|k| *k != "loss" && !k.starts_with("val_") && *k != "learning_rate");
        metric.into_iter().chain(["loss"]).collect()
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        root.fill(&WHITE).map_err(err)?;
        let panels = self.panels();
        let areas = root.split_evenly((panels.len(), 1));
        for (area, key) in areas.iter().zip(&panels) {
            let val_key = format!("val_{key}");
            let series: Vec<Series> = [
                (format!("Training {key}"), *key, BLUE),
                (format!("Validation {key}"), val_key.as_str(), RED),
            ]
            .into_iter()
            .filter_map(|(label, k, color)| {
                let values = self.get(k)?;
                let points = self
                    .epochs_of(k)
                    .iter()
                    .zip(values)
                    .map(|(&e, &v)| ((e + 1) as f32, v))
                    .filter(|(_, v)| v.is_finite())
                    .collect();
                Some((label, points, color))
            })
            .collect();
            let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
            let mut last_epoch = 1.0f32;
            for (_, points, _) in &series {
                for &(e, v) in points {
                    lo = lo.min(v);
                    hi = hi.max(v);
                    last_epoch = last_epoch.max(e);
                }
            }
            if !lo.is_finite() {
                (lo, hi) = (0.0, 1.0);
            }
            let pad = ((hi - lo) * 0.05).max(1e-3);
            let title = if *key == "loss" {
                "Training and Validation Loss".to_string()
            } else {
                format!("Training and Validation {}", title_case(key))
            };
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 22))
                .margin(12)
                .margin_right(28)
                .x_label_area_size(36)
                .y_label_area_size(56)
                .build_cartesian_2d(1.0f32..last_epoch.max(2.0), (lo - pad)..(hi + pad))
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .x_label_formatter(&|e| format!("{e:.0}"))
                .y_desc(*key)
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(err)?;
            for (label, points, color) in series {
                chart
                    .draw_series(LineSeries::new(points, color.stroke_width(2)))
                    .map_err(err)?
                    .label(label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
            }
            let position = if *key == "loss" {
                SeriesLabelPosition::UpperRight
            } else {
                SeriesLabelPosition::LowerRight
            };
            chart
                .configure_series_labels()
                .position(position)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)
    }
}

/// `sparse_categorical_accuracy` -> `Sparse Categorical Accuracy`.
fn title_case(key: &str) -> String {
    key.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        })
        .collect::<Vec<String>>()
        .join(" ")
}
