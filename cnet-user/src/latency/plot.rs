//! `--plot`: the report's distributions as a picture (plotters, SVG
//! backend). One panel for flows, one for hops; a row per flow group or hop
//! on a shared logarithmic time axis: a whisker from min to max, a box from
//! p50 to p90, a tick at p50 and a diamond at p99 over a faint log2
//! histogram, with the figures written above it. `.html` wraps the same SVG and the table in a self-contained
//! page.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::flows::Metric;
use super::report::Report;
use super::stats::{Stats, format_ns};

const WIDTH: u32 = 1280;
const ROW_PX: u32 = 46;
const PANEL_EXTRA_PX: u32 = 110;
const LEGEND_PX: u32 = 30;
const FONT: &str = "sans-serif";

/// What the file name asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlotFormat {
    Svg,
    Html,
}

impl PlotFormat {
    pub fn from_path(path: &Path) -> Option<PlotFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "svg" => Some(PlotFormat::Svg),
            "html" | "htm" => Some(PlotFormat::Html),
            _ => None,
        }
    }
}

struct Row {
    label: String,
    color: RGBColor,
    stats: Stats,
}

/// The whole picture as SVG text.
pub fn svg(report: &Report) -> Result<String, String> {
    let flow_rows: Vec<Row> = report
        .flows
        .iter()
        .filter(|r| r.stats.count > 0)
        .map(|r| Row {
            label: format!(
                "{}  {} {} → {}:{}  (seen at {})",
                r.metric.label(),
                r.protocol,
                r.client,
                r.server,
                r.server_port,
                r.seen_at
            ),
            color: metric_color(r.metric),
            stats: r.stats.clone(),
        })
        .collect();
    let hop_rows: Vec<Row> = report
        .hops
        .iter()
        .filter(|r| r.stats.count > 0)
        .map(|r| Row {
            label: format!("{} → {}  ({})", r.from, r.to, r.protocol), color: HOP, stats: r.stats.clone()
        })
        .collect();

    let panel_h = |n: usize| PANEL_EXTRA_PX + ROW_PX * n.max(1) as u32;
    let (fh, hh) = (panel_h(flow_rows.len()), panel_h(hop_rows.len()));
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, LEGEND_PX + fh + hh)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (key, rest) = root.split_vertically(LEGEND_PX);
        legend(&key)?;
        let (top, bottom) = rest.split_vertically(fh);
        panel(&top, "Flow latency: TCP handshake, request→response, DNS (per flow group, log scale)", &flow_rows)?;
        let m = &report.hop_matching;
        let title = format!(
            "Hop latency: same packet on two hooks ({} matched, {} on one hook only, {} ambiguous)",
            m.matched, m.unmatched, m.ambiguous
        );
        panel(&bottom, &title, &hop_rows)?;
        root.present().map_err(err)?;
    }
    Ok(out)
}

