//! 2-D convolution over NHWC tensors and its gradients. Small windows (at most
//! [`DIRECT_MAX_PATCH`] values) are computed directly, one output image row at a time in cache:
//! the windows are read in place from the (zero-padded) image rows, register tiles of pixels x
//! filters (forward) or taps x filters (kernel sums) accumulate over them, and the input
//! gradient's window gradients `dz K^T` are added back to the pixels they came from. Larger
//! windows go through im2col and one matrix product over the whole batch.

use crate::buffer::{take, take_zeroed};
use crate::error::{Result, TensorError};
use crate::parallel;
use crate::simd;
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

    /// Whether some window position falls outside the input (on the zero padding).
    pub fn has_padding(&self) -> bool {
        self.pad_top > 0
            || self.pad_left > 0
            || (self.out_h.max(1) - 1) * self.stride_h + self.k_h > self.in_h
            || (self.out_w.max(1) - 1) * self.stride_w + self.k_w > self.in_w
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
    let patch = g.patch_len();
    let mut cols = take(g.positions() * patch);
    let row_len = g.out_w * patch;
    if row_len > 0 {
        let grain = parallel::grain(1 << 14, row_len);
        parallel::for_row_blocks(&mut cols, row_len, grain, |first, block| {
            for (r, image_row) in block.chunks_exact_mut(row_len).enumerate() {
                let (n, oh) = ((first + r) / g.out_h, (first + r) % g.out_h);
                gather_windows(g, x, n, oh, image_row);
            }
        });
    }
    Ok(Tensor::from_parts(cols, &[g.positions(), patch]))
}

/// Folds im2col rows back into an NHWC tensor, adding overlapping contributions: the adjoint of
/// [`im2col`], `out[n, ih, iw, c] = sum of cols[(n, oh, ow), (kh, kw, c)]` over every window
/// position that reads `(ih, iw)` (padding positions are dropped). Images run in parallel.
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
    let image = g.in_h * g.in_w * c;
    let mut out = take_zeroed(g.batch * image);
    if patch > 0 && image > 0 {
        let per_image = g.out_h * g.out_w * patch;
        let grain = parallel::grain(1 << 15, image);
        parallel::for_row_blocks(&mut out, image, grain, |first, block| {
            for (i, img) in block.chunks_exact_mut(image).enumerate() {
                let n = first + i;
                let mut rows = y[n * per_image..(n + 1) * per_image].chunks_exact(patch);
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
                                let dst = (ih * g.in_w + iw) * c;
                                let src = (kh * g.k_w + kw) * c;
                                for (o, &v) in img[dst..dst + c].iter_mut().zip(&row[src..src + c])
                                {
                                    *o += v;
                                }
                            }
                        }
                    }
                }
            }
        });
    }
    Ok(Tensor::from_parts(out, &g.input_shape()))
}

/// Checks a kernel `[k_h, k_w, in_c, filters]` against the geometry; returns `filters`.
pub(crate) fn check_kernel(op: &'static str, kernel: &Tensor, g: &Conv2dGeometry) -> Result<usize> {
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
    conv2d_with(input, kernel, strides, padding, |_| {})
}

/// [`conv2d`] followed by `epilogue` on each block of finished output rows while they are still
/// in cache: a layer adds its bias and applies its activation there instead of in another pass
/// over the whole output. `epilogue` receives whole output pixels, `[rows, F]` row-major (for
/// example, all of one or more output image rows), possibly from several threads at once.
///
/// Windows of at most [`DIRECT_MAX_PATCH`] values (`k_h * k_w * C`: a 3x3 kernel over up to 3
/// channels, a 5x5 over one) are computed directly, pixel by pixel, without unfolding the input;
/// larger ones go through [`im2col`] and one matrix product. Either way output image rows run in
/// parallel on the [threads](crate::parallel), and the result does not depend on their number.
///
/// ```
/// use gradus_tensor::{conv2d_with, Padding, Tensor};
///
/// let x = Tensor::full(&[2, 5, 5, 1], -1.0);
/// let k = Tensor::ones(&[3, 3, 1, 4]);
/// // conv, then ReLU in the same pass:
/// let y = conv2d_with(&x, &k, (1, 1), Padding::Valid, |rows| {
///     rows.iter_mut().for_each(|v| *v = v.max(0.0))
/// })?;
/// assert_eq!(y.shape(), &[2, 3, 3, 4]);
/// assert_eq!(y.sum_all(), 0.0);
/// # Ok::<(), gradus_tensor::TensorError>(())
/// ```
///
/// # Errors
/// As [`conv2d`].
pub fn conv2d_with(
    input: &Tensor,
    kernel: &Tensor,
    strides: (usize, usize),
    padding: Padding,
    epilogue: impl Fn(&mut [f32]) + Sync + Send,
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
    let patch = g.patch_len();
    let kmat = kernel.to_contiguous();
    let k = kmat.as_slice().expect("contiguous");
    let row_len = g.out_w * filters;
    if patch > DIRECT_MAX_PATCH || patch == 0 || row_len == 0 {
        let cols = im2col(input, &g)?;
        let mut out = cols.matmul(&kmat.reshape(&[patch, filters])?)?;
        if row_len > 0 {
            parallel::for_row_blocks(out.as_slice_mut(), row_len, 8, |_, rows| epilogue(rows));
        }
        return out.reshape(&g.output_shape(filters));
    }
    let src = input.to_contiguous();
    let x = src.as_slice().expect("contiguous");
    let mut out = take(g.positions() * filters);
    let grain = parallel::grain(1 << 15, row_len * patch);
    parallel::for_row_blocks(&mut out, row_len, grain, |first, rows| {
        let (mut pad, mut taps) = (Vec::new(), Vec::new());
        let mut pad_of = None;
        for (r, row) in rows.chunks_exact_mut(row_len).enumerate() {
            let (n, oh) = ((first + r) / g.out_h, (first + r) % g.out_h);
            if pad_of != Some(n) {
                pad_image(&g, x, n, &mut pad);
                pad_of = Some(n);
            }
            conv_row(
                &g,
                image_view(&g, x, n, &pad),
                k,
                filters,
                oh,
                row,
                &mut taps,
            );
            // The row is still in the first-level cache.
            epilogue(row);
        }
    });
    Ok(Tensor::from_parts(out, &g.output_shape(filters)))
}

