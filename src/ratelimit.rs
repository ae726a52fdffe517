//! Per-key rate limits (`--rate-limit-rpm`, `--rate-limit-tpm`): a token bucket per caller and limit,
//! refilled continuously, answered as OpenAI does: 429 `rate_limit_exceeded` with `retry-after`,
//! `retry-after-ms` and the `x-ratelimit-*` headers, which every `/v1` response carries once limits are on.
//!
//! Buckets are keyed by [`Caller`] (a key's position, never the key) and live behind one `may` mutex held
//! only for a little arithmetic. The token cost of a request is estimated from its body before the answer;
//! what the answer really used is not charged afterwards.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use may::sync::Mutex;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::auth::Caller;
use crate::http::Responder;
use crate::models::tokens;
use crate::openai::{json, ApiError};

/// Output tokens a request is charged for when it sets no `max_tokens`: the legacy endpoint's default,
/// so a chat request without a limit is not treated as free.
pub const DEFAULT_OUTPUT_TOKENS: u64 = 16;

/// Fixed-point scale of a bucket's level: one request (or token) is this many units, and a limit of N per
/// minute refills N units per nanosecond. Integer arithmetic keeps refill exact: after exactly one second
/// at 60 RPM the bucket holds exactly one request, where floats could leave 0.999….
const UNITS: u128 = 60_000_000_000;

/// One token bucket: holds up to `limit` and refills `limit` per minute, continuously.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    limit: u64,
    /// Content in [`UNITS`] per request or token.
    level: u128,
    /// When `level` was last brought up to date.
    updated: Instant,
}

impl Bucket {
    /// A full bucket of `limit` (at least 1) at `now`.
    pub fn full(limit: u64, now: Instant) -> Self {
        Bucket {
            limit,
            level: u128::from(limit) * UNITS,
            updated: now,
        }
    }

    /// Adds what flowed in since the last update, up to the limit. A `now` older than the last update
    /// (two callers took the time in one order and the lock in the other) adds nothing.
    pub fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_nanos();
        let capacity = u128::from(self.limit) * UNITS;
        let added = elapsed.saturating_mul(u128::from(self.limit));
        self.level = self.level.saturating_add(added).min(capacity);
        self.updated = self.updated.max(now);
    }

    /// Whole requests or tokens left.
    pub fn remaining(&self) -> u64 {
        (self.level / UNITS) as u64
    }

    /// Whether `amount` can be taken now.
    pub fn holds(&self, amount: u64) -> bool {
        self.level >= u128::from(amount) * UNITS
    }

    /// Takes `amount`; the caller checked [`Bucket::holds`].
    pub fn take(&mut self, amount: u64) {
        self.level = self.level.saturating_sub(u128::from(amount) * UNITS);
    }

    /// How long until the bucket holds `amount` (zero if it does now).
    pub fn wait_for(&self, amount: u64) -> Duration {
        let missing = (u128::from(amount) * UNITS).saturating_sub(self.level);
        let nanos = missing.div_ceil(u128::from(self.limit.max(1)));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// How long until the bucket is full again: OpenAI's `x-ratelimit-reset-*`.
    pub fn reset(&self) -> Duration {
        self.wait_for(self.limit)
    }

    fn status(&self) -> Status {
        Status {
            limit: self.limit,
            remaining: self.remaining(),
            reset: self.reset(),
        }
    }
}

/// Which limit a request ran into: OpenAI's error `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Requests per minute.
    Requests,
    /// Tokens per minute.
    Tokens,
}

/// One limit as the `x-ratelimit-*` headers report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Per minute.
    pub limit: u64,
    /// Whole requests or tokens left.
    pub remaining: u64,
    /// Until the bucket is full again.
    pub reset: Duration,
}

/// Both limits for one caller at one moment; a limit that is off is `None` and sends no headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Report {
    /// `x-ratelimit-*-requests`.
    pub requests: Option<Status>,
    /// `x-ratelimit-*-tokens`.
    pub tokens: Option<Status>,
}

