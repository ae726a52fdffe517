//! The application: routes requests to endpoints, checks keys, applies CORS and rate limits, renders every
//! error as OpenAI's envelope and feeds the access log. It implements the HTTP layer's [`Handler`].

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::admission::Permit;
use crate::auth::{Caller, Keys};
use crate::catalog::{Catalog, Served, Source};
use crate::completion;
use crate::config::Config;
use crate::cors::Cors;
use crate::embeddings;
use crate::faults::{self, Fault, StreamFault};
use crate::http::lifecycle::LIFECYCLE;
use crate::http::{Exchange, Handler, HttpError, Method, Request, Responder};
use crate::ids;
use crate::job::Job;
use crate::legacy;
use crate::log::AccessLog;
use crate::metrics::METRICS;
use crate::models::profile::{Overrides, Profile};
use crate::models::Model;
use crate::openai::{self, chat, completions, models, ApiError};
use crate::pacing::Plan;
use crate::ratelimit::{self, RateLimiter};
use crate::upstream::relay::{Forward, Route};

const JSON: &str = "application/json";

/// A request holding a slot of its model, with what its headers asked for.
struct Admitted<'s> {
    /// Frees the slot when the request is done.
    _permit: Permit<'s>,
    plan: Plan,
    output_tokens: Option<u32>,
    fault: Option<StreamFault>,
}

impl Admitted<'_> {
    /// The job for a model in this process.
    fn job<'a>(&self, model: &'a dyn Model, served: Served<'a>) -> Job<'a> {
        Job {
            model,
            name: served.name,
            plan: self.plan,
            output_tokens: self.output_tokens,
            fault: self.fault,
            metrics: &served.entry.metrics,
        }
    }

    /// The forward for an upstream model (non-streaming until the caller says otherwise).
    fn forward<'a>(
        &self,
        req: &'a Request<'_>,
        served: Served<'a>,
        endpoint: Route,
        prompt_tokens: u64,
    ) -> Forward<'a> {
        Forward {
            endpoint,
            body: req.body,
            model: served.name,
            stream: false,
            include_usage: false,
            prompt_tokens,
            start: self.plan.start,
            metrics: &served.entry.metrics,
        }
    }
}

/// Shared, read-only state of a running server.
pub struct App {
    keys: Keys,
    /// Failures injected at random (`--fail-rate`).
    fail_rates: faults::Rates,
    catalog: Catalog,
    max_json_depth: usize,
    enable_panic_route: bool,
    /// `created` of every listed model: when this server started.
    started: u64,
    log: Option<AccessLog>,
    /// Allowed browser origins; `None` sends no CORS headers and leaves `OPTIONS` a 405.
    cors: Option<Cors>,
    /// Per-key limits; `None` when both are off.
    limiter: Option<RateLimiter>,
}

/// Longest delay a header may ask for: ten minutes, so a typo cannot park a coroutine for days.
const MAX_HEADER_DELAY_MS: u64 = 600_000;
/// Longest output `x-standin-output-tokens` may ask for: far past any real model's, yet a bounded reply.
const MAX_HEADER_OUTPUT_TOKENS: u64 = 100_000;
/// Most tokens `x-standin-output-tokens` may ask for over all choices of a request (`n` and prompts): a
/// reply of a few tens of MB at most, so one request cannot make the server build gigabytes.
const MAX_HEADER_OUTPUT_TOTAL: u64 = 1_000_000;

impl App {
    /// Builds the app from a validated configuration; starts the access log unless quiet.
    pub fn new(cfg: &Config) -> Self {
        App {
            keys: Keys::new(&cfg.api_keys),
            fail_rates: cfg.fail_rates.clone(),
            catalog: Catalog::new(cfg),
            max_json_depth: cfg.max_json_depth,
            enable_panic_route: cfg.enable_panic_route,
            started: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            log: (!cfg.quiet).then(AccessLog::start),
            cors: Cors::new(&cfg.cors_origins),
            limiter: RateLimiter::new(cfg.rate_limit_rpm, cfg.rate_limit_tpm),
        }
    }

