//! What the harness measured about one request: monotonic timestamps (offsets from the run's start), counts,
//! and the error if it failed. Everything the statistics and reports need, nothing they must recompute; the
//! `--raw` file (`raw.rs`) is these records, one per line.

use std::time::Duration;

/// Why a request did not count as a success. Each kind is reported with its count, never hidden.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// TCP connect failed.
    Connect,
    /// No complete answer within the request timeout.
    Timeout,
    /// The connection broke while reading or writing.
    Io,
    /// A non-2xx status.
    Status(u16),
    /// The response did not parse as HTTP or JSON.
    MalformedHttp,
    /// An SSE line that is not `data: <json>` / `data: [DONE]`, or a chunk that is not JSON.
    MalformedSse,
    /// A 200 stream that carried no content.
    NoContent,
    /// A stream that ended without `data: [DONE]`.
    NoDone,
    /// An `{"error": …}` object inside a 200 stream.
    StreamError,
    /// The usage chunk's completion_tokens disagree with the content events received.
    UsageMismatch,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect => f.write_str("connect"),
            Failure::Timeout => f.write_str("timeout"),
            Failure::Io => f.write_str("io"),
            Failure::Status(s) => write!(f, "http_{s}"),
            Failure::MalformedHttp => f.write_str("malformed_http"),
            Failure::MalformedSse => f.write_str("malformed_sse"),
            Failure::NoContent => f.write_str("no_content"),
            Failure::NoDone => f.write_str("no_done"),
            Failure::StreamError => f.write_str("stream_error"),
            Failure::UsageMismatch => f.write_str("usage_mismatch"),
        }
    }
}

impl std::str::FromStr for Failure {
    type Err = String;

    /// The inverse of `Display`: `http_503` → `Status(503)`, `timeout` → `Timeout`, …
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "connect" => Failure::Connect,
            "timeout" => Failure::Timeout,
            "io" => Failure::Io,
            "malformed_http" => Failure::MalformedHttp,
            "malformed_sse" => Failure::MalformedSse,
            "no_content" => Failure::NoContent,
            "no_done" => Failure::NoDone,
            "stream_error" => Failure::StreamError,
            "usage_mismatch" => Failure::UsageMismatch,
            other => match other.strip_prefix("http_").map(str::parse) {
                Some(Ok(status)) => Failure::Status(status),
                _ => return Err(format!("unknown failure kind {other:?}")),
            },
        })
    }
}

/// One request's measurements. Times are offsets from the run's start on the monotonic clock.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// Which server (0 = the `--url` one, 1 = `--compare`).
    pub target: u8,
    /// Sent during warm-up: excluded from results.
    pub warmup: bool,
    /// When the runner took it up (before any connect): `[began, end]` is when it counted as in flight.
    pub began: Duration,
    /// When the schedule wanted it sent (open loop); equals `sent` in closed loop.
    pub intended: Duration,
    /// When its first byte was written.
    pub sent: Duration,
    /// When the response head was complete.
    pub head: Option<Duration>,
    /// When the first body byte arrived.
    pub first_byte: Option<Duration>,
    /// First SSE event whose `choices` is non-empty (vLLM's TTFT rule).
    pub first_choice: Option<Duration>,
    /// First SSE event with non-empty `delta.content` (the stricter TTFT rule).
    pub first_content: Option<Duration>,
    /// Arrival of every event carrying content, in order (ITL is their differences).
    pub content_events: Vec<Duration>,
    /// Last content event (E2EL ends here).
    pub last_token: Option<Duration>,
    /// `data: [DONE]`.
    pub done: Option<Duration>,
    /// When the exchange ended (success or not).
    pub end: Duration,
    /// Events that arrived in the same read as the event before them.
    pub coalesced_events: u32,
    /// Output tokens: the usage chunk's `completion_tokens`, else the number of content events.
    pub output_tokens: u64,
    /// Prompt tokens from usage (0 when unknown).
    pub prompt_tokens: u64,
    /// Whether `output_tokens` came from a usage object.
    pub usage_reported: bool,
    /// Response bytes received (head + body).
    pub bytes: u64,
    /// `None` on success.
    pub failure: Option<Failure>,
    /// The client hung up on purpose (`--disconnect`) before the answer was complete: neither a success nor
    /// a failure, counted apart and kept out of every latency and token figure.
    pub abandoned: bool,
}

impl Record {
    /// Succeeded, not abandoned, and not warm-up: counts in latency statistics.
    pub fn counts(&self) -> bool {
        !self.warmup && self.failure.is_none() && !self.abandoned
    }

    /// Time to first token by vLLM's rule (first event with choices), from the actual send.
    pub fn ttft(&self) -> Option<Duration> {
        self.first_choice
            .or(self.first_content)
            .map(|t| t.saturating_sub(self.sent))
    }

    /// Time to the first non-empty content, from the actual send.
    pub fn ttft_content(&self) -> Option<Duration> {
        self.first_content.map(|t| t.saturating_sub(self.sent))
    }

    /// End-to-end latency to the last token (non-streaming: to the end of the body), from the actual send.
    pub fn e2el(&self) -> Duration {
        self.last_token
            .unwrap_or(self.end)
            .saturating_sub(self.sent)
    }

    /// Time per output token after the first: `(e2el - ttft) / (tokens - 1)`; `None` for one token or fewer.
    pub fn tpot(&self) -> Option<Duration> {
        let ttft = self.ttft()?;
        if self.output_tokens < 2 {
            return None;
        }
        Some(self.e2el().saturating_sub(ttft) / (self.output_tokens - 1) as u32)
    }

    /// Gaps between consecutive content events.
    pub fn itl(&self) -> impl Iterator<Item = Duration> + '_ {
        self.content_events
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]))
    }

    /// How late the request left compared with its schedule.
    pub fn send_lag(&self) -> Duration {
        self.sent.saturating_sub(self.intended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_kinds_parse_back_from_their_names() {
        let kinds = [
            Failure::Connect,
            Failure::Timeout,
            Failure::Io,
            Failure::Status(503),
            Failure::Status(429),
            Failure::MalformedHttp,
            Failure::MalformedSse,
            Failure::NoContent,
            Failure::NoDone,
            Failure::StreamError,
            Failure::UsageMismatch,
        ];
        for kind in kinds {
            assert_eq!(kind.to_string().parse::<Failure>(), Ok(kind));
        }
        assert!("http_x".parse::<Failure>().is_err());
        assert!("gone".parse::<Failure>().is_err());
    }

    #[test]
    fn abandoned_requests_do_not_count() {
        let rec = Record {
            abandoned: true,
            ..Record::default()
        };
        assert!(!rec.counts());
        assert!(Record::default().counts());
    }
}
