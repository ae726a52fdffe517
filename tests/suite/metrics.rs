//! `GET /metrics`: Prometheus text with vLLM's metric names, counting what the server actually did.

use crate::support::{chat, chat_body, get, stream_body, Response, Server};

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// `/metrics` once it shows every line of `lines`, or after 3 s. The server records a stream after its last
/// byte is sent, so a client can scrape before its own request shows up.
fn scrape_until(server: &Server, lines: &[&str]) -> Response {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let resp = server.send(&get("/metrics", &[]));
        let text = resp.text();
        if lines.iter().all(|l| text.contains(l)) || std::time::Instant::now() > deadline {
            return resp;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn metrics_count_tokens_latency_and_responses() {
    let server = Server::start(&["--api-key", "k1"]);
    let auth = [("Authorization", "Bearer k1")];
    assert_eq!(server.send(&chat(&chat_body("Hello"), &auth)).status, 200);
    let paced = [auth[0], ("x-standin-itl-ms", "10")];
    let resp = server.send(&chat(&stream_body("Hello"), &paced));
    assert!(resp.text().ends_with("data: [DONE]\n\n"));
    // No key needed: scrapers are not clients of the API.
    let resp = scrape_until(
        &server,
        &[
            "vllm:e2e_request_latency_seconds_count{model_name=\"mock-gpt-model\"} 2\n",
            "vllm:num_requests_running{model_name=\"mock-gpt-model\"} 0\n",
        ],
    );
    assert_eq!(resp.status, 200);
    assert!(resp
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = resp.text();
    let m = |s: &str| metric(text, s);
    let model = "{model_name=\"mock-gpt-model\"}";
    assert_eq!(m(&format!("vllm:num_requests_running{model}")), 0.0);
    assert_eq!(m(&format!("vllm:num_requests_waiting{model}")), 0.0);
    assert_eq!(m(&format!("vllm:prompt_tokens_total{model}")), 2.0);
    assert_eq!(m(&format!("vllm:generation_tokens_total{model}")), 26.0);
    assert_eq!(
        m("vllm:request_success_total{model_name=\"mock-gpt-model\",finished_reason=\"stop\"}"),
        2.0
    );
    assert_eq!(
        m(&format!("vllm:time_to_first_token_seconds_count{model}")),
        2.0
    );
    assert_eq!(
        m(&format!("vllm:e2e_request_latency_seconds_count{model}")),
        2.0
    );
    // 13 tokens paced 10 ms apart: 12 gaps spanning at least the 120 ms schedule, less however late the
    // first token was written (deadlines are absolute, so a late token shortens the next gap).
    assert_eq!(
        m(&format!("vllm:inter_token_latency_seconds_count{model}")),
        12.0
    );
    assert!(m(&format!("vllm:inter_token_latency_seconds_sum{model}")) >= 0.09);
    assert!(m("standin_http_responses_total{class=\"2xx\"}") >= 2.0);
    assert!(m("standin_connections_total") >= 3.0);
    // Earlier scrapes' connections may still be closing.
    let open = m("standin_connections_open");
    assert!((1.0..=10.0).contains(&open), "{open}");
}

/// An unpaced stream's tokens all go out at once: its gaps are counted, as zero.
#[test]
fn unpaced_stream_gaps_count_as_zero() {
    let server = Server::start(&[]);
    let resp = server.send(&chat(&stream_body("Hello"), &[]));
    assert!(resp.text().ends_with("data: [DONE]\n\n"));
    let model = "{model_name=\"mock-gpt-model\"}";
    let done = format!("vllm:e2e_request_latency_seconds_count{model} 1\n");
    let resp = scrape_until(&server, &[&done]);
    let text = resp.text();
    let m = |s: &str| metric(text, s);
    assert_eq!(m(&format!("vllm:generation_tokens_total{model}")), 13.0);
    assert_eq!(
        m(&format!("vllm:inter_token_latency_seconds_count{model}")),
        12.0
    );
    assert_eq!(
        m(&format!("vllm:inter_token_latency_seconds_sum{model}")),
        0.0
    );
    let first_bucket = text
        .lines()
        .find(|l| {
            l.starts_with("vllm:inter_token_latency_seconds_bucket{model_name=\"mock-gpt-model\"")
        })
        .unwrap();
    assert!(first_bucket.ends_with(" 12"), "{first_bucket}");
}

#[test]
fn metrics_count_rejections_by_class() {
    let server = Server::start(&["--api-key", "k1"]);
    assert_eq!(server.send(&chat(&chat_body("x"), &[])).status, 401);
    assert_eq!(server.send(&get("/nope", &[])).status, 404);
    let text = server.send(&get("/metrics", &[])).text().to_string();
    assert_eq!(
        metric(&text, "standin_http_responses_total{class=\"4xx\"}"),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            "vllm:generation_tokens_total{model_name=\"mock-gpt-model\"}"
        ),
        0.0
    );
}

#[test]
fn each_model_has_its_own_series() {
    let server = Server::start(&["--models", "alpha,beta", "--alias", "gpt-4o=beta"]);
    let body = |model: &str| {
        serde_json::json!({"model": model, "messages": [{"role": "user", "content": "Hello"}]})
            .to_string()
    };
    assert_eq!(server.send(&chat(&body("beta"), &[])).status, 200);
    // An alias counts under the model it names.
    assert_eq!(server.send(&chat(&body("gpt-4o"), &[])).status, 200);
    let text = server.send(&get("/metrics", &[])).text().to_string();
    let count = |model: &str| {
        metric(
            &text,
            &format!("vllm:e2e_request_latency_seconds_count{{model_name=\"{model}\"}}"),
        )
    };
    assert_eq!(count("beta"), 2.0, "{text}");
    assert_eq!(count("alpha"), 0.0, "{text}");
    assert!(!text.contains("model_name=\"gpt-4o\""), "{text}");
    let beta_tokens = metric(&text, "vllm:generation_tokens_total{model_name=\"beta\"}");
    assert!(beta_tokens > 0.0, "{text}");
    assert_eq!(
        metric(&text, "vllm:generation_tokens_total{model_name=\"alpha\"}"),
        0.0
    );
    // One declaration per family, whatever the number of models.
    assert_eq!(
        text.matches("# TYPE vllm:generation_tokens_total counter")
            .count(),
        1,
        "{text}"
    );
}
