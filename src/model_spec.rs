//! Models as the configuration declares them: a name, a kind, aliases and any of the timing and length knobs,
//! each left unset falling back to the server-wide flag of the same name. `--models a,b` declares names only;
//! the JSON form (in `--config` or `STANDIN_MODELS`) declares everything:
//! `[{"name":"fast","kind":"synthetic","output_tokens":"16-64","ttft_ms":80,"aliases":["gpt-4o"]}, "plain"]`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::models::profile::Profile;
use crate::models::synthetic::OutputLength;
use crate::upstream::spec::{Upstream, UpstreamDecl};

/// What produces a model's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The seed's echo.
    Echo,
    /// Seeded words with an output-length rule.
    Synthetic,
    /// Another OpenAI-compatible server, relayed.
    Upstream,
}

impl Kind {
    /// `echo` or `synthetic`.
    pub fn parse(text: &str) -> Result<Kind, String> {
        match text.trim() {
            "echo" => Ok(Kind::Echo),
            "synthetic" => Ok(Kind::Synthetic),
            "upstream" => Ok(Kind::Upstream),
            other => Err(format!(
                "model kind `{other}` is not echo, synthetic or upstream"
            )),
        }
    }
}

/// Server-wide defaults for every model (the flags).
#[derive(Debug, Clone, PartialEq)]
pub struct Defaults {
    /// `--kind`.
    pub kind: Kind,
    /// `--output-tokens`.
    pub output_tokens: OutputLength,
    /// `--ttft-ms`, `--itl-ms`, `--jitter-ms`, `--prefill-us-per-token`, `--load-factor`.
    pub profile: Profile,
    /// `--max-concurrent` (0: no limit).
    pub max_concurrent: usize,
    /// `--max-waiting`.
    pub max_waiting: usize,
}

/// Requests queued per model by default once `max_concurrent` is reached: deep enough for any load test,
/// bounded so a runaway client cannot queue without end.
pub const DEFAULT_MAX_WAITING: usize = 1024;

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            kind: Kind::Echo,
            output_tokens: OutputLength::MaxTokens(
                crate::models::synthetic::DEFAULT_WITHOUT_MAX_TOKENS,
            ),
            profile: Profile::default(),
            max_concurrent: 0,
            max_waiting: DEFAULT_MAX_WAITING,
        }
    }
}

/// One declared model; `None` takes the default.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelSpec {
    /// The id clients send and `/v1/models` lists.
    pub name: String,
    /// Other ids that reach this model.
    pub aliases: Vec<String>,
    /// Kind.
    pub kind: Option<Kind>,
    /// Output-length rule (synthetic).
    pub output_tokens: Option<OutputLength>,
    /// Time to first token.
    pub ttft: Option<Duration>,
    /// Time between tokens.
    pub itl: Option<Duration>,
    /// Standard deviation of every gap.
    pub jitter: Option<Duration>,
    /// Prefill time per prompt token.
    pub prefill_per_token: Option<Duration>,
    /// Latency growth per other request in flight.
    pub load_factor: Option<f64>,
    /// Most requests generating at once.
    pub max_concurrent: Option<usize>,
    /// Most requests queued.
    pub max_waiting: Option<usize>,
    /// Where an `upstream` model sends its requests.
    pub upstream: Option<Upstream>,
}

/// A model with every knob settled.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The id.
    pub name: String,
    /// Aliases from the declaration.
    pub aliases: Vec<String>,
    /// Kind.
    pub kind: Kind,
    /// Output-length rule.
    pub output_tokens: OutputLength,
    /// Timing.
    pub profile: Profile,
    /// Most requests generating at once (0: no limit).
    pub max_concurrent: usize,
    /// Most requests queued.
    pub max_waiting: usize,
    /// Targets of an `upstream` model.
    pub upstream: Option<Upstream>,
}

