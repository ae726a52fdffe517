//! A connection's unread bytes, in a buffer borrowed from its thread only while there are any.
//!
//! With hundreds of connections each owning a buffer, every answer lands in memory long out of cache: the
//! kernel's copy and the reading after it both miss. Here a connection with nothing left over holds no
//! buffer; it takes one from its thread's pool for the read and gives it back once every byte is used, so
//! the next read on that thread, whichever connection's, lands in the buffer the last one just left warm.
//! Leftovers (half an event, half a head) keep their buffer until used. Buffers move in and out of the
//! pool by value and nothing in the pool is borrowed across a yield, so a coroutine that moves to another
//! worker thread at most moves a buffer between pools.

use std::cell::RefCell;
use std::io;
use std::os::fd::RawFd;

/// Size of a pooled buffer, and the most a read asks for.
pub const READ_SIZE: usize = 16 * 1024;

/// Buffers a thread keeps for reuse; more are freed. Only connections between a read and its last byte used
/// hold one, so a few suffice.
const POOL_MAX: usize = 64;

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Bytes read and not yet used, at `lo..hi` of `buf`: reads land in place, and using bytes moves nothing.
/// `buf` is empty (no allocation) while nothing is left over.
pub struct ReadBuf {
    buf: Vec<u8>,
    lo: usize,
    hi: usize,
}

impl ReadBuf {
    pub const fn new() -> Self {
        ReadBuf {
            buf: Vec::new(),
            lo: 0,
            hi: 0,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.lo..self.hi]
    }

    pub fn is_empty(&self) -> bool {
        self.lo == self.hi
    }

    /// Drops every unused byte and gives the buffer back.
    pub fn clear(&mut self) {
        (self.lo, self.hi) = (0, 0);
        let buf = std::mem::take(&mut self.buf);
        // A buffer grown for a long line goes back to the allocator, so the pool's stay small.
        if buf.len() == READ_SIZE {
            POOL.with(|pool| {
                let mut pool = pool.borrow_mut();
                if pool.len() < POOL_MAX {
                    pool.push(buf);
                }
            });
        }
    }

    pub fn consume(&mut self, n: usize) {
        self.lo += n;
        if self.lo == self.hi {
            self.clear();
        }
    }

