//! The public API: error paths (nothing changes on error), state save/load continuing
//! bit-for-bit, weights, config round-trips, construction by name, dynamic loss scaling, the
//! parameter adapters, and the kernels against naive references at vectorized sizes.

use std::collections::HashMap;

use gradus_optim::rules::{Adam, Ftrl, Lion, Sgd};
use gradus_optim::schedules::{
    CosineDecay, CosineDecayRestarts, ExponentialDecay, PiecewiseConstantDecay, PolynomialDecay,
};
use gradus_optim::{
    LearningRate, NamedParam, OptimError, Optimizer, OptimizerConfig, Param, Rule, map_pairs,
};

mod common;
use common::values;

/// A two-parameter model: a 3x4 kernel and a 4-element bias.
#[derive(Clone, Debug, PartialEq)]
struct Model {
    kernel: Vec<f32>,
    bias: Vec<f32>,
}

const KERNEL_SHAPE: [usize; 2] = [3, 4];

impl Model {
    fn new() -> Self {
        Model {
            kernel: values(12, 1),
            bias: values(4, 2),
        }
    }

    fn step(&mut self, opt: &mut Optimizer, seed: u64) -> Result<(), OptimError> {
        let (gk, gb) = (values(12, 100 + seed), values(4, 200 + seed));
        opt.apply_gradients([
            (
                gk,
                NamedParam::with_shape("dense/kernel", &KERNEL_SHAPE, &mut self.kernel)?,
            ),
            (gb, NamedParam::new("dense/bias", &mut self.bias)),
        ])
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Every optimizer, plus option-heavy configurations.
fn configurations() -> Vec<Optimizer> {
    let mut out: Vec<Optimizer> = Rule::NAMES
        .iter()
        .map(|n| Optimizer::from_name(n).unwrap())
        .collect();
    out.push(
        Optimizer::builder(Rule::from_name("nadam").unwrap())
            .learning_rate(
                CosineDecay::new(0.0, 8.0)
                    .unwrap()
                    .warmup(0.05, 3.0)
                    .unwrap(),
            )
            .weight_decay(0.02)
            .clipnorm(0.7)
            .ema(0.8)
            .build()
            .unwrap(),
    );
    out.push(
        Optimizer::builder(Rule::from_name("adamax").unwrap())
            .learning_rate(0.05)
            .gradient_accumulation_steps(2)
            .weight_decay(0.1)
            .global_clipnorm(2.0)
            .build()
            .unwrap(),
    );
    out.push(
        Optimizer::builder(Sgd {
            momentum: 0.7,
            nesterov: true,
        })
        .learning_rate(CosineDecayRestarts {
            t_mul: 1.5,
            m_mul: 0.8,
            alpha: 0.1,
            ..CosineDecayRestarts::new(0.1, 3.0).unwrap()
        })
        .build()
        .unwrap(),
    );
    out.push(
        Optimizer::builder(Adam {
            amsgrad: true,
            ..Adam::default()
        })
        .dynamic_loss_scale(4.0, 3)
        .ema(0.9)
        .ema_overwrite_frequency(3)
        .build()
        .unwrap(),
    );
    out
}

#[test]
fn every_name_builds_with_keras_defaults() {
    for name in Rule::NAMES {
        let opt = Optimizer::from_name(name).unwrap();
        assert_eq!(opt.rule().class_name().to_lowercase(), name);
        let lr = if name == "sgd" { 0.01 } else { 0.001 };
        assert_eq!(opt.learning_rate(), lr, "{name}");
        assert_eq!(opt.iterations(), 0);
        // Upper-case class names work too.
        Optimizer::from_name(opt.rule().class_name()).unwrap();
    }
    assert_eq!(
        Optimizer::from_name("adamw")
            .unwrap()
            .options()
            .weight_decay,
        Some(0.004)
    );
    let err = Optimizer::from_name("adamm").unwrap_err();
    assert!(matches!(err, OptimError::UnknownOptimizer { ref name, .. } if name == "adamm"));
    assert!(err.to_string().contains("adam, adamw"), "{err}");
}

#[test]
fn invalid_hyperparameters_are_errors_at_construction() {
    let hyper = |r: Result<Optimizer, OptimError>, want: &str| match r {
        Err(OptimError::InvalidHyperparameter { name, .. }) => assert_eq!(name, want),
        other => panic!("expected an error about {want}, got {other:?}"),
    };
    hyper(
        Optimizer::builder(Sgd::default())
            .learning_rate(-0.1)
            .build(),
        "learning_rate",
    );
    hyper(
        Optimizer::builder(Sgd::default())
            .learning_rate(f32::NAN)
            .build(),
        "learning_rate",
    );
    hyper(
        Optimizer::builder(Adam {
            beta_1: 1.0,
            ..Adam::default()
        })
        .build(),
        "beta_1",
    );
    hyper(
        Optimizer::builder(Adam {
            beta_2: -0.1,
            ..Adam::default()
        })
        .build(),
        "beta_2",
    );
    hyper(
        Optimizer::builder(Ftrl {
            learning_rate_power: 0.5,
            ..Ftrl::default()
        })
        .build(),
        "learning_rate_power",
    );
    hyper(
        Optimizer::builder(Lion {
            beta_1: 0.0,
            ..Lion::default()
        })
        .build(),
        "beta_1",
    );
    hyper(
        Optimizer::builder(Sgd::default())
            .gradient_accumulation_steps(1)
            .build(),
        "gradient_accumulation_steps",
    );
    hyper(
        Optimizer::builder(Sgd::default()).ema(1.5).build(),
        "ema_momentum",
    );
    hyper(
        Optimizer::builder(Sgd::default())
            .weight_decay(-1.0)
            .build(),
        "weight_decay",
    );
    hyper(
        Optimizer::builder(Sgd::default())
            .dynamic_loss_scale(0.0, 10)
            .build(),
        "initial_scale",
    );
    hyper(
        Optimizer::builder(Sgd::default())
            .dynamic_loss_scale(2.0, 10)
            .loss_scale_factor(4.0)
            .build(),
        "loss_scale_factor",
    );
    hyper(
        Optimizer::builder(Sgd::default())
            .learning_rate(ExponentialDecay {
                initial_learning_rate: 0.1,
                decay_steps: 0.0,
                decay_rate: 0.5,
                staircase: false,
            })
            .build(),
        "decay_steps",
    );
    hyper(
        ExponentialDecay::new(0.1, -3.0, 0.5).map(|_| unreachable!()),
        "decay_steps",
    );
    hyper(
        PolynomialDecay::new(0.1, 0.0).map(|_| unreachable!()),
        "decay_steps",
    );
    let mut adamw = Optimizer::from_name("adamw").unwrap().config();
    adamw.options.weight_decay = None;
    hyper(Optimizer::from_config(adamw), "weight_decay");

    let err = Optimizer::builder(Sgd::default())
        .clipnorm(1.0)
        .clipvalue(0.5)
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        OptimError::ConflictingClipOptions {
            set: vec!["clipnorm", "clipvalue"]
        }
    );
    assert!(err.to_string().contains("clipnorm and clipvalue"), "{err}");

    let err = PiecewiseConstantDecay::new(vec![1.0, 2.0], vec![0.1, 0.2]).unwrap_err();
    assert!(matches!(err, OptimError::InvalidSchedule { .. }), "{err}");
    assert!(
        err.to_string().contains("2 boundaries and 2 values"),
        "{err}"
    );
    let err = PiecewiseConstantDecay::new(vec![2.0, 1.0], vec![0.1, 0.2, 0.3]).unwrap_err();
    assert!(matches!(err, OptimError::InvalidSchedule { .. }), "{err}");

    let err = Optimizer::builder(Sgd::default())
        .weight_decay(0.1)
        .exclude_from_weight_decay(["(unclosed"])
        .build()
        .unwrap_err();
    assert!(matches!(err, OptimError::InvalidPattern { .. }), "{err}");
}

#[test]
fn bad_steps_are_errors_and_change_nothing() {
    let mut opt = Optimizer::builder(Adam::default())
        .ema(0.9)
        .build()
        .unwrap();
    let mut model = Model::new();
    model.step(&mut opt, 0).unwrap();
    let (before_model, before_vars) = (model.clone(), opt.variables());

    // The second gradient is too short: the first parameter must not move either.
    let err = opt
        .apply_gradients([
            (
                vec![1.0_f32; 12],
                NamedParam::with_shape("dense/kernel", &KERNEL_SHAPE, &mut model.kernel).unwrap(),
            ),
            (
                vec![1.0_f32; 3],
                NamedParam::new("dense/bias", &mut model.bias),
            ),
        ])
        .unwrap_err();
    assert_eq!(
        err,
        OptimError::GradientLength {
            key: "dense/bias".into(),
            shape: vec![4],
            expected: 4,
            got: 3
        }
    );
    assert!(
        err.to_string().contains("has 3 values, expected 4"),
        "{err}"
    );

    // The same key twice.
    let mut other = vec![0.0_f32; 4];
    let err = opt
        .apply_gradients([
            (
                vec![1.0_f32; 4],
                NamedParam::new("dense/bias", &mut model.bias),
            ),
            (vec![1.0_f32; 4], NamedParam::new("dense/bias", &mut other)),
        ])
        .unwrap_err();
    assert_eq!(
        err,
        OptimError::DuplicateKey {
            key: "dense/bias".into()
        }
    );

    // A known key with a new shape.
    let mut wide = vec![0.0_f32; 5];
    let err = opt
        .apply_gradients([(vec![1.0_f32; 5], NamedParam::new("dense/bias", &mut wide))])
        .unwrap_err();
    assert!(matches!(err, OptimError::ShapeChanged { .. }), "{err}");

    // A parameter whose values do not fill its shape.
    #[derive(Debug)]
    struct Lying(Vec<f32>);
    impl Param for Lying {
        fn key(&self) -> &str {
            "lying"
        }
        fn shape(&self) -> &[usize] {
            &[3]
        }
        fn with_values_mut(&mut self, f: &mut dyn FnMut(&mut [f32])) {
            f(&mut self.0)
        }
    }
    let err = opt
        .apply_gradients([(vec![1.0_f32; 3], Lying(vec![0.0; 2]))])
        .unwrap_err();
    assert!(
        matches!(
            err,
            OptimError::ParamLength {
                got: 2,
                expected: 3,
                ..
            }
        ),
        "{err}"
    );

    assert_eq!(model, before_model);
    assert_eq!(opt.variables(), before_vars);
    assert_eq!(opt.iterations(), 1);

    // An empty step is a no-op, as in Keras.
    opt.apply_gradients(Vec::<(Vec<f32>, NamedParam<'_>)>::new())
        .unwrap();
    assert_eq!(opt.variables(), before_vars);
}

#[test]
fn a_bad_learning_rate_from_a_custom_schedule_is_an_error() {
    let mut opt = Optimizer::builder(Sgd::default())
        .learning_rate(LearningRate::custom(
            |step: u64| if step < 1 { 0.1 } else { f32::NAN },
        ))
        .build()
        .unwrap();
    let mut model = Model::new();
    model.step(&mut opt, 0).unwrap();
    let before = (model.clone(), opt.variables());
    let err = model.step(&mut opt, 1).unwrap_err();
    assert!(
        matches!(err, OptimError::InvalidLearningRate { step: 1, .. }),
        "{err}"
    );
    assert_eq!((model, opt.variables()), before);
    assert!(matches!(
        opt.config().to_json(),
        Err(OptimError::NotSerializable)
    ));
}

#[test]
fn learning_rate_can_be_read_and_set_between_steps() {
    let mut opt = Optimizer::from_name("sgd").unwrap();
    let mut w = vec![1.0_f32];
    opt.apply_gradients([(vec![1.0_f32], NamedParam::new("w", &mut w))])
        .unwrap();
    opt.set_learning_rate(0.5).unwrap();
    assert_eq!(opt.learning_rate(), 0.5);
    assert_eq!(opt.variables()[1].values, vec![0.5]);
    opt.apply_gradients([(vec![1.0_f32], NamedParam::new("w", &mut w))])
        .unwrap();
    assert_eq!(w, vec![1.0 - 0.01 - 0.5]);
    assert!(matches!(
        opt.set_learning_rate(-1.0),
        Err(OptimError::InvalidHyperparameter { .. })
    ));

    // A schedule is read at the number of steps made so far, and cannot be set to a constant.
    let schedule = ExponentialDecay::new(0.1, 1.0, 0.5).unwrap();
    let mut opt = Optimizer::builder(Sgd::default())
        .learning_rate(schedule)
        .build()
        .unwrap();
    assert_eq!(opt.learning_rate(), 0.1);
    opt.apply_gradients([(vec![1.0_f32], NamedParam::new("w", &mut w))])
        .unwrap();
    assert_eq!(opt.learning_rate(), 0.05);
    assert_eq!(
        opt.set_learning_rate(0.1),
        Err(OptimError::LearningRateNotSettable { kind: "schedule" })
    );
    opt.set_learning_rate(CosineDecay::new(0.2, 10.0).unwrap())
        .unwrap();
}

#[test]
fn restored_state_continues_bit_for_bit() {
    for template in configurations() {
        let name = template.rule().class_name();
        let mut uninterrupted = Optimizer::from_config(template.config()).unwrap();
        let mut first = Optimizer::from_config(template.config()).unwrap();
        let (mut a, mut b) = (Model::new(), Model::new());
        for s in 0..5 {
            a.step(&mut uninterrupted, s).unwrap();
            b.step(&mut first, s).unwrap();
        }
        let json = first.save_state_json().unwrap();
        let config_json = first.config().to_json().unwrap();
        drop(first);
        let mut restored =
            Optimizer::from_config(OptimizerConfig::from_json(&config_json).unwrap()).unwrap();
        restored.load_state_json(&json).unwrap();
        assert_eq!(restored.variables(), uninterrupted.variables(), "{name}");
        for s in 5..10 {
            a.step(&mut uninterrupted, s).unwrap();
            b.step(&mut restored, s).unwrap();
        }
        assert_eq!(bits(&a.kernel), bits(&b.kernel), "{name}");
        assert_eq!(bits(&a.bias), bits(&b.bias), "{name}");
        let (va, vb) = (uninterrupted.variables(), restored.variables());
        assert_eq!(va.len(), vb.len());
        for (x, y) in va.iter().zip(&vb) {
            assert_eq!(x.name, y.name);
            assert_eq!(bits(&x.values), bits(&y.values), "{name}: {}", x.name);
        }
    }
}

#[test]
fn a_state_for_another_optimizer_is_rejected() {
    let mut adam = Optimizer::from_name("adam").unwrap();
    let mut sgd = Optimizer::builder(Sgd {
        momentum: 0.9,
        nesterov: false,
    })
    .build()
    .unwrap();
    let mut model = Model::new();
    model.step(&mut adam, 0).unwrap();
    model.step(&mut sgd, 0).unwrap();
    let before = sgd.variables();
    let err = sgd.load_state(&adam.state()).unwrap_err();
    assert!(err.to_string().contains("expected SGD, got Adam"), "{err}");

    // Same class, different slots (amsgrad adds one).
    let mut amsgrad = Optimizer::builder(Adam {
        amsgrad: true,
        ..Adam::default()
    })
    .build()
    .unwrap();
    let err = amsgrad.load_state(&adam.state()).unwrap_err();
    assert!(matches!(err, OptimError::StateMismatch { .. }), "{err}");
    assert!(amsgrad.variables().len() == 2);
    assert!(matches!(
        sgd.load_state_json("{not json"),
        Err(OptimError::Json(_))
    ));
    assert_eq!(sgd.variables(), before);
}

#[test]
fn weights_round_trip_and_bad_weights_change_nothing() {
    let mut opt = Optimizer::builder(Adam::default())
        .gradient_accumulation_steps(2)
        .build()
        .unwrap();
    let mut model = Model::new();
    for s in 0..3 {
        model.step(&mut opt, s).unwrap();
    }
    let vars = opt.variables();
    let names: Vec<&str> = vars.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "iteration",
            "learning_rate",
            "dense_kernel_gradient_accumulator",
            "dense_bias_gradient_accumulator",
            "dense_kernel_momentum",
            "dense_kernel_velocity",
            "dense_bias_momentum",
            "dense_bias_velocity",
        ]
    );
    assert_eq!(vars[4].shape, vec![3, 4]);
    assert_eq!(opt.count_params(), 2 + 3 * 16);
    assert_eq!(opt.iterations(), 1);
    assert_eq!(vars[0].values, vec![3.0]);

    let weights: Vec<(Vec<usize>, Vec<f32>)> = vars
        .iter()
        .map(|v| (v.shape.clone(), v.values.clone()))
        .collect();
    let mut fresh = Optimizer::from_config(opt.config()).unwrap();
    let mut fresh_model = Model::new();
    fresh_model.step(&mut fresh, 0).unwrap(); // builds the slots
    let before = fresh.variables();

    let err = fresh.set_weights(&weights[..7]).unwrap_err();
    assert_eq!(
        err,
        OptimError::WeightCount {
            expected: 8,
            got: 7
        }
    );
    let mut bad = weights.clone();
    bad[5].0 = vec![4, 3];
    let err = fresh.set_weights(&bad).unwrap_err();
    assert!(
        matches!(err, OptimError::WeightShape { index: 5, ref name, .. } if name == "dense_kernel_velocity"),
        "{err}"
    );
    let mut bad = weights.clone();
    bad[6].1.pop();
    assert!(matches!(
        fresh.set_weights(&bad),
        Err(OptimError::WeightShape {
            index: 6,
            len: 3,
            ..
        })
    ));
    let mut bad = weights.clone();
    bad[0].1 = vec![2.5];
    assert_eq!(
        fresh.set_weights(&bad),
        Err(OptimError::InvalidIteration { got: 2.5 })
    );
    assert_eq!(fresh.variables(), before);

    fresh.set_weights(&weights).unwrap();
    assert_eq!(fresh.variables(), vars);
    assert_eq!(fresh.get_weights().len(), 8);
    // Continuing from set weights equals continuing the original.
    let mut copy = model.clone();
    model.step(&mut opt, 9).unwrap();
    copy.step(&mut fresh, 9).unwrap();
    assert_eq!(model, copy);
}

#[test]
fn configs_round_trip_through_json() {
    for opt in configurations() {
        let config = opt.config();
        let json = config.to_json().unwrap();
        let back = OptimizerConfig::from_json(&json).unwrap();
        assert_eq!(back, config, "{json}");
        assert_eq!(Optimizer::from_config(back).unwrap().config(), config);
    }
    let json = r#"{"rule": {"class_name": "Adam", "config": {"beta_1": 0.8}},
                   "learning_rate": {"class_name": "PiecewiseConstantDecay",
                                     "config": {"boundaries": [2, 5], "values": [0.1, 0.01, 0.001]}},
                   "options": {"clipnorm": 0.5}}"#;
    let opt = Optimizer::from_config(OptimizerConfig::from_json(json).unwrap()).unwrap();
    assert_eq!(
        opt.rule(),
        &Rule::Adam(Adam {
            beta_1: 0.8,
            ..Adam::default()
        })
    );
    assert_eq!(opt.learning_rate(), 0.1);
    let bad =
        r#"{"rule": {"class_name": "Adam", "config": {"beta_3": 0.8}}, "learning_rate": 0.1}"#;
    assert!(matches!(
        OptimizerConfig::from_json(bad),
        Err(OptimError::Json(_))
    ));
}

