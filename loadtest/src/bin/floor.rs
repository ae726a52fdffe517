//! `standin-floor`: the floor we measure standin's HTTP stack against. A `may_minihttp` server on the same
//! runtime (`may`) that answers `POST /v1/chat/completions` with a fixed `chat.completion` body of the same
//! shape and size as standin's echo reply to `{"messages":[{"role":"user","content":"Hello"}]}`, and
//! `GET /health` with `{"status":"ok"}`. It parses no JSON, validates nothing, generates nothing: whatever
//! standin spends beyond this server's cost per request is the price of its own HTTP layer and OpenAI logic.
//!
//! What it leaves out, on purpose: chunked request bodies (may_minihttp reads `Content-Length` only), limits,
//! timeouts, streaming, access logs. Point only well-formed load at it, such as `standin-load`'s.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use may_minihttp::{HttpServer, HttpService, Request, Response};

#[path = "common/flags.rs"]
mod flags;

/// Same default port family as standin (8000), one up, so both can run side by side.
const DEFAULT_LISTEN: &str = "127.0.0.1:8001";

/// Upper bound for `--workers`, the same as standin's.
const MAX_WORKERS: usize = 1024;

/// The reply standin's echo model gives to "Hello": 13 completion tokens (12 of prefix, 1 echoed).
const ECHO_HELLO: &str = "As a mock AI Assistant, I can only echo your last message: Hello";

/// `/health`'s body, as standin sends it.
const HEALTH_BODY: &str = r#"{"status":"ok"}"#;

/// The 404 body for any other route (standin's wording, without the method and path).
const NOT_FOUND_BODY: &str = r#"{"error":{"message":"Invalid URL","type":"invalid_request_error","param":null,"code":"unknown_url"}}"#;

/// standin sends an `x-request-id` of this length on every reply; the floor sends a constant one so the
/// heads on the wire differ only by `Server: M` versus `Server: standin`.
const REQUEST_ID_HEADER: &str = "x-request-id: req_0000000000000000";

const HELP: &str = "\
standin-floor: a may_minihttp server answering POST /v1/chat/completions with a fixed chat.completion body
(the same shape and size as standin's echo reply to \"Hello\") and GET /health; the floor for standin's HTTP stack.

usage: standin-floor [--listen ADDR] [--workers N]

  --listen ADDR   address to listen on; port 0 picks a free one (default 127.0.0.1:8001)
  --workers N     may worker threads (default: cores)
  --help          this text
";

/// What the command line asked for.
#[derive(Debug, PartialEq)]
struct Options {
    /// Address to bind.
    listen: SocketAddr,
    /// may worker threads.
    workers: usize,
}

/// Reads `--listen` and `--workers` (as `--flag value` or `--flag=value`); `Ok(None)` means `--help`.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut listen = DEFAULT_LISTEN.to_string();
    let mut workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let Some(pairs) = flags::pairs(args, &["--listen", "--workers"])? else {
        return Ok(None);
    };
    for (flag, value) in pairs {
        if flag == "--listen" {
            listen = value;
        } else {
            workers = match value.parse() {
                Ok(n) if (1..=MAX_WORKERS).contains(&n) => n,
                _ => return Err(format!("`--workers` must be between 1 and {MAX_WORKERS}")),
            };
        }
    }
    let listen = listen
        .parse()
        .map_err(|_| format!("`--listen` must be IP:PORT, got `{listen}`"))?;
    Ok(Some(Options { listen, workers }))
}

/// The `chat.completion` standin returns for the README's "Hello" request, byte for byte in shape and size
/// (`id` is `chatcmpl-` and 16 hex digits, `created` is the start time).
fn completion_body(id: u64, created: u64) -> String {
    format!(
        concat!(
            r#"{{"id":"chatcmpl-{id:016x}","object":"chat.completion","created":{created},"#,
            r#""model":"mock-gpt-model","system_fingerprint":"fp_standin","choices":[{{"index":0,"#,
            r#""message":{{"role":"assistant","content":"{content}","refusal":null}},"logprobs":null,"#,
            r#""finish_reason":"stop"}}],"usage":{{"prompt_tokens":1,"completion_tokens":13,"total_tokens":14}}}}"#
        ),
        id = id,
        created = created,
        content = ECHO_HELLO,
    )
}

