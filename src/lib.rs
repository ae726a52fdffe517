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
//! - [`probe`]: `standin probe`, the health check for images without a shell; [`pacing`] waits for tokens;
//!   [`embeddings`] answers embeddings; [`ids`] makes request and completion ids; [`auth`] checks keys;
//!   [`reclaim`] gives freed heap back to the OS once the server is quiet.
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
pub mod pacer;
pub mod pacing;
pub mod probe;
pub mod ratelimit;
pub mod reclaim;
pub mod server;
pub mod upstream;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use config::Config;
use http::lifecycle::LIFECYCLE;
use http::ArrivalStamps;

/// Starts the server described by `cfg`, prints the listening line, and serves until SIGTERM or SIGINT;
/// then drains: stops accepting, lets requests and streams in flight finish for up to `shutdown_timeout`,
/// flushes the access log and returns (exit code 0). A second signal ends the drain at once.
pub fn run(cfg: &Config) -> std::io::Result<()> {
    server::configure_runtime(cfg.workers, cfg.stack_size);
    pacer::set_threads(cfg.pacer_threads);
    let listener = server::bind(&cfg.listen, cfg.reuse_port)?;
    let addr = listener.local_addr()?;
    let listening = std::os::fd::AsRawFd::as_raw_fd(&listener);
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    let app = Arc::new(app::App::new(cfg));
    let mut limits = cfg.limits.clone();
    if limits.arrival_stamps == ArrivalStamps::OnRequest && app.is_paced() {
        // A model with a latency profile: every request is timed, so every connection is stamped.
        limits.arrival_stamps = ArrivalStamps::Always;
    }
    let accept = server::serve(listener, Arc::clone(&app), limits)?;
    // The accept coroutine has started the scheduler, and with it the (empty) pool.
    server::keep_finished_coroutines(cfg.coroutine_pool);
    reclaim::start()?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "standin listening on http://{addr}")?;
    stdout.flush()?;
    // The main thread waits for the signals itself: no extra thread (and its stack) for an idle server.
    let _ = signals.forever().next();
    server::stop_listening(listening);
    LIFECYCLE.start_draining();
    let _ = accept.join();
    let deadline = Instant::now() + cfg.shutdown_timeout;
    while LIFECYCLE.active() > 0 && Instant::now() < deadline {
        // A second signal ends the drain now.
        if signals.pending().next().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    app.shutdown();
    Ok(())
}
