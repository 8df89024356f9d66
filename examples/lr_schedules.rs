//! Each Keras learning-rate schedule driving SGD: the learning rate of every step, as Keras'
//! `optimizer.learning_rate` reads between steps.
//!
//! ```sh
//! cargo run --release --example lr_schedules
//! ```

use gradus::optim::schedules::{
    CosineDecay, CosineDecayRestarts, ExponentialDecay, InverseTimeDecay, LearningRate,
    PiecewiseConstantDecay, PolynomialDecay,
};
use gradus::optim::{NamedParam, Optimizer, rules::Sgd};

/// Runs `steps` SGD steps on one weight with a gradient of 1 and prints the learning rate each
/// step uses.
fn drive(
    name: &str,
    lr: impl Into<LearningRate>,
    steps: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut opt = Optimizer::builder(Sgd::default())
        .learning_rate(lr)
        .build()?;
    let mut w = vec![0.0_f32];
    let mut rates = Vec::with_capacity(steps);
    for _ in 0..steps {
        rates.push(format!("{:.5}", opt.learning_rate()));
        opt.apply_gradients([(vec![1.0_f32], NamedParam::new("w", &mut w))])?;
    }
    println!("{name}");
    println!("  lr per step: {}", rates.join(" "));
    println!("  w after {steps} steps: {:.5} (= -sum of the rates)", w[0]);
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let steps = 12;
    drive(
        "ExponentialDecay(0.1, decay_steps=4, decay_rate=0.5)",
        ExponentialDecay::new(0.1, 4.0, 0.5)?,
        steps,
    )?;
    drive(
        "ExponentialDecay(0.1, 4, 0.5, staircase=True)",
        ExponentialDecay::new(0.1, 4.0, 0.5)?.staircase(true),
        steps,
    )?;
    drive(
        "PiecewiseConstantDecay(boundaries=[3, 7], values=[0.1, 0.05, 0.01])",
        PiecewiseConstantDecay::new(vec![3.0, 7.0], vec![0.1, 0.05, 0.01])?,
        steps,
    )?;
    drive(
        "PolynomialDecay(0.1, decay_steps=10)",
        PolynomialDecay::new(0.1, 10.0)?,
        steps,
    )?;
    drive(
        "PolynomialDecay(0.1, 4, end_learning_rate=0.01, power=2, cycle=True)",
        PolynomialDecay {
            end_learning_rate: 0.01,
            power: 2.0,
            cycle: true,
            ..PolynomialDecay::new(0.1, 4.0)?
        },
        steps,
    )?;
    drive(
        "InverseTimeDecay(0.1, decay_steps=2, decay_rate=0.5)",
        InverseTimeDecay::new(0.1, 2.0, 0.5)?,
        steps,
    )?;
    drive(
        "CosineDecay(0.1, decay_steps=10)",
        CosineDecay::new(0.1, 10.0)?,
        steps,
    )?;
    drive(
        "CosineDecay(0.0, 8, warmup_target=0.1, warmup_steps=4)",
        CosineDecay::new(0.0, 8.0)?.warmup(0.1, 4.0)?,
        steps,
    )?;
    drive(
        "CosineDecayRestarts(0.1, first_decay_steps=3)",
        CosineDecayRestarts::new(0.1, 3.0)?,
        steps,
    )?;
    drive(
        "a closure: 0.1 / (1 + step)",
        LearningRate::custom(|step: u64| 0.1 / (1.0 + step as f32)),
        steps,
    )?;
    Ok(())
}