    fn route(&self, req: &Request<'_>, res: &mut Responder<'_>) -> Result<(), ApiError> {
        let path = req.path();
        let method = req.method();
        let allow = match path {
            "/health" | "/metrics" => "GET",
            "/v1/chat/completions" | "/v1/completions" | "/v1/embeddings" => "POST",
            "/v1/models" => "GET",
            p if p.starts_with("/v1/models/") && p.len() > "/v1/models/".len() => "GET",
            "/debug/panic" if self.enable_panic_route => "POST",
            _ => return Err(ApiError::unknown_url(req.method_str(), path)),
        };
        let allowed = match allow {
            "GET" => matches!(method, Method::Get | Method::Head),
            _ => method == Method::Post,
        };
        // With CORS on, every route also takes OPTIONS: the preflight.
        let methods = match (&self.cors, allow) {
            (None, _) => allow,
            (Some(_), "GET") => "GET, OPTIONS",
            (Some(_), _) => "POST, OPTIONS",
        };
        if let (Some(cors), Method::Options) = (&self.cors, method) {
            // A preflight carries no key, by design of the protocol: it is answered before auth.
            if cors.allow_origin(req.header_str("origin")).is_some() {
                let requested = req.header_str("access-control-request-headers");
                cors.add_preflight(methods, requested, res);
            }
            res.send(204, "text/plain; charset=utf-8", &[("Allow", methods)]);
            return Ok(());
        }
        if !allowed {
            ApiError::method_not_allowed(req.method_str(), path).write_json(res.body());
            res.send(405, JSON, &[("Allow", methods)]);
            return Ok(());
        }
        if path == "/health" {
            // Not ready while draining, so a load balancer stops sending work here.
            if LIFECYCLE.is_draining() {
                res.body().extend_from_slice(br#"{"status":"draining"}"#);
                res.send(503, JSON, &[]);
            } else {
                res.body().extend_from_slice(br#"{"status":"ok"}"#);
                res.send(200, JSON, &[]);
            }
            return Ok(());
        }
        if path == "/metrics" {
            // Like vLLM's, outside /v1 and without a key, so a Prometheus scraper needs no secret.
            let text = METRICS.render(&self.catalog.series());
            res.body().extend_from_slice(text.as_bytes());
            res.send(200, "text/plain; version=0.0.4; charset=utf-8", &[]);
            return Ok(());
        }
        if path == "/debug/panic" {
            panic!("panic requested through /debug/panic");
        }
        let caller = self.keys.check(req.header("authorization"))?;
        if let Some(limiter) = &self.limiter {
            self.limit(limiter, caller, req, res)?;
        }
        match path {
            "/v1/embeddings" => {
                let parsed = openai::embeddings::parse(req.body, self.max_json_depth)?;
                let served = self.catalog.resolve(&parsed.model)?;
                if let Some(admitted) = self.admit(req, served, 1, res)? {
                    match &served.entry.source {
                        Source::Upstream(relay) => {
                            let usage = embeddings::usage(&parsed).prompt_tokens;
                            let forward = admitted.forward(req, served, Route::Embeddings, usage);
                            relay.serve(&forward, res);
                        }
                        Source::Local(_) => {
                            embeddings::write(&parsed, res.body());
                            res.send(200, JSON, &[]);
                        }
                    }
                };
            }
            "/v1/completions" => {
                let parsed = completions::parse(req.body, self.max_json_depth)?;
                let served = self.catalog.resolve(&parsed.model)?;
                let choices = parsed.prompts.len() as u64 * u64::from(parsed.n);
                if let Some(admitted) = self.admit(req, served, choices, res)? {
                    match &served.entry.source {
                        Source::Upstream(relay) => {
                            let prompt = legacy::prompt_tokens(&parsed);
                            let mut forward =
                                admitted.forward(req, served, Route::Completions, prompt);
                            (forward.stream, forward.include_usage) =
                                (parsed.stream, parsed.include_usage);
                            relay.serve(&forward, res);
                        }
                        Source::Local(model) => {
                            legacy::serve(&admitted.job(model.as_ref(), served), &parsed, res)
                        }
                    }
                };
            }
            "/v1/chat/completions" => {
                let chat = chat::parse(req.body, self.max_json_depth)?;
                let served = self.catalog.resolve(&chat.model)?;
                if let Some(admitted) = self.admit(req, served, u64::from(chat.n), res)? {
                    match &served.entry.source {
                        Source::Upstream(relay) => {
                            let prompt = completion::prompt_tokens(&chat);
                            let mut forward = admitted.forward(req, served, Route::Chat, prompt);
                            (forward.stream, forward.include_usage) =
                                (chat.stream, chat.include_usage);
                            relay.serve(&forward, res);
                        }
                        Source::Local(model) => {
                            completion::serve(&admitted.job(model.as_ref(), served), &chat, res)
                        }
                    }
                };
            }
            "/v1/models" => {
                models::write_list(res.body(), &self.catalog.ids(), self.started);
                res.send(200, JSON, &[]);
            }
            _ => {
                let id = &path["/v1/models/".len()..];
                self.catalog.resolve(id)?;
                models::write_model(res.body(), id, self.started);
                res.send(200, JSON, &[]);
            }
        }
        Ok(())
    }

    /// Admits one generation on `served`: reads the per-request headers, injects failures, and waits for a
    /// slot in the model's queue (503 when it is full). `None`: already answered.
    fn admit<'s>(
        &self,
        req: &Request<'_>,
        served: Served<'s>,
        choices: u64,
        res: &mut Responder<'_>,
    ) -> Result<Option<Admitted<'s>>, ApiError> {
        let overrides = Overrides {
            ttft: header_number(req, "x-standin-ttft-ms", MAX_HEADER_DELAY_MS)?
                .map(std::time::Duration::from_millis),
            itl: header_number(req, "x-standin-itl-ms", MAX_HEADER_DELAY_MS)?
                .map(std::time::Duration::from_millis),
        };
        let output_tokens =
            header_number(req, "x-standin-output-tokens", MAX_HEADER_OUTPUT_TOKENS)?
                .map(|n| n as u32);
        if output_tokens.is_some_and(|n| u64::from(n) * choices > MAX_HEADER_OUTPUT_TOTAL) {
            let message = format!(
                "Header x-standin-output-tokens times the choices asked for ({choices}) must be at most {MAX_HEADER_OUTPUT_TOTAL} tokens."
            );
            return Err(ApiError::invalid(message, None, "invalid_value"));
        }
        let Some(fault) = self.inject(req, served.name, res)? else {
            return Ok(None);
        };
        let entry = served.entry;
        let Ok(permit) = entry.gate.enter() else {
            ApiError::queue_full(served.name).write_json(res.body());
            res.send(503, JSON, &[("retry-after", "1")]);
            return Ok(None);
        };
        if overrides.ttft.is_some()
            || overrides.itl.is_some()
            || entry.profile != Profile::default()
        {
            res.want_arrival_stamps();
        }
        let plan = Plan {
            profile: entry.profile,
            overrides,
            in_flight: permit.in_flight,
            start: req.arrived(),
        };
        Ok(Some(Admitted {
            _permit: permit,
            plan,
            output_tokens,
            fault,
        }))
    }

