//! Configuration: one `Config`, read once from defaults, a JSON file, `STANDIN_*` environment variables and
//! command-line flags (in that order of precedence, flags last), then validated once.
//!
//! Every setting is described by one row of [`FLAGS`]; the flag name, its environment variable, its config file
//! key and its `--help` line all come from that row, so the four can never drift apart.

use std::fmt;
use std::time::Duration;

use crate::http::{ArrivalStamps, Limits};
use crate::model_spec::{self, Defaults, ModelSpec};

/// Address used when nothing says otherwise: loopback, the port the seed's tutorial uses.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";
/// Model list shown by `/v1/models` by default: the seed's model name.
pub const DEFAULT_MODEL: &str = "mock-gpt-model";
/// Coroutine stack: 128 KiB. JSON nesting is bounded by `--max-json-depth` before serde sees a body, so the
/// deepest request parse stays far below this; the rest is headroom for panic unwinding and formatting.
pub const DEFAULT_STACK_SIZE: usize = 128 * 1024;
/// Finished coroutines kept for reuse. may's default (1,000) would keep 8 MiB of stacks; 64 covers the
/// connection churn of a busy keep-alive server. The pool fills as connections finish, so an idle server that
/// never had a client holds one (see `server::configure_runtime`).
pub const DEFAULT_COROUTINE_POOL: usize = 64;
/// JSON nesting allowed in a request body. Real chat requests (tool schemas included) stay well below it.
pub const DEFAULT_MAX_JSON_DEPTH: usize = 64;

/// Drain time after SIGTERM: Kubernetes' default grace period is 30 s, so 25 s leaves time to exit first.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(25);

/// Everything the server needs to run, after validation.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to bind, e.g. `127.0.0.1:0` for a free port.
    pub listen: String,
    /// may worker threads.
    pub workers: usize,
    /// Pacer threads writing paced streams' tokens.
    pub pacer_threads: usize,
    /// Set SO_REUSEPORT so several standin processes can share `listen` (the kernel spreads connections).
    pub reuse_port: bool,
    /// Accepted bearer keys; empty means the API is open.
    pub api_keys: Vec<String>,
    /// Declared models, listed by `/v1/models`; the first serves unknown names unless `strict_models`.
    pub models: Vec<ModelSpec>,
    /// Kind, timing and queue settings of every model that does not set its own.
    pub defaults: Defaults,
    /// `(alias, model)`: other names that reach a declared model.
    pub aliases: Vec<(String, String)>,
    /// Reject models that are not in `models` with 404 instead of serving any name.
    pub strict_models: bool,
    /// HTTP limits and timeouts.
    pub limits: Limits,
    /// Maximum JSON nesting in a request body.
    pub max_json_depth: usize,
    /// Coroutine stack size in bytes.
    pub stack_size: usize,
    /// Finished coroutines kept for reuse.
    pub coroutine_pool: usize,
    /// Silence the access log.
    pub quiet: bool,
    /// Serve `POST /debug/panic`, which panics: lets tests prove panic isolation on the real binary.
    pub enable_panic_route: bool,
    /// Origins whose pages may call the API from a browser (`*` for any); empty means no CORS headers.
    pub cors_origins: Vec<String>,
    /// Failures injected at random into requests without an `x-standin-fail` header.
    pub fail_rates: crate::faults::Rates,
    /// Requests per minute per key; 0 means no limit.
    pub rate_limit_rpm: u64,
    /// How long a drain (SIGTERM, SIGINT) waits for requests in flight.
    pub shutdown_timeout: Duration,
    /// Estimated tokens per minute per key; 0 means no limit.
    pub rate_limit_tpm: u64,
}

impl Config {
    /// The declared model names, in order.
    pub fn model_names(&self) -> Vec<&str> {
        self.models.iter().map(|m| m.name.as_str()).collect()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.to_string(),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            reuse_port: false,
            pacer_threads: 1,
            api_keys: Vec::new(),
            models: vec![ModelSpec::named(DEFAULT_MODEL)],
            defaults: Defaults::default(),
            aliases: Vec::new(),
            strict_models: false,
            limits: Limits::default(),
            max_json_depth: DEFAULT_MAX_JSON_DEPTH,
            stack_size: DEFAULT_STACK_SIZE,
            coroutine_pool: DEFAULT_COROUTINE_POOL,
            quiet: false,
            enable_panic_route: false,
            cors_origins: Vec::new(),
            fail_rates: crate::faults::Rates::default(),
            rate_limit_rpm: 0,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            rate_limit_tpm: 0,
        }
    }
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Command {
    /// Serve with this configuration.
    Run(Box<Config>),
    /// Print `--help`.
    Help,
    /// Print `--version`.
    Version,
}

/// A configuration problem, shown to the user as is (exit code 2).
#[derive(Debug, PartialEq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// One setting: its flag, metavar (`None` for a switch), default shown in `--help`, and help text.
pub struct Flag {
    /// Flag name without the leading `--`.
    pub name: &'static str,
    /// Placeholder for the value, or `None` for a boolean switch.
    pub value: Option<&'static str>,
    /// Default as shown in `--help`.
    pub default: &'static str,
    /// One line of help.
    pub help: &'static str,
}

