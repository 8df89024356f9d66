//! Every error path: bad shapes (naming both), labels out of range, non-finite inputs, unknown
//! names (listing the known ones), bad configurations, bad sample weights.

use gradus_autograd::Var;
use gradus_losses::metrics::{
    Mean, MeanMetricWrapper, Metric, MetricConfig, MetricFn, get_metric, metric_from_config,
};
use gradus_losses::{
    BinaryCrossentropy, CategoricalCrossentropy, Huber, KLDivergence, Loss, LossConfig, LossError,
    MeanAbsoluteError, MeanSquaredError, Reduction, SparseCategoricalCrossentropy, from_config,
    get,
};
use gradus_tensor::Tensor;

fn t(values: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_vec(values.to_vec(), shape).unwrap()
}

fn every_loss() -> Vec<Box<dyn Loss>> {
    vec![
        Box::new(MeanSquaredError::new()),
        Box::new(MeanAbsoluteError::new()),
        Box::new(Huber::new()),
        Box::new(BinaryCrossentropy::new()),
        Box::new(BinaryCrossentropy::new().from_logits(true)),
        Box::new(CategoricalCrossentropy::new()),
        Box::new(CategoricalCrossentropy::new().from_logits(true)),
        Box::new(KLDivergence::new()),
    ]
}

