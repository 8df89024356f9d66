//! The [`Tensor`] type: creation, inspection and conversion.

use std::sync::atomic::{AtomicBool, Ordering};

use ndarray::{ArcArray, ArrayD, ArrayViewD, ArrayViewMutD, Ix2, IxDyn};

use crate::error::{Result, TensorError};
use crate::rng::Rng;

/// An n-dimensional array of `f32`, row-major, cheap to clone.
///
/// A `Tensor` wraps an [`ndarray::ArcArray`]: cloning shares the buffer (a reference-count bump),
/// and a write through [`as_slice_mut`](Tensor::as_slice_mut) copies it first only when it is shared
/// (copy on write). Views such as a transpose share the buffer too and carry strides, which the
/// kernels (matmul in particular) consume without copying.
///
/// A rank-0 tensor (shape `[]`) is a scalar.
///
/// ```
/// use gradus_tensor::Tensor;
///
/// let t = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
/// assert_eq!(t.shape(), &[2, 3]);
/// assert_eq!(t.len(), 6);
/// assert_eq!(t.to_vec(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
/// # Ok::<(), gradus_tensor::TensorError>(())
/// ```
#[derive(Clone)]
pub struct Tensor {
    pub(crate) data: ArcArray<f32, IxDyn>,
    /// Set when a scan found every element finite ([`Tensor::first_non_finite`]); every
    /// mutable access to `data` clears it.
    pub(crate) finite: FiniteMemo,
}

impl PartialEq for Tensor {
    /// Same shape and same values (the memo of a past scan does not count).
    fn eq(&self, other: &Tensor) -> bool {
        self.data == other.data
    }
}

/// The remembered answer "every element is finite" of one tensor.
///
/// Sound because the elements change only through `&mut Tensor` ([`Tensor::as_slice_mut`],
/// [`Tensor::view_mut`] (which a product's output goes through) and `take_data`), which clear
/// it, while a clone that shares the buffer is copied before it is written (copy on write) and
/// keeps its own memo. `data` is visible to this crate: code here that writes it must go through
/// those methods (the only writes today). Atomic so that a tensor shared between threads can be
/// scanned from any of them; any ordering will do, since the elements it describes cannot change
/// while it is shared.
#[derive(Debug, Default)]
pub(crate) struct FiniteMemo(AtomicBool);

impl Clone for FiniteMemo {
    fn clone(&self) -> FiniteMemo {
        FiniteMemo(AtomicBool::new(self.get()))
    }
}

impl FiniteMemo {
    /// Whether every element is known to be finite.
    pub(crate) fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Records that every element is finite.
    pub(crate) fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Forgets it (the elements are about to change).
    fn clear(&mut self) {
        *self.0.get_mut() = false;
    }
}

impl Drop for Tensor {
    /// Gives a large buffer to the thread's [pool](crate::buffer) when this is its last holder.
    fn drop(&mut self) {
        if self.data.len() < crate::buffer::MIN_POOLED_LEN || !self.data.is_unique() {
            return;
        }
        if let Ok(owned) = self.take_data().try_into_owned_nocopy() {
            crate::buffer::give(owned.into_raw_vec_and_offset().0);
        }
    }
}

impl Tensor {
    /// Moves the array out, leaving an empty one (`Tensor` implements `Drop`).
    pub(crate) fn take_data(&mut self) -> ArcArray<f32, IxDyn> {
        self.finite.clear();
        std::mem::replace(&mut self.data, ArcArray::from_vec(Vec::new()).into_dyn())
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor(shape={:?}, {})", self.shape(), self.data)
    }
}

impl std::fmt::Display for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.data, f)
    }
}

impl From<ArrayD<f32>> for Tensor {
    fn from(a: ArrayD<f32>) -> Self {
        Tensor::from(a.into_shared())
    }
}

impl From<ArcArray<f32, IxDyn>> for Tensor {
    fn from(data: ArcArray<f32, IxDyn>) -> Self {
        Tensor {
            data,
            finite: FiniteMemo::default(),
        }
    }
}

impl From<f32> for Tensor {
    fn from(v: f32) -> Self {
        Tensor::scalar(v)
    }
}

impl Tensor {
    // ------------------------------------------------------------------ creation

