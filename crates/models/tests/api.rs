//! The public API of gradus-models: error paths (the model untouched), validation semantics,
//! callbacks, summary text, saving and loading (identical predictions, bit-identical continued
//! training), custom networks.

use gradus_autograd::Var;
use gradus_layers::{Dense, Dropout, L2, Layer};
use gradus_models::{
    Callback, CsvLogger, EarlyStopping, FitOptions, LearningRateScheduler, Logs, Model, ModelError,
    Network, ReduceLROnPlateau, Result, Sequential, TerminateOnNaN, TrainContext, ValidationFreq,
    build_chain,
};
use gradus_optim::Optimizer;
use gradus_optim::rules::{Adam, Sgd};
use gradus_tensor::{Rng, Tensor};

/// Three noisy classes in 4-D: `n` samples, labels `i % 3`.
fn data(n: usize, seed: u64) -> (Tensor, Tensor) {
    let mut rng = Rng::seed_from_u64(seed);
    let mut xs = Vec::with_capacity(4 * n);
    let mut ys = Vec::with_capacity(n);
    for i in 0..n {
        let c = (i % 3) as f32;
        for j in 0..4 {
            xs.push(if j == i % 3 { 2.0 } else { 0.0 } + 0.5 * rng.normal_f32() + 0.1 * c);
        }
        ys.push(c);
    }
    (
        Tensor::from_vec(xs, &[n, 4]).unwrap(),
        Tensor::from_vec(ys, &[n]).unwrap(),
    )
}

fn sgd(lr: f32) -> Optimizer {
    Optimizer::builder(Sgd::default())
        .learning_rate(lr)
        .build()
        .unwrap()
}

fn classifier() -> Model<Sequential> {
    let net = Sequential::new()
        .input_shape(&[4])
        .layer(
            Dense::new(8)
                .activation("relu")
                .kernel_regularizer(L2::new(0.01)),
        )
        .layer(Dense::new(3).activation("softmax"));
    let mut model = Model::new(net).unwrap();
    model
        .compile(sgd(0.1), "sparse_categorical_crossentropy", ["accuracy"])
        .unwrap();
    model
}

fn quiet<'a>(epochs: usize) -> FitOptions<'a> {
    FitOptions {
        epochs,
        verbose: 0,
        ..Default::default()
    }
}

fn values(model: &Model<impl Network>) -> Vec<Vec<f32>> {
    model.get_weights().iter().map(Tensor::to_vec).collect()
}

#[test]
fn fit_learns_and_reports_keras_keys() {
    let (x, y) = data(60, 0);
    let mut model = classifier();
    let h = model
        .fit(
            &x,
            &y,
            FitOptions {
                validation_split: 0.2,
                ..quiet(30)
            },
        )
        .unwrap();
    assert_eq!(
        h.keys().collect::<Vec<_>>(),
        ["loss", "accuracy", "val_loss", "val_accuracy"]
    );
    assert_eq!(h.epoch, (0..30).collect::<Vec<_>>());
    assert!(h["loss"][29] < h["loss"][0]);
    assert!(h.last("accuracy").unwrap() > 0.9);
    let logs = model.evaluate(&x, &y, 7).unwrap();
    assert_eq!(
        logs.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        ["loss", "accuracy"]
    );
}

