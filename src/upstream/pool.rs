//! Keep-alive connections to one upstream address, bounded in number and age. The lock guards only a push
//! or pop of the idle list, never I/O, so a coroutine never yields while holding it. Detecting that the
//! upstream closed a pooled connection, and the one retry that hides it, live here; the HTTP exchange
//! itself is [`super::client`]'s.

use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::client::{Connection, Response, Timeouts};
use super::error::UpstreamError;
use super::request::Request;

/// Idle connections kept per upstream: enough for a load test's concurrency to reuse connections without a
/// handshake each, few enough that a quiet server does not hold many of the upstream's sockets.
pub const DEFAULT_MAX_IDLE: usize = 256;
/// Age past which an idle connection is closed rather than reused: under uvicorn's 5 s keep-alive (vLLM,
/// SGLang and most Python servers), so we usually close first instead of racing the upstream's close.
pub const DEFAULT_MAX_IDLE_TIME: Duration = Duration::from_secs(4);

/// How a pool connects and what it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Most idle connections kept; more are closed on checkin.
    pub max_idle: usize,
    /// Idle connections older than this are closed on checkout.
    pub max_idle_time: Duration,
    /// Deadlines for every connection the pool opens.
    pub timeouts: Timeouts,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_idle: DEFAULT_MAX_IDLE,
            max_idle_time: DEFAULT_MAX_IDLE_TIME,
            timeouts: Timeouts::default(),
        }
    }
}

/// Connections to one upstream address.
pub struct Pool {
    addr: SocketAddr,
    cfg: PoolConfig,
    /// Most recently used last: popped first, being the least likely to have been closed by the upstream.
    idle: Mutex<Vec<Connection>>,
}

impl Pool {
    /// An empty pool for `addr`.
    pub fn new(addr: SocketAddr, cfg: PoolConfig) -> Self {
        Pool {
            addr,
            cfg,
            idle: Mutex::new(Vec::with_capacity(cfg.max_idle)),
        }
    }

    /// The upstream address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Idle connections held now.
    pub fn idle_count(&self) -> usize {
        self.lock().len()
    }

    /// An idle connection still open and young enough, or a new one.
    pub fn checkout(&self) -> Result<Connection, UpstreamError> {
        loop {
            // Pop in its own statement: the guard is released before connecting or checking, which do I/O.
            let popped = self.lock().pop();
            let Some(conn) = popped else {
                return Connection::connect(self.addr, self.cfg.timeouts);
            };
            if conn.idle_for(Instant::now()) < self.cfg.max_idle_time && conn.is_open() {
                return Ok(conn);
            }
        }
    }

    /// Keeps a connection for later, unless the pool is full (then it is closed).
    pub fn checkin(&self, conn: Connection) {
        let mut idle = self.lock();
        if idle.len() < self.cfg.max_idle {
            idle.push(conn);
            return;
        }
        drop(idle);
        drop(conn);
    }

    /// Checks in the response's connection if it can be reused; closes it otherwise.
    pub fn release(&self, resp: Response) {
        if let Some(conn) = resp.into_connection() {
            self.checkin(conn);
        }
    }

