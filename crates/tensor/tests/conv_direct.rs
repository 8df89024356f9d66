//! The direct (small-window) convolution kernels, forward and all three gradients, against
//! index-by-index references accumulated in f64, over paddings, strides, channel and filter
//! counts that reach every register tile (16, 8 and single filters; groups of 4 taps and the
//! remainders with the bias).

mod common;

use common::rand;
use gradus_tensor::{Conv2dGeometry, Padding, Tensor, conv2d_backward_with, conv2d_with};

/// `(input NHWC, window, strides, padding, filters)`.
type Case = ([usize; 4], (usize, usize), (usize, usize), Padding, usize);

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for padding in [Padding::Valid, Padding::Same] {
        for (shape, kernel, strides, filters) in [
            ([2, 9, 8, 1], (3, 3), (1, 1), 32),
            ([1, 7, 10, 1], (3, 3), (2, 1), 25),
            ([2, 6, 7, 3], (3, 3), (1, 2), 9),
            ([1, 8, 8, 2], (2, 3), (3, 2), 17),
            ([1, 9, 9, 1], (5, 5), (1, 1), 8),
            ([2, 5, 6, 4], (2, 2), (1, 1), 3),
            ([1, 6, 5, 2], (4, 4), (2, 3), 40), // patch 32, the largest direct window
            ([1, 6, 6, 3], (4, 3), (1, 1), 5),  // patch 36: the im2col path
        ] {
            out.push((shape, kernel, strides, padding, filters));
        }
    }
    out
}

/// `(out, leading pad)` along one axis, by Keras' rule.
fn axis(input: usize, k: usize, s: usize, padding: Padding) -> (usize, usize) {
    match padding {
        Padding::Valid => ((input - k) / s + 1, 0),
        Padding::Same => {
            let out = input.div_ceil(s);
            (out, ((out - 1) * s + k).saturating_sub(input) / 2)
        }
    }
}

