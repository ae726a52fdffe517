//! The fuzz targets' checks, as a library so each `fuzz_targets/*.rs` stays a one-line call and the
//! `fuzz_regressions` integration test (`tests/suite/fuzz_regressions.rs`) can replay the corpus through
//! the very same code.
//!
//! # Layout
//! - [`checks`]: the server's parsers (`standin` lib): request heads, chunked bodies, the three OpenAI
//!   request bodies, upstream SSE, framing and repairs. Also compiled into the root test crate.
//! - [`loadtest`]: the load-test harness's response parser, compiled from `loadtest/src/sse.rs` (the
//!   harness has no lib target, and its `memchr` dependency is not one of the root package's).

pub mod checks;
pub mod loadtest;
