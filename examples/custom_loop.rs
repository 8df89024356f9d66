//! A hand-written training loop, as Keras' `tf.GradientTape` guides show it: a Dense softmax
//! classifier on Iris, trained over epochs of shuffled mini-batches. Each step runs the forward
//! pass on a tape, takes the gradients of the loss with respect to the trainable variables, and
//! hands the pairs to an optimizer.
//!
//! Run with `cargo run --release --example custom_loop`.

use gradus::autograd::{Tape, Var, Variable, apply_gradients};
use gradus::datasets::{batch_indices, load_iris, train_test_split};
use gradus::optim::{Optimizer, rules::Adam};
use gradus::tensor::{Rng, Tensor};

/// `logits = x W + b`: the same code serves training (under a tape) and evaluation.
fn dense<'t>(x: &Var<'t>, kernel: &Variable, bias: &Variable) -> gradus::autograd::Result<Var<'t>> {
    x.matmul(&x.param(kernel))?.add(&x.param(bias))
}

/// The fraction of rows whose largest logit is at the label.
fn accuracy(logits: &Tensor, labels: &Tensor) -> Result<f32, Box<dyn std::error::Error>> {
    let hits = logits.argmax(-1)?.eq(labels)?;
    Ok(hits.mean_all())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = Rng::seed_from_u64(7);
    let iris = load_iris()?;
    // Standardise each feature (statistics of the whole set, for brevity).
    let mean = iris.features.mean_axis(0, true)?;
    let std = iris
        .features
        .sub(&mean)?
        .square()
        .mean_axis(0, true)?
        .sqrt();
    let features = iris.features.sub(&mean)?.div(&std)?;
    let split = train_test_split(&features, &iris.labels, 0.2, Some(&mut rng))?;
    let (n_features, n_classes) = (features.shape()[1], iris.num_classes());

    // Glorot-uniform kernel, zero bias: Keras' Dense defaults.
    let limit = (6.0 / (n_features + n_classes) as f32).sqrt();
    let kernel = Variable::new(
        "dense/kernel",
        Tensor::rand_uniform(&[n_features, n_classes], -limit, limit, &mut rng),
    );
    let bias = Variable::new("dense/bias", Tensor::zeros(&[n_classes]));
    let variables = [&kernel, &bias];
    let mut optimizer = Optimizer::builder(Adam::default())
        .learning_rate(0.05)
        .build()?;

    let (epochs, batch_size) = (30, 16);
    for epoch in 1..=epochs {
        let mut total = 0.0;
        let batches = batch_indices(split.x_train.shape()[0], batch_size, Some(&mut rng))?;
        for rows in &batches {
            let x = split.x_train.gather_rows(rows)?;
            let y = split.y_train.gather_rows(rows)?;
            let tape = Tape::new();
            let logits = dense(&tape.constant(x), &kernel, &bias)?;
            let loss = logits.sparse_softmax_cross_entropy(&y)?;
            let grads = tape.gradient(&loss, &variables)?;
            apply_gradients(&mut optimizer, &grads, &variables)?;
            total += loss.item()? * rows.len() as f32;
        }
        let train_loss = total / split.x_train.shape()[0] as f32;
        println!("epoch {epoch:2}: loss {train_loss:.4}");
    }

    // Evaluation: untracked values, nothing recorded.
    let test_logits = dense(&Var::constant(split.x_test.clone()), &kernel, &bias)?;
    let test_loss = test_logits
        .sparse_softmax_cross_entropy(&split.y_test)?
        .item()?;
    let train_logits = dense(&Var::constant(split.x_train.clone()), &kernel, &bias)?;
    println!(
        "train accuracy {:.3}, test accuracy {:.3} (test loss {test_loss:.4}) after {} optimizer steps",
        accuracy(train_logits.value(), &split.y_train)?,
        accuracy(test_logits.value(), &split.y_test)?,
        optimizer.iterations()
    );
    Ok(())
}
