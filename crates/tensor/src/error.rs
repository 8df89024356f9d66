//! The error type of gradus-tensor.

/// What went wrong in a tensor operation. Every variant names the operation and the shapes or
/// values involved, so the message alone says what was expected and what came.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TensorError {
    /// Two (or more) operands whose shapes do not fit together.
    #[error("{op}: shapes {lhs:?} and {rhs:?} are incompatible: {reason}")]
    IncompatibleShapes {
        /// The operation, e.g. `"add"` or `"matmul"`.
        op: &'static str,
        /// The shape of the first operand.
        lhs: Vec<usize>,
        /// The shape of the second operand.
        rhs: Vec<usize>,
        /// Why they do not fit.
        reason: String,
    },
    /// A number of values that does not match a shape.
    #[error("{op}: shape {shape:?} needs {expected} values, got {got}")]
    ElementCount {
        /// The operation, e.g. `"from_vec"` or `"reshape"`.
        op: &'static str,
        /// The requested shape.
        shape: Vec<usize>,
        /// The number of elements the shape holds.
        expected: usize,
        /// The number of values given.
        got: usize,
    },
    /// An axis outside `-rank..rank`.
    #[error("{op}: axis {axis} is out of range for a tensor of shape {shape:?}")]
    AxisOutOfRange {
        /// The operation.
        op: &'static str,
        /// The axis given (negative axes count from the end).
        axis: isize,
        /// The shape of the tensor.
        shape: Vec<usize>,
    },
    /// A tensor of the wrong rank for the operation.
    #[error("{op}: expected {expected}, got a tensor of shape {got:?}")]
    Rank {
        /// The operation.
        op: &'static str,
        /// What the operation accepts, e.g. `"a 2-D or 3-D tensor"`.
        expected: &'static str,
        /// The shape that came.
        got: Vec<usize>,
    },
    /// An argument out of its domain (a negative step, an index past the end, an empty list...).
    #[error("{op}: {message}")]
    InvalidArgument {
        /// The operation.
        op: &'static str,
        /// What is wrong, naming the value that came and what was expected.
        message: String,
    },
}

/// `Result` with [`TensorError`].
pub type Result<T, E = TensorError> = std::result::Result<T, E>;
