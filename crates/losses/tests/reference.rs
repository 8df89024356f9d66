//! Every built-in loss against a naive reference that writes Keras' formula literally with
//! gradus-autograd operations (clip, log, softmax, ...), on random inputs, for every path:
//! from_logits, label smoothing, every reduction, sample weights, rank-1 / rank-3 shapes, and
//! the clip boundaries of probabilities. Gradients of the reference come from the tape; those of
//! the losses from their fused kernels. Then finite differences for each loss's gradient.
//!
//! Tolerance of the reference comparison: both sides are f32 computations of the same formula in
//! a different order (the fused kernels accumulate in f64), so they differ by a few f32 roundings
//! of O(1) terms, amplified at most by the O(10) factors `1 / p` for p >= 0.05: a relative 5e-5
//! (absolute 1e-6) covers that with margin, while a wrong rule (sign, factor, missing term, clip
//! mask) is off by O(1).

use gradus_autograd::gradcheck::check_gradients;
use gradus_autograd::{Tape, Var};
use gradus_losses::{
    BinaryCrossentropy, CategoricalCrossentropy, EPSILON, Huber, KLDivergence, Loss,
    MeanAbsoluteError, MeanSquaredError, Reduction, SparseCategoricalCrossentropy,
};
use gradus_tensor::{Rng, Tensor};

type Ref = Box<dyn for<'t> Fn(&Tensor, &Var<'t>) -> gradus_autograd::Result<Var<'t>>>;

const RTOL: f32 = 5e-5;
const ATOL: f32 = 1e-6;

fn close(got: &[f32], expected: &[f32]) -> Result<(), String> {
    if got.len() != expected.len() {
        return Err(format!("length {} vs {}", got.len(), expected.len()));
    }
    for (i, (&g, &e)) in got.iter().zip(expected).enumerate() {
        if (g - e).abs() > ATOL.max(RTOL * e.abs()) || g.is_nan() != e.is_nan() {
            return Err(format!("element {i}: {g} vs reference {e}"));
        }
    }
    Ok(())
}

fn one_hot(labels: &Tensor, classes: usize) -> Tensor {
    let mut shape = labels.shape().to_vec();
    shape.push(classes);
    let mut out = vec![0.0; labels.len() * classes];
    for (i, &k) in labels.to_vec().iter().enumerate() {
        out[i * classes + k as usize] = 1.0;
    }
    Tensor::from_vec(out, &shape).unwrap()
}

/// Keras' reduction written naively: `values * w` (w broadcast from `[batch]`), then the
/// reduction formula.
fn reduce_ref<'t>(values: Var<'t>, w: Option<&Tensor>, r: Reduction) -> Var<'t> {
    let values = match w {
        Some(w) => values.mul(&values.lift(w.clone())).unwrap(),
        None => values,
    };
    match r {
        Reduction::None => values,
        Reduction::Sum => values.sum_all(),
        Reduction::SumOverBatchSize => values.mean_all(),
        Reduction::MeanWithSampleWeight => match w {
            Some(w) => values.sum_all().div_scalar(w.sum_all()),
            None => values.mean_all(),
        },
    }
}

/// Compares `loss` with `reference` (per-sample) on `(y_true, y_pred)`: values and gradients,
/// for every reduction, without and with sample weights of the per-sample shape (`[batch]` for
/// 2-D predictions; as in Keras, a `[batch]` weight does not broadcast against `[batch, time]`).
fn check(loss: &dyn Loss, reference: &Ref, y_true: &Tensor, y_pred: &Tensor, what: &str) {
    let per_sample = &y_pred.shape()[..y_pred.ndim() - 1];
    let weights = Tensor::rand_uniform(per_sample, 0.0, 2.0, &mut Rng::seed_from_u64(9));
    for w in [None, Some(&weights)] {
        for r in [
            Reduction::SumOverBatchSize,
            Reduction::Sum,
            Reduction::None,
            Reduction::MeanWithSampleWeight,
        ] {
            let config = gradus_losses::LossConfig {
                reduction: r,
                ..loss.config()
            };
            let loss = gradus_losses::from_config(&config).unwrap();
            let tape = Tape::new();
            let p = tape.watch_tensor(y_pred.clone());
            let out = loss.call_weighted(y_true, &p, w).unwrap();
            let grad = tape.gradient_wrt(&out, &[&p]).unwrap()[0].clone().unwrap();

            let tape = Tape::new();
            let q = tape.watch_tensor(y_pred.clone());
            let per_sample = reference(y_true, &q).unwrap();
            let expected = reduce_ref(per_sample, w, r);
            let expected_grad = tape.gradient_wrt(&expected, &[&q]).unwrap()[0]
                .clone()
                .unwrap();

            let ctx = format!("{what}, {r}, weights: {}", w.is_some());
            assert_eq!(out.shape(), expected.shape(), "{ctx}");
            close(&out.value().to_vec(), &expected.value().to_vec())
                .unwrap_or_else(|e| panic!("{ctx}: value {e}"));
            close(&grad.to_vec(), &expected_grad.to_vec())
                .unwrap_or_else(|e| panic!("{ctx}: gradient {e}"));

            // Untracked: the same value, nothing recorded.
            let inference = loss.call_weighted(y_true, &Var::constant(y_pred.clone()), w);
            assert_eq!(inference.unwrap().value().to_vec(), out.value().to_vec());
        }
    }
}

