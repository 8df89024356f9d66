//! A small convolutional network on the 8x8 handwritten digits (Conv2D + MaxPooling2D + Flatten +
//! Dense), evaluated on a held-out test set, and a multilayer perceptron as an alternative.
//!
//! ```sh
//! cargo run --release --example digits_cnn
//! ```

use std::time::Instant;

use gradus::datasets::{load_digits, train_test_split};
use gradus::layers::{Conv2D, Dense, Flatten, MaxPooling2D};
use gradus::models::{FitOptions, Model, Network, Sequential};
use gradus::optim::Optimizer;
use gradus::tensor::{Rng, Tensor};

/// Trains `model` and reports the held-out accuracy.
fn train_and_test<N: Network>(
    title: &str,
    model: &mut Model<N>,
    x: (&Tensor, &Tensor),
    y: (&Tensor, &Tensor),
    epochs: usize,
) -> Result<f32, Box<dyn std::error::Error>> {
    println!("== {title}");
    model.compile(
        Optimizer::from_name("adam")?,
        "sparse_categorical_crossentropy",
        ["accuracy"],
    )?;
    let start = Instant::now();
    model.fit(
        x.0,
        y.0,
        FitOptions {
            batch_size: 32,
            epochs,
            validation_split: 0.1,
            verbose: 2,
            ..Default::default()
        },
    )?;
    let elapsed = start.elapsed();
    model.summary();
    let test = model.evaluate(x.1, y.1, 128)?;
    let acc = test.get("accuracy").expect("compiled with accuracy");
    println!(
        "test: {test}  ({} samples; training {:.2} s)\n",
        x.1.shape()[0],
        elapsed.as_secs_f64()
    );
    Ok(acc)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let digits = load_digits()?;
    // Pixel values 0..16 scaled to [0, 1]; a shuffled 80/20 split.
    let x = digits.features.map(|v| v / 16.0);
    let split = train_test_split(&x, &digits.labels, 0.2, Some(&mut Rng::seed_from_u64(0)))?;
    let n_train = split.x_train.shape()[0];
    let n_test = split.x_test.shape()[0];
    let images = |t: &Tensor, n: usize| t.reshape(&[n, 8, 8, 1]);

    let cnn = Sequential::new()
        .input_shape(&[8, 8, 1])
        .layer(Conv2D::new(16, 3).padding("same").activation("relu"))
        .layer(MaxPooling2D::new(2))
        .layer(Flatten::new())
        .layer(Dense::new(10).activation("softmax"));
    let mut cnn = Model::new(cnn)?;
    let cnn_acc = train_and_test(
        "Conv2D(16, 3) + MaxPooling2D(2) + Flatten + Dense(10)",
        &mut cnn,
        (
            &images(&split.x_train, n_train)?,
            &images(&split.x_test, n_test)?,
        ),
        (&split.y_train, &split.y_test),
        15,
    )?;

    let mlp = Sequential::new()
        .input_shape(&[64])
        .layer(Dense::new(64).activation("relu"))
        .layer(Dense::new(10).activation("softmax"));
    let mut mlp = Model::new(mlp)?;
    let mlp_acc = train_and_test(
        "MLP: Dense(64, relu) + Dense(10)",
        &mut mlp,
        (&split.x_train, &split.x_test),
        (&split.y_train, &split.y_test),
        30,
    )?;
    println!("held-out accuracy: CNN {cnn_acc:.4}, MLP {mlp_acc:.4} (target >= 0.95)");
    Ok(())
}