#[test]
fn errors_leave_the_model_untouched() {
    let (x, y) = data(30, 1);
    let mut model = classifier();
    model.fit(&x, &y, quiet(1)).unwrap();
    let before = values(&model);
    let iterations = model.optimizer().unwrap().iterations();
    let check = |model: &Model<Sequential>, err: ModelError, want: &str| {
        assert!(
            err.to_string().contains(want),
            "{err} should mention {want:?}"
        );
        assert_eq!(values(model), before);
        assert_eq!(model.optimizer().unwrap().iterations(), iterations);
    };
    let short_y = y.slice_axis(0, 0, 20).unwrap();
    let e = model.fit(&x, &short_y, quiet(1)).unwrap_err();
    assert!(matches!(e, ModelError::LengthMismatch { x: 30, y: 20, .. }));
    check(&model, e, "30 and 20");
    let wide = Tensor::zeros(&[30, 5]);
    let e = model.fit(&wide, &y, quiet(1)).unwrap_err();
    check(&model, e, "[4]");
    let e = model
        .fit(&Tensor::zeros(&[0, 4]), &Tensor::zeros(&[0]), quiet(1))
        .unwrap_err();
    assert!(matches!(e, ModelError::EmptyData { .. }));
    check(&model, e, "at least one sample");
    for split in [1.0, -0.1, 1.5] {
        let e = model
            .fit(
                &x,
                &y,
                FitOptions {
                    validation_split: split,
                    ..quiet(1)
                },
            )
            .unwrap_err();
        check(&model, e, "validation_split");
    }
    let e = model
        .fit(
            &x,
            &y,
            FitOptions {
                batch_size: 0,
                ..quiet(1)
            },
        )
        .unwrap_err();
    check(&model, e, "batch_size");
    // A label out of range in the LAST batch: earlier batches ran, and are undone.
    let mut labels = y.to_vec();
    labels[29] = 7.0;
    let bad = Tensor::from_vec(labels, &[30]).unwrap();
    let e = model
        .fit(
            &x,
            &bad,
            FitOptions {
                shuffle: false,
                batch_size: 8,
                ..quiet(2)
            },
        )
        .unwrap_err();
    assert!(matches!(e, ModelError::Loss(_)), "{e}");
    check(&model, e, "7");
    // One-hot labels of the wrong width for a categorical loss.
    let mut cat = Model::new(Sequential::new().input_shape(&[4]).layer(Dense::new(3))).unwrap();
    cat.compile("sgd", "categorical_crossentropy", gradus_models::NO_METRICS)
        .unwrap();
    let w0: Vec<Vec<f32>> = values(&cat);
    assert!(cat.fit(&x, &Tensor::zeros(&[30, 2]), quiet(1)).is_err());
    assert_eq!(values(&cat), w0);
}

#[test]
fn fit_and_evaluate_need_compile() {
    let (x, y) = data(9, 2);
    let mut model = Model::new(Sequential::new().layer(Dense::new(3))).unwrap();
    assert!(matches!(
        model.fit(&x, &y, quiet(1)),
        Err(ModelError::NotCompiled { op: "fit" })
    ));
    assert!(matches!(
        model.evaluate(&x, &y, 4),
        Err(ModelError::NotCompiled { .. })
    ));
    // predict builds on the first data and needs no compile.
    assert_eq!(model.predict(&x, 4).unwrap().shape(), &[9, 3]);
    assert!(
        model
            .compile("sgd", "no_such_loss", gradus_models::NO_METRICS)
            .is_err()
    );
    assert!(
        model
            .compile("no_such_optimizer", "mse", gradus_models::NO_METRICS)
            .is_err()
    );
    assert!(model.compile("sgd", "mse", ["no_such_metric"]).is_err());
    assert!(!model.is_compiled());
}

#[test]
fn validation_split_takes_the_last_samples_before_shuffling() {
    let (x, y) = data(40, 3);
    let run = |split: bool| {
        let mut model = classifier();
        let (xt, yt) = (
            x.slice_axis(0, 0, 30).unwrap(),
            y.slice_axis(0, 0, 30).unwrap(),
        );
        let (xv, yv) = (
            x.slice_axis(0, 30, 40).unwrap(),
            y.slice_axis(0, 30, 40).unwrap(),
        );
        let h = if split {
            model.fit(
                &x,
                &y,
                FitOptions {
                    validation_split: 0.25,
                    batch_size: 8,
                    ..quiet(3)
                },
            )
        } else {
            model.fit(
                &xt,
                &yt,
                FitOptions {
                    validation_data: Some((&xv, &yv)),
                    batch_size: 8,
                    ..quiet(3)
                },
            )
        };
        (h.unwrap(), values(&model))
    };
    assert_eq!(run(true), run(false));
}

#[test]
fn validation_freq_every_k_or_listed_epochs() {
    let (x, y) = data(30, 4);
    let mut model = classifier();
    let h = model
        .fit(
            &x,
            &y,
            FitOptions {
                validation_split: 0.2,
                validation_freq: ValidationFreq::Every(2),
                ..quiet(5)
            },
        )
        .unwrap();
    assert_eq!(h.epochs_of("val_loss"), vec![1, 3]);
    let h = model
        .fit(
            &x,
            &y,
            FitOptions {
                validation_split: 0.2,
                validation_freq: vec![1, 5].into(),
                ..quiet(5)
            },
        )
        .unwrap();
    assert_eq!(h.epochs_of("val_accuracy"), vec![0, 4]);
    assert_eq!(h["loss"].len(), 5);
    let e = model
        .fit(
            &x,
            &y,
            FitOptions {
                validation_freq: 0.into(),
                ..quiet(1)
            },
        )
        .unwrap_err();
    assert!(e.to_string().contains("validation_freq"));
}

