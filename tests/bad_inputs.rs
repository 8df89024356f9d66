//! A catalogue of wrong calls across the public API of gradus.
//!
//! Every case asserts the specific error (its variant, and that its message names what was
//! expected and what came) and that nothing changed: the model under test has a twin built and
//! trained identically that never sees the bad call; after the call both must hold bit-identical
//! weights, optimizer variables and iteration counts, and one more epoch of training (shuffling
//! and dropout included) must keep them bit-identical — so the RNG and layer states were left
//! as they were too.

use std::fmt::Display;
use std::path::{Path, PathBuf};

use gradus::autograd::Var;
use gradus::datasets::{self, CsvOptions, DatasetError};
use gradus::layers::{Conv2D, Dense, Dropout, Layer, LayerError, LayerExt};
use gradus::losses::LossError;
use gradus::models::{
    Callback, FitOptions, LearningRateScheduler, Logs, Model, ModelCheckpoint, ModelError,
    NO_METRICS, Network, Sequential, TrainContext, ValidationFreq,
};
use gradus::optim::rules::{Adam, Sgd};
use gradus::optim::{OptimError, Optimizer, OptimizerConfig};
use gradus::tensor::{Rng, Tensor, TensorError};

// ---------------------------------------------------------------------------------------------
// The harness.
// ---------------------------------------------------------------------------------------------

/// Three noisy classes in 4-D: `n` samples, labels `i % 3`.
fn data(n: usize) -> (Tensor, Tensor) {
    let mut rng = Rng::seed_from_u64(11);
    let mut xs = Vec::with_capacity(4 * n);
    let mut ys = Vec::with_capacity(n);
    for i in 0..n {
        for j in 0..4 {
            xs.push(if j == i % 3 { 2.0 } else { 0.0 } + 0.5 * rng.normal_f32());
        }
        ys.push((i % 3) as f32);
    }
    (
        Tensor::from_vec(xs, &[n, 4]).unwrap(),
        Tensor::from_vec(ys, &[n]).unwrap(),
    )
}

fn net() -> Sequential {
    Sequential::new()
        .input_shape(&[4])
        .layer(Dense::new(8).activation("relu").with_name("hidden"))
        .layer(Dropout::new(0.25).seed(5))
        .layer(Dense::new(3).activation("softmax").with_name("out"))
}

fn adam() -> Optimizer {
    Optimizer::builder(Adam::default())
        .learning_rate(0.01)
        .build()
        .unwrap()
}

fn quiet<'a>(epochs: usize) -> FitOptions<'a> {
    FitOptions {
        epochs,
        verbose: 0,
        batch_size: 8,
        ..Default::default()
    }
}

/// A compiled model trained for one epoch, so that the optimizer holds state.
fn trained() -> Model<Sequential> {
    let mut m = Model::with_seed(net(), 7).unwrap();
    m.compile(adam(), "sparse_categorical_crossentropy", ["accuracy"])
        .unwrap();
    let (x, y) = data(30);
    m.fit(&x, &y, quiet(1)).unwrap();
    m
}

/// The model that receives the bad call, and its twin that does not.
fn twin() -> (Model<Sequential>, Model<Sequential>) {
    (trained(), trained())
}

fn bits(ts: &[Tensor]) -> Vec<Vec<u32>> {
    ts.iter()
        .map(|t| t.to_vec().iter().map(|v| v.to_bits()).collect())
        .collect()
}

/// Everything observable of a model's trained state, bit for bit.
#[derive(Debug, PartialEq)]
struct Snapshot {
    weights: Vec<Vec<u32>>,
    optimizer: Vec<(String, Vec<usize>, Vec<u32>)>,
    iterations: Option<u64>,
    learning_rate: Option<u32>,
}

