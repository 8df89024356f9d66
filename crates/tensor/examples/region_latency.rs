//! The cost of handing work to the pool: an empty two-piece region, and a 128x784 by 784x128
//! product on one and two threads (medians). `cargo run --release -p gradus-tensor --example
//! region_latency`.
use gradus_tensor::{Tensor, parallel};
use std::time::Instant;

fn main() {
    for t in [1, 2] {
        parallel::set_num_threads(t);
        let mut v = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            for _ in 0..10_000 {
                std::hint::black_box(parallel::map(2, |i| i));
            }
            v.push(start.elapsed().as_secs_f64() / 10_000.0 * 1e6);
        }
        v.sort_by(f64::total_cmp);
        println!("T={t} empty region: median {:.2} us", v[2]);
    }
    let a = Tensor::full(&[128, 784], 0.5);
    let b = Tensor::full(&[784, 128], 0.25);
    for t in [1, 2] {
        parallel::set_num_threads(t);
        let mut v = Vec::new();
        for _ in 0..7 {
            let start = Instant::now();
            for _ in 0..200 {
                std::hint::black_box(a.matmul(&b).unwrap());
            }
            v.push(start.elapsed().as_secs_f64() / 200.0 * 1e6);
        }
        v.sort_by(f64::total_cmp);
        println!("T={t} 128x784x128: median {:.1} us", v[3]);
    }
}
