//! Prometheus metrics at `GET /metrics`: vLLM's names for what applies (so existing dashboards work), one
//! series per model (`model_name`), and standin's own HTTP counters. Everything is a lock-free atomic: each
//! model's series live with the model ([`ModelMetrics`]), the HTTP counters in one process-wide static.
//! Recording is a few relaxed increments on the hot path; rendering reads a consistent-enough snapshot.

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
        self.observe_n(value, 1);
    }

    /// Adds `n` observations of the same value at once (an unpaced stream's zero gaps: one update rather
    /// than three atomic adds per token).
    pub fn observe_n(&self, value: Duration, n: u64) {
        if n == 0 {
            return;
        }
        let secs = value.as_secs_f64();
        // Buckets are stored non-cumulatively and summed when rendered.
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(n, Ordering::Relaxed);
        }
        self.count.fetch_add(n, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(value.as_micros() as u64 * n, Ordering::Relaxed);
    }

    /// The samples of one labelled series (the family's HELP and TYPE lines are written once, before).
    fn render(&self, out: &mut String, name: &str, labels: &str) {
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

/// One model's vLLM series. The waiting gauge comes from the model's admission gate when rendered.
pub struct ModelMetrics {
    running: AtomicI64,
    prompt_tokens: AtomicU64,
    generation_tokens: AtomicU64,
    requests_success: [AtomicU64; 2],
    ttft: Histogram<18>,
    itl: Histogram<16>,
    e2e: Histogram<16>,
}

/// Series of generations that belong to no served model (unit tests and benches call endpoints directly).
pub static UNLISTED: ModelMetrics = ModelMetrics::new();

impl Default for ModelMetrics {
    fn default() -> Self {
        ModelMetrics::new()
    }
}

/// Counts a generation as running while it lives (also when it ends by a panic or a client leaving).
pub struct Running<'a>(&'a ModelMetrics);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ModelMetrics {
    /// Everything at zero.
    pub const fn new() -> Self {
        ModelMetrics {
            running: AtomicI64::new(0),
            prompt_tokens: AtomicU64::new(0),
            generation_tokens: AtomicU64::new(0),
            requests_success: [const { AtomicU64::new(0) }; 2],
            ttft: Histogram::new(TTFT_BUCKETS),
            itl: Histogram::new(ITL_BUCKETS),
            e2e: Histogram::new(E2E_BUCKETS),
        }
    }

    /// A generation started.
    pub fn start_request(&self) -> Running<'_> {
        self.running.fetch_add(1, Ordering::Relaxed);
        Running(self)
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

    /// `n` inter-token gaps of the same length.
    pub fn observe_itls(&self, gap: Duration, n: u64) {
        self.itl.observe_n(gap, n);
    }
}

/// One model as `/metrics` shows it.
pub struct ModelSeries<'a> {
    /// Its `model_name` label.
    pub name: &'a str,
    /// Its series.
    pub metrics: &'a ModelMetrics,
    /// Requests queued for it now.
    pub waiting: usize,
}

/// standin's HTTP counters.
pub struct Metrics {
    responses: [AtomicU64; 6],
    response_bytes: AtomicU64,
    connections_open: AtomicI64,
    connections_total: AtomicU64,
}

