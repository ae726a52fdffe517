//! `standin-load` flags: parsed by hand into one validated [`Options`].

use std::time::Duration;

use crate::workload::{Arrival, BodySpec, Prompts};

/// Everything one run needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Base URL of server A, e.g. `http://127.0.0.1:8000`.
    pub url: String,
    /// Base URL of server B for `--compare`.
    pub compare: Option<String>,
    /// Closed loop: this many virtual users.
    pub concurrency: Option<usize>,
    /// Open loop: requests per second.
    pub rate: Option<f64>,
    /// Open-loop arrival process.
    pub arrival: Arrival,
    /// Open loop: at most this many in flight.
    pub max_concurrency: Option<usize>,
    /// Measured run length.
    pub duration: Option<Duration>,
    /// Measured request count.
    pub requests: Option<usize>,
    /// Warm-up before measuring.
    pub warmup: Duration,
    /// Seed for schedule, prompts and disconnects: `--seed` plus the instance index.
    pub seed: u64,
    /// `--seed` as given, before the instance index is added.
    pub base_seed: u64,
    /// This harness's index among `instances` (0 when alone).
    pub instance: u64,
    /// How many harness instances share the test (`--instances`), if said.
    pub instances: Option<u64>,
    /// Probability that the client abandons a request at a random point (`--disconnect`).
    pub disconnect: f64,
    /// Write every request's raw record here (JSONL, `raw.rs`), for `standin-load merge`.
    pub raw: Option<String>,
    /// Request body settings.
    pub body: BodySpec,
    /// Prompt source.
    pub prompts: Prompts,
    /// Bearer key.
    pub api_key: Option<String>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Write the JSON report here.
    pub json: Option<String>,
    /// Write the SVG report here.
    pub svg: Option<String>,
    /// Spread connections over this many source addresses 127.0.0.1..N (0 = let the kernel choose).
    pub sources: u8,
    /// may worker threads.
    pub workers: usize,
    /// No progress line.
    pub quiet: bool,
    /// Run as this many child processes, each with its own descriptor table (`processes.rs`).
    pub processes: usize,
    /// Report every wake-up of a core probe this late or later (`stalls.rs`); zero: no probe.
    pub stall_threshold: Duration,
}

impl Options {
    /// The load shape as reports print it: `closed c=64`, `open rate=100 poisson`.
    pub fn mode(&self) -> String {
        match self.rate {
            Some(rate) => format!("open rate={rate} {:?}", self.arrival).to_lowercase(),
            None => format!("closed c={}", self.concurrency.unwrap_or(1)),
        }
    }
}

/// `--help` text.
pub const HELP: &str = "standin-load: load-test any OpenAI-compatible server

