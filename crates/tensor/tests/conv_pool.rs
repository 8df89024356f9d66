//! Convolution and pooling kernels against naive loop references, adjoint identities, and the
//! numbers real Keras 3 produced (tests/fixtures/keras_conv_pool.json, extracted from
//! shared/fixtures/keras/layers.json, made by shared/reference/make_keras_fixtures.py).

mod common;

use common::{assert_close, dot, padded_view, rand};
use gradus_tensor::{
    Conv2dGeometry, Padding, Tensor, avg_pool2d, avg_pool2d_backward, col2im, conv2d,
    conv2d_backward_input, conv2d_backward_kernel, im2col, max_pool2d, max_pool2d_backward,
};
use serde_json::Value;

/// A test configuration: (input NHWC, window, strides, padding).
type Config = ([usize; 4], (usize, usize), (usize, usize), Padding);

/// The configurations every kernel is checked on.
fn configs() -> Vec<Config> {
    let mut out = Vec::new();
    for padding in [Padding::Valid, Padding::Same] {
        for strides in [(1, 1), (2, 2), (1, 2), (3, 2)] {
            for kernel in [(1, 1), (3, 3), (2, 3), (3, 1), (4, 4)] {
                out.push(([2, 7, 6, 3], kernel, strides, padding));
            }
        }
    }
    out.push(([1, 17, 1, 2], (3, 1), (2, 1), Padding::Same));
    out.push(([3, 5, 5, 1], (5, 5), (1, 1), Padding::Valid));
    out.push(([1, 2, 3, 2], (5, 4), (1, 1), Padding::Same));
    out
}

/// Padding before the input along one axis, by Keras' rule (written out independently).
fn pad_before(input: usize, k: usize, s: usize, padding: Padding) -> (usize, usize) {
    match padding {
        Padding::Valid => ((input - k) / s + 1, 0),
        Padding::Same => {
            let out = input.div_ceil(s);
            let total = ((out - 1) * s + k).saturating_sub(input);
            (out, total / 2)
        }
    }
}

/// The 7-loop convolution: out[n, oh, ow, f] = sum_{kh, kw, c} x[n, ih, iw, c] k[kh, kw, c, f].
fn naive_conv(x: &Tensor, k: &Tensor, s: (usize, usize), padding: Padding) -> Tensor {
    let [n, h, w, c] = x.shape().try_into().unwrap();
    let [kh, kw, _, f] = k.shape().try_into().unwrap();
    let (oh, pt) = pad_before(h, kh, s.0, padding);
    let (ow, pl) = pad_before(w, kw, s.1, padding);
    let mut out = vec![0.0f32; n * oh * ow * f];
    for b in 0..n {
        for i in 0..oh {
            for j in 0..ow {
                for o in 0..f {
                    let mut acc = 0.0f64;
                    for p in 0..kh {
                        for q in 0..kw {
                            let (ih, iw) = (
                                (i * s.0 + p) as isize - pt as isize,
                                (j * s.1 + q) as isize - pl as isize,
                            );
                            if ih < 0 || iw < 0 || ih >= h as isize || iw >= w as isize {
                                continue;
                            }
                            for ch in 0..c {
                                acc += x.get(&[b, ih as usize, iw as usize, ch]).unwrap() as f64
                                    * k.get(&[p, q, ch, o]).unwrap() as f64;
                            }
                        }
                    }
                    out[((b * oh + i) * ow + j) * f + o] = acc as f32;
                }
            }
        }
    }
    Tensor::from_vec(out, &[n, oh, ow, f]).unwrap()
}

/// Naive pooling: for every output, the valid window values (padding excluded) with their flat
/// input indices.
fn naive_windows(
    shape: [usize; 4],
    pool: (usize, usize),
    s: (usize, usize),
    padding: Padding,
) -> (Vec<usize>, Vec<Vec<usize>>) {
    let [n, h, w, c] = shape;
    let (oh, pt) = pad_before(h, pool.0, s.0, padding);
    let (ow, pl) = pad_before(w, pool.1, s.1, padding);
    let mut windows = Vec::new();
    for b in 0..n {
        for i in 0..oh {
            for j in 0..ow {
                for ch in 0..c {
                    let mut win = Vec::new();
                    for p in 0..pool.0 {
                        for q in 0..pool.1 {
                            let (ih, iw) = (
                                (i * s.0 + p) as isize - pt as isize,
                                (j * s.1 + q) as isize - pl as isize,
                            );
                            if ih >= 0 && iw >= 0 && ih < h as isize && iw < w as isize {
                                win.push(((b * h + ih as usize) * w + iw as usize) * c + ch);
                            }
                        }
                    }
                    windows.push(win);
                }
            }
        }
    }
    (vec![n, oh, ow, c], windows)
}

