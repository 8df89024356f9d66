//! The seam between an optimizer and a parameter store.
//!
//! An optimizer sees a parameter through [`Param`]: a stable key, a shape and closure-style access
//! to its values. Gradients are anything that is [`AsRef<[f32]>`](AsRef) (`Vec<f32>`, `&[f32]`,
//! arrays, a tensor type that exposes its buffer).
//!
//! Adapters for stores that do not implement [`Param`] themselves:
//! - [`NamedParam`]: a key plus a `&mut [f32]` (1-D, or with an explicit shape) — for plain
//!   `Vec<f32>`s and slices;
//! - [`map_pairs`]: pairs the gradients and parameters of two `HashMap<String, Vec<f32>>`s by key;
//! - `NamedParam::from_array` and [`array_gradient`] (cargo feature `ndarray`): ndarray arrays.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::error::{OptimError, Result};

/// A trainable parameter as an optimizer sees it.
///
/// Three required methods, in the spirit of `rand_core::RngCore`; everything else is provided.
/// The key names the parameter for the optimizer's per-parameter state (Keras' `"dense/kernel"`),
/// so it must be stable across steps and distinct within one step. The values must hold exactly
/// `shape.iter().product()` elements in row-major order (a scalar has shape `[]` and one value).
///
/// Values are reached through a closure, so a store that keeps them behind a lock can take the
/// lock inside [`Param::with_values_mut`] instead of handing out a long-lived borrow.
///
/// ```
/// use gradus_optim::Param;
///
/// /// A parameter kept in a struct of the user's own framework.
/// struct Weight { name: String, shape: Vec<usize>, data: Vec<f32> }
///
/// impl Param for Weight {
///     fn key(&self) -> &str { &self.name }
///     fn shape(&self) -> &[usize] { &self.shape }
///     fn with_values_mut(&mut self, f: &mut dyn FnMut(&mut [f32])) { f(&mut self.data) }
/// }
///
/// let mut w = Weight { name: "dense/kernel".into(), shape: vec![2, 2], data: vec![1.0; 4] };
/// let mut opt = gradus_optim::Optimizer::from_name("sgd")?;
/// opt.apply_gradients([(vec![1.0_f32; 4], &mut w)])?;
/// assert_eq!(w.data, vec![0.99; 4]);
/// # Ok::<(), gradus_optim::OptimError>(())
/// ```
pub trait Param {
    /// The stable name of this parameter (e.g. `"dense/kernel"`).
    fn key(&self) -> &str;

    /// The shape; the values hold `shape.iter().product()` elements.
    fn shape(&self) -> &[usize];

    /// Calls `f` once with mutable access to all values, row-major.
    fn with_values_mut(&mut self, f: &mut dyn FnMut(&mut [f32]));

    /// The number of values the shape holds, `None` when the product overflows `usize`.
    fn numel(&self) -> Option<usize> {
        self.shape()
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
    }
}

impl<P: Param + ?Sized> Param for &mut P {
    fn key(&self) -> &str {
        (**self).key()
    }
    fn shape(&self) -> &[usize] {
        (**self).shape()
    }
    fn with_values_mut(&mut self, f: &mut dyn FnMut(&mut [f32])) {
        (**self).with_values_mut(f)
    }
}

impl<P: Param + ?Sized> Param for Box<P> {
    fn key(&self) -> &str {
        (**self).key()
    }
    fn shape(&self) -> &[usize] {
        (**self).shape()
    }
    fn with_values_mut(&mut self, f: &mut dyn FnMut(&mut [f32])) {
        (**self).with_values_mut(f)
    }
}

#[derive(Debug)]
#[cfg_attr(not(feature = "ndarray"), allow(dead_code))]
enum Shape<'a> {
    Flat([usize; 1]),
    Borrowed(&'a [usize]),
    Owned(Vec<usize>),
}

impl Shape<'_> {
    fn as_slice(&self) -> &[usize] {
        match self {
            Shape::Flat(s) => s,
            Shape::Borrowed(s) => s,
            Shape::Owned(s) => s,
        }
    }
}

/// A key plus borrowed values: the [`Param`] adapter for plain `Vec<f32>`s and slices.
///
/// ```
/// use gradus_optim::{NamedParam, Optimizer};
///
/// let mut w = vec![0.5_f32, -0.5];
/// let mut b = vec![0.0_f32];
/// let (gw, gb) = (vec![1.0_f32, 1.0], vec![2.0_f32]);
/// let mut opt = Optimizer::from_name("sgd")?; // learning rate 0.01
/// opt.apply_gradients([
///     (&gw, NamedParam::new("w", &mut w)),
///     (&gb, NamedParam::new("b", &mut b)),
/// ])?;
/// assert_eq!(w, vec![0.49, -0.51]);
/// assert_eq!(b, vec![-0.02]);
/// # Ok::<(), gradus_optim::OptimError>(())
/// ```
#[derive(Debug)]
pub struct NamedParam<'a> {
    key: Cow<'a, str>,
    shape: Shape<'a>,
    values: &'a mut [f32],
}

impl<'a> NamedParam<'a> {
    /// A 1-D parameter of shape `[values.len()]`.
    pub fn new(key: impl Into<Cow<'a, str>>, values: &'a mut [f32]) -> Self {
        NamedParam {
            key: key.into(),
            shape: Shape::Flat([values.len()]),
            values,
        }
    }

