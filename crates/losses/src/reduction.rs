//! Reductions of per-sample losses, sample weights, and Keras' rank alignment of two operands.

use std::fmt;
use std::str::FromStr;

use gradus_autograd::Var;
use gradus_tensor::{Tensor, broadcast_shapes};
use serde::{Deserialize, Serialize};

use crate::error::{LossError, Result};

/// How a loss turns its per-sample values into what [`Loss::call`](crate::Loss::call) returns
/// (Keras' `reduction` argument).
///
/// With per-sample (already weighted) values `v` of `n` elements:
/// - [`SumOverBatchSize`](Reduction::SumOverBatchSize) (Keras' default, also spelled `"mean"`):
///   `sum(v) / n`. With sample weights the divisor is still `n`, the number of elements, **not**
///   the sum of the weights: a weight of 0 lowers the mean.
/// - [`Sum`](Reduction::Sum): `sum(v)`.
/// - [`None`](Reduction::None): `v` itself, one loss per sample.
/// - [`MeanWithSampleWeight`](Reduction::MeanWithSampleWeight): `sum(v) / sum(w)` (0 when the
///   weights sum to 0); `sum(v) / n` without weights.
///
/// As in Keras, a scalar `v` (a loss over a rank-1 `y_pred`) and a `v` of shape `[0]` are returned
/// as they are whatever the reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reduction {
    /// `sum / number of elements` (Keras' `"sum_over_batch_size"`, alias `"mean"`).
    #[default]
    #[serde(alias = "mean")]
    SumOverBatchSize,
    /// `sum` (Keras' `"sum"`).
    Sum,
    /// No reduction: the per-sample losses (Keras' `"none"` or `None`).
    None,
    /// `sum / sum of the sample weights` (Keras' `"mean_with_sample_weight"`).
    MeanWithSampleWeight,
}

impl Reduction {
    /// Every name [`FromStr`] accepts.
    pub const NAMES: [&'static str; 5] = [
        "sum_over_batch_size",
        "mean",
        "sum",
        "none",
        "mean_with_sample_weight",
    ];

    /// Keras' name of this reduction, e.g. `"sum_over_batch_size"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reduction::SumOverBatchSize => "sum_over_batch_size",
            Reduction::Sum => "sum",
            Reduction::None => "none",
            Reduction::MeanWithSampleWeight => "mean_with_sample_weight",
        }
    }
}

impl fmt::Display for Reduction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Reduction {
    type Err = LossError;

    /// Parses Keras' names (see [`Reduction::NAMES`]).
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sum_over_batch_size" | "mean" => Ok(Reduction::SumOverBatchSize),
            "sum" => Ok(Reduction::Sum),
            "none" => Ok(Reduction::None),
            "mean_with_sample_weight" => Ok(Reduction::MeanWithSampleWeight),
            _ => Err(LossError::UnknownName {
                kind: "reduction",
                name: s.to_string(),
                known: Reduction::NAMES.to_vec(),
            }),
        }
    }
}

/// Keras' `squeeze_or_expand_to_same_rank`: when the ranks of two operands differ by exactly one
/// and the longer one ends in an axis of length 1, that axis is dropped, or, when the shorter
/// operand has rank 1, the shorter one gains a trailing axis of length 1 instead.
///
/// Returns the new shapes `(a, b)` (same element counts as the inputs).
pub(crate) fn squeeze_or_expand(a: &[usize], b: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    if a.len() == b.len() + 1 && a.last() == Some(&1) {
        if b.len() == 1 {
            b.push(1);
        } else {
            a.pop();
        }
    } else if b.len() == a.len() + 1 && b.last() == Some(&1) {
        if a.len() == 1 {
            a.push(1);
        } else {
            b.pop();
        }
    }
    (a, b)
}

/// `t` reshaped to `shape` (same element count), without a copy when the shape is unchanged.
pub(crate) fn reshaped(t: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if t.shape() == shape {
        Ok(t.clone())
    } else {
        Ok(t.reshape(shape)?)
    }
}

/// The first non-finite element of `t` as an error naming `input`.
pub(crate) fn check_finite(op: &str, input: &'static str, t: &Tensor) -> Result<()> {
    let Some((index, value)) = t.first_non_finite() else {
        return Ok(());
    };
    Err(LossError::NonFinite {
        op: op.to_string(),
        input,
        value,
        index,
    })
}

