//! Integration tests: the real `standin` binary over raw TCP.
//!
//! One test binary (see STYLE.md, Testing); each module covers one area of the README's contract, and
//! `support` starts servers on port 0 and reads HTTP responses byte by byte. The modules live in
//! `tests/suite/` rather than `tests/*.rs` because Cargo would build every `tests/*.rs` as a
//! separate test target (the manifest does not set `autotests = false`).

mod support;

#[path = "suite/auth.rs"]
mod auth;
#[path = "suite/cli.rs"]
mod cli;
#[path = "suite/connection.rs"]
mod connection;
#[path = "suite/cors.rs"]
mod cors;
#[path = "suite/faults.rs"]
mod faults;
#[path = "suite/framing.rs"]
mod framing;
#[path = "suite/fuzz_regressions.rs"]
mod fuzz_regressions;
#[path = "suite/hostile.rs"]
mod hostile;
#[path = "suite/lifecycle.rs"]
mod lifecycle;
#[path = "suite/limits.rs"]
mod limits;
#[path = "suite/malformed.rs"]
mod malformed;
#[path = "suite/metrics.rs"]
mod metrics;
#[path = "suite/models.rs"]
mod models;
#[path = "suite/pacing.rs"]
mod pacing;
#[path = "suite/ratelimit.rs"]
mod ratelimit;
#[path = "suite/resilience.rs"]
mod resilience;
#[path = "suite/routes.rs"]
mod routes;
#[path = "suite/slow_clients.rs"]
mod slow_clients;
#[path = "suite/sse.rs"]
mod sse;
#[path = "suite/upstream.rs"]
mod upstream;
#[path = "suite/validation.rs"]
mod validation;
