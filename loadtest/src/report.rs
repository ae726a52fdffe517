//! Turns [`Record`]s into results and renders them: a text table, an A/B comparison, and a JSON document
//! with vLLM `bench serve` field names (the SVG is `svg.rs`).
//!
//! Owns the choice of which records count (successful, not warm-up, the right target) and the units
//! (milliseconds, seconds). The arithmetic lives in `stats.rs`; sending and timing the requests is
//! `client.rs`'s and `workload.rs`'s job.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::record::Record;
use crate::stats::{self, Summary};

/// What the caller knows about the run that the records alone don't say.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// The server's URL, printed as the run's name.
    pub label: String,
    /// The load shape, e.g. `closed c=64` or `open rate=100 poisson`.
    pub mode: String,
    /// The measured window, warm-up excluded: the divisor of every throughput.
    pub duration: Duration,
    /// Most requests outstanding at once; below the target concurrency means the harness was the limit.
    pub peak_in_flight: usize,
    /// Whether requests asked for SSE streaming (TTFT, TPOT and ITL exist only then).
    pub stream: bool,
    /// Open loop: also report latencies from the scheduled send time.
    pub open_loop: bool,
    /// When the measured window's cores were taken from the harness (`stalls.rs`).
    pub stalls: crate::stalls::Summary,
}

/// Everything a run measured for one target; latencies in milliseconds.
#[derive(Debug, Clone)]
pub struct Results {
    /// The run this came from.
    pub info: RunInfo,
    /// Which server (0 = `--url`, 1 = `--compare`).
    pub target: u8,
    /// Successful requests outside warm-up.
    pub completed: usize,
    /// Failed requests outside warm-up, by [`Failure`](crate::record::Failure) `Display`.
    pub failed: BTreeMap<String, usize>,
    /// Sum of `failed`.
    pub failed_total: usize,
    /// Requests the client hung up on before the end (`--disconnect`), outside warm-up: neither completed
    /// nor failed, and in no latency or token figure.
    pub abandoned: usize,
    /// Warm-up requests (of either outcome), left out of everything else.
    pub warmup: usize,
    /// Prompt tokens of the completed requests.
    pub total_input_tokens: u64,
    /// Output tokens of the completed requests.
    pub total_output_tokens: u64,
    /// Completed requests whose output count came from a usage object rather than counting events.
    pub usage_reported: usize,
    /// Completed requests per second of `info.duration`.
    pub request_throughput: f64,
    /// Output tokens per second.
    pub output_throughput: f64,
    /// Input plus output tokens per second.
    pub total_token_throughput: f64,
    /// Time to first token by vLLM's rule (first event with `choices`).
    pub ttft: Option<Summary>,
    /// Time to first non-empty `delta.content`.
    pub ttft_content: Option<Summary>,
    /// Time per output token after the first, one sample per request.
    pub tpot: Option<Summary>,
    /// Inter-token latency: every gap between content events of every completed request.
    pub itl: Option<Summary>,
    /// End-to-end latency to the last token.
    pub e2el: Option<Summary>,
    /// How late requests left compared with their schedule: large means the harness, not the server, lagged.
    pub send_lag: Option<Summary>,
    /// Open loop only: TTFT from the scheduled send time (coordinated-omission corrected).
    pub ttft_co: Option<Summary>,
    /// Open loop only: E2EL from the scheduled send time.
    pub e2el_co: Option<Summary>,
    /// Mean events per request that arrived in the same read as the one before (ITL resolution is lost there).
    pub coalesced_events_mean: f64,
}

/// Raw per-metric samples in milliseconds, shared by [`compute`] and [`write_svg`].
#[derive(Default)]
pub(crate) struct Samples {
    pub(crate) ttft: Vec<f64>,
    ttft_content: Vec<f64>,
    tpot: Vec<f64>,
    pub(crate) itl: Vec<f64>,
    pub(crate) e2el: Vec<f64>,
    send_lag: Vec<f64>,
    ttft_co: Vec<f64>,
    e2el_co: Vec<f64>,
}

/// Integer nanoseconds over 1e6, so whole milliseconds come out exact (`as_secs_f64() * 1e3` does not).
fn ms(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e6
}

