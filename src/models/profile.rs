//! A model's latency profile: how long the first token takes (plus prefill per prompt token), the time between
//! tokens, their jitter, and how both grow with the requests in flight. It turns one request's numbers into a
//! [`Pace`]; queueing for `max_concurrent` is the server's job (`crate::admission`).

use std::time::Duration;

use super::Pace;

/// Timing knobs of one model. All zero: every token is ready at once.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Profile {
    /// Time to first token, before prefill.
    pub ttft: Duration,
    /// Time between tokens.
    pub itl: Duration,
    /// Standard deviation of every gap (first token included).
    pub jitter: Duration,
    /// Added to the time to first token per prompt token, as a real server's prefill.
    pub prefill_per_token: Duration,
    /// Each other request in flight on the model stretches every delay by this fraction:
    /// `delay × (1 + load_factor × (in_flight − 1))`.
    pub load_factor: f64,
}

/// Per-request overrides, from the `x-standin-ttft-ms` and `x-standin-itl-ms` headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Replaces the profile's time to first token.
    pub ttft: Option<Duration>,
    /// Replaces the profile's time between tokens.
    pub itl: Option<Duration>,
}

impl Profile {
    /// The pace of one request: `prompt_tokens` long, admitted with `in_flight` requests running on the model
    /// (itself included), its noise seeded by `noise`. Headers replace the base delays; prefill, load and
    /// jitter still apply on top.
    pub fn pace(&self, over: Overrides, prompt_tokens: u64, in_flight: usize, noise: u64) -> Pace {
        let load = 1.0 + self.load_factor * in_flight.saturating_sub(1) as f64;
        let stretch = |d: Duration| {
            if load == 1.0 {
                d
            } else {
                Duration::from_secs_f64(d.as_secs_f64() * load)
            }
        };
        let prefill = self
            .prefill_per_token
            .saturating_mul(prompt_tokens.min(u64::from(u32::MAX)) as u32);
        Pace {
            first: stretch(over.ttft.unwrap_or(self.ttft) + prefill),
            between: stretch(over.itl.unwrap_or(self.itl)),
            jitter: self.jitter,
            noise,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn profile() -> Profile {
        Profile {
            ttft: 100 * MS,
            itl: 10 * MS,
            jitter: Duration::ZERO,
            prefill_per_token: Duration::from_micros(500),
            load_factor: 0.5,
        }
    }

    #[test]
    fn prefill_adds_per_prompt_token() {
        let pace = profile().pace(Overrides::default(), 40, 1, 0);
        assert_eq!((pace.first, pace.between), (120 * MS, 10 * MS));
    }

    #[test]
    fn load_stretches_every_delay() {
        let pace = profile().pace(Overrides::default(), 0, 3, 0);
        // Two others in flight: × (1 + 0.5 × 2).
        assert_eq!((pace.first, pace.between), (200 * MS, 20 * MS));
    }

    #[test]
    fn headers_replace_the_base_delays_only() {
        let over = Overrides {
            ttft: Some(7 * MS),
            itl: Some(3 * MS),
        };
        let pace = profile().pace(over, 2, 1, 0);
        assert_eq!((pace.first, pace.between), (8 * MS, 3 * MS));
        assert!(Profile::default()
            .pace(Overrides::default(), 500, 9, 0)
            .is_instant());
    }
}
