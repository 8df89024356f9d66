//! Metrics: the examples of Keras' own documentation (values Keras prints), naive references on
//! random data with sample weights, accumulation across batches, the resolution of "accuracy",
//! names and configurations.

use gradus_losses::metrics::{
    LabelKind, METRIC_NAMES, Mean, MeanMetricWrapper, Metric, MetricFn, compile_metric, get_metric,
    label_kind, metric_from_config, resolve_accuracy,
};
use gradus_losses::{LOSS_NAMES, compile_loss, from_config, get};
use gradus_tensor::{Rng, Tensor};

fn t(values: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_vec(values.to_vec(), shape).unwrap()
}

/// Result after one batch, without and with weights.
fn run(f: MetricFn, y_true: &Tensor, y_pred: &Tensor, w: &[f32]) -> (f32, f32) {
    let mut m = MeanMetricWrapper::new(f);
    m.update_state(y_true, y_pred, None).unwrap();
    let plain = m.result();
    m.reset_state();
    let w = t(w, &[w.len()]);
    m.update_state(y_true, y_pred, Some(&w)).unwrap();
    (plain, m.result())
}

fn assert_close(got: (f32, f32), expected: (f32, f32)) {
    assert!(
        (got.0 - expected.0).abs() < 1e-6 && (got.1 - expected.1).abs() < 1e-6,
        "{got:?} vs {expected:?}"
    );
}

/// The examples in the docstrings of keras/src/metrics/{accuracy,regression}_metrics.py.
#[test]
fn keras_documentation_examples() {
    let col = |v: &[f32]| t(v, &[v.len(), 1]);
    assert_close(
        run(
            MetricFn::Accuracy,
            &col(&[1.0, 2.0, 3.0, 4.0]),
            &col(&[0.0, 2.0, 3.0, 4.0]),
            &[1.0, 1.0, 0.0, 0.0],
        ),
        (0.75, 0.5),
    );
    assert_close(
        run(
            MetricFn::BinaryAccuracy { threshold: 0.5 },
            &col(&[1.0, 1.0, 0.0, 0.0]),
            &col(&[0.98, 1.0, 0.0, 0.6]),
            &[1.0, 0.0, 0.0, 1.0],
        ),
        (0.75, 0.5),
    );
    let onehot = t(&[0.0, 0.0, 1.0, 0.0, 1.0, 0.0], &[2, 3]);
    let pred = t(&[0.1, 0.9, 0.8, 0.05, 0.95, 0.0], &[2, 3]);
    assert_close(
        run(MetricFn::CategoricalAccuracy, &onehot, &pred, &[0.7, 0.3]),
        (0.5, 0.3),
    );
    assert_close(
        run(
            MetricFn::TopKCategoricalAccuracy { k: 1 },
            &onehot,
            &pred,
            &[0.7, 0.3],
        ),
        (0.5, 0.3),
    );
    let sparse_pred = t(&[0.1, 0.6, 0.3, 0.05, 0.95, 0.0], &[2, 3]);
    assert_close(
        run(
            MetricFn::SparseCategoricalAccuracy,
            &col(&[2.0, 1.0]),
            &sparse_pred,
            &[0.7, 0.3],
        ),
        (0.5, 0.3),
    );
    let y = t(&[0.0, 1.0, 0.0, 0.0], &[2, 2]);
    let p = t(&[1.0, 1.0, 0.0, 0.0], &[2, 2]);
    assert_close(
        run(MetricFn::MeanSquaredError, &y, &p, &[1.0, 0.0]),
        (0.25, 0.5),
    );
    assert_close(
        run(MetricFn::MeanAbsoluteError, &y, &p, &[1.0, 0.0]),
        (0.25, 0.5),
    );

    let mut mean = Mean::new("mean");
    mean.update_state(&t(&[1.0, 3.0, 5.0, 7.0], &[4]), None)
        .unwrap();
    assert_eq!(mean.result(), 4.0);
    mean.reset_state();
    mean.update_state(
        &t(&[1.0, 3.0, 5.0, 7.0], &[4]),
        Some(&t(&[1.0, 1.0, 0.0, 0.0], &[4])),
    )
    .unwrap();
    assert_eq!(mean.result(), 2.0);
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b })
}

