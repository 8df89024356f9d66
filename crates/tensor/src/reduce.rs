//! Reductions: whole-tensor sums and extrema, reductions over axes, arg-extrema, norms and the
//! comparisons tests use (`allclose`, `max_abs_diff`).

use crate::error::{Result, TensorError};
use crate::shape::normalize_axis;
use crate::tensor::Tensor;

/// Sum of a slice in f64, with eight independent accumulators so the loop vectorises.
pub(crate) fn sum_f64(x: &[f32]) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v as f64;
        }
    }
    let tail: f64 = rest.iter().map(|&v| v as f64).sum();
    acc.iter().sum::<f64>() + tail
}

/// Folds a non-empty slice with `f` over eight interleaved lanes (so the loop vectorises), then
/// folds the lanes. `f` must be associative and commutative up to NaN propagation (max, min).
#[inline]
fn fold_lanes(x: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [x[0]; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = f(*a, v);
        }
    }
    let lanes = acc.iter().copied().fold(x[0], &f);
    tail.iter().copied().fold(lanes, f)
}

/// `max(a, b)` that propagates NaN from `b` (and keeps a NaN `a`).
#[inline]
fn max_nan(a: f32, b: f32) -> f32 {
    if b > a || b.is_nan() { b } else { a }
}

/// `min(a, b)` that propagates NaN from `b` (and keeps a NaN `a`).
#[inline]
fn min_nan(a: f32, b: f32) -> f32 {
    if b < a || b.is_nan() { b } else { a }
}

/// The reduction kinds that share the axis machinery.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Sum,
    Max,
    Min,
}

/// Reduces the middle axis of a contiguous `[outer, r, inner]` block.
fn reduce_block(x: &[f32], outer: usize, r: usize, inner: usize, kind: Kind) -> Vec<f32> {
    let mut out = Vec::with_capacity(outer * inner);
    if outer * inner == 0 {
        return out;
    }
    if r == 0 {
        let fill = match kind {
            Kind::Sum => 0.0,
            Kind::Max | Kind::Min => f32::NAN,
        };
        out.resize(outer * inner, fill);
        return out;
    }
    for block in x.chunks_exact(r * inner).take(outer) {
        if inner == 1 {
            out.push(match kind {
                Kind::Sum => sum_f64(block) as f32,
                Kind::Max => fold_lanes(block, max_nan),
                Kind::Min => fold_lanes(block, min_nan),
            });
            continue;
        }
        match kind {
            Kind::Sum => {
                let mut acc = vec![0.0f64; inner];
                for row in block.chunks_exact(inner) {
                    for (a, &v) in acc.iter_mut().zip(row) {
                        *a += v as f64;
                    }
                }
                out.extend(acc.iter().map(|&a| a as f32));
            }
            Kind::Max | Kind::Min => {
                let f = if matches!(kind, Kind::Max) {
                    max_nan
                } else {
                    min_nan
                };
                let start = out.len();
                out.extend_from_slice(&block[..inner]);
                let acc = &mut out[start..];
                for row in block.chunks_exact(inner).skip(1) {
                    for (a, &v) in acc.iter_mut().zip(row) {
                        *a = f(*a, v);
                    }
                }
            }
        }
    }
    out
}

/// Validates `axes` for a tensor of shape `shape`: in range, no repeats. Returns them sorted.
pub(crate) fn normalize_axes(
    op: &'static str,
    axes: &[isize],
    shape: &[usize],
) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let ax = normalize_axis(op, a, shape)?;
        if out.contains(&ax) {
            return Err(TensorError::InvalidArgument {
                op,
                message: format!("axis {a} appears twice in {axes:?} (shape {shape:?})"),
            });
        }
        out.push(ax);
    }
    out.sort_unstable();
    Ok(out)
}

