//! Unique, unguessable-enough identifiers for requests and completions without a random-number dependency:
//! a per-process seed plus a counter, mixed by a bijection (splitmix64), so two ids never collide in a process
//! and ids from different processes differ.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static COUNTER: AtomicU64 = AtomicU64::new(0);
static SEED: OnceLock<u64> = OnceLock::new();

fn seed() -> u64 {
    *SEED.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let stack_addr = &nanos as *const u64 as u64;
        mix(nanos ^ (u64::from(std::process::id()) << 32) ^ stack_addr)
    })
}

/// splitmix64's finalizer: a bijection on u64, so distinct counters give distinct outputs.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A fresh 64-bit id, never repeated within this process.
pub fn next() -> u64 {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    mix(n.wrapping_add(seed()))
}

/// `prefix` followed by 16 lowercase hex digits, written into `out` without allocating.
pub fn write_hex_id<'a>(prefix: &str, id: u64, out: &'a mut [u8; 32]) -> &'a str {
    let n = prefix.len().min(16);
    out[..n].copy_from_slice(&prefix.as_bytes()[..n]);
    for i in 0..16 {
        out[n + i] = b"0123456789abcdef"[((id >> (4 * (15 - i))) & 0xf) as usize];
    }
    // Only ASCII was written.
    std::str::from_utf8(&out[..n + 16]).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_formatted() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(next()));
        }
        let mut buf = [0; 32];
        assert_eq!(write_hex_id("req_", 0xab, &mut buf), "req_00000000000000ab");
    }
}
