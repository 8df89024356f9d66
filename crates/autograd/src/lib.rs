//! # gradus-autograd
//!
//! Tape-based reverse-mode automatic differentiation over `gradus-tensor` tensors, the analogue of
//! Keras' `tf.GradientTape`: run a forward pass on a [`Tape`], ask it for the gradients of a loss
//! with respect to trainable [`Variable`]s with stable names (`"dense/kernel"`), and hand the
//! (gradient, variable) pairs to an optimizer.
//!
//! - [`Variable`]: a named, shape-fixed, `Send + Sync` value that layers own and optimizers update
//!   in place; clones share the value.
//! - [`Tape`]: an arena of recorded operations, no global state. [`Tape::gradient`] walks it in
//!   reverse. A variable the loss does not depend on gets zeros ([`Tape::gradient_opt`] gives
//!   `None` instead, as Keras).
//! - [`Var`]: a value in a computation. Operations on tracked values are recorded; on values made
//!   by [`Var::constant`] they cost only the tensor operation, so layers and losses have one code
//!   path for training and inference. [`Var::custom`] is the extension point for fused
//!   operations with hand-written backward rules.
//! - [`gradcheck`]: finite-difference checks for any differentiable function.
//! - With the default cargo feature `optim`: [`Variable`] implements `gradus_optim::Param`, and
//!   [`apply_gradients`] hands a tape's gradients to a `gradus_optim::Optimizer`.
//!
//! ## Quick start
//!
//! ```
//! use gradus_autograd::{Tape, Var, Variable};
//! use gradus_tensor::Tensor;
//!
//! // A linear softmax classifier: logits = x W + b.
//! let w = Variable::new("dense/kernel", Tensor::zeros(&[2, 3]));
//! let b = Variable::new("dense/bias", Tensor::zeros(&[3]));
//! let x = Tensor::from_vec(vec![1.0, 2.0, -1.0, 0.5], &[2, 2])?;
//! let y = Tensor::from_vec(vec![0.0, 2.0], &[2])?; // class ids
//!
//! let tape = Tape::new();
//! let input = tape.constant(x.clone());
//! let logits = input.matmul(&input.param(&w))?.add(&input.param(&b))?;
//! let loss = logits.sparse_softmax_cross_entropy(&y)?;
//! assert!((loss.item()? - 3f32.ln()).abs() < 1e-6); // uniform predictions over 3 classes
//! let grads = tape.gradient(&loss, &[&w, &b])?;
//! assert_eq!(grads[0].shape(), &[2, 3]);
//!
//! // One step of plain gradient descent, in place.
//! for (v, g) in [&w, &b].into_iter().zip(&grads) {
//!     let g = g.to_vec();
//!     v.update(|values| values.iter_mut().zip(&g).for_each(|(x, g)| *x -= 0.1 * g));
//! }
//!
//! // Inference: the same operations on untracked values record nothing.
//! let input = Var::constant(x);
//! let logits = input.matmul(&input.param(&w))?.add(&input.param(&b))?;
//! assert!(logits.sparse_softmax_cross_entropy(&y)?.item()? < loss.item()?);
//! # Ok::<(), gradus_autograd::AutogradError>(())
//! ```
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]

mod error;
pub mod gradcheck;
mod ops;
#[cfg(feature = "optim")]
mod optim;
mod tape;
mod var;
mod variable;

pub use error::{AutogradError, Result};
#[cfg(feature = "optim")]
pub use optim::apply_gradients;
pub use tape::Tape;
pub use var::Var;
pub use variable::{Variable, VariableId};
