//! The gate activations of the fused LSTM cell. The scalar ones are [`crate::fastmath`]'s, called
//! with the kernel's multiply-add so that their polynomials use FMA where the CPU has it; the
//! 8-lane ones ([`avx`]) run the same operations in the same order with AVX2 and FMA
//! intrinsics, so that both give the same bits. The schemes (see `fastmath`): one range
//! reduction `x = n ln 2 + r` giving `(2^n, e^r - 1)`, then
//!
//! - `e^x = 2^n + 2^n (e^r - 1)`, for `x` clamped to `[-87.3, 88.3]`;
//! - `sigmoid(x) = 1 / (1 + e^-x)`;
//! - `tanh |x| = -(e^y - 1) / (2 + (e^y - 1))` with `y = -2 |x|` and
//!   `e^y - 1 = 2^n (e^r - 1) + (2^n - 1)`, the sign copied from `x`.

pub(super) use crate::fastmath::{sigmoid_with as sigmoid, tanh_with as tanh};

/// The same functions on 8 lanes with AVX2 and FMA intrinsics: the same operations in the same
/// order as the scalar ones with the [`Fma`](super::kernel::Fma) kernel, so the same values.
#[cfg(target_arch = "x86_64")]
pub(super) mod avx {
    use std::arch::x86_64::{
        __m256, _mm256_add_epi32, _mm256_add_ps, _mm256_and_ps, _mm256_andnot_ps,
        _mm256_castps_si256, _mm256_castsi256_ps, _mm256_div_ps, _mm256_fmadd_ps, _mm256_fnmadd_ps,
        _mm256_max_ps, _mm256_min_ps, _mm256_mul_ps, _mm256_or_ps, _mm256_set1_epi32,
        _mm256_set1_ps, _mm256_slli_epi32, _mm256_sub_epi32, _mm256_sub_ps, _mm256_xor_ps,
    };

    use crate::fastmath::{EXP_POLY, EXP_RANGE, LN2_HI, LN2_LO, ROUNDER};

    /// `(2^n, e^r - 1)` lane by lane (see the module docs).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn reduce(x: __m256) -> (__m256, __m256) {
        let s = _mm256_set1_ps;
        let fma = _mm256_fmadd_ps;
        // max(lo, x) keeps a NaN `x` (the second operand), as `clamp` does.
        let x = _mm256_min_ps(s(EXP_RANGE.1), _mm256_max_ps(s(EXP_RANGE.0), x));
        let t = fma(x, s(std::f32::consts::LOG2_E), s(ROUNDER));
        let n = _mm256_sub_ps(t, s(ROUNDER));
        let r = fma(n, s(LN2_LO), _mm256_fnmadd_ps(n, s(LN2_HI), x));
        let r2 = _mm256_mul_ps(r, r);
        let [c0, c1, c2, c3, c4, c5] = EXP_POLY.map(|c| s(c));
        let hi = fma(fma(c0, r, c1), r2, fma(c2, r, c3));
        let p = fma(hi, r2, fma(c4, r, c5));
        let n_int = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(0x4B40_0000));
        let scale = _mm256_slli_epi32::<23>(_mm256_add_epi32(n_int, _mm256_set1_epi32(127)));
        (_mm256_castsi256_ps(scale), fma(p, r2, r))
    }

    /// `e^x` lane by lane (see [`crate::fastmath::exp_with`]).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn exp(x: __m256) -> __m256 {
        let (scale, em1) = reduce(x);
        _mm256_fmadd_ps(scale, em1, scale)
    }

    /// The logistic function lane by lane (see [`super::sigmoid`]).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(crate) fn sigmoid(x: __m256) -> __m256 {
        let one = _mm256_set1_ps(1.0);
        let neg = _mm256_xor_ps(_mm256_set1_ps(-0.0), x);
        _mm256_div_ps(one, _mm256_add_ps(one, exp(neg)))
    }

    /// The hyperbolic tangent lane by lane (see [`super::tanh`]).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(crate) fn tanh(x: __m256) -> __m256 {
        let s = _mm256_set1_ps;
        let sign = s(-0.0);
        // -2 |x|: the magnitude doubled, the sign bit set.
        let y = _mm256_or_ps(sign, _mm256_add_ps(x, x));
        let (scale, q) = reduce(y);
        let em1 = _mm256_fmadd_ps(scale, q, _mm256_sub_ps(scale, s(1.0)));
        let t = _mm256_div_ps(_mm256_xor_ps(sign, em1), _mm256_add_ps(s(2.0), em1));
        _mm256_or_ps(_mm256_andnot_ps(sign, t), _mm256_and_ps(sign, x))
    }
}

#[cfg(test)]
mod tests {
    use super::super::kernel::{Kernel, Portable};
    use super::*;
    use crate::fastmath::exp_with as exp;

    fn grid() -> impl Iterator<Item = f32> {
        (-200_000..=200_000).map(|i| i as f32 * 1e-4)
    }

    /// Within a few ulp of `f64`.
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
    fn portable_activations_are_accurate() {
        check(Portable);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn fma_activations_are_accurate() {
        if let Some(k) = super::super::kernel::Fma::detect() {
            check(k);
        }
    }

    /// The 8-lane functions of every kernel give the scalar values bit for bit (NaN stays NaN).
    fn check_lanes<K: Kernel>(k: K) {
        let xs: Vec<f32> = grid()
            .step_by(7)
            .chain([0.0, -0.0, 1e-30, 1e-40, 300.0, -300.0, f32::NAN])
            // x + x overflows; infinities; where n of tanh's reduction turns from 0 to -1.
            .chain([
                f32::MAX,
                -f32::MAX,
                f32::INFINITY,
                f32::NEG_INFINITY,
                0.1733,
                -0.1733,
            ])
            .collect();
        for chunk in xs.chunks(8) {
            let mut x = [0.5f32; 8];
            x[..chunk.len()].copy_from_slice(chunk);
            for (got, want) in [
                (k.sigmoid8(x), x.map(|v| sigmoid(k, v))),
                (k.tanh8(x), x.map(|v| tanh(k, v))),
            ] {
                let bits = |a: [f32; 8]| a.map(|v| if v.is_nan() { u32::MAX } else { v.to_bits() });
                assert_eq!(bits(got), bits(want), "{x:?}");
            }
        }
    }

    #[test]
    fn lanes_match_scalar_activations() {
        check_lanes(Portable);
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = super::super::kernel::Fma::detect() {
            check_lanes(k);
        }
    }
}