impl Flag {
    /// `STANDIN_` + the name in upper snake case.
    pub fn env_name(&self) -> String {
        format!("STANDIN_{}", self.name.replace('-', "_").to_uppercase())
    }

    /// The key in a `--config` JSON file.
    pub fn file_key(&self) -> String {
        match self.name {
            "api-key" => "api_keys".to_string(),
            "cors-origin" => "cors_origins".to_string(),
            "fail-rate" => "fail_rates".to_string(),
            "alias" => "aliases".to_string(),
            name => name.replace('-', "_"),
        }
    }
}

/// Every setting standin has.
pub const FLAGS: &[Flag] = &[
    Flag {
        name: "listen",
        value: Some("ADDR"),
        default: DEFAULT_LISTEN,
        help: "address to listen on; port 0 picks a free port",
    },
    Flag {
        name: "workers",
        value: Some("N"),
        default: "cores",
        help: "worker threads running the coroutines",
    },
    Flag {
        name: "pacer-threads",
        value: Some("N"),
        default: "1",
        help: "threads writing paced streams' tokens in bursts, 1 to 64 (one writes ~170,000 tokens/s)",
    },
    Flag {
        name: "reuse-port",
        value: None,
        default: "off",
        help: "share --listen with other standin processes (SO_REUSEPORT); the kernel spreads connections",
    },
    Flag {
        name: "api-key",
        value: Some("KEY"),
        default: "none",
        help: "accepted bearer key, repeatable (env: comma-separated); none = open",
    },
    Flag {
        name: "api-key-file",
        value: Some("FILE"),
        default: "none",
        help: "file with one accepted key per line (# comments)",
    },
    Flag {
        name: "models",
        value: Some("LIST"),
        default: DEFAULT_MODEL,
        help: "model names listed by /v1/models (comma-separated, or a JSON array of declarations)",
    },
    Flag {
        name: "kind",
        value: Some("KIND"),
        default: "echo",
        help: "what answers: echo (the seed's) or synthetic (seeded words)",
    },
    Flag {
        name: "output-tokens",
        value: Some("RULE"),
        default: "max_tokens",
        help: "synthetic output length: N, MIN-MAX or max_tokens[:N] (header x-standin-output-tokens overrides)",
    },
    Flag {
        name: "alias",
        value: Some("NAME=MODEL"),
        default: "none",
        help: "another name for a declared model, repeatable",
    },
    Flag {
        name: "strict-models",
        value: None,
        default: "off",
        help: "answer 404 model_not_found for models not in --models",
    },
    Flag {
        name: "ttft-ms",
        value: Some("MS"),
        default: "0",
        help: "time to first token (header x-standin-ttft-ms overrides)",
    },
    Flag {
        name: "itl-ms",
        value: Some("MS"),
        default: "0",
        help: "time between tokens (header x-standin-itl-ms overrides)",
    },
    Flag {
        name: "jitter-ms",
        value: Some("MS"),
        default: "0",
        help: "standard deviation of every token gap (decimals allowed)",
    },
    Flag {
        name: "prefill-us-per-token",
        value: Some("US"),
        default: "0",
        help: "time to first token added per prompt token, in microseconds",
    },
    Flag {
        name: "load-factor",
        value: Some("F"),
        default: "0",
        help: "each other request in flight on a model stretches its delays by F",
    },
    Flag {
        name: "max-concurrent",
        value: Some("N"),
        default: "0",
        help: "requests generating at once per model, the rest queue; 0 = no limit",
    },
    Flag {
        name: "max-waiting",
        value: Some("N"),
        default: "1024",
        help: "queued requests per model past --max-concurrent (503 past it)",
    },
    Flag {
        name: "max-header-bytes",
        value: Some("N"),
        default: "16384",
        help: "request line + headers limit (431 past it)",
    },
    Flag {
        name: "max-headers",
        value: Some("N"),
        default: "64",
        help: "header count limit (431 past it)",
    },
    Flag {
        name: "max-body-bytes",
        value: Some("N"),
        default: "8388608",
        help: "request body limit (413 past it)",
    },
    Flag {
        name: "max-json-depth",
        value: Some("N"),
        default: "64",
        help: "JSON nesting limit of a request body (400 past it)",
    },
    Flag {
        name: "header-timeout-ms",
        value: Some("MS"),
        default: "10000",
        help: "time to receive a request head once it starts (408)",
    },
    Flag {
        name: "body-timeout-ms",
        value: Some("MS"),
        default: "30000",
        help: "time to receive a request body (408)",
    },
    Flag {
        name: "idle-timeout-ms",
        value: Some("MS"),
        default: "60000",
        help: "keep-alive connection idle time before close",
    },
    Flag {
        name: "max-connections",
        value: Some("N"),
        default: "0",
        help: "open connections past which new ones get 503 and close; 0 = no limit",
    },
    Flag {
        name: "max-in-flight",
        value: Some("N"),
        default: "0",
        help: "requests answered at once past which new ones get 503; 0 = no limit",
    },
    Flag {
        name: "arrival-stamps",
        value: Some("MODE"),
        default: "auto",
        help: "count delays from the kernel's arrival stamp: on, off, auto (when delays are asked)",
    },
    Flag {
        name: "shutdown-timeout-ms",
        value: Some("MS"),
        default: "25000",
        help: "on SIGTERM/SIGINT, wait this long for requests in flight, then exit",
    },
    Flag {
        name: "stack-size",
        value: Some("BYTES"),
        default: "131072",
        help: "coroutine stack size (min 65536)",
    },
    Flag {
        name: "coroutine-pool",
        value: Some("N"),
        default: "64",
        help: "finished coroutines kept for reuse, at least 1 (memory vs spawn cost)",
    },
    Flag {
        name: "quiet",
        value: None,
        default: "off",
        help: "no access log on stderr",
    },
    Flag {
        name: "config",
        value: Some("FILE"),
        default: "none",
        help: "JSON file with any of these settings (keys in snake_case)",
    },
    Flag {
        name: "fail-rate",
        value: Some("KIND=P"),
        default: "none",
        help: "inject x-standin-fail KIND into a fraction P of requests, repeatable",
    },
    Flag {
        name: "cors-origin",
        value: Some("ORIGIN"),
        default: "none",
        help: "origin allowed to call from a browser (CORS), repeatable; * = any",
    },
    Flag {
        name: "rate-limit-rpm",
        value: Some("N"),
        default: "0",
        help: "requests per minute per key (429 past it); 0 = no limit",
    },
    Flag {
        name: "rate-limit-tpm",
        value: Some("N"),
        default: "0",
        help: "estimated tokens per minute per key (429 past it); 0 = no limit",
    },
    Flag {
        name: "enable-panic-route",
        value: None,
        default: "off",
        help: "serve POST /debug/panic, which panics (tests)",
    },
];

