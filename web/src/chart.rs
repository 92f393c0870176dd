//! The daily stacked bar chart, laid out on the server: the page gets rectangles and
//! labels to write as inline SVG, readable without JavaScript.

use strata_core::domain::{CostDashboard, SeriesKind};

use crate::format;

pub const WIDTH: u32 = 760;
pub const HEIGHT: u32 = 280;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// One stacked piece of a day's bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub x: String,
    pub y: String,
    pub width: String,
    pub height: String,
    /// CSS class naming its colour (`s0` … `s5`, `other`, `untagged`, `estimate`).
    pub class: String,
    /// The tooltip and accessible name: `Nov 3 · checkout: $12.00`.
    pub label: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AxisLabel {
    pub x: String,
    pub y: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LegendItem {
    pub class: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StackedChart {
    pub width: u32,
    pub height: u32,
    pub segments: Vec<Segment>,
    /// Horizontal grid lines with their amounts.
    pub y_ticks: Vec<AxisLabel>,
    pub x_labels: Vec<AxisLabel>,
    pub legend: Vec<LegendItem>,
    /// Plot area edges, for the axis lines.
    pub plot_left: String,
    pub plot_right: String,
    pub plot_bottom: String,
    /// No day of the range has any cost or estimate.
    pub empty: bool,
}

fn series_class(kind: SeriesKind, index: usize) -> String {
    match kind {
        SeriesKind::Project => format!("s{index}"),
        SeriesKind::OtherProjects => "other".into(),
        SeriesKind::Untagged => "untagged".into(),
    }
}

/// A round axis maximum at or above `value` (1, 2 or 5 × a power of ten).
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(value.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if step * power >= value {
            return step * power;
        }
    }
    10.0 * power
}

fn px(value: f64) -> String {
    format!("{value:.1}")
}

impl StackedChart {
    /// Bars per day: Cost Explorer actuals stacked by series; a day it has not
    /// reported yet shows the proxy's estimate as one hatched bar.
    pub fn daily(costs: &CostDashboard) -> Self {
        let days = &costs.days;
        let totals: Vec<i64> = days
            .iter()
            .map(|d| match d.actual_micros {
                Some(_) => d.by_series.iter().sum(),
                None => d.estimate_micros.unwrap_or(0),
            })
            .collect();
        let max = totals.iter().copied().max().unwrap_or(0);
        let top = nice_ceiling(max as f64 / 1e6);
        let plot_w = f64::from(WIDTH) - LEFT - RIGHT;
        let plot_h = f64::from(HEIGHT) - TOP - BOTTOM;
        let bottom = TOP + plot_h;
        let slot = plot_w / days.len().max(1) as f64;
        let bar = (slot * 0.78).max(1.0);
        let scale = |micros: i64| micros as f64 / 1e6 / top * plot_h;
        let mut segments = Vec::new();
        for (i, day) in days.iter().enumerate() {
            let x = LEFT + slot * i as f64 + (slot - bar) / 2.0;
            let when = format::short_day(day.day);
            if day.actual_micros.is_none() {
                if let Some(estimate) = day.estimate_micros.filter(|e| *e > 0) {
                    let h = scale(estimate);
                    segments.push(Segment {
                        x: px(x),
                        y: px(bottom - h),
                        width: px(bar),
                        height: px(h),
                        class: "estimate".into(),
                        label: format!(
                            "{when} · estimated from proxy metering: {}",
                            format::usd(estimate)
                        ),
                    });
                }
                continue;
            }
            let mut y = bottom;
            for (index, (series, micros)) in costs.series.iter().zip(&day.by_series).enumerate() {
                if *micros <= 0 {
                    continue;
                }
                let h = scale(*micros);
                y -= h;
                segments.push(Segment {
                    x: px(x),
                    y: px(y),
                    width: px(bar),
                    height: px(h),
                    class: series_class(series.kind, index),
                    label: format!("{when} · {}: {}", series.name, format::usd(*micros)),
                });
            }
        }
        let y_ticks = (0..=4)
            .map(|i| {
                let value = top * f64::from(i) / 4.0;
                AxisLabel {
                    x: px(LEFT - 6.0),
                    y: px(bottom - plot_h * f64::from(i) / 4.0),
                    text: format::usd((value * 1e6).round() as i64),
                }
            })
            .collect();
        // About eight day labels, whatever the range.
        let every = days.len().div_ceil(8).max(1);
        let x_labels = days
            .iter()
            .enumerate()
            .filter(|(i, _)| i % every == 0)
            .map(|(i, d)| AxisLabel {
                x: px(LEFT + slot * i as f64 + slot / 2.0),
                y: px(bottom + 18.0),
                text: format::short_day(d.day),
            })
            .collect();
        let mut legend: Vec<LegendItem> = costs
            .series
            .iter()
            .enumerate()
            .filter(|(index, _)| {
                days.iter()
                    .any(|d| d.by_series.get(*index).is_some_and(|m| *m > 0))
            })
            .map(|(index, s)| LegendItem {
                class: series_class(s.kind, index),
                name: s.name.clone(),
            })
            .collect();
        if segments.iter().any(|s| s.class == "estimate") {
            legend.push(LegendItem {
                class: "estimate".into(),
                name: "Estimated (proxy metering; Cost Explorer has not reported the day)".into(),
            });
        }
        Self {
            width: WIDTH,
            height: HEIGHT,
            empty: segments.is_empty(),
            segments,
            y_ticks,
            x_labels,
            legend,
            plot_left: px(LEFT),
            plot_right: px(f64::from(WIDTH) - RIGHT),
            plot_bottom: px(bottom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(1.2), 2.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(7.5), 10.0);
        assert_eq!(nice_ceiling(1234.0), 2000.0);
    }
}
