//! # gradus-optim
//!
//! Optimizers and learning-rate schedules that compute exactly what Keras 3 computes, over any
//! parameter store: plain `Vec<f32>`s, a `HashMap<String, Vec<f32>>`, `ndarray` arrays, or your own
//! framework's variables, through one small trait. It depends on no other gradus crate.
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]