impl ModelSpec {
    /// A model known by name only.
    pub fn named(name: &str) -> Self {
        ModelSpec {
            name: name.to_string(),
            ..ModelSpec::default()
        }
    }

    /// Every knob, from the declaration or else `defaults`.
    pub fn resolve(&self, defaults: &Defaults) -> Resolved {
        let d = &defaults.profile;
        Resolved {
            name: self.name.clone(),
            aliases: self.aliases.clone(),
            kind: self.kind.unwrap_or(defaults.kind),
            output_tokens: self.output_tokens.unwrap_or(defaults.output_tokens),
            profile: Profile {
                ttft: self.ttft.unwrap_or(d.ttft),
                itl: self.itl.unwrap_or(d.itl),
                jitter: self.jitter.unwrap_or(d.jitter),
                prefill_per_token: self.prefill_per_token.unwrap_or(d.prefill_per_token),
                load_factor: self.load_factor.unwrap_or(d.load_factor),
            },
            max_concurrent: self.max_concurrent.unwrap_or(defaults.max_concurrent),
            max_waiting: self.max_waiting.unwrap_or(defaults.max_waiting),
            upstream: self.upstream.clone(),
        }
    }
}

/// The JSON shape of one declared model.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Declared {
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
    kind: Option<String>,
    output_tokens: Option<Value>,
    ttft_ms: Option<f64>,
    itl_ms: Option<f64>,
    jitter_ms: Option<f64>,
    prefill_us_per_token: Option<f64>,
    load_factor: Option<f64>,
    max_concurrent: Option<usize>,
    max_waiting: Option<usize>,
}

/// Reads `--models`: a comma-separated list of names, or a JSON array of names and declarations.
pub fn parse_list(text: &str) -> Result<Vec<ModelSpec>, String> {
    if !text.trim_start().starts_with('[') {
        return Ok(text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(ModelSpec::named)
            .collect());
    }
    let items: Vec<Value> =
        serde_json::from_str(text).map_err(|e| format!("`models` is not a JSON array: {e}"))?;
    items.into_iter().map(parse_item).collect()
}

/// Keys of a declaration that describe an upstream (read into [`UpstreamDecl`]).
const UPSTREAM_KEYS: &[&str] = &[
    "upstreams",
    "url",
    "upstream_model",
    "api_key_env",
    "connect_timeout_ms",
    "first_byte_timeout_ms",
    "idle_timeout_ms",
    "cooldown_ms",
    "list_models",
];

