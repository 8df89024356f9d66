//! A convolution followed by max pooling as one kernel: the convolution's output is made a few
//! rows at a time, pooled while in cache, and never stored whole.
//!
//! On `Conv2D(32, 3x3) -> MaxPooling2D(2)` over a batch of 128 MNIST images the convolution's
//! output is 11 MB; made and then pooled by separate kernels it is written once and read three
//! times per training step (pooling, its backward, the activation's backward), which bounds the
//! step by memory traffic. Here each pooled row is made from the convolution rows under its
//! windows, computed into a small scratch, and only the pooled values and the winners' window
//! offsets (one byte each) are kept. The backward rebuilds the convolution gradient of those
//! rows, zero except at the winners, again in scratch, and sums the kernel and bias gradients
//! from it.

use crate::buffer::{take, take_zeroed};
use crate::conv::{
    Conv2dGeometry, DIRECT_MAX_PATCH, PaddedImage, Pool2dGeometry, add_image_sums, check_kernel,
    conv_row, image_view, kernel_sums_row, pad_image,
};
use crate::error::{Result, TensorError};
use crate::parallel;
use crate::simd;
use crate::tensor::Tensor;

/// The largest pooling window (`k_h * k_w` positions) [`conv2d_max_pool_with`] handles: the
/// winners are stored as one byte each.
pub const FUSED_MAX_POOL_WINDOW: usize = 256;

/// Checks that the fused kernels apply to this convolution and pooling; returns `filters`.
fn check_fused(
    op: &'static str,
    input: &Tensor,
    kernel: &Tensor,
    conv: &Conv2dGeometry,
    pool: &Pool2dGeometry,
) -> Result<usize> {
    Conv2dGeometry::check(op, input, &conv.input_shape())?;
    let filters = check_kernel(op, kernel, conv)?;
    if pool.input_shape() != conv.output_shape(filters) {
        return Err(TensorError::IncompatibleShapes {
            op,
            lhs: pool.input_shape().to_vec(),
            rhs: conv.output_shape(filters).to_vec(),
            reason: "the pooling input (first) must be the convolution output (second)".into(),
        });
    }
    if conv.patch_len() > DIRECT_MAX_PATCH || pool.k_h * pool.k_w > FUSED_MAX_POOL_WINDOW {
        return Err(TensorError::InvalidArgument {
            op,
            message: format!(
                "expected a window of at most {DIRECT_MAX_PATCH} values and a pool of at most \
                 {FUSED_MAX_POOL_WINDOW} positions, got {} and {}",
                conv.patch_len(),
                pool.k_h * pool.k_w
            ),
        });
    }
    Ok(filters)
}

