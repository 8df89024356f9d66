//! 2-D convolution over NHWC tensors as im2col + one matrix product over the whole batch, and its
//! two gradients.

use crate::error::{Result, TensorError};
use crate::tensor::Tensor;

/// How a convolution or pooling window treats the border, as Keras' `padding` argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Padding {
    /// No padding: `out = (in - k) / stride + 1` (floor); the kernel must fit in the input.
    Valid,
    /// Zero padding so that `out = ceil(in / stride)`: the total padding is
    /// `max((out - 1) * stride + k - in, 0)`, `floor(total / 2)` before and the rest after.
    Same,
}

/// The sizes of one 2-D convolution or pooling over an NHWC input, resolved from the input shape,
/// the window, the strides and the padding. Pooling uses the same geometry with the pool as the
/// kernel (see [`Pool2dGeometry`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dGeometry {
    /// Batch size N.
    pub batch: usize,
    /// Input height H.
    pub in_h: usize,
    /// Input width W.
    pub in_w: usize,
    /// Input channels C.
    pub in_c: usize,
    /// Kernel (window) height.
    pub k_h: usize,
    /// Kernel (window) width.
    pub k_w: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Zero rows added above the input (the rest of the vertical padding goes below).
    pub pad_top: usize,
    /// Zero columns added left of the input (the rest of the horizontal padding goes right).
    pub pad_left: usize,
    /// Output height.
    pub out_h: usize,
    /// Output width.
    pub out_w: usize,
}

/// The pooling geometry: a [`Conv2dGeometry`] whose kernel is the pool window.
pub type Pool2dGeometry = Conv2dGeometry;

/// Output length and leading padding along one axis.
fn resolve_axis(input: usize, k: usize, stride: usize, padding: Padding) -> Option<(usize, usize)> {
    match padding {
        Padding::Valid => (k <= input).then(|| ((input - k) / stride + 1, 0)),
        Padding::Same => {
            let out = input.div_ceil(stride);
            let total = if out == 0 {
                0
            } else {
                ((out - 1) * stride + k).saturating_sub(input)
            };
            Some((out, total / 2))
        }
    }
}

impl Conv2dGeometry {
    /// Resolves the geometry of a window `kernel = (k_h, k_w)` moved by `strides = (s_h, s_w)`
    /// over an NHWC `input_shape`, with Keras' `padding` rule (see [`Padding`]).
    ///
    /// ```
    /// use gradus_tensor::{Conv2dGeometry, Padding};
    ///
    /// let g = Conv2dGeometry::new(&[8, 28, 28, 1], (3, 3), (2, 2), Padding::Same)?;
    /// assert_eq!((g.out_h, g.out_w, g.pad_top, g.pad_left), (14, 14, 0, 0));
    /// let g = Conv2dGeometry::new(&[8, 28, 28, 1], (3, 3), (1, 1), Padding::Valid)?;
    /// assert_eq!((g.out_h, g.out_w), (26, 26));
    /// # Ok::<(), gradus_tensor::TensorError>(())
    /// ```
    ///
    /// # Errors
    /// [`TensorError::Rank`] when the input is not 4-D; [`TensorError::InvalidArgument`] for a
    /// zero kernel length or stride, or (with `Valid`) a kernel larger than the input.
    pub fn new(
        input_shape: &[usize],
        kernel: (usize, usize),
        strides: (usize, usize),
        padding: Padding,
    ) -> Result<Self> {
        let &[batch, in_h, in_w, in_c] = input_shape else {
            return Err(TensorError::Rank {
                op: "conv2d geometry",
                expected: "a 4-D NHWC input shape",
                got: input_shape.to_vec(),
            });
        };
        if kernel.0 == 0 || kernel.1 == 0 || strides.0 == 0 || strides.1 == 0 {
            return Err(TensorError::InvalidArgument {
                op: "conv2d geometry",
                message: format!(
                    "kernel and strides must be positive, got kernel {kernel:?} and strides {strides:?}"
                ),
            });
        }
        let too_big = || TensorError::InvalidArgument {
            op: "conv2d geometry",
            message: format!(
                "kernel {kernel:?} is larger than the input {:?} (height, width) with {padding:?} padding",
                (in_h, in_w)
            ),
        };
        let (out_h, pad_top) =
            resolve_axis(in_h, kernel.0, strides.0, padding).ok_or_else(too_big)?;
        let (out_w, pad_left) =
            resolve_axis(in_w, kernel.1, strides.1, padding).ok_or_else(too_big)?;
        Ok(Conv2dGeometry {
            batch,
            in_h,
            in_w,
            in_c,
            k_h: kernel.0,
            k_w: kernel.1,
            stride_h: strides.0,
            stride_w: strides.1,
            pad_top,
            pad_left,
            out_h,
            out_w,
        })
    }

