//! Pure statistics over raw samples: exact summaries with numpy's percentile semantics, bucketed
//! histograms for the SVG, and per-second series for the throughput timeline.
//!
//! Summaries and histograms work on plain `f64`s; which [`Record`]s become latency samples, and in which
//! unit, is `report.rs`'s choice. No sketches or HDR buckets: a run keeps every sample, so the figures are
//! exact and directly comparable with vLLM's `bench serve`, which calls `np.mean`, `np.median`, `np.std`
//! and `np.percentile` on the raw lists.

use crate::record::Record;

/// Exact summary of a sample set, with the same meaning as numpy's functions of the same names.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// Arithmetic mean (`np.mean`).
    pub mean: f64,
    /// Middle value, or the mean of the two middle values (`np.median`).
    pub median: f64,
    /// Population standard deviation, ddof = 0 (`np.std`), the one vLLM reports.
    pub std: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// 50th percentile by linear interpolation; equal to `median` up to rounding.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile: the tail a user hits once per thousand requests.
    pub p999: f64,
}

/// Sorts `samples` in place and summarizes them; `None` when there are none.
///
/// NaNs are not expected (latencies come from `Duration`s); `total_cmp` keeps the sort total anyway.
pub fn summarize(samples: &mut [f64]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable_by(f64::total_cmp);
    let sorted: &[f64] = samples;
    let n = sorted.len();
    let mean = sorted.iter().sum::<f64>() / n as f64;
    // Two passes like numpy: squared deviations from the mean, not E[x²] - mean², which cancels badly.
    let variance = sorted.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    Some(Summary {
        count: n,
        mean,
        median,
        std: variance.sqrt(),
        min: sorted[0],
        max: sorted[n - 1],
        p50: percentile(sorted, 50.0),
        p90: percentile(sorted, 90.0),
        p95: percentile(sorted, 95.0),
        p99: percentile(sorted, 99.0),
        p999: percentile(sorted, 99.9),
    })
}

/// The `p`th percentile (0–100) of ascending `sorted`, as `np.percentile(x, p)` computes it (method
/// "linear"): virtual index `(n - 1) * p / 100`, then interpolation between its neighbours. NaN if empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let virtual_index = ((n - 1) as f64 * (p / 100.0)).clamp(0.0, (n - 1) as f64);
    let below = virtual_index.floor();
    let gamma = virtual_index - below;
    let low = sorted[below as usize];
    let high = sorted[(below as usize + 1).min(n - 1)];
    // numpy's `_lerp`: from the nearer end, so that gamma = 1 gives `high` exactly.
    let diff = high - low;
    if gamma >= 0.5 {
        high - diff * (1.0 - gamma)
    } else {
        low + diff * gamma
    }
}

/// Equal-width bucket counts over `[lo, hi]`, for drawing a distribution.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Left edge of the first bucket.
    pub lo: f64,
    /// Right edge of the last bucket.
    pub hi: f64,
    /// Samples per bucket; bucket `i` covers `[lo + i·w, lo + (i+1)·w)`, the last one also includes `hi`.
    pub counts: Vec<u64>,
    /// Samples below `lo`: drawn nowhere, so the caller can say how many were left out.
    pub below: u64,
    /// Samples above `hi`: latency tails are long, so callers cut at a high percentile and report the rest.
    pub above: u64,
}

impl Histogram {
    /// Width of one bucket.
    pub fn bucket_width(&self) -> f64 {
        (self.hi - self.lo) / self.counts.len().max(1) as f64
    }
}

/// Counts `samples` into `buckets` equal-width buckets over `[lo, hi]`; values outside go to
/// `below` / `above`. A degenerate range (`hi <= lo`, e.g. all samples equal) puts everything in the
/// first bucket that `lo == hi` covers.
pub fn histogram(samples: &[f64], lo: f64, hi: f64, buckets: usize) -> Histogram {
    let buckets = buckets.max(1);
    let mut hist = Histogram {
        lo,
        hi: hi.max(lo),
        counts: vec![0; buckets],
        below: 0,
        above: 0,
    };
    let width = hist.bucket_width();
    for &x in samples {
        if x < lo {
            hist.below += 1;
        } else if x > hist.hi {
            hist.above += 1;
        } else if width == 0.0 {
            hist.counts[0] += 1;
        } else {
            let index = ((x - lo) / width) as usize;
            hist.counts[index.min(buckets - 1)] += 1;
        }
    }
    hist
}