fn rng() -> Rng {
    Rng::seed_from_u64(42)
}

/// Probabilities in `[lo, hi]` (not normalised).
fn probs(shape: &[usize], lo: f32, hi: f32, seed: u64) -> Tensor {
    Tensor::rand_uniform(shape, lo, hi, &mut Rng::seed_from_u64(seed))
}

/// Rows of a softmax, as a model's output layer gives them.
fn softmax_rows(shape: &[usize], seed: u64) -> Tensor {
    Tensor::rand_normal(shape, 0.0, 2.0, &mut Rng::seed_from_u64(seed))
        .softmax(-1)
        .unwrap()
}

fn binary_labels(shape: &[usize], seed: u64) -> Tensor {
    probs(shape, 0.0, 1.0, seed).map(|v| if v > 0.5 { 1.0 } else { 0.0 })
}

fn class_ids(n: usize, classes: usize, seed: u64) -> Tensor {
    probs(&[n], 0.0, classes as f32, seed).map(|v| v.floor().min(classes as f32 - 1.0))
}

fn mse_ref() -> Ref {
    Box::new(|t, p| p.sub(&p.lift(t.clone()))?.square().mean_axis(-1, false))
}

fn mae_ref() -> Ref {
    Box::new(|t, p| p.sub(&p.lift(t.clone()))?.abs().mean_axis(-1, false))
}

fn huber_ref(delta: f32) -> Ref {
    Box::new(move |t, p| {
        let e = p.sub(&p.lift(t.clone()))?;
        let quadratic = e.square().mul_scalar(0.5);
        let linear = e.abs().mul_scalar(delta).sub_scalar(0.5 * delta * delta);
        let inside = e.value().abs().map(|a| if a <= delta { 1.0 } else { 0.0 });
        let outside = inside.rsub_scalar(1.0);
        quadratic
            .mul(&p.lift(inside))?
            .add(&linear.mul(&p.lift(outside))?)?
            .mean_axis(-1, false)
    })
}

fn bce_ref(from_logits: bool, smoothing: f32) -> Ref {
    Box::new(move |t, p| {
        let z = p.lift(t.map(|z| z * (1.0 - smoothing) + 0.5 * smoothing));
        let per_element = if from_logits {
            // max(x, 0) - x z + ln(1 + e^-|x|)
            p.relu()
                .sub(&p.mul(&z)?)?
                .add(&p.abs().neg().exp().log1p())?
        } else {
            let u = p.clip(EPSILON, 1.0 - EPSILON);
            let one_minus_z = z.neg().add_scalar(1.0);
            z.mul(&u.ln())?
                .add(&one_minus_z.mul(&u.rsub_scalar(1.0).ln())?)?
                .neg()
        };
        per_element.mean_axis(-1, false)
    })
}

fn cce_ref(from_logits: bool, smoothing: f32) -> Ref {
    Box::new(move |t, p| {
        let c = t.shape()[t.ndim() - 1] as f32;
        let y = p.lift(t.map(|y| y * (1.0 - smoothing) + smoothing / c));
        let log_p = if from_logits {
            p.log_softmax(-1)?
        } else {
            let q = p.div(&p.sum_axis(-1, true)?)?;
            q.clip(EPSILON, 1.0 - EPSILON).ln()
        };
        y.mul(&log_p)?.sum_axis(-1, false).map(|v| v.neg())
    })
}

