//! The seed's echo model: it repeats the last message behind a fixed sentence, exactly as the FastAPI
//! tutorial's server did, so tests can predict every byte.

use super::{Model, Prompt};

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
        assert_eq!(Echo.reply(&Prompt { last_text: None }), ECHO_EMPTY);
    }
}
