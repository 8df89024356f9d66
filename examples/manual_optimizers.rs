//! The classic notebook exercise: one layer `y = softmax(x W1 + b1)` on Iris, trained on the
//! mean squared error against one-hot labels, with the update rule written by hand in five
//! variants (SGD, SGD with momentum, Adagrad, RMSprop, Adam), then the same runs through
//! gradus-optim's Keras-exact optimizers, showing where the results agree and where the Keras
//! forms differ.
//!
//! Run with `cargo run --release --example manual_optimizers`.

use gradus::autograd::{Tape, Variable, apply_gradients};
use gradus::datasets::{load_iris, one_hot};
use gradus::optim::Optimizer;
use gradus::optim::rules::{Adagrad, Adam, RmsProp, Sgd};
use gradus::tensor::{Rng, Tensor};

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

const STEPS: usize = 200;
const EPS: f32 = 1e-7;

/// Standardised Iris features `[150, 4]` and one-hot labels `[150, 3]`.
fn data() -> BoxResult<(Tensor, Tensor)> {
    let iris = load_iris()?;
    let mean = iris.features.mean_axis(0, true)?;
    let std = iris
        .features
        .sub(&mean)?
        .square()
        .mean_axis(0, true)?
        .sqrt();
    let x = iris.features.sub(&mean)?.div(&std)?;
    Ok((x, one_hot(&iris.labels, iris.num_classes())?))
}

/// The same seeded starting point for every run.
fn init() -> [Variable; 2] {
    let mut rng = Rng::seed_from_u64(3);
    [
        Variable::new("w1", Tensor::rand_normal(&[4, 3], 0.0, 0.1, &mut rng)),
        Variable::new("b1", Tensor::zeros(&[3])),
    ]
}

/// `mean((softmax(x W1 + b1) - t)^2)` and its gradients with respect to `W1` and `b1`.
fn loss_and_grads(x: &Tensor, t: &Tensor, vars: &[Variable; 2]) -> BoxResult<(f32, Vec<Tensor>)> {
    let tape = Tape::new();
    let x = tape.constant(x.clone());
    let y = x
        .matmul(&x.param(&vars[0]))?
        .add(&x.param(&vars[1]))?
        .softmax(-1)?;
    let loss = y.sub(&x.lift(t.clone()))?.square().mean_all();
    let grads = tape.gradient(&loss, &[&vars[0], &vars[1]])?;
    Ok((loss.item()?, grads))
}

/// Trains for `STEPS` full-batch steps with `update(step t from 1, variable index, values,
/// gradient)`, and returns the loss curve and the final weights.
fn train_by_hand(
    x: &Tensor,
    t: &Tensor,
    mut update: impl FnMut(usize, usize, &mut [f32], &[f32]),
) -> BoxResult<(Vec<f32>, Vec<f32>)> {
    let vars = init();
    let mut curve = Vec::with_capacity(STEPS);
    for step in 1..=STEPS {
        let (loss, grads) = loss_and_grads(x, t, &vars)?;
        curve.push(loss);
        for (i, (v, g)) in vars.iter().zip(&grads).enumerate() {
            let g = g.to_vec();
            v.update(|w| update(step, i, w, &g));
        }
    }
    Ok((curve, vars[0].value().to_vec()))
}

/// The same loop, with a gradus-optim optimizer doing the update.
fn train_with(x: &Tensor, t: &Tensor, mut opt: Optimizer) -> BoxResult<(Vec<f32>, Vec<f32>)> {
    let vars = init();
    let mut curve = Vec::with_capacity(STEPS);
    for _ in 0..STEPS {
        let (loss, grads) = loss_and_grads(x, t, &vars)?;
        curve.push(loss);
        apply_gradients(&mut opt, &grads, &[&vars[0], &vars[1]])?;
    }
    Ok((curve, vars[0].value().to_vec()))
}

/// Per-variable optimizer state (one slot vector per variable), created on first use.
struct Slots(Vec<Vec<f32>>);

impl Slots {
    fn new() -> Slots {
        Slots(Vec::new())
    }
    fn get(&mut self, i: usize, len: usize, init: f32) -> &mut Vec<f32> {
        while self.0.len() <= i {
            self.0.push(Vec::new());
        }
        if self.0[i].is_empty() {
            self.0[i] = vec![init; len];
        }
        &mut self.0[i]
    }
}