fn scce_ref(from_logits: bool) -> Ref {
    Box::new(move |t, p| {
        let c = p.shape()[p.ndim() - 1];
        let onehot = p.lift(one_hot(t, c));
        let logits = if from_logits {
            p.clone()
        } else {
            p.clip(EPSILON, 1.0 - EPSILON).ln()
        };
        onehot
            .mul(&logits.log_softmax(-1)?)?
            .sum_axis(-1, false)
            .map(|v| v.neg())
    })
}

fn kld_ref() -> Ref {
    Box::new(|t, p| {
        let t = p.lift(t.clip(EPSILON, 1.0));
        let u = p.clip(EPSILON, 1.0);
        t.mul(&t.ln().sub(&u.ln())?)?.sum_axis(-1, false)
    })
}

#[test]
fn regression_losses_match_their_formulas() {
    let mut r = rng();
    for shape in [&[6, 4][..], &[5, 1], &[3, 2, 5]] {
        let t = Tensor::rand_normal(shape, 0.0, 1.0, &mut r);
        let p = Tensor::rand_normal(shape, 0.0, 1.5, &mut r);
        check(&MeanSquaredError::new(), &mse_ref(), &t, &p, "mse");
        check(&MeanAbsoluteError::new(), &mae_ref(), &t, &p, "mae");
        check(&Huber::new(), &huber_ref(1.0), &t, &p, "huber");
        check(
            &Huber::new().delta(0.3),
            &huber_ref(0.3),
            &t,
            &p,
            "huber 0.3",
        );
        check(
            &KLDivergence::new(),
            &kld_ref(),
            &softmax_rows(shape, 3),
            &softmax_rows(shape, 4),
            "kld",
        );
    }
}

#[test]
fn binary_crossentropy_matches_its_formula() {
    let mut r = rng();
    for shape in [&[6, 1][..], &[4, 3], &[2, 3, 2]] {
        let z = binary_labels(shape, 5);
        let logits = Tensor::rand_normal(shape, 0.0, 3.0, &mut r);
        let p = logits.sigmoid();
        for s in [0.0, 0.2] {
            let what = format!("bce {shape:?} smoothing {s}");
            let bce = BinaryCrossentropy::new().label_smoothing(s);
            check(&bce, &bce_ref(false, s), &z, &p, &what);
            let bce = bce.from_logits(true);
            check(
                &bce,
                &bce_ref(true, s),
                &z,
                &logits,
                &format!("{what}, logits"),
            );
        }
    }
    // Soft labels too (the formula does not assume 0/1 labels).
    let z = probs(&[5, 2], 0.0, 1.0, 6);
    let p = probs(&[5, 2], 0.05, 0.95, 7);
    check(
        &BinaryCrossentropy::new(),
        &bce_ref(false, 0.0),
        &z,
        &p,
        "bce soft labels",
    );
}

#[test]
fn categorical_crossentropy_matches_its_formula() {
    let mut r = rng();
    for shape in [&[6, 4][..], &[2, 3, 5]] {
        let c = shape[shape.len() - 1];
        let n: usize = shape[..shape.len() - 1].iter().product();
        let y = one_hot(&class_ids(n, c, 8), c).reshape(shape).unwrap();
        let logits = Tensor::rand_normal(shape, 0.0, 2.0, &mut r);
        for s in [0.0, 0.1] {
            let what = format!("cce {shape:?} smoothing {s}");
            let cce = CategoricalCrossentropy::new().label_smoothing(s);
            check(
                &cce,
                &cce_ref(false, s),
                &y,
                &logits.softmax(-1).unwrap(),
                &what,
            );
            // Unnormalised probabilities: Keras divides by the row sum first.
            let raw = probs(shape, 0.05, 0.9, 10);
            check(
                &cce,
                &cce_ref(false, s),
                &y,
                &raw,
                &format!("{what}, unnormalised"),
            );
            let cce = cce.from_logits(true);
            check(
                &cce,
                &cce_ref(true, s),
                &y,
                &logits,
                &format!("{what}, logits"),
            );
        }
    }
    // Soft labels that do not sum to one: the gradient is the exact one, softmax sum(y) - y.
    let y = probs(&[4, 3], 0.0, 1.0, 11);
    let logits = Tensor::rand_normal(&[4, 3], 0.0, 2.0, &mut r);
    let cce = CategoricalCrossentropy::new().from_logits(true);
    check(&cce, &cce_ref(true, 0.0), &y, &logits, "cce soft labels");
}

