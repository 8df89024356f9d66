//! Training throughput on synthetic MNIST-shaped data, in the format of the peer script
//! (`/work/shared/peers/train_peers.py`): one line per workload, seconds per epoch.
//!
//! ```sh
//! GRADUS_NUM_THREADS=1 cargo run --release --example train_bench -- mlp cnn lstm iris
//! ```
//!
//! Workloads (see `benches/support/workloads.rs`): 12,800 samples uniform in `[0, 1)`, labels
//! `0..10`, batch 128, Adam(1e-3), `SparseCategoricalCrossentropy(from_logits=true)`, shuffle off;
//! one warm-up epoch, then one timed epoch, like the peers. `iris` times the whole 500-epoch `fit`
//! of the Keras docs' example (a fresh model). `N` overrides the sample count.
//!
//! Each line ends with the CPU time of the process over the same span (`cpu`, from
//! `/proc/self/task/*/schedstat`, Linux only): on a shared machine it shows what wall-clock time
//! hides, the time waiting for a core.
//!
//! `GRADUS_NUM_THREADS` (default 1 here) sets the thread count of gradus' kernels
//! ([`gradus_tensor::parallel`]).

use std::time::Instant;

#[path = "../benches/support/workloads.rs"]
mod workloads;

use workloads::{Error, SAMPLES, epoch, iris_fit, iris_model, mnist_model};

/// Seconds the threads of this process have run on a CPU (0 where `/proc` is unavailable).
fn cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let nanos: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    nanos as f64 * 1e-9
}

fn main() -> Result<(), Error> {
    let threads = std::env::var("GRADUS_NUM_THREADS")
        .ok()
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(1);
    gradus_tensor::parallel::set_num_threads(threads);
    let n = std::env::var("N")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(SAMPLES);
    let mut names: Vec<String> = std::env::args().skip(1).collect();
    if names.is_empty() {
        names = workloads::MNIST_WORKLOADS.map(String::from).to_vec();
    }
    for name in &names {
        if name == "iris" {
            let (mut model, x, y) = iris_model()?;
            let (start, cpu) = (Instant::now(), cpu_seconds());
            let history = iris_fit(&mut model, &x, &y)?;
            let (secs, cpu) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu);
            let loss = history.last("loss").unwrap_or(f32::NAN);
            println!(
                "gradus T={threads} iris: {secs:.4} s/fit (500 epochs)  loss {loss:.3}  cpu {cpu:.4} s"
            );
        } else {
            let (mut model, x, y) = mnist_model(name, n)?;
            epoch(&mut model, &x, &y)?;
            let (start, cpu) = (Instant::now(), cpu_seconds());
            let history = epoch(&mut model, &x, &y)?;
            let (secs, cpu) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu);
            let loss = history.last("loss").unwrap_or(f32::NAN);
            println!(
                "gradus T={threads} {name}: {secs:.3} s/epoch ({n} samples)  loss {loss:.3}  cpu {cpu:.3} s"
            );
        }
    }
    Ok(())
}
