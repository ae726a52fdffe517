//! Encoding one request for the upstream: request line, `host`, the caller's headers, `content-length`,
//! body. Bytes that could split the request on the wire are refused rather than escaped.

use super::error::UpstreamError;

/// One request to send. `host` and the framing headers are written by the client; entries of `headers`
/// named `host`, `content-length` or `transfer-encoding` are skipped so they cannot be doubled.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The `Host` header value.
    pub host: &'a str,
    /// Origin-form target, e.g. `/v1/chat/completions`.
    pub path: &'a str,
    /// Extra headers such as `authorization` and `content-type`.
    pub headers: &'a [(&'a str, &'a str)],
    /// Request body; sent with `content-length`.
    pub body: &'a [u8],
}

impl Request<'_> {
    /// Appends the encoded request to `out`, or refuses bytes that would split the request (CR, LF, spaces
    /// in the target): they come from configuration or the client, never to be trusted onto the wire.
    pub(super) fn encode(&self, out: &mut Vec<u8>) -> Result<(), UpstreamError> {
        let bad =
            |what: &str| UpstreamError::Protocol(format!("refusing to send an invalid {what}"));
        let is_token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"\"(),/:;<=>?@[\\]{}".contains(&b))
        };
        let is_value = |s: &str| s.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f));
        if !is_token(self.method) {
            return Err(bad("method"));
        }
        if !self.path.starts_with('/') || !self.path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("path"));
        }
        if !is_value(self.host) {
            return Err(bad("host"));
        }
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        out.extend_from_slice(self.host.as_bytes());
        out.extend_from_slice(b"\r\n");
        for &(name, value) in self.headers {
            if !is_token(name) || !is_value(value) {
                return Err(bad("header"));
            }
            if ["host", "content-length", "transfer-encoding"]
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h))
            {
                continue;
            }
            for part in [name.as_bytes(), b": ", value.as_bytes(), b"\r\n"] {
                out.extend_from_slice(part);
            }
        }
        if !self.body.is_empty() || !matches!(self.method, "GET" | "HEAD" | "DELETE" | "OPTIONS") {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(self.body.len()).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.body);
        Ok(())
    }

    pub(super) fn asks_to_close(&self) -> bool {
        self.headers.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case("connection")
                && value
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("close"))
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A request with every kind of header, shared with the client's tests.
    pub(crate) const POST: Request<'static> = Request {
        method: "POST",
        host: "up.example",
        path: "/v1/chat/completions",
        headers: &[
            ("authorization", "Bearer k"),
            ("content-type", "application/json"),
            ("Content-Length", "99"),
        ],
        body: b"{\"a\":1}",
    };

    #[test]
    fn request_is_encoded_with_one_length() {
        let mut out = Vec::new();
        POST.encode(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /v1/chat/completions HTTP/1.1\r\nhost: up.example\r\nauthorization: Bearer k\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n{\"a\":1}"
        );
        let get = Request {
            method: "GET",
            path: "/v1/models",
            headers: &[],
            body: b"",
            ..POST
        };
        let mut out = Vec::new();
        get.encode(&mut out).unwrap();
        assert_eq!(out, b"GET /v1/models HTTP/1.1\r\nhost: up.example\r\n\r\n");
    }

    #[test]
    fn request_refuses_injected_lines() {
        for req in [
            Request {
                headers: &[("x", "a\r\nevil: 1")],
                ..POST
            },
            Request {
                headers: &[("x y", "a")],
                ..POST
            },
            Request {
                path: "/a b",
                ..POST
            },
            Request { path: "a", ..POST },
            Request {
                host: "h\r\n",
                ..POST
            },
            Request {
                method: "PO ST",
                ..POST
            },
        ] {
            assert!(
                matches!(req.encode(&mut Vec::new()), Err(UpstreamError::Protocol(_))),
                "{req:?}"
            );
        }
    }

    #[test]
    fn connection_close_is_noticed() {
        assert!(!POST.asks_to_close());
        let close = Request {
            headers: &[("Connection", "keep-alive, Close")],
            ..POST
        };
        assert!(close.asks_to_close());
    }
}