#[test]
fn sparse_categorical_crossentropy_matches_its_formula() {
    let mut r = rng();
    let labels = class_ids(7, 5, 12);
    let logits = Tensor::rand_normal(&[7, 5], 0.0, 2.0, &mut r);
    let p = logits.softmax(-1).unwrap();
    check(
        &SparseCategoricalCrossentropy::new(),
        &scce_ref(false),
        &labels,
        &p,
        "scce",
    );
    let scce = SparseCategoricalCrossentropy::new().from_logits(true);
    check(&scce, &scce_ref(true), &labels, &logits, "scce logits");
    // Labels of shape [batch, 1] are the same labels.
    let column = labels.reshape(&[7, 1]).unwrap();
    let a = scce.call(&labels, &Var::constant(logits.clone())).unwrap();
    let b = scce.call(&column, &Var::constant(logits.clone())).unwrap();
    assert_eq!(a.item().unwrap(), b.item().unwrap());
    // Unnormalised probabilities: the clipped log-probabilities go through a softmax.
    let raw = probs(&[7, 5], 0.05, 0.9, 13);
    check(
        &SparseCategoricalCrossentropy::new(),
        &scce_ref(false),
        &labels,
        &raw,
        "scce raw",
    );
}

/// Probabilities exactly at and beyond the clip bounds: TensorFlow's `clip_by_value` passes the
/// gradient at the bounds (inclusive) and blocks it outside, as the reference's `clip` does.
#[test]
fn clip_boundaries_follow_tensorflow() {
    let hi = 1.0 - EPSILON;
    let edge = [0.0, EPSILON, 0.5, hi, 1.0, 2e-7, 0.9999999];
    let p = Tensor::from_vec(edge.to_vec(), &[7, 1]).unwrap();
    for z in [0.0, 1.0] {
        let labels = Tensor::full(&[7, 1], z);
        check(
            &BinaryCrossentropy::new(),
            &bce_ref(false, 0.0),
            &labels,
            &p,
            "bce edges",
        );
    }
    let tape = Tape::new();
    let x = tape.watch_tensor(p.clone());
    let loss = BinaryCrossentropy::new()
        .with_reduction(Reduction::Sum)
        .call(&Tensor::ones(&[7, 1]), &x)
        .unwrap();
    let g = tape.gradient_wrt(&loss, &[&x]).unwrap()[0]
        .clone()
        .unwrap()
        .to_vec();
    assert_eq!(g[0], 0.0, "below the clip range: no gradient");
    assert_eq!(g[4], 0.0, "above the clip range: no gradient");
    assert!(
        (g[1] + 1.0 / EPSILON).abs() < 1.0,
        "at the lower bound: -1/eps, got {}",
        g[1]
    );
    assert!(
        (g[3] + 1.0 / hi).abs() < 1e-5,
        "at the upper bound: -1/(1-eps), got {}",
        g[3]
    );
    // The loss itself saturates at -ln(1e-7).
    let loss = BinaryCrossentropy::new().call(
        &Tensor::ones(&[1, 1]),
        &Var::constant(Tensor::zeros(&[1, 1])),
    );
    assert!((loss.unwrap().item().unwrap() - 16.118_095).abs() < 1e-4);

    // Sparse and categorical: rows with exact 0 and 1 and boundary values.
    let rows = Tensor::from_vec(
        vec![0.0, 1.0, 0.0, EPSILON, hi, 0.0, 0.25, 0.5, 0.25],
        &[3, 3],
    )
    .unwrap();
    let labels = Tensor::from_vec(vec![1.0, 0.0, 2.0], &[3]).unwrap();
    check(
        &SparseCategoricalCrossentropy::new(),
        &scce_ref(false),
        &labels,
        &rows,
        "scce edges",
    );
    let y = one_hot(&labels, 3);
    check(
        &CategoricalCrossentropy::new(),
        &cce_ref(false, 0.0),
        &y,
        &rows,
        "cce edges",
    );
    let kl_true =
        Tensor::from_vec(vec![0.0, 1.0, 0.0, 0.2, 0.3, 0.5, 0.25, 0.5, 0.25], &[3, 3]).unwrap();
    check(
        &KLDivergence::new(),
        &kld_ref(),
        &kl_true,
        &rows,
        "kld edges",
    );
}

