//! The two transcendental functions the models need (`ln` for log probabilities and both for normal
//! jitter), written here so the binary does not link `libm.so`: loading that library for two calls cost
//! about 330 KiB of resident memory at idle and a little start time. Accurate to a few ulp on the inputs the
//! models give them; the tests hold them to `std`.

use std::f64::consts::{FRAC_PI_2, SQRT_2};

/// The natural logarithm of `x`; NaN below zero, −∞ at zero, like `f64::ln`.
pub fn ln(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return x;
    }
    // x = m·2^e with m in [√2/2, √2), so ln x = e·ln 2 + ln m and |s| ≤ 0.172 below.
    let (mut m, mut e) = split(x);
    if m >= SQRT_2 {
        m /= 2.0;
        e += 1;
    }
    // ln m = 2·atanh(s) = 2·(s + s³/3 + s⁵/5 + …), s = (m − 1)/(m + 1); with s² ≤ 0.0295 twelve terms
    // reach double precision. Summed by Horner from the smallest term.
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut series = 0.0;
    for k in (0..12).rev() {
        series = series * s2 + 1.0 / (2 * k + 1) as f64;
    }
    // ln 2 in two parts, so e·ln 2 stays exact enough when it nearly cancels ln m.
    const LN_2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN_2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    let e = e as f64;
    e * LN_2_HI + (2.0 * s * series + e * LN_2_LO)
}

/// The cosine of `x` (radians); meant for the moderate arguments the models use (|x| well under 2⁵⁰).
pub fn cos(x: f64) -> f64 {
    if !x.is_finite() {
        return f64::NAN;
    }
    // x = q·π/2 + r with |r| ≤ π/4. π/2 in two parts (fdlibm's): the first has 33 bits, so q·PI_2_HI is
    // exact for |q| < 2²⁰ and the subtraction loses nothing.
    const PI_2_HI: f64 = f64::from_bits(0x3ff9_21fb_5440_0000);
    const PI_2_LO: f64 = f64::from_bits(0x3dd0_b461_1a62_6331);
    let q = (x / FRAC_PI_2).round();
    let r = (x - q * PI_2_HI) - q * PI_2_LO;
    match (q as i64).rem_euclid(4) {
        0 => cos_near_zero(r),
        1 => -sin_near_zero(r),
        2 => -cos_near_zero(r),
        _ => sin_near_zero(r),
    }
}

/// Splits a positive finite `x` into m in [1, 2) and e with x = m·2^e.
fn split(x: f64) -> (f64, i32) {
    let (x, bias) = if x < f64::MIN_POSITIVE {
        (x * 2f64.powi(54), -54) // subnormal: scale into the normal range first
    } else {
        (x, 0)
    };
    let bits = x.to_bits();
    let e = ((bits >> 52) & 0x7ff) as i32 - 1023;
    let m = f64::from_bits((bits & ((1 << 52) - 1)) | (1023 << 52));
    (m, e + bias)
}

/// Taylor series for |r| ≤ π/4, summed from the smallest term: 1 − r²/2! + r⁴/4! − … to r²⁰.
fn cos_near_zero(r: f64) -> f64 {
    let r2 = r * r;
    let mut sum = 0.0;
    for n in (1..=10).rev() {
        let k = (2 * n) as f64;
        sum = r2 / (k * (k - 1.0)) * (1.0 - sum);
    }
    1.0 - sum
}

/// Taylor series for |r| ≤ π/4: r − r³/3! + r⁵/5! − … to r²¹.
fn sin_near_zero(r: f64) -> f64 {
    let r2 = r * r;
    let mut sum = 0.0;
    for n in (1..=10).rev() {
        let k = (2 * n) as f64;
        sum = r2 / (k * (k + 1.0)) * (1.0 - sum);
    }
    r * (1.0 - sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f64, b: f64) -> u64 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs()
    }

    fn close(ours: f64, std: f64, tolerance: f64) -> bool {
        (ours - std).abs() <= tolerance * std.abs().max(1.0)
    }

    #[test]
    fn ln_matches_std_across_magnitudes() {
        let mut x = 1e-310;
        while x < 1e300 {
            for scale in [1.0, 1.1, 1.41, SQRT_2, 1.5, 1.9, 1.999_999] {
                let v = x * scale;
                assert!(
                    close(ln(v), v.ln(), 1e-15),
                    "ln({v}) = {} vs {}",
                    ln(v),
                    v.ln()
                );
            }
            x *= 7.3;
        }
    }

    #[test]
    fn ln_is_within_a_few_ulp_where_the_models_use_it() {
        // Log probabilities take p in (0, 1); the jitter takes 1 − u with u in [0, 1).
        let mut worst = 0;
        for i in 1..200_000 {
            let p = i as f64 / 200_000.0;
            worst = worst.max(ulps(ln(p), p.ln()));
        }
        assert!(worst <= 4, "worst {worst} ulp");
        assert_eq!(ln(1.0), 0.0);
    }

    #[test]
    fn ln_edge_cases_follow_std() {
        assert!(ln(-1.0).is_nan());
        assert!(ln(f64::NAN).is_nan());
        assert_eq!(ln(0.0), f64::NEG_INFINITY);
        assert_eq!(ln(f64::INFINITY), f64::INFINITY);
        assert!(close(ln(f64::MAX), f64::MAX.ln(), 1e-15));
        assert!(close(ln(5e-324), 5e-324f64.ln(), 1e-15));
    }

    #[test]
    fn cos_matches_std_over_turns() {
        for i in -400_000..400_000 {
            let x = i as f64 * 1e-4;
            assert!(
                (cos(x) - x.cos()).abs() <= 4e-16,
                "cos({x}) = {} vs {}",
                cos(x),
                x.cos()
            );
        }
        for x in [
            0.0,
            FRAC_PI_2,
            std::f64::consts::PI,
            std::f64::consts::TAU,
            1e6,
            -1e6,
            123_456.789,
        ] {
            assert!(
                (cos(x) - x.cos()).abs() <= 1e-12,
                "cos({x}) = {} vs {}",
                cos(x),
                x.cos()
            );
        }
        assert!(cos(f64::INFINITY).is_nan());
        assert!(cos(f64::NAN).is_nan());
    }
}
