//! Steps run in pieces (`apply_gradients_with`) give the same bits as one call, for every rule
//! and the options that change the update's pass, with pools that run the pieces in any order;
//! large parameters of element-wise rules are really split, small ones and Lamb/Adafactor not.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use gradus_optim::rules::{Adam, Ftrl, RmsProp, Sgd};
use gradus_optim::{NamedParam, Optimizer, Parallel, Rule, ScopedThreads, Serial};

mod common;
use common::values;

/// Runs the pieces on the calling thread, last first, and records each region's piece count.
#[derive(Default)]
struct Reversed {
    threads: usize,
    regions: Mutex<Vec<usize>>,
}

impl Parallel for Reversed {
    fn threads(&self) -> usize {
        self.threads
    }

    fn run(&self, pieces: usize, piece: &(dyn Fn(usize) + Sync)) {
        self.regions.lock().unwrap().push(pieces);
        (0..pieces).rev().for_each(piece);
    }
}

/// Three steps on a large matrix (`rows x cols`), a bias and a scalar with `parallel`; the
/// parameters and the optimizer's weights after them.
fn run(
    build: &dyn Fn() -> Optimizer,
    parallel: &dyn Parallel,
    (rows, cols): (usize, usize),
) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut opt = build();
    let mut kernel = values(rows * cols, 1);
    let mut bias = values(cols, 2);
    let mut scalar = vec![0.5_f32];
    for step in 0..3 {
        let gk = values(rows * cols, 10 + step);
        let gb = values(cols, 20 + step);
        let gs = values(1, 30 + step);
        opt.apply_gradients_with(
            parallel,
            [
                (
                    &gk,
                    NamedParam::with_shape("kernel", &[rows, cols], &mut kernel).unwrap(),
                ),
                (&gb, NamedParam::new("bias", &mut bias)),
                (
                    &gs,
                    NamedParam::with_shape("scalar", &[], &mut scalar).unwrap(),
                ),
            ],
        )
        .unwrap();
    }
    (vec![kernel, bias, scalar], opt.get_weights())
}

fn builders() -> Vec<(String, Box<dyn Fn() -> Optimizer>)> {
    let mut all: Vec<(String, Box<dyn Fn() -> Optimizer>)> = Rule::NAMES
        .iter()
        .map(|&name| {
            let f: Box<dyn Fn() -> Optimizer> =
                Box::new(move || Optimizer::from_name(name).unwrap());
            (name.to_string(), f)
        })
        .collect();
    let rule = |label: &str, rule: Rule| {
        let f: Box<dyn Fn() -> Optimizer> =
            Box::new(move || Optimizer::builder(rule.clone()).build().unwrap());
        (label.to_string(), f)
    };
    all.push(rule(
        "sgd nesterov",
        Sgd {
            momentum: 0.9,
            nesterov: true,
        }
        .into(),
    ));
    all.push(rule(
        "rmsprop centered momentum",
        RmsProp {
            momentum: 0.5,
            centered: true,
            ..Default::default()
        }
        .into(),
    ));
    all.push(rule(
        "adam amsgrad",
        Adam {
            amsgrad: true,
            ..Default::default()
        }
        .into(),
    ));
    all.push(rule(
        "ftrl l1 l2",
        Ftrl {
            l1_regularization_strength: 0.01,
            l2_regularization_strength: 0.02,
            l2_shrinkage_regularization_strength: 0.03,
            ..Default::default()
        }
        .into(),
    ));
    let options = |label: &str, f: fn() -> Optimizer| {
        let f: Box<dyn Fn() -> Optimizer> = Box::new(f);
        (label.to_string(), f)
    };
    all.push(options("adam weight decay, clipnorm, ema", || {
        Optimizer::builder(Adam::default())
            .weight_decay(0.01)
            .clipnorm(0.5)
            .ema(0.9)
            .build()
            .unwrap()
    }));
    all.push(options("sgd global clipnorm, accumulation", || {
        Optimizer::builder(Sgd::default())
            .global_clipnorm(1.0)
            .gradient_accumulation_steps(2)
            .build()
            .unwrap()
    }));
    all
}

#[test]
fn pieces_give_the_bits_of_one_call() {
    // 3 pieces of 8192 + 16 * k values, the last shorter: every piece boundary on a whole vector.
    let shape = (Optimizer::MIN_PIECE * 3 / 37 + 1, 37);
    for (label, build) in builders() {
        let want = run(&*build, &Serial, shape);
        let reversed = Reversed {
            threads: 3,
            ..Default::default()
        };
        assert_eq!(
            run(&*build, &reversed, shape),
            want,
            "{label}: reversed pieces"
        );
        let scoped = ScopedThreads(NonZeroUsize::new(3).unwrap());
        assert_eq!(
            run(&*build, &scoped, shape),
            want,
            "{label}: scoped threads"
        );
    }
}

#[test]
fn only_large_parameters_of_elementwise_rules_are_split() {
    let big = Optimizer::MIN_PIECE * 2;
    for (name, split) in [
        ("adam", true),
        ("lion", true),
        ("lamb", false),
        ("adafactor", false),
    ] {
        let pool = Reversed {
            threads: 4,
            ..Default::default()
        };
        let mut opt = Optimizer::from_name(name).unwrap();
        let (mut w, mut b) = (vec![0.1_f32; big], vec![0.1_f32; Optimizer::MIN_PIECE]);
        let (gw, gb) = (values(big, 3), values(Optimizer::MIN_PIECE, 4));
        opt.apply_gradients_with(
            &pool,
            [
                (
                    &gw,
                    NamedParam::with_shape("w", &[big / 64, 64], &mut w).unwrap(),
                ),
                (&gb, NamedParam::new("b", &mut b)),
            ],
        )
        .unwrap();
        // The 2 * MIN_PIECE values give 2 pieces (not 4: each piece needs MIN_PIECE values);
        // the bias, with MIN_PIECE values, is not split.
        let want: &[usize] = if split { &[2] } else { &[] };
        assert_eq!(*pool.regions.lock().unwrap(), want, "{name}");
    }
}

#[test]
fn a_failed_step_runs_no_piece_and_changes_nothing() {
    let pool = Reversed {
        threads: 2,
        ..Default::default()
    };
    let mut opt = Optimizer::from_name("adam").unwrap();
    let n = Optimizer::MIN_PIECE * 2;
    let mut w = vec![0.1_f32; n];
    let short = vec![0.0_f32; n - 1];
    assert!(
        opt.apply_gradients_with(&pool, [(&short, NamedParam::new("w", &mut w))])
            .is_err()
    );
    assert!(pool.regions.lock().unwrap().is_empty());
    assert_eq!(opt.iterations(), 0);
    assert!(w.iter().all(|&x| x == 0.1));
}
