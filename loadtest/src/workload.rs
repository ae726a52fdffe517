//! What to send and when: a seeded random source, arrival schedules (constant, Poisson, and vLLM's gamma
//! with burstiness), and request bodies (a fixed prompt, random words, or a JSONL file). The same seed gives
//! the same schedule and the same prompts, so two servers can be sent identical work.

use std::time::Duration;

/// splitmix64: small, fast, and good enough for schedules and word picks.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Gamma(shape, scale) by Marsaglia–Tsang (with the shape < 1 boost).
    pub fn gamma(&mut self, shape: f64, scale: f64) -> f64 {
        if shape < 1.0 {
            let u = self.unit().max(f64::MIN_POSITIVE);
            return self.gamma(shape + 1.0, scale) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.unit();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v * scale;
            }
        }
    }
}

/// How open-loop arrivals are spaced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrival {
    /// Exactly 1/rate apart.
    Constant,
    /// Exponential gaps (a Poisson process).
    Poisson,
    /// Gamma gaps with shape = burstiness and mean 1/rate: vLLM's scheme; burstiness 1 is Poisson,
    /// below 1 burstier, above 1 more regular.
    Gamma(f64),
}

/// Send times (offsets from the start) for `count` requests at `rate` per second.
pub fn schedule(rate: f64, arrival: Arrival, count: usize, rng: &mut Rng) -> Vec<Duration> {
    let mut t = 0.0f64;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        out.push(Duration::from_secs_f64(t));
        let gap = match arrival {
            Arrival::Constant => 1.0 / rate,
            Arrival::Poisson => -(1.0 - rng.unit()).ln() / rate,
            Arrival::Gamma(k) => rng.gamma(k, 1.0 / (rate * k)),
        };
        t += gap;
    }
    out
}

/// `--disconnect`: the abandon point is drawn from `0..=DISCONNECT_MAX_EVENTS`, counted in [`abandon_point`]'s
/// units. 16 covers a short chat stream (standin's echo of "Hello": head, role, 13 content events, then
/// finish, usage and `[DONE]`); a point past the end of a shorter answer means the client stayed to the end.
pub const DISCONNECT_MAX_EVENTS: u64 = 16;

/// Mixed into the seed for disconnect draws, so they are independent of the bodies drawn from the same index.
const DISCONNECT_SALT: u64 = 0xd15c_0de5_ab4d_0e11;

