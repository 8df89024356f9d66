//! Convolution and pooling (NHWC), differentiated through gradus-tensor's backward kernels.

use gradus_tensor::{Conv2dGeometry, Padding, Tensor};

use crate::error::Result;
use crate::var::Var;

impl<'t> Var<'t> {
    /// 2-D convolution (cross-correlation, as Keras) of this NHWC input with `kernel`:
    /// `out[n, i, j, f] = sum_{di, dj, c} x[n, i s_h + di - pad_top, j s_w + dj - pad_left, c]
    /// k[di, dj, c, f]`.
    ///
    /// Shapes: input `[N, H, W, C]`, kernel `[k_h, k_w, C, F]`, output `[N, out_h, out_w, F]`
    /// with `out` given by `padding` (Keras' `"valid"`/`"same"`). Gradients through
    /// `conv2d_backward_input` (col2im of `g K^T`) and `conv2d_backward_kernel` (`im2col(x)^T g`).
    ///
    /// # Errors
    /// A tensor error naming the shapes when the ranks or channel counts do not fit, a stride is
    /// zero, or the kernel is larger than the (padded) input.
    pub fn conv2d(
        &self,
        kernel: &Var<'t>,
        strides: (usize, usize),
        padding: Padding,
    ) -> Result<Var<'t>> {
        let forward = |x: &Tensor, k: &Tensor| gradus_tensor::conv2d(x, k, strides, padding);
        self.binary("conv2d", kernel, forward, |x, k, _| {
            let (x, k) = (x.clone(), k.clone());
            move |g, needs| {
                let ks = k.shape();
                let geom = Conv2dGeometry::new(x.shape(), (ks[0], ks[1]), strides, padding)?;
                let dx = if needs[0] {
                    Some(gradus_tensor::conv2d_backward_input(g, &k, &geom)?)
                } else {
                    None
                };
                let dk = if needs[1] {
                    Some(gradus_tensor::conv2d_backward_kernel(&x, g, &geom)?)
                } else {
                    None
                };
                Ok(vec![dx, dk])
            }
        })
    }

    /// 2-D max pooling of this NHWC input: `out[n, i, j, c]` is the maximum of the `pool` window
    /// at `(i s_h - pad_top, j s_w - pad_left)` (padding never wins); `dx` routes each output
    /// gradient to the element that won its window.
    ///
    /// Shapes: `[N, H, W, C] -> [N, out_h, out_w, C]`.
    ///
    /// # Errors
    /// A tensor error when the input is not 4-D, a length is zero, or the window does not fit.
    pub fn max_pool2d(
        &self,
        pool: (usize, usize),
        strides: (usize, usize),
        padding: Padding,
    ) -> Result<Var<'t>> {
        let out = gradus_tensor::max_pool2d(self.value(), pool, strides, padding)?;
        Ok(self.unary("max_pool2d", out, |x, y| {
            let (x, y) = (x.clone(), y.clone());
            move |g: &Tensor| {
                Ok(gradus_tensor::max_pool2d_backward(
                    g, &x, &y, pool, strides, padding,
                )?)
            }
        }))
    }

    /// 2-D average pooling of this NHWC input: `out[n, i, j, c]` is the mean of the valid (not
    /// padded) elements of the `pool` window, as Keras; `dx` spreads each output gradient equally
    /// over those elements.
    ///
    /// Shapes: `[N, H, W, C] -> [N, out_h, out_w, C]`.
    ///
    /// # Errors
    /// A tensor error when the input is not 4-D, a length is zero, or the window does not fit.
    pub fn avg_pool2d(
        &self,
        pool: (usize, usize),
        strides: (usize, usize),
        padding: Padding,
    ) -> Result<Var<'t>> {
        let out = gradus_tensor::avg_pool2d(self.value(), pool, strides, padding)?;
        Ok(self.unary("avg_pool2d", out, |x, _| {
            let shape = x.shape().to_vec();
            move |g: &Tensor| {
                Ok(gradus_tensor::avg_pool2d_backward(
                    g, &shape, pool, strides, padding,
                )?)
            }
        }))
    }
}
