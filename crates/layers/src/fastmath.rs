//! Branch-free `f32` exponential, logistic and hyperbolic tangent that the compiler can
//! vectorize, for the fused kernels' inner loops (the scalar libm calls dominated the LSTM).
//!
//! `exp` is Cephes' `expf` scheme: `e^x = 2^n e^r` with `n = round(x / ln 2)`, `|r| <= ln 2 / 2`
//! and a degree-7 polynomial for `e^r`, about 1 ulp. `tanh` uses Cephes' odd polynomial for
//! `|x| < 0.625` and `1 - 2 / (e^{2|x|} + 1)` beyond, both within a few ulp. All three are
//! tested against `f64` references below.

/// `1.5 * 2^23`: adding and subtracting it rounds an `f32` of magnitude below `2^22` to the
/// nearest integer with plain additions (no `round` call, which would not vectorize).
pub(crate) const ROUNDER: f32 = 12_582_912.0;

/// The range of `x` whose `e^x` is a normal `f32`; `exp` clamps its argument to it.
pub(crate) const EXP_RANGE: (f32, f32) = (-87.3, 88.3);

/// `ln 2 = LN2_HI - LN2_LO`, split so that `n LN2_HI` is exact for the `n` of `exp`.
pub(crate) const LN2_HI: f32 = 0.693_359_4;
/// See [`LN2_HI`].
pub(crate) const LN2_LO: f32 = 2.121_944_4e-4;

/// Cephes' coefficients of `e^r = 1 + r + r^2 P(r)`, highest degree first (Horner's order).
pub(crate) const EXP_POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_2e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// Cephes' coefficients of `tanh x = x + x^3 Q(x^2)` for `|x| <` [`TANH_SMALL`], highest degree
/// first.
pub(crate) const TANH_POLY: [f32; 5] = [
    -5.704_988_7e-3,
    2.063_909e-2,
    -5.373_971_6e-2,
    1.333_144_2e-1,
    -3.333_328e-1,
];

/// Below this `|x|`, `tanh` takes its polynomial; from it on, `1 - 2 / (e^{2|x|} + 1)`.
pub(crate) const TANH_SMALL: f32 = 0.625;

/// `e^x`, for `x` clamped to [`EXP_RANGE`] (the range whose result is a normal `f32`).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let x = x.clamp(EXP_RANGE.0, EXP_RANGE.1);
    let t = x * std::f32::consts::LOG2_E + ROUNDER;
    let n = t - ROUNDER;
    // r = x - n ln 2, with ln 2 split in two so that n * hi is exact.
    let r = x - n * LN2_HI + n * LN2_LO;
    let mut p = EXP_POLY[0];
    for &c in &EXP_POLY[1..] {
        p = p * r + c;
    }
    let er = p * r * r + r + 1.0;
    // t = 2^23 + (2^22 + n) exactly, so its mantissa bits hold 2^22 + n: read n from them with
    // integer operations (a float-to-int cast saturates lane by lane and does not vectorize).
    let n_int = t.to_bits() as i32 - 0x4B40_0000;
    let scale = f32::from_bits(((n_int + 127) as u32) << 23);
    er * scale
}

/// The logistic function `1 / (1 + e^-x)`.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// The hyperbolic tangent.
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    let ax = x.abs();
    let z = x * x;
    let mut p = TANH_POLY[0];
    for &c in &TANH_POLY[1..] {
        p = p * z + c;
    }
    let small = x + x * z * p;
    let big = (1.0 - 2.0 / (exp(2.0 * ax) + 1.0)).copysign(x);
    if ax < TANH_SMALL { small } else { big }
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
        let (mut wt, mut ws) = (0.0f64, 0.0f64);
        for x in grid() {
            let t = f64::from(x).tanh();
            let err = (f64::from(tanh(x)) - t).abs();
            wt = wt.max(err / t.abs().max(1e-30)).min(f64::MAX);
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