/// The `--help` text.
pub fn help() -> String {
    let mut out = format!(
        "standin {}\nAn OpenAI-compatible API server (echo model by default).\n\nUSAGE: standin [FLAGS]\n\nFLAGS (each also STANDIN_<NAME> in the environment and <name> in --config):\n",
        env!("CARGO_PKG_VERSION")
    );
    for flag in FLAGS {
        let left = match flag.value {
            Some(v) => format!("--{} {}", flag.name, v),
            None => format!("--{}", flag.name),
        };
        out.push_str(&format!(
            "  {left:<28} {} [default: {}]\n",
            flag.help, flag.default
        ));
    }
    out.push_str("  --help                       print this help\n  --version                    print the version\n");
    out
}

/// One value given for a flag by one source.
type Setting = (&'static Flag, Vec<String>);

/// Flags given as lists: repeatable on the command line, comma-separated in the environment, a JSON list
/// in the file. A source that gives one replaces the list of the sources below it.
const LIST_FLAGS: &[&str] = &["api-key", "cors-origin", "fail-rate", "alias"];

/// Reads flags, environment and config file into a `Command`.
pub fn parse<I, E>(args: I, env: E) -> Result<Command, ConfigError>
where
    I: IntoIterator<Item = String>,
    E: Fn(&str) -> Option<String>,
{
    let from_args = parse_args(args)?;
    let from_args = match from_args {
        Some(s) => s,
        None => return Ok(Command::Help),
    };
    if from_args.iter().any(|(f, _)| f.name == "version") {
        return Ok(Command::Version);
    }
    let mut from_env = Vec::new();
    for flag in FLAGS {
        if let Some(v) = env(&flag.env_name()) {
            let values = match flag.name {
                name if LIST_FLAGS.contains(&name) => v
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
                _ => vec![v],
            };
            from_env.push((flag, values));
        }
    }
    let config_path = last_value(&from_args, "config").or_else(|| last_value(&from_env, "config"));
    let from_file = match config_path {
        Some(path) => parse_file(&path)?,
        None => Vec::new(),
    };
    let mut cfg = Config::default();
    let mut key_files = Vec::new();
    for source in [from_file, from_env, from_args] {
        let mut keys: Option<Vec<String>> = None;
        let mut origins: Option<Vec<String>> = None;
        let mut rates: Option<Vec<String>> = None;
        let mut aliases: Option<Vec<String>> = None;
        for (flag, values) in source {
            if flag.name == "api-key" {
                keys.get_or_insert_with(Vec::new).extend(values);
            } else if flag.name == "cors-origin" {
                origins.get_or_insert_with(Vec::new).extend(values);
            } else if flag.name == "fail-rate" {
                rates.get_or_insert_with(Vec::new).extend(values);
            } else if flag.name == "alias" {
                aliases.get_or_insert_with(Vec::new).extend(values);
            } else if flag.name == "api-key-file" {
                key_files = values;
            } else {
                for value in values {
                    apply(&mut cfg, flag, &value)?;
                }
            }
        }
        if let Some(keys) = keys {
            cfg.api_keys = keys;
        }
        if let Some(origins) = origins {
            cfg.cors_origins = origins;
        }
        if let Some(aliases) = aliases {
            cfg.aliases = (aliases.iter().map(|a| model_spec::parse_alias(a)))
                .collect::<Result<_, _>>()
                .map_err(ConfigError)?;
        }
        if let Some(rates) = rates {
            cfg.fail_rates = crate::faults::Rates::parse(&rates).map_err(ConfigError)?;
        }
    }
    for path in key_files {
        cfg.api_keys.extend(read_key_file(&path)?);
    }
    validate(&cfg)?;
    Ok(Command::Run(Box::new(cfg)))
}

/// Flags from argv; `None` means `--help`.
fn parse_args<I: IntoIterator<Item = String>>(
    args: I,
) -> Result<Option<Vec<Setting>>, ConfigError> {
    static VERSION: Flag = Flag {
        name: "version",
        value: None,
        default: "",
        help: "",
    };
    let mut out: Vec<Setting> = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--help" || arg == "-h" {
            return Ok(None);
        }
        if arg == "--version" || arg == "-V" {
            out.push((&VERSION, Vec::new()));
            continue;
        }
        let body = arg
            .strip_prefix("--")
            .ok_or_else(|| ConfigError(format!("unexpected argument `{arg}` (see --help)")))?;
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let flag = find_flag(name)
            .ok_or_else(|| ConfigError(format!("unknown flag `--{name}` (see --help)")))?;
        let value = match (flag.value, inline) {
            (None, None) => "true".to_string(),
            (None, Some(v)) => v,
            (Some(_), Some(v)) => v,
            (Some(meta), None) => args
                .next()
                .ok_or_else(|| ConfigError(format!("`--{name}` needs a value {meta}")))?,
        };
        out.push((flag, vec![value]));
    }
    Ok(Some(out))
}

