//! The error type of gradus-layers.

use gradus_autograd::AutogradError;
use gradus_tensor::TensorError;

/// What went wrong while configuring, building or calling a layer.
///
/// Every variant names what was expected and what came (a shape, a name, a count, a value).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// An operation of the autograd layer failed (shapes that do not fit, a foreign tape, ...).
    #[error(transparent)]
    Autograd(#[from] AutogradError),
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// The layer was called (or asked for its weights) before being built.
    #[error("layer {layer:?} is not built: call build(input_shape, rng) first")]
    NotBuilt {
        /// The layer's name.
        layer: String,
    },
    /// An input whose shape does not fit the layer.
    #[error("layer {layer:?}: expected an input of shape {expected}, got {got:?}")]
    InputShape {
        /// The layer's name.
        layer: String,
        /// What the layer accepts, e.g. `"[batch, 4]"`.
        expected: String,
        /// The shape that came (with the batch axis when the error comes from a call).
        got: Vec<usize>,
    },
    /// An argument out of its domain (units 0, a dropout rate of 1, a negative factor...).
    #[error("{what}: {message}")]
    InvalidArgument {
        /// The layer or object whose argument is wrong, e.g. `"Dense units"`.
        what: String,
        /// What is wrong, naming the value that came and what was expected.
        message: String,
    },
    /// An unknown name for an activation, initializer, regularizer, padding or layer class.
    #[error("unknown {kind} {name:?}; expected one of: {expected}")]
    UnknownName {
        /// What kind of thing was named, e.g. `"activation"`.
        kind: &'static str,
        /// The name that came.
        name: String,
        /// The names accepted, comma-separated.
        expected: String,
    },
    /// A count of weights that does not match the layer's variables.
    #[error("layer {layer:?}: expected {expected} weight tensors, got {got}")]
    WeightCount {
        /// The layer's name.
        layer: String,
        /// The number of variables of the layer.
        expected: usize,
        /// The number of tensors given.
        got: usize,
    },
    /// A configuration that cannot be read back into a layer.
    #[error("config of {class}: {message}")]
    Config {
        /// The class named by the configuration.
        class: String,
        /// What is wrong.
        message: String,
    },
}

impl From<std::convert::Infallible> for LayerError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

/// `Result` with [`LayerError`].
pub type Result<T, E = LayerError> = std::result::Result<T, E>;

/// An [`LayerError::InvalidArgument`] for `what`.
pub(crate) fn invalid(what: impl Into<String>, message: impl Into<String>) -> LayerError {
    LayerError::InvalidArgument {
        what: what.into(),
        message: message.into(),
    }
}