/// The largest window (`k_h * k_w * C` values) that [`conv2d_with`] computes directly.
pub const DIRECT_MAX_PATCH: usize = 32;

/// One input image with its zero padding written out (see [`pad_image`] and [`image_view`]):
/// padded row `r` (input row `r - pad_top`) starts at `r * stride`, so the window of output
/// pixel `(oh, ow)` holds, for each `kh`, the `k_w * C` consecutive values at padded row
/// `oh * s_h + kh` from column `ow * s_w` on.
#[derive(Clone, Copy)]
pub(crate) struct PaddedImage<'a> {
    /// The padded rows the windows reach.
    pub(crate) data: &'a [f32],
    /// Values per padded row.
    pub(crate) stride: usize,
}

impl Conv2dGeometry {
    /// The padded rows and columns the windows reach: `(out - 1) * s + k` along each axis.
    fn reach(&self) -> (usize, usize) {
        (
            (self.out_h.max(1) - 1) * self.stride_h + self.k_h,
            (self.out_w.max(1) - 1) * self.stride_w + self.k_w,
        )
    }
}

/// Writes image `n` of `x` with its zero padding into `scratch` when some window reaches the
/// padding (else leaves `scratch` alone: [`image_view`] then reads `x` itself).
pub(crate) fn pad_image(g: &Conv2dGeometry, x: &[f32], n: usize, scratch: &mut Vec<f32>) {
    if !g.has_padding() {
        return;
    }
    let (rows, cols) = g.reach();
    let (c, stride) = (g.in_c, cols * g.in_c);
    let line = g.in_w * c;
    let width = g.in_w.min(cols - g.pad_left) * c;
    scratch.clear();
    scratch.resize(rows * stride, 0.0);
    let own = &x[n * g.in_h * line..(n + 1) * g.in_h * line];
    let used = rows.saturating_sub(g.pad_top);
    for (ih, src) in own.chunks_exact(line.max(1)).take(used).enumerate() {
        let at = (ih + g.pad_top) * stride + g.pad_left * c;
        scratch[at..at + width].copy_from_slice(&src[..width]);
    }
}

/// Image `n` as a [`PaddedImage`]: `x` itself when no window reaches the padding, else the copy
/// [`pad_image`] wrote into `scratch`.
pub(crate) fn image_view<'a>(
    g: &Conv2dGeometry,
    x: &'a [f32],
    n: usize,
    scratch: &'a [f32],
) -> PaddedImage<'a> {
    if g.has_padding() {
        PaddedImage {
            data: scratch,
            stride: g.reach().1 * g.in_c,
        }
    } else {
        let image = g.in_h * g.in_w * g.in_c;
        PaddedImage {
            data: &x[n * image..(n + 1) * image],
            stride: g.in_w * g.in_c,
        }
    }
}

/// The windows of output row `oh` tap by tap: `taps[t][p]` is the value under tap `t` (in
/// `(kh, kw, c)` order) of pixel `p`'s window, `out_w` values per tap (the taps past the patch
/// are empty). These are slices of the padded image rows themselves when the windows of
/// consecutive pixels are one value apart (stride 1 over one channel), else copies in `scratch`.
#[inline]
pub(crate) fn row_taps<'a>(
    g: &Conv2dGeometry,
    img: PaddedImage<'a>,
    oh: usize,
    scratch: &'a mut Vec<f32>,
) -> [&'a [f32]; DIRECT_MAX_PATCH] {
    let (kwc, step, w) = (g.k_w * g.in_c, g.stride_w * g.in_c, g.out_w);
    let top = &img.data[oh * g.stride_h * img.stride..];
    let starts = (0..g.k_h).flat_map(|kh| (0..kwc).map(move |j| kh * img.stride + j));
    let mut taps: [&[f32]; DIRECT_MAX_PATCH] = [&[]; DIRECT_MAX_PATCH];
    if step == 1 {
        for (tap, start) in taps.iter_mut().zip(starts) {
            *tap = &top[start..start + w];
        }
    } else {
        scratch.clear();
        for start in starts {
            scratch.extend(top[start..].iter().step_by(step).take(w));
        }
        let scratch: &'a [f32] = scratch;
        for (tap, values) in taps.iter_mut().zip(scratch.chunks_exact(w.max(1))) {
            *tap = values;
        }
    }
    taps
}