#[test]
fn mismatched_shapes_name_both() {
    let y_true = Tensor::zeros(&[2, 3]);
    let y_pred = Var::constant(Tensor::full(&[2, 4], 0.25));
    for loss in every_loss() {
        let err = loss.call(&y_true, &y_pred).unwrap_err();
        assert!(matches!(err, LossError::ShapeMismatch { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("[2, 3]") && msg.contains("[2, 4]"), "{msg}");
        assert!(msg.contains(loss.name()), "{msg}");
    }
    // A scalar prediction and an empty class axis have no last axis to average over.
    for shape in [&[][..], &[2, 0]] {
        let err = MeanSquaredError::new()
            .call(&Tensor::zeros(shape), &Var::constant(Tensor::zeros(shape)))
            .unwrap_err();
        assert!(matches!(err, LossError::ShapeMismatch { .. }), "{err}");
    }
}

#[test]
fn sparse_labels_are_checked() {
    let logits = Var::constant(Tensor::zeros(&[2, 4]));
    for from_logits in [false, true] {
        let scce = SparseCategoricalCrossentropy::new().from_logits(from_logits);
        for (labels, bad, index) in [
            ([0.0, 4.0], 4.0, 1),
            ([-1.0, 0.0], -1.0, 0),
            ([1.5, 0.0], 1.5, 0),
        ] {
            let err = scce.call(&t(&labels, &[2]), &logits).unwrap_err();
            assert_eq!(
                err,
                LossError::LabelOutOfRange {
                    op: "sparse_categorical_crossentropy".into(),
                    label: bad,
                    index,
                    classes: 4
                }
            );
            assert!(err.to_string().contains("0..4"), "{err}");
        }
        // Labels of the wrong shape.
        let err = scce.call(&Tensor::zeros(&[3]), &logits).unwrap_err();
        assert!(matches!(err, LossError::ShapeMismatch { .. }), "{err}");
        assert!(err.to_string().contains("[3]") && err.to_string().contains("[2, 4]"));
        let err = scce.call(&Tensor::zeros(&[2, 4]), &logits).unwrap_err();
        assert!(matches!(err, LossError::ShapeMismatch { .. }), "{err}");
    }
}

#[test]
fn non_finite_inputs_are_errors() {
    let y_true = Tensor::zeros(&[2, 2]);
    let nan_pred = Var::constant(t(&[0.5, 0.5, f32::NAN, 0.5], &[2, 2]));
    for loss in every_loss() {
        let err = loss.call(&y_true, &nan_pred).unwrap_err();
        assert!(
            matches!(
                err,
                LossError::NonFinite {
                    input: "y_pred",
                    index: 2,
                    ..
                }
            ),
            "{}: {err}",
            loss.name()
        );
        assert!(err.to_string().contains("NaN"), "{err}");
    }
    let inf_true = t(&[0.0, f32::INFINITY, 0.0, 1.0], &[2, 2]);
    let err = MeanSquaredError::new()
        .call(&inf_true, &Var::constant(Tensor::zeros(&[2, 2])))
        .unwrap_err();
    assert!(
        matches!(
            err,
            LossError::NonFinite {
                input: "y_true",
                index: 1,
                ..
            }
        ),
        "{err}"
    );
    let err = SparseCategoricalCrossentropy::new()
        .call(&t(&[0.0, 1.0], &[2]), &nan_pred)
        .unwrap_err();
    assert!(matches!(err, LossError::NonFinite { .. }), "{err}");
}

#[test]
fn unknown_names_list_the_known_ones() {
    let err = get("mean_squared_errr").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("mean_squared_errr") && msg.contains("mse") && msg.contains("kld"),
        "{msg}"
    );
    let err = get_metric("acuracy").unwrap_err();
    assert!(
        matches!(err, LossError::UnknownName { kind: "metric", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("sparse_categorical_accuracy"));
    let err = "avg".parse::<Reduction>().unwrap_err();
    assert!(err.to_string().contains("sum_over_batch_size"), "{err}");
    let config = LossConfig {
        class_name: "Hinge".into(),
        ..MeanSquaredError::new().config()
    };
    let err = from_config(&config).unwrap_err();
    assert!(err.to_string().contains("Hinge") && err.to_string().contains("Huber"));
    let config = MetricConfig {
        class_name: "AUC".into(),
        name: "auc".into(),
        threshold: None,
        k: None,
    };
    assert!(matches!(
        metric_from_config(&config),
        Err(LossError::UnknownName { .. })
    ));
}

#[test]
fn bad_configurations_are_errors() {
    let y = Tensor::zeros(&[2, 2]);
    let p = Var::constant(Tensor::full(&[2, 2], 0.5));
    let err = BinaryCrossentropy::new()
        .label_smoothing(1.5)
        .call(&y, &p)
        .unwrap_err();
    assert!(matches!(err, LossError::InvalidConfig { .. }) && err.to_string().contains("1.5"));
    let err = CategoricalCrossentropy::new()
        .label_smoothing(-0.1)
        .call(&y, &p)
        .unwrap_err();
    assert!(matches!(err, LossError::InvalidConfig { .. }), "{err}");
    let err = Huber::new().delta(-1.0).call(&y, &p).unwrap_err();
    assert!(matches!(err, LossError::InvalidConfig { .. }) && err.to_string().contains("-1"));
    let config = LossConfig {
        label_smoothing: Some(2.0),
        ..BinaryCrossentropy::new().config()
    };
    assert!(matches!(
        from_config(&config),
        Err(LossError::InvalidConfig { .. })
    ));
    // Probabilities whose row sums to zero cannot be normalised.
    let zero_row = Var::constant(t(&[0.0, 0.0, 0.5, 0.5], &[2, 2]));
    let err = CategoricalCrossentropy::new()
        .call(&y, &zero_row)
        .unwrap_err();
    assert!(err.to_string().contains("row 0"), "{err}");
    // Binary accuracy thresholds must lie in (0, 1).
    let mut m = MeanMetricWrapper::new(MetricFn::BinaryAccuracy { threshold: 1.0 });
    let err = m.update_state(&y, p.value(), None).unwrap_err();
    assert!(matches!(err, LossError::InvalidConfig { .. }), "{err}");
    let config = MetricConfig {
        class_name: "BinaryAccuracy".into(),
        name: "b".into(),
        threshold: Some(0.0),
        k: None,
    };
    assert!(matches!(
        metric_from_config(&config),
        Err(LossError::InvalidConfig { .. })
    ));
}

#[test]
fn bad_sample_weights_are_errors() {
    let y = Tensor::zeros(&[4, 2]);
    let p = Var::constant(Tensor::full(&[4, 2], 0.5));
    let err = MeanSquaredError::new()
        .call_weighted(&y, &p, Some(&Tensor::ones(&[3])))
        .unwrap_err();
    assert_eq!(
        err,
        LossError::SampleWeightShape {
            op: "mean_squared_error".into(),
            values: vec![4],
            weights: vec![3]
        }
    );
    let err = MeanSquaredError::new()
        .call_weighted(&y, &p, Some(&t(&[1.0, f32::NAN, 1.0, 1.0], &[4])))
        .unwrap_err();
    assert!(matches!(
        err,
        LossError::NonFinite {
            input: "sample_weight",
            index: 1,
            ..
        }
    ));
    let mut mean = Mean::new("loss");
    let err = mean
        .update_state(&Tensor::ones(&[4]), Some(&Tensor::ones(&[2])))
        .unwrap_err();
    assert!(matches!(err, LossError::SampleWeightShape { .. }), "{err}");
    let mut acc = get_metric("categorical_accuracy").unwrap();
    let err = acc
        .update_state(
            &Tensor::zeros(&[4, 2]),
            p.value(),
            Some(&Tensor::ones(&[5])),
        )
        .unwrap_err();
    assert!(matches!(err, LossError::SampleWeightShape { .. }), "{err}");
    assert_eq!(
        acc.result(),
        0.0,
        "a failed update leaves the state untouched"
    );
}

#[test]
fn metric_inputs_are_checked() {
    let p = Tensor::full(&[2, 3], 0.3);
    for name in [
        "accuracy",
        "binary_accuracy",
        "categorical_accuracy",
        "top_k_categorical_accuracy",
        "mse",
        "mae",
    ] {
        let mut m = get_metric(name).unwrap();
        let err = m
            .update_state(&Tensor::zeros(&[2, 4]), &p, None)
            .unwrap_err();
        assert!(
            matches!(err, LossError::ShapeMismatch { .. }),
            "{name}: {err}"
        );
        assert!(err.to_string().contains("[2, 4]") && err.to_string().contains("[2, 3]"));
        let nan = t(&[0.1, f32::NAN, 0.2, 0.3, 0.3, 0.3], &[2, 3]);
        let err = m
            .update_state(&Tensor::zeros(&[2, 3]), &nan, None)
            .unwrap_err();
        assert!(
            matches!(
                err,
                LossError::NonFinite {
                    input: "y_pred",
                    ..
                }
            ),
            "{name}: {err}"
        );
    }
    let mut m = get_metric("sparse_categorical_accuracy").unwrap();
    let err = m.update_state(&Tensor::zeros(&[3]), &p, None).unwrap_err();
    assert!(matches!(err, LossError::ShapeMismatch { .. }), "{err}");
}
