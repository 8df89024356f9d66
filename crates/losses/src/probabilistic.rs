//! Probabilistic losses: binary, categorical and sparse categorical cross-entropy, and the
//! Kullback-Leibler divergence.
//!
//! From probabilities, predictions are clipped to `[EPSILON, 1 - EPSILON]` exactly as Keras
//! (TensorFlow's `clip_by_value`, whose gradient passes where `EPSILON <= p <= 1 - EPSILON`,
//! boundaries included, and is 0 outside). From logits, a fused stable form is used (softmax or
//! sigmoid and the cross-entropy in one kernel, with the gradient `p - y`).

use gradus_autograd::Var;
use gradus_tensor::Tensor;

use crate::error::{LossError, Result};
use crate::kernel::{mean_of_elements, per_row};
use crate::loss::{Loss, LossConfig, align, align_same_shape, check_label_smoothing, loss_common};
use crate::reduction::{
    Reduction, check_finite, reduce_weighted_values, reshaped, squeeze_or_expand,
};

/// Keras' `backend.epsilon()`: the clipping margin of probabilities.
pub const EPSILON: f32 = 1e-7;

/// The upper clipping bound `1 - EPSILON`, rounded to f32 as TensorFlow does (`1 - 2^-23`).
const ONE_MINUS_EPSILON: f32 = 1.0 - EPSILON;

/// `p` clipped to `[lo, hi]` and whether the clip lets the gradient through (`lo <= p <= hi`).
fn clip(p: f32, lo: f32, hi: f32) -> (f32, bool) {
    (p.clamp(lo, hi), (lo..=hi).contains(&p))
}

/// The log-sum-exp of a row, computed stably; when `exps` is given, `e^(x_c - max)` is left in
/// it (each exponential is computed once, in f32, and summed in f64). Returns
/// `(logsumexp, sum_c e^(x_c - max))`.
fn log_sum_exp(x: &[f32], exps: Option<&mut [f32]>) -> (f64, f64) {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = match exps {
        Some(exps) => {
            for (e, &v) in exps.iter_mut().zip(x) {
                *e = (v - m).exp();
            }
            exps.iter().map(|&e| f64::from(e)).sum()
        }
        None => x.iter().map(|&v| f64::from((v - m).exp())).sum(),
    };
    (f64::from(m) + sum.ln(), sum)
}

/// Binary cross-entropy (Keras' `BinaryCrossentropy`, `"binary_crossentropy"`), averaged over
/// the last axis.
///
/// With labels `z` (smoothed to `z (1 - s) + s / 2` when `label_smoothing = s > 0`), per element:
/// - from probabilities (default): `u = clip(p, EPSILON, 1 - EPSILON)`,
///   `-(z ln u + (1 - z) ln(1 - u))`; gradient `(u - z) / (u (1 - u))` inside the clip range,
///   0 outside;
/// - from logits `x`: the stable `max(x, 0) - x z + ln(1 + e^-|x|)`; gradient `sigmoid(x) - z`.
///
/// Per sample the mean over the last axis (gradients divided by `C`).
///
/// Shapes: `y_true` and `y_pred` both `[..., C]` (or `[batch]` against `[batch, 1]`); per-sample
/// output `[...]`.
///
/// # Errors
/// [`LossError::ShapeMismatch`] naming both shapes, [`LossError::NonFinite`], and
/// [`LossError::InvalidConfig`] for a label smoothing outside `[0, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryCrossentropy {
    name: String,
    reduction: Reduction,
    from_logits: bool,
    label_smoothing: f32,
}

impl BinaryCrossentropy {
    /// Keras' defaults: from probabilities, no label smoothing, name `"binary_crossentropy"`.
    pub fn new() -> Self {
        BinaryCrossentropy {
            name: "binary_crossentropy".into(),
            reduction: Reduction::default(),
            from_logits: false,
            label_smoothing: 0.0,
        }
    }

    /// Whether `y_pred` holds logits (default false: probabilities).
    pub fn from_logits(mut self, from_logits: bool) -> Self {
        self.from_logits = from_logits;
        self
    }

    /// Label smoothing `s` in `[0, 1]` (default 0): labels become `z (1 - s) + s / 2`.
    pub fn label_smoothing(mut self, smoothing: f32) -> Self {
        self.label_smoothing = smoothing;
        self
    }
}

loss_common!(BinaryCrossentropy, "binary_crossentropy");