#[test]
fn dynamic_loss_scale_skips_non_finite_steps_and_adapts_the_scale() {
    let mut opt = Optimizer::builder(Sgd::default())
        .learning_rate(0.5)
        .dynamic_loss_scale(8.0, 2)
        .build()
        .unwrap();
    assert_eq!(opt.scale_loss(1.5), 12.0);
    let mut w = vec![1.0_f32, 2.0];
    let step = |opt: &mut Optimizer, g: Vec<f32>, w: &mut Vec<f32>| {
        opt.apply_gradients([(g, NamedParam::new("w", w))]).unwrap()
    };
    // Finite: the update uses g / scale.
    step(&mut opt, vec![8.0, -16.0], &mut w);
    assert_eq!(w, vec![0.5, 3.0]);
    assert_eq!((opt.iterations(), opt.dynamic_scale()), (1, Some(8.0)));
    // Second good step in a row: the scale doubles after the update.
    step(&mut opt, vec![8.0, 8.0], &mut w);
    assert_eq!(w, vec![0.0, 2.5]);
    assert_eq!((opt.iterations(), opt.dynamic_scale()), (2, Some(16.0)));
    // Non-finite: skipped, scale halves, iterations do not move.
    step(&mut opt, vec![f32::INFINITY, 1.0], &mut w);
    step(&mut opt, vec![1.0, f32::NAN], &mut w);
    assert_eq!(w, vec![0.0, 2.5]);
    assert_eq!((opt.iterations(), opt.dynamic_scale()), (2, Some(4.0)));
    let names: Vec<String> = opt.variables().into_iter().map(|v| v.name).collect();
    assert_eq!(
        names,
        [
            "step_counter",
            "dynamic_scale",
            "iteration",
            "learning_rate"
        ]
    );

    // The wrapper function keeps the inner configuration.
    let inner = Optimizer::builder(Adam::default())
        .clipnorm(1.0)
        .build()
        .unwrap();
    let wrapped = gradus_optim::loss_scale_optimizer(&inner, 1024.0, 100).unwrap();
    assert_eq!(wrapped.dynamic_scale(), Some(1024.0));
    assert_eq!(wrapped.options(), inner.options());
}

