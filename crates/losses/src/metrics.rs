//! Metrics as stateful objects (Keras' `keras.metrics`): accuracies, regression errors, and the
//! weighted running [`Mean`] behind them and behind the loss tracker.
//!
//! Every built-in metric is a [`MeanMetricWrapper`]: a stateless per-sample function
//! ([`MetricFn`], Keras' `keras.metrics.binary_accuracy` and friends) feeding a [`Mean`]. As in
//! Keras, the state is a weighted total and a count, both `f32`, and
//! [`result`](Metric::result) is `total / count` (0 before any update).
//!
//! ```
//! use gradus_losses::metrics::{Metric, MeanMetricWrapper, MetricFn};
//! use gradus_tensor::Tensor;
//!
//! let mut acc = MeanMetricWrapper::new(MetricFn::SparseCategoricalAccuracy);
//! let y_true = Tensor::from_vec(vec![2.0, 1.0], &[2])?;
//! let y_pred = Tensor::from_vec(vec![0.1, 0.6, 0.3, 0.05, 0.95, 0.0], &[2, 3])?;
//! acc.update_state(&y_true, &y_pred, None)?;
//! assert_eq!(acc.result(), 0.5);
//! let w = Tensor::from_vec(vec![0.7, 0.3], &[2])?;
//! acc.reset_state();
//! acc.update_state(&y_true, &y_pred, Some(&w))?;
//! assert!((acc.result() - 0.3).abs() < 1e-7);
//! # Ok::<(), gradus_losses::LossError>(())
//! ```

use gradus_autograd::Var;
use gradus_tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{LossError, Result};
use crate::loss::Loss;
use crate::reduction::{check_finite, reshaped, squeeze_or_expand};
use crate::regression::{MeanAbsoluteError, MeanSquaredError};

/// A stateful metric: accumulate batches with [`update_state`](Metric::update_state), read the
/// value with [`result`](Metric::result), start over with [`reset_state`](Metric::reset_state).
pub trait Metric: std::fmt::Debug + Send + Sync {
    /// The metric's name, the key it has in logs and histories (e.g. `"accuracy"`).
    fn name(&self) -> &str;

    /// Accumulates one batch, with optional sample weights (a `[batch]` tensor, or any shape that
    /// fits the per-sample values as in [`Mean::update_state`]).
    ///
    /// # Errors
    /// Shapes that do not fit (naming both), non-finite labels or predictions, a bad
    /// configuration: see each metric.
    fn update_state(
        &mut self,
        y_true: &Tensor,
        y_pred: &Tensor,
        sample_weight: Option<&Tensor>,
    ) -> Result<()>;

    /// The value accumulated since the last reset.
    fn result(&self) -> f32;

    /// Forgets every batch seen.
    fn reset_state(&mut self);

    /// The configuration [`metric_from_config`] turns back into this metric.
    fn config(&self) -> MetricConfig;
}

/// The weighted running mean (Keras' `keras.metrics.Mean`), used as the loss tracker and inside
/// every [`MeanMetricWrapper`].
///
/// State: `total` and `count` (`f32`); `result = total / count`, or 0 while `count` is 0.
///
/// ```
/// use gradus_losses::metrics::Mean;
/// use gradus_tensor::Tensor;
///
/// let mut m = Mean::new("loss");
/// m.update_state(&Tensor::from_vec(vec![1.0, 3.0, 5.0, 7.0], &[4])?, None)?;
/// assert_eq!(m.result(), 4.0);
/// m.reset_state();
/// let w = Tensor::from_vec(vec![1.0, 1.0, 0.0, 0.0], &[4])?;
/// m.update_state(&Tensor::from_vec(vec![1.0, 3.0, 5.0, 7.0], &[4])?, Some(&w))?;
/// assert_eq!(m.result(), 2.0);
/// // The loss tracker: a batch's scalar loss weighted by its batch size.
/// m.reset_state();
/// m.update_scalar(0.5, 32.0);
/// m.update_scalar(1.0, 8.0);
/// assert_eq!(m.result(), 0.6);
/// # Ok::<(), gradus_losses::LossError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Mean {
    name: String,
    total: f32,
    count: f32,
}