impl Loss for BinaryCrossentropy {
    fn per_sample<'t>(&self, y_true: &Tensor, y_pred: &Var<'t>) -> Result<Var<'t>> {
        check_label_smoothing(&self.name, self.label_smoothing)?;
        let (t, p) = align_same_shape(&self.name, y_true, y_pred)?;
        let s = self.label_smoothing;
        let smooth = move |z: f32| f64::from(if s > 0.0 { z * (1.0 - s) + 0.5 * s } else { z });
        if self.from_logits {
            mean_of_elements("binary_crossentropy", &t, &p, move |z, x| {
                let (z, x) = (smooth(z), f64::from(x));
                let e = (-x.abs()).exp();
                let sigmoid = if x >= 0.0 {
                    1.0 / (1.0 + e)
                } else {
                    e / (1.0 + e)
                };
                (x.max(0.0) - x * z + e.ln_1p(), sigmoid - z)
            })
        } else {
            mean_of_elements("binary_crossentropy", &t, &p, move |z, p| {
                let z = smooth(z);
                let (u, pass) = clip(p, EPSILON, ONE_MINUS_EPSILON);
                let (u, v) = (f64::from(u), f64::from(1.0 - u));
                let loss = -(z * u.ln() + (1.0 - z) * v.ln());
                (loss, if pass { (1.0 - z) / v - z / u } else { 0.0 })
            })
        }
    }

    fn logits_counterpart(&self) -> Option<Box<dyn Loss>> {
        (!self.from_logits).then(|| Box::new(self.clone().from_logits(true)) as Box<dyn Loss>)
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn reduction(&self) -> Reduction {
        self.reduction
    }

    fn config(&self) -> LossConfig {
        LossConfig {
            from_logits: Some(self.from_logits),
            label_smoothing: Some(self.label_smoothing),
            ..LossConfig::base("BinaryCrossentropy", &self.name, self.reduction)
        }
    }
}

/// Categorical cross-entropy against one-hot (or probability) labels (Keras'
/// `CategoricalCrossentropy`, `"categorical_crossentropy"`), classes on the last axis.
///
/// Labels `y` are smoothed to `y (1 - s) + s / C` when `label_smoothing = s > 0`. Per sample:
/// - from probabilities (default): as Keras, the row is first normalised, `q = p / sum(p)`, then
///   clipped, `u = clip(q, EPSILON, 1 - EPSILON)`; `loss = -sum_c y_c ln u_c`. The gradient goes
///   through the normalisation: with `a_c = -y_c / u_c` inside the clip range (0 outside),
///   `d loss / d p_j = (a_j - sum_c a_c q_c) / sum(p)`;
/// - from logits `x` (fused, stable): `loss = sum_c y_c (logsumexp(x) - x_c)`; gradient
///   `softmax(x) sum_c y_c - y`, i.e. `softmax(x) - y` for labels that sum to 1.
///
/// Shapes: `y_true` and `y_pred` both `[..., C]`; per-sample output `[...]`.
///
/// # Errors
/// [`LossError::ShapeMismatch`] naming both shapes, [`LossError::NonFinite`],
/// [`LossError::InvalidConfig`] for a label smoothing outside `[0, 1]` or (from probabilities) a
/// row of predictions whose sum is not positive.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoricalCrossentropy {
    name: String,
    reduction: Reduction,
    from_logits: bool,
    label_smoothing: f32,
}

impl CategoricalCrossentropy {
    /// Keras' defaults: from probabilities, no label smoothing, name `"categorical_crossentropy"`.
    pub fn new() -> Self {
        CategoricalCrossentropy {
            name: "categorical_crossentropy".into(),
            reduction: Reduction::default(),
            from_logits: false,
            label_smoothing: 0.0,
        }
    }

    /// Whether `y_pred` holds logits (default false: probabilities).
    pub fn from_logits(mut self, from_logits: bool) -> Self {
        self.from_logits = from_logits;
        self
    }

    /// Label smoothing `s` in `[0, 1]` (default 0): labels become `y (1 - s) + s / C`.
    pub fn label_smoothing(mut self, smoothing: f32) -> Self {
        self.label_smoothing = smoothing;
        self
    }
}

loss_common!(CategoricalCrossentropy, "categorical_crossentropy");

