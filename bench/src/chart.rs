//! The PNG bar chart of facade/raw ratios.

use std::path::Path;
use std::sync::Once;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::BenchResult;
use crate::measure::Op;
use crate::report::{Machine, Outcome, StoreReport, below_goal};

const FONT: &str = "sans-serif";
const WIDTH: u32 = 1100;
const ROW_HEIGHT: u32 = 26;
const GOAL: f64 = 0.95;
const X_LIMIT: f64 = 1.5;

/// One colour per store, in table order; a store keeps its colour from run to run.
const PALETTE: [RGBColor; 6] = [
    RGBColor(0x4e, 0x79, 0xa7),
    RGBColor(0x59, 0xa1, 0x4f),
    RGBColor(0xe1, 0x57, 0x59),
    RGBColor(0xf2, 0x8e, 0x2b),
    RGBColor(0xb0, 0x7a, 0xa1),
    RGBColor(0x76, 0xb7, 0xb2),
];

/// The chart's text is drawn with DejaVu Sans compiled into the binary, so it needs no fonts on
/// the machine that runs it.
fn register_font() -> BenchResult<()> {
    static REGISTER: Once = Once::new();
    let mut outcome = Ok(());
    REGISTER.call_once(|| {
        if plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_err()
        {
            outcome = Err("the embedded DejaVu Sans font does not load");
        }
    });
    Ok(outcome?)
}

struct Bar {
    label: String,
    colour: RGBColor,
    median: f64,
    min: f64,
    max: f64,
}

/// Draws one horizontal bar per store and operation (median facade/raw ratio, whiskers from the
/// smallest to the largest repeat) into a PNG at `path`.
pub fn draw(path: &Path, stores: &[StoreReport], machine: &Machine, mode: &str) -> BenchResult<()> {
    register_font()?;
    let mut bars = Vec::new();
    let mut absent = Vec::new();
    for (index, store) in stores.iter().enumerate() {
        let colour = PALETTE[index % PALETTE.len()];
        match &store.outcome {
            Outcome::Measured { ops, .. } => {
                for op in ops.iter().filter(|op| !op.op.is_scale()) {
                    if let Some(ratio) = op.ratio() {
                        bars.push(Bar {
                            label: format!("{} · {}", store.name, op.op.label()),
                            colour,
                            median: ratio.median,
                            min: ratio.min,
                            max: ratio.max,
                        });
                    }
                }
            }
            Outcome::NotBuilt { .. } => absent.push(format!("{}: not built", store.name)),
            Outcome::Skipped { reason } => {
                absent.push(format!("{}: skipped ({reason})", store.name))
            }
            Outcome::Failed { .. } => absent.push(format!("{}: failed", store.name)),
        }
    }
    let rows = bars.len().max(1);
    let footer = 56;
    let height = 130 + ROW_HEIGHT * rows as u32 + footer;
    let root = BitMapBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot_area, footer_area) = root.split_vertically(height - footer);

    // The axis stops at 1.5 so that the region around 1.0, where the goal is, stays readable; a
    // bar past it is cut at the edge and says its value there.
    let x_max = bars
        .iter()
        .map(|bar| bar.max)
        .fold(1.1_f64, f64::max)
        .min(X_LIMIT)
        * 1.06;
    let labels: Vec<String> = bars.iter().rev().map(|bar| bar.label.clone()).collect();
    let title = format!(
        "cachette: facade / raw driver throughput ({mode} run, {}, {} cores, {})",
        machine.date, machine.cores, machine.cpu
    );
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(title, (FONT, 20))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(300)
        .build_cartesian_2d(0.0..x_max, (0..rows).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .y_labels(rows)
        .y_label_formatter(&|value| match value {
            SegmentValue::CenterOf(row) => labels.get(*row).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .x_desc("facade ops/s ÷ raw driver ops/s (1.0 = no cost; bar = median, whisker = min–max)")
        .x_label_formatter(&|x| format!("{x:.2}"))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .draw()?;

    for (position, bar) in bars.iter().rev().enumerate() {
        let (low, high) = (
            SegmentValue::Exact(position),
            SegmentValue::Exact(position + 1),
        );
        let fill = if below_goal(bar.median) {
            bar.colour.mix(0.45)
        } else {
            bar.colour.mix(0.9)
        };
        let mut rectangle =
            Rectangle::new([(0.0, low), (bar.median.min(x_max), high)], fill.filled());
        rectangle.set_margin(4, 4, 0, 0);
        chart.draw_series(std::iter::once(rectangle))?;
        let centre = SegmentValue::CenterOf(position);
        chart.draw_series(std::iter::once(PathElement::new(
            vec![
                (bar.min.min(x_max), centre.clone()),
                (bar.max.min(x_max), centre.clone()),
            ],
            BLACK.stroke_width(2),
        )))?;
        // The value sits at the start of its bar, where no whisker reaches.
        let clipped = if bar.median > x_max { " ›" } else { "" };
        let label = (FONT, 13)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        chart.draw_series(std::iter::once(Text::new(
            format!("{:.2}{clipped}", bar.median),
            (x_max * 0.01, centre),
            label,
        )))?;
    }
    for (x, colour) in [(1.0, BLACK), (GOAL, RED)] {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(x, SegmentValue::Exact(0)), (x, SegmentValue::Exact(rows))],
            colour.stroke_width(1),
        )))?;
    }
    footer_area.draw(&Text::new(
        "Black line: 1.0, the facade costs nothing. Red line: the 0.95 goal; pale bars fall \
         below it. A value with › runs past the axis.",
        (24, 4),
        (FONT, 14).into_font().color(&BLACK),
    ))?;
    if !absent.is_empty() {
        footer_area.draw(&Text::new(
            format!("Not in the chart: {}", absent.join("; ")),
            (24, 28),
            (FONT, 14).into_font().color(&BLACK),
        ))?;
    }
    root.present()?;
    Ok(())
}

