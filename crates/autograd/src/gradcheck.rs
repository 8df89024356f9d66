//! Finite-difference gradient checking, for this crate's operations and for custom operations
//! written elsewhere (fused layers).
//!
//! [`check_gradients`] compares the gradient a tape computes with central differences
//! `(L(x + h e_j) - L(x - h e_j)) / 2h` of the scalar `L = sum(f(x) * w)`, where `w` is a fixed
//! random weighting of the output (so that every output element matters, with a different
//! weight, and a rule that mixes up output positions is caught).
//!
//! ## Step and tolerance for f32
//! Each output element is computed in f32, with a relative rounding error around `1e-7` per
//! operation; `L` is summed in f64 from those elements, so for O(1) inputs and outputs the error
//! of `L` is around `1e-6`. The rounding part of the central difference's error is that divided by
//! `2h`: about `5e-5` for the default step `h = 1e-2`; its truncation part is `h^2 |f'''| / 6`,
//! about `2e-5 |f'''|`. Both stay well below the default tolerance
//! `|analytic - numeric| <= atol + rtol max(|analytic|, |numeric|)` with `rtol = 1e-2` and
//! `atol = 1e-3`, while any real mistake in a rule (a wrong sign, factor, transpose or missing
//! term) changes a gradient by O(1) relative. Inputs must be sampled away from kinks (relu, abs,
//! max, clip at their thresholds) by at least a few `h`, where one-sided slopes differ.

use std::fmt;

use gradus_tensor::{Rng, Tensor};

use crate::error::Result;
use crate::tape::Tape;
use crate::var::Var;

/// Step and tolerances of a gradient check; see the [module docs](self) for the defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradCheck {
    /// The finite-difference step `h`.
    pub step: f32,
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Seed of the output weighting `w`.
    pub seed: u64,
}

impl Default for GradCheck {
    fn default() -> Self {
        GradCheck {
            step: 1e-2,
            rtol: 1e-2,
            atol: 1e-3,
            seed: 0,
        }
    }
}

/// One gradient element where the tape and the finite differences disagree.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    /// Which input.
    pub input: usize,
    /// The row-major index of the element within that input.
    pub index: usize,
    /// The tape's gradient.
    pub analytic: f64,
    /// The central-difference estimate.
    pub numeric: f64,
}

/// The outcome of [`check_gradients`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GradCheckReport {
    /// The number of gradient elements compared.
    pub checked: usize,
    /// The largest `|analytic - numeric|` seen.
    pub max_abs_error: f64,
    /// Every element outside the tolerance.
    pub mismatches: Vec<Mismatch>,
}

impl GradCheckReport {
    /// Whether every element agreed within the tolerance.
    pub fn is_ok(&self) -> bool {
        self.mismatches.is_empty()
    }
}

impl fmt::Display for GradCheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} gradient elements disagree (max abs error {:.3e})",
            self.mismatches.len(),
            self.checked,
            self.max_abs_error
        )?;
        for m in self.mismatches.iter().take(8) {
            write!(
                f,
                "\n  input {} element {}: tape {:.6}, finite differences {:.6}",
                m.input, m.index, m.analytic, m.numeric
            )?;
        }
        Ok(())
    }
}

/// `sum(out * w)` in f64.
fn weighted_sum(out: &Tensor, w: &Tensor) -> f64 {
    out.to_vec()
        .iter()
        .zip(w.to_vec())
        .map(|(&o, w)| f64::from(o) * f64::from(w))
        .sum()
}

/// Checks the gradients of `f` with respect to each of `inputs` against central differences,
/// with the [default](GradCheck::default) step and tolerances.
///
/// `f` must be deterministic and build its result only from the `Var`s it is given (plus
/// constants). It is called once on a tape and `2 n` times untracked, `n` the total number of
/// input elements, so keep inputs small.
///
/// ```
/// use gradus_autograd::gradcheck::check_gradients;
/// use gradus_tensor::Tensor;
///
/// let x = Tensor::from_vec(vec![0.5, -1.0, 2.0], &[3])?;
/// let report = check_gradients(&[x], |v| Ok(v[0].tanh().mul(&v[0])?))?;
/// assert!(report.is_ok(), "{report}");
/// # Ok::<(), gradus_autograd::AutogradError>(())
/// ```
///
/// # Errors
/// Whatever `f` or the tape returns.
pub fn check_gradients<F>(inputs: &[Tensor], f: F) -> Result<GradCheckReport>
where
    F: for<'t> Fn(&[Var<'t>]) -> Result<Var<'t>>,
{
    check_gradients_with(GradCheck::default(), inputs, f)
}

/// [`check_gradients`] with an explicit step and tolerances.
///
/// # Errors
/// Whatever `f` or the tape returns.
pub fn check_gradients_with<F>(cfg: GradCheck, inputs: &[Tensor], f: F) -> Result<GradCheckReport>
where
    F: for<'t> Fn(&[Var<'t>]) -> Result<Var<'t>>,
{
    let tape = Tape::new();
    let vars: Vec<Var<'_>> = inputs
        .iter()
        .map(|x| tape.watch_tensor(x.clone()))
        .collect();
    let out = f(&vars)?;
    let w = Tensor::rand_uniform(out.shape(), 0.5, 1.5, &mut Rng::seed_from_u64(cfg.seed));
    let loss = out.mul(&tape.constant(w.clone()))?.sum_all();
    let sources: Vec<&Var<'_>> = vars.iter().collect();
    let analytic = tape.gradient_wrt(&loss, &sources)?;

    let eval = |xs: Vec<Tensor>| -> Result<f64> {
        let vars: Vec<Var<'_>> = xs.into_iter().map(Var::constant).collect();
        Ok(weighted_sum(f(&vars)?.value(), &w))
    };
    let mut report = GradCheckReport::default();
    for (i, x) in inputs.iter().enumerate() {
        let grad = analytic[i]
            .as_ref()
            .map_or_else(|| vec![0.0; x.len()], Tensor::to_vec);
        let base = x.to_vec();
        for j in 0..base.len() {
            let (plus, minus) = (base[j] + cfg.step, base[j] - cfg.step);
            let shifted = |v: f32| -> Result<f64> {
                let mut values = base.clone();
                values[j] = v;
                let mut xs = inputs.to_vec();
                xs[i] = Tensor::from_vec(values, x.shape())?;
                eval(xs)
            };
            let numeric = (shifted(plus)? - shifted(minus)?) / (f64::from(plus) - f64::from(minus));
            let analytic = f64::from(grad[j]);
            let err = (analytic - numeric).abs();
            report.checked += 1;
            report.max_abs_error = report.max_abs_error.max(err);
            if err > cfg.atol + cfg.rtol * analytic.abs().max(numeric.abs()) || err.is_nan() {
                report.mismatches.push(Mismatch {
                    input: i,
                    index: j,
                    analytic,
                    numeric,
                });
            }
        }
    }
    Ok(report)
}
