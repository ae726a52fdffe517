//! Command line, environment and `--config` file: help, version, exit code 2 on bad input, precedence.

use crate::support::{get, run, Exit, Server, TempFile};

/// Every flag of the contract, which `--help` must list.
const FLAGS: [&str; 20] = [
    "--listen",
    "--workers",
    "--reuse-port",
    "--api-key",
    "--api-key-file",
    "--models",
    "--strict-models",
    "--max-header-bytes",
    "--max-headers",
    "--max-body-bytes",
    "--max-json-depth",
    "--header-timeout-ms",
    "--body-timeout-ms",
    "--idle-timeout-ms",
    "--stack-size",
    "--quiet",
    "--config",
    "--enable-panic-route",
    "--help",
    "--version",
];

#[test]
fn help_lists_every_flag_and_exits_0() {
    let exit = run(&["--help"], &[]);
    assert_eq!(exit.code, Some(0), "{exit:?}");
    for flag in FLAGS {
        assert!(
            exit.stdout.contains(flag),
            "--help does not mention {flag}:\n{}",
            exit.stdout
        );
    }
}

#[test]
fn every_flag_in_help_is_in_the_readme_table() {
    let exit = run(&["--help"], &[]);
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let flags: Vec<&str> = exit
        .stdout
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(flags.len() > 30, "{}", exit.stdout);
    let rows: Vec<&str> = readme.lines().filter(|l| l.starts_with("| ")).collect();
    for flag in flags {
        let named = format!("`--{flag}");
        assert!(
            rows.iter().any(|row| row.contains(&named)),
            "--{flag} has no row in the README's flag table"
        );
    }
}

#[test]
fn version_prints_name_and_version() {
    let exit = run(&["--version"], &[]);
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert_eq!(
        exit.stdout.trim(),
        format!("standin {}", env!("CARGO_PKG_VERSION"))
    );
}

/// Asserts exit code 2 with a message on stderr that mentions one of `needles` (none: any message).
fn assert_usage_error(exit: &Exit, needles: &[&str]) {
    assert_eq!(exit.code, Some(2), "{exit:?}");
    assert!(
        !exit.stderr.trim().is_empty(),
        "no message on stderr: {exit:?}"
    );
    assert!(
        needles.is_empty() || needles.iter().any(|n| exit.stderr.contains(n)),
        "stderr should mention one of {needles:?}: {exit:?}"
    );
    assert!(!exit.stdout.contains("listening"), "{exit:?}");
}

#[test]
fn bad_flags_exit_2() {
    let listen = ["--listen", "127.0.0.1:0"];
    let cases: [&[&str]; 8] = [
        &["--no-such-flag"],
        &["--workers", "abc"],
        &["--max-body-bytes", "-1"],
        &["--header-timeout-ms", "1.5"],
        &["--max-headers", ""],
        &["--models"],
        &["--listen", "not-an-address"],
        &["positional"],
    ];
    for args in cases {
        // A clear message names the flag or the offending value.
        let needles: Vec<&str> = args.iter().copied().filter(|a| !a.is_empty()).collect();
        let mut all: Vec<&str> = if args[0] == "--listen" {
            Vec::new()
        } else {
            listen.to_vec()
        };
        all.extend_from_slice(args);
        assert_usage_error(&run(&all, &[]), &needles);
    }
}

#[test]
fn bad_env_value_exits_2() {
    let exit = run(&["--listen", "127.0.0.1:0"], &[("STANDIN_WORKERS", "abc")]);
    assert_usage_error(&exit, &["abc", "WORKERS", "workers"]);
}