impl Report {
    /// Adds the `x-ratelimit-*` headers to whatever response `res` sends.
    pub fn add_to(&self, res: &mut Responder<'_>) {
        for (status, [limit, remaining, reset]) in [
            (
                self.requests,
                [
                    "x-ratelimit-limit-requests",
                    "x-ratelimit-remaining-requests",
                    "x-ratelimit-reset-requests",
                ],
            ),
            (
                self.tokens,
                [
                    "x-ratelimit-limit-tokens",
                    "x-ratelimit-remaining-tokens",
                    "x-ratelimit-reset-tokens",
                ],
            ),
        ] {
            let Some(status) = status else { continue };
            let mut numbers = (itoa::Buffer::new(), itoa::Buffer::new());
            res.add_headers(&[
                (limit, numbers.0.format(status.limit)),
                (remaining, numbers.1.format(status.remaining)),
                (reset, &format_duration(status.reset)),
            ]);
        }
    }
}

/// A request refused by a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    /// The limit it ran into.
    pub kind: Kind,
    /// That limit, per minute.
    pub limit: u64,
    /// How much of it is in use.
    pub used: u64,
    /// What the request asked for: 1 request, or its estimated tokens.
    pub requested: u64,
    /// When the same request would pass (for a request larger than the limit: when the bucket is full).
    pub retry_after: Duration,
    /// The caller's limits, nothing taken.
    pub report: Report,
}

impl Exceeded {
    /// The error, worded as OpenAI's, for a request to `model`.
    pub fn error(&self, model: &str) -> ApiError {
        let (kind, unit) = match self.kind {
            Kind::Requests => ("requests", "requests per min (RPM)"),
            Kind::Tokens => ("tokens", "tokens per min (TPM)"),
        };
        let message = if self.requested > self.limit {
            format!(
                "Request too large for {model} on {unit}: Limit {}, Requested {}. The input or output \
                 tokens must be reduced in order to run successfully.",
                self.limit, self.requested
            )
        } else {
            format!(
                "Rate limit reached for {model} on {unit}: Limit {}, Used {}, Requested {}. Please try \
                 again in {}.",
                self.limit,
                self.used,
                self.requested,
                format_duration(self.retry_after)
            )
        };
        ApiError {
            status: 429,
            kind,
            message: message.into(),
            param: None,
            code: Some("rate_limit_exceeded"),
        }
    }

    /// Adds `retry-after` (whole seconds, at least 1), `retry-after-ms` and the `x-ratelimit-*` headers.
    pub fn add_to(&self, res: &mut Responder<'_>) {
        let millis = self.retry_after.as_nanos().div_ceil(1_000_000).max(1);
        let seconds = millis.div_ceil(1000);
        let mut numbers = (itoa::Buffer::new(), itoa::Buffer::new());
        res.add_headers(&[
            ("retry-after", numbers.0.format(seconds)),
            ("retry-after-ms", numbers.1.format(millis)),
        ]);
        self.report.add_to(res);
    }
}

/// The limits of one caller.
#[derive(Debug, Clone, Copy)]
struct Buckets {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
}

impl Buckets {
    fn report(&self) -> Report {
        Report {
            requests: self.requests.as_ref().map(Bucket::status),
            tokens: self.tokens.as_ref().map(Bucket::status),
        }
    }
}

/// Every caller's buckets. Callers are the configured keys (or one anonymous caller), so the map stays
/// as small as the key list.
pub struct RateLimiter {
    rpm: u64,
    tpm: u64,
    buckets: Mutex<HashMap<Caller, Buckets>>,
}