    /// A parameter with an explicit row-major shape (needed by Adafactor, which factors the last
    /// two axes).
    ///
    /// # Errors
    /// [`OptimError::ParamLength`] when `shape` does not hold exactly `values.len()` elements.
    pub fn with_shape(
        key: impl Into<Cow<'a, str>>,
        shape: &'a [usize],
        values: &'a mut [f32],
    ) -> Result<Self> {
        let key = key.into();
        let expected = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if expected != Some(values.len()) {
            return Err(OptimError::ParamLength {
                key: key.into_owned(),
                shape: shape.to_vec(),
                expected: expected.unwrap_or(usize::MAX),
                got: values.len(),
            });
        }
        Ok(NamedParam {
            key,
            shape: Shape::Borrowed(shape),
            values,
        })
    }

    /// The values.
    pub fn values(&self) -> &[f32] {
        self.values
    }
}

impl Param for NamedParam<'_> {
    fn key(&self) -> &str {
        &self.key
    }
    fn shape(&self) -> &[usize] {
        self.shape.as_slice()
    }
    fn with_values_mut(&mut self, f: &mut dyn FnMut(&mut [f32])) {
        f(self.values)
    }
}

/// Pairs gradients with parameters held in two maps from name to values (1-D), sorted by name
/// so that the optimizer sees the same order on every step.
///
/// The result feeds [`Optimizer::apply_gradients`](crate::Optimizer::apply_gradients) directly.
/// Parameters without a gradient are left out (Keras skips variables whose gradient is `None`).
///
/// ```
/// use std::collections::HashMap;
/// use gradus_optim::{map_pairs, Optimizer};
///
/// let mut params = HashMap::from([("w".to_string(), vec![1.0_f32, 2.0])]);
/// let grads = HashMap::from([("w".to_string(), vec![1.0_f32, 1.0])]);
/// let mut opt = Optimizer::from_name("sgd")?;
/// opt.apply_gradients(map_pairs(&grads, &mut params)?)?;
/// assert_eq!(params["w"], vec![0.99, 1.99]);
/// # Ok::<(), gradus_optim::OptimError>(())
/// ```
///
/// # Errors
/// [`OptimError::UnknownParameter`] when a gradient names no parameter.
pub fn map_pairs<'a>(
    grads: &'a HashMap<String, Vec<f32>>,
    params: &'a mut HashMap<String, Vec<f32>>,
) -> Result<Vec<(&'a [f32], NamedParam<'a>)>> {
    if let Some(key) = grads.keys().find(|k| !params.contains_key(*k)) {
        return Err(OptimError::UnknownParameter {
            key: key.clone(),
            what: "values (gradient without a parameter)",
        });
    }
    let mut pairs: Vec<(&[f32], NamedParam<'a>)> = params
        .iter_mut()
        .filter_map(|(k, v)| {
            let g = grads.get(k)?;
            Some((g.as_slice(), NamedParam::new(k.as_str(), v.as_mut_slice())))
        })
        .collect();
    pairs.sort_by(|a, b| a.1.key().cmp(b.1.key()));
    Ok(pairs)
}

#[cfg(feature = "ndarray")]
mod array {
    use super::{NamedParam, Shape};
    use crate::error::{OptimError, Result};
    use ndarray::{ArrayBase, Data, DataMut, Dimension};
    use std::borrow::Cow;

    impl<'a> NamedParam<'a> {
        /// An `ndarray` array in standard (row-major, contiguous) layout as a parameter.
        ///
        /// ```
        /// use gradus_optim::{array_gradient, NamedParam, Optimizer};
        /// use ndarray::array;
        ///
        /// let mut w = array![[1.0_f32, 2.0], [3.0, 4.0]];
        /// let g = array![[1.0_f32, 1.0], [1.0, 1.0]];
        /// let mut opt = Optimizer::from_name("sgd")?;
        /// opt.apply_gradients([(array_gradient("w", &g)?, NamedParam::from_array("w", &mut w)?)])?;
        /// assert_eq!(w, array![[0.99_f32, 1.99], [2.99, 3.99]]);
        /// # Ok::<(), gradus_optim::OptimError>(())
        /// ```
        ///
        /// # Errors
        /// [`OptimError::ParamLength`] when the array is not contiguous in standard layout.
        pub fn from_array<S, D>(
            key: impl Into<Cow<'a, str>>,
            array: &'a mut ArrayBase<S, D>,
        ) -> Result<Self>
        where
            S: DataMut<Elem = f32>,
            D: Dimension,
        {
            let key = key.into();
            let shape = array.shape().to_vec();
            let len = array.len();
            match array.as_slice_mut() {
                Some(values) => Ok(NamedParam {
                    key,
                    shape: Shape::Owned(shape),
                    values,
                }),
                None => Err(OptimError::ParamLength {
                    key: format!("{key} (not contiguous in standard layout)"),
                    shape,
                    expected: len,
                    got: 0,
                }),
            }
        }
    }

    /// The values of an `ndarray` gradient as a slice.
    ///
    /// # Errors
    /// [`OptimError::GradientLength`] when the array is not contiguous in standard layout.
    pub fn array_gradient<'a, S, D>(key: &str, array: &'a ArrayBase<S, D>) -> Result<&'a [f32]>
    where
        S: Data<Elem = f32>,
        D: Dimension,
    {
        array.as_slice().ok_or_else(|| OptimError::GradientLength {
            key: format!("{key} (gradient not contiguous in standard layout)"),
            shape: array.shape().to_vec(),
            expected: array.len(),
            got: 0,
        })
    }
}

#[cfg(feature = "ndarray")]
pub use array::array_gradient;
