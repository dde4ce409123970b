//! A hand-written SVG bar chart: added instructions per request by
//! listener, with the floor and the 1.15x-floor target as lines.

use super::report::{thousands, Measured, TARGET};
use std::fmt::Write as _;

const WIDTH: f64 = 760.0;
const BAR_HEIGHT: f64 = 26.0;
const GAP: f64 = 10.0;
const LEFT: f64 = 140.0;
const RIGHT: f64 = 110.0;
const TOP: f64 = 50.0;

pub fn svg(measured: &Measured, listeners: &[String]) -> String {
    let bars: Vec<(&str, f64)> = listeners
        .iter()
        .filter(|name| name.as_str() != "none" && !super::report::is_mix(name))
        .filter_map(|name| Some((name.as_str(), measured.added(name)?)))
        .collect();
    let floor = measured.added("floor");
    let max = bars
        .iter()
        .map(|(_, v)| *v)
        .chain(floor.map(|f| f * TARGET))
        .fold(1.0, f64::max);
    let plot = WIDTH - LEFT - RIGHT;
    let x = |value: f64| LEFT + value.max(0.0) / max * plot;
    let height = TOP + bars.len() as f64 * (BAR_HEIGHT + GAP) + 40.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="13">"##
    );
    let _ = writeln!(
        svg,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">Added instructions per request over no header work (callgrind)</text>"##
    );
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="40" fill="#555">three constant response headers; Envoy --concurrency 1; medians of rounds</text>"##
    );
    for (index, (name, value)) in bars.iter().enumerate() {
        let y = TOP + index as f64 * (BAR_HEIGHT + GAP);
        let colour = match *name {
            "route" => "#7a7a7a",
            "lua" => "#3b6fb6",
            "floor" => "#2e8b57",
            "filter" => "#d2691e",
            _ => "#c9a227",
        };
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{name}</text>"##,
            LEFT - 8.0,
            y + BAR_HEIGHT * 0.68
        );
        let _ = writeln!(
            svg,
            r##"<rect x="{LEFT}" y="{y:.1}" width="{:.1}" height="{BAR_HEIGHT}" fill="{colour}"/>"##,
            x(*value) - LEFT
        );
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}">{}</text>"##,
            x(*value) + 6.0,
            y + BAR_HEIGHT * 0.68,
            thousands(*value)
        );
    }
    let bottom = TOP + bars.len() as f64 * (BAR_HEIGHT + GAP);
    if let Some(floor) = floor {
        let lines = [
            (floor, "floor", "4 3"),
            (floor * TARGET, "1.15x floor", "2 4"),
        ];
        for (index, (value, label, dash)) in lines.into_iter().enumerate() {
            let _ = writeln!(
                svg,
                r##"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" stroke="#000" stroke-dasharray="{dash}"/>"##,
                x(value),
                TOP - 6.0,
                bottom
            );
            let _ = writeln!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#333">{label}</text>"##,
                x(value),
                bottom + 16.0 + 14.0 * index as f64
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}
