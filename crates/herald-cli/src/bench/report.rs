//! The suite's results and their three renderings: a table for the terminal, JSON for
//! scripts and CI, and a self-contained HTML page (inline SVG, no script, no external
//! asset) with latency histograms and throughput-over-time plots.
//!
//! Figures are kept as named numbers (`metric -> value`) per run, herald's beside the
//! raw baseline's of the same run, and summarised as the median over runs: the
//! renderings need no knowledge of what a scenario measures.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use crate::bench::median;

/// Named figures of one side (herald or raw) of one run.
pub type Metrics = BTreeMap<String, f64>;

/// Everything one suite run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The herald version measured.
    pub herald_version: String,
    /// What the machine was (`nproc`, CPU model, kernel).
    pub machine: BTreeMap<String, String>,
    /// When the suite started, Unix seconds.
    pub started_unix_s: u64,
    /// The settings, as given on the command line or defaulted.
    pub settings: BTreeMap<String, String>,
    /// One per scenario run, in order.
    pub scenarios: Vec<Scenario>,
}

/// One scenario: what it does, and its cases.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    /// `throughput`, `latency`, `backlog`, `outage` or `retry`.
    pub name: String,
    /// How it is set up and what the raw baseline is, in a sentence or two.
    pub method: String,
    /// Its cases (e.g. webhooks × clients).
    pub cases: Vec<Case>,
    /// Why it did not run, if it did not.
    pub skipped: Option<String>,
}

/// One case of a scenario over all runs.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    /// E.g. `5 webhooks, 32 clients`.
    pub name: String,
    /// Every run, in order.
    pub runs: Vec<Run>,
    /// The median of each herald figure over the runs.
    pub median: Metrics,
    /// The median of each raw-baseline figure over the runs.
    pub raw_median: Metrics,
    /// Submit→delivered latency of herald's deliveries in the first run.
    pub histogram: Option<Histogram>,
    /// The same for the raw baseline (send→receipt).
    pub raw_histogram: Option<Histogram>,
    /// Deliveries per second over time in the first run: (seconds since the load
    /// started, rate in the bucket).
    pub timeline: Vec<(f64, f64)>,
    /// The same for the raw baseline.
    pub raw_timeline: Vec<(f64, f64)>,
}

/// One run of one case.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Run {
    /// herald's figures.
    pub herald: Metrics,
    /// The raw baseline's figures, same sink, same client, same run.
    pub raw: Metrics,
    /// What went differently than planned (a time cap cut a phase, requests failed).
    pub notes: Vec<String>,
}

/// Latencies counted into log-spaced buckets.
#[derive(Debug, Clone, Serialize)]
pub struct Histogram {
    /// Each bucket's upper bound, ms (10 per decade from 0.1 ms; the last is open).
    pub upper_ms: Vec<f64>,
    /// How many latencies fell into each bucket.
    pub counts: Vec<u64>,
}

impl Histogram {
    /// `latencies` counted into 10 buckets per decade from 0.1 ms to 100 s.
    pub fn of(latencies: &[Duration]) -> Histogram {
        let upper_ms: Vec<f64> = (0..=60).map(|i| 0.1 * 10f64.powf(f64::from(i) / 10.0)).collect();
        let mut counts = vec![0; upper_ms.len()];
        for latency in latencies {
            let ms = latency.as_secs_f64() * 1000.0;
            let idx = upper_ms.iter().position(|&upper| ms <= upper).unwrap_or(upper_ms.len() - 1);
            counts[idx] += 1;
        }
        Histogram { upper_ms, counts }
    }
}

/// What a scenario's run yields for one case, before runs are merged.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// The case's name.
    pub case: String,
    /// The figures.
    pub run: Run,
    /// herald's latencies (sorted), for the histogram.
    pub latencies: Vec<Duration>,
    /// The raw baseline's latencies.
    pub raw_latencies: Vec<Duration>,
    /// herald's deliveries per second over time.
    pub timeline: Vec<(f64, f64)>,
    /// The raw baseline's.
    pub raw_timeline: Vec<(f64, f64)>,
}