#[test]
fn gradient_accumulation_applies_the_mean_every_n_steps() {
    let mut acc = Optimizer::builder(Sgd::default())
        .learning_rate(0.1)
        .gradient_accumulation_steps(3)
        .build()
        .unwrap();
    let mut plain = Optimizer::builder(Sgd::default())
        .learning_rate(0.1)
        .build()
        .unwrap();
    let (mut w, mut v) = (vec![1.0_f32], vec![1.0_f32]);
    for g in [1.0_f32, 2.0] {
        acc.apply_gradients([(vec![g], NamedParam::new("w", &mut w))])
            .unwrap();
        assert_eq!(w, vec![1.0], "micro-steps leave the parameter alone");
    }
    acc.apply_gradients([(vec![6.0_f32], NamedParam::new("w", &mut w))])
        .unwrap();
    plain
        .apply_gradients([(vec![3.0_f32], NamedParam::new("v", &mut v))])
        .unwrap();
    assert_eq!(w, v);
    assert_eq!(acc.iterations(), 1);
    assert_eq!(acc.variables()[0].values, vec![3.0]);
    assert_eq!(acc.variables()[2].values, vec![0.0], "accumulator reset");
}

#[test]
fn weight_decay_skips_excluded_names() {
    let mut opt = Optimizer::builder(Sgd::default())
        .learning_rate(0.1)
        .weight_decay(0.5)
        .exclude_from_weight_decay(["bias$"])
        .build()
        .unwrap();
    let mut model = Model {
        kernel: vec![1.0; 12],
        bias: vec![1.0; 4],
    };
    opt.apply_gradients([
        (
            vec![0.0_f32; 12],
            NamedParam::with_shape("dense/kernel", &KERNEL_SHAPE, &mut model.kernel).unwrap(),
        ),
        (
            vec![0.0_f32; 4],
            NamedParam::new("dense/bias", &mut model.bias),
        ),
    ])
    .unwrap();
    assert_eq!(model.kernel, vec![1.0 - 0.5 * 0.1; 12]);
    assert_eq!(model.bias, vec![1.0; 4]);
}