/// Naive references on random data, accumulated over two batches with weights.
#[test]
fn accuracies_match_naive_references_over_batches() {
    let mut rng = Rng::seed_from_u64(3);
    let (c, k) = (6, 3);
    let mut metrics = [
        MeanMetricWrapper::new(MetricFn::CategoricalAccuracy),
        MeanMetricWrapper::new(MetricFn::SparseCategoricalAccuracy),
        MeanMetricWrapper::new(MetricFn::TopKCategoricalAccuracy { k }),
        MeanMetricWrapper::new(MetricFn::BinaryAccuracy { threshold: 0.3 }),
        MeanMetricWrapper::new(MetricFn::SparseTopKCategoricalAccuracy { k }),
    ];
    let mut totals = [(0.0f64, 0.0f64); 5];
    for n in [7, 13] {
        let pred = Tensor::rand_uniform(&[n, c], 0.0, 1.0, &mut rng);
        let ids: Vec<f32> = (0..n)
            .map(|_| (rng.uniform_f32() * c as f32).floor())
            .collect();
        let labels = t(&ids, &[n]);
        let onehot = Tensor::one_hot_tensor(&labels, c).unwrap();
        let bin_labels = Tensor::rand_uniform(&[n, c], 0.0, 1.0, &mut rng).map(|v| v.round());
        let w: Vec<f32> = (0..n).map(|_| rng.uniform_f32() * 2.0).collect();
        let wt = t(&w, &[n]);
        metrics[0].update_state(&onehot, &pred, Some(&wt)).unwrap();
        metrics[1].update_state(&labels, &pred, Some(&wt)).unwrap();
        metrics[2].update_state(&onehot, &pred, Some(&wt)).unwrap();
        metrics[3]
            .update_state(&bin_labels, &pred, Some(&wt))
            .unwrap();
        let column = labels.reshape(&[n, 1]).unwrap();
        metrics[4].update_state(&column, &pred, Some(&wt)).unwrap();
        let p = pred.to_vec();
        let b = bin_labels.to_vec();
        for r in 0..n {
            let row = &p[r * c..(r + 1) * c];
            let label = ids[r] as usize;
            let hit = f64::from(u8::from(argmax(row) == label));
            let higher = row.iter().filter(|&&v| v > row[label]).count();
            let in_top = f64::from(u8::from(higher < k));
            let bin: f64 = (0..c)
                .map(|j| f64::from(u8::from((row[j] > 0.3) == (b[r * c + j] == 1.0))))
                .sum::<f64>()
                / c as f64;
            let w = f64::from(w[r]);
            for (total, v) in totals.iter_mut().zip([hit, hit, in_top, bin, in_top]) {
                total.0 += v * w;
                total.1 += w;
            }
        }
    }
    for (m, (num, den)) in metrics.iter().zip(totals) {
        let expected = (num / den) as f32;
        assert!(
            (m.result() - expected).abs() < 1e-5,
            "{}: {} vs {expected}",
            m.name(),
            m.result()
        );
    }
}

#[test]
fn top_k_counts_ties_at_the_boundary_as_in() {
    // TensorFlow's in_top_k: the target is in if fewer than k classes score strictly higher.
    let y = t(&[0.0, 0.0, 1.0, 0.0], &[1, 4]);
    let p = t(&[0.5, 0.5, 0.5, 0.1], &[1, 4]);
    assert_close(
        run(MetricFn::TopKCategoricalAccuracy { k: 1 }, &y, &p, &[1.0]),
        (1.0, 1.0),
    );
    let p = t(&[0.6, 0.5, 0.5, 0.1], &[1, 4]);
    assert_close(
        run(MetricFn::TopKCategoricalAccuracy { k: 1 }, &y, &p, &[1.0]),
        (0.0, 0.0),
    );
}