impl Tensor {
    /// Reduces over `axes` with `kind`, grouping consecutive axes into one block each.
    fn reduce_axes(
        &self,
        op: &'static str,
        axes: &[isize],
        keepdims: bool,
        kind: Kind,
    ) -> Result<Tensor> {
        let axes = normalize_axes(op, axes, self.shape())?;
        let src = self.to_contiguous();
        let mut shape = self.shape().to_vec();
        let mut data: Option<Vec<f32>> = None;
        // Runs of consecutive axes, processed from the last so earlier indices stay valid.
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for &a in &axes {
            match runs.last_mut() {
                Some((_, end)) if *end == a => *end += 1,
                _ => runs.push((a, a + 1)),
            }
        }
        for &(start, end) in runs.iter().rev() {
            let outer: usize = shape[..start].iter().product();
            let r: usize = shape[start..end].iter().product();
            let inner: usize = shape[end..].iter().product();
            let x = match &data {
                Some(d) => d.as_slice(),
                None => src.as_slice().expect("contiguous"),
            };
            data = Some(reduce_block(x, outer, r, inner, kind));
            shape.drain(start..end);
        }
        let reduced = match data {
            Some(d) => Tensor::from_parts(d, &shape),
            None => src,
        };
        if keepdims {
            let kept: Vec<usize> = (0..self.ndim())
                .map(|i| {
                    if axes.contains(&i) {
                        1
                    } else {
                        self.shape()[i]
                    }
                })
                .collect();
            reduced.reshape(&kept)
        } else {
            Ok(reduced)
        }
    }

    /// Sum over `axes`: `out[j] = sum_i self[i]` over the indices `i` that agree with `j` off
    /// those axes. Accumulates in f64.
    ///
    /// The reduced axes are removed, or kept with length 1 when `keepdims`. An empty `axes`
    /// returns the tensor unchanged. Negative axes count from the end.
    ///
    /// ```
    /// use gradus_tensor::Tensor;
    ///
    /// let t = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
    /// assert_eq!(t.sum_axes(&[0], false)?.to_vec(), vec![5.0, 7.0, 9.0]);
    /// assert_eq!(t.sum_axes(&[-1], true)?.shape(), &[2, 1]);
    /// # Ok::<(), gradus_tensor::TensorError>(())
    /// ```
    ///
    /// # Errors
    /// [`TensorError::AxisOutOfRange`] for an axis outside `-rank..rank`;
    /// [`TensorError::InvalidArgument`] for a repeated axis.
    pub fn sum_axes(&self, axes: &[isize], keepdims: bool) -> Result<Tensor> {
        self.reduce_axes("sum_axes", axes, keepdims, Kind::Sum)
    }

    /// Mean over `axes`: [`sum_axes`](Tensor::sum_axes) divided by the number of elements
    /// reduced (NaN when that number is 0). Shapes as in `sum_axes`.
    ///
    /// # Errors
    /// As [`sum_axes`](Tensor::sum_axes).
    pub fn mean_axes(&self, axes: &[isize], keepdims: bool) -> Result<Tensor> {
        let s = self.reduce_axes("mean_axes", axes, keepdims, Kind::Sum)?;
        let count: usize = normalize_axes("mean_axes", axes, self.shape())?
            .iter()
            .map(|&a| self.shape()[a])
            .product();
        Ok(s.div_scalar(count as f32))
    }

    /// Maximum over `axes` (NaN if any reduced element is NaN, or if an axis is empty). Shapes
    /// as in [`sum_axes`](Tensor::sum_axes).
    ///
    /// # Errors
    /// As [`sum_axes`](Tensor::sum_axes).
    pub fn max_axes(&self, axes: &[isize], keepdims: bool) -> Result<Tensor> {
        self.reduce_axes("max_axes", axes, keepdims, Kind::Max)
    }

