//! Softmax, log-softmax and log-sum-exp along an axis, stabilised by subtracting the maximum.

use crate::error::Result;
use crate::shape::normalize_axis;
use crate::tensor::Tensor;

/// Calls `f(lane_in, lane_out)` for every 1-D lane along the middle axis of a contiguous
/// `[outer, r, inner]` block; `out` has the same layout as `x`. Lanes along the last axis are
/// passed as sub-slices; others are gathered into a buffer and scattered back.
fn for_each_lane(
    x: &[f32],
    out: &mut [f32],
    (outer, r, inner): (usize, usize, usize),
    mut f: impl FnMut(&[f32], &mut [f32]),
) {
    if r == 0 {
        return;
    }
    if inner == 1 {
        for (xi, oi) in x.chunks_exact(r).zip(out.chunks_exact_mut(r)) {
            f(xi, oi);
        }
        return;
    }
    let (mut lane, mut lane_out) = (vec![0.0f32; r], vec![0.0f32; r]);
    for o in 0..outer {
        let base = o * r * inner;
        for i in 0..inner {
            for (j, v) in lane.iter_mut().enumerate() {
                *v = x[base + j * inner + i];
            }
            f(&lane, &mut lane_out);
            for (j, &v) in lane_out.iter().enumerate() {
                out[base + j * inner + i] = v;
            }
        }
    }
}

/// The shift that keeps `exp` in range: the lane's maximum, or 0 when that is not finite
/// (all `-inf`, some `+inf`, or NaN), so that those cases give the mathematically right limits.
fn shift(lane: &[f32]) -> f32 {
    let m = lane.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if m.is_finite() { m } else { 0.0 }
}

/// `ln sum_j exp(lane_j - m)` where `m` is the shift, in f64.
fn log_sum_exp_shifted(lane: &[f32], m: f32) -> f64 {
    lane.iter()
        .map(|&v| ((v - m) as f64).exp())
        .sum::<f64>()
        .ln()
}

impl Tensor {
    /// Splits the shape around `axis` into `(outer, r, inner)`.
    fn lanes(&self, op: &'static str, axis: isize) -> Result<(usize, (usize, usize, usize))> {
        let a = normalize_axis(op, axis, self.shape())?;
        let s = self.shape();
        Ok((
            a,
            (s[..a].iter().product(), s[a], s[a + 1..].iter().product()),
        ))
    }

    fn lane_map(
        &self,
        op: &'static str,
        axis: isize,
        f: impl FnMut(&[f32], &mut [f32]),
    ) -> Result<Tensor> {
        let (_, dims) = self.lanes(op, axis)?;
        let src = self.to_contiguous();
        let mut out = vec![0.0f32; self.len()];
        for_each_lane(src.as_slice().expect("contiguous"), &mut out, dims, f);
        Ok(Tensor::from_parts(out, self.shape()))
    }

    /// Softmax along `axis`: `out_j = exp(x_j - m) / sum_i exp(x_i - m)` with `m = max_i x_i`
    /// (the shift makes it exact for inputs such as 1e4 or -1e4). Same shape as the input.
    ///
    /// ```
    /// use gradus_tensor::Tensor;
    ///
    /// let p = Tensor::from_vec(vec![1e4, 1e4, -1e4], &[1, 3])?.softmax(-1)?;
    /// assert_eq!(p.to_vec(), vec![0.5, 0.5, 0.0]);
    /// # Ok::<(), gradus_tensor::TensorError>(())
    /// ```
    ///
    /// # Errors
    /// [`TensorError::AxisOutOfRange`](crate::TensorError::AxisOutOfRange) for a bad axis.
    pub fn softmax(&self, axis: isize) -> Result<Tensor> {
        self.lane_map("softmax", axis, |x, out| {
            let m = shift(x);
            let mut sum = 0.0f64;
            for (o, &v) in out.iter_mut().zip(x) {
                *o = (v - m).exp();
                sum += *o as f64;
            }
            let inv = (1.0 / sum) as f32;
            for o in out.iter_mut() {
                *o *= inv;
            }
        })
    }

