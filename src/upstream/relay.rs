//! An `upstream` model at work: a client's request sent to its targets in fallback order and the answer
//! relayed back in the OpenAI shape. A target is skipped while cooling down after a failure; the next one is
//! tried on a connect error, a timeout, a 429 or a 5xx, but only before any byte reached the client. A stream
//! is relayed event by event as it arrives; when the client leaves, the upstream connection is dropped.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::collections::BTreeMap as Map;

use serde_json::value::RawValue;
use serde_json::Value;

use super::client::{Response, Timeouts};
use super::health::Health;
use super::normalize::{self, Endpoint, StreamFixer};
use super::pool::{Pool, PoolConfig};
use super::request::Request;
use super::spec::{Target, Upstream};
use super::sse::{SseParser, DEFAULT_MAX_EVENT_BYTES};
use super::UpstreamError;
use crate::http::Responder;
use crate::metrics::ModelMetrics;

/// Largest non-streaming body taken from an upstream: far above any completion or embedding batch.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// Largest error body kept for re-shaping.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// How long an upstream's own model list is reused before it is asked again.
const MODEL_LIST_TTL: Duration = Duration::from_secs(30);
/// Time allowed to fetch an upstream's model list: `/v1/models` must stay quick when an upstream is down.
const MODEL_LIST_TIMEOUT: Duration = Duration::from_secs(2);

/// Headers of an upstream 429 or 503 that tell a client when to retry, passed on with the error.
const RETRY_HEADERS: [&str; 8] = [
    "retry-after",
    "retry-after-ms",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
];

/// The event sent when the upstream breaks after the stream started.
const BROKEN_STREAM: &str = r#"{"error":{"message":"The upstream model server stopped responding mid-stream.","type":"server_error","param":null,"code":"upstream_error"}}"#;

/// One target with its connections and health.
struct Hop {
    target: Target,
    pool: Pool,
    health: Health,
}

/// What a request needs relayed.
pub struct Forward<'a> {
    /// Which endpoint, and so which repairs.
    pub endpoint: Route,
    /// The client's body, already validated.
    pub body: &'a [u8],
    /// The model name the client sent.
    pub model: &'a str,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// The client's `stream_options.include_usage`.
    pub include_usage: bool,
    /// Prompt tokens by standin's rule, for synthesised usage and metrics.
    pub prompt_tokens: u64,
    /// The model's series at `/metrics`.
    pub metrics: &'a ModelMetrics,
    /// When the request arrived, for metrics.
    pub start: Instant,
}

/// The routes an upstream model serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/chat/completions`.
    Chat,
    /// `/completions`.
    Completions,
    /// `/embeddings`: relayed as is.
    Embeddings,
}

impl Route {
    fn path(self) -> &'static str {
        match self {
            Route::Chat => "/chat/completions",
            Route::Completions => "/completions",
            Route::Embeddings => "/embeddings",
        }
    }

    fn endpoint(self) -> Option<Endpoint> {
        match self {
            Route::Chat => Some(Endpoint::Chat),
            Route::Completions => Some(Endpoint::Completions),
            Route::Embeddings => None,
        }
    }
}

/// An upstream model's targets.
pub struct Relay {
    hops: Vec<Hop>,
    list_models: bool,
    /// The upstreams' own model ids and when they were fetched.
    listed: Mutex<Option<(Instant, Vec<String>)>>,
}

impl Relay {
    /// A relay over `upstream`'s targets, each with its own pool.
    pub fn new(upstream: &Upstream) -> Self {
        let hops = (upstream.targets.iter())
            .map(|target| Hop {
                pool: Pool::new(
                    target.addr,
                    PoolConfig {
                        timeouts: Timeouts {
                            connect: target.connect_timeout,
                            first_byte: target.first_byte_timeout,
                            idle: target.idle_timeout,
                        },
                        ..PoolConfig::default()
                    },
                ),
                health: Health::new(upstream.cooldown),
                target: target.clone(),
            })
            .collect();
        Relay {
            hops,
            list_models: upstream.list_models,
            listed: Mutex::new(None),
        }
    }

