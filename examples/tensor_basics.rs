//! A first look at gradus tensors: creation, seeded random numbers and shapes.
//!
//! Run with `cargo run --release --example tensor_basics`.
use gradus::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = Rng::seed_from_u64(42);
    let x = Tensor::rand_normal(&[2, 3], 0.0, 1.0, &mut rng);
    println!("x (seeded normal) = {x}");
    let r = Tensor::arange(0.0, 6.0, 1.0)?;
    println!("arange(0, 6) = {r}");
    println!("eye(3) = {}", Tensor::eye(3));
    match Tensor::from_vec(vec![1.0; 5], &[2, 3]) {
        Ok(_) => unreachable!("five values cannot fill a 2x3 tensor"),
        Err(e) => println!("as expected, an error: {e}"),
    }
    Ok(())
}