#[test]
fn conv2d_matches_the_seven_loop_reference() {
    for (t, (shape, kernel, strides, padding)) in configs().into_iter().enumerate() {
        let x = rand(&shape, t as u64);
        let k = rand(&[kernel.0, kernel.1, shape[3], 4], 100 + t as u64);
        let want = naive_conv(&x, &k, strides, padding);
        for (lx, vx) in [("contiguous", x.clone()), ("padded", padded_view(&x))] {
            let got = conv2d(&vx, &k, strides, padding).unwrap();
            assert_eq!(got.shape(), want.shape());
            let what = format!("{shape:?} k{kernel:?} s{strides:?} {padding:?} {lx}");
            assert_close(&got.to_vec(), &want.to_vec(), 1e-5, 1e-5, &what);
        }
    }
}

#[test]
fn im2col_col2im_and_conv_gradients_are_adjoint() {
    for (t, (shape, kernel, strides, padding)) in configs().into_iter().enumerate() {
        let g = Conv2dGeometry::new(&shape, kernel, strides, padding).unwrap();
        let x = rand(&shape, t as u64);
        let y = rand(&[g.positions(), g.patch_len()], 200 + t as u64);
        // <im2col(x), y> == <x, col2im(y)>
        let cols = im2col(&x, &g).unwrap();
        let lhs = dot(&cols, &y);
        let rhs = dot(&x, &col2im(&y, &g).unwrap());
        // col2im adds overlapping windows in f32: allow a few ulps of the sum of |terms|.
        let scale = dot(&cols.abs(), &y.abs());
        assert!(
            (lhs - rhs).abs() < 1e-6 * (1.0 + scale),
            "im2col adjoint {t}: {lhs} vs {rhs}"
        );
        // conv is bilinear: <conv(x, k), dy> == <x, dconv/dx(dy)> == <k, dconv/dk(dy)>
        let k = rand(&[kernel.0, kernel.1, shape[3], 2], 300 + t as u64);
        let dy = rand(&g.output_shape(2), 400 + t as u64);
        let y = conv2d(&x, &k, strides, padding).unwrap();
        let base = dot(&y, &dy);
        let dx = conv2d_backward_input(&dy, &k, &g).unwrap();
        let dk = conv2d_backward_kernel(&x, &dy, &g).unwrap();
        assert_eq!(dx.shape(), &shape);
        assert_eq!(dk.shape(), k.shape());
        let scale = dot(
            &conv2d(&x.abs(), &k.abs(), strides, padding).unwrap(),
            &dy.abs(),
        );
        let tol = 1e-5 * (1.0 + scale);
        assert!(
            (dot(&x, &dx) - base).abs() < tol,
            "dx {t}: {} vs {base}",
            dot(&x, &dx)
        );
        assert!(
            (dot(&k, &dk) - base).abs() < tol,
            "dk {t}: {} vs {base}",
            dot(&k, &dk)
        );
    }
}

#[test]
fn conv_gradients_match_finite_differences() {
    let (shape, kernel, strides, padding) = ([1, 5, 4, 2], (3, 2), (2, 1), Padding::Same);
    let g = Conv2dGeometry::new(&shape, kernel, strides, padding).unwrap();
    let x = rand(&shape, 1);
    let k = rand(&[3, 2, 2, 3], 2);
    let dy = rand(&g.output_shape(3), 3);
    let loss = |x: &Tensor, k: &Tensor| dot(&conv2d(x, k, strides, padding).unwrap(), &dy);
    let dx = conv2d_backward_input(&dy, &k, &g).unwrap();
    let dk = conv2d_backward_kernel(&x, &dy, &g).unwrap();
    let h = 1e-2f32;
    for i in (0..x.len()).step_by(3) {
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp.as_slice_mut()[i] += h;
        xm.as_slice_mut()[i] -= h;
        let fd = (loss(&xp, &k) - loss(&xm, &k)) / (2.0 * h as f64);
        assert!(
            (fd - dx.to_vec()[i] as f64).abs() < 1e-3,
            "dx[{i}]: {fd} vs {}",
            dx.to_vec()[i]
        );
    }
    for i in 0..k.len() {
        let (mut kp, mut km) = (k.clone(), k.clone());
        kp.as_slice_mut()[i] += h;
        km.as_slice_mut()[i] -= h;
        let fd = (loss(&x, &kp) - loss(&x, &km)) / (2.0 * h as f64);
        assert!(
            (fd - dk.to_vec()[i] as f64).abs() < 1e-3,
            "dk[{i}]: {fd} vs {}",
            dk.to_vec()[i]
        );
    }
}

