//! The embedding model: a deterministic unit vector for a text or a token list. Equal inputs give equal
//! vectors and different inputs (practically always) different ones, so clients can test caching, ordering
//! and similarity plumbing. It knows nothing of the wire format (float or base64 is the caller's business).
//!
//! A vector is a seeded splitmix64 stream of components in (−1, 1), normalized to L2 norm 1. The seed is a
//! hash of the input, so the first `d` draws do not depend on how many are drawn: the `d`-dimension vector
//! is the normalized prefix of any longer one, as with OpenAI's `dimensions` (a shortened embedding).

use crate::ids::mix;

/// splitmix64's increment (the golden ratio in 64 bits), the step between two draws of the stream.
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// Starting state of the hash of a text; it differs from [`TOKEN_DOMAIN`] so that the text `"a"` and the
/// token list `[97]` hash to unrelated seeds.
const TEXT_DOMAIN: u64 = 0x7465_7874_0000_0001;
/// Starting state of the hash of a token list (see [`TEXT_DOMAIN`]).
const TOKEN_DOMAIN: u64 = 0x746f_6b65_6e00_0002;

/// Appends the embedding of `text` (`dimensions` components) to `out`.
pub fn text(text: &str, dimensions: usize, out: &mut Vec<f32>) {
    vector(hash_bytes(TEXT_DOMAIN, text.as_bytes()), dimensions, out);
}

/// Appends the embedding of a token list (`dimensions` components) to `out`; derived from the token ids.
pub fn tokens(ids: &[u32], dimensions: usize, out: &mut Vec<f32>) {
    let mut h = TOKEN_DOMAIN;
    for &id in ids {
        h = mix(h ^ u64::from(id)).wrapping_add(GOLDEN_GAMMA);
    }
    vector(mix(h ^ ids.len() as u64), dimensions, out);
}

/// Hashes bytes eight at a time through splitmix64's bijective finalizer; the length is folded in last, so
/// inputs that differ only by trailing zero bytes still differ.
fn hash_bytes(domain: u64, bytes: &[u8]) -> u64 {
    let mut h = domain;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut le = [0u8; 8];
        le.copy_from_slice(word);
        h = mix(h ^ u64::from_le_bytes(le)).wrapping_add(GOLDEN_GAMMA);
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    h = mix(h ^ u64::from_le_bytes(tail)).wrapping_add(GOLDEN_GAMMA);
    mix(h ^ bytes.len() as u64)
}

/// Appends `dimensions` components drawn from the stream seeded by `seed`, scaled to unit length.
fn vector(seed: u64, dimensions: usize, out: &mut Vec<f32>) {
    let start = out.len();
    let mut state = seed;
    let mut sum = 0.0f64;
    for _ in 0..dimensions {
        state = state.wrapping_add(GOLDEN_GAMMA);
        // The top 24 bits, centred: (k + 0.5) / 2^23 − 1 lies in (−1, 1) and is never 0, so the norm is
        // never 0 either (not even for one dimension).
        let k = (mix(state) >> 40) as f64;
        let x = (k + 0.5) / f64::from(1u32 << 23) - 1.0;
        sum += x * x;
        out.push(x as f32);
    }
    // Normalizing in f64 from the f32 draws keeps the f32 result within an ulp or two of norm 1.
    let scale = 1.0 / sum.sqrt();
    for x in &mut out[start..] {
        *x = (f64::from(*x) * scale) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of_text(s: &str, d: usize) -> Vec<f32> {
        let mut out = Vec::new();
        text(s, d, &mut out);
        out
    }

    fn of_tokens(ids: &[u32], d: usize) -> Vec<f32> {
        let mut out = Vec::new();
        tokens(ids, d, &mut out);
        out
    }

    fn norm(v: &[f32]) -> f64 {
        v.iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>()
            .sqrt()
    }

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum()
    }

    #[test]
    fn vectors_have_unit_norm() {
        for d in [1, 2, 3, 7, 256, 1536, 3072, 4096] {
            for v in [
                of_text("hello", d),
                of_text("", d),
                of_tokens(&[1, 2, 3], d),
            ] {
                assert_eq!(v.len(), d);
                assert!((norm(&v) - 1.0).abs() < 1e-6, "d={d} norm={}", norm(&v));
                assert!(v.iter().all(|x| x.is_finite()));
            }
        }
    }

    #[test]
    fn equal_inputs_give_equal_vectors() {
        assert_eq!(
            of_text("The quick brown fox", 64),
            of_text("The quick brown fox", 64)
        );
        assert_eq!(
            of_tokens(&[1212, 318, 257], 64),
            of_tokens(&[1212, 318, 257], 64)
        );
    }

    #[test]
    fn different_inputs_give_different_vectors() {
        let texts = [
            "a",
            "b",
            "a\0",
            "ab",
            "ba",
            "abcdefgh",
            "abcdefgh\0",
            "abcdefgi",
            " a",
            "a ",
        ];
        let mut vectors: Vec<Vec<f32>> = texts.iter().map(|t| of_text(t, 32)).collect();
        vectors.push(of_tokens(&[97], 32));
        vectors.push(of_tokens(&[97, 0], 32));
        vectors.push(of_tokens(&[0, 97], 32));
        vectors.push(of_tokens(&[], 32));
        for (i, a) in vectors.iter().enumerate() {
            for b in &vectors[i + 1..] {
                assert_ne!(a, b);
                // Unrelated inputs are far from parallel.
                assert!(dot(a, b).abs() < 0.9, "{}", dot(a, b));
            }
        }
    }

    #[test]
    fn shorter_vectors_are_normalized_prefixes() {
        let long = of_text("matryoshka", 1536);
        let short = of_text("matryoshka", 256);
        let prefix_norm = norm(&long[..256]);
        for (s, l) in short.iter().zip(&long) {
            assert!((f64::from(*s) - f64::from(*l) / prefix_norm).abs() < 1e-6);
        }
    }

    #[test]
    fn appends_after_existing_components() {
        let mut out = vec![9.0];
        text("x", 4, &mut out);
        assert_eq!(out[0], 9.0);
        assert_eq!(&out[1..], of_text("x", 4).as_slice());
    }
}
