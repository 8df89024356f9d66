//! An LSTM learning a generated sequence task: is the sum of a noisy sequence positive? Also
//! shows `return_sequences`: a first LSTM returns its whole output sequence to a second one.
//!
//! ```sh
//! cargo run --release --example sequence_lstm
//! ```

use gradus::layers::{Dense, LSTM};
use gradus::models::{FitOptions, Model, Sequential};
use gradus::optim::Optimizer;
use gradus::tensor::{Rng, Tensor};

const STEPS: usize = 12;

/// `n` sequences of `STEPS` values, a per-sequence drift plus noise; the label is 1 when their
/// sum is positive.
fn sequences(n: usize, rng: &mut Rng) -> Result<(Tensor, Tensor), Box<dyn std::error::Error>> {
    let mut xs = Vec::with_capacity(n * STEPS);
    let mut ys = Vec::with_capacity(n);
    for _ in 0..n {
        let drift = 0.3 * rng.normal_f32();
        let seq: Vec<f32> = (0..STEPS).map(|_| drift + rng.normal_f32()).collect();
        ys.push(if seq.iter().sum::<f32>() > 0.0 {
            1.0
        } else {
            0.0
        });
        xs.extend(seq);
    }
    Ok((
        Tensor::from_vec(xs, &[n, STEPS, 1])?,
        Tensor::from_vec(ys, &[n, 1])?,
    ))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = Rng::seed_from_u64(42);
    let (x, y) = sequences(1200, &mut rng)?;
    let (x_test, y_test) = sequences(300, &mut rng)?;

    // return_sequences: the whole sequence of hidden states, one per time step.
    let mut seq = Model::new(
        Sequential::new()
            .input_shape(&[STEPS, 1])
            .layer(LSTM::new(8).return_sequences(true)),
    )?;
    println!(
        "LSTM(8, return_sequences=True) on {:?} -> {:?}",
        &x.shape()[..2],
        seq.predict(&x.slice_axis(0, 0, 4)?, 32)?.shape()
    );
    let mut last = Model::new(
        Sequential::new()
            .input_shape(&[STEPS, 1])
            .layer(LSTM::new(8)),
    )?;
    println!(
        "LSTM(8) on the same input -> {:?} (the last state only)\n",
        last.predict(&x.slice_axis(0, 0, 4)?, 32)?.shape()
    );

    let net = Sequential::new()
        .input_shape(&[STEPS, 1])
        .layer(LSTM::new(16).return_sequences(true))
        .layer(LSTM::new(16))
        .layer(Dense::new(1).activation("sigmoid"));
    let mut model = Model::new(net)?;
    model.compile(
        Optimizer::from_name("adam")?,
        "binary_crossentropy",
        ["accuracy"],
    )?;
    model.summary();
    model.fit(
        &x,
        &y,
        FitOptions {
            epochs: 15,
            validation_split: 0.2,
            verbose: 2,
            ..Default::default()
        },
    )?;
    let test = model.evaluate(&x_test, &y_test, 64)?;
    println!("test on {} new sequences: {test}", x_test.shape()[0]);
    Ok(())
}
