//! The tape's contract: what unconnected variables get, repeated watches, seeding, persistence,
//! tapes mixed up, untracked values recording nothing, custom rules misbehaving, threads.

use gradus_autograd::{AutogradError, Tape, Var, Variable};
use gradus_tensor::{Tensor, TensorError};

fn t(values: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(values, shape).unwrap()
}

#[test]
fn unconnected_variables_get_zeros_or_none() {
    let used = Variable::new("used", t(&[1.0, 2.0], &[2]));
    let unused_watched = Variable::new("watched_but_unused", t(&[3.0], &[1]));
    let never_watched = Variable::new("never_watched", Tensor::ones(&[2, 2]));
    let frozen = Variable::non_trainable("bn/moving_mean", t(&[5.0, 6.0], &[2]));

    let tape = Tape::persistent();
    let u = tape.watch(&used);
    let _ = tape.watch(&unused_watched);
    let f = tape.watch(&frozen);
    assert!(
        !f.is_tracked(),
        "a non-trainable variable is never differentiated"
    );
    let loss = u.mul(&f).unwrap().sum_all();

    let all = [&used, &unused_watched, &never_watched, &frozen];
    let grads = tape.gradient(&loss, &all).unwrap();
    assert_eq!(grads[0].to_vec(), vec![5.0, 6.0]);
    assert_eq!(grads[1].shape(), &[1]);
    assert_eq!(grads[1].to_vec(), vec![0.0]);
    assert_eq!(grads[2].shape(), &[2, 2]);
    assert_eq!(grads[2].to_vec(), vec![0.0; 4]);
    assert_eq!(grads[3].to_vec(), vec![0.0, 0.0]);

    let opt = tape.gradient_opt(&loss, &all).unwrap();
    assert_eq!(opt[0].as_ref().unwrap().to_vec(), vec![5.0, 6.0]);
    assert!(opt[1].is_none() && opt[2].is_none() && opt[3].is_none());
}

#[test]
fn a_target_with_no_tracked_input_gives_zeros() {
    let v = Variable::new("v", Tensor::ones(&[3]));
    let tape = Tape::new();
    let loss = tape.constant(Tensor::ones(&[3])).sum_all();
    assert_eq!(
        tape.gradient(&loss, &[&v]).unwrap()[0].to_vec(),
        vec![0.0; 3]
    );
}

#[test]
fn a_variable_watched_twice_gets_the_sum() {
    let v = Variable::new("v", t(&[2.0, -1.0], &[2]));
    let tape = Tape::new();
    let a = tape.watch(&v);
    let b = tape.watch(&v);
    // loss = sum(a * b) + sum(3 a) = sum(v^2) + 3 sum(v): d/dv = 2 v + 3
    let loss = a
        .mul(&b)
        .unwrap()
        .add(&a.mul_scalar(3.0))
        .unwrap()
        .sum_all();
    assert_eq!(
        tape.gradient(&loss, &[&v]).unwrap()[0].to_vec(),
        vec![7.0, 1.0]
    );
}

#[test]
fn a_non_scalar_target_is_seeded_with_ones() {
    let v = Variable::new("v", t(&[1.0, 2.0, 3.0], &[3]));
    let tape = Tape::persistent();
    let y = tape.watch(&v).square(); // [3]
    let g = tape.gradient(&y, &[&v]).unwrap();
    let g_sum = tape.gradient(&y.sum_all(), &[&v]).unwrap();
    assert_eq!(g[0].to_vec(), vec![2.0, 4.0, 6.0]);
    assert_eq!(g, g_sum);
}

#[test]
fn a_non_persistent_tape_answers_once() {
    let v = Variable::new("v", t(&[1.0], &[1]));
    let tape = Tape::new();
    let loss = tape.watch(&v).exp().sum_all();
    assert!(tape.gradient(&loss, &[&v]).is_ok());
    assert_eq!(
        tape.gradient(&loss, &[&v]).unwrap_err(),
        AutogradError::TapeReleased
    );

    let tape = Tape::persistent();
    let loss = tape.watch(&v).exp().sum_all();
    let first = tape.gradient(&loss, &[&v]).unwrap();
    assert_eq!(tape.gradient(&loss, &[&v]).unwrap(), first);
    assert!(tape.is_persistent());
}