    /// Sends `req` on a pooled or new connection and reads the response head. When a reused connection
    /// fails before any response byte (the upstream closed it while idle, racing our write), the request is
    /// sent once more on a fresh connection. A timeout is never retried: the upstream may be working on it.
    pub fn send(&self, req: &Request<'_>) -> Result<Response, UpstreamError> {
        let conn = self.checkout()?;
        match conn.try_exchange(req) {
            Ok(resp) => Ok(resp),
            Err(failure) if failure.stale => {
                Connection::connect(self.addr, self.cfg.timeouts)?.exchange(req)
            }
            Err(failure) => Err(failure.error),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // A panic elsewhere cannot leave a Vec of connections half-pushed: the list is still sound.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::upstream::test_server::{in_coroutine, read_request, serve};

    const GET: Request<'static> = Request {
        method: "GET",
        host: "up",
        path: "/v1/models",
        headers: &[],
        body: b"",
    };
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

    fn pool(addr: SocketAddr, max_idle: usize) -> Pool {
        let timeouts = Timeouts {
            connect: Duration::from_secs(2),
            first_byte: Duration::from_secs(5),
            idle: Duration::from_secs(5),
        };
        Pool::new(
            addr,
            PoolConfig {
                max_idle,
                max_idle_time: Duration::from_secs(30),
                timeouts,
            },
        )
    }

    /// One request through the pool; returns the body and whether the connection went back.
    fn roundtrip(pool: &Pool) -> Result<Vec<u8>, UpstreamError> {
        let mut resp = pool.send(&GET)?;
        let mut body = Vec::new();
        resp.read_to_end(&mut body, 1024)?;
        pool.release(resp);
        Ok(body)
    }

    /// Answers every request on a connection with OK until the client closes.
    fn keep_alive_server(_: usize, mut stream: std::net::TcpStream) {
        while read_request(&mut stream).is_some() {
            if stream.write_all(OK).is_err() {
                return;
            }
        }
    }

    #[test]
    fn keep_alive_connections_are_reused() {
        let (addr, accepted) = serve(keep_alive_server);
        let pool = pool(addr, 4);
        for _ in 0..3 {
            assert_eq!(roundtrip(&pool).unwrap(), b"ok");
            assert_eq!(pool.idle_count(), 1);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn idle_list_is_bounded() {
        let (addr, _) = serve(keep_alive_server);
        let pool = pool(addr, 2);
        let conns: Vec<_> = (0..3).map(|_| pool.checkout().unwrap()).collect();
        for conn in conns {
            pool.checkin(conn);
        }
        assert_eq!(pool.idle_count(), 2);
        // A pooled connection serves the next request and goes back: still two, not three.
        assert_eq!(roundtrip(&pool).unwrap(), b"ok");
        assert_eq!(pool.idle_count(), 2);
    }

    #[test]
    fn closed_idle_connection_is_replaced_at_checkout() {
        // Each connection serves one response, then the server closes it while the pool holds it.
        let (addr, accepted) = serve(|_, mut stream| {
            read_request(&mut stream).unwrap();
            stream.write_all(OK).unwrap();
        });
        let pool = pool(addr, 4);
        assert_eq!(roundtrip(&pool).unwrap(), b"ok");
        assert_eq!(pool.idle_count(), 1);
        let start = Instant::now();
        let conn = loop {
            // The FIN reaches us shortly after the response; until then the pooled connection looks open.
            let conn = pool.checkout().unwrap();
            if !conn.is_reused() || start.elapsed() > Duration::from_secs(2) {
                break conn;
            }
            pool.checkin(conn);
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(!conn.is_reused());
        let mut resp = conn.exchange(&GET).unwrap();
        resp.read_to_end(&mut Vec::new(), 1024).unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn stale_connection_is_retried_once_on_a_fresh_one() {
        // The first connection reads the second request and closes without a byte: the race where the
        // upstream's idle close crosses our write.
        let (addr, accepted) = serve(|n, mut stream| {
            read_request(&mut stream).unwrap();
            stream.write_all(OK).unwrap();
            if n == 0 {
                read_request(&mut stream).unwrap();
                return;
            }
            keep_alive_server(n, stream);
        });
        let pool = pool(addr, 4);
        assert_eq!(roundtrip(&pool).unwrap(), b"ok");
        assert_eq!(roundtrip(&pool).unwrap(), b"ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn fresh_connection_failure_is_not_retried() {
        let (addr, accepted) = serve(|_, mut stream| {
            read_request(&mut stream);
        });
        let pool = pool(addr, 4);
        assert_eq!(roundtrip(&pool), Err(UpstreamError::Closed));
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn partial_response_on_reused_connection_is_not_retried() {
        let (addr, accepted) = serve(|_, mut stream| {
            read_request(&mut stream).unwrap();
            stream.write_all(OK).unwrap();
            read_request(&mut stream).unwrap();
            stream.write_all(b"HTTP/1.1 200 OK\r\n").unwrap();
        });
        let pool = pool(addr, 4);
        assert_eq!(roundtrip(&pool).unwrap(), b"ok");
        assert!(matches!(roundtrip(&pool), Err(UpstreamError::Protocol(_))));
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn old_idle_connections_are_not_reused() {
        let (addr, accepted) = serve(keep_alive_server);
        let mut pool = pool(addr, 4);
        pool.cfg.max_idle_time = Duration::ZERO;
        assert_eq!(roundtrip(&pool).unwrap(), b"ok");
        assert_eq!(roundtrip(&pool).unwrap(), b"ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn works_inside_a_coroutine() {
        let (addr, accepted) = serve(|n, mut stream| {
            if n == 0 {
                return keep_alive_server(n, stream);
            }
            // The second connection never answers: the first-byte deadline must fire under may too.
            read_request(&mut stream);
            let _ = std::io::Read::read(&mut stream, &mut [0u8; 1]);
        });
        let (first, second, slow) = in_coroutine(move || {
            let pool = pool(addr, 4);
            let first = roundtrip(&pool);
            let second = roundtrip(&pool);
            let mut slow_cfg = pool.cfg;
            slow_cfg.timeouts.first_byte = Duration::from_millis(100);
            let slow = Pool::new(addr, slow_cfg).send(&GET).err();
            (first, second, slow)
        });
        assert_eq!(
            (first.unwrap(), second.unwrap()),
            (b"ok".to_vec(), b"ok".to_vec())
        );
        assert_eq!(slow, Some(UpstreamError::Timeout));
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }
}
