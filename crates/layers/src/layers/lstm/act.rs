//! The gate activations of the fused LSTM cell, written with the kernel's multiply-add so that
//! the polynomials use FMA where the CPU has it. Same schemes as [`crate::fastmath`] (with the
//! portable kernel the results are the same bit for bit):
//!
//! - `exp`: `e^x = 2^n e^r` with `n = round(x / ln 2)`, `|r| <= ln 2 / 2`, a degree-7 polynomial
//!   for `e^r` (Cephes' `expf`), for `x` clamped to `[-87.3, 88.3]`;
//! - `sigmoid(x) = 1 / (1 + e^-x)`;
//! - `tanh`: Cephes' odd polynomial for `|x| < 0.625`, `1 - 2 / (e^{2|x|} + 1)` beyond.

use super::kernel::Kernel;

/// `1.5 * 2^23`: adding and subtracting it rounds an `f32` below `2^22` in magnitude to the
/// nearest integer with plain additions.
const ROUNDER: f32 = 12_582_912.0;

/// `e^x` (see the module docs).
#[inline(always)]
pub(super) fn exp<K: Kernel>(k: K, x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.3);
    let t = k.madd(x, std::f32::consts::LOG2_E, ROUNDER);
    let n = t - ROUNDER;
    // r = x - n ln 2, with ln 2 split in two so that n * hi is exact.
    let r = k.madd(n, 2.121_944_4e-4, k.madd(-n, 0.693_359_4, x));
    let mut p = 1.987_569_1e-4f32;
    p = k.madd(p, r, 1.398_2e-3);
    p = k.madd(p, r, 8.333_452e-3);
    p = k.madd(p, r, 4.166_579_6e-2);
    p = k.madd(p, r, 1.666_666_5e-1);
    p = k.madd(p, r, 0.5);
    let er = k.madd(p * r, r, r) + 1.0;
    // t = 2^23 + (2^22 + n) exactly: its mantissa bits hold 2^22 + n.
    let n_int = t.to_bits() as i32 - 0x4B40_0000;
    er * f32::from_bits(((n_int + 127) as u32) << 23)
}

/// The logistic function `1 / (1 + e^-x)`.
#[inline(always)]
pub(super) fn sigmoid<K: Kernel>(k: K, x: f32) -> f32 {
    1.0 / (1.0 + exp(k, -x))
}

/// The hyperbolic tangent (see the module docs).
#[inline(always)]
pub(super) fn tanh<K: Kernel>(k: K, x: f32) -> f32 {
    let ax = x.abs();
    let z = x * x;
    let mut p = -5.704_988_7e-3f32;
    p = k.madd(p, z, 2.063_909e-2);
    p = k.madd(p, z, -5.373_971_6e-2);
    p = k.madd(p, z, 1.333_144_2e-1);
    p = k.madd(p, z, -3.333_328e-1);
    let small = k.madd(x * z, p, x);
    let big = (1.0 - 2.0 / (exp(k, 2.0 * ax) + 1.0)).copysign(x);
    if ax < 0.625 { small } else { big }
}

#[cfg(test)]
mod tests {
    use super::super::kernel::Portable;
    use super::*;
    use crate::fastmath;

    fn grid() -> impl Iterator<Item = f32> {
        (-200_000..=200_000).map(|i| i as f32 * 1e-4)
    }

    /// Within a few ulp of `f64` (and, with the portable kernel, bit-identical to `fastmath`).
    fn check<K: Kernel>(k: K) {
        for x in grid() {
            let xd = f64::from(x);
            for (got, want) in [
                (exp(k, 4.0 * x), (4.0 * xd).exp()),
                (sigmoid(k, x), 1.0 / (1.0 + (-xd).exp())),
                (tanh(k, x), xd.tanh()),
            ] {
                let err = (f64::from(got) - want).abs();
                assert!(
                    err <= 1e-7 || err / want.abs() < 1e-6,
                    "{x}: {got} vs {want}"
                );
            }
        }
        assert!(exp(k, -1000.0) >= 0.0 && exp(k, 1000.0).is_finite());
        assert_eq!(
            (tanh(k, 50.0), tanh(k, -50.0), tanh(k, 0.0)),
            (1.0, -1.0, 0.0)
        );
        assert!(sigmoid(k, 200.0) == 1.0 && sigmoid(k, -200.0) < 1e-37);
    }

    #[test]
    fn portable_activations_are_accurate_and_match_fastmath() {
        check(Portable);
        for x in grid() {
            assert_eq!(exp(Portable, 4.0 * x), fastmath::exp(4.0 * x));
            assert_eq!(sigmoid(Portable, x), fastmath::sigmoid(x));
            assert_eq!(tanh(Portable, x), fastmath::tanh(x));
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn fma_activations_are_accurate() {
        if let Some(k) = super::super::kernel::Fma::detect() {
            check(k);
        }
    }
}