impl Mean {
    /// An empty mean named `name` (Keras' default name is `"mean"`).
    pub fn new(name: impl Into<String>) -> Mean {
        Mean {
            name: name.into(),
            total: 0.0,
            count: 0.0,
        }
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Accumulates `values` with optional weights, as Keras' `Mean.update_state`.
    ///
    /// Without weights: values of shape `[batch, ...]` are averaged over all but the first axis,
    /// `total += sum`, `count += batch` (a scalar counts as one sample).
    /// With weights `w`: values and weights are aligned (a `[batch]` weight fits `[batch, 1]`
    /// values), values with more axes than `w` are averaged over the extra trailing axes, `w`
    /// is broadcast to their shape, and `total += sum(mean_samplewise(v w))`,
    /// `count += sum(mean_samplewise(w))`: for values and weights of the same shape,
    /// `total / count` is `sum(v w) / sum(w)`. A scalar weight with a batch of values weights
    /// the batch's mean.
    ///
    /// # Errors
    /// [`LossError::SampleWeightShape`] when the weights do not broadcast to the values;
    /// [`LossError::NonFinite`] for a non-finite weight. Non-finite values are accumulated (a
    /// NaN loss shows as NaN, as in Keras).
    pub fn update_state(&mut self, values: &Tensor, sample_weight: Option<&Tensor>) -> Result<()> {
        let (values, count) = match sample_weight {
            None => {
                let count = values.shape().first().map_or(1.0, |&b| b as f32);
                (values.clone(), count)
            }
            Some(w) => {
                check_finite(&self.name, "sample_weight", w)?;
                let bad = || LossError::SampleWeightShape {
                    op: self.name.clone(),
                    values: values.shape().to_vec(),
                    weights: w.shape().to_vec(),
                };
                let (vs, ws) = squeeze_or_expand(values.shape(), w.shape());
                let mut v = reshaped(values, &vs)?;
                let w = reshaped(w, &ws)?;
                if v.ndim() > w.ndim() {
                    v = v.mean_axes(&axes(w.ndim(), v.ndim()), false)?;
                }
                let w_full = w.broadcast_to(v.shape()).map_err(|_| bad())?;
                let count = mean_trailing(&w_full)?.sum_all();
                (v.mul(&w_full)?, count)
            }
        };
        self.total += mean_trailing(&values)?.sum_all();
        self.count += count;
        Ok(())
    }

    /// Accumulates one value with a weight: `total += value * weight`, `count += weight` (the
    /// loss tracker's update, weighting a batch's loss by its size).
    pub fn update_scalar(&mut self, value: f32, weight: f32) {
        self.total += value * weight;
        self.count += weight;
    }

    /// `total / count`, or 0 while `count` is 0.
    pub fn result(&self) -> f32 {
        if self.count == 0.0 {
            0.0
        } else {
            self.total / self.count
        }
    }

    /// The weighted total accumulated so far.
    pub fn total(&self) -> f32 {
        self.total
    }

    /// The (weighted) count accumulated so far.
    pub fn count(&self) -> f32 {
        self.count
    }

    /// Back to `total = count = 0`.
    pub fn reset_state(&mut self) {
        self.total = 0.0;
        self.count = 0.0;
    }
}

/// The axes `from..to` as `isize`.
fn axes(from: usize, to: usize) -> Vec<isize> {
    (from..to).map(|a| a as isize).collect()
}

/// `t` averaged over every axis but the first (unchanged when it has at most one axis).
fn mean_trailing(t: &Tensor) -> Result<Tensor> {
    if t.ndim() > 1 {
        Ok(t.mean_axes(&axes(1, t.ndim()), false)?)
    } else {
        Ok(t.clone())
    }
}

/// Keras' stateless metric functions: each maps `(y_true, y_pred)` to per-sample values that a
/// [`MeanMetricWrapper`] averages.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MetricFn {
    /// `y_true == y_pred` exactly, averaged over the last axis (Keras' `Accuracy`, which is not
    /// what `metrics=["accuracy"]` gives: see [`compile_metric`]).
    Accuracy,
    /// `y_true == (y_pred > threshold)`, averaged over the last axis (Keras' `BinaryAccuracy`;
    /// default threshold 0.5, which must lie in `(0, 1)`).
    BinaryAccuracy {
        /// The decision threshold.
        threshold: f32,
    },
    /// `argmax(y_true) == argmax(y_pred)` over the last axis (first maximum on ties).
    CategoricalAccuracy,
    /// `y_true == argmax(y_pred)` with class ids `y_true` of shape `[...]` or `[..., 1]` (as in
    /// Keras, a label that is not a class id simply never matches).
    SparseCategoricalAccuracy,
    /// Whether the class `argmax(y_true)` is among the `k` largest predictions (TensorFlow's
    /// `in_top_k`: fewer than `k` classes score strictly higher, so ties at the boundary count as
    /// in). Default `k = 5`.
    TopKCategoricalAccuracy {
        /// How many of the top predictions count.
        k: usize,
    },
    /// [`TopKCategoricalAccuracy`](MetricFn::TopKCategoricalAccuracy) with class ids `y_true`
    /// of shape `[...]` or `[..., 1]` (Keras' `SparseTopKCategoricalAccuracy`; default `k = 5`).
    /// A label that is not a class id of `y_pred` is never in the top `k`.
    SparseTopKCategoricalAccuracy {
        /// How many of the top predictions count.
        k: usize,
    },
    /// `mean_c (y_pred - y_true)^2` over the last axis.
    MeanSquaredError,
    /// `mean_c |y_pred - y_true|` over the last axis.
    MeanAbsoluteError,
}

