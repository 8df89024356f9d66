//! The error type of gradus-losses.

use gradus_autograd::AutogradError;
use gradus_tensor::TensorError;

/// What went wrong while computing a loss or updating a metric. Every variant names what was
/// expected and what came.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LossError {
    /// `y_true` and `y_pred` (or values and sample weights) whose shapes do not fit together.
    #[error(
        "{op}: y_true of shape {y_true:?} does not fit y_pred of shape {y_pred:?}: expected {expected}"
    )]
    ShapeMismatch {
        /// The loss or metric, e.g. `"binary_crossentropy"`.
        op: String,
        /// The shape of the labels.
        y_true: Vec<usize>,
        /// The shape of the predictions.
        y_pred: Vec<usize>,
        /// What shapes the operation accepts.
        expected: String,
    },
    /// Sample weights whose shape does not broadcast against the per-sample values.
    #[error("{op}: sample weights of shape {weights:?} do not fit values of shape {values:?}")]
    SampleWeightShape {
        /// The loss or metric.
        op: String,
        /// The shape of the per-sample values.
        values: Vec<usize>,
        /// The shape of the weights.
        weights: Vec<usize>,
    },
    /// A class id that is not a whole number in `0..classes`.
    #[error("{op}: expected integer class ids in 0..{classes}, got {label} at position {index}")]
    LabelOutOfRange {
        /// The loss or metric.
        op: String,
        /// The offending label.
        label: f32,
        /// Its row-major position in `y_true`.
        index: usize,
        /// The number of classes (the last axis of `y_pred`).
        classes: usize,
    },
    /// A NaN or an infinity in the labels or the predictions.
    #[error("{op}: expected finite values in {input}, got {value} at position {index}")]
    NonFinite {
        /// The loss or metric.
        op: String,
        /// `"y_true"`, `"y_pred"` or `"sample_weight"`.
        input: &'static str,
        /// The offending value.
        value: f32,
        /// Its row-major position.
        index: usize,
    },
    /// A name that is not one of the known losses, metrics or reductions.
    #[error("unknown {kind} {name:?}; expected one of: {}", known.join(", "))]
    UnknownName {
        /// `"loss"`, `"metric"` or `"reduction"`.
        kind: &'static str,
        /// The name given.
        name: String,
        /// Every accepted name.
        known: Vec<&'static str>,
    },
    /// A configuration value out of its domain (a label smoothing outside `[0, 1]`, ...).
    #[error("{op}: {message}")]
    InvalidConfig {
        /// The loss or metric.
        op: String,
        /// What is wrong, naming the value that came and what was expected.
        message: String,
    },
    /// An error of the underlying differentiable operations.
    #[error(transparent)]
    Autograd(#[from] AutogradError),
}

impl From<TensorError> for LossError {
    fn from(e: TensorError) -> Self {
        LossError::Autograd(AutogradError::Tensor(e))
    }
}

/// `Result` with [`LossError`].
pub type Result<T, E = LossError> = std::result::Result<T, E>;