USAGE: standin-load [FLAGS]

  --url BASE              server to test [default: http://127.0.0.1:8000] (the /v1/... path is added)
  --compare BASE          also send the same seeded work to this server, interleaved; report B/A ratios
  --concurrency N         closed loop with N virtual users [default: 64 unless --rate]
  --rate R                open loop, R requests/s
  --arrival KIND          poisson | constant | gamma [default: poisson]
  --burstiness K          gamma shape (1 = poisson, <1 burstier) [default: 1]
  --max-concurrency N     open loop: cap on requests in flight
  --duration SECS         measured duration [default: 10 unless --requests]
  --requests N            measured request count
  --warmup SECS           warm-up excluded from results [default: 1]
  --seed S                seed for schedule, prompts and disconnects [default: 0]
  --endpoint KIND         chat | completions [default: chat]
  --model NAME            [default: mock-gpt-model]
  --stream                stream (always with stream_options.include_usage)
  --max-tokens N          max_tokens of every request
  --prompt TEXT           fixed prompt [default: Hello]
  --prompt-words MIN:MAX  random words, count drawn from MIN..=MAX
  --prompt-file FILE      JSONL file of whole request bodies, used in turn
  --api-key KEY           bearer key
  --timeout SECS          per-request timeout, from the send, noticed within 10 ms [default: 60]
  --json FILE             write the report as JSON (vLLM bench serve field names plus ours)
  --svg FILE              write latency distributions and a throughput timeline as SVG
  --raw FILE              write every request's raw timings (JSONL) for `standin-load merge`
  --instances N           this run is one of N harness instances whose --raw files are merged
  --instance-index I      which one, 0-based: its seed is --seed + I, so instances send different work
                          [default: $JOB_COMPLETION_INDEX (set by a Kubernetes Indexed Job), else 0]
  --disconnect P          abandon each request with probability P (seeded): hang up before the head or
                          after a random number of SSE events; counted as abandoned, not as errors
  --sources N             spread connections over 127.0.0.1..127.0.0.N [default: 0 = kernel's choice]
  --workers N             harness threads [default: cores]
  --processes N           run as N processes, each with its own open-file limit, and report them as one
                          run: --concurrency, --max-concurrency, --requests and a Poisson --rate are the
                          totals, split between them [default: 1]
  --stall-ms MS           report each time a core the harness runs on was taken from it for MS or more
                          (a probe per core wakes each 2 ms); 0 = no probe [default: 5]
  --quiet                 no progress line

Per instance: --concurrency, --rate, --requests and --duration apply to each instance, so N instances
send N times the load.

USAGE: standin-load merge FILE|DIR... [--json OUT] [--svg OUT]

  Combines the --raw files of several instances (a directory: its *.jsonl files) into one report,
  computed from the union of their samples (exact percentiles, not averages of percentiles); see
  `merge --help`.
";

/// The environment variable a Kubernetes Indexed Job sets to each pod's index.
pub const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// Parses argv (without the program name). `Ok(None)` means `--help` was asked for.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    parse_with_env(args, |name| std::env::var(name).ok())
}

/// [`parse`] with the environment as a function, for tests.
pub fn parse_with_env(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Options>, String> {
    let mut o = Options {
        url: "http://127.0.0.1:8000".into(),
        compare: None,
        concurrency: None,
        rate: None,
        arrival: Arrival::Poisson,
        max_concurrency: None,
        duration: None,
        requests: None,
        warmup: Duration::from_secs(1),
        seed: 0,
        base_seed: 0,
        instance: 0,
        instances: None,
        disconnect: 0.0,
        raw: None,
        body: BodySpec {
            chat: true,
            model: "mock-gpt-model".into(),
            stream: false,
            max_tokens: None,
        },
        prompts: Prompts::Fixed("Hello".into()),
        api_key: None,
        timeout: Duration::from_secs(60),
        json: None,
        svg: None,
        sources: 0,
        workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        quiet: false,
        processes: 1,
        stall_threshold: Duration::from_millis(5),
    };
    let mut arrival = "poisson".to_string();
    let mut instance: Option<u64> = None;
    let mut burstiness = 1.0;
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--stream" => o.body.stream = true,
            "--quiet" => o.quiet = true,
            "--url" => o.url = value(&flag)?,
            "--compare" => o.compare = Some(value(&flag)?),
            "--concurrency" => o.concurrency = Some(num(&flag, &value(&flag)?)?),
            "--rate" => o.rate = Some(num(&flag, &value(&flag)?)?),
            "--arrival" => arrival = value(&flag)?,
            "--burstiness" => burstiness = num(&flag, &value(&flag)?)?,
            "--max-concurrency" => o.max_concurrency = Some(num(&flag, &value(&flag)?)?),
            "--duration" => o.duration = Some(Duration::from_secs_f64(num(&flag, &value(&flag)?)?)),
            "--requests" => o.requests = Some(num(&flag, &value(&flag)?)?),
            "--warmup" => o.warmup = Duration::from_secs_f64(num(&flag, &value(&flag)?)?),
            "--seed" => o.seed = num(&flag, &value(&flag)?)?,
            "--endpoint" => {
                o.body.chat = match value(&flag)?.as_str() {
                    "chat" => true,
                    "completions" => false,
                    other => return Err(format!("--endpoint: chat or completions, not {other}")),
                }
            }
            "--model" => o.body.model = value(&flag)?,
            "--max-tokens" => o.body.max_tokens = Some(num(&flag, &value(&flag)?)?),
            "--prompt" => o.prompts = Prompts::Fixed(value(&flag)?),
            "--prompt-words" => {
                let v = value(&flag)?;
                let (min, max) = v.split_once(':').unwrap_or((&v, &v));
                let (min, max) = (num(&flag, min)?, num(&flag, max)?);
                if min > max || max == 0 {
                    return Err("--prompt-words wants MIN:MAX with 0 < MAX and MIN <= MAX".into());
                }
                o.prompts = Prompts::Words { min, max };
            }
            "--prompt-file" => {
                let path = value(&flag)?;
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("--prompt-file {path}: {e}"))?;
                let bodies: Vec<String> = text
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_string)
                    .collect();
                for (i, line) in bodies.iter().enumerate() {
                    serde_json::from_str::<serde_json::Value>(line)
                        .map_err(|e| format!("--prompt-file {path}: line {}: {e}", i + 1))?;
                }
                if bodies.is_empty() {
                    return Err(format!("--prompt-file {path} has no bodies"));
                }
                o.prompts = Prompts::Bodies(bodies);
            }
            "--api-key" => o.api_key = Some(value(&flag)?),
            "--timeout" => o.timeout = Duration::from_secs_f64(num(&flag, &value(&flag)?)?),
            "--json" => o.json = Some(value(&flag)?),
            "--svg" => o.svg = Some(value(&flag)?),
            "--raw" => o.raw = Some(value(&flag)?),
            "--instances" => o.instances = Some(num(&flag, &value(&flag)?)?),
            "--instance-index" => instance = Some(num(&flag, &value(&flag)?)?),
            "--disconnect" => o.disconnect = num(&flag, &value(&flag)?)?,
            "--sources" => o.sources = num(&flag, &value(&flag)?)?,
            "--workers" => o.workers = num(&flag, &value(&flag)?)?,
            "--processes" => o.processes = num(&flag, &value(&flag)?)?,
            "--stall-ms" => {
                let ms: f64 = num(&flag, &value(&flag)?)?;
                if !(0.0..=60_000.0).contains(&ms) {
                    return Err("--stall-ms: from 0 (no probe) to 60000".into());
                }
                o.stall_threshold = Duration::from_secs_f64(ms / 1e3);
            }
            other => return Err(format!("unknown flag {other} (see --help)")),
        }
    }
    o.arrival = match arrival.as_str() {
        "poisson" => Arrival::Poisson,
        "constant" => Arrival::Constant,
        "gamma" if burstiness > 0.0 => Arrival::Gamma(burstiness),
        "gamma" => return Err("--burstiness must be positive".into()),
        other => {
            return Err(format!(
                "--arrival: poisson, constant or gamma, not {other}"
            ))
        }
    };
    if o.rate.is_some() && o.concurrency.is_some() {
        return Err("--rate (open loop) and --concurrency (closed loop) exclude each other".into());
    }
    if o.rate.is_some_and(|r| r <= 0.0) || o.concurrency == Some(0) || o.workers == 0 {
        return Err("--rate, --concurrency and --workers must be positive".into());
    }
    if o.rate.is_none() && o.concurrency.is_none() {
        o.concurrency = Some(64);
    }
    if !(0.0..=1.0).contains(&o.disconnect) {
        return Err("--disconnect is a probability, from 0 to 1".into());
    }
    let instance = match (instance, env(INDEX_ENV)) {
        (Some(i), _) => Some(i),
        (None, Some(v)) => Some(num(INDEX_ENV, &v)?),
        (None, None) => None,
    };
    match (instance, o.instances) {
        (_, Some(0)) => return Err("--instances must be positive".into()),
        (Some(i), Some(n)) if i >= n => {
            return Err(format!("instance index {i} is not below --instances {n}"))
        }
        (None, Some(n)) if n > 1 => {
            return Err(format!(
                "--instances {n} needs --instance-index or ${INDEX_ENV}"
            ))
        }
        _ => {}
    }
    o.instance = instance.unwrap_or(0);
    o.base_seed = o.seed;
    o.seed = o.seed.wrapping_add(o.instance);
    if o.duration.is_none() && o.requests.is_none() {
        o.duration = Some(Duration::from_secs(10));
    }
    crate::processes::check(&o)?;
    Ok(Some(o))
}