/// Merges the runs of each case (in the order cases first appear) and takes medians;
/// the plots come from each case's first run.
pub fn merge(measured: Vec<Measured>) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    for m in measured {
        let idx = match cases.iter().position(|c| c.name == m.case) {
            Some(idx) => idx,
            None => {
                let histogram = |l: &[Duration]| (!l.is_empty()).then(|| Histogram::of(l));
                cases.push(Case {
                    name: m.case.clone(),
                    runs: Vec::new(),
                    median: Metrics::new(),
                    raw_median: Metrics::new(),
                    histogram: histogram(&m.latencies),
                    raw_histogram: histogram(&m.raw_latencies),
                    timeline: m.timeline.clone(),
                    raw_timeline: m.raw_timeline.clone(),
                });
                cases.len() - 1
            }
        };
        cases[idx].runs.push(m.run);
    }
    for case in &mut cases {
        case.median = medians(case.runs.iter().map(|r| &r.herald));
        case.raw_median = medians(case.runs.iter().map(|r| &r.raw));
    }
    cases
}

/// The median of every metric that appears in any of `runs`.
fn medians<'a>(runs: impl Iterator<Item = &'a Metrics> + Clone) -> Metrics {
    let keys: std::collections::BTreeSet<&String> = runs.clone().flat_map(|m| m.keys()).collect();
    keys.into_iter()
        .map(|key| {
            let values: Vec<f64> = runs.clone().filter_map(|m| m.get(key).copied()).collect();
            (key.clone(), median(&values))
        })
        .collect()
}