    /// Minimum over `axes` (NaN if any reduced element is NaN, or if an axis is empty). Shapes
    /// as in [`sum_axes`](Tensor::sum_axes).
    ///
    /// # Errors
    /// As [`sum_axes`](Tensor::sum_axes).
    pub fn min_axes(&self, axes: &[isize], keepdims: bool) -> Result<Tensor> {
        self.reduce_axes("min_axes", axes, keepdims, Kind::Min)
    }

    /// Sum over one axis; see [`sum_axes`](Tensor::sum_axes).
    ///
    /// # Errors
    /// [`TensorError::AxisOutOfRange`] for an axis outside `-rank..rank`.
    pub fn sum_axis(&self, axis: isize, keepdims: bool) -> Result<Tensor> {
        self.sum_axes(&[axis], keepdims)
    }

    /// Mean over one axis; see [`mean_axes`](Tensor::mean_axes).
    ///
    /// # Errors
    /// [`TensorError::AxisOutOfRange`] for an axis outside `-rank..rank`.
    pub fn mean_axis(&self, axis: isize, keepdims: bool) -> Result<Tensor> {
        self.mean_axes(&[axis], keepdims)
    }

    /// Maximum over one axis; see [`max_axes`](Tensor::max_axes).
    ///
    /// # Errors
    /// [`TensorError::AxisOutOfRange`] for an axis outside `-rank..rank`.
    pub fn max_axis(&self, axis: isize, keepdims: bool) -> Result<Tensor> {
        self.max_axes(&[axis], keepdims)
    }

    /// Minimum over one axis; see [`min_axes`](Tensor::min_axes).
    ///
    /// # Errors
    /// [`TensorError::AxisOutOfRange`] for an axis outside `-rank..rank`.
    pub fn min_axis(&self, axis: isize, keepdims: bool) -> Result<Tensor> {
        self.min_axes(&[axis], keepdims)
    }

    /// Sum of all elements, `sum_i x_i`, accumulated in f64 (0 for an empty tensor).
    pub fn sum_all(&self) -> f32 {
        match self.as_slice() {
            Some(s) => sum_f64(s) as f32,
            None => self.data.iter().map(|&v| v as f64).sum::<f64>() as f32,
        }
    }

    /// Mean of all elements, `sum_i x_i / n` (NaN for an empty tensor).
    pub fn mean_all(&self) -> f32 {
        if self.is_empty() {
            return f32::NAN;
        }
        let s = match self.as_slice() {
            Some(s) => sum_f64(s),
            None => self.data.iter().map(|&v| v as f64).sum::<f64>(),
        };
        (s / self.len() as f64) as f32
    }

    /// Largest element (NaN for an empty tensor or when any element is NaN).
    pub fn max_all(&self) -> f32 {
        self.fold_all(max_nan)
    }

    /// Smallest element (NaN for an empty tensor or when any element is NaN).
    pub fn min_all(&self) -> f32 {
        self.fold_all(min_nan)
    }

    /// Folds every element with `f` (NaN when empty).
    fn fold_all(&self, f: fn(f32, f32) -> f32) -> f32 {
        match (self.as_slice(), self.data.iter().next()) {
            (_, None) => f32::NAN,
            (Some(s), _) => fold_lanes(s, f),
            (None, Some(&first)) => self.data.iter().copied().fold(first, f),
        }
    }

    /// Euclidean norm of all elements, `sqrt(sum_i x_i^2)`, accumulated in f64.
    pub fn norm_l2(&self) -> f32 {
        let sq: f64 = match self.as_slice() {
            Some(s) => {
                let mut acc = [0.0f64; 8];
                let chunks = s.chunks_exact(8);
                let tail: f64 = chunks
                    .remainder()
                    .iter()
                    .map(|&v| (v as f64) * (v as f64))
                    .sum();
                for c in chunks {
                    for (a, &v) in acc.iter_mut().zip(c) {
                        *a += (v as f64) * (v as f64);
                    }
                }
                acc.iter().sum::<f64>() + tail
            }
            None => self.data.iter().map(|&v| (v as f64) * (v as f64)).sum(),
        };
        sq.sqrt() as f32
    }

