//! NumPy broadcasting: result shapes, broadcast views and the reduction back to an operand's shape.

use ndarray::{ArrayViewD, IxDyn};

use crate::error::{Result, TensorError};
use crate::tensor::Tensor;

/// The shape two operands broadcast to, by NumPy's rules.
///
/// Shapes are aligned at their last axis; two lengths fit when they are equal or one of them is 1,
/// and the result takes the larger. A missing leading axis counts as length 1.
///
/// ```
/// use gradus_tensor::broadcast_shapes;
///
/// assert_eq!(broadcast_shapes(&[8, 1, 3], &[5, 1])?, vec![8, 5, 3]);
/// assert!(broadcast_shapes(&[2, 3], &[4]).is_err());
/// # Ok::<(), gradus_tensor::TensorError>(())
/// ```
///
/// # Errors
/// [`TensorError::IncompatibleShapes`] naming both shapes when an aligned pair of lengths differs
/// and neither is 1.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    broadcast_shapes_for("broadcast_shapes", a, b)
}

/// [`broadcast_shapes`] with the error naming the operation `op`.
pub(crate) fn broadcast_shapes_for(
    op: &'static str,
    a: &[usize],
    b: &[usize],
) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for (i, o) in out.iter_mut().enumerate() {
        // Position i of the result, counted from the end.
        let da = dim_from_end(a, n - 1 - i);
        let db = dim_from_end(b, n - 1 - i);
        *o = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            (x, y) => {
                return Err(TensorError::IncompatibleShapes {
                    op,
                    lhs: a.to_vec(),
                    rhs: b.to_vec(),
                    reason: format!(
                        "axis {} (from the end) has lengths {x} and {y}; they must be equal or one of them 1",
                        -((n - i) as isize)
                    ),
                });
            }
        };
    }
    Ok(out)
}

/// The length of the axis `k` places before the last one, or 1 past the front.
fn dim_from_end(shape: &[usize], k: usize) -> usize {
    if k < shape.len() {
        shape[shape.len() - 1 - k]
    } else {
        1
    }
}

impl Tensor {
    /// A read-only ndarray view of this tensor broadcast to `shape` (no copy: repeated axes get
    /// stride 0). This is the zero-copy form of [`broadcast_to`](Tensor::broadcast_to).
    ///
    /// # Errors
    /// [`TensorError::IncompatibleShapes`] when this tensor's shape does not broadcast to `shape`
    /// (the result of broadcasting both must be `shape` itself).
    pub fn broadcast_view(&self, shape: &[usize]) -> Result<ArrayViewD<'_, f32>> {
        let err = || TensorError::IncompatibleShapes {
            op: "broadcast_to",
            lhs: self.shape().to_vec(),
            rhs: shape.to_vec(),
            reason: "the first shape cannot be broadcast to the second".to_string(),
        };
        if broadcast_shapes_for("broadcast_to", self.shape(), shape).map_err(|_| err())? != shape {
            return Err(err());
        }
        self.data.broadcast(IxDyn(shape)).ok_or_else(err)
    }

    /// This tensor repeated along axes of length 1 (and new leading axes) to `shape`, by NumPy's
    /// broadcasting rules: `out[i...] = self[i... with broadcast axes at 0]`.
    ///
    /// The result is contiguous: an owned `Tensor` cannot hold the stride-0 axes of a broadcast, so
    /// the values are materialised (no copy when `shape` is already this tensor's shape). Use
    /// [`broadcast_view`](Tensor::broadcast_view) for a zero-copy view.
    ///
    /// ```
    /// use gradus_tensor::Tensor;
    ///
    /// let b = Tensor::from_vec(vec![1.0, 2.0], &[2])?.broadcast_to(&[3, 2])?;
    /// assert_eq!(b.to_vec(), vec![1.0, 2.0, 1.0, 2.0, 1.0, 2.0]);
    /// # Ok::<(), gradus_tensor::TensorError>(())
    /// ```
    ///
    /// # Errors
    /// [`TensorError::IncompatibleShapes`] when the shape does not broadcast to `shape`.
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let v = self.broadcast_view(shape)?;
        Ok(Tensor::from(v.as_standard_layout().into_owned()))
    }

    /// Sums a broadcast result back to the shape of one of its operands: the adjoint of
    /// [`broadcast_to`](Tensor::broadcast_to), used to reduce gradients.
    ///
    /// `out[j...] = sum of self[i...] over every i that broadcasting maps to j`: leading axes that
    /// `shape` lacks are summed away, and axes where `shape` has length 1 are summed with keepdims.
    ///
    /// ```
    /// use gradus_tensor::Tensor;
    ///
    /// let g = Tensor::ones(&[4, 2, 3]);
    /// let s = g.sum_to_shape(&[2, 1])?;
    /// assert_eq!(s.shape(), &[2, 1]);
    /// assert_eq!(s.to_vec(), vec![12.0, 12.0]);
    /// # Ok::<(), gradus_tensor::TensorError>(())
    /// ```
    ///
    /// # Errors
    /// [`TensorError::IncompatibleShapes`] when `shape` does not broadcast to this tensor's shape.
    pub fn sum_to_shape(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let err = || TensorError::IncompatibleShapes {
            op: "sum_to_shape",
            lhs: self.shape().to_vec(),
            rhs: shape.to_vec(),
            reason: "the target shape must broadcast to the tensor's shape".to_string(),
        };
        match broadcast_shapes_for("sum_to_shape", shape, self.shape()) {
            Ok(s) if s == self.shape() => {}
            _ => return Err(err()),
        }
        let lead = self.ndim() - shape.len();
        let axes: Vec<isize> = (0..self.ndim())
            .filter(|&i| i < lead || (shape[i - lead] == 1 && self.shape()[i] != 1))
            .map(|i| i as isize)
            .collect();
        self.sum_axes(&axes, true)?.reshape(shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_numpy() {
        assert_eq!(broadcast_shapes(&[], &[3]).unwrap(), vec![3]);
        assert_eq!(broadcast_shapes(&[2, 1], &[1, 3]).unwrap(), vec![2, 3]);
        assert_eq!(broadcast_shapes(&[0], &[1]).unwrap(), vec![0]);
        let e = broadcast_shapes(&[2, 3], &[3, 2]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("[2, 3]") && msg.contains("[3, 2]"), "{msg}");
    }

    #[test]
    fn broadcast_to_rejects_shrinking() {
        let t = Tensor::ones(&[2, 3]);
        assert!(t.broadcast_to(&[3]).is_err());
        assert!(t.broadcast_to(&[1, 3]).is_err());
        assert_eq!(t.broadcast_to(&[4, 2, 3]).unwrap().shape(), &[4, 2, 3]);
    }

    #[test]
    fn sum_to_shape_reduces_leading_and_unit_axes() {
        let t = Tensor::arange(0.0, 6.0, 1.0)
            .unwrap()
            .reshape(&[2, 3])
            .unwrap();
        assert_eq!(t.sum_to_shape(&[3]).unwrap().to_vec(), vec![3.0, 5.0, 7.0]);
        assert_eq!(t.sum_to_shape(&[2, 1]).unwrap().to_vec(), vec![3.0, 12.0]);
        assert_eq!(t.sum_to_shape(&[]).unwrap().to_vec(), vec![15.0]);
        assert!(t.sum_to_shape(&[2]).is_err());
        assert!(t.sum_to_shape(&[4, 2, 3]).is_err());
    }
}
