//! Failure injection by header: `x-standin-fail: KIND` makes one request fail the way real servers do, so
//! a client's retry, timeout and error handling can be tested against the real thing. Kinds before the
//! response: `429`, `500`, `503`, `context_length`, `401`, `404`, `reset`, `stall`; after the stream
//! started: `stream-error`, `stream-cut:K`, `stream-stall`, `no-done` (streaming requests only).
//! `--fail-rate KIND=P` injects the same kinds at random into requests that carry no header.

use std::time::Duration;

use crate::openai::ApiError;

/// Header that selects a failure.
pub const HEADER: &str = "x-standin-fail";
/// How long a stall lasts at most when the client never gives up.
pub const MAX_STALL: Duration = Duration::from_secs(600);
/// Seconds a 429 tells the client to wait (`retry-after`), and the same in milliseconds.
const RETRY_AFTER: &str = "1";
const RETRY_AFTER_MS: &str = "1000";

/// A failure to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// An error response instead of the answer.
    Error(Injected),
    /// Reset the connection without answering.
    Reset,
    /// Answer nothing until the client gives up.
    Stall,
    /// A failure inside a stream.
    Stream(StreamFault),
}

/// Error responses that can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// 429 with `retry-after` and `x-ratelimit-*` headers.
    RateLimited,
    /// 500.
    Internal,
    /// 503.
    Overloaded,
    /// 400 `context_length_exceeded`.
    ContextLength,
    /// 401 `invalid_api_key`.
    Unauthorized,
    /// 404 `model_not_found`.
    ModelNotFound,
}

/// Failures after the stream started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFault {
    /// An `{"error": …}` event after the first token, then the stream ends without `[DONE]`.
    Error,
    /// The connection drops after this many content chunks.
    Cut(u32),
    /// Nothing more after the first token until the client gives up.
    Stall,
    /// A complete stream without `data: [DONE]`.
    NoDone,
}

/// How a stream ends.
pub enum Ending {
    /// Properly: the terminating chunk.
    Finish,
    /// Dropped mid-body (`stream-cut:K`).
    Cut,
    /// Silent until the client gives up (`stream-stall`).
    Stall,
}

/// The event `stream-error` sends: what the OpenAI SDK turns into an `APIError` mid-iteration.
pub const STREAM_ERROR: &str = r#"{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":"stream_error"}}"#;

/// Reads the header value; `None` when absent.
pub fn parse(value: Option<&[u8]>) -> Result<Option<Fault>, ApiError> {
    let Some(value) = value else { return Ok(None) };
    let text = std::str::from_utf8(value).unwrap_or("");
    let fault = match text {
        "429" => Fault::Error(Injected::RateLimited),
        "500" => Fault::Error(Injected::Internal),
        "503" => Fault::Error(Injected::Overloaded),
        "context_length" => Fault::Error(Injected::ContextLength),
        "401" => Fault::Error(Injected::Unauthorized),
        "404" => Fault::Error(Injected::ModelNotFound),
        "reset" => Fault::Reset,
        "stall" => Fault::Stall,
        "stream-error" => Fault::Stream(StreamFault::Error),
        "stream-stall" => Fault::Stream(StreamFault::Stall),
        "no-done" => Fault::Stream(StreamFault::NoDone),
        other => match other.strip_prefix("stream-cut:").map(str::parse::<u32>) {
            Some(Ok(k)) => Fault::Stream(StreamFault::Cut(k)),
            _ => {
                let message = format!(
                    "Header {HEADER} must be one of 429, 500, 503, context_length, 401, 404, reset, stall, \
                     stream-error, stream-cut:K, stream-stall, no-done."
                );
                return Err(ApiError::invalid(message, None, "invalid_value"));
            }
        },
    };
    Ok(Some(fault))
}

/// Failures injected at random, each kind with its probability (together at most 1): `--fail-rate KIND=P`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates(Vec<(Fault, f64)>);

impl Rates {
    /// Reads `KIND=P` items, e.g. `429=0.05`, `stream-cut:3=0.01`.
    pub fn parse(items: &[String]) -> Result<Rates, String> {
        let mut rates = Vec::new();
        for item in items {
            let bad =
                || format!("`--fail-rate` wants KIND=PROBABILITY (e.g. 429=0.05), got `{item}`");
            let (kind, p) = item.rsplit_once('=').ok_or_else(bad)?;
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(0.0..=1.0).contains(&p) {
                return Err(bad());
            }
            let fault = parse(Some(kind.trim().as_bytes()))
                .map_err(|e| e.message.to_string())?
                .ok_or_else(bad)?;
            rates.push((fault, p));
        }
        if rates.iter().map(|(_, p)| p).sum::<f64>() > 1.0 + 1e-9 {
            return Err("`--fail-rate` probabilities add up to more than 1".into());
        }
        Ok(Rates(rates))
    }