#[test]
fn initial_epoch_resumes_the_epoch_count() {
    let (x, y) = data(30, 5);
    let mut model = classifier();
    let h = model
        .fit(
            &x,
            &y,
            FitOptions {
                initial_epoch: 3,
                ..quiet(5)
            },
        )
        .unwrap();
    assert_eq!(h.epoch, vec![3, 4]);
}

#[test]
fn summary_prints_keras_table() {
    let mut model = classifier();
    let (x, y) = data(6, 6);
    // Compiled but not trained: Keras' optimizer is not built yet, so it has no line and no
    // share of the total.
    let before = model.summary_string();
    assert!(!before.contains("Optimizer params"), "{before}");
    assert!(
        before.contains(" Total params: 67 (268.00 B)\n"),
        "{before}"
    );
    model.fit(&x, &y, quiet(1)).unwrap();
    let s = model.summary_string();
    let expected = "\
Model: \"sequential\"
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓
┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩
│ dense (Dense)                   │ (None, 8)              │            40 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dense_1 (Dense)                 │ (None, 3)              │            27 │
└─────────────────────────────────┴────────────────────────┴───────────────┘
 Total params: 69 (280.00 B)
 Trainable params: 67 (268.00 B)
 Non-trainable params: 0 (0.00 B)
 Optimizer params: 2 (12.00 B)
";
    assert_eq!(s, expected);
    // Compiling again gives a new optimizer, not built yet.
    model
        .compile(sgd(0.1), "sparse_categorical_crossentropy", ["accuracy"])
        .unwrap();
    assert_eq!(model.summary_string(), before);
    let unbuilt = Model::new(Sequential::new().layer(Dense::new(2))).unwrap();
    assert!(unbuilt.summary_string().contains("│ ?"));
}

