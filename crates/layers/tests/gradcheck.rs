//! Finite-difference checks of the layers the Keras fixtures do not cover (BatchNormalization in
//! training mode, Embedding, Dropout with a fixed mask, a longer LSTM, activations that are not
//! fused, strided convolutions with a fused activation).
//!
//! Each check compares the tape's gradients of `L = sum(y * w)` (w a fixed random weighting of
//! the output) with respect to the input and every trainable variable against central
//! differences `(L(p + h) - L(p - h)) / 2h`, L summed in f64. With f32 layers on O(1) values the
//! rounding error of L is about 1e-6, i.e. about 5e-5 after dividing by 2h for h = 1e-2, and
//! the truncation error is about h^2 |L'''| / 6 ~ 2e-5: both well under the tolerance
//! `|analytic - numeric| <= 1e-3 + 1e-2 |numeric|`, while a wrong rule is off by O(1).

use gradus_autograd::{Tape, Var, Variable};
use gradus_layers::{BatchNormalization, Conv2D, Dense, Dropout, Embedding, LSTM, Layer, LayerExt};
use gradus_tensor::{Rng, Tensor};

const H: f32 = 1e-2;

/// `sum(y * w)` in f64 for the layer's output on `x` (untracked).
fn loss(layer: &dyn Layer, x: &Tensor, w: &[f32], training: bool, reset: &dyn Fn()) -> f64 {
    reset();
    let y = layer
        .call(&Var::constant(x.clone()), training)
        .unwrap()
        .into_value();
    y.to_vec()
        .iter()
        .zip(w)
        .map(|(&y, &w)| f64::from(y) * f64::from(w))
        .sum()
}

fn close(analytic: f64, numeric: f64) -> bool {
    (analytic - numeric).abs() <= 1e-3 + 1e-2 * numeric.abs()
}

/// Checks the gradients of `layer` at `x` (with respect to `x` too when `wrt_input`); `reset`
/// runs before every evaluation (to replay the same dropout mask). Returns the number of
/// elements checked.
fn check(
    layer: &dyn Layer,
    x: &Tensor,
    training: bool,
    wrt_input: bool,
    reset: &dyn Fn(),
) -> usize {
    let mut rng = Rng::seed_from_u64(42);
    reset();
    let tape = Tape::persistent();
    // An untracked input takes the layers' paths that make no input gradient.
    let xv = if wrt_input {
        tape.watch_tensor(x.clone())
    } else {
        tape.constant(x.clone())
    };
    let y = layer.call(&xv, training).unwrap();
    let w = Tensor::rand_uniform(y.shape(), 0.5, 1.5, &mut rng);
    let l = y.mul(&tape.constant(w.clone())).unwrap().sum_all();
    let w = w.to_vec();
    let vars = layer.trainable_variables();
    let grads = tape.gradient(&l, &vars.iter().collect::<Vec<_>>()).unwrap();
    let mut checked = 0;
    let mut bad = Vec::new();
    for (v, g) in vars.iter().zip(&grads) {
        let base = v.value();
        let g = g.to_vec();
        for j in 0..base.len() {
            let shifted = |d: f32| {
                let mut values = base.to_vec();
                values[j] += d;
                v.assign(Tensor::from_vec(values, base.shape()).unwrap())
                    .unwrap();
                loss(layer, x, &w, training, reset)
            };
            let numeric = (shifted(H) - shifted(-H)) / (2.0 * f64::from(H));
            v.assign(base.clone()).unwrap();
            if !close(f64::from(g[j]), numeric) {
                bad.push(format!(
                    "{}[{j}]: tape {} numeric {numeric}",
                    v.name(),
                    g[j]
                ));
            }
            checked += 1;
        }
    }
    if wrt_input {
        let gx = tape.gradient_wrt(&l, &[&xv]).unwrap()[0]
            .clone()
            .unwrap()
            .to_vec();
        let base = x.to_vec();
        for j in 0..base.len() {
            let shifted = |d: f32| {
                let mut values = base.clone();
                values[j] += d;
                loss(
                    layer,
                    &Tensor::from_vec(values, x.shape()).unwrap(),
                    &w,
                    training,
                    reset,
                )
            };
            let numeric = (shifted(H) - shifted(-H)) / (2.0 * f64::from(H));
            if !close(f64::from(gx[j]), numeric) {
                bad.push(format!("input[{j}]: tape {} numeric {numeric}", gx[j]));
            }
            checked += 1;
        }
    }
    assert!(
        bad.is_empty(),
        "{} mismatches of {checked}:\n{}",
        bad.len(),
        bad.join("\n")
    );
    checked
}

fn no_reset() {}