#[test]
fn pooling_matches_naive_windows() {
    for (t, (shape, pool, strides, padding)) in configs().into_iter().enumerate() {
        // Rounded values make ties, where the first index must win.
        let x = rand(&shape, 500 + t as u64).map(f32::round);
        let xs = x.to_vec();
        let (out_shape, windows) = naive_windows(shape, pool, strides, padding);
        let mut want_max = Vec::new();
        let mut want_arg = Vec::new();
        let mut want_avg = Vec::new();
        for win in &windows {
            let best = win
                .iter()
                .copied()
                .fold(win[0], |b, i| if xs[i] > xs[b] { i } else { b });
            want_arg.push(best);
            want_max.push(xs[best]);
            want_avg
                .push((win.iter().map(|&i| xs[i] as f64).sum::<f64>() / win.len() as f64) as f32);
        }
        let what = format!("{shape:?} pool{pool:?} s{strides:?} {padding:?}");
        for (lx, vx) in [("contiguous", x.clone()), ("padded", padded_view(&x))] {
            let y = max_pool2d(&vx, pool, strides, padding).unwrap();
            assert_eq!(y.shape(), out_shape.as_slice(), "{what}");
            assert_eq!(y.to_vec(), want_max, "max {what} {lx}");
            let a = avg_pool2d(&vx, pool, strides, padding).unwrap();
            assert_close(
                &a.to_vec(),
                &want_avg,
                1e-6,
                1e-6,
                &format!("avg {what} {lx}"),
            );
        }
        // Backward: routed to the argmax, and the average spread over each valid window.
        let dy = rand(&out_shape, 600 + t as u64);
        let dys = dy.to_vec();
        let mut want_dmax = vec![0.0f32; xs.len()];
        let mut want_davg = vec![0.0f64; xs.len()];
        for (o, win) in windows.iter().enumerate() {
            want_dmax[want_arg[o]] += dys[o];
            for &i in win {
                want_davg[i] += dys[o] as f64 / win.len() as f64;
            }
        }
        let y = max_pool2d(&x, pool, strides, padding).unwrap();
        let dmax = max_pool2d_backward(&dy, &x, &y, pool, strides, padding).unwrap();
        assert_close(
            &dmax.to_vec(),
            &want_dmax,
            1e-6,
            1e-6,
            &format!("dmax {what}"),
        );
        let davg = avg_pool2d_backward(&dy, &shape, pool, strides, padding).unwrap();
        let want_davg: Vec<f32> = want_davg.iter().map(|&v| v as f32).collect();
        assert_close(
            &davg.to_vec(),
            &want_davg,
            1e-5,
            1e-6,
            &format!("davg {what}"),
        );
    }
}

#[test]
fn shape_errors_are_reported() {
    let g = Conv2dGeometry::new(&[2, 7, 6, 3], (3, 3), (1, 1), Padding::Valid).unwrap();
    let e = im2col(&Tensor::zeros(&[2, 7, 6, 2]), &g)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("[2, 7, 6, 2]") && e.contains("[2, 7, 6, 3]"),
        "{e}"
    );
    assert!(col2im(&Tensor::zeros(&[3, 27]), &g).is_err());
    assert!(
        conv2d_backward_input(
            &Tensor::zeros(&[2, 5, 4, 4]),
            &Tensor::zeros(&[3, 3, 3, 5]),
            &g
        )
        .is_err()
    );
    assert!(
        conv2d_backward_kernel(
            &Tensor::zeros(&[2, 7, 6, 3]),
            &Tensor::zeros(&[2, 5, 5, 4]),
            &g
        )
        .is_err()
    );
    assert!(
        avg_pool2d_backward(
            &Tensor::zeros(&[2, 3, 2, 3]),
            &[2, 7, 6, 3],
            (2, 2),
            (2, 2),
            Padding::Valid
        )
        .is_err()
    );
    assert!(
        max_pool2d(
            &Tensor::zeros(&[1, 2, 2, 1]),
            (3, 3),
            (1, 1),
            Padding::Valid
        )
        .is_err()
    );
    assert!(
        avg_pool2d(
            &Tensor::zeros(&[1, 2, 2, 1]),
            (2, 2),
            (0, 1),
            Padding::Valid
        )
        .is_err()
    );
}

// ---------------------------------------------------------------- Keras fixtures

