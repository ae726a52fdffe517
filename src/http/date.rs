//! The `Date` header, formatted at most once a second per connection. Each connection keeps its own cache,
//! so nothing is shared between threads and no lock or `unsafe` is needed.

use std::time::{SystemTime, UNIX_EPOCH};

/// IMF-fixdate is always 29 bytes: `Sun, 06 Nov 1994 08:49:37 GMT`.
const DATE_LEN: usize = 29;

/// A per-connection `Date` value, refreshed when the second changes.
pub struct DateCache {
    second: u64,
    text: [u8; DATE_LEN],
}

impl Default for DateCache {
    fn default() -> Self {
        DateCache {
            second: u64::MAX,
            text: [b' '; DATE_LEN],
        }
    }
}

impl DateCache {
    /// The current date in IMF-fixdate form.
    pub fn now(&mut self) -> &[u8] {
        let second = unix_second();
        if second != self.second {
            self.second = second;
            format_date(second, &mut self.text);
        }
        &self.text
    }
}

/// The wall clock's second from the kernel's coarse clock: a copy of the last tick's time, with no clock
/// source read (each response asks, and a second's resolution is all a `Date` or a `created` needs).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn unix_second() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes it.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } == 0 {
        return ts.tv_sec as u64;
    }
    precise_unix_second()
}

/// The wall clock's second.
#[cfg(not(target_os = "linux"))]
pub fn unix_second() -> u64 {
    precise_unix_second()
}

fn precise_unix_second() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Formats unix seconds as IMF-fixdate (RFC 9110 5.6.7).
fn format_date(secs: u64, out: &mut [u8; DATE_LEN]) {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    let two = |n: u64| [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    out[3..5].copy_from_slice(b", ");
    out[5..7].copy_from_slice(&two(day as u64));
    out[7] = b' ';
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    out[11] = b' ';
    let y = year as u64;
    out[12..16].copy_from_slice(&[
        b'0' + (y / 1000 % 10) as u8,
        b'0' + (y / 100 % 10) as u8,
        b'0' + (y / 10 % 10) as u8,
        b'0' + (y % 10) as u8,
    ]);
    out[16] = b' ';
    out[17..19].copy_from_slice(&two(rem / 3600));
    out[19] = b':';
    out[20..22].copy_from_slice(&two(rem / 60 % 60));
    out[22] = b':';
    out[23..25].copy_from_slice(&two(rem % 60));
    out[25..].copy_from_slice(b" GMT");
}

/// Howard Hinnant's days-to-civil algorithm: (year, month 1-12, day 1-31).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(secs: u64) -> String {
        let mut out = [0; DATE_LEN];
        format_date(secs, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn formats_known_dates() {
        assert_eq!(text(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(text(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(text(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(text(1_795_651_199), "Wed, 25 Nov 2026 23:59:59 GMT");
    }

    #[test]
    fn coarse_second_is_the_wall_clock_second() {
        let secs = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs()
        };
        let before = secs();
        let coarse = unix_second();
        let after = secs();
        // The coarse clock lags by at most a tick (a few ms), which may still be the previous second.
        assert!(
            before - 1 <= coarse && coarse <= after,
            "{before} {coarse} {after}"
        );
    }

    #[test]
    fn cache_gives_current_year() {
        let mut cache = DateCache::default();
        let now = String::from_utf8(cache.now().to_vec()).unwrap();
        assert!(now.ends_with(" GMT") && now.len() == DATE_LEN, "{now}");
    }
}
