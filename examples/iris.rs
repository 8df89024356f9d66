//! The Iris example of the Keras docs ("the fast build"): a softmax layer with an L2 penalty,
//! trained with SGD(0.1) for 500 epochs on 80% of the shuffled data, validated every 20 epochs on
//! the other 20%.
//!
//! ```sh
//! cargo run --release --example iris
//! ```
//!
//! Prints the last value of each history entry, the summary and the training time, and writes
//! the history plot to `iris_history.png` and `iris_history.svg`.

use std::time::Instant;

use gradus::datasets::{load_iris, shuffle};
use gradus::layers::{Dense, L2};
use gradus::losses::SparseCategoricalCrossentropy;
use gradus::models::{FitOptions, Model, Sequential};
use gradus::optim::{Optimizer, rules::Sgd};
use gradus::tensor::Rng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let iris = load_iris()?;
    // Keras' example shuffles the data once with a fixed seed (np.random.seed(116)).
    let (x, y) = shuffle(&iris.features, &iris.labels, &mut Rng::seed_from_u64(116))?;

    let mut model = Model::new(
        Sequential::new().layer(
            Dense::new(3)
                .activation("softmax")
                .kernel_regularizer(L2::default()),
        ),
    )?
    .with_seed(116)?;
    model.compile(
        Optimizer::builder(Sgd::default())
            .learning_rate(0.1)
            .build()?,
        SparseCategoricalCrossentropy::new(),
        ["sparse_categorical_accuracy"],
    )?;

    let start = Instant::now();
    let history = model.fit(
        &x,
        &y,
        FitOptions {
            batch_size: 32,
            epochs: 500,
            validation_split: 0.2,
            validation_freq: 20.into(),
            verbose: 0,
            ..Default::default()
        },
    )?;
    let elapsed = start.elapsed();

    for key in history.keys() {
        println!(
            "{key}: {}",
            history.last(key).expect("every key has a value")
        );
    }
    model.summary();
    println!(
        "training time (fit, 500 epochs): {:.1} ms",
        elapsed.as_secs_f64() * 1e3
    );

    history.plot("iris_history.png")?;
    history.plot("iris_history.svg")?;
    println!("history plot written to iris_history.png and iris_history.svg");
    Ok(())
}
