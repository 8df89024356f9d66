//! The [`Loss`] trait, loss configurations, and losses by Keras name.

use gradus_autograd::Var;
use gradus_tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{LossError, Result};
use crate::probabilistic::{
    BinaryCrossentropy, CategoricalCrossentropy, KLDivergence, SparseCategoricalCrossentropy,
};
use crate::reduction::{
    Reduction, check_finite, reduce_weighted_values, reshaped, squeeze_or_expand,
};
use crate::regression::{Huber, MeanAbsoluteError, MeanSquaredError};

/// A loss: per-sample values of `(y_true, y_pred)`, reduced to what training minimises.
///
/// Implementors write [`per_sample`](Loss::per_sample) (Keras' `Loss.call`), a name, a reduction
/// and a config; [`call`](Loss::call) and [`call_weighted`](Loss::call_weighted) weight and reduce
/// exactly as Keras' `Loss.__call__` (see [`Reduction`] and [`reduce_weighted_values`]).
///
/// `y_pred` is a [`Var`]: under a tape the result is differentiable with respect to it (and to
/// whatever produced it); with [`Var::constant`] nothing is recorded. `y_true` is a plain tensor
/// (labels are never differentiated; class ids are stored as `f32`).
///
/// ```
/// use gradus_autograd::{Tape, Var};
/// use gradus_losses::{Loss, MeanSquaredError, Reduction};
/// use gradus_tensor::Tensor;
///
/// let y_true = Tensor::from_vec(vec![0.0, 1.0, 1.0, 0.0], &[2, 2])?;
/// let y_pred = Tensor::from_vec(vec![1.0, 1.0, 1.0, 1.0], &[2, 2])?;
/// let mse = MeanSquaredError::new();
/// // Per sample: mean over the last axis = [0.5, 0.5]; reduced: their mean.
/// assert_eq!(mse.call(&y_true, &Var::constant(y_pred.clone()))?.item()?, 0.5);
/// let per_sample = mse.clone().with_reduction(Reduction::None);
/// assert_eq!(per_sample.call(&y_true, &Var::constant(y_pred.clone()))?.value().to_vec(), vec![0.5, 0.5]);
///
/// // Gradient with respect to the predictions: 2 (p - t) / (2 classes * 2 samples).
/// let tape = Tape::new();
/// let p = tape.watch_tensor(y_pred);
/// let loss = mse.call(&y_true, &p)?;
/// let grad = tape.gradient_wrt(&loss, &[&p])?[0].clone().unwrap();
/// assert_eq!(grad.to_vec(), vec![0.5, 0.0, 0.0, 0.5]);
/// # Ok::<(), gradus_losses::LossError>(())
/// ```
pub trait Loss: std::fmt::Debug + Send + Sync {
    /// The unreduced, unweighted losses (Keras' `Loss.call`): usually one per sample, the shape
    /// of `y_pred` without its last axis.
    ///
    /// # Errors
    /// Shapes that do not fit, labels out of range, non-finite inputs: see each loss.
    fn per_sample<'t>(&self, y_true: &Tensor, y_pred: &Var<'t>) -> Result<Var<'t>>;

    /// The name of this loss (Keras' `name`, e.g. `"binary_crossentropy"`).
    fn name(&self) -> &str;

    /// How [`call`](Loss::call) reduces the per-sample losses.
    fn reduction(&self) -> Reduction;

    /// The configuration of this loss; for the built-in losses, [`from_config`] turns it back
    /// into an equal loss.
    fn config(&self) -> LossConfig;

    /// The same loss computed from logits, for a cross-entropy that takes probabilities: what
    /// Keras' TensorFlow backend substitutes when the predictions come straight out of a softmax
    /// or sigmoid (`_get_logits` reads the logits saved on the activation's output), so that
    /// `Dense(10, activation="softmax")` followed by `SparseCategoricalCrossentropy()` is computed
    /// stably from the Dense's pre-activation, without clipping. A model whose output layer ends
    /// in the matching activation (softmax for the categorical cross-entropies, sigmoid for the
    /// binary one) calls this loss on the pre-activation to reproduce Keras' numbers.
    ///
    /// `None` (the default) for losses without a logits form or already from logits.
    fn logits_counterpart(&self) -> Option<Box<dyn Loss>> {
        None
    }

    /// The loss, reduced: a scalar for [`Reduction::SumOverBatchSize`] (the default),
    /// [`Reduction::Sum`] and [`Reduction::MeanWithSampleWeight`], the per-sample losses for
    /// [`Reduction::None`].
    ///
    /// # Errors
    /// As [`per_sample`](Loss::per_sample).
    fn call<'t>(&self, y_true: &Tensor, y_pred: &Var<'t>) -> Result<Var<'t>> {
        self.call_weighted(y_true, y_pred, None)
    }

    /// The loss with optional sample weights: `reduce(per_sample(y_true, y_pred) * w)`, as
    /// [`reduce_weighted_values`]. A `[batch]` weight fits `[batch]` or `[batch, 1]` per-sample
    /// losses; weights broadcast by NumPy's rules otherwise. With
    /// [`Reduction::SumOverBatchSize`] the weighted sum is divided by the number of per-sample
    /// values, not by the sum of the weights (Keras' semantics).
    ///
    /// # Errors
    /// As [`per_sample`](Loss::per_sample), plus [`LossError::SampleWeightShape`] and
    /// [`LossError::NonFinite`] for the weights.
    fn call_weighted<'t>(
        &self,
        y_true: &Tensor,
        y_pred: &Var<'t>,
        sample_weight: Option<&Tensor>,
    ) -> Result<Var<'t>> {
        let values = self.per_sample(y_true, y_pred)?;
        reduce_weighted_values(self.name(), values, sample_weight, self.reduction())
    }
}