fn parse_item(item: Value) -> Result<ModelSpec, String> {
    let mut object = match item {
        Value::String(name) => return Ok(ModelSpec::named(&name)),
        Value::Object(object) => object,
        other => {
            return Err(format!(
                "`models`: a declaration must be a name or an object, got {other}"
            ))
        }
    };
    let upstream_keys: serde_json::Map<String, Value> = UPSTREAM_KEYS
        .iter()
        .filter_map(|k| object.remove(*k).map(|v| (k.to_string(), v)))
        .collect();
    let d: Declared = serde_json::from_value(Value::Object(object))
        .map_err(|e| format!("`models`: a declaration {e}"))?;
    let in_model = |e: String| format!("model `{}`: {e}", d.name);
    let upstream_decl: UpstreamDecl = serde_json::from_value(Value::Object(upstream_keys.clone()))
        .map_err(|e| {
            // serde names no field here: find the key that fails on its own.
            let key = upstream_keys.iter().find(|(k, v)| {
                let alone = serde_json::Map::from_iter([(k.to_string(), (*v).clone())]);
                serde_json::from_value::<UpstreamDecl>(Value::Object(alone)).is_err()
            });
            match key {
                Some((k, _)) => in_model(format!("`{k}`: {e}")),
                None => in_model(e.to_string()),
            }
        })?;
    let kind = d
        .kind
        .as_deref()
        .map(Kind::parse)
        .transpose()
        .map_err(in_model)?;
    let upstream = match kind {
        Some(Kind::Upstream) => {
            let env = |name: &str| std::env::var(name).ok();
            Some(upstream_decl.resolve(&env).map_err(in_model)?)
        }
        _ if upstream_decl.is_set() => {
            return Err(in_model(
                "upstream keys need `\"kind\": \"upstream\"`".into(),
            ))
        }
        _ => None,
    };
    let output_tokens = match &d.output_tokens {
        None => None,
        Some(Value::Number(n)) => Some(OutputLength::parse(&n.to_string()).map_err(in_model)?),
        Some(Value::String(s)) => Some(OutputLength::parse(s).map_err(in_model)?),
        Some(_) => {
            return Err(in_model(
                "`output_tokens` must be a number or a string".into(),
            ))
        }
    };
    Ok(ModelSpec {
        kind,
        upstream,
        output_tokens,
        ttft: duration(d.ttft_ms, 1e-3, "ttft_ms").map_err(in_model)?,
        itl: duration(d.itl_ms, 1e-3, "itl_ms").map_err(in_model)?,
        jitter: duration(d.jitter_ms, 1e-3, "jitter_ms").map_err(in_model)?,
        prefill_per_token: duration(d.prefill_us_per_token, 1e-6, "prefill_us_per_token")
            .map_err(in_model)?,
        load_factor: match d.load_factor {
            Some(f) if !(0.0..=1000.0).contains(&f) => {
                return Err(in_model("`load_factor` must be between 0 and 1000".into()))
            }
            other => other,
        },
        max_concurrent: d.max_concurrent,
        max_waiting: d.max_waiting,
        name: d.name,
        aliases: d.aliases,
    })
}

/// Longest delay any knob may ask for: ten minutes.
pub const MAX_DELAY_SECS: f64 = 600.0;

/// `value × unit` seconds, checked to be finite, non-negative and at most [`MAX_DELAY_SECS`].
pub fn duration(value: Option<f64>, unit: f64, name: &str) -> Result<Option<Duration>, String> {
    match value {
        None => Ok(None),
        Some(v) if v.is_finite() && v >= 0.0 && v * unit <= MAX_DELAY_SECS => {
            Ok(Some(Duration::from_secs_f64(v * unit)))
        }
        Some(v) => Err(format!(
            "`{name}` must be between 0 and 10 minutes, got {v}"
        )),
    }
}

/// Checks names and aliases: non-empty, no duplicates among all of them, aliases pointing at real models.
pub fn check(models: &[ModelSpec], aliases: &[(String, String)]) -> Result<(), String> {
    if models.is_empty() {
        return Err("`--models` must name at least one model".into());
    }
    let mut seen = std::collections::HashSet::new();
    let declared = models
        .iter()
        .flat_map(|m| std::iter::once(&m.name).chain(&m.aliases));
    for name in declared.chain(aliases.iter().map(|(alias, _)| alias)) {
        if name.trim().is_empty() || name.len() > 256 {
            return Err(format!("model name `{name}` must have 1 to 256 characters"));
        }
        if !seen.insert(name.as_str()) {
            return Err(format!("model name `{name}` is declared twice"));
        }
    }
    for (alias, target) in aliases {
        if !models.iter().any(|m| &m.name == target) {
            return Err(format!(
                "alias `{alias}` points at `{target}`, which is not a declared model"
            ));
        }
    }
    Ok(())
}