/// `max_pool2d(epilogue(conv2d(input, kernel)))` in one pass, and for each pooled element the
/// offset `kh * pool_w + kw` of its winner in its window (the first maximum; a NaN wins only from
/// the first position, as [`max_pool2d`](crate::max_pool2d)).
///
/// Shapes: input `[N, H, W, C]`, kernel `[k_h, k_w, C, F]`; `conv` is the convolution's
/// geometry and `pool` the pooling's over the convolution output `[N, out_h, out_w, F]`; the
/// result is `[N, pool.out_h, pool.out_w, F]` with one winner per element. `epilogue` (a bias and
/// an activation) runs on each convolution row of `out_w * F` values before it is pooled. Pooled
/// rows run in parallel; the values are those of [`conv2d_with`](crate::conv2d_with) then
/// [`max_pool2d`](crate::max_pool2d), bit for bit.
///
/// ```
/// use gradus_tensor::{Conv2dGeometry, Padding, Tensor, conv2d_max_pool_with};
///
/// let x = Tensor::arange(0.0, 16.0, 1.0)?.reshape(&[1, 4, 4, 1])?;
/// let k = Tensor::ones(&[1, 1, 1, 1]);
/// let conv = Conv2dGeometry::new(x.shape(), (1, 1), (1, 1), Padding::Valid)?;
/// let pool = Conv2dGeometry::new(&[1, 4, 4, 1], (2, 2), (2, 2), Padding::Valid)?;
/// let (y, winners) = conv2d_max_pool_with(&x, &k, &conv, &pool, |_| {})?;
/// assert_eq!(y.to_vec(), vec![5.0, 7.0, 13.0, 15.0]);
/// assert_eq!(winners, vec![3, 3, 3, 3]); // bottom right of each window
/// # Ok::<(), gradus_tensor::TensorError>(())
/// ```
///
/// # Errors
/// [`TensorError::IncompatibleShapes`] when the input, kernel or pooling do not fit the
/// geometries; [`TensorError::InvalidArgument`] for a convolution window of more than
/// [`DIRECT_MAX_PATCH`] values or a pool of more than [`FUSED_MAX_POOL_WINDOW`] positions.
pub fn conv2d_max_pool_with(
    input: &Tensor,
    kernel: &Tensor,
    conv: &Conv2dGeometry,
    pool: &Pool2dGeometry,
    epilogue: impl Fn(&mut [f32]) + Sync + Send,
) -> Result<(Tensor, Vec<u8>)> {
    let filters = check_fused("conv2d_max_pool", input, kernel, conv, pool)?;
    let (xs, ks) = (input.to_contiguous(), kernel.to_contiguous());
    let (x, k) = (
        xs.as_slice().expect("contiguous"),
        ks.as_slice().expect("contiguous"),
    );
    let n_out = pool.positions() * filters;
    let mut out = take(n_out);
    let mut winners = vec![0u8; n_out];
    let row_len = pool.out_w * filters;
    if row_len > 0 {
        let mut rows: Vec<(&mut [f32], &mut [u8])> = out
            .chunks_mut(row_len)
            .zip(winners.chunks_mut(row_len))
            .collect();
        let windows = Windows::new(pool, filters);
        let work = conv.out_w * filters * conv.patch_len() * pool.k_h;
        let grain = parallel::grain(1 << 15, work);
        parallel::for_row_blocks(&mut rows, 1, grain, |first, block| {
            let conv_row_len = conv.out_w * filters;
            let mut scratch = take_zeroed(pool.k_h * conv_row_len);
            let (mut pad, mut pad_of, mut taps) = (Vec::new(), None, Vec::new());
            for (r, (o_row, w_row)) in block.iter_mut().enumerate() {
                let (n, ph) = ((first + r) / pool.out_h, (first + r) % pool.out_h);
                if pad_of != Some(n) {
                    pad_image(conv, x, n, &mut pad);
                    pad_of = Some(n);
                }
                let img = image_view(conv, x, n, &pad);
                for kh in 0..pool.k_h {
                    if let Some(oh) = pool.input_row(ph, kh) {
                        let row = &mut scratch[kh * conv_row_len..(kh + 1) * conv_row_len];
                        conv_row(conv, img, k, filters, oh, row, &mut taps);
                        epilogue(row);
                    }
                }
                pool_row_dispatch(&windows, &scratch, filters, ph, (o_row, w_row));
            }
        });
    }
    Ok((
        Tensor::from_parts(out, &pool.output_shape(filters)),
        winners,
    ))
}

/// The positions of every pooling window inside the convolution rows under it, the same for
/// every image (built once per call rather than once per window and image: a fifth of the
/// pooling's time). For window `(ph, pw)`, in window order: the offset of each position in the
/// pooling scratch (row `kh` at `kh * in_w * F`) and its window offset `kh * k_w + kw`, carried
/// in the *bits* of an `f32` so that the winners' selects vectorize next to the maxima and come
/// back out with `to_bits` (no conversion); positions on the padding are left out.
struct Windows {
    out_w: usize,
    /// Where the positions of window `ph * out_w + pw` start in `positions` (one more at the end).
    starts: Vec<usize>,
    positions: Vec<(usize, f32)>,
}

impl Windows {
    fn new(pool: &Pool2dGeometry, filters: usize) -> Windows {
        let row_len = pool.in_w * filters;
        let mut starts = Vec::with_capacity(pool.out_h * pool.out_w + 1);
        let mut positions = Vec::new();
        for ph in 0..pool.out_h {
            for pw in 0..pool.out_w {
                starts.push(positions.len());
                for kh in (0..pool.k_h).filter(|&kh| pool.input_row(ph, kh).is_some()) {
                    for kw in 0..pool.k_w {
                        if let Some(ow) = pool.input_col(pw, kw) {
                            let s = f32::from_bits((kh * pool.k_w + kw) as u32);
                            positions.push((kh * row_len + ow * filters, s));
                        }
                    }
                }
            }
        }
        starts.push(positions.len());
        Windows {
            out_w: pool.out_w,
            starts,
            positions,
        }
    }

    /// The positions of window `(ph, pw)`.
    fn of(&self, ph: usize, pw: usize) -> &[(usize, f32)] {
        let w = ph * self.out_w + pw;
        &self.positions[self.starts[w]..self.starts[w + 1]]
    }
}

