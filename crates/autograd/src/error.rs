//! The error type of gradus-autograd.

use gradus_tensor::TensorError;

/// What went wrong while recording an operation or computing gradients.
///
/// Tensor-level failures (shapes that do not broadcast, a bad axis...) are wrapped unchanged in
/// [`AutogradError::Tensor`]: they surface at the operation that caused them, naming the shapes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AutogradError {
    /// A tensor operation failed (incompatible shapes, bad axis, ...).
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// Values recorded on two different tapes were combined, or a tape was asked about a value
    /// recorded on another one.
    #[error("{op}: the operands belong to different tapes")]
    ForeignTape {
        /// The operation, e.g. `"add"` or `"gradient"`.
        op: &'static str,
    },
    /// `gradient` was called a second time on a non-persistent tape, whose saved tensors were
    /// released by the first call.
    #[error(
        "gradient: this tape is not persistent and its gradient was already computed; \
         use Tape::persistent() to compute several gradients"
    )]
    TapeReleased,
    /// A backward rule returned a number of gradients different from the number of inputs.
    #[error("{op}: the backward rule returned {got} gradients for {expected} inputs")]
    GradientCount {
        /// The operation whose rule misbehaved.
        op: &'static str,
        /// The number of inputs of the operation.
        expected: usize,
        /// The number of gradients returned.
        got: usize,
    },
    /// A backward rule returned a gradient whose shape differs from its input's shape.
    #[error(
        "{op}: the gradient of input {input} has shape {got:?}, expected the input's shape {expected:?}"
    )]
    GradientShape {
        /// The operation whose rule misbehaved.
        op: &'static str,
        /// The index of the input.
        input: usize,
        /// The shape of the input.
        expected: Vec<usize>,
        /// The shape of the gradient returned.
        got: Vec<usize>,
    },
    /// A value assigned to a [`Variable`](crate::Variable) does not have the variable's shape.
    #[error("variable {name:?}: expected a value of shape {expected:?}, got {got:?}")]
    VariableShape {
        /// The variable's name.
        name: String,
        /// The variable's (fixed) shape.
        expected: Vec<usize>,
        /// The shape of the value given.
        got: Vec<usize>,
    },
    /// The optimizer refused the update (an invalid option, a NaN gradient it checks, ...).
    #[cfg(feature = "optim")]
    #[error(transparent)]
    Optim(#[from] gradus_optim::OptimError),
    /// An argument out of its domain (a dropout rate of 1, a label out of range, ...).
    #[error("{op}: {message}")]
    InvalidArgument {
        /// The operation.
        op: &'static str,
        /// What is wrong, naming the value that came and what was expected.
        message: String,
    },
}

/// `Result` with [`AutogradError`].
pub type Result<T, E = AutogradError> = std::result::Result<T, E>;
