//! 2-D max and average pooling over NHWC tensors, and their gradients.

use crate::buffer::{take, take_zeroed};
use crate::conv::{Conv2dGeometry, Padding, Pool2dGeometry};
use crate::error::{Result, TensorError};
use crate::parallel;
use crate::simd;
use crate::tensor::Tensor;

/// Calls `f(out_index, window)` for every output position `(n, oh, ow)`, where `window` lists the
/// flat NHWC offsets (channel 0) of the input pixels under the window, padding excluded.
fn for_each_window(g: &Pool2dGeometry, mut f: impl FnMut(usize, &[usize])) {
    let mut window = Vec::with_capacity(g.k_h * g.k_w);
    let mut pos = 0;
    for n in 0..g.batch {
        for oh in 0..g.out_h {
            for ow in 0..g.out_w {
                window.clear();
                for kh in 0..g.k_h {
                    let Some(ih) = g.input_row(oh, kh) else {
                        continue;
                    };
                    for kw in 0..g.k_w {
                        let Some(iw) = g.input_col(ow, kw) else {
                            continue;
                        };
                        window.push(((n * g.in_h + ih) * g.in_w + iw) * g.in_c);
                    }
                }
                debug_assert!(!window.is_empty(), "every window overlaps the input");
                f(pos, &window);
                pos += 1;
            }
        }
    }
}

fn pool_geometry(
    op: &'static str,
    input_shape: &[usize],
    pool: (usize, usize),
    strides: (usize, usize),
    padding: Padding,
) -> Result<Pool2dGeometry> {
    Conv2dGeometry::new(input_shape, pool, strides, padding).map_err(|e| match e {
        TensorError::Rank { expected, got, .. } => TensorError::Rank { op, expected, got },
        TensorError::InvalidArgument { message, .. } => {
            TensorError::InvalidArgument { op, message }
        }
        other => other,
    })
}

/// Max pooling: `out[n, oh, ow, c] = max x[n, oh*s_h + kh - pad_top, ow*s_w + kw - pad_left, c]`
/// over the window positions inside the input (padding never wins; a NaN wins only from the
/// first position of its window).
///
/// Shapes: input `[N, H, W, C]`, output `[N, out_h, out_w, C]` (sizes as [`Conv2dGeometry::new`]
/// with the pool as the kernel). Output rows run in parallel on the [threads](crate::parallel).
/// No winner index is stored: [`max_pool2d_backward`] finds the winners again from the input and
/// the output.
///
/// ```
/// use gradus_tensor::{max_pool2d, Padding, Tensor};
///
/// let x = Tensor::arange(0.0, 16.0, 1.0)?.reshape(&[1, 4, 4, 1])?;
/// let y = max_pool2d(&x, (2, 2), (2, 2), Padding::Valid)?;
/// assert_eq!(y.to_vec(), vec![5.0, 7.0, 13.0, 15.0]);
/// # Ok::<(), gradus_tensor::TensorError>(())
/// ```
///
/// # Errors
/// As [`Conv2dGeometry::new`]: a non-4-D input, a zero pool length or stride, or (with `Valid`)
/// a pool larger than the input.
pub fn max_pool2d(
    input: &Tensor,
    pool: (usize, usize),
    strides: (usize, usize),
    padding: Padding,
) -> Result<Tensor> {
    let g = pool_geometry("max_pool2d", input.shape(), pool, strides, padding)?;
    let src = input.to_contiguous();
    let x = src.as_slice().expect("contiguous");
    let c = g.in_c;
    let mut out = take(g.positions() * c);
    let row_len = g.out_w * c;
    if row_len > 0 {
        let grain = parallel::grain(1 << 14, row_len);
        parallel::for_row_blocks(&mut out, row_len, grain, |first, block| {
            for (r, o_row) in block.chunks_exact_mut(row_len).enumerate() {
                let (n, oh) = ((first + r) / g.out_h, (first + r) % g.out_h);
                for (ow, o) in o_row.chunks_exact_mut(c).enumerate() {
                    let mut first_pos = true;
                    for_window(&g, oh, ow, |ih, iw| {
                        let base = ((n * g.in_h + ih) * g.in_w + iw) * c;
                        let v = &x[base..base + c];
                        if first_pos {
                            o.copy_from_slice(v);
                            first_pos = false;
                        } else {
                            for (best, &v) in o.iter_mut().zip(v) {
                                *best = if v > *best { v } else { *best };
                            }
                        }
                    });
                    debug_assert!(!first_pos, "every window overlaps the input");
                }
            }
        });
    }
    Ok(Tensor::from_parts(out, &g.output_shape(c)))
}

