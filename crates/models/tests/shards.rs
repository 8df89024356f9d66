//! Data-parallel steps: with two threads, `fit`, `evaluate` and `predict` cut large batches of
//! networks that split over the batch into shards run on separate threads. The results must
//! equal one thread's up to the order of float sums; networks that must not split (Dropout,
//! BatchNormalization in training) stay bit-identical; an error in a shard changes nothing.
//!
//! The thread count is global to the process: every test here takes `THREADS` first.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use gradus_autograd::Var;
use gradus_layers::{
    BatchNormalization, Conv2D, Dense, Dropout, Flatten, L2, Layer, LayerConfig, MaxPooling2D,
};
use gradus_losses::{Reduction, SparseCategoricalCrossentropy};
use gradus_models::{FitOptions, History, Model, ModelError, Network, Sequential};
use gradus_optim::Optimizer;
use gradus_optim::rules::Adam;
use gradus_tensor::{Rng, Tensor, parallel};

/// Serializes the tests of this binary (they set the process-wide thread count).
static THREADS: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    THREADS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The identity, recording the batch sizes it is called with; says it splits when `splits`.
#[derive(Debug, Default)]
struct Probe {
    shape: Option<Vec<usize>>,
    rows: Arc<Mutex<Vec<usize>>>,
    splits: bool,
}

/// A probe and the batch sizes it will record.
fn probe(splits: bool) -> (Probe, Arc<Mutex<Vec<usize>>>) {
    let probe = Probe {
        splits,
        ..Probe::default()
    };
    let rows = Arc::clone(&probe.rows);
    (probe, rows)
}

fn recorded(rows: &Mutex<Vec<usize>>) -> Vec<usize> {
    let mut rows = rows.lock().unwrap_or_else(PoisonError::into_inner).clone();
    rows.sort_unstable_by(|a, b| b.cmp(a)); // the shards of a batch end in any order
    rows
}

impl Layer for Probe {
    fn class_name(&self) -> &'static str {
        "Probe"
    }
    fn name(&self) -> &str {
        "probe"
    }
    fn set_name(&mut self, _name: &str) -> gradus_layers::Result<()> {
        Ok(())
    }
    fn build(&mut self, input_shape: &[usize], _rng: &mut Rng) -> gradus_layers::Result<()> {
        self.shape = Some(input_shape.to_vec());
        Ok(())
    }
    fn built_input_shape(&self) -> Option<&[usize]> {
        self.shape.as_deref()
    }
    fn call<'t>(&self, x: &Var<'t>, _training: bool) -> gradus_layers::Result<Var<'t>> {
        self.rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(x.shape()[0]);
        Ok(x.clone())
    }
    fn output_shape(&self, input_shape: &[usize]) -> gradus_layers::Result<Vec<usize>> {
        Ok(input_shape.to_vec())
    }
    fn config(&self) -> LayerConfig {
        LayerConfig {
            class_name: "Probe".into(),
            config: serde_json::json!({ "name": "probe" }),
        }
    }
    fn splits_over_batch(&self, _training: bool) -> bool {
        self.splits
    }
    fn gains_from_shards(&self) -> bool {
        self.splits
    }
}

/// `n` samples of `shape` drawn uniformly, labels in `0..10`.
fn data(n: usize, shape: &[usize], seed: u64) -> (Tensor, Tensor) {
    let mut rng = Rng::seed_from_u64(seed);
    let per: usize = shape.iter().product();
    let x: Vec<f32> = (0..n * per).map(|_| rng.uniform_f32()).collect();
    let y: Vec<f32> = (0..n).map(|_| rng.below(10) as f32).collect();
    let mut full = vec![n];
    full.extend_from_slice(shape);
    (
        Tensor::from_vec(x, &full).unwrap(),
        Tensor::from_vec(y, &[n]).unwrap(),
    )
}

fn adam() -> Optimizer {
    Optimizer::builder(Adam::default())
        .learning_rate(1e-2)
        .build()
        .unwrap()
}

/// A model of `net`, compiled with Adam, `loss` and accuracy.
fn compiled(net: Sequential, loss: SparseCategoricalCrossentropy) -> Model<Sequential> {
    let mut model = Model::with_seed(net, 7).unwrap();
    model.compile(adam(), loss, ["accuracy"]).unwrap();
    model
}