/// A self-contained page: the SVG inline, then the table.
pub fn html(report: &Report) -> Result<String, String> {
    let svg = svg(report)?;
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>cnet latency</title>\n\
         <style>body{{font-family:sans-serif;margin:16px;background:#fff}}pre{{font-size:12px;line-height:1.3}}</style>\n\
         </head><body>\n<h1 style=\"font-size:20px\">cnet latency ({} packets)</h1>\n{svg}\n<pre>{}</pre>\n</body></html>\n",
        report.packets,
        escape(&report.table())
    ))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

const REQUEST: RGBColor = RGBColor(31, 119, 180);
const HANDSHAKE: RGBColor = RGBColor(44, 160, 44);
const DNS: RGBColor = RGBColor(255, 127, 14);
const HOP: RGBColor = RGBColor(148, 103, 189);
const P99: RGBColor = RGBColor(200, 30, 30);

fn metric_color(m: Metric) -> RGBColor {
    match m {
        Metric::TcpRequestResponse => REQUEST,
        Metric::TcpSynToSynack | Metric::TcpSynackToAck => HANDSHAKE,
        Metric::DnsQueryAnswer => DNS,
        Metric::NoLatency => RGBColor(128, 128, 128),
    }
}

fn err(e: impl std::fmt::Display) -> String {
    format!("cannot draw the plot: {e}")
}

fn panel(area: &DrawingArea<SVGBackend<'_>, Shift>, title: &str, rows: &[Row]) -> Result<(), String> {
    let lo = rows.iter().map(|r| r.stats.min_ns.max(1)).min().unwrap_or(1_000) as f64 / 2.0;
    let hi = rows.iter().map(|r| r.stats.max_ns).max().unwrap_or(1_000_000) as f64 * 2.0;
    let (lo, hi) = (lo.max(1.0), hi.max(lo * 8.0));
    let n = rows.len().max(1) as f64;
    // The diamond's half width as a factor on the log axis: about 7 px.
    let dx = (hi / lo).powf(7.0 / (WIDTH as f64 - 80.0));
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 18))
        .margin(12)
        .margin_right(24)
        .x_label_area_size(42)
        .y_label_area_size(8)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..n)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_labels(8)
        .x_label_formatter(&|v| format_ns(*v as u64))
        .x_label_style((FONT, 13))
        .x_desc("latency")
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()
        .map_err(err)?;
    if rows.is_empty() {
        chart
            .draw_series(std::iter::once(Text::new(
                "no samples".to_string(),
                (lo * 1.2, n * 0.5),
                TextStyle::from((FONT, 16).into_font()).color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center)),
            )))
            .map_err(err)?;
        return Ok(());
    }
    let label_style = TextStyle::from((FONT, 13).into_font()).color(&BLACK).pos(Pos::new(HPos::Left, VPos::Top));
    for (i, r) in rows.iter().enumerate() {
        let top = n - i as f64;
        let y = top - 0.68;
        let s = &r.stats;
        let x = |ns: u64| (ns.max(1) as f64).clamp(lo, hi);
        let text = format!(
            "{}    n={}  min {}  p50 {}  p90 {}  p99 {}  max {}",
            r.label,
            s.count,
            format_ns(s.min_ns),
            format_ns(s.p50_ns),
            format_ns(s.p90_ns),
            format_ns(s.p99_ns),
            format_ns(s.max_ns)
        );
        chart
            .draw_series(std::iter::once(Text::new(text, (lo * 1.05, top - 0.06), label_style.clone())))
            .map_err(err)?;
        // The log2 histogram, faint, behind the marks: the shape of the
        // distribution (one bar per power of two, height relative to the
        // row's fullest bucket).
        let fullest = s.log2_buckets.iter().map(|b| b.count).max().unwrap_or(1).max(1) as f64;
        let floor = top - 0.97;
        chart
            .draw_series(s.log2_buckets.iter().map(|b| {
                let (x0, x1) = ((b.from_ns as f64).clamp(lo, hi), (b.from_ns as f64 * 2.0).clamp(lo, hi));
                let h = 0.6 * b.count as f64 / fullest;
                Rectangle::new([(x0, floor), (x1, floor + h)], r.color.mix(0.16).filled())
            }))
            .map_err(err)?;
        let whisker = ShapeStyle::from(&r.color.mix(0.55)).stroke_width(2);
        chart
            .draw_series(std::iter::once(PathElement::new(vec![(x(s.min_ns), y), (x(s.max_ns), y)], whisker)))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x(s.p50_ns), y - 0.17), (x(s.p90_ns).max(x(s.p50_ns) * 1.02), y + 0.17)],
                r.color.filled(),
            )))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x(s.p50_ns), y - 0.26), (x(s.p50_ns), y + 0.26)],
                ShapeStyle::from(&BLACK).stroke_width(2),
            )))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Polygon::new(diamond(x(s.p99_ns), y, dx), ShapeStyle::from(&P99).filled())))
            .map_err(err)?;
    }
    Ok(())
}