/// Samples of the records that enter latency statistics: this target, successful, not warm-up.
pub(crate) fn collect(records: &[Record], target: u8, open_loop: bool) -> Samples {
    let mut s = Samples::default();
    for rec in records.iter().filter(|r| r.target == target && r.counts()) {
        s.ttft.extend(rec.ttft().map(ms));
        s.ttft_content.extend(rec.ttft_content().map(ms));
        s.tpot.extend(rec.tpot().map(ms));
        s.itl.extend(rec.itl().map(ms));
        s.e2el.push(ms(rec.e2el()));
        s.send_lag.push(ms(rec.send_lag()));
        if open_loop {
            // From `intended`: the helpers measure from `sent`, and sent = intended + send_lag.
            s.ttft_co.extend(rec.ttft().map(|t| ms(t + rec.send_lag())));
            s.e2el_co.push(ms(rec.e2el() + rec.send_lag()));
        }
    }
    s
}

/// Summarizes `target`'s records. Failures and warm-up are counted but never enter latencies or tokens.
pub fn compute(records: &[Record], target: u8, info: &RunInfo) -> Results {
    let mut failed = BTreeMap::new();
    let (mut warmup, mut completed, mut input, mut output, mut usage, mut coalesced) =
        (0, 0, 0, 0, 0, 0);
    let mut abandoned = 0;
    for rec in records.iter().filter(|r| r.target == target) {
        if rec.warmup {
            warmup += 1;
        } else if rec.abandoned {
            abandoned += 1;
        } else if let Some(failure) = &rec.failure {
            *failed.entry(failure.to_string()).or_insert(0) += 1;
        } else {
            completed += 1;
            input += rec.prompt_tokens;
            output += rec.output_tokens;
            usage += usize::from(rec.usage_reported);
            coalesced += u64::from(rec.coalesced_events);
        }
    }
    // A zero window or no requests would divide by zero; 0 keeps the JSON finite and the run obviously empty.
    let divide = |x: f64, by: f64| if by > 0.0 { x / by } else { 0.0 };
    let seconds = info.duration.as_secs_f64();
    let mut s = collect(records, target, info.open_loop);
    Results {
        info: info.clone(),
        target,
        completed,
        failed_total: failed.values().sum(),
        failed,
        abandoned,
        warmup,
        total_input_tokens: input,
        total_output_tokens: output,
        usage_reported: usage,
        request_throughput: divide(completed as f64, seconds),
        output_throughput: divide(output as f64, seconds),
        total_token_throughput: divide((input + output) as f64, seconds),
        ttft: stats::summarize(&mut s.ttft),
        ttft_content: stats::summarize(&mut s.ttft_content),
        tpot: stats::summarize(&mut s.tpot),
        itl: stats::summarize(&mut s.itl),
        e2el: stats::summarize(&mut s.e2el),
        send_lag: stats::summarize(&mut s.send_lag),
        ttft_co: stats::summarize(&mut s.ttft_co),
        e2el_co: stats::summarize(&mut s.e2el_co),
        coalesced_events_mean: divide(coalesced as f64, completed as f64),
    }
}

/// The latency metrics in display order, with their JSON names; the `_co` pair only in open loop.
fn latencies(r: &Results) -> Vec<(&'static str, Option<&Summary>)> {
    let mut rows = vec![
        ("ttft", r.ttft.as_ref()),
        ("ttft_content", r.ttft_content.as_ref()),
        ("tpot", r.tpot.as_ref()),
        ("itl", r.itl.as_ref()),
        ("e2el", r.e2el.as_ref()),
        ("send_lag", r.send_lag.as_ref()),
    ];
    if r.info.open_loop {
        rows.push(("ttft_co", r.ttft_co.as_ref()));
        rows.push(("e2el_co", r.e2el_co.as_ref()));
    }
    rows
}

/// Reads one statistic out of a [`Summary`].
type Stat = fn(&Summary) -> f64;

/// JSON stat prefixes (`mean_ttft_ms` …) in output order.
const STATS: [(&str, Stat); 10] = [
    ("mean", |s| s.mean),
    ("median", |s| s.median),
    ("std", |s| s.std),
    ("min", |s| s.min),
    ("max", |s| s.max),
    ("p50", |s| s.p50),
    ("p90", |s| s.p90),
    ("p95", |s| s.p95),
    ("p99", |s| s.p99),
    ("p99_9", |s| s.p999),
];

