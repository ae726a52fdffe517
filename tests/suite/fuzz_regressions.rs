//! The fuzz corpus as regression tests: every file under `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` goes through the same checks the libFuzzer target runs
//! (`fuzz/src/checks.rs`, compiled into this crate), so plain `cargo test` catches a parser change that
//! would crash on an input the fuzzer once found, without libFuzzer or a nightly toolchain.
//!
//! `loadtest_sse` is replayed by the harness crate itself (`loadtest/src/sse.rs`, test
//! `fuzz_inputs_never_panic`), whose code it fuzzes.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/checks.rs"]
#[allow(dead_code)]
mod checks;

/// Targets replayed here, and the one fuzzed only (see the module doc).
const REPLAYED: [&str; 7] = [
    "request_head",
    "chunked_body",
    "chat_request",
    "completions_request",
    "embeddings_request",
    "upstream_sse",
    "upstream_framing",
];
const FUZZED_ONLY: [&str; 1] = ["loadtest_sse"];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Every file of `fuzz/{corpus,regressions}/<target>/`, sorted.
fn inputs(target: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for kind in ["corpus", "regressions"] {
        let Ok(dir) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
            continue;
        };
        files.extend(
            dir.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file()),
        );
    }
    files.sort();
    files
}

/// Runs `check` on every input of `target`, and fails naming every input that panicked.
fn replay(target: &str, check: fn(&[u8])) {
    let files = inputs(target);
    assert!(
        !files.is_empty(),
        "no corpus for {target} under {:?}",
        fuzz_dir()
    );
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        if panic::catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} {target} inputs panicked (messages above; reproduce with \
         `cargo fuzz run --sanitizer none {target} <file>`):\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

macro_rules! replays {
    ($($test:ident: $target:ident,)*) => {$(
        #[test]
        fn $test() {
            replay(stringify!($target), checks::$target);
        }
    )*};
}

replays! {
    request_head_inputs_pass: request_head,
    chunked_body_inputs_pass: chunked_body,
    chat_request_inputs_pass: chat_request,
    completions_request_inputs_pass: completions_request,
    embeddings_request_inputs_pass: embeddings_request,
    upstream_sse_inputs_pass: upstream_sse,
    upstream_framing_inputs_pass: upstream_framing,
}

#[test]
fn every_corpus_dir_is_a_known_target() {
    for kind in ["corpus", "regressions"] {
        let Ok(dir) = std::fs::read_dir(fuzz_dir().join(kind)) else {
            continue;
        };
        for entry in dir.filter_map(Result::ok).filter(|e| e.path().is_dir()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                REPLAYED.contains(&name.as_str()) || FUZZED_ONLY.contains(&name.as_str()),
                "fuzz/{kind}/{name} belongs to no target this test knows"
            );
        }
    }
}
