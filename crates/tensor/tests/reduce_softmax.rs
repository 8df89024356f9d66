//! Reductions, arg-extrema and softmax against naive references over odd sizes and layouts.

mod common;

use common::{assert_close, layouts, rand, unravel};
use gradus_tensor::Tensor;

const SHAPES: &[&[usize]] = &[&[3, 17, 5], &[1, 257, 2], &[17, 1, 1], &[2, 3, 4]];

/// Naive reduction: every element folded into the output index it maps to.
fn naive_reduce(
    t: &Tensor,
    axes: &[usize],
    init: f64,
    f: fn(f64, f64) -> f64,
) -> (Vec<usize>, Vec<f64>) {
    let kept: Vec<usize> = (0..t.ndim())
        .map(|i| if axes.contains(&i) { 1 } else { t.shape()[i] })
        .collect();
    let mut out = vec![init; kept.iter().product()];
    for (flat, &v) in t.to_vec().iter().enumerate() {
        let idx = unravel(flat, t.shape());
        let mut o = 0;
        for (i, &d) in kept.iter().enumerate() {
            o = o * d + if d == 1 { 0 } else { idx[i] };
        }
        out[o] = f(out[o], v as f64);
    }
    (kept, out)
}

fn subsets(n: usize) -> Vec<Vec<usize>> {
    (0..1usize << n)
        .map(|m| (0..n).filter(|i| m >> i & 1 == 1).collect())
        .collect()
}

#[test]
fn axis_reductions_match_naive_for_every_axis_subset() {
    for (s, &shape) in SHAPES.iter().enumerate() {
        let x = rand(shape, s as u64);
        for axes in subsets(shape.len()) {
            let count: usize = axes.iter().map(|&a| shape[a]).product();
            let (kept, sum) = naive_reduce(&x, &axes, 0.0, |a, b| a + b);
            let (_, max) = naive_reduce(&x, &axes, f64::NEG_INFINITY, f64::max);
            let (_, min) = naive_reduce(&x, &axes, f64::INFINITY, f64::min);
            let mean: Vec<f64> = sum.iter().map(|v| v / count as f64).collect();
            // Negative axes address the same dimensions.
            let neg: Vec<isize> = axes
                .iter()
                .map(|&a| a as isize - shape.len() as isize)
                .collect();
            let pos: Vec<isize> = axes.iter().map(|&a| a as isize).collect();
            let dropped: Vec<usize> = kept
                .iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &d)| d)
                .collect();
            for (layout, v) in layouts(&x) {
                for (axes_arg, keepdims) in [(&pos, true), (&neg, false)] {
                    let want_shape = if keepdims { &kept } else { &dropped };
                    let what = format!("{shape:?} axes {axes_arg:?} keepdims {keepdims} {layout}");
                    type Red = fn(&Tensor, &[isize], bool) -> gradus_tensor::Result<Tensor>;
                    let cases: [(&str, Red, &Vec<f64>); 4] = [
                        ("sum", Tensor::sum_axes, &sum),
                        ("mean", Tensor::mean_axes, &mean),
                        ("max", Tensor::max_axes, &max),
                        ("min", Tensor::min_axes, &min),
                    ];
                    for (name, op, want) in cases {
                        let got = op(&v, axes_arg, keepdims).unwrap();
                        assert_eq!(got.shape(), want_shape.as_slice(), "{name} {what}");
                        let want: Vec<f32> = want.iter().map(|&w| w as f32).collect();
                        assert_close(&got.to_vec(), &want, 1e-5, 1e-5, &format!("{name} {what}"));
                    }
                }
            }
        }
    }
}

#[test]
fn single_axis_conveniences_and_whole_tensor_reductions() {
    let x = rand(&[17, 257], 3);
    let xs = x.to_vec();
    for (layout, v) in layouts(&x) {
        assert_eq!(
            v.sum_axis(1, false).unwrap(),
            x.sum_axes(&[1], false).unwrap(),
            "{layout}"
        );
        assert_eq!(
            v.mean_axis(0, true).unwrap(),
            x.mean_axes(&[0], true).unwrap(),
            "{layout}"
        );
        assert_eq!(
            v.max_axis(-1, false).unwrap(),
            x.max_axes(&[1], false).unwrap(),
            "{layout}"
        );
        assert_eq!(
            v.min_axis(-2, false).unwrap(),
            x.min_axes(&[0], false).unwrap(),
            "{layout}"
        );
        let sum: f64 = xs.iter().map(|&v| v as f64).sum();
        assert!((v.sum_all() as f64 - sum).abs() < 1e-4, "{layout}");
        assert!(
            (v.mean_all() as f64 - sum / xs.len() as f64).abs() < 1e-6,
            "{layout}"
        );
        assert_eq!(v.max_all(), xs.iter().copied().fold(f32::MIN, f32::max));
        assert_eq!(v.min_all(), xs.iter().copied().fold(f32::MAX, f32::min));
        let norm = xs.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
        assert!((v.norm_l2() as f64 - norm).abs() < 1e-5 * norm, "{layout}");
    }
}

#[test]
fn sum_all_is_accurate_for_long_inputs() {
    // 2^24 + 4 copies of 1.0 (a sum exactly representable in f32): a naive f32 running sum
    // stalls at 2^24.
    let n = (1 << 24) + 4;
    let x = Tensor::ones(&[n]);
    assert_eq!(x.sum_all() as f64, n as f64);
    assert_eq!(
        x.sum_axis(0, false).unwrap().item().unwrap() as f64,
        n as f64
    );
    assert_eq!(x.mean_all(), 1.0);
}