simd::dispatch! {
    /// Output image row `oh` of a direct convolution of one padded image into `row` (`out_w *
    /// filters` values): blocks of 6 pixels x 16 filters in registers, each summing
    /// `window[t] * k[t, f]` over the taps `t` in order (`scratch` as in [`row_taps`]). On x86-64
    /// CPUs with AVX2 and FMA the same code runs compiled for 8-lane vectors with fused
    /// multiply-adds; elsewhere each product is rounded before it is added, so the two builds
    /// may differ in the last bits (each is deterministic, whatever the thread count).
    pub(crate) fn conv_row(
        g: &Conv2dGeometry,
        img: PaddedImage<'_>,
        k: &[f32],
        filters: usize,
        oh: usize,
        row: &mut [f32],
        scratch: &mut Vec<f32>,
    ) => conv_row_body
}

/// The body of [`conv_row`].
#[inline(always)]
fn conv_row_body<const FMA: bool>(
    g: &Conv2dGeometry,
    img: PaddedImage<'_>,
    k: &[f32],
    filters: usize,
    oh: usize,
    row: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let all = row_taps(g, img, oh, scratch);
    let taps = &all[..g.patch_len()];
    let mut p = 0;
    while p + 6 <= g.out_w {
        window_block::<6, FMA>(taps, p, k, filters, &mut row[p * filters..]);
        p += 6;
    }
    let out = &mut row[p * filters..];
    match g.out_w - p {
        0 => {}
        1 => window_block::<1, FMA>(taps, p, k, filters, out),
        2 => window_block::<2, FMA>(taps, p, k, filters, out),
        3 => window_block::<3, FMA>(taps, p, k, filters, out),
        4 => window_block::<4, FMA>(taps, p, k, filters, out),
        _ => window_block::<5, FMA>(taps, p, k, filters, out),
    }
}

/// Output pixels `p..p + P` of a row with windows `taps` (see [`row_taps`]), in tiles of 16,
/// then 8, then 1 filters.
#[inline(always)]
fn window_block<const P: usize, const FMA: bool>(
    taps: &[&[f32]],
    p: usize,
    k: &[f32],
    filters: usize,
    out: &mut [f32],
) {
    let mut f0 = 0;
    while f0 + 16 <= filters {
        window_tile::<P, 16, FMA>(taps, p, k, (filters, f0), out);
        f0 += 16;
    }
    if f0 + 8 <= filters {
        window_tile::<P, 8, FMA>(taps, p, k, (filters, f0), out);
        f0 += 8;
    }
    while f0 < filters {
        window_tile::<P, 1, FMA>(taps, p, k, (filters, f0), out);
        f0 += 1;
    }
}

/// One register tile of [`window_block`]: `P` pixels x filters `f0..f0 + T`.
#[inline(always)]
fn window_tile<const P: usize, const T: usize, const FMA: bool>(
    taps: &[&[f32]],
    p: usize,
    k: &[f32],
    (filters, f0): (usize, usize),
    out: &mut [f32],
) {
    let mut acc = [[0.0f32; T]; P];
    for (tap, kt) in taps.iter().zip(k.chunks_exact(filters)) {
        let w: &[f32; P] = tap[p..p + P].try_into().expect("P values");
        let kt: &[f32; T] = kt[f0..f0 + T].try_into().expect("T values");
        for (a, &w) in acc.iter_mut().zip(w) {
            for l in 0..T {
                a[l] = madd::<FMA>(w, kt[l], a[l]);
            }
        }
    }
    for (q, a) in acc.iter().enumerate() {
        out[q * filters + f0..q * filters + f0 + T].copy_from_slice(a);
    }
}

/// `out[q, f] = sum_t win[q, t] * k[t, f]` for `P` consecutive pixels `q` (windows of `patch`
/// values, outputs of `filters` values), in tiles of 16, then 8, then 1 filters.
#[inline(always)]
fn pixel_block<const P: usize, const FMA: bool>(
    win: &[f32],
    patch: usize,
    k: &[f32],
    filters: usize,
    out: &mut [f32],
) {
    let mut f0 = 0;
    while f0 + 16 <= filters {
        filter_tile::<P, 16, FMA>(win, patch, k, filters, f0, out);
        f0 += 16;
    }
    if f0 + 8 <= filters {
        filter_tile::<P, 8, FMA>(win, patch, k, filters, f0, out);
        f0 += 8;
    }
    while f0 < filters {
        filter_tile::<P, 1, FMA>(win, patch, k, filters, f0, out);
        f0 += 1;
    }
}

/// One register tile of [`pixel_block`]: `P x T` accumulators.
#[inline(always)]
fn filter_tile<const P: usize, const T: usize, const FMA: bool>(
    win: &[f32],
    patch: usize,
    k: &[f32],
    filters: usize,
    f0: usize,
    out: &mut [f32],
) {
    let mut acc = [[0.0f32; T]; P];
    for t in 0..patch {
        let kt: &[f32; T] = k[t * filters + f0..t * filters + f0 + T]
            .try_into()
            .expect("T values");
        for (q, a) in acc.iter_mut().enumerate() {
            let w = win[q * patch + t];
            for l in 0..T {
                a[l] = madd::<FMA>(w, kt[l], a[l]);
            }
        }
    }
    for (q, a) in acc.iter().enumerate() {
        out[q * filters + f0..q * filters + f0 + T].copy_from_slice(a);
    }
}

/// `acc + w * k`: one fused multiply-add in the builds for FMA CPUs, a product then a sum (two
/// roundings) in the portable build.
#[inline(always)]
fn madd<const FMA: bool>(w: f32, k: f32, acc: f32) -> f32 {
    if FMA { w.mul_add(k, acc) } else { acc + w * k }
}