    /// The NHWC input shape `[batch, in_h, in_w, in_c]`.
    pub fn input_shape(&self) -> [usize; 4] {
        [self.batch, self.in_h, self.in_w, self.in_c]
    }

    /// The NHWC output shape for `channels` output channels: `[batch, out_h, out_w, channels]`.
    pub fn output_shape(&self, channels: usize) -> [usize; 4] {
        [self.batch, self.out_h, self.out_w, channels]
    }

    /// The length of one im2col row, `k_h * k_w * in_c`.
    pub fn patch_len(&self) -> usize {
        self.k_h * self.k_w * self.in_c
    }

    /// The number of output positions over the batch, `batch * out_h * out_w` (im2col rows).
    pub fn positions(&self) -> usize {
        self.batch * self.out_h * self.out_w
    }

    /// The input row/column under window offset `k` of output position `o`, if inside the input.
    #[inline]
    pub(crate) fn input_row(&self, o: usize, k: usize) -> Option<usize> {
        (o * self.stride_h + k)
            .checked_sub(self.pad_top)
            .filter(|&i| i < self.in_h)
    }

    /// As `input_row`, horizontally.
    #[inline]
    pub(crate) fn input_col(&self, o: usize, k: usize) -> Option<usize> {
        (o * self.stride_w + k)
            .checked_sub(self.pad_left)
            .filter(|&i| i < self.in_w)
    }

    /// Checks that `t` has shape `want`, naming the operation.
    pub(crate) fn check(op: &'static str, t: &Tensor, want: &[usize]) -> Result<()> {
        if t.shape() == want {
            Ok(())
        } else {
            Err(TensorError::IncompatibleShapes {
                op,
                lhs: t.shape().to_vec(),
                rhs: want.to_vec(),
                reason: "the tensor (first) does not have the shape the geometry requires (second)"
                    .to_string(),
            })
        }
    }
}