impl MetricFn {
    /// Keras' class name, e.g. `"BinaryAccuracy"`.
    pub fn class_name(&self) -> &'static str {
        match self {
            MetricFn::Accuracy => "Accuracy",
            MetricFn::BinaryAccuracy { .. } => "BinaryAccuracy",
            MetricFn::CategoricalAccuracy => "CategoricalAccuracy",
            MetricFn::SparseCategoricalAccuracy => "SparseCategoricalAccuracy",
            MetricFn::TopKCategoricalAccuracy { .. } => "TopKCategoricalAccuracy",
            MetricFn::SparseTopKCategoricalAccuracy { .. } => "SparseTopKCategoricalAccuracy",
            MetricFn::MeanSquaredError => "MeanSquaredError",
            MetricFn::MeanAbsoluteError => "MeanAbsoluteError",
        }
    }

    /// Keras' default metric name, e.g. `"binary_accuracy"`.
    pub fn default_name(&self) -> &'static str {
        match self {
            MetricFn::Accuracy => "accuracy",
            MetricFn::BinaryAccuracy { .. } => "binary_accuracy",
            MetricFn::CategoricalAccuracy => "categorical_accuracy",
            MetricFn::SparseCategoricalAccuracy => "sparse_categorical_accuracy",
            MetricFn::TopKCategoricalAccuracy { .. } => "top_k_categorical_accuracy",
            MetricFn::SparseTopKCategoricalAccuracy { .. } => "sparse_top_k_categorical_accuracy",
            MetricFn::MeanSquaredError => "mean_squared_error",
            MetricFn::MeanAbsoluteError => "mean_absolute_error",
        }
    }

    /// The per-sample values of this function: the shape of `y_pred` without its last axis
    /// (class ids `y_true` for the sparse accuracy).
    ///
    /// # Errors
    /// [`LossError::ShapeMismatch`] naming both shapes; [`LossError::NonFinite`] for a NaN or
    /// infinity in either input; [`LossError::InvalidConfig`] for a binary threshold outside
    /// `(0, 1)`.
    pub fn call(&self, y_true: &Tensor, y_pred: &Tensor) -> Result<Tensor> {
        let op = self.default_name();
        check_finite(op, "y_true", y_true)?;
        check_finite(op, "y_pred", y_pred)?;
        match *self {
            MetricFn::Accuracy => equal_mean(op, y_true, y_pred, |p| p),
            MetricFn::BinaryAccuracy { threshold } => {
                if !(threshold > 0.0 && threshold < 1.0) {
                    return Err(LossError::InvalidConfig {
                        op: op.into(),
                        message: format!("expected a threshold in (0, 1), got {threshold}"),
                    });
                }
                equal_mean(op, y_true, y_pred, |p| indicator(p > threshold))
            }
            MetricFn::CategoricalAccuracy => {
                let (t, c) = same_rows(op, y_true, y_pred)?;
                per_row_values(y_pred, |r, row| {
                    indicator(argmax(&t[r * c..(r + 1) * c]) == argmax(row))
                })
            }
            MetricFn::TopKCategoricalAccuracy { k } => {
                let (t, c) = same_rows(op, y_true, y_pred)?;
                per_row_values(y_pred, |r, row| {
                    let target = row[argmax(&t[r * c..(r + 1) * c])];
                    indicator(row.iter().filter(|&&v| v > target).count() < k)
                })
            }
            MetricFn::SparseCategoricalAccuracy => {
                let (labels, p) = sparse_rows(op, y_true, y_pred)?;
                per_row_values(&p, |r, row| indicator(labels[r] == argmax(row) as f32))
            }
            MetricFn::SparseTopKCategoricalAccuracy { k } => {
                let (labels, p) = sparse_rows(op, y_true, y_pred)?;
                per_row_values(&p, |r, row| {
                    let label = labels[r];
                    let valid =
                        label >= 0.0 && label.fract() == 0.0 && (label as usize) < row.len();
                    let in_top = valid && {
                        let target = row[label as usize];
                        row.iter().filter(|&&v| v > target).count() < k
                    };
                    indicator(in_top)
                })
            }
            MetricFn::MeanSquaredError => {
                let p = Var::constant(y_pred.clone());
                Ok(MeanSquaredError::new().per_sample(y_true, &p)?.into_value())
            }
            MetricFn::MeanAbsoluteError => {
                let p = Var::constant(y_pred.clone());
                Ok(MeanAbsoluteError::new()
                    .per_sample(y_true, &p)?
                    .into_value())
            }
        }
    }
}