#[test]
fn sample_weights_of_rank_two_weight_each_element() {
    // Per-sample losses [batch, time] with weights [batch, time]; Keras divides by batch * time.
    let mut r = rng();
    let t = Tensor::rand_normal(&[3, 4, 2], 0.0, 1.0, &mut r);
    let p = Tensor::rand_normal(&[3, 4, 2], 0.0, 1.0, &mut r);
    let w = Tensor::rand_uniform(&[3, 4], 0.0, 1.0, &mut r);
    let per_sample = MeanSquaredError::new()
        .with_reduction(Reduction::None)
        .call(&t, &Var::constant(p.clone()))
        .unwrap();
    let expected = per_sample.value().mul(&w).unwrap().sum_all() / 12.0;
    let got = MeanSquaredError::new()
        .call_weighted(&t, &Var::constant(p), Some(&w))
        .unwrap()
        .item()
        .unwrap();
    assert!(
        (got - expected).abs() < 1e-6 * expected.abs().max(1.0),
        "{got} vs {expected}"
    );
    // A [batch, 1] weight against [batch] losses (Keras squeezes it).
    let t = Tensor::rand_normal(&[4, 3], 0.0, 1.0, &mut r);
    let p = Tensor::rand_normal(&[4, 3], 0.0, 1.0, &mut r);
    let w = Tensor::from_vec(vec![1.0, 0.0, 2.0, 0.5], &[4]).unwrap();
    let loss = MeanAbsoluteError::new();
    let a = loss
        .call_weighted(&t, &Var::constant(p.clone()), Some(&w))
        .unwrap();
    let b = loss
        .call_weighted(&t, &Var::constant(p), Some(&w.reshape(&[4, 1]).unwrap()))
        .unwrap();
    assert_eq!(a.item().unwrap(), b.item().unwrap());
}

#[test]
fn rank_one_predictions_give_a_scalar_as_keras() {
    // y_true [B] and y_pred [B]: Keras averages over the last (only) axis, so the "per-sample"
    // value is a scalar and every reduction returns it.
    let t = Tensor::from_vec(vec![0.0, 1.0, 2.0], &[3]).unwrap();
    let p = Tensor::from_vec(vec![1.0, 1.0, 1.0], &[3]).unwrap();
    for r in [Reduction::None, Reduction::Sum, Reduction::SumOverBatchSize] {
        let v = MeanSquaredError::new()
            .with_reduction(r)
            .call(&t, &Var::constant(p.clone()));
        let v = v.unwrap();
        assert_eq!(v.shape(), &[] as &[usize]);
        assert!((v.item().unwrap() - 2.0 / 3.0).abs() < 1e-7);
    }
    // [B] labels against [B, 1] predictions: per-sample [B].
    let p = p.reshape(&[3, 1]).unwrap();
    let none = MeanSquaredError::new().with_reduction(Reduction::None);
    let v = none.call(&t, &Var::constant(p)).unwrap();
    assert_eq!(v.value().to_vec(), vec![1.0, 0.0, 1.0]);
}

