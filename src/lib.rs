//! standin: an OpenAI-compatible API server on `may` coroutines, with HTTP/1.1 and SSE written by hand.
//!
//! # Layout
//! - [`http`]: sockets, framing, limits, timeouts, SSE. Knows nothing of OpenAI.
//! - [`openai`]: wire types, validation, the error envelope. Knows nothing of sockets.
//! - [`models`]: turn a prompt into text and tokens. Know neither.
//! - [`app`] routes and authenticates; [`catalog`] holds the configured models ([`model_spec`] reads their
//!   declarations) and [`admission`] queues their requests; [`job`] is one settled generation request;
//!   [`completion`] joins the three layers for one chat completion, [`legacy`] for a text completion;
//!   [`faults`] injects failures by header; [`cors`] and [`ratelimit`] add CORS and per-key limits;
//!   [`metrics`] serves Prometheus text; [`server`] binds and accepts; [`config`] reads flags, environment and file; [`log`] is the access log.
//! - [`upstream`]: client, pool, SSE parser, spec repairs and health for proxying to an OpenAI-compatible server.
#![warn(missing_docs)]
#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod admission;
pub mod app;
pub mod auth;
pub mod catalog;
pub mod completion;
pub mod config;
pub mod cors;
pub mod embeddings;
pub mod faults;
pub mod http;
pub mod ids;
pub mod job;
pub mod legacy;
pub mod log;
pub mod metrics;
pub mod model_spec;
pub mod models;
pub mod openai;
pub mod pacing;
pub mod ratelimit;
pub mod server;
pub mod upstream;

use std::io::Write;
use std::sync::Arc;

use config::Config;

/// Starts the server described by `cfg`, prints the listening line, and serves until the process ends.
pub fn run(cfg: &Config) -> std::io::Result<()> {
    server::configure_runtime(cfg.workers, cfg.stack_size, cfg.coroutine_pool);
    let listener = server::bind(&cfg.listen)?;
    let addr = listener.local_addr()?;
    let app = Arc::new(app::App::new(cfg));
    let accept = server::serve(listener, app, cfg.limits.clone())?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "standin listening on http://{addr}")?;
    stdout.flush()?;
    let _ = accept.join();
    Ok(())
}
