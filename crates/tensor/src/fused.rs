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
    check_pool_of_conv(op, conv, pool, filters)?;
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

/// Checks that `pool` pools the output of `conv` with `filters` channels.
fn check_pool_of_conv(
    op: &'static str,
    conv: &Conv2dGeometry,
    pool: &Pool2dGeometry,
    filters: usize,
) -> Result<()> {
    if pool.input_shape() != conv.output_shape(filters) {
        return Err(TensorError::IncompatibleShapes {
            op,
            lhs: pool.input_shape().to_vec(),
            rhs: conv.output_shape(filters).to_vec(),
            reason: "the pooling input (first) must be the convolution output (second)".into(),
        });
    }
    Ok(())
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
            let mut positions = vec![(0, 0.0); pool.k_h * pool.k_w];
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
                let out = (&mut o_row[..], &mut w_row[..]);
                pool_row_dispatch(&windows, &scratch, filters, ph, out, &mut positions);
            }
        });
    }
    Ok((
        Tensor::from_parts(out, &pool.output_shape(filters)),
        winners,
    ))
}

/// Where the pooling windows fall in the convolution rows under them, the same for every image,
/// built once per call (rebuilding each window's positions for every window of every image, with
/// a check of each position against the input, took a fifth of the pooling's time). Stored as
/// rows and columns and one row of windows, `out_h + out_w k_w + out_w k_h k_w` values (one
/// entry per position of every window would take `out_h out_w k_h k_w`: hundreds of megabytes
/// for a large pool of stride 1 over a large image): pooled row `ph` covers the window rows
/// `kh` in `rows[ph]` that lie inside the input, pooled column `pw` the columns
/// `cols[starts[pw]..starts[pw + 1]]` that do, each as `(ow F, kw)`. A window's positions are
/// every such row with every such column, in window order; each is at `kh in_w F + ow F` in the
/// pooling scratch (row `kh` at `kh in_w F`), with the window offset `kh k_w + kw`.
struct Windows {
    k_h: usize,
    k_w: usize,
    /// The length of one convolution row in the scratch, `in_w F`.
    row_len: usize,
    rows: Vec<std::ops::Range<usize>>,
    starts: Vec<usize>,
    cols: Vec<(usize, u32)>,
    /// The positions of the windows of a pooled row whose window rows all lie inside the input
    /// (every row without vertical padding), listed once (`out_w k_h k_w` values) for the rows
    /// that share them: window `pw`'s at `starts[pw] k_h..starts[pw + 1] k_h`.
    interior: Vec<(usize, f32)>,
}

impl Windows {
    fn new(pool: &Pool2dGeometry, filters: usize) -> Windows {
        // The rows of a window inside the input form one range (the others fall on the
        // padding, above or below).
        let inside = |ph: usize, kh: usize| pool.input_row(ph, kh).is_some();
        let rows = (0..pool.out_h)
            .map(|ph| match (0..pool.k_h).find(|&kh| inside(ph, kh)) {
                Some(lo) => lo..(lo..pool.k_h).take_while(|&kh| inside(ph, kh)).count() + lo,
                None => 0..0,
            })
            .collect();
        let mut starts = Vec::with_capacity(pool.out_w + 1);
        let mut cols = Vec::new();
        for pw in 0..pool.out_w {
            starts.push(cols.len());
            for kw in 0..pool.k_w {
                if let Some(ow) = pool.input_col(pw, kw) {
                    cols.push((ow * filters, kw as u32));
                }
            }
        }
        starts.push(cols.len());
        let mut windows = Windows {
            k_h: pool.k_h,
            k_w: pool.k_w,
            row_len: pool.in_w * filters,
            rows,
            starts,
            cols,
            interior: Vec::new(),
        };
        let mut interior = Vec::with_capacity(windows.cols.len() * pool.k_h);
        for pw in 0..pool.out_w {
            windows.each(0..pool.k_h, pw, |at, s| interior.push((at, s)));
        }
        windows.interior = interior;
        windows
    }

    /// The positions of window `(ph, pw)` in window order (see [`each`](Self::each)): a slice of
    /// the shared list for a row without vertical padding, else listed into `buf` (room for a
    /// whole window).
    #[inline(always)]
    fn positions<'a>(
        &'a self,
        ph: usize,
        pw: usize,
        buf: &'a mut [(usize, f32)],
    ) -> &'a [(usize, f32)] {
        let rows = self.rows[ph].clone();
        if rows == (0..self.k_h) {
            return &self.interior[self.starts[pw] * self.k_h..self.starts[pw + 1] * self.k_h];
        }
        let mut n = 0;
        self.each(rows, pw, |at, s| {
            buf[n] = (at, s);
            n += 1;
        });
        &buf[..n]
    }

    /// The number of pooled columns.
    fn out_w(&self) -> usize {
        self.starts.len() - 1
    }

    /// Calls `f(at, s)` for each position of window column `pw` inside the input on the window
    /// rows `rows` (those of a pooled row, `self.rows[ph]`), in window order: `at` its offset in
    /// the scratch, `s` its window offset carried in the *bits* of an `f32` (so that the
    /// winners' selects vectorize next to the maxima and come back out with `to_bits`, without
    /// a conversion).
    #[inline(always)]
    fn each(&self, rows: std::ops::Range<usize>, pw: usize, mut f: impl FnMut(usize, f32)) {
        let cols = &self.cols[self.starts[pw]..self.starts[pw + 1]];
        for kh in rows {
            let (base, sbase) = (kh * self.row_len, (kh * self.k_w) as u32);
            for &(c, kw) in cols {
                f(base + c, f32::from_bits(sbase + kw));
            }
        }
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
        positions: &mut [(usize, f32)],
    ) => pool_row
}

/// Pools pooled row `ph` from the convolution rows in `scratch` (row `kh` of the window at
/// `kh * out_w * F`), recording each winner's window offset. Each window starts from its first
/// position and compares every position with the best so far (the first with itself too, which
/// never wins: a NaN wins only from the first position).
#[inline(always)]
fn pool_row<const FMA: bool>(
    windows: &Windows,
    scratch: &[f32],
    filters: usize,
    ph: usize,
    (out, winners): (&mut [f32], &mut [u8]),
    positions: &mut [(usize, f32)],
) {
    for pw in 0..windows.out_w() {
        // A flat list of the window's positions keeps the selects below vectorized.
        let Some((&(first, s0), rest)) = windows.positions(ph, pw, positions).split_first() else {
            continue; // the window lies on the padding only
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
    check_pool_of_conv(op, conv, pool, filters)?;
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
    /// `scratch` holds `pool.k_h` convolution rows and the taps of the kernel sums. Compiled for
    /// AVX2 where available (selects and the FMA-dispatched kernel sums: the same bits as the
    /// portable build of those).
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
/// than once per pooled row (that zeroing was 3% of a CNN epoch). A scratch row whose window
/// row lies on the padding keeps the values of an earlier pooled row, but such a row is neither
/// written nor read (its kernel sums are skipped).
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
            windows.each(windows.rows[ph].clone(), pw, |at, q| {
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
            });
        }
        for kh in 0..pool.k_h {
            if let Some(oh) = pool.input_row(ph, kh) {
                let row = &scratch[kh * conv_row_len..(kh + 1) * conv_row_len];
                kernel_sums_row(conv, img, oh, row, sums, taps);
            }
        }
    }
}
