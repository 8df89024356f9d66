//! The public API: errors that name what was expected and what came, names, parameter counts as
//! Keras reports them, configurations, dropout state, BatchNormalization's moving statistics,
//! initial values and composition.

use gradus_autograd::{Tape, Var};
use gradus_layers::{
    Activation, ActivationLayer, AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout,
    Embedding, Flatten, Initializer, Input, L2, LSTM, Layer, LayerError, LayerExt, MaxPooling2D,
    Reshape, layer_from_config,
};
use gradus_tensor::{Rng, Tensor};

fn rng() -> Rng {
    Rng::seed_from_u64(0)
}

#[test]
fn parameter_counts_match_keras() {
    assert_eq!(Dense::new(3).built(&[4], 0).unwrap().count_params(), 15);
    assert_eq!(
        Conv2D::new(32, 3)
            .built(&[28, 28, 1], 0)
            .unwrap()
            .count_params(),
        320
    );
    assert_eq!(
        LSTM::new(64).built(&[28, 28], 0).unwrap().count_params(),
        23808
    );
    assert_eq!(
        Dense::new(128).built(&[784], 0).unwrap().count_params(),
        100_480
    );
    assert_eq!(
        Dense::new(3)
            .use_bias(false)
            .built(&[4], 0)
            .unwrap()
            .count_params(),
        12
    );
    let bn = BatchNormalization::new().built(&[10], 0).unwrap();
    assert_eq!((bn.count_params(), bn.count_trainable_params()), (40, 20));
    assert_eq!(bn.non_trainable_variables().len(), 2);
    assert_eq!(
        Embedding::new(1000, 64)
            .built(&[10], 0)
            .unwrap()
            .count_params(),
        64_000
    );
    assert_eq!(
        MaxPooling2D::new(2)
            .built(&[26, 26, 32], 0)
            .unwrap()
            .count_params(),
        0
    );
}

#[test]
fn variables_are_named_by_layer_and_role() {
    let names = |l: &dyn Layer| {
        l.variables()
            .iter()
            .map(|v| v.name().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&Dense::new(2).built(&[3], 0).unwrap()),
        ["dense/kernel", "dense/bias"]
    );
    assert_eq!(
        names(&LSTM::new(2).built(&[3, 4], 0).unwrap()),
        ["lstm/kernel", "lstm/recurrent_kernel", "lstm/bias"]
    );
    assert_eq!(
        names(&BatchNormalization::new().built(&[3], 0).unwrap()),
        [
            "batch_normalization/gamma",
            "batch_normalization/beta",
            "batch_normalization/moving_mean",
            "batch_normalization/moving_variance"
        ]
    );
    assert_eq!(
        names(&Embedding::new(5, 2).built(&[3], 0).unwrap()),
        ["embedding/embeddings"]
    );
    // A model makes names unique before build.
    let mut d = Dense::new(2);
    d.set_name("dense_1").unwrap();
    d.build(&[3], &mut rng()).unwrap();
    assert_eq!(names(&d), ["dense_1/kernel", "dense_1/bias"]);
    assert_eq!(d.name(), "dense_1");
    let e = d.set_name("dense_2").unwrap_err().to_string();
    assert!(e.contains("already built") && e.contains("dense_2"), "{e}");
    assert!(Dense::new(2).set_name("a/b").is_err());
    assert!(Dense::new(2).set_name("").is_err());
    let defaults: Vec<String> = [
        Box::new(Conv2D::new(1, 1)) as Box<dyn Layer>,
        Box::new(MaxPooling2D::new(2)),
        Box::new(AveragePooling2D::new(2)),
        Box::new(Flatten::new()),
        Box::new(Dropout::new(0.5)),
        Box::new(Reshape::new(&[-1])),
        Box::new(ActivationLayer::new("relu")),
        Box::new(Input::new(&[2])),
    ]
    .iter()
    .map(|l| l.name().to_string())
    .collect();
    assert_eq!(
        defaults,
        [
            "conv2d",
            "max_pooling2d",
            "average_pooling2d",
            "flatten",
            "dropout",
            "reshape",
            "activation",
            "input_layer"
        ]
    );
}