#[test]
fn the_tape_releases_saved_tensors_so_updates_do_not_copy() {
    let v = Variable::new("v", Tensor::ones(&[1000]));
    let ptr = v.with_values(|x| x.as_ptr());
    let tape = Tape::new();
    let w = tape.watch(&v);
    let loss = w.square().sum_all(); // square saves its input: a clone of v's buffer
    drop(w);
    let g = tape.gradient(&loss, &[&v]).unwrap();
    // the tape (still alive) has dropped its saved clone: updating in place needs no copy
    let after = v.update(|x| {
        x.iter_mut()
            .zip(g[0].to_vec())
            .for_each(|(x, g)| *x -= 0.1 * g);
        x.as_ptr()
    });
    assert_eq!(ptr, after);
    assert_eq!(v.value().to_vec()[0], 0.8);
    drop(loss);
}

#[test]
fn untracked_values_record_nothing() {
    let v = Variable::new("v", Tensor::ones(&[2, 2]));
    let x = Var::constant(Tensor::ones(&[3, 2]));
    let w = x.param(&v);
    assert!(w.tape().is_none() && !w.is_tracked());
    let y = x.matmul(&w).unwrap().relu().sum_all();
    assert!(!y.is_tracked() && y.tape().is_none());
    assert_eq!(y.item().unwrap(), 12.0);

    // constants on a tape carry the tape but record nothing either
    let tape = Tape::new();
    let c = tape.constant(Tensor::ones(&[3, 2]));
    let y = c.mul(&c).unwrap().exp().sum_all();
    assert!(tape.is_empty());
    assert!(std::ptr::eq(y.tape().unwrap(), &tape));
    // until a variable is lifted onto it
    let z = c.matmul(&c.param(&v)).unwrap();
    assert!(z.is_tracked());
    assert_eq!(tape.len(), 2); // the leaf and the matmul
}

#[test]
fn detach_stops_the_gradient() {
    let v = Variable::new("v", t(&[3.0], &[1]));
    let tape = Tape::new();
    let a = tape.watch(&v);
    let loss = a.mul(&a.detach()).unwrap().sum_all(); // d/dv (v * stop(v)) = v
    assert_eq!(tape.gradient(&loss, &[&v]).unwrap()[0].to_vec(), vec![3.0]);
}

#[test]
fn gradients_with_respect_to_inputs_and_intermediates() {
    let tape = Tape::new();
    let x = tape.watch_tensor(t(&[1.0, 2.0], &[2]));
    let h = x.square();
    let y = h.mul_scalar(3.0).sum_all();
    let unrelated = tape.watch_tensor(t(&[1.0], &[1]));
    let constant = tape.constant(t(&[1.0], &[1]));
    let g = tape
        .gradient_wrt(&y, &[&x, &h, &unrelated, &constant])
        .unwrap();
    assert_eq!(g[0].as_ref().unwrap().to_vec(), vec![6.0, 12.0]);
    assert_eq!(g[1].as_ref().unwrap().to_vec(), vec![3.0, 3.0]);
    assert!(g[2].is_none() && g[3].is_none());
}

#[test]
fn values_from_two_tapes_do_not_mix() {
    let v = Variable::new("v", Tensor::ones(&[2]));
    let (t1, t2) = (Tape::new(), Tape::new());
    let a = t1.watch(&v);
    let b = t2.watch(&v);
    assert_eq!(
        a.add(&b).unwrap_err(),
        AutogradError::ForeignTape { op: "add" }
    );
    assert_eq!(
        Var::concat(&[&a, &b], 0).unwrap_err(),
        AutogradError::ForeignTape { op: "concat" }
    );
    let loss = a.sum_all();
    assert_eq!(
        t2.gradient(&loss, &[&v]).unwrap_err(),
        AutogradError::ForeignTape { op: "gradient" }
    );
    assert!(matches!(
        t1.gradient_wrt(&loss, &[&b]),
        Err(AutogradError::ForeignTape { .. })
    ));
    // an untracked constant mixes with either
    assert!(
        a.add(&Var::constant(Tensor::ones(&[2])))
            .unwrap()
            .is_tracked()
    );
}

