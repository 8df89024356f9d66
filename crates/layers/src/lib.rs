//! # gradus-layers
//!
//! Keras layers for gradus: [`Dense`], [`Conv2D`], [`MaxPooling2D`], [`AveragePooling2D`],
//! [`LSTM`], [`BatchNormalization`], [`Embedding`], [`Dropout`], [`Flatten`], [`Reshape`],
//! [`ActivationLayer`] and [`Input`]; [`Activation`]s, [`Initializer`]s and [`Regularizer`]s by
//! value or by Keras' name. Layers are built on `gradus-tensor` kernels and differentiated by
//! `gradus-autograd`; they match Keras 3's numbers (checked against fixtures produced by Keras).
//!
//! - [`Layer`]: the small trait every layer implements (build for an input shape, call with a
//!   training flag, variables, output shape, config, regularization loss); [`LayerExt`] adds the
//!   rich API (`trainable_variables`, `count_params`, `get_weights`/`set_weights`, `predict`).
//! - Variables are named `"{layer}/{role}"` (`"dense/kernel"`); a model renames its layers with
//!   [`Layer::set_name`] before building them to make names unique (`dense`, `dense_1`, ...).
//! - Arguments given by name that are unknown (`.activation("relu6")`) or invalid (`units == 0`)
//!   are reported by [`Layer::build`] as a [`LayerError`] naming what came and what was
//!   expected; builder methods never panic.
//! - [`layer_from_config`] rebuilds a layer from its [`LayerConfig`].
//!
//! ## Quick start
//!
//! ```
//! use gradus_autograd::Tape;
//! use gradus_layers::{Dense, Dropout, L2, Layer, LayerExt};
//! use gradus_tensor::{Rng, Tensor};
//!
//! let mut rng = Rng::seed_from_u64(0);
//! let mut hidden = Dense::new(8).activation("relu").kernel_regularizer(L2::new(0.01));
//! let mut drop = Dropout::new(0.2);
//! let mut out = Dense::new(3).activation("softmax").with_name("out");
//! hidden.build(&[4], &mut rng)?;
//! drop.build(&[8], &mut rng)?;
//! out.build(&[8], &mut rng)?;
//! assert_eq!(hidden.count_params() + out.count_params(), 40 + 27);
//! assert_eq!(out.variables()[0].name(), "out/kernel");
//!
//! // One training step's gradients: forward under a tape, loss plus the regularization term.
//! let x = Tensor::rand_uniform(&[5, 4], -1.0, 1.0, &mut rng);
//! let labels = Tensor::from_vec(vec![0.0, 1.0, 2.0, 1.0, 0.0], &[5])?;
//! let tape = Tape::new();
//! let h = drop.call(&hidden.call(&tape.constant(x.clone()), true)?, true)?;
//! let probs = out.call(&h, true)?;
//! let nll = probs.ln().select(1, &[0])?.mean_all().neg(); // a stand-in loss
//! let loss = nll.add(&hidden.regularization_loss(Some(&tape))?.expect("has L2"))?;
//! let mut vars = hidden.trainable_variables();
//! vars.extend(out.trainable_variables());
//! let grads = tape.gradient(&loss, &vars.iter().collect::<Vec<_>>())?;
//! assert_eq!(grads.len(), 4);
//!
//! // Inference: no tape, dropout off.
//! let p = out.predict(&hidden.predict(&x)?)?;
//! assert_eq!(p.shape(), &[5, 3]);
//! # let _ = labels;
//! # Ok::<(), gradus_layers::LayerError>(())
//! ```
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]

mod activation;
mod base;
mod error;
mod fastmath;
pub mod initializers;
mod layer;
mod layers;
mod regularizers;
mod spatial;

pub use activation::Activation;
pub use error::{LayerError, Result};
pub use initializers::{Distribution, FanMode, Initializer};
pub use layer::{Layer, LayerConfig, LayerExt, PoolWindow};
pub use layers::{
    ActivationLayer, AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Embedding,
    Flatten, Input, LSTM, MaxPooling2D, Reshape, layer_from_config,
};
pub use regularizers::{L1, L1L2, L2, Regularizer};
pub use spatial::{IntoPadding, Size2};

/// `Padding` of the 2-D layers, re-exported from `gradus-tensor`.
pub use gradus_tensor::Padding;
