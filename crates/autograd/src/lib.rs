//! # gradus-autograd
//!
//! Tape-based reverse-mode automatic differentiation over `gradus-tensor` tensors, the analogue of
//! Keras' `tf.GradientTape`: run a forward pass on a tape, ask it for the gradients of a loss with
//! respect to trainable variables with stable names (`"dense/kernel"`), and hand the
//! (gradient, variable) pairs to an optimizer.
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]
