//! The bridge to gradus-optim: a [`Variable`] is a [`Param`], and [`apply_gradients`] feeds a
//! tape's gradients to an [`Optimizer`], updating large parameters on gradus-tensor's threads.

use gradus_optim::{Optimizer, Parallel, Param};
use gradus_tensor::{Tensor, parallel};

use crate::error::{AutogradError, Result};
use crate::variable::Variable;

/// A variable as an optimizer sees it: its name is the key of the optimizer's per-parameter
/// state, and the update runs in place on its buffer (copied first only if a clone of the value
/// is alive elsewhere).
impl Param for Variable {
    fn key(&self) -> &str {
        self.name()
    }

    fn shape(&self) -> &[usize] {
        Variable::shape(self)
    }

    fn with_values_mut(&mut self, f: &mut dyn FnMut(&mut [f32])) {
        self.update(f);
    }
}

/// As for [`Variable`]: variables share their value through interior mutability, so a shared
/// reference is enough to update them.
impl Param for &Variable {
    fn key(&self) -> &str {
        self.name()
    }

    fn shape(&self) -> &[usize] {
        Variable::shape(self)
    }

    fn with_values_mut(&mut self, f: &mut dyn FnMut(&mut [f32])) {
        self.update(f);
    }
}

/// Applies one optimizer step: `v <- update(v, g)` for each pair of `grads` and `variables`, in
/// order (Keras' `optimizer.apply_gradients(zip(grads, variables))`).
///
/// `grads[i]` must have the shape of `variables[i]`, as [`Tape::gradient`](crate::Tape::gradient)
/// returns them. Non-trainable variables are skipped (their gradient is zero anyway, and Keras
/// never updates them).
///
/// Large parameters of element-wise rules are updated in pieces on the threads of
/// [`gradus_tensor::parallel`] ([`Optimizer::apply_gradients_with`]); the result does not depend
/// on the thread count.
///
/// ```
/// use gradus_autograd::{Tape, Variable, apply_gradients};
/// use gradus_optim::Optimizer;
/// use gradus_tensor::Tensor;
///
/// let w = Variable::new("w", Tensor::from_vec(vec![1.0, -2.0], &[2])?);
/// let mut sgd = Optimizer::from_name("sgd")?; // learning rate 0.01
/// let tape = Tape::new();
/// let loss = tape.watch(&w).square().sum_all(); // d/dw = 2 w
/// let grads = tape.gradient(&loss, &[&w])?;
/// apply_gradients(&mut sgd, &grads, &[&w])?;
/// assert_eq!(w.value().to_vec(), vec![0.98, -1.96]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// - [`AutogradError::GradientCount`] when the counts differ;
/// - [`AutogradError::VariableShape`] naming the variable when a gradient's shape differs;
/// - [`AutogradError::Optim`] when the optimizer fails.
pub fn apply_gradients(
    optimizer: &mut Optimizer,
    grads: &[Tensor],
    variables: &[&Variable],
) -> Result<()> {
    if grads.len() != variables.len() {
        return Err(AutogradError::GradientCount {
            op: "apply_gradients",
            expected: variables.len(),
            got: grads.len(),
        });
    }
    let mut pairs = Vec::with_capacity(grads.len());
    for (g, &v) in grads.iter().zip(variables) {
        if g.shape() != v.shape() {
            return Err(AutogradError::VariableShape {
                name: v.name().to_string(),
                expected: v.shape().to_vec(),
                got: g.shape().to_vec(),
            });
        }
        if v.trainable() {
            pairs.push((Contiguous(g.to_contiguous()), v));
        }
    }
    optimizer.apply_gradients_with(&Threads, pairs)?;
    Ok(())
}

/// The worker pool of [`gradus_tensor::parallel`], as an optimizer step sees it.
struct Threads;

impl Parallel for Threads {
    fn threads(&self) -> usize {
        parallel::num_threads()
    }

    fn run(&self, pieces: usize, piece: &(dyn Fn(usize) + Sync)) {
        parallel::run(pieces, piece);
    }
}

/// A tensor known to be contiguous, so that it can be read as one slice.
struct Contiguous(Tensor);

impl AsRef<[f32]> for Contiguous {
    fn as_ref(&self) -> &[f32] {
        self.0.as_slice().expect("made contiguous on construction")
    }
}