    /// Applies `x-standin-fail`. A failure before the response is answered here and gives `None`; otherwise
    /// `Some` carries the stream failure (if any) for the endpoint to apply once it streams (chat and legacy
    /// completions; embeddings and upstream models take the failures before the response only).
    fn inject(
        &self,
        req: &Request<'_>,
        model: &str,
        res: &mut Responder<'_>,
    ) -> Result<Option<Option<StreamFault>>, ApiError> {
        let fault = match faults::parse(req.header(faults::HEADER))? {
            Some(fault) => Some(fault),
            None if self.fail_rates.is_empty() => None,
            // A fresh 53-bit draw per request from the id generator: no RNG state to share or lock.
            None => self
                .fail_rates
                .pick((ids::next() >> 11) as f64 / (1u64 << 53) as f64),
        };
        match fault {
            None => Ok(Some(None)),
            Some(Fault::Stream(fault)) => Ok(Some(Some(fault))),
            Some(Fault::Error(kind)) => {
                let error = kind.error(model);
                error.write_json(res.body());
                if self.limiter.is_some() {
                    // The response already reports the real limits; the injected numbers would contradict them.
                    let headers: Vec<(&str, &str)> = (kind.headers().iter())
                        .filter(|(name, _)| !name.starts_with("x-ratelimit-"))
                        .copied()
                        .collect();
                    res.send(error.status, JSON, &headers);
                } else {
                    res.send(error.status, JSON, kind.headers());
                }
                Ok(None)
            }
            Some(Fault::Reset) => {
                res.reset();
                Ok(None)
            }
            Some(Fault::Stall) => {
                res.stall(faults::MAX_STALL);
                Ok(None)
            }
        }
    }