fn built<L: Layer>(mut layer: L, shape: &[usize], seed: u64) -> L {
    layer.build(shape, &mut Rng::seed_from_u64(seed)).unwrap();
    layer
}

/// Random values in [-1, 1] at least `margin` away from 0 (away from relu/abs kinks).
fn away_from_zero(shape: &[usize], margin: f32, seed: u64) -> Tensor {
    let mut rng = Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|_| {
            let u = rng.uniform_range(margin, 1.0);
            if rng.uniform_f32() < 0.5 { -u } else { u }
        })
        .collect();
    Tensor::from_vec(v, shape).unwrap()
}

#[test]
fn batch_normalization_in_training_mode() {
    // Non-trivial gamma and beta, a 3-D input normalized over (batch, time).
    let bn = built(BatchNormalization::new(), &[3, 4], 0);
    let mut rng = Rng::seed_from_u64(1);
    let vars = bn.variables();
    vars[0]
        .assign(Tensor::rand_uniform(&[4], 0.5, 1.5, &mut rng))
        .unwrap();
    vars[1]
        .assign(Tensor::rand_uniform(&[4], -0.5, 0.5, &mut rng))
        .unwrap();
    let x = Tensor::rand_normal(&[5, 3, 4], 0.3, 1.2, &mut rng);
    assert!(check(&bn, &x, true, true, &no_reset) > 60);
    // Inference mode is affine in x with the moving statistics.
    check(&bn, &x, false, true, &no_reset);
}

#[test]
fn batch_normalization_on_another_axis() {
    let bn = built(BatchNormalization::new().axis(1), &[3, 4], 0);
    let x = Tensor::rand_normal(&[4, 3, 4], 0.0, 1.0, &mut Rng::seed_from_u64(2));
    check(&bn, &x, true, true, &no_reset);
    assert_eq!(bn.variables()[0].shape(), &[3]);
}

#[test]
fn embedding_gradient_accumulates_repeated_ids() {
    let emb = built(Embedding::new(7, 3), &[4], 0);
    let ids = Tensor::from_vec(vec![1.0, 2.0, 1.0, 6.0, 0.0, 1.0, 5.0, 5.0], &[2, 4]).unwrap();
    check(&emb, &ids, true, false, &no_reset);
    // Row 1 is used three times: its gradient is the sum of three output gradients.
    let tape = Tape::new();
    let y = emb.call(&tape.constant(ids), true).unwrap();
    let g = tape
        .gradient(&y.sum_all(), &[emb.embeddings().unwrap()])
        .unwrap()
        .remove(0)
        .to_vec();
    assert_eq!(&g[3..6], &[3.0, 3.0, 3.0]);
    assert_eq!(&g[9..12], &[0.0, 0.0, 0.0]); // id 3 unused
}

#[test]
fn dropout_with_a_fixed_mask() {
    let drop = built(Dropout::new(0.4).seed(3), &[6, 5], 0);
    let state = drop.state().unwrap();
    let reset = || drop.set_state(&state).unwrap();
    let x = Tensor::rand_normal(&[3, 6, 5], 0.0, 1.0, &mut Rng::seed_from_u64(4));
    check(&drop, &x, true, true, &reset);
    // The gradient is the mask itself: 0 or 1 / (1 - rate).
    reset();
    let tape = Tape::new();
    let xv = tape.watch_tensor(x.clone());
    let y = drop.call(&xv, true).unwrap();
    let g = tape.gradient_wrt(&y.sum_all(), &[&xv]).unwrap()[0]
        .clone()
        .unwrap();
    let kept = g.to_vec().iter().filter(|&&m| m != 0.0).count();
    assert!(
        g.to_vec()
            .iter()
            .all(|&m| m == 0.0 || (m - 1.0 / 0.6).abs() < 1e-6)
    );
    assert!((30..=70).contains(&kept), "kept {kept} of 90");
}

#[test]
fn lstm_on_a_longer_random_sequence() {
    let lstm = built(LSTM::new(6), &[12, 4], 5);
    let x = Tensor::rand_uniform(&[3, 12, 4], -1.0, 1.0, &mut Rng::seed_from_u64(6));
    assert!(check(&lstm, &x, true, true, &no_reset) > 400);
    let seq = built(LSTM::new(4).return_sequences(true), &[9, 3], 7);
    let x = Tensor::rand_uniform(&[2, 9, 3], -1.0, 1.0, &mut Rng::seed_from_u64(8));
    check(&seq, &x, true, true, &no_reset);
}

#[test]
fn lstm_with_other_activations_and_no_bias() {
    let lstm = built(
        LSTM::new(3)
            .activation("linear")
            .recurrent_activation("sigmoid")
            .use_bias(false)
            .return_sequences(true),
        &[5, 2],
        9,
    );
    let x = Tensor::rand_uniform(&[2, 5, 2], -1.0, 1.0, &mut Rng::seed_from_u64(10));
    check(&lstm, &x, true, true, &no_reset);
}