/// `dst.copy_from_slice(src)` with fixed-size moves for the lengths of small windows (a `memcpy`
/// call costs more than the copy there).
#[inline(always)]
fn copy_short(dst: &mut [f32], src: &[f32]) {
    fn fixed<const N: usize>(dst: &mut [f32], src: &[f32]) {
        let s: &[f32; N] = src.try_into().expect("N values");
        let d: &mut [f32; N] = dst.try_into().expect("N values");
        *d = *s;
    }
    match src.len() {
        1 => dst[0] = src[0],
        2 => fixed::<2>(dst, src),
        3 => fixed::<3>(dst, src),
        4 => fixed::<4>(dst, src),
        5 => fixed::<5>(dst, src),
        6 => fixed::<6>(dst, src),
        8 => fixed::<8>(dst, src),
        9 => fixed::<9>(dst, src),
        _ => dst.copy_from_slice(src),
    }
}

/// The windows of output image row `(n, oh)`: `out[ow, (kh, kw, c)] = x[n, oh*s_h + kh - pad_top,
/// ow*s_w + kw - pad_left, c]`, zero on the padding (`out` holds `out_w * patch` values).
#[inline(always)]
pub(crate) fn gather_windows(g: &Conv2dGeometry, x: &[f32], n: usize, oh: usize, out: &mut [f32]) {
    let (c, patch) = (g.in_c, g.patch_len());
    let kwc = g.k_w * c;
    for kh in 0..g.k_h {
        let at = kh * kwc;
        let Some(ih) = g.input_row(oh, kh) else {
            for win in out.chunks_exact_mut(patch) {
                win[at..at + kwc].fill(0.0);
            }
            continue;
        };
        let xrow = &x[(n * g.in_h + ih) * g.in_w * c..(n * g.in_h + ih + 1) * g.in_w * c];
        for (ow, win) in out.chunks_exact_mut(patch).enumerate() {
            let dst = &mut win[at..at + kwc];
            let start = (ow * g.stride_w).wrapping_sub(g.pad_left);
            if ow * g.stride_w >= g.pad_left && start + g.k_w <= g.in_w {
                copy_short(dst, &xrow[start * c..start * c + kwc]);
            } else {
                for kw in 0..g.k_w {
                    let d = &mut dst[kw * c..(kw + 1) * c];
                    match g.input_col(ow, kw) {
                        Some(iw) => d.copy_from_slice(&xrow[iw * c..(iw + 1) * c]),
                        None => d.fill(0.0),
                    }
                }
            }
        }
    }
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
/// See [`conv2d_backward_params`] for how it is computed.
///
/// # Errors
/// [`TensorError::IncompatibleShapes`] when the input or `grad_out` do not fit the geometry.
pub fn conv2d_backward_kernel(
    input: &Tensor,
    grad_out: &Tensor,
    g: &Conv2dGeometry,
) -> Result<Tensor> {
    Ok(conv2d_backward_params(input, grad_out, g)?.0)
}

/// The gradients of [`conv2d`] plus a bias with respect to the kernel and the bias, in one pass
/// over `grad_out`: `dk[kh, kw, c, f] = sum_{n, oh, ow} x[n, oh*s_h + kh - pad_top, ow*s_w + kw -
/// pad_left, c] dy[n, oh, ow, f]` and `db[f] = sum_{n, oh, ow} dy[n, oh, ow, f]`.
///
/// Shapes: input `[N, H, W, C]`, `grad_out` `[N, out_h, out_w, F]`; results `[k_h, k_w, C, F]`
/// and `[F]`.
///
/// For windows of at most [`DIRECT_MAX_PATCH`] values each image's sums are accumulated in
/// registers straight from the input (no unfolded copy), the images in parallel, and the
/// per-image sums are then added in image order; larger windows use [`im2col`] and one matrix
/// product. Either way the result does not depend on the thread count.
///
/// ```
/// use gradus_tensor::{conv2d_backward_params, Conv2dGeometry, Padding, Tensor};
///
/// let x = Tensor::ones(&[2, 4, 4, 1]);
/// let g = Conv2dGeometry::new(x.shape(), (3, 3), (1, 1), Padding::Valid)?;
/// let (dk, db) = conv2d_backward_params(&x, &Tensor::ones(&[2, 2, 2, 5]), &g)?;
/// assert_eq!(dk.shape(), &[3, 3, 1, 5]);
/// assert_eq!(dk.to_vec(), vec![8.0; 45]); // 2 images x 4 positions
/// assert_eq!(db.to_vec(), vec![8.0; 5]);
/// # Ok::<(), gradus_tensor::TensorError>(())
/// ```
///
/// # Errors
/// [`TensorError::IncompatibleShapes`] when the input or `grad_out` do not fit the geometry.
pub fn conv2d_backward_params(
    input: &Tensor,
    grad_out: &Tensor,
    g: &Conv2dGeometry,
) -> Result<(Tensor, Tensor)> {
    conv2d_backward_params_with(input, grad_out, g, |_, _| {})
}

/// [`conv2d_backward_params`] where `prologue(first, rows)` turns each block of `grad_out` rows
/// into the gradient to use, in place in a scratch copy, just before they are summed: a layer
/// with a fused activation passes `dz = dy f'(z)` there, so that `dz` is never written out in
/// full. `rows` holds whole output pixels (`[pixels, F]` row-major) starting at pixel `first`
/// (counted over the whole batch); `prologue` may be called from several threads at once.
///
/// # Errors
/// As [`conv2d_backward_params`].
pub fn conv2d_backward_params_with(
    input: &Tensor,
    grad_out: &Tensor,
    g: &Conv2dGeometry,
    prologue: impl Fn(usize, &mut [f32]) + Sync + Send,
) -> Result<(Tensor, Tensor)> {
    let (_, dk, db) = conv2d_backward_with(input, None, grad_out, g, prologue)?;
    Ok((dk, db))
}

/// All the gradients of a convolution plus a bias in one pass over `grad_out`: with `kernel`,
/// the input gradient `dx = col2im(dz K^T)` (else `None`), and always the kernel and bias
/// gradients of [`conv2d_backward_params`], where `dz` is `grad_out` after `prologue` (as in
/// [`conv2d_backward_params_with`]; pass `|_, _| {}` for none).
///
/// Shapes: input `[N, H, W, C]`, kernel `[k_h, k_w, C, F]`, `grad_out` `[N, out_h, out_w, F]`;
/// results `[N, H, W, C]`, `[k_h, k_w, C, F]` and `[F]`. For windows of at most
/// [`DIRECT_MAX_PATCH`] values each image is done row by row in cache (images in parallel, their
/// sums added in image order): `dz` is never written out whole.
///
/// ```
/// use gradus_tensor::{conv2d_backward_with, Conv2dGeometry, Padding, Tensor};
///
/// let x = Tensor::ones(&[1, 3, 3, 1]);
/// let k = Tensor::ones(&[2, 2, 1, 1]);
/// let g = Conv2dGeometry::new(x.shape(), (2, 2), (1, 1), Padding::Valid)?;
/// let (dx, dk, db) = conv2d_backward_with(&x, Some(&k), &Tensor::ones(&[1, 2, 2, 1]), &g, |_, _| {})?;
/// assert_eq!(dx.unwrap().to_vec(), vec![1., 2., 1., 2., 4., 2., 1., 2., 1.]);
/// assert_eq!((dk.to_vec(), db.to_vec()), (vec![4.0; 4], vec![4.0]));
/// # Ok::<(), gradus_tensor::TensorError>(())
/// ```
///
/// # Errors
/// [`TensorError::IncompatibleShapes`] when the input, kernel or `grad_out` do not fit the
/// geometry.
pub fn conv2d_backward_with(
    input: &Tensor,
    kernel: Option<&Tensor>,
    grad_out: &Tensor,
    g: &Conv2dGeometry,
    prologue: impl Fn(usize, &mut [f32]) + Sync + Send,
) -> Result<(Option<Tensor>, Tensor, Tensor)> {
    let filters = grad_out.shape().last().copied().unwrap_or(0);
    Conv2dGeometry::check("conv2d_backward", grad_out, &g.output_shape(filters))?;
    Conv2dGeometry::check("conv2d_backward", input, &g.input_shape())?;
    if let Some(k) = kernel
        && check_kernel("conv2d_backward", k, g)? != filters
    {
        return Err(TensorError::IncompatibleShapes {
            op: "conv2d_backward",
            lhs: k.shape().to_vec(),
            rhs: grad_out.shape().to_vec(),
            reason: "the kernel's filters differ from the gradient's channels".to_string(),
        });
    }
    let patch = g.patch_len();
    let kshape = [g.k_h, g.k_w, g.in_c, filters];
    let dys = grad_out.to_contiguous();
    let dy = dys.as_slice().expect("contiguous");
    let per_image = g.out_h * g.out_w * filters;
    if patch > DIRECT_MAX_PATCH || per_image == 0 || patch == 0 {
        let cols = im2col(input, g)?;
        let mut dy2 = dys.reshape(&[g.positions(), filters])?;
        if filters > 0 {
            let grain = parallel::grain(1 << 14, filters);
            parallel::for_row_blocks(dy2.as_slice_mut(), filters, grain, &prologue);
        }
        let dx = match kernel {
            Some(k) => Some(col2im(
                &dy2.matmul_t(&k.reshape(&[patch, filters])?, false, true)?,
                g,
            )?),
            None => None,
        };
        let dk = cols.matmul_t(&dy2, true, false)?.reshape(&kshape)?;
        let db = dy2.sum_axes(&[0], false)?;
        return Ok((dx, dk, db));
    }
    let src = input.to_contiguous();
    let x = src.as_slice().expect("contiguous");
    // K^T as [F, patch] with rows padded to whole 8-lane vectors (zeros): the window gradient
    // of a pixel is its dz row times K^T.
    let kt_width = patch.next_multiple_of(8);
    let kmat = kernel.map(Tensor::to_contiguous);
    let kt: Option<Vec<f32>> = kmat.as_ref().map(|k| {
        let k = k.as_slice().expect("contiguous");
        let mut kt = take_zeroed(filters * kt_width);
        for (t, row) in k.chunks_exact(filters).enumerate() {
            for (f, &v) in row.iter().enumerate() {
                kt[f * kt_width + t] = v;
            }
        }
        kt
    });
    let kernels = kmat.as_ref().and_then(Tensor::as_slice).zip(kt.as_deref());
    let image = g.in_h * g.in_w * g.in_c;
    let mut dx = kt.as_ref().map(|_| take_zeroed(g.batch * image));
    // One row of `patch * F` kernel sums and `F` bias sums per image, and its input gradient.
    let width = (patch + 1) * filters;
    let mut partial = take_zeroed(g.batch * width);
    let mut images: Vec<(&mut [f32], Option<&mut [f32]>)> = match dx.as_mut() {
        Some(dx) => partial
            .chunks_mut(width)
            .zip(dx.chunks_mut(image.max(1)).map(Some))
            .collect(),
        None => partial.chunks_mut(width).map(|p| (p, None)).collect(),
    };
    parallel::for_row_blocks(&mut images, 1, 2, |first, block| {
        let row = g.out_w * filters;
        // dz with zero pixels up to a multiple of 8, and the window gradients (pixel by pixel
        // with rows of `kt_width`, or tap by tap with rows of that many pixels).
        let pixels = g.out_w.next_multiple_of(8);
        let mut dz_padded = take_zeroed(pixels * filters);
        let mut dwin = take_zeroed(pixels * kt_width);
        let (mut pad, mut pad_dx, mut taps) = (Vec::new(), Vec::new(), Vec::new());
        for (i, (sums, dxi)) in block.iter_mut().enumerate() {
            let n = first + i;
            pad_image(g, x, n, &mut pad);
            let img = image_view(g, x, n, &pad);
            {
                // The input gradient accumulates in padded coordinates (in place without
                // padding).
                let mut target = dxi.as_deref_mut().map(|d| padded_target(g, d, &mut pad_dx));
                for oh in 0..g.out_h {
                    let at = (n * g.out_h + oh) * row;
                    let dz = &mut dz_padded[..row];
                    dz.copy_from_slice(&dy[at..at + row]);
                    prologue(at / filters, dz);
                    kernel_sums_row(g, img, oh, dz, sums, &mut taps);
                    if let (Some((dxp, stride)), Some((k, kt))) = (target.as_mut(), kernels) {
                        let kernel = (k, kt, kt_width);
                        input_grad_row(g, &dz_padded, kernel, &mut dwin, oh, (dxp, *stride));
                    }
                }
            }
            if let Some(d) = dxi.as_deref_mut() {
                crop_padded(g, &pad_dx, d);
            }
        }
    });
    let (dk, db) = add_image_sums(&partial, &kshape)?;
    let dx = match dx {
        Some(v) => Some(Tensor::from_vec(v, &g.input_shape())?),
        None => None,
    };
    Ok((dx, dk, db))
}

/// Where one image's input gradient accumulates, with the row stride: the image's slice `dxi`
/// itself when no window reaches the padding, else `scratch`, zeroed to the padded size (see
/// [`PaddedImage`]; [`crop_padded`] then copies it back).
fn padded_target<'a>(
    g: &Conv2dGeometry,
    dxi: &'a mut [f32],
    scratch: &'a mut Vec<f32>,
) -> (&'a mut [f32], usize) {
    if !g.has_padding() {
        return (dxi, g.in_w * g.in_c);
    }
    let (rows, cols) = g.reach();
    scratch.clear();
    scratch.resize(rows * cols * g.in_c, 0.0);
    (scratch, cols * g.in_c)
}

