//! The error type of gradus-datasets.

use gradus_tensor::TensorError;

/// What went wrong while loading, parsing or splitting data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A cell that is not a finite number (text, `nan`, `inf`).
    #[error("line {line}, column {column}: expected a finite number, got {text:?}")]
    Parse {
        /// 1-based line number in the input.
        line: usize,
        /// 1-based column number.
        column: usize,
        /// The cell's text.
        text: String,
    },
    /// A row with another number of columns than the first row.
    #[error("line {line}: expected {expected} columns (as the first row has), got {got}")]
    Ragged {
        /// 1-based line number.
        line: usize,
        /// The number of columns of the first data row.
        expected: usize,
        /// The number of columns of this row.
        got: usize,
    },
    /// A table with no data rows.
    #[error("{what}: the data has no rows")]
    Empty {
        /// What was being loaded or split.
        what: String,
    },
    /// An argument out of its domain.
    #[error("{op}: {message}")]
    InvalidArgument {
        /// The operation.
        op: &'static str,
        /// What is wrong, naming what came and what was expected.
        message: String,
    },
    /// A tensor operation failed (shapes that do not fit).
    #[error(transparent)]
    Tensor(#[from] TensorError),
}

/// `Result` with [`DatasetError`].
pub type Result<T, E = DatasetError> = std::result::Result<T, E>;