    /// Applies the caller's rate limits. A `POST` takes one request and its estimated tokens, or is refused
    /// with a 429 that says when to retry; a `GET` takes nothing. Either way the response reports the limits.
    fn limit(
        &self,
        limiter: &RateLimiter,
        caller: Caller,
        req: &Request<'_>,
        res: &mut Responder<'_>,
    ) -> Result<(), ApiError> {
        let now = Instant::now();
        if req.method() != Method::Post {
            limiter.peek(caller, now).add_to(res);
            return Ok(());
        }
        let generates = req.path() != "/v1/embeddings";
        let estimate = ratelimit::estimate(req.body, self.max_json_depth, generates);
        match limiter.admit(caller, estimate.tokens, now) {
            Ok(report) => {
                report.add_to(res);
                Ok(())
            }
            Err(exceeded) => {
                exceeded.add_to(res);
                let model = estimate
                    .model
                    .as_deref()
                    .unwrap_or(self.catalog.first_name());
                Err(exceeded.error(model))
            }
        }
    }
}

/// A whole-number header from 0 to `max`, or a 400 that names it; `None` when absent.
fn header_number(req: &Request<'_>, name: &str, max: u64) -> Result<Option<u64>, ApiError> {
    let Some(value) = req.header(name) else {
        return Ok(None);
    };
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|n| *n <= max)
        .map(Some)
        .ok_or_else(|| {
            let message = format!("Header {name} must be a whole number from 0 to {max}.");
            ApiError::invalid(message, None, "invalid_value")
        })
}

impl App {
    /// Whether a model has a latency profile (its requests are timed from their arrival).
    pub fn is_paced(&self) -> bool {
        self.catalog.any_paced()
    }

    /// Last words before the process exits: the buffered access log goes out.
    pub fn shutdown(&self) {
        if let Some(log) = &self.log {
            log.flush_now();
        }
    }
}

impl Handler for App {
    fn handle(&self, req: &Request<'_>, res: &mut Responder<'_>) {
        if let Some(cors) = &self.cors {
            // On every answer, errors included, so a page can read why it failed.
            cors.add_to(req.header_str("origin"), res);
        }
        if let Err(error) = self.route(req, res) {
            let body = res.body();
            body.clear();
            error.write_json(body);
            res.send(error.status, JSON, &[]);
        }
    }

    fn error_body(&self, error: HttpError, body: &mut Vec<u8>) -> &'static str {
        ApiError::from_http(error).write_json(body);
        JSON
    }

    fn finished(&self, record: &Exchange<'_>) {
        METRICS.response(record.status, record.bytes);
        if let Some(log) = &self.log {
            log.record(record);
        }
    }
}