#[test]
fn dense_with_unfused_activations_and_3d_inputs() {
    for act in [
        "elu",
        "gelu",
        "softplus",
        "leaky_relu",
        "softmax",
        "sigmoid",
    ] {
        let dense = built(Dense::new(3).activation(act), &[4, 5], 11);
        // An input whose pre-activations stay 0.05 away from leaky_relu's kink: a step of
        // h = 1e-2 on a weight or an input moves them by at most 1e-2.
        let (k, b) = (
            dense.kernel().unwrap().value(),
            dense.bias().unwrap().value(),
        );
        let x = (0..100)
            .map(|seed| away_from_zero(&[2, 4, 5], 0.05, seed))
            .find(|x| {
                let z = x
                    .reshape(&[8, 5])
                    .unwrap()
                    .matmul(&k)
                    .unwrap()
                    .add(&b)
                    .unwrap();
                z.to_vec().iter().all(|z| z.abs() > 0.05)
            })
            .expect("an input away from the kink");
        check(&dense, &x, true, true, &no_reset);
    }
    let no_bias = built(Dense::new(2).use_bias(false).activation("tanh"), &[3], 13);
    check(
        &no_bias,
        &away_from_zero(&[4, 3], 0.05, 14),
        true,
        true,
        &no_reset,
    );
}

#[test]
fn conv2d_strided_same_with_fused_and_unfused_activations() {
    for act in ["tanh", "elu"] {
        let conv = built(
            Conv2D::new(3, (3, 2))
                .strides((2, 1))
                .padding("same")
                .activation(act),
            &[5, 4, 2],
            15,
        );
        let x = Tensor::rand_uniform(&[2, 5, 4, 2], -1.0, 1.0, &mut Rng::seed_from_u64(16));
        check(&conv, &x, true, true, &no_reset);
        // Without an input gradient, dz is formed inside the kernel sums.
        check(&conv, &x, true, false, &no_reset);
    }
}

#[test]
fn conv2d_first_layer_without_input_gradient() {
    // The kernel and bias gradients of a first layer (no input gradient: dz formed inside the
    // kernel sums) are the bits of the path that forms dz in full for the input gradient.
    for act in ["relu", "sigmoid", "linear"] {
        let conv = built(Conv2D::new(5, 3).activation(act), &[6, 7, 1], 21);
        let x = Tensor::rand_uniform(&[3, 6, 7, 1], -1.0, 1.0, &mut Rng::seed_from_u64(22));
        let w = Tensor::rand_uniform(&[3, 4, 5, 5], 0.5, 1.5, &mut Rng::seed_from_u64(23));
        let vars = conv.trainable_variables();
        let grads = |watch: bool| {
            let tape = Tape::new();
            let xv = if watch {
                tape.watch_tensor(x.clone())
            } else {
                tape.constant(x.clone())
            };
            let l = conv
                .call(&xv, true)
                .unwrap()
                .mul(&tape.constant(w.clone()))
                .unwrap()
                .sum_all();
            let g = tape.gradient(&l, &vars.iter().collect::<Vec<_>>()).unwrap();
            g.iter().map(Tensor::to_vec).collect::<Vec<_>>()
        };
        assert_eq!(grads(false), grads(true), "{act}");
        if act != "relu" {
            // (ReLU's kinks make central differences unreliable at random points.)
            assert!(check(&conv, &x, true, false, &no_reset) >= 50);
        }
    }
}

#[test]
fn regularization_loss_gradient() {
    let dense = built(
        Dense::new(3)
            .kernel_regularizer(gradus_layers::L1L2::new(0.01, 0.02))
            .bias_regularizer("l2")
            .bias_initializer("ones"),
        &[4],
        17,
    );
    let tape = Tape::new();
    let reg = dense.regularization_loss(Some(&tape)).unwrap().unwrap();
    let k = dense.kernel().unwrap().value().to_vec();
    let want: f32 = k.iter().map(|w| 0.01 * w.abs() + 0.02 * w * w).sum::<f32>() + 0.01 * 3.0;
    assert!((reg.item().unwrap() - want).abs() < 1e-6);
    let vars: Vec<Variable> = dense.trainable_variables();
    let g = tape
        .gradient(&reg, &vars.iter().collect::<Vec<_>>())
        .unwrap();
    for (gk, w) in g[0].to_vec().iter().zip(&k) {
        assert!((gk - (0.01 * w.signum() + 0.04 * w)).abs() < 1e-6);
    }
    assert_eq!(g[1].to_vec(), vec![0.02; 3]);
}
