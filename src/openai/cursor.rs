//! A position in JSON text for the one-pass readers: whitespace, punctuation, literals, lists and the number
//! grammar. Used by the server's chat request reader (`chat_common.rs`) and by standin-load's chunk reader
//! (`loadtest/src/chunk.rs` includes this file by path; the harness does not link the server). Every method
//! answers `None` where the text is not what it expects, and the readers then leave the body to serde_json.

/// Where the run of bytes a JSON string holds as they are ends, from `i`: at the next `"`, `\\` or control
/// character (or the end of `s`). Eight bytes at a time: request strings and reply text are mostly such
/// runs.
pub fn plain_run_end(s: &[u8], mut i: usize) -> usize {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGHS: u64 = ONES * 0x80;
    const LOWS: u64 = !HIGHS;
    // The top bit of each byte below `n` (1 <= n <= 0x80), exactly: no carry crosses a byte.
    let below = |x: u64, n: u8| !(((x & LOWS) + ONES * u64::from(0x80 - n)) | x) & HIGHS;
    let special = |w: u64| {
        below(w, 0x20)
            | below(w ^ (ONES * u64::from(b'"')), 1)
            | below(w ^ (ONES * u64::from(b'\\')), 1)
    };
    let load = |at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or_default());
    if s.len() < 8 {
        while s
            .get(i)
            .is_some_and(|&b| b >= 0x20 && b != b'"' && b != b'\\')
        {
            i += 1;
        }
        return i;
    }
    while i + 8 <= s.len() {
        let marks = special(load(i));
        if marks != 0 {
            return i + marks.trailing_zeros() as usize / 8;
        }
        i += 8;
    }
    if i < s.len() {
        // The last eight bytes, without the marks of those before `i`.
        let at = s.len() - 8;
        let marks = special(load(at)) & (!0u64 << (8 * (i - at)));
        if marks != 0 {
            return at + marks.trailing_zeros() as usize / 8;
        }
        return s.len();
    }
    i
}

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

    /// Every byte at every position around the eight-byte steps: the run ends where a byte-by-byte search
    /// says.
    #[test]
    fn plain_runs_end_at_the_first_special_byte() {
        for len in 0..20 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut s = vec![b'a'; len];
                    s[at] = b;
                    for from in [0, at.saturating_sub(3), at] {
                        let expected = (from..len)
                            .find(|&i| s[i] < 0x20 || s[i] == b'"' || s[i] == b'\\')
                            .unwrap_or(len);
                        assert_eq!(plain_run_end(&s, from), expected, "{s:?} from {from}");
                    }
                }
            }
        }
    }

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
