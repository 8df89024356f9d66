//! Replays every case of `fixtures/layers.json` (real Keras 3.15 outputs and gradients, made by
//! `make_keras_fixtures.py`: `run_layers`): the layer is built with the case's arguments, given
//! Keras' weights, run forward on the case's input, and differentiated with the loss
//! `sum(y * upstream)`; the output and the gradients with respect to the input and every
//! trainable weight must match within a relative error of 1e-5 (absolute 1e-6 near zero).
//! The regularizer cases of `fixtures/losses_metrics.json` are checked the same way.

use gradus_autograd::Tape;
use gradus_layers::{
    AveragePooling2D, Conv2D, Dense, Flatten, LSTM, Layer, LayerConfig, LayerExt, MaxPooling2D,
    Regularizer, layer_from_config,
};
use gradus_tensor::{Rng, Tensor};
use serde_json::Value;

/// Flattens a nested JSON array of numbers, returning the values and the shape.
fn nested(v: &Value) -> (Vec<f32>, Vec<usize>) {
    fn walk(v: &Value, depth: usize, out: &mut Vec<f32>, shape: &mut Vec<usize>) {
        match v {
            Value::Array(items) => {
                if shape.len() == depth {
                    shape.push(items.len());
                }
                for it in items {
                    walk(it, depth + 1, out, shape);
                }
            }
            Value::Number(n) => out.push(n.as_f64().expect("a number") as f32),
            other => panic!("unexpected JSON value {other}"),
        }
    }
    let (mut out, mut shape) = (Vec::new(), Vec::new());
    walk(v, 0, &mut out, &mut shape);
    (out, shape)
}

fn tensor(v: &Value) -> Tensor {
    let (values, shape) = nested(v);
    Tensor::from_vec(values, &shape).expect("a rectangular array")
}

/// Worst errors of `got` against `want`: (max |d|, max |d|/|want| over |want| >= 1e-3, and
/// the largest fraction of the tolerance used, |d| / max(1e-6, 1e-5 |want|): at most 1 passes).
fn compare(got: &Tensor, want: &Tensor) -> (f64, f64, f64) {
    assert_eq!(got.shape(), want.shape(), "shapes differ");
    let (mut abs, mut rel, mut used) = (0.0f64, 0.0f64, 0.0f64);
    for (g, w) in got.to_vec().into_iter().zip(want.to_vec()) {
        let (g, w) = (f64::from(g), f64::from(w));
        let d = (g - w).abs();
        abs = abs.max(d);
        if w.abs() >= 1e-3 {
            rel = rel.max(d / w.abs());
        }
        used = used.max(d / (1e-5 * w.abs()).max(1e-6));
    }
    (abs, rel, used)
}

fn size(v: &Value) -> (usize, usize) {
    match v {
        Value::Number(n) => {
            let n = n.as_u64().expect("a length") as usize;
            (n, n)
        }
        Value::Array(a) => (
            a[0].as_u64().expect("a length") as usize,
            a[1].as_u64().expect("a length") as usize,
        ),
        other => panic!("unexpected size {other}"),
    }
}

/// The layer of a case, made through the public builders.
fn make_layer(class: &str, c: &Value) -> Box<dyn Layer> {
    let act = c
        .get("activation")
        .and_then(Value::as_str)
        .unwrap_or("linear");
    let padding = c.get("padding").and_then(Value::as_str).unwrap_or("valid");
    match class {
        "Dense" => Box::new(Dense::new(c["units"].as_u64().unwrap() as usize).activation(act)),
        "Conv2D" => Box::new(
            Conv2D::new(
                c["filters"].as_u64().unwrap() as usize,
                size(&c["kernel_size"]),
            )
            .strides(size(&c["strides"]))
            .padding(padding)
            .activation(act),
        ),
        "MaxPooling2D" => {
            let mut l = MaxPooling2D::new(size(&c["pool_size"])).padding(padding);
            if !c["strides"].is_null() {
                l = l.strides(size(&c["strides"]));
            }
            Box::new(l)
        }
        "AveragePooling2D" => Box::new(AveragePooling2D::new(size(&c["pool_size"]))),
        "LSTM" => Box::new(
            LSTM::new(c["units"].as_u64().unwrap() as usize)
                .return_sequences(c["return_sequences"].as_bool().unwrap()),
        ),
        "Flatten" => Box::new(Flatten::new()),
        other => panic!("no layer {other}"),
    }
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture file")).expect("JSON")
}