/// Reads `--alias NAME=MODEL`.
pub fn parse_alias(item: &str) -> Result<(String, String), String> {
    match item.split_once('=') {
        Some((alias, target)) if !alias.trim().is_empty() && !target.trim().is_empty() => {
            Ok((alias.trim().to_string(), target.trim().to_string()))
        }
        _ => Err(format!("`--alias` wants NAME=MODEL, got `{item}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_declarations_mix() {
        let models = parse_list(
            r#"["plain", {"name":"fast","kind":"synthetic","output_tokens":"8-16","ttft_ms":80,
                "itl_ms":2.5,"jitter_ms":1,"prefill_us_per_token":40,"load_factor":0.1,
                "max_concurrent":4,"max_waiting":9,"aliases":["gpt-4o"]}, {"name":"n","output_tokens":12}]"#,
        )
        .unwrap();
        assert_eq!(models[0], ModelSpec::named("plain"));
        let fast = models[1].resolve(&Defaults::default());
        assert_eq!(fast.kind, Kind::Synthetic);
        assert_eq!(fast.output_tokens, OutputLength::Range(8, 16));
        assert_eq!(fast.profile.ttft, Duration::from_millis(80));
        assert_eq!(fast.profile.itl, Duration::from_micros(2500));
        assert_eq!(fast.profile.prefill_per_token, Duration::from_micros(40));
        assert_eq!((fast.max_concurrent, fast.max_waiting), (4, 9));
        assert_eq!(fast.aliases, vec!["gpt-4o"]);
        assert_eq!(models[2].output_tokens, Some(OutputLength::Fixed(12)));
    }

    #[test]
    fn upstream_declarations_resolve_their_targets() {
        let models = parse_list(
            r#"[{"name":"llama","kind":"upstream","url":"http://127.0.0.1:11434","upstream_model":"llama3.1",
                 "max_concurrent":2}]"#,
        )
        .unwrap();
        let up = models[0].upstream.as_ref().unwrap();
        assert_eq!(up.targets[0].model.as_deref(), Some("llama3.1"));
        assert_eq!(up.targets[0].prefix, "/v1");
        assert_eq!(models[0].max_concurrent, Some(2));
    }

    #[test]
    fn unset_knobs_take_the_defaults() {
        let defaults = Defaults {
            kind: Kind::Synthetic,
            max_concurrent: 3,
            ..Defaults::default()
        };
        let resolved = ModelSpec::named("m").resolve(&defaults);
        assert_eq!(
            (resolved.kind, resolved.max_concurrent),
            (Kind::Synthetic, 3)
        );
    }

    #[test]
    fn comma_lists_still_work() {
        let names: Vec<String> = parse_list(" a, b ,")
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(names, vec!["a", "b"]);
    }

    #[test]
    fn bad_declarations_say_what_is_wrong() {
        for (text, says) in [
            (r#"[{"name":"m","kind":"gpt"}]"#, "kind `gpt`"),
            (r#"[{"name":"m","ttft_ms":-1}]"#, "ttft_ms"),
            (r#"[{"name":"m","speed":3}]"#, "unknown field `speed`"),
            (
                r#"[{"name":"m","output_tokens":"9-1"}]"#,
                "MIN is above MAX",
            ),
            (r#"[{"name":"m","load_factor":-2}]"#, "load_factor"),
            (r#"[3]"#, "declaration"),
            (r#"[{"name":"m","url":"http://127.0.0.1:1"}]"#, "kind"),
            (
                r#"[{"name":"m","kind":"upstream"}]"#,
                "`url` or `upstreams`",
            ),
            (
                r#"[{"name":"m","kind":"upstream","url":"http://127.0.0.1:1","cooldown_ms":"x"}]"#,
                "cooldown_ms",
            ),
            (r#"[{"kind":"echo"}]"#, "missing field `name`"),
        ] {
            let err = parse_list(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn names_are_unique_and_aliases_resolve() {
        let models = vec![ModelSpec::named("a"), ModelSpec::named("b")];
        assert!(check(&models, &[("x".into(), "a".into())]).is_ok());
        assert!(check(&models, &[("a".into(), "b".into())])
            .unwrap_err()
            .contains("twice"));
        assert!(check(&models, &[("x".into(), "zz".into())])
            .unwrap_err()
            .contains("zz"));
        assert!(check(&[], &[]).is_err());
        assert_eq!(parse_alias("gpt-4o = a"), Ok(("gpt-4o".into(), "a".into())));
        assert!(parse_alias("nope").is_err());
    }
}