fn fit(model: &mut Model<Sequential>, x: &Tensor, y: &Tensor, batch_size: usize) -> History {
    model
        .fit(
            x,
            y,
            FitOptions {
                batch_size,
                epochs: 3,
                verbose: 0,
                validation_split: 0.2,
                ..Default::default()
            },
        )
        .unwrap()
}

/// `|a - b| <= 1e-5 (1 + |b|)` element by element.
fn assert_close(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (&a, &b)) in a.iter().zip(b).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
            "{what}[{i}]: {a} with two threads, {b} with one"
        );
    }
}

fn assert_histories_close(two: &History, one: &History) {
    for key in ["loss", "accuracy", "val_loss", "val_accuracy"] {
        assert_close(key, &two[key], &one[key]);
    }
}

fn assert_weights_close(two: &Model<Sequential>, one: &Model<Sequential>) {
    for (a, b) in two.get_weights().iter().zip(one.get_weights()) {
        assert_close("weights", &a.to_vec(), &b.to_vec());
    }
}

/// Fits a fresh model of `net()` with one then two threads; returns both models and
/// histories (one thread first).
fn one_and_two(
    net: impl Fn() -> Sequential,
    loss: impl Fn() -> SparseCategoricalCrossentropy,
    (x, y): (&Tensor, &Tensor),
    batch_size: usize,
) -> [(Model<Sequential>, History); 2] {
    [1, 2].map(|threads| {
        parallel::set_num_threads(threads);
        let mut model = compiled(net(), loss());
        let history = fit(&mut model, x, y, batch_size);
        (model, history)
    })
}

#[test]
fn sharded_mlp_fit_equals_one_thread() {
    let _guard = lock();
    let (x, y) = data(320, &[6, 6], 1);
    let net = || {
        // The probe makes the network gain from shards (Dense layers alone do not).
        Sequential::new()
            .layer(probe(true).0)
            .layer(Flatten::new())
            .layer(
                Dense::new(16)
                    .activation("relu")
                    .kernel_regularizer(L2::new(0.01)),
            )
            .layer(Dense::new(10))
    };
    let loss = || SparseCategoricalCrossentropy::new().from_logits(true);
    let [(one, h1), (two, h2)] = one_and_two(net, loss, (&x, &y), 128);
    assert_histories_close(&h2, &h1);
    assert_weights_close(&two, &one);
    parallel::set_num_threads(1);
}

#[test]
fn sharded_cnn_fit_equals_one_thread_with_a_summed_loss() {
    let _guard = lock();
    let (x, y) = data(160, &[8, 8, 1], 2);
    let net = || {
        Sequential::new()
            .layer(Conv2D::new(4, 3).activation("relu"))
            .layer(MaxPooling2D::new(2))
            .layer(Flatten::new())
            .layer(Dense::new(10).activation("softmax"))
    };
    let loss = || SparseCategoricalCrossentropy::new().with_reduction(Reduction::Sum);
    let [(one, h1), (two, h2)] = one_and_two(net, loss, (&x, &y), 64);
    assert_histories_close(&h2, &h1);
    assert_weights_close(&two, &one);
    parallel::set_num_threads(1);
}

#[test]
fn a_sharded_fit_is_reproducible_bit_for_bit() {
    let _guard = lock();
    // Shards of 64 images large enough that their kernels open regions of their own, which an
    // idle thread may help with (`gradus_tensor::parallel`): the bits must not depend on who
    // runs what.
    let (x, y) = data(512, &[28, 28, 1], 3);
    let net = || {
        Sequential::new()
            .layer(Conv2D::new(16, 3).activation("relu"))
            .layer(MaxPooling2D::new(2))
            .layer(Flatten::new())
            .layer(Dense::new(10))
    };
    parallel::set_num_threads(2);
    let weights: Vec<Vec<u32>> = (0..3)
        .map(|_| {
            let mut model = compiled(
                net(),
                SparseCategoricalCrossentropy::new().from_logits(true),
            );
            fit(&mut model, &x, &y, 128);
            model
                .get_weights()
                .iter()
                .flat_map(|w| w.to_vec())
                .map(f32::to_bits)
                .collect()
        })
        .collect();
    assert!(weights.iter().all(|w| *w == weights[0]));
    parallel::set_num_threads(1);
}

