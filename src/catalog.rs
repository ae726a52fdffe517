//! The running server's models: each declared model with its text source, latency profile and admission gate,
//! found by name or alias. An unknown name is served by the first model under the name the client sent,
//! unless `--strict-models` makes it a 404.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::admission::Gate;
use crate::config::Config;
use crate::metrics::{ModelMetrics, ModelSeries};
use crate::model_spec::Kind;
use crate::models::echo::Echo;
use crate::models::profile::Profile;
use crate::models::synthetic::Synthetic;
use crate::models::Model;
use crate::openai::ApiError;
use crate::upstream::relay::Relay;

/// One model ready to serve.
pub struct Entry {
    /// Its id.
    pub name: String,
    /// What answers.
    pub source: Source,
    /// Its timing.
    pub profile: Profile,
    /// Its queue.
    pub gate: Gate,
    /// Its series at `/metrics`.
    pub metrics: ModelMetrics,
}

/// What answers a model's requests.
pub enum Source {
    /// A model in this process.
    Local(Box<dyn Model>),
    /// Other servers, relayed.
    Upstream(Relay),
}

/// The model a request reached.
#[derive(Clone, Copy)]
pub struct Served<'a> {
    /// The model.
    pub entry: &'a Entry,
    /// The id the response reports: the model's own (an alias resolves to it), or an unknown name as sent.
    pub name: &'a str,
}

/// FNV-1a, for the name index: every request looks a model name up, and SipHash (std's default) costs
/// several times more on names this short. Flooding is no concern: the table is built from the
/// configuration, and a client's name only costs one lookup.
#[derive(Default)]
struct Fnv1a(u64);

impl Hasher for Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Every model of the server.
pub struct Catalog {
    entries: Vec<Entry>,
    /// Names and aliases → entry.
    index: HashMap<String, usize, BuildHasherDefault<Fnv1a>>,
    /// Ids for `/v1/models`: names, then aliases.
    ids: Vec<String>,
    strict: bool,
}

impl Catalog {
    /// Builds every declared model from a validated configuration.
    pub fn new(cfg: &Config) -> Self {
        let mut entries = Vec::new();
        let mut index = HashMap::default();
        let mut ids = Vec::new();
        let mut alias_ids = Vec::new();
        for (i, spec) in cfg.models.iter().enumerate() {
            let resolved = spec.resolve(&cfg.defaults);
            let source = match (resolved.kind, &resolved.upstream) {
                (Kind::Upstream, Some(upstream)) => Source::Upstream(Relay::new(upstream)),
                (Kind::Synthetic, _) => Source::Local(Box::new(Synthetic {
                    length: resolved.output_tokens,
                })),
                _ => Source::Local(Box::new(Echo)),
            };
            index.insert(resolved.name.clone(), i);
            ids.push(resolved.name.clone());
            for alias in &resolved.aliases {
                index.insert(alias.clone(), i);
                alias_ids.push(alias.clone());
            }
            entries.push(Entry {
                name: resolved.name,
                source,
                profile: resolved.profile,
                gate: Gate::new(resolved.max_concurrent, resolved.max_waiting),
                metrics: ModelMetrics::new(),
            });
        }
        for (alias, target) in &cfg.aliases {
            if let Some(&i) = index.get(target) {
                index.insert(alias.clone(), i);
                alias_ids.push(alias.clone());
            }
        }
        ids.extend(alias_ids);
        Catalog {
            entries,
            index,
            ids,
            strict: cfg.strict_models,
        }
    }

    /// The model for `requested`, or 404 `model_not_found` when strict and unknown.
    pub fn resolve<'a>(&'a self, requested: &'a str) -> Result<Served<'a>, ApiError> {
        match self.index.get(requested) {
            Some(&i) => {
                let entry = &self.entries[i];
                Ok(Served {
                    entry,
                    name: &entry.name,
                })
            }
            // A name an upstream lists itself goes to that upstream as is.
            None if self.upstream_listing(requested).is_some() => Ok(Served {
                entry: self.upstream_listing(requested).unwrap_or(&self.entries[0]),
                name: requested,
            }),
            None if self.strict => Err(ApiError::model_not_found(requested)),
            None => Ok(Served {
                entry: &self.entries[0],
                name: requested,
            }),
        }
    }