#[test]
fn shape_errors_surface_at_the_op_naming_the_shapes() {
    let tape = Tape::new();
    let a = tape.watch_tensor(Tensor::ones(&[2, 3]));
    let b = tape.constant(Tensor::ones(&[4]));
    let e = a.add(&b).unwrap_err();
    assert!(matches!(
        e,
        AutogradError::Tensor(TensorError::IncompatibleShapes { op: "add", .. })
    ));
    let msg = e.to_string();
    assert!(msg.contains("[2, 3]") && msg.contains("[4]"), "{msg}");
    let e = a.matmul(&tape.constant(Tensor::ones(&[2, 3]))).unwrap_err();
    assert!(e.to_string().contains("[2, 3]"), "{e}");
    let recorded = tape.len();
    assert!(a.reshape(&[7]).is_err());
    assert_eq!(tape.len(), recorded, "a failed op records nothing");
}

#[test]
fn loss_argument_errors() {
    let logits = Var::constant(Tensor::zeros(&[2, 3]));
    let e = logits
        .sparse_softmax_cross_entropy(&t(&[0.0, 3.0], &[2]))
        .unwrap_err();
    assert!(
        e.to_string().contains("0..3") && e.to_string().contains("position 1"),
        "{e}"
    );
    assert!(
        logits
            .sparse_softmax_cross_entropy(&t(&[0.5, 1.0], &[2]))
            .is_err()
    );
    let e = logits
        .sparse_softmax_cross_entropy(&t(&[0.0, 1.0, 2.0], &[3]))
        .unwrap_err();
    assert!(
        e.to_string().contains("[2]") && e.to_string().contains("[3]"),
        "{e}"
    );
    let e = logits
        .softmax_cross_entropy(&Tensor::zeros(&[2, 4]))
        .unwrap_err();
    assert!(
        e.to_string().contains("[2, 3]") && e.to_string().contains("[2, 4]"),
        "{e}"
    );
    let mut rng = gradus_tensor::Rng::seed_from_u64(0);
    for rate in [1.0, -0.1, f32::NAN] {
        assert!(logits.dropout(rate, true, &mut rng).is_err(), "rate {rate}");
    }
}

#[test]
fn sparse_and_dense_cross_entropy_agree_with_the_formula() {
    let z = t(&[1.0, 2.0, 0.5, -1.0, 0.0, 3.0], &[2, 3]);
    let tape = Tape::persistent();
    let logits = tape.watch_tensor(z.clone());
    let sparse = logits
        .sparse_softmax_cross_entropy(&t(&[1.0, 2.0], &[2]))
        .unwrap();
    let dense = logits
        .softmax_cross_entropy(&Tensor::one_hot(&[1, 2], 3).unwrap())
        .unwrap();
    // reference in f64: mean over rows of logsumexp(z) - z[label]
    let zs = z.to_vec();
    let row = |r: usize, k: usize| -> f64 {
        let row: Vec<f64> = zs[r * 3..r * 3 + 3].iter().map(|&v| f64::from(v)).collect();
        row.iter().map(|v| v.exp()).sum::<f64>().ln() - row[k]
    };
    let expected = (row(0, 1) + row(1, 2)) / 2.0;
    assert!((f64::from(sparse.item().unwrap()) - expected).abs() < 1e-6);
    assert!((f64::from(dense.item().unwrap()) - expected).abs() < 1e-6);
    let gs = tape.gradient_wrt(&sparse, &[&logits]).unwrap()[0]
        .clone()
        .unwrap();
    let gd = tape.gradient_wrt(&dense, &[&logits]).unwrap()[0]
        .clone()
        .unwrap();
    assert!(gs.allclose(&gd, 1e-6, 1e-7));
    // (softmax - onehot) / batch
    let p = z.softmax(-1).unwrap();
    let expected = p
        .sub(&Tensor::one_hot(&[1, 2], 3).unwrap())
        .unwrap()
        .div_scalar(2.0);
    assert!(gs.allclose(&expected, 1e-5, 1e-7));
}