/// The key to the marks, in a strip of its own above the panels so it never
/// hides data.
fn legend(area: &DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), String> {
    let text = TextStyle::from((FONT, 13).into_font()).color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
    let y = 18;
    let mut x = 24;
    let gray = ShapeStyle::from(&BLACK.mix(0.45)).stroke_width(2);
    area.draw(&PathElement::new(vec![(x, y), (x + 26, y)], gray)).map_err(err)?;
    area.draw(&Text::new("min … max", (x + 32, y), text.clone())).map_err(err)?;
    x += 130;
    area.draw(&Rectangle::new([(x, y - 6), (x + 26, y + 6)], RGBColor(120, 120, 120).filled())).map_err(err)?;
    area.draw(&Text::new("p50 … p90", (x + 32, y), text.clone())).map_err(err)?;
    x += 130;
    area.draw(&PathElement::new(vec![(x + 4, y - 9), (x + 4, y + 9)], ShapeStyle::from(&BLACK).stroke_width(2)))
        .map_err(err)?;
    area.draw(&Text::new("p50", (x + 14, y), text.clone())).map_err(err)?;
    x += 70;
    area.draw(&Polygon::new(vec![(x + 7, y - 7), (x + 14, y), (x + 7, y + 7), (x, y)], P99.filled())).map_err(err)?;
    area.draw(&Text::new("p99", (x + 20, y), text.clone())).map_err(err)?;
    x += 70;
    area.draw(&Rectangle::new([(x, y - 2), (x + 8, y + 8)], BLACK.mix(0.16).filled())).map_err(err)?;
    area.draw(&Rectangle::new([(x + 9, y - 8), (x + 17, y + 8)], BLACK.mix(0.16).filled())).map_err(err)?;
    area.draw(&Text::new("log2 histogram", (x + 24, y), text.clone())).map_err(err)?;
    x += 140;
    for (name, color) in [("request→response", REQUEST), ("TCP handshake", HANDSHAKE), ("DNS", DNS), ("hop", HOP)] {
        area.draw(&Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled())).map_err(err)?;
        area.draw(&Text::new(name, (x + 20, y), text.clone())).map_err(err)?;
        x += 40 + 8 * name.chars().count() as i32;
    }
    Ok(())
}

/// A diamond around (x, y) in data coordinates (x on a log axis).
fn diamond(x: f64, y: f64, dx: f64) -> Vec<(f64, f64)> {
    vec![(x, y - 0.2), (x * dx, y), (x, y + 0.2), (x / dx, y)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::report::{FlowRow, HopMatching, HopRow};
    use crate::latency::stats::Latencies;

    #[test]
    fn svg_has_rows_and_figures_and_html_wraps_it() {
        let mut l = Latencies::default();
        for v in [20_000_000u64, 21_000_000, 25_000_000] {
            l.record(v);
        }
        let stats = l.summary();
        let report = Report {
            packets: 10,
            flows: vec![FlowRow {
                metric: Metric::TcpRequestResponse,
                protocol: "tcp".into(),
                client: "netns:a".into(),
                server: "netns:b".into(),
                server_port: 7000,
                seen_at: "client".into(),
                connections: 1,
                retransmissions: 0,
                resets: 0,
                dns_unanswered: 0,
                stats: stats.clone(),
            }],
            hops: vec![HopRow {
                from: "netns:a eth0 out".into(),
                to: "netns:b eth0 in".into(),
                protocol: "tcp".into(),
                stats,
            }],
            hop_matching: HopMatching::default(),
        };
        let s = svg(&report).unwrap();
        assert!(s.starts_with("<svg"));
        assert!(s.contains("netns:a → netns:b:7000"));
        assert!(s.contains("p50 21.0ms  p90 25.0ms"), "{s}");
        let h = html(&report).unwrap();
        assert!(h.contains("<svg") && h.contains("request→response"));
        assert!(svg(&Report::default()).unwrap().contains("no samples"));
    }

    #[test]
    fn format_from_extension() {
        assert_eq!(PlotFormat::from_path(Path::new("a.SVG")), Some(PlotFormat::Svg));
        assert_eq!(PlotFormat::from_path(Path::new("a.html")), Some(PlotFormat::Html));
        assert_eq!(PlotFormat::from_path(Path::new("a.png")), None);
    }
}