impl RateLimiter {
    /// Limits per minute; 0 turns one off. `None` when both are off.
    pub fn new(rpm: u64, tpm: u64) -> Option<Self> {
        (rpm > 0 || tpm > 0).then(|| RateLimiter {
            rpm,
            tpm,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    fn fresh(&self, now: Instant) -> Buckets {
        Buckets {
            requests: (self.rpm > 0).then(|| Bucket::full(self.rpm, now)),
            tokens: (self.tpm > 0).then(|| Bucket::full(self.tpm, now)),
        }
    }

    /// Admits one request costing `tokens` for `caller`, taking from its buckets, or refuses it and takes
    /// nothing (a refused request does not push the caller's recovery further away).
    pub fn admit(&self, caller: Caller, tokens: u64, now: Instant) -> Result<Report, Exceeded> {
        // Tiny critical section, no I/O and no yield inside; a poisoned lock still holds valid numbers.
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let buckets = map.entry(caller).or_insert_with(|| self.fresh(now));
        for bucket in [&mut buckets.requests, &mut buckets.tokens]
            .into_iter()
            .flatten()
        {
            bucket.refill(now);
        }
        let refused = |kind, bucket: &Bucket, requested: u64| Exceeded {
            kind,
            limit: bucket.limit,
            used: bucket.limit - bucket.remaining().min(bucket.limit),
            requested,
            retry_after: if requested > bucket.limit {
                bucket.reset()
            } else {
                bucket.wait_for(requested)
            },
            report: buckets.report(),
        };
        if let Some(bucket) = buckets.requests.filter(|b| !b.holds(1)) {
            return Err(refused(Kind::Requests, &bucket, 1));
        }
        if let Some(bucket) = buckets.tokens.filter(|b| !b.holds(tokens)) {
            return Err(refused(Kind::Tokens, &bucket, tokens));
        }
        if let Some(bucket) = &mut buckets.requests {
            bucket.take(1);
        }
        if let Some(bucket) = &mut buckets.tokens {
            bucket.take(tokens);
        }
        Ok(buckets.report())
    }

    /// The caller's limits without taking anything (for requests that cost nothing, like listing models).
    pub fn peek(&self, caller: Caller, now: Instant) -> Report {
        let map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let mut buckets = map.get(&caller).copied().unwrap_or_else(|| self.fresh(now));
        drop(map);
        for bucket in [&mut buckets.requests, &mut buckets.tokens]
            .into_iter()
            .flatten()
        {
            bucket.refill(now);
        }
        buckets.report()
    }
}

/// What a request is expected to cost before it is answered, and the model it names (for the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimate {
    /// Prompt tokens (the body's text by the shared token rule) plus the output allowance.
    pub tokens: u64,
    /// The body's `model`, if it has a string one.
    pub model: Option<String>,
}

/// The fields an estimate reads; anything else in the body is skipped unparsed.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_completion_tokens: Option<&'a RawValue>,
}

/// Estimates a request from its raw body: every token of the body text, plus `max_completion_tokens`
/// (which wins, as in chat), `max_tokens` or [`DEFAULT_OUTPUT_TOKENS`] when `generates` (chat and legacy
/// completions; embeddings produce no tokens). A body that does not parse is still charged its text and
/// the default: validation rejects it later, after it has counted against the limits, as on OpenAI.
pub fn estimate(body: &[u8], max_depth: usize, generates: bool) -> Estimate {
    let text = String::from_utf8_lossy(body);
    let prompt = tokens::count(&text) as u64;
    let fields = json::check_depth(body, max_depth)
        .ok()
        .and_then(|()| serde_json::from_str::<Fields<'_>>(&text).ok());
    let number =
        |raw: Option<&RawValue>| raw.and_then(|r| serde_json::from_str::<u64>(r.get()).ok());
    let output = match &fields {
        Some(f) if generates => number(f.max_completion_tokens)
            .or(number(f.max_tokens))
            .unwrap_or(DEFAULT_OUTPUT_TOKENS),
        _ if generates => DEFAULT_OUTPUT_TOKENS,
        _ => 0,
    };
    let model = fields
        .and_then(|f| f.model)
        .and_then(|raw| serde_json::from_str::<Cow<'_, str>>(raw.get()).ok())
        .map(Cow::into_owned);
    Estimate {
        tokens: prompt.saturating_add(output),
        model,
    }
}

/// A duration as OpenAI's `x-ratelimit-reset-*` headers and messages write it (Go's style, to the
/// millisecond, rounded up so a client never retries too early): `0s`, `250ms`, `1s`, `1.2s`, `6m0s`,
/// `1h0m5s`.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_nanos().div_ceil(1_000_000);
    if millis == 0 {
        return "0s".to_string();
    }
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let (hours, rest) = (millis / 3_600_000, millis % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let mut out = String::new();
    if hours > 0 {
        let _ = write!(out, "{hours}h");
    }
    if hours > 0 || minutes > 0 {
        let _ = write!(out, "{minutes}m");
    }
    let (seconds, fraction) = (rest / 1000, rest % 1000);
    let _ = write!(out, "{seconds}");
    if fraction > 0 {
        let digits = format!("{fraction:03}");
        let _ = write!(out, ".{}", digits.trim_end_matches('0'));
    }
    out.push('s');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn bucket_starts_full_and_refills_continuously() {
        let t0 = Instant::now();
        let mut bucket = Bucket::full(60, t0);
        assert_eq!(bucket.remaining(), 60);
        bucket.take(60);
        assert_eq!(bucket.remaining(), 0);
        assert!(!bucket.holds(1));
        // 60 per minute is one per second, flowing in continuously.
        bucket.refill(t0 + ms(500));
        assert_eq!(bucket.remaining(), 0);
        assert_eq!(bucket.wait_for(1), ms(500));
        bucket.refill(t0 + ms(1000));
        assert!(bucket.holds(1));
        assert_eq!(bucket.remaining(), 1);
        assert_eq!(bucket.reset(), ms(59_000));
        // Never above the limit, however long it waits.
        bucket.refill(t0 + Duration::from_secs(3600));
        assert_eq!(bucket.remaining(), 60);
        assert_eq!(bucket.reset(), Duration::ZERO);
    }

    #[test]
    fn bucket_ignores_time_going_backwards() {
        let t0 = Instant::now();
        let mut bucket = Bucket::full(6, t0 + ms(1000));
        bucket.take(6);
        bucket.refill(t0);
        assert_eq!(bucket.remaining(), 0);
        bucket.refill(t0 + ms(11_000));
        assert_eq!(bucket.remaining(), 1);
    }

    #[test]
    fn bucket_waits_for_a_large_amount() {
        let t0 = Instant::now();
        let mut bucket = Bucket::full(1000, t0);
        bucket.take(900);
        // 1000 per minute: 600 more tokens take 36 s.
        assert_eq!(bucket.wait_for(700), ms(36_000));
        assert_eq!(bucket.wait_for(50), Duration::ZERO);
        assert_eq!(bucket.reset(), ms(54_000));
    }

    #[test]
    fn durations_are_written_like_openai() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(1), "1ms"),
            (Duration::from_micros(300), "1ms"),
            (ms(250), "250ms"),
            (ms(999), "999ms"),
            (ms(1000), "1s"),
            (ms(1200), "1.2s"),
            (ms(1234), "1.234s"),
            (ms(1050), "1.05s"),
            (ms(59_999), "59.999s"),
            (ms(60_000), "1m0s"),
            (ms(360_000), "6m0s"),
            (ms(361_500), "6m1.5s"),
            (ms(3_600_000), "1h0m0s"),
            (ms(3_605_000), "1h0m5s"),
        ];
        for (duration, text) in cases {
            assert_eq!(format_duration(duration), text, "{duration:?}");
        }
    }

