//! Reductions: sums, means, maxima and minima, over everything or over axes.

use gradus_tensor::Tensor;

use super::axis_index;
use crate::error::Result;
use crate::var::Var;

/// The rule of a max/min reduction: `g` (in keepdims form) spread equally over the elements that
/// attain the extremum `m` (keepdims form), as TensorFlow does for ties.
fn extremum_grad(x: &Tensor, m: &Tensor, g: &Tensor, axes: Option<&[isize]>) -> Result<Tensor> {
    let mask = x.eq(m)?;
    let count = match axes {
        Some(axes) => mask.sum_axes(axes, true)?,
        None => Tensor::full(m.shape(), mask.sum_all()),
    };
    Ok(mask.mul(&g.div(&count)?)?)
}

impl<'t> Var<'t> {
    /// Sum of all elements: `out = sum_i x_i` (a scalar, shape `[]`); `dx = g` everywhere.
    pub fn sum_all(&self) -> Var<'t> {
        let out = Tensor::scalar(self.value().sum_all());
        self.unary("sum_all", out, |x, _| {
            let shape = x.shape().to_vec();
            move |g: &Tensor| Ok(Tensor::full(&shape, g.item()?))
        })
    }

    /// Mean of all elements: `out = sum_i x_i / n` (a scalar; NaN when empty); `dx = g / n`.
    pub fn mean_all(&self) -> Var<'t> {
        let out = Tensor::scalar(self.value().mean_all());
        self.unary("mean_all", out, |x, _| {
            let shape = x.shape().to_vec();
            let n = x.len() as f32;
            move |g: &Tensor| Ok(Tensor::full(&shape, g.item()? / n))
        })
    }

    /// Maximum of all elements (a scalar); the gradient is shared equally by the elements equal
    /// to the maximum.
    pub fn max_all(&self) -> Var<'t> {
        let out = Tensor::scalar(self.value().max_all());
        self.unary("max_all", out, |x, y| {
            let (x, y) = (x.clone(), y.clone());
            move |g: &Tensor| extremum_grad(&x, &y, g, None)
        })
    }

    /// Minimum of all elements (a scalar); the gradient is shared equally by the elements equal
    /// to the minimum.
    pub fn min_all(&self) -> Var<'t> {
        let out = Tensor::scalar(self.value().min_all());
        self.unary("min_all", out, |x, y| {
            let (x, y) = (x.clone(), y.clone());
            move |g: &Tensor| extremum_grad(&x, &y, g, None)
        })
    }

    /// Sum over `axes` (negatives count from the end): `out = sum over axes of x`, the axes
    /// removed, or kept with length 1 when `keepdims`; `dx = g` broadcast back to `x`'s shape.
    ///
    /// # Errors
    /// A tensor error when an axis is out of range or repeated.
    pub fn sum_axes(&self, axes: &[isize], keepdims: bool) -> Result<Var<'t>> {
        let kept = self.value().sum_axes(axes, true)?;
        self.reduce_axes("sum_axes", axes, kept, keepdims, |x, _| {
            let shape = x.shape().to_vec();
            move |gk: &Tensor| Ok(gk.broadcast_to(&shape)?)
        })
    }

    /// Mean over `axes`: `out = sum over axes of x / n` with `n` the number of elements reduced;
    /// `dx = g / n` broadcast back.
    ///
    /// # Errors
    /// As [`sum_axes`](Var::sum_axes).
    pub fn mean_axes(&self, axes: &[isize], keepdims: bool) -> Result<Var<'t>> {
        let kept = self.value().mean_axes(axes, true)?;
        self.reduce_axes("mean_axes", axes, kept, keepdims, |x, k| {
            let shape = x.shape().to_vec();
            let n = if k.is_empty() {
                1.0
            } else {
                (x.len() / k.len()) as f32
            };
            move |gk: &Tensor| Ok(gk.div_scalar(n).broadcast_to(&shape)?)
        })
    }

    /// Maximum over `axes`; the gradient of each output is shared equally by the elements of its
    /// window equal to the maximum.
    ///
    /// # Errors
    /// As [`sum_axes`](Var::sum_axes).
    pub fn max_axes(&self, axes: &[isize], keepdims: bool) -> Result<Var<'t>> {
        let kept = self.value().max_axes(axes, true)?;
        self.reduce_axes("max_axes", axes, kept, keepdims, |x, k| {
            let (x, k, axes) = (x.clone(), k.clone(), axes.to_vec());
            move |gk: &Tensor| extremum_grad(&x, &k, gk, Some(&axes))
        })
    }

    /// Minimum over `axes`; the gradient is shared equally by the elements equal to the minimum.
    ///
    /// # Errors
    /// As [`sum_axes`](Var::sum_axes).
    pub fn min_axes(&self, axes: &[isize], keepdims: bool) -> Result<Var<'t>> {
        let kept = self.value().min_axes(axes, true)?;
        self.reduce_axes("min_axes", axes, kept, keepdims, |x, k| {
            let (x, k, axes) = (x.clone(), k.clone(), axes.to_vec());
            move |gk: &Tensor| extremum_grad(&x, &k, gk, Some(&axes))
        })
    }

    /// [`sum_axes`](Var::sum_axes) over one axis.
    ///
    /// # Errors
    /// As [`sum_axes`](Var::sum_axes).
    pub fn sum_axis(&self, axis: isize, keepdims: bool) -> Result<Var<'t>> {
        self.sum_axes(&[axis], keepdims)
    }

    /// [`mean_axes`](Var::mean_axes) over one axis.
    ///
    /// # Errors
    /// As [`sum_axes`](Var::sum_axes).
    pub fn mean_axis(&self, axis: isize, keepdims: bool) -> Result<Var<'t>> {
        self.mean_axes(&[axis], keepdims)
    }

    /// [`max_axes`](Var::max_axes) over one axis.
    ///
    /// # Errors
    /// As [`sum_axes`](Var::sum_axes).
    pub fn max_axis(&self, axis: isize, keepdims: bool) -> Result<Var<'t>> {
        self.max_axes(&[axis], keepdims)
    }

    /// [`min_axes`](Var::min_axes) over one axis.
    ///
    /// # Errors
    /// As [`sum_axes`](Var::sum_axes).
    pub fn min_axis(&self, axis: isize, keepdims: bool) -> Result<Var<'t>> {
        self.min_axes(&[axis], keepdims)
    }

    /// `out = ln sum over axis of e^x`, computed stably; `dx = g softmax(x, axis)`.
    ///
    /// # Errors
    /// A tensor error when the axis is out of range.
    pub fn logsumexp(&self, axis: isize, keepdims: bool) -> Result<Var<'t>> {
        let kept = self.value().logsumexp(axis, true)?;
        self.reduce_axes("logsumexp", &[axis], kept, keepdims, |x, k| {
            let (x, k) = (x.clone(), k.clone());
            move |gk: &Tensor| Ok(x.sub(&k)?.exp().mul(gk)?)
        })
    }

    /// Records a reduction over `axes` whose result `kept` has the reduced axes kept with length
    /// 1; the rule made by `build` from `(x, kept)` maps the keepdims-shaped output gradient to
    /// `dx`. Without `keepdims` the output is `kept` with those axes removed, and the gradient is
    /// reshaped back before the rule sees it.
    fn reduce_axes<B, R>(
        &self,
        op: &'static str,
        axes: &[isize],
        kept: Tensor,
        keepdims: bool,
        build: B,
    ) -> Result<Var<'t>>
    where
        B: FnOnce(&Tensor, &Tensor) -> R,
        R: Fn(&Tensor) -> Result<Tensor> + Send + 'static,
    {
        let kept_shape = kept.shape().to_vec();
        let out = if keepdims {
            kept.clone()
        } else {
            let ndim = self.ndim();
            let reduced: Vec<usize> = axes.iter().map(|&a| axis_index(a, ndim)).collect();
            let shape: Vec<usize> = (0..ndim)
                .filter(|i| !reduced.contains(i))
                .map(|i| kept_shape[i])
                .collect();
            kept.reshape(&shape)?
        };
        Ok(self.unary(op, out, move |x, _| {
            let rule = build(x, &kept);
            move |g: &Tensor| rule(&g.reshape(&kept_shape)?)
        }))
    }
}
