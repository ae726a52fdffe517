//! CORS (`--cors-origin`), so a web page can call the API from a browser: which origins may, the headers
//! every response then carries, and the answer to a preflight. Routing (which paths exist, which method
//! each takes) stays in `app`; this module only words the headers.
//!
//! See the Fetch standard, "CORS protocol": <https://fetch.spec.whatwg.org/#http-cors-protocol>.

use crate::http::Responder;

/// Response headers a page's script may read besides the always-readable ones: the request id, the
/// rate-limit state and when to retry (the openai JS SDK reads `retry-after-ms` and `x-request-id`).
pub const EXPOSE_HEADERS: &str = "x-request-id, x-ratelimit-limit-requests, \
     x-ratelimit-remaining-requests, x-ratelimit-reset-requests, x-ratelimit-limit-tokens, \
     x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens, retry-after, retry-after-ms";

/// Request headers a preflight allows when the browser does not list the ones it wants: the key, the body
/// type, the OpenAI SDK's organization and project, and standin's own per-request headers.
pub const DEFAULT_ALLOW_HEADERS: &str = "authorization, content-type, openai-organization, \
     openai-project, x-request-id, x-standin-fail, x-standin-ttft-ms, x-standin-itl-ms";

/// Seconds a browser may cache a preflight answer: ten minutes, Chromium's own ceiling (Firefox allows a
/// day), so a page makes one preflight per route rather than one per request.
pub const MAX_AGE: &str = "600";

/// Longest `Access-Control-Request-Headers` echoed back; a longer one gets [`DEFAULT_ALLOW_HEADERS`].
/// The openai JS SDK asks for about a dozen headers, some 250 bytes.
const MAX_ECHOED_HEADERS: usize = 2048;

/// The allowed origins.
#[derive(Debug, Clone)]
pub struct Cors {
    /// `*` was configured: every origin may, and responses say `*` rather than echo the origin.
    any: bool,
    /// Configured origins without a trailing `/`, compared without regard to ASCII case.
    origins: Vec<String>,
}

impl Cors {
    /// CORS for these origins (each checked by [`check_origin`]); `None` when the list is empty.
    pub fn new(origins: &[String]) -> Option<Self> {
        if origins.is_empty() {
            return None;
        }
        Some(Cors {
            any: origins.iter().any(|o| o == "*"),
            origins: origins
                .iter()
                .map(|o| o.strip_suffix('/').unwrap_or(o).to_string())
                .collect(),
        })
    }

    /// The `Access-Control-Allow-Origin` value for a request with this `Origin` header: `*`, the origin
    /// itself, or `None` when it may not read the response.
    pub fn allow_origin<'a>(&self, origin: Option<&'a str>) -> Option<&'a str> {
        if self.any {
            return Some("*");
        }
        let origin = origin?;
        self.origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
            .then_some(origin)
    }

    /// Adds the headers every response carries: `Vary: Origin` (the answer depends on it, so a shared
    /// cache must not hand one origin's answer to another), and for an allowed origin
    /// `Access-Control-Allow-Origin` and `Access-Control-Expose-Headers`. Returns whether it is allowed.
    pub fn add_to(&self, origin: Option<&str>, res: &mut Responder<'_>) -> bool {
        res.add_headers(&[("Vary", "Origin")]);
        let Some(allowed) = self.allow_origin(origin) else {
            return false;
        };
        res.add_headers(&[
            ("Access-Control-Allow-Origin", allowed),
            ("Access-Control-Expose-Headers", EXPOSE_HEADERS),
        ]);
        true
    }

    /// Adds a preflight's own headers for a route taking `methods` (e.g. `POST, OPTIONS`): the methods,
    /// the request headers the browser asked for (or [`DEFAULT_ALLOW_HEADERS`]) and the cache time.
    pub fn add_preflight(
        &self,
        methods: &str,
        request_headers: Option<&str>,
        res: &mut Responder<'_>,
    ) {
        res.add_headers(&[
            ("Access-Control-Allow-Methods", methods),
            (
                "Access-Control-Allow-Headers",
                allow_headers(request_headers),
            ),
            ("Access-Control-Max-Age", MAX_AGE),
        ]);
    }
}

