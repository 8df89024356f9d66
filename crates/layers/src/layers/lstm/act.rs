//! The gate activations of the fused LSTM cell: rational functions, whose chain of dependent
//! operations is about half as long as that of an exponential followed by a division. The
//! cell's activations are bound by that chain (not by the arithmetic units): with these the LSTM
//! epoch takes ~5% less time than with [`crate::fastmath`]'s, which the activation layers
//! (`Activation::Sigmoid`, `Tanh`) keep.
//!
//! - `tanh(x) = x P(x^2) / Q(x^2)`, `P` and `Q` of degree 4 in `x^2`, fitted to the relative
//!   error of `tanh(x) / x` on `[0, 9]`: 2.1e-8 at most with the fit's coefficients, 4.3e-8
//!   with them rounded to `f32` (both in `f64` arithmetic). Evaluated in `f32` with fused
//!   multiply-adds: within 2.7e-7 of `tanh(x)` relatively (2.3 `f32::EPSILON`).
//! - `sigmoid(x) = 1/2 + tanh(x/2) / 2`, with the halvings folded into the coefficients (each
//!   a power of two times `tanh`'s, so exactly the same function): within 1.6e-7 absolutely,
//!   and 2.2 `f32::EPSILON` relatively for results above 1/4. Below, the relative error is that
//!   absolute error over the result (the `1/2 +` cancels): 1.6e-3 at `sigmoid(x) = 1e-4`.
//!   Such a gate moves the cell state by about an ulp of an order-1 term. `fastmath`'s
//!   exponential form keeps a few ulp down to the smallest results, at twice the latency.
//! - Arguments are clamped to `[-9.5, 9.5]` (`tanh`) and `[-19, 19]` (`sigmoid`), where the
//!   rational functions have passed their bounds, and results to `[-1, 1]` and `[0, 1]`: `tanh`
//!   is exactly `±1` from `|x| = 9.5` on (where `tanh` rounds to `±1` from `|x| = 9.01`),
//!   `sigmoid` exactly 1 from `x = 19` on and exactly 0 from `x = -19` down; between -19 and
//!   -16 its results are 0 or multiples of `2^-25` (the absolute error bound, not the true
//!   values of 5.6e-9 to 1.1e-7). The derivatives `1 - y^2` and `y (1 - y)` are never
//!   negative, `tanh` is odd to the bit, and NaN stays NaN.
//!
//! Both polynomials run in Estrin's order. The 8-lane versions ([`avx`]) run the same operations
//! in the same order with AVX2 and FMA intrinsics, so that they give the bits of the scalar
//! functions with the [`Fma`](super::kernel::Fma) kernel (the backward pass recomputes
//! `tanh(c_t)` with them, and must get the forward pass' values).
//!
//! `tanh`'s coefficients come from `docs/tools/fit_activations.py` (a linearized least-squares
//! fit iterated towards the minimax one), rounded to `f32`.

use super::kernel::MulAdd;

/// `tanh(x) = x TANH_P(x^2) / TANH_Q(x^2)`: coefficients of `x^0, x^2, .., x^8` (lowest first).
const TANH_P: [f32; 5] = [
    1.0,
    0.133_810_24,
    0.003_495_585,
    2.060_903e-5,
    1.335_458_7e-8,
];
/// See [`TANH_P`].
const TANH_Q: [f32; 5] = [
    1.0,
    0.467_143_4,
    0.025_876_971,
    3.285_629_8e-4,
    7.776_528e-7,
];
/// `tanh` clamps its argument to `[-TANH_CLAMP, TANH_CLAMP]`, where the rational function has
/// passed 1.
const TANH_CLAMP: f32 = 9.5;

/// `sigmoid(x) = 1/2 + x SIGMOID_P(x^2) / SIGMOID_Q(x^2)`, which is `1/2 + tanh(x/2) / 2` with
/// `tanh`'s rational function: coefficient `k` of `P` divided by `4^(k + 1)`, of `Q` by `4^k`
/// (exact: powers of two).
const SIGMOID_P: [f32; 5] = scaled(TANH_P, 0.25);
/// See [`SIGMOID_P`].
const SIGMOID_Q: [f32; 5] = scaled(TANH_Q, 1.0);
/// `sigmoid` clamps its argument to `[-SIGMOID_CLAMP, SIGMOID_CLAMP]`, `2 TANH_CLAMP`.
const SIGMOID_CLAMP: f32 = 2.0 * TANH_CLAMP;

/// `c[k] first / 4^k`.
const fn scaled(c: [f32; 5], first: f32) -> [f32; 5] {
    let mut out = [0.0; 5];
    let (mut k, mut f) = (0, first);
    while k < 5 {
        out[k] = c[k] * f;
        f *= 0.25;
        k += 1;
    }
    out
}