    #[test]
    fn limiter_refuses_past_the_rpm_and_recovers() {
        let limiter = RateLimiter::new(2, 0).unwrap();
        let t0 = Instant::now();
        let first = limiter.admit(Caller::Anonymous, 5, t0).unwrap();
        assert_eq!(first.tokens, None);
        assert_eq!(
            first.requests,
            Some(Status {
                limit: 2,
                remaining: 1,
                reset: ms(30_000)
            })
        );
        limiter.admit(Caller::Anonymous, 5, t0).unwrap();
        let refused = limiter.admit(Caller::Anonymous, 5, t0).unwrap_err();
        assert_eq!(
            (refused.kind, refused.limit, refused.used, refused.requested),
            (Kind::Requests, 2, 2, 1)
        );
        assert_eq!(refused.retry_after, ms(30_000));
        assert_eq!(refused.report.requests.unwrap().remaining, 0);
        // Refusing took nothing: the next request passes exactly when the first one would.
        assert!(limiter
            .admit(Caller::Anonymous, 5, t0 + ms(29_999))
            .is_err());
        assert!(limiter.admit(Caller::Anonymous, 5, t0 + ms(30_000)).is_ok());
    }

    #[test]
    fn limiter_keeps_a_bucket_per_caller() {
        let limiter = RateLimiter::new(1, 0).unwrap();
        let t0 = Instant::now();
        assert!(limiter.admit(Caller::Key(0), 1, t0).is_ok());
        assert!(limiter.admit(Caller::Key(0), 1, t0).is_err());
        assert!(limiter.admit(Caller::Key(1), 1, t0).is_ok());
        assert!(limiter.admit(Caller::Anonymous, 1, t0).is_ok());
        assert_eq!(
            limiter.peek(Caller::Key(2), t0).requests.unwrap().remaining,
            1
        );
        assert_eq!(
            limiter.peek(Caller::Key(0), t0).requests.unwrap().remaining,
            0
        );
    }

