//! The error type of gradus-models.

use gradus_autograd::AutogradError;
use gradus_layers::LayerError;
use gradus_losses::LossError;
use gradus_optim::OptimError;
use gradus_tensor::TensorError;

/// Everything that can go wrong in a model: bad data handed to `fit`/`evaluate`/`predict`, a
/// model used before `compile`, files of another architecture, and the errors of the crates
/// below (layers, losses, optimizer, autograd, tensors).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// `fit`/`evaluate` before `compile`.
    #[error("{op}: the model is not compiled; call compile(optimizer, loss, metrics) first")]
    NotCompiled {
        /// The call that needed a compiled model.
        op: &'static str,
    },
    /// A model whose input shape is unknown was asked for something that needs it.
    #[error("{op}: the model is not built; give an input shape or call it on data first")]
    NotBuilt {
        /// The call that needed a built model.
        op: &'static str,
    },
    /// `x` and `y` hold different numbers of samples.
    #[error("{op}: x and y must hold the same number of samples, got {x} and {y}")]
    LengthMismatch {
        /// The call.
        op: &'static str,
        /// Samples in `x`.
        x: usize,
        /// Samples in `y`.
        y: usize,
    },
    /// No samples (or no samples left for training after the validation split).
    #[error("{op}: expected at least one sample, got {what}")]
    EmptyData {
        /// The call.
        op: &'static str,
        /// What was empty.
        what: String,
    },
    /// The samples do not have the feature shape the model was built for.
    #[error(
        "{op}: expected samples of shape {expected:?} (x of shape [n, ...{expected:?}]), got x of shape {got:?}"
    )]
    FeatureShape {
        /// The call.
        op: &'static str,
        /// The model's input shape, without the batch axis.
        expected: Vec<usize>,
        /// The shape of `x`.
        got: Vec<usize>,
    },
    /// NaN or an infinity in the data handed to `fit` or `evaluate`.
    #[error("{op}: expected finite values in {what}, got {value} at sample {sample}")]
    NonFinite {
        /// The call.
        op: &'static str,
        /// Which tensor (`"x"`, `"y"`, `"validation_data x"`, ...).
        what: String,
        /// The first sample (index along axis 0) holding a non-finite value.
        sample: usize,
        /// That value.
        value: f32,
    },
    /// An argument out of its range (`validation_split`, `batch_size`, ...).
    #[error("{name}: expected {expected}, got {got}")]
    InvalidArgument {
        /// The argument.
        name: &'static str,
        /// What is allowed.
        expected: String,
        /// What came.
        got: String,
    },
    /// A file or weights that do not fit the model (names, shapes, counts, format).
    #[error("{what}: expected {expected}, got {got}")]
    Mismatch {
        /// What does not fit.
        what: String,
        /// What the model has.
        expected: String,
        /// What came.
        got: String,
    },
    /// A malformed file.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Drawing a plot failed.
    #[error("plot {path}: {message}")]
    Plot {
        /// The file being drawn.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// An error of a layer (bad arguments, input shapes).
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// An error of the loss or a metric (labels that do not fit, unknown names).
    #[error(transparent)]
    Loss(#[from] LossError),
    /// An error of the optimizer.
    #[error(transparent)]
    Optim(#[from] OptimError),
    /// An error of the tape.
    #[error(transparent)]
    Autograd(#[from] AutogradError),
    /// An error of a tensor operation.
    #[error(transparent)]
    Tensor(#[from] TensorError),
}

/// `Result` with [`ModelError`].
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

impl ModelError {
    /// An [`ModelError::InvalidArgument`].
    pub(crate) fn invalid(
        name: &'static str,
        expected: impl Into<String>,
        got: impl ToString,
    ) -> ModelError {
        ModelError::InvalidArgument {
            name,
            expected: expected.into(),
            got: got.to_string(),
        }
    }

    /// A [`ModelError::Mismatch`].
    pub(crate) fn mismatch(
        what: impl Into<String>,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> ModelError {
        ModelError::Mismatch {
            what: what.into(),
            expected: expected.into(),
            got: got.into(),
        }
    }
}
