//! The token rule every model and every usage count shares: a token is a run of whitespace (possibly
//! empty) followed by a run of non-whitespace; whitespace at the very end joins the last token.
//! `"Hello  world "` is `["Hello", "  world "]`. Concatenating the tokens gives the text back exactly.

/// Splits `text` into tokens without allocating.
pub fn split(text: &str) -> Tokens<'_> {
    Tokens {
        rest: text,
        ascii: text.is_ascii(),
    }
}

/// Iterator over the tokens of a text.
pub struct Tokens<'a> {
    rest: &'a str,
    /// The text is ASCII: whitespace is found byte by byte, not char by char (a stream splits its whole
    /// reply, token by token).
    ascii: bool,
}

/// `char::is_whitespace` for an ASCII byte: \t, \n, vertical tab, form feed, \r and space.
fn ascii_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        if self.ascii {
            let b = self.rest.as_bytes();
            let word_start = b.iter().position(|&c| !ascii_space(c)).unwrap_or(b.len());
            let after_word = b[word_start..]
                .iter()
                .position(|&c| ascii_space(c))
                .map_or(b.len(), |i| word_start + i);
            let end = if b[after_word..].iter().all(|&c| ascii_space(c)) {
                b.len()
            } else {
                after_word
            };
            let (token, rest) = self.rest.split_at(end);
            self.rest = rest;
            return Some(token);
        }
        let word_start = self
            .rest
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(self.rest.len());
        let after_word = self.rest[word_start..]
            .find(char::is_whitespace)
            .map_or(self.rest.len(), |i| word_start + i);
        // Trailing whitespace with no word after it belongs to this token.
        let end = if self.rest[after_word..].trim_start().is_empty() {
            self.rest.len()
        } else {
            after_word
        };
        let (token, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(token)
    }
}

/// Number of tokens in `text`: its runs of non-whitespace, or one for text that is only whitespace. Counted
/// eight bytes at a time for ASCII text (usage is counted on every request), by [`split`] otherwise.
pub fn count(text: &str) -> usize {
    if !text.is_ascii() {
        return split(text).count();
    }
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGHS: u64 = ONES * 0x80;
    // Per byte, exactly (ASCII bytes, no borrow between bytes): the top bit is set where the byte is >= n.
    let at_least = |x: u64, n: u8| ((x | HIGHS) - ONES * u64::from(n)) & HIGHS;
    let bytes = text.as_bytes();
    let mut words = 0;
    // The top bit of a byte before the text: "after whitespace", so a first word counts.
    let mut after_space = 0x80u64;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let x = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        // `char::is_whitespace` on ASCII: \t, \n, vertical tab, form feed, \r (0x09..=0x0d) and space.
        let control = at_least(x, 0x09) & !at_least(x, 0x0e);
        let space = at_least(x, b' ') & !at_least(x, b' ' + 1);
        let white = control | space;
        // A word starts at a non-space byte whose previous byte is space.
        let starts = !white & HIGHS & ((white << 8) | after_space);
        words += starts.count_ones() as usize;
        after_space = (white >> 56) & 0x80;
    }
    let mut in_word = after_space == 0;
    for &b in chunks.remainder() {
        let space = ascii_space(b);
        words += usize::from(!space && !in_word);
        in_word = !space;
    }
    if words == 0 && !text.is_empty() {
        1
    } else {
        words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The count and both ways of splitting (byte by byte for ASCII, char by char) agree on `text`.
    fn agree(text: &str) {
        assert_eq!(count(text), split(text).count(), "{text:?}");
        let by_char = Tokens {
            rest: text,
            ascii: false,
        };
        assert_eq!(
            split(text).collect::<Vec<_>>(),
            by_char.collect::<Vec<_>>(),
            "{text:?}"
        );
    }

    /// Texts of every length to 40 over a small alphabet with every kind of ASCII whitespace: the count
    /// eight bytes at a time agrees with the tokens `split` gives.
    #[test]
    fn count_agrees_with_split() {
        const ALPHABET: &[u8] = b"ab \t\n\x0b\x0c\r!~\x08\x0e\x1f\x21";
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = round % 41;
            let text: String = (0..len)
                .map(|k| ALPHABET[((state >> (k % 60)) as usize + k * 7) % ALPHABET.len()] as char)
                .collect();
            agree(&text);
        }
        assert_eq!(count("héllo wörld"), 2);
    }

    #[test]
    fn words_carry_their_leading_space() {
        let tokens: Vec<_> = split("Hello  world, again").collect();
        assert_eq!(tokens, vec!["Hello", "  world,", " again"]);
    }

    #[test]
    fn edges() {
        assert_eq!(split("").count(), 0);
        assert_eq!(split("   ").collect::<Vec<_>>(), vec!["   "]);
        assert_eq!(split(" a ").collect::<Vec<_>>(), vec![" a "]);
        assert_eq!(split("a\n\nb\t").collect::<Vec<_>>(), vec!["a", "\n\nb\t"]);
        assert_eq!(
            split("héllo wörld").collect::<Vec<_>>(),
            vec!["héllo", " wörld"]
        );
    }

    /// The ASCII fast count agrees with the tokens [`split`] yields, whitespace of every kind included.
    #[test]
    fn count_matches_split() {
        const PIECES: [&str; 12] = [
            "a", "bc", " ", "  ", "\t", "\n", "\x0b", "\x0c", "\r", "\u{85}", "é", "\u{3000}",
        ];
        let mut state = 7u64;
        for _ in 0..20_000 {
            let mut text = String::new();
            for _ in 0..(state % 9) {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                text.push_str(PIECES[(state >> 33) as usize % PIECES.len()]);
            }
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            agree(&text);
        }
        assert_eq!((count(""), count(" \t"), count(" a b ")), (0, 1, 2));
    }

    #[test]
    fn tokens_rebuild_the_text() {
        for text in ["a b  c", "  lead", "trail  ", "x", "\u{3000}全角 space"] {
            assert_eq!(split(text).collect::<String>(), text);
        }
    }
}