#[test]
fn save_and_load_predict_identically_and_continue_bit_identically() {
    let dir = std::env::temp_dir().join(format!("gradus-models-save-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    let (x, y) = data(50, 7);
    let make = || {
        let net = Sequential::new()
            .input_shape(&[4])
            .layer(Dense::new(16).activation("relu"))
            .layer(Dropout::new(0.3).seed(3))
            .layer(
                Dense::new(3)
                    .activation("softmax")
                    .kernel_regularizer(L2::new(0.01)),
            );
        let mut m = Model::with_seed(net, 9).unwrap();
        let adam = Optimizer::builder(Adam::default())
            .learning_rate(0.01)
            .build()
            .unwrap();
        m.compile(adam, "sparse_categorical_crossentropy", ["accuracy"])
            .unwrap();
        m
    };
    let opts = || FitOptions {
        batch_size: 16,
        validation_split: 0.2,
        ..quiet(2)
    };
    let mut a = make();
    a.fit(&x, &y, opts()).unwrap();
    a.save(&path).unwrap();
    let mut b = Model::<Sequential>::load(&path).unwrap();
    assert_eq!(
        a.predict(&x, 32).unwrap().to_vec(),
        b.predict(&x, 32).unwrap().to_vec()
    );
    assert_eq!(a.summary_string(), b.summary_string());
    let ha = a.fit(&x, &y, opts()).unwrap();
    let hb = b.fit(&x, &y, opts()).unwrap();
    assert_eq!(ha, hb);
    assert_eq!(values(&a), values(&b));
    assert_eq!(
        a.optimizer().unwrap().variables(),
        b.optimizer().unwrap().variables()
    );
    // ... and as one uninterrupted run of 4 epochs.
    let mut c = make();
    c.fit(&x, &y, opts()).unwrap();
    c.fit(&x, &y, opts()).unwrap();
    assert_eq!(values(&a), values(&c));

    // A file of another architecture is refused, the model untouched.
    let mut other = Model::new(Sequential::new().input_shape(&[4]).layer(Dense::new(5))).unwrap();
    let before = values(&other);
    let e = other.load_into(&path).unwrap_err();
    assert!(matches!(e, ModelError::Mismatch { .. }), "{e}");
    assert!(e.to_string().contains("dense"), "{e}");
    assert_eq!(values(&other), before);
    assert!(other.load_weights(&path).is_err());
    assert_eq!(values(&other), before);

    // Weights alone round-trip by variable name.
    let wpath = dir.join("weights.safetensors");
    a.save_weights(&wpath).unwrap();
    let fresh = make();
    assert_ne!(values(&fresh), values(&a));
    fresh.load_weights(&wpath).unwrap();
    assert_eq!(values(&fresh), values(&a));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A subclassed model: two layers as fields and a residual-free `call`.
#[derive(Debug)]
struct TwoLayer {
    units: usize,
    hidden: Dense,
    out: Dense,
}

impl TwoLayer {
    fn new(units: usize) -> TwoLayer {
        TwoLayer {
            units,
            hidden: Dense::new(units).activation("tanh").with_name("hidden"),
            out: Dense::new(3).activation("softmax").with_name("out"),
        }
    }
}

impl Network for TwoLayer {
    fn call<'t>(&self, x: &Var<'t>, training: bool) -> Result<Var<'t>> {
        Ok(self.out.call(&self.hidden.call(x, training)?, training)?)
    }
    fn build(&mut self, input_shape: &[usize], rng: &mut Rng) -> Result<()> {
        build_chain(&mut [&mut self.hidden, &mut self.out], input_shape, rng)?;
        Ok(())
    }
    fn layers(&self) -> Vec<&dyn Layer> {
        vec![&self.hidden, &self.out]
    }
    fn name(&self) -> &str {
        "two_layer"
    }
    fn unbuilt_copy(&self) -> Option<TwoLayer> {
        Some(TwoLayer::new(self.units))
    }
}

/// [`TwoLayer`] without an unbuilt copy.
#[derive(Debug)]
struct NoCopy(TwoLayer);

impl Network for NoCopy {
    fn call<'t>(&self, x: &Var<'t>, training: bool) -> Result<Var<'t>> {
        self.0.call(x, training)
    }
    fn build(&mut self, input_shape: &[usize], rng: &mut Rng) -> Result<()> {
        self.0.build(input_shape, rng)
    }
    fn layers(&self) -> Vec<&dyn Layer> {
        self.0.layers()
    }
}