/// Copies the input gradient accumulated in padded coordinates (`padded`, from
/// [`padded_target`]) into the image's slice `dxi`; nothing without padding.
fn crop_padded(g: &Conv2dGeometry, padded: &[f32], dxi: &mut [f32]) {
    if !g.has_padding() {
        return;
    }
    let (rows, cols) = g.reach();
    let (c, stride, line) = (g.in_c, cols * g.in_c, g.in_w * g.in_c);
    let width = g.in_w.min(cols - g.pad_left) * c;
    let used = rows.saturating_sub(g.pad_top);
    for (ih, dst) in dxi.chunks_exact_mut(line.max(1)).take(used).enumerate() {
        let at = (ih + g.pad_top) * stride + g.pad_left * c;
        dst[..width].copy_from_slice(&padded[at..at + width]);
    }
}

/// Adds per-image rows of kernel sums (`patch * F` values) and bias sums (`F`) in image order
/// (the same bits for any thread count), as the kernel `kshape` and bias `[F]` gradients.
pub(crate) fn add_image_sums(partial: &[f32], kshape: &[usize; 4]) -> Result<(Tensor, Tensor)> {
    let filters = kshape[3];
    let kernel_len: usize = kshape.iter().product();
    let mut total = take_zeroed(kernel_len + filters);
    for sums in partial.chunks_exact(total.len()) {
        total.iter_mut().zip(sums).for_each(|(t, s)| *t += s);
    }
    let db = total.split_off(kernel_len);
    Ok((
        Tensor::from_vec(total, kshape)?,
        Tensor::from_vec(db, &[filters])?,
    ))
}

