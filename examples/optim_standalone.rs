//! gradus-optim on its own: fit a linear regression held in plain `Vec<f32>`s with Adam and an
//! exponentially decaying learning rate, save the optimizer (config and state, as JSON) halfway,
//! restore it into a fresh optimizer, continue, and check that the continuation equals an
//! uninterrupted run bit for bit.
//!
//! Run: `cargo run --release --example optim_standalone`

use gradus_optim::rules::Adam;
use gradus_optim::schedules::ExponentialDecay;
use gradus_optim::{NamedParam, OptimError, Optimizer, OptimizerConfig};

const FEATURES: usize = 3;
const SAMPLES: usize = 64;
const TRUE_W: [f32; FEATURES] = [2.0, -3.0, 0.5];
const TRUE_B: f32 = 1.0;

/// The model: `y = x . w + b`.
#[derive(Clone, Debug, PartialEq)]
struct Linear {
    w: Vec<f32>,
    b: Vec<f32>,
}

/// A deterministic data set: inputs on a grid in [-1, 1], targets from the true model.
fn data() -> (Vec<[f32; FEATURES]>, Vec<f32>) {
    let x: Vec<[f32; FEATURES]> = (0..SAMPLES)
        .map(|i| {
            let f = |k: usize| ((i * (2 * k + 3) + k) % 17) as f32 / 8.0 - 1.0;
            [f(0), f(1), f(2)]
        })
        .collect();
    let y = x
        .iter()
        .map(|xi| xi.iter().zip(TRUE_W).map(|(a, w)| a * w).sum::<f32>() + TRUE_B)
        .collect();
    (x, y)
}

/// Mean squared error and its gradients with respect to `w` and `b`.
fn loss_and_grads(m: &Linear, x: &[[f32; FEATURES]], y: &[f32]) -> (f32, Vec<f32>, Vec<f32>) {
    let n = x.len() as f32;
    let (mut loss, mut gw, mut gb) = (0.0, vec![0.0; FEATURES], vec![0.0]);
    for (xi, &yi) in x.iter().zip(y) {
        let pred = xi.iter().zip(&m.w).map(|(a, w)| a * w).sum::<f32>() + m.b[0];
        let err = pred - yi;
        loss += err * err / n;
        for (g, a) in gw.iter_mut().zip(xi) {
            *g += 2.0 * err * a / n;
        }
        gb[0] += 2.0 * err / n;
    }
    (loss, gw, gb)
}

/// One optimizer step on the model.
fn train_step(opt: &mut Optimizer, m: &mut Linear, x: &[[f32; FEATURES]], y: &[f32]) -> f32 {
    let (loss, gw, gb) = loss_and_grads(m, x, y);
    opt.apply_gradients([
        (gw, NamedParam::new("linear/kernel", &mut m.w)),
        (gb, NamedParam::new("linear/bias", &mut m.b)),
    ])
    .expect("gradients match the parameters");
    loss
}

fn main() -> Result<(), OptimError> {
    let (x, y) = data();
    let make = || {
        Optimizer::builder(Adam::default())
            .learning_rate(ExponentialDecay::new(0.1, 50.0, 0.5)?)
            .build()
    };
    let start = Linear {
        w: vec![0.0; FEATURES],
        b: vec![0.0],
    };

    // An uninterrupted run of 200 steps.
    let mut reference_opt = make()?;
    let mut reference = start.clone();
    for step in 0..200 {
        let loss = train_step(&mut reference_opt, &mut reference, &x, &y);
        if step % 50 == 0 {
            println!(
                "step {step:3}  lr {:.5}  loss {loss:.6}",
                reference_opt.learning_rate()
            );
        }
    }

    // The same run, stopped after 100 steps: save, restore into a fresh optimizer, continue.
    let mut opt = make()?;
    let mut model = start;
    for _ in 0..100 {
        train_step(&mut opt, &mut model, &x, &y);
    }
    let config_json = opt.config().to_json()?;
    let state_json = opt.save_state_json()?;
    println!(
        "saved after {} steps: config {} bytes, state {} bytes",
        opt.iterations(),
        config_json.len(),
        state_json.len()
    );
    drop(opt);

    let mut restored = Optimizer::from_config(OptimizerConfig::from_json(&config_json)?)?;
    restored.load_state_json(&state_json)?;
    for _ in 100..200 {
        train_step(&mut restored, &mut model, &x, &y);
    }

    let (loss, _, _) = loss_and_grads(&model, &x, &y);
    println!(
        "after {} steps: w = {:?}, b = {:?}, loss {loss:.2e}",
        restored.iterations(),
        model.w,
        model.b
    );
    assert_eq!(
        model, reference,
        "the restored run equals the uninterrupted one"
    );
    assert_eq!(restored.variables(), reference_opt.variables());
    println!("restored run == uninterrupted run (bit for bit)");
    Ok(())
}
