//! The differentiable operations: methods on [`Var`](crate::Var), named as the tensor operations.
//!
//! Each operation computes its forward value with gradus-tensor and, when it is recorded, a
//! backward rule capturing only what that rule needs.

mod arith;
mod conv;
mod linalg;
mod nn;
mod reduce;
mod shape;
mod unary;

use gradus_tensor::Tensor;
use gradus_tensor::ndarray::Zip;

/// `f(a, b)` elementwise over two tensors of the same shape, into a new contiguous tensor.
pub(crate) fn zip2(a: &Tensor, b: &Tensor, f: impl Fn(f32, f32) -> f32) -> Tensor {
    debug_assert_eq!(a.shape(), b.shape());
    if let (Some(x), Some(y)) = (a.as_slice(), b.as_slice()) {
        let v = x.iter().zip(y).map(|(&x, &y)| f(x, y)).collect();
        return Tensor::from_vec(v, a.shape()).expect("same length as the operands");
    }
    Tensor::from(
        Zip::from(&a.view())
            .and(&b.view())
            .map_collect(|&x, &y| f(x, y)),
    )
}

/// `f(a, b, c)` elementwise over three tensors of the same shape, into a new contiguous tensor.
pub(crate) fn zip3(a: &Tensor, b: &Tensor, c: &Tensor, f: impl Fn(f32, f32, f32) -> f32) -> Tensor {
    debug_assert!(a.shape() == b.shape() && b.shape() == c.shape());
    if let (Some(x), Some(y), Some(z)) = (a.as_slice(), b.as_slice(), c.as_slice()) {
        let v = x
            .iter()
            .zip(y)
            .zip(z)
            .map(|((&x, &y), &z)| f(x, y, z))
            .collect();
        return Tensor::from_vec(v, a.shape()).expect("same length as the operands");
    }
    Tensor::from(
        Zip::from(&a.view())
            .and(&b.view())
            .and(&c.view())
            .map_collect(|&x, &y, &z| f(x, y, z)),
    )
}

/// `axis` (negative counts from the end) as an index into `ndim` axes, for an axis the forward
/// operation already accepted.
pub(crate) fn axis_index(axis: isize, ndim: usize) -> usize {
    if axis < 0 {
        (axis + ndim as isize) as usize
    } else {
        axis as usize
    }
}
