//! # gradus-models
//!
//! Where a Keras user meets gradus: `Sequential` and custom models, `compile`, `fit`, `evaluate`,
//! `predict`, `summary`, `History`, callbacks, plots, and saving and loading.
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]
