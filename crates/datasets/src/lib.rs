//! # gradus-datasets
//!
//! The datasets gradus ships with (Fisher's iris, the 8x8 handwritten digits), CSV loading of
//! numeric tables, seeded shuffling, train/test splitting and one-hot encoding.
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]
