//! # gradus-losses
//!
//! Keras losses as differentiable functions of `gradus-autograd` values, and Keras metrics as
//! stateful objects, computing what Keras 3 computes (checked against fixtures produced by Keras
//! 3.15 on TensorFlow).
//!
//! - [`Loss`]: per-sample losses (required, Keras' `Loss.call`) with provided
//!   [`call`](Loss::call) / [`call_weighted`](Loss::call_weighted) that weight and reduce as
//!   Keras ([`Reduction`]: `"sum_over_batch_size"` by default, `"sum"`, `"none"`,
//!   `"mean_with_sample_weight"`).
//! - Losses as values, builder style: [`MeanSquaredError`], [`MeanAbsoluteError`],
//!   [`BinaryCrossentropy`], [`CategoricalCrossentropy`], [`SparseCategoricalCrossentropy`],
//!   [`Huber`], [`KLDivergence`]; by Keras name with [`get`] (`"mse"`, `"binary_crossentropy"`,
//!   `"kld"`, ...); serialisable configs ([`LossConfig`], [`from_config`]).
//! - Each built-in loss computes its per-sample values in ONE fused operation on the tape, with a
//!   hand-written gradient (the weighting and reduction add two or three small nodes): the
//!   cross-entropies from logits use the stable softmax / sigmoid forms; from probabilities they
//!   clip to `[1e-7, 1 - 1e-7]` exactly as Keras, gradient included.
//! - [`metrics`]: the [`Metric`](metrics::Metric) trait, the running [`Mean`](metrics::Mean)
//!   (the loss tracker), Keras' accuracies and regression metrics, by name, and the resolution of
//!   `"accuracy"` that `compile` performs ([`metrics::compile_metric`]).
//!
//! Errors are values ([`LossError`]): shapes that do not fit (naming both), labels out of range,
//! NaN or infinite inputs, unknown names (listing the known ones).
//!
//! ## Quick start
//!
//! ```
//! use gradus_autograd::Tape;
//! use gradus_losses::metrics::{Metric, compile_metric};
//! use gradus_losses::{Loss, SparseCategoricalCrossentropy};
//! use gradus_tensor::Tensor;
//!
//! // Logits of 2 samples over 3 classes, and their class ids.
//! let logits = Tensor::from_vec(vec![2.0, 0.5, -1.0, 0.0, 0.0, 3.0], &[2, 3])?;
//! let labels = Tensor::from_vec(vec![0.0, 1.0], &[2])?;
//!
//! let loss_fn = SparseCategoricalCrossentropy::new().from_logits(true);
//! let tape = Tape::new();
//! let x = tape.watch_tensor(logits.clone());
//! let loss = loss_fn.call(&labels, &x)?; // mean over the batch
//! let grad = tape.gradient_wrt(&loss, &[&x])?[0].clone().unwrap();
//! // d loss / d logits = (softmax - onehot) / batch: each row sums to zero.
//! let g = grad.to_vec();
//! assert!((g[0] + g[1] + g[2]).abs() < 1e-6 && g[0] < 0.0);
//!
//! // The metric Keras' compile builds for metrics=["accuracy"] with these shapes.
//! let mut acc = compile_metric("accuracy", labels.shape(), logits.shape())?;
//! acc.update_state(&labels, &logits, None)?;
//! assert_eq!(acc.result(), 0.5); // sample 0 right, sample 1 wrong
//! # Ok::<(), gradus_losses::LossError>(())
//! ```
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]

mod error;
mod kernel;
mod loss;
pub mod metrics;
mod probabilistic;
mod reduction;
mod regression;

pub use error::{LossError, Result};
pub use loss::{LOSS_CLASSES, LOSS_NAMES, Loss, LossConfig, compile_loss, from_config, get};
pub use probabilistic::{
    BinaryCrossentropy, CategoricalCrossentropy, EPSILON, KLDivergence,
    SparseCategoricalCrossentropy,
};
pub use reduction::{Reduction, reduce_weighted_values};
pub use regression::{Huber, MeanAbsoluteError, MeanSquaredError};