/// The per-connection service: three fixed bodies and a bare-bones router.
#[derive(Clone)]
struct Floor {
    /// The chat completion, built once at start.
    completion: &'static str,
}

impl HttpService for Floor {
    fn call(&mut self, req: Request, resp: &mut Response) -> io::Result<()> {
        let path = req.path();
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        let body = match (req.method(), path) {
            ("POST", "/v1/chat/completions") => self.completion,
            ("GET", "/health") => HEALTH_BODY,
            _ => {
                resp.status_code(404, "Not Found");
                NOT_FOUND_BODY
            }
        };
        // Dropping the reader consumes the request body, which may_minihttp otherwise leaves in its buffer
        // to be parsed as the next request head.
        drop(req.body());
        resp.header("Content-Type: application/json")
            .header(REQUEST_ID_HEADER)
            .body(body);
        Ok(())
    }
}

/// Starts the server and prints the listening line; returns only if the server cannot start.
fn serve(opts: &Options) -> io::Result<()> {
    may::config().set_workers(opts.workers);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    // Leaked once: may_minihttp takes `&'static str` bodies, which it copies without any per-request work.
    let completion: &'static str = Box::leak(
        completion_body(
            (u64::from(now.subsec_nanos()) << 20) ^ now.as_secs(),
            now.as_secs(),
        )
        .into_boxed_str(),
    );
    // may_minihttp binds by itself and does not report the port. For port 0, reserve one with a listener of
    // our own (may sets SO_REUSEPORT, so the server can bind beside it), then close ours before printing the
    // address: no client knows the port before that line, so no connection can land on the closed listener.
    let reserve = may::net::TcpListener::bind(opts.listen)?;
    let addr = reserve.local_addr()?;
    let server = HttpServer(Floor { completion }).start(addr)?;
    drop(reserve);
    let mut stdout = io::stdout();
    writeln!(stdout, "standin-floor listening on http://{addr}")?;
    stdout.flush()?;
    let _ = server.join();
    Ok(())
}

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(Some(opts)) => opts,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("standin-floor: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = serve(&opts) {
        eprintln!("standin-floor: cannot serve on {}: {e}", opts.listen);
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Option<Options>, String> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn listen_flag() {
        let opts = args(&["--listen", "127.0.0.1:0"]).unwrap().unwrap();
        assert_eq!(opts.listen, "127.0.0.1:0".parse().unwrap());
        let opts = args(&["--listen=0.0.0.0:9"]).unwrap().unwrap();
        assert_eq!(opts.listen, "0.0.0.0:9".parse().unwrap());
        assert_eq!(
            args(&[]).unwrap().unwrap().listen,
            DEFAULT_LISTEN.parse().unwrap()
        );
        assert!(args(&["--listen", "localhost"])
            .unwrap_err()
            .contains("--listen"));
        assert!(args(&["--listen"]).unwrap_err().contains("needs a value"));
    }

    #[test]
    fn workers_flag() {
        assert_eq!(args(&["--workers", "3"]).unwrap().unwrap().workers, 3);
        assert!(args(&["--workers", "0"]).unwrap_err().contains("--workers"));
        assert!(args(&["--workers=x"]).unwrap_err().contains("--workers"));
    }

    #[test]
    fn help_and_unknown_flags() {
        assert_eq!(args(&["--help"]), Ok(None));
        assert!(args(&["--port", "1"]).unwrap_err().contains("--port"));
    }

    #[test]
    fn completion_matches_standin_shape_and_size() {
        // standin's reply to the README request, with its id and created.
        let standin = r#"{"id":"chatcmpl-f2bef8a1a1f182cd","object":"chat.completion","created":1795625429,"model":"mock-gpt-model","system_fingerprint":"fp_standin","choices":[{"index":0,"message":{"role":"assistant","content":"As a mock AI Assistant, I can only echo your last message: Hello","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":13,"total_tokens":14}}"#;
        assert_eq!(
            completion_body(0xf2be_f8a1_a1f1_82cd, 1_795_625_429),
            standin
        );
        assert_eq!(completion_body(1, 1_795_625_429).len(), standin.len());
    }
}