#[test]
fn dropout_scales_survivors_and_is_identity_at_inference() {
    let x = Var::constant(Tensor::ones(&[10000]));
    let mut rng = gradus_tensor::Rng::seed_from_u64(1);
    let y = x
        .dropout(0.25, true, &mut rng)
        .unwrap()
        .into_value()
        .to_vec();
    let kept = y.iter().filter(|&&v| v != 0.0).count();
    assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
    assert!((kept as f64 / 1e4 - 0.75).abs() < 0.02, "kept {kept}");
    let z = x.dropout(0.25, false, &mut rng).unwrap();
    assert_eq!(z.value(), x.value());
}

#[test]
fn custom_rules_are_checked() {
    let tape = Tape::persistent();
    let x = tape.watch_tensor(Tensor::ones(&[2]));
    let too_many = Var::custom("too_many", &[&x], Tensor::ones(&[2]), |g, _| {
        Ok(vec![Some(g.clone()), None])
    })
    .unwrap();
    assert_eq!(
        tape.gradient_wrt(&too_many, &[&x]).unwrap_err(),
        AutogradError::GradientCount {
            op: "too_many",
            expected: 1,
            got: 2
        }
    );
    let bad_shape = Var::custom("bad_shape", &[&x], Tensor::ones(&[2]), |_, _| {
        Ok(vec![Some(Tensor::ones(&[3]))])
    })
    .unwrap();
    let e = tape.gradient_wrt(&bad_shape, &[&x]).unwrap_err();
    assert_eq!(
        e,
        AutogradError::GradientShape {
            op: "bad_shape",
            input: 0,
            expected: vec![2],
            got: vec![3]
        }
    );
    // a custom op on untracked inputs records nothing and never calls its rule
    let c = Var::constant(Tensor::ones(&[2]));
    let y = Var::custom(
        "never_called",
        &[&c],
        Tensor::ones(&[2]),
        |_, _| unreachable!(),
    )
    .unwrap();
    assert!(!y.is_tracked());
}

#[test]
fn rules_are_told_which_inputs_need_gradients() {
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let v = Variable::new("v", Tensor::ones(&[2]));
    let tape = Tape::new();
    let w = tape.watch(&v);
    let x = tape.constant(Tensor::ones(&[2]));
    let out = Var::custom("probe", &[&x, &w], Tensor::ones(&[2]), move |g, needs| {
        log.lock().unwrap().push(needs.to_vec());
        Ok(vec![None, Some(g.clone())])
    })
    .unwrap();
    let g = tape.gradient(&out.sum_all(), &[&v]).unwrap();
    assert_eq!(g[0].to_vec(), vec![1.0, 1.0]);
    assert_eq!(*seen.lock().unwrap(), vec![vec![false, true]]);
}

#[test]
fn two_tapes_in_two_threads_share_variables() {
    let v = Variable::new("v", t(&[1.0, 2.0, 3.0], &[3]));
    let results: Vec<Vec<f32>> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..=2)
            .map(|k| {
                let v = v.clone();
                s.spawn(move || {
                    let tape = Tape::new();
                    let loss = tape.watch(&v).mul_scalar(k as f32).square().sum_all();
                    tape.gradient(&loss, &[&v]).unwrap()[0].to_vec()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // d/dv (k v)^2 = 2 k^2 v
    assert_eq!(results[0], vec![2.0, 4.0, 6.0]);
    assert_eq!(results[1], vec![8.0, 16.0, 24.0]);
    fn send<T: Send>() {}
    send::<Tape>();
}

#[test]
fn gradients_come_back_contiguous() {
    let w = Variable::new("w", t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]));
    let tape = Tape::persistent();
    let c = tape.constant(t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]));
    let wt = tape.watch(&w).transpose().unwrap();
    let loss = wt.mul(&c).unwrap().sum_all();
    let g = &tape.gradient(&loss, &[&w]).unwrap()[0];
    assert!(g.as_slice().is_some());
    assert_eq!(g.to_vec(), vec![1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
    let g = tape.gradient_wrt(&loss, &[&wt]).unwrap()[0]
        .clone()
        .unwrap();
    assert!(g.as_slice().is_some());
}