/// Unfolds every window of an NHWC input into a row: `cols[(n, oh, ow), (kh, kw, c)] =
/// x[n, oh*s_h + kh - pad_top, ow*s_w + kw - pad_left, c]`, zero where that is padding.
///
/// Shape: `[N, H, W, C] -> [N*out_h*out_w, k_h*k_w*C]`. The column order (kh, kw, c) matches a
/// Keras kernel `(kh, kw, in, filters)` reshaped to `(kh*kw*in, filters)`.
///
/// # Errors
/// [`TensorError::IncompatibleShapes`] when the input is not `g.input_shape()`.
pub fn im2col(input: &Tensor, g: &Conv2dGeometry) -> Result<Tensor> {
    Conv2dGeometry::check("im2col", input, &g.input_shape())?;
    let src = input.to_contiguous();
    let x = src.as_slice().expect("contiguous");
    let (c, patch) = (g.in_c, g.patch_len());
    let mut cols = vec![0.0f32; g.positions() * patch];
    if patch > 0 {
        let mut rows = cols.chunks_exact_mut(patch);
        for n in 0..g.batch {
            for oh in 0..g.out_h {
                for ow in 0..g.out_w {
                    let row = rows.next().expect("one row per position");
                    for kh in 0..g.k_h {
                        let Some(ih) = g.input_row(oh, kh) else {
                            continue;
                        };
                        for kw in 0..g.k_w {
                            let Some(iw) = g.input_col(ow, kw) else {
                                continue;
                            };
                            let src = ((n * g.in_h + ih) * g.in_w + iw) * c;
                            let dst = (kh * g.k_w + kw) * c;
                            if c == 1 {
                                // One channel (a first layer on grey images): a plain move, not
                                // a `memcpy` call per pixel.
                                row[dst] = x[src];
                            } else {
                                row[dst..dst + c].copy_from_slice(&x[src..src + c]);
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(Tensor::from_parts(cols, &[g.positions(), patch]))
}

/// Folds im2col rows back into an NHWC tensor, adding overlapping contributions: the adjoint of
/// [`im2col`], `out[n, ih, iw, c] = sum of cols[(n, oh, ow), (kh, kw, c)]` over every window
/// position that reads `(ih, iw)` (padding positions are dropped).
///
/// Shape: `[N*out_h*out_w, k_h*k_w*C] -> [N, H, W, C]`.
///
/// # Errors
/// [`TensorError::IncompatibleShapes`] when `cols` is not `[g.positions(), g.patch_len()]`.
pub fn col2im(cols: &Tensor, g: &Conv2dGeometry) -> Result<Tensor> {
    Conv2dGeometry::check("col2im", cols, &[g.positions(), g.patch_len()])?;
    let src = cols.to_contiguous();
    let y = src.as_slice().expect("contiguous");
    let (c, patch) = (g.in_c, g.patch_len());
    let mut out = vec![0.0f32; g.batch * g.in_h * g.in_w * c];
    if patch > 0 {
        let mut rows = y.chunks_exact(patch);
        for n in 0..g.batch {
            for oh in 0..g.out_h {
                for ow in 0..g.out_w {
                    let row = rows.next().expect("one row per position");
                    for kh in 0..g.k_h {
                        let Some(ih) = g.input_row(oh, kh) else {
                            continue;
                        };
                        for kw in 0..g.k_w {
                            let Some(iw) = g.input_col(ow, kw) else {
                                continue;
                            };
                            let dst = ((n * g.in_h + ih) * g.in_w + iw) * c;
                            let src = (kh * g.k_w + kw) * c;
                            for (o, &v) in out[dst..dst + c].iter_mut().zip(&row[src..src + c]) {
                                *o += v;
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(Tensor::from_parts(out, &g.input_shape()))
}

/// Checks a kernel `[k_h, k_w, in_c, filters]` against the geometry; returns `filters`.
fn check_kernel(op: &'static str, kernel: &Tensor, g: &Conv2dGeometry) -> Result<usize> {
    match *kernel.shape() {
        [kh, kw, c, f] if (kh, kw, c) == (g.k_h, g.k_w, g.in_c) => Ok(f),
        _ => Err(TensorError::IncompatibleShapes {
            op,
            lhs: kernel.shape().to_vec(),
            rhs: g.input_shape().to_vec(),
            reason: format!(
                "expected a kernel [{}, {}, {}, filters] for this input and window",
                g.k_h, g.k_w, g.in_c
            ),
        }),
    }
}

/// 2-D cross-correlation (Keras `Conv2D` without bias):
/// `out[n, oh, ow, f] = sum_{kh, kw, c} x[n, oh*s_h + kh - pad_top, ow*s_w + kw - pad_left, c] * k[kh, kw, c, f]`.
///
/// Shapes: input `[N, H, W, C]` (NHWC), kernel `[k_h, k_w, C, F]`, output `[N, out_h, out_w, F]`
/// with the sizes of [`Conv2dGeometry::new`]. Computed as [`im2col`] then one matrix product.
///
/// ```
/// use gradus_tensor::{conv2d, Padding, Tensor};
///
/// let x = Tensor::ones(&[1, 4, 4, 1]);
/// let k = Tensor::ones(&[3, 3, 1, 2]);
/// let y = conv2d(&x, &k, (1, 1), Padding::Same)?;
/// assert_eq!(y.shape(), &[1, 4, 4, 2]);
/// assert_eq!(y.get(&[0, 0, 0, 0])?, 4.0); // a corner sees 2 x 2 inputs
/// assert_eq!(y.get(&[0, 1, 1, 1])?, 9.0);
/// # Ok::<(), gradus_tensor::TensorError>(())
/// ```
///
/// # Errors
/// [`TensorError::Rank`] unless the input and the kernel are 4-D; as [`Conv2dGeometry::new`];
/// [`TensorError::IncompatibleShapes`] when the kernel's input channels differ from the input's.
pub fn conv2d(
    input: &Tensor,
    kernel: &Tensor,
    strides: (usize, usize),
    padding: Padding,
) -> Result<Tensor> {
    if kernel.ndim() != 4 {
        return Err(TensorError::Rank {
            op: "conv2d",
            expected: "a 4-D kernel [k_h, k_w, in, filters]",
            got: kernel.shape().to_vec(),
        });
    }
    let ks = kernel.shape();
    let g = Conv2dGeometry::new(input.shape(), (ks[0], ks[1]), strides, padding)?;
    let filters = check_kernel("conv2d", kernel, &g)?;
    let cols = im2col(input, &g)?;
    let out = cols.matmul(&kernel.reshape(&[g.patch_len(), filters])?)?;
    out.reshape(&g.output_shape(filters))
}

/// The gradient of [`conv2d`] with respect to its input: `col2im(dy_2d @ K_2d^T)` where `dy_2d` is
/// `grad_out` as `[N*out_h*out_w, F]` and `K_2d` the kernel as `[k_h*k_w*C, F]`.
///
/// Shapes: `grad_out` `[N, out_h, out_w, F]`, kernel `[k_h, k_w, C, F]`, result `[N, H, W, C]`.
///
/// # Errors
/// [`TensorError::IncompatibleShapes`] when `grad_out` or `kernel` do not fit the geometry.
pub fn conv2d_backward_input(
    grad_out: &Tensor,
    kernel: &Tensor,
    g: &Conv2dGeometry,
) -> Result<Tensor> {
    let filters = check_kernel("conv2d_backward_input", kernel, g)?;
    Conv2dGeometry::check("conv2d_backward_input", grad_out, &g.output_shape(filters))?;
    let dy = grad_out.reshape(&[g.positions(), filters])?;
    let k2 = kernel.reshape(&[g.patch_len(), filters])?;
    col2im(&dy.matmul_t(&k2, false, true)?, g)
}

/// The gradient of [`conv2d`] with respect to its kernel: `im2col(x)^T @ dy_2d`, reshaped to
/// `[k_h, k_w, C, F]`.
///
/// Shapes: input `[N, H, W, C]`, `grad_out` `[N, out_h, out_w, F]`, result `[k_h, k_w, C, F]`.
///
/// # Errors
/// [`TensorError::IncompatibleShapes`] when the input or `grad_out` do not fit the geometry.
pub fn conv2d_backward_kernel(
    input: &Tensor,
    grad_out: &Tensor,
    g: &Conv2dGeometry,
) -> Result<Tensor> {
    let filters = grad_out.shape().last().copied().unwrap_or(0);
    Conv2dGeometry::check("conv2d_backward_kernel", grad_out, &g.output_shape(filters))?;
    let cols = im2col(input, g)?;
    let dy = grad_out.reshape(&[g.positions(), filters])?;
    cols.matmul_t(&dy, true, false)?
        .reshape(&[g.k_h, g.k_w, g.in_c, filters])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keras_same_padding_rule() {
        // in 5, k 3, s 2: out 3, total pad (3-1)*2+3-5 = 2 -> 1 above.
        let g = Conv2dGeometry::new(&[1, 5, 6, 1], (3, 4), (2, 2), Padding::Same).unwrap();
        assert_eq!((g.out_h, g.pad_top), (3, 1));
        // in 6, k 4, s 2: out 3, total (3-1)*2+4-6 = 2 -> 1 left.
        assert_eq!((g.out_w, g.pad_left), (3, 1));
        // in 4, k 2, s 2: out 2, no pad.
        let g = Conv2dGeometry::new(&[1, 4, 4, 1], (2, 2), (2, 2), Padding::Same).unwrap();
        assert_eq!((g.out_h, g.pad_top), (2, 0));
        // Even total with kernel 4, stride 1: 3 -> 1 above, 2 below.
        let g = Conv2dGeometry::new(&[1, 5, 5, 1], (4, 4), (1, 1), Padding::Same).unwrap();
        assert_eq!((g.out_h, g.pad_top), (5, 1));
    }

    #[test]
    fn geometry_errors() {
        assert!(Conv2dGeometry::new(&[1, 5, 5], (3, 3), (1, 1), Padding::Valid).is_err());
        assert!(Conv2dGeometry::new(&[1, 2, 5, 1], (3, 3), (1, 1), Padding::Valid).is_err());
        assert!(Conv2dGeometry::new(&[1, 2, 5, 1], (3, 3), (1, 1), Padding::Same).is_ok());
        assert!(Conv2dGeometry::new(&[1, 5, 5, 1], (3, 3), (0, 1), Padding::Same).is_err());
        assert!(Conv2dGeometry::new(&[1, 5, 5, 1], (0, 3), (1, 1), Padding::Same).is_err());
        let x = Tensor::ones(&[1, 5, 5, 2]);
        let e = conv2d(&x, &Tensor::ones(&[3, 3, 3, 4]), (1, 1), Padding::Same).unwrap_err();
        assert!(e.to_string().contains("[3, 3, 3, 4]"), "{e}");
        assert!(conv2d(&x, &Tensor::ones(&[3, 3, 2]), (1, 1), Padding::Same).is_err());
    }
}
