//! # gradus-models
//!
//! Where a Keras user meets gradus: [`Model`] with Keras' [`compile`](Model::compile),
//! [`fit`](Model::fit), [`evaluate`](Model::evaluate), [`predict`](Model::predict) and
//! [`summary`](Model::summary) over any [`Network`] — a [`Sequential`] stack of layers, or your
//! own struct holding layers as fields and writing `call` (Keras' subclassed models).
//!
//! - [`FitOptions`]: Keras' `fit` arguments and defaults (batch size 32, validation split taken
//!   from the end before shuffling, validation frequency, seeded shuffling, initial epoch,
//!   callbacks); `fit` returns a [`History`] (`history["loss"]`), which draws Keras' two-panel
//!   figure with [`History::plot`].
//! - [`callbacks`]: the [`Callback`] trait with Keras' hooks, and EarlyStopping,
//!   ModelCheckpoint, LearningRateScheduler, ReduceLROnPlateau, CsvLogger, TerminateOnNaN.
//! - Saving: weights to safetensors ([`Model::save_weights`]) and whole models — architecture,
//!   compile configuration, weights, optimizer state, RNG, History, callback states — to one
//!   file ([`Model::save`], [`Model::load`], [`Model::load_into`]); training goes on exactly as
//!   if never stopped, callbacks included. A load that fails changes nothing, and a file
//!   asking for layers larger than the weights it holds is refused before anything is built.
//! - Errors are values ([`ModelError`]): data of the wrong length or shape, empty data, bad
//!   arguments, `fit` before `compile`, files of another architecture; the model is left as it
//!   was.
//!
//! ## Quick start
//!
//! ```
//! use gradus_layers::{Dense, L2};
//! use gradus_losses::SparseCategoricalCrossentropy;
//! use gradus_models::{FitOptions, Model, Sequential};
//! use gradus_optim::{Optimizer, rules::Sgd};
//! use gradus_tensor::{Rng, Tensor};
//!
//! // Three Gaussian blobs in 2-D, 30 samples each.
//! let mut rng = Rng::seed_from_u64(1);
//! let centers = [(-2.0, 0.0), (2.0, 0.0), (0.0, 2.5)];
//! let (mut xs, mut ys) = (Vec::new(), Vec::new());
//! for i in 0..90 {
//!     let (cx, cy) = centers[i % 3];
//!     xs.extend([cx + 0.5 * rng.normal_f32(), cy + 0.5 * rng.normal_f32()]);
//!     ys.push((i % 3) as f32);
//! }
//! let x = Tensor::from_vec(xs, &[90, 2])?;
//! let y = Tensor::from_vec(ys, &[90])?;
//!
//! let mut model = Model::new(
//!     Sequential::new()
//!         .input_shape(&[2])
//!         .layer(Dense::new(3).activation("softmax").kernel_regularizer(L2::new(0.01))),
//! )?;
//! model.compile(
//!     Optimizer::builder(Sgd::default()).learning_rate(0.1).build()?,
//!     SparseCategoricalCrossentropy::new(),
//!     ["sparse_categorical_accuracy"],
//! )?;
//! let history = model.fit(&x, &y, FitOptions {
//!     epochs: 30,
//!     verbose: 0,
//!     validation_split: 0.2,
//!     ..Default::default()
//! })?;
//! assert!(history.last("sparse_categorical_accuracy").unwrap() > 0.9);
//! assert_eq!(history["val_loss"].len(), 30);
//! let logs = model.evaluate(&x, &y, 32)?;
//! assert!(logs.get("loss").unwrap() < history["loss"][0]);
//! assert!(model.summary_string().contains("Total params: 11"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]

pub mod callbacks;
mod compile;
mod error;
mod logs;
mod model;
mod network;
mod plot;
mod progress;
mod saving;
mod sizes;
mod summary;

pub use callbacks::{
    Callback, CsvLogger, EarlyStopping, LearningRateScheduler, Mode, ModelCheckpoint,
    ReduceLROnPlateau, TerminateOnNaN, TrainContext,
};
pub use compile::{IntoOptimizer, LossArg, MetricArg, NO_METRICS};
pub use error::{ModelError, Result};
pub use logs::{History, Logs};
pub use model::{FitOptions, Model, ValidationFreq};
pub use network::{Network, NetworkConfig, Sequential, build_chain};