/// The configuration of a built-in loss, serialisable (serde) in Keras' vocabulary: what
/// [`Loss::config`] returns and [`from_config`] accepts.
///
/// ```
/// use gradus_losses::{BinaryCrossentropy, Loss, from_config};
///
/// let bce = BinaryCrossentropy::new().from_logits(true).label_smoothing(0.1);
/// let config = bce.config();
/// assert_eq!(config.class_name, "BinaryCrossentropy");
/// assert_eq!(config.from_logits, Some(true));
/// assert_eq!(from_config(&config)?.config(), config);
/// # Ok::<(), gradus_losses::LossError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossConfig {
    /// Keras' class name, e.g. `"BinaryCrossentropy"`.
    pub class_name: String,
    /// The loss's name, e.g. `"binary_crossentropy"`.
    pub name: String,
    /// The reduction.
    #[serde(default)]
    pub reduction: Reduction,
    /// Whether predictions are logits (cross-entropies only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_logits: Option<bool>,
    /// Label smoothing (binary and categorical cross-entropy only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_smoothing: Option<f32>,
    /// The threshold between the quadratic and linear parts (Huber only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<f32>,
    /// A class id whose samples are ignored (sparse categorical cross-entropy only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_class: Option<i64>,
}

impl LossConfig {
    /// A configuration with only a class name, a name and a reduction.
    pub(crate) fn base(class_name: &str, name: &str, reduction: Reduction) -> LossConfig {
        LossConfig {
            class_name: class_name.to_string(),
            name: name.to_string(),
            reduction,
            from_logits: None,
            label_smoothing: None,
            delta: None,
            ignore_class: None,
        }
    }
}

/// Keras' class names of the built-in losses, in the order [`from_config`] knows them.
pub const LOSS_CLASSES: [&str; 7] = [
    "MeanSquaredError",
    "MeanAbsoluteError",
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy",
    "Huber",
    "KLDivergence",
];

/// Every identifier [`get`] accepts: Keras' class names, function names and aliases.
pub const LOSS_NAMES: [&str; 22] = [
    "MeanSquaredError",
    "mean_squared_error",
    "mse",
    "MSE",
    "MeanAbsoluteError",
    "mean_absolute_error",
    "mae",
    "MAE",
    "BinaryCrossentropy",
    "binary_crossentropy",
    "bce",
    "BCE",
    "CategoricalCrossentropy",
    "categorical_crossentropy",
    "SparseCategoricalCrossentropy",
    "sparse_categorical_crossentropy",
    "Huber",
    "huber",
    "KLDivergence",
    "kl_divergence",
    "kld",
    "KLD",
];