fn snapshot<N: Network>(m: &Model<N>) -> Snapshot {
    let optimizer = m
        .optimizer()
        .map(|o| {
            o.variables()
                .into_iter()
                .map(|v| {
                    (
                        v.name.clone(),
                        v.shape.clone(),
                        v.values.iter().map(|x| x.to_bits()).collect(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Snapshot {
        weights: bits(&m.get_weights()),
        optimizer,
        iterations: m.optimizer().map(Optimizer::iterations),
        learning_rate: m.optimizer().map(|o| o.learning_rate().to_bits()),
    }
}

/// `a` (which received a bad call) is exactly as its twin `b`: same weights, optimizer variables
/// and iterations, and one more epoch of shuffled training with dropout keeps them identical.
fn assert_untouched(a: &mut Model<Sequential>, b: &mut Model<Sequential>) {
    assert_eq!(snapshot(a), snapshot(b), "the bad call changed the model");
    let (x, y) = data(30);
    let ha = a.fit(&x, &y, quiet(1)).unwrap();
    let hb = b.fit(&x, &y, quiet(1)).unwrap();
    assert_eq!(
        ha, hb,
        "the bad call changed the training history that follows"
    );
    assert_eq!(
        snapshot(a),
        snapshot(b),
        "the bad call changed the RNG or layer states"
    );
}

/// The message names every one of `parts` (what was expected and what came).
fn names(e: &impl Display, parts: &[&str]) {
    let msg = e.to_string();
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} should name {p:?}");
    }
}

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gradus-bad-inputs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn labels(values: Vec<f32>) -> Tensor {
    let n = values.len();
    Tensor::from_vec(values, &[n]).unwrap()
}

// ---------------------------------------------------------------------------------------------
// fit: data that does not fit.
// ---------------------------------------------------------------------------------------------

#[test]
fn fit_x_and_y_of_different_lengths() {
    let (mut a, mut b) = twin();
    let (x, y) = data(30);
    let e = a
        .fit(&x, &y.slice_axis(0, 0, 20).unwrap(), quiet(1))
        .unwrap_err();
    assert!(
        matches!(
            e,
            ModelError::LengthMismatch {
                op: "fit",
                x: 30,
                y: 20
            }
        ),
        "{e:?}"
    );
    names(&e, &["30", "20"]);
    assert_untouched(&mut a, &mut b);
}

#[test]
fn fit_samples_of_the_wrong_feature_shape() {
    let (mut a, mut b) = twin();
    let (_, y) = data(30);
    let e = a.fit(&Tensor::zeros(&[30, 5]), &y, quiet(1)).unwrap_err();
    assert!(
        matches!(&e, ModelError::FeatureShape { expected, got, .. } if expected == &[4] && got == &[30, 5]),
        "{e:?}"
    );
    names(&e, &["[4]", "[30, 5]"]);
    assert_untouched(&mut a, &mut b);
}

#[test]
fn fit_samples_of_the_wrong_rank() {
    let (mut a, mut b) = twin();
    let (_, y) = data(30);
    let e = a
        .fit(&Tensor::zeros(&[30, 2, 2]), &y, quiet(1))
        .unwrap_err();
    assert!(matches!(e, ModelError::FeatureShape { .. }), "{e:?}");
    names(&e, &["[4]", "[30, 2, 2]"]);
    assert_untouched(&mut a, &mut b);
}

#[test]
fn fit_on_an_empty_dataset() {
    let (mut a, mut b) = twin();
    let e = a
        .fit(&Tensor::zeros(&[0, 4]), &Tensor::zeros(&[0]), quiet(1))
        .unwrap_err();
    assert!(
        matches!(e, ModelError::EmptyData { op: "fit", .. }),
        "{e:?}"
    );
    names(&e, &["at least one sample", "[0, 4]"]);
    assert_untouched(&mut a, &mut b);
}

#[test]
fn fit_with_scalar_labels() {
    let (mut a, mut b) = twin();
    let (x, _) = data(30);
    let e = a.fit(&x, &Tensor::scalar(1.0), quiet(1)).unwrap_err();
    assert!(matches!(e, ModelError::EmptyData { .. }), "{e:?}");
    names(&e, &["y of shape []", "sample axis"]);
    assert_untouched(&mut a, &mut b);
}

#[test]
fn fit_with_a_label_out_of_range_in_the_last_batch() {
    let (mut a, mut b) = twin();
    let (x, y) = data(30);
    let mut ys = y.to_vec();
    ys[29] = 7.0;
    // Unshuffled, so three batches train before the bad one: they must be undone.
    let opts = FitOptions {
        shuffle: false,
        ..quiet(2)
    };
    let e = a.fit(&x, &labels(ys), opts).unwrap_err();
    assert!(
        matches!(
            e,
            ModelError::Loss(LossError::LabelOutOfRange { classes: 3, .. })
        ),
        "{e:?}"
    );
    names(&e, &["0..3", "got 7"]);
    assert_untouched(&mut a, &mut b);
}

#[test]
fn fit_with_a_negative_label() {
    let (mut a, mut b) = twin();
    let (x, y) = data(30);
    let mut ys = y.to_vec();
    ys[3] = -1.0;
    let e = a.fit(&x, &labels(ys), quiet(1)).unwrap_err();
    assert!(
        matches!(e, ModelError::Loss(LossError::LabelOutOfRange { .. })),
        "{e:?}"
    );
    names(&e, &["0..3", "-1"]);
    assert_untouched(&mut a, &mut b);
}

#[test]
fn fit_with_a_fractional_label() {
    let (mut a, mut b) = twin();
    let (x, y) = data(30);
    let mut ys = y.to_vec();
    ys[4] = 1.5;
    let e = a.fit(&x, &labels(ys), quiet(1)).unwrap_err();
    assert!(
        matches!(e, ModelError::Loss(LossError::LabelOutOfRange { .. })),
        "{e:?}"
    );
    names(&e, &["integer class ids", "1.5"]);
    assert_untouched(&mut a, &mut b);
}

#[test]
fn fit_with_nan_in_x() {
    let (mut a, mut b) = twin();
    let (x, y) = data(30);
    let mut xs = x.to_vec();
    xs[4 * 17 + 2] = f32::NAN;
    let e = a
        .fit(&Tensor::from_vec(xs, &[30, 4]).unwrap(), &y, quiet(1))
        .unwrap_err();
    assert!(
        matches!(&e, ModelError::NonFinite { op: "fit", what, .. } if what == "x"),
        "{e:?}"
    );
    names(&e, &["finite", "NaN", "sample 17"]);
    assert_untouched(&mut a, &mut b);
}

#[test]
fn fit_with_infinity_in_y() {
    let mut a = Model::with_seed(net(), 7).unwrap();
    let mut b = Model::with_seed(net(), 7).unwrap();
    for m in [&mut a, &mut b] {
        m.compile(adam(), "mse", NO_METRICS).unwrap();
    }
    let (x, _) = data(30);
    let mut ys = vec![0.0f32; 90];
    ys[3 * 5 + 1] = f32::INFINITY;
    let e = a
        .fit(&x, &Tensor::from_vec(ys, &[30, 3]).unwrap(), quiet(1))
        .unwrap_err();
    assert!(
        matches!(&e, ModelError::NonFinite { what, .. } if what == "y"),
        "{e:?}"
    );
    names(&e, &["finite", "inf", "sample 5"]);
    assert_eq!(snapshot(&a), snapshot(&b));
}

#[test]
fn fit_with_nan_in_validation_data() {
    let (mut a, mut b) = twin();
    let (x, y) = data(30);
    let (xv, yv) = data(6);
    let mut xs = xv.to_vec();
    xs[0] = f32::NEG_INFINITY;
    let xv = Tensor::from_vec(xs, &[6, 4]).unwrap();
    let opts = FitOptions {
        validation_data: Some((&xv, &yv)),
        ..quiet(1)
    };
    let e = a.fit(&x, &y, opts).unwrap_err();
    assert!(matches!(e, ModelError::NonFinite { .. }), "{e:?}");
    names(&e, &["validation", "-inf", "sample 0"]);
    assert_untouched(&mut a, &mut b);
}

#[test]
fn fit_with_mismatched_validation_data() {
    let (mut a, mut b) = twin();
    let (x, y) = data(30);
    let (xv, yv) = data(6);
    let yv = yv.slice_axis(0, 0, 5).unwrap();
    let opts = FitOptions {
        validation_data: Some((&xv, &yv)),
        ..quiet(1)
    };
    let e = a.fit(&x, &y, opts).unwrap_err();
    assert!(
        matches!(
            e,
            ModelError::LengthMismatch {
                op: "fit (validation_data)",
                x: 6,
                y: 5
            }
        ),
        "{e:?}"
    );
    names(&e, &["6 and 5"]);
    assert_untouched(&mut a, &mut b);
}

#[test]
fn fit_with_validation_data_of_the_wrong_feature_shape() {
    let (mut a, mut b) = twin();
    let (x, y) = data(30);
    let xv = Tensor::zeros(&[6, 3]);
    let (_, yv) = data(6);
    let opts = FitOptions {
        validation_data: Some((&xv, &yv)),
        ..quiet(1)
    };
    let e = a.fit(&x, &y, opts).unwrap_err();
    assert!(matches!(e, ModelError::FeatureShape { .. }), "{e:?}");
    names(&e, &["[4]", "[6, 3]"]);
    assert_untouched(&mut a, &mut b);
}

// ---------------------------------------------------------------------------------------------
// fit: arguments out of range.
// ---------------------------------------------------------------------------------------------

fn invalid_fit_argument(opts: FitOptions<'_>, name: &str, got: &str) {
    let (mut a, mut b) = twin();
    let (x, y) = data(30);
    let e = a.fit(&x, &y, opts).unwrap_err();
    assert!(
        matches!(&e, ModelError::InvalidArgument { name: n, .. } if *n == name),
        "{e:?}"
    );
    names(&e, &[name, "expected", got]);
    assert_untouched(&mut a, &mut b);
}

#[test]
fn fit_with_a_validation_split_of_one() {
    invalid_fit_argument(
        FitOptions {
            validation_split: 1.0,
            ..quiet(1)
        },
        "validation_split",
        "got 1",
    );
}

#[test]
fn fit_with_a_nan_validation_split() {
    invalid_fit_argument(
        FitOptions {
            validation_split: f64::NAN,
            ..quiet(1)
        },
        "validation_split",
        "got NaN",
    );
}

#[test]
fn fit_with_batch_size_zero() {
    invalid_fit_argument(
        FitOptions {
            batch_size: 0,
            ..quiet(1)
        },
        "batch_size",
        "got 0",
    );
}

#[test]
fn fit_with_validation_batch_size_zero() {
    invalid_fit_argument(
        FitOptions {
            validation_batch_size: Some(0),
            validation_split: 0.2,
            ..quiet(1)
        },
        "batch_size",
        "got 0",
    );
}

#[test]
fn fit_with_validation_every_zero_epochs() {
    invalid_fit_argument(
        FitOptions {
            validation_freq: ValidationFreq::Every(0),
            ..quiet(1)
        },
        "validation_freq",
        "got 0",
    );
}

#[test]
fn fit_with_a_validation_split_that_leaves_no_training_sample() {
    let (mut a, mut b) = twin();
    let (x, y) = data(1);
    let opts = FitOptions {
        validation_split: 0.5,
        ..quiet(1)
    };
    let e = a.fit(&x, &y, opts).unwrap_err();
    assert!(matches!(e, ModelError::EmptyData { .. }), "{e:?}");
    names(&e, &["0 training", "1 samples", "validation_split 0.5"]);
    assert_untouched(&mut a, &mut b);
}

#[test]
fn fit_before_compile() {
    let mut a = Model::new(net()).unwrap();
    let before = snapshot(&a);
    let (x, y) = data(30);
    let e = a.fit(&x, &y, quiet(1)).unwrap_err();
    assert!(matches!(e, ModelError::NotCompiled { op: "fit" }), "{e:?}");
    names(&e, &["not compiled", "compile("]);
    assert_eq!(snapshot(&a), before);
}

/// A callback whose learning-rate schedule answers a negative rate at the second epoch.
#[test]
fn fit_with_a_schedule_answering_a_negative_learning_rate() {
    let (mut a, mut b) = twin();
    let (x, y) = data(30);
    let mut schedule = LearningRateScheduler::new(|epoch, lr| if epoch == 1 { -1.0 } else { lr });
    let opts = FitOptions {
        callbacks: vec![&mut schedule],
        ..quiet(2)
    };
    let e = a.fit(&x, &y, opts).unwrap_err();
    assert!(matches!(e, ModelError::Optim(_)), "{e:?}");
    names(&e, &["learning", "-1"]);
    assert_untouched(&mut a, &mut b);
}

/// A callback that fails at the end of the second epoch: the first epoch is undone.
#[derive(Debug)]
struct FailsAtEpoch(usize);

impl Callback for FailsAtEpoch {
    fn on_epoch_end(
        &mut self,
        epoch: usize,
        _: &mut Logs,
        _: &mut TrainContext<'_>,
    ) -> gradus::models::Result<()> {
        if epoch == self.0 {
            return Err(ModelError::InvalidArgument {
                name: "epoch",
                expected: "fewer epochs".into(),
                got: epoch.to_string(),
            });
        }
        Ok(())
    }
}

#[test]
fn fit_with_a_failing_callback() {
    let (mut a, mut b) = twin();
    let (x, y) = data(30);
    let mut cb = FailsAtEpoch(1);
    let opts = FitOptions {
        callbacks: vec![&mut cb],
        ..quiet(3)
    };
    let e = a.fit(&x, &y, opts).unwrap_err();
    assert!(matches!(
        e,
        ModelError::InvalidArgument { name: "epoch", .. }
    ));
    names(&e, &["fewer epochs", "got 1"]);
    assert_untouched(&mut a, &mut b);
}

// ---------------------------------------------------------------------------------------------
// evaluate and predict.
// ---------------------------------------------------------------------------------------------

#[test]
fn evaluate_x_and_y_of_different_lengths() {
    let (mut a, mut b) = twin();
    let (x, y) = data(30);
    let e = a
        .evaluate(&x.slice_axis(0, 0, 12).unwrap(), &y, 8)
        .unwrap_err();
    assert!(
        matches!(
            e,
            ModelError::LengthMismatch {
                op: "evaluate",
                x: 12,
                y: 30
            }
        ),
        "{e:?}"
    );
    names(&e, &["12 and 30"]);
    assert_untouched(&mut a, &mut b);
}

#[test]
fn evaluate_with_batch_size_zero() {
    let (mut a, mut b) = twin();
    let (x, y) = data(30);
    let e = a.evaluate(&x, &y, 0).unwrap_err();
    assert!(
        matches!(
            e,
            ModelError::InvalidArgument {
                name: "batch_size",
                ..
            }
        ),
        "{e:?}"
    );
    names(&e, &["positive", "got 0"]);
    assert_untouched(&mut a, &mut b);
}

#[test]
fn evaluate_with_labels_out_of_range() {
    let (mut a, mut b) = twin();
    let (x, _) = data(30);
    let e = a.evaluate(&x, &labels(vec![3.0; 30]), 8).unwrap_err();
    assert!(
        matches!(e, ModelError::Loss(LossError::LabelOutOfRange { .. })),
        "{e:?}"
    );
    names(&e, &["0..3", "got 3"]);
    assert_untouched(&mut a, &mut b);
}

#[test]
fn predict_samples_of_the_wrong_feature_shape() {
    let (mut a, mut b) = twin();
    let e = a.predict(&Tensor::zeros(&[5, 7]), 8).unwrap_err();
    assert!(
        matches!(e, ModelError::FeatureShape { op: "predict", .. }),
        "{e:?}"
    );
    names(&e, &["[4]", "[5, 7]"]);
    assert_untouched(&mut a, &mut b);
}

#[test]
fn predict_on_no_samples() {
    let (mut a, mut b) = twin();
    let e = a.predict(&Tensor::zeros(&[0, 4]), 8).unwrap_err();
    assert!(
        matches!(e, ModelError::EmptyData { op: "predict", .. }),
        "{e:?}"
    );
    names(&e, &["at least one sample", "[0, 4]"]);
    assert_untouched(&mut a, &mut b);
}

#[test]
fn predict_on_a_scalar() {
    let (mut a, mut b) = twin();
    let e = a.predict(&Tensor::scalar(2.0), 8).unwrap_err();
    assert!(matches!(e, ModelError::FeatureShape { .. }), "{e:?}");
    names(&e, &["[4]", "got x of shape []"]);
    assert_untouched(&mut a, &mut b);
}

// ---------------------------------------------------------------------------------------------
// compile: unknown names and invalid hyperparameters (the previous compile and its state kept).
// ---------------------------------------------------------------------------------------------

#[test]
fn compile_with_an_unknown_optimizer() {
    let (mut a, mut b) = twin();
    let e = a
        .compile("adamw2", "sparse_categorical_crossentropy", NO_METRICS)
        .unwrap_err();
    assert!(
        matches!(&e, ModelError::Optim(OptimError::UnknownOptimizer { name, .. }) if name == "adamw2"),
        "{e:?}"
    );
    names(&e, &["adamw2", "adam", "sgd"]);
    assert_untouched(&mut a, &mut b);
}

#[test]
fn compile_with_an_unknown_loss() {
    let (mut a, mut b) = twin();
    let e = a.compile(adam(), "hinge_squared", NO_METRICS).unwrap_err();
    assert!(
        matches!(&e, ModelError::Loss(LossError::UnknownName { kind: "loss", name, .. }) if name == "hinge_squared"),
        "{e:?}"
    );
    names(&e, &["hinge_squared", "mean_squared_error"]);
    assert_untouched(&mut a, &mut b);
}

#[test]
fn compile_with_an_unknown_metric() {
    let (mut a, mut b) = twin();
    let e = a
        .compile(adam(), "sparse_categorical_crossentropy", ["f7_score"])
        .unwrap_err();
    assert!(
        matches!(&e, ModelError::Loss(LossError::UnknownName { kind: "metric", name, .. }) if name == "f7_score"),
        "{e:?}"
    );
    names(&e, &["f7_score", "accuracy"]);
    assert_untouched(&mut a, &mut b);
}

fn invalid_hyperparameter(result: Result<Optimizer, OptimError>, name: &str, got: &str) {
    let e = result.unwrap_err();
    assert!(
        matches!(&e, OptimError::InvalidHyperparameter { name: n, .. } if *n == name),
        "{e:?}"
    );
    names(&e, &[name, "expected", got]);
}

#[test]
fn optimizer_with_a_negative_learning_rate() {
    invalid_hyperparameter(
        Optimizer::builder(Sgd::default())
            .learning_rate(-0.1)
            .build(),
        "learning_rate",
        "-0.1",
    );
}

#[test]
fn optimizer_with_beta_1_above_one() {
    let rule = Adam {
        beta_1: 1.5,
        ..Adam::default()
    };
    invalid_hyperparameter(Optimizer::builder(rule).build(), "beta_1", "1.5");
}

#[test]
fn optimizer_with_a_nan_weight_decay() {
    invalid_hyperparameter(
        Optimizer::builder(Sgd::default())
            .weight_decay(f64::NAN)
            .build(),
        "weight_decay",
        "NaN",
    );
}

#[test]
fn optimizer_with_ema_momentum_above_one() {
    invalid_hyperparameter(
        Optimizer::builder(Sgd::default()).ema(1.5).build(),
        "ema_momentum",
        "1.5",
    );
}

#[test]
fn optimizer_with_two_clipping_options() {
    let e = Optimizer::builder(Sgd::default())
        .clipnorm(1.0)
        .clipvalue(0.5)
        .build()
        .unwrap_err();
    assert!(
        matches!(e, OptimError::ConflictingClipOptions { .. }),
        "{e:?}"
    );
    names(&e, &["at most one", "clipnorm and clipvalue"]);
}

#[test]
fn optimizer_config_of_garbage_json() {
    let e = OptimizerConfig::from_json("{\"rule\": 3").unwrap_err();
    assert!(matches!(e, OptimError::Json(_)), "{e:?}");
    names(&e, &["JSON", "expected", "integer `3`"]);
}

#[test]
fn optimizer_set_weights_of_the_wrong_count() {
    let (mut a, mut b) = twin();
    let opt = a.optimizer_mut().unwrap();
    let n = opt.variables().len();
    let e = opt
        .set_weights(&[(vec![1usize], vec![0.0f32])])
        .unwrap_err();
    assert!(
        matches!(e, OptimError::WeightCount { expected, got: 1 } if expected == n),
        "{e:?}"
    );
    names(&e, &[&format!("expected {n}"), "got 1"]);
    assert_untouched(&mut a, &mut b);
}

#[test]
fn optimizer_set_weights_of_the_wrong_shape() {
    let (mut a, mut b) = twin();
    let opt = a.optimizer_mut().unwrap();
    let mut weights: Vec<(Vec<usize>, Vec<f32>)> = opt
        .variables()
        .into_iter()
        .map(|v| (v.shape, v.values))
        .collect();
    // Every weight right but the last, which is transposed.
    let last = weights.last_mut().unwrap();
    last.0.reverse();
    last.0.push(2);
    let e = opt.set_weights(&weights).unwrap_err();
    assert!(matches!(e, OptimError::WeightShape { .. }), "{e:?}");
    names(&e, &["has shape", "got shape"]);
    assert_untouched(&mut a, &mut b);
}

// ---------------------------------------------------------------------------------------------
// set_weights and building.
// ---------------------------------------------------------------------------------------------

#[test]
fn set_weights_of_the_wrong_count() {
    let (mut a, mut b) = twin();
    let mut w = a.get_weights();
    w.pop();
    let e = a.set_weights(&w).unwrap_err();
    assert!(matches!(e, ModelError::Mismatch { .. }), "{e:?}");
    names(&e, &["4 tensors (one per variable)", "got 3 tensors"]);
    assert_untouched(&mut a, &mut b);
}

#[test]
fn set_weights_with_one_shape_wrong() {
    let (mut a, mut b) = twin();
    // Every weight zero, the last one of the wrong shape: nothing may be assigned.
    let mut w: Vec<Tensor> = a
        .get_weights()
        .iter()
        .map(|t| Tensor::zeros(t.shape()))
        .collect();
    w[3] = Tensor::zeros(&[4]);
    let e = a.set_weights(&w).unwrap_err();
    assert!(matches!(e, ModelError::Mismatch { .. }), "{e:?}");
    names(&e, &["out/bias", "[3]", "[4]"]);
    assert_untouched(&mut a, &mut b);
}

#[test]
fn set_weights_before_build() {
    let m = Model::new(Sequential::new().layer(Dense::new(3))).unwrap();
    let e = m.set_weights(&[Tensor::zeros(&[4, 3])]).unwrap_err();
    assert!(
        matches!(e, ModelError::NotBuilt { op: "set_weights" }),
        "{e:?}"
    );
    names(&e, &["not built", "input shape"]);
}

#[test]
fn layer_set_weights_of_the_wrong_count() {
    let mut layer = Dense::new(2);
    layer.build(&[3], &mut Rng::seed_from_u64(0)).unwrap();
    let before = bits(&layer.get_weights());
    let e = layer.set_weights(&[Tensor::zeros(&[3, 2])]).unwrap_err();
    assert!(
        matches!(
            e,
            LayerError::WeightCount {
                expected: 2,
                got: 1,
                ..
            }
        ),
        "{e:?}"
    );
    names(&e, &["expected 2", "got 1"]);
    assert_eq!(bits(&layer.get_weights()), before);
}

#[test]
fn dense_with_zero_units() {
    let e = Model::new(Sequential::new().input_shape(&[4]).layer(Dense::new(0))).unwrap_err();
    assert!(
        matches!(e, ModelError::Layer(LayerError::InvalidArgument { .. })),
        "{e:?}"
    );
    names(&e, &["units", "0"]);
}

#[test]
fn dense_with_an_unknown_activation() {
    let layer = Dense::new(3).activation("relu7");
    let e = Model::new(Sequential::new().input_shape(&[4]).layer(layer)).unwrap_err();
    assert!(
        matches!(&e, ModelError::Layer(LayerError::UnknownName { kind: "activation", name, .. }) if name == "relu7"),
        "{e:?}"
    );
    names(&e, &["relu7", "sigmoid"]);
}

#[test]
fn dense_with_an_unknown_initializer() {
    let layer = Dense::new(3).kernel_initializer("glorot_gaussian");
    let e = Model::new(Sequential::new().input_shape(&[4]).layer(layer)).unwrap_err();
    assert!(
        matches!(&e, ModelError::Layer(LayerError::UnknownName { name, .. }) if name == "glorot_gaussian"),
        "{e:?}"
    );
    names(&e, &["glorot_gaussian", "glorot_uniform"]);
}

#[test]
fn dropout_with_a_rate_of_one_and_a_half() {
    let net = Sequential::new().input_shape(&[4]).layer(Dropout::new(1.5));
    let e = Model::new(net).unwrap_err();
    assert!(
        matches!(e, ModelError::Layer(LayerError::InvalidArgument { .. })),
        "{e:?}"
    );
    names(&e, &["rate", "1.5"]);
}

#[test]
fn conv2d_on_flat_samples() {
    let net = Sequential::new().input_shape(&[4]).layer(Conv2D::new(2, 3));
    let e = Model::new(net).unwrap_err();
    assert!(
        matches!(e, ModelError::Layer(LayerError::InputShape { .. })),
        "{e:?}"
    );
    names(&e, &["conv2d", "[4]"]);
}

#[test]
fn conv2d_kernel_larger_than_the_image() {
    let net = Sequential::new()
        .input_shape(&[2, 2, 1])
        .layer(Conv2D::new(2, 3));
    let e = Model::new(net).unwrap_err();
    assert!(matches!(e, ModelError::Layer(_)), "{e:?}");
    names(&e, &["3", "[2, 2, 1]"]);
}

/// A subclassed model whose two layers were given the same name by its author.
#[derive(Debug)]
struct SameNames {
    first: Dense,
    second: Dense,
}

impl Network for SameNames {
    fn call<'t>(&self, x: &Var<'t>, training: bool) -> gradus::models::Result<Var<'t>> {
        let h = self.first.call(x, training)?;
        Ok(self.second.call(&h, training)?)
    }

    fn build(&mut self, input_shape: &[usize], rng: &mut Rng) -> gradus::models::Result<()> {
        self.first.build(input_shape, rng)?;
        Ok(self.second.build(&[3], rng)?)
    }

    fn layers(&self) -> Vec<&dyn Layer> {
        vec![&self.first, &self.second]
    }
}

#[test]
fn two_variables_of_the_same_name() {
    let net = SameNames {
        first: Dense::new(3).with_name("same"),
        second: Dense::new(3).with_name("same"),
    };
    let mut m = Model::new(net).unwrap();
    let e = m.build(&[4]).unwrap_err();
    assert!(matches!(e, ModelError::Mismatch { .. }), "{e:?}");
    names(&e, &["unique names", "two variables named \"same/kernel\""]);
    assert!(!m.is_built());
}

// ---------------------------------------------------------------------------------------------
// Files: other architectures, truncated, corrupted, missing, unwritable.
// ---------------------------------------------------------------------------------------------

/// A whole-model checkpoint of `trained()`'s architecture.
fn checkpoint(dir: &Path) -> PathBuf {
    let path = dir.join("model.gradus");
    trained().save(&path).unwrap();
    path
}

#[test]
fn load_a_checkpoint_of_another_architecture() {
    let dir = scratch("other-arch");
    let path = dir.join("other.gradus");
    let mut other = Model::new(
        Sequential::new()
            .input_shape(&[4])
            .layer(Dense::new(5).with_name("hidden"))
            .layer(Dense::new(3).with_name("out")),
    )
    .unwrap();
    other.compile(adam(), "mse", NO_METRICS).unwrap();
    other.save(&path).unwrap();
    let (mut a, mut b) = twin();
    let e = a.load_into(&path).unwrap_err();
    assert!(matches!(e, ModelError::Mismatch { .. }), "{e:?}");
    names(&e, &["hidden/kernel", "[4, 8]", "[4, 5]"]);
    let e = a.load_weights(&path).unwrap_err();
    assert!(matches!(e, ModelError::Mismatch { .. }), "{e:?}");
    assert_untouched(&mut a, &mut b);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_a_checkpoint_of_another_input_shape() {
    let dir = scratch("other-input");
    let path = dir.join("wide.gradus");
    let wide = Model::new(
        Sequential::new()
            .input_shape(&[4, 1])
            .layer(Dense::new(8).with_name("hidden")),
    )
    .unwrap();
    wide.save(&path).unwrap();
    let (mut a, mut b) = twin();
    let e = a.load_into(&path).unwrap_err();
    assert!(matches!(e, ModelError::Mismatch { .. }), "{e:?}");
    names(&e, &["input shape", "[4]", "[4, 1]"]);
    assert_untouched(&mut a, &mut b);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_a_truncated_checkpoint() {
    let dir = scratch("truncated");
    let path = checkpoint(&dir);
    let bytes = std::fs::read(&path).unwrap();
    let (mut a, mut b) = twin();
    for keep in [0, 7, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..keep]).unwrap();
        let e = a.load_into(&path).unwrap_err();
        assert!(matches!(e, ModelError::Format { .. }), "{keep}: {e:?}");
        names(&e, &[&path.display().to_string()]);
        let e = Model::<Sequential>::load(&path).unwrap_err();
        assert!(matches!(e, ModelError::Format { .. }), "{keep}: {e:?}");
    }
    assert_untouched(&mut a, &mut b);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_a_checkpoint_with_one_flipped_bit() {
    let dir = scratch("flipped");
    let path = checkpoint(&dir);
    let bytes = std::fs::read(&path).unwrap();
    let (mut a, mut b) = twin();
    // A flip in the last byte of the tensor data, one in the middle, one in the header.
    for at in [bytes.len() - 1, bytes.len() / 2, 20] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x10;
        std::fs::write(&path, &bad).unwrap();
        let e = a.load_into(&path).unwrap_err();
        assert!(matches!(e, ModelError::Format { .. }), "byte {at}: {e:?}");
        names(&e, &[&path.display().to_string()]);
        assert!(a.load_weights(&path).is_err(), "byte {at}");
    }
    let e = Model::<Sequential>::load(&path).unwrap_err();
    assert!(matches!(e, ModelError::Format { .. }), "{e:?}");
    assert_untouched(&mut a, &mut b);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_a_checkpoint_whose_checksum_was_flipped() {
    let dir = scratch("checksum");
    let path = checkpoint(&dir);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    // The checksum trails the file: corrupt it alone.
    bytes[n - 1] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let e = Model::<Sequential>::load(&path).unwrap_err();
    assert!(matches!(e, ModelError::Format { .. }), "{e:?}");
    names(&e, &["checksum"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_a_file_that_is_not_a_checkpoint() {
    let dir = scratch("not-a-checkpoint");
    let path = dir.join("notes.txt");
    std::fs::write(&path, "epoch,loss\n0,0.5\n").unwrap();
    let (mut a, mut b) = twin();
    let e = a.load_into(&path).unwrap_err();
    assert!(matches!(e, ModelError::Format { .. }), "{e:?}");
    names(&e, &["notes.txt"]);
    assert_untouched(&mut a, &mut b);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_a_weights_file_as_a_whole_model() {
    let dir = scratch("weights-as-model");
    let path = dir.join("weights.gradus");
    trained().save_weights(&path).unwrap();
    let (mut a, mut b) = twin();
    let e = a.load_into(&path).unwrap_err();
    assert!(matches!(e, ModelError::Format { .. }), "{e:?}");
    names(&e, &["gradus.model.v1", "gradus.weights.v1"]);
    assert_untouched(&mut a, &mut b);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_a_missing_file() {
    let dir = scratch("missing");
    let path = dir.join("never-saved.gradus");
    let (mut a, mut b) = twin();
    let e = a.load_into(&path).unwrap_err();
    assert!(
        matches!(&e, ModelError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{e:?}"
    );
    names(&e, &["never-saved.gradus"]);
    let e = Model::<Sequential>::load(&path).unwrap_err();
    assert!(matches!(e, ModelError::Io { .. }), "{e:?}");
    assert_untouched(&mut a, &mut b);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A directory no one can write into: a read-only directory for an unprivileged user; as root
/// (who may write anyway), a path under a regular file.
fn unwritable(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let ro = dir.join("read-only");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(ro.join("probe"), b"x").is_err() {
        return ro;
    }
    let _ = std::fs::remove_file(ro.join("probe"));
    let file = dir.join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    file
}

#[test]
fn save_into_a_read_only_directory() {
    let dir = scratch("read-only");
    let target = unwritable(&dir).join("model.gradus");
    let (mut a, mut b) = twin();
    let e = a.save(&target).unwrap_err();
    assert!(matches!(e, ModelError::Io { .. }), "{e:?}");
    names(&e, &["model.gradus"]);
    let e = a.save_weights(&target).unwrap_err();
    assert!(matches!(e, ModelError::Io { .. }), "{e:?}");
    assert!(!target.exists());
    assert_untouched(&mut a, &mut b);
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(
        dir.join("read-only"),
        std::fs::Permissions::from_mode(0o755),
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn model_checkpoint_into_a_read_only_directory() {
    let dir = scratch("checkpoint-read-only");
    let target = unwritable(&dir).join("epoch.gradus");
    let (mut a, mut b) = twin();
    let (x, y) = data(30);
    let mut cb = ModelCheckpoint::new(&target);
    let opts = FitOptions {
        callbacks: vec![&mut cb],
        ..quiet(2)
    };
    let e = a.fit(&x, &y, opts).unwrap_err();
    assert!(matches!(e, ModelError::Io { .. }), "{e:?}");
    names(&e, &["epoch.gradus"]);
    assert_untouched(&mut a, &mut b);
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(
        dir.join("read-only"),
        std::fs::Permissions::from_mode(0o755),
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_save_keeps_the_previous_checkpoint() {
    let dir = scratch("keep-previous");
    let path = checkpoint(&dir);
    let before = std::fs::read(&path).unwrap();
    // A model with a custom schedule cannot be serialized: the save fails before writing.
    let mut m = trained();
    m.optimizer_mut()
        .unwrap()
        .set_learning_rate(gradus::optim::LearningRate::custom(|step| {
            0.01 / (1.0 + step as f32)
        }))
        .unwrap();
    let e = m.save(&path).unwrap_err();
    assert!(
        matches!(e, ModelError::Optim(OptimError::NotSerializable)),
        "{e:?}"
    );
    names(&e, &["custom", "expected a constant"]);
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "a temporary file was left behind");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Loading into a model that is not built yet; hostile checkpoints that pass the checksum.
// ---------------------------------------------------------------------------------------------

/// `net()` without its input shape: built on its first data, or by a load.
fn lazy_net() -> Sequential {
    Sequential::new()
        .layer(Dense::new(8).activation("relu").with_name("hidden"))
        .layer(Dropout::new(0.25).seed(5))
        .layer(Dense::new(3).activation("softmax").with_name("out"))
}

/// A compiled model that is not built yet, and its twin.
fn unbuilt_twin() -> (Model<Sequential>, Model<Sequential>) {
    let make = || {
        let mut m = Model::with_seed(lazy_net(), 7).unwrap();
        m.compile(adam(), "sparse_categorical_crossentropy", ["accuracy"])
            .unwrap();
        assert!(!m.is_built());
        m
    };
    (make(), make())
}

/// `a`, after a failed load, is still unbuilt, without variables, epochs or callback states,
/// and then trains exactly as its twin: the same initial weights (so the same RNG), shuffling,
/// dropout masks and optimizer.
fn assert_still_unbuilt(a: &mut Model<Sequential>, b: &mut Model<Sequential>) {
    assert!(!a.is_built(), "the failed load built the model");
    assert_eq!(a.input_shape(), None);
    assert!(a.variables().is_empty());
    assert!(a.network().layers().iter().all(|l| !l.is_built()));
    assert_eq!(a.epoch(), 0);
    assert!(a.callback_states().is_empty());
    assert_eq!(a.summary_string(), b.summary_string());
    assert_untouched(a, b);
}

/// Rewrites the metadata entry `key` of the gradus checkpoint at `path` (its JSON value, or
/// its text for plain entries) and writes a valid checksum trailer, as a hostile file would.
fn rewrite_entry(path: &Path, key: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    use serde_json::Value;
    let bytes = std::fs::read(path).unwrap();
    let body = &bytes[..bytes.len() - 16];
    let n = u64::from_le_bytes(body[..8].try_into().unwrap()) as usize;
    let mut header: Value = serde_json::from_slice(&body[8..8 + n]).unwrap();
    let entry = &mut header["__metadata__"][key];
    let text = entry.as_str().unwrap_or("null").to_string();
    let mut value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    edit(&mut value);
    *entry = Value::String(match value {
        Value::String(s) => s,
        v => v.to_string(),
    });
    let mut text = serde_json::to_string(&header).unwrap();
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&body[8 + n..]);
    // The trailer gradus writes: a tag, then FNV-1a 64 of every byte before it.
    let hash = out.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    out.extend_from_slice(b"gradus#\x01");
    out.extend_from_slice(&hash.to_le_bytes());
    std::fs::write(path, out).unwrap();
}

#[test]
fn load_into_an_unbuilt_model_a_checkpoint_of_another_architecture() {
    let dir = scratch("unbuilt-other-arch");
    let path = dir.join("other.gradus");
    let other = |units| {
        let m = Model::new(
            Sequential::new()
                .input_shape(&[4])
                .layer(Dense::new(units).with_name("hidden"))
                .layer(Dense::new(3).with_name("out")),
        )
        .unwrap();
        m.save(&path).unwrap();
    };
    let (mut a, mut b) = unbuilt_twin();
    // Wider layers: the file holds enough weights, the model is built (on a copy) and the
    // first variable does not fit.
    other(10);
    let e = a.load_into(&path).unwrap_err();
    assert!(matches!(e, ModelError::Mismatch { .. }), "{e:?}");
    names(&e, &["hidden/kernel", "[4, 8]", "[4, 10]"]);
    // Narrower layers: refused before building, the file holding too few weights.
    other(5);
    let e = a.load_into(&path).unwrap_err();
    assert!(matches!(e, ModelError::Mismatch { .. }), "{e:?}");
    names(&e, &["\"hidden\" (Dense)", "the 40 weights", "25 weights"]);
    assert_still_unbuilt(&mut a, &mut b);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_into_an_unbuilt_model_a_checkpoint_whose_layer_states_do_not_fit() {
    let dir = scratch("unbuilt-layer-states");
    let path = checkpoint(&dir);
    let (mut a, mut b) = unbuilt_twin();
    rewrite_entry(&path, "layer_states", |v| {
        *v = serde_json::json!({"ghost": {"rng": [1, 2, 3, 4]}})
    });
    let e = a.load_into(&path).unwrap_err();
    assert!(matches!(e, ModelError::Mismatch { .. }), "{e:?}");
    names(&e, &["layer states", "a layer of that name", "\"ghost\""]);
    rewrite_entry(&path, "layer_states", |v| {
        *v = serde_json::json!({"dropout": "a mask stream"})
    });
    let e = a.load_into(&path).unwrap_err();
    assert!(
        matches!(e, ModelError::Layer(LayerError::Config { .. })),
        "{e:?}"
    );
    names(&e, &["Dropout", "rng", "a mask stream"]);
    assert_still_unbuilt(&mut a, &mut b);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_into_a_built_model_layer_states_of_which_one_does_not_fit() {
    // Two dropout layers: the first state fits and is set, the second does not; the first
    // must be put back.
    let make = || {
        let net = Sequential::new()
            .input_shape(&[4])
            .layer(Dense::new(8).activation("relu").with_name("hidden"))
            .layer(Dropout::new(0.25).seed(5))
            .layer(Dropout::new(0.25).seed(6))
            .layer(Dense::new(3).activation("softmax").with_name("out"));
        let mut m = Model::with_seed(net, 7).unwrap();
        m.compile(adam(), "sparse_categorical_crossentropy", ["accuracy"])
            .unwrap();
        let (x, y) = data(30);
        m.fit(&x, &y, quiet(1)).unwrap();
        m
    };
    let dir = scratch("built-layer-states");
    let path = dir.join("model.gradus");
    make().save(&path).unwrap();
    rewrite_entry(
        &path,
        "layer_states",
        |v| *v = serde_json::json!({"dropout": {"rng": [1, 2, 3, 4]}, "dropout_1": [0]}),
    );
    let (mut a, mut b) = (make(), make());
    let e = a.load_into(&path).unwrap_err();
    assert!(
        matches!(e, ModelError::Layer(LayerError::Config { .. })),
        "{e:?}"
    );
    names(&e, &["Dropout", "rng"]);
    assert_untouched(&mut a, &mut b);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_into_an_unbuilt_model_an_optimizer_state_of_another_class() {
    let dir = scratch("unbuilt-optimizer-state");
    let path = checkpoint(&dir);
    rewrite_entry(&path, "optimizer_state", |v| v["class_name"] = "SGD".into());
    let (mut a, mut b) = unbuilt_twin();
    let e = a.load_into(&path).unwrap_err();
    assert!(
        matches!(e, ModelError::Optim(OptimError::StateMismatch { .. })),
        "{e:?}"
    );
    names(&e, &["optimizer class", "Adam", "SGD"]);
    assert_still_unbuilt(&mut a, &mut b);
    let e = Model::<Sequential>::load(&path).unwrap_err();
    assert!(matches!(e, ModelError::Optim(_)), "{e:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `load` refuses in a moment, without allocating what `path` asks for.
fn refused_quickly(path: &Path) -> ModelError {
    let start = std::time::Instant::now();
    let e = Model::<Sequential>::load(path).unwrap_err();
    assert!(
        start.elapsed() < std::time::Duration::from_secs(2),
        "took {:?}: {e}",
        start.elapsed()
    );
    e
}

#[test]
fn load_a_checkpoint_asking_for_a_huge_dense_layer() {
    let dir = scratch("huge-units");
    let path = checkpoint(&dir);
    // 10^12 units: a kernel of 4 * 10^12 floats (16 TB) if it were built.
    rewrite_entry(&path, "network", |v| {
        v["layers"][0]["config"]["units"] = 1_000_000_000_000_u64.into()
    });
    let e = refused_quickly(&path);
    assert!(matches!(e, ModelError::Mismatch { .. }), "{e:?}");
    names(
        &e,
        &[
            "layer \"hidden\" (Dense)",
            "[4]",
            "5000000000000 weights its configuration asks for",
            "40 weights for it in the file",
        ],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_a_checkpoint_with_a_huge_input_shape() {
    let dir = scratch("huge-input");
    let path = checkpoint(&dir);
    let huge = serde_json::json!([1_000_000_000_000_u64]);
    rewrite_entry(&path, "input_shape", |v| *v = huge.clone());
    rewrite_entry(&path, "network", |v| v["input_shape"] = huge.clone());
    let e = refused_quickly(&path);
    assert!(matches!(e, ModelError::Mismatch { .. }), "{e:?}");
    names(
        &e,
        &[
            "\"hidden\"",
            "[1000000000000]",
            "8000000000008",
            "40 weights",
        ],
    );
    // The same file into an unbuilt model of the same layers, and into a built one.
    let (mut a, mut b) = unbuilt_twin();
    let e = a.load_into(&path).unwrap_err();
    names(&e, &["\"hidden\"", "8000000000008"]);
    assert_still_unbuilt(&mut a, &mut b);
    let (mut a, mut b) = twin();
    let e = a.load_into(&path).unwrap_err();
    assert!(matches!(e, ModelError::Mismatch { .. }), "{e:?}");
    names(&e, &["input shape", "[4]", "[1000000000000]"]);
    assert_untouched(&mut a, &mut b);
    // A shape whose size does not even fit in 64 bits.
    let overflow = serde_json::json!([1_u64 << 40, 1_u64 << 40]);
    rewrite_entry(&path, "input_shape", |v| *v = overflow.clone());
    rewrite_entry(&path, "network", |v| v["input_shape"] = overflow.clone());
    let e = refused_quickly(&path);
    assert!(matches!(e, ModelError::Mismatch { .. }), "{e:?}");
    names(
        &e,
        &[
            "a shape whose size fits in memory",
            "[1099511627776, 1099511627776]",
        ],
    );
    // A Reshape to such a shape (its own arithmetic would overflow).
    let path = checkpoint(&dir);
    rewrite_entry(&path, "network", |v| {
        let reshape = serde_json::json!({
            "class_name": "Reshape",
            "config": {"name": "reshape", "target_shape": [1_u64 << 40, 1_u64 << 40]}
        });
        v["layers"].as_array_mut().unwrap().insert(0, reshape);
    });
    let e = refused_quickly(&path);
    assert!(matches!(e, ModelError::Mismatch { .. }), "{e:?}");
    names(
        &e,
        &[
            "\"reshape\"",
            "a target shape whose size fits",
            "1099511627776",
        ],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Tensors, losses and datasets.
// ---------------------------------------------------------------------------------------------

#[test]
fn tensor_of_the_wrong_number_of_values() {
    let e = Tensor::from_vec(vec![1.0; 5], &[2, 3]).unwrap_err();
    assert!(
        matches!(
            e,
            TensorError::ElementCount {
                expected: 6,
                got: 5,
                ..
            }
        ),
        "{e:?}"
    );
    names(&e, &["[2, 3]", "needs 6", "got 5"]);
}

#[test]
fn matmul_of_shapes_that_do_not_fit() {
    let e = Tensor::zeros(&[2, 3])
        .matmul(&Tensor::zeros(&[4, 2]))
        .unwrap_err();
    assert!(matches!(e, TensorError::IncompatibleShapes { .. }), "{e:?}");
    names(&e, &["[2, 3]", "[4, 2]"]);
}

#[test]
fn loss_by_an_unknown_name() {
    let e = gradus::losses::get("crossentropy2").unwrap_err();
    assert!(
        matches!(&e, LossError::UnknownName { kind: "loss", name, .. } if name == "crossentropy2"),
        "{e:?}"
    );
    names(&e, &["crossentropy2", "binary_crossentropy"]);
}

#[test]
fn csv_with_a_ragged_row() {
    let e = datasets::parse_csv("1,2,3\n4,5\n", &CsvOptions::default()).unwrap_err();
    assert!(
        matches!(
            e,
            DatasetError::Ragged {
                line: 2,
                expected: 3,
                got: 2
            }
        ),
        "{e:?}"
    );
    names(&e, &["line 2", "expected 3", "got 2"]);
}

#[test]
fn csv_with_a_word_in_a_number_cell() {
    let e = datasets::parse_csv("1,2\n3,four\n", &CsvOptions::default()).unwrap_err();
    assert!(
        matches!(
            e,
            DatasetError::Parse {
                line: 2,
                column: 2,
                ..
            }
        ),
        "{e:?}"
    );
    names(&e, &["expected a finite number", "\"four\""]);
}

#[test]
fn csv_with_a_nan_cell() {
    let e = datasets::parse_csv("1,2\n3,nan\n", &CsvOptions::default()).unwrap_err();
    assert!(
        matches!(
            e,
            DatasetError::Parse {
                line: 2,
                column: 2,
                ..
            }
        ),
        "{e:?}"
    );
    names(&e, &["finite number", "\"nan\""]);
}

#[test]
fn csv_with_a_header_and_no_rows() {
    let options = CsvOptions::default().has_header(true);
    let e = datasets::parse_csv("a,b,label\n\n", &options).unwrap_err();
    assert!(matches!(e, DatasetError::Empty { .. }), "{e:?}");
    names(&e, &["no rows"]);
}

#[test]
fn csv_file_that_does_not_exist() {
    let path = scratch("csv-missing").join("iris.csv");
    let e = datasets::read_csv(&path, &CsvOptions::default()).unwrap_err();
    assert!(matches!(e, DatasetError::Io { .. }), "{e:?}");
    names(&e, &["iris.csv"]);
}

#[test]
fn label_column_that_does_not_exist() {
    let table = datasets::parse_csv("1,2\n3,4\n", &CsvOptions::default()).unwrap();
    let e = table.split_label(5).unwrap_err();
    assert!(matches!(e, DatasetError::InvalidArgument { .. }), "{e:?}");
    names(&e, &["column 5", "2 columns"]);
}

#[test]
fn one_hot_of_a_label_out_of_range() {
    let e = datasets::one_hot(&labels(vec![0.0, 2.0, 3.0]), 3).unwrap_err();
    assert!(
        matches!(
            e,
            DatasetError::Tensor(TensorError::InvalidArgument { op: "one_hot", .. })
        ),
        "{e:?}"
    );
    names(&e, &["class ids in 0..3", "got 3"]);
}

#[test]
fn train_test_split_with_a_test_fraction_above_one() {
    let (x, y) = data(10);
    let e = datasets::train_test_split(&x, &y, 1.5, None).unwrap_err();
    assert!(matches!(e, DatasetError::InvalidArgument { .. }), "{e:?}");
    names(&e, &["1.5", "(0, 1)"]);
}

#[test]
fn shuffle_of_x_and_y_of_different_lengths() {
    let (x, _) = data(10);
    let (_, y) = data(9);
    let e = datasets::shuffle(&x, &y, &mut Rng::seed_from_u64(0)).unwrap_err();
    assert!(matches!(e, DatasetError::InvalidArgument { .. }), "{e:?}");
    names(&e, &["10", "9"]);
}
