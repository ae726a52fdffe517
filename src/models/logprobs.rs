//! Deterministic log probabilities for generated tokens, so clients can exercise `logprobs` plumbing: the
//! chosen token is always the most likely one, alternatives come from a small fixed vocabulary, and the
//! probabilities of a position's top list sum to at most 1. Same seed, position and token → same numbers.

use super::math;
use super::schema::{hash, Rng};

/// Most alternatives the API lets a client ask for (`top_logprobs`).
pub const MAX_TOP: usize = 20;

/// Candidate alternatives: common English tokens. More than [`MAX_TOP`], so that after skipping the chosen
/// token there are always enough distinct ones.
const VOCABULARY: [&str; 24] = [
    " the", " a", " to", " and", " of", " in", " is", " it", " you", " that", " for", " on",
    " with", " as", " I", " this", " be", " are", " was", " not", " but", " or", ",", ".",
];

/// Rounding of logprobs (six decimals), so numbers stay short on the wire; neighbours in a list differ by
/// more than 0.05 (see [`rank`]), so rounding never makes two equal.
const SCALE: f64 = 1e6;

/// The log probability of `token` at `position`, and in `top` the `top.len()` most likely tokens there,
/// most likely first: the chosen token itself, then distinct alternatives, strictly decreasing.
///
/// The chosen token gets a probability p₀ in [0.55, 0.999); alternative i (from 1) gets
/// (1 − p₀)·2⁻ⁱ·(0.5 + 0.45·u) with u in [0, 1), so it lies in [1, 1.9)·(1 − p₀)·2⁻⁽ⁱ⁺¹⁾: each is more
/// than 5% below the one before (the first far below p₀), and together they stay under 1 − p₀.
pub fn rank<'t>(seed: u64, position: usize, token: &'t str, top: &mut [(&'t str, f64)]) -> f64 {
    let mut rng = Rng::new(hash(seed ^ (position as u64).wrapping_mul(0x9e37), token));
    let chosen = 0.55 + 0.449 * rng.unit();
    let logprob = round(math::ln(chosen));
    let Some((first, rest)) = top.split_first_mut() else {
        return logprob;
    };
    *first = (token, logprob);
    let rest_mass = 1.0 - chosen;
    let mut candidates = VOCABULARY
        .iter()
        .cycle()
        .skip(rng.below(VOCABULARY.len() as u64) as usize)
        .take(VOCABULARY.len())
        .filter(|candidate| **candidate != token);
    let mut scale = rest_mass;
    for slot in rest.iter_mut() {
        scale /= 2.0;
        let p = scale * (0.5 + 0.45 * rng.unit());
        // The vocabulary has more entries than MAX_TOP + 1, so a candidate is always left.
        let alternative = candidates.next().copied().unwrap_or(" ");
        *slot = (alternative, round(math::ln(p)));
    }
    logprob
}

fn round(logprob: f64) -> f64 {
    (logprob * SCALE).round() / SCALE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chosen_token_leads_a_decreasing_list() {
        for (position, token) in [" the", "Hello", ",", "{\"a\":", ""].iter().enumerate() {
            let mut top = [("", 0.0); MAX_TOP];
            let logprob = rank(7, position, token, &mut top);
            assert!(
                logprob < 0.0 && logprob > (0.55f64).ln() - 1e-6,
                "{logprob}"
            );
            assert_eq!(top[0], (*token, logprob));
            for pair in top.windows(2) {
                assert!(pair[0].1 > pair[1].1, "{top:?}");
            }
            let mut names: Vec<&str> = top.iter().map(|t| t.0).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), MAX_TOP, "{top:?}");
            let mass: f64 = top.iter().map(|t| t.1.exp()).sum();
            assert!(mass <= 1.0 + 1e-5, "{mass}");
        }
    }

    #[test]
    fn same_inputs_same_numbers() {
        let mut a = [("", 0.0); 5];
        let mut b = [("", 0.0); 5];
        assert_eq!(rank(1, 3, " x", &mut a), rank(1, 3, " x", &mut b));
        assert_eq!(a, b);
        let mut c = [("", 0.0); 5];
        rank(2, 3, " x", &mut c);
        assert_ne!(a, c);
        assert_ne!(rank(1, 3, " x", &mut []), rank(1, 4, " x", &mut []));
    }

    #[test]
    fn no_top_list_still_gives_the_logprob() {
        let mut three = [("", 0.0); 3];
        assert_eq!(rank(9, 0, "a", &mut []), rank(9, 0, "a", &mut three));
    }
}
