//! `standin-load merge FILE... [--json OUT] [--svg OUT]`: one report from the `--raw` files of several
//! harness instances (e.g. the pods of a Kubernetes Indexed Job), as if one harness had sent it all.
//!
//! # Rules
//! - **Compatibility.** The files must agree on the endpoint, streaming, open vs closed loop, and whether
//!   there was a `--compare` server; otherwise the figures would mix different things and merge refuses.
//!   It warns (on stderr) when URLs, base seeds, models, `max_tokens`, `--disconnect` or harness versions
//!   differ, when two files used the same effective seed (the same work sent twice), and when the number
//!   of files is not the `--instances` they declared.
//! - **One clock.** Every record is moved onto a common time base: file `i`'s offsets are shifted by
//!   `start_unix_ns[i] - min(start_unix_ns)`. Latencies are differences within one record, so they are
//!   unchanged to the nanosecond; only the timeline and the in-flight count use the shift, and they are as
//!   good as the instances' wall clocks agree (NTP: a millisecond or so).
//! - **Samples.** The report is computed by the same code as a single run (`report::compute`) over the
//!   union of the records: every percentile, mean and std is that of all samples together.
//! - **Duration** is from the earliest end of warm-up to the latest end of a measured request, across the
//!   files; every throughput is a total over that duration. Instances that start minutes apart dilute it:
//!   start them together.
//! - **Peak in flight** is the deepest overlap of all records' `[began, end]` intervals on the common clock
//!   (`stats::peak_in_flight`, what a single run reports too): exact up to the clock offsets between the
//!   machines, not a sum of per-instance peaks.
//! - **Mode** is the files' common load shape with the instance count, e.g. `closed c=64, 4 instances`.
//! - **Client stalls** are every file's core-probe stalls on the common clock, within the merged window,
//!   at the largest `--stall-ms` of the files (a shorter one would count stalls some files did not see).
//!
//! Merging one file reproduces that run's report exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::raw::{self, RawFile};
use crate::record::Record;
use crate::report::RunInfo;

/// `merge --help`.
pub const HELP: &str = "standin-load merge: one report from the --raw files of several harness instances

USAGE: standin-load merge FILE|DIR... [--json OUT] [--svg OUT]

  FILE            a --raw file, or a directory: every *.jsonl file in it
  --json FILE     write the merged report as JSON (the same fields as a single run)
  --svg FILE      write the merged latency distributions and throughput timeline as SVG

Percentiles, means and std come from the union of every file's samples (not averages of percentiles).
Duration runs from the earliest end of warm-up to the latest end of a request across the files; peak
in-flight is the deepest overlap of all requests on the files' common wall clock. The files must agree on
endpoint, streaming, open/closed loop and --compare; other differences (URLs, seeds, models) are warned
about on stderr.
";

/// What `merge` was asked for.
#[derive(Debug, Default, PartialEq)]
struct MergeArgs {
    files: Vec<String>,
    json: Option<String>,
    svg: Option<String>,
}

/// Parses `merge`'s arguments (after the word `merge`); `Ok(None)` for `--help`.
fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<MergeArgs>, String> {
    let mut out = MergeArgs::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--json" => out.json = Some(value(&arg)?),
            "--svg" => out.svg = Some(value(&arg)?),
            flag if flag.starts_with("--") => {
                return Err(format!("merge: unknown flag {flag} (see merge --help)"))
            }
            _ => out.files.push(arg),
        }
    }
    if out.files.is_empty() {
        return Err("merge needs at least one --raw file (see merge --help)".into());
    }
    Ok(Some(out))
}

