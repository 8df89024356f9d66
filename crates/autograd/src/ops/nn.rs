//! Softmax, the fused softmax cross-entropies, and dropout.

use gradus_tensor::{Rng, Tensor};

use super::zip2;
use crate::error::{AutogradError, Result};
use crate::var::Var;

impl<'t> Var<'t> {
    /// Softmax along `axis`: `out_i = e^{x_i} / sum_j e^{x_j}` (computed stably);
    /// `dx = out (g - sum_axis(g out))`.
    ///
    /// # Errors
    /// A tensor error when the axis is out of range.
    pub fn softmax(&self, axis: isize) -> Result<Var<'t>> {
        let out = self.value().softmax(axis)?;
        Ok(self.unary("softmax", out, |_, y| {
            let y = y.clone();
            move |g: &Tensor| {
                let gy = g.mul(&y)?;
                let s = gy.sum_axis(axis, true)?;
                Ok(gy.sub(&y.mul(&s)?)?)
            }
        }))
    }

    /// Log-softmax along `axis`: `out_i = x_i - ln sum_j e^{x_j}` (computed stably);
    /// `dx = g - e^{out} sum_axis(g)`.
    ///
    /// # Errors
    /// A tensor error when the axis is out of range.
    pub fn log_softmax(&self, axis: isize) -> Result<Var<'t>> {
        let out = self.value().log_softmax(axis)?;
        Ok(self.unary("log_softmax", out, |_, y| {
            let y = y.clone();
            move |g: &Tensor| {
                let s = g.sum_axis(axis, true)?;
                Ok(g.sub(&y.exp().mul(&s)?)?)
            }
        }))
    }

    /// Softmax cross-entropy of these logits against dense labels (one-hot or probabilities),
    /// per example: `out[r] = -sum_c y[r, c] ln softmax(x[r])_c`, classes on the last axis;
    /// `dx[r] = g[r] (softmax(x[r]) sum_c y[r, c] - y[r])`, i.e. `g (p - y)` for normalised labels.
    /// The labels are constants (not differentiated).
    ///
    /// Shapes: logits `[..., C]`, labels the same shape, output `[...]` (the logits' shape
    /// without its last axis).
    ///
    /// # Errors
    /// [`AutogradError::InvalidArgument`] naming both shapes when they differ or the logits are a
    /// scalar.
    pub fn softmax_cross_entropy_per_example(&self, labels: &Tensor) -> Result<Var<'t>> {
        let op = "softmax_cross_entropy";
        if self.ndim() == 0 || labels.shape() != self.shape() {
            return Err(AutogradError::InvalidArgument {
                op,
                message: format!(
                    "expected labels of the logits' shape {:?} (classes last), got {:?}",
                    self.shape(),
                    labels.shape()
                ),
            });
        }
        let log_p = self.value().log_softmax(-1)?;
        let out = log_p.mul(labels)?.sum_axis(-1, false)?.neg();
        Ok(self.unary(op, out, move |_, _| {
            let labels = labels.clone();
            move |g: &Tensor| {
                let mass = labels.sum_axis(-1, true)?;
                let p = log_p.exp().mul(&mass)?;
                Ok(p.sub(&labels)?.mul(&g.expand_dims(-1)?)?)
            }
        }))
    }

    /// Softmax cross-entropy of these logits against integer class labels, per example:
    /// `out[r] = -ln softmax(x[r])_{y[r]}`; `dx[r] = g[r] (softmax(x[r]) - onehot(y[r]))`.
    ///
    /// Shapes: logits `[..., C]`, labels (class ids stored as `f32`, as the datasets give them)
    /// of the logits' shape without the last axis, or with a last axis of length 1 (Keras'
    /// `[batch, 1]`); output the logits' shape without the last axis.
    ///
    /// # Errors
    /// [`AutogradError::InvalidArgument`] when the label shape does not fit, or a label is not an
    /// integer in `0..C` (naming the first bad label and its position).
    pub fn sparse_softmax_cross_entropy_per_example(&self, labels: &Tensor) -> Result<Var<'t>> {
        let op = "sparse_softmax_cross_entropy";
        let classes = class_ids(op, self.shape(), labels)?;
        let c = self.shape()[self.ndim() - 1];
        let log_p = self.value().log_softmax(-1)?;
        let lp = log_p.to_contiguous();
        let lp = lp.as_slice().expect("contiguous");
        let losses: Vec<f32> = classes
            .iter()
            .enumerate()
            .map(|(r, &k)| -lp[r * c + k])
            .collect();
        let out = Tensor::from_vec(losses, &self.shape()[..self.ndim() - 1])?;
        Ok(self.unary(op, out, move |_, _| {
            move |g: &Tensor| {
                let mut dx = log_p.exp().to_contiguous();
                let gs = g.to_contiguous();
                let gs = gs.as_slice().expect("contiguous");
                let d = dx.as_slice_mut();
                for (r, (&k, &gr)) in classes.iter().zip(gs).enumerate() {
                    let row = &mut d[r * c..(r + 1) * c];
                    row[k] -= 1.0;
                    row.iter_mut().for_each(|v| *v *= gr);
                }
                Ok(dx)
            }
        }))
    }

    /// The fused softmax cross-entropy from logits against dense labels, averaged over the
    /// examples (Keras' `CategoricalCrossentropy(from_logits=True)`): a scalar;
    /// `dx = (p - y) / batch` for normalised labels.
    ///
    /// # Errors
    /// As [`softmax_cross_entropy_per_example`](Var::softmax_cross_entropy_per_example).
    pub fn softmax_cross_entropy(&self, labels: &Tensor) -> Result<Var<'t>> {
        Ok(self.softmax_cross_entropy_per_example(labels)?.mean_all())
    }

    /// The fused softmax cross-entropy from logits against integer labels, averaged over the
    /// examples (Keras' `SparseCategoricalCrossentropy(from_logits=True)`): a scalar;
    /// `dx = (p - onehot(y)) / batch`.
    ///
    /// # Errors
    /// As [`sparse_softmax_cross_entropy_per_example`](Var::sparse_softmax_cross_entropy_per_example).
    pub fn sparse_softmax_cross_entropy(&self, labels: &Tensor) -> Result<Var<'t>> {
        Ok(self
            .sparse_softmax_cross_entropy_per_example(labels)?
            .mean_all())
    }

    /// Inverted dropout: with `training`, each element is zeroed with probability `rate` and the
    /// survivors scaled by `1 / (1 - rate)` (as Keras), `out = x m` with the mask `m` drawn from
    /// `rng`; `dx = g m`. Without `training`, or with `rate == 0`, the identity (nothing drawn).
    ///
    /// # Errors
    /// [`AutogradError::InvalidArgument`] unless `0 <= rate < 1`.
    pub fn dropout(&self, rate: f32, training: bool, rng: &mut Rng) -> Result<Var<'t>> {
        if !(0.0..1.0).contains(&rate) {
            return Err(AutogradError::InvalidArgument {
                op: "dropout",
                message: format!("expected a rate in [0, 1), got {rate}"),
            });
        }
        if !training || rate == 0.0 {
            return Ok(self.clone());
        }
        let scale = 1.0 / (1.0 - rate);
        let mask: Vec<f32> = (0..self.len())
            .map(|_| if rng.uniform_f32() < rate { 0.0 } else { scale })
            .collect();
        let mask = Tensor::from_vec(mask, self.shape())?;
        let out = zip2(&self.value().to_contiguous(), &mask, |x, m| x * m);
        Ok(self.unary("dropout", out, move |_, _| {
            move |g: &Tensor| Ok(zip2(g, &mask, |g, m| g * m))
        }))
    }
}

/// The class ids of `labels` for logits of shape `logits` (`[..., C]`), checked.
fn class_ids(op: &'static str, logits: &[usize], labels: &Tensor) -> Result<Vec<usize>> {
    let Some((&c, lead)) = logits.split_last() else {
        return Err(AutogradError::InvalidArgument {
            op,
            message: "expected logits with a class axis, got a scalar".into(),
        });
    };
    let fits = labels.shape() == lead || (labels.shape().split_last() == Some((&1, lead)));
    if !fits {
        return Err(AutogradError::InvalidArgument {
            op,
            message: format!(
                "expected labels of shape {lead:?} (or {lead:?} + [1]) for logits {logits:?}, got {:?}",
                labels.shape()
            ),
        });
    }
    labels
        .to_vec()
        .into_iter()
        .enumerate()
        .map(|(i, y)| {
            if y >= 0.0 && y.fract() == 0.0 && (y as usize) < c {
                Ok(y as usize)
            } else {
                Err(AutogradError::InvalidArgument {
                    op,
                    message: format!(
                        "expected integer class ids in 0..{c}, got {y} at position {i}"
                    ),
                })
            }
        })
        .collect()
}