#[test]
fn dense_given_the_wrong_features_names_both_shapes() {
    let d = Dense::new(3).built(&[4], 0).unwrap();
    let e = d.predict(&Tensor::ones(&[2, 5])).unwrap_err();
    assert!(matches!(e, LayerError::InputShape { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("[batch, ..., 4]") && msg.contains("[2, 5]"),
        "{msg}"
    );
    assert!(d.output_shape(&[5]).is_err());
    assert!(d.predict(&Tensor::ones(&[4])).is_err()); // no batch axis
}

#[test]
fn calling_before_build_is_an_error() {
    let layers: Vec<Box<dyn Layer>> = vec![
        Box::new(Dense::new(3)),
        Box::new(Conv2D::new(2, 3)),
        Box::new(LSTM::new(2)),
        Box::new(MaxPooling2D::new(2)),
        Box::new(BatchNormalization::new()),
        Box::new(Embedding::new(3, 2)),
        Box::new(Dropout::new(0.1)),
        Box::new(Flatten::new()),
    ];
    for l in &layers {
        let e = l.predict(&Tensor::ones(&[1, 4, 4, 1])).unwrap_err();
        assert!(
            matches!(e, LayerError::NotBuilt { .. }),
            "{}: {e}",
            l.name()
        );
        assert!(e.to_string().contains(l.name()));
    }
    let reg = Dense::new(2).kernel_regularizer(L2::new(0.1));
    assert!(matches!(
        reg.regularization_loss(None),
        Err(LayerError::NotBuilt { .. })
    ));
    assert!(Dense::new(2).regularization_loss(None).unwrap().is_none());
}

#[test]
fn invalid_arguments_fail_at_build() {
    let build = |mut l: Box<dyn Layer>, shape: &[usize]| l.build(shape, &mut rng()).unwrap_err();
    let e = build(Box::new(Dense::new(0)), &[4]).to_string();
    assert!(e.contains("units") && e.contains("got 0"), "{e}");
    let e = build(Box::new(Dense::new(3).activation("relu6")), &[4]);
    assert!(
        matches!(
            &e,
            LayerError::UnknownName {
                kind: "activation",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("relu6") && e.to_string().contains("softmax"));
    let e = build(Box::new(Dense::new(3).kernel_initializer("glorot")), &[4]);
    assert!(
        matches!(
            &e,
            LayerError::UnknownName {
                kind: "initializer",
                ..
            }
        ),
        "{e}"
    );
    let e = build(Box::new(Dense::new(3).kernel_regularizer("l3")), &[4]);
    assert!(
        matches!(
            &e,
            LayerError::UnknownName {
                kind: "regularizer",
                ..
            }
        ),
        "{e}"
    );
    let e = build(
        Box::new(Dense::new(3).kernel_regularizer(L2::new(-1.0))),
        &[4],
    );
    assert!(e.to_string().contains("-1"), "{e}");
    for rate in [1.0, -0.1, 1.5, f32::NAN] {
        let e = build(Box::new(Dropout::new(rate)), &[4]).to_string();
        assert!(e.contains("[0, 1)"), "{e}");
    }
    let e = build(Box::new(Conv2D::new(2, 3).padding("full")), &[5, 5, 1]);
    assert!(
        matches!(
            &e,
            LayerError::UnknownName {
                kind: "padding",
                ..
            }
        ),
        "{e}"
    );
    let e = build(Box::new(Conv2D::new(2, 7)), &[5, 5, 1]).to_string();
    assert!(e.contains("[5, 5, 1]"), "{e}");
    let e = build(Box::new(Conv2D::new(0, 3)), &[5, 5, 1]).to_string();
    assert!(e.contains("filters"), "{e}");
    let e = build(Box::new(Conv2D::new(2, 3)), &[5, 5]).to_string();
    assert!(
        e.contains("[height, width, channels]") && e.contains("[5, 5]"),
        "{e}"
    );
    let e = build(Box::new(MaxPooling2D::new(0)), &[4, 4, 1]).to_string();
    assert!(e.contains("pool_size"), "{e}");
    let e = build(Box::new(LSTM::new(4).activation("softmax")), &[3, 2]).to_string();
    assert!(e.contains("softmax"), "{e}");
    let e = build(Box::new(LSTM::new(4)), &[3]).to_string();
    assert!(e.contains("[timesteps, features]"), "{e}");
    let e = build(Box::new(BatchNormalization::new().axis(3)), &[4, 2]).to_string();
    assert!(e.contains("axis 3"), "{e}");
    let e = build(Box::new(BatchNormalization::new().momentum(1.5)), &[4]).to_string();
    assert!(e.contains("1.5"), "{e}");
    let e = build(Box::new(Embedding::new(0, 4)), &[3]).to_string();
    assert!(e.contains("input_dim"), "{e}");
    let e = build(Box::new(Reshape::new(&[4, 4])), &[10]).to_string();
    assert!(e.contains("10 elements"), "{e}");
    assert!(Reshape::new(&[-1, -1]).built(&[4], 0).is_err());
    assert!(Input::new(&[3]).built(&[4], 0).is_err());
}

#[test]
fn call_shape_errors_name_the_shapes() {
    let conv = Conv2D::new(2, 3).built(&[6, 6, 3], 0).unwrap();
    let e = conv
        .predict(&Tensor::ones(&[1, 6, 6, 2]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("[batch, height, width, 3]") && e.contains("[1, 6, 6, 2]"),
        "{e}"
    );
    let lstm = LSTM::new(2).built(&[4, 3], 0).unwrap();
    let e = lstm
        .predict(&Tensor::ones(&[2, 3]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("[batch, timesteps >= 1, 3]"), "{e}");
    // Another sequence length is fine (Keras builds with timesteps None).
    assert_eq!(
        lstm.predict(&Tensor::ones(&[2, 7, 3])).unwrap().shape(),
        &[2, 2]
    );
    let emb = Embedding::new(4, 2).built(&[2], 0).unwrap();
    let e = emb
        .predict(&Tensor::from_vec(vec![0.0, 4.0], &[1, 2]).unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("got 4 at flat position 1"), "{e}");
    let e = emb
        .predict(&Tensor::from_vec(vec![0.5, 1.0], &[1, 2]).unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("0.5"), "{e}");
    let flat = Flatten::new().built(&[2, 3], 0).unwrap();
    assert!(flat.predict(&Tensor::ones(&[4, 3, 2])).is_err());
}

#[test]
fn set_weights_checks_count_and_shapes() {
    let d = Dense::new(2).built(&[3], 0).unwrap();
    let e = d.set_weights(&[Tensor::ones(&[3, 2])]).unwrap_err();
    assert!(
        matches!(
            e,
            LayerError::WeightCount {
                expected: 2,
                got: 1,
                ..
            }
        ),
        "{e}"
    );
    let e = d
        .set_weights(&[Tensor::ones(&[3, 2]), Tensor::ones(&[3])])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("dense/bias") && e.contains("[2]") && e.contains("[3]"),
        "{e}"
    );
    assert_eq!(d.get_weights()[0].shape(), &[3, 2]);
    d.set_weights(&[Tensor::ones(&[3, 2]), Tensor::ones(&[2])])
        .unwrap();
    assert_eq!(
        d.predict(&Tensor::ones(&[1, 3])).unwrap().to_vec(),
        vec![4.0, 4.0]
    );
}

#[test]
fn configs_round_trip_through_json() {
    let layers: Vec<Box<dyn Layer>> = vec![
        Box::new(
            Dense::new(3)
                .activation(Activation::LeakyRelu {
                    negative_slope: 0.1,
                })
                .kernel_initializer(Initializer::HeNormal)
                .bias_regularizer(L2::new(0.5))
                .with_name("d"),
        ),
        Box::new(
            Conv2D::new(4, (2, 3))
                .strides(2)
                .padding("same")
                .use_bias(false),
        ),
        Box::new(MaxPooling2D::new(3).strides(2).padding("same")),
        Box::new(AveragePooling2D::new((2, 1))),
        Box::new(
            LSTM::new(5)
                .return_sequences(true)
                .recurrent_regularizer("l1"),
        ),
        Box::new(BatchNormalization::new().momentum(0.9).center(false)),
        Box::new(Embedding::new(10, 3).embeddings_initializer("normal")),
        Box::new(Dropout::new(0.25).seed(7)),
        Box::new(Flatten::new()),
        Box::new(Reshape::new(&[2, -1])),
        Box::new(ActivationLayer::new("gelu")),
        Box::new(Input::new(&[4, 2])),
    ];
    for l in &layers {
        let json = serde_json::to_string(&l.config()).unwrap();
        let back = layer_from_config(&serde_json::from_str(&json).unwrap()).unwrap();
        assert_eq!(back.config(), l.config(), "{json}");
        assert_eq!(back.class_name(), l.class_name());
    }
    let cfg = layers[0].config_json();
    assert_eq!(cfg["config"]["activation"]["negative_slope"], 0.1);
    assert_eq!(cfg["config"]["bias_regularizer"]["class_name"], "L2");
    let e = layer_from_config(
        &serde_json::from_value(serde_json::json!({
            "class_name": "Dense", "config": {"units": "three"}
        }))
        .unwrap(),
    )
    .unwrap_err();
    assert!(matches!(e, LayerError::Config { .. }), "{e}");
    let e = layer_from_config(
        &serde_json::from_value(serde_json::json!({
            "class_name": "Conv3D", "config": {}
        }))
        .unwrap(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("Conv3D"));
}

#[test]
fn dropout_is_seeded_resumable_and_off_at_inference() {
    let x = Tensor::ones(&[4, 250]);
    let a = Dropout::new(0.3).seed(11).built(&[250], 0).unwrap();
    let b = Dropout::new(0.3).seed(11).built(&[250], 99).unwrap();
    let run = |d: &Dropout| {
        d.call(&Var::constant(x.clone()), true)
            .unwrap()
            .into_value()
    };
    let first = run(&a);
    assert_eq!(first, run(&b)); // the same seed gives the same masks
    let zeros = first.to_vec().iter().filter(|&&v| v == 0.0).count();
    assert!((200..400).contains(&zeros), "{zeros} of 1000 dropped");
    assert!(
        first
            .to_vec()
            .iter()
            .all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6)
    );
    // Save the state, draw, restore into another layer: the same next mask.
    let state = a.state().unwrap();
    let next = run(&a);
    assert_ne!(next, first);
    let c = Dropout::new(0.3).built(&[250], 5).unwrap();
    c.set_state(&state).unwrap();
    assert_eq!(run(&c), next);
    assert!(c.set_state(&serde_json::json!({"rng": "x"})).is_err());
    // Inference: identity, nothing drawn.
    let state = a.state();
    assert_eq!(a.predict(&x).unwrap(), x);
    assert_eq!(a.state(), state);
    // Without a seed, the stream comes from build's generator.
    let d1 = Dropout::new(0.5).built(&[250], 1).unwrap();
    let d2 = Dropout::new(0.5).built(&[250], 2).unwrap();
    assert_ne!(run(&d1), run(&d2));
}

#[test]
fn batch_normalization_moving_statistics() {
    let bn = BatchNormalization::new().built(&[2], 0).unwrap();
    let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 6.0], &[2, 2]).unwrap();
    bn.call(&Var::constant(x.clone()), true).unwrap();
    let (mm, mv) = bn.moving_statistics().unwrap();
    // mean (2, 4), biased variance (1, 4); moving = 0.99 moving + 0.01 batch.
    let close = |a: Vec<f32>, b: [f32; 2]| a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-6);
    assert!(close(mm.value().to_vec(), [0.02, 0.04]), "{:?}", mm.value());
    assert!(
        close(mv.value().to_vec(), [0.99 + 0.01, 0.99 + 0.04]),
        "{:?}",
        mv.value()
    );
    // Inference uses the moving statistics: (x - mm) / sqrt(mv + eps).
    let y = bn.predict(&x).unwrap().to_vec();
    let want = (1.0 - 0.02) / (1.0f32 + 1e-3).sqrt();
    assert!((y[0] - want).abs() < 1e-5);
    // Inference leaves them alone.
    assert!(close(mm.value().to_vec(), [0.02, 0.04]));
}

#[test]
fn lstm_initial_values_follow_keras() {
    let lstm = LSTM::new(4).built(&[3, 5], 1).unwrap();
    let v = lstm.variables();
    let bias = v[2].value().to_vec();
    assert_eq!(&bias[..4], &[0.0; 4]);
    assert_eq!(&bias[4..8], &[1.0; 4]); // unit forget bias
    assert_eq!(&bias[8..], &[0.0; 8]);
    // The recurrent kernel (4 x 16) has orthonormal rows.
    let r = v[1].value().to_vec();
    for i in 0..4 {
        for j in 0..4 {
            let dot: f32 = (0..16).map(|k| r[i * 16 + k] * r[j * 16 + k]).sum();
            assert!((dot - if i == j { 1.0 } else { 0.0 }).abs() < 1e-5);
        }
    }
    // glorot_uniform kernel within sqrt(6 / (5 + 16)).
    let limit = (6.0f32 / 21.0).sqrt();
    assert!(v[0].value().to_vec().iter().all(|w| w.abs() <= limit));
    let no_forget = LSTM::new(2)
        .unit_forget_bias(false)
        .built(&[3, 5], 1)
        .unwrap();
    assert_eq!(no_forget.variables()[2].value().to_vec(), vec![0.0; 8]);
}

#[test]
fn seeded_builds_repeat() {
    let a = Dense::new(4).built(&[3], 9).unwrap();
    let b = Dense::new(4).built(&[3], 9).unwrap();
    let c = Dense::new(4).built(&[3], 10).unwrap();
    assert_eq!(a.get_weights(), b.get_weights());
    assert_ne!(a.get_weights(), c.get_weights());
}

#[test]
fn layers_compose_into_a_trainable_stack() {
    let mut stack: Vec<Box<dyn Layer>> = vec![
        Box::new(Input::new(&[8, 8, 1])),
        Box::new(Conv2D::new(4, 3).activation("relu")),
        Box::new(MaxPooling2D::new(2)),
        Box::new(BatchNormalization::new()),
        Box::new(Flatten::new()),
        Box::new(Dropout::new(0.1)),
        Box::new(Dense::new(3).activation("softmax")),
    ];
    let mut shape = vec![8, 8, 1];
    let mut rng = rng();
    for l in &mut stack {
        l.build(&shape, &mut rng).unwrap();
        shape = l.output_shape(&shape).unwrap();
    }
    assert_eq!(shape, [3]);
    let x = Tensor::rand_uniform(&[5, 8, 8, 1], -1.0, 1.0, &mut rng);
    let tape = Tape::new();
    let mut h = tape.constant(x);
    for l in &stack {
        h = l.call(&h, true).unwrap();
    }
    let loss = h.select(1, &[0]).unwrap().ln().mean_all().neg();
    let vars: Vec<_> = stack.iter().flat_map(|l| l.trainable_variables()).collect();
    assert_eq!(vars.len(), 6); // conv kernel + bias, gamma, beta, dense kernel + bias
    let grads = tape
        .gradient(&loss, &vars.iter().collect::<Vec<_>>())
        .unwrap();
    for (v, g) in vars.iter().zip(&grads) {
        assert!(
            g.to_vec().iter().any(|&x| x != 0.0),
            "{} got no gradient",
            v.name()
        );
    }
    fn send_sync<T: Send + Sync>(_: &T) {}
    send_sync(&stack);
}

#[test]
fn shapes_whose_element_count_overflows_are_refused_not_wrapped() {
    let huge = 1usize << 40;
    let e = Reshape::new(&[1 << 40, 1 << 40])
        .built(&[4], 0)
        .unwrap_err();
    assert!(
        e.to_string().contains("[1099511627776, 1099511627776]"),
        "{e}"
    );
    let reshape = Reshape::new(&[-1]).built(&[4], 0).unwrap();
    assert!(reshape.output_shape(&[huge, huge]).is_err());
    let flatten = Flatten::new().built(&[4], 0).unwrap();
    let e = flatten.output_shape(&[huge, huge, huge]).unwrap_err();
    assert!(e.to_string().contains("usize::MAX"), "{e}");
    assert_eq!(flatten.output_shape(&[3, 5]).unwrap(), vec![15]);
}