impl Loss for CategoricalCrossentropy {
    fn per_sample<'t>(&self, y_true: &Tensor, y_pred: &Var<'t>) -> Result<Var<'t>> {
        check_label_smoothing(&self.name, self.label_smoothing)?;
        let (t, p) = align_same_shape(&self.name, y_true, y_pred)?;
        let classes = p.shape()[p.ndim() - 1];
        let s = self.label_smoothing;
        let smooth = move |y: f32| {
            f64::from(if s > 0.0 {
                y * (1.0 - s) + s / classes as f32
            } else {
                y
            })
        };
        if self.from_logits {
            return per_row("categorical_crossentropy", &t, &p, move |y, x, mut grad| {
                let (lse, sum) = log_sum_exp(x, grad.as_deref_mut());
                if let Some(grad) = grad {
                    // grad holds e^(x - max): softmax = grad / sum.
                    let scale = y.iter().map(|&y| smooth(y)).sum::<f64>() / sum;
                    for (g, &y) in grad.iter_mut().zip(y) {
                        *g = (f64::from(*g) * scale - smooth(y)) as f32;
                    }
                }
                let loss = y
                    .iter()
                    .zip(x)
                    .map(|(&y, &x)| smooth(y) * (lse - f64::from(x)));
                loss.sum()
            });
        }
        check_positive_rows(&self.name, p.value(), classes)?;
        per_row("categorical_crossentropy", &t, &p, move |y, p, grad| {
            let sum: f64 = p.iter().map(|&v| f64::from(v)).sum();
            // For each class with a non-zero label (the others contribute 0 since u >= EPSILON):
            // q = p / sum, u = clip(q), the loss term, and a = d loss / d q through the clip.
            let term = |y: f32, v: f32| {
                let q = f64::from(v) / sum;
                let (u, pass) = clip(q as f32, EPSILON, ONE_MINUS_EPSILON);
                let (y, u) = (smooth(y), f64::from(u));
                (-y * u.ln(), if pass { -y / u } else { 0.0 }, q)
            };
            let (mut loss, mut dot) = (0.0, 0.0);
            for (&y, &v) in y.iter().zip(p).filter(|(y, _)| **y != 0.0 || s > 0.0) {
                let (l, a, q) = term(y, v);
                loss += l;
                dot += a * q;
            }
            if let Some(grad) = grad {
                // Through q = p / sum(p): d loss / d p_j = (a_j - sum_c a_c q_c) / sum(p).
                for (g, (&y, &v)) in grad.iter_mut().zip(y.iter().zip(p)) {
                    let a = if y != 0.0 || s > 0.0 {
                        term(y, v).1
                    } else {
                        0.0
                    };
                    *g = ((a - dot) / sum) as f32;
                }
            }
            loss
        })
    }

    fn logits_counterpart(&self) -> Option<Box<dyn Loss>> {
        (!self.from_logits).then(|| Box::new(self.clone().from_logits(true)) as Box<dyn Loss>)
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn reduction(&self) -> Reduction {
        self.reduction
    }

    fn config(&self) -> LossConfig {
        LossConfig {
            from_logits: Some(self.from_logits),
            label_smoothing: Some(self.label_smoothing),
            ..LossConfig::base("CategoricalCrossentropy", &self.name, self.reduction)
        }
    }
}

/// An error naming the first row of `p` (rows along the last axis) whose sum is not positive.
fn check_positive_rows(op: &str, p: &Tensor, classes: usize) -> Result<()> {
    let p = p.to_contiguous();
    let p = p.as_slice().expect("contiguous");
    for (r, row) in p.chunks(classes).enumerate() {
        let sum: f64 = row.iter().map(|&v| f64::from(v)).sum();
        if sum <= 0.0 {
            return Err(LossError::InvalidConfig {
                op: op.to_string(),
                message: format!(
                    "expected probabilities with a positive sum in every row of y_pred, \
                     got a sum of {sum} in row {r} (use from_logits for logits)"
                ),
            });
        }
    }
    Ok(())
}

/// Categorical cross-entropy against integer class ids (Keras'
/// `SparseCategoricalCrossentropy`, `"sparse_categorical_crossentropy"`).
///
/// For a sample with class `k`:
/// - from probabilities (default): as Keras, `u = clip(p, EPSILON, 1 - EPSILON)` and
///   `loss = -ln(u_k / sum_c u_c)` (the log of the clipped probabilities fed to a softmax
///   cross-entropy); gradient `1 / sum(u) - [c = k] / u_k` inside the clip range, 0 outside;
/// - from logits `x` (fused, stable): `loss = logsumexp(x) - x_k`; gradient
///   `softmax(x) - onehot(k)`.
///
/// With [`ignore_class`](SparseCategoricalCrossentropy::ignore_class), samples of that label
/// get a loss and a gradient of 0 and are left out of the mean.
///
/// Shapes: `y_pred` `[..., C]`; `y_true` the class ids as `f32`, of shape `[...]` or `[..., 1]`;
/// per-sample output `[...]`.
///
/// # Errors
/// [`LossError::ShapeMismatch`] naming both shapes, [`LossError::LabelOutOfRange`] for a label
/// that is not a whole number in `0..C` (naming it and its position), [`LossError::NonFinite`].
#[derive(Debug, Clone, PartialEq)]
pub struct SparseCategoricalCrossentropy {
    name: String,
    reduction: Reduction,
    from_logits: bool,
    ignore_class: Option<i64>,
}