/// Calls `f(ih, iw)` for the window positions of output `(oh, ow)` inside the input, in order.
#[inline(always)]
fn for_window(g: &Pool2dGeometry, oh: usize, ow: usize, mut f: impl FnMut(usize, usize)) {
    for kh in 0..g.k_h {
        let Some(ih) = g.input_row(oh, kh) else {
            continue;
        };
        for kw in 0..g.k_w {
            if let Some(iw) = g.input_col(ow, kw) {
                f(ih, iw);
            }
        }
    }
}

/// The gradient of [`max_pool2d`]: each output gradient goes to the winner of its window, the
/// first position (in window order) whose input equals the window's maximum, or the first
/// position when the maximum is NaN; `dx` is zero elsewhere, and sums where windows overlap.
///
/// Shapes: `grad_out` and `output` (the result of [`max_pool2d`] on `input` with the same
/// `pool`, `strides` and `padding`) are `[N, out_h, out_w, C]`; the result has `input`'s shape.
/// When the windows tile the input exactly (stride equal to the pool, no padding, lengths
/// divisible) every input element is written once and nothing is zeroed first. Images run in
/// parallel.
///
/// ```
/// use gradus_tensor::{max_pool2d, max_pool2d_backward, Padding, Tensor};
///
/// let x = Tensor::from_vec(vec![1.0, 3.0, 3.0, 2.0], &[1, 2, 2, 1])?;
/// let y = max_pool2d(&x, (2, 2), (2, 2), Padding::Valid)?;
/// let dx = max_pool2d_backward(&Tensor::ones(&[1, 1, 1, 1]), &x, &y, (2, 2), (2, 2), Padding::Valid)?;
/// assert_eq!(dx.to_vec(), vec![0.0, 1.0, 0.0, 0.0]); // the first of the tied maxima
/// # Ok::<(), gradus_tensor::TensorError>(())
/// ```
///
/// # Errors
/// As [`max_pool2d`] for the input and window; [`TensorError::IncompatibleShapes`] when
/// `grad_out` or `output` does not have the pooled shape.
pub fn max_pool2d_backward(
    grad_out: &Tensor,
    input: &Tensor,
    output: &Tensor,
    pool: (usize, usize),
    strides: (usize, usize),
    padding: Padding,
) -> Result<Tensor> {
    let g = pool_geometry("max_pool2d_backward", input.shape(), pool, strides, padding)?;
    let c = g.in_c;
    Conv2dGeometry::check("max_pool2d_backward", grad_out, &g.output_shape(c))?;
    Conv2dGeometry::check("max_pool2d_backward", output, &g.output_shape(c))?;
    let (xs, ys, gs) = (
        input.to_contiguous(),
        output.to_contiguous(),
        grad_out.to_contiguous(),
    );
    let x = xs.as_slice().expect("contiguous");
    let (y, dy) = (
        ys.as_slice().expect("contiguous"),
        gs.as_slice().expect("contiguous"),
    );
    let image = g.in_h * g.in_w * c;
    let tiles = g.stride_h == g.k_h
        && g.stride_w == g.k_w
        && !g.has_padding()
        && g.out_h * g.k_h == g.in_h
        && g.out_w * g.k_w == g.in_w;
    let mut dx = if tiles {
        take(g.batch * image)
    } else {
        take_zeroed(g.batch * image)
    };
    if image > 0 {
        let per_image = g.out_h * g.out_w * c;
        let grain = parallel::grain(1 << 15, image);
        parallel::for_row_blocks(&mut dx, image, grain, |first, block| {
            let mut open = vec![0u32; c];
            for (i, dxi) in block.chunks_exact_mut(image).enumerate() {
                let n = first + i;
                let (xi, at) = (&x[n * image..(n + 1) * image], n * per_image);
                let (yi, di) = (&y[at..at + per_image], &dy[at..at + per_image]);
                route_image(&g, xi, yi, di, dxi, tiles, &mut open);
            }
        });
    }
    Ok(Tensor::from_parts(dx, &g.input_shape()))
}

