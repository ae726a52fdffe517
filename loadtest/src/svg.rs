//! The `--svg` report: latency histograms (TTFT, ITL, E2EL) and a per-second throughput timeline, drawn as
//! hand-written SVG with no dependency.

use std::fmt::Write;

use crate::record::Record;
use crate::report::{collect, error_list, stall_text, Results};
use crate::stats;

/// `writeln!` into a `String`, which cannot fail.
macro_rules! w {
    ($($arg:tt)*) => {
        let _ = writeln!($($arg)*);
    };
}

/// Drawing width of the SVG in user units (pixels at 100 %).
const SVG_WIDTH: f64 = 960.0;
/// Height of one panel: title, subtitle, plot and x labels.
const PANEL_HEIGHT: f64 = 230.0;
/// Left edge of the plots, leaving room for the y labels.
const PLOT_LEFT: f64 = 70.0;
/// Right edge of the plots.
const PLOT_RIGHT: f64 = SVG_WIDTH - 20.0;
/// Top of the plot within a panel, below title and subtitle.
const PLOT_TOP: f64 = 48.0;
/// Bottom of the plot within a panel: the x axis.
const PLOT_BOTTOM: f64 = 198.0;
/// Buckets per latency histogram: fine enough to show modes, coarse enough for a few hundred samples.
const HISTOGRAM_BUCKETS: usize = 60;

/// Escapes text for XML content and attribute values (URLs carry `&`).
fn escape(text: &str) -> String {
    let entities = [
        ('&', "&amp;"),
        ('<', "&lt;"),
        ('>', "&gt;"),
        ('"', "&quot;"),
        ('\'', "&apos;"),
    ];
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match entities.iter().find(|(raw, _)| *raw == c) {
            Some((_, entity)) => out.push_str(entity),
            None => out.push(c),
        }
    }
    out
}

