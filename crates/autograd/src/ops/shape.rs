//! Shape operations: reshape, permute, slicing, concatenation, gathering.

use gradus_tensor::Tensor;
use gradus_tensor::ndarray::{Axis, Slice};

use super::axis_index;
use crate::error::Result;
use crate::var::{Var, common_tape};

impl<'t> Var<'t> {
    /// The same elements in a new shape (row-major order); `dx = g` reshaped back.
    ///
    /// # Errors
    /// A tensor error when the element counts differ.
    pub fn reshape(&self, shape: &[usize]) -> Result<Var<'t>> {
        let out = self.value().reshape(shape)?;
        Ok(self.unary("reshape", out, |x, _| {
            let shape = x.shape().to_vec();
            move |g: &Tensor| Ok(g.reshape(&shape)?)
        }))
    }

    /// As [`reshape`](Var::reshape), with at most one `-1` axis inferred from the others.
    ///
    /// # Errors
    /// A tensor error when the shape does not fit the element count or has several `-1`.
    pub fn reshape_infer(&self, shape: &[isize]) -> Result<Var<'t>> {
        let out = self.value().reshape_infer(shape)?;
        Ok(self.unary("reshape", out, |x, _| {
            let shape = x.shape().to_vec();
            move |g: &Tensor| Ok(g.reshape(&shape)?)
        }))
    }

    /// This value broadcast to `shape` by NumPy's rules; `dx = g` summed back to `x`'s shape.
    ///
    /// # Errors
    /// A tensor error when the shape does not broadcast to `shape`.
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Var<'t>> {
        let out = self.value().broadcast_to(shape)?;
        Ok(self.unary("broadcast_to", out, |x, _| {
            let shape = x.shape().to_vec();
            move |g: &Tensor| Ok(g.sum_to_shape(&shape)?)
        }))
    }

    /// Axes reordered: `out.shape[i] = x.shape[axes[i]]` (a view); `dx = g` permuted by the
    /// inverse permutation.
    ///
    /// # Errors
    /// A tensor error when `axes` is not a permutation of the axes.
    pub fn permute(&self, axes: &[usize]) -> Result<Var<'t>> {
        let out = self.value().permute(axes)?;
        Ok(self.unary("permute", out, |_, _| {
            let mut inverse = vec![0; axes.len()];
            for (i, &a) in axes.iter().enumerate() {
                inverse[a] = i;
            }
            move |g: &Tensor| Ok(g.permute(&inverse)?)
        }))
    }

    /// The last two axes swapped (a view); `dx = g` transposed back.
    ///
    /// # Errors
    /// A tensor error when the rank is below 2.
    pub fn transpose(&self) -> Result<Var<'t>> {
        let out = self.value().transpose()?;
        Ok(self.unary("transpose", out, |_, _| |g: &Tensor| Ok(g.transpose()?)))
    }

    /// A new axis of length 1 at `axis`; `dx = g` reshaped back.
    ///
    /// # Errors
    /// A tensor error when the axis is out of range.
    pub fn expand_dims(&self, axis: isize) -> Result<Var<'t>> {
        let out = self.value().expand_dims(axis)?;
        Ok(self.unary("expand_dims", out, |x, _| {
            let shape = x.shape().to_vec();
            move |g: &Tensor| Ok(g.reshape(&shape)?)
        }))
    }

    /// The axis `axis` (of length 1) removed; `dx = g` reshaped back.
    ///
    /// # Errors
    /// A tensor error when the axis is out of range or its length is not 1.
    pub fn squeeze_axis(&self, axis: isize) -> Result<Var<'t>> {
        let out = self.value().squeeze_axis(axis)?;
        Ok(self.unary("squeeze_axis", out, |x, _| {
            let shape = x.shape().to_vec();
            move |g: &Tensor| Ok(g.reshape(&shape)?)
        }))
    }

    /// The elements `start..end` along `axis` (a view); `dx` is `g` in that range, zero elsewhere.
    ///
    /// # Errors
    /// A tensor error when the axis is out of range, `end` exceeds its length or `start > end`.
    pub fn slice_axis(&self, axis: isize, start: usize, end: usize) -> Result<Var<'t>> {
        let out = self.value().slice_axis(axis, start, end)?;
        Ok(self.unary("slice_axis", out, |x, _| {
            let shape = x.shape().to_vec();
            let ax = Axis(axis_index(axis, shape.len()));
            move |g: &Tensor| {
                let mut dx = Tensor::zeros(&shape);
                dx.view_mut()
                    .slice_axis_mut(ax, Slice::from(start..end))
                    .assign(&g.view());
                Ok(dx)
            }
        }))
    }

    /// The sub-array at `index` along `axis`, that axis removed (a view); `dx` is `g` at that
    /// index, zero elsewhere.
    ///
    /// # Errors
    /// A tensor error when the axis is out of range or the index past its end.
    pub fn index_axis(&self, axis: isize, index: usize) -> Result<Var<'t>> {
        let out = self.value().index_axis(axis, index)?;
        Ok(self.unary("index_axis", out, |x, _| {
            let shape = x.shape().to_vec();
            let ax = Axis(axis_index(axis, shape.len()));
            move |g: &Tensor| {
                let mut dx = Tensor::zeros(&shape);
                dx.view_mut().index_axis_mut(ax, index).assign(&g.view());
                Ok(dx)
            }
        }))
    }

    /// Rows of `x` (along axis 0) at `indices`, repeats allowed: `out[i] = x[indices[i]]`;
    /// `dx = scatter_add(g)`: each gradient row added at its index (the Embedding rule).
    ///
    /// # Errors
    /// A tensor error when an index is out of range or `x` is a scalar.
    pub fn gather_rows(&self, indices: &[usize]) -> Result<Var<'t>> {
        let out = self.value().gather_rows(indices)?;
        Ok(self.unary("gather_rows", out, |x, _| {
            let rows = x.shape()[0];
            let indices = indices.to_vec();
            move |g: &Tensor| Ok(g.scatter_add_rows(&indices, rows)?)
        }))
    }

    /// The sub-arrays at `indices` along `axis`, repeats allowed; `dx` adds each gradient slice
    /// at its index.
    ///
    /// # Errors
    /// A tensor error when the axis is out of range or an index past its end.
    pub fn select(&self, axis: isize, indices: &[usize]) -> Result<Var<'t>> {
        let out = self.value().select(axis, indices)?;
        Ok(self.unary("select", out, |x, _| {
            let shape = x.shape().to_vec();
            let ax = Axis(axis_index(axis, shape.len()));
            let indices = indices.to_vec();
            move |g: &Tensor| {
                let mut dx = Tensor::zeros(&shape);
                let mut view = dx.view_mut();
                let gv = g.view();
                for (j, &i) in indices.iter().enumerate() {
                    let mut dst = view.index_axis_mut(ax, i);
                    dst += &gv.index_axis(ax, j);
                }
                Ok(dx)
            }
        }))
    }

    /// Values joined along an existing `axis`; each input's gradient is its slice of `g`.
    ///
    /// # Errors
    /// A tensor error naming every shape when they differ off `axis` (or the list is empty);
    /// [`ForeignTape`](crate::AutogradError::ForeignTape) when the values are on different tapes.
    pub fn concat(values: &[&Var<'t>], axis: isize) -> Result<Var<'t>> {
        common_tape("concat", values)?;
        let tensors: Vec<&Tensor> = values.iter().map(|v| v.value()).collect();
        let out = Tensor::concat(&tensors, axis)?;
        if !values.iter().any(|v| v.is_tracked()) {
            return Ok(untracked(values, out));
        }
        let lens: Vec<usize> = values
            .iter()
            .map(|v| v.shape()[axis_index(axis, v.ndim())])
            .collect();
        Var::custom("concat", values, out, move |g, needs| {
            let mut start = 0;
            let mut grads = Vec::with_capacity(lens.len());
            for (&len, &need) in lens.iter().zip(needs) {
                grads.push(if need {
                    Some(g.slice_axis(axis, start, start + len)?)
                } else {
                    None
                });
                start += len;
            }
            Ok(grads)
        })
    }

    /// Values of one shape stacked along a new `axis`; each input's gradient is its index of `g`.
    ///
    /// # Errors
    /// A tensor error naming every shape when they differ (or the list is empty);
    /// [`ForeignTape`](crate::AutogradError::ForeignTape) when the values are on different tapes.
    pub fn stack(values: &[&Var<'t>], axis: isize) -> Result<Var<'t>> {
        common_tape("stack", values)?;
        let tensors: Vec<&Tensor> = values.iter().map(|v| v.value()).collect();
        let out = Tensor::stack(&tensors, axis)?;
        if !values.iter().any(|v| v.is_tracked()) {
            return Ok(untracked(values, out));
        }
        let ax = axis_index(axis, out.ndim()) as isize;
        Var::custom("stack", values, out, move |g, needs| {
            needs
                .iter()
                .enumerate()
                .map(|(i, &need)| -> Result<Option<Tensor>> {
                    Ok(if need {
                        Some(g.index_axis(ax, i)?)
                    } else {
                        None
                    })
                })
                .collect()
        })
    }
}

/// `out` in the context of `values`, none of which is tracked.
fn untracked<'t>(values: &[&Var<'t>], out: Tensor) -> Var<'t> {
    match values.iter().find_map(|v| v.tape()) {
        Some(t) => t.constant(out),
        None => Var::constant(out),
    }
}
