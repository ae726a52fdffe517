//! Bearer-key check for `/v1`: every configured key is compared in constant time (per key length), so
//! response timing does not reveal how much of a guess was right. The check names the caller by the
//! position of its key, so per-key state (rate limits) never has to hold a key.

use crate::openai::ApiError;

/// Who sent a request: the configured key it presented, by position, or nobody when the API is open.
/// Per-key accounting is keyed by this rather than by the key, so no secret is copied or can be logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Caller {
    /// The API is open (no keys configured): every request shares one identity, whatever it sends.
    Anonymous,
    /// The key at this index of the configured list.
    Key(usize),
}

/// The accepted keys; none means the API is open.
#[derive(Debug, Default, Clone)]
pub struct Keys {
    keys: Vec<Vec<u8>>,
}

impl Keys {
    /// Keys from configuration.
    pub fn new(keys: &[String]) -> Self {
        Keys {
            keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
        }
    }

    /// Checks an `Authorization` header value and says whose key it is.
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<Caller, ApiError> {
        if self.keys.is_empty() {
            return Ok(Caller::Anonymous);
        }
        let Some(value) = authorization else {
            return Err(ApiError::unauthorized(
                "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            ));
        };
        let token = match value.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => value[7..].trim_ascii(),
            _ => {
                return Err(ApiError::unauthorized(
                    "The Authorization header must use the Bearer scheme.",
                ))
            }
        };
        // Every key is compared: the loop never stops at a match.
        let mut found = None;
        for (index, key) in self.keys.iter().enumerate() {
            if constant_time_eq(token, key) {
                found = Some(index);
            }
        }
        found
            .map(Caller::Key)
            .ok_or_else(|| ApiError::unauthorized("Incorrect API key provided."))
    }
}

/// Compares `given` with `key` in time that depends only on `key.len()`.
fn constant_time_eq(given: &[u8], key: &[u8]) -> bool {
    let mut diff = (given.len() ^ key.len()) as u64;
    for (i, &k) in key.iter().enumerate() {
        diff |= u64::from(given.get(i).copied().unwrap_or(0) ^ k);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_when_no_keys() {
        assert_eq!(Keys::default().check(None).unwrap(), Caller::Anonymous);
        let anything = Keys::default().check(Some(b"Bearer whatever"));
        assert_eq!(anything.unwrap(), Caller::Anonymous);
    }

    #[test]
    fn accepts_any_configured_key_and_names_it() {
        let keys = Keys::new(&["k1".into(), "secret-2".into()]);
        assert_eq!(keys.check(Some(b"Bearer k1")).unwrap(), Caller::Key(0));
        assert_eq!(
            keys.check(Some(b"bearer secret-2")).unwrap(),
            Caller::Key(1)
        );
        assert_eq!(keys.check(Some(b"Bearer  k1 ")).unwrap(), Caller::Key(0));
    }

    #[test]
    fn rejects_missing_wrong_and_prefix_keys() {
        let keys = Keys::new(&["k1".into()]);
        for header in [
            None,
            Some(&b"Bearer k2"[..]),
            Some(b"Bearer k"),
            Some(b"Bearer k11"),
            Some(b"Basic k1"),
            Some(b"k1"),
        ] {
            let e = keys.check(header).unwrap_err();
            assert_eq!(
                (e.status, e.code),
                (401, Some("invalid_api_key")),
                "{header:?}"
            );
            assert!(!e.message.contains("k1"));
        }
    }
}
