//! What can go wrong talking to an upstream, and what a client is told about it: 502 when the upstream is
//! broken, 504 when it is slow, never the internal detail (which stays in `Display`, for logs).

use std::fmt;
use std::io;

use crate::openai::error::ApiError;

/// Why an exchange with the upstream failed. The variants map to what the client is told: 502 for a
/// broken upstream, 504 for a slow one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamError {
    /// The TCP connection could not be made (refused, unreachable).
    Connect(io::ErrorKind),
    /// A connect, write or read deadline passed.
    Timeout,
    /// The upstream broke HTTP framing; the text is for logs, never for clients.
    Protocol(String),
    /// The connection closed or reset before the response was complete.
    Closed,
    /// The upstream answered with an error status; the body (bounded) is kept for re-shaping.
    Status(u16, Vec<u8>),
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamError::Connect(kind) => write!(f, "upstream connect failed: {kind}"),
            UpstreamError::Timeout => f.write_str("upstream timed out"),
            UpstreamError::Protocol(what) => write!(f, "upstream protocol error: {what}"),
            UpstreamError::Closed => f.write_str("upstream closed the connection"),
            UpstreamError::Status(status, _) => write!(f, "upstream answered {status}"),
        }
    }
}

impl std::error::Error for UpstreamError {}

impl UpstreamError {
    /// The client-facing error for a transport failure: 504 for a timeout, 502 otherwise, with no internal
    /// detail. A [`UpstreamError::Status`] body should rather go through `normalize::error_envelope`.
    pub fn api_error(&self) -> ApiError {
        let (status, message, code) = match self {
            UpstreamError::Timeout => (
                504,
                "The upstream model server did not respond in time.",
                "upstream_timeout",
            ),
            UpstreamError::Status(status, _) if *status >= 500 => (
                502,
                "The upstream model server returned an error.",
                "upstream_error",
            ),
            UpstreamError::Status(..) => (
                502,
                "The upstream model server rejected the request.",
                "upstream_error",
            ),
            _ => (
                502,
                "The upstream model server could not be reached or sent an invalid response.",
                "upstream_error",
            ),
        };
        ApiError {
            status,
            kind: "server_error",
            message: message.into(),
            param: None,
            code: Some(code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_502_and_504_without_detail() {
        assert_eq!(UpstreamError::Timeout.api_error().status, 504);
        for e in [
            UpstreamError::Closed,
            UpstreamError::Connect(io::ErrorKind::ConnectionRefused),
            UpstreamError::Protocol("secret framing detail".into()),
            UpstreamError::Status(500, b"secret stack trace".to_vec()),
        ] {
            let api = e.api_error();
            assert_eq!((api.status, api.kind), (502, "server_error"), "{e}");
            assert!(!api.message.contains("secret"), "{e}");
        }
        assert_eq!(
            UpstreamError::Protocol("bad chunk".into()).to_string(),
            "upstream protocol error: bad chunk"
        );
    }
}