/// A built-in loss by Keras identifier (as `keras.losses.get` and `compile(loss=...)`), with
/// default arguments: a class name (`"BinaryCrossentropy"`) gives the loss with its default name
/// (`"binary_crossentropy"`); a function name or alias (`"mse"`, `"huber"`, `"kld"`) gives the
/// loss named by that identifier, as Keras' compile names it. The names are case-sensitive, as in
/// Keras; see [`LOSS_NAMES`].
///
/// ```
/// let mse = gradus_losses::get("mse")?;
/// assert_eq!(mse.name(), "mse");
/// assert_eq!(mse.config().class_name, "MeanSquaredError");
/// assert!(gradus_losses::get("mean_squaredd_error").is_err());
/// # Ok::<(), gradus_losses::LossError>(())
/// ```
///
/// # Errors
/// [`LossError::UnknownName`] listing every known identifier.
pub fn get(identifier: &str) -> Result<Box<dyn Loss>> {
    let class = match identifier {
        "MeanSquaredError" | "mean_squared_error" | "mse" | "MSE" => "MeanSquaredError",
        "MeanAbsoluteError" | "mean_absolute_error" | "mae" | "MAE" => "MeanAbsoluteError",
        "BinaryCrossentropy" | "binary_crossentropy" | "bce" | "BCE" => "BinaryCrossentropy",
        "CategoricalCrossentropy" | "categorical_crossentropy" => "CategoricalCrossentropy",
        "SparseCategoricalCrossentropy" | "sparse_categorical_crossentropy" => {
            "SparseCategoricalCrossentropy"
        }
        "Huber" | "huber" => "Huber",
        "KLDivergence" | "kl_divergence" | "kld" | "KLD" => "KLDivergence",
        _ => {
            return Err(LossError::UnknownName {
                kind: "loss",
                name: identifier.to_string(),
                known: LOSS_NAMES.to_vec(),
            });
        }
    };
    let loss = default_loss(class);
    if LOSS_CLASSES.contains(&identifier) {
        return Ok(loss);
    }
    let mut config = loss.config();
    config.name = identifier.to_string();
    from_config(&config)
}

/// The loss Keras' `compile` builds for a loss identifier, given sample shapes of the labels and
/// predictions: `"crossentropy"` and `"ce"` resolve by the shapes (binary when `y_pred`'s last
/// axis is 1, sparse categorical when `y_true` has a lower rank or a last axis of 1 against more
/// classes, categorical otherwise), anything else as [`get`].
///
/// # Errors
/// As [`get`].
pub fn compile_loss(
    identifier: &str,
    y_true_shape: &[usize],
    y_pred_shape: &[usize],
) -> Result<Box<dyn Loss>> {
    if !matches!(identifier, "crossentropy" | "ce") {
        return get(identifier);
    }
    let class = match crate::metrics::label_kind(y_true_shape, y_pred_shape) {
        crate::metrics::LabelKind::Binary => "BinaryCrossentropy",
        crate::metrics::LabelKind::Sparse => "SparseCategoricalCrossentropy",
        crate::metrics::LabelKind::Categorical => "CategoricalCrossentropy",
    };
    let mut config = default_loss(class).config();
    config.name = identifier.to_string();
    from_config(&config)
}

/// The built-in loss of Keras class `class` (one of [`LOSS_CLASSES`]) with its defaults.
fn default_loss(class: &str) -> Box<dyn Loss> {
    match class {
        "MeanSquaredError" => Box::new(MeanSquaredError::new()),
        "MeanAbsoluteError" => Box::new(MeanAbsoluteError::new()),
        "BinaryCrossentropy" => Box::new(BinaryCrossentropy::new()),
        "CategoricalCrossentropy" => Box::new(CategoricalCrossentropy::new()),
        "SparseCategoricalCrossentropy" => Box::new(SparseCategoricalCrossentropy::new()),
        "Huber" => Box::new(Huber::new()),
        "KLDivergence" => Box::new(KLDivergence::new()),
        _ => unreachable!("not a built-in loss class: {class}"),
    }
}

