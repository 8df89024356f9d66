//! # gradus-datasets
//!
//! The datasets gradus ships with — Fisher's iris and the 8x8 handwritten digits, bundled in the
//! crate, no download — plus CSV loading of numeric tables, seeded shuffling, train/test splitting,
//! one-hot encoding and batching.
//!
//! ## Quick start
//!
//! ```
//! use gradus_datasets::{load_iris, one_hot, train_test_split};
//! use gradus_tensor::Rng;
//!
//! let iris = load_iris()?;
//! let split = train_test_split(&iris.features, &iris.labels, 0.2, Some(&mut Rng::seed_from_u64(42)))?;
//! let y_train = one_hot(&split.y_train, iris.num_classes())?;
//! assert_eq!(y_train.shape(), &[120, 3]);
//! # Ok::<(), gradus_datasets::DatasetError>(())
//! ```
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]

mod bundled;
mod csv;
mod error;
mod split;

pub use bundled::{Dataset, load_digits, load_iris};
pub use csv::{CsvOptions, Table, parse_csv, read_csv};
pub use error::{DatasetError, Result};
pub use split::{Split, batch_indices, one_hot, shuffle, train_test_split};
