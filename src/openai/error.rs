//! The one client-visible error: `ApiError`, rendered as OpenAI's envelope
//! `{"error":{"message","type","param","code"}}` with the matching HTTP status.

use std::borrow::Cow;

use serde::Serialize;

use crate::http::HttpError;

/// An error as OpenAI would report it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// OpenAI's `type`: `invalid_request_error`, `server_error`, …
    pub kind: &'static str,
    /// Human-readable explanation.
    pub message: Cow<'static, str>,
    /// The request field at fault, e.g. `messages[0].content`.
    pub param: Option<String>,
    /// Machine-readable code, e.g. `invalid_api_key`.
    pub code: Option<&'static str>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl ApiError {
    /// A 400 `invalid_request_error`.
    pub fn invalid(
        message: impl Into<Cow<'static, str>>,
        param: Option<&str>,
        code: &'static str,
    ) -> Self {
        ApiError {
            status: 400,
            kind: "invalid_request_error",
            message: message.into(),
            param: param.map(str::to_string),
            code: Some(code),
        }
    }

    /// 401 for a missing or wrong bearer key.
    pub fn unauthorized(message: &'static str) -> Self {
        ApiError {
            status: 401,
            kind: "invalid_request_error",
            message: message.into(),
            param: None,
            code: Some("invalid_api_key"),
        }
    }

    /// 404 for a path no route serves.
    pub fn unknown_url(method: &str, path: &str) -> Self {
        let message = format!("Invalid URL ({method} {path})");
        ApiError {
            status: 404,
            kind: "invalid_request_error",
            message: message.into(),
            param: None,
            code: Some("unknown_url"),
        }
    }

    /// 404 for a model standin does not serve.
    pub fn model_not_found(model: &str) -> Self {
        let message =
            format!("The model `{model}` does not exist or you do not have access to it.");
        ApiError {
            status: 404,
            kind: "invalid_request_error",
            message: message.into(),
            param: Some("model".into()),
            code: Some("model_not_found"),
        }
    }

    /// 503 when a model's queue (`max_concurrent` + `max_waiting`) is full, as an overloaded engine says.
    pub fn queue_full(model: &str) -> Self {
        let message = format!(
            "The model `{model}` is currently overloaded with other requests. Please try again later."
        );
        ApiError {
            status: 503,
            kind: "server_error",
            message: message.into(),
            param: None,
            code: Some("overloaded"),
        }
    }

    /// 405 for a known path with the wrong method.
    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        let message = format!("Method {method} is not allowed for {path}");
        ApiError {
            status: 405,
            kind: "invalid_request_error",
            message: message.into(),
            param: None,
            code: Some("method_not_allowed"),
        }
    }

    /// The error for a failure found by the HTTP layer.
    pub fn from_http(error: HttpError) -> Self {
        let (kind, message, code): (_, Cow<'static, str>, _) = match error {
            HttpError::BadRequest(what) => (
                "invalid_request_error",
                format!("Malformed HTTP request: {what}.").into(),
                "bad_request",
            ),
            HttpError::HeaderTooLarge => (
                "invalid_request_error",
                "Request headers are too large or too many.".into(),
                "request_header_fields_too_large",
            ),
            HttpError::BodyTooLarge => (
                "invalid_request_error",
                "Request body is too large.".into(),
                "request_too_large",
            ),
            HttpError::Timeout => (
                "invalid_request_error",
                "The request was not received in time.".into(),
                "request_timeout",
            ),
            HttpError::Panic => (
                "server_error",
                "The server had an error while processing your request.".into(),
                "internal_error",
            ),
            HttpError::UriTooLong => (
                "invalid_request_error",
                "The request target is too long.".into(),
                "uri_too_long",
            ),
            HttpError::VersionNotSupported => (
                "server_error",
                "Only HTTP/1.1 and HTTP/1.0 are supported.".into(),
                "http_version_not_supported",
            ),
            HttpError::Overloaded => (
                "server_error",
                "The server is overloaded. Please try again later.".into(),
                "overloaded",
            ),
        };
        ApiError {
            status: error.status(),
            kind,
            message,
            param: None,
            code: Some(code),
        }
    }

    /// Appends the JSON envelope to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let envelope = Envelope {
            error: Body {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code,
            },
        };
        // Serializing plain strings into a Vec cannot fail.
        let _ = serde_json::to_writer(out, &envelope);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(e: &ApiError) -> serde_json::Value {
        let mut out = Vec::new();
        e.write_json(&mut out);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn envelope_has_all_four_fields() {
        let v = json(&ApiError::invalid("bad \"n\"", Some("n"), "invalid_value"));
        assert_eq!(
            v,
            serde_json::json!({"error": {"message": "bad \"n\"", "type": "invalid_request_error", "param": "n", "code": "invalid_value"}})
        );
        let v = json(&ApiError::unauthorized("no key"));
        assert_eq!(v["error"]["param"], serde_json::Value::Null);
        assert_eq!(v["error"]["code"], "invalid_api_key");
    }

    #[test]
    fn http_errors_keep_their_status() {
        for (e, status) in [
            (HttpError::HeaderTooLarge, 431),
            (HttpError::BodyTooLarge, 413),
            (HttpError::Timeout, 408),
            (HttpError::Panic, 500),
            (HttpError::BadRequest("x"), 400),
        ] {
            let api = ApiError::from_http(e);
            assert_eq!(api.status, status);
            assert_eq!(
                json(&api)["error"]["type"],
                if status == 500 {
                    "server_error"
                } else {
                    "invalid_request_error"
                }
            );
        }
    }
}