/// `writeln!` into a `String`, which cannot fail.
macro_rules! w {
    ($($arg:tt)*) => {
        let _ = writeln!($($arg)*);
    };
}

/// Every number of a result, keyed by its JSON name, in a stable order (counts as JSON integers);
/// [`to_json`], [`compare_json`] and [`write_compare`] all read this one list so they cannot drift apart.
fn figures(r: &Results) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = vec![
        ("completed".into(), json!(r.completed)),
        ("failed".into(), json!(r.failed_total)),
        ("abandoned".into(), json!(r.abandoned)),
        ("duration".into(), json!(r.info.duration.as_secs_f64())),
        ("total_input_tokens".into(), json!(r.total_input_tokens)),
        ("total_output_tokens".into(), json!(r.total_output_tokens)),
        ("request_throughput".into(), json!(r.request_throughput)),
        ("output_throughput".into(), json!(r.output_throughput)),
        (
            "total_token_throughput".into(),
            json!(r.total_token_throughput),
        ),
    ];
    for (metric, summary) in latencies(r) {
        // vLLM writes `np.mean(x or 0)`: no samples reads 0, and `<metric>_samples` tells the two apart.
        for (stat, read) in STATS {
            out.push((
                format!("{stat}_{metric}_ms"),
                json!(summary.map_or(0.0, read)),
            ));
        }
        out.push((
            format!("{metric}_samples"),
            json!(summary.map_or(0, |s| s.count)),
        ));
    }
    out.push(("peak_in_flight".into(), json!(r.info.peak_in_flight)));
    out.push((
        "coalesced_events_mean".into(),
        json!(r.coalesced_events_mean),
    ));
    out.push(("warmup".into(), json!(r.warmup)));
    out.push(("usage_reported".into(), json!(r.usage_reported)));
    out
}

/// The result as JSON: vLLM `bench serve` names (`completed`, `mean_ttft_ms`, `p99_itl_ms`, …; p99.9 is
/// `p99_9_*`) plus ours (`errors`, `abandoned`, `peak_in_flight`, `*_ttft_content_ms`, `*_send_lag_ms`, `*_co_ms` in open
/// loop, `min_*`/`max_*`, `<metric>_samples`). Every number is finite: a metric without samples reads 0.
pub fn to_json(r: &Results) -> Value {
    let mut doc = Map::new();
    doc.insert("label".into(), json!(r.info.label));
    doc.insert("mode".into(), json!(r.info.mode));
    doc.insert("stream".into(), json!(r.info.stream));
    doc.insert("open_loop".into(), json!(r.info.open_loop));
    doc.insert("target".into(), json!(r.target));
    doc.insert("errors".into(), json!(r.failed));
    doc.extend(figures(r));
    doc.extend(stall_fields(&r.info.stalls));
    Value::Object(doc)
}

/// The core probe's figures. They describe the run, not a target, so `--compare` shows them once per side
/// and takes no ratio. A threshold of 0 means no probe ran.
fn stall_fields(s: &crate::stalls::Summary) -> Vec<(String, Value)> {
    vec![
        ("client_stall_threshold_ms".into(), json!(ms(s.threshold))),
        ("client_stalls".into(), json!(s.count)),
        ("client_stall_total_ms".into(), json!(ms(s.total))),
        ("max_client_stall_ms".into(), json!(ms(s.longest))),
        (
            "max_client_stall_at_s".into(),
            json!(s.longest_at.as_secs_f64()),
        ),
    ]
}

/// [`stall_fields`] in words, for the table's `client stalls` line and the SVG.
pub(crate) fn stall_text(s: &crate::stalls::Summary) -> String {
    let threshold = ms(s.threshold);
    if s.threshold.is_zero() {
        "not probed (--stall-ms 0)".into()
    } else if s.count == 0 {
        format!("none of {threshold} ms or more on the harness's cores")
    } else {
        format!(
            "{} of {threshold} ms or more on the harness's cores, {:.2} ms in all, longest {:.2} ms \
             at {:.2} s: latencies spanning them include them",
            s.count,
            ms(s.total),
            ms(s.longest),
            s.longest_at.as_secs_f64()
        )
    }
}

/// `b / a`, or `None` where `a` is 0 and no ratio exists.
fn ratio(a: &Value, b: &Value) -> Option<f64> {
    let (a, b) = (a.as_f64()?, b.as_f64()?);
    (a != 0.0).then(|| b / a)
}

