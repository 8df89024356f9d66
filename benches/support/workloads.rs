//! The training workloads of issue 7, shared by `benches/training.rs` and
//! `examples/train_bench.rs` (included with `#[path]`): the same shapes and settings as the peer
//! script `/work/shared/peers/train_peers.py`.

use gradus::datasets::{load_iris, shuffle};
use gradus::layers::{Conv2D, Dense, Flatten, L2, LSTM, MaxPooling2D};
use gradus::losses::SparseCategoricalCrossentropy;
use gradus::models::{FitOptions, History, Model, Sequential};
use gradus::optim::{Optimizer, rules::Adam, rules::Sgd};
use gradus::tensor::{Rng, Tensor};

/// Boxed error of the benchmark helpers.
pub type Error = Box<dyn std::error::Error>;

/// The MNIST-shaped workloads.
pub const MNIST_WORKLOADS: [&str; 3] = ["mlp", "cnn", "lstm"];

/// Samples per epoch of the MNIST-shaped workloads (as the peers).
pub const SAMPLES: usize = 12_800;

/// `n` MNIST-shaped samples (`shape` each) uniform in `[0, 1)` and integer labels in `0..10`.
pub fn data(n: usize, shape: &[usize]) -> Result<(Tensor, Tensor), Error> {
    let mut rng = Rng::seed_from_u64(0);
    let per: usize = shape.iter().product();
    let x: Vec<f32> = (0..n * per).map(|_| rng.uniform_f32()).collect();
    let y: Vec<f32> = (0..n).map(|_| rng.below(10) as f32).collect();
    let mut full = vec![n];
    full.extend_from_slice(shape);
    Ok((Tensor::from_vec(x, &full)?, Tensor::from_vec(y, &[n])?))
}

/// The network of one MNIST-shaped workload and its per-sample input shape:
/// - `mlp`: Flatten -> Dense(128, relu) -> Dense(10);
/// - `cnn`: Conv2D(32, 3x3, relu) -> MaxPooling2D(2) -> Flatten -> Dense(10);
/// - `lstm`: LSTM(64) over 28 steps of 28 -> Dense(10).
pub fn network(name: &str) -> Result<(Sequential, Vec<usize>), Error> {
    Ok(match name {
        "mlp" => (
            Sequential::new()
                .input_shape(&[28, 28])
                .layer(Flatten::new())
                .layer(Dense::new(128).activation("relu"))
                .layer(Dense::new(10)),
            vec![28, 28],
        ),
        "cnn" => (
            Sequential::new()
                .input_shape(&[28, 28, 1])
                .layer(Conv2D::new(32, 3).activation("relu"))
                .layer(MaxPooling2D::new(2))
                .layer(Flatten::new())
                .layer(Dense::new(10)),
            vec![28, 28, 1],
        ),
        "lstm" => (
            Sequential::new()
                .input_shape(&[28, 28])
                .layer(LSTM::new(64))
                .layer(Dense::new(10)),
            vec![28, 28],
        ),
        other => {
            return Err(
                format!("unknown workload {other:?} (expected mlp, cnn, lstm or iris)").into(),
            );
        }
    })
}

/// A compiled model of workload `name` (Adam(1e-3), sparse categorical cross-entropy from
/// logits) with `n` samples of data.
pub fn mnist_model(name: &str, n: usize) -> Result<(Model<Sequential>, Tensor, Tensor), Error> {
    let (net, shape) = network(name)?;
    let (x, y) = data(n, &shape)?;
    let mut model = Model::with_seed(net, 0)?;
    model.compile(
        Optimizer::builder(Adam::default())
            .learning_rate(1e-3)
            .build()?,
        SparseCategoricalCrossentropy::new().from_logits(true),
        Vec::<String>::new(),
    )?;
    Ok((model, x, y))
}

/// One epoch: batch 128, shuffle off, silent.
pub fn epoch(model: &mut Model<Sequential>, x: &Tensor, y: &Tensor) -> Result<History, Error> {
    Ok(model.fit(
        x,
        y,
        FitOptions {
            batch_size: 128,
            epochs: 1,
            shuffle: false,
            verbose: 0,
            ..Default::default()
        },
    )?)
}

/// The compiled model and shuffled data of the Keras docs' Iris example.
pub fn iris_model() -> Result<(Model<Sequential>, Tensor, Tensor), Error> {
    let iris = load_iris()?;
    let (x, y) = shuffle(&iris.features, &iris.labels, &mut Rng::seed_from_u64(116))?;
    let net = Sequential::new().layer(
        Dense::new(3)
            .activation("softmax")
            .kernel_regularizer(L2::default()),
    );
    let mut model = Model::with_seed(net, 116)?;
    model.compile(
        Optimizer::builder(Sgd::default())
            .learning_rate(0.1)
            .build()?,
        SparseCategoricalCrossentropy::new(),
        ["sparse_categorical_accuracy"],
    )?;
    Ok((model, x, y))
}

/// The Iris `fit`: 500 epochs, batch 32, validation on the last 20% every 20 epochs.
pub fn iris_fit(model: &mut Model<Sequential>, x: &Tensor, y: &Tensor) -> Result<History, Error> {
    Ok(model.fit(
        x,
        y,
        FitOptions {
            batch_size: 32,
            epochs: 500,
            validation_split: 0.2,
            validation_freq: 20.into(),
            verbose: 0,
            ..Default::default()
        },
    )?)
}