/// 1 for true, 0 for false.
fn indicator(b: bool) -> f32 {
    f32::from(u8::from(b))
}

/// A shape error for a metric.
fn mismatch(op: &str, y_true: &Tensor, y_pred: &Tensor, expected: &str) -> LossError {
    LossError::ShapeMismatch {
        op: op.to_string(),
        y_true: y_true.shape().to_vec(),
        y_pred: y_pred.shape().to_vec(),
        expected: expected.to_string(),
    }
}

/// The index of the first maximum of a non-empty row.
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// The class ids of `y_true` (shape `[...]` or `[..., 1]`) and `y_pred` shaped `[..., C]`,
/// `C >= 1`, after Keras' rank alignment.
fn sparse_rows(op: &str, y_true: &Tensor, y_pred: &Tensor) -> Result<(Vec<f32>, Tensor)> {
    let (ts, ps) = squeeze_or_expand(y_true.shape(), y_pred.shape());
    let ts = match ts.split_last() {
        Some((&1, lead)) if ts.len() == ps.len() => lead.to_vec(),
        _ => ts,
    };
    if !matches!(ps.split_last(), Some((&c, lead)) if c > 0 && lead == ts) {
        let expected = "y_pred [..., C] with C >= 1 and class ids y_true [...] or [..., 1]";
        return Err(mismatch(op, y_true, y_pred, expected));
    }
    Ok((y_true.to_vec(), reshaped(y_pred, &ps)?))
}

/// `y_true == map(y_pred)` elementwise after aligning ranks, averaged over the last axis.
fn equal_mean(
    op: &str,
    y_true: &Tensor,
    y_pred: &Tensor,
    map: impl Fn(f32) -> f32,
) -> Result<Tensor> {
    let (ts, ps) = squeeze_or_expand(y_true.shape(), y_pred.shape());
    if ts != ps || ps.last() == Some(&0) {
        let expected =
            "the same shape [..., C] with C >= 1 (a [batch] operand also fits [batch, 1])";
        return Err(mismatch(op, y_true, y_pred, expected));
    }
    let eq: Vec<f32> = y_true
        .to_vec()
        .into_iter()
        .zip(y_pred.to_vec())
        .map(|(t, p)| indicator(t == map(p)))
        .collect();
    let eq = Tensor::from_vec(eq, &ts)?;
    if eq.ndim() == 0 {
        Ok(eq)
    } else {
        Ok(eq.mean_axis(-1, false)?)
    }
}

