//! The parallel kernels give the same bits for any thread count, and stale pooled buffers never
//! leak into results.
//!
//! Each kernel runs three times on the same inputs: with one thread, with three (more pieces than
//! this machine may have cores), and with one again after the buffer pool was filled with NaN
//! buffers of every size the kernels ask for. The three results must be bit-identical, and the
//! first must agree with a naive reference.

use gradus_tensor::{
    Padding, Rng, Tensor, buffer, col2im, conv2d, conv2d_backward_input, conv2d_backward_params,
    conv2d_backward_with, conv2d_with, im2col, max_pool2d, max_pool2d_backward, parallel,
};

/// The tests here set the process-wide thread count: one at a time.
static THREADS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    THREADS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fills this thread's pool with NaN buffers of the given lengths (and a few neighbours).
fn poison_pool(lens: &[usize]) {
    buffer::clear();
    for &len in lens {
        for l in [len, len + 1, len + len / 3] {
            if l >= buffer::MIN_POOLED_LEN {
                drop(Tensor::full(&[l], f32::NAN));
            }
        }
    }
}

/// `f` with 1 thread, with 3 threads, and with 1 thread over a NaN-poisoned pool: all equal.
fn same_bits(what: &str, f: impl Fn() -> Vec<Tensor>) -> Vec<Tensor> {
    parallel::set_num_threads(1);
    buffer::clear();
    let one = f();
    parallel::set_num_threads(3);
    let three = f();
    let lens: Vec<usize> = one.iter().map(Tensor::len).collect();
    poison_pool(&lens);
    parallel::set_num_threads(1);
    let poisoned = f();
    for (i, ((a, b), c)) in one.iter().zip(&three).zip(&poisoned).enumerate() {
        let bits = |t: &Tensor| t.to_vec().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(a), bits(b), "{what} output {i}: 1 vs 3 threads");
        assert_eq!(
            bits(a),
            bits(c),
            "{what} output {i}: fresh vs poisoned pool"
        );
    }
    one
}

fn naive_matmul(a: &Tensor, b: &Tensor) -> Vec<f32> {
    let (m, k, n) = (a.shape()[0], a.shape()[1], b.shape()[1]);
    let (av, bv) = (a.to_vec(), b.to_vec());
    let mut out = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k)
                .map(|p| av[i * k + p] as f64 * bv[p * n + j] as f64)
                .sum();
            out[i * n + j] = s as f32;
        }
    }
    out
}

fn close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

#[test]
fn matmul_splits_rows_and_columns_without_changing_bits() {
    let _threads = one_at_a_time();
    let mut rng = Rng::seed_from_u64(7);
    // Above the threshold for splitting (2^20 multiply-adds) with a transposed operand: tall
    // (split by rows), wide (split by columns), and a small C next to its inner length (split
    // over whole blocks of the inner index on CPUs with AVX2 and FMA; see the next test).
    for (m, k, n) in [(523, 400, 331), (300, 483, 521), (128, 784, 128)] {
        let a = Tensor::rand_uniform(&[m, k], -1.0, 1.0, &mut rng);
        let b = Tensor::rand_uniform(&[n, k], -1.0, 1.0, &mut rng);
        let out = same_bits(&format!("matmul {m}x{k}x{n}"), || {
            vec![a.matmul_t(&b, false, true).unwrap()]
        });
        let b = b.transpose().unwrap().to_contiguous();
        let (want, mags) = (naive_matmul(&a, &b), naive_matmul(&a.abs(), &b.abs()));
        // The f32 sums cancel, so the bound is on the sum of the terms' magnitudes rather than
        // on the result: a chain of at most 256 roundings per block of the inner index (the
        // deepest block of either kernel), then one per block to add the blocks, bounds the
        // error by `gamma(256 + blocks) sum |a_p b_p|` (Higham, blocked summation), and the
        // reference's own rounding to f32 adds half an ulp.
        let unit = f64::from(f32::EPSILON) / 2.0;
        let steps = (k.min(256) + k.div_ceil(256)) as f64;
        let gamma = steps * unit / (1.0 - steps * unit);
        let got = out[0].to_vec();
        for (i, ((g, w), mag)) in got.iter().zip(&want).zip(&mags).enumerate() {
            let tol = (gamma * f64::from(*mag) + unit * f64::from(w.abs())) as f32;
            assert!(
                (g - w).abs() <= tol,
                "matmul {m}x{k}x{n} [{i}]: {g} vs {w} (tol {tol})"
            );
        }
    }
}

