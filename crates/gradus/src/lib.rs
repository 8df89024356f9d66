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
//!
//! ## Quick start
//!
//! The fast way — a `Sequential`, `compile`, `fit`:
//!
//! ```
//! use gradus::datasets::load_iris;
//! use gradus::layers::{Dense, L2};
//! use gradus::models::{FitOptions, Model, Sequential};
//!
//! let iris = load_iris()?;
//! let mut model = Model::new(
//!     Sequential::new().layer(Dense::new(3).activation("softmax").kernel_regularizer(L2::default())),
//! )?;
//! model.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"])?;
//! let options = FitOptions { epochs: 20, verbose: 0, ..Default::default() };
//! let history = model.fit(&iris.features, &iris.labels, options)?;
//! assert_eq!(history["loss"].len(), 20);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The hand-written way — a tape, its gradients, an optimizer:
//!
//! ```
//! use gradus::autograd::{Tape, Variable, apply_gradients};
//! use gradus::optim::Optimizer;
//! use gradus::tensor::Tensor;
//!
//! let w = Variable::new("w", Tensor::from_vec(vec![1.0, -1.0], &[2])?);
//! let x = Tensor::from_vec(vec![3.0, 4.0], &[2])?;
//! let mut opt = Optimizer::from_name("sgd")?;
//! for _ in 0..3 {
//!     let tape = Tape::new();
//!     let loss = tape.constant(x.clone()).param(&w).mul(&tape.constant(x.clone()))?.sum_all();
//!     let grads = tape.gradient(&loss, &[&w])?;
//!     apply_gradients(&mut opt, &grads, &[&w])?; // Keras: apply_gradients(zip(grads, vars))
//! }
//! assert_eq!(opt.iterations(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Threads
//!
//! The kernels (matrix products, convolutions, pooling) run on `GRADUS_NUM_THREADS` threads,
//! by default as many as the process may use; [`set_num_threads`] changes it at run time.
//! Results are the same bits for any thread count.
//!
//! ```
//! gradus::set_num_threads(1);
//! assert_eq!(gradus::num_threads(), 1);
//! gradus::set_num_threads(0); // back to the default
//! ```
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]

pub use gradus_autograd as autograd;
pub use gradus_datasets as datasets;
pub use gradus_layers as layers;
pub use gradus_losses as losses;
pub use gradus_models as models;
pub use gradus_optim as optim;
pub use gradus_tensor as tensor;
pub use gradus_tensor::parallel::{num_threads, set_num_threads};

/// The names a Keras user reaches for first.
pub mod prelude {
    pub use gradus_autograd::{Tape, Var, Variable};
    pub use gradus_models::{FitOptions, History, Model, Network, Sequential};
    pub use gradus_tensor::{Rng, Tensor};
}