#[test]
fn custom_networks_get_the_whole_api() {
    let (x, y) = data(45, 8);
    let mut model = Model::new(TwoLayer::new(6)).unwrap();
    assert!(!model.is_built());
    model
        .compile(sgd(0.2), "sparse_categorical_crossentropy", ["accuracy"])
        .unwrap();
    let h = model.fit(&x, &y, quiet(20)).unwrap();
    assert!(h.last("accuracy").unwrap() > 0.8);
    assert!(
        model
            .summary_string()
            .contains("│ hidden (Dense)                  │ (None, 6)")
    );
    let dir = std::env::temp_dir().join(format!("gradus-models-custom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("two_layer.safetensors");
    model.save(&path).unwrap();
    let mut again = Model::new(TwoLayer::new(6)).unwrap();
    again.load_into(&path).unwrap();
    assert_eq!(
        model.predict(&x, 8).unwrap().to_vec(),
        again.predict(&x, 8).unwrap().to_vec()
    );
    assert!(
        Model::<Sequential>::load(&path).is_err(),
        "no architecture in the file"
    );
    // A file that does not fit leaves an unbuilt model unbuilt (its copy took the build).
    let mut wider = Model::new(TwoLayer::new(7)).unwrap();
    assert!(matches!(
        wider.load_into(&path),
        Err(ModelError::Mismatch { .. })
    ));
    assert!(!wider.is_built());
    assert!(wider.variables().is_empty());
    // Without an unbuilt copy, loading needs a built model.
    let mut no_copy = Model::new(NoCopy(TwoLayer::new(6))).unwrap();
    let e = no_copy.load_into(&path).unwrap_err();
    assert!(
        matches!(e, ModelError::NotBuilt { op: "load_into" }),
        "{e:?}"
    );
    assert!(!no_copy.is_built());
    no_copy.build(&[4]).unwrap();
    no_copy.load_into(&path).unwrap();
    assert_eq!(
        model.predict(&x, 8).unwrap().to_vec(),
        no_copy.predict(&x, 8).unwrap().to_vec()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn early_stopping_stops_and_restores_the_best_weights() {
    let (x, y) = data(30, 9);
    let mut model = classifier();
    // A learning rate that diverges after the first epochs: the loss goes up, training stops.
    let mut stop = EarlyStopping::new("loss")
        .patience(2)
        .restore_best_weights(true);
    let mut best = BestWeights::default();
    let h = model
        .fit(
            &x,
            &y,
            FitOptions {
                callbacks: vec![&mut best, &mut stop],
                ..quiet(50)
            },
        )
        .unwrap();
    let losses = &h["loss"];
    let (best_epoch, _) =
        losses.iter().enumerate().fold(
            (0, f32::INFINITY),
            |acc, (i, &l)| if l < acc.1 { (i, l) } else { acc },
        );
    if stop.stopped_epoch > 0 {
        assert_eq!(h.epoch.len(), stop.stopped_epoch + 1);
        assert_eq!(stop.stopped_epoch, stop.best_epoch + 2);
    }
    assert_eq!(stop.best_epoch, best_epoch);
    assert_eq!(values(&model), best.at[best_epoch]);
}

/// Records the weights after every epoch.
#[derive(Debug, Default)]
struct BestWeights {
    at: Vec<Vec<Vec<f32>>>,
}

impl Callback for BestWeights {
    fn on_epoch_end(&mut self, _: usize, _: &mut Logs, ctx: &mut TrainContext<'_>) -> Result<()> {
        self.at
            .push(ctx.get_weights().iter().map(Tensor::to_vec).collect());
        Ok(())
    }
}

#[test]
fn early_stopping_without_improvement_stops_after_patience() {
    let (x, y) = data(30, 10);
    let mut model = classifier();
    model
        .optimizer_mut()
        .unwrap()
        .set_learning_rate(0.0)
        .unwrap();
    let mut stop = EarlyStopping::new("loss").patience(3);
    let h = model
        .fit(
            &x,
            &y,
            FitOptions {
                callbacks: vec![&mut stop],
                ..quiet(20)
            },
        )
        .unwrap();
    // Epoch 0 sets the best; epochs 1, 2, 3 do not improve: stop after epoch 3.
    assert_eq!(h.epoch, vec![0, 1, 2, 3]);
    assert_eq!(stop.stopped_epoch, 3);
}

#[test]
fn learning_rate_callbacks_set_and_log_the_rate() {
    let (x, y) = data(30, 11);
    let mut model = classifier();
    let mut sched = LearningRateScheduler::new(|epoch, lr| if epoch == 0 { lr } else { lr * 0.5 });
    let h = model
        .fit(
            &x,
            &y,
            FitOptions {
                callbacks: vec![&mut sched],
                ..quiet(3)
            },
        )
        .unwrap();
    assert_eq!(h["learning_rate"], [0.1, 0.05, 0.025]);
    assert_eq!(model.optimizer().unwrap().learning_rate(), 0.025);

    model
        .optimizer_mut()
        .unwrap()
        .set_learning_rate(0.0)
        .unwrap();
    model
        .optimizer_mut()
        .unwrap()
        .set_learning_rate(1.0)
        .unwrap();
    model
        .optimizer_mut()
        .unwrap()
        .set_learning_rate(0.0)
        .unwrap();
    let mut plateau = ReduceLROnPlateau::new("loss")
        .patience(1)
        .factor(0.5)
        .min_lr(0.0);
    model
        .optimizer_mut()
        .unwrap()
        .set_learning_rate(0.0)
        .unwrap();
    let h = model
        .fit(
            &x,
            &y,
            FitOptions {
                callbacks: vec![&mut plateau],
                ..quiet(3)
            },
        )
        .unwrap();
    // lr 0: the loss never improves after epoch 0, so every epoch from 1 halves 0 (stays 0).
    assert_eq!(h["learning_rate"], [0.0, 0.0, 0.0]);
    model
        .optimizer_mut()
        .unwrap()
        .set_learning_rate(1e-12)
        .unwrap();
    let mut plateau = ReduceLROnPlateau::new("loss").patience(1).factor(0.5);
    let h = model
        .fit(
            &x,
            &y,
            FitOptions {
                callbacks: vec![&mut plateau],
                ..quiet(4)
            },
        )
        .unwrap();
    let lr = &h["learning_rate"];
    assert_eq!(lr[0], 1e-12);
    assert_eq!(lr[2], 0.5e-12);
    assert_eq!(lr[3], 0.25e-12);
}

#[test]
fn csv_logger_and_terminate_on_nan() {
    let (x, y) = data(30, 12);
    let mut model = classifier();
    let path = std::env::temp_dir().join(format!("gradus-models-log-{}.csv", std::process::id()));
    let mut log = CsvLogger::new(&path);
    let h = model
        .fit(
            &x,
            &y,
            FitOptions {
                validation_split: 0.2,
                callbacks: vec![&mut log],
                ..quiet(2)
            },
        )
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "epoch,accuracy,loss,val_accuracy,val_loss");
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[2].split(',').nth(2).unwrap(),
        h["loss"][1].to_string()
    );
    std::fs::remove_file(&path).unwrap();

    // With validation_freq 2 the first epoch has no val_ entries: the columns still have them
    // (as Keras' CSVLogger), with NA on the epochs without validation.
    let path = std::env::temp_dir().join(format!("gradus-models-log2-{}.csv", std::process::id()));
    let mut log = CsvLogger::new(&path);
    let h = model
        .fit(
            &x,
            &y,
            FitOptions {
                validation_split: 0.2,
                validation_freq: 2.into(),
                callbacks: vec![&mut log],
                ..quiet(2)
            },
        )
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "epoch,accuracy,loss,val_accuracy,val_loss");
    assert!(lines[1].ends_with(",NA,NA"), "{}", lines[1]);
    assert_eq!(
        lines[2].split(',').nth(4).unwrap(),
        h["val_loss"][0].to_string()
    );
    std::fs::remove_file(&path).unwrap();

    let mut nan = TerminateOnNaN::new();
    let mut opt = sgd(0.1);
    let vars = model.variables();
    let mut ctx = TrainContext::new(&mut opt, &vars);
    let mut logs = Logs::new();
    logs.insert("loss", 0.5);
    nan.on_train_batch_end(0, &logs, &mut ctx).unwrap();
    assert!(!ctx.stop_requested());
    logs.insert("loss", f32::NAN);
    nan.on_train_batch_end(4, &logs, &mut ctx).unwrap();
    assert!(ctx.stop_requested());
    assert_eq!(nan.terminated_at, Some(4));
}

#[test]
fn ema_weights_are_swapped_in_at_the_end_of_fit() {
    let (x, y) = data(30, 13);
    let mut model = Model::new(
        Sequential::new()
            .input_shape(&[4])
            .layer(Dense::new(3).activation("softmax")),
    )
    .unwrap();
    let opt = Optimizer::builder(Sgd::default())
        .learning_rate(0.1)
        .ema(0.9)
        .build()
        .unwrap();
    model
        .compile(
            opt,
            "sparse_categorical_crossentropy",
            gradus_models::NO_METRICS,
        )
        .unwrap();
    model.fit(&x, &y, quiet(3)).unwrap();
    let averages: Vec<Vec<f32>> = model
        .optimizer()
        .unwrap()
        .variables()
        .into_iter()
        .filter(|v| v.name.ends_with("average"))
        .map(|v| v.values)
        .collect();
    assert_eq!(averages.len(), 2);
    assert_eq!(values(&model), averages);
}

#[test]
fn layer_names_are_made_unique() {
    let net = Sequential::new()
        .layer(Dense::new(2))
        .layer(Dense::new(2))
        .layer(Dense::new(2));
    let names: Vec<String> = net.layers().iter().map(|l| l.name().to_string()).collect();
    assert_eq!(names, ["dense", "dense_1", "dense_2"]);
}

#[test]
fn the_seed_fixes_initial_weights_and_shuffling() {
    let (x, y) = data(30, 14);
    let run = |seed: u64| {
        let net = Sequential::new()
            .input_shape(&[4])
            .layer(Dense::new(3).activation("softmax"));
        let mut m = Model::with_seed(net, seed).unwrap();
        let initial = values(&m);
        m.compile(
            sgd(0.1),
            "sparse_categorical_crossentropy",
            gradus_models::NO_METRICS,
        )
        .unwrap();
        m.fit(
            &x,
            &y,
            FitOptions {
                batch_size: 4,
                ..quiet(2)
            },
        )
        .unwrap();
        (initial, values(&m))
    };
    assert_eq!(run(3), run(3));
    assert_ne!(run(3).0, run(4).0);
}
