//! # gradus-optim
//!
//! Optimizers and learning-rate schedules that compute exactly what Keras 3 computes, over any
//! parameter store: plain `Vec<f32>`s, a `HashMap<String, Vec<f32>>`, `ndarray` arrays (cargo
//! feature `ndarray`), or your own framework's variables, through one small trait, [`Param`].
//! It depends on no other gradus crate.
//!
//! - [`Optimizer`]: one type for every Keras optimizer (SGD, RMSprop, Adam, AdamW, Adadelta,
//!   Adagrad, Adamax, Nadam, Ftrl, Lion, Lamb, Adafactor), built by name or from a [`Rule`],
//!   with the options they all share ([`SharedOptions`]: clipping, weight decay, EMA, gradient
//!   accumulation, loss scaling) and dynamic loss scaling (Keras' `LossScaleOptimizer`).
//! - [`schedules`]: ExponentialDecay, PiecewiseConstantDecay, PolynomialDecay,
//!   InverseTimeDecay, CosineDecay (with warmup), CosineDecayRestarts, and the
//!   [`LearningRateSchedule`] trait that closures and constants also satisfy.
//! - State: `iterations`, Keras-ordered [`Optimizer::variables`], get/set weights, and
//!   save/load of the whole state (serde, JSON) keyed by parameter name.
//!
//! ## Fidelity
//!
//! Every rule is written in `f32` in the order Keras 3 (TensorFlow backend) evaluates it, so the
//! tests in `tests/keras_fixtures.rs` reproduce real Keras 3.15 trajectories bit for bit for
//! most cases; where Keras reduces a tensor (norms, means) or calls `pow`, the difference stays
//! below 3e-6 relative.
//!
//! ## Speed
//!
//! Each element-wise rule is one pass over the parameter, its gradient and its slots, with
//! weight decay fused in behind a compile-time switch; on x86-64 the kernels are also compiled
//! for AVX2 and picked at run time (same results). Shared options that transform gradients
//! (unscaling, accumulation, clipping) cost an extra pass into a reused buffer, and only when
//! set. Per-parameter state is found by position first, by key otherwise. Large parameters can be
//! updated on several threads, with the same bits: [`Optimizer::apply_gradients_with`] hands
//! their pieces to any pool through the [`Parallel`] trait ([`parallel`]).
//!
//! ## Quick start
//!
//! ```
//! use gradus_optim::{schedules::ExponentialDecay, NamedParam, Optimizer, rules::Adam};
//!
//! // Fit y = 2x with one weight held in a plain Vec.
//! let mut w = vec![0.0_f32];
//! let mut opt = Optimizer::builder(Adam::default())
//!     .learning_rate(ExponentialDecay::new(0.1, 100.0, 0.9)?)
//!     .build()?;
//! for _ in 0..300 {
//!     let (x, y) = (1.5_f32, 3.0_f32);
//!     let grad = vec![2.0 * (w[0] * x - y) * x]; // d/dw (wx - y)^2
//!     opt.apply_gradients([(grad, NamedParam::new("w", &mut w))])?;
//! }
//! assert!((w[0] - 2.0).abs() < 1e-2);
//! assert_eq!(opt.iterations(), 300);
//!
//! // The state survives a round trip through JSON.
//! let saved = opt.save_state_json()?;
//! let mut restored = Optimizer::from_config(opt.config())?;
//! restored.load_state_json(&saved)?;
//! assert_eq!(restored.variables(), opt.variables());
//! # Ok::<(), gradus_optim::OptimError>(())
//! ```
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]

mod error;
mod optimizer;
pub mod parallel;
mod param;
pub mod rules;
pub mod schedules;

pub use error::{OptimError, Result};
pub use optimizer::{
    DynamicLossScale, Optimizer, OptimizerBuilder, OptimizerConfig, OptimizerState,
    OptimizerVariable, SavedParam, SharedOptions, loss_scale_optimizer,
};
pub use parallel::{Parallel, ScopedThreads, Serial};
#[cfg(feature = "ndarray")]
pub use param::array_gradient;
pub use param::{NamedParam, Param, map_pairs};
pub use rules::Rule;
pub use schedules::{LearningRate, LearningRateSchedule};