impl SparseCategoricalCrossentropy {
    /// Keras' defaults: from probabilities, name `"sparse_categorical_crossentropy"`.
    pub fn new() -> Self {
        SparseCategoricalCrossentropy {
            name: "sparse_categorical_crossentropy".into(),
            reduction: Reduction::default(),
            from_logits: false,
            ignore_class: None,
        }
    }

    /// A class id to ignore (Keras' `ignore_class`, e.g. a "void" class in segmentation; it may
    /// lie outside `0..C`): samples with that label contribute no loss and no gradient, and the
    /// default reduction averages over the other samples only. Default `None`.
    pub fn ignore_class(mut self, class: Option<i64>) -> Self {
        self.ignore_class = class;
        self
    }

    /// Whether `y_pred` holds logits (default false: probabilities).
    pub fn from_logits(mut self, from_logits: bool) -> Self {
        self.from_logits = from_logits;
        self
    }
}

loss_common!(
    SparseCategoricalCrossentropy,
    "sparse_categorical_crossentropy"
);

impl SparseCategoricalCrossentropy {
    /// The class ids (aligned to `[...]`), the predictions (`[..., C]`) and `C`, checked.
    fn labels<'t>(&self, y_true: &Tensor, y_pred: &Var<'t>) -> Result<(Tensor, Var<'t>, usize)> {
        let (t, p) = align(&self.name, y_true, y_pred)?;
        let t = match t.shape().split_last() {
            Some((&1, lead)) if t.ndim() == p.ndim() => reshaped(&t, lead)?,
            _ => t,
        };
        match p.shape().split_last() {
            Some((&c, lead)) if c > 0 && lead == t.shape() => {
                check_class_ids(&self.name, &t, c, self.ignored())?;
                Ok((t, p, c))
            }
            _ => Err(LossError::ShapeMismatch {
                op: self.name.clone(),
                y_true: y_true.shape().to_vec(),
                y_pred: y_pred.shape().to_vec(),
                expected: "y_pred [..., C] with C >= 1 and class ids y_true [...] or [..., 1]"
                    .into(),
            }),
        }
    }

    /// The ignored class id as a label value.
    fn ignored(&self) -> Option<f32> {
        self.ignore_class.map(|k| k as f32)
    }
}

impl Loss for SparseCategoricalCrossentropy {
    fn per_sample<'t>(&self, y_true: &Tensor, y_pred: &Var<'t>) -> Result<Var<'t>> {
        let (t, p, _) = self.labels(y_true, y_pred)?;
        let ignored = self.ignored();
        let op = "sparse_categorical_crossentropy";
        if self.from_logits {
            return per_row(op, &t, &p, move |k, x, mut grad| {
                if Some(k[0]) == ignored {
                    return 0.0;
                }
                let k = k[0] as usize;
                let (lse, sum) = log_sum_exp(x, grad.as_deref_mut());
                if let Some(grad) = grad {
                    // grad holds e^(x - max): softmax = grad / sum.
                    grad.iter_mut()
                        .for_each(|g| *g = (f64::from(*g) / sum) as f32);
                    grad[k] -= 1.0;
                }
                lse - f64::from(x[k])
            });
        }
        per_row(op, &t, &p, move |k, p, grad| {
            if Some(k[0]) == ignored {
                return 0.0;
            }
            let k = k[0] as usize;
            let u = |v: f32| clip(v, EPSILON, ONE_MINUS_EPSILON);
            let sum: f64 = p.iter().map(|&v| f64::from(u(v).0)).sum();
            let uk = f64::from(u(p[k]).0);
            if let Some(grad) = grad {
                for (c, (g, &v)) in grad.iter_mut().zip(p).enumerate() {
                    if u(v).1 {
                        let own = if c == k { 1.0 / uk } else { 0.0 };
                        *g = (1.0 / sum - own) as f32;
                    }
                }
            }
            sum.ln() - uk.ln()
        })
    }

    /// As the provided method; with `ignore_class`, the samples of that class are masked as in
    /// Keras' `apply_mask`: their weight becomes 0 and, for
    /// [`Reduction::SumOverBatchSize`], the others' weight `total / valid`, so that the loss is
    /// the mean over the valid samples.
    fn call_weighted<'t>(
        &self,
        y_true: &Tensor,
        y_pred: &Var<'t>,
        sample_weight: Option<&Tensor>,
    ) -> Result<Var<'t>> {
        let values = self.per_sample(y_true, y_pred)?;
        let Some(ignored) = self.ignored() else {
            return reduce_weighted_values(&self.name, values, sample_weight, self.reduction);
        };
        let (labels, _, _) = self.labels(y_true, y_pred)?;
        let mut mask = labels.map(|y| if y == ignored { 0.0 } else { 1.0 });
        if self.reduction == Reduction::SumOverBatchSize {
            let valid = mask.sum_all();
            let scale = if valid > 0.0 {
                mask.len() as f32 / valid
            } else {
                0.0
            };
            mask = mask.mul_scalar(scale);
        }
        let weights = match sample_weight {
            None => mask,
            Some(w) => {
                check_finite(&self.name, "sample_weight", w)?;
                let (ms, ws) = squeeze_or_expand(mask.shape(), w.shape());
                let product = reshaped(&mask, &ms)?.mul(&reshaped(w, &ws)?);
                product.map_err(|_| LossError::SampleWeightShape {
                    op: self.name.clone(),
                    values: values.shape().to_vec(),
                    weights: w.shape().to_vec(),
                })?
            }
        };
        reduce_weighted_values(&self.name, values, Some(&weights), self.reduction)
    }

    fn logits_counterpart(&self) -> Option<Box<dyn Loss>> {
        (!self.from_logits).then(|| Box::new(self.clone().from_logits(true)) as Box<dyn Loss>)
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn reduction(&self) -> Reduction {
        self.reduction
    }

    fn config(&self) -> LossConfig {
        LossConfig {
            from_logits: Some(self.from_logits),
            ignore_class: self.ignore_class,
            ..LossConfig::base("SparseCategoricalCrossentropy", &self.name, self.reduction)
        }
    }
}

