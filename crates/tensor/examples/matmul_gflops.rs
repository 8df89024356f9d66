//! Quick GFLOP/s figures for `Tensor::matmul`, without criterion: the median of repeated runs for
//! square sizes and the Dense(784 -> 128) products. Builds only this crate, so it is also the
//! quick way to compare one thread with several:
//!
//! ```text
//! cargo run --release -p gradus-tensor --example matmul_gflops
//! GRADUS_NUM_THREADS=2 cargo run --release -p gradus-tensor --example matmul_gflops
//! ```
//!
//! The criterion bench with peers is `cargo bench --bench matmul` at the workspace root.

use std::time::Instant;

use gradus_tensor::{Rng, Tensor};

/// Median seconds of `reps` calls of `f` (after one warm-up call).
fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[reps / 2]
}

fn report(
    label: &str,
    a: &Tensor,
    b: &Tensor,
    reps: usize,
) -> Result<(), gradus_tensor::TensorError> {
    let (m, k, n) = (a.shape()[0], a.shape()[1], b.shape()[1]);
    let mut result = Ok(());
    let secs = median_secs(reps, || {
        if let Err(e) = a.matmul(b) {
            result = Err(e);
        }
    });
    result?;
    let gflops = 2.0 * (m * k * n) as f64 / secs / 1e9;
    println!(
        "{label:<34} {m:>5}x{k:<5}@ {k:>5}x{n:<5} {:>9.1} us {gflops:>7.1} GFLOP/s",
        secs * 1e6
    );
    Ok(())
}

fn main() -> Result<(), gradus_tensor::TensorError> {
    println!("threads: {}", gradus_tensor::parallel::num_threads());
    let mut rng = Rng::seed_from_u64(0);
    for n in [64usize, 128, 256, 512, 1024, 2048] {
        let a = Tensor::rand_uniform(&[n, n], -1.0, 1.0, &mut rng);
        let b = Tensor::rand_uniform(&[n, n], -1.0, 1.0, &mut rng);
        let reps = if n >= 1024 { 7 } else { 31 };
        report("square", &a, &b, reps)?;
    }
    let w = Tensor::rand_uniform(&[784, 128], -1.0, 1.0, &mut rng);
    for batch in [32usize, 128] {
        let x = Tensor::rand_uniform(&[batch, 784], -1.0, 1.0, &mut rng);
        let dy = Tensor::rand_uniform(&[batch, 128], -1.0, 1.0, &mut rng);
        report("dense forward x@W", &x, &w, 51)?;
        report("dense grad_kernel x^T@dy (view)", &x.transpose()?, &dy, 51)?;
        report("dense grad_input dy@W^T (view)", &dy, &w.transpose()?, 51)?;
    }
    Ok(())
}