#[test]
fn ema_finalize_copies_the_averages() {
    let mut opt = Optimizer::builder(Sgd::default())
        .learning_rate(0.1)
        .ema(0.5)
        .build()
        .unwrap();
    let mut w = vec![1.0_f32];
    for _ in 0..2 {
        opt.apply_gradients([(vec![1.0_f32], NamedParam::new("w", &mut w))])
            .unwrap();
    }
    // avg = 0.9 after the first step (copied), then 0.5 * 0.9 + 0.5 * 0.8.
    assert!((w[0] - 0.8).abs() < 1e-6);
    let mut other = vec![0.0_f32];
    let err = opt
        .finalize_variable_values([
            NamedParam::new("w", &mut w),
            NamedParam::new("x", &mut other),
        ])
        .unwrap_err();
    assert!(
        matches!(err, OptimError::UnknownParameter { ref key, .. } if key == "x"),
        "{err}"
    );
    assert!((w[0] - 0.8).abs() < 1e-6, "nothing copied on error");
    opt.finalize_variable_values([NamedParam::new("w", &mut w)])
        .unwrap();
    assert!((w[0] - 0.85).abs() < 1e-6);
}

#[test]
fn parameters_may_come_in_any_order_and_subsets() {
    // State is found by key: reversing the order changes nothing.
    let mut a = Optimizer::from_name("adam").unwrap();
    let mut b = Optimizer::from_name("adam").unwrap();
    let (mut x1, mut y1) = (values(7, 1), values(9, 2));
    let (mut x2, mut y2) = (x1.clone(), y1.clone());
    // With a step-independent rule, stepping parameters separately equals stepping them together.
    let momentum = Sgd {
        momentum: 0.9,
        nesterov: false,
    };
    let mut c = Optimizer::builder(momentum.clone()).build().unwrap();
    let mut d = Optimizer::builder(momentum).build().unwrap();
    let (mut x3, mut y3) = (x1.clone(), y1.clone());
    let (mut x4, mut y4) = (x1.clone(), y1.clone());
    for s in 0..4 {
        let (gx, gy) = (values(7, 10 + s), values(9, 20 + s));
        a.apply_gradients([
            (&gx, NamedParam::new("x", &mut x1)),
            (&gy, NamedParam::new("y", &mut y1)),
        ])
        .unwrap();
        b.apply_gradients([
            (&gy, NamedParam::new("y", &mut y2)),
            (&gx, NamedParam::new("x", &mut x2)),
        ])
        .unwrap();
        c.apply_gradients([
            (&gx, NamedParam::new("x", &mut x3)),
            (&gy, NamedParam::new("y", &mut y3)),
        ])
        .unwrap();
        d.apply_gradients([(&gy, NamedParam::new("y", &mut y4))])
            .unwrap();
        d.apply_gradients([(&gx, NamedParam::new("x", &mut x4))])
            .unwrap();
    }
    assert_eq!((bits(&x1), bits(&y1)), (bits(&x2), bits(&y2)));
    assert_eq!((bits(&x3), bits(&y3)), (bits(&x4), bits(&y4)));
    assert_eq!((c.iterations(), d.iterations()), (4, 8));
}