/// Every (output index, input index, kernel index) triple that the convolution multiplies.
fn taps(
    shape: [usize; 4],
    kernel: [usize; 4],
    s: (usize, usize),
    padding: Padding,
) -> Vec<[usize; 3]> {
    let [n, h, w, c] = shape;
    let [kh, kw, _, f] = kernel;
    let (oh, pt) = axis(h, kh, s.0, padding);
    let (ow, pl) = axis(w, kw, s.1, padding);
    let mut out = Vec::new();
    for b in 0..n {
        for i in 0..oh {
            for j in 0..ow {
                for p in 0..kh {
                    for q in 0..kw {
                        let (y, x) = (
                            (i * s.0 + p).wrapping_sub(pt),
                            (j * s.1 + q).wrapping_sub(pl),
                        );
                        if y >= h || x >= w {
                            continue;
                        }
                        for ch in 0..c {
                            for o in 0..f {
                                out.push([
                                    ((b * oh + i) * ow + j) * f + o,
                                    ((b * h + y) * w + x) * c + ch,
                                    ((p * kw + q) * c + ch) * f + o,
                                ]);
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// `got` within a few ulps of the sum of absolute terms `scale` of `want`.
fn check(got: &[f32], want: &[f64], scale: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, ((&g, &w), &s)) in got.iter().zip(want).zip(scale).enumerate() {
        assert!(
            (g as f64 - w).abs() <= 1e-5 * (1.0 + s),
            "{what}: element {i}: got {g}, want {w}"
        );
    }
}

#[test]
fn direct_convolution_and_gradients_match_the_definition() {
    for (t, (shape, (kh, kw), strides, padding, filters)) in cases().into_iter().enumerate() {
        let what = format!("{shape:?} k({kh}, {kw}) s{strides:?} {padding:?} f{filters}");
        let kshape = [kh, kw, shape[3], filters];
        let x = rand(&shape, t as u64);
        let k = rand(&kshape, 50 + t as u64);
        let g = Conv2dGeometry::new(&shape, (kh, kw), strides, padding).unwrap();
        let dy = rand(&g.output_shape(filters), 100 + t as u64);
        let (xv, kv, dyv) = (x.to_vec(), k.to_vec(), dy.to_vec());
        // The prologue halves dy at even output pixels: dz is what the sums must use.
        let dz: Vec<f32> = dyv
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                if (i / filters).is_multiple_of(2) {
                    v * 0.5
                } else {
                    v
                }
            })
            .collect();
        let prologue = |first: usize, rows: &mut [f32]| {
            for (p, px) in rows.chunks_exact_mut(filters).enumerate() {
                if (first + p).is_multiple_of(2) {
                    px.iter_mut().for_each(|v| *v *= 0.5);
                }
            }
        };
        let (mut y, mut dx, mut dk) = (
            vec![0.0f64; dy.len()],
            vec![0.0f64; x.len()],
            vec![0.0f64; k.len()],
        );
        let (mut sy, mut sdx, mut sdk) = (y.clone(), dx.clone(), dk.clone());
        for [o, i, w] in taps(shape, kshape, strides, padding) {
            let (xi, kw_, d) = (xv[i] as f64, kv[w] as f64, dz[o] as f64);
            y[o] += xi * kw_;
            sy[o] += (xi * kw_).abs();
            dx[i] += d * kw_;
            sdx[i] += (d * kw_).abs();
            dk[w] += xi * d;
            sdk[w] += (xi * d).abs();
        }
        let mut db = vec![0.0f64; filters];
        let mut sdb = db.clone();
        for (i, &d) in dz.iter().enumerate() {
            db[i % filters] += d as f64;
            sdb[i % filters] += (d as f64).abs();
        }
        // Forward with an epilogue that adds one: every output value passes through it once.
        let got = conv2d_with(&x, &k, strides, padding, |rows| {
            rows.iter_mut().for_each(|v| *v += 1.0)
        })
        .unwrap();
        let y1: Vec<f64> = y.iter().map(|v| v + 1.0).collect();
        check(&got.to_vec(), &y1, &sy, &format!("y {what}"));
        for kernel in [Some(&k), None] {
            let (gx, gk, gb) = conv2d_backward_with(&x, kernel, &dy, &g, prologue).unwrap();
            assert_eq!(gx.is_some(), kernel.is_some(), "{what}");
            if let Some(gx) = gx {
                assert_eq!(gx.shape(), &shape);
                check(&gx.to_vec(), &dx, &sdx, &format!("dx {what}"));
            }
            assert_eq!((gk.shape(), gb.shape()), (&kshape[..], &[filters][..]));
            check(&gk.to_vec(), &dk, &sdk, &format!("dk {what}"));
            check(&gb.to_vec(), &db, &sdb, &format!("db {what}"));
        }
    }
}

#[test]
fn empty_batches_and_tensors_of_other_layouts() {
    let x = Tensor::zeros(&[0, 5, 5, 1]);
    let k = rand(&[3, 3, 1, 4], 1);
    let g = Conv2dGeometry::new(x.shape(), (3, 3), (1, 1), Padding::Same).unwrap();
    let y = conv2d_with(&x, &k, (1, 1), Padding::Same, |_| {}).unwrap();
    assert_eq!(y.shape(), &[0, 5, 5, 4]);
    let (dx, dk, db) = conv2d_backward_with(&x, Some(&k), &y, &g, |_, _| {}).unwrap();
    assert_eq!(dx.unwrap().shape(), &[0, 5, 5, 1]);
    assert_eq!((dk.to_vec(), db.to_vec()), (vec![0.0; 36], vec![0.0; 4]));
    // A transposed (non-contiguous) input gives the same values as its contiguous copy.
    let x = rand(&[2, 6, 5, 1], 3).permute(&[0, 2, 1, 3]).unwrap();
    let a = conv2d_with(&x, &k, (1, 1), Padding::Same, |_| {}).unwrap();
    let b = conv2d_with(&x.to_contiguous(), &k, (1, 1), Padding::Same, |_| {}).unwrap();
    assert_eq!(a.to_vec(), b.to_vec());
}
