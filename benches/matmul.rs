//! Matrix-product throughput of `gradus-tensor`.
//!
//! Throughput is declared as `2 m n k` elements per product, so criterion's "elem/s" figures are
//! FLOP/s. Peers measured in the same run: ndarray's `dot` (the same matrixmultiply kernel behind
//! ndarray's own dispatch) on contiguous operands.
//!
//! Run with `cargo bench --bench matmul` (under `flock /tmp/gradus-bench.lock` on shared
//! machines). `GRADUS_NUM_THREADS` sets the threads (`gradus_tensor::parallel`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gradus::tensor::ndarray::Ix2;
use gradus::tensor::{Rng, Tensor, gemm};

fn rand(shape: &[usize], seed: u64) -> Tensor {
    Tensor::rand_uniform(shape, -1.0, 1.0, &mut Rng::seed_from_u64(seed))
}

fn flops(m: usize, k: usize, n: usize) -> Throughput {
    Throughput::Elements(2 * (m * k * n) as u64)
}

/// Square products n x n @ n x n.
fn square(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul_square");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for n in [64usize, 128, 256, 512, 1024, 2048] {
        let a = rand(&[n, n], 1);
        let b = rand(&[n, n], 2);
        group.throughput(flops(n, n, n));
        group.sample_size(if n >= 1024 { 10 } else { 30 });
        group.bench_with_input(BenchmarkId::new("gradus_matmul", n), &n, |bench, _| {
            bench.iter(|| black_box(&a).matmul(black_box(&b)).unwrap())
        });
        let mut out = Tensor::zeros(&[n, n]);
        group.bench_with_input(BenchmarkId::new("gradus_gemm_into", n), &n, |bench, _| {
            bench.iter(|| gemm(1.0, black_box(&a), black_box(&b), 0.0, &mut out).unwrap())
        });
        let (av, bv) = (
            a.view().into_dimensionality::<Ix2>().unwrap(),
            b.view().into_dimensionality::<Ix2>().unwrap(),
        );
        group.bench_with_input(BenchmarkId::new("ndarray_dot", n), &n, |bench, _| {
            bench.iter(|| black_box(&av).dot(black_box(&bv)))
        });
    }
    group.finish();
}

/// The products of a Dense(784 -> 128) layer on MNIST-shaped batches, forward and backward.
/// The backward operands are transposed views (no copies).
fn dense(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul_dense");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.sample_size(30);
    let w = rand(&[784, 128], 3);
    for batch in [32usize, 128] {
        let x = rand(&[batch, 784], 4);
        let dy = rand(&[batch, 128], 5);
        group.throughput(flops(batch, 784, 128));
        group.bench_function(
            BenchmarkId::new("forward x@W", format!("{batch}x784@784x128")),
            |bench| bench.iter(|| black_box(&x).matmul(black_box(&w)).unwrap()),
        );
        group.bench_function(
            BenchmarkId::new("grad_kernel x^T@dy", format!("784x{batch}@{batch}x128")),
            |bench| bench.iter(|| black_box(&x).matmul_t(black_box(&dy), true, false).unwrap()),
        );
        group.bench_function(
            BenchmarkId::new("grad_input dy@W^T", format!("{batch}x128@128x784")),
            |bench| bench.iter(|| black_box(&dy).matmul_t(black_box(&w), false, true).unwrap()),
        );
        let mut acc = Tensor::zeros(&[784, 128]);
        group.bench_function(
            BenchmarkId::new(
                "grad_kernel accumulate (gemm beta=1)",
                format!("784x{batch}@{batch}x128"),
            ),
            |bench| {
                let xt = x.transpose().unwrap();
                bench.iter(|| gemm(1.0, black_box(&xt), black_box(&dy), 1.0, &mut acc).unwrap())
            },
        );
    }
    group.finish();
}

criterion_group!(benches, square, dense);
criterion_main!(benches);