#[test]
fn argmax_argmin_match_naive_with_ties() {
    for (s, &shape) in SHAPES.iter().enumerate() {
        // Few distinct values, so ties are common: the first index must win.
        let x = rand(shape, 50 + s as u64).map(|v| v.round());
        for axis in 0..shape.len() {
            let mut out_shape = shape.to_vec();
            out_shape.remove(axis);
            let n: usize = out_shape.iter().product();
            let (mut want_max, mut want_min) = (vec![0.0f32; n], vec![0.0f32; n]);
            for (o, (wmax, wmin)) in want_max.iter_mut().zip(want_min.iter_mut()).enumerate() {
                let mut idx = unravel(o, &out_shape);
                idx.insert(axis, 0);
                let lane: Vec<f32> = (0..shape[axis])
                    .map(|j| {
                        idx[axis] = j;
                        x.get(&idx).unwrap()
                    })
                    .collect();
                let mx = lane.iter().copied().fold(f32::MIN, f32::max);
                let mn = lane.iter().copied().fold(f32::MAX, f32::min);
                *wmax = lane.iter().position(|&v| v == mx).unwrap() as f32;
                *wmin = lane.iter().position(|&v| v == mn).unwrap() as f32;
            }
            for (layout, v) in layouts(&x) {
                let what = format!("{shape:?} axis {axis} {layout}");
                assert_eq!(
                    v.argmax(axis as isize).unwrap().to_vec(),
                    want_max,
                    "argmax {what}"
                );
                let neg = axis as isize - shape.len() as isize;
                assert_eq!(v.argmin(neg).unwrap().to_vec(), want_min, "argmin {what}");
                assert_eq!(
                    v.argmax(axis as isize).unwrap().shape(),
                    out_shape.as_slice()
                );
            }
        }
        assert!(x.argmax(shape.len() as isize).is_err());
    }
}

/// Naive softmax, log-softmax and log-sum-exp of each lane along `axis`, in f64.
fn naive_softmax(x: &Tensor, axis: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let shape = x.shape();
    let mut out_shape = shape.to_vec();
    out_shape.remove(axis);
    let (mut sm, mut lsm) = (vec![0.0f32; x.len()], vec![0.0f32; x.len()]);
    let mut lse = Vec::new();
    let flat = |idx: &[usize]| idx.iter().zip(shape).fold(0, |acc, (&i, &d)| acc * d + i);
    for o in 0..out_shape.iter().product() {
        let mut idx = unravel(o, &out_shape);
        idx.insert(axis, 0);
        let positions: Vec<usize> = (0..shape[axis])
            .map(|j| {
                idx[axis] = j;
                flat(&idx)
            })
            .collect();
        let vals: Vec<f64> = positions.iter().map(|&p| x.to_vec()[p] as f64).collect();
        let total: f64 = vals.iter().map(|v| v.exp()).sum();
        lse.push(total.ln() as f32);
        for (&p, &v) in positions.iter().zip(&vals) {
            sm[p] = (v.exp() / total) as f32;
            lsm[p] = (v - total.ln()) as f32;
        }
    }
    (sm, lsm, lse)
}

#[test]
fn softmax_family_matches_naive_on_every_axis() {
    for (s, &shape) in SHAPES.iter().enumerate() {
        let x = rand(shape, 70 + s as u64).mul_scalar(3.0);
        for axis in 0..shape.len() {
            let (sm, lsm, lse) = naive_softmax(&x, axis);
            for (layout, v) in layouts(&x) {
                let what = format!("{shape:?} axis {axis} {layout}");
                let a = axis as isize;
                assert_close(
                    &v.softmax(a).unwrap().to_vec(),
                    &sm,
                    1e-5,
                    1e-7,
                    &format!("softmax {what}"),
                );
                assert_close(
                    &v.log_softmax(a).unwrap().to_vec(),
                    &lsm,
                    1e-5,
                    1e-6,
                    &format!("log_softmax {what}"),
                );
                let got = v.logsumexp(a - shape.len() as isize, true).unwrap();
                let mut kept = shape.to_vec();
                kept[axis] = 1;
                assert_eq!(got.shape(), kept.as_slice());
                assert_close(
                    &got.to_vec(),
                    &lse,
                    1e-5,
                    1e-6,
                    &format!("logsumexp {what}"),
                );
            }
        }
    }
}

#[test]
fn softmax_is_shift_invariant_at_large_magnitudes() {
    let x = rand(&[4, 17], 9);
    for shift in [1e4f32, -1e4] {
        let shifted = x.add_scalar(shift);
        // x + shift is rounded in f32, so compare against the softmax of the rounded values
        // shifted back exactly (a shift by a power-of-two multiple is exact here).
        let back = shifted.sub_scalar(shift);
        let p = shifted.softmax(-1).unwrap();
        assert!(p.is_finite_all());
        assert!(
            p.allclose(&back.softmax(-1).unwrap(), 1e-5, 1e-7),
            "shift {shift}"
        );
        let l = shifted.logsumexp(-1, false).unwrap();
        let want = back.logsumexp(-1, false).unwrap().add_scalar(shift);
        assert!(l.allclose(&want, 1e-6, 1e-3), "shift {shift}");
    }
}