simd::dispatch! {
    /// [`pool_row`], compiled for AVX2 on x86-64 CPUs that have it (selects only: the same bits).
    fn pool_row_dispatch(
        windows: &Windows,
        scratch: &[f32],
        filters: usize,
        ph: usize,
        out: (&mut [f32], &mut [u8]),
    ) => pool_row
}

/// Pools pooled row `ph` from the convolution rows in `scratch` (row `kh` of the window at
/// `kh * out_w * F`), recording each winner's window offset.
#[inline(always)]
fn pool_row<const FMA: bool>(
    windows: &Windows,
    scratch: &[f32],
    filters: usize,
    ph: usize,
    (out, winners): (&mut [f32], &mut [u8]),
) {
    for pw in 0..windows.out_w {
        let Some((&(first, s0), rest)) = windows.of(ph, pw).split_first() else {
            continue; // every window overlaps the input
        };
        let best = &mut out[pw * filters..(pw + 1) * filters];
        let won = &mut winners[pw * filters..(pw + 1) * filters];
        // Eight channels at a time, all window positions in registers, stored once.
        let mut f = 0;
        while f + 8 <= filters {
            let mut b: [f32; 8] = scratch[first + f..first + f + 8].try_into().expect("8");
            let mut sl = [s0; 8];
            for &(at, s) in rest {
                let v: &[f32; 8] = scratch[at + f..at + f + 8].try_into().expect("8");
                for l in 0..8 {
                    let wins = v[l] > b[l];
                    b[l] = if wins { v[l] } else { b[l] };
                    sl[l] = if wins { s } else { sl[l] };
                }
            }
            best[f..f + 8].copy_from_slice(&b);
            for (w, s) in won[f..f + 8].iter_mut().zip(sl) {
                *w = s.to_bits() as u8;
            }
            f += 8;
        }
        for f in f..filters {
            let (mut b, mut sl) = (scratch[first + f], s0);
            for &(at, s) in rest {
                if scratch[at + f] > b {
                    (b, sl) = (scratch[at + f], s);
                }
            }
            best[f] = b;
            won[f] = sl.to_bits() as u8;
        }
    }
}

/// The kernel and bias gradients of [`conv2d_max_pool_with`]: `dz` is the gradient with respect
/// to the pooled convolution output **before** the pooling, already multiplied by the
/// activation's derivative at the winners (which a layer computes from the pooled values, since
/// a winner's value is its window's maximum). Returns `dk` `[k_h, k_w, C, F]` and `db` `[F]`,
/// the sums over every winner of `window * dz` and `dz`.
///
/// Shapes: `dz` `[N, pool.out_h, pool.out_w, F]`, `winners` one per element of `dz`. Images
/// run in parallel and their sums are added in image order: the result does not depend on the
/// thread count.
///
/// # Errors
/// As [`conv2d_max_pool_with`]; [`TensorError::IncompatibleShapes`] when `dz` or `winners` do
/// not have the pooled size, [`TensorError::InvalidArgument`] for a winner offset outside its
/// window.
pub fn conv2d_max_pool_backward_params(
    input: &Tensor,
    dz: &Tensor,
    winners: &[u8],
    conv: &Conv2dGeometry,
    pool: &Pool2dGeometry,
) -> Result<(Tensor, Tensor)> {
    let filters = dz.shape().last().copied().unwrap_or(0);
    let op = "conv2d_max_pool_backward";
    Conv2dGeometry::check(op, dz, &pool.output_shape(filters))?;
    Conv2dGeometry::check(op, input, &conv.input_shape())?;
    if winners.len() != dz.len() {
        return Err(TensorError::InvalidArgument {
            op,
            message: format!("expected {} winners, got {}", dz.len(), winners.len()),
        });
    }
    let window = pool.k_h * pool.k_w;
    // The largest offset first (a reduction that vectorizes: a search that stops at the first
    // bad byte does not, and took 5% of a CNN epoch).
    let largest = winners.iter().fold(0u8, |m, &w| m.max(w));
    if usize::from(largest) >= window {
        return Err(TensorError::InvalidArgument {
            op,
            message: format!("winner offset {largest} is outside a pool window of {window}"),
        });
    }
    let patch = conv.patch_len();
    let kshape = [conv.k_h, conv.k_w, conv.in_c, filters];
    let (xs, ds) = (input.to_contiguous(), dz.to_contiguous());
    let (x, d) = (
        xs.as_slice().expect("contiguous"),
        ds.as_slice().expect("contiguous"),
    );
    let width = (patch + 1) * filters;
    let mut partial = take_zeroed(conv.batch * width);
    let pooled_row = pool.out_w * filters;
    if pooled_row > 0 && patch > 0 {
        let windows = Windows::new(pool, filters);
        parallel::for_row_blocks(&mut partial, width, 2, |first, block| {
            let mut scratch = take_zeroed(pool.k_h * conv.out_w * filters);
            let (mut pad, mut taps) = (Vec::new(), Vec::new());
            for (i, sums) in block.chunks_exact_mut(width).enumerate() {
                let n = first + i;
                let at = n * pool.out_h * pooled_row;
                let span = at..at + pool.out_h * pooled_row;
                let image = (&d[span.clone()], &winners[span]);
                pad_image(conv, x, n, &mut pad);
                let img = image_view(conv, x, n, &pad);
                let scratch = (&mut scratch[..], &mut taps);
                image_sums(conv, (pool, &windows), img, image, scratch, sums);
            }
        });
    }
    add_image_sums(&partial, &kshape)
}