    #[test]
    fn limiter_counts_tokens() {
        let limiter = RateLimiter::new(0, 100).unwrap();
        let t0 = Instant::now();
        let report = limiter.admit(Caller::Anonymous, 70, t0).unwrap();
        assert_eq!(report.requests, None);
        assert_eq!(report.tokens.unwrap().remaining, 30);
        let refused = limiter.admit(Caller::Anonymous, 40, t0).unwrap_err();
        assert_eq!(
            (refused.kind, refused.used, refused.requested),
            (Kind::Tokens, 70, 40)
        );
        // 10 tokens missing at 100 per minute: 6 s.
        assert_eq!(refused.retry_after, ms(6000));
        let error = refused.error("gpt-4o");
        assert_eq!(
            (error.status, error.kind, error.code),
            (429, "tokens", Some("rate_limit_exceeded"))
        );
        assert_eq!(
            error.message,
            "Rate limit reached for gpt-4o on tokens per min (TPM): Limit 100, Used 70, Requested 40. \
             Please try again in 6s."
        );
        // More than the limit can never pass: told so, with a wait until the bucket is full.
        let too_large = limiter.admit(Caller::Anonymous, 500, t0).unwrap_err();
        assert!(too_large.error("m").message.starts_with(
            "Request too large for m on tokens per min (TPM): Limit 100, Requested 500."
        ));
        assert_eq!(too_large.retry_after, ms(42_000));
    }

    #[test]
    fn requests_message_matches_openai() {
        let limiter = RateLimiter::new(60, 1000).unwrap();
        let t0 = Instant::now();
        for _ in 0..60 {
            limiter.admit(Caller::Key(3), 1, t0).unwrap();
        }
        let refused = limiter.admit(Caller::Key(3), 1, t0 + ms(200)).unwrap_err();
        let error = refused.error("mock-gpt-model");
        assert_eq!(error.kind, "requests");
        assert_eq!(
            error.message,
            "Rate limit reached for mock-gpt-model on requests per min (RPM): Limit 60, Used 60, \
             Requested 1. Please try again in 800ms."
        );
        // 60 tokens taken, 3.3 flowed back in 200 ms at 1000 per minute.
        assert_eq!(refused.report.tokens.unwrap().remaining, 943);
    }

    #[test]
    fn off_when_both_limits_are_zero() {
        assert!(RateLimiter::new(0, 0).is_none());
    }

    #[test]
    fn estimate_counts_body_words_and_output_allowance() {
        let body = br#"{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi there"}]}"#;
        let estimate = estimate(body, 64, true);
        assert_eq!(
            estimate,
            Estimate {
                tokens: 8 + DEFAULT_OUTPUT_TOKENS,
                model: Some("gpt-4o".into())
            }
        );
        let with_max = br#"{"model":"m","max_tokens":100,"messages":[]}"#;
        assert_eq!(super::estimate(with_max, 64, true).tokens, 1 + 100);
        let both = br#"{"max_tokens":100,"max_completion_tokens":7}"#;
        assert_eq!(super::estimate(both, 64, true).tokens, 1 + 7);
        let embeddings = br#"{"model":"e","input":"a b c","max_tokens":9}"#;
        assert_eq!(super::estimate(embeddings, 64, false).tokens, 3);
        // Bad JSON, a wrong type or too deep a body: the text and the default, no model.
        for bad in [&b"{notjson"[..], br#"{"max_tokens":"x"}"#, b"[[[[1]]]]"] {
            let e = super::estimate(bad, 3, true);
            assert_eq!(e.model, None, "{bad:?}");
            assert_eq!(e.tokens, 1 + DEFAULT_OUTPUT_TOKENS, "{bad:?}");
        }
    }
}
