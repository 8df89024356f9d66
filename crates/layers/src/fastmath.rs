//! Branch-free `f32` exponential, logistic and hyperbolic tangent that the compiler can
//! vectorize, for the activation layers' passes (`Activation::Sigmoid`, `Tanh`, `Softmax`).
//! The LSTM cell has its own, shorter-latency rational `sigmoid` and `tanh`
//! (`layers::lstm::act`), which give up these ones' relative accuracy on tiny sigmoid results.
//!
//! All three come from one range reduction, Cephes' `expf` scheme: `x = n ln 2 + r` with
//! `n = round(x / ln 2)` and `|r| <= ln 2 / 2`, then `e^r - 1 = r + r^2 P(r)` with Cephes'
//! degree-5 `P`, evaluated in Estrin's order (two independent halves joined by `r^2`, a shorter
//! chain of dependent operations than Horner's). From the pair `(2^n, e^r - 1)`:
//!
//! - `e^x = 2^n + 2^n (e^r - 1)`, about 1 ulp;
//! - `e^y - 1 = 2^n (e^r - 1) + (2^n - 1)` for `y <= 0`, without the cancellation of `e^y - 1`
//!   near 0 (`2^n - 1` is exact for `n >= -24`; below, it rounds to `-1`, where `e^y < 2^-24`
//!   no longer shows in the result);
//! - `tanh |x| = -(e^y - 1) / (2 + (e^y - 1))` with `y = -2 |x|`: one formula for every `x`,
//!   within a few ulp, the sign copied from `x`;
//! - `sigmoid(x) = 1 / (1 + e^-x)`.
//!
//! All three are tested against `f64` references below.

/// `1.5 * 2^23`: adding and subtracting it rounds an `f32` of magnitude below `2^22` to the
/// nearest integer with plain additions (no `round` call, which would not vectorize).
pub(crate) const ROUNDER: f32 = 12_582_912.0;

/// The range of `x` whose `e^x` is a normal `f32`; the reduction clamps its argument to it.
pub(crate) const EXP_RANGE: (f32, f32) = (-87.3, 88.3);

/// `ln 2 = LN2_HI - LN2_LO`, split so that `n LN2_HI` is exact for the `n` of `exp`.
pub(crate) const LN2_HI: f32 = 0.693_359_4;
/// See [`LN2_HI`].
pub(crate) const LN2_LO: f32 = 2.121_944_4e-4;

/// Cephes' coefficients of `e^r = 1 + r + r^2 P(r)`, highest degree first: `P(r) = EXP_POLY[0]
/// r^5 + ... + EXP_POLY[5]`, evaluated as `((c0 r + c1) r^2 + (c2 r + c3)) r^2 + (c4 r + c5)`.
pub(crate) const EXP_POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_2e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// `(2^n, e^r - 1)` for `x` clamped to [`EXP_RANGE`], `x = n ln 2 + r` (see the module docs).
#[inline(always)]
fn reduce(x: f32) -> (f32, f32) {
    let x = x.clamp(EXP_RANGE.0, EXP_RANGE.1);
    let t = x * std::f32::consts::LOG2_E + ROUNDER;
    let n = t - ROUNDER;
    // r = x - n ln 2, with ln 2 split in two so that n * hi is exact.
    let r = n * LN2_LO + (-n * LN2_HI + x);
    let r2 = r * r;
    let [c0, c1, c2, c3, c4, c5] = EXP_POLY;
    let hi = (c0 * r + c1) * r2 + (c2 * r + c3);
    let p = hi * r2 + (c4 * r + c5);
    // t = 2^23 + (2^22 + n) exactly, so its mantissa bits hold 2^22 + n: read n from them with
    // integer operations (a float-to-int cast saturates lane by lane and does not vectorize).
    let n_int = t.to_bits() as i32 - 0x4B40_0000;
    let scale = f32::from_bits(((n_int + 127) as u32) << 23);
    (scale, p * r2 + r)
}

/// `e^x`, for `x` clamped to [`EXP_RANGE`] (the range whose result is a normal `f32`).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let (scale, em1) = reduce(x);
    scale * em1 + scale
}

/// The logistic function `1 / (1 + e^-x)`.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// The hyperbolic tangent: `-(e^y - 1) / (2 + (e^y - 1))` with `y = -2 |x|` and the sign of
/// `x`.
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    let (scale, q) = reduce(-2.0 * x.abs());
    let em1 = scale * q + (scale - 1.0);
    (-em1 / (2.0 + em1)).copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> impl Iterator<Item = f32> {
        (-200_000..=200_000).map(|i| i as f32 * 1e-4)
    }

    #[test]
    fn exp_is_accurate() {
        let mut worst = 0.0f64;
        for x in grid().map(|x| x * 4.0) {
            let want = f64::from(x).exp();
            if !(1e-37..=3e38).contains(&want) {
                continue;
            }
            worst = worst.max((f64::from(exp(x)) - want).abs() / want);
        }
        assert!(worst < 3e-7, "max relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) >= 0.0 && exp(1000.0).is_finite());
    }

    #[test]
    fn tanh_and_sigmoid_are_accurate() {
        let mut ws = 0.0f64;
        for x in grid() {
            let t = f64::from(x).tanh();
            let err = (f64::from(tanh(x)) - t).abs();
            assert!(
                err <= 1e-7 || err / t.abs() < 1e-6,
                "tanh({x}): {} vs {t}",
                tanh(x)
            );
            let s = 1.0 / (1.0 + (-f64::from(x)).exp());
            ws = ws.max((f64::from(sigmoid(x)) - s).abs() / s);
        }
        assert!(ws < 1e-6, "sigmoid max relative error {ws}");
        assert_eq!(tanh(0.0), 0.0);
        assert_eq!(tanh(50.0), 1.0);
        assert_eq!(tanh(-50.0), -1.0);
        assert_eq!(sigmoid(-200.0), 0.0f32.max(sigmoid(-200.0)));
        assert!(sigmoid(200.0) == 1.0 && sigmoid(-200.0) < 1e-37);
    }
}