simd::dispatch! {
    /// One image of [`max_pool2d_backward`] (`x`, `dx`: `[H, W, C]`; `y`, `dy`: `[out_h, out_w, C]`).
    /// On x86-64 with AVX2 the same code runs compiled for 8-lane vectors (selects only: the same
    /// bits either way).
    fn route_image(
        g: &Pool2dGeometry,
        x: &[f32],
        y: &[f32],
        dy: &[f32],
        dx: &mut [f32],
        tiles: bool,
        open: &mut [u32],
    ) => route_image_body
}

/// The body of [`route_image`]: for each window, in window order, the lanes still `open` whose
/// input equals the maximum take the gradient and close; lanes left open (a NaN maximum) give it
/// to the first position.
#[inline(always)]
fn route_image_body<const FMA: bool>(
    g: &Pool2dGeometry,
    x: &[f32],
    y: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    tiles: bool,
    open: &mut [u32],
) {
    let c = g.in_c;
    for oh in 0..g.out_h {
        for ow in 0..g.out_w {
            let o = (oh * g.out_w + ow) * c;
            let (ym, d) = (&y[o..o + c], &dy[o..o + c]);
            open.fill(1);
            let mut first_pos = None;
            for_window(g, oh, ow, |ih, iw| {
                let at = (ih * g.in_w + iw) * c;
                first_pos.get_or_insert(at);
                let lanes = dx[at..at + c]
                    .iter_mut()
                    .zip(&x[at..at + c])
                    .zip(ym.iter().zip(d))
                    .zip(open.iter_mut());
                for (((o, &xv), (&ym, &d)), open) in lanes {
                    let take = u32::from(xv == ym) & *open;
                    let routed = f32::from_bits(d.to_bits() & take.wrapping_neg());
                    if tiles {
                        *o = routed;
                    } else {
                        *o += routed;
                    }
                    *open ^= take;
                }
            });
            if let Some(f) = first_pos {
                for ((o, &d), &open) in dx[f..f + c].iter_mut().zip(d).zip(open.iter()) {
                    *o += f32::from_bits(d.to_bits() & open.wrapping_neg());
                }
            }
        }
    }
}

/// Average pooling over the window positions inside the input (as Keras/TF: padding is not
/// counted): `out[n, oh, ow, c] = sum over the valid window of x[..., c] / (number of valid
/// positions)`.
///
/// Shapes: input `[N, H, W, C]`, output `[N, out_h, out_w, C]`.
///
/// # Errors
/// As [`max_pool2d`].
pub fn avg_pool2d(
    input: &Tensor,
    pool: (usize, usize),
    strides: (usize, usize),
    padding: Padding,
) -> Result<Tensor> {
    let g = pool_geometry("avg_pool2d", input.shape(), pool, strides, padding)?;
    let src = input.to_contiguous();
    let x = src.as_slice().expect("contiguous");
    let c = g.in_c;
    let mut out = take_zeroed(g.positions() * c);
    for_each_window(&g, |pos, window| {
        let o = &mut out[pos * c..(pos + 1) * c];
        for &base in window {
            for (acc, &v) in o.iter_mut().zip(&x[base..base + c]) {
                *acc += v;
            }
        }
        let inv = 1.0 / window.len() as f32;
        o.iter_mut().for_each(|v| *v *= inv);
    });
    Ok(Tensor::from_parts(out, &g.output_shape(c)))
}