    /// Log-softmax along `axis`: `out_j = x_j - m - ln sum_i exp(x_i - m)` with `m = max_i x_i`.
    /// Same shape as the input.
    ///
    /// # Errors
    /// [`TensorError::AxisOutOfRange`](crate::TensorError::AxisOutOfRange) for a bad axis.
    pub fn log_softmax(&self, axis: isize) -> Result<Tensor> {
        self.lane_map("log_softmax", axis, |x, out| {
            let m = shift(x);
            let lse = log_sum_exp_shifted(x, m) as f32;
            for (o, &v) in out.iter_mut().zip(x) {
                *o = (v - m) - lse;
            }
        })
    }

    /// Log-sum-exp along `axis`: `out = m + ln sum_i exp(x_i - m)` with `m = max_i x_i`
    /// (`-inf` for an empty axis or one of all `-inf`). The axis is removed, or kept with length 1
    /// when `keepdims`.
    ///
    /// # Errors
    /// [`TensorError::AxisOutOfRange`](crate::TensorError::AxisOutOfRange) for a bad axis.
    pub fn logsumexp(&self, axis: isize, keepdims: bool) -> Result<Tensor> {
        let (a, (outer, r, inner)) = self.lanes("logsumexp", axis)?;
        let src = self.to_contiguous();
        let x = src.as_slice().expect("contiguous");
        let mut out = Vec::with_capacity(outer * inner);
        let mut lane = vec![0.0f32; r];
        for o in 0..outer {
            for i in 0..inner {
                for (j, v) in lane.iter_mut().enumerate() {
                    *v = x[(o * r + j) * inner + i];
                }
                let m = shift(&lane);
                out.push((m as f64 + log_sum_exp_shifted(&lane, m)) as f32);
            }
        }
        let mut shape = self.shape().to_vec();
        if keepdims {
            shape[a] = 1;
        } else {
            shape.remove(a);
        }
        Ok(Tensor::from_parts(out, &shape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extreme_inputs_stay_finite() {
        let x = Tensor::from_vec(vec![1e4, 0.0, -1e4, -1e4, -1e4, -1e4], &[2, 3]).unwrap();
        let p = x.softmax(1).unwrap().to_vec();
        assert_eq!(&p[..3], &[1.0, 0.0, 0.0]);
        for v in &p[3..] {
            assert!((v - 1.0 / 3.0).abs() < 1e-7);
        }
        let l = x.log_softmax(-1).unwrap().to_vec();
        assert_eq!(&l[..3], &[0.0, -1e4, -2e4]);
        let lse = x.logsumexp(1, false).unwrap().to_vec();
        assert_eq!(lse[0], 1e4);
        assert!((lse[1] - (-1e4 + 3f32.ln())).abs() < 1e-3);
        let ninf = Tensor::full(&[2], f32::NEG_INFINITY);
        assert_eq!(
            ninf.logsumexp(0, true).unwrap().to_vec(),
            vec![f32::NEG_INFINITY]
        );
        assert_eq!(
            Tensor::zeros(&[0]).logsumexp(0, false).unwrap().to_vec(),
            vec![f32::NEG_INFINITY]
        );
    }

    #[test]
    fn non_last_axis_matches_transposed_last_axis() {
        let x = Tensor::arange(0.0, 12.0, 1.0)
            .unwrap()
            .reshape(&[3, 4])
            .unwrap()
            .mul_scalar(0.3);
        let a = x.softmax(0).unwrap();
        let b = x
            .transpose()
            .unwrap()
            .softmax(1)
            .unwrap()
            .transpose()
            .unwrap();
        assert!(a.allclose(&b, 1e-6, 1e-7));
        for col in 0..4 {
            let s: f32 = (0..3).map(|r| a.get(&[r, col]).unwrap()).sum();
            assert!((s - 1.0).abs() < 1e-6);
        }
    }
}
