//! Training throughput through the public `fit` API (issue 7): one epoch of the MLP, CNN and LSTM
//! on 12,800 MNIST-shaped samples (batch 128, Adam(1e-3), sparse categorical cross-entropy from
//! logits, shuffle off), and the 500-epoch Iris example of the Keras docs.
//!
//! ```sh
//! flock /tmp/gradus-bench.lock cargo bench --bench training
//! ```
//!
//! The peer comparison (PyTorch, Keras) is `benches/peers/compare.sh`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[path = "support/workloads.rs"]
mod workloads;

use workloads::{MNIST_WORKLOADS, SAMPLES, epoch, iris_fit, iris_model, mnist_model};

fn training(c: &mut Criterion) {
    let mut group = c.benchmark_group("training");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(SAMPLES as u64));
    for name in MNIST_WORKLOADS {
        let (mut model, x, y) = mnist_model(name, SAMPLES).expect("the workload builds");
        group.bench_function(format!("{name}_epoch"), |b| {
            b.iter(|| black_box(epoch(&mut model, &x, &y).expect("an epoch trains")))
        });
    }
    group.throughput(Throughput::Elements(1));
    group.bench_function("iris_500_epochs", |b| {
        b.iter_batched(
            || iris_model().expect("the Iris model builds"),
            |(mut model, x, y)| black_box(iris_fit(&mut model, &x, &y).expect("Iris trains")),
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, training);
criterion_main!(benches);
