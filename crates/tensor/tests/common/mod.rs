//! Helpers shared by the integration tests: random inputs, the same values in other memory
//! layouts, and naive (index-by-index) references.
#![allow(dead_code)]

use gradus_tensor::{Rng, Tensor};

/// Uniform values in `[-2, 2)` from a fixed seed.
pub fn rand(shape: &[usize], seed: u64) -> Tensor {
    Tensor::rand_uniform(shape, -2.0, 2.0, &mut Rng::seed_from_u64(seed))
}

/// The row-major multi-index of flat position `flat` in `shape`.
pub fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (i, &d) in shape.iter().enumerate().rev() {
        idx[i] = flat % d;
        flat /= d;
    }
    idx
}

/// The element of `t` that NumPy broadcasting reads for the output index `out_idx`.
pub fn get_broadcast(t: &Tensor, out_idx: &[usize]) -> f32 {
    let lead = out_idx.len() - t.ndim();
    let idx: Vec<usize> = t
        .shape()
        .iter()
        .enumerate()
        .map(|(i, &d)| if d == 1 { 0 } else { out_idx[lead + i] })
        .collect();
    t.get(&idx).unwrap()
}

/// The same logical values in a non-contiguous layout: rows padded with junk in a bigger
/// buffer, then sliced (row stride > row length).
pub fn padded_view(t: &Tensor) -> Tensor {
    if t.ndim() == 0 {
        return t.clone();
    }
    let last = *t.shape().last().unwrap();
    let mut shape = t.shape().to_vec();
    *shape.last_mut().unwrap() = last + 3;
    let mut v = Vec::new();
    let src = t.to_vec();
    let rows: usize = t.shape()[..t.ndim() - 1].iter().product();
    for r in 0..rows {
        v.push(f32::NAN);
        v.extend_from_slice(&src[r * last..(r + 1) * last]);
        v.extend_from_slice(&[f32::NAN, f32::NAN]);
    }
    let big = Tensor::from_vec(v, &shape).unwrap();
    let view = big.slice_axis(-1, 1, last + 1).unwrap();
    assert_eq!(view.to_vec(), src);
    view
}

/// The same logical values stored with the last two axes swapped in memory (rank >= 2).
pub fn transposed_layout(t: &Tensor) -> Tensor {
    if t.ndim() < 2 {
        return t.clone();
    }
    let v = t.transpose().unwrap().to_contiguous().transpose().unwrap();
    assert_eq!(v.to_vec(), t.to_vec());
    v
}

/// `t` in each of the layouts above, labelled.
pub fn layouts(t: &Tensor) -> Vec<(&'static str, Tensor)> {
    vec![
        ("contiguous", t.clone()),
        ("padded", padded_view(t)),
        ("transposed", transposed_layout(t)),
    ]
}

/// Asserts `|got - want| <= atol + rtol |want|` elementwise (NaN must match NaN), with context.
pub fn assert_close(got: &[f32], want: &[f32], rtol: f32, atol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= atol + rtol * w.abs();
        assert!(ok, "{what}: element {i}: got {g}, want {w}");
    }
}

/// Naive matrix product of 2-D tensors, accumulated in f64.
pub fn naive_matmul(a: &Tensor, b: &Tensor) -> Tensor {
    let (m, k, n) = (a.shape()[0], a.shape()[1], b.shape()[1]);
    let (av, bv) = (a.to_vec(), b.to_vec());
    let mut out = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for p in 0..k {
                s += av[i * k + p] as f64 * bv[p * n + j] as f64;
            }
            out[i * n + j] = s as f32;
        }
    }
    Tensor::from_vec(out, &[m, n]).unwrap()
}

/// `sum_i a_i b_i` in f64.
pub fn dot(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.to_vec()
        .iter()
        .zip(b.to_vec())
        .map(|(&x, y)| x as f64 * y as f64)
        .sum()
}
