//! The seed's echo model: it repeats the last message behind a fixed sentence, exactly as the FastAPI
//! tutorial's server did, so tests can predict every byte.

use super::{tokens, Model, Prompt};

/// Prefix of every echo reply.
pub const ECHO_PREFIX: &str = "As a mock AI Assistant, I can only echo your last message: ";
/// The reply when the last message has no text.
pub const ECHO_EMPTY: &str =
    "As a mock AI Assistant, I can only echo your last message, but there wasn't one!";

/// The echo model.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl Model for Echo {
    fn reply(&self, prompt: &Prompt<'_>) -> String {
        let reply = Echo::sentence(prompt);
        match prompt.output_tokens {
            Some(n) => repeat_to(&reply, n as usize),
            None => reply,
        }
    }
}

/// `text` repeated (space-separated) and cut to exactly `n` tokens, for `x-standin-output-tokens`.
pub fn repeat_to(text: &str, n: usize) -> String {
    let pieces: Vec<&str> = tokens::split(text).collect();
    let mut out = String::new();
    if pieces.is_empty() {
        return out;
    }
    for i in 0..n {
        let piece = pieces[i % pieces.len()];
        if i > 0 && i % pieces.len() == 0 {
            out.push(' ');
            out.push_str(piece.trim_start());
        } else {
            out.push_str(piece);
        }
    }
    out
}

impl Echo {
    fn sentence(prompt: &Prompt<'_>) -> String {
        match prompt.last_text {
            Some(text) => {
                let mut reply = String::with_capacity(ECHO_PREFIX.len() + text.len());
                reply.push_str(ECHO_PREFIX);
                reply.push_str(text);
                reply
            }
            None => ECHO_EMPTY.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{tokens, Finish, Sampling};
    use super::*;

    #[test]
    fn echoes_like_the_seed() {
        let g = Echo.generate(
            &Prompt {
                last_text: Some("Hello"),
                ..Prompt::default()
            },
            &Sampling {
                max_tokens: None,
                stop: &[],
            },
        );
        assert_eq!(
            g.text,
            "As a mock AI Assistant, I can only echo your last message: Hello"
        );
        assert_eq!((g.tokens, g.finish), (13, Finish::Stop));
        assert_eq!(tokens::count(ECHO_PREFIX), 12);
    }

    #[test]
    fn no_text_gives_the_seed_fallback() {
        assert_eq!(Echo.reply(&Prompt::default()), ECHO_EMPTY);
    }

    #[test]
    fn output_tokens_repeat_or_cut_the_echo() {
        for n in [0usize, 1, 5, 13, 14, 40] {
            let prompt = Prompt {
                last_text: Some("Hello"),
                output_tokens: Some(n as u32),
                ..Prompt::default()
            };
            let text = Echo.reply(&prompt);
            assert_eq!(tokens::count(&text), n, "{text:?}");
        }
        assert_eq!(repeat_to("a b", 5), "a b a b a");
        assert_eq!(repeat_to("", 5), "");
    }
}