fn find_flag(name: &str) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| f.name == name)
}

fn last_value(settings: &[Setting], name: &str) -> Option<String> {
    settings
        .iter()
        .rev()
        .find(|(f, _)| f.name == name)
        .and_then(|(_, v)| v.last().cloned())
}

/// Settings from a JSON config file: an object whose keys are the flags in snake_case.
fn parse_file(path: &str) -> Result<Vec<Setting>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file `{path}`: {e}")))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ConfigError(format!("config file `{path}` is not valid JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| ConfigError(format!("config file `{path}` must hold a JSON object")))?;
    let mut out = Vec::new();
    for (key, value) in object {
        let flag = FLAGS
            .iter()
            .find(|f| f.file_key() == *key && f.name != "config")
            .ok_or_else(|| ConfigError(format!("config file `{path}`: unknown key `{key}`")))?;
        let bad = || ConfigError(format!("config file `{path}`: `{key}` has the wrong type"));
        let values = match value {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Number(n) => vec![n.to_string()],
            serde_json::Value::Bool(b) if flag.value.is_none() => vec![b.to_string()],
            serde_json::Value::Array(items)
                if flag.name == "models" || LIST_FLAGS.contains(&flag.name) =>
            {
                if flag.name == "models" {
                    // Names and declarations alike: `model_spec::parse_list` reads the JSON back.
                    vec![serde_json::Value::Array(items.clone()).to_string()]
                } else {
                    let strings: Option<Vec<String>> = items
                        .iter()
                        .map(|i| i.as_str().map(str::to_string))
                        .collect();
                    strings.ok_or_else(bad)?
                }
            }
            _ => return Err(bad()),
        };
        out.push((flag, values));
    }
    Ok(out)
}

fn read_key_file(path: &str) -> Result<Vec<String>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read api key file `{path}`: {e}")))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

