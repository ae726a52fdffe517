//! Upstream targets as the configuration declares them: where an `upstream` model's requests go, in fallback
//! order, with the model name to send, the environment variable holding the key, and the timeouts. Hosts are
//! resolved once at start (a DNS lookup inside a coroutine would stall its worker thread).

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use serde::Deserialize;

/// Time to connect unless a target says otherwise: loopback and LAN servers answer in far less.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time to the response head: a real model's prefill on a long prompt can take this long.
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(120);
/// Silence allowed between two pieces of a streamed body.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a failed target is skipped.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(5);

/// One upstream server.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The base URL as configured (never holds the key), for messages and logs.
    pub base: String,
    /// Where to connect.
    pub addr: SocketAddr,
    /// The `Host` header: the URL's host and port.
    pub host: String,
    /// Path in front of `/chat/completions`, e.g. `/v1`.
    pub prefix: String,
    /// The model name the upstream knows; `None` sends the name the client used.
    pub model: Option<String>,
    /// The environment variable holding the bearer key, if the upstream needs one.
    pub api_key_env: Option<String>,
    /// The key, read from `api_key_env` at start.
    pub api_key: Option<String>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Time to the response head.
    pub first_byte_timeout: Duration,
    /// Silence allowed between body reads.
    pub idle_timeout: Duration,
}

/// An `upstream` model's targets and policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    /// Tried in order: the next one when the one before fails before any byte reached the client.
    pub targets: Vec<Target>,
    /// How long a failed target is skipped.
    pub cooldown: Duration,
    /// Also list the upstreams' own `/v1/models` in ours.
    pub list_models: bool,
}

/// The JSON shape of one target.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct TargetDecl {
    url: Option<String>,
    model: Option<String>,
    api_key_env: Option<String>,
    connect_timeout_ms: Option<u64>,
    first_byte_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
}

/// The upstream part of a model declaration: `upstreams: [...]`, or one target's keys on the model itself.
#[derive(Deserialize, Default, Clone)]
pub struct UpstreamDecl {
    /// Fallback list.
    #[serde(default)]
    pub upstreams: Vec<TargetDecl>,
    /// Shorthand for one target.
    pub url: Option<String>,
    /// Shorthand (and default for the list): the upstream's model name.
    pub upstream_model: Option<String>,
    /// Shorthand (and default for the list): the key's environment variable.
    pub api_key_env: Option<String>,
    /// Default connect timeout of the targets.
    pub connect_timeout_ms: Option<u64>,
    /// Default first-byte timeout of the targets.
    pub first_byte_timeout_ms: Option<u64>,
    /// Default idle timeout of the targets.
    pub idle_timeout_ms: Option<u64>,
    /// Cool-down of a failed target.
    pub cooldown_ms: Option<u64>,
    /// Merge the upstreams' model lists into ours.
    #[serde(default)]
    pub list_models: bool,
}

impl UpstreamDecl {
    /// Whether any upstream key was given (only `upstream` models may).
    pub fn is_set(&self) -> bool {
        !self.upstreams.is_empty()
            || self.url.is_some()
            || self.upstream_model.is_some()
            || self.api_key_env.is_some()
            || self.connect_timeout_ms.is_some()
            || self.first_byte_timeout_ms.is_some()
            || self.idle_timeout_ms.is_some()
            || self.cooldown_ms.is_some()
            || self.list_models
    }

    /// Resolves every target; `env` reads the environment (keys are read once, here).
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Upstream, String> {
        let mut decls = self.upstreams.clone();
        if let Some(url) = &self.url {
            decls.insert(
                0,
                TargetDecl {
                    url: Some(url.clone()),
                    ..TargetDecl::default()
                },
            );
        }
        if decls.is_empty() {
            return Err("an upstream model needs `url` or `upstreams`".into());
        }
        let ms = |own: Option<u64>, shared: Option<u64>, default: Duration| {
            own.or(shared).map_or(default, Duration::from_millis)
        };
        let mut targets = Vec::new();
        for decl in decls {
            let url = decl.url.as_deref().ok_or("every upstream needs a `url`")?;
            let (addr, host, prefix) = parse_url(url)?;
            let api_key_env = decl.api_key_env.or_else(|| self.api_key_env.clone());
            let api_key = match &api_key_env {
                Some(var) => Some(env(var).filter(|k| !k.is_empty()).ok_or_else(|| {
                    format!("upstream {url}: environment variable `{var}` (api_key_env) is not set")
                })?),
                None => None,
            };
            targets.push(Target {
                base: url.to_string(),
                addr,
                host,
                prefix,
                model: decl.model.or_else(|| self.upstream_model.clone()),
                api_key_env,
                api_key,
                connect_timeout: ms(
                    decl.connect_timeout_ms,
                    self.connect_timeout_ms,
                    DEFAULT_CONNECT_TIMEOUT,
                ),
                first_byte_timeout: ms(
                    decl.first_byte_timeout_ms,
                    self.first_byte_timeout_ms,
                    DEFAULT_FIRST_BYTE_TIMEOUT,
                ),
                idle_timeout: ms(
                    decl.idle_timeout_ms,
                    self.idle_timeout_ms,
                    DEFAULT_IDLE_TIMEOUT,
                ),
            });
        }
        Ok(Upstream {
            targets,
            cooldown: self
                .cooldown_ms
                .map_or(DEFAULT_COOLDOWN, Duration::from_millis),
            list_models: self.list_models,
        })
    }
}