    /// Answers `fwd` from the first target that gives an answer.
    pub fn serve(&self, fwd: &Forward<'_>, res: &mut Responder<'_>) {
        let _running = fwd.metrics.start_request();
        // Fields stay raw: only `model` is replaced, nothing else is re-encoded.
        let mut parsed: Map<String, Box<RawValue>> =
            serde_json::from_slice(fwd.body).unwrap_or_default();
        let own_listed = self.lists(fwd.model);
        let mut last = UpstreamError::Connect(std::io::ErrorKind::NotConnected);
        let now = Instant::now();
        // Targets in cool-down go last rather than not at all: a late try beats a certain 502.
        // Collected first: failures recorded during this loop must not change its order.
        let order: Vec<&Hop> = (self.hops.iter().filter(|h| h.health.is_available(now)))
            .chain(self.hops.iter().filter(|h| !h.health.is_available(now)))
            .collect();
        // A 429's retry headers, passed on if it is the last answer.
        let mut retry: Vec<(&'static str, String)> = Vec::new();
        for hop in order {
            let model = match (&hop.target.model, own_listed) {
                (Some(name), false) => name.as_str(),
                _ => fwd.model,
            };
            let name = serde_json::to_string(model).unwrap_or_default();
            if let Ok(raw) = RawValue::from_string(name) {
                parsed.insert("model".into(), raw);
            }
            let body = serde_json::to_vec(&parsed).unwrap_or_default();
            let path = format!("{}{}", hop.target.prefix, fwd.endpoint.path());
            let auth = hop.target.api_key.as_ref().map(|k| format!("Bearer {k}"));
            let mut headers = vec![("content-type", "application/json")];
            if fwd.stream {
                headers.push(("accept", "text/event-stream"));
            }
            if let Some(auth) = &auth {
                headers.push(("authorization", auth.as_str()));
            }
            let req = Request {
                method: "POST",
                host: &hop.target.host,
                path: &path,
                headers: &headers,
                body: &body,
            };
            let resp = match hop.pool.send(&req) {
                Ok(resp) => resp,
                Err(e) => {
                    hop.health.record_failure(Instant::now());
                    last = e;
                    continue;
                }
            };
            let status = resp.status();
            if status == 429 || status >= 500 {
                hop.health.record_failure(Instant::now());
                retry = (RETRY_HEADERS.iter())
                    .filter_map(|name| Some((*name, resp.header(name)?.to_string())))
                    .collect();
                last = resp.into_error(MAX_ERROR_BODY);
                continue;
            }
            retry.clear();
            hop.health.record_success();
            if status != 200 {
                // The upstream refused the request itself: another target would refuse it too.
                let error = resp.into_error(MAX_ERROR_BODY);
                return send_error(&error, &[], res);
            }
            let event_stream = (resp.header("content-type"))
                .is_some_and(|t| t.trim_start().starts_with("text/event-stream"));
            match fwd.endpoint.endpoint() {
                Some(endpoint) if fwd.stream && event_stream => {
                    relay_stream(hop, resp, endpoint, fwd, res)
                }
                _ => relay_body(hop, resp, fwd, res),
            }
            return;
        }
        let headers: Vec<(&str, &str)> = retry.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let headers = if matches!(last, UpstreamError::Status(..)) {
            &headers[..]
        } else {
            &[]
        };
        send_error(&last, headers, res);
    }

    /// Whether an upstream's own list holds `id` (only with `list_models`).
    pub fn lists(&self, id: &str) -> bool {
        self.list_models && self.model_ids().iter().any(|m| m == id)
    }

    /// The upstreams' own model ids (with `list_models`), fetched at most every 30 s (`MODEL_LIST_TTL`).
    pub fn model_ids(&self) -> Vec<String> {
        if !self.list_models {
            return Vec::new();
        }
        if let Some((at, ids)) = &*self.listed.lock().unwrap_or_else(|e| e.into_inner()) {
            if at.elapsed() < MODEL_LIST_TTL {
                return ids.clone();
            }
        }
        // Fetched without the lock held: a slow upstream must not block other coroutines on a std mutex.
        let mut ids: Vec<String> = Vec::new();
        for hop in &self.hops {
            for id in fetch_model_ids(&hop.target).unwrap_or_default() {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        *self.listed.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), ids.clone()));
        ids
    }
}

/// `GET {prefix}/models` on one target, on a fresh connection with a short timeout.
fn fetch_model_ids(target: &Target) -> Option<Vec<String>> {
    let timeouts = Timeouts {
        connect: MODEL_LIST_TIMEOUT.min(target.connect_timeout),
        first_byte: MODEL_LIST_TIMEOUT,
        idle: MODEL_LIST_TIMEOUT,
    };
    let conn = super::Connection::connect(target.addr, timeouts).ok()?;
    let path = format!("{}/models", target.prefix);
    let auth = target.api_key.as_ref().map(|k| format!("Bearer {k}"));
    let mut headers = Vec::new();
    if let Some(auth) = &auth {
        headers.push(("authorization", auth.as_str()));
    }
    let req = Request {
        method: "GET",
        host: &target.host,
        path: &path,
        headers: &headers,
        body: b"",
    };
    let mut resp = conn.exchange(&req).ok()?;
    if resp.status() != 200 {
        return None;
    }
    let mut body = Vec::new();
    resp.read_to_end(&mut body, MAX_ERROR_BODY * 16).ok()?;
    let list: Value = serde_json::from_slice(&body).ok()?;
    let ids = list.get("data")?.as_array()?.iter();
    Some(
        ids.filter_map(|m| m.get("id")?.as_str().map(str::to_string))
            .collect(),
    )
}