#[test]
fn bad_config_files_exit_2() {
    let unknown = TempFile::new("unknown.json", r#"{"models": ["a"], "no_such_key": 1}"#);
    assert_usage_error(
        &run(
            &["--listen", "127.0.0.1:0", "--config", unknown.path()],
            &[],
        ),
        &["no_such_key"],
    );

    let bad_value = TempFile::new("badvalue.json", r#"{"workers": "abc"}"#);
    assert_usage_error(
        &run(
            &["--listen", "127.0.0.1:0", "--config", bad_value.path()],
            &[],
        ),
        &["workers", "abc"],
    );

    let not_json = TempFile::new("notjson.json", "models = [\"a\"]");
    let exit = run(
        &["--listen", "127.0.0.1:0", "--config", not_json.path()],
        &[],
    );
    assert_usage_error(&exit, &[]);

    let missing = not_json.missing_sibling();
    let missing = missing.to_str().unwrap();
    assert_usage_error(
        &run(&["--listen", "127.0.0.1:0", "--config", missing], &[]),
        &[],
    );
}

#[test]
fn missing_api_key_file_exits_2() {
    let file = TempFile::new("k", "");
    let missing = file.missing_sibling();
    let exit = run(
        &[
            "--listen",
            "127.0.0.1:0",
            "--api-key-file",
            missing.to_str().unwrap(),
        ],
        &[],
    );
    assert_usage_error(&exit, &[]);
}

/// The ids listed by `GET /v1/models`.
fn model_ids(server: &Server) -> Vec<String> {
    let body = server.send(&get("/v1/models", &[])).assert_ok_json();
    body["data"]
        .as_array()
        .expect("data array")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_string())
        .collect()
}

#[test]
fn config_file_sets_models_and_limits() {
    let config = TempFile::new(
        "config.json",
        r#"{"models": ["file-a", "file-b"], "max_body_bytes": 50, "quiet": true}"#,
    );
    let server = Server::start(&["--config", config.path()]);
    assert_eq!(model_ids(&server), ["file-a", "file-b"]);
    let big = crate::support::chat(&crate::support::chat_body("more than fifty bytes"), &[]);
    server
        .send(&big)
        .assert_error(413, Some("request_too_large"));
}

#[test]
fn config_file_sets_api_keys() {
    let config = TempFile::new("keys.json", r#"{"api_keys": ["cfg-key"]}"#);
    let server = Server::start(&["--config", config.path()]);
    let ok = server.send(&get("/v1/models", &[("Authorization", "Bearer cfg-key")]));
    assert_eq!(ok.status, 200);
    let denied = server.send(&get("/v1/models", &[]));
    denied.assert_error(401, Some("invalid_api_key"));
}

#[test]
fn env_sets_models() {
    let server = Server::builder()
        .env("STANDIN_MODELS", "env-a,env-b")
        .start();
    assert_eq!(model_ids(&server), ["env-a", "env-b"]);
}

#[test]
fn flag_beats_env_beats_file() {
    let config = TempFile::new("precedence.json", r#"{"models": ["from-file"]}"#);
    let file_only = Server::start(&["--config", config.path()]);
    assert_eq!(model_ids(&file_only), ["from-file"]);

    let env_over_file = Server::builder()
        .args(&["--config", config.path()])
        .env("STANDIN_MODELS", "from-env")
        .start();
    assert_eq!(model_ids(&env_over_file), ["from-env"]);

    let flag_over_all = Server::builder()
        .args(&["--config", config.path(), "--models", "from-flag"])
        .env("STANDIN_MODELS", "from-env")
        .start();
    assert_eq!(model_ids(&flag_over_all), ["from-flag"]);
}

#[test]
fn a_second_server_on_a_busy_port_fails_to_start() {
    let first = Server::start(&[]);
    let addr = first.addr.to_string();
    let second = run(&["--listen", &addr, "--quiet"], &[]);
    assert_eq!(second.code, Some(1), "{second:?}");
    assert!(second.stderr.contains("in use"), "{}", second.stderr);
    first.assert_alive();
}

#[test]
fn reuse_port_lets_servers_share_a_port_and_the_kernel_spreads_connections() {
    let alpha = Server::start(&["--reuse-port", "--models", "alpha"]);
    let addr = alpha.addr.to_string();
    let beta = Server::start(&["--reuse-port", "--listen", &addr, "--models", "beta"]);
    assert_eq!(beta.addr, alpha.addr);
    // A server without the flag still may not join them.
    let third = run(&["--listen", &addr, "--quiet"], &[]);
    assert_eq!(third.code, Some(1), "{third:?}");
    assert!(third.stderr.contains("in use"), "{}", third.stderr);
    // Each new connection lands on one of the two (by a hash of its ports): 64 of them all on one
    // would happen once in 2^63 runs.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..64 {
        let ids = model_ids(&alpha);
        assert_eq!(ids.len(), 1, "{ids:?}");
        seen.insert(ids[0].clone());
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["alpha", "beta"],
        "both processes answer on the shared port"
    );
    beta.assert_alive();
}

#[test]
fn fail_rate_injects_failures_without_a_header() {
    use crate::support::{chat, chat_body};
    let server = Server::start(&["--fail-rate", "503=1"]);
    for _ in 0..3 {
        let resp = server.send(&chat(&chat_body("x"), &[]));
        resp.assert_error(503, Some("service_unavailable"));
    }
    // A request's own header wins over the random draw.
    let resp = server.send(&chat(&chat_body("x"), &[("x-standin-fail", "404")]));
    resp.assert_error(404, Some("model_not_found"));
    let half = Server::start(&["--fail-rate", "500=0.5"]);
    let failed = (0..60)
        .filter(|_| half.send(&chat(&chat_body("x"), &[])).status == 500)
        .count();
    // 60 draws at p = 0.5: outside 10..=50 has probability below 1e-7.
    assert!((10..=50).contains(&failed), "{failed} of 60 failed");
}