/// `http://host[:port][/prefix]` → the resolved address, the `Host` header and the path prefix (`/v1` when
/// the URL has no path, as OpenAI base URLs end in `/v1`). `https` needs TLS, which standin does not carry.
pub fn parse_url(url: &str) -> Result<(SocketAddr, String, String), String> {
    let rest = match url.split_once("://") {
        Some(("http", rest)) => rest,
        Some(("https", _)) => {
            return Err(format!(
                "upstream `{url}`: https is not supported (no TLS in standin); put a TLS proxy on loopback in front"
            ))
        }
        _ => return Err(format!("upstream `{url}` must start with http://")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') || path.contains(['?', '#', ' ']) {
        return Err(format!(
            "upstream `{url}` is not a plain http://host:port/path URL"
        ));
    }
    let with_port = if authority.starts_with('[') {
        if authority.contains("]:") {
            authority.to_string()
        } else {
            format!("{authority}:80")
        }
    } else if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("upstream `{url}`: cannot resolve `{authority}`: {e}"))?
        .next()
        .ok_or_else(|| format!("upstream `{url}`: `{authority}` has no address"))?;
    let prefix = if path.is_empty() { "/v1" } else { path };
    Ok((addr, authority.to_string(), prefix.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(json: &str) -> UpstreamDecl {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn urls_give_address_host_and_prefix() {
        let (addr, host, prefix) = parse_url("http://127.0.0.1:11434").unwrap();
        assert_eq!(
            (addr.port(), host.as_str(), prefix.as_str()),
            (11434, "127.0.0.1:11434", "/v1")
        );
        let (_, _, prefix) = parse_url("http://127.0.0.1:8080/openai/v1/").unwrap();
        assert_eq!(prefix, "/openai/v1");
        assert_eq!(parse_url("http://localhost/v1").unwrap().0.port(), 80);
        assert!(parse_url("https://api.openai.com/v1")
            .unwrap_err()
            .contains("TLS"));
        for bad in [
            "ftp://x",
            "127.0.0.1:80",
            "http://",
            "http://u:p@h/v1",
            "http://h/v1?x=1",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shorthand_and_list_merge_in_order_with_shared_defaults() {
        let env = |name: &str| (name == "KEY_A").then(|| "sk-a".to_string());
        let up = decl(
            r#"{"url":"http://127.0.0.1:1","upstream_model":"llama3","api_key_env":"KEY_A",
                "idle_timeout_ms":7,"cooldown_ms":9,
                "upstreams":[{"url":"http://127.0.0.1:2/v1","model":"other","connect_timeout_ms":3}]}"#,
        )
        .resolve(&env)
        .unwrap();
        assert_eq!(up.targets.len(), 2);
        let (a, b) = (&up.targets[0], &up.targets[1]);
        assert_eq!((a.addr.port(), a.model.as_deref()), (1, Some("llama3")));
        assert_eq!((b.addr.port(), b.model.as_deref()), (2, Some("other")));
        assert_eq!(b.api_key.as_deref(), Some("sk-a"));
        assert_eq!(b.connect_timeout, Duration::from_millis(3));
        assert_eq!(b.idle_timeout, Duration::from_millis(7));
        assert_eq!(a.first_byte_timeout, DEFAULT_FIRST_BYTE_TIMEOUT);
        assert_eq!(up.cooldown, Duration::from_millis(9));
    }

    #[test]
    fn missing_pieces_are_errors() {
        let none = |_: &str| None;
        assert!(decl("{}").resolve(&none).unwrap_err().contains("url"));
        let err = decl(r#"{"url":"http://127.0.0.1:1","api_key_env":"NOPE"}"#)
            .resolve(&none)
            .unwrap_err();
        assert!(err.contains("NOPE") && err.contains("not set"), "{err}");
        assert!(!decl("{}").is_set() && decl(r#"{"list_models":true}"#).is_set());
    }
}