/// Weights and reduces per-sample losses exactly as Keras' `reduce_weighted_values`.
///
/// `values` are per-sample losses (any shape). With `sample_weight`, the two are first aligned
/// (Keras' `squeeze_or_expand_to_same_rank`: a `[batch]` weight fits `[batch, 1]` values and the
/// reverse), then multiplied with broadcasting, `v = values * w`; the result is reduced by
/// `reduction` (see [`Reduction`] for the formulas). Differentiable with respect to `values`; the
/// weights are constants.
///
/// ```
/// use gradus_autograd::Var;
/// use gradus_losses::{Reduction, reduce_weighted_values};
/// use gradus_tensor::Tensor;
///
/// let values = Var::constant(Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[4])?);
/// let w = Tensor::from_vec(vec![1.0, 1.0, 0.0, 0.0], &[4])?;
/// let loss = reduce_weighted_values("demo", values, Some(&w), Reduction::SumOverBatchSize)?;
/// assert_eq!(loss.item()?, 0.75); // (1 + 2) / 4: the divisor is the element count
/// # Ok::<(), gradus_losses::LossError>(())
/// ```
///
/// # Errors
/// - [`LossError::SampleWeightShape`] when the weights do not broadcast against the values;
/// - [`LossError::NonFinite`] for a NaN or infinite weight.
pub fn reduce_weighted_values<'t>(
    op: &str,
    values: Var<'t>,
    sample_weight: Option<&Tensor>,
    reduction: Reduction,
) -> Result<Var<'t>> {
    let (values, weight_sum) = match sample_weight {
        None => (values, None),
        Some(w) => {
            check_finite(op, "sample_weight", w)?;
            let (vs, ws) = squeeze_or_expand(values.shape(), w.shape());
            let bad = || LossError::SampleWeightShape {
                op: op.to_string(),
                values: values.shape().to_vec(),
                weights: w.shape().to_vec(),
            };
            broadcast_shapes(&vs, &ws).map_err(|_| bad())?;
            let aligned = if vs == values.shape() {
                values.clone()
            } else {
                values.reshape(&vs)?
            };
            let w = reshaped(w, &ws)?;
            let weighted = aligned.mul(&aligned.lift(w.clone()))?;
            (weighted, Some(w.sum_all()))
        }
    };
    if reduction == Reduction::None || values.ndim() == 0 || values.shape() == [0] {
        return Ok(values);
    }
    let sum = values.sum_all();
    Ok(match (reduction, weight_sum) {
        (Reduction::Sum, _) => sum,
        (Reduction::MeanWithSampleWeight, Some(0.0)) => sum.mul_scalar(0.0),
        (Reduction::MeanWithSampleWeight, Some(total)) => sum.div_scalar(total),
        _ if values.is_empty() => sum,
        _ => sum.div_scalar(values.len() as f32),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeeze_or_expand_follows_keras() {
        // [B] vs [B, 1]: the rank-1 operand gains an axis.
        assert_eq!(squeeze_or_expand(&[4], &[4, 1]), (vec![4, 1], vec![4, 1]));
        assert_eq!(squeeze_or_expand(&[4, 1], &[4]), (vec![4, 1], vec![4, 1]));
        // [B, T, 1] vs [B, T]: the longer one loses its last axis.
        assert_eq!(
            squeeze_or_expand(&[2, 3, 1], &[2, 3]),
            (vec![2, 3], vec![2, 3])
        );
        // Nothing to do, or not a trailing 1.
        assert_eq!(squeeze_or_expand(&[4], &[4, 3]), (vec![4], vec![4, 3]));
        assert_eq!(
            squeeze_or_expand(&[4, 3], &[4, 3]),
            (vec![4, 3], vec![4, 3])
        );
    }

    #[test]
    fn reduction_names_round_trip() {
        for name in Reduction::NAMES {
            let r: Reduction = name.parse().unwrap();
            if name != "mean" {
                assert_eq!(r.as_str(), name);
            }
        }
        let err = "average".parse::<Reduction>().unwrap_err();
        assert!(err.to_string().contains("sum_over_batch_size"), "{err}");
    }

    #[test]
    fn reductions_of_weighted_values() {
        let v = || Var::constant(Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[4]).unwrap());
        let w = Tensor::from_vec(vec![2.0, 0.0, 1.0, 2.0], &[4]).unwrap();
        let r = |red| {
            reduce_weighted_values("t", v(), Some(&w), red)
                .unwrap()
                .into_value()
        };
        // Weighted values: [2, 0, 3, 8]; the weights sum to 5.
        assert_eq!(r(Reduction::Sum).item().unwrap(), 13.0);
        assert_eq!(r(Reduction::SumOverBatchSize).item().unwrap(), 13.0 / 4.0);
        assert_eq!(
            r(Reduction::MeanWithSampleWeight).item().unwrap(),
            13.0 / 5.0
        );
        assert_eq!(r(Reduction::None).to_vec(), vec![2.0, 0.0, 3.0, 8.0]);
        let zero = Tensor::zeros(&[4]);
        let z = reduce_weighted_values("t", v(), Some(&zero), Reduction::MeanWithSampleWeight);
        assert_eq!(z.unwrap().item().unwrap(), 0.0);
    }

    #[test]
    fn bad_weights_are_errors() {
        let v = Var::constant(Tensor::zeros(&[4, 3]));
        let w = Tensor::ones(&[5]);
        let err = reduce_weighted_values("t", v.clone(), Some(&w), Reduction::Sum).unwrap_err();
        assert!(matches!(err, LossError::SampleWeightShape { .. }), "{err}");
        assert!(err.to_string().contains("[5]") && err.to_string().contains("[4, 3]"));
        let nan = Tensor::from_vec(vec![f32::NAN; 3], &[3]).unwrap();
        let err = reduce_weighted_values("t", v, Some(&nan), Reduction::Sum).unwrap_err();
        assert!(matches!(
            err,
            LossError::NonFinite {
                input: "sample_weight",
                ..
            }
        ));
    }
}