/// Finite differences of each loss (default reduction, with sample weights), inputs away from
/// kinks and clip bounds; gradcheck's default step and tolerance (see its docs).
#[test]
fn gradients_match_finite_differences() {
    let mut r = rng();
    let w = Tensor::rand_uniform(&[4], 0.5, 1.5, &mut r);
    let t = Tensor::rand_normal(&[4, 3], 0.0, 1.0, &mut r);
    // Regression inputs: |p - t| between 0.1 and 0.9 (MAE kink at 0) and not within 0.1 of delta
    // = 0.5 (Huber's switch).
    let offsets = Tensor::rand_uniform(&[4, 3], 0.1, 0.9, &mut r)
        .map(|d| if (d - 0.5).abs() < 0.1 { d + 0.25 } else { d });
    let signs = Tensor::rand_uniform(&[4, 3], -1.0, 1.0, &mut r).sign();
    let p_reg = t.add(&offsets.mul(&signs).unwrap()).unwrap();
    let probs_in = probs(&[4, 3], 0.1, 0.9, 20);
    let logits = Tensor::rand_normal(&[4, 3], 0.0, 2.0, &mut r);
    let bin = binary_labels(&[4, 3], 21);
    let onehot = one_hot(&class_ids(4, 3, 22), 3);
    let ids = class_ids(4, 3, 22);
    let soft = softmax_rows(&[4, 3], 23);

    let cases: Vec<(Box<dyn Loss>, &Tensor, &Tensor)> = vec![
        (Box::new(MeanSquaredError::new()), &t, &p_reg),
        (Box::new(MeanAbsoluteError::new()), &t, &p_reg),
        (Box::new(Huber::new().delta(0.5)), &t, &p_reg),
        (Box::new(BinaryCrossentropy::new()), &bin, &probs_in),
        (
            Box::new(BinaryCrossentropy::new().label_smoothing(0.2)),
            &bin,
            &probs_in,
        ),
        (
            Box::new(BinaryCrossentropy::new().from_logits(true)),
            &bin,
            &logits,
        ),
        (Box::new(CategoricalCrossentropy::new()), &onehot, &probs_in),
        (
            Box::new(CategoricalCrossentropy::new().label_smoothing(0.1)),
            &onehot,
            &probs_in,
        ),
        (
            Box::new(CategoricalCrossentropy::new().from_logits(true)),
            &soft,
            &logits,
        ),
        (
            Box::new(SparseCategoricalCrossentropy::new()),
            &ids,
            &probs_in,
        ),
        (
            Box::new(SparseCategoricalCrossentropy::new().from_logits(true)),
            &ids,
            &logits,
        ),
        (Box::new(KLDivergence::new()), &soft, &probs_in),
    ];
    for (loss, y_true, y_pred) in cases {
        for weights in [None, Some(&w)] {
            let report = check_gradients(std::slice::from_ref(y_pred), |v| {
                loss.call_weighted(y_true, &v[0], weights)
                    .map_err(|e| match e {
                        gradus_losses::LossError::Autograd(e) => e,
                        other => panic!("{other}"),
                    })
            })
            .unwrap();
            assert!(
                report.is_ok(),
                "{:?} weights {}: {report}",
                loss.config(),
                weights.is_some()
            );
        }
    }
}

/// Keras substitutes the logits of a softmax / sigmoid output for the probabilities: the
/// counterpart on logits equals the loss on probabilities while nothing saturates, and stays
/// exact (unclipped) when it does.
#[test]
fn logits_counterpart_matches_probabilities_until_saturation() {
    let mut r = rng();
    let logits = Tensor::rand_normal(&[5, 4], 0.0, 2.0, &mut r);
    let ids = class_ids(5, 4, 30);
    let onehot = one_hot(&ids, 4);
    let softmax = logits.softmax(-1).unwrap();
    let x = Var::constant(logits.clone());
    let pairs: Vec<(Box<dyn Loss>, &Tensor)> = vec![
        (Box::new(SparseCategoricalCrossentropy::new()), &ids),
        (
            Box::new(CategoricalCrossentropy::new().label_smoothing(0.1)),
            &onehot,
        ),
    ];
    for (loss, labels) in pairs {
        let counterpart = loss.logits_counterpart().unwrap();
        assert_eq!(counterpart.config().from_logits, Some(true));
        assert!(counterpart.logits_counterpart().is_none());
        let a = loss
            .call(labels, &Var::constant(softmax.clone()))
            .unwrap()
            .item()
            .unwrap();
        let b = counterpart.call(labels, &x).unwrap().item().unwrap();
        assert!((a - b).abs() < 1e-5 * b.abs(), "{a} vs {b}");
    }
    let z = binary_labels(&[5, 4], 31);
    let bce = BinaryCrossentropy::new();
    let a = bce
        .call(&z, &Var::constant(logits.sigmoid()))
        .unwrap()
        .item()
        .unwrap();
    let b = bce
        .logits_counterpart()
        .unwrap()
        .call(&z, &x)
        .unwrap()
        .item()
        .unwrap();
    assert!((a - b).abs() < 1e-5 * b.abs(), "{a} vs {b}");
    // Saturated: a logit margin of 40 for the wrong class. From probabilities the loss is capped
    // at -ln(1e-7) = 16.1; from logits it is the exact 40.
    let wrong = Tensor::from_vec(vec![40.0, 0.0], &[1, 2]).unwrap();
    let label = Tensor::from_vec(vec![1.0], &[1]).unwrap();
    let scce = SparseCategoricalCrossentropy::new();
    let capped = scce
        .call(&label, &Var::constant(wrong.softmax(-1).unwrap()))
        .unwrap();
    let exact = scce
        .logits_counterpart()
        .unwrap()
        .call(&label, &Var::constant(wrong))
        .unwrap();
    assert!((capped.item().unwrap() - 16.118_095).abs() < 1e-3);
    assert!((exact.item().unwrap() - 40.0).abs() < 1e-5);
    assert!(MeanSquaredError::new().logits_counterpart().is_none());
}