/// Whether request `index` is abandoned under `--disconnect probability`, and where: `Some(k)` means the
/// client hangs up as soon as it has seen `k` milestones and would have to wait for more, where the head
/// counts 1 and each SSE event 1 more (so 0 = right after sending, before the head; 1 = after the head;
/// 1 + n = after the n-th event). A response that is complete by then is not abandoned. Deterministic in
/// `(seed, index)`, so both servers of a comparison are abandoned alike.
pub fn abandon_point(seed: u64, index: usize, probability: f64) -> Option<u32> {
    if probability <= 0.0 {
        return None;
    }
    let mut rng =
        Rng::new(seed ^ DISCONNECT_SALT ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    (rng.unit() < probability).then(|| rng.range(0, DISCONNECT_MAX_EVENTS) as u32)
}

/// Where prompts come from.
#[derive(Debug, Clone)]
pub enum Prompts {
    /// The same text every time.
    Fixed(String),
    /// Random words, a count drawn from `min..=max`.
    Words { min: u64, max: u64 },
    /// Whole request bodies, one JSON object per line, used in turn.
    Bodies(Vec<String>),
}

/// Everything a request body needs besides the prompt.
#[derive(Debug, Clone)]
pub struct BodySpec {
    /// `chat` (/v1/chat/completions) or `completions` (/v1/completions).
    pub chat: bool,
    /// Model name.
    pub model: String,
    /// Stream with `include_usage`.
    pub stream: bool,
    /// `max_tokens`, if set.
    pub max_tokens: Option<u64>,
}

const WORDS: &[&str] = &[
    "the", "model", "server", "token", "stream", "latency", "request", "answer", "quick", "brown",
    "fox", "jumps", "over", "lazy", "dog", "river", "mountain", "cloud", "signal", "garden",
    "window", "paper", "engine", "orbit", "harbor", "lantern", "marble", "needle", "ocean",
    "pencil", "quartz", "rocket", "silver", "tunnel", "velvet", "whistle", "yellow", "zephyr",
    "amber", "bridge", "canyon", "desert", "ember", "forest", "glacier", "horizon", "island",
    "jungle", "kettle", "meadow", "nebula", "prairie", "summit", "thunder", "valley", "willow",
];

/// The JSON body of request `index` (deterministic for a seed).
pub fn body(spec: &BodySpec, prompts: &Prompts, index: usize, rng: &mut Rng) -> String {
    let text = match prompts {
        Prompts::Bodies(bodies) => return bodies[index % bodies.len()].clone(),
        Prompts::Fixed(text) => text.clone(),
        Prompts::Words { min, max } => {
            let n = rng.range(*min, *max);
            let words: Vec<&str> = (0..n)
                .map(|_| WORDS[rng.next_u64() as usize % WORDS.len()])
                .collect();
            words.join(" ")
        }
    };
    let mut body = serde_json::json!({"model": spec.model});
    if spec.chat {
        body["messages"] = serde_json::json!([{"role": "user", "content": text}]);
    } else {
        body["prompt"] = serde_json::Value::String(text);
    }
    if let Some(max) = spec.max_tokens {
        body["max_tokens"] = max.into();
    }
    if spec.stream {
        body["stream"] = true.into();
        body["stream_options"] = serde_json::json!({"include_usage": true});
    }
    body.to_string()
}

/// The whole HTTP request for `body`.
pub fn http_request(path: &str, host: &str, api_key: Option<&str>, body: &str) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nAccept: */*\r\n"
    );
    if let Some(key) = api_key {
        req.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    req.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_schedule() {
        let a = schedule(100.0, Arrival::Poisson, 50, &mut Rng::new(7));
        let b = schedule(100.0, Arrival::Poisson, 50, &mut Rng::new(7));
        assert_eq!(a, b);
        assert_ne!(a, schedule(100.0, Arrival::Poisson, 50, &mut Rng::new(8)));
    }

    #[test]
    fn mean_gap_matches_rate() {
        for arrival in [
            Arrival::Constant,
            Arrival::Poisson,
            Arrival::Gamma(0.5),
            Arrival::Gamma(4.0),
        ] {
            let s = schedule(200.0, arrival, 20_001, &mut Rng::new(1));
            let mean_gap = s.last().unwrap().as_secs_f64() / 20_000.0;
            assert!((mean_gap - 0.005).abs() < 0.0003, "{arrival:?}: {mean_gap}");
        }
    }

    #[test]
    fn burstiness_changes_spread() {
        let cv = |k: f64| {
            let s = schedule(100.0, Arrival::Gamma(k), 20_001, &mut Rng::new(3));
            let gaps: Vec<f64> = s.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
            let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
            let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
            var.sqrt() / mean
        };
        // Gamma's coefficient of variation is 1/sqrt(k).
        assert!((cv(1.0) - 1.0).abs() < 0.05);
        assert!((cv(4.0) - 0.5).abs() < 0.05);
    }

    #[test]
    fn abandon_points_are_seeded_and_spread() {
        assert_eq!(abandon_point(1, 5, 0.0), None);
        let draws: Vec<Option<u32>> = (0..20_000).map(|i| abandon_point(7, i, 0.05)).collect();
        let again: Vec<Option<u32>> = (0..20_000).map(|i| abandon_point(7, i, 0.05)).collect();
        assert_eq!(draws, again);
        let other: Vec<Option<u32>> = (0..20_000).map(|i| abandon_point(8, i, 0.05)).collect();
        assert_ne!(draws, other);
        let hit: Vec<u32> = draws.iter().flatten().copied().collect();
        // 5 % of 20,000 is 1,000; the binomial standard deviation is about 31.
        assert!((880..1120).contains(&hit.len()), "{}", hit.len());
        assert!(hit.iter().all(|&k| u64::from(k) <= DISCONNECT_MAX_EVENTS));
        assert!(hit.contains(&0) && hit.contains(&(DISCONNECT_MAX_EVENTS as u32)));
        assert!((0..100).all(|i| abandon_point(3, i, 1.0).is_some()));
    }

    #[test]
    fn bodies_are_deterministic_json() {
        let spec = BodySpec {
            chat: true,
            model: "m".into(),
            stream: true,
            max_tokens: Some(5),
        };
        let prompts = Prompts::Words { min: 3, max: 6 };
        let a = body(&spec, &prompts, 0, &mut Rng::new(1));
        assert_eq!(a, body(&spec, &prompts, 0, &mut Rng::new(1)));
        let v: serde_json::Value = serde_json::from_str(&a).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["max_tokens"], 5);
        let words = v["messages"][0]["content"]
            .as_str()
            .unwrap()
            .split(' ')
            .count();
        assert!((3..=6).contains(&words));
    }
}