simd::dispatch! {
    /// The input gradient of output row `oh`: the window gradients `dz K^T` (computed into
    /// `dwin` from the kernel `K` as `[patch, F]`, or from `K^T` as `[F, kernel.2]` with rows
    /// padded to `kernel.2` values), each added back to the padded pixels its window read (`dx.0`,
    /// rows of `dx.1` values). `dz` holds the row's pixels and zeros up to a multiple of 8
    /// pixels. Compiled for AVX2 and FMA where available, as [`conv_row`]; there, with 8 to 32
    /// filters (a multiple of 8), each window gradient is a dot product over the filters in 8
    /// lanes, added across lanes at the end.
    fn input_grad_row(
        g: &Conv2dGeometry,
        dz: &[f32],
        kernel: (&[f32], &[f32], usize),
        dwin: &mut [f32],
        oh: usize,
        dx: (&mut [f32], usize),
    ) => input_grad_row_body
}

/// The body of [`input_grad_row`].
#[inline(always)]
fn input_grad_row_body<const FMA: bool>(
    g: &Conv2dGeometry,
    dz: &[f32],
    (k, kt, width): (&[f32], &[f32], usize),
    dwin: &mut [f32],
    oh: usize,
    (dxp, stride): (&mut [f32], usize),
) {
    let pixels = g.out_w.next_multiple_of(8);
    let filters = dz.len() / pixels;
    #[cfg(target_arch = "x86_64")]
    if FMA && filters.is_multiple_of(8) && (8..=32).contains(&filters) {
        let windows = (dz, k, g.patch_len());
        // SAFETY: `FMA` is true only in the build that `simd::dispatch!` compiles for AVX2 and
        // FMA and calls after checking that the CPU has them.
        unsafe {
            match filters / 8 {
                1 => avx::window_grads::<1>(windows, dwin, pixels),
                2 => avx::window_grads::<2>(windows, dwin, pixels),
                3 => avx::window_grads::<3>(windows, dwin, pixels),
                _ => avx::window_grads::<4>(windows, dwin, pixels),
            }
        }
        scatter_window_grads(g, dwin, (1, pixels), oh, (dxp, stride));
        return;
    }
    let dz = &dz[..g.out_w * filters];
    let mut p = 0;
    while p + 6 <= g.out_w {
        let out = &mut dwin[p * width..];
        pixel_block::<6, FMA>(&dz[p * filters..], filters, kt, width, out);
        p += 6;
    }
    let (d, out) = (&dz[p * filters..], &mut dwin[p * width..]);
    match g.out_w - p {
        0 => {}
        1 => pixel_block::<1, FMA>(d, filters, kt, width, out),
        2 => pixel_block::<2, FMA>(d, filters, kt, width, out),
        3 => pixel_block::<3, FMA>(d, filters, kt, width, out),
        4 => pixel_block::<4, FMA>(d, filters, kt, width, out),
        _ => pixel_block::<5, FMA>(d, filters, kt, width, out),
    }
    scatter_window_grads(g, dwin, (width, 1), oh, (dxp, stride));
}