fn apply(cfg: &mut Config, flag: &Flag, value: &str) -> Result<(), ConfigError> {
    let limits = &mut cfg.limits;
    match flag.name {
        "listen" => cfg.listen = value.to_string(),
        "workers" => cfg.workers = number(flag, value)?,
        "models" => cfg.models = model_spec::parse_list(value).map_err(ConfigError)?,
        "kind" => {
            cfg.defaults.kind =
                model_spec::Kind::parse(value).map_err(|e| ConfigError(format!("`--kind`: {e}")))?
        }
        "output-tokens" => {
            cfg.defaults.output_tokens = crate::models::synthetic::OutputLength::parse(value)
                .map_err(|e| ConfigError(format!("`--output-tokens`: {e}")))?
        }
        "jitter-ms" => cfg.defaults.profile.jitter = decimal(flag, value, 1e-3)?,
        "prefill-us-per-token" => {
            cfg.defaults.profile.prefill_per_token = decimal(flag, value, 1e-6)?
        }
        "load-factor" => {
            cfg.defaults.profile.load_factor = match value.trim().parse::<f64>() {
                Ok(f) if (0.0..=1000.0).contains(&f) => f,
                _ => {
                    return Err(ConfigError(format!(
                        "`--load-factor` wants a number from 0 to 1000, got `{value}`"
                    )))
                }
            }
        }
        "max-concurrent" => cfg.defaults.max_concurrent = number(flag, value)?,
        "max-waiting" => cfg.defaults.max_waiting = number(flag, value)?,
        "strict-models" => cfg.strict_models = switch(flag, value)?,
        "max-header-bytes" => limits.max_header_bytes = number(flag, value)?,
        "max-headers" => limits.max_headers = number(flag, value)?,
        "max-body-bytes" => limits.max_body_bytes = number(flag, value)?,
        "max-json-depth" => cfg.max_json_depth = number(flag, value)?,
        "header-timeout-ms" => limits.header_timeout = millis(flag, value)?,
        "body-timeout-ms" => limits.body_timeout = millis(flag, value)?,
        "idle-timeout-ms" => limits.idle_timeout = millis(flag, value)?,
        "max-connections" => limits.max_connections = number(flag, value)?,
        "max-in-flight" => limits.max_in_flight = number(flag, value)?,
        "arrival-stamps" => limits.arrival_stamps = stamps(flag, value)?,
        "shutdown-timeout-ms" => cfg.shutdown_timeout = millis(flag, value)?,
        "ttft-ms" => cfg.defaults.profile.ttft = decimal(flag, value, 1e-3)?,
        "itl-ms" => cfg.defaults.profile.itl = decimal(flag, value, 1e-3)?,
        "stack-size" => cfg.stack_size = number(flag, value)?,
        "coroutine-pool" => cfg.coroutine_pool = number(flag, value)?,
        "quiet" => cfg.quiet = switch(flag, value)?,
        "reuse-port" => cfg.reuse_port = switch(flag, value)?,
        "pacer-threads" => cfg.pacer_threads = number(flag, value)?,
        "enable-panic-route" => cfg.enable_panic_route = switch(flag, value)?,
        "rate-limit-rpm" => cfg.rate_limit_rpm = number(flag, value)? as u64,
        "rate-limit-tpm" => cfg.rate_limit_tpm = number(flag, value)? as u64,
        // `config`, `api-key`, `api-key-file` and `cors-origin` are handled by `parse`.
        _ => {}
    }
    Ok(())
}

fn number(flag: &Flag, value: &str) -> Result<usize, ConfigError> {
    value.trim().parse().map_err(|_| {
        ConfigError(format!(
            "`--{}` wants a whole number, got `{value}`",
            flag.name
        ))
    })
}

fn millis(flag: &Flag, value: &str) -> Result<Duration, ConfigError> {
    number(flag, value).map(|ms| Duration::from_millis(ms as u64))
}

/// A non-negative decimal in units of `unit` seconds, at most ten minutes.
fn decimal(flag: &Flag, value: &str, unit: f64) -> Result<Duration, ConfigError> {
    let parsed = value.trim().parse::<f64>().ok();
    model_spec::duration(parsed, unit, flag.name)
        .ok()
        .flatten()
        .ok_or_else(|| {
            ConfigError(format!(
                "`--{}` wants a number from 0 up to ten minutes, got `{value}`",
                flag.name
            ))
        })
}

fn stamps(flag: &Flag, value: &str) -> Result<ArrivalStamps, ConfigError> {
    match value.trim() {
        "on" => Ok(ArrivalStamps::Always),
        "auto" => Ok(ArrivalStamps::OnRequest),
        "off" => Ok(ArrivalStamps::Never),
        _ => Err(ConfigError(format!(
            "`--{}` wants on, off or auto, got `{value}`",
            flag.name
        ))),
    }
}

fn switch(flag: &Flag, value: &str) -> Result<bool, ConfigError> {
    match value.trim() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(ConfigError(format!(
            "`--{}` wants true or false, got `{value}`",
            flag.name
        ))),
    }
}

