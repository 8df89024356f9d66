//! # gradus-losses
//!
//! Keras losses (mean squared error, cross-entropies, Huber, ...) as differentiable functions of
//! `gradus-autograd` values, and Keras metrics (accuracy and friends) as stateful objects.
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]