fn print_curve(name: &str, curve: &[f32]) {
    let points: Vec<String> = curve
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 25 == 0 || *i == curve.len() - 1)
        .map(|(i, l)| format!("{}:{l:.4}", i + 1))
        .collect();
    println!("{name:<28} {}", points.join("  "));
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn main() -> BoxResult<()> {
    let (x, t) = data()?;
    let (lr_sgd, beta, lr_adagrad, rho, lr_rms, lr_adam, b1, b2) =
        (0.5, 0.9, 0.1, 0.9, 0.01, 0.01, 0.9, 0.999);

    println!(
        "loss curves (step:loss), {STEPS} full-batch steps, MSE of softmax(x W1 + b1) vs one-hot\n"
    );
    println!("-- by hand --");
    let sgd = train_by_hand(&x, &t, |_, _, w, g| {
        w.iter_mut().zip(g).for_each(|(w, g)| *w -= lr_sgd * g);
    })?;
    print_curve("SGD", &sgd.0);

    let mut m = Slots::new();
    let momentum = train_by_hand(&x, &t, |_, i, w, g| {
        let m = m.get(i, w.len(), 0.0);
        for ((w, g), m) in w.iter_mut().zip(g).zip(m.iter_mut()) {
            *m = beta * *m + (1.0 - beta) * g; // the notebook's (EMA) momentum
            *w -= lr_sgd * *m;
        }
    })?;
    print_curve("SGD + momentum (EMA form)", &momentum.0);

    let mut cache = Slots::new();
    let adagrad = train_by_hand(&x, &t, |_, i, w, g| {
        let c = cache.get(i, w.len(), 0.0);
        for ((w, g), c) in w.iter_mut().zip(g).zip(c.iter_mut()) {
            *c += g * g;
            *w -= lr_adagrad * g / (c.sqrt() + EPS);
        }
    })?;
    print_curve("Adagrad", &adagrad.0);

    let mut ms = Slots::new();
    let rmsprop = train_by_hand(&x, &t, |_, i, w, g| {
        let v = ms.get(i, w.len(), 0.0);
        for ((w, g), v) in w.iter_mut().zip(g).zip(v.iter_mut()) {
            *v = rho * *v + (1.0 - rho) * g * g;
            *w -= lr_rms * g / (v.sqrt() + EPS);
        }
    })?;
    print_curve("RMSprop", &rmsprop.0);

    let (mut m1, mut m2) = (Slots::new(), Slots::new());
    let adam = train_by_hand(&x, &t, |step, i, w, g| {
        let n = w.len();
        let (m, v) = (m1.get(i, n, 0.0), m2.get(i, n, 0.0));
        for (((w, g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            let m_hat = *m / (1.0 - b1.powi(step as i32));
            let v_hat = *v / (1.0 - b2.powi(step as i32));
            *w -= lr_adam * m_hat / (v_hat.sqrt() + EPS);
        }
    })?;
    print_curve("Adam (bias-corrected)", &adam.0);

    println!("\n-- gradus-optim (Keras 3 forms) --");
    let sgd_k = train_with(
        &x,
        &t,
        Optimizer::builder(Sgd::default())
            .learning_rate(lr_sgd)
            .build()?,
    )?;
    print_curve("SGD", &sgd_k.0);
    let keras_momentum = |lr: f32| {
        Optimizer::builder(Sgd {
            momentum: f64::from(beta),
            nesterov: false,
        })
        .learning_rate(lr)
        .build()
    };
    let mom_k = train_with(&x, &t, keras_momentum(lr_sgd)?)?;
    print_curve("SGD momentum, same lr", &mom_k.0);
    let mom_k2 = train_with(&x, &t, keras_momentum(lr_sgd * (1.0 - beta))?)?;
    print_curve("SGD momentum, lr (1-beta)", &mom_k2.0);
    let adagrad_k = train_with(
        &x,
        &t,
        Optimizer::builder(Adagrad::default())
            .learning_rate(lr_adagrad)
            .build()?,
    )?;
    print_curve("Adagrad (acc0 = 0.1)", &adagrad_k.0);
    let adagrad_k0 = train_with(
        &x,
        &t,
        Optimizer::builder(Adagrad {
            initial_accumulator_value: 0.0,
            epsilon: 1e-7,
        })
        .learning_rate(lr_adagrad)
        .build()?,
    )?;
    print_curve("Adagrad (acc0 = 0)", &adagrad_k0.0);
    let rms_k = train_with(
        &x,
        &t,
        Optimizer::builder(RmsProp::default())
            .learning_rate(lr_rms)
            .build()?,
    )?;
    print_curve("RMSprop", &rms_k.0);
    let adam_k = train_with(
        &x,
        &t,
        Optimizer::builder(Adam::default())
            .learning_rate(lr_adam)
            .build()?,
    )?;
    print_curve("Adam", &adam_k.0);

    println!("\n-- by hand vs gradus-optim: max |W1 difference| after {STEPS} steps --");
    let rows = [
        ("SGD", &sgd, &sgd_k, "same rule: w -= lr g"),
        (
            "SGD momentum, same lr",
            &momentum,
            &mom_k,
            "Keras m = beta m - lr g; w += m: an effective step 1/(1-beta) = 10x larger",
        ),
        (
            "SGD momentum, lr (1-beta)",
            &momentum,
            &mom_k2,
            "Keras with lr (1-beta) is the EMA form exactly",
        ),
        (
            "Adagrad (acc0 = 0.1)",
            &adagrad,
            &adagrad_k,
            "Keras starts the accumulator at 0.1 and puts eps inside the sqrt",
        ),
        (
            "Adagrad (acc0 = 0)",
            &adagrad,
            &adagrad_k0,
            "only eps placement left: sqrt(acc + eps) vs sqrt(acc) + eps",
        ),
        (
            "RMSprop",
            &rmsprop,
            &rms_k,
            "eps inside the sqrt in Keras: sqrt(v + eps) vs sqrt(v) + eps",
        ),
        (
            "Adam",
            &adam,
            &adam_k,
            "Keras folds the bias correction into lr, so eps meets the uncorrected sqrt(v)",
        ),
    ];
    for (name, hand, lib, note) in rows {
        println!("{name:<28} {:.2e}   {note}", max_diff(&hand.1, &lib.1));
    }
    Ok(())
}