#[test]
fn every_keras_layer_case_matches() {
    let cases = fixture("layers.json");
    let cases = cases["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 16);
    let mut failures = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let class = case["layer"].as_str().unwrap();
        let label = format!("#{n} {class} {}", case["config"]);
        let x = tensor(&case["input"]);
        let mut layer = make_layer(class, &case["config"]);
        layer
            .build(&x.shape()[1..], &mut Rng::seed_from_u64(0))
            .unwrap();

        // The same layer through its Keras config.
        let from_config = layer_from_config(&LayerConfig {
            class_name: class.to_string(),
            config: case["config"].clone(),
        })
        .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(from_config.config(), layer.config(), "{label}");

        let weights: Vec<Tensor> = case["weights"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| tensor(&w["value"]))
            .collect();
        layer
            .set_weights(&weights)
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        for (v, w) in layer
            .variables()
            .iter()
            .zip(case["weights"].as_array().unwrap())
        {
            let role = w["name"].as_str().unwrap();
            assert!(
                v.name().ends_with(&format!("/{role}")),
                "{label}: {} vs {role}",
                v.name()
            );
        }

        let tape = Tape::persistent();
        let xv = tape.watch_tensor(x.clone());
        let y = layer.call(&xv, true).unwrap();
        let upstream = tape.constant(tensor(&case["upstream"]));
        let loss = y.mul(&upstream).unwrap().sum_all();
        let vars = layer.trainable_variables();
        let grads = tape
            .gradient(&loss, &vars.iter().collect::<Vec<_>>())
            .unwrap();
        let gx = tape.gradient_wrt(&loss, &[&xv]).unwrap()[0]
            .clone()
            .expect("connected");

        // Inference gives the same output as training for these layers.
        assert_eq!(layer.predict(&x).unwrap(), *y.value(), "{label}");

        let mut checks = vec![
            ("output", y.value().clone(), tensor(&case["output"])),
            ("grad_input", gx, tensor(&case["grad_input"])),
        ];
        for (i, (g, want)) in grads
            .iter()
            .zip(case["grad_weights"].as_array().unwrap())
            .enumerate()
        {
            checks.push((
                ["grad_kernel", "grad_2nd", "grad_3rd"][i.min(2)],
                g.clone(),
                tensor(want),
            ));
        }
        assert_eq!(
            grads.len(),
            case["grad_weights"].as_array().unwrap().len(),
            "{label}"
        );
        for (what, got, want) in checks {
            let (abs, rel, used) = compare(&got, &want);
            println!(
                "{label:70} {what:12} max abs {abs:.2e} max rel {rel:.2e} tolerance used {used:.2}"
            );
            if used > 1.0 {
                failures.push(format!(
                    "{label} {what}: max abs {abs:.3e}, max rel {rel:.3e}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn keras_regularizer_cases_match() {
    let file = fixture("losses_metrics.json");
    let cases = file["cases"]["regularizers"]
        .as_array()
        .expect("regularizers");
    assert_eq!(cases.len(), 4);
    for case in cases {
        let reg: Regularizer = serde_json::from_value(serde_json::json!({
            "class_name": case["regularizer"],
            "config": case["config"],
        }))
        .unwrap();
        let w = gradus_autograd::Variable::new("w", tensor(&case["weights"]));
        let tape = Tape::new();
        let loss = reg.loss(&tape.watch(&w)).unwrap();
        let value = loss.item().unwrap();
        let grad = tape.gradient(&loss, &[&w]).unwrap().remove(0);
        let want = case["value"].as_f64().unwrap();
        let d = (f64::from(value) - want).abs();
        println!("{reg}: value {value} (Keras {want}), abs {d:.2e}");
        assert!(
            d <= (1e-5 * want.abs()).max(1e-6),
            "{reg}: {value} vs {want}"
        );
        let (abs, rel, used) = compare(&grad, &tensor(&case["grad"]));
        println!("{reg}: grad max abs {abs:.2e} max rel {rel:.2e}");
        assert!(used <= 1.0, "{reg} gradient: abs {abs}, rel {rel}");
        assert_eq!(reg.value(&w.value()).unwrap(), value);
    }
}