/// `x P(x^2) / Q(x^2)` for `x` clamped to `[-limit, limit]`, both polynomials in Estrin's order
/// (`(p4 s^2 + p3 s + p2) s^2 + (p1 s + p0)` with `s = x^2`).
#[inline(always)]
fn rational(m: impl MulAdd, x: f32, limit: f32, p: &[f32; 5], q: &[f32; 5]) -> f32 {
    let x = x.clamp(-limit, limit);
    let s = x * x;
    let s2 = s * s;
    let num = m.madd(
        s2,
        m.madd(s2, p[4], m.madd(s, p[3], p[2])),
        m.madd(s, p[1], p[0]),
    );
    let den = m.madd(
        s2,
        m.madd(s2, q[4], m.madd(s, q[3], q[2])),
        m.madd(s, q[1], q[0]),
    );
    x * num / den
}

/// The hyperbolic tangent with `m`'s multiply-add, in `[-1, 1]`.
#[inline(always)]
pub(super) fn tanh(m: impl MulAdd, x: f32) -> f32 {
    rational(m, x, TANH_CLAMP, &TANH_P, &TANH_Q).clamp(-1.0, 1.0)
}

/// The logistic function `1 / (1 + e^-x)` with `m`'s multiply-add, in `[0, 1]`.
#[inline(always)]
pub(super) fn sigmoid(m: impl MulAdd, x: f32) -> f32 {
    (0.5 + rational(m, x, SIGMOID_CLAMP, &SIGMOID_P, &SIGMOID_Q)).clamp(0.0, 1.0)
}

