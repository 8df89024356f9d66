//! Replays every loss and metric case of `fixtures/losses_metrics.json`: values and gradients
//! with respect to `y_pred` produced by Keras 3.15 (TensorFlow 2.21 backend, float32) with
//! `shared/reference/make_keras_fixtures.py` (`run_losses`). Gradients are taken through
//! gradus-autograd. Tolerance: relative 1e-5, or absolute 1e-6 near zero.
//!
//! The regularizer cases of the same file belong to gradus-layers and are replayed there.

use gradus_autograd::Tape;
use gradus_losses::metrics::{Metric, MetricConfig, metric_from_config};
use gradus_losses::{LossConfig, Reduction, from_config};
use gradus_tensor::Tensor;
use serde_json::Value;

const FIXTURE: &str = include_str!("fixtures/losses_metrics.json");
const RTOL: f64 = 1e-5;
const ATOL: f64 = 1e-6;

/// A nested JSON array (or a number) as a tensor.
fn tensor(v: &Value) -> Tensor {
    fn walk(v: &Value, depth: usize, shape: &mut Vec<usize>, out: &mut Vec<f32>) {
        match v {
            Value::Array(items) => {
                if shape.len() == depth {
                    shape.push(items.len());
                }
                items.iter().for_each(|x| walk(x, depth + 1, shape, out));
            }
            Value::Number(n) => out.push(n.as_f64().unwrap() as f32),
            other => panic!("not a number: {other}"),
        }
    }
    let (mut shape, mut out) = (Vec::new(), Vec::new());
    walk(v, 0, &mut shape, &mut out);
    Tensor::from_vec(out, &shape).unwrap()
}

/// Largest errors seen: (relative error where |expected| > ATOL, absolute error).
#[derive(Default, Debug)]
struct Errors {
    rel: f64,
    abs: f64,
}

impl Errors {
    /// Compares, recording the errors; returns whether every element is within tolerance.
    fn compare(&mut self, got: &[f32], expected: &[f32]) -> bool {
        assert_eq!(got.len(), expected.len());
        let mut ok = true;
        for (&g, &e) in got.iter().zip(expected) {
            let (g, e) = (f64::from(g), f64::from(e));
            let d = (g - e).abs();
            self.abs = self.abs.max(d);
            if e.abs() > ATOL {
                self.rel = self.rel.max(d / e.abs());
            }
            ok &= d <= ATOL.max(RTOL * e.abs());
        }
        ok
    }
}

fn cases(kind: &str) -> Vec<Value> {
    let root: Value = serde_json::from_str(FIXTURE).unwrap();
    root["cases"][kind].as_array().unwrap().clone()
}

fn loss_config(case: &Value) -> LossConfig {
    let cfg = &case["config"];
    LossConfig {
        class_name: case["loss"].as_str().unwrap().to_string(),
        name: "fixture".into(),
        reduction: cfg["reduction"]
            .as_str()
            .map_or(Reduction::default(), |r| r.parse().unwrap()),
        from_logits: cfg["from_logits"].as_bool(),
        label_smoothing: cfg["label_smoothing"].as_f64().map(|x| x as f32),
        delta: cfg["delta"].as_f64().map(|x| x as f32),
        ignore_class: cfg["ignore_class"].as_i64(),
    }
}

#[test]
fn every_loss_case_matches_keras() {
    let cases = cases("losses");
    assert!(cases.len() >= 9);
    let (mut values, mut grads) = (Errors::default(), Errors::default());
    let mut failures = Vec::new();
    for case in &cases {
        let loss = from_config(&loss_config(case)).unwrap();
        let (y_true, y_pred) = (tensor(&case["y_true"]), tensor(&case["y_pred"]));
        let tape = Tape::new();
        let p = tape.watch_tensor(y_pred.clone());
        let out = loss.call(&y_true, &p).unwrap();
        let value = out.item().unwrap();
        let grad = tape.gradient_wrt(&out, &[&p]).unwrap()[0].clone().unwrap();
        assert_eq!(grad.shape(), y_pred.shape());
        let expected_value = case["value"].as_f64().unwrap() as f32;
        let value_ok = values.compare(&[value], &[expected_value]);
        let grad_ok = grads.compare(&grad.to_vec(), &tensor(&case["grad_y_pred"]).to_vec());
        if !(value_ok && grad_ok) {
            failures.push(format!(
                "{} {}: value {value} vs {expected_value}, grad {:?}",
                case["loss"],
                case["config"],
                grad.to_vec()
            ));
        }
    }
    println!(
        "{} loss cases: value max rel err {:.2e} (max abs {:.2e}); gradient max rel err {:.2e} (max abs {:.2e})",
        cases.len(),
        values.rel,
        values.abs,
        grads.rel,
        grads.abs
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn every_metric_case_matches_keras() {
    let cases = cases("metrics");
    assert!(cases.len() >= 4);
    let mut errors = Errors::default();
    for case in &cases {
        let config = MetricConfig {
            class_name: case["metric"].as_str().unwrap().to_string(),
            name: "fixture".into(),
            threshold: None,
            k: None,
        };
        let mut metric = metric_from_config(&config).unwrap();
        let (y_true, y_pred) = (tensor(&case["y_true"]), tensor(&case["y_pred"]));
        metric.update_state(&y_true, &y_pred, None).unwrap();
        let expected = case["value"].as_f64().unwrap() as f32;
        assert!(
            errors.compare(&[metric.result()], &[expected]),
            "{}: {} vs {expected}",
            case["metric"],
            metric.result()
        );
        // A second identical batch leaves the mean unchanged; a reset forgets everything.
        metric.update_state(&y_true, &y_pred, None).unwrap();
        assert!(errors.compare(&[metric.result()], &[expected]));
        metric.reset_state();
        assert_eq!(metric.result(), 0.0);
    }
    println!(
        "{} metric cases: max rel err {:.2e} (max abs {:.2e})",
        cases.len(),
        errors.rel,
        errors.abs
    );
}