#[test]
fn hash_map_adapter_pairs_by_key() {
    let mut params = HashMap::from([
        ("b".to_string(), vec![1.0_f32, 1.0]),
        ("a".to_string(), vec![2.0_f32]),
        ("frozen".to_string(), vec![5.0_f32]),
    ]);
    let grads = HashMap::from([
        ("a".to_string(), vec![1.0_f32]),
        ("b".to_string(), vec![1.0_f32, -1.0]),
    ]);
    let mut opt = Optimizer::builder(Sgd {
        momentum: 0.5,
        nesterov: false,
    })
    .build()
    .unwrap();
    opt.apply_gradients(map_pairs(&grads, &mut params).unwrap())
        .unwrap();
    assert_eq!(params["a"], vec![1.99]);
    assert_eq!(params["b"], vec![0.99, 1.01]);
    assert_eq!(params["frozen"], vec![5.0]);
    // Sorted keys give a deterministic state order.
    let names: Vec<String> = opt.variables().into_iter().map(|v| v.name).collect();
    assert_eq!(
        names,
        ["iteration", "learning_rate", "a_momentum", "b_momentum"]
    );
    let stray = HashMap::from([("c".to_string(), vec![1.0_f32])]);
    assert!(matches!(
        map_pairs(&stray, &mut params),
        Err(OptimError::UnknownParameter { .. })
    ));
}

