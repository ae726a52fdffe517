//! Bearer-key check for `/v1`: every configured key is compared in constant time (per key length), so
//! response timing does not reveal how much of a guess was right.

use crate::openai::ApiError;

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

    /// Checks an `Authorization` header value.
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<(), ApiError> {
        if self.keys.is_empty() {
            return Ok(());
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
        // Every key is compared, and `|` does not short-circuit.
        let found = self
            .keys
            .iter()
            .fold(false, |found, key| found | constant_time_eq(token, key));
        if found {
            Ok(())
        } else {
            Err(ApiError::unauthorized("Incorrect API key provided."))
        }
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
        assert!(Keys::default().check(None).is_ok());
    }

    #[test]
    fn accepts_any_configured_key() {
        let keys = Keys::new(&["k1".into(), "secret-2".into()]);
        assert!(keys.check(Some(b"Bearer k1")).is_ok());
        assert!(keys.check(Some(b"bearer secret-2")).is_ok());
        assert!(keys.check(Some(b"Bearer  k1 ")).is_ok());
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