/// Figures present in both, as `(key, a, b)`, then each error kind of either as `errors.<kind>`.
fn pairs(a: &Results, b: &Results) -> Vec<(String, Value, Value)> {
    let b_figures: BTreeMap<String, Value> = figures(b).into_iter().collect();
    let mut rows: Vec<_> = figures(a)
        .into_iter()
        .filter_map(|(key, av)| b_figures.get(&key).map(|bv| (key, av, bv.clone())))
        .collect();
    let count = |r: &Results, kind: &str| json!(r.failed.get(kind).copied().unwrap_or(0));
    let kinds: BTreeSet<&String> = a.failed.keys().chain(b.failed.keys()).collect();
    rows.extend(
        kinds
            .into_iter()
            .map(|k| (format!("errors.{k}"), count(a, k), count(b, k))),
    );
    rows
}

/// Two runs side by side: `{"a": …, "b": …, "ratio_b_over_a": {field: b/a or null}}` for every number,
/// error kinds as `errors.<kind>`. Above 1 means B is larger: slower for latencies, faster for throughputs.
pub fn compare_json(a: &Results, b: &Results) -> Value {
    let ratios: Map<String, Value> = pairs(a, b)
        .into_iter()
        .map(|(key, av, bv)| (key, json!(ratio(&av, &bv))))
        .collect();
    json!({ "a": to_json(a), "b": to_json(b), "ratio_b_over_a": ratios })
}

