//! The synthetic model: plausible-looking English from an embedded word list, as long as its output-length
//! rule says. The words are drawn from a stream seeded by the request's `seed` and the prompt, so the same
//! request with the same seed always gives the same text, and a load test gets realistic output lengths
//! without a real model.

use super::schema::{hash, Rng};
use super::{apply_sampling, Finish, Generation, Model, Prompt, Sampling};

/// Words the text is made of: common English, so replies look like prose in logs and UIs.
const WORDS: &[&str] = &[
    "the",
    "model",
    "answer",
    "is",
    "a",
    "of",
    "to",
    "and",
    "in",
    "that",
    "it",
    "for",
    "on",
    "with",
    "as",
    "this",
    "was",
    "be",
    "by",
    "from",
    "at",
    "or",
    "an",
    "are",
    "not",
    "can",
    "which",
    "have",
    "all",
    "one",
    "data",
    "time",
    "system",
    "request",
    "server",
    "token",
    "stream",
    "value",
    "result",
    "question",
    "simple",
    "clear",
    "quick",
    "useful",
    "small",
    "large",
    "first",
    "next",
    "last",
    "other",
    "same",
    "often",
    "also",
    "then",
    "more",
    "most",
    "each",
    "every",
    "many",
    "few",
    "some",
    "any",
    "these",
    "those",
    "because",
    "while",
    "when",
    "where",
    "how",
    "why",
    "what",
    "who",
    "will",
    "would",
    "could",
    "should",
    "may",
    "might",
    "must",
    "does",
    "did",
    "has",
    "had",
    "been",
    "being",
    "make",
    "makes",
    "made",
    "take",
    "gives",
    "show",
    "shows",
    "find",
    "use",
    "uses",
    "used",
    "work",
    "works",
    "call",
    "calls",
    "test",
    "tests",
    "load",
    "latency",
    "throughput",
    "client",
    "gateway",
    "network",
    "memory",
    "cache",
    "queue",
    "limit",
    "error",
    "retry",
    "response",
    "message",
    "context",
    "example",
    "reason",
    "idea",
    "point",
    "part",
    "case",
    "way",
    "thing",
    "world",
    "people",
    "number",
    "group",
    "problem",
    "fact",
    "level",
    "order",
    "line",
    "side",
    "kind",
    "end",
    "start",
    "state",
    "change",
    "rule",
    "step",
    "form",
];

/// How long a synthetic reply is, in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputLength {
    /// Always this many.
    Fixed(u32),
    /// Uniformly within `min..=max`, drawn from the seeded stream.
    Range(u32, u32),
    /// The request's `max_tokens` (finish `length`, as a model that would go on), or this many without one.
    MaxTokens(u32),
}

/// Tokens used by `max_tokens` when a request gives none.
pub const DEFAULT_WITHOUT_MAX_TOKENS: u32 = 64;

impl OutputLength {
    /// Parses `64`, `16-256` or `max_tokens` (optionally `max_tokens:32` for the fallback).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bad = || {
            format!("output length `{text}` is not N, MIN-MAX or max_tokens[:N] (whole numbers)")
        };
        if let Some(rest) = text.strip_prefix("max_tokens") {
            let fallback = match rest.strip_prefix(':') {
                Some(n) => n.parse().map_err(|_| bad())?,
                None if rest.is_empty() => DEFAULT_WITHOUT_MAX_TOKENS,
                None => return Err(bad()),
            };
            return Ok(OutputLength::MaxTokens(fallback));
        }
        match text.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi): (u32, u32) = (
                    lo.trim().parse().map_err(|_| bad())?,
                    hi.trim().parse().map_err(|_| bad())?,
                );
                if lo > hi {
                    return Err(format!("output length `{text}`: MIN is above MAX"));
                }
                Ok(OutputLength::Range(lo, hi))
            }
            None => text.parse().map(OutputLength::Fixed).map_err(|_| bad()),
        }
    }
}

/// The synthetic model with its length rule.
#[derive(Debug, Clone, Copy)]
pub struct Synthetic {
    /// The output-length rule.
    pub length: OutputLength,
}

impl Synthetic {
    /// Tokens to produce for a request, and whether hitting them means `length` rather than `stop`.
    fn target(&self, prompt: &Prompt<'_>, sampling: &Sampling<'_>, rng: &mut Rng) -> (u32, bool) {
        if let Some(n) = prompt.output_tokens {
            return (n, false);
        }
        match self.length {
            OutputLength::Fixed(n) => (n, false),
            OutputLength::Range(lo, hi) => (lo + rng.below(u64::from(hi - lo) + 1) as u32, false),
            OutputLength::MaxTokens(fallback) => match sampling.max_tokens {
                Some(max) => (max, true),
                None => (fallback, false),
            },
        }
    }
}

