//! `--chart FILE.svg`: operations per second (top) and latency p50 and p99
//! (bottom) for each second of the measured run.

use super::stats::Second;
use plotters::prelude::*;
use std::path::Path;

fn err(path: &Path, e: impl std::fmt::Display) -> String {
    format!("cannot write the chart {}: {e}", path.display())
}

#[allow(
    clippy::float_arithmetic,
    clippy::cast_precision_loss,
    reason = "chart coordinates: counts and microseconds drawn as floats"
)]
pub fn write(path: &Path, seconds: &[Second], title: &str) -> Result<(), String> {
    // The last second is usually partial: its throughput would read as a
    // drop at the end. Leave it out when there is more than one.
    let seconds = match seconds.split_last() {
        Some((_, rest)) if !rest.is_empty() => rest,
        _ => seconds,
    };
    // The x axis ends at the last point (second `len - 1`), not a second
    // past it.
    let last = seconds.len().saturating_sub(1).max(1) as f64;
    let ops: Vec<(f64, f64)> = seconds
        .iter()
        .map(|s| (s.index as f64, s.ops as f64))
        .collect();
    let ms = |us: u64| us as f64 / 1_000.0;
    let p50: Vec<(f64, f64)> = seconds
        .iter()
        .filter(|s| s.requests > 0)
        .map(|s| (s.index as f64, ms(s.latency.value_at_quantile(0.5))))
        .collect();
    let p99: Vec<(f64, f64)> = seconds
        .iter()
        .filter(|s| s.requests > 0)
        .map(|s| (s.index as f64, ms(s.latency.value_at_quantile(0.99))))
        .collect();
    let top_ops = ops.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let top_ms = p99.iter().map(|p| p.1).fold(0.1, f64::max) * 1.1;

    let root = SVGBackend::new(path, (1000, 720)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let root = root
        .titled(title, ("sans-serif", 18))
        .map_err(|e| err(path, e))?;
    let (upper, lower) = root.split_vertically(340);

    panel(
        &upper,
        path,
        ("throughput (operations per second)", "ops/s"),
        (last, top_ops),
        &[("ops/s", ops, BLUE)],
    )?;
    panel(
        &lower,
        path,
        ("latency (ms)", "ms"),
        (last, top_ms),
        &[("p50", p50, GREEN), ("p99", p99, RED)],
    )?;
    root.present().map_err(|e| err(path, e))?;
    Ok(())
}

/// A named line of (second, value) points, in its colour.
type Line<'a> = (&'a str, Vec<(f64, f64)>, RGBColor);

/// One chart: per-second lines over `0..x_max` and `0..y_max`, with a
/// legend. `labels`: the caption and the y axis's description.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    path: &Path,
    (caption, y_desc): (&str, &str),
    (x_max, y_max): (f64, f64),
    lines: &[Line<'_>],
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(|e| err(path, e))?;
    chart
        .configure_mesh()
        .x_desc("second")
        .y_desc(y_desc)
        .draw()
        .map_err(|e| err(path, e))?;
    for (name, points, color) in lines {
        let color = *color;
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| err(path, e))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(path, e))?;
    Ok(())
}