fn validate(cfg: &Config) -> Result<(), ConfigError> {
    let fail = |m: &str| Err(ConfigError(m.to_string()));
    if cfg.listen.parse::<std::net::SocketAddr>().is_err() {
        return Err(ConfigError(format!(
            "`--listen` wants IP:PORT, got `{}`",
            cfg.listen
        )));
    }
    if cfg.workers == 0 || cfg.workers > 1024 {
        return fail("`--workers` must be between 1 and 1024");
    }
    if cfg.pacer_threads == 0 || cfg.pacer_threads > 64 {
        return fail("`--pacer-threads` must be between 1 and 64");
    }
    if cfg.stack_size < 64 * 1024 {
        return fail("`--stack-size` must be at least 65536");
    }
    if cfg.coroutine_pool == 0 {
        // may reads a capacity of 0 as its own default, 1,000.
        return fail("`--coroutine-pool` must be at least 1");
    }
    if cfg.max_json_depth == 0 || cfg.max_json_depth > 120 {
        // serde_json stops at 128 levels itself; beyond 120 our limit would never be the one that answers.
        return fail("`--max-json-depth` must be between 1 and 120");
    }
    let l = &cfg.limits;
    if l.max_headers > 1024 {
        return fail("`--max-headers` must be at most 1024");
    }
    if l.max_header_bytes < 256 || l.max_headers == 0 || l.max_body_bytes == 0 {
        return fail("header and body limits must be positive (--max-header-bytes at least 256)");
    }
    if l.header_timeout.is_zero() || l.body_timeout.is_zero() || l.idle_timeout.is_zero() {
        return fail("timeouts must be positive");
    }
    model_spec::check(&cfg.models, &cfg.aliases).map_err(ConfigError)?;
    if cfg
        .api_keys
        .iter()
        .any(|k| k.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return fail("api keys must not contain whitespace or control characters");
    }
    for origin in &cfg.cors_origins {
        crate::cors::check_origin(origin).map_err(ConfigError)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match parse(args.iter().map(|s| s.to_string()), |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })? {
            Command::Run(cfg) => Ok(*cfg),
            other => panic!("expected Run, got {other:?}"),
        }
    }

    fn temp_file(name: &str, text: &str) -> String {
        let path = std::env::temp_dir().join(format!("standin-cfg-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn defaults_need_no_input() {
        let cfg = run(&[], &[]).unwrap();
        assert_eq!(cfg.listen, DEFAULT_LISTEN);
        assert_eq!(cfg.model_names(), vec![DEFAULT_MODEL]);
        assert!(cfg.api_keys.is_empty());
        assert_eq!(cfg.limits.max_header_bytes, 16 * 1024);
        assert_eq!(cfg.limits.max_body_bytes, 8 * 1024 * 1024);
    }

    #[test]
    fn listen_flag_and_inline_form() {
        assert_eq!(
            run(&["--listen", "127.0.0.1:0"], &[]).unwrap().listen,
            "127.0.0.1:0"
        );
        assert_eq!(
            run(&["--listen=0.0.0.0:9"], &[]).unwrap().listen,
            "0.0.0.0:9"
        );
        assert!(run(&["--listen", "nonsense"], &[]).is_err());
    }

    #[test]
    fn pacer_threads_default_to_one_and_are_bounded() {
        assert_eq!(run(&[], &[]).unwrap().pacer_threads, 1);
        assert!(run(&["--pacer-threads", "0"], &[]).is_err());
        assert_eq!(
            run(&["--pacer-threads", "3"], &[]).unwrap().pacer_threads,
            3
        );
        assert!(run(&["--pacer-threads", "65"], &[]).is_err());
        assert!(run(&["--pacer-threads", "x"], &[]).is_err());
    }

    #[test]
    fn reuse_port_is_off_unless_asked() {
        assert!(!run(&[], &[]).unwrap().reuse_port);
        assert!(run(&["--reuse-port"], &[]).unwrap().reuse_port);
        assert!(
            run(&[], &[("STANDIN_REUSE_PORT", "true")])
                .unwrap()
                .reuse_port
        );
    }

    #[test]
    fn workers_flag() {
        assert_eq!(run(&["--workers", "3"], &[]).unwrap().workers, 3);
        let err = run(&["--workers", "abc"], &[]).unwrap_err();
        assert!(err.0.contains("--workers"), "{err}");
        assert!(run(&["--workers", "0"], &[]).is_err());
    }

    #[test]
    fn api_key_repeats_and_env_splits() {
        assert_eq!(
            run(&["--api-key", "a", "--api-key", "b"], &[])
                .unwrap()
                .api_keys,
            vec!["a", "b"]
        );
        assert_eq!(
            run(&[], &[("STANDIN_API_KEY", "x, y")]).unwrap().api_keys,
            vec!["x", "y"]
        );
        // Flags override the environment rather than merging with it.
        assert_eq!(
            run(&["--api-key", "f"], &[("STANDIN_API_KEY", "e")])
                .unwrap()
                .api_keys,
            vec!["f"]
        );
    }

    #[test]
    fn api_key_file_adds_keys() {
        let path = temp_file("keys", "# team keys\nk1\n\n  k2  \n");
        let cfg = run(&["--api-key", "k0", "--api-key-file", &path], &[]).unwrap();
        assert_eq!(cfg.api_keys, vec!["k0", "k1", "k2"]);
        assert!(run(&["--api-key-file", "/nonexistent/keys"], &[]).is_err());
    }

    #[test]
    fn models_and_strict_models() {
        let cfg = run(&["--models", "a, b", "--strict-models"], &[]).unwrap();
        assert_eq!(cfg.model_names(), vec!["a", "b"]);
        assert!(cfg.strict_models);
        assert_eq!(
            run(&[], &[("STANDIN_MODELS", "m")]).unwrap().model_names(),
            vec!["m"]
        );
        assert!(run(&["--models", ","], &[]).is_err());
    }

    #[test]
    fn model_declarations_from_file_env_and_flags() {
        let path = temp_file(
            "models.json",
            r#"{"models": ["plain", {"name": "fast", "kind": "synthetic", "ttft_ms": 80,
                "aliases": ["gpt-4o"]}], "aliases": ["gpt-3.5-turbo=plain"], "max_concurrent": 2}"#,
        );
        let cfg = run(&["--config", &path, "--jitter-ms", "1.5"], &[]).unwrap();
        assert_eq!(cfg.model_names(), vec!["plain", "fast"]);
        assert_eq!(cfg.aliases, vec![("gpt-3.5-turbo".into(), "plain".into())]);
        let fast = cfg.models[1].resolve(&cfg.defaults);
        assert_eq!(fast.kind, model_spec::Kind::Synthetic);
        assert_eq!(fast.profile.ttft, Duration::from_millis(80));
        assert_eq!(fast.profile.jitter, Duration::from_micros(1500));
        assert_eq!(fast.max_concurrent, 2);
        let env = [("STANDIN_MODELS", r#"[{"name":"e","kind":"synthetic"}]"#)];
        assert_eq!(run(&[], &env).unwrap().model_names(), vec!["e"]);
        let cfg = run(
            &[
                "--kind",
                "synthetic",
                "--output-tokens",
                "4-8",
                "--alias",
                "x=mock-gpt-model",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(cfg.defaults.kind, model_spec::Kind::Synthetic);
        assert_eq!(cfg.aliases.len(), 1);
        for bad in [
            &["--kind", "gpt"][..],
            &["--output-tokens", "lots"],
            &["--alias", "x=nowhere"],
            &["--alias", "mock-gpt-model=mock-gpt-model"],
            &["--load-factor", "-1"],
            &["--jitter-ms", "nan"],
            &["--models", r#"[{"name":"m","ttft_ms":"slow"}]"#],
        ] {
            assert!(run(bad, &[]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn limit_flags() {
        let cfg = run(
            &[
                "--max-header-bytes=1000",
                "--max-headers=5",
                "--max-body-bytes=10",
                "--max-json-depth=3",
                "--header-timeout-ms=7",
                "--body-timeout-ms=8",
                "--idle-timeout-ms=9",
                "--stack-size=70000",
                "--coroutine-pool=7",
                "--ttft-ms=250",
                "--itl-ms=20",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            (
                cfg.limits.max_header_bytes,
                cfg.limits.max_headers,
                cfg.limits.max_body_bytes
            ),
            (1000, 5, 10)
        );
        assert_eq!(cfg.max_json_depth, 3);
        assert_eq!(cfg.limits.header_timeout, Duration::from_millis(7));
        assert_eq!(cfg.limits.body_timeout, Duration::from_millis(8));
        assert_eq!(cfg.limits.idle_timeout, Duration::from_millis(9));
        assert_eq!(cfg.stack_size, 70000);
        assert_eq!(cfg.coroutine_pool, 7);
        assert_eq!(
            (cfg.defaults.profile.ttft, cfg.defaults.profile.itl),
            (Duration::from_millis(250), Duration::from_millis(20))
        );
        assert!(run(&["--stack-size=1000"], &[]).is_err());
        assert!(run(&["--coroutine-pool=0"], &[]).is_err());
        assert!(run(&["--coroutine-pool=1"], &[]).is_ok());
        assert!(run(&["--max-json-depth=500"], &[]).is_err());
        assert!(run(&["--idle-timeout-ms=0"], &[]).is_err());
    }

    #[test]
    fn fail_rate_flag_env_and_file() {
        let cfg = run(&["--fail-rate", "429=0.1", "--fail-rate", "reset=0.2"], &[]).unwrap();
        assert_eq!(
            cfg.fail_rates.pick(0.05),
            Some(crate::faults::Fault::Error(
                crate::faults::Injected::RateLimited
            ))
        );
        assert_eq!(cfg.fail_rates.pick(0.25), Some(crate::faults::Fault::Reset));
        assert_eq!(cfg.fail_rates.pick(0.5), None);
        let env = run(&[], &[("STANDIN_FAIL_RATE", "500=1")]).unwrap();
        assert!(env.fail_rates.pick(0.99).is_some());
        let path = temp_file("rates.json", r#"{"fail_rates":["503=0.5"]}"#);
        assert!(!run(&["--config", &path], &[])
            .unwrap()
            .fail_rates
            .is_empty());
        assert!(run(&["--fail-rate", "429=1.5"], &[]).is_err());
    }

    #[test]
    fn arrival_stamps_take_a_mode() {
        let mode =
            |args: &[&str], env: &[(&str, &str)]| run(args, env).map(|c| c.limits.arrival_stamps);
        assert_eq!(mode(&[], &[]).unwrap(), ArrivalStamps::OnRequest);
        assert_eq!(
            mode(&["--arrival-stamps", "on"], &[]).unwrap(),
            ArrivalStamps::Always
        );
        assert_eq!(
            mode(&["--arrival-stamps=off"], &[]).unwrap(),
            ArrivalStamps::Never
        );
        let env = [("STANDIN_ARRIVAL_STAMPS", "on")];
        assert_eq!(mode(&[], &env).unwrap(), ArrivalStamps::Always);
        let err = mode(&["--arrival-stamps", "yes"], &[]).unwrap_err();
        assert!(err.0.contains("on, off or auto"), "{}", err.0);
    }

    #[test]
    fn switches_accept_env_booleans() {
        assert!(run(&["--quiet"], &[]).unwrap().quiet);
        assert!(run(&[], &[("STANDIN_QUIET", "1")]).unwrap().quiet);
        assert!(
            run(&["--enable-panic-route"], &[])
                .unwrap()
                .enable_panic_route
        );
        assert!(run(&[], &[("STANDIN_STRICT_MODELS", "maybe")]).is_err());
    }

    #[test]
    fn cors_origin_repeats_env_splits_and_file_lists() {
        let cfg = run(
            &["--cors-origin", "https://a.example", "--cors-origin=*"],
            &[],
        )
        .unwrap();
        assert_eq!(cfg.cors_origins, vec!["https://a.example", "*"]);
        assert!(run(&[], &[]).unwrap().cors_origins.is_empty());
        let from_env = run(
            &[],
            &[(
                "STANDIN_CORS_ORIGIN",
                "http://localhost:5173, https://b.example",
            )],
        )
        .unwrap();
        assert_eq!(
            from_env.cors_origins,
            vec!["http://localhost:5173", "https://b.example"]
        );
        let path = temp_file("cors.json", r#"{"cors_origins":["https://f.example"]}"#);
        let cfg = run(&["--config", &path], &[]).unwrap();
        assert_eq!(cfg.cors_origins, vec!["https://f.example"]);
        // Flags replace the file's list.
        let cfg = run(&["--config", &path, "--cors-origin", "*"], &[]).unwrap();
        assert_eq!(cfg.cors_origins, vec!["*"]);
        let err = run(&["--cors-origin", "a.example/path"], &[]).unwrap_err();
        assert!(err.0.contains("--cors-origin"), "{err}");
    }

    #[test]
    fn rate_limit_rpm_flag() {
        assert_eq!(run(&[], &[]).unwrap().rate_limit_rpm, 0);
        assert_eq!(
            run(&["--rate-limit-rpm", "60"], &[])
                .unwrap()
                .rate_limit_rpm,
            60
        );
        assert_eq!(
            run(&[], &[("STANDIN_RATE_LIMIT_RPM", "3")])
                .unwrap()
                .rate_limit_rpm,
            3
        );
        let path = temp_file("rpm.json", r#"{"rate_limit_rpm":500}"#);
        assert_eq!(run(&["--config", &path], &[]).unwrap().rate_limit_rpm, 500);
        assert!(run(&["--rate-limit-rpm", "-1"], &[]).is_err());
    }

    #[test]
    fn rate_limit_tpm_flag() {
        assert_eq!(run(&[], &[]).unwrap().rate_limit_tpm, 0);
        assert_eq!(
            run(&["--rate-limit-tpm=150000"], &[])
                .unwrap()
                .rate_limit_tpm,
            150_000
        );
        assert_eq!(
            run(&[], &[("STANDIN_RATE_LIMIT_TPM", "90")])
                .unwrap()
                .rate_limit_tpm,
            90
        );
        let path = temp_file("tpm.json", r#"{"rate_limit_tpm":1000}"#);
        assert_eq!(run(&["--config", &path], &[]).unwrap().rate_limit_tpm, 1000);
        assert!(run(&["--rate-limit-tpm", "many"], &[]).is_err());
    }

    #[test]
    fn config_file_is_lowest_precedence() {
        let path = temp_file(
            "cfg.json",
            r#"{"listen":"127.0.0.1:1","workers":2,"models":["x","y"],"quiet":true,"api_keys":["k"]}"#,
        );
        let cfg = run(&["--config", &path, "--workers", "5"], &[]).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:1");
        assert_eq!(cfg.workers, 5);
        assert_eq!(cfg.model_names(), vec!["x", "y"]);
        assert!(cfg.quiet);
        assert_eq!(cfg.api_keys, vec!["k"]);
    }

    #[test]
    fn config_file_errors_are_clear() {
        let unknown = temp_file("unknown.json", r#"{"lisen":"x"}"#);
        assert!(run(&["--config", &unknown], &[])
            .unwrap_err()
            .0
            .contains("unknown key `lisen`"));
        let wrong = temp_file("wrong.json", r#"{"workers":[1]}"#);
        assert!(run(&["--config", &wrong], &[])
            .unwrap_err()
            .0
            .contains("wrong type"));
        let broken = temp_file("broken.json", "{");
        assert!(run(&["--config", &broken], &[])
            .unwrap_err()
            .0
            .contains("not valid JSON"));
        assert!(run(&["--config", "/nonexistent.json"], &[]).is_err());
    }

    #[test]
    fn unknown_flags_and_help_and_version() {
        assert!(run(&["--nope"], &[]).unwrap_err().0.contains("--nope"));
        assert!(run(&["stray"], &[]).is_err());
        assert!(run(&["--listen"], &[])
            .unwrap_err()
            .0
            .contains("needs a value"));
        let parse_one = |a: &str| parse([a.to_string()], |_| None).unwrap();
        assert!(matches!(parse_one("--help"), Command::Help));
        assert!(matches!(parse_one("--version"), Command::Version));
        for flag in FLAGS {
            assert!(help().contains(&format!("--{}", flag.name)));
        }
    }
}