/// A failure before anything reached the client: the upstream's own error re-shaped (its status kept, so a
/// 429 still tells the client to retry), or 502/504 for a transport failure.
fn send_error(error: &UpstreamError, headers: &[(&str, &str)], res: &mut Responder<'_>) {
    match error {
        UpstreamError::Status(status, body) => {
            let envelope = normalize::error_envelope(*status, body);
            res.body().extend_from_slice(&envelope);
            res.send(*status, "application/json", headers);
        }
        other => {
            let api = other.api_error();
            api.write_json(res.body());
            res.send(api.status, "application/json", &[]);
        }
    }
}

/// A whole body: repaired when it is a completion, passed on when it is anything else that succeeded.
fn relay_body(hop: &Hop, mut resp: Response, fwd: &Forward<'_>, res: &mut Responder<'_>) {
    let mut body = Vec::new();
    if let Err(e) = resp.read_to_end(&mut body, MAX_BODY) {
        hop.health.record_failure(Instant::now());
        return send_error(&e, &[], res);
    }
    hop.pool.release(resp);
    let fixed = match fwd.endpoint.endpoint() {
        Some(endpoint) => match normalize::fix_completion(endpoint, &body, fwd.prompt_tokens) {
            Some(fixed) => fixed,
            None => {
                let error = UpstreamError::Protocol("not a completion".into());
                return send_error(&error, &[], res);
            }
        },
        None => body,
    };
    let (prompt, generated) = usage_of(&fixed);
    let e2e = fwd.start.elapsed();
    fwd.metrics.finish_request(
        prompt.unwrap_or(fwd.prompt_tokens),
        generated,
        e2e,
        e2e,
        false,
    );
    res.body().extend_from_slice(&fixed);
    res.send(200, "application/json", &[]);
}

/// Prompt and completion tokens from a body's `usage`.
fn usage_of(body: &[u8]) -> (Option<u64>, u64) {
    let usage = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("usage").cloned());
    let field = |name: &str| usage.as_ref().and_then(|u| u.get(name)?.as_u64());
    (
        field("prompt_tokens"),
        field("completion_tokens").unwrap_or(0),
    )
}

/// An event stream, relayed as it arrives: every upstream read is parsed, repaired and flushed at once.
fn relay_stream(
    hop: &Hop,
    mut resp: Response,
    endpoint: Endpoint,
    fwd: &Forward<'_>,
    res: &mut Responder<'_>,
) {
    let mut sse = res.start_sse(200, &[]);
    let mut parser = SseParser::new(DEFAULT_MAX_EVENT_BYTES);
    let mut fixer = StreamFixer::new(endpoint, fwd.include_usage, fwd.prompt_tokens);
    let (mut bytes, mut out) = (Vec::new(), Vec::new());
    let mut first_event: Option<Instant> = None;
    let ended = loop {
        bytes.clear();
        match resp.read_some(&mut bytes) {
            Ok(0) => break Ok(()),
            Ok(_) => parser.feed(&bytes),
            Err(e) => break Err(e),
        }
        let mut oversized = false;
        loop {
            match parser.next_event() {
                Ok(Some(data)) => fixer.push(data, &mut out),
                Ok(None) => break,
                Err(_) => {
                    oversized = true;
                    break;
                }
            }
        }
        if oversized {
            break Err(UpstreamError::Protocol("event too large".into()));
        }
        if out.is_empty() {
            continue;
        }
        first_event.get_or_insert_with(Instant::now);
        if write_all(&mut sse, &mut out).is_err() {
            // The client left: dropping `resp` closes the upstream request too.
            return;
        }
        if fixer.is_finished() {
            break Ok(());
        }
    };
    match ended {
        Ok(()) => {
            if let Ok(Some(data)) = parser.finish() {
                fixer.push(data, &mut out);
            }
            fixer.finish(&mut out);
            first_event.get_or_insert_with(Instant::now);
            if write_all(&mut sse, &mut out).is_ok() && sse.finish().is_ok() {
                let ttft = first_event.map_or(Duration::ZERO, |t| t - fwd.start);
                let generated = fixer.counted_tokens();
                fwd.metrics.finish_request(
                    fwd.prompt_tokens,
                    generated,
                    ttft,
                    fwd.start.elapsed(),
                    false,
                );
            }
            if resp.is_done() {
                hop.pool.release(resp);
            }
        }
        Err(_) => {
            // Bytes already went out: never retry; tell the client as an SDK understands it.
            hop.health.record_failure(Instant::now());
            let _ = sse.event(|o| o.extend_from_slice(BROKEN_STREAM.as_bytes()));
            let _ = sse.finish();
        }
    }
}

fn write_all(
    sse: &mut crate::http::sse::SseWriter<'_>,
    out: &mut Vec<Vec<u8>>,
) -> std::io::Result<()> {
    for payload in out.drain(..) {
        sse.event(|o| o.extend_from_slice(&payload))?;
    }
    sse.flush()
}