#[test]
fn named_param_checks_its_shape() {
    let mut v = vec![0.0_f32; 6];
    assert_eq!(
        NamedParam::with_shape("w", &[2, 3], &mut v)
            .unwrap()
            .shape(),
        &[2, 3]
    );
    let err = NamedParam::with_shape("w", &[4, 2], &mut v).unwrap_err();
    assert_eq!(
        err,
        OptimError::ParamLength {
            key: "w".into(),
            shape: vec![4, 2],
            expected: 8,
            got: 6
        }
    );
    let mut slice = [1.0_f32, 2.0];
    let p = NamedParam::new(String::from("owned key"), &mut slice);
    assert_eq!(
        (p.key(), p.shape(), p.values()),
        ("owned key", &[2][..], &[1.0, 2.0][..])
    );
}

#[cfg(feature = "ndarray")]
#[test]
fn ndarray_adapter_updates_arrays_in_place() {
    use gradus_optim::array_gradient;
    use gradus_optim::rules::Adafactor;
    use ndarray::{Array2, array};

    let mut w = Array2::<f32>::ones((3, 4));
    let g = Array2::<f32>::from_elem((3, 4), 0.5);
    let mut opt = Optimizer::from_config(
        Optimizer::builder(Adafactor::default())
            .build()
            .unwrap()
            .config(),
    )
    .unwrap();
    opt.apply_gradients([(
        array_gradient("w", &g).unwrap(),
        NamedParam::from_array("w", &mut w).unwrap(),
    )])
    .unwrap();
    assert!(w.iter().all(|&x| x < 1.0));
    assert_eq!(
        opt.variables()[2].shape,
        vec![3],
        "factored rows of a 3x4 kernel"
    );

    let mut t = array![[1.0_f32, 2.0], [3.0, 4.0]].reversed_axes();
    assert!(NamedParam::from_array("t", &mut t).is_err());
    let t = array![[1.0_f32, 2.0], [3.0, 4.0]].reversed_axes();
    assert!(array_gradient("t", &t).is_err());
}