/// The contiguous values of `y_true` when it has the shape of `y_pred`, `[..., C]` with `C >= 1`,
/// and `C`.
fn same_rows(op: &str, y_true: &Tensor, y_pred: &Tensor) -> Result<(Vec<f32>, usize)> {
    match y_pred.shape().last() {
        Some(&c) if c > 0 && y_true.shape() == y_pred.shape() => Ok((y_true.to_vec(), c)),
        _ => Err(mismatch(
            op,
            y_true,
            y_pred,
            "the same shape [..., C] with C >= 1",
        )),
    }
}

/// `f(row index, row)` for each row (last axis, non-empty) of `p`, shaped as `p` without its
/// last axis.
fn per_row_values(p: &Tensor, f: impl Fn(usize, &[f32]) -> f32) -> Result<Tensor> {
    let (&c, lead) = p.shape().split_last().expect("callers check the rank");
    let p = p.to_contiguous();
    let p = p.as_slice().expect("contiguous");
    let values = p.chunks(c).enumerate().map(|(r, row)| f(r, row)).collect();
    Ok(Tensor::from_vec(values, lead)?)
}

/// A [`MetricFn`] averaged over everything seen (Keras' `MeanMetricWrapper`): every built-in
/// metric.
///
/// `update_state` computes the per-sample values of the function and feeds them, with the
/// sample weights, to a [`Mean`].
#[derive(Debug, Clone, PartialEq)]
pub struct MeanMetricWrapper {
    function: MetricFn,
    mean: Mean,
}

impl MeanMetricWrapper {
    /// `function` averaged, named by its Keras default name (e.g. `"binary_accuracy"`).
    pub fn new(function: MetricFn) -> MeanMetricWrapper {
        MeanMetricWrapper {
            function,
            mean: Mean::new(function.default_name()),
        }
    }

    /// Renames the metric (its key in logs and histories).
    pub fn with_name(mut self, name: impl Into<String>) -> MeanMetricWrapper {
        self.mean.name = name.into();
        self
    }

    /// The wrapped function.
    pub fn function(&self) -> MetricFn {
        self.function
    }
}

impl Metric for MeanMetricWrapper {
    fn name(&self) -> &str {
        &self.mean.name
    }

    fn update_state(
        &mut self,
        y_true: &Tensor,
        y_pred: &Tensor,
        sample_weight: Option<&Tensor>,
    ) -> Result<()> {
        let values = self.function.call(y_true, y_pred)?;
        self.mean.update_state(&values, sample_weight)
    }

    fn result(&self) -> f32 {
        self.mean.result()
    }

    fn reset_state(&mut self) {
        self.mean.reset_state();
    }

    fn config(&self) -> MetricConfig {
        MetricConfig {
            class_name: self.function.class_name().to_string(),
            name: self.mean.name.clone(),
            threshold: match self.function {
                MetricFn::BinaryAccuracy { threshold } => Some(threshold),
                _ => None,
            },
            k: match self.function {
                MetricFn::TopKCategoricalAccuracy { k }
                | MetricFn::SparseTopKCategoricalAccuracy { k } => Some(k),
                _ => None,
            },
        }
    }
}

/// The configuration of a built-in metric, serialisable (serde) in Keras' vocabulary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricConfig {
    /// Keras' class name, e.g. `"BinaryAccuracy"`.
    pub class_name: String,
    /// The metric's name, e.g. `"accuracy"`.
    pub name: String,
    /// The threshold of `BinaryAccuracy` (default 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
    /// The `k` of the top-k accuracies (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
}

/// Keras' class names of the built-in metrics.
pub const METRIC_CLASSES: [&str; 8] = [
    "Accuracy",
    "BinaryAccuracy",
    "CategoricalAccuracy",
    "SparseCategoricalAccuracy",
    "TopKCategoricalAccuracy",
    "SparseTopKCategoricalAccuracy",
    "MeanSquaredError",
    "MeanAbsoluteError",
];

/// Every identifier [`get_metric`] accepts (class names, snake_case names, aliases).
pub const METRIC_NAMES: [&str; 20] = [
    "Accuracy",
    "accuracy",
    "BinaryAccuracy",
    "binary_accuracy",
    "CategoricalAccuracy",
    "categorical_accuracy",
    "SparseCategoricalAccuracy",
    "sparse_categorical_accuracy",
    "TopKCategoricalAccuracy",
    "top_k_categorical_accuracy",
    "SparseTopKCategoricalAccuracy",
    "sparse_top_k_categorical_accuracy",
    "MeanSquaredError",
    "mean_squared_error",
    "mse",
    "MSE",
    "MeanAbsoluteError",
    "mean_absolute_error",
    "mae",
    "MAE",
];