/// Runs `standin-load merge ARGS`.
pub fn main(args: impl IntoIterator<Item = String>) -> ExitCode {
    let args = match parse(args) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("standin-load: {e}");
            return ExitCode::from(2);
        }
    };
    let paths = match expand(&args.files) {
        Ok(paths) => paths,
        Err(e) => {
            eprintln!("standin-load merge: {e}");
            return ExitCode::from(2);
        }
    };
    let mut files = Vec::with_capacity(paths.len());
    for path in &paths {
        match raw::read(Path::new(path)) {
            Ok(file) => files.push(file),
            Err(e) => {
                eprintln!("standin-load merge: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let merged = match merge(files, &paths) {
        Ok(merged) => merged,
        Err(e) => {
            eprintln!("standin-load merge: {e}");
            return ExitCode::from(2);
        }
    };
    for warning in &merged.warnings {
        eprintln!("standin-load merge: warning: {warning}");
    }
    println!("{}", merged.summary);
    let out = crate::Output {
        json: args.json.as_deref(),
        svg: args.svg.as_deref(),
        extra: &merged.extra,
    };
    crate::emit(&merged.records, &merged.infos, &out)
}

/// The files to read: each argument as given, except that a directory stands for every `*.jsonl` file in
/// it, in name order (for images without a shell to expand `raw-*.jsonl`, such as the Kubernetes example's).
fn expand(args: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for arg in args {
        let path = Path::new(arg);
        if !path.is_dir() {
            out.push(arg.clone());
            continue;
        }
        let entries = std::fs::read_dir(path).map_err(|e| format!("{arg}: {e}"))?;
        let mut found: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "jsonl"))
            .map(|p| p.display().to_string())
            .collect();
        if found.is_empty() {
            return Err(format!("{arg}: a directory without *.jsonl files"));
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

/// Several runs as one.
pub struct Merged {
    /// Every record of every file, on the common clock.
    pub records: Vec<Record>,
    /// One per target (two with `--compare`), with the merged window, mode and peak.
    pub infos: Vec<RunInfo>,
    /// Differences that do not stop the merge.
    pub warnings: Vec<String>,
    /// One line saying what was merged.
    pub summary: String,
    /// Fields added to the JSON report: `merged_files`, `instances`, `seeds`, `start_unix_ns` (the common
    /// clock's origin), `requests_sent` and `connections_opened` (warm-up included, from the trailers).
    pub extra: Map<String, Value>,
}

/// The distinct values of `key` over the headers, in file order.
fn distinct<T: Ord + Clone>(files: &[RawFile], key: impl Fn(&raw::Header) -> T) -> Vec<T> {
    let mut seen = BTreeSet::new();
    files
        .iter()
        .map(|f| key(&f.header))
        .filter(|v| seen.insert(v.clone()))
        .collect()
}

/// Moves every time of `rec` `by` later.
fn shift(rec: &mut Record, by: Duration) {
    for t in [
        &mut rec.began,
        &mut rec.intended,
        &mut rec.sent,
        &mut rec.end,
    ] {
        *t += by;
    }
    for t in [
        &mut rec.head,
        &mut rec.first_byte,
        &mut rec.first_choice,
        &mut rec.first_content,
        &mut rec.last_token,
        &mut rec.done,
    ]
    .into_iter()
    .flatten()
    {
        *t += by;
    }
    for t in &mut rec.content_events {
        *t += by;
    }
}

/// Merges `files` (named `names`, for messages): checks them, moves their records onto one clock, and
/// works out the window, mode and peak. Errors when the files measured incompatible things.
pub fn merge(files: Vec<RawFile>, names: &[String]) -> Result<Merged, String> {
    let Some(first) = files.first() else {
        return Err("nothing to merge".into());
    };
    let first = first.header.clone();
    let mut warnings = Vec::new();
    for (file, name) in files.iter().zip(names).skip(1) {
        let h = &file.header;
        let refuse = |what: &str, a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| {
            Err(format!(
                "{name} is not compatible with {}: {what} {b:?} vs {a:?}",
                names[0]
            ))
        };
        if h.endpoint != first.endpoint {
            return refuse("endpoint", &first.endpoint, &h.endpoint);
        }
        if h.stream != first.stream {
            return refuse("stream", &first.stream, &h.stream);
        }
        if h.open_loop != first.open_loop {
            return refuse("open loop", &first.open_loop, &h.open_loop);
        }
        if h.compare.is_some() != first.compare.is_some() {
            return refuse("--compare", &first.compare, &h.compare);
        }
    }
    let mut warn_if_differ = |what: &str, values: Vec<String>| {
        if values.len() > 1 {
            warnings.push(format!("files differ in {what}: {}", values.join(", ")));
        }
    };
    warn_if_differ("url", distinct(&files, |h| h.url.clone()));
    warn_if_differ(
        "compare url",
        distinct(&files, |h| h.compare.clone().unwrap_or_default()),
    );
    warn_if_differ(
        "base --seed (each instance adds its index to one base seed)",
        distinct(&files, |h| h.seed.to_string()),
    );
    warn_if_differ("model", distinct(&files, |h| h.model.clone()));
    warn_if_differ(
        "max_tokens",
        distinct(&files, |h| format!("{:?}", h.max_tokens)),
    );
    warn_if_differ(
        "--disconnect",
        distinct(&files, |h| h.disconnect.to_string()),
    );
    warn_if_differ("harness version", distinct(&files, |h| h.harness.clone()));
    warn_if_differ("load shape", distinct(&files, |h| h.mode.clone()));
    let mut by_seed: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for (file, name) in files.iter().zip(names) {
        by_seed
            .entry(file.header.effective_seed)
            .or_default()
            .push(name);
    }
    for (seed, same) in &by_seed {
        if same.len() > 1 {
            warnings.push(format!(
                "{} used the same seed {seed}: the same work was sent more than once \
                 (give each instance its own --instance-index)",
                same.join(", ")
            ));
        }
    }
    for declared in distinct(&files, |h| h.instances).into_iter().flatten() {
        if declared != files.len() as u64 {
            warnings.push(format!(
                "the runs declared --instances {declared}, {} files are merged",
                files.len()
            ));
        }
    }

    for (file, name) in files.iter().zip(names) {
        let (sent, records) = (file.trailer.sent, file.records.len());
        if sent != records as u64 {
            warnings.push(format!(
                "{name}: {sent} requests taken up but {records} recorded"
            ));
        }
    }
    let sent: u64 = files.iter().map(|f| f.trailer.sent).sum();
    let connections: u64 = files.iter().map(|f| f.trailer.connections).sum();
    let modes = distinct(&files, |h| h.mode.clone());
    let base = files
        .iter()
        .map(|f| f.header.start_unix_ns)
        .min()
        .unwrap_or(0);
    let (mut window_start, mut window_end) = (Duration::MAX, Duration::ZERO);
    let total: usize = files.iter().map(|f| f.records.len()).sum();
    let mut records = Vec::with_capacity(total);
    let mut seeds = Vec::new();
    let mut stalls = Vec::new();
    let stall_threshold = files
        .iter()
        .map(|f| Duration::from_nanos(f.trailer.stall_threshold_ns))
        .max()
        .unwrap_or_default();
    for file in files {
        let by = Duration::from_nanos(file.header.start_unix_ns - base);
        let warmup_end = Duration::from_nanos(file.header.warmup_ns);
        let last_end = file
            .records
            .iter()
            .filter(|r| !r.warmup)
            .map(|r| r.end)
            .max()
            .unwrap_or(warmup_end);
        window_start = window_start.min(by + warmup_end);
        window_end = window_end.max(by + last_end);
        seeds.push(file.header.effective_seed);
        stalls.extend(file.trailer.stalls.iter().map(|e| raw::stall_from(e, by)));
        records.extend(file.records.into_iter().map(|mut rec| {
            shift(&mut rec, by);
            rec
        }));
    }
    let n = names.len();
    let shape = match modes.as_slice() {
        [one] => one.as_str(),
        _ => "mixed load shapes",
    };
    let mode = if n == 1 {
        shape.to_string()
    } else {
        format!("{shape}, {n} instances")
    };
    let info = RunInfo {
        label: first.url.clone(),
        mode,
        duration: window_end.saturating_sub(window_start),
        peak_in_flight: crate::stats::peak_in_flight(&records),
        stream: first.stream,
        open_loop: first.open_loop,
        stalls: crate::stalls::summarize(&stalls, window_start, window_end, stall_threshold),
    };
    let mut infos = vec![info.clone()];
    if let Some(compare) = &first.compare {
        infos.push(RunInfo {
            label: compare.clone(),
            ..info
        });
    }
    let summary = format!(
        "merged {n} raw file{} ({} requests, seeds {})",
        if n == 1 { "" } else { "s" },
        records.len(),
        seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut extra = Map::new();
    extra.insert("merged_files".into(), json!(names));
    extra.insert("instances".into(), json!(n));
    extra.insert("seeds".into(), json!(seeds));
    extra.insert("start_unix_ns".into(), json!(base));
    extra.insert("requests_sent".into(), json!(sent));
    extra.insert("connections_opened".into(), json!(connections));
    Ok(Merged {
        records,
        infos,
        warnings,
        summary,
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::tests::{header, trailer};
    use crate::record::Failure;
    use crate::report::compute;
    use crate::report::tests::request;
    use crate::stats::percentile;

    fn file(start_unix_ns: u64, instance: u64, records: Vec<Record>) -> RawFile {
        RawFile {
            header: header(start_unix_ns, instance),
            trailer: trailer(&records),
            records,
        }
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("raw-{i}.jsonl")).collect()
    }

    #[test]
    fn percentiles_are_those_of_the_union() {
        // Two instances with very different latencies: the merged p50/p99 are the union's, which no
        // average of the two files' own percentiles gives.
        let fast: Vec<Record> = (0..100).map(request).collect();
        let slow: Vec<Record> = (500..530).map(request).collect();
        let merged = merge(
            vec![file(1_000, 0, fast.clone()), file(2_000, 1, slow.clone())],
            &names(2),
        )
        .unwrap();
        let r = compute(&merged.records, 0, &merged.infos[0]);
        let mut union: Vec<f64> = fast
            .iter()
            .chain(&slow)
            .map(|rec| rec.e2el().as_nanos() as f64 / 1e6)
            .collect();
        union.sort_by(f64::total_cmp);
        let e2el = r.e2el.unwrap();
        assert_eq!(e2el.count, 130);
        assert_eq!(e2el.p50, percentile(&union, 50.0));
        assert_eq!(e2el.p99, percentile(&union, 99.0));
        let (a, b) = (
            compute(&fast, 0, &merged.infos[0]).e2el.unwrap(),
            compute(&slow, 0, &merged.infos[0]).e2el.unwrap(),
        );
        assert_ne!(e2el.p50, (a.p50 + b.p50) / 2.0);
        assert_eq!(r.completed, 130);
        assert_eq!(merged.extra["seeds"], json!([0, 1]));
        assert_eq!(merged.infos[0].mode, "closed c=4, 2 instances");
        assert!(merged.warnings.is_empty(), "{:?}", merged.warnings);
    }

    #[test]
    fn window_runs_from_the_earliest_start_to_the_latest_end() {
        let ms = Duration::from_millis;
        let span = |began: u64, end: u64| Record {
            began: ms(began),
            intended: ms(began),
            sent: ms(began),
            end: ms(end),
            last_token: Some(ms(end)),
            output_tokens: 1,
            ..Record::default()
        };
        let mut a = file(0, 0, vec![span(100, 400), span(200, 900)]);
        a.header.warmup_ns = 100_000_000;
        // Started 2 s later on the wall clock, its own warm-up 0.5 s: measured from 2.5 s to 2.5 + 1 s.
        let mut b = file(2_000_000_000, 1, vec![span(500, 1500)]);
        b.header.warmup_ns = 500_000_000;
        let merged = merge(vec![a, b], &names(2)).unwrap();
        // From 0.1 s (a's warm-up end) to 3.5 s (b's last end on the common clock).
        assert_eq!(merged.infos[0].duration, ms(3400));
        let r = compute(&merged.records, 0, &merged.infos[0]);
        assert!((r.request_throughput - 3.0 / 3.4).abs() < 1e-12);
        // a's two overlap (200..400); b's is alone at 2.5..3.5 s.
        assert_eq!(merged.infos[0].peak_in_flight, 2);
        assert_eq!(merged.records[2].began, ms(2500));
    }

    #[test]
    fn stalls_of_every_file_count_on_the_common_clock_at_the_largest_threshold() {
        let ms = Duration::from_millis;
        // Each file's window: from its start to its one request's end, 1 s later.
        let one = || {
            vec![Record {
                end: ms(1_000),
                ..Record::default()
            }]
        };
        let mut a = file(0, 0, one());
        a.trailer.stall_threshold_ns = 5_000_000;
        // [due, late by, core]: 7 ms at 0.2 s, and 4.5 ms at 0.5 s (over b's threshold, under a's).
        a.trailer.stalls = vec![[200_000_000, 7_000_000, 1], [500_000_000, 4_500_000, 1]];
        // Started 1 s later on the wall clock: its 12 ms stall at 0.3 s is at 1.3 s on the common one.
        let mut b = file(1_000_000_000, 1, one());
        b.trailer.stall_threshold_ns = 4_000_000;
        b.trailer.stalls = vec![[300_000_000, 12_000_000, 0]];
        let merged = merge(vec![a, b], &names(2)).unwrap();
        let s = merged.infos[0].stalls;
        assert_eq!(s.threshold, ms(5));
        assert_eq!((s.count, s.total), (2, ms(19)), "{s:?}");
        assert_eq!((s.longest, s.longest_at), (ms(12), ms(1_300)));
    }

    #[test]
    fn overlapping_instances_add_up_in_flight() {
        let ms = Duration::from_millis;
        let span = |b: u64, e: u64| Record {
            began: ms(b),
            end: ms(e),
            ..Record::default()
        };
        // Each alone peaks at 2; b started 50 ms later on the wall clock, so 50..100 ms sees 4.
        let a = file(0, 0, vec![span(0, 100), span(10, 100)]);
        let b = file(50_000_000, 1, vec![span(0, 100), span(0, 100)]);
        assert_eq!(
            merge(vec![a, b], &names(2)).unwrap().infos[0].peak_in_flight,
            4
        );
    }

    #[test]
    fn one_file_merges_into_its_own_report() {
        let mut records: Vec<Record> = (0..50).map(request).collect();
        records[3].failure = Some(Failure::Timeout);
        records[4].abandoned = true;
        let mut f = file(123, 0, records.clone());
        f.header.instances = None;
        let merged = merge(vec![f], &names(1)).unwrap();
        assert_eq!(merged.infos[0].mode, "closed c=4");
        let last_end = records.iter().map(|r| r.end).max().unwrap();
        assert_eq!(merged.infos[0].duration, last_end);
        assert_eq!(
            merged.infos[0].peak_in_flight,
            crate::stats::peak_in_flight(&records)
        );
        let (m, single) = (
            compute(&merged.records, 0, &merged.infos[0]),
            compute(&records, 0, &merged.infos[0]),
        );
        assert_eq!(format!("{m:?}"), format!("{single:?}"));
        assert_eq!((m.failed_total, m.abandoned), (1, 1));
    }

    #[test]
    fn incompatible_files_are_refused_and_differences_warned() {
        let records = || vec![request(1)];
        for (what, change) in [
            (
                "endpoint",
                (|h: &mut raw::Header| h.endpoint = "completions".into()) as fn(&mut raw::Header),
            ),
            ("stream", |h| h.stream = false),
            ("open loop", |h| h.open_loop = true),
            ("--compare", |h| h.compare = Some("http://b".into())),
        ] {
            let mut other = file(0, 1, records());
            change(&mut other.header);
            let err = merge(vec![file(0, 0, records()), other], &names(2))
                .err()
                .expect("refused");
            assert!(err.contains(what) && err.contains("raw-1.jsonl"), "{err}");
        }
        let mut other = file(0, 0, records());
        other.header.seed = 9;
        other.header.url = "http://elsewhere:8000".into();
        other.header.instances = Some(3);
        let merged = merge(vec![file(0, 0, records()), other], &names(2)).unwrap();
        let text = merged.warnings.join("\n");
        for needle in ["base --seed", "url", "same seed 0", "--instances 3"] {
            assert!(text.contains(needle), "no {needle:?} in {text}");
        }
    }

    #[test]
    fn directories_stand_for_their_jsonl_files() {
        let dir = std::env::temp_dir().join(format!("standin-merge-expand-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["raw-1.jsonl", "raw-0.jsonl", "report-0.json"] {
            std::fs::write(dir.join(name), "").unwrap();
        }
        let d = dir.display().to_string();
        let got = expand(&[d.clone(), "other.jsonl".into()]).unwrap();
        let want = [
            format!("{d}/raw-0.jsonl"),
            format!("{d}/raw-1.jsonl"),
            "other.jsonl".into(),
        ];
        assert_eq!(got, want);
        std::fs::remove_file(dir.join("raw-0.jsonl")).unwrap();
        std::fs::remove_file(dir.join("raw-1.jsonl")).unwrap();
        assert!(expand(&[d]).unwrap_err().contains("without"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn merge_arguments() {
        let args = |a: &[&str]| parse(a.iter().map(|s| s.to_string()));
        let got = args(&["a.jsonl", "--json", "o.json", "b.jsonl", "--svg", "o.svg"])
            .unwrap()
            .unwrap();
        assert_eq!(got.files, ["a.jsonl", "b.jsonl"]);
        assert_eq!(
            (got.json.as_deref(), got.svg.as_deref()),
            (Some("o.json"), Some("o.svg"))
        );
        assert!(args(&[]).is_err());
        assert!(args(&["a", "--bogus"]).is_err());
        assert!(args(&["a", "--json"]).is_err());
        assert_eq!(args(&["--help"]), Ok(None));
    }
}
