//! Non-finite values that arise during training from finite data (an overflow): Keras' behaviour
//! without a guard, `TerminateOnNaN` keeping the last good weights, and dynamic loss scaling
//! (Keras' `LossScaleOptimizer`) skipping the non-finite step.

use gradus::layers::Dense;
use gradus::models::{FitOptions, Model, NO_METRICS, Sequential, TerminateOnNaN};
use gradus::optim::Optimizer;
use gradus::optim::rules::Sgd;
use gradus::tensor::Tensor;

/// 30 samples of 4 features; the last batch of 10 (samples 20..30) holds values so large that
/// the squared error overflows to infinity and its gradient too — all of them finite `f32`s.
fn data(poisoned: bool) -> (Tensor, Tensor) {
    let mut xs = Vec::with_capacity(120);
    for i in 0..30 {
        for j in 0..4 {
            let v = ((i * 4 + j) % 7) as f32 / 7.0 - 0.4;
            xs.push(if poisoned && i >= 20 { 1e36 } else { v });
        }
    }
    let ys = (0..30).map(|i| (i % 5) as f32 / 5.0).collect();
    (
        Tensor::from_vec(xs, &[30, 4]).unwrap(),
        Tensor::from_vec(ys, &[30, 1]).unwrap(),
    )
}

fn model(optimizer: Optimizer) -> Model<Sequential> {
    let mut m =
        Model::with_seed(Sequential::new().input_shape(&[4]).layer(Dense::new(1)), 3).unwrap();
    m.compile(optimizer, "mse", NO_METRICS).unwrap();
    m
}

fn sgd() -> Optimizer {
    Optimizer::builder(Sgd::default())
        .learning_rate(0.01)
        .build()
        .unwrap()
}

fn loss_scaled() -> Optimizer {
    Optimizer::builder(Sgd::default())
        .learning_rate(0.01)
        .dynamic_loss_scale(32768.0, 2000)
        .build()
        .unwrap()
}

fn options<'a>() -> FitOptions<'a> {
    FitOptions {
        batch_size: 10,
        epochs: 1,
        shuffle: false,
        verbose: 0,
        ..Default::default()
    }
}

fn bits(m: &Model<Sequential>) -> Vec<Vec<u32>> {
    m.get_weights()
        .iter()
        .map(|t| t.to_vec().iter().map(|v| v.to_bits()).collect())
        .collect()
}

/// The weights after the two good batches alone.
fn after_good_batches(optimizer: Optimizer) -> Vec<Vec<u32>> {
    let (x, y) = data(false);
    let mut m = model(optimizer);
    m.fit(
        &x.slice_axis(0, 0, 20).unwrap(),
        &y.slice_axis(0, 0, 20).unwrap(),
        options(),
    )
    .unwrap();
    bits(&m)
}

#[test]
fn without_a_guard_training_goes_on_as_in_keras() {
    let (x, y) = data(true);
    let mut m = model(sgd());
    let h = m.fit(&x, &y, options()).unwrap();
    assert!(!h["loss"][0].is_finite());
    assert!(
        m.get_weights()
            .iter()
            .any(|t| t.to_vec().iter().any(|v| !v.is_finite()))
    );
}

#[test]
fn terminate_on_nan_stops_with_the_last_good_weights() {
    let (x, y) = data(true);
    let mut m = model(sgd());
    let mut guard = TerminateOnNaN::new();
    let h = m
        .fit(
            &x,
            &y,
            FitOptions {
                epochs: 3,
                callbacks: vec![&mut guard],
                ..options()
            },
        )
        .unwrap();
    assert_eq!(guard.terminated_at, Some(2));
    assert_eq!(h.epoch, vec![0], "training stopped in the first epoch");
    assert!(!h["loss"][0].is_finite());
    assert_eq!(bits(&m), after_good_batches(sgd()));
    assert_eq!(m.optimizer().unwrap().iterations(), 2);
}

#[test]
fn loss_scaling_skips_the_non_finite_step() {
    let (x, y) = data(true);
    let mut m = model(loss_scaled());
    m.fit(&x, &y, options()).unwrap();
    assert!(
        m.get_weights()
            .iter()
            .all(|t| t.to_vec().iter().all(|v| v.is_finite()))
    );
    assert_eq!(bits(&m), after_good_batches(loss_scaled()));
    assert_eq!(m.optimizer().unwrap().dynamic_scale(), Some(16384.0));
}