#[test]
fn matmul_splits_the_inner_index_without_changing_bits() {
    let _threads = one_at_a_time();
    let mut rng = Rng::seed_from_u64(11);
    // A small C next to its inner length, above the threshold for splitting: on CPUs with AVX2
    // and FMA, split over whole blocks of the inner index (four of 196 for 784, five of 208
    // and one of 198 for 1030, 22 for 5408) into a row-major C through `matmul` and a
    // column-major one through `gemm`, with a NaN-poisoned pool for the buffers of sums.
    for (m, k, n) in [(128, 784, 128), (128, 1030, 10), (24, 5408, 10)] {
        let a = Tensor::rand_uniform(&[m, k], -1.0, 1.0, &mut rng);
        let b = Tensor::rand_uniform(&[k, n], -1.0, 1.0, &mut rng);
        let bits = |t: &Tensor| t.to_vec().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let run = |threads: usize| {
            let lens: Vec<usize> = (1..k.div_ceil(196)).map(|b| b * m * n).collect();
            poison_pool(&lens);
            parallel::set_num_threads(threads);
            let c = a.matmul(&b).unwrap();
            let mut ct = Tensor::zeros(&[n, m]).transpose().unwrap();
            gradus_tensor::gemm(1.0, &a, &b, 0.0, &mut ct).unwrap();
            (bits(&c), bits(&ct))
        };
        let one = run(1);
        assert_eq!(
            one.0, one.1,
            "{m}x{k}x{n}: matmul vs gemm into a column-major C"
        );
        for threads in 2..=5 {
            assert_eq!(run(threads), one, "{m}x{k}x{n}: {threads} threads vs 1");
        }
    }
    parallel::set_num_threads(0);
}

#[test]
fn conv_pool_and_unfolding_do_not_depend_on_threads() {
    let _threads = one_at_a_time();
    let mut rng = Rng::seed_from_u64(11);
    for (shape, kernel, strides, padding) in [
        ([9, 28, 28, 1], [3, 3, 1, 32], (1, 1), Padding::Valid),
        ([5, 13, 11, 3], [3, 3, 3, 20], (2, 1), Padding::Same),
        ([4, 12, 12, 8], [3, 3, 8, 6], (1, 1), Padding::Same), // patch 72: im2col path
    ] {
        let x = Tensor::rand_uniform(&shape, -1.0, 1.0, &mut rng);
        let k = Tensor::rand_uniform(&kernel, -1.0, 1.0, &mut rng);
        let what = format!("{shape:?} {kernel:?} {strides:?} {padding:?}");
        let out = same_bits(&what, || {
            let y = conv2d_with(&x, &k, strides, padding, |rows| {
                rows.iter_mut().for_each(|v| *v = v.max(0.0))
            })
            .unwrap();
            let g = gradus_tensor::Conv2dGeometry::new(
                x.shape(),
                (kernel[0], kernel[1]),
                strides,
                padding,
            )
            .unwrap();
            let cols = im2col(&x, &g).unwrap();
            let back = col2im(&cols, &g).unwrap();
            let p = max_pool2d(&y, (2, 2), (2, 2), Padding::Same).unwrap();
            let up = p.mul_scalar(0.5).add_scalar(0.25);
            let dp = max_pool2d_backward(&up, &y, &p, (2, 2), (2, 2), Padding::Same).unwrap();
            let overlapping = max_pool2d(&y, (3, 3), (1, 1), Padding::Valid).unwrap();
            let d3 = max_pool2d_backward(
                &overlapping,
                &y,
                &overlapping,
                (3, 3),
                (1, 1),
                Padding::Valid,
            )
            .unwrap();
            let (dk, db) = conv2d_backward_params(&x, &y, &g).unwrap();
            let (dx, dk2, db2) = conv2d_backward_with(&x, Some(&k), &y, &g, |_, _| {}).unwrap();
            let dx_ref = conv2d_backward_input(&y, &k, &g).unwrap();
            close(&dx.unwrap().to_vec(), &dx_ref.to_vec(), 1e-4, "dx");
            assert_eq!((dk.to_vec(), db.to_vec()), (dk2.to_vec(), db2.to_vec()));
            vec![y, cols, back, p, dp, overlapping, d3, dk, db]
        });
        // The fused ReLU over the plain convolution, and the im2col product.
        let plain = conv2d(&x, &k, strides, padding).unwrap();
        let relu = plain.map(|v| v.max(0.0));
        close(&out[0].to_vec(), &relu.to_vec(), 1e-5, &what);
        let patch = kernel[0] * kernel[1] * kernel[2];
        let via_cols = naive_matmul(&out[1], &k.reshape(&[patch, kernel[3]]).unwrap());
        close(&plain.to_vec(), &via_cols, 1e-5, &what);
        // The kernel and bias gradients against the unfolded product and plain column sums.
        let (f, y) = (kernel[3], &out[0]);
        let cols_t = out[1].transpose().unwrap().to_contiguous();
        let want_dk = naive_matmul(&cols_t, &y.reshape(&[y.len() / f, f]).unwrap());
        close(&out[7].to_vec(), &want_dk, 1e-4, &what);
        let want_db = y
            .reshape(&[y.len() / f, f])
            .unwrap()
            .sum_axes(&[0], false)
            .unwrap();
        close(&out[8].to_vec(), &want_db.to_vec(), 1e-4, &what);
        // Max pooling backward conserves the routed gradient.
        let routed: f64 = out[4].to_vec().iter().map(|&v| v as f64).sum();
        let sent: f64 = out[3].to_vec().iter().map(|&v| 0.5 * v as f64 + 0.25).sum();
        assert!((routed - sent).abs() <= 1e-3 * (1.0 + sent.abs()), "{what}");
    }
    parallel::set_num_threads(0);
}

