//! Models turn a validated prompt into text, cut by the request's stop sequences and token limit. They know
//! neither sockets nor the OpenAI wire format: the server hands them a [`Prompt`] and gets a [`Generation`].

pub mod echo;
pub mod embed;
pub mod logprobs;
pub mod math;
pub mod profile;
pub mod schema;
pub mod structured;
pub mod synthetic;
pub mod tokens;

use std::time::Duration;

/// When tokens become ready: the first `first` after the request, each next one `between` later, each gap
/// moved by normal noise of standard deviation `jitter` (never below zero). All zero (the default) means
/// everything is ready at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pace {
    /// Time to first token.
    pub first: Duration,
    /// Time between tokens.
    pub between: Duration,
    /// Standard deviation of every gap.
    pub jitter: Duration,
    /// Seeds the noise, so a request's gaps are fixed once it starts.
    pub noise: u64,
}

impl Pace {
    /// A pace without jitter.
    pub fn fixed(first: Duration, between: Duration) -> Self {
        Pace {
            first,
            between,
            ..Pace::default()
        }
    }

    /// The wait before token `k` (0-based): from the start for the first, from token `k - 1` after that.
    pub fn gap(&self, k: usize) -> Duration {
        let mean = if k == 0 { self.first } else { self.between };
        if self.jitter.is_zero() {
            return mean;
        }
        let mut rng = schema::Rng::new(self.noise ^ (k as u64).wrapping_mul(0x9e37_79b9));
        // Box-Muller: two uniforms give one standard normal draw.
        let (u1, u2) = (1.0 - rng.unit(), rng.unit());
        let normal = (-2.0 * math::ln(u1)).sqrt() * math::cos(std::f64::consts::TAU * u2);
        Duration::from_secs_f64((mean.as_secs_f64() + normal * self.jitter.as_secs_f64()).max(0.0))
    }

    /// When token `k` (0-based) is ready, counted from the start of generation.
    pub fn ready_at(&self, k: usize) -> Duration {
        if self.jitter.is_zero() {
            return self.first + self.between * k as u32;
        }
        (0..=k).map(|i| self.gap(i)).sum()
    }

    /// No waiting at all.
    pub fn is_instant(&self) -> bool {
        self.first.is_zero() && self.between.is_zero() && self.jitter.is_zero()
    }
}

/// What a model needs to know about the conversation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Prompt<'a> {
    /// The text of the last message, if it has any.
    pub last_text: Option<&'a str>,
    /// The request's `seed` (0 without one): same prompt and seed, same output.
    pub seed: u64,
    /// Exact output length asked for by `x-standin-output-tokens`, before `stop` and `max_tokens` cut it.
    pub output_tokens: Option<u32>,
}

/// Limits on the output, from the request.
#[derive(Debug, Clone, Copy)]
pub struct Sampling<'a> {
    /// Keep at most this many tokens.
    pub max_tokens: Option<u32>,
    /// Cut before the earliest occurrence of any of these.
    pub stop: &'a [&'a str],
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Natural end or a stop sequence.
    Stop,
    /// The token limit.
    Length,
}

impl Finish {
    /// The name OpenAI uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// One choice's output.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The text, already cut.
    pub text: String,
    /// Its token count by [`tokens::split`].
    pub tokens: usize,
    /// Why it ended.
    pub finish: Finish,
}

/// A model: deterministic text for a prompt.
pub trait Model: Send + Sync {
    /// The full reply before any cut.
    fn reply(&self, prompt: &Prompt<'_>) -> String;

    /// The reply cut by `sampling`.
    fn generate(&self, prompt: &Prompt<'_>, sampling: &Sampling<'_>) -> Generation {
        apply_sampling(self.reply(prompt), sampling)
    }
}

/// Cuts before the earliest stop sequence (finish `stop`), then keeps at most `max_tokens` tokens (`length`).
pub fn apply_sampling(mut text: String, sampling: &Sampling<'_>) -> Generation {
    if let Some(at) = sampling.stop.iter().filter_map(|s| text.find(s)).min() {
        text.truncate(at);
    }
    let mut finish = Finish::Stop;
    let mut count = 0;
    if let Some(max) = sampling.max_tokens {
        let mut end = 0;
        for token in tokens::split(&text) {
            if count == max as usize {
                finish = Finish::Length;
                break;
            }
            end += token.len();
            count += 1;
        }
        text.truncate(end);
    } else {
        count = tokens::count(&text);
    }
    Generation {
        text,
        tokens: count,
        finish,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(text: &str, max_tokens: Option<u32>, stop: &[&str]) -> Generation {
        apply_sampling(text.to_string(), &Sampling { max_tokens, stop })
    }

    #[test]
    fn pace_schedules_from_the_start() {
        let pace = Pace::fixed(Duration::from_millis(50), Duration::from_millis(10));
        assert_eq!(pace.ready_at(0), Duration::from_millis(50));
        assert_eq!(pace.ready_at(3), Duration::from_millis(80));
        assert!(Pace::default().is_instant() && !pace.is_instant());
    }

    #[test]
    fn jitter_moves_gaps_around_their_mean() {
        let pace = Pace {
            first: Duration::from_millis(50),
            between: Duration::from_millis(10),
            jitter: Duration::from_millis(2),
            noise: 42,
        };
        let gaps: Vec<f64> = (1..2001).map(|k| pace.gap(k).as_secs_f64() * 1e3).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let std = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64).sqrt();
        assert!((mean - 10.0).abs() < 0.2, "mean {mean}");
        assert!((std - 2.0).abs() < 0.2, "std {std}");
        // Fixed per request: asking again gives the same schedule, and it adds up.
        assert_eq!(pace.gap(7), pace.gap(7));
        assert_eq!(pace.ready_at(2), pace.gap(0) + pace.gap(1) + pace.gap(2));
        // Never negative, even when the noise is larger than the mean.
        let wild = Pace {
            jitter: Duration::from_millis(100),
            ..pace
        };
        assert!((0..500).all(|k| wild.gap(k) < Duration::from_secs(10)));
    }

    #[test]
    fn untouched_text_stops_naturally() {
        assert_eq!(
            cut("a b c", None, &[]),
            Generation {
                text: "a b c".into(),
                tokens: 3,
                finish: Finish::Stop
            }
        );
        assert_eq!(cut("a b c", Some(3), &[]).finish, Finish::Stop);
    }

    #[test]
    fn max_tokens_cuts_with_length() {
        assert_eq!(
            cut("a b c", Some(2), &[]),
            Generation {
                text: "a b".into(),
                tokens: 2,
                finish: Finish::Length
            }
        );
    }

    #[test]
    fn earliest_stop_wins_and_is_excluded() {
        let g = cut("one two three four", None, &["four", "two"]);
        assert_eq!(
            (g.text.as_str(), g.tokens, g.finish),
            ("one ", 1, Finish::Stop)
        );
        // Stop first, then the token limit on what is left.
        let g = cut("one two three four", Some(1), &["four"]);
        assert_eq!((g.text.as_str(), g.finish), ("one", Finish::Length));
    }
}