/// Sums weighted events into whole-second bins: `(t_seconds, weight)` adds `weight` to bin
/// `floor(t_seconds)`. The result runs from second 0 to the last second with an event, so a quiet second
/// shows as 0 rather than disappearing; negative times are clamped into second 0.
pub fn per_second(events: &[(f64, f64)]) -> Vec<f64> {
    let last = events.iter().map(|&(t, _)| t.max(0.0) as usize).max();
    let Some(last) = last else {
        return Vec::new();
    };
    let mut bins = vec![0.0; last + 1];
    for &(t, weight) in events {
        bins[t.max(0.0) as usize] += weight;
    }
    bins
}

/// Requests and output tokens per whole second of the run, for the throughput timeline.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    /// The run's second that index 0 stands for: the first measured send's, so warm-up is not drawn as a dip.
    pub start: u64,
    /// Successful requests that ended in each second.
    pub completed: Vec<f64>,
    /// Failed requests that ended in each second, so a burst of errors shows where it happened.
    pub failed: Vec<f64>,
    /// Output tokens that arrived in each second: spread evenly over the content events that carried them
    /// (a usage count may exceed the events), or at the end of a response without events.
    pub output_tokens: Vec<f64>,
}

/// Bins `target`'s non-warm-up records by second; the three series have the same length.
pub fn timeline(records: &[Record], target: u8) -> Timeline {
    let measured = || records.iter().filter(|r| r.target == target && !r.warmup);
    let start = measured().map(|r| r.sent.as_secs()).min().unwrap_or(0);
    let at = |d: std::time::Duration| d.as_secs_f64() - start as f64;
    let (mut completed, mut failed, mut tokens) = (Vec::new(), Vec::new(), Vec::new());
    for rec in measured() {
        if rec.abandoned {
            // Neither completed nor failed; its partial tokens are not output anyone used.
            continue;
        }
        if rec.failure.is_some() {
            failed.push((at(rec.end), 1.0));
            continue;
        }
        completed.push((at(rec.end), 1.0));
        if rec.content_events.is_empty() {
            tokens.push((
                at(rec.last_token.unwrap_or(rec.end)),
                rec.output_tokens as f64,
            ));
        } else {
            let each = rec.output_tokens as f64 / rec.content_events.len() as f64;
            tokens.extend(rec.content_events.iter().map(|&t| (at(t), each)));
        }
    }
    let mut series = [
        per_second(&completed),
        per_second(&failed),
        per_second(&tokens),
    ];
    let seconds = series.iter().map(Vec::len).max().unwrap_or(0);
    series.iter_mut().for_each(|s| s.resize(seconds, 0.0));
    let [completed, failed, output_tokens] = series;
    Timeline {
        start,
        completed,
        failed,
        output_tokens,
    }
}

