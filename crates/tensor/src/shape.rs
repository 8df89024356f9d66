//! Shape manipulation: reshape, permute, slicing, indexing, concatenation, gathering and one-hot.

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn, Slice};

use crate::buffer::take_zeroed;
use crate::error::{Result, TensorError};
use crate::tensor::Tensor;

/// Resolves a possibly negative `axis` against `shape` (valid: `-rank..rank`).
pub(crate) fn normalize_axis(op: &'static str, axis: isize, shape: &[usize]) -> Result<usize> {
    normalize_axis_len(op, axis, shape.len(), shape)
}

/// Resolves `axis` in `-len..len`, reporting `shape` on error.
fn normalize_axis_len(op: &'static str, axis: isize, len: usize, shape: &[usize]) -> Result<usize> {
    let n = len as isize;
    let a = if axis < 0 { axis + n } else { axis };
    if (0..n).contains(&a) {
        Ok(a as usize)
    } else {
        Err(TensorError::AxisOutOfRange {
            op,
            axis,
            shape: shape.to_vec(),
        })
    }
}

impl Tensor {
    /// The same elements, in row-major order, under a new shape with the same element count.
    /// A view (no copy) when this tensor is contiguous, else a copy.
    ///
    /// # Errors
    /// [`TensorError::ElementCount`] when the element counts differ.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let expected: usize = shape.iter().product();
        if expected != self.len() {
            return Err(TensorError::ElementCount {
                op: "reshape",
                shape: shape.to_vec(),
                expected,
                got: self.len(),
            });
        }
        let data = self
            .to_contiguous()
            .take_data()
            .into_shape_with_order(IxDyn(shape))
            .expect("a contiguous array of the right length reshapes");
        Ok(Tensor::from(data))
    }

    /// [`reshape`](Tensor::reshape) where one length may be `-1`, inferred from the element count.
    ///
    /// ```
    /// use gradus_tensor::Tensor;
    ///
    /// let t = Tensor::zeros(&[2, 3, 4]);
    /// assert_eq!(t.reshape_infer(&[-1, 4])?.shape(), &[6, 4]);
    /// # Ok::<(), gradus_tensor::TensorError>(())
    /// ```
    ///
    /// # Errors
    /// [`TensorError::InvalidArgument`] for more than one `-1` or another negative length, or when
    /// the known lengths do not divide the element count; [`TensorError::ElementCount`] when the
    /// counts differ.
    pub fn reshape_infer(&self, shape: &[isize]) -> Result<Tensor> {
        let bad = |message: String| TensorError::InvalidArgument {
            op: "reshape_infer",
            message,
        };
        let mut infer = None;
        let mut known = 1usize;
        for (i, &d) in shape.iter().enumerate() {
            match d {
                -1 if infer.is_none() => infer = Some(i),
                -1 => return Err(bad(format!("at most one -1 is allowed, got {shape:?}"))),
                d if d < 0 => {
                    return Err(bad(format!("lengths must be >= 0 or -1, got {shape:?}")));
                }
                d => known *= d as usize,
            }
        }
        let mut dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
        if let Some(i) = infer {
            if known == 0 || !self.len().is_multiple_of(known) {
                return Err(bad(format!(
                    "cannot infer the -1 in {shape:?} for a tensor of shape {:?} ({} elements)",
                    self.shape(),
                    self.len()
                )));
            }
            dims[i] = self.len() / known;
        }
        self.reshape(&dims)
    }

    /// The axes reordered: `out.shape[i] = self.shape[axes[i]]` (a view, no copy).
    ///
    /// # Errors
    /// [`TensorError::InvalidArgument`] when `axes` is not a permutation of `0..rank`.
    pub fn permute(&self, axes: &[usize]) -> Result<Tensor> {
        let mut seen = vec![false; self.ndim()];
        let ok = axes.len() == self.ndim()
            && axes
                .iter()
                .all(|&a| a < seen.len() && !std::mem::replace(&mut seen[a], true));
        if !ok {
            return Err(TensorError::InvalidArgument {
                op: "permute",
                message: format!(
                    "expected a permutation of 0..{} for shape {:?}, got {axes:?}",
                    self.ndim(),
                    self.shape()
                ),
            });
        }
        Ok(Tensor::from(self.data.clone().permuted_axes(IxDyn(axes))))
    }

    /// The last two axes swapped (a view, no copy): `out[..., j, i] = self[..., i, j]`.
    ///
    /// # Errors
    /// [`TensorError::Rank`] for a tensor of rank below 2.
    pub fn transpose(&self) -> Result<Tensor> {
        let n = self.ndim();
        if n < 2 {
            return Err(TensorError::Rank {
                op: "transpose",
                expected: "a tensor of rank >= 2",
                got: self.shape().to_vec(),
            });
        }
        let mut data = self.data.clone();
        data.swap_axes(n - 2, n - 1);
        Ok(Tensor::from(data))
    }

    /// A new axis of length 1 at `axis` (in `-(rank+1)..=rank`; a view).
    ///
    /// # Errors
    /// [`TensorError::AxisOutOfRange`] for an axis outside `-(rank+1)..=rank`.
    pub fn expand_dims(&self, axis: isize) -> Result<Tensor> {
        let a = normalize_axis_len("expand_dims", axis, self.ndim() + 1, self.shape())?;
        Ok(Tensor::from(self.data.clone().insert_axis(Axis(a))))
    }

    /// The axis `axis`, which must have length 1, removed (a view).
    ///
    /// # Errors
    /// [`TensorError::AxisOutOfRange`] for a bad axis; [`TensorError::InvalidArgument`] when its
    /// length is not 1.
    pub fn squeeze_axis(&self, axis: isize) -> Result<Tensor> {
        let a = normalize_axis("squeeze_axis", axis, self.shape())?;
        if self.shape()[a] != 1 {
            return Err(TensorError::InvalidArgument {
                op: "squeeze_axis",
                message: format!(
                    "axis {axis} of shape {:?} has length {}, expected 1",
                    self.shape(),
                    self.shape()[a]
                ),
            });
        }
        Ok(Tensor::from(self.data.clone().index_axis_move(Axis(a), 0)))
    }

    /// The indices `start..end` along `axis` (a view): `out[.., i, ..] = self[.., start + i, ..]`.
    ///
    /// # Errors
    /// [`TensorError::AxisOutOfRange`] for a bad axis; [`TensorError::InvalidArgument`] when
    /// `start > end` or `end` exceeds the axis length.
    pub fn slice_axis(&self, axis: isize, start: usize, end: usize) -> Result<Tensor> {
        let a = normalize_axis("slice_axis", axis, self.shape())?;
        let len = self.shape()[a];
        if start > end || end > len {
            return Err(TensorError::InvalidArgument {
                op: "slice_axis",
                message: format!(
                    "range {start}..{end} is not within 0..{len} (axis {axis} of shape {:?})",
                    self.shape()
                ),
            });
        }
        let s = Slice::from(start as isize..end as isize);
        Ok(Tensor::from(self.data.clone().slice_axis_move(Axis(a), s)))
    }

    /// The sub-tensor at `index` along `axis`, which is removed (a view).
    ///
    /// # Errors
    /// [`TensorError::AxisOutOfRange`] for a bad axis; [`TensorError::InvalidArgument`] when
    /// `index` is not below the axis length.
    pub fn index_axis(&self, axis: isize, index: usize) -> Result<Tensor> {
        let a = normalize_axis("index_axis", axis, self.shape())?;
        if index >= self.shape()[a] {
            return Err(TensorError::InvalidArgument {
                op: "index_axis",
                message: format!(
                    "index {index} is out of bounds for axis {axis} of shape {:?}",
                    self.shape()
                ),
            });
        }
        Ok(Tensor::from(
            self.data.clone().index_axis_move(Axis(a), index),
        ))
    }

    /// Joins tensors along an existing axis: every shape must agree except along `axis`.
    ///
    /// ```
    /// use gradus_tensor::Tensor;
    ///
    /// let a = Tensor::zeros(&[2, 3]);
    /// let b = Tensor::ones(&[2, 1]);
    /// assert_eq!(Tensor::concat(&[&a, &b], -1)?.shape(), &[2, 4]);
    /// # Ok::<(), gradus_tensor::TensorError>(())
    /// ```
    ///
    /// # Errors
    /// [`TensorError::InvalidArgument`] for an empty list, or (naming every shape) when ranks or
    /// lengths off `axis` differ; [`TensorError::AxisOutOfRange`] for a bad axis.
    pub fn concat(tensors: &[&Tensor], axis: isize) -> Result<Tensor> {
        let first = tensors
            .first()
            .ok_or_else(|| TensorError::InvalidArgument {
                op: "concat",
                message: "expected at least one tensor, got none".to_string(),
            })?;
        let a = normalize_axis("concat", axis, first.shape())?;
        let fits = |t: &&Tensor| {
            t.ndim() == first.ndim()
                && t.shape()
                    .iter()
                    .zip(first.shape())
                    .enumerate()
                    .all(|(i, (x, y))| i == a || x == y)
        };
        if !tensors.iter().all(fits) {
            return Err(shape_list_error(
                "concat",
                tensors,
                &format!("must agree except along axis {axis}"),
            ));
        }
        let views: Vec<ArrayViewD<'_, f32>> = tensors.iter().map(|t| t.view()).collect();
        let out = ndarray::concatenate(Axis(a), &views).expect("shapes checked");
        Ok(Tensor::from(out))
    }

    /// Joins tensors of one shape along a new axis at `axis` (in `-(rank+1)..=rank`).
    ///
    /// # Errors
    /// [`TensorError::InvalidArgument`] for an empty list or (naming every shape) unequal shapes;
    /// [`TensorError::AxisOutOfRange`] for a bad axis.
    pub fn stack(tensors: &[&Tensor], axis: isize) -> Result<Tensor> {
        let first = tensors
            .first()
            .ok_or_else(|| TensorError::InvalidArgument {
                op: "stack",
                message: "expected at least one tensor, got none".to_string(),
            })?;
        let a = normalize_axis_len("stack", axis, first.ndim() + 1, first.shape())?;
        if !tensors.iter().all(|t| t.shape() == first.shape()) {
            return Err(shape_list_error("stack", tensors, "must all be equal"));
        }
        let views: Vec<ArrayViewD<'_, f32>> = tensors.iter().map(|t| t.view()).collect();
        let out = ndarray::stack(Axis(a), &views).expect("shapes checked");
        Ok(Tensor::from(out))
    }

    /// Rows picked along axis 0: `out[i, ...] = self[indices[i], ...]` (a copy; indices may repeat).
    ///
    /// # Errors
    /// As [`select`](Tensor::select) with axis 0.
    pub fn gather_rows(&self, indices: &[usize]) -> Result<Tensor> {
        self.select(0, indices)
    }

    /// Entries picked along `axis`: `out[.., i, ..] = self[.., indices[i], ..]` (a copy).
    ///
    /// # Errors
    /// [`TensorError::AxisOutOfRange`] for a bad axis (including any axis of a rank-0 tensor);
    /// [`TensorError::InvalidArgument`] naming the first index that is out of bounds.
    pub fn select(&self, axis: isize, indices: &[usize]) -> Result<Tensor> {
        let a = normalize_axis("select", axis, self.shape())?;
        let len = self.shape()[a];
        if let Some(&bad) = indices.iter().find(|&&i| i >= len) {
            return Err(TensorError::InvalidArgument {
                op: "select",
                message: format!(
                    "index {bad} is out of bounds for axis {axis} of shape {:?}",
                    self.shape()
                ),
            });
        }
        if a == 0
            && let Some(x) = self.as_slice()
        {
            let row: usize = self.shape()[1..].iter().product();
            let mut out = Vec::with_capacity(indices.len() * row);
            for &i in indices {
                out.extend_from_slice(&x[i * row..(i + 1) * row]);
            }
            let mut shape = self.shape().to_vec();
            shape[0] = indices.len();
            return Ok(Tensor::from_parts(out, &shape));
        }
        Ok(Tensor::from(self.data.select(Axis(a), indices)))
    }

    /// The adjoint of [`gather_rows`](Tensor::gather_rows): a tensor with `rows` rows where
    /// `out[indices[i], ...] += self[i, ...]` (repeated indices add up; other rows are zero).
    ///
    /// Shape: `self` is `[indices.len(), rest...]`, the result `[rows, rest...]`.
    ///
    /// # Errors
    /// [`TensorError::Rank`] for a rank-0 tensor; [`TensorError::InvalidArgument`] when the first
    /// axis is not `indices.len()` long or an index is not below `rows`.
    pub fn scatter_add_rows(&self, indices: &[usize], rows: usize) -> Result<Tensor> {
        if self.ndim() == 0 {
            return Err(TensorError::Rank {
                op: "scatter_add_rows",
                expected: "a tensor of rank >= 1",
                got: vec![],
            });
        }
        if self.shape()[0] != indices.len() {
            return Err(TensorError::InvalidArgument {
                op: "scatter_add_rows",
                message: format!(
                    "a tensor of shape {:?} has {} rows but {} indices were given",
                    self.shape(),
                    self.shape()[0],
                    indices.len()
                ),
            });
        }
        if let Some(&bad) = indices.iter().find(|&&i| i >= rows) {
            return Err(TensorError::InvalidArgument {
                op: "scatter_add_rows",
                message: format!("index {bad} is out of bounds for {rows} rows"),
            });
        }
        let row: usize = self.shape()[1..].iter().product();
        let src = self.to_contiguous();
        let x = src.as_slice().expect("contiguous");
        let mut out = take_zeroed(rows * row);
        for (k, &i) in indices.iter().enumerate() {
            let dst = &mut out[i * row..(i + 1) * row];
            for (d, &v) in dst.iter_mut().zip(&x[k * row..(k + 1) * row]) {
                *d += v;
            }
        }
        let mut shape = self.shape().to_vec();
        shape[0] = rows;
        Ok(Tensor::from_parts(out, &shape))
    }

    /// One-hot rows: `out[i, j] = 1` if `indices[i] == j`, else 0; shape `[indices.len(), depth]`.
    ///
    /// ```
    /// use gradus_tensor::Tensor;
    ///
    /// let y = Tensor::one_hot(&[2, 0], 3)?;
    /// assert_eq!(y.to_vec(), vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
    /// # Ok::<(), gradus_tensor::TensorError>(())
    /// ```
    ///
    /// # Errors
    /// [`TensorError::InvalidArgument`] naming the first index not below `depth`.
    pub fn one_hot(indices: &[usize], depth: usize) -> Result<Tensor> {
        one_hot_into(indices, depth, &[indices.len(), depth])
    }

    /// One-hot encoding of a tensor of class ids stored as f32: the result has shape
    /// `indices.shape() + [depth]`, with `out[..., j] = 1` where `j == indices[...]`.
    ///
    /// # Errors
    /// [`TensorError::InvalidArgument`] when an element is not a non-negative whole number below
    /// `depth`.
    pub fn one_hot_tensor(indices: &Tensor, depth: usize) -> Result<Tensor> {
        let mut ids = Vec::with_capacity(indices.len());
        for &v in indices.data.iter() {
            if !(v >= 0.0 && v.fract() == 0.0 && (v as usize) < depth) {
                return Err(TensorError::InvalidArgument {
                    op: "one_hot",
                    message: format!("expected class ids in 0..{depth}, got {v}"),
                });
            }
            ids.push(v as usize);
        }
        let mut shape = indices.shape().to_vec();
        shape.push(depth);
        one_hot_into(&ids, depth, &shape)
    }
}

