//! Server-sent events over chunked transfer encoding. Events queued together go out in one write (and one
//! chunk); [`SseWriter::flush`] sends them the moment the producer has nothing more ready.

use std::io;

use super::response::Output;

/// A queued chunk larger than this is written at once, so a long burst never builds up a huge buffer.
const FLUSH_AT: usize = 64 * 1024;
/// Chunk sizes are written as 8 zero-padded hex digits into a slot reserved before the events, so events can
/// be serialized straight into the output buffer without a second copy (leading zeros are valid, RFC 9112 7.1).
const SIZE_SLOT: &[u8] = b"00000000\r\n";
/// What a buffer given back by [`SseWriter::rest`] starts again with: a chat chunk or two, in one allocation.
const REST_CAPACITY: usize = 512;

/// Writes `data:` events to a response started by `Responder::start_sse`.
pub struct SseWriter<'a> {
    out: &'a mut Output,
    chunked: bool,
    /// Offset in the output buffer of the open chunk's size slot.
    open_chunk: Option<usize>,
}

impl<'a> SseWriter<'a> {
    pub(crate) fn new(out: &'a mut Output, chunked: bool) -> Self {
        SseWriter {
            out,
            chunked,
            open_chunk: None,
        }
    }

    /// Queues one event `data: <payload>\n\n`, the payload written by `write`. Fails once the peer is gone.
    pub fn event(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
        if self.out.broken {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if self.out.wbuf.capacity() == 0 {
            self.out.wbuf.reserve(REST_CAPACITY);
        }
        if self.chunked && self.open_chunk.is_none() {
            self.open_chunk = Some(self.out.wbuf.len());
            self.out.wbuf.extend_from_slice(SIZE_SLOT);
        }
        self.out.wbuf.extend_from_slice(b"data: ");
        write(&mut self.out.wbuf);
        self.out.wbuf.extend_from_slice(b"\n\n");
        // (Not while the pacer writes: it sends what is queued at the end of its turn.)
        if self.out.wbuf.len() >= FLUSH_AT && !self.out.nonblocking {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends every queued event now.
    pub fn flush(&mut self) -> io::Result<()> {
        self.close_chunk();
        self.out.flush()
    }

    /// Sends every queued event, then gives the write buffer back while the stream waits for its next event:
    /// 10,000 paced streams would otherwise hold a grown buffer each (measured: 1.3 KiB) while they sleep.
    pub fn rest(&mut self) -> io::Result<()> {
        self.flush()?;
        self.out.wbuf = Vec::new();
        Ok(())
    }

    /// Whether writes may wait (false: the pacer is writing, see [`crate::pacer`]). A `WouldBlock` from
    /// [`SseWriter::rest`] or [`SseWriter::flush`] then means the socket is full and the rest is queued.
    pub fn set_nonblocking(&mut self, nonblocking: bool) {
        self.out.nonblocking = nonblocking;
    }

    /// Ends the stream (the terminating zero chunk) and sends what is left.
    pub fn finish(mut self) -> io::Result<()> {
        self.out.nonblocking = false;
        self.close_chunk();
        if self.chunked {
            self.out.wbuf.extend_from_slice(b"0\r\n\r\n");
        }
        self.out.open_stream = false;
        self.out.flush()
    }

    /// Sends what is queued, then drops the connection mid-body, with no terminating chunk (failure
    /// injection: a stream cut by a crash or a proxy).
    pub fn cut(mut self) {
        self.out.nonblocking = false;
        let _ = self.flush();
        self.out.broken = true;
    }

    /// Sends what is queued, then sends nothing more until the client gives up (or `max` passes).
    pub fn stall(mut self, max: std::time::Duration) {
        self.out.nonblocking = false;
        self.close_chunk();
        self.out.wait_for_close(max);
    }

    fn close_chunk(&mut self) {
        let Some(start) = self.open_chunk.take() else {
            return;
        };
        let wbuf = &mut self.out.wbuf;
        let size = wbuf.len() - start - SIZE_SLOT.len();
        let digits = &mut wbuf[start..start + 8];
        for (i, digit) in digits.iter_mut().enumerate() {
            let nibble = (size >> (4 * (7 - i))) & 0xf;
            *digit = b"0123456789abcdef"[nibble];
        }
        wbuf.extend_from_slice(b"\r\n");
    }
}

impl Drop for SseWriter<'_> {
    fn drop(&mut self) {
        // The connection's next response writes from its own coroutine again, however this one ended.
        self.out.nonblocking = false;
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// Runs `produce` against a real loopback socket and returns the raw bytes the peer received.
    fn wire(chunked: bool, produce: impl FnOnce(&mut SseWriter<'_>)) -> Vec<u8> {
        let listener = may::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let mut out = Output::new(server);
        let mut sse = SseWriter::new(&mut out, chunked);
        produce(&mut sse);
        sse.finish().unwrap();
        drop(out);
        let mut bytes = Vec::new();
        client.read_to_end(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn events_ready_together_share_one_chunk() {
        let bytes = wire(true, |sse| {
            sse.event(|o| o.extend_from_slice(b"{\"a\":1}")).unwrap();
            sse.event(|o| o.extend_from_slice(b"[DONE]")).unwrap();
        });
        let body = "data: {\"a\":1}\n\ndata: [DONE]\n\n";
        let expected = format!("{:08x}\r\n{body}\r\n0\r\n\r\n", body.len());
        assert_eq!(String::from_utf8(bytes).unwrap(), expected);
    }

    #[test]
    fn rest_sends_and_gives_the_buffer_back() {
        let bytes = wire(true, |sse| {
            sse.event(|o| o.extend_from_slice(b"{\"a\":1}")).unwrap();
            sse.rest().unwrap();
            assert_eq!(sse.out.wbuf.capacity(), 0);
            sse.event(|o| o.extend_from_slice(b"{\"b\":2}")).unwrap();
            assert!(sse.out.wbuf.capacity() >= REST_CAPACITY);
        });
        let one = "data: {\"a\":1}\n\n";
        let two = "data: {\"b\":2}\n\n";
        let expected = format!(
            "{:08x}\r\n{one}\r\n{:08x}\r\n{two}\r\n0\r\n\r\n",
            one.len(),
            two.len()
        );
        assert_eq!(String::from_utf8(bytes).unwrap(), expected);
    }

    #[test]
    fn each_flush_closes_a_chunk() {
        let bytes = wire(true, |sse| {
            sse.event(|o| o.push(b'1')).unwrap();
            sse.flush().unwrap();
            sse.event(|o| o.push(b'2')).unwrap();
        });
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "00000009\r\ndata: 1\n\n\r\n00000009\r\ndata: 2\n\n\r\n0\r\n\r\n"
        );
    }

    #[test]
    fn unchunked_for_http10() {
        let bytes = wire(false, |sse| sse.event(|o| o.push(b'x')).unwrap());
        assert_eq!(bytes, b"data: x\n\n");
    }
}