    /// A contiguous tensor from row-major `values` whose length the caller has checked.
    pub(crate) fn from_parts(values: Vec<f32>, shape: &[usize]) -> Tensor {
        debug_assert_eq!(values.len(), shape.iter().product::<usize>());
        Tensor::from(ArrayD::from_shape_vec(IxDyn(shape), values).expect("length matches shape"))
    }

    /// A tensor of the given shape filled with `value`.
    pub fn full(shape: &[usize], value: f32) -> Tensor {
        let mut v = crate::buffer::take(shape.iter().product());
        v.fill(value);
        Tensor::from_parts(v, shape)
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 0.0)
    }

    /// A tensor of ones.
    pub fn ones(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 1.0)
    }

    /// A rank-0 tensor holding `value`.
    pub fn scalar(value: f32) -> Tensor {
        Tensor::full(&[], value)
    }

    /// A tensor of the given shape from row-major `values`.
    ///
    /// # Errors
    /// [`TensorError::ElementCount`] when `values.len()` is not the product of `shape`.
    pub fn from_vec(values: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
        let expected: usize = shape.iter().product();
        if values.len() != expected {
            return Err(TensorError::ElementCount {
                op: "from_vec",
                shape: shape.to_vec(),
                expected,
                got: values.len(),
            });
        }
        let a = ArrayD::from_shape_vec(IxDyn(shape), values).map_err(|e| {
            TensorError::InvalidArgument {
                op: "from_vec",
                message: format!("shape {shape:?}: {e}"),
            }
        })?;
        Ok(Tensor::from(a))
    }

    /// A tensor of the given shape from row-major `values` (copied).
    ///
    /// # Errors
    /// As [`from_vec`](Tensor::from_vec).
    pub fn from_slice(values: &[f32], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_vec(values.to_vec(), shape)
    }

    /// A 1-D tensor of `start, start + step, ...` up to but excluding `stop` (as NumPy's `arange`).
    ///
    /// # Errors
    /// [`TensorError::InvalidArgument`] when `step` is zero or any argument is not finite.
    pub fn arange(start: f32, stop: f32, step: f32) -> Result<Tensor> {
        if step == 0.0 || !start.is_finite() || !stop.is_finite() || !step.is_finite() {
            return Err(TensorError::InvalidArgument {
                op: "arange",
                message: format!(
                    "expected finite start/stop and a non-zero finite step, got start={start}, stop={stop}, step={step}"
                ),
            });
        }
        let n = ((stop as f64 - start as f64) / step as f64).ceil().max(0.0) as usize;
        let values = (0..n)
            .map(|i| (start as f64 + i as f64 * step as f64) as f32)
            .collect::<Vec<_>>();
        Tensor::from_vec(values, &[n])
    }

    /// The `n x n` identity matrix.
    pub fn eye(n: usize) -> Tensor {
        Tensor::from(ArrayD::from_shape_fn(IxDyn(&[n, n]), |ix| {
            if ix[0] == ix[1] { 1.0 } else { 0.0 }
        }))
    }

    /// Uniform samples in `[low, high)` drawn from `rng`, in row-major order.
    pub fn rand_uniform(shape: &[usize], low: f32, high: f32, rng: &mut Rng) -> Tensor {
        let n = shape.iter().product();
        let v = (0..n).map(|_| rng.uniform_range(low, high)).collect();
        Tensor::from(ArrayD::from_shape_vec(IxDyn(shape), v).expect("length matches shape"))
    }

    /// Normal samples with the given mean and standard deviation drawn from `rng`, row-major.
    pub fn rand_normal(shape: &[usize], mean: f32, std: f32, rng: &mut Rng) -> Tensor {
        let n = shape.iter().product();
        let v = (0..n).map(|_| mean + std * rng.normal_f32()).collect();
        Tensor::from(ArrayD::from_shape_vec(IxDyn(shape), v).expect("length matches shape"))
    }

    // ------------------------------------------------------------------ inspection

    /// The shape (the length of each axis).
    pub fn shape(&self) -> &[usize] {
        self.data.shape()
    }

    /// The number of axes.
    pub fn ndim(&self) -> usize {
        self.data.ndim()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The elements in row-major order, copied.
    pub fn to_vec(&self) -> Vec<f32> {
        match self.data.as_slice() {
            Some(s) => s.to_vec(),
            None => self.data.iter().copied().collect(),
        }
    }

    /// The elements as one row-major slice, when the tensor is contiguous in row-major order.
    pub fn as_slice(&self) -> Option<&[f32]> {
        self.data.as_slice()
    }

    /// The elements as one mutable row-major slice. The buffer is first made contiguous and owned
    /// by this tensor alone (copied if it was shared), so writes never show through other clones.
    pub fn as_slice_mut(&mut self) -> &mut [f32] {
        self.finite.clear();
        if !self.data.is_standard_layout() {
            self.data = self.to_contiguous().take_data();
        }
        self.data
            .as_slice_mut()
            .expect("a standard-layout array has a row-major slice")
    }

    /// The single value of a one-element tensor.
    ///
    /// # Errors
    /// [`TensorError::InvalidArgument`] when the tensor does not hold exactly one element.
    pub fn item(&self) -> Result<f32> {
        if self.len() != 1 {
            return Err(TensorError::InvalidArgument {
                op: "item",
                message: format!(
                    "expected a tensor with exactly one element, got shape {:?}",
                    self.shape()
                ),
            });
        }
        Ok(*self.data.iter().next().expect("one element"))
    }

    /// The element at a full index.
    ///
    /// # Errors
    /// [`TensorError::InvalidArgument`] when the index has the wrong length or is out of bounds.
    pub fn get(&self, index: &[usize]) -> Result<f32> {
        self.data
            .get(IxDyn(index))
            .copied()
            .ok_or_else(|| TensorError::InvalidArgument {
                op: "get",
                message: format!(
                    "index {index:?} is out of bounds for shape {:?}",
                    self.shape()
                ),
            })
    }

    /// Whether the elements are laid out contiguously in row-major order.
    pub fn is_contiguous(&self) -> bool {
        self.data.is_standard_layout()
    }

    /// This tensor with its elements contiguous in row-major order (no copy when already so).
    pub fn to_contiguous(&self) -> Tensor {
        if self.is_contiguous() {
            self.clone()
        } else {
            let v = crate::buffer::take(self.len());
            let mut out = ArrayD::from_shape_vec(self.data.raw_dim(), v).expect("length matches");
            copy_into(out.view_mut(), self.data.view());
            Tensor::from(out)
        }
    }

    // ------------------------------------------------------------------ ndarray interop

    /// A read-only ndarray view.
    pub fn view(&self) -> ArrayViewD<'_, f32> {
        self.data.view()
    }

    /// A mutable ndarray view (the buffer is made unique first, as in
    /// [`as_slice_mut`](Tensor::as_slice_mut), but keeps its layout).
    pub fn view_mut(&mut self) -> ArrayViewMutD<'_, f32> {
        self.finite.clear();
        self.data.view_mut()
    }

    /// The underlying shared array.
    pub fn array(&self) -> &ArcArray<f32, IxDyn> {
        &self.data
    }

    /// The underlying array, owned (copied only if the buffer is shared).
    pub fn into_array(mut self) -> ArrayD<f32> {
        self.take_data().into_owned()
    }

    /// Applies `f` to every element, giving a new contiguous tensor.
    pub fn map(&self, f: impl Fn(f32) -> f32) -> Tensor {
        match self.data.as_slice() {
            Some(s) => {
                let mut v = crate::buffer::take(s.len());
                v.iter_mut().zip(s).for_each(|(o, &x)| *o = f(x));
                Tensor::from_parts(v, self.shape())
            }
            None => Tensor::from(self.data.map(|&x| f(x))),
        }
    }
}