/// Renders errors as `http_503 2, timeout 3`, or `none`.
pub(crate) fn error_list(failed: &BTreeMap<String, usize>) -> String {
    let parts: Vec<String> = failed
        .iter()
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// Appends the human summary: counts, throughput, one latency row per metric, errors right below it.
pub fn write_table(out: &mut String, r: &Results) {
    let Results {
        info,
        completed,
        failed_total,
        abandoned,
        warmup,
        usage_reported,
        ..
    } = r;
    let (label, mode, peak) = (&info.label, &info.mode, info.peak_in_flight);
    let (secs, stream) = (
        info.duration.as_secs_f64(),
        if info.stream { ", stream" } else { "" },
    );
    let (input, output) = (r.total_input_tokens, r.total_output_tokens);
    let (rps, ops, tps) = (
        r.request_throughput,
        r.output_throughput,
        r.total_token_throughput,
    );
    let coalesced = r.coalesced_events_mean;
    w!(
        out,
        "{label}  [{mode}{stream}]
measured {secs:.2} s (warm-up excluded: {warmup} requests)
requests    {completed} completed, {failed_total} failed, {abandoned} abandoned by the client
tokens      {input} input, {output} output ({usage_reported} of {completed} counts from usage)
throughput  {rps:.2} req/s, {ops:.1} output tok/s, {tps:.1} total tok/s
peak in-flight {peak}, coalesced events per request {coalesced:.3}

latency (ms)       n      mean    median       std       p90       p99     p99.9       max"
    );
    for (metric, summary) in latencies(r) {
        let Some(s) = summary else {
            w!(out, "{metric:<14}{:>6}{:>10}", 0, "-");
            continue;
        };
        let cells: String = [s.mean, s.median, s.std, s.p90, s.p99, s.p999, s.max]
            .map(|x| format!("{x:>10.2}"))
            .concat();
        w!(out, "{metric:<14}{:>6}{cells}", s.count);
    }
    w!(
        out,
        "errors        {} (excluded from latencies)",
        error_list(&r.failed)
    );
    w!(out, "client stalls  {}", stall_text(&info.stalls));
    if info.open_loop {
        w!(
            out,
            "*_co: from the scheduled send time (coordinated omission corrected)"
        );
    }
}

/// Appends A and B side by side with B/A for every figure and every error kind of either.
pub fn write_compare(out: &mut String, a: &Results, b: &Results) {
    let (a_label, a_mode, b_label, b_mode) =
        (&a.info.label, &a.info.mode, &b.info.label, &b.info.mode);
    w!(out, "A  {a_label}  [{a_mode}]\nB  {b_label}  [{b_mode}]");
    w!(out, "{:<28}{:>14}{:>14}{:>10}", "", "A", "B", "B/A");
    let show = |v: &Value| {
        v.as_u64().map_or_else(
            || format!("{:.2}", v.as_f64().unwrap_or(0.0)),
            |n| n.to_string(),
        )
    };
    for (key, av, bv) in pairs(a, b) {
        let ratio = ratio(&av, &bv).map_or("-".into(), |x| format!("{x:.3}"));
        w!(
            out,
            "{key:<28}{:>14}{:>14}{ratio:>10}",
            show(&av),
            show(&bv)
        );
    }
    w!(out, "client stalls  {}", stall_text(&a.info.stalls));
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::record::Failure;

    fn close(got: f64, want: f64) {
        assert!(
            (got - want).abs() <= 1e-9 * want.abs().max(1.0),
            "got {got}, want {want}"
        );
    }

    /// Request `i`: sent at 10·i ms, first choice 10 + i ms later, five content events 2 ms apart,
    /// 5 output and 7 prompt tokens.
    pub(crate) fn request(i: u64) -> Record {
        let ms = Duration::from_millis;
        let (sent, first) = (ms(10 * i), ms(11 * i + 10));
        let events: Vec<Duration> = (0..5).map(|k| first + ms(2 * k)).collect();
        Record {
            intended: sent,
            sent,
            first_choice: Some(first),
            first_content: Some(first),
            last_token: events.last().copied(),
            end: first + ms(9),
            content_events: events,
            coalesced_events: (i % 2) as u32,
            output_tokens: 5,
            prompt_tokens: 7,
            usage_reported: true,
            ..Record::default()
        }
    }

    pub(crate) fn info(open_loop: bool) -> RunInfo {
        let mode = if open_loop {
            "open rate=100 poisson"
        } else {
            "closed c=64"
        };
        RunInfo {
            label: "http://127.0.0.1:8000/v1?a=1&b=2".into(),
            mode: mode.into(),
            duration: Duration::from_secs(1),
            peak_in_flight: 3,
            stream: true,
            open_loop,
            stalls: crate::stalls::Summary::default(),
        }
    }

    #[test]
    fn compute_exact_numbers_for_100_requests() {
        let records: Vec<Record> = (0..100).map(request).collect();
        let r = compute(&records, 0, &info(false));
        assert_eq!((r.completed, r.failed_total, r.warmup), (100, 0, 0));
        assert_eq!(
            (
                r.total_input_tokens,
                r.total_output_tokens,
                r.usage_reported
            ),
            (700, 500, 100)
        );
        close(r.request_throughput, 100.0);
        close(r.output_throughput, 500.0);
        close(r.total_token_throughput, 1200.0);
        close(r.coalesced_events_mean, 0.5);
        // TTFT is 10..=109 ms: mean 59.5, std sqrt((100² - 1) / 12), p90 at index 89.1 → 99.1.
        let ttft = r.ttft.unwrap();
        assert_eq!((ttft.count, ttft.min, ttft.max), (100, 10.0, 109.0));
        close(ttft.mean, 59.5);
        close(ttft.median, 59.5);
        close(ttft.std, (9999.0f64 / 12.0).sqrt());
        close(ttft.p90, 99.1);
        close(ttft.p95, 104.05);
        close(ttft.p99, 108.01);
        close(ttft.p999, 108.901);
        assert_eq!(r.ttft_content, r.ttft);
        // E2EL ends at the last event, 8 ms after the first; TPOT = 8 / (5 - 1); 4 gaps of 2 ms each.
        close(r.e2el.unwrap().mean, 67.5);
        close(r.e2el.unwrap().p99, 116.01);
        let tpot = r.tpot.unwrap();
        assert_eq!(
            (tpot.count, tpot.min, tpot.max, tpot.std),
            (100, 2.0, 2.0, 0.0)
        );
        let itl = r.itl.unwrap();
        assert_eq!((itl.count, itl.mean, itl.p999), (400, 2.0, 2.0));
        assert_eq!(r.send_lag.unwrap().max, 0.0);
        assert!(
            r.ttft_co.is_none() && r.e2el_co.is_none(),
            "closed loop has no _co figures"
        );
    }

    #[test]
    fn failures_counted_and_excluded_from_latency() {
        let mut records: Vec<Record> = (0..10).map(request).collect();
        let failures = [
            Failure::Timeout,
            Failure::Status(503),
            Failure::Timeout,
            Failure::Connect,
        ];
        for (i, failure) in failures.into_iter().enumerate() {
            // Huge latencies and tokens: any leak into the figures would show.
            let mut rec = request(1000 + i as u64);
            (rec.failure, rec.warmup) = (Some(failure), i == 3);
            records.push(rec);
        }
        records.push(Record {
            target: 1,
            ..request(6000)
        });

        let r = compute(&records, 0, &info(false));
        assert_eq!((r.completed, r.failed_total, r.warmup), (10, 3, 1));
        let want = BTreeMap::from([("http_503".to_string(), 1), ("timeout".to_string(), 2)]);
        assert_eq!(r.failed, want);
        assert_eq!(r.total_output_tokens, 50);
        assert_eq!(
            (
                r.ttft.unwrap().max,
                r.e2el.unwrap().count,
                r.itl.unwrap().count
            ),
            (19.0, 10, 40)
        );
        let mut table = String::new();
        write_table(&mut table, &r);
        assert!(
            table.contains("http_503 1, timeout 2 (excluded from latencies)"),
            "{table}"
        );
        assert!(table.contains("10 completed, 3 failed"), "{table}");
        assert_eq!(compute(&records, 1, &info(false)).completed, 1);
    }

    #[test]
    fn abandoned_requests_are_counted_apart() {
        let mut records: Vec<Record> = (0..6).map(request).collect();
        for i in [1, 4] {
            // Partial answers with huge times: any leak into the figures would show.
            records[i].abandoned = true;
            records[i].last_token = Some(Duration::from_secs(100));
        }
        records.push(Record {
            warmup: true,
            abandoned: true,
            ..request(9)
        });
        let r = compute(&records, 0, &info(false));
        assert_eq!(
            (r.completed, r.failed_total, r.abandoned, r.warmup),
            (4, 0, 2, 1)
        );
        assert_eq!(r.total_output_tokens, 20);
        assert_eq!(r.e2el.unwrap().count, 4);
        assert!(r.e2el.unwrap().max < 100.0);
        assert_eq!(to_json(&r)["abandoned"], 2);
        let mut table = String::new();
        write_table(&mut table, &r);
        assert!(
            table.contains("4 completed, 0 failed, 2 abandoned by the client"),
            "{table}"
        );
    }

    #[test]
    fn open_loop_measures_from_the_schedule() {
        // Each request left 5 ms after its slot: the _co figures carry that delay, the plain ones don't.
        let late = |i| Record {
            intended: request(i).sent - Duration::from_millis(5),
            ..request(i)
        };
        let records: Vec<Record> = (1..5).map(late).collect();
        let r = compute(&records, 0, &info(true));
        close(r.ttft.unwrap().mean, 12.5);
        close(r.ttft_co.unwrap().mean, 17.5);
        close(r.e2el.unwrap().mean, 20.5);
        close(r.e2el_co.unwrap().mean, 25.5);
        close(r.send_lag.unwrap().mean, 5.0);
        close(to_json(&r)["p99_e2el_co_ms"].as_f64().unwrap(), 26.97);
        let mut table = String::new();
        write_table(&mut table, &r);
        assert!(
            table.contains("\ne2el_co ") && table.contains("coordinated omission"),
            "{table}"
        );
    }

    /// Checks every field vLLM's `bench serve` writes for the metrics we share, and that numbers are finite.
    fn check_schema(doc: &Value) {
        let vllm =
            "completed failed duration total_input_tokens total_output_tokens request_throughput \
                    output_throughput total_token_throughput";
        let mut required: Vec<String> = vllm.split_whitespace().map(String::from).collect();
        for metric in ["ttft", "tpot", "itl", "e2el", "ttft_content", "send_lag"] {
            for stat in ["mean", "median", "std", "p50", "p90", "p95", "p99", "p99_9"] {
                required.push(format!("{stat}_{metric}_ms"));
            }
        }
        for field in &required {
            assert!(
                doc.get(field).is_some_and(Value::is_number),
                "missing {field}"
            );
        }
        for (key, value) in doc.as_object().unwrap() {
            assert!(value.as_f64().is_none_or(f64::is_finite), "{key} = {value}");
        }
        assert!(
            doc["completed"].is_u64() && doc["failed"].is_u64() && doc["peak_in_flight"].is_u64()
        );
        assert!(doc["errors"].is_object() && doc["mode"].is_string() && doc["label"].is_string());
        assert!(doc["coalesced_events_mean"].is_f64());
    }

    #[test]
    fn json_has_every_vllm_field_and_finite_numbers() {
        let records: Vec<Record> = (0..100).map(request).collect();
        let doc = to_json(&compute(&records, 0, &info(false)));
        check_schema(&doc);
        assert_eq!(
            (doc["completed"].as_u64(), doc["mean_ttft_ms"].as_f64()),
            (Some(100), Some(59.5))
        );
        assert_eq!(doc["median_itl_ms"], 2.0);
        assert!(doc.get("mean_ttft_co_ms").is_none(), "closed loop");
        // No requests and a zero window: still every field, still finite, metrics read 0.
        let empty = to_json(&compute(&[], 0, &RunInfo::default()));
        check_schema(&empty);
        assert_eq!(
            (
                empty["p99_ttft_ms"].as_f64(),
                empty["ttft_samples"].as_u64()
            ),
            (Some(0.0), Some(0))
        );
    }

    #[test]
    fn compare_gives_ratio_for_every_figure() {
        let fast: Vec<Record> = (0..10).map(request).collect();
        let mut slow = fast.clone();
        for rec in &mut slow {
            rec.first_choice = Some(rec.sent + 2 * rec.ttft().unwrap());
        }
        slow.push(Record {
            failure: Some(Failure::Timeout),
            ..request(10)
        });
        let (a, b) = (
            compute(&fast, 0, &info(false)),
            compute(&slow, 0, &info(false)),
        );
        let doc = compare_json(&a, &b);
        check_schema(&doc["a"]);
        check_schema(&doc["b"]);
        let ratios = doc["ratio_b_over_a"].as_object().unwrap();
        assert_eq!(
            ratios.len(),
            figures(&a).len() + 1,
            "every figure and errors.timeout"
        );
        assert_eq!(ratios["completed"], 1.0);
        close(ratios["median_ttft_ms"].as_f64().unwrap(), 2.0);
        assert!(
            ratios["failed"].is_null() && ratios["errors.timeout"].is_null(),
            "0 in A: no ratio"
        );

        let mut text = String::new();
        write_compare(&mut text, &a, &b);
        let row = |key: &str| {
            text.lines()
                .find(|l| l.starts_with(key))
                .unwrap()
                .to_string()
        };
        assert!(row("mean_ttft_ms ").ends_with("2.000"), "{text}");
        assert!(
            row("errors.timeout ").ends_with(" 0             1         -"),
            "{text}"
        );
        // Two label lines, the header, a row per ratio, and the run's one stall line.
        assert_eq!(text.lines().count(), 4 + ratios.len());
        assert!(
            text.trim_end().ends_with("not probed (--stall-ms 0)"),
            "{text}"
        );
    }

    #[test]
    fn stalls_are_reported_once_per_run_without_a_ratio() {
        let mut a = compute(&[request(0)], 0, &info(false));
        a.info.stalls = crate::stalls::Summary {
            threshold: Duration::from_millis(2),
            count: 3,
            total: Duration::from_micros(31_500),
            longest: Duration::from_micros(19_750),
            longest_at: Duration::from_millis(3_290),
        };
        let doc = to_json(&a);
        assert_eq!(doc["client_stall_threshold_ms"], 2.0);
        assert_eq!(doc["client_stalls"], 3);
        assert_eq!(doc["client_stall_total_ms"], 31.5);
        assert_eq!(doc["max_client_stall_ms"], 19.75);
        assert_eq!(doc["max_client_stall_at_s"], 3.29);
        let mut text = String::new();
        write_table(&mut text, &a);
        assert!(
            text.contains("client stalls  3 of 2 ms or more on the harness's cores, 31.50 ms in all, longest 19.75 ms at 3.29 s"),
            "{text}"
        );
        let ratios = &compare_json(&a, &a)["ratio_b_over_a"];
        assert!(ratios.get("client_stalls").is_none(), "{ratios:#}");
        a.info.stalls.count = 0;
        text.clear();
        write_table(&mut text, &a);
        assert!(
            text.contains("client stalls  none of 2 ms or more"),
            "{text}"
        );
    }
}
