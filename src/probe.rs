//! `standin probe [ADDR]`: a health check that needs nothing but the binary, for images without a shell or
//! curl (Docker's HEALTHCHECK on a scratch image). It asks `GET /health` on ADDR (default: `STANDIN_LISTEN`,
//! else 127.0.0.1:8000; an unspecified address such as 0.0.0.0 means loopback) and succeeds on a 200.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long the probe waits for each step: a healthy server answers in well under a millisecond.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Checks the server at `addr`; the error says what failed.
pub fn probe(addr: &str) -> Result<(), String> {
    let mut target: SocketAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not IP:PORT"))?;
    if target.ip().is_unspecified() {
        target.set_ip(match target {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let mut stream = TcpStream::connect_timeout(&target, PROBE_TIMEOUT)
        .map_err(|e| format!("cannot connect to {target}: {e}"))?;
    let io = |e: std::io::Error| format!("{target}: {e}");
    stream.set_read_timeout(Some(PROBE_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT)).map_err(io)?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
        .map_err(io)?;
    let mut head = [0u8; 64];
    let mut len = 0;
    while len < 12 {
        match stream.read(&mut head[len..]).map_err(io)? {
            0 => break,
            n => len += n,
        }
    }
    let line = String::from_utf8_lossy(&head[..len]);
    match line.split(' ').nth(1) {
        Some("200") => Ok(()),
        Some(status) => Err(format!("{target}/health answered {status}")),
        None => Err(format!("{target}/health sent no HTTP status")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_addresses_and_closed_ports_fail() {
        assert!(probe("nonsense").unwrap_err().contains("IP:PORT"));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(probe(&format!("0.0.0.0:{port}"))
            .unwrap_err()
            .contains("connect"));
    }
}