/// Copies `src` into `dst` (same shape). The last two axes are copied row by row when rows are
/// contiguous in `src`, else in square tiles so that a transposed source is read with locality.
fn copy_into(mut dst: ArrayViewMutD<'_, f32>, src: ArrayViewD<'_, f32>) {
    const TILE: usize = 32;
    match src.ndim() {
        0 | 1 => dst.assign(&src),
        2 => {
            let src = src.into_dimensionality::<Ix2>().expect("2-D");
            let mut dst = dst.into_dimensionality::<Ix2>().expect("2-D");
            let (rows, cols) = src.dim();
            if src.strides()[1] == 1 {
                for (mut d, s) in dst.rows_mut().into_iter().zip(src.rows()) {
                    d.assign(&s);
                }
                return;
            }
            for i0 in (0..rows).step_by(TILE) {
                for j0 in (0..cols).step_by(TILE) {
                    for i in i0..(i0 + TILE).min(rows) {
                        for j in j0..(j0 + TILE).min(cols) {
                            // SAFETY: i < rows and j < cols, the common shape of both views.
                            unsafe { *dst.uget_mut((i, j)) = *src.uget((i, j)) };
                        }
                    }
                }
            }
        }
        _ => {
            for (d, s) in dst.outer_iter_mut().zip(src.outer_iter()) {
                copy_into(d, s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_vec_checks_the_count() {
        let e = Tensor::from_vec(vec![1.0; 5], &[2, 3]).unwrap_err();
        assert_eq!(
            e,
            TensorError::ElementCount {
                op: "from_vec",
                shape: vec![2, 3],
                expected: 6,
                got: 5
            }
        );
        assert!(e.to_string().contains("[2, 3]") && e.to_string().contains('5'));
    }

    #[test]
    fn arange_matches_numpy() {
        assert_eq!(
            Tensor::arange(0.0, 5.0, 1.0).unwrap().to_vec(),
            vec![0.0, 1.0, 2.0, 3.0, 4.0]
        );
        assert_eq!(
            Tensor::arange(1.0, 2.0, 0.25).unwrap().to_vec(),
            vec![1.0, 1.25, 1.5, 1.75]
        );
        assert_eq!(
            Tensor::arange(3.0, 0.0, -1.5).unwrap().to_vec(),
            vec![3.0, 1.5]
        );
        assert!(Tensor::arange(5.0, 0.0, 1.0).unwrap().is_empty());
        assert!(Tensor::arange(0.0, 1.0, 0.0).is_err());
    }

    #[test]
    fn eye_and_scalar() {
        assert_eq!(Tensor::eye(2).to_vec(), vec![1.0, 0.0, 0.0, 1.0]);
        let s = Tensor::scalar(3.5);
        assert_eq!(s.shape(), &[] as &[usize]);
        assert_eq!(s.item().unwrap(), 3.5);
        assert!(Tensor::zeros(&[2]).item().is_err());
    }

    #[test]
    fn clones_share_until_written() {
        let a = Tensor::ones(&[3]);
        let mut b = a.clone();
        b.as_slice_mut()[0] = 5.0;
        assert_eq!(a.to_vec(), vec![1.0, 1.0, 1.0]);
        assert_eq!(b.to_vec(), vec![5.0, 1.0, 1.0]);
    }

    #[test]
    fn seeded_random_is_reproducible() {
        let a = Tensor::rand_normal(&[4, 5], 0.0, 1.0, &mut Rng::seed_from_u64(3));
        let b = Tensor::rand_normal(&[4, 5], 0.0, 1.0, &mut Rng::seed_from_u64(3));
        assert_eq!(a, b);
        let u = Tensor::rand_uniform(&[1000], -2.0, 3.0, &mut Rng::seed_from_u64(3));
        assert!(u.to_vec().iter().all(|&x| (-2.0..3.0).contains(&x)));
    }

    #[test]
    fn to_contiguous_copies_any_layout() {
        let n = 70 * 45 * 3;
        let values: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let t = Tensor::from_vec(values, &[3, 70, 45]).unwrap();
        let mut p = t.data.clone();
        p.swap_axes(1, 2);
        let p = Tensor::from(p);
        let c = p.to_contiguous();
        assert!(c.is_contiguous());
        for i in 0..3 {
            for j in 0..45 {
                for k in 0..70 {
                    assert_eq!(c.get(&[i, j, k]).unwrap(), t.get(&[i, k, j]).unwrap());
                }
            }
        }
        let mut q = t.data.clone();
        q.swap_axes(0, 2);
        let q = Tensor::from(q);
        assert_eq!(
            q.to_contiguous().to_vec(),
            q.data.iter().copied().collect::<Vec<_>>()
        );
    }

    #[test]
    fn get_checks_bounds() {
        let t = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
        assert_eq!(t.get(&[1, 0]).unwrap(), 3.0);
        assert!(t.get(&[2, 0]).is_err());
        assert!(t.get(&[0]).is_err());
    }
}