/// A tensor from a nested JSON array (the shape is read from the nesting).
fn nested(v: &Value) -> Tensor {
    fn walk(v: &Value, depth: usize, shape: &mut Vec<usize>, out: &mut Vec<f32>) {
        match v {
            Value::Array(items) => {
                if shape.len() == depth {
                    shape.push(items.len());
                }
                for item in items {
                    walk(item, depth + 1, shape, out);
                }
            }
            Value::Number(n) => out.push(n.as_f64().unwrap() as f32),
            other => panic!("unexpected JSON value {other}"),
        }
    }
    let (mut shape, mut out) = (Vec::new(), Vec::new());
    walk(v, 0, &mut shape, &mut out);
    Tensor::from_vec(out, &shape).unwrap()
}

fn pair(v: &Value, default: usize) -> (usize, usize) {
    match v {
        Value::Null => (default, default),
        Value::Number(n) => (n.as_u64().unwrap() as usize, n.as_u64().unwrap() as usize),
        Value::Array(a) => (
            a[0].as_u64().unwrap() as usize,
            a[1].as_u64().unwrap() as usize,
        ),
        other => panic!("bad size {other}"),
    }
}

fn padding(v: &Value) -> Padding {
    match v.as_str() {
        Some("same") => Padding::Same,
        _ => Padding::Valid,
    }
}

fn fixture_cases() -> Vec<Value> {
    let text = include_str!("fixtures/keras_conv_pool.json");
    let v: Value = serde_json::from_str(text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

#[test]
fn conv2d_matches_keras() {
    let mut seen = 0;
    for case in fixture_cases().iter().filter(|c| c["layer"] == "Conv2D") {
        let cfg = &case["config"];
        let (x, k, bias) = (
            nested(&case["input"]),
            nested(&case["weights"][0]["value"]),
            nested(&case["weights"][1]["value"]),
        );
        let strides = pair(&cfg["strides"], 1);
        let pad = padding(&cfg["padding"]);
        let relu = cfg["activation"] == "relu";
        let z = conv2d(&x, &k, strides, pad).unwrap().add(&bias).unwrap();
        let y = if relu { z.relu() } else { z.clone() };
        let want = nested(&case["output"]);
        assert_close(
            &y.to_vec(),
            &want.to_vec(),
            1e-5,
            1e-5,
            &format!("Conv2D {cfg}"),
        );
        // Gradients: the upstream through the activation, then the two conv gradients.
        let up = nested(&case["upstream"]);
        let dz = if relu {
            up.mul(&z.gt(&Tensor::scalar(0.0)).unwrap()).unwrap()
        } else {
            up
        };
        let g = Conv2dGeometry::new(x.shape(), (k.shape()[0], k.shape()[1]), strides, pad).unwrap();
        let dx = conv2d_backward_input(&dz, &k, &g).unwrap();
        let dk = conv2d_backward_kernel(&x, &dz, &g).unwrap();
        let db = dz.sum_axes(&[0, 1, 2], false).unwrap();
        assert_close(
            &dx.to_vec(),
            &nested(&case["grad_input"]).to_vec(),
            1e-4,
            1e-5,
            &format!("dx {cfg}"),
        );
        assert_close(
            &dk.to_vec(),
            &nested(&case["grad_weights"][0]).to_vec(),
            1e-4,
            1e-5,
            &format!("dk {cfg}"),
        );
        assert_close(
            &db.to_vec(),
            &nested(&case["grad_weights"][1]).to_vec(),
            1e-4,
            1e-5,
            &format!("db {cfg}"),
        );
        seen += 1;
    }
    assert_eq!(seen, 4);
}

#[test]
fn pooling_matches_keras() {
    let mut seen = 0;
    for case in fixture_cases().iter().filter(|c| c["layer"] != "Conv2D") {
        let cfg = &case["config"];
        let x = nested(&case["input"]);
        let pool = pair(&cfg["pool_size"], 2);
        let strides = match &cfg["strides"] {
            Value::Null => pool,
            s => pair(s, 1),
        };
        let pad = padding(&cfg["padding"]);
        let up = nested(&case["upstream"]);
        let (y, dx) = if case["layer"] == "MaxPooling2D" {
            let y = max_pool2d(&x, pool, strides, pad).unwrap();
            let dx = max_pool2d_backward(&up, &x, &y, pool, strides, pad).unwrap();
            (y, dx)
        } else {
            let y = avg_pool2d(&x, pool, strides, pad).unwrap();
            (
                y,
                avg_pool2d_backward(&up, x.shape(), pool, strides, pad).unwrap(),
            )
        };
        let what = format!("{} {cfg}", case["layer"]);
        assert_close(
            &y.to_vec(),
            &nested(&case["output"]).to_vec(),
            1e-6,
            1e-6,
            &what,
        );
        assert_close(
            &dx.to_vec(),
            &nested(&case["grad_input"]).to_vec(),
            1e-6,
            1e-6,
            &what,
        );
        seen += 1;
    }
    assert_eq!(seen, 4);
}