/// Rebuilds a built-in loss from its [`LossConfig`] (the inverse of [`Loss::config`]). Options
/// the class does not have are ignored; missing ones take Keras' defaults.
///
/// # Errors
/// [`LossError::UnknownName`] for a class name not in [`LOSS_CLASSES`];
/// [`LossError::InvalidConfig`] for a label smoothing outside `[0, 1]` or a negative `delta`.
pub fn from_config(config: &LossConfig) -> Result<Box<dyn Loss>> {
    let name = config.name.clone();
    let r = config.reduction;
    let logits = config.from_logits.unwrap_or(false);
    let smoothing = config.label_smoothing.unwrap_or(0.0);
    let loss: Box<dyn Loss> = match config.class_name.as_str() {
        "MeanSquaredError" => Box::new(MeanSquaredError::new().with_name(name).with_reduction(r)),
        "MeanAbsoluteError" => Box::new(MeanAbsoluteError::new().with_name(name).with_reduction(r)),
        "BinaryCrossentropy" => Box::new(
            BinaryCrossentropy::new()
                .from_logits(logits)
                .label_smoothing(smoothing)
                .with_name(name)
                .with_reduction(r),
        ),
        "CategoricalCrossentropy" => Box::new(
            CategoricalCrossentropy::new()
                .from_logits(logits)
                .label_smoothing(smoothing)
                .with_name(name)
                .with_reduction(r),
        ),
        "SparseCategoricalCrossentropy" => Box::new(
            SparseCategoricalCrossentropy::new()
                .from_logits(logits)
                .ignore_class(config.ignore_class)
                .with_name(name)
                .with_reduction(r),
        ),
        "Huber" => Box::new(
            Huber::new()
                .delta(config.delta.unwrap_or(1.0))
                .with_name(name)
                .with_reduction(r),
        ),
        "KLDivergence" => Box::new(KLDivergence::new().with_name(name).with_reduction(r)),
        other => {
            return Err(LossError::UnknownName {
                kind: "loss",
                name: other.to_string(),
                known: LOSS_CLASSES.to_vec(),
            });
        }
    };
    check_label_smoothing(loss.name(), config.label_smoothing.unwrap_or(0.0))?;
    check_delta(loss.name(), config.delta.unwrap_or(1.0))?;
    Ok(loss)
}

/// An error unless `0 <= smoothing <= 1`.
pub(crate) fn check_label_smoothing(op: &str, smoothing: f32) -> Result<()> {
    if (0.0..=1.0).contains(&smoothing) {
        Ok(())
    } else {
        Err(LossError::InvalidConfig {
            op: op.to_string(),
            message: format!("expected a label_smoothing in [0, 1], got {smoothing}"),
        })
    }
}

/// An error unless `delta` is finite and `>= 0`.
pub(crate) fn check_delta(op: &str, delta: f32) -> Result<()> {
    if delta.is_finite() && delta >= 0.0 {
        Ok(())
    } else {
        Err(LossError::InvalidConfig {
            op: op.to_string(),
            message: format!("expected a finite delta >= 0, got {delta}"),
        })
    }
}

/// Checks that both inputs are finite and aligns their ranks as Keras' `LossFunctionWrapper`
/// does (a `[batch]` operand against a `[batch, 1]` one gains the trailing axis).
pub(crate) fn align<'t>(op: &str, y_true: &Tensor, y_pred: &Var<'t>) -> Result<(Tensor, Var<'t>)> {
    check_finite(op, "y_true", y_true)?;
    check_finite(op, "y_pred", y_pred.value())?;
    let (ts, ps) = squeeze_or_expand(y_true.shape(), y_pred.shape());
    let t = reshaped(y_true, &ts)?;
    let p = if ps == y_pred.shape() {
        y_pred.clone()
    } else {
        y_pred.reshape(&ps)?
    };
    Ok((t, p))
}

/// [`align`], then requires the same shape for both, of rank at least 1 with a non-empty last
/// axis (the axis the loss averages or sums over).
pub(crate) fn align_same_shape<'t>(
    op: &str,
    y_true: &Tensor,
    y_pred: &Var<'t>,
) -> Result<(Tensor, Var<'t>)> {
    let (t, p) = align(op, y_true, y_pred)?;
    if t.shape() != p.shape() || p.ndim() == 0 || p.shape().last() == Some(&0) {
        return Err(LossError::ShapeMismatch {
            op: op.to_string(),
            y_true: y_true.shape().to_vec(),
            y_pred: y_pred.shape().to_vec(),
            expected:
                "the same shape [..., C] with C >= 1 (a [batch] operand also fits [batch, 1])"
                    .into(),
        });
    }
    Ok((t, p))
}

/// Implements the name and reduction builders and the trait accessors shared by every loss.
macro_rules! loss_common {
    ($ty:ident, $default_name:literal) => {
        impl $ty {
            #[doc = concat!("Sets the name (default `\"", $default_name, "\"`).")]
            pub fn with_name(mut self, name: impl Into<String>) -> Self {
                self.name = name.into();
                self
            }

            /// Sets the reduction (default [`Reduction::SumOverBatchSize`](crate::Reduction)).
            pub fn with_reduction(mut self, reduction: $crate::Reduction) -> Self {
                self.reduction = reduction;
                self
            }
        }

        impl Default for $ty {
            fn default() -> Self {
                Self::new()
            }
        }
    };
}
pub(crate) use loss_common;