/// An error for the first label that is not a whole number in `0..classes`.
/// `ignored` (the ignored class, if any) is accepted wherever it is.
fn check_class_ids(op: &str, labels: &Tensor, classes: usize, ignored: Option<f32>) -> Result<()> {
    let valid = |y: f32| y >= 0.0 && y.fract() == 0.0 && (y as usize) < classes;
    let bad = labels
        .to_vec()
        .into_iter()
        .enumerate()
        .find(|&(_, y)| !valid(y) && Some(y) != ignored);
    match bad {
        None => Ok(()),
        Some((index, label)) => Err(LossError::LabelOutOfRange {
            op: op.to_string(),
            label,
            index,
            classes,
        }),
    }
}

/// Kullback-Leibler divergence (Keras' `KLDivergence`, `"kl_divergence"`, `"kld"`).
///
/// With `t = clip(y_true, EPSILON, 1)` and `u = clip(y_pred, EPSILON, 1)`, per sample
/// `loss = sum_c t_c ln(t_c / u_c)` over the last axis; gradient `-t_c / u_c` where
/// `EPSILON <= y_pred <= 1`, 0 outside.
///
/// Shapes: `y_true` and `y_pred` both `[..., C]`; per-sample output `[...]`.
///
/// # Errors
/// [`LossError::ShapeMismatch`] naming both shapes, [`LossError::NonFinite`].
#[derive(Debug, Clone, PartialEq)]
pub struct KLDivergence {
    name: String,
    reduction: Reduction,
}

impl KLDivergence {
    /// Keras' defaults: name `"kl_divergence"`, reduction `"sum_over_batch_size"`.
    pub fn new() -> Self {
        KLDivergence {
            name: "kl_divergence".into(),
            reduction: Reduction::default(),
        }
    }
}

loss_common!(KLDivergence, "kl_divergence");

impl Loss for KLDivergence {
    fn per_sample<'t>(&self, y_true: &Tensor, y_pred: &Var<'t>) -> Result<Var<'t>> {
        let (t, p) = align_same_shape(&self.name, y_true, y_pred)?;
        per_row("kl_divergence", &t, &p, |t, p, mut grad| {
            let mut loss = 0.0;
            for (c, (&t, &p)) in t.iter().zip(p).enumerate() {
                let t = f64::from(t.clamp(EPSILON, 1.0));
                let (u, pass) = clip(p, EPSILON, 1.0);
                let u = f64::from(u);
                loss += t * (t / u).ln();
                if let Some(grad) = grad.as_deref_mut() {
                    grad[c] = if pass { (-t / u) as f32 } else { 0.0 };
                }
            }
            loss
        })
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn reduction(&self) -> Reduction {
        self.reduction
    }

    fn config(&self) -> LossConfig {
        LossConfig::base("KLDivergence", &self.name, self.reduction)
    }
}