#[test]
fn fused_conv_pool_matches_the_separate_kernels() {
    let _threads = one_at_a_time();
    use gradus_tensor::{
        Conv2dGeometry, conv2d_backward_params, conv2d_max_pool_backward_params,
        conv2d_max_pool_with,
    };
    let mut rng = Rng::seed_from_u64(5);
    let relu = |rows: &mut [f32]| rows.iter_mut().for_each(|v| *v = v.max(0.0));
    for (shape, kernel, (pool, pstrides, ppad), exact) in [
        // Non-overlapping windows tiling the output: the same bits as the separate kernels.
        (
            [6, 28, 28, 1],
            [3, 3, 1, 32],
            ((2, 2), (2, 2), Padding::Valid),
            true,
        ),
        // An uncovered last row and column, padding, overlapping windows: the same values.
        (
            [3, 12, 11, 2],
            [3, 2, 2, 9],
            ((2, 2), (2, 2), Padding::Valid),
            true,
        ),
        (
            [3, 12, 11, 2],
            [3, 2, 2, 9],
            ((3, 3), (2, 1), Padding::Same),
            false,
        ),
        // Disjoint windows (scattered by assignment) leaving the last convolution row and
        // column uncovered (9 x 9 positions under 2 x 2 windows), then with gaps between them.
        (
            [2, 10, 11, 3],
            [2, 3, 3, 5],
            ((2, 2), (2, 2), Padding::Valid),
            true,
        ),
        (
            [2, 10, 11, 3],
            [2, 3, 3, 5],
            ((2, 2), (3, 3), Padding::Valid),
            false,
        ),
        // Disjoint along the rows but overlapping down the columns, with padding: window rows
        // on the padding (their scratch rows neither written nor read).
        (
            [2, 10, 11, 3],
            [2, 3, 3, 5],
            ((3, 2), (1, 2), Padding::Same),
            false,
        ),
    ] {
        let x = Tensor::rand_uniform(&shape, -1.0, 1.0, &mut rng);
        let k = Tensor::rand_uniform(&kernel, -1.0, 1.0, &mut rng);
        let what = format!("{shape:?} {kernel:?} pool {pool:?} {pstrides:?} {ppad:?}");
        let conv =
            Conv2dGeometry::new(&shape, (kernel[0], kernel[1]), (1, 1), Padding::Valid).unwrap();
        let conv_out = conv.output_shape(kernel[3]);
        let pg = Conv2dGeometry::new(&conv_out, pool, pstrides, ppad).unwrap();
        let out = same_bits(&what, || {
            let (y, winners) = conv2d_max_pool_with(&x, &k, &conv, &pg, relu).unwrap();
            let dz = y.mul_scalar(0.5).add_scalar(-0.125);
            let (dk, db) = conv2d_max_pool_backward_params(&x, &dz, &winners, &conv, &pg).unwrap();
            let w = Tensor::from_vec(winners.iter().map(|&w| f32::from(w)).collect(), y.shape());
            vec![y, w.unwrap(), dz, dk, db]
        });
        // Forward: exactly the separate convolution and pooling.
        let full = conv2d_with(&x, &k, (1, 1), Padding::Valid, relu).unwrap();
        let pooled = max_pool2d(&full, pool, pstrides, ppad).unwrap();
        assert_eq!(out[0].to_vec(), pooled.to_vec(), "{what}");
        // Backward: the separate pooling backward, then the kernel sums of the full gradient.
        let dfull = max_pool2d_backward(&out[2], &full, &pooled, pool, pstrides, ppad).unwrap();
        let (dk, db) = conv2d_backward_params(&x, &dfull, &conv).unwrap();
        if exact {
            assert_eq!(out[3].to_vec(), dk.to_vec(), "dk {what}");
            assert_eq!(out[4].to_vec(), db.to_vec(), "db {what}");
        } else {
            close(&out[3].to_vec(), &dk.to_vec(), 1e-5, &format!("dk {what}"));
            close(&out[4].to_vec(), &db.to_vec(), 1e-5, &format!("db {what}"));
        }
        // Hostile winners are refused: all of them, or a single one at the end.
        let bad = vec![200u8; out[2].len()];
        assert!(conv2d_max_pool_backward_params(&x, &out[2], &bad, &conv, &pg).is_err());
        let mut last_bad = vec![0u8; out[2].len()];
        *last_bad.last_mut().unwrap() = (pool.0 * pool.1) as u8;
        assert!(conv2d_max_pool_backward_params(&x, &out[2], &last_bad, &conv, &pg).is_err());
    }
    parallel::set_num_threads(0);
}