    /// Index of the largest element along `axis`, as f32; the axis is removed. The first of equal
    /// maxima wins, and a NaN counts as larger than everything (the first NaN wins).
    ///
    /// ```
    /// use gradus_tensor::Tensor;
    ///
    /// let t = Tensor::from_vec(vec![1.0, 5.0, 5.0, 7.0, 0.0, 2.0], &[2, 3])?;
    /// assert_eq!(t.argmax(-1)?.to_vec(), vec![1.0, 0.0]);
    /// assert_eq!(t.argmax(0)?.to_vec(), vec![1.0, 0.0, 0.0]);
    /// # Ok::<(), gradus_tensor::TensorError>(())
    /// ```
    ///
    /// # Errors
    /// [`TensorError::AxisOutOfRange`] for a bad axis; [`TensorError::InvalidArgument`] when the
    /// axis has length 0 (there is no index to return).
    pub fn argmax(&self, axis: isize) -> Result<Tensor> {
        self.arg_extremum("argmax", axis, |best, v| {
            v > best || (v.is_nan() && !best.is_nan())
        })
    }

    /// Index of the smallest element along `axis`, as f32; the axis is removed. The first of equal
    /// minima wins, and a NaN counts as smaller than everything (the first NaN wins).
    ///
    /// # Errors
    /// As [`argmax`](Tensor::argmax).
    pub fn argmin(&self, axis: isize) -> Result<Tensor> {
        self.arg_extremum("argmin", axis, |best, v| {
            v < best || (v.is_nan() && !best.is_nan())
        })
    }

    fn arg_extremum(
        &self,
        op: &'static str,
        axis: isize,
        better: impl Fn(f32, f32) -> bool,
    ) -> Result<Tensor> {
        let ax = normalize_axis(op, axis, self.shape())?;
        let shape = self.shape();
        let r = shape[ax];
        let mut out_shape = shape.to_vec();
        out_shape.remove(ax);
        if r == 0 {
            let n: usize = out_shape.iter().product();
            if n == 0 {
                return Ok(Tensor::zeros(&out_shape));
            }
            return Err(TensorError::InvalidArgument {
                op,
                message: format!(
                    "axis {axis} of shape {shape:?} is empty: there is no index to return"
                ),
            });
        }
        let outer: usize = shape[..ax].iter().product();
        let inner: usize = shape[ax + 1..].iter().product();
        let src = self.to_contiguous();
        let x = src.as_slice().expect("contiguous");
        let mut idx = vec![0.0f32; outer * inner];
        for o in 0..outer {
            let block = &x[o * r * inner..(o + 1) * r * inner];
            for i in 0..inner {
                let mut best = block[i];
                let mut best_j = 0;
                for j in 1..r {
                    let v = block[j * inner + i];
                    if better(best, v) {
                        best = v;
                        best_j = j;
                    }
                }
                idx[o * inner + i] = best_j as f32;
            }
        }
        Ok(Tensor::from_parts(idx, &out_shape))
    }

    /// Whether both tensors have the same shape and every pair of elements satisfies
    /// `|a - b| <= atol + rtol * |b|` (NaN never does).
    pub fn allclose(&self, other: &Tensor, rtol: f32, atol: f32) -> bool {
        self.shape() == other.shape()
            && self
                .data
                .iter()
                .zip(other.data.iter())
                .all(|(&a, &b)| (a - b).abs() <= atol + rtol * b.abs() || a == b)
    }