#[test]
fn batches_are_cut_into_shards_of_at_least_32_rows() {
    let _guard = lock();
    parallel::set_num_threads(2);
    let (x, y) = data(100, &[4], 3);
    let (probe, rows) = probe(true);
    let mut model = compiled(
        Sequential::new().layer(probe).layer(Dense::new(10)),
        SparseCategoricalCrossentropy::new().from_logits(true),
    );
    let options = FitOptions {
        batch_size: 70,
        verbose: 0,
        ..Default::default()
    };
    model.fit(&x, &y, options).unwrap();
    // 70 rows: two shards of 35; the last 30: too few to cut.
    assert_eq!(recorded(&rows), [35, 35, 30]);
    rows.lock().unwrap().clear();
    model.predict(&x, 100).unwrap();
    model.evaluate(&x, &y, 65).unwrap();
    assert_eq!(recorded(&rows), [50, 50, 35, 33, 32]);
    parallel::set_num_threads(1);
}

#[test]
fn a_layer_that_does_not_say_it_splits_is_never_sharded() {
    let _guard = lock();
    parallel::set_num_threads(2);
    let (x, y) = data(128, &[4], 4);
    let (probe, rows) = probe(false);
    let mut model = compiled(
        Sequential::new().layer(probe).layer(Dense::new(10)),
        SparseCategoricalCrossentropy::new().from_logits(true),
    );
    let options = FitOptions {
        batch_size: 128,
        verbose: 0,
        ..Default::default()
    };
    model.fit(&x, &y, options).unwrap();
    model.evaluate(&x, &y, 128).unwrap();
    model.predict(&x, 128).unwrap();
    assert_eq!(recorded(&rows), [128, 128, 128]);
    parallel::set_num_threads(1);
}

#[test]
fn dropout_and_batch_norm_in_training_stay_bit_identical() {
    let _guard = lock();
    let (x, y) = data(256, &[8], 5);
    let nets: [fn() -> Sequential; 2] = [
        || {
            Sequential::new()
                .layer(Dense::new(16).activation("relu"))
                .layer(Dropout::new(0.5))
                .layer(Dense::new(10))
        },
        || {
            Sequential::new()
                .layer(Dense::new(16))
                .layer(BatchNormalization::new())
                .layer(Dense::new(10))
        },
    ];
    for net in nets {
        let loss = || SparseCategoricalCrossentropy::new().from_logits(true);
        let [(one, h1), (two, h2)] = one_and_two(net, loss, (&x, &y), 128);
        assert_eq!(h2["loss"], h1["loss"]);
        assert_eq!(h2["accuracy"], h1["accuracy"]);
        assert_eq!(two.get_weights(), one.get_weights());
    }
    parallel::set_num_threads(1);
}

#[test]
fn sharded_evaluate_and_predict_equal_one_thread() {
    let _guard = lock();
    let (x, y) = data(200, &[8], 6);
    let net = Sequential::new()
        .layer(probe(true).0)
        .layer(Dense::new(16).activation("relu"))
        .layer(Dropout::new(0.5)) // no effect outside training: still splits
        .layer(BatchNormalization::new())
        .layer(Dense::new(10).activation("softmax"));
    let mut model = compiled(net, SparseCategoricalCrossentropy::new());
    parallel::set_num_threads(1);
    fit(&mut model, &x, &y, 50);
    let (logs1, p1) = (
        model.evaluate(&x, &y, 100).unwrap(),
        model.predict(&x, 100).unwrap(),
    );
    parallel::set_num_threads(2);
    let (logs2, p2) = (
        model.evaluate(&x, &y, 100).unwrap(),
        model.predict(&x, 100).unwrap(),
    );
    assert_close("predictions", &p2.to_vec(), &p1.to_vec());
    assert_eq!(p2.shape(), p1.shape());
    assert_eq!(logs2.len(), logs1.len());
    for (name, value) in logs1.iter() {
        assert_close(name, &[logs2.get(name).unwrap()], &[value]);
    }
    parallel::set_num_threads(1);
}

