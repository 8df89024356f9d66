//! Replays the Keras 3.15 reference numbers made by `shared/reference/make_keras_fixtures.py`
//! (TensorFlow backend, float32): every optimizer case (trajectories, the learning rate before
//! each step, final iterations and optimizer variables by name and order) and every schedule
//! value. `tests/fixtures/` holds the shared set (seed 0); `tests/fixtures/seed1/` the set made
//! with `--seed 1`, which adds cases mixing the shared options and schedules (Nadam + warmup
//! cosine + weight decay + clipnorm + EMA, Adamax + accumulation + weight decay + global
//! clipnorm, Adadelta + clipvalue, Nesterov SGD + cosine restarts, Ftrl beta, Lion + weight
//! decay).
//!
//! Error measure: `|ours - keras| / max(|keras|, FLOOR)`. The floor only matters for values that
//! are ~0: there float32 cancellation leaves an absolute residue of a few ulps of the operands'
//! magnitude (~1e-7 for operands of order 1), which no relative measure can bound. Values
//! above the floor are held to a purely relative bound.

use gradus_optim::schedules::{LearningRateSchedule, Schedule};
use gradus_optim::{NamedParam, Optimizer, OptimizerConfig};
use serde_json::{Value, json};

/// Optimizer values and slots are O(0.1..1); below 1e-2 the measure becomes absolute (1e-7).
const OPT_FLOOR: f64 = 1e-2;
const OPT_TOL: f64 = 1e-5;
/// Schedules go down to ~1e-4 (end learning rates) but reach exactly 0 at the end of a cosine
/// decay with alpha = 0, where the f32 `cos` near -1 leaves an absolute residue ~1e-9.
const SCHED_FLOOR: f64 = 1e-4;
const SCHED_TOL: f64 = 1e-6;

const SHARED: [&str; 10] = [
    "weight_decay",
    "clipnorm",
    "clipvalue",
    "global_clipnorm",
    "use_ema",
    "ema_momentum",
    "ema_overwrite_frequency",
    "loss_scale_factor",
    "gradient_accumulation_steps",
    "exclude_from_weight_decay",
];

/// Reads a fixture file from `tests/fixtures/`, or from the directory named by
/// `GRADUS_OPTIM_FIXTURES` (e.g. numbers made with `make_keras_fixtures.py --seed 1`).
fn load(set: &str, name: &str) -> Vec<Value> {
    let dir = std::env::var("GRADUS_OPTIM_FIXTURES")
        .unwrap_or_else(|_| format!("{}/tests/fixtures{set}", env!("CARGO_MANIFEST_DIR")));
    let path = format!("{dir}/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let v: Value = serde_json::from_str(&text).expect("fixture is JSON");
    v["cases"].as_array().expect("cases").clone()
}

fn flat(v: &Value, out: &mut Vec<f64>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| flat(x, out)),
        // Non-finite gradients are written as strings ("inf", "nan"): JSON has no such numbers.
        Value::String(x) => out.push(x.parse().expect("a number in a string")),
        x => out.push(x.as_f64().expect("number")),
    }
}

fn flatten(v: &Value) -> Vec<f64> {
    let mut out = Vec::new();
    flat(v, &mut out);
    out
}

fn rel_err(ours: f32, keras: f64, floor: f64) -> f64 {
    (f64::from(ours) - keras).abs() / keras.abs().max(floor)
}

fn max_err(ours: &[f32], keras: &[f64], floor: f64) -> f64 {
    assert_eq!(ours.len(), keras.len(), "lengths differ");
    ours.iter()
        .zip(keras)
        .map(|(&o, &k)| rel_err(o, k, floor))
        .fold(0.0, f64::max)
}

/// The fixture's Keras kwargs as an `OptimizerConfig`.
fn config_of(class: &str, kwargs: &Value) -> OptimizerConfig {
    let mut rule = serde_json::Map::new();
    let mut options = serde_json::Map::new();
    let mut learning_rate = None;
    let mut loss_scale = Value::Null;
    for (k, v) in kwargs.as_object().expect("config object") {
        if k == "loss_scale" {
            loss_scale = v.clone();
        } else if k == "learning_rate" {
            learning_rate = Some(match v {
                Value::Object(o) => json!({"class_name": o["schedule"], "config": o["config"]}),
                x => x.clone(),
            });
        } else if SHARED.contains(&k.as_str()) {
            options.insert(k.clone(), v.clone());
        } else {
            rule.insert(k.clone(), v.clone());
        }
    }
    if class == "AdamW" && !options.contains_key("weight_decay") {
        options.insert("weight_decay".into(), json!(0.004));
    }
    let default_lr = gradus_optim::Rule::from_name(class)
        .expect("known class")
        .default_learning_rate();
    let config = json!({
        "rule": {"class_name": class, "config": rule},
        "learning_rate": learning_rate.unwrap_or(json!(default_lr)),
        "options": options,
        "loss_scale": loss_scale,
    });
    serde_json::from_value(config).expect("valid config")
}

#[test]
fn every_optimizer_case_matches_keras() {
    let cases = load("", "optimizers.json");
    assert_eq!(cases.len(), 28, "all shared cases present");
    replay_optimizers(&cases);
}

#[test]
fn every_mixed_options_case_matches_keras() {
    let cases = load("/seed1", "optimizers.json");
    assert_eq!(
        cases.len(),
        34,
        "the seed-1 set adds six mixed cases to the 28"
    );
    replay_optimizers(&cases);
}