fn num<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{flag}: not a valid number: {value}"))
}

/// Splits `http://host:port[/prefix]` into the socket address, the Host header, and a path prefix.
pub fn split_url(url: &str) -> Result<(std::net::SocketAddr, String, String), String> {
    use std::net::ToSocketAddrs;
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let (host, prefix) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
    let with_port = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: no address"))?;
    let prefix = prefix.trim_end_matches('/');
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("/{prefix}")
    };
    Ok((addr, host.to_string(), prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> Result<Options, String> {
        opts_env(args, None)
    }

    /// Parses with `JOB_COMPLETION_INDEX` set to `index` (or unset), whatever the real environment says.
    fn opts_env(args: &[&str], index: Option<&str>) -> Result<Options, String> {
        let env = |name: &str| {
            (name == INDEX_ENV)
                .then(|| index.map(String::from))
                .flatten()
        };
        parse_with_env(args.iter().map(|s| s.to_string()), env).map(|o| o.expect("not help"))
    }

    #[test]
    fn defaults_are_closed_loop_for_ten_seconds() {
        let o = opts(&[]).unwrap();
        assert_eq!(
            (o.concurrency, o.duration),
            (Some(64), Some(Duration::from_secs(10)))
        );
    }

    #[test]
    fn open_loop_flags() {
        let o = opts(&[
            "--rate",
            "50",
            "--arrival",
            "gamma",
            "--burstiness",
            "0.5",
            "--requests",
            "100",
        ])
        .unwrap();
        assert_eq!(
            (o.rate, o.arrival, o.requests, o.concurrency),
            (Some(50.0), Arrival::Gamma(0.5), Some(100), None)
        );
        assert!(opts(&["--rate", "5", "--concurrency", "3"]).is_err());
        assert!(opts(&["--arrival", "weird"]).is_err());
    }

    #[test]
    fn prompt_words_and_errors() {
        assert!(matches!(
            opts(&["--prompt-words", "3:9"]).unwrap().prompts,
            Prompts::Words { min: 3, max: 9 }
        ));
        assert!(opts(&["--prompt-words", "9:3"]).is_err());
        assert!(opts(&["--bogus"]).is_err());
        assert!(opts(&["--url"]).is_err());
    }

    #[test]
    fn instances_split_the_seed() {
        let o = opts(&["--seed", "10"]).unwrap();
        assert_eq!(
            (o.seed, o.base_seed, o.instance, o.instances),
            (10, 10, 0, None)
        );
        let o = opts(&["--seed", "10", "--instances", "4", "--instance-index", "3"]).unwrap();
        assert_eq!(
            (o.seed, o.base_seed, o.instance, o.instances),
            (13, 10, 3, Some(4))
        );
        // A Kubernetes Indexed Job sets the index; the flag still wins.
        let o = opts_env(&["--seed", "10", "--instances", "4"], Some("2")).unwrap();
        assert_eq!((o.seed, o.instance), (12, 2));
        let o = opts_env(&["--instance-index", "1", "--instances", "4"], Some("2")).unwrap();
        assert_eq!(o.instance, 1);
        assert_eq!(opts_env(&[], Some("5")).unwrap().seed, 5);
        assert!(opts(&["--instances", "4"]).is_err(), "which one?");
        assert!(opts(&["--instances", "1"]).is_ok());
        assert!(opts(&["--instances", "2", "--instance-index", "2"]).is_err());
        assert!(opts(&["--instances", "0"]).is_err());
        assert!(opts_env(&["--instances", "2"], Some("x")).is_err());
    }

    #[test]
    fn disconnect_and_raw_flags() {
        let o = opts(&["--disconnect", "0.05", "--raw", "r.jsonl"]).unwrap();
        assert_eq!((o.disconnect, o.raw.as_deref()), (0.05, Some("r.jsonl")));
        assert_eq!(opts(&[]).unwrap().disconnect, 0.0);
        assert!(opts(&["--disconnect", "1.5"]).is_err());
        assert!(opts(&["--disconnect", "-0.1"]).is_err());
    }

    #[test]
    fn url_parts() {
        let (addr, host, prefix) = split_url("http://127.0.0.1:8000").unwrap();
        assert_eq!(
            (addr.port(), host.as_str(), prefix.as_str()),
            (8000, "127.0.0.1:8000", "")
        );
        assert_eq!(split_url("http://127.0.0.1:9/api/").unwrap().2, "/api");
        assert!(split_url("https://x").is_err());
    }
}
