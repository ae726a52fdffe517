//! A position in JSON text for the one-pass readers: whitespace, punctuation, literals, lists and the number
//! grammar. Used by the server's chat request reader (`chat_common.rs`) and by standin-load's chunk reader
//! (`loadtest/src/chunk.rs` includes this file by path; the harness does not link the server). Every method
//! answers `None` where the text is not what it expects, and the readers then leave the body to serde_json.

/// Implementors give the text and the position; the rest is provided.
pub trait Cursor: Sized {
    fn text(&self) -> &[u8];

    fn at(&self) -> usize;

    fn set_at(&mut self, at: usize);

    fn peek(&self) -> Option<u8> {
        self.text().get(self.at()).copied()
    }

    fn skip(&mut self, n: usize) {
        self.set_at(self.at() + n);
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.skip(1);
        }
    }

    /// `b` after any whitespace.
    fn eat(&mut self, b: u8) -> Option<()> {
        self.ws();
        (self.peek()? == b).then(|| self.skip(1))
    }

    /// `word` right here.
    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.text()[self.at()..]
            .starts_with(word)
            .then(|| self.skip(word.len()))
    }

    /// `open`, then items separated by commas, then `close`; `item` starts at each item.
    fn list(
        &mut self,
        open: u8,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.eat(open)?;
        self.ws();
        if self.peek()? == close {
            self.skip(1);
            return Some(());
        }
        loop {
            item(self)?;
            self.ws();
            match self.peek()? {
                b',' => self.skip(1),
                b if b == close => {
                    self.skip(1);
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A number right here by JSON's grammar, `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`:
    /// where it starts and ends.
    fn number(&mut self) -> Option<(usize, usize)> {
        let start = self.at();
        if self.peek() == Some(b'-') {
            self.skip(1);
        }
        match self.peek()? {
            b'0' => self.skip(1),
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.skip(1);
            self.some_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.skip(1);
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.skip(1);
            }
            self.some_digits()?;
        }
        Some((start, self.at()))
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.skip(1);
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.at();
        self.digits();
        (self.at() > start).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct At<'a>(&'a [u8], usize);

    impl Cursor for At<'_> {
        fn text(&self) -> &[u8] {
            self.0
        }
        fn at(&self) -> usize {
            self.1
        }
        fn set_at(&mut self, at: usize) {
            self.1 = at;
        }
    }

    #[test]
    fn numbers_follow_the_grammar() {
        for (text, len) in [
            ("0", Some(1)),
            ("-12.5e+3,", Some(8)),
            ("1E9}", Some(3)),
            ("01", Some(1)),
            ("-", None),
            ("1.", None),
            ("1e", None),
            (".5", None),
            ("+1", None),
        ] {
            let mut c = At(text.as_bytes(), 0);
            assert_eq!(c.number().map(|(s, e)| e - s), len, "{text}");
        }
    }

    #[test]
    fn lists_take_items_and_commas() {
        let mut c = At(b" [ 1 , 2,3 ] x", 0);
        let mut items = Vec::new();
        c.list(b'[', b']', |c| {
            c.ws();
            let (s, e) = c.number()?;
            items.push(std::str::from_utf8(&c.text()[s..e]).ok()?.to_string());
            Some(())
        })
        .unwrap();
        assert_eq!(items, ["1", "2", "3"]);
        assert_eq!(c.at(), 12);
        for bad in ["[1,]", "[1 2]", "[", "[1"] {
            let mut c = At(bad.as_bytes(), 0);
            assert_eq!(c.list(b'[', b']', |c| c.number().map(drop)), None, "{bad}");
        }
        let mut c = At(b"[]", 0);
        assert_eq!(c.list(b'[', b']', |_| None), Some(()));
        let mut c = At(b"truex", 0);
        assert_eq!(c.literal(b"true"), Some(()));
        assert_eq!(c.literal(b"true"), None);
        assert_eq!(c.peek(), Some(b'x'));
    }
}
