//! # gradus-layers
//!
//! Keras layers (Dense, Conv2D, MaxPooling2D, LSTM, Dropout, ...), activations, initializers and
//! regularizers, built on `gradus-tensor` kernels and differentiated by `gradus-autograd`.
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]