#[test]
fn an_error_in_a_shard_is_the_whole_batch_error_and_changes_nothing() {
    let _guard = lock();
    let (x, mut y) = data(256, &[8], 7);
    // Sample 200 (in the second shard of the second batch) has a label out of range.
    let mut labels = y.to_vec();
    labels[200] = 12.0;
    y = Tensor::from_vec(labels, &[256]).unwrap();
    let errors = [1, 2].map(|threads| {
        parallel::set_num_threads(threads);
        let net = Sequential::new()
            .layer(probe(true).0)
            .layer(Dense::new(16).activation("relu"))
            .layer(Dense::new(10));
        let mut model = compiled(net, SparseCategoricalCrossentropy::new().from_logits(true));
        model.build(&[8]).unwrap();
        let before = model.get_weights();
        let options = FitOptions {
            batch_size: 128,
            shuffle: false,
            verbose: 0,
            ..Default::default()
        };
        let err = model.fit(&x, &y, options).unwrap_err();
        assert_eq!(model.get_weights(), before, "{threads} threads");
        assert!(!model.optimizer().unwrap().is_built(), "{threads} threads");
        let eval = model.evaluate(&x, &y, 128).unwrap_err();
        (err.to_string(), eval.to_string())
    });
    assert!(
        matches!(&errors[0].0, e if e.contains("12") && e.contains("position 72")),
        "{errors:?}"
    );
    assert_eq!(errors[1], errors[0]);
    parallel::set_num_threads(1);
}

#[test]
fn a_shard_error_is_a_loss_error() {
    let _guard = lock();
    parallel::set_num_threads(2);
    let (x, _) = data(64, &[8], 8);
    let y = Tensor::full(&[64], 10.0); // every label out of range
    let mut model = compiled(
        Sequential::new().layer(probe(true).0).layer(Dense::new(10)),
        SparseCategoricalCrossentropy::new().from_logits(true),
    );
    let options = FitOptions {
        batch_size: 64,
        verbose: 0,
        ..Default::default()
    };
    let err = model.fit(&x, &y, options).unwrap_err();
    assert!(matches!(err, ModelError::Loss(_)), "{err:?}");
    parallel::set_num_threads(1);
}

#[test]
fn only_networks_with_a_layer_that_gains_are_sharded() {
    let mlp = Sequential::new()
        .layer(Flatten::new())
        .layer(Dense::new(16).activation("relu"))
        .layer(Dense::new(10));
    assert!(mlp.splits_over_batch(true) && !mlp.gains_from_shards());
    let cnn = Sequential::new()
        .layer(Conv2D::new(4, 3))
        .layer(Flatten::new())
        .layer(Dense::new(10));
    assert!(cnn.splits_over_batch(true) && cnn.gains_from_shards());
    // An MLP is not cut (its products split over the threads instead): the probe that splits
    // but does not say it gains sees whole batches.
    let _guard = lock();
    parallel::set_num_threads(2);
    let (x, y) = data(128, &[8], 9);
    let (splits, rows) = probe(true);
    let net = Sequential::new()
        .layer(GainsNothing(splits))
        .layer(Dense::new(10));
    let mut model = compiled(net, SparseCategoricalCrossentropy::new().from_logits(true));
    fit(&mut model, &x, &y, 128); // 102 training rows, 26 for validation
    model.predict(&x, 128).unwrap(); // 128 rows
    let rows = recorded(&rows);
    assert!(rows.contains(&128), "{rows:?}");
    assert!(
        rows.iter().all(|&r| [102, 26, 128].contains(&r)),
        "{rows:?}"
    );
    parallel::set_num_threads(1);
}

/// A probe that splits over the batch but does not gain from shards.
#[derive(Debug)]
struct GainsNothing(Probe);

impl Layer for GainsNothing {
    fn class_name(&self) -> &'static str {
        self.0.class_name()
    }
    fn name(&self) -> &str {
        self.0.name()
    }
    fn set_name(&mut self, name: &str) -> gradus_layers::Result<()> {
        self.0.set_name(name)
    }
    fn build(&mut self, input_shape: &[usize], rng: &mut Rng) -> gradus_layers::Result<()> {
        self.0.build(input_shape, rng)
    }
    fn built_input_shape(&self) -> Option<&[usize]> {
        self.0.built_input_shape()
    }
    fn call<'t>(&self, x: &Var<'t>, training: bool) -> gradus_layers::Result<Var<'t>> {
        self.0.call(x, training)
    }
    fn output_shape(&self, input_shape: &[usize]) -> gradus_layers::Result<Vec<usize>> {
        self.0.output_shape(input_shape)
    }
    fn config(&self) -> LayerConfig {
        self.0.config()
    }
    fn splits_over_batch(&self, training: bool) -> bool {
        self.0.splits_over_batch(training)
    }
}