/// The process-wide HTTP counters.
pub static METRICS: Metrics = Metrics::new();

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
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
            responses: [const { AtomicU64::new(0) }; 6],
            response_bytes: AtomicU64::new(0),
            connections_open: AtomicI64::new(0),
            connections_total: AtomicU64::new(0),
        }
    }

    /// Connections open now.
    pub fn connections_open(&self) -> usize {
        self.connections_open.load(Ordering::Relaxed).max(0) as usize
    }

    /// A connection was accepted.
    pub fn open_connection(&self) -> OpenConnection<'_> {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        self.connections_total.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self)
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

    /// The Prometheus text format (version 0.0.4): each vLLM family once, with one series per model, then
    /// the HTTP counters.
    pub fn render(&self, models: &[ModelSeries<'_>]) -> String {
        let mut out = String::with_capacity(4096 + 4096 * models.len());
        let labels: Vec<String> = models
            .iter()
            .map(|m| format!("model_name=\"{}\"", m.name.replace(['"', '\\', '\n'], "_")))
            .collect();
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        type Value = fn(&ModelSeries<'_>) -> i64;
        let scalars: [(&str, &str, &str, Value); 4] = [
            (
                "vllm:num_requests_running",
                "gauge",
                "Requests generating now.",
                |m| m.metrics.running.load(Ordering::Relaxed),
            ),
            (
                "vllm:num_requests_waiting",
                "gauge",
                "Requests queued for generation.",
                |m| m.waiting as i64,
            ),
            (
                "vllm:prompt_tokens_total",
                "counter",
                "Prompt tokens processed.",
                |m| m.metrics.prompt_tokens.load(Ordering::Relaxed) as i64,
            ),
            (
                "vllm:generation_tokens_total",
                "counter",
                "Tokens generated.",
                |m| m.metrics.generation_tokens.load(Ordering::Relaxed) as i64,
            ),
        ];
        for (name, kind, help, value) in scalars {
            family(&mut out, name, kind, help);
            for (model, labels) in models.iter().zip(&labels) {
                let _ = writeln!(out, "{name}{{{labels}}} {}", value(model));
            }
        }
        let name = "vllm:request_success_total";
        family(&mut out, name, "counter", "Finished requests by reason.");
        for (model, labels) in models.iter().zip(&labels) {
            for (reason, value) in ["stop", "length"]
                .iter()
                .zip(&model.metrics.requests_success)
            {
                let value = value.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{name}{{{labels},finished_reason=\"{reason}\"}} {value}"
                );
            }
        }
        let name = "vllm:time_to_first_token_seconds";
        family(&mut out, name, "histogram", "Time to first token.");
        for (model, labels) in models.iter().zip(&labels) {
            model.metrics.ttft.render(&mut out, name, labels);
        }
        let name = "vllm:inter_token_latency_seconds";
        family(&mut out, name, "histogram", "Time between tokens.");
        for (model, labels) in models.iter().zip(&labels) {
            model.metrics.itl.render(&mut out, name, labels);
        }
        let name = "vllm:e2e_request_latency_seconds";
        family(&mut out, name, "histogram", "End-to-end request latency.");
        for (model, labels) in models.iter().zip(&labels) {
            model.metrics.e2e.render(&mut out, name, labels);
        }
        let name = "standin_http_responses_total";
        family(&mut out, name, "counter", "HTTP responses by status class.");
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
            family(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
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
        h.render(&mut out, "x", "m=\"a\"");
        assert!(out.contains("x_bucket{m=\"a\",le=\"0.01\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{m=\"a\",le=\"0.1\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{m=\"a\",le=\"1\"} 4\n"), "{out}");
        assert!(out.contains("x_bucket{m=\"a\",le=\"+Inf\"} 5\n"), "{out}");
        assert!(out.contains("x_sum{m=\"a\"} 5.605\n"), "{out}");
        assert!(out.contains("x_count{m=\"a\"} 5\n"), "{out}");
    }

    #[test]
    fn observing_n_at_once_is_observing_n_times() {
        let (once, each) = (Histogram::new([0.01, 0.1]), Histogram::new([0.01, 0.1]));
        for (ms, n) in [(0, 19), (50, 3), (500, 2), (7, 0)] {
            once.observe_n(Duration::from_millis(ms), n);
            for _ in 0..n {
                each.observe(Duration::from_millis(ms));
            }
        }
        let (mut a, mut b) = (String::new(), String::new());
        once.render(&mut a, "x", "m=\"a\"");
        each.render(&mut b, "x", "m=\"a\"");
        assert_eq!(a, b);
        assert!(a.contains("x_count{m=\"a\"} 24\n"), "{a}");
    }

    #[test]
    fn render_has_the_vllm_names_per_model() {
        let m = Metrics::new();
        let (a, b) = (ModelMetrics::new(), ModelMetrics::new());
        let running = a.start_request();
        a.finish_request(
            3,
            13,
            Duration::from_millis(2),
            Duration::from_millis(30),
            true,
        );
        b.finish_request(
            5,
            7,
            Duration::from_millis(2),
            Duration::from_millis(30),
            false,
        );
        b.observe_itl(Duration::from_millis(20));
        m.response(200, 100);
        let series = |name_a| {
            [
                ModelSeries {
                    name: name_a,
                    metrics: &a,
                    waiting: 0,
                },
                ModelSeries {
                    name: "b",
                    metrics: &b,
                    waiting: 4,
                },
            ]
        };
        let text = m.render(&series("mock\"x"));
        assert!(
            text.contains("vllm:num_requests_running{model_name=\"mock_x\"} 1\n"),
            "{text}"
        );
        drop(running);
        let text = m.render(&series("a"));
        for needle in [
            "vllm:num_requests_running{model_name=\"a\"} 0\n",
            "vllm:num_requests_waiting{model_name=\"a\"} 0\n",
            "vllm:num_requests_waiting{model_name=\"b\"} 4\n",
            "vllm:prompt_tokens_total{model_name=\"a\"} 3\n",
            "vllm:prompt_tokens_total{model_name=\"b\"} 5\n",
            "vllm:generation_tokens_total{model_name=\"b\"} 7\n",
            "vllm:request_success_total{model_name=\"a\",finished_reason=\"length\"} 1\n",
            "vllm:request_success_total{model_name=\"b\",finished_reason=\"stop\"} 1\n",
            "vllm:time_to_first_token_seconds_count{model_name=\"a\"} 1\n",
            "vllm:inter_token_latency_seconds_count{model_name=\"a\"} 0\n",
            "vllm:inter_token_latency_seconds_count{model_name=\"b\"} 1\n",
            "vllm:e2e_request_latency_seconds_count{model_name=\"b\"} 1\n",
            "standin_http_responses_total{class=\"2xx\"} 1\n",
            "standin_http_response_bytes_total 100\n",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        // Each family is declared once, its series for every model grouped under it.
        for family in [
            "vllm:num_requests_running",
            "vllm:time_to_first_token_seconds",
        ] {
            let declared = format!("# TYPE {family} ");
            assert_eq!(text.matches(&declared).count(), 1, "{text}");
        }
        let first = text
            .find("vllm:prompt_tokens_total{model_name=\"a\"}")
            .unwrap();
        let second = text
            .find("vllm:prompt_tokens_total{model_name=\"b\"}")
            .unwrap();
        let next_family = text.find("# HELP vllm:generation_tokens_total").unwrap();
        assert!(first < second && second < next_family, "{text}");
    }
}