/// Naive per-element references at a size that exercises the vectorized loops (odd length).
#[test]
fn kernels_match_naive_references_at_vectorized_sizes() {
    let n = 1037;
    let x0 = values(n, 5);
    let grads: Vec<Vec<f32>> = (0..4).map(|s| values(n, 50 + s)).collect();

    // Adam, written out per element as in the Keras source.
    let (b1, b2, eps, lr) = (0.9_f32, 0.999_f32, 1e-7_f32, 0.01_f32);
    let (mut x, mut m, mut v) = (x0.clone(), vec![0.0_f32; n], vec![0.0_f32; n]);
    for (s, g) in grads.iter().enumerate() {
        let t = (s + 1) as f32;
        let alpha = lr * (1.0 - b2.powf(t)).sqrt() / (1.0 - b1.powf(t));
        for i in 0..n {
            m[i] += (g[i] - m[i]) * (1.0 - 0.9_f64) as f32;
            v[i] += (g[i] * g[i] - v[i]) * (1.0 - 0.999_f64) as f32;
            x[i] -= (m[i] * alpha) / (v[i].sqrt() + eps);
        }
    }
    let mut opt = Optimizer::builder(Adam::default())
        .learning_rate(lr)
        .build()
        .unwrap();
    let mut y = x0.clone();
    for g in &grads {
        opt.apply_gradients([(g, NamedParam::new("x", &mut y))])
            .unwrap();
    }
    assert_eq!(bits(&x), bits(&y));

    // Nesterov SGD with weight decay (the decay is fused into the same pass).
    let (mu, lr, wd) = (0.8_f32, 0.05_f32, 0.1_f32);
    let (mut x, mut m) = (x0.clone(), vec![0.0_f32; n]);
    for g in &grads {
        for i in 0..n {
            x[i] -= x[i] * wd * lr;
            m[i] = m[i] * mu - g[i] * lr;
            x[i] += m[i] * mu - g[i] * lr;
        }
    }
    let mut opt = Optimizer::builder(Sgd {
        momentum: 0.8,
        nesterov: true,
    })
    .learning_rate(lr)
    .weight_decay(0.1)
    .build()
    .unwrap();
    let mut y = x0;
    for g in &grads {
        opt.apply_gradients([(g, NamedParam::new("x", &mut y))])
            .unwrap();
    }
    assert_eq!(bits(&x), bits(&y));
}