simd::dispatch! {
    /// One image of [`conv2d_max_pool_backward_params`]: adds its kernel and bias sums to `sums`.
    /// `img` is the padded input image, `dz` and `winners` its pooled gradient and winners;
    /// `scratch` holds `pool.k_h` convolution rows and scratch for the windows. Compiled for AVX2 where available (selects
    /// and the FMA-dispatched kernel sums: the same bits as the portable build of those).
    fn image_sums(
        conv: &Conv2dGeometry,
        pool: (&Pool2dGeometry, &Windows),
        img: PaddedImage<'_>,
        image: (&[f32], &[u8]),
        scratch: (&mut [f32], &mut Vec<f32>),
        sums: &mut [f32],
    ) => image_sums_body
}

/// The body of [`image_sums`]: per pooled row, scatter the gradient to its winners in the
/// convolution rows under the windows (window position by window position, all channels at
/// once), then add those rows' kernel sums.
///
/// When the windows do not overlap along a row (`stride_w >= k_w`, as in `MaxPooling2D`'s
/// default), every convolution position under a window is written by exactly one window
/// position, so the scatter assigns `0 + value` (the bits `+=` gives on a zeroed row, `-0`
/// included) and the rows are zeroed once per image, for the positions no window covers, rather
/// than once per pooled row (that zeroing was 3% of a CNN epoch).
#[inline(always)]
fn image_sums_body<const FMA: bool>(
    conv: &Conv2dGeometry,
    (pool, windows): (&Pool2dGeometry, &Windows),
    img: PaddedImage<'_>,
    (dz, winners): (&[f32], &[u8]),
    (scratch, taps): (&mut [f32], &mut Vec<f32>),
    sums: &mut [f32],
) {
    let filters = pool.in_c;
    let (conv_row_len, pooled_row) = (conv.out_w * filters, pool.out_w * filters);
    let disjoint = pool.stride_w >= pool.k_w;
    if disjoint {
        scratch.fill(0.0);
    }
    for ph in 0..pool.out_h {
        if !disjoint {
            scratch.fill(0.0);
        }
        let (dr, wr) = (
            &dz[ph * pooled_row..(ph + 1) * pooled_row],
            &winners[ph * pooled_row..(ph + 1) * pooled_row],
        );
        for pw in 0..pool.out_w {
            let (d, w) = (
                &dr[pw * filters..(pw + 1) * filters],
                &wr[pw * filters..(pw + 1) * filters],
            );
            for &(at, q) in windows.of(ph, pw) {
                let q = q.to_bits();
                let values = d.iter().zip(w).map(|(&d, &w)| {
                    let hit = u32::from(u32::from(w) == q).wrapping_neg();
                    f32::from_bits(d.to_bits() & hit)
                });
                let row = &mut scratch[at..at + filters];
                if disjoint {
                    row.iter_mut().zip(values).for_each(|(r, v)| *r = 0.0 + v);
                } else {
                    row.iter_mut().zip(values).for_each(|(r, v)| *r += v);
                }
            }
        }
        for kh in 0..pool.k_h {
            if let Some(oh) = pool.input_row(ph, kh) {
                let row = &scratch[kh * conv_row_len..(kh + 1) * conv_row_len];
                kernel_sums_row(conv, img, oh, row, sums, taps);
            }
        }
    }
}
