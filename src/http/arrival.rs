//! When a request reached the host. The kernel stamps every received packet (`SO_TIMESTAMPNS`), so a
//! request that waited in its socket while the worker wrote other streams' tokens still has its delays
//! counted from when it arrived, as a client measures them, not from when the worker got round to it.

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use may::net::TcpStream;

/// A stamp older than this is not believed (a wall clock stepped backwards, say); the read time is used.
const MAX_AGE: Duration = Duration::from_secs(1);

/// Asks the kernel to stamp what this socket receives. Without it, [`read`] gives no stamps.
#[cfg(not(target_os = "linux"))]
pub fn enable(_stream: &TcpStream) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Asks the kernel to stamp what this socket receives. Without it, [`read`] gives no stamps.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn enable(stream: &TcpStream) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor, and a pointer to a c_int with its exact length.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads like `Read::read`, waiting (as a coroutine, under the stream's read timeout) until bytes are
/// there, and also says when the bytes read arrived. The wait is a one-byte peek through may, so the
/// bytes themselves can then be taken by `recvmsg` together with the kernel's stamp.
pub fn read(stream: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, Option<Instant>)> {
    loop {
        if stream.peek(&mut [0u8])? == 0 {
            return Ok((0, None));
        }
        match recv_stamped(stream, buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            result => return result,
        }
    }
}

/// One non-blocking `recvmsg` with room for the timestamp message.
#[allow(unsafe_code)]
fn recv_stamped(stream: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, Option<Instant>)> {
    // Room for one `cmsghdr` carrying a `timespec`, aligned as the kernel writes it.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 8]>() as _;
    // SAFETY: `msg` points at `iov` (over `buf`) and `control`, both alive and sized as declared.
    let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((n as usize, stamp(&msg)))
}

/// The `SCM_TIMESTAMPNS` control message of a completed `recvmsg`, as an `Instant`.
#[allow(unsafe_code)]
fn stamp(msg: &libc::msghdr) -> Option<Instant> {
    // SAFETY: `msg` was filled by recvmsg; the CMSG macros walk only within its control buffer.
    let wall = unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        let mut found = None;
        while !cmsg.is_null() {
            let header = &*cmsg;
            #[cfg(target_os = "linux")]
            if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = libc::CMSG_DATA(cmsg)
                    .cast::<libc::timespec>()
                    .read_unaligned();
                found = Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
                break;
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
        found?
    };
    to_instant(wall, SystemTime::now(), Instant::now())
}

/// Turns a wall-clock arrival time into the monotonic clock, through one reading of both clocks.
fn to_instant(arrived: Duration, wall_now: SystemTime, mono_now: Instant) -> Option<Instant> {
    let now = wall_now.duration_since(UNIX_EPOCH).ok()?;
    let age = now.saturating_sub(arrived);
    (age <= MAX_AGE).then(|| mono_now - age)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_stamp_becomes_how_long_ago_on_the_monotonic_clock() {
        let wall = UNIX_EPOCH + Duration::from_secs(1_000);
        let mono = Instant::now();
        let arrived = Duration::from_millis(999_997);
        assert_eq!(
            to_instant(arrived, wall, mono),
            Some(mono - Duration::from_millis(3))
        );
        // A stamp from the future (the clock stepped back meanwhile) counts as now.
        assert_eq!(
            to_instant(Duration::from_secs(1_001), wall, mono),
            Some(mono)
        );
        // Too old to be this request's.
        assert_eq!(to_instant(Duration::from_secs(990), wall, mono), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_what_was_sent_with_the_time_it_arrived() {
        let listener = may::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        let (server, _) = listener.accept().unwrap();
        enable(&server).unwrap();
        let mut buf = [0u8; 64];
        // The kernel turns stamping on for the whole stack a moment after the first socket asks (deferred
        // work), so the first packets may come unstamped; a few rounds settle it.
        for _ in 0..50 {
            let before = Instant::now();
            client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
            std::thread::sleep(Duration::from_millis(30));
            let (n, arrived) = read(&server, &mut buf).unwrap();
            let after = Instant::now();
            assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n");
            let Some(arrived) = arrived else { continue };
            // Stamped when the bytes came in, well before they were read 30 ms later.
            assert!(
                arrived >= before - Duration::from_millis(1),
                "{arrived:?} {before:?}"
            );
            assert!(
                after - arrived >= Duration::from_millis(25),
                "{:?}",
                after - arrived
            );
            drop(client);
            assert_eq!(read(&server, &mut buf).unwrap().0, 0);
            return;
        }
        panic!("the kernel never stamped a read");
    }
}