/// Most requests in flight at once: the deepest overlap of the records' `[began, end]` intervals (warm-up
/// and every target included, as the live in-flight counter counts them). A request that ends at the very
/// nanosecond another begins does not overlap it. Exact over any set of records on one time base, so the
/// same function serves one run and the merge of several (`merge.rs` shifts them onto a common clock).
pub fn peak_in_flight(records: &[Record]) -> usize {
    let mut edges: Vec<(std::time::Duration, bool)> = Vec::with_capacity(records.len() * 2);
    // Half-open intervals: one of no length is in flight at no instant (and would otherwise have its end
    // sorted before its own begin).
    for rec in records.iter().filter(|r| r.end > r.began) {
        edges.push((rec.began, true));
        edges.push((rec.end, false));
    }
    // Ends sort before begins at the same instant (`false < true`).
    edges.sort_unstable();
    let (mut now, mut peak) = (0usize, 0usize);
    for (_, begins) in edges {
        if begins {
            now += 1;
            peak = peak.max(now);
        } else {
            now = now.saturating_sub(1);
        }
    }
    peak
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Failure;
    use std::time::Duration;

    fn close(got: f64, want: f64) {
        assert!(
            (got - want).abs() <= 1e-9 * want.abs().max(1.0),
            "got {got}, want {want}"
        );
    }

    /// `(samples, p, numpy's answer)`, each worked by hand from `(n - 1) * p / 100`.
    macro_rules! percentile_cases {
        ($($name:ident: $samples:expr, $p:expr => $want:expr;)*) => {$(
            #[test]
            fn $name() {
                close(percentile(&$samples, $p), $want);
            }
        )*};
    }

    percentile_cases! {
        // index 2.7: 3 + 0.7 * (4 - 3)
        p90_of_four_interpolates: [1.0, 2.0, 3.0, 4.0], 90.0 => 3.7;
        // index 1.5: halfway between 2 and 3
        p50_of_four_is_midpoint: [1.0, 2.0, 3.0, 4.0], 50.0 => 2.5;
        // index 0.5: 10 + 0.5 * 10
        p25_of_three: [10.0, 20.0, 30.0], 25.0 => 15.0;
        // index 0.75: 10 + 0.75 * 10
        p37_5_of_three: [10.0, 20.0, 30.0], 37.5 => 17.5;
        p0_is_min: [1.0, 2.0, 3.0, 4.0], 0.0 => 1.0;
        p100_is_max: [1.0, 2.0, 3.0, 4.0], 100.0 => 4.0;
        single_sample_is_every_percentile: [7.5], 99.9 => 7.5;
        // index 9.891: 9 + 0.891 * 1 (0..=10)
        fractional_p_on_eleven: [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 98.91 => 9.891;
        // index 9.99 on 0..=10 step 1
        p99_9_near_top: [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 99.9 => 9.99;
    }

    #[test]
    fn percentile_of_nothing_is_nan() {
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn summarize_empty_is_none() {
        assert_eq!(summarize(&mut []), None);
    }

    #[test]
    fn summarize_sorts_and_matches_numpy() {
        // np.mean = 2.5; np.std = sqrt(((1.5² + 0.5²) * 2) / 4) = sqrt(1.25); np.median = 2.5.
        let mut samples = [4.0, 1.0, 3.0, 2.0];
        let s = summarize(&mut samples).unwrap();
        assert_eq!(samples, [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.count, 4);
        close(s.mean, 2.5);
        close(s.median, 2.5);
        close(s.std, 1.25f64.sqrt());
        assert_eq!((s.min, s.max), (1.0, 4.0));
        close(s.p50, 2.5);
        close(s.p90, 3.7);
        close(s.p95, 3.85);
        close(s.p99, 3.97);
        close(s.p999, 3.997);
    }

    #[test]
    fn summarize_odd_count_median_is_middle() {
        // 2, 4, 4, 4, 5, 5, 7, 9 is the textbook std = 2 set; add 100 to make it odd and skewed.
        let mut samples = [9.0, 2.0, 4.0, 100.0, 4.0, 5.0, 4.0, 7.0, 5.0];
        let s = summarize(&mut samples).unwrap();
        assert_eq!(s.median, 5.0);
        close(s.mean, 140.0 / 9.0);
        assert_eq!(s.max, 100.0);
    }

    #[test]
    fn summarize_textbook_population_std() {
        let mut samples = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        let s = summarize(&mut samples).unwrap();
        close(s.mean, 5.0);
        close(s.std, 2.0);
        close(s.median, 4.5);
    }

    #[test]
    fn summarize_constant_has_zero_std() {
        let mut samples = [3.0; 10];
        let s = summarize(&mut samples).unwrap();
        assert_eq!((s.std, s.p999, s.min), (0.0, 3.0, 3.0));
    }

    #[test]
    fn histogram_buckets_and_edges() {
        // Width 2.5: [0,2.5) [2.5,5) [5,7.5) [7.5,10]; 10 itself goes in the last bucket.
        let h = histogram(&[-1.0, 0.0, 2.4, 2.5, 5.0, 9.9, 10.0, 11.0], 0.0, 10.0, 4);
        assert_eq!(h.counts, vec![2, 1, 1, 2]);
        assert_eq!((h.below, h.above), (1, 1));
        assert_eq!(h.bucket_width(), 2.5);
    }

    #[test]
    fn histogram_of_equal_samples_fills_first_bucket() {
        let h = histogram(&[5.0, 5.0, 5.0], 5.0, 5.0, 10);
        assert_eq!(h.counts[0], 3);
        assert_eq!(h.counts.iter().sum::<u64>(), 3);
        assert_eq!(h.above + h.below, 0);
    }

    #[test]
    fn per_second_bins_by_whole_second_and_keeps_gaps() {
        let bins = per_second(&[(0.2, 1.0), (0.99, 1.0), (1.0, 5.0), (3.5, 2.0), (-0.1, 1.0)]);
        assert_eq!(bins, vec![3.0, 5.0, 0.0, 2.0]);
    }

    #[test]
    fn per_second_of_nothing_is_empty() {
        assert!(per_second(&[]).is_empty());
    }

    #[test]
    fn peak_in_flight_is_the_deepest_overlap() {
        let span = |b: u64, e: u64| Record {
            began: Duration::from_millis(b),
            end: Duration::from_millis(e),
            ..Record::default()
        };
        assert_eq!(peak_in_flight(&[]), 0);
        assert_eq!(peak_in_flight(&[span(0, 10)]), 1);
        // 0..10, 5..15, 8..9 overlap at 8; 10..20 starts as the first ends.
        let records = [span(0, 10), span(5, 15), span(8, 9), span(10, 20)];
        assert_eq!(peak_in_flight(&records), 3);
        assert_eq!(peak_in_flight(&[span(0, 10), span(10, 20)]), 1, "touching");
        assert_eq!(
            peak_in_flight(&[span(5, 5), span(5, 5), span(0, 10)]),
            1,
            "empty"
        );
    }

    #[test]
    fn abandoned_requests_are_not_in_the_timeline() {
        let gone = Record {
            sent: Duration::from_secs(1),
            end: Duration::from_secs(2),
            output_tokens: 9,
            abandoned: true,
            ..Record::default()
        };
        let t = timeline(&[gone], 0);
        assert_eq!(t.completed.iter().sum::<f64>(), 0.0);
        assert_eq!(t.failed.iter().sum::<f64>(), 0.0);
        assert_eq!(t.output_tokens.iter().sum::<f64>(), 0.0);
    }

    #[test]
    fn timeline_starts_after_warmup_and_spreads_tokens() {
        let secs = Duration::from_secs_f64;
        let warm = Record {
            warmup: true,
            end: secs(0.5),
            output_tokens: 100,
            ..Record::default()
        };
        let streamed = Record {
            sent: secs(2.0),
            content_events: vec![secs(2.5), secs(3.5)],
            end: secs(3.6),
            output_tokens: 4,
            ..Record::default()
        };
        let whole = Record {
            sent: secs(2.2),
            end: secs(4.1),
            output_tokens: 7,
            ..Record::default()
        };
        let broken = Record {
            sent: secs(3.0),
            end: secs(3.2),
            failure: Some(Failure::Io),
            ..Record::default()
        };
        let other = Record {
            target: 1,
            sent: secs(9.0),
            end: secs(9.5),
            ..Record::default()
        };
        let t = timeline(&[warm, streamed, whole, broken, other], 0);
        assert_eq!(t.start, 2);
        assert_eq!(t.completed, vec![0.0, 1.0, 1.0]);
        assert_eq!(t.failed, vec![0.0, 1.0, 0.0]);
        assert_eq!(t.output_tokens, vec![2.0, 2.0, 7.0]);
        assert_eq!(timeline(&[], 0), Timeline::default());
    }
}
