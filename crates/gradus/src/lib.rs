//! # gradus
//!
//! A Keras-style deep-learning library in Rust. This crate only re-exports the workspace's crates
//! under short names; each carries its own documentation and examples:
//!
//! | module | crate | what it is for |
//! |---|---|---|
//! | [`tensor`] | `gradus-tensor` | n-d `f32` tensors, broadcasting, matmul, conv/pool kernels, seeded RNG |
//! | [`autograd`] | `gradus-autograd` | the tape (`GradientTape`), named trainable variables |
//! | [`optim`] | `gradus-optim` | every Keras optimizer and learning-rate schedule, over any parameter store |
//! | [`losses`] | `gradus-losses` | losses and metrics |
//! | [`layers`] | `gradus-layers` | layers, activations, initializers, regularizers |
//! | [`models`] | `gradus-models` | `Sequential`, custom models, `compile`/`fit`/`evaluate`/`predict` |
//! | [`datasets`] | `gradus-datasets` | bundled iris and digits, CSV loading, splitting |
//!
//! `use gradus::prelude::*;` brings the names a Keras user reaches for first.
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]

pub use gradus_autograd as autograd;
pub use gradus_datasets as datasets;
pub use gradus_layers as layers;
pub use gradus_losses as losses;
pub use gradus_models as models;
pub use gradus_optim as optim;
pub use gradus_tensor as tensor;

/// The names a Keras user reaches for first.
pub mod prelude {
    pub use gradus_autograd::{Tape, Var, Variable};
    pub use gradus_models::{FitOptions, History, Model, Network, Sequential};
    pub use gradus_tensor::{Rng, Tensor};
}
