//! The Iris example with a custom model type (Keras' subclassed `Model`): a struct that holds
//! its layers as fields and writes `call`, wrapped in `Model` to get compile / fit / evaluate /
//! predict / summary.
//!
//! ```sh
//! cargo run --release --example iris_custom_model
//! ```

use std::time::Instant;

use gradus::autograd::Var;
use gradus::datasets::{load_iris, shuffle};
use gradus::layers::{Dense, L2, Layer};
use gradus::losses::SparseCategoricalCrossentropy;
use gradus::models::{FitOptions, Model, Network, Result, build_chain};
use gradus::optim::{Optimizer, rules::Sgd};
use gradus::tensor::Rng;

/// The Keras docs' `IrisModel(Model)`: one softmax layer with an L2 penalty.
#[derive(Debug)]
struct IrisModel {
    d1: Dense,
}

impl IrisModel {
    fn new() -> IrisModel {
        IrisModel {
            d1: Dense::new(3)
                .activation("softmax")
                .kernel_regularizer(L2::default()),
        }
    }
}

impl Network for IrisModel {
    fn call<'t>(&self, x: &Var<'t>, training: bool) -> Result<Var<'t>> {
        Ok(self.d1.call(x, training)?)
    }

    fn build(&mut self, input_shape: &[usize], rng: &mut Rng) -> Result<()> {
        build_chain(&mut [&mut self.d1], input_shape, rng)?;
        Ok(())
    }

    fn layers(&self) -> Vec<&dyn Layer> {
        vec![&self.d1]
    }

    fn name(&self) -> &str {
        "iris_model"
    }
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let iris = load_iris()?;
    let (x, y) = shuffle(&iris.features, &iris.labels, &mut Rng::seed_from_u64(116))?;

    let mut model = Model::with_seed(IrisModel::new(), 116)?;
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
    let probs = model.predict(&x.slice_axis(0, 0, 3)?, 32)?;
    println!(
        "predictions for the first 3 samples: {:?}",
        probs.argmax(1)?.to_vec()
    );
    println!(
        "their labels:                        {:?}",
        y.slice_axis(0, 0, 3)?.to_vec()
    );
    Ok(())
}
