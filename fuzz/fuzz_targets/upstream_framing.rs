//! Fuzz target `upstream_framing`. The assertions live in [`standin_fuzz::checks::upstream_framing`], shared with the
//! `fuzz_regressions` integration test, so every corpus file is also a regression test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| standin_fuzz::checks::upstream_framing(data));
