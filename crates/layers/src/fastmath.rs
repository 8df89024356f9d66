//! Branch-free `f32` exponential, logistic and hyperbolic tangent that the compiler can
//! vectorize, for the fused kernels' inner loops (the scalar libm calls dominated the LSTM).
//!
//! `exp` is Cephes' `expf` scheme: `e^x = 2^n e^r` with `n = round(x / ln 2)`, `|r| <= ln 2 / 2`
//! and a degree-7 polynomial for `e^r`, about 1 ulp. `tanh` uses Cephes' odd polynomial for
//! `|x| < 0.625` and `1 - 2 / (e^{2|x|} + 1)` beyond, both within a few ulp. All three are
//! tested against `f64` references below.

/// `1.5 * 2^23`: adding and subtracting it rounds an `f32` of magnitude below `2^22` to the
/// nearest integer with plain additions (no `round` call, which would not vectorize).
const ROUNDER: f32 = 12_582_912.0;

/// `e^x`, for `x` clamped to `[-87.3, 88.3]` (the range whose result is a normal `f32`).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.3);
    let t = x * std::f32::consts::LOG2_E + ROUNDER;
    let n = t - ROUNDER;
    // r = x - n ln 2, with ln 2 split in two so that n * hi is exact.
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
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
    let mut p = -5.704_988_7e-3f32;
    p = p * z + 2.063_909e-2;
    p = p * z - 5.373_971_6e-2;
    p = p * z + 1.333_144_2e-1;
    p = p * z - 3.333_328e-1;
    let small = x + x * z * p;
    let big = (1.0 - 2.0 / (exp(2.0 * ax) + 1.0)).copysign(x);
    if ax < 0.625 { small } else { big }
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