fn one_hot_into(indices: &[usize], depth: usize, shape: &[usize]) -> Result<Tensor> {
    if let Some(&bad) = indices.iter().find(|&&i| i >= depth) {
        return Err(TensorError::InvalidArgument {
            op: "one_hot",
            message: format!("expected class ids in 0..{depth}, got {bad}"),
        });
    }
    let mut out = ArrayD::<f32>::zeros(IxDyn(&[indices.len(), depth]));
    for (r, &i) in indices.iter().enumerate() {
        out[[r, i]] = 1.0;
    }
    let out = out
        .into_shape_with_order(IxDyn(shape))
        .expect("same length");
    Ok(Tensor::from(out))
}

fn shape_list_error(op: &'static str, tensors: &[&Tensor], what: &str) -> TensorError {
    let shapes: Vec<&[usize]> = tensors.iter().map(|t| t.shape()).collect();
    TensorError::InvalidArgument {
        op,
        message: format!("shapes {shapes:?} {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iota(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        Tensor::arange(0.0, n as f32, 1.0)
            .unwrap()
            .reshape(shape)
            .unwrap()
    }

    #[test]
    fn views_share_and_reshape_copies_only_when_needed() {
        let t = iota(&[2, 3]);
        let p = t.transpose().unwrap();
        assert_eq!(p.shape(), &[3, 2]);
        assert!(!p.is_contiguous());
        assert_eq!(p.to_vec(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(p.reshape(&[6]).unwrap().to_vec(), p.to_vec());
        assert!(t.reshape(&[4]).is_err());
        assert!(t.reshape_infer(&[-1, -1]).is_err());
        assert!(t.reshape_infer(&[-1, 4]).is_err());
        assert!(t.reshape_infer(&[-2, 3]).is_err());
        assert_eq!(t.reshape_infer(&[3, -1]).unwrap().shape(), &[3, 2]);
        assert!(Tensor::zeros(&[0, 3]).reshape_infer(&[0, -1]).is_err());
    }

    #[test]
    fn axis_ops_check_their_arguments() {
        let t = iota(&[2, 3, 4]);
        assert!(t.permute(&[0, 0, 1]).is_err());
        assert!(t.permute(&[0, 1]).is_err());
        assert_eq!(t.permute(&[2, 0, 1]).unwrap().shape(), &[4, 2, 3]);
        assert_eq!(t.expand_dims(-1).unwrap().shape(), &[2, 3, 4, 1]);
        assert_eq!(t.expand_dims(0).unwrap().shape(), &[1, 2, 3, 4]);
        assert!(t.expand_dims(3).is_ok() && t.expand_dims(-4).is_ok());
        assert!(t.expand_dims(4).is_err() && t.expand_dims(-5).is_err());
        assert!(t.squeeze_axis(0).is_err());
        assert_eq!(t.expand_dims(1).unwrap().squeeze_axis(1).unwrap(), t);
        let s = t.slice_axis(-1, 1, 3).unwrap();
        assert_eq!(s.shape(), &[2, 3, 2]);
        assert_eq!(s.get(&[1, 2, 0]).unwrap(), t.get(&[1, 2, 1]).unwrap());
        assert!(t.slice_axis(2, 3, 2).is_err() && t.slice_axis(2, 0, 5).is_err());
        assert_eq!(t.index_axis(1, 2).unwrap().shape(), &[2, 4]);
        assert!(t.index_axis(1, 3).is_err());
        assert!(Tensor::scalar(1.0).transpose().is_err());
    }

    #[test]
    fn concat_stack_errors_name_every_shape() {
        let a = iota(&[2, 3]);
        let b = iota(&[3, 3]);
        assert_eq!(Tensor::concat(&[&a, &b], 0).unwrap().shape(), &[5, 3]);
        let e = Tensor::concat(&[&a, &b], 1).unwrap_err().to_string();
        assert!(e.contains("[2, 3]") && e.contains("[3, 3]"), "{e}");
        let e = Tensor::stack(&[&a, &b], 0).unwrap_err().to_string();
        assert!(e.contains("[2, 3]") && e.contains("[3, 3]"), "{e}");
        assert_eq!(Tensor::stack(&[&a, &a], 2).unwrap().shape(), &[2, 3, 2]);
        assert!(Tensor::concat(&[], 0).is_err());
        assert!(Tensor::concat(&[&Tensor::scalar(1.0)], 0).is_err());
    }

    #[test]
    fn gather_scatter_one_hot() {
        let t = iota(&[3, 2]);
        let g = t.gather_rows(&[2, 0, 2]).unwrap();
        assert_eq!(g.to_vec(), vec![4.0, 5.0, 0.0, 1.0, 4.0, 5.0]);
        assert!(t.gather_rows(&[3]).is_err());
        let s = g.scatter_add_rows(&[2, 0, 2], 3).unwrap();
        assert_eq!(s.to_vec(), vec![0.0, 1.0, 0.0, 0.0, 8.0, 10.0]);
        assert!(g.scatter_add_rows(&[0, 1], 3).is_err());
        assert!(g.scatter_add_rows(&[0, 1, 3], 3).is_err());
        assert_eq!(t.select(1, &[1]).unwrap().to_vec(), vec![1.0, 3.0, 5.0]);
        assert!(Tensor::one_hot(&[3], 3).is_err());
        let ids = Tensor::from_vec(vec![1.0, 0.0], &[2, 1]).unwrap();
        assert_eq!(Tensor::one_hot_tensor(&ids, 2).unwrap().shape(), &[2, 1, 2]);
        assert!(Tensor::one_hot_tensor(&Tensor::scalar(0.5), 2).is_err());
        assert!(Tensor::one_hot_tensor(&Tensor::scalar(-1.0), 2).is_err());
    }
}
