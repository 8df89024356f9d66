//! Replays the two complete Keras `fit` histories of `fixtures/fit.json` (made by
//! `shared/reference/make_keras_fixtures.py`, `run_fit`, with Keras 3.15 on TensorFlow):
//! per-epoch loss, metrics, `val_` entries and final weights, within 1e-4 relative.

use gradus_layers::{Dense, L2};
use gradus_losses::SparseCategoricalCrossentropy;
use gradus_models::{FitOptions, Model, Sequential, ValidationFreq};
use gradus_optim::Optimizer;
use gradus_optim::rules::{Adam, Sgd};
use gradus_optim::schedules::ExponentialDecay;
use gradus_tensor::Tensor;
use serde_json::Value;

fn case(name: &str) -> Value {
    let text = include_str!("fixtures/fit.json");
    let all: Value = serde_json::from_str(text).expect("fixture is JSON");
    all["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no case {name}"))
        .clone()
}

/// Flattens nested JSON number arrays into values and a shape.
fn flatten(v: &Value, out: &mut Vec<f32>, shape: &mut Vec<usize>, depth: usize) {
    match v {
        Value::Array(items) => {
            if shape.len() == depth {
                shape.push(items.len());
            }
            for item in items {
                flatten(item, out, shape, depth + 1);
            }
        }
        Value::Number(n) => out.push(n.as_f64().expect("number") as f32),
        other => panic!("not a number array: {other}"),
    }
}

fn tensor(v: &Value) -> Tensor {
    let (mut values, mut shape) = (Vec::new(), Vec::new());
    flatten(v, &mut values, &mut shape, 0);
    Tensor::from_vec(values, &shape).expect("consistent fixture")
}

/// Checks `got` against Keras within 1e-4 relative (relative to at least 0.01, for values near
/// zero) and prints the largest relative error (`cargo test -- --nocapture` shows it).
fn assert_close(what: &str, got: &[f32], expected: &[f32]) {
    assert_eq!(got.len(), expected.len(), "{what}: lengths differ");
    let mut worst = 0.0f32;
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        let scale = e.abs().max(1e-2);
        let tol = 1e-4 * scale;
        assert!(
            (g - e).abs() <= tol,
            "{what}[{i}]: got {g}, Keras {e} (tolerance {tol})"
        );
        worst = worst.max((g - e).abs() / scale);
    }
    println!("{what}: largest relative error {worst:.2e}");
}

fn values(v: &Value) -> Vec<f32> {
    tensor(v).to_vec()
}

#[test]
fn dense_adam_exponential_decay_matches_keras() {
    let c = case("dense_adam_exponential_decay");
    let (x, y) = (tensor(&c["x"]), tensor(&c["y"]));
    let dense = Dense::new(2)
        .kernel_initializer("ones")
        .bias_initializer("ones");
    let mut model = Model::new(Sequential::new().layer(dense)).unwrap();
    let optimizer = Optimizer::builder(Adam::default())
        .learning_rate(ExponentialDecay::new(0.05, 1.0, 0.9).unwrap())
        .build()
        .unwrap();
    model
        .compile(optimizer, "mse", gradus_models::NO_METRICS)
        .unwrap();
    let history = model
        .fit(
            &x,
            &y,
            FitOptions {
                batch_size: 4,
                epochs: 3,
                shuffle: false,
                verbose: 0,
                ..Default::default()
            },
        )
        .unwrap();
    assert_close("loss", &history["loss"], &values(&c["history"]["loss"]));
    assert_eq!(history.keys().collect::<Vec<_>>(), ["loss"]);
    let weights = model.get_weights();
    for (i, w) in c["final_weights"].as_array().unwrap().iter().enumerate() {
        assert_close(&format!("weight {i}"), &weights[i].to_vec(), &values(w));
    }
}

#[test]
fn softmax_l2_sgd_validation_split_matches_keras() {
    let c = case("softmax_l2_sgd_validation_split");
    let (x, y) = (tensor(&c["x"]), tensor(&c["y"]));
    let dense = Dense::new(3)
        .activation("softmax")
        .kernel_regularizer(L2::new(0.01));
    let mut model =
        Model::new(Sequential::new().input_shape(&[x.shape()[1]]).layer(dense)).unwrap();
    let initial: Vec<Tensor> = c["initial_weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(tensor)
        .collect();
    model.set_weights(&initial).unwrap();
    let sgd = Optimizer::builder(Sgd::default())
        .learning_rate(0.1)
        .build()
        .unwrap();
    model
        .compile(
            sgd,
            SparseCategoricalCrossentropy::new(),
            ["sparse_categorical_accuracy"],
        )
        .unwrap();
    let history = model
        .fit(
            &x,
            &y,
            FitOptions {
                batch_size: 8,
                epochs: 12,
                validation_split: 0.25,
                validation_freq: ValidationFreq::Every(4),
                shuffle: false,
                verbose: 0,
                ..Default::default()
            },
        )
        .unwrap();
    for key in [
        "loss",
        "sparse_categorical_accuracy",
        "val_loss",
        "val_sparse_categorical_accuracy",
    ] {
        assert_close(key, &history[key], &values(&c["history"][key]));
    }
    assert_eq!(history.epochs_of("val_loss"), vec![3, 7, 11]);
    let weights = model.get_weights();
    for (i, w) in c["final_weights"].as_array().unwrap().iter().enumerate() {
        assert_close(&format!("weight {i}"), &weights[i].to_vec(), &values(w));
    }
}