/// `count` words as sentences: capitalised first word, a full stop every 6 to 17 words and at the end.
pub fn words(rng: &mut Rng, count: u32) -> String {
    let mut text = String::with_capacity(count as usize * 7);
    let mut sentence_left = 0;
    for i in 0..count {
        let word = WORDS[rng.below(WORDS.len() as u64) as usize];
        if i > 0 {
            text.push(' ');
        }
        if sentence_left == 0 {
            sentence_left = 6 + rng.below(12);
            let mut chars = word.chars();
            if let Some(c) = chars.next() {
                text.extend(c.to_uppercase());
                text.push_str(chars.as_str());
            }
        } else {
            text.push_str(word);
        }
        sentence_left -= 1;
        if sentence_left == 0 || i + 1 == count {
            text.push('.');
            sentence_left = 0;
        }
    }
    text
}

impl Model for Synthetic {
    fn reply(&self, prompt: &Prompt<'_>) -> String {
        let no_limit = Sampling {
            max_tokens: None,
            stop: &[],
        };
        self.generate(prompt, &no_limit).text
    }

    fn generate(&self, prompt: &Prompt<'_>, sampling: &Sampling<'_>) -> Generation {
        let mut rng = Rng::new(hash(prompt.seed, prompt.last_text.unwrap_or("")));
        let (count, at_limit) = self.target(prompt, sampling, &mut rng);
        let mut generation = apply_sampling(words(&mut rng, count), sampling);
        if at_limit && generation.finish == Finish::Stop && generation.tokens == count as usize {
            // The rule stopped the model at the client's limit, not a natural end.
            generation.finish = Finish::Length;
        }
        generation
    }
}

#[cfg(test)]
mod tests {
    use super::super::tokens;
    use super::*;

    fn run(length: OutputLength, seed: u64, text: &str, max_tokens: Option<u32>) -> Generation {
        let prompt = Prompt {
            last_text: Some(text),
            seed,
            output_tokens: None,
        };
        Synthetic { length }.generate(
            &prompt,
            &Sampling {
                max_tokens,
                stop: &[],
            },
        )
    }

    #[test]
    fn fixed_length_counts_by_the_token_rule() {
        for n in [0, 1, 7, 100] {
            let g = run(OutputLength::Fixed(n), 1, "hi", None);
            assert_eq!((g.tokens, tokens::count(&g.text)), (n as usize, n as usize));
            assert_eq!(g.finish, Finish::Stop);
        }
    }

    #[test]
    fn same_seed_same_text_other_seed_other_text() {
        let a = run(OutputLength::Fixed(40), 7, "hi", None);
        assert_eq!(a, run(OutputLength::Fixed(40), 7, "hi", None));
        assert_ne!(a.text, run(OutputLength::Fixed(40), 8, "hi", None).text);
        assert_ne!(a.text, run(OutputLength::Fixed(40), 7, "ho", None).text);
        assert!(a.text.starts_with(char::is_uppercase) && a.text.ends_with('.'));
    }

    #[test]
    fn range_stays_inside_and_varies() {
        let lengths: Vec<usize> = (0..200)
            .map(|seed| run(OutputLength::Range(5, 9), seed, "x", None).tokens)
            .collect();
        assert!(lengths.iter().all(|n| (5..=9).contains(n)));
        for n in 5..=9 {
            assert!(lengths.contains(&n), "{n} never drawn");
        }
    }

    #[test]
    fn max_tokens_rule_ends_with_length() {
        let g = run(OutputLength::MaxTokens(3), 0, "x", Some(12));
        assert_eq!((g.tokens, g.finish), (12, Finish::Length));
        let g = run(OutputLength::MaxTokens(3), 0, "x", None);
        assert_eq!((g.tokens, g.finish), (3, Finish::Stop));
        // A fixed rule above the limit is cut by it like any model.
        let g = run(OutputLength::Fixed(50), 0, "x", Some(10));
        assert_eq!((g.tokens, g.finish), (10, Finish::Length));
    }

    #[test]
    fn header_length_wins_over_the_rule() {
        let prompt = Prompt {
            last_text: None,
            seed: 0,
            output_tokens: Some(25),
        };
        let sampling = Sampling {
            max_tokens: None,
            stop: &[],
        };
        let g = Synthetic {
            length: OutputLength::Fixed(3),
        }
        .generate(&prompt, &sampling);
        assert_eq!(g.tokens, 25);
    }

    #[test]
    fn parses_every_rule() {
        assert_eq!(OutputLength::parse("64"), Ok(OutputLength::Fixed(64)));
        assert_eq!(
            OutputLength::parse("16-256"),
            Ok(OutputLength::Range(16, 256))
        );
        assert_eq!(
            OutputLength::parse("max_tokens"),
            Ok(OutputLength::MaxTokens(DEFAULT_WITHOUT_MAX_TOKENS))
        );
        assert_eq!(
            OutputLength::parse("max_tokens:9"),
            Ok(OutputLength::MaxTokens(9))
        );
        for bad in ["", "x", "9-3", "-4", "max_tokens9", "1.5"] {
            assert!(OutputLength::parse(bad).is_err(), "{bad}");
        }
    }
}
