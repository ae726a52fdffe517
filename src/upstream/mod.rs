//! Building blocks for the `upstream` model kind, which proxies to an OpenAI-compatible server (vLLM, TGI,
//! Ollama, llama.cpp, another OpenAI-compatible gateway): an HTTP/1.1 client on `may::net`, a keep-alive
//! pool per upstream address, an incremental SSE parser, repairs that make upstream output follow the
//! OpenAI spec, and per-upstream health. [`relay`] wires them into a model.
//!
//! Data flows: [`Pool::send`] → [`Response::read_some`] → [`SseParser`] → [`StreamFixer`] → the client's
//! SSE writer; non-streaming bodies go through [`normalize::fix_completion`], error bodies through
//! [`normalize::error_envelope`].
//!
//! - [`client`]: connect, send, read the head, read the body piece by piece; [`request`] encodes the
//!   request, [`framing`] parses the head and decodes the body, [`error`] says what failed.
//! - [`pool`]: idle connections per address, the stale-connection retry.
//! - [`sse`]: bytes to event payloads. [`normalize`]: payloads and bodies to the OpenAI spec.
//! - [`health`]: down for a cool-down after a failure.
//! - [`spec`]: targets as the configuration declares them.

pub mod client;
pub mod error;
pub mod framing;
pub mod health;
pub mod normalize;
pub mod pool;
pub mod relay;
pub mod request;
pub mod spec;
pub mod sse;
#[cfg(test)]
mod test_server;

pub use client::{Connection, Response, Timeouts};
pub use error::UpstreamError;
pub use health::Health;
pub use normalize::{error_envelope, fix_completion, Endpoint, StreamFixer};
pub use pool::{Pool, PoolConfig};
pub use request::Request;
pub use sse::SseParser;

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use super::*;
    use serde_json::{json, Value};

    /// A vLLM-like stream with the deviations `normalize` repairs, sent in small pieces with no `[DONE]`,
    /// relayed the way the upstream model will: pool, body pieces, SSE parser, stream fixer.
    #[test]
    fn relay_repairs_a_deviant_stream() {
        const BODY: &str = concat!(
            "data: {\"id\":\"u\",\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\r\n\r\n",
            ": ping\n\n",
            "data: {\"id\":\"u\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi \"}}]}\n\n",
            "data: {\"id\":\"u\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"there\"},\"finish_reason\":\"\"}]}\n\n",
        );
        let (addr, _) = test_server::serve(|_, mut stream| {
            test_server::read_request(&mut stream).unwrap();
            stream.set_nodelay(true).unwrap();
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
            stream.write_all(head.as_bytes()).unwrap();
            for piece in BODY.as_bytes().chunks(37) {
                write!(stream, "{:x}\r\n", piece.len()).unwrap();
                stream.write_all(piece).unwrap();
                stream.write_all(b"\r\n").unwrap();
                std::thread::sleep(Duration::from_micros(300));
            }
            stream.write_all(b"0\r\n\r\n").unwrap();
            test_server::read_request(&mut stream);
        });
        let pool = Pool::new(addr, PoolConfig::default());
        let req = Request {
            method: "POST",
            host: "upstream",
            path: "/v1/chat/completions",
            headers: &[("content-type", "application/json")],
            body: br#"{"stream":true}"#,
        };
        let mut resp = pool.send(&req).unwrap();
        let mut parser = SseParser::new(sse::DEFAULT_MAX_EVENT_BYTES);
        let mut fixer = StreamFixer::new(Endpoint::Chat, true, 0);
        let (mut bytes, mut out) = (Vec::new(), Vec::new());
        while resp.read_some(&mut bytes).unwrap() > 0 {
            parser.feed(&bytes);
            bytes.clear();
            while let Some(data) = parser.next_event().unwrap() {
                fixer.push(data, &mut out);
            }
        }
        if let Some(data) = parser.finish().unwrap() {
            fixer.push(data, &mut out);
        }
        fixer.finish(&mut out);
        pool.release(resp);
        assert_eq!(pool.idle_count(), 1);
        let got: Vec<Value> = out
            .iter()
            .map(|p| {
                serde_json::from_slice(p).unwrap_or_else(|_| json!(String::from_utf8_lossy(p)))
            })
            .collect();
        assert_eq!(
            got,
            [
                json!({"id":"u","model":"m","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi "},"finish_reason":null}]}),
                json!({"id":"u","model":"m","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"there"},"finish_reason":null}]}),
                json!({"id":"u","model":"m","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}),
                json!({"id":"u","model":"m","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}),
                json!("[DONE]"),
            ]
        );
    }
}
