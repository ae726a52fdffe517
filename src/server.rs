//! Binding, the accept loop, and the one place coroutines are spawned.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use may::coroutine::JoinHandle;
use may::net::TcpListener;

use crate::http::lifecycle::LIFECYCLE;
use crate::http::{conn, Handler, Limits};
use crate::metrics::METRICS;

/// Applies runtime settings; must run before the first coroutine is spawned. `stack_bytes` is in bytes;
/// may counts stacks in machine words. The coroutine pool starts with one coroutine: may prefills it to its
/// capacity when the scheduler starts, each coroutine touching 8 KiB of its stack (512 KiB resident for 64
/// before any client arrives), and it reads 0 as its default of 1,000. [`keep_finished_coroutines`] sets the
/// real capacity once the scheduler runs.
pub fn configure_runtime(workers: usize, stack_bytes: usize) {
    let words = stack_bytes / std::mem::size_of::<usize>();
    may::config()
        .set_workers(workers)
        .set_stack_size(words)
        .set_pool_capacity(1);
}

/// How many finished coroutines (stacks included) may keeps for reuse, so a new connection skips an mmap.
/// Call after the first spawn: may reads the capacity when it creates the pool, to prefill it, and again on
/// every return to the pool, so setting it later fills the pool only as connections finish.
pub fn keep_finished_coroutines(capacity: usize) {
    may::config().set_pool_capacity(capacity);
}

/// Listen backlog: the kernel caps it at `net.core.somaxconn` (4096 here). may's own bind uses 1,024, which
/// a burst of 10,000 connecting clients overflows into 1 s SYN retries.
const BACKLOG: i32 = 65_535;

/// Binds the listening socket. Unlike may's `TcpListener::bind` it sets SO_REUSEPORT only when asked
/// (`--reuse-port`), so by default a second server on the same port fails with "address in use" instead of
/// silently sharing it.
#[allow(unsafe_code)]
pub fn bind(addr: &str, reuse_port: bool) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    use std::os::fd::{FromRawFd, IntoRawFd};
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad address"))?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // SO_REUSEADDR only lets a restarted server bind while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    if reuse_port {
        // Each process then has its own accept queue: one per descriptor table and per core set.
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    let fd = socket.into_raw_fd();
    // SAFETY: `fd` is a listening socket this function created and owns; ownership moves into the
    // listener, which registers it with may's event loop.
    Ok(unsafe { TcpListener::from_raw_fd(fd) })
}

/// Accepts connections, one coroutine each, until the server drains (then the listener closes). Past
/// `max_connections` a new connection gets a 503 and is closed. Returns the accept loop's handle.
pub fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    limits: Limits,
) -> io::Result<JoinHandle<()>> {
    let limits = Arc::new(limits);
    spawn("accept", move || {
        for stream in listener.incoming() {
            if LIFECYCLE.is_draining() {
                // Woken by `stop_listening`'s failed accept (or a late client): stop.
                break;
            }
            match stream {
                Ok(stream)
                    if limits.max_connections > 0
                        && METRICS.connections_open() >= limits.max_connections =>
                {
                    let handler = Arc::clone(&handler);
                    let _ = spawn("refuse", move || conn::refuse(stream, handler.as_ref()));
                }
                Ok(stream) => {
                    let handler = Arc::clone(&handler);
                    let limits = Arc::clone(&limits);
                    // A failed spawn (out of memory for stacks) drops this connection, not the server.
                    let _ = spawn("conn", move || {
                        let _open = METRICS.open_connection();
                        conn::serve(stream, handler.as_ref(), &limits)
                    });
                }
                // EMFILE and friends: back off briefly instead of spinning on a full descriptor table.
                // (EINVAL after `stop_listening`, until the drain is set.)
                Err(_) => may::coroutine::sleep(std::time::Duration::from_millis(10)),
            }
        }
    })
}

/// Stops listening on `listener` (a descriptor of the listener passed to [`serve`]) and wakes the accept
/// loop: `shutdown` takes the socket off the port at once, so with `--reuse-port` new connections go to the
/// other processes, and the loop's pending accept fails. Call before `start_draining`: the loop keeps the
/// listener (and so this descriptor) open until it sees the drain. A throwaway connection to our own address
/// would not do: on a shared port it may land on another process.
#[allow(unsafe_code)]
pub fn stop_listening(listener: std::os::fd::RawFd) {
    // SAFETY: `listener` is the accept loop's open listening socket (see above); shutdown only changes its
    // state.
    unsafe {
        libc::shutdown(listener, libc::SHUT_RD);
    }
}

/// Spawns a named coroutine with the configured stack size.
#[allow(unsafe_code)]
pub(crate) fn spawn<F: FnOnce() + Send + 'static>(name: &str, f: F) -> io::Result<JoinHandle<()>> {
    let builder = may::coroutine::Builder::new().name(name.to_string());
    // SAFETY: may marks spawning unsafe because a coroutine must not hold thread-local references across a
    // yield nor block its worker thread. Connection coroutines use no thread-locals and do all I/O and
    // waiting through may's own net, sync and sleep, never blocking std calls.
    unsafe { builder.spawn(f) }
}