    /// The upstream model whose upstreams list `id` themselves (`list_models`).
    fn upstream_listing(&self, id: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| match &e.source {
            Source::Upstream(relay) => relay.lists(id),
            Source::Local(_) => false,
        })
    }

    /// Whether `id` is listed (a name, an alias, or an id an upstream lists).
    pub fn lists(&self, id: &str) -> bool {
        self.index.contains_key(id) || self.upstream_listing(id).is_some()
    }

    /// Ids `/v1/models` lists: names, aliases, then the upstreams' own lists (`list_models`).
    pub fn ids(&self) -> Vec<String> {
        let mut ids = self.ids.clone();
        for entry in &self.entries {
            if let Source::Upstream(relay) = &entry.source {
                for id in relay.model_ids() {
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
        }
        ids
    }

    /// Every model's series for `/metrics`, labelled with its name (aliases report under their target).
    pub fn series(&self) -> Vec<ModelSeries<'_>> {
        (self.entries.iter())
            .map(|e| ModelSeries {
                name: &e.name,
                metrics: &e.metrics,
                waiting: e.gate.waiting(),
            })
            .collect()
    }

    /// Whether any model has a latency profile, so its requests are timed.
    pub fn any_paced(&self) -> bool {
        self.entries.iter().any(|e| e.profile != Profile::default())
    }

    /// The first model's name: names errors before a model is known.
    pub fn first_name(&self) -> &str {
        &self.entries[0].name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_spec::ModelSpec;
    use crate::models::{Prompt, Sampling};

    #[test]
    fn fnv1a_matches_the_reference_values() {
        let hash = |bytes: &[u8]| {
            let mut h = Fnv1a::default();
            h.write(bytes);
            h.finish()
        };
        // From the FNV reference test suite (64-bit FNV-1a).
        assert_eq!(hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash(b"foobar"), 0x8594_4171_f739_67e8);
    }

    fn catalog(strict: bool) -> Catalog {
        let mut synthetic = ModelSpec::named("syn");
        synthetic.kind = Some(Kind::Synthetic);
        synthetic.aliases = vec!["gpt-4o".into()];
        let cfg = Config {
            models: vec![ModelSpec::named("echo"), synthetic],
            aliases: vec![("gpt-3.5-turbo".into(), "echo".into())],
            strict_models: strict,
            ..Config::default()
        };
        Catalog::new(&cfg)
    }

    fn text(served: Served<'_>) -> String {
        let prompt = Prompt {
            last_text: Some("hi"),
            ..Prompt::default()
        };
        let sampling = Sampling {
            max_tokens: Some(5),
            stop: &[],
        };
        match &served.entry.source {
            Source::Local(model) => model.generate(&prompt, &sampling).text,
            Source::Upstream(_) => unreachable!("no upstream in these tests"),
        }
    }

    #[test]
    fn aliases_reach_their_model_and_report_its_name() {
        let c = catalog(true);
        let served = c.resolve("gpt-4o").unwrap();
        assert_eq!(served.name, "syn");
        assert_eq!(text(served), text(c.resolve("syn").unwrap()));
        assert!(!text(served).starts_with("As a mock"));
        assert_eq!(c.resolve("gpt-3.5-turbo").unwrap().name, "echo");
        assert_eq!(c.ids(), ["echo", "syn", "gpt-4o", "gpt-3.5-turbo"]);
        assert!(c.lists("gpt-4o") && !c.lists("other"));
    }

    #[test]
    fn unknown_names_follow_the_policy() {
        assert_eq!(
            catalog(true).resolve("nope").err().map(|e| e.status),
            Some(404)
        );
        let c = catalog(false);
        let served = c.resolve("nope").unwrap();
        assert_eq!((served.name, served.entry.name.as_str()), ("nope", "echo"));
        assert!(text(served).starts_with("As a mock"));
    }
}