/// Adds the window gradients of output row `oh` to the padded input pixels they came from
/// (`dxp`, rows of `stride` values), tap by tap, so that the pixels of one pass add to distinct
/// input values. The gradient of pixel `p` at tap `t` is `dwin[p * along.0 + t * along.1]`.
#[inline(always)]
fn scatter_window_grads(
    g: &Conv2dGeometry,
    dwin: &[f32],
    (per_pixel, per_tap): (usize, usize),
    oh: usize,
    (dxp, stride): (&mut [f32], usize),
) {
    let (kwc, step) = (g.k_w * g.in_c, g.stride_w * g.in_c);
    for kh in 0..g.k_h {
        let dst = &mut dxp[(oh * g.stride_h + kh) * stride..];
        for j in 0..kwc {
            let t = kh * kwc + j;
            if (per_pixel, step) == (1, 1) {
                let src = &dwin[t * per_tap..t * per_tap + g.out_w];
                for (d, &v) in dst[j..j + g.out_w].iter_mut().zip(src) {
                    *d += v;
                }
            } else {
                let src = dwin[t * per_tap..].iter().step_by(per_pixel).take(g.out_w);
                for (d, &v) in dst[j..].iter_mut().step_by(step).zip(src) {
                    *d += v;
                }
            }
        }
    }
}

simd::dispatch! {
    /// Adds output row `oh` of one padded image to the kernel sums: `sums[t, f] += sum_p
    /// window[p, t] dz[p, f]` and the bias sums `sums[patch, f] += sum_p dz[p, f]`, over the
    /// row's pixels `p` in order (`scratch` as in [`row_taps`]). Compiled for AVX2 and FMA where
    /// available, as [`conv_row`].
    pub(crate) fn kernel_sums_row(
        g: &Conv2dGeometry,
        img: PaddedImage<'_>,
        oh: usize,
        dz: &[f32],
        sums: &mut [f32],
        scratch: &mut Vec<f32>,
    ) => kernel_sums_row_body
}

/// The body of [`kernel_sums_row`]: tiles of 6 taps by 16, then 8, then 1 filters, each held in
/// registers over the row's pixels; the bias rides along with the last taps.
#[inline(always)]
fn kernel_sums_row_body<const FMA: bool>(
    g: &Conv2dGeometry,
    img: PaddedImage<'_>,
    oh: usize,
    dz: &[f32],
    sums: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let all = row_taps(g, img, oh, scratch);
    let taps = &all[..g.patch_len()];
    let dz = &dz[..g.out_w * (dz.len() / g.out_w.max(1))];
    let filters = dz.len() / g.out_w;
    let mut f0 = 0;
    while f0 + 16 <= filters {
        tap_tiles::<16, FMA>(taps, dz, (filters, f0), sums);
        f0 += 16;
    }
    if f0 + 8 <= filters {
        tap_tiles::<8, FMA>(taps, dz, (filters, f0), sums);
        f0 += 8;
    }
    while f0 < filters {
        tap_tiles::<1, FMA>(taps, dz, (filters, f0), sums);
        f0 += 1;
    }
}