    /// The failure for a request whose uniform draw in [0, 1) is `u`, if any.
    pub fn pick(&self, u: f64) -> Option<Fault> {
        let mut edge = 0.0;
        for (fault, p) in &self.0 {
            edge += p;
            if u < edge {
                return Some(*fault);
            }
        }
        None
    }

    /// No random failures configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Injected {
    /// The error, as OpenAI words it, for a request to `model`.
    pub fn error(self, model: &str) -> ApiError {
        let (status, kind, message, param, code): (u16, _, String, _, _) = match self {
            Injected::RateLimited => (
                429,
                "requests",
                format!("Rate limit reached for {model} on requests per min (RPM): Limit 60, Used 60, Requested 1. Please try again in 1s."),
                None,
                "rate_limit_exceeded",
            ),
            Injected::Internal => (500, "server_error", "The server had an error while processing your request. Sorry about that!".into(), None, "internal_error"),
            Injected::Overloaded => (503, "server_error", "The engine is currently overloaded, please try again later.".into(), None, "service_unavailable"),
            Injected::ContextLength => (
                400,
                "invalid_request_error",
                format!("This model's maximum context length is 8192 tokens. However, your messages resulted in more tokens. Please reduce the length of the messages. ({model})"),
                Some("messages".to_string()),
                "context_length_exceeded",
            ),
            Injected::Unauthorized => return ApiError::unauthorized("Incorrect API key provided."),
            Injected::ModelNotFound => return ApiError::model_not_found(model),
        };
        ApiError {
            status,
            kind,
            message: message.into(),
            param,
            code: Some(code),
        }
    }

    /// Headers that go with the error: a 429 says when to retry, as OpenAI's do.
    pub fn headers(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Injected::RateLimited => &[
                ("retry-after", RETRY_AFTER),
                ("retry-after-ms", RETRY_AFTER_MS),
                ("x-ratelimit-limit-requests", "60"),
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "1s"),
                ("x-ratelimit-limit-tokens", "150000"),
                ("x-ratelimit-remaining-tokens", "150000"),
                ("x-ratelimit-reset-tokens", "0s"),
            ],
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses() {
        let kinds = [
            ("429", Fault::Error(Injected::RateLimited)),
            ("500", Fault::Error(Injected::Internal)),
            ("503", Fault::Error(Injected::Overloaded)),
            ("context_length", Fault::Error(Injected::ContextLength)),
            ("401", Fault::Error(Injected::Unauthorized)),
            ("404", Fault::Error(Injected::ModelNotFound)),
            ("reset", Fault::Reset),
            ("stall", Fault::Stall),
            ("stream-error", Fault::Stream(StreamFault::Error)),
            ("stream-cut:3", Fault::Stream(StreamFault::Cut(3))),
            ("stream-stall", Fault::Stream(StreamFault::Stall)),
            ("no-done", Fault::Stream(StreamFault::NoDone)),
        ];
        for (text, fault) in kinds {
            assert_eq!(parse(Some(text.as_bytes())).unwrap(), Some(fault), "{text}");
        }
        assert_eq!(parse(None).unwrap(), None);
        for bad in ["", "418", "stream-cut:", "stream-cut:x", "RESET"] {
            let e = parse(Some(bad.as_bytes())).unwrap_err();
            assert_eq!((e.status, e.code), (400, Some("invalid_value")), "{bad}");
        }
    }

    #[test]
    fn rates_parse_and_pick_by_cumulative_probability() {
        let items = ["429=0.25".to_string(), "stream-cut:2=0.5".to_string()];
        let rates = Rates::parse(&items).unwrap();
        assert_eq!(rates.pick(0.1), Some(Fault::Error(Injected::RateLimited)));
        assert_eq!(rates.pick(0.3), Some(Fault::Stream(StreamFault::Cut(2))));
        assert_eq!(rates.pick(0.8), None);
        assert!(Rates::parse(&[]).unwrap().is_empty());
        for bad in ["429", "429=2", "429=x", "teapot=0.1"] {
            assert!(Rates::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
        let over = ["500=0.6".to_string(), "503=0.6".to_string()];
        assert!(Rates::parse(&over).is_err());
    }

    #[test]
    fn injected_errors_match_openai() {
        let e = Injected::RateLimited.error("gpt-4o");
        assert_eq!(
            (e.status, e.kind, e.code),
            (429, "requests", Some("rate_limit_exceeded"))
        );
        assert!(Injected::RateLimited
            .headers()
            .contains(&("retry-after-ms", "1000")));
        let e = Injected::ContextLength.error("m");
        assert_eq!(
            (e.status, e.param.as_deref(), e.code),
            (400, Some("messages"), Some("context_length_exceeded"))
        );
        assert_eq!(Injected::Overloaded.error("m").status, 503);
        assert_eq!(Injected::Internal.error("m").kind, "server_error");
        assert_eq!(Injected::Unauthorized.error("m").status, 401);
        assert_eq!(
            Injected::ModelNotFound.error("m").code,
            Some("model_not_found")
        );
    }
}
