//! The get_weights / set_weights example of the Keras docs: RMSprop on `Dense(10)` compiled with
//! "mse", one epoch on `arange(100).reshape(5, 20)` with zero labels, then the optimizer's
//! variables printed, set to new values, and `iterations` shown.
//!
//! ```sh
//! cargo run --release --example optimizer_weights
//! ```

use gradus::layers::Dense;
use gradus::models::{FitOptions, Model, NO_METRICS, Sequential};
use gradus::optim::Optimizer;
use gradus::tensor::Tensor;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // opt = keras.optimizers.RMSprop(); m = Sequential([Dense(10)]); m.compile(opt, loss="mse")
    let mut m = Model::new(Sequential::new().layer(Dense::new(10)))?;
    m.compile(Optimizer::from_name("rmsprop")?, "mse", NO_METRICS)?;
    // data = np.arange(100).reshape(5, 20); labels = np.zeros(5): one label per sample,
    // compared with each of the 10 outputs.
    let data = Tensor::arange(0.0, 100.0, 1.0)?.reshape(&[5, 20])?;
    let labels = Tensor::zeros(&[5, 10]);
    m.fit(&data, &labels, FitOptions::default())?;

    let opt = m.optimizer_mut().expect("compiled");
    println!("optimizer variables after one epoch (one step of 5 samples):");
    for v in opt.variables() {
        let head: Vec<String> = v.values.iter().take(3).map(|x| format!("{x:.4}")).collect();
        println!(
            "  {:<28} shape {:<8} [{}{}]",
            v.name,
            format!("{:?}", v.shape),
            head.join(", "),
            if v.values.len() > 3 { ", ..." } else { "" }
        );
    }

    // new_weights = [np.array(10), np.array(0.01), np.ones([20, 10]), np.zeros([10])]
    // (Keras 3 lists the learning rate after the iteration count.)
    let shapes: Vec<Vec<usize>> = opt.variables().into_iter().map(|v| v.shape).collect();
    let mut new_weights: Vec<(Vec<usize>, Vec<f32>)> = Vec::new();
    for (i, shape) in shapes.iter().enumerate() {
        let len = shape.iter().product::<usize>();
        let value = match i {
            0 => 10.0,  // iteration
            1 => 0.001, // learning rate
            2 => 1.0,   // the kernel's velocity
            _ => 0.0,   // the bias's velocity
        };
        new_weights.push((shape.clone(), vec![value; len]));
    }
    opt.set_weights(&new_weights)?;
    println!("after set_weights: iterations = {}", opt.iterations());
    let wrong = vec![(vec![3usize], vec![0.0f32; 3])];
    match opt.set_weights(&wrong) {
        Err(e) => println!("set_weights with 1 weight instead of {}: {e}", shapes.len()),
        Ok(()) => unreachable!("a wrong count is refused"),
    }
    Ok(())
}