/// The Keras class `class` with its default arguments.
fn function_of_class(class: &str) -> Option<MetricFn> {
    Some(match class {
        "Accuracy" => MetricFn::Accuracy,
        "BinaryAccuracy" => MetricFn::BinaryAccuracy { threshold: 0.5 },
        "CategoricalAccuracy" => MetricFn::CategoricalAccuracy,
        "SparseCategoricalAccuracy" => MetricFn::SparseCategoricalAccuracy,
        "TopKCategoricalAccuracy" => MetricFn::TopKCategoricalAccuracy { k: 5 },
        "SparseTopKCategoricalAccuracy" => MetricFn::SparseTopKCategoricalAccuracy { k: 5 },
        "MeanSquaredError" => MetricFn::MeanSquaredError,
        "MeanAbsoluteError" => MetricFn::MeanAbsoluteError,
        _ => return None,
    })
}

/// A built-in metric by Keras identifier, with default arguments and Keras' default name (as
/// `keras.metrics.get`): `"accuracy"` here is Keras' exact-equality `Accuracy`; the
/// `metrics=["accuracy"]` of `compile` is [`compile_metric`]. Case-sensitive; see
/// [`METRIC_NAMES`].
///
/// # Errors
/// [`LossError::UnknownName`] listing every known identifier.
pub fn get_metric(identifier: &str) -> Result<MeanMetricWrapper> {
    let class = match identifier {
        "mse" | "MSE" => "MeanSquaredError",
        "mae" | "MAE" => "MeanAbsoluteError",
        "accuracy" => "Accuracy",
        "binary_accuracy" => "BinaryAccuracy",
        "categorical_accuracy" => "CategoricalAccuracy",
        "sparse_categorical_accuracy" => "SparseCategoricalAccuracy",
        "top_k_categorical_accuracy" => "TopKCategoricalAccuracy",
        "sparse_top_k_categorical_accuracy" => "SparseTopKCategoricalAccuracy",
        "mean_squared_error" => "MeanSquaredError",
        "mean_absolute_error" => "MeanAbsoluteError",
        other => other,
    };
    match function_of_class(class) {
        Some(f) => Ok(MeanMetricWrapper::new(f)),
        None => Err(LossError::UnknownName {
            kind: "metric",
            name: identifier.to_string(),
            known: METRIC_NAMES.to_vec(),
        }),
    }
}

/// Rebuilds a built-in metric from its [`MetricConfig`].
///
/// # Errors
/// [`LossError::UnknownName`] for a class not in [`METRIC_CLASSES`]; [`LossError::InvalidConfig`]
/// for a binary threshold outside `(0, 1)`.
pub fn metric_from_config(config: &MetricConfig) -> Result<MeanMetricWrapper> {
    let function = match function_of_class(&config.class_name) {
        Some(MetricFn::BinaryAccuracy { .. }) => {
            let threshold = config.threshold.unwrap_or(0.5);
            if !(threshold > 0.0 && threshold < 1.0) {
                return Err(LossError::InvalidConfig {
                    op: config.name.clone(),
                    message: format!("expected a threshold in (0, 1), got {threshold}"),
                });
            }
            MetricFn::BinaryAccuracy { threshold }
        }
        Some(MetricFn::TopKCategoricalAccuracy { .. }) => MetricFn::TopKCategoricalAccuracy {
            k: config.k.unwrap_or(5),
        },
        Some(MetricFn::SparseTopKCategoricalAccuracy { .. }) => {
            MetricFn::SparseTopKCategoricalAccuracy {
                k: config.k.unwrap_or(5),
            }
        }
        Some(f) => f,
        None => {
            return Err(LossError::UnknownName {
                kind: "metric",
                name: config.class_name.clone(),
                known: METRIC_CLASSES.to_vec(),
            });
        }
    };
    Ok(MeanMetricWrapper::new(function).with_name(config.name.clone()))
}