/// [`kernel_sums_row_body`] for filters `f0..f0 + T`, all taps (in groups of 6, the last group
/// with the bias).
#[inline(always)]
fn tap_tiles<const T: usize, const FMA: bool>(
    taps: &[&[f32]],
    dz: &[f32],
    at: (usize, usize),
    sums: &mut [f32],
) {
    let patch = taps.len();
    let mut t0 = 0;
    while t0 + 6 <= patch {
        sums_tile::<6, false, T, FMA>(taps, dz, at, (t0, patch), sums);
        t0 += 6;
    }
    match patch - t0 {
        0 => sums_tile::<0, true, T, FMA>(taps, dz, at, (t0, patch), sums),
        1 => sums_tile::<1, true, T, FMA>(taps, dz, at, (t0, patch), sums),
        2 => sums_tile::<2, true, T, FMA>(taps, dz, at, (t0, patch), sums),
        3 => sums_tile::<3, true, T, FMA>(taps, dz, at, (t0, patch), sums),
        4 => sums_tile::<4, true, T, FMA>(taps, dz, at, (t0, patch), sums),
        _ => sums_tile::<5, true, T, FMA>(taps, dz, at, (t0, patch), sums),
    }
}

/// Taps `t0..t0 + G` (and the bias when `BIAS`) by filters `f0..f0 + T` of
/// [`kernel_sums_row_body`], in registers over the row's pixels. The bias sum adds `dz` as it
/// is, which is what a multiply-add with a window value of one gives.
#[inline(always)]
fn sums_tile<const G: usize, const BIAS: bool, const T: usize, const FMA: bool>(
    taps: &[&[f32]],
    dz: &[f32],
    (filters, f0): (usize, usize),
    (t0, patch): (usize, usize),
    sums: &mut [f32],
) {
    let pixels = dz.len() / filters;
    let taps: [&[f32]; G] = std::array::from_fn(|q| &taps[t0 + q][..pixels]);
    let bias_at = patch * filters + f0;
    let mut acc = [[0.0f32; T]; G];
    for (q, a) in acc.iter_mut().enumerate() {
        a.copy_from_slice(&sums[(t0 + q) * filters + f0..(t0 + q) * filters + f0 + T]);
    }
    let mut bias = [0.0f32; T];
    if BIAS {
        bias.copy_from_slice(&sums[bias_at..bias_at + T]);
    }
    for p in 0..pixels {
        let d: &[f32; T] = dz[p * filters + f0..p * filters + f0 + T]
            .try_into()
            .expect("T values");
        for (a, tap) in acc.iter_mut().zip(&taps) {
            let w = tap[p];
            for l in 0..T {
                a[l] = madd::<FMA>(w, d[l], a[l]);
            }
        }
        if BIAS {
            for l in 0..T {
                bias[l] += d[l];
            }
        }
    }
    for (q, a) in acc.iter().enumerate() {
        sums[(t0 + q) * filters + f0..(t0 + q) * filters + f0 + T].copy_from_slice(a);
    }
    if BIAS {
        sums[bias_at..bias_at + T].copy_from_slice(&bias);
    }
}

/// Kernels written with AVX2 and FMA intrinsics, for the builds `simd::dispatch!` makes for
/// CPUs that have them.
#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_fmadd_ps, _mm256_hadd_ps, _mm256_loadu_ps, _mm256_mul_ps,
        _mm256_permute2f128_ps, _mm256_setzero_ps, _mm256_storeu_ps,
    };

    /// Eight values as a vector.
    #[target_feature(enable = "avx2,fma")]
    fn load(v: &[f32; 8]) -> __m256 {
        // SAFETY: `v` is 8 readable values; the load has no alignment requirement.
        unsafe { _mm256_loadu_ps(v.as_ptr()) }
    }

    /// `[sum(a[0]), ..., sum(a[7])]`: each vector's 8 lanes added as
    /// `((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))`.
    #[target_feature(enable = "avx2,fma")]
    fn sums8(a: &[__m256; 8]) -> __m256 {
        let q0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
        let q1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
        // q0 = [low halves of a0..a3, high halves of a0..a3], q1 the same for a4..a7.
        _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(q0, q1),
            _mm256_permute2f128_ps::<0x31>(q0, q1),
        )
    }

    /// The window gradients of a row of pixels, tap by tap: `dwin[t, p] = sum_f dz[p, f] k[t, f]`
    /// for the taps `t < patch` of `k` (`[patch, 8 V]`), rows of `dwin` of `pixels` values (a
    /// multiple of 8, `dz` holding that many whole pixels of `8 V` values). Each is a dot product
    /// in 8 lanes (the filters `8 v + l` in lane `l`, in order of `v`) whose lanes [`sums8`]
    /// then adds, 8 pixels at a time.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn window_grads<const V: usize>(
        (dz, k, patch): (&[f32], &[f32], usize),
        dwin: &mut [f32],
        pixels: usize,
    ) {
        let filters = 8 * V;
        let lanes = |s: &[f32], at: usize| load(s[at..at + 8].try_into().expect("8 values"));
        let rows = k.chunks_exact(filters).zip(dwin.chunks_exact_mut(pixels));
        for (krow, out) in rows.take(patch) {
            let kv: [__m256; V] = std::array::from_fn(|v| lanes(krow, 8 * v));
            for (group, out) in dz.chunks_exact(8 * filters).zip(out.chunks_exact_mut(8)) {
                let mut acc = [_mm256_setzero_ps(); 8];
                for (a, d) in acc.iter_mut().zip(group.chunks_exact(filters)) {
                    *a = _mm256_mul_ps(lanes(d, 0), kv[0]);
                    for (v, &kv) in kv.iter().enumerate().skip(1) {
                        *a = _mm256_fmadd_ps(lanes(d, 8 * v), kv, *a);
                    }
                }
                let out: &mut [f32; 8] = out.try_into().expect("8 values");
                // SAFETY: `out` is 8 writable values; the store has no alignment requirement.
                unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sums8(&acc)) };
            }
        }
    }
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