/// The gradient of [`avg_pool2d`]: every output gradient is spread evenly over the valid
/// positions of its window, `dx[p, c] += grad_out[n, oh, ow, c] / count(window)`.
///
/// Shapes: `grad_out` `[N, out_h, out_w, C]` for the geometry of `input_shape`, `pool`, `strides`
/// and `padding`; the result has `input_shape`.
///
/// # Errors
/// As [`avg_pool2d`]; [`TensorError::IncompatibleShapes`] when `grad_out` does not have the
/// pooled shape.
pub fn avg_pool2d_backward(
    grad_out: &Tensor,
    input_shape: &[usize],
    pool: (usize, usize),
    strides: (usize, usize),
    padding: Padding,
) -> Result<Tensor> {
    let g = pool_geometry("avg_pool2d_backward", input_shape, pool, strides, padding)?;
    let c = g.in_c;
    Conv2dGeometry::check("avg_pool2d_backward", grad_out, &g.output_shape(c))?;
    let gsrc = grad_out.to_contiguous();
    let dy = gsrc.as_slice().expect("contiguous");
    let mut dx = take_zeroed(input_shape.iter().product());
    for_each_window(&g, |pos, window| {
        let inv = 1.0 / window.len() as f32;
        let d = &dy[pos * c..(pos + 1) * c];
        for &base in window {
            for (acc, &v) in dx[base..base + c].iter_mut().zip(d) {
                *acc += v * inv;
            }
        }
    });
    Ok(Tensor::from_parts(dx, input_shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_average_counts_only_valid_positions() {
        let x = Tensor::arange(1.0, 10.0, 1.0)
            .unwrap()
            .reshape(&[1, 3, 3, 1])
            .unwrap();
        let y = avg_pool2d(&x, (2, 2), (2, 2), Padding::Same).unwrap();
        // windows: [1,2,4,5], [3,6], [7,8], [9]
        assert_eq!(y.to_vec(), vec![3.0, 4.5, 7.5, 9.0]);
        let dx = avg_pool2d_backward(
            &Tensor::ones(&[1, 2, 2, 1]),
            &[1, 3, 3, 1],
            (2, 2),
            (2, 2),
            Padding::Same,
        )
        .unwrap();
        assert_eq!(
            dx.to_vec(),
            vec![0.25, 0.25, 0.5, 0.25, 0.25, 0.5, 0.5, 0.5, 1.0]
        );
    }

    #[test]
    fn padding_never_wins_and_backward_routes_to_argmax() {
        let x = Tensor::full(&[1, 3, 3, 2], -5.0);
        let y = max_pool2d(&x, (2, 2), (2, 2), Padding::Same).unwrap();
        assert_eq!(y.to_vec(), vec![-5.0; 8]);
        // the first channel-0 element of each window, channel 1 next to it
        let back =
            |g: &Tensor, y: &Tensor| max_pool2d_backward(g, &x, y, (2, 2), (2, 2), Padding::Same);
        let dx = back(&Tensor::ones(&[1, 2, 2, 2]), &y).unwrap();
        // the first element of each window (channels 0 and 1) gets the gradient
        let hits: Vec<usize> = (0..18).filter(|&i| dx.to_vec()[i] == 1.0).collect();
        assert_eq!(hits, vec![0, 1, 4, 5, 12, 13, 16, 17]);
        assert_eq!(dx.sum_all(), 8.0);
        assert!(back(&Tensor::ones(&[3]), &y).is_err());
        assert!(back(&Tensor::ones(&[1, 2, 2, 2]), &Tensor::ones(&[1, 2, 2, 1])).is_err());
        assert!(max_pool2d(&Tensor::ones(&[3, 3]), (2, 2), (2, 2), Padding::Same).is_err());
    }
}