/// One store's scale series: name, colour, (position, ratio) over batch sizes and over tasks.
type ScaleLine<'a> = (&'a str, RGBColor, Vec<(usize, f64)>, Vec<(usize, f64)>);

/// Draws the scale series into a PNG at `path`: facade/raw against the batch size (left) and
/// against the number of concurrent tasks (right), one line per store. `false` when no scale
/// operation ran, and nothing is drawn.
pub fn draw_scale(
    path: &Path,
    stores: &[StoreReport],
    machine: &Machine,
    mode: &str,
) -> BenchResult<bool> {
    register_font()?;
    let mut lines: Vec<ScaleLine<'_>> = Vec::new();
    for store in stores {
        let Outcome::Measured { ops, .. } = &store.outcome else {
            continue;
        };
        let (mut batches, mut tasks) = (Vec::new(), Vec::new());
        for op in ops {
            let Some(ratio) = op.ratio() else { continue };
            for (position, wanted) in Op::SCALE.iter().enumerate() {
                if op.op == *wanted {
                    match wanted {
                        Op::BatchOf(_) => batches.push((position, ratio.median)),
                        Op::TasksOf(_) => tasks.push((position - 5, ratio.median)),
                        // The table shows the positional batches; the chart keeps to the map.
                        _ => {}
                    }
                }
            }
        }
        if !batches.is_empty() || !tasks.is_empty() {
            let colour = PALETTE[lines.len() % PALETTE.len()];
            lines.push((store.name, colour, batches, tasks));
        }
    }
    if lines.is_empty() {
        return Ok(false);
    }
    let root = BitMapBackend::new(path, (WIDTH, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "cachette: facade / raw driver as the work grows ({mode} run, {}, {} cores)",
        machine.date, machine.cores
    );
    let root = root.titled(&title, (FONT, 20))?;
    let panels = root.split_evenly((1, 2));
    let y_max = lines
        .iter()
        .flat_map(|(_, _, batches, tasks)| batches.iter().chain(tasks).map(|(_, ratio)| *ratio))
        .fold(1.2_f64, f64::max)
        .min(3.0)
        * 1.05;
    let panel_specs: [(&str, &[&str]); 2] = [
        ("get_many of N keys", &["1", "10", "100", "1,000", "10,000"]),
        ("get from N tasks", &["1", "8", "64", "256"]),
    ];
    for (panel_index, (panel, (x_desc, ticks))) in panels.iter().zip(panel_specs).enumerate() {
        let mut chart = ChartBuilder::on(panel)
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(-0.3_f64..(ticks.len() as f64 - 0.7), 0.0..y_max)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
            .x_labels(ticks.len())
            .x_label_formatter(&|x| {
                let rounded = x.round();
                if (x - rounded).abs() < 0.01 && rounded >= 0.0 {
                    ticks
                        .get(rounded as usize)
                        .map(|t| (*t).to_owned())
                        .unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_desc(x_desc)
            .y_desc("facade ÷ raw")
            .y_label_formatter(&|y| format!("{y:.2}"))
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 15))
            .draw()?;
        for (y, colour) in [(1.0, BLACK), (GOAL, RED)] {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(-0.3, y), (ticks.len() as f64 - 0.7, y)],
                colour.stroke_width(1),
            )))?;
        }
        for (name, colour, batches, tasks) in &lines {
            let points: Vec<(f64, f64)> = if panel_index == 0 { batches } else { tasks }
                .iter()
                .map(|(x, ratio)| (*x as f64, ratio.min(y_max)))
                .collect();
            let colour = *colour;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    points.clone(),
                    colour.stroke_width(2),
                )))?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
            chart.draw_series(
                points
                    .into_iter()
                    .map(|point| Circle::new(point, 3, colour.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(0xaa, 0xaa, 0xaa))
            .label_font((FONT, 13))
            .position(SeriesLabelPosition::LowerRight)
            .draw()?;
    }
    root.present()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::measure::Sample;
    use crate::report::{OpResult, PeerCell};

    fn samples(rate: f64) -> Vec<Sample> {
        (0..5)
            .map(|_| Sample {
                units: rate as u64,
                misses: 0,
                elapsed: Duration::from_secs(1),
            })
            .collect()
    }

    #[test]
    fn the_chart_is_a_png_drawn_with_the_embedded_font_whatever_the_ratios() {
        let ops = [(Op::Get, 0.9), (Op::Set, 1.0), (Op::ConcurrentGet, 3.9)]
            .into_iter()
            .chain(
                Op::SCALE
                    .into_iter()
                    .zip([0.8, 0.9, 1.0, 1.1, 0.97, 1.0, 1.2, 0.9, 5.0, 1.0, 0.98]),
            )
            .map(|(op, ratio)| OpResult {
                op,
                facade: samples(1000.0 * ratio),
                raw: samples(1000.0),
                peer: PeerCell::None,
            })
            .collect();
        let stores = [
            StoreReport {
                name: "memory",
                outcome: Outcome::Measured {
                    raw_name: "moka",
                    peer_name: None,
                    server: None,
                    note: None,
                    ops,
                },
            },
            StoreReport {
                name: "redis",
                outcome: Outcome::Skipped {
                    reason: "CACHETTE_REDIS_URL is unset".into(),
                },
            },
        ];
        let path = std::env::temp_dir().join(format!("cachette-chart-{}.png", std::process::id()));
        draw(&path, &stores, &Machine::detect(), "quick").unwrap();
        let png = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(png.len() > 10_000, "{} bytes: an empty picture?", png.len());
        assert!(draw_scale(&path, &stores, &Machine::detect(), "quick").unwrap());
        let png = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(png.len() > 10_000, "{} bytes: an empty picture?", png.len());
        assert!(!draw_scale(&path, &stores[1..], &Machine::detect(), "quick").unwrap());
    }
}