    /// The largest elementwise difference `max_i |a_i - b_i|` (0 for empty tensors, NaN if any
    /// difference is NaN).
    ///
    /// # Errors
    /// [`TensorError::IncompatibleShapes`] when the shapes differ.
    pub fn max_abs_diff(&self, other: &Tensor) -> Result<f32> {
        if self.shape() != other.shape() {
            return Err(TensorError::IncompatibleShapes {
                op: "max_abs_diff",
                lhs: self.shape().to_vec(),
                rhs: other.shape().to_vec(),
                reason: "the shapes must be equal".to_string(),
            });
        }
        Ok(self
            .data
            .iter()
            .zip(other.data.iter())
            .map(|(&a, &b)| (a - b).abs())
            .fold(0.0, max_nan))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_axis_runs() {
        let t = Tensor::arange(0.0, 24.0, 1.0)
            .unwrap()
            .reshape(&[2, 3, 4])
            .unwrap();
        let s = t.sum_axes(&[0, 2], false).unwrap();
        // naive
        let want: Vec<f32> = (0..3)
            .map(|j| {
                let mut acc = 0.0;
                for i in 0..2 {
                    for k in 0..4 {
                        acc += t.get(&[i, j, k]).unwrap();
                    }
                }
                acc
            })
            .collect();
        assert_eq!(s.to_vec(), want);
        assert_eq!(t.sum_axes(&[2, 0], true).unwrap().shape(), &[1, 3, 1]);
        assert_eq!(t.sum_axes(&[0, 1, 2], false).unwrap().to_vec(), vec![276.0]);
        assert!(t.sum_axes(&[0, -3], false).is_err());
        assert!(t.sum_axes(&[3], false).is_err());
        assert_eq!(
            t.max_axes(&[1, 2], false).unwrap().to_vec(),
            vec![11.0, 23.0]
        );
        assert_eq!(t.min_axis(1, false).unwrap().get(&[1, 2]).unwrap(), 14.0);
        assert_eq!(
            t.mean_axes(&[-1], false).unwrap().get(&[0, 0]).unwrap(),
            1.5
        );
    }

    #[test]
    fn empty_reductions() {
        let e = Tensor::zeros(&[0, 3]);
        assert_eq!(e.sum_all(), 0.0);
        assert!(e.mean_all().is_nan() && e.max_all().is_nan() && e.min_all().is_nan());
        assert_eq!(e.sum_axis(0, false).unwrap().to_vec(), vec![0.0; 3]);
        assert!(
            e.mean_axis(0, false)
                .unwrap()
                .to_vec()
                .iter()
                .all(|v| v.is_nan())
        );
        assert!(
            e.max_axis(0, false)
                .unwrap()
                .to_vec()
                .iter()
                .all(|v| v.is_nan())
        );
        assert_eq!(e.max_axis(1, false).unwrap().shape(), &[0]);
        assert!(e.argmax(0).is_err());
        let z = Tensor::zeros(&[2, 3, 0]);
        assert_eq!(z.sum_axis(1, false).unwrap().shape(), &[2, 0]);
        assert_eq!(z.max_axes(&[0, 1], true).unwrap().shape(), &[1, 1, 0]);
        assert_eq!(e.argmax(1).unwrap().shape(), &[0]);
    }

    #[test]
    fn nan_propagates_through_max_and_argmax() {
        let t = Tensor::from_vec(vec![1.0, f32::NAN, 3.0, f32::NAN], &[4]).unwrap();
        assert!(t.max_all().is_nan() && t.min_all().is_nan());
        assert_eq!(t.argmax(0).unwrap().to_vec(), vec![1.0]);
        assert_eq!(t.argmin(0).unwrap().to_vec(), vec![1.0]);
    }

    #[test]
    fn allclose_and_diff() {
        let a = Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap();
        let b = Tensor::from_vec(vec![1.0, 2.001], &[2]).unwrap();
        assert!(a.allclose(&b, 1e-3, 0.0));
        assert!(!a.allclose(&b, 1e-4, 0.0));
        assert!(!a.allclose(&Tensor::ones(&[1, 2]), 1.0, 1.0));
        assert!((a.max_abs_diff(&b).unwrap() - 0.001).abs() < 1e-6);
        assert!(a.max_abs_diff(&Tensor::ones(&[3])).is_err());
    }
}