#[test]
fn the_input_check_names_the_first_bad_sample_for_any_thread_count() {
    let _guard = lock();
    // 20,000 samples of 8 values: two pieces of the input scan with two threads (samples
    // 0..10,000 and 10,000..20,000).
    let (x, y) = data(20_000, &[8], 3);
    let with = |bad: &[(usize, f32)]| {
        let mut values = x.to_vec();
        for &(sample, v) in bad {
            values[sample * 8 + 5] = v;
        }
        Tensor::from_vec(values, &[20_000, 8]).unwrap()
    };
    let cases = [
        // Only the second piece holds bad values: the first of them is named.
        (with(&[(17_000, f32::NAN), (15_000, f32::INFINITY)]), 15_000),
        // Both pieces do: the first piece's wins, whichever thread finishes first.
        (
            with(&[(12_000, f32::NAN), (4_000, f32::NEG_INFINITY)]),
            4_000,
        ),
    ];
    for threads in [1, 2] {
        parallel::set_num_threads(threads);
        for (bad_x, sample) in &cases {
            let net = Sequential::new().layer(Dense::new(10));
            let mut model = compiled(net, SparseCategoricalCrossentropy::new().from_logits(true));
            model.build(&[8]).unwrap();
            let before = model.get_weights();
            let err = model
                .fit(
                    bad_x,
                    &y,
                    FitOptions {
                        verbose: 0,
                        ..Default::default()
                    },
                )
                .unwrap_err();
            match err {
                ModelError::NonFinite {
                    what, sample: got, ..
                } => assert_eq!((what.as_str(), got), ("x", *sample), "{threads} threads"),
                other => panic!("{threads} threads: {other}"),
            }
            assert_eq!(model.get_weights(), before, "{threads} threads");
        }
    }
    parallel::set_num_threads(1);
}

#[test]
fn data_written_after_a_clean_fit_is_checked_again() {
    let _guard = lock();
    // Each round: a clean fit (`x` remembers that it is finite), a write, a fit that must look
    // again and refuse, then the value put back. The first write goes through `as_slice_mut`
    // while a clone shares the buffer (copied first), the second through `view_mut` when `x`
    // holds its buffer alone (written in place).
    let (mut x, y) = data(300, &[8], 4);
    let net = Sequential::new().layer(Dense::new(10));
    let mut model = compiled(net, SparseCategoricalCrossentropy::new().from_logits(true));
    let quiet = || FitOptions {
        verbose: 0,
        ..Default::default()
    };
    let snapshot = x.clone();
    for (sample, write) in [(250usize, 0), (7, 1)] {
        model.fit(&x, &y, quiet()).unwrap();
        let at = sample * 8 + 3;
        let old = x.to_vec()[at];
        match write {
            0 => x.as_slice_mut()[at] = f32::NAN,
            _ => x.view_mut()[[sample, 3]] = f32::INFINITY,
        }
        let before = model.get_weights();
        match model.fit(&x, &y, quiet()).unwrap_err() {
            ModelError::NonFinite { sample: got, .. } => assert_eq!(got, sample, "write {write}"),
            other => panic!("write {write}: {other}"),
        }
        assert_eq!(model.get_weights(), before, "write {write}");
        x.as_slice_mut()[at] = old;
    }
    // The clone taken before the writes kept the clean values.
    assert_eq!(snapshot, x);
}

#[test]
fn an_unsharded_fit_is_bit_identical_for_any_thread_count() {
    let _guard = lock();
    // Products of 128 x 784 x 128 (split over the threads) and a 784 x 128 kernel (Adam updates
    // it in pieces, one per thread): neither may change a bit.
    let (x, y) = data(256, &[784], 5);
    let [one, two] = [1, 2].map(|threads| {
        parallel::set_num_threads(threads);
        let net = Sequential::new()
            .layer(Dense::new(128).activation("relu"))
            .layer(Dense::new(10));
        assert!(!net.gains_from_shards());
        let mut model = compiled(net, SparseCategoricalCrossentropy::new().from_logits(true));
        let history = fit(&mut model, &x, &y, 128);
        let optimizer = model.optimizer().unwrap().get_weights();
        (model.get_weights(), optimizer, history)
    });
    parallel::set_num_threads(1);
    assert_eq!(one.0, two.0, "weights");
    assert_eq!(one.1, two.1, "optimizer state");
    assert_eq!(one.2, two.2, "history");
}
