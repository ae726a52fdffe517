//! Prometheus metrics at `GET /metrics`: vLLM's names for what applies (so existing dashboards work) and
//! standin's own HTTP counters. Everything is a lock-free atomic in one process-wide static: recording is
//! a few relaxed increments on the hot path, and rendering reads a consistent-enough snapshot.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// vLLM's time-to-first-token buckets (seconds).
const TTFT_BUCKETS: [f64; 18] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0,
];
/// vLLM's inter-token latency buckets (seconds).
const ITL_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
];
/// vLLM's end-to-end latency buckets (seconds).
const E2E_BUCKETS: [f64; 16] = [
    0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0,
];

/// A fixed-bucket histogram; the sum is kept in microseconds so it can be an integer atomic.
pub struct Histogram<const N: usize> {
    bounds: [f64; N],
    counts: [AtomicU64; N],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    const fn new(bounds: [f64; N]) -> Self {
        Histogram {
            bounds,
            counts: [const { AtomicU64::new(0) }; N],
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Adds one observation.
    pub fn observe(&self, value: Duration) {
        let secs = value.as_secs_f64();
        // Buckets are stored non-cumulatively and summed when rendered.
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(value.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str, labels: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let total = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {total}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {sum}\n{name}_count{{{labels}}} {total}"
        );
    }
}

/// Every metric standin exports.
pub struct Metrics {
    running: AtomicI64,
    waiting: AtomicI64,
    prompt_tokens: AtomicU64,
    generation_tokens: AtomicU64,
    requests_success: [AtomicU64; 2],
    ttft: Histogram<18>,
    itl: Histogram<16>,
    e2e: Histogram<16>,
    responses: [AtomicU64; 6],
    response_bytes: AtomicU64,
    connections_open: AtomicI64,
    connections_total: AtomicU64,
}

/// The process-wide metrics.
pub static METRICS: Metrics = Metrics::new();

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Counts a generation as running while it lives (also when it ends by a panic or a client leaving).
pub struct Running<'a>(&'a Metrics);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a request as waiting for a model slot while it lives.
pub struct Waiting<'a>(&'a Metrics);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a connection as open while it lives.
pub struct OpenConnection<'a>(&'a Metrics);

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Everything at zero.
    pub const fn new() -> Self {
        Metrics {
            running: AtomicI64::new(0),
            waiting: AtomicI64::new(0),
            prompt_tokens: AtomicU64::new(0),
            generation_tokens: AtomicU64::new(0),
            requests_success: [const { AtomicU64::new(0) }; 2],
            ttft: Histogram::new(TTFT_BUCKETS),
            itl: Histogram::new(ITL_BUCKETS),
            e2e: Histogram::new(E2E_BUCKETS),
            responses: [const { AtomicU64::new(0) }; 6],
            response_bytes: AtomicU64::new(0),
            connections_open: AtomicI64::new(0),
            connections_total: AtomicU64::new(0),
        }
    }

    /// A generation started.
    pub fn start_request(&self) -> Running<'_> {
        self.running.fetch_add(1, Ordering::Relaxed);
        Running(self)
    }

    /// Connections open now.
    pub fn connections_open(&self) -> usize {
        self.connections_open.load(Ordering::Relaxed).max(0) as usize
    }

    /// A request started waiting for a slot (`max_concurrent`).
    pub fn start_waiting(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(self)
    }

    /// A connection was accepted.
    pub fn open_connection(&self) -> OpenConnection<'_> {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        self.connections_total.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self)
    }

    /// A finished generation: its token counts, TTFT and end-to-end latency. `length` says whether it
    /// ended on the token limit (vLLM's `finished_reason="length"`).
    pub fn finish_request(
        &self,
        prompt: u64,
        generated: u64,
        ttft: Duration,
        e2e: Duration,
        length: bool,
    ) {
        self.prompt_tokens.fetch_add(prompt, Ordering::Relaxed);
        self.generation_tokens
            .fetch_add(generated, Ordering::Relaxed);
        self.requests_success[usize::from(length)].fetch_add(1, Ordering::Relaxed);
        self.ttft.observe(ttft);
        self.e2e.observe(e2e);
    }

    /// One gap between tokens of a stream.
    pub fn observe_itl(&self, gap: Duration) {
        self.itl.observe(gap);
    }

    /// Grows with every connection accepted or closed and every response: unchanged means nothing happened.
    pub fn activity(&self) -> u64 {
        let responses: u64 = self
            .responses
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum();
        let accepted = self.connections_total.load(Ordering::Relaxed);
        let closed = accepted.saturating_sub(self.connections_open() as u64);
        responses + accepted + closed
    }

    /// One HTTP response (any route).
    pub fn response(&self, status: u16, bytes: usize) {
        let class = usize::from(status / 100).min(5);
        self.responses[class].fetch_add(1, Ordering::Relaxed);
        self.response_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The Prometheus text format (version 0.0.4); `model` labels the vLLM series.
    pub fn render(&self, model: &str) -> String {
        let mut out = String::with_capacity(8192);
        let labels = format!("model_name=\"{}\"", model.replace(['"', '\\', '\n'], "_"));
        let gauge = |out: &mut String, name: &str, help: &str, value: i64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{labels}}} {value}"
            );
        };
        gauge(
            &mut out,
            "vllm:num_requests_running",
            "Requests generating now.",
            self.running.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "vllm:num_requests_waiting",
            "Requests queued for generation.",
            self.waiting.load(Ordering::Relaxed),
        );
        for (name, help, value) in [
            (
                "vllm:prompt_tokens_total",
                "Prompt tokens processed.",
                &self.prompt_tokens,
            ),
            (
                "vllm:generation_tokens_total",
                "Tokens generated.",
                &self.generation_tokens,
            ),
        ] {
            let value = value.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{{labels}}} {value}"
            );
        }
        let name = "vllm:request_success_total";
        let _ = writeln!(
            out,
            "# HELP {name} Finished requests by reason.\n# TYPE {name} counter"
        );
        for (reason, value) in ["stop", "length"].iter().zip(&self.requests_success) {
            let value = value.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}{{{labels},finished_reason=\"{reason}\"}} {value}"
            );
        }
        self.ttft.render(
            &mut out,
            "vllm:time_to_first_token_seconds",
            "Time to first token.",
            &labels,
        );
        self.itl.render(
            &mut out,
            "vllm:inter_token_latency_seconds",
            "Time between tokens.",
            &labels,
        );
        self.e2e.render(
            &mut out,
            "vllm:e2e_request_latency_seconds",
            "End-to-end request latency.",
            &labels,
        );
        let name = "standin_http_responses_total";
        let _ = writeln!(
            out,
            "# HELP {name} HTTP responses by status class.\n# TYPE {name} counter"
        );
        for (class, value) in ["0xx", "1xx", "2xx", "3xx", "4xx", "5xx"]
            .iter()
            .zip(&self.responses)
        {
            let _ = writeln!(
                out,
                "{name}{{class=\"{class}\"}} {}",
                value.load(Ordering::Relaxed)
            );
        }
        for (name, kind, help, value) in [
            (
                "standin_http_response_bytes_total",
                "counter",
                "Response bytes written.",
                self.response_bytes.load(Ordering::Relaxed) as i64,
            ),
            (
                "standin_connections_total",
                "counter",
                "Connections accepted.",
                self.connections_total.load(Ordering::Relaxed) as i64,
            ),
            (
                "standin_connections_open",
                "gauge",
                "Connections open now.",
                self.connections_open.load(Ordering::Relaxed),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_with_inf_and_sum() {
        let h = Histogram::new([0.01, 0.1, 1.0]);
        for ms in [5, 50, 50, 500, 5000] {
            h.observe(Duration::from_millis(ms));
        }
        let mut out = String::new();
        h.render(&mut out, "x", "help", "m=\"a\"");
        assert!(out.contains("x_bucket{m=\"a\",le=\"0.01\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{m=\"a\",le=\"0.1\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{m=\"a\",le=\"1\"} 4\n"), "{out}");
        assert!(out.contains("x_bucket{m=\"a\",le=\"+Inf\"} 5\n"), "{out}");
        assert!(out.contains("x_sum{m=\"a\"} 5.605\n"), "{out}");
        assert!(out.contains("x_count{m=\"a\"} 5\n"), "{out}");
    }

    #[test]
    fn render_has_the_vllm_names() {
        let m = Metrics::new();
        let running = m.start_request();
        m.finish_request(
            3,
            13,
            Duration::from_millis(2),
            Duration::from_millis(30),
            true,
        );
        m.response(200, 100);
        let text = m.render("mock\"x");
        assert!(
            text.contains("vllm:num_requests_running{model_name=\"mock_x\"} 1\n"),
            "{text}"
        );
        drop(running);
        let text = m.render("m");
        for needle in [
            "vllm:num_requests_running{model_name=\"m\"} 0\n",
            "vllm:num_requests_waiting{model_name=\"m\"} 0\n",
            "vllm:prompt_tokens_total{model_name=\"m\"} 3\n",
            "vllm:generation_tokens_total{model_name=\"m\"} 13\n",
            "vllm:request_success_total{model_name=\"m\",finished_reason=\"length\"} 1\n",
            "vllm:time_to_first_token_seconds_count{model_name=\"m\"} 1\n",
            "vllm:e2e_request_latency_seconds_count{model_name=\"m\"} 1\n",
            "# TYPE vllm:inter_token_latency_seconds histogram\n",
            "standin_http_responses_total{class=\"2xx\"} 1\n",
            "standin_http_response_bytes_total 100\n",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }
}
