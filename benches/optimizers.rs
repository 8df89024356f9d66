//! Optimizer step throughput (elements per second) for every Keras optimizer on three
//! workloads: one 10M-element parameter (memory-bound), 1000 parameters of 10k (per-parameter
//! overhead), and 100 parameters of 100 (per-step overhead).
//!
//! Compare with PyTorch's Adam on one thread, measured in the same session:
//! `T=1 python3 shared/peers/adam_step.py`.
//!
//! Run: `cargo bench --bench optimizers` (all optimizers at 10M and Adam at every size), or
//! `OPTIM_BENCH_ALL=1 cargo bench --bench optimizers` for every optimizer at every size.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gradus_optim::{NamedParam, Optimizer, Rule};

const SIZES: [(usize, usize); 3] = [(1, 10_000_000), (1000, 10_000), (100, 100)];

/// A deterministic pseudo-random fill in [-1, 1) (an LCG; quality is irrelevant here).
fn fill(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

struct Workload {
    keys: Vec<String>,
    params: Vec<Vec<f32>>,
    grads: Vec<Vec<f32>>,
}

impl Workload {
    fn new(count: usize, size: usize) -> Self {
        Workload {
            keys: (0..count).map(|i| format!("layer_{i}/kernel")).collect(),
            params: (0..count).map(|i| fill(size, 2 * i as u64)).collect(),
            grads: (0..count).map(|i| fill(size, 2 * i as u64 + 1)).collect(),
        }
    }

    fn step(&mut self, opt: &mut Optimizer) {
        let pairs = self
            .grads
            .iter()
            .zip(self.params.iter_mut())
            .zip(&self.keys)
            .map(|((g, p), k)| (g, NamedParam::new(k.as_str(), p)));
        opt.apply_gradients(pairs).expect("valid step");
    }
}

fn optimizers(c: &mut Criterion) {
    let all = std::env::var_os("OPTIM_BENCH_ALL").is_some();
    for (count, size) in SIZES {
        let mut group = c.benchmark_group(format!("optimizer_step/{count}x{size}"));
        group
            .throughput(Throughput::Elements((count * size) as u64))
            .sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(if count * size >= 1_000_000 {
                2
            } else {
                1
            }));
        let mut work = Workload::new(count, size);
        for name in Rule::NAMES {
            if !(all || size == 10_000_000 || name == "adam") {
                continue;
            }
            let mut opt = Optimizer::from_name(name).expect("known name");
            work.step(&mut opt); // creates the slots outside the timed loop
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| work.step(black_box(&mut opt)))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, optimizers);
criterion_main!(benches);