/// The `Access-Control-Request-Headers` value if it is a plain list of header names, else the default
/// list. Echoing allows whatever the page sends (the key is checked anyway); the check keeps odd bytes out
/// of our head.
fn allow_headers(requested: Option<&str>) -> &str {
    let plain = |list: &str| {
        !list.trim().is_empty()
            && list.len() <= MAX_ECHOED_HEADERS
            && list
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.,! #$%&'*+^`|~".contains(&b))
    };
    match requested {
        Some(list) if plain(list) => list,
        _ => DEFAULT_ALLOW_HEADERS,
    }
}

/// Checks one configured origin: `*`, or `scheme://host` with an optional `:port` and trailing `/`, as a
/// browser sends it in `Origin` (no path, query or user).
pub fn check_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let bad = || {
        Err(format!(
            "`--cors-origin` wants `*` or scheme://host[:port], got `{origin}`"
        ))
    };
    let Some((scheme, rest)) = origin.split_once("://") else {
        return bad();
    };
    let host = rest.strip_suffix('/').unwrap_or(rest);
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c));
    if scheme_ok && host_ok {
        Ok(())
    } else {
        bad()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str]) -> Cors {
        let origins: Vec<String> = origins.iter().map(|o| o.to_string()).collect();
        Cors::new(&origins).unwrap()
    }

    #[test]
    fn no_origins_means_no_cors() {
        assert!(Cors::new(&[]).is_none());
    }

    #[test]
    fn listed_origins_are_echoed_and_others_refused() {
        let cors = cors(&["https://app.example.com", "http://localhost:5173/"]);
        let cases = [
            (Some("https://app.example.com"), true),
            (Some("HTTPS://App.Example.com"), true),
            (Some("http://localhost:5173"), true),
            (Some("http://app.example.com"), false),
            (Some("https://app.example.com:8443"), false),
            (Some("https://evil.example.com"), false),
            (Some("https://app.example.com.evil.com"), false),
            (Some("http://localhost:5174"), false),
            (Some("null"), false),
            (Some(""), false),
            (None, false),
        ];
        for (origin, allowed) in cases {
            let expected = if allowed { origin } else { None };
            assert_eq!(cors.allow_origin(origin), expected, "{origin:?}");
        }
    }

    #[test]
    fn star_allows_every_origin_as_star() {
        let cors = cors(&["https://a.example", "*"]);
        assert_eq!(cors.allow_origin(Some("https://b.example")), Some("*"));
        assert_eq!(cors.allow_origin(Some("https://a.example")), Some("*"));
        assert_eq!(cors.allow_origin(None), Some("*"));
    }

    #[test]
    fn requested_headers_are_echoed_when_plain() {
        assert_eq!(
            allow_headers(Some("authorization, content-type, x-stainless-os")),
            "authorization, content-type, x-stainless-os"
        );
        for odd in [
            None,
            Some(""),
            Some("  "),
            Some("a\u{7f}b"),
            Some("a;b"),
            Some("é"),
        ] {
            assert_eq!(allow_headers(odd), DEFAULT_ALLOW_HEADERS, "{odd:?}");
        }
        assert_eq!(
            allow_headers(Some(&"a".repeat(3000))),
            DEFAULT_ALLOW_HEADERS
        );
        assert!(DEFAULT_ALLOW_HEADERS.contains("authorization"));
        assert!(DEFAULT_ALLOW_HEADERS.contains("x-standin-fail"));
    }

    #[test]
    fn configured_origins_are_checked() {
        for good in [
            "*",
            "https://app.example.com",
            "http://localhost:5173",
            "http://127.0.0.1:8000/",
            "http://[::1]:3000",
            "chrome-extension://abcdef",
        ] {
            assert!(check_origin(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "app.example.com",
            "https://",
            "https://a.example/path",
            "https://a.example?x",
            "https://user@a.example",
            "https://a b",
            "*.example.com",
            "1http://a",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
    }
}