/// Keras' `ignore_class`: masked samples give 0 loss and 0 gradient; the default reduction
/// averages over the valid samples (`apply_mask` scales the mask by total / valid), `sum` sums
/// them, `mean_with_sample_weight` divides by the valid weights.
#[test]
fn ignore_class_masks_samples_as_keras() {
    let mut r = rng();
    let logits = Tensor::rand_normal(&[4, 3], 0.0, 2.0, &mut r);
    let labels = Tensor::from_vec(vec![0.0, 255.0, 2.0, 255.0], &[4]).unwrap();
    let w = Tensor::from_vec(vec![0.5, 3.0, 2.0, 1.0], &[4]).unwrap();
    // Per-sample losses of the valid samples, from the loss without ignore_class.
    let valid_labels = Tensor::from_vec(vec![0.0, 0.0, 2.0, 0.0], &[4]).unwrap();
    for from_logits in [true, false] {
        let x = if from_logits {
            logits.clone()
        } else {
            logits.softmax(-1).unwrap()
        };
        let plain = SparseCategoricalCrossentropy::new()
            .from_logits(from_logits)
            .with_reduction(Reduction::None);
        let per = plain
            .call(&valid_labels, &Var::constant(x.clone()))
            .unwrap()
            .into_value()
            .to_vec();
        let (l0, l2) = (per[0], per[2]);
        let masked = SparseCategoricalCrossentropy::new()
            .from_logits(from_logits)
            .ignore_class(Some(255));
        let expect = |r: Reduction, w: Option<&Tensor>| -> f32 {
            let (w0, w2) = w.map_or((1.0, 1.0), |w| (w.to_vec()[0], w.to_vec()[2]));
            match r {
                Reduction::SumOverBatchSize => (l0 * w0 + l2 * w2) / 2.0,
                Reduction::Sum => l0 * w0 + l2 * w2,
                Reduction::MeanWithSampleWeight => (l0 * w0 + l2 * w2) / (w0 + w2),
                Reduction::None => unreachable!(),
            }
        };
        for r in [
            Reduction::SumOverBatchSize,
            Reduction::Sum,
            Reduction::MeanWithSampleWeight,
        ] {
            for weights in [None, Some(&w)] {
                let loss = masked.clone().with_reduction(r);
                let tape = Tape::new();
                let p = tape.watch_tensor(x.clone());
                let v = loss.call_weighted(&labels, &p, weights).unwrap();
                let got = v.item().unwrap();
                let want = expect(r, weights);
                assert!(
                    (got - want).abs() < 1e-5 * want.abs(),
                    "{r} {from_logits}: {got} vs {want}"
                );
                let g = tape.gradient_wrt(&v, &[&p]).unwrap()[0]
                    .clone()
                    .unwrap()
                    .to_vec();
                assert!(g[3..6].iter().chain(&g[9..12]).all(|&v| v == 0.0), "{g:?}");
                assert!(g[0..3].iter().any(|&v| v != 0.0));
            }
        }
        let none = masked.clone().with_reduction(Reduction::None);
        let v = none
            .call(&labels, &Var::constant(x.clone()))
            .unwrap()
            .into_value()
            .to_vec();
        assert_eq!((v[1], v[3]), (0.0, 0.0));
        assert!((v[0] - l0).abs() < 1e-6 && (v[2] - l2).abs() < 1e-6);
        // A label out of range that is not the ignored one is still an error.
        let bad = Tensor::from_vec(vec![0.0, 3.0, 2.0, 255.0], &[4]).unwrap();
        assert!(masked.call(&bad, &Var::constant(x)).is_err());
    }
    let config = SparseCategoricalCrossentropy::new()
        .ignore_class(Some(255))
        .config();
    assert_eq!(config.ignore_class, Some(255));
    assert_eq!(
        gradus_losses::from_config(&config).unwrap().config(),
        config
    );
}