/// The same functions on 8 lanes with AVX2 and FMA intrinsics: the same operations in the same
/// order as the scalar ones with the [`Fma`](super::kernel::Fma) kernel, so the same values.
#[cfg(target_arch = "x86_64")]
pub(super) mod avx {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_div_ps, _mm256_fmadd_ps, _mm256_max_ps, _mm256_min_ps,
        _mm256_mul_ps, _mm256_set1_ps,
    };

    use super::{SIGMOID_CLAMP, SIGMOID_P, SIGMOID_Q, TANH_CLAMP, TANH_P, TANH_Q};

    /// `v` clamped to `[lo, hi]`, a NaN kept (`max` and `min` return their second operand when
    /// either is NaN, as `f32::clamp` keeps a NaN).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn clamp(v: __m256, lo: f32, hi: f32) -> __m256 {
        _mm256_min_ps(_mm256_set1_ps(hi), _mm256_max_ps(_mm256_set1_ps(lo), v))
    }

    /// [`super::rational`] lane by lane.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn rational(x: __m256, limit: f32, p: &[f32; 5], q: &[f32; 5]) -> __m256 {
        let c = |v: f32| _mm256_set1_ps(v);
        let fma = _mm256_fmadd_ps;
        let x = clamp(x, -limit, limit);
        let s = _mm256_mul_ps(x, x);
        let s2 = _mm256_mul_ps(s, s);
        let num = fma(
            s2,
            fma(s2, c(p[4]), fma(s, c(p[3]), c(p[2]))),
            fma(s, c(p[1]), c(p[0])),
        );
        let den = fma(
            s2,
            fma(s2, c(q[4]), fma(s, c(q[3]), c(q[2]))),
            fma(s, c(q[1]), c(q[0])),
        );
        _mm256_div_ps(_mm256_mul_ps(x, num), den)
    }

    /// The logistic function lane by lane (see [`super::sigmoid`]).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(crate) fn sigmoid(x: __m256) -> __m256 {
        let r = rational(x, SIGMOID_CLAMP, &SIGMOID_P, &SIGMOID_Q);
        clamp(_mm256_add_ps(_mm256_set1_ps(0.5), r), 0.0, 1.0)
    }

    /// The hyperbolic tangent lane by lane (see [`super::tanh`]).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(crate) fn tanh(x: __m256) -> __m256 {
        clamp(rational(x, TANH_CLAMP, &TANH_P, &TANH_Q), -1.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::kernel::{Kernel, Portable};
    use super::*;

    fn grid() -> impl Iterator<Item = f32> {
        (-200_000..=200_000).map(|i| i as f32 * 1e-4)
    }

    /// The largest errors against `f64` over the grid: `tanh`'s relative error, `sigmoid`'s
    /// absolute error, and `sigmoid`'s relative error where it is at least 1/4.
    fn errors<K: Kernel>(k: K) -> (f64, f64, f64) {
        let (mut t_rel, mut s_abs, mut s_rel) = (0.0f64, 0.0f64, 0.0f64);
        for x in grid() {
            let xd = f64::from(x);
            let want = xd.tanh();
            if want != 0.0 {
                t_rel = t_rel.max((f64::from(tanh(k, x)) - want).abs() / want.abs());
            }
            let want = 1.0 / (1.0 + (-xd).exp());
            let err = (f64::from(sigmoid(k, x)) - want).abs();
            s_abs = s_abs.max(err);
            if want >= 0.25 {
                s_rel = s_rel.max(err / want);
            }
        }
        (t_rel, s_abs, s_rel)
    }

    /// The accuracy the module docs state, in units of `f32::EPSILON`: `rel` for `tanh` and for
    /// `sigmoid` above 1/4, `abs` for `sigmoid`'s absolute error.
    fn check<K: Kernel>(k: K, rel: f64, abs: f64) {
        let (t_rel, s_abs, s_rel) = errors(k);
        let eps = f64::from(f32::EPSILON);
        assert!(t_rel <= rel * eps, "tanh: relative error {t_rel:e}");
        assert!(s_abs <= abs * eps, "sigmoid: absolute error {s_abs:e}");
        assert!(
            s_rel <= rel * eps,
            "sigmoid: relative error {s_rel:e} above 1/4"
        );
    }

    #[test]
    fn portable_activations_are_accurate() {
        // Rounding twice per multiply-add: tanh 2.8, sigmoid 1.7 absolute.
        check(Portable, 3.0, 1.8);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn fma_activations_are_accurate() {
        // Measured: tanh 2.27, sigmoid 2.16 above 1/4 and 1.34 absolute.
        if let Some(k) = super::super::kernel::Fma::detect() {
            check(k, 2.5, 1.45);
        }
    }

    /// `tanh`'s rational function with its `f32` coefficients, in `f64`.
    fn exact(x: f64) -> f64 {
        let s = x * x;
        let poly = |c: &[f32; 5]| c.iter().rev().fold(0.0, |acc, &v| acc * s + f64::from(v));
        x * poly(&TANH_P) / poly(&TANH_Q)
    }

    /// The constants themselves, apart from `f32` evaluation: within 5e-8 of `tanh` relatively
    /// on the fitted range, and increasing up to the clamp (the part past 9 is extrapolated).
    #[test]
    fn coefficients_fit_tanh() {
        let mut last = 0.0;
        for i in 1..=95_000 {
            let x = f64::from(i) * 1e-4;
            let (got, want) = (exact(x), x.tanh());
            if x <= 9.0 {
                assert!((got - want).abs() <= 5e-8 * want, "{x}: {got} vs {want}");
            }
            assert!(got > last, "not increasing at {x}");
            last = got;
        }
        assert!(exact(f64::from(TANH_CLAMP)) >= 1.0);
        assert_eq!(SIGMOID_CLAMP, 2.0 * TANH_CLAMP);
        for (k, (&sp, &tp)) in SIGMOID_P.iter().zip(&TANH_P).enumerate() {
            assert_eq!(
                f64::from(sp),
                f64::from(tp) / 4f64.powi(k as i32 + 1),
                "P {k}"
            );
        }
    }

    /// Over a sample of every `f32` (each 4099th bit pattern, and the ends of the clamps):
    /// results inside `[-1, 1]` and `[0, 1]`, `tanh` odd, exact saturation, NaN kept.
    fn check_bounds<K: Kernel>(k: K) {
        let special = [
            0.0,
            -0.0,
            9.0,
            9.5,
            10.0,
            18.0,
            19.0,
            20.0,
            f32::MAX,
            f32::INFINITY,
        ];
        for x in (0..u32::MAX)
            .step_by(4099)
            .map(f32::from_bits)
            .chain(special)
        {
            let (t, sg) = (tanh(k, x), sigmoid(k, x));
            if x.is_nan() {
                assert!(t.is_nan() && sg.is_nan(), "{x}");
                continue;
            }
            assert!((-1.0..=1.0).contains(&t), "tanh({x}) = {t}");
            assert!((0.0..=1.0).contains(&sg), "sigmoid({x}) = {sg}");
            assert_eq!(tanh(k, -x).to_bits(), (-t).to_bits(), "tanh is odd at {x}");
        }
        for x in [10.0, 100.0, f32::MAX, f32::INFINITY] {
            assert_eq!((tanh(k, x), tanh(k, -x)), (1.0, -1.0), "{x}");
        }
        for x in [20.0, 200.0, f32::MAX, f32::INFINITY] {
            assert_eq!((sigmoid(k, x), sigmoid(k, -x)), (1.0, 0.0), "{x}");
        }
        assert_eq!((tanh(k, 0.0), sigmoid(k, 0.0)), (0.0, 0.5));
    }

    #[test]
    fn activations_stay_in_bounds() {
        check_bounds(Portable);
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = super::super::kernel::Fma::detect() {
            check_bounds(k);
        }
    }

    /// The 8-lane functions of every kernel give the scalar values bit for bit (NaN stays NaN).
    fn check_lanes<K: Kernel>(k: K) {
        let xs: Vec<f32> = grid()
            .step_by(7)
            .chain([0.0, -0.0, 1e-30, 1e-40, -1e-40, 300.0, -300.0, f32::NAN])
            // x^2 underflows or overflows; the clamps and their neighbours; tiny arguments.
            .chain([
                1e-20,
                -1e-20,
                f32::MAX,
                -f32::MAX,
                f32::INFINITY,
                f32::NEG_INFINITY,
            ])
            .chain([TANH_CLAMP, SIGMOID_CLAMP].into_iter().flat_map(|c| {
                [c, c.next_up(), c.next_down()]
                    .into_iter()
                    .flat_map(|v| [v, -v])
            }))
            .chain((1..40).map(|i| i as f32 * 2.5e-6))
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