    /// Whether a buffer is held (bytes are left over, or a read is about to land).
    #[cfg(test)]
    pub fn holds_buffer(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Room to read into: at least a quarter of READ_SIZE, taking a buffer from the pool if none is held,
    /// moving the unused bytes to the front or growing when the end is near (a head or chunk line larger
    /// than the buffer; both are bounded by the parsers).
    pub fn spare(&mut self) -> &mut [u8] {
        if self.buf.is_empty() {
            self.buf = POOL
                .with(|pool| pool.borrow_mut().pop())
                .unwrap_or_else(|| vec![0; READ_SIZE]);
        }
        if self.buf.len() - self.hi < READ_SIZE / 4 {
            self.buf.copy_within(self.lo..self.hi, 0);
            (self.lo, self.hi) = (0, self.hi - self.lo);
            if self.buf.len() - self.hi < READ_SIZE / 4 {
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
        &mut self.buf[self.hi..]
    }

    pub fn filled(&mut self, n: usize) {
        self.hi += n;
    }

    /// One `recv` on the non-blocking socket `fd` into [`spare`](Self::spare), without waiting: `Ok(0)` is
    /// the end of the stream, `WouldBlock` means nothing has come (and no buffer is kept for it).
    #[allow(unsafe_code)]
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let spare = self.spare();
        // SAFETY: `spare` is writable memory of `spare.len()` bytes, borrowed for the call only.
        let n = unsafe { libc::recv(fd, spare.as_mut_ptr().cast(), spare.len(), 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if self.is_empty() {
                self.clear();
            }
            return Err(err);
        }
        self.filled(n as usize);
        if n == 0 && self.is_empty() {
            self.clear();
        }
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(buf: &mut ReadBuf, bytes: &[u8]) {
        buf.spare()[..bytes.len()].copy_from_slice(bytes);
        buf.filled(bytes.len());
    }

    #[test]
    fn keeps_unused_bytes_across_compaction_and_growth() {
        let mut buf = ReadBuf::new();
        fill(&mut buf, b"HTTP/1.1 200 OK\r\n");
        buf.consume(9);
        assert_eq!(buf.bytes(), b"200 OK\r\n");
        // Fill to near the end: the next spare() moves the unused bytes to the front.
        let big = vec![b'x'; READ_SIZE - 20];
        fill(&mut buf, &big);
        assert!(buf.spare().len() >= READ_SIZE / 4);
        assert!(buf.bytes().starts_with(b"200 OK\r\nxxx"));
        assert_eq!(buf.bytes().len(), 8 + READ_SIZE - 20);
        // Nothing used: it grows instead, keeping every byte.
        let more = vec![b'y'; buf.spare().len()];
        let before = buf.bytes().len();
        fill(&mut buf, &more);
        assert!(buf.spare().len() >= READ_SIZE / 4);
        assert_eq!(buf.bytes().len(), before + more.len());
        assert_eq!(&buf.bytes()[before - 1..before + 1], b"xy");
        assert!(buf.bytes().starts_with(b"200 OK\r\nxxx"));
        buf.consume(buf.bytes().len());
        assert!(buf.is_empty());
        assert!(!buf.holds_buffer());
        // The grown buffer was freed, not pooled: the next is the usual size.
        assert_eq!(buf.spare().len(), READ_SIZE);
    }

    /// A buffer emptied by use goes back to the thread's pool, and the next read on the thread, by any
    /// connection, lands in it; one with bytes left over keeps it.
    #[test]
    fn emptied_buffers_are_reused_by_the_next_read() {
        std::thread::spawn(|| {
            let (mut a, mut b) = (ReadBuf::new(), ReadBuf::new());
            fill(&mut a, b"data: 1\n\n");
            let first = a.bytes().as_ptr();
            a.consume(9);
            assert!(!a.holds_buffer());
            fill(&mut b, b"data: 2\n\ndata: 3");
            assert_eq!(b.bytes().as_ptr(), first, "b did not get a's buffer back");
            b.consume(9);
            assert!(b.holds_buffer(), "a partial event lost its buffer");
            fill(&mut a, b"data: 4\n\n");
            assert_ne!(a.bytes().as_ptr(), b.bytes().as_ptr());
            fill(&mut b, b"\n\n");
            assert_eq!(b.bytes(), b"data: 3\n\n");
        })
        .join()
        .unwrap();
    }

    /// The pool keeps at most POOL_MAX buffers; a burst of connections finishing at once frees the rest.
    #[test]
    fn the_pool_is_bounded() {
        std::thread::spawn(|| {
            let mut bufs: Vec<ReadBuf> = (0..POOL_MAX + 10).map(|_| ReadBuf::new()).collect();
            for buf in &mut bufs {
                fill(buf, b"x");
            }
            for buf in &mut bufs {
                buf.clear();
            }
            assert_eq!(POOL.with(|p| p.borrow().len()), POOL_MAX);
        })
        .join()
        .unwrap();
    }

    /// `recv` reads what a socket has, reports `WouldBlock` (holding no buffer) when it has nothing, and 0
    /// at its end.
    #[test]
    fn recv_reads_without_waiting() {
        use std::io::Write as _;
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.set_nonblocking(true).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let mut buf = ReadBuf::new();
        let err = buf.recv(client.as_raw_fd()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(!buf.holds_buffer());
        server.write_all(b"hello").unwrap();
        let mut got = 0;
        while got < 5 {
            match buf.recv(client.as_raw_fd()) {
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(buf.bytes(), b"hello");
        buf.consume(5);
        drop(server);
        loop {
            match buf.recv(client.as_raw_fd()) {
                Ok(n) => {
                    assert_eq!(n, 0);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert!(!buf.holds_buffer());
    }
}
