//! Models turn a validated prompt into text, cut by the request's stop sequences and token limit. They know
//! neither sockets nor the OpenAI wire format: the server hands them a [`Prompt`] and gets a [`Generation`].

pub mod echo;
pub mod embed;
pub mod logprobs;
pub mod schema;
pub mod structured;
pub mod tokens;

use std::time::Duration;

/// When tokens become ready: the first `first` after the request, each next one `between` later.
/// All zero (the default) means everything is ready at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pace {
    /// Time to first token.
    pub first: Duration,
    /// Time between tokens.
    pub between: Duration,
}

impl Pace {
    /// When token `k` (0-based) is ready, counted from the start of generation.
    pub fn ready_at(&self, k: usize) -> Duration {
        self.first + self.between * k as u32
    }

    /// No waiting at all.
    pub fn is_instant(&self) -> bool {
        self.first.is_zero() && self.between.is_zero()
    }
}

/// What a model needs to know about the conversation.
#[derive(Debug, Clone, Copy)]
pub struct Prompt<'a> {
    /// The text of the last message, if it has any.
    pub last_text: Option<&'a str>,
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
        let pace = Pace {
            first: Duration::from_millis(50),
            between: Duration::from_millis(10),
        };
        assert_eq!(pace.ready_at(0), Duration::from_millis(50));
        assert_eq!(pace.ready_at(3), Duration::from_millis(80));
        assert!(Pace::default().is_instant() && !pace.is_instant());
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
