//! Gradients of a small two-layer network against the hand-derived backpropagation formulas,
//! evaluated independently in f64 with plain loops.
//!
//! Network: `z1 = x W1 + b1`, `h = tanh(z1)`, `z2 = h W2 + b2`, loss = mean over the batch of the
//! softmax cross-entropy of `z2` against class ids `y`. By hand, with `N` the batch size:
//! `dz2 = (softmax(z2) - onehot(y)) / N`, `dW2 = h^T dz2`, `db2 = sum_rows dz2`,
//! `dh = dz2 W2^T`, `dz1 = dh (1 - h^2)`, `dW1 = x^T dz1`, `db1 = sum_rows dz1`.

use gradus_autograd::{Tape, Variable};
use gradus_tensor::{Rng, Tensor};

type Matrix = Vec<Vec<f64>>;

fn to_matrix(t: &Tensor) -> Matrix {
    let (r, c) = (t.shape()[0], t.shape()[1]);
    let v = t.to_vec();
    (0..r)
        .map(|i| (0..c).map(|j| f64::from(v[i * c + j])).collect())
        .collect()
}

fn matmul(a: &Matrix, b: &Matrix) -> Matrix {
    let (n, k, m) = (a.len(), b.len(), b[0].len());
    (0..n)
        .map(|i| {
            (0..m)
                .map(|j| (0..k).map(|p| a[i][p] * b[p][j]).sum())
                .collect()
        })
        .collect()
}

fn transpose(a: &Matrix) -> Matrix {
    (0..a[0].len())
        .map(|j| a.iter().map(|row| row[j]).collect())
        .collect()
}

fn add_row(a: &Matrix, b: &[f64]) -> Matrix {
    a.iter()
        .map(|row| row.iter().zip(b).map(|(x, y)| x + y).collect())
        .collect()
}

fn sum_rows(a: &Matrix) -> Vec<f64> {
    (0..a[0].len())
        .map(|j| a.iter().map(|row| row[j]).sum())
        .collect()
}

fn assert_close(got: &Tensor, want: &[f64], what: &str) {
    let got = got.to_vec();
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(g) - w).abs() <= 1e-5 + 1e-4 * w.abs(),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

#[test]
fn two_layer_network_matches_hand_derived_gradients() {
    let mut rng = Rng::seed_from_u64(42);
    let (n, d, hidden, classes) = (6, 4, 5, 3);
    let x = Tensor::rand_normal(&[n, d], 0.0, 1.0, &mut rng);
    let labels = [0usize, 2, 1, 1, 0, 2];
    let y = Tensor::from_vec(labels.iter().map(|&k| k as f32).collect(), &[n]).unwrap();
    let w1 = Variable::new(
        "dense/kernel",
        Tensor::rand_normal(&[d, hidden], 0.0, 0.5, &mut rng),
    );
    let b1 = Variable::new(
        "dense/bias",
        Tensor::rand_normal(&[hidden], 0.0, 0.1, &mut rng),
    );
    let w2 = Variable::new(
        "dense_1/kernel",
        Tensor::rand_normal(&[hidden, classes], 0.0, 0.5, &mut rng),
    );
    let b2 = Variable::new(
        "dense_1/bias",
        Tensor::rand_normal(&[classes], 0.0, 0.1, &mut rng),
    );

    let tape = Tape::new();
    let input = tape.constant(x.clone());
    let h = input
        .matmul(&input.param(&w1))
        .unwrap()
        .add(&input.param(&b1))
        .unwrap()
        .tanh();
    let z2 = h.matmul(&h.param(&w2)).unwrap().add(&h.param(&b2)).unwrap();
    let loss = z2.sparse_softmax_cross_entropy(&y).unwrap();
    let grads = tape.gradient(&loss, &[&w1, &b1, &w2, &b2]).unwrap();

    // by hand, in f64
    let xm = to_matrix(&x);
    let w1m = to_matrix(&w1.value());
    let w2m = to_matrix(&w2.value());
    let b1v: Vec<f64> = b1.value().to_vec().iter().map(|&v| f64::from(v)).collect();
    let b2v: Vec<f64> = b2.value().to_vec().iter().map(|&v| f64::from(v)).collect();
    let h: Matrix = add_row(&matmul(&xm, &w1m), &b1v)
        .iter()
        .map(|row| row.iter().map(|v| v.tanh()).collect())
        .collect();
    let z2 = add_row(&matmul(&h, &w2m), &b2v);
    let mut loss_ref = 0.0;
    let dz2: Matrix = z2
        .iter()
        .zip(labels)
        .map(|(row, k)| {
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = row.iter().map(|v| (v - m).exp()).collect();
            let s: f64 = e.iter().sum();
            loss_ref += (s.ln() + m - row[k]) / n as f64;
            e.iter()
                .enumerate()
                .map(|(j, v)| (v / s - if j == k { 1.0 } else { 0.0 }) / n as f64)
                .collect()
        })
        .collect();
    let dw2 = matmul(&transpose(&h), &dz2);
    let db2 = sum_rows(&dz2);
    let dh = matmul(&dz2, &transpose(&w2m));
    let dz1: Matrix = dh
        .iter()
        .zip(&h)
        .map(|(g, hr)| g.iter().zip(hr).map(|(g, h)| g * (1.0 - h * h)).collect())
        .collect();
    let dw1 = matmul(&transpose(&xm), &dz1);
    let db1 = sum_rows(&dz1);

    assert!((f64::from(loss.item().unwrap()) - loss_ref).abs() < 1e-5);
    assert_close(&grads[0], &dw1.concat(), "dW1");
    assert_close(&grads[1], &db1, "db1");
    assert_close(&grads[2], &dw2.concat(), "dW2");
    assert_close(&grads[3], &db2, "db2");
}
