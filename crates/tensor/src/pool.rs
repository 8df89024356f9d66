//! 2-D max and average pooling over NHWC tensors, and their gradients.

use crate::conv::{Conv2dGeometry, Padding, Pool2dGeometry};
use crate::error::{Result, TensorError};
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
/// over the window positions inside the input (padding never wins).
///
/// Shapes: input `[N, H, W, C]`, output `[N, out_h, out_w, C]` (sizes as [`Conv2dGeometry::new`]
/// with the pool as the kernel). The second value gives, for every output element in row-major
/// order, the flat row-major index into the input of its maximum (the first one on ties), for
/// [`max_pool2d_backward`].
///
/// ```
/// use gradus_tensor::{max_pool2d, Padding, Tensor};
///
/// let x = Tensor::arange(0.0, 16.0, 1.0)?.reshape(&[1, 4, 4, 1])?;
/// let (y, argmax) = max_pool2d(&x, (2, 2), (2, 2), Padding::Valid)?;
/// assert_eq!(y.to_vec(), vec![5.0, 7.0, 13.0, 15.0]);
/// assert_eq!(argmax, vec![5, 7, 13, 15]);
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
) -> Result<(Tensor, Vec<usize>)> {
    let g = pool_geometry("max_pool2d", input.shape(), pool, strides, padding)?;
    let src = input.to_contiguous();
    let x = src.as_slice().expect("contiguous");
    let c = g.in_c;
    let n_out = g.positions() * c;
    let mut out = vec![0.0f32; n_out];
    let mut arg = vec![0usize; n_out];
    for_each_window(&g, |pos, window| {
        let (o, a) = (
            &mut out[pos * c..(pos + 1) * c],
            &mut arg[pos * c..(pos + 1) * c],
        );
        let first = window[0];
        o.copy_from_slice(&x[first..first + c]);
        for (ch, ai) in a.iter_mut().enumerate() {
            *ai = first + ch;
        }
        for &base in &window[1..] {
            for (ch, (best, ai)) in o.iter_mut().zip(a.iter_mut()).enumerate() {
                let v = x[base + ch];
                if v > *best {
                    *best = v;
                    *ai = base + ch;
                }
            }
        }
    });
    Ok((Tensor::from_parts(out, &g.output_shape(c)), arg))
}

/// The gradient of [`max_pool2d`]: `dx[argmax[i]] += grad_out[i]` for every output element `i`,
/// zero elsewhere.
///
/// Shapes: `grad_out` has one element per entry of `argmax` (any shape, read row-major); the
/// result has `input_shape`.
///
/// # Errors
/// [`TensorError::InvalidArgument`] when `grad_out` and `argmax` differ in length or an index is
/// not below the input's element count.
pub fn max_pool2d_backward(
    grad_out: &Tensor,
    argmax: &[usize],
    input_shape: &[usize],
) -> Result<Tensor> {
    let n_in: usize = input_shape.iter().product();
    if grad_out.len() != argmax.len() {
        return Err(TensorError::InvalidArgument {
            op: "max_pool2d_backward",
            message: format!(
                "grad_out of shape {:?} has {} elements but argmax has {}",
                grad_out.shape(),
                grad_out.len(),
                argmax.len()
            ),
        });
    }
    if let Some(&bad) = argmax.iter().find(|&&i| i >= n_in) {
        return Err(TensorError::InvalidArgument {
            op: "max_pool2d_backward",
            message: format!("argmax index {bad} is out of bounds for input shape {input_shape:?}"),
        });
    }
    let mut dx = vec![0.0f32; n_in];
    let gsrc = grad_out.to_contiguous();
    for (&i, &g) in argmax.iter().zip(gsrc.as_slice().expect("contiguous")) {
        dx[i] += g;
    }
    Ok(Tensor::from_parts(dx, input_shape))
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
    let mut out = vec![0.0f32; g.positions() * c];
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
    let mut dx = vec![0.0f32; input_shape.iter().product()];
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
        let (y, arg) = max_pool2d(&x, (2, 2), (2, 2), Padding::Same).unwrap();
        assert_eq!(y.to_vec(), vec![-5.0; 8]);
        // the first channel-0 element of each window, channel 1 next to it
        assert_eq!(arg, vec![0, 1, 4, 5, 12, 13, 16, 17]);
        let dx = max_pool2d_backward(&Tensor::ones(&[1, 2, 2, 2]), &arg, x.shape()).unwrap();
        assert_eq!(dx.sum_all(), 8.0);
        assert!(max_pool2d_backward(&Tensor::ones(&[3]), &arg, x.shape()).is_err());
        assert!(max_pool2d_backward(&Tensor::ones(&[1]), &[18], x.shape()).is_err());
        assert!(max_pool2d(&Tensor::ones(&[3, 3]), (2, 2), (2, 2), Padding::Same).is_err());
    }
}