#[test]
fn mean_weights_like_keras() {
    // 2-D values with [batch] weights: values averaged per sample first.
    let mut m = Mean::new("m");
    let v = t(&[1.0, 3.0, 10.0, 20.0], &[2, 2]);
    m.update_state(&v, Some(&t(&[1.0, 3.0], &[2]))).unwrap();
    assert_eq!(m.result(), (2.0 + 3.0 * 15.0) / 4.0);
    // A scalar weight weights the batch mean; the loss tracker's scalar updates.
    m.reset_state();
    m.update_state(&t(&[1.0, 3.0], &[2]), Some(&Tensor::scalar(4.0)))
        .unwrap();
    assert_eq!((m.total(), m.count()), (8.0, 4.0));
    m.update_scalar(5.0, 4.0);
    assert_eq!(m.result(), 3.5);
    // Nothing seen yet: 0, as Keras' divide_no_nan.
    assert_eq!(Mean::new("empty").result(), 0.0);
}

#[test]
fn accuracy_resolves_by_shapes_as_keras_3() {
    assert_eq!(label_kind(&[4, 1], &[4, 1]), LabelKind::Binary);
    assert_eq!(label_kind(&[4], &[4, 1]), LabelKind::Binary);
    assert_eq!(label_kind(&[4], &[4, 5]), LabelKind::Sparse);
    assert_eq!(label_kind(&[4, 1], &[4, 5]), LabelKind::Sparse);
    assert_eq!(label_kind(&[4, 5], &[4, 5]), LabelKind::Categorical);
    assert_eq!(
        resolve_accuracy(&[4, 7, 1], &[4, 7, 5]),
        MetricFn::SparseCategoricalAccuracy
    );
    for id in ["accuracy", "acc", "ACC", "Accuracy"] {
        let m = compile_metric(id, &[4, 1], &[4, 1]).unwrap();
        assert_eq!(m.name(), id);
        assert_eq!(m.function(), MetricFn::BinaryAccuracy { threshold: 0.5 });
    }
    let m = compile_metric("mse", &[4, 2], &[4, 2]).unwrap();
    assert_eq!(
        (m.name(), m.function()),
        ("mse", MetricFn::MeanSquaredError)
    );
    // The loss identifiers "crossentropy" / "ce" resolve the same way.
    let loss = compile_loss("ce", &[4], &[4, 3]).unwrap();
    assert_eq!(loss.config().class_name, "SparseCategoricalCrossentropy");
    assert_eq!(loss.name(), "ce");
    let loss = compile_loss("crossentropy", &[4, 1], &[4, 1]).unwrap();
    assert_eq!(loss.config().class_name, "BinaryCrossentropy");
    assert_eq!(compile_loss("mae", &[4], &[4, 3]).unwrap().name(), "mae");
}

#[test]
fn names_and_configs_round_trip() {
    for name in LOSS_NAMES {
        let loss = get(name).unwrap();
        let json = serde_json::to_string(&loss.config()).unwrap();
        let back = from_config(&serde_json::from_str(&json).unwrap()).unwrap();
        assert_eq!(back.config(), loss.config(), "{json}");
    }
    assert_eq!(
        get("MeanSquaredError").unwrap().name(),
        "mean_squared_error"
    );
    assert_eq!(get("Huber").unwrap().name(), "huber_loss");
    assert_eq!(get("kld").unwrap().config().class_name, "KLDivergence");
    // Keras spells the reduction in snake case and accepts "mean".
    let cfg: gradus_losses::LossConfig = serde_json::from_str(
        r#"{"class_name": "MeanSquaredError", "name": "mse", "reduction": "mean"}"#,
    )
    .unwrap();
    assert_eq!(cfg.reduction, gradus_losses::Reduction::SumOverBatchSize);

    for name in METRIC_NAMES {
        let m = get_metric(name).unwrap();
        let json = serde_json::to_string(&m.config()).unwrap();
        let back = metric_from_config(&serde_json::from_str(&json).unwrap()).unwrap();
        assert_eq!(back.config(), m.config(), "{json}");
    }
    let top5 = get_metric("top_k_categorical_accuracy").unwrap();
    assert_eq!(top5.config().k, Some(5));
    assert_eq!(
        get_metric("binary_accuracy").unwrap().config().threshold,
        Some(0.5)
    );
}

/// Models holding losses and metrics must be movable between threads.
#[test]
fn losses_and_metrics_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Box<dyn gradus_losses::Loss>>();
    send_sync::<Box<dyn Metric>>();
    send_sync::<MeanMetricWrapper>();
    send_sync::<Mean>();
}