/// What the labels of a model output look like, as Keras' compile infers it from sample shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelKind {
    /// One output unit (`y_pred` ends in an axis of 1): binary labels.
    Binary,
    /// Class ids: `y_true` has a lower rank than `y_pred`, or a last axis of 1 against several
    /// classes.
    Sparse,
    /// One-hot (or probability) labels of `y_pred`'s shape.
    Categorical,
}

/// Keras 3's `is_binary_or_sparse_categorical` (in `trainers/compile_utils.py`): binary when
/// `y_pred`'s last axis is 1; otherwise sparse when `y_true` has a lower rank than `y_pred`, or a
/// last axis of 1 while `y_pred`'s is larger; categorical otherwise.
pub fn label_kind(y_true_shape: &[usize], y_pred_shape: &[usize]) -> LabelKind {
    let (t_last, p_last) = (y_true_shape.last(), y_pred_shape.last());
    if p_last == Some(&1) {
        LabelKind::Binary
    } else if y_true_shape.len() < y_pred_shape.len()
        || (t_last == Some(&1) && p_last.is_some_and(|&c| c > 1))
    {
        LabelKind::Sparse
    } else {
        LabelKind::Categorical
    }
}

/// The accuracy that `metrics=["accuracy"]` (or `"acc"`) means for a model output, given sample
/// shapes of the labels and predictions, exactly as Keras 3.15's `compile` resolves it:
/// [`MetricFn::BinaryAccuracy`] (threshold 0.5) for a single output unit,
/// [`MetricFn::SparseCategoricalAccuracy`] for class-id labels, [`MetricFn::CategoricalAccuracy`]
/// otherwise (see [`label_kind`]).
///
/// Keras 3 decides from the shapes alone: the loss plays no part (it did in Keras 2.2, where a
/// binary cross-entropy forced the binary accuracy even for several output units; Keras 3 gives
/// the categorical accuracy there, and so does this function).
///
/// ```
/// use gradus_losses::metrics::{MetricFn, resolve_accuracy};
///
/// assert_eq!(resolve_accuracy(&[32, 1], &[32, 1]), MetricFn::BinaryAccuracy { threshold: 0.5 });
/// assert_eq!(resolve_accuracy(&[32], &[32, 10]), MetricFn::SparseCategoricalAccuracy);
/// assert_eq!(resolve_accuracy(&[32, 1], &[32, 10]), MetricFn::SparseCategoricalAccuracy);
/// assert_eq!(resolve_accuracy(&[32, 10], &[32, 10]), MetricFn::CategoricalAccuracy);
/// ```
pub fn resolve_accuracy(y_true_shape: &[usize], y_pred_shape: &[usize]) -> MetricFn {
    match label_kind(y_true_shape, y_pred_shape) {
        LabelKind::Binary => MetricFn::BinaryAccuracy { threshold: 0.5 },
        LabelKind::Sparse => MetricFn::SparseCategoricalAccuracy,
        LabelKind::Categorical => MetricFn::CategoricalAccuracy,
    }
}

/// The metric Keras' `compile(metrics=[identifier])` builds for an output with the given sample
/// shapes: `"accuracy"` and `"acc"` (any case) resolve by [`resolve_accuracy`]; other identifiers
/// as [`get_metric`]. The metric is named by the identifier, as Keras names it in logs and
/// histories (`"acc"` stays `"acc"`, `"mse"` stays `"mse"`).
///
/// ```
/// use gradus_losses::metrics::{Metric, MetricFn, compile_metric};
///
/// let acc = compile_metric("accuracy", &[8], &[8, 3])?;
/// assert_eq!(acc.name(), "accuracy");
/// assert_eq!(acc.function(), MetricFn::SparseCategoricalAccuracy);
/// # Ok::<(), gradus_losses::LossError>(())
/// ```
///
/// # Errors
/// As [`get_metric`].
pub fn compile_metric(
    identifier: &str,
    y_true_shape: &[usize],
    y_pred_shape: &[usize],
) -> Result<MeanMetricWrapper> {
    let metric = if matches!(identifier.to_lowercase().as_str(), "accuracy" | "acc") {
        MeanMetricWrapper::new(resolve_accuracy(y_true_shape, y_pred_shape))
    } else {
        get_metric(identifier)?
    };
    Ok(metric.with_name(identifier))
}