/// Cases made by `tests/fixtures/make_extra_fixtures.py` (rules the shared set leaves out).
#[test]
fn every_extra_case_matches_keras() {
    let cases = load("", "extra_optimizers.json");
    assert_eq!(cases.len(), 10);
    replay_optimizers(&cases);
}

#[test]
fn every_schedule_case_matches_keras() {
    replay_schedules(&load("", "schedules.json"));
    replay_schedules(&load("/seed1", "schedules.json"));
}

fn replay_optimizers(cases: &[Value]) {
    let mut worst = 0.0_f64;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let class = case["optimizer"].as_str().unwrap();
        let mut config = case["config"].clone();
        if let Some(ls) = case.get("loss_scale") {
            config["loss_scale"] = ls.clone();
        }
        let mut opt = Optimizer::from_config(config_of(class, &config))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let vars = case["variables"].as_array().unwrap();
        let keys: Vec<String> = vars
            .iter()
            .map(|v| v["name"].as_str().unwrap().into())
            .collect();
        let shapes: Vec<Vec<usize>> = vars
            .iter()
            .map(|v| flatten(&v["shape"]).iter().map(|&d| d as usize).collect())
            .collect();
        let mut values: Vec<Vec<f32>> = vars
            .iter()
            .map(|v| flatten(&v["initial"]).iter().map(|&x| x as f32).collect())
            .collect();
        let mut case_err = 0.0_f64;
        let lrs = flatten(&case["learning_rate_before_step"]);
        for (s, grads) in case["gradients"].as_array().unwrap().iter().enumerate() {
            let lr_err = rel_err(opt.learning_rate(), lrs[s], SCHED_FLOOR);
            assert!(
                lr_err <= SCHED_TOL,
                "{name} step {s}: learning rate error {lr_err:e}"
            );
            let grads: Vec<Vec<f32>> = grads
                .as_array()
                .unwrap()
                .iter()
                .map(|g| flatten(g).iter().map(|&x| x as f32).collect())
                .collect();
            let pairs: Vec<(&Vec<f32>, NamedParam<'_>)> = grads
                .iter()
                .zip(values.iter_mut())
                .zip(keys.iter().zip(&shapes))
                .map(|((g, v), (k, shape))| {
                    (g, NamedParam::with_shape(k.as_str(), shape, v).unwrap())
                })
                .collect();
            opt.apply_gradients(pairs)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            if let Some(scales) = case.get("dynamic_scale_after_step") {
                let want = scales[s].as_f64().unwrap();
                assert_eq!(
                    opt.dynamic_scale().map(f64::from),
                    Some(want),
                    "{name} step {s}"
                );
            }
            let after = case["after_step"][s].as_array().unwrap();
            for (v, keras) in values.iter().zip(after) {
                let err = max_err(v, &flatten(keras), OPT_FLOOR);
                case_err = case_err.max(err);
                assert!(err <= OPT_TOL, "{name} step {s}: variable error {err:e}");
            }
        }
        assert_eq!(
            opt.iterations(),
            case["iterations"].as_u64().unwrap(),
            "{name}"
        );
        let mut ours = opt.variables();
        if case.get("loss_scale").is_some() {
            // The fixture lists the inner optimizer's variables; ours lead with the scale's own.
            let own: Vec<String> = ours.drain(..2).map(|v| v.name).collect();
            assert_eq!(own, ["step_counter", "dynamic_scale"]);
        }
        let keras = case["optimizer_variables"].as_array().unwrap();
        let names: Vec<&str> = ours.iter().map(|v| v.name.as_str()).collect();
        // Nadam's scalar `U` is an unnamed Keras variable: Keras numbers such names per process
        // ("variable", "variable_1", ... by creation order), so the suffix is not part of the
        // contract.
        let keras_names: Vec<&str> = keras
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .map(|n| match n.strip_prefix("variable_") {
                Some(k) if k.chars().all(|c| c.is_ascii_digit()) => "variable",
                _ => n,
            })
            .collect();
        assert_eq!(
            names, keras_names,
            "{name}: optimizer variable names and order"
        );
        for (o, k) in ours.iter().zip(keras) {
            let err = max_err(&o.values, &flatten(&k["value"]), OPT_FLOOR);
            case_err = case_err.max(err);
            assert!(
                err <= OPT_TOL,
                "{name}: optimizer variable {} error {err:e}",
                o.name
            );
        }
        eprintln!("{name:28} max error {case_err:.2e}");
        worst = worst.max(case_err);
    }
    eprintln!("all optimizer cases: max error {worst:.2e}");
}

fn replay_schedules(cases: &[Value]) {
    let mut worst = 0.0_f64;
    for case in cases {
        let class = case["schedule"].as_str().unwrap();
        let schedule: Schedule =
            serde_json::from_value(json!({"class_name": class, "config": case["config"]}))
                .unwrap_or_else(|e| panic!("{class}: {e}"));
        schedule.validate().unwrap();
        let steps = flatten(&case["steps"]);
        let expected = flatten(&case["learning_rate"]);
        let mut case_err = 0.0_f64;
        for (&s, &e) in steps.iter().zip(&expected) {
            let err = rel_err(schedule.learning_rate(s as u64), e, SCHED_FLOOR);
            assert!(
                err <= SCHED_TOL,
                "{class} {}: step {s}: error {err:e}",
                case["config"]
            );
            case_err = case_err.max(err);
        }
        eprintln!("{class:24} {} max error {case_err:.2e}", case["config"]);
        worst = worst.max(case_err);
    }
    eprintln!("all schedule cases: max error {worst:.2e}");
}