#[test]
fn schedules_follow_their_formulas() {
    let p = PiecewiseConstantDecay::new(vec![2.0, 5.0], vec![0.1, 0.01, 0.001]).unwrap();
    use gradus_optim::LearningRateSchedule;
    let got: Vec<f32> = (0..8).map(|s| p.learning_rate(s)).collect();
    assert_eq!(got, [0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001]);
    let c = PolynomialDecay {
        cycle: true,
        ..PolynomialDecay::new(1.0, 4.0).unwrap()
    };
    // At step 0 the period is decay_steps; at step 5 it is 2 * decay_steps.
    assert_eq!(c.learning_rate(0), 1.0);
    let want = (1.0 - 1e-4) * (1.0 - 5.0 / 8.0) + 1e-4;
    assert!((c.learning_rate(5) - want).abs() < 1e-7);
    let closure = |s: u64| 1.0 / (s + 1) as f32;
    assert_eq!(closure.learning_rate(3), 0.25);
}

#[test]
fn optimizer_is_send_sync_and_clone() {
    fn assert_traits<T: Send + Sync + Clone + std::fmt::Debug>() {}
    assert_traits::<Optimizer>();
    assert_traits::<OptimizerConfig>();
}

#[test]
fn clipping_follows_keras() {
    let step = |opt: &mut Optimizer, g: Vec<f32>| {
        let mut w = vec![0.0_f32; g.len()];
        opt.apply_gradients([(g, NamedParam::new("w", &mut w))])
            .unwrap();
        w
    };
    let sgd = || Optimizer::builder(Sgd::default()).learning_rate(1.0);
    // clipnorm: g * c / max(||g||, c); ||(3, 4)|| = 5.
    let w = step(&mut sgd().clipnorm(1.0).build().unwrap(), vec![3.0, 4.0]);
    assert_eq!(w, vec![-3.0 * 1.0 / 5.0, -4.0 * 1.0 / 5.0]);
    // A threshold <= 0 is off, as in Keras.
    let w = step(&mut sgd().clipnorm(0.0).build().unwrap(), vec![3.0, 4.0]);
    assert_eq!(w, vec![-3.0, -4.0]);
    // clipvalue.
    let w = step(&mut sgd().clipvalue(0.5).build().unwrap(), vec![3.0, -0.25]);
    assert_eq!(w, vec![-0.5, 0.25]);
    // global_clipnorm: a non-finite global norm makes every gradient NaN.
    let w = step(
        &mut sgd().global_clipnorm(1.0).build().unwrap(),
        vec![f32::INFINITY, 1.0],
    );
    assert!(w.iter().all(|x| x.is_nan()));
    // loss_scale_factor divides first.
    let w = step(
        &mut sgd().loss_scale_factor(4.0).build().unwrap(),
        vec![2.0, -8.0],
    );
    assert_eq!(w, vec![-0.5, 2.0]);
}

#[test]
fn ema_overwrites_every_frequency_iterations() {
    let mut opt = Optimizer::builder(Sgd::default())
        .learning_rate(1.0)
        .ema(0.5)
        .ema_overwrite_frequency(2)
        .build()
        .unwrap();
    let mut w = vec![0.0_f32];
    let mut step = |w: &mut Vec<f32>| {
        opt.apply_gradients([(vec![-1.0_f32], NamedParam::new("w", w))])
            .unwrap()
    };
    step(&mut w); // w = 1, avg = 1 (copied on the first step)
    assert_eq!(w, vec![1.0]);
    step(&mut w); // w = 2, avg = 1.5, and (1 + 1) % 2 == 0: w = avg
    assert_eq!(w, vec![1.5]);
}