/// A figure as people read it: whole numbers above 100, two decimals below.
fn number(value: f64) -> String {
    if value.is_nan() {
        "-".to_string()
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// Writes the terminal table: per case, each figure's median, herald beside raw.
///
/// # Errors
/// When `out` cannot be written.
pub fn table(report: &Report, out: &mut impl Write) -> std::io::Result<()> {
    for scenario in &report.scenarios {
        writeln!(out)?;
        writeln!(out, "== {} ==", scenario.name)?;
        if let Some(why) = &scenario.skipped {
            writeln!(out, "  skipped: {why}")?;
            continue;
        }
        for case in &scenario.cases {
            writeln!(
                out,
                "  {:<44} {:>14} {:>14}",
                case.name,
                format!("herald ({})", case.runs.len()),
                "raw, same run"
            )?;
            for line in rows(case) {
                writeln!(out, "    {:<42} {:>14} {:>14}", line.0, line.1, line.2)?;
            }
            for (idx, run) in case.runs.iter().enumerate() {
                for note in &run.notes {
                    writeln!(out, "    note (run {}): {note}", idx + 1)?;
                }
            }
        }
    }
    Ok(())
}

/// (metric, herald median, raw median) rows of a case: herald's metrics first, then the
/// raw-only ones.
fn rows(case: &Case) -> Vec<(String, String, String)> {
    let mut res: Vec<(String, String, String)> = case
        .median
        .iter()
        .map(|(key, value)| {
            let raw = case.raw_median.get(key).map_or(String::new(), |v| number(*v));
            (key.clone(), number(*value), raw)
        })
        .collect();
    for (key, value) in &case.raw_median {
        if !case.median.contains_key(key) {
            res.push((key.clone(), String::new(), number(*value)));
        }
    }
    res
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The HTML report: one page, styles inline, plots as inline SVG.
pub fn html(report: &Report) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>herald bench</title><style>\
         body{{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}}\
         table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}\
         td:first-child,th:first-child{{text-align:left}}h2{{margin-top:2em}}.note{{color:#a40}}\
         .plots{{display:flex;flex-wrap:wrap;gap:1em}}svg{{background:#fafafa;border:1px solid #ddd}}\
         </style></head><body>\n<h1>herald bench</h1>\n<p>herald {} · started at Unix time {} · \
         every figure is the median of the runs; <em>raw</em> is the same load client straight \
         to the same sink in the same run.</p>\n",
        escape(&report.herald_version),
        report.started_unix_s
    );
    page.push_str("<table><tr><th>machine</th><th></th></tr>");
    for (key, value) in &report.machine {
        let _ = write!(page, "<tr><td>{}</td><td>{}</td></tr>", escape(key), escape(value));
    }
    page.push_str("</table>\n<details><summary>settings</summary><table>");
    for (key, value) in &report.settings {
        let _ = write!(page, "<tr><td>{}</td><td>{}</td></tr>", escape(key), escape(value));
    }
    page.push_str("</table></details>\n");
    for scenario in &report.scenarios {
        let _ = write!(
            page,
            "<h2>{}</h2>\n<p>{}</p>\n",
            escape(&scenario.name),
            escape(&scenario.method)
        );
        if let Some(why) = &scenario.skipped {
            let _ = writeln!(page, "<p class=\"note\">Skipped: {}</p>", escape(why));
            continue;
        }
        for case in &scenario.cases {
            let _ = write!(page, "<h3>{}</h3>\n<table><tr><th>figure</th>", escape(&case.name));
            let _ = write!(page, "<th>herald (median of {})</th><th>raw</th>", case.runs.len());
            for idx in 0..case.runs.len() {
                let _ = write!(page, "<th>herald run {}</th>", idx + 1);
            }
            page.push_str("</tr>");
            for (key, herald, raw) in rows(case) {
                let _ =
                    write!(page, "<tr><td>{}</td><td>{herald}</td><td>{raw}</td>", escape(&key));
                for run in &case.runs {
                    let value = run.herald.get(&key).map_or(String::new(), |v| number(*v));
                    let _ = write!(page, "<td>{value}</td>");
                }
                page.push_str("</tr>");
            }
            page.push_str("</table>\n");
            for (idx, run) in case.runs.iter().enumerate() {
                for note in &run.notes {
                    let _ =
                        writeln!(page, "<p class=\"note\">Run {}: {}</p>", idx + 1, escape(note));
                }
            }
            page.push_str("<div class=\"plots\">");
            if case.histogram.is_some() || case.raw_histogram.is_some() {
                page.push_str(&histogram_svg(case.histogram.as_ref(), case.raw_histogram.as_ref()));
            }
            if !case.timeline.is_empty() || !case.raw_timeline.is_empty() {
                page.push_str(&timeline_svg(&case.timeline, &case.raw_timeline));
            }
            page.push_str("</div>\n");
        }
    }
    page.push_str("</body></html>\n");
    page
}

const WIDTH: f64 = 520.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 56.0;
const BOTTOM: f64 = 36.0;
const TOP: f64 = 24.0;
const HERALD_COLOR: &str = "#2a6fdb";
const RAW_COLOR: &str = "#999";

/// Latency histogram: share of deliveries per log-spaced bucket, herald's bars over the
/// raw baseline's outline.
fn histogram_svg(herald: Option<&Histogram>, raw: Option<&Histogram>) -> String {
    let mut svg = frame("submit → delivered latency (share per bucket, log scale)");
    let Some(reference) = herald.or(raw) else { return String::new() };
    // Show the decades that hold any latency, at least one.
    let used = |h: Option<&Histogram>| {
        h.map(|h| {
            let first = h.counts.iter().position(|&c| c > 0).unwrap_or(0);
            let last = h.counts.iter().rposition(|&c| c > 0).unwrap_or(0);
            (first, last)
        })
    };
    let spans: Vec<(usize, usize)> = [used(herald), used(raw)].into_iter().flatten().collect();
    let lo = spans.iter().map(|s| s.0).min().unwrap_or(0) / 10 * 10;
    let hi = (spans.iter().map(|s| s.1).max().unwrap_or(0) / 10 + 1) * 10;
    let hi = hi.min(reference.upper_ms.len());
    let n = hi.saturating_sub(lo).max(1);
    let plot_w = WIDTH - LEFT - 10.0;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let bar_w = plot_w / n as f64;
    let share = |h: &Histogram, idx: usize| {
        let total: u64 = h.counts.iter().sum();
        if total == 0 { 0.0 } else { h.counts[idx] as f64 / total as f64 }
    };
    let max_share = (lo..hi)
        .flat_map(|idx| [herald.map(|h| share(h, idx)), raw.map(|h| share(h, idx))])
        .flatten()
        .fold(0.0f64, f64::max)
        .max(1e-9);
    for idx in lo..hi {
        let x = LEFT + (idx - lo) as f64 * bar_w;
        if let Some(h) = herald {
            let height = share(h, idx) / max_share * plot_h;
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{height:.1}\" fill=\"{HERALD_COLOR}\"/>",
                TOP + plot_h - height,
                (bar_w - 1.0).max(1.0)
            );
        }
        if let Some(h) = raw {
            let height = share(h, idx) / max_share * plot_h;
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{height:.1}\" fill=\"none\" stroke=\"{RAW_COLOR}\"/>",
                TOP + plot_h - height,
                (bar_w - 1.0).max(1.0)
            );
        }
    }
    // Decade ticks at the upper edge of every tenth bucket: 0.1 ms, 1 ms, 10 ms...
    for idx in (lo..hi).step_by(10) {
        let x = LEFT + (idx - lo + 1) as f64 * bar_w;
        let _ = write!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#666\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{} ms</text>",
            TOP + plot_h,
            TOP + plot_h + 4.0,
            TOP + plot_h + 16.0,
            number(reference.upper_ms[idx])
        );
    }
    legend(&mut svg);
    svg.push_str("</svg>");
    svg
}

/// Deliveries per second over time, herald's line beside the raw baseline's.
fn timeline_svg(herald: &[(f64, f64)], raw: &[(f64, f64)]) -> String {
    let mut svg = frame("deliveries per second over time (100 ms buckets)");
    let all = herald.iter().chain(raw);
    let max_t = all.clone().map(|p| p.0).fold(0.0f64, f64::max).max(0.1);
    let max_y = all.map(|p| p.1).fold(0.0f64, f64::max).max(1.0);
    let plot_w = WIDTH - LEFT - 10.0;
    let plot_h = HEIGHT - TOP - BOTTOM;
    for (points, color) in [(raw, RAW_COLOR), (herald, HERALD_COLOR)] {
        if points.is_empty() {
            continue;
        }
        let path: Vec<String> = points
            .iter()
            .map(|(t, y)| {
                format!("{:.1},{:.1}", LEFT + t / max_t * plot_w, TOP + plot_h - y / max_y * plot_h)
            })
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>",
            path.join(" ")
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}/s</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">0</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{} s</text>",
        LEFT - 4.0,
        TOP + 10.0,
        number(max_y),
        LEFT - 4.0,
        TOP + plot_h,
        LEFT + plot_w,
        TOP + plot_h + 16.0,
        number(max_t)
    );
    legend(&mut svg);
    svg.push_str("</svg>");
    svg
}

/// An SVG element with axes and a title.
fn frame(title: &str) -> String {
    let plot_h = HEIGHT - TOP - BOTTOM;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\"><title>{t}</title>\
         <text x=\"{LEFT}\" y=\"16\" font-size=\"12\">{t}</text>\
         <line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{b}\" stroke=\"#666\"/>\
         <line x1=\"{LEFT}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#666\"/>",
        t = escape(title),
        b = TOP + plot_h,
        r = WIDTH - 10.0
    )
}

/// The herald/raw key in the top right corner.
fn legend(svg: &mut String) {
    let x = WIDTH - 130.0;
    let _ = write!(
        svg,
        "<rect x=\"{x}\" y=\"28\" width=\"10\" height=\"10\" fill=\"{HERALD_COLOR}\"/>\
         <text x=\"{}\" y=\"37\" font-size=\"11\">herald</text>\
         <rect x=\"{x}\" y=\"44\" width=\"10\" height=\"10\" fill=\"none\" stroke=\"{RAW_COLOR}\"/>\
         <text x=\"{}\" y=\"53\" font-size=\"11\">raw baseline</text>",
        x + 14.0,
        x + 14.0
    );
}
