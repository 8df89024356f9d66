//! Named, shape-fixed values that layers own and optimizers update in place.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use gradus_tensor::Tensor;

use crate::error::{AutogradError, Result};

/// The identity of a [`Variable`]: unique within the process, shared by its clones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VariableId(u64);

impl VariableId {
    fn fresh() -> VariableId {
        // A counter only hands out identities; no tape or computation depends on it.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        VariableId(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// The id as a number.
    pub fn get(self) -> u64 {
        self.0
    }
}

#[derive(Debug)]
struct Inner {
    id: VariableId,
    name: String,
    shape: Vec<usize>,
    trainable: AtomicBool,
    value: RwLock<Tensor>,
}

/// A named tensor of fixed shape, trainable or not: the weights of a layer (`"dense/kernel"`) or
/// its non-trainable state (BatchNorm's moving mean).
///
/// Clones are cheap and share the value: an optimizer updating one clone in place updates the
/// value every clone sees. A `Variable` is `Send + Sync`, so models holding variables can move
/// between threads. Its name, shape and id never change; its value changes only through
/// [`assign`](Variable::assign) (shape-checked) and [`update`](Variable::update).
///
/// Non-trainable variables are never differentiated: [`Tape::watch`](crate::Tape::watch) and
/// [`Var::param`](crate::Var::param) lift them as constants.
///
/// ```
/// use gradus_autograd::Variable;
/// use gradus_tensor::Tensor;
///
/// let w = Variable::new("dense/kernel", Tensor::zeros(&[3, 2]));
/// let shared = w.clone();
/// w.update(|values| values.iter_mut().for_each(|x| *x += 1.0));
/// assert_eq!(shared.value().to_vec(), vec![1.0; 6]);
/// assert!(w.assign(Tensor::zeros(&[2, 3])).is_err()); // the shape is fixed
/// ```
#[derive(Debug, Clone)]
pub struct Variable {
    inner: Arc<Inner>,
}

impl Variable {
    /// A trainable variable holding `value`; its shape is `value`'s shape, fixed from now on.
    pub fn new(name: impl Into<String>, value: Tensor) -> Variable {
        Variable::with_trainable(name, value, true)
    }

    /// A non-trainable variable (never differentiated), e.g. a moving statistic.
    pub fn non_trainable(name: impl Into<String>, value: Tensor) -> Variable {
        Variable::with_trainable(name, value, false)
    }

    /// A variable that is trainable or not as `trainable` says.
    pub fn with_trainable(name: impl Into<String>, value: Tensor, trainable: bool) -> Variable {
        Variable {
            inner: Arc::new(Inner {
                id: VariableId::fresh(),
                name: name.into(),
                shape: value.shape().to_vec(),
                trainable: AtomicBool::new(trainable),
                value: RwLock::new(value),
            }),
        }
    }

    /// The identity shared by all clones of this variable.
    pub fn id(&self) -> VariableId {
        self.inner.id
    }

    /// The name, e.g. `"dense/kernel"`.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The fixed shape.
    pub fn shape(&self) -> &[usize] {
        &self.inner.shape
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.inner.shape.iter().product()
    }

    /// Whether the variable holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the variable is trained (differentiated and updated by optimizers).
    pub fn trainable(&self) -> bool {
        self.inner.trainable.load(Ordering::Relaxed)
    }

    /// Freezes (`false`) or unfreezes (`true`) the variable, for every clone, as Keras'
    /// `layer.trainable = False`. Tapes consult this when the variable is watched.
    pub fn set_trainable(&self, trainable: bool) {
        self.inner.trainable.store(trainable, Ordering::Relaxed);
    }

    /// The current value (a cheap clone sharing the buffer; copy-on-write keeps it unchanged by
    /// later updates of the variable).
    pub fn value(&self) -> Tensor {
        self.read().clone()
    }

    /// Replaces the value.
    ///
    /// # Errors
    /// [`AutogradError::VariableShape`] when `value`'s shape is not the variable's shape.
    pub fn assign(&self, value: Tensor) -> Result<()> {
        if value.shape() != self.shape() {
            return Err(AutogradError::VariableShape {
                name: self.name().to_string(),
                expected: self.shape().to_vec(),
                got: value.shape().to_vec(),
            });
        }
        *self.write() = value;
        Ok(())
    }

    /// Runs `f` on the values (row-major) in place and returns its result: the way optimizers
    /// update a variable. The buffer is copied first only if a clone of the value is still alive
    /// elsewhere (a [`Var`](crate::Var) or a tensor from [`value`](Variable::value)).
    pub fn update<R>(&self, f: impl FnOnce(&mut [f32]) -> R) -> R {
        f(self.write().as_slice_mut())
    }

    /// Runs `f` on the values (row-major, read-only) and returns its result.
    pub fn with_values<R>(&self, f: impl FnOnce(&[f32]) -> R) -> R {
        let guard = self.read();
        match guard.as_slice() {
            Some(s) => f(s),
            None => f(&guard.to_vec()),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Tensor> {
        // A panic while holding the lock cannot leave a tensor half-written in a way that matters
        // more than the panic itself: recover the guard.
        self.inner
            .value
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Tensor> {
        self.inner
            .value
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_value_and_the_id() {
        let a = Variable::new("a", Tensor::zeros(&[2]));
        let b = a.clone();
        a.assign(Tensor::ones(&[2])).unwrap();
        assert_eq!(b.value().to_vec(), vec![1.0, 1.0]);
        assert_eq!(a.id(), b.id());
        assert_ne!(a.id(), Variable::new("a", Tensor::zeros(&[2])).id());
    }

    #[test]
    fn assign_checks_the_shape_and_names_it() {
        let v = Variable::new("dense/kernel", Tensor::zeros(&[3, 2]));
        let e = v.assign(Tensor::zeros(&[2, 3])).unwrap_err();
        assert_eq!(
            e,
            AutogradError::VariableShape {
                name: "dense/kernel".into(),
                expected: vec![3, 2],
                got: vec![2, 3]
            }
        );
        let msg = e.to_string();
        assert!(msg.contains("dense/kernel") && msg.contains("[3, 2]") && msg.contains("[2, 3]"));
        assert_eq!(v.value().to_vec(), vec![0.0; 6]);
    }

    #[test]
    fn update_does_not_show_through_an_earlier_value() {
        let v = Variable::new("v", Tensor::ones(&[3]));
        let before = v.value();
        v.update(|x| x[0] = 7.0);
        assert_eq!(before.to_vec(), vec![1.0; 3]);
        assert_eq!(v.value().to_vec(), vec![7.0, 1.0, 1.0]);
        assert_eq!(v.with_values(|x| x.iter().sum::<f32>()), 9.0);
    }

    #[test]
    fn trainable_flag_is_shared() {
        let v = Variable::non_trainable("bn/moving_mean", Tensor::zeros(&[4]));
        assert!(!v.trainable());
        let w = v.clone();
        w.set_trainable(true);
        assert!(v.trainable());
    }

    #[test]
    fn variables_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Variable>();
    }
}
