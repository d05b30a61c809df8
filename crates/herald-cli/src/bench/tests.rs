//! Unit tests of the suite's pure parts: matching submits with receipts, medians and
//! percentiles, the sink's id scan, histograms and the HTML's self-containment.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::bench::report::{self, Histogram, Measured, Report, Run, Scenario};
use crate::bench::sink::broadcast_id;
use crate::bench::suite::match_latencies;
use crate::bench::{median, percentile_ms};

#[test]
fn latencies_pair_each_first_receipt_with_its_submit_for_the_measured_destinations() {
    let submitted = "b1\t1000\nb2\t2000\n";
    // b1 reached bench-0 twice (a resent copy is not a new delivery), bench-1 once; the
    // dead destination and an unknown id are left out.
    let received = "bench-0\tb1\t1500\nbench-0\tb1\t9000\nbench-1\tb1\t1700\n\
                    bench-0\tb2\t2100\ndead\tb2\t2200\nbench-0\tzz\t3000\nbroken line\n";
    let names = vec!["bench-0".to_string(), "bench-1".to_string()];
    let latencies = match_latencies(submitted, received, &names);
    let nanos: Vec<u128> = latencies.iter().map(Duration::as_nanos).collect();
    assert_eq!(nanos, [100, 500, 700]);
}

#[test]
fn medians_and_percentiles() {
    assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    assert_eq!(median(&[f64::NAN, 5.0]), 5.0);
    assert!(median(&[]).is_nan());
    let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
    assert_eq!(percentile_ms(&sorted, 50.0), 51.0);
    assert_eq!(percentile_ms(&sorted, 99.0), 99.0);
    assert_eq!(percentile_ms(&sorted, 100.0), 100.0);
    assert!(percentile_ms(&[], 50.0).is_nan());
}

#[test]
fn the_sink_finds_the_broadcast_id_without_parsing() {
    let body = br#"{"type":"message.created","data":{"broadcast_id":"b_01J","destination":"x"}}"#;
    assert_eq!(broadcast_id(body), Some("b_01J"));
    assert_eq!(broadcast_id(br#"{"data":{}}"#), None);
    assert_eq!(broadcast_id(br#"{"broadcast_id":"unterminated"#), None);
}

#[test]
fn histogram_buckets_are_log_spaced_and_count_everything() {
    let latencies =
        [0.05, 0.1, 0.11, 1.0, 5.0, 250_000.0].map(|ms| Duration::from_secs_f64(ms / 1000.0));
    let h = Histogram::of(&latencies);
    assert_eq!(h.counts.iter().sum::<u64>(), 6);
    assert_eq!(h.counts[0], 2, "0.05 and 0.1 ms in the first bucket");
    assert!((h.upper_ms[10] - 1.0).abs() < 1e-9);
    assert_eq!(h.counts[10], 1, "1 ms");
    assert_eq!(h.counts[h.counts.len() - 1], 1, "past the last bound: the open bucket");
}

#[test]
fn runs_merge_by_case_into_medians_and_the_html_needs_nothing_from_outside() {
    let run = |rate: f64| {
        let mut herald = BTreeMap::new();
        herald.insert("deliveries_per_s".to_string(), rate);
        Measured {
            case: "5 webhooks".into(),
            run: Run { herald, raw: BTreeMap::new(), notes: vec!["a <note>".into()] },
            latencies: vec![Duration::from_millis(2)],
            timeline: vec![(0.0, rate), (0.1, rate)],
            ..Measured::default()
        }
    };
    let cases = report::merge(vec![run(3.0), run(1.0), run(2.0)]);
    assert_eq!(cases.len(), 1);
    assert_eq!(cases[0].runs.len(), 3);
    assert_eq!(cases[0].median["deliveries_per_s"], 2.0);
    let report = Report {
        herald_version: "0.0.0".into(),
        machine: BTreeMap::new(),
        started_unix_s: 0,
        settings: BTreeMap::new(),
        scenarios: vec![Scenario {
            name: "throughput".into(),
            method: "m".into(),
            cases,
            skipped: None,
        }],
    };
    let html = report::html(&report);
    assert!(html.contains("<svg") && html.contains("a &lt;note&gt;"));
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("<link"));
}