/// One bar chart of the SVG; `series` are `(values, colour)`, stacked bottom-up per bar.
struct Panel {
    title: &'static str,
    subtitle: String,
    x_labels: [String; 2],
    series: Vec<(Vec<f64>, &'static str)>,
}

fn write_panel(out: &mut String, top: f64, panel: &Panel) {
    let (title, subtitle) = (escape(panel.title), escape(&panel.subtitle));
    let (left, right) = (escape(&panel.x_labels[0]), escape(&panel.x_labels[1]));
    let (y_label_x, x_label_y) = (PLOT_LEFT - 6.0, PLOT_BOTTOM + 16.0);
    w!(
        out,
        r##"<g transform="translate(0,{top})">
<text x="{PLOT_LEFT}" y="20" font-size="15" font-weight="bold">{title}</text>
<text x="{PLOT_LEFT}" y="37" font-size="11" fill="#555">{subtitle}</text>
<path d="M{PLOT_LEFT} {PLOT_TOP} V{PLOT_BOTTOM} H{PLOT_RIGHT}" fill="none" stroke="#333"/>
<text x="{y_label_x}" y="{PLOT_BOTTOM}" font-size="11" text-anchor="end">0</text>
<text x="{PLOT_LEFT}" y="{x_label_y}" font-size="11">{left}</text>
<text x="{PLOT_RIGHT}" y="{x_label_y}" font-size="11" text-anchor="end">{right}</text>"##
    );
    let len = panel.series.first().map_or(0, |(values, _)| values.len());
    let bar_total = |i: usize| -> f64 { panel.series.iter().map(|(values, _)| values[i]).sum() };
    let peak = (0..len).map(bar_total).fold(0.0, f64::max);
    if peak <= 0.0 {
        let (x, y) = (SVG_WIDTH / 2.0, (PLOT_TOP + PLOT_BOTTOM) / 2.0);
        w!(
            out,
            r#"<text x="{x}" y="{y}" font-size="13" text-anchor="middle">no samples</text>"#
        );
        out.push_str("</g>\n");
        return;
    }
    let y = PLOT_TOP + 4.0;
    w!(
        out,
        r#"<text x="{y_label_x}" y="{y}" font-size="11" text-anchor="end">{peak:.0}</text>"#
    );
    let scale = (PLOT_BOTTOM - PLOT_TOP) / peak;
    let width = (PLOT_RIGHT - PLOT_LEFT) / len as f64;
    let bar = (width * 0.9).max(0.5);
    for i in 0..len {
        let (x, mut base) = (PLOT_LEFT + i as f64 * width, PLOT_BOTTOM);
        for (values, fill) in &panel.series {
            let height = values[i] * scale;
            if height > 0.0 {
                base -= height;
                let (x, y, h) = (
                    format!("{x:.2}"),
                    format!("{base:.2}"),
                    format!("{height:.2}"),
                );
                w!(
                    out,
                    r#"<rect x="{x}" y="{y}" width="{bar:.2}" height="{h}" fill="{fill}"/>"#
                );
            }
        }
    }
    out.push_str("</g>\n");
}

/// A latency histogram over [min, p99.9]; the tail beyond is counted in the subtitle, not drawn.
fn distribution(title: &'static str, samples: &mut [f64]) -> Panel {
    let mut panel = Panel {
        title,
        subtitle: String::new(),
        x_labels: Default::default(),
        series: vec![],
    };
    let Some(s) = stats::summarize(samples) else {
        return panel;
    };
    let hi = if s.p999 > s.min { s.p999 } else { s.max };
    let hist = stats::histogram(samples, s.min, hi, HISTOGRAM_BUCKETS);
    let (n, p50, p90, p99, max, above) = (s.count, s.p50, s.p90, s.p99, s.max, hist.above);
    panel.subtitle = format!("n={n}  p50 {p50:.2}  p90 {p90:.2}  p99 {p99:.2}  max {max:.2} ms");
    panel.subtitle += &format!("; {above} above p99.9 not drawn");
    panel.x_labels = [format!("{:.2} ms", s.min), format!("{hi:.2} ms")];
    panel
        .series
        .push((hist.counts.iter().map(|&c| c as f64).collect(), "#4878d0"));
    panel
}

/// An SVG report for `target`: TTFT, ITL and E2EL histograms, then requests and output tokens per whole
/// second (failures in red). Self-contained: no scripts, no external fonts or styles.
pub fn write_svg(records: &[Record], r: &Results, target: u8) -> String {
    let mut s = collect(records, target, false);
    let time = stats::timeline(records, target);
    let end = time.start + time.completed.len() as u64;
    let x_labels = [format!("{} s", time.start), format!("{end} s")];
    let panels = [
        distribution("TTFT distribution (ms)", &mut s.ttft),
        distribution("ITL distribution (ms)", &mut s.itl),
        distribution("E2EL distribution (ms)", &mut s.e2el),
        Panel {
            title: "Requests per second",
            subtitle: format!(
                "completed (blue) and failed (red) requests per whole second of the run; client stalls: {}",
                stall_text(&r.info.stalls)
            ),
            x_labels: x_labels.clone(),
            series: vec![(time.completed, "#4878d0"), (time.failed, "#d65f5f")],
        },
        Panel {
            title: "Output tokens per second",
            subtitle: "output tokens per whole second, when the events carrying them arrived"
                .into(),
            x_labels,
            series: vec![(time.output_tokens, "#6acc64")],
        },
    ];
    let height = 60.0 + panels.len() as f64 * PANEL_HEIGHT;
    let heading = escape(&format!("standin-load: {} [{}]", r.info.label, r.info.mode));
    let (ok, bad, errors) = (r.completed, r.failed_total, error_list(&r.failed));
    let (rps, ops) = (r.request_throughput, r.output_throughput);
    let secs = r.info.duration.as_secs_f64();
    let summary =
        format!("{ok} completed, {bad} failed ({errors}), {rps:.2} req/s, {ops:.1} output tok/s");
    let summary = escape(&format!("{summary} over {secs:.2} s"));
    let mut out = String::new();
    w!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{SVG_WIDTH}" height="{height}" viewBox="0 0 {SVG_WIDTH} {height}" font-family="sans-serif">
<title>{heading}</title>
<rect width="100%" height="100%" fill="white"/>
<text x="{PLOT_LEFT}" y="28" font-size="17" font-weight="bold">{heading}</text>
<text x="{PLOT_LEFT}" y="48" font-size="12">{summary}</text>"#
    );
    for (i, panel) in panels.iter().enumerate() {
        write_panel(&mut out, 60.0 + i as f64 * PANEL_HEIGHT, panel);
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Failure;
    use crate::report::compute;
    use crate::report::tests::{info, request};
    use crate::report::RunInfo;

    /// Checks that every tag is closed in order and every `&` starts an entity: enough XML to trust a browser.
    fn assert_balanced(svg: &str) {
        let (mut stack, mut rest) = (Vec::new(), svg);
        while let Some(open) = rest.find('<') {
            let close = rest[open..].find('>').expect("unterminated tag") + open;
            let tag = &rest[open + 1..close];
            assert!(!tag.contains('<'), "stray < in {tag}");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop(), Some(name), "mismatched </{name}>");
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().unwrap());
            }
            rest = &rest[close + 1..];
        }
        assert!(stack.is_empty(), "unclosed {stack:?}");
        for (i, _) in svg.match_indices('&') {
            let entities = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"];
            assert!(
                entities.iter().any(|e| svg[i..].starts_with(e)),
                "bare & at {i}"
            );
        }
    }

    #[test]
    fn svg_is_balanced_and_has_every_panel() {
        let mut records: Vec<Record> = (0..300).map(request).collect();
        records[7].failure = Some(Failure::Io);
        let svg = write_svg(&records, &compute(&records, 0, &info(false)), 0);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert_balanced(&svg);
        let titles = [
            "TTFT distribution (ms)",
            "ITL distribution (ms)",
            "E2EL distribution (ms)",
        ];
        for title in titles
            .iter()
            .chain(&["Requests per second", "Output tokens per second"])
        {
            assert!(svg.contains(&format!(">{title}</text>")), "missing {title}");
        }
        assert!(svg.contains("a=1&amp;b=2"), "label is escaped");
        assert!(svg.contains("#d65f5f"), "the failure is drawn");
        assert!(svg.contains("client stalls: not probed"), "{svg}");
    }

    #[test]
    fn svg_names_the_stalls_of_the_load_core() {
        let records: Vec<Record> = (0..30).map(request).collect();
        let mut results = compute(&records, 0, &info(false));
        results.info.stalls = crate::stalls::Summary {
            threshold: std::time::Duration::from_millis(5),
            count: 2,
            total: std::time::Duration::from_millis(30),
            longest: std::time::Duration::from_millis(20),
            longest_at: std::time::Duration::from_millis(1_500),
        };
        let svg = write_svg(&records, &results, 0);
        assert_balanced(&svg);
        let line =
            "client stalls: 2 of 5 ms or more on the harness&apos;s cores, 30.00 ms in all, \
                    longest 20.00 ms at 1.50 s";
        assert!(svg.contains(line), "{svg}");
    }

    #[test]
    fn svg_without_samples_says_so() {
        let svg = write_svg(&[], &compute(&[], 0, &RunInfo::default()), 0);
        assert_balanced(&svg);
        assert_eq!(svg.matches(">no samples</text>").count(), 5);
    }
}
