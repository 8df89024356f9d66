//! Memory throughput of the elementwise, reduction and softmax kernels on a 4096 x 1024 tensor
//! (16 MiB), next to a plain slice copy measured in the same run as the bandwidth reference.
//!
//! ```text
//! cargo run --release -p gradus-tensor --example elementwise_throughput
//! ```

use std::hint::black_box;
use std::time::Instant;

use gradus_tensor::{Rng, Tensor};

/// Median seconds of 15 calls of `f` (after one warm-up call).
fn median_secs(mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..15)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[7]
}

fn main() -> Result<(), gradus_tensor::TensorError> {
    let (rows, cols) = (4096usize, 1024usize);
    let mut rng = Rng::seed_from_u64(0);
    let x = Tensor::rand_uniform(&[rows, cols], -3.0, 3.0, &mut rng);
    let y = Tensor::rand_uniform(&[rows, cols], -3.0, 3.0, &mut rng);
    let bias = Tensor::rand_uniform(&[cols], -1.0, 1.0, &mut rng);
    let column = Tensor::rand_uniform(&[rows, 1], -1.0, 1.0, &mut rng);
    let n = (rows * cols) as f64;
    let mb = |bytes_per_elem: f64, secs: f64| bytes_per_elem * n / secs / 1e9;

    let src = x.to_vec();
    let secs = median_secs(|| {
        black_box(src.clone());
    });
    println!(
        "{:<28} {:>8.1} GB/s  (reference: Vec<f32> clone)",
        "copy",
        mb(8.0, secs)
    );

    type Case<'a> = (&'a str, f64, Box<dyn Fn() -> Tensor + 'a>);
    let cases: Vec<Case> = vec![
        ("add (same shape)", 12.0, Box::new(|| x.add(&y).unwrap())),
        ("add bias [cols]", 8.0, Box::new(|| x.add(&bias).unwrap())),
        (
            "mul column [rows, 1]",
            8.0,
            Box::new(|| x.mul(&column).unwrap()),
        ),
        ("mul_scalar", 8.0, Box::new(|| x.mul_scalar(0.5))),
        ("relu", 8.0, Box::new(|| x.relu())),
        ("exp", 8.0, Box::new(|| x.exp())),
        ("sigmoid", 8.0, Box::new(|| x.sigmoid())),
        ("tanh", 8.0, Box::new(|| x.tanh())),
        ("gelu (erf)", 8.0, Box::new(|| x.gelu(false))),
        (
            "sum_axis(0) (bias grad)",
            4.0,
            Box::new(|| x.sum_axis(0, false).unwrap()),
        ),
        (
            "sum_axis(-1)",
            4.0,
            Box::new(|| x.sum_axis(-1, false).unwrap()),
        ),
        (
            "max_axis(-1)",
            4.0,
            Box::new(|| x.max_axis(-1, false).unwrap()),
        ),
        ("softmax(-1)", 8.0, Box::new(|| x.softmax(-1).unwrap())),
        (
            "log_softmax(-1)",
            8.0,
            Box::new(|| x.log_softmax(-1).unwrap()),
        ),
        (
            "sum_to_shape([cols])",
            4.0,
            Box::new(|| x.sum_to_shape(&[cols]).unwrap()),
        ),
        (
            "transpose().to_contiguous()",
            8.0,
            Box::new(|| x.transpose().unwrap().to_contiguous()),
        ),
    ];
    for (name, bytes, f) in &cases {
        let secs = median_secs(|| {
            black_box(f());
        });
        println!(
            "{name:<28} {:>8.1} GB/s  {:>8.2} ms",
            mb(*bytes, secs),
            secs * 1e3
        );
    }
    let secs = median_secs(|| {
        black_box(x.sum_all());
    });
    println!(
        "{:<28} {:>8.1} GB/s  {:>8.2} ms",
        "sum_all",
        mb(4.0, secs),
        secs * 1e3
    );
    Ok(())
}
