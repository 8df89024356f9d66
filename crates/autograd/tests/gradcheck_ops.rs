//! Finite-difference checks of every differentiable operation, on random inputs and shapes that
//! include broadcasting. Inputs of operations with kinks (relu, abs, max, clip, pooling) are
//! sampled at least 0.1 away from them, ten steps of the checker's `h = 1e-2`.

use gradus_autograd::gradcheck::check_gradients;
use gradus_autograd::{Result, Var};
use gradus_tensor::{Padding, Rng, Tensor};

/// Uniform in `[lo, hi)`, seeded by the shape so that every call site gets its own values.
fn uniform(shape: &[usize], lo: f32, hi: f32, seed: u64) -> Tensor {
    Tensor::rand_uniform(shape, lo, hi, &mut Rng::seed_from_u64(seed))
}

/// Values in `[-1, 1]` at least 0.1 away from 0.
fn away_from_zero(shape: &[usize], seed: u64) -> Tensor {
    uniform(shape, -0.9, 0.9, seed).map(|x| if x < 0.0 { x - 0.1 } else { x + 0.1 })
}

/// Distinct values (no two within 0.1 of each other) in random order: no ties for max/min.
fn distinct(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let perm = Rng::seed_from_u64(seed).permutation(n);
    let v = perm
        .iter()
        .map(|&i| (i as f32 - n as f32 / 2.0) * 0.13)
        .collect();
    Tensor::from_vec(v, shape).unwrap()
}

#[track_caller]
fn check<F>(inputs: &[Tensor], f: F)
where
    F: for<'t> Fn(&[Var<'t>]) -> Result<Var<'t>>,
{
    let report = check_gradients(inputs, f).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(
        report.checked,
        inputs.iter().map(Tensor::len).sum::<usize>()
    );
}

/// Operand shape pairs covering equal shapes and every kind of broadcasting.
const BROADCAST_PAIRS: &[(&[usize], &[usize])] = &[
    (&[3, 4], &[3, 4]),
    (&[2, 3, 4], &[4]),
    (&[3, 1], &[1, 4]),
    (&[2, 1, 4], &[3, 1]),
    (&[], &[2, 3]),
    (&[2, 3], &[1]),
];

#[test]
fn add_sub_mul_with_broadcasting() {
    for (k, &(sa, sb)) in BROADCAST_PAIRS.iter().enumerate() {
        let (a, b) = (
            uniform(sa, -1.0, 1.0, k as u64),
            uniform(sb, -1.0, 1.0, 100 + k as u64),
        );
        let inputs = [a, b];
        check(&inputs, |v| v[0].add(&v[1]));
        check(&inputs, |v| v[0].sub(&v[1]));
        check(&inputs, |v| v[0].mul(&v[1]));
        check(&inputs, |v| v[1].sub(&v[0]));
    }
}

#[test]
fn div_with_broadcasting() {
    for (k, &(sa, sb)) in BROADCAST_PAIRS.iter().enumerate() {
        let a = uniform(sa, -1.0, 1.0, k as u64);
        let b = uniform(sb, 0.5, 2.0, 100 + k as u64);
        check(&[a, b], |v| v[0].div(&v[1]));
    }
}

#[test]
fn maximum_minimum_with_broadcasting() {
    for (k, &(sa, sb)) in BROADCAST_PAIRS.iter().enumerate() {
        // a on a grid of odd multiples of 0.05, b on even ones: never within 0.05 of each other
        let a = distinct(sa, k as u64).map(|x| (x / 0.1).round() * 0.1 + 0.05);
        let b = distinct(sb, 100 + k as u64).map(|x| (x / 0.1).round() * 0.1);
        let inputs = [a, b];
        check(&inputs, |v| v[0].maximum(&v[1]));
        check(&inputs, |v| v[0].minimum(&v[1]));
    }
}

#[test]
fn pow_with_broadcasting() {
    for (k, &(sa, sb)) in BROADCAST_PAIRS.iter().enumerate() {
        let a = uniform(sa, 0.5, 2.0, k as u64);
        let b = uniform(sb, -1.5, 2.5, 100 + k as u64);
        check(&[a, b], |v| v[0].pow(&v[1]));
    }
}

#[test]
fn scalar_ops() {
    let x = [uniform(&[3, 5], 0.5, 2.0, 1)];
    check(&x, |v| Ok(v[0].add_scalar(1.5)));
    check(&x, |v| Ok(v[0].sub_scalar(0.5)));
    check(&x, |v| Ok(v[0].rsub_scalar(2.0)));
    check(&x, |v| Ok(v[0].mul_scalar(-3.0)));
    check(&x, |v| Ok(v[0].div_scalar(4.0)));
    check(&x, |v| Ok(v[0].powf(2.5)));
    check(&x, |v| Ok(v[0].powf(-1.0)));
}

#[test]
fn smooth_unary_ops() {
    let x = [uniform(&[2, 3, 4], -2.0, 2.0, 2)];
    check(&x, |v| Ok(v[0].neg()));
    check(&x, |v| Ok(v[0].exp()));
    check(&x, |v| Ok(v[0].square()));
    check(&x, |v| Ok(v[0].tanh()));
    check(&x, |v| Ok(v[0].sigmoid()));
    check(&x, |v| Ok(v[0].softplus()));
    check(&x, |v| Ok(v[0].gelu(false)));
    check(&x, |v| Ok(v[0].gelu(true)));
    let pos = [uniform(&[2, 3, 4], 0.5, 3.0, 3)];
    check(&pos, |v| Ok(v[0].ln()));
    check(&pos, |v| Ok(v[0].log1p()));
    check(&pos, |v| Ok(v[0].sqrt()));
    check(&pos, |v| Ok(v[0].rsqrt()));
    check(&pos, |v| Ok(v[0].recip()));
}

#[test]
fn unary_ops_with_kinks() {
    let x = [away_from_zero(&[4, 5], 4).mul_scalar(2.0)];
    check(&x, |v| Ok(v[0].abs()));
    check(&x, |v| Ok(v[0].relu()));
    check(&x, |v| Ok(v[0].elu(1.0)));
    check(&x, |v| Ok(v[0].elu(0.3)));
    check(&x, |v| Ok(v[0].leaky_relu(0.2)));
    // clip at (-0.5, 0.5): keep the inputs away from both thresholds
    let c = [x[0].map(|x| {
        if (x.abs() - 0.5).abs() < 0.1 {
            x * 1.5
        } else {
            x
        }
    })];
    check(&c, |v| Ok(v[0].clip(-0.5, 0.5)));
}

#[test]
fn full_reductions() {
    let x = [uniform(&[3, 4], -1.0, 1.0, 5)];
    check(&x, |v| Ok(v[0].sum_all()));
    check(&x, |v| Ok(v[0].mean_all()));
    let d = [distinct(&[3, 4], 6)];
    check(&d, |v| Ok(v[0].max_all()));
    check(&d, |v| Ok(v[0].min_all()));
}

#[test]
fn axis_reductions() {
    let x = [uniform(&[2, 3, 4], -1.0, 1.0, 7)];
    let d = [distinct(&[2, 3, 4], 8)];
    let axes_cases: &[&[isize]] = &[&[0], &[1], &[-1], &[0, 2], &[0, 1, 2]];
    for &axes in axes_cases {
        for keepdims in [false, true] {
            check(&x, |v| v[0].sum_axes(axes, keepdims));
            check(&x, |v| v[0].mean_axes(axes, keepdims));
            check(&d, |v| v[0].max_axes(axes, keepdims));
            check(&d, |v| v[0].min_axes(axes, keepdims));
        }
    }
    check(&x, |v| v[0].sum_axis(1, false));
    check(&x, |v| v[0].mean_axis(-1, true));
    check(&d, |v| v[0].max_axis(0, false));
    check(&d, |v| v[0].min_axis(2, true));
    check(&x, |v| v[0].logsumexp(-1, false));
    check(&x, |v| v[0].logsumexp(1, true));
}

#[test]
fn max_reduction_splits_ties_evenly() {
    // Not a finite-difference case (a tie is a kink): TensorFlow's rule shares the gradient.
    let tape = gradus_autograd::Tape::new();
    let x = tape.watch_tensor(Tensor::from_vec(vec![1.0, 3.0, 3.0, 0.0], &[4]).unwrap());
    let y = x.max_all();
    let g = tape.gradient_wrt(&y, &[&x]).unwrap();
    assert_eq!(g[0].as_ref().unwrap().to_vec(), vec![0.0, 0.5, 0.5, 0.0]);
}

#[test]
fn shape_ops() {
    let x = [uniform(&[2, 3, 4], -1.0, 1.0, 9)];
    check(&x, |v| v[0].reshape(&[6, 4]));
    check(&x, |v| v[0].reshape_infer(&[4, -1]));
    check(&x, |v| v[0].permute(&[2, 0, 1]));
    check(&x, |v| v[0].transpose());
    check(&x, |v| v[0].expand_dims(1));
    check(&x, |v| v[0].expand_dims(-1)?.squeeze_axis(-1));
    check(&x, |v| v[0].slice_axis(1, 1, 3));
    check(&x, |v| v[0].slice_axis(-1, 0, 1));
    check(&x, |v| v[0].index_axis(2, 3));
    check(&x, |v| v[0].gather_rows(&[1, 0, 1]));
    check(&x, |v| v[0].select(1, &[2, 0, 2, 2]));
    check(&x, |v| v[0].select(-1, &[3, 1]));
    // a permuted (strided) view feeding further ops
    check(&x, |v| {
        v[0].permute(&[1, 0, 2])?.mul(&v[0].permute(&[1, 0, 2])?)
    });
    let b = [uniform(&[3, 1], -1.0, 1.0, 10)];
    check(&b, |v| v[0].broadcast_to(&[2, 3, 4]));
}

#[test]
fn concat_and_stack() {
    let inputs = [
        uniform(&[2, 3], -1.0, 1.0, 11),
        uniform(&[2, 1], -1.0, 1.0, 12),
        uniform(&[2, 4], -1.0, 1.0, 13),
    ];
    check(&inputs, |v| Var::concat(&[&v[0], &v[1], &v[2]], 1));
    check(&inputs, |v| Var::concat(&[&v[2], &v[0], &v[2]], -1));
    let same = [
        uniform(&[2, 3], -1.0, 1.0, 14),
        uniform(&[2, 3], -1.0, 1.0, 15),
    ];
    check(&same, |v| Var::concat(&[&v[0], &v[1]], 0));
    for axis in [0, 1, 2, -1] {
        check(&same, |v| Var::stack(&[&v[0], &v[1], &v[0]], axis));
    }
}

#[test]
fn matmul_all_rank_combinations() {
    let cases: &[(&[usize], &[usize])] = &[
        (&[3, 4], &[4, 5]),
        (&[2, 3, 4], &[2, 4, 5]),
        (&[1, 3, 4], &[2, 4, 5]),
        (&[2, 3, 4], &[1, 4, 5]),
        (&[2, 3, 4], &[4, 5]),
        (&[4], &[4, 5]),
        (&[3, 4], &[4]),
        (&[1, 1], &[1, 1]),
    ];
    for (k, &(sa, sb)) in cases.iter().enumerate() {
        let a = uniform(sa, -1.0, 1.0, 20 + k as u64);
        let b = uniform(sb, -1.0, 1.0, 40 + k as u64);
        check(&[a, b], |v| v[0].matmul(&v[1]));
    }
    // transposed operands (strided views)
    let a = uniform(&[4, 3], -1.0, 1.0, 60);
    let b = uniform(&[5, 4], -1.0, 1.0, 61);
    check(&[a, b], |v| v[0].transpose()?.matmul(&v[1].transpose()?));
}

#[test]
fn softmax_family() {
    let x = [uniform(&[3, 5], -2.0, 2.0, 70)];
    for axis in [0, 1, -1] {
        check(&x, |v| v[0].softmax(axis));
        check(&x, |v| v[0].log_softmax(axis));
    }
}

#[test]
fn softmax_cross_entropies() {
    let logits = uniform(&[4, 3], -2.0, 2.0, 71);
    let onehot = Tensor::one_hot(&[0, 2, 1, 2], 3).unwrap();
    let soft = uniform(&[4, 3], 0.1, 1.0, 72);
    let soft = soft.div(&soft.sum_axis(-1, true).unwrap()).unwrap();
    let ids = Tensor::from_vec(vec![0.0, 2.0, 1.0, 2.0], &[4]).unwrap();
    let ids_col = ids.reshape(&[4, 1]).unwrap();
    let x = [logits];
    for labels in [&onehot, &soft] {
        check(&x, |v| v[0].softmax_cross_entropy(labels));
        check(&x, |v| v[0].softmax_cross_entropy_per_example(labels));
    }
    check(&x, |v| v[0].sparse_softmax_cross_entropy(&ids));
    check(&x, |v| v[0].sparse_softmax_cross_entropy(&ids_col));
    check(&x, |v| v[0].sparse_softmax_cross_entropy_per_example(&ids));
    // rank 3: classes last, every other axis is a batch axis
    let x3 = [uniform(&[2, 3, 4], -2.0, 2.0, 73)];
    let ids3 = Tensor::from_vec(vec![0.0, 3.0, 1.0, 2.0, 2.0, 0.0], &[2, 3]).unwrap();
    check(&x3, |v| v[0].sparse_softmax_cross_entropy(&ids3));
}

#[test]
fn dropout_with_a_fixed_mask() {
    let x = [uniform(&[4, 6], -1.0, 1.0, 80)];
    // the same seed in every evaluation gives the same mask, so the function is deterministic
    check(&x, |v| v[0].dropout(0.4, true, &mut Rng::seed_from_u64(5)));
    check(&x, |v| v[0].dropout(0.4, false, &mut Rng::seed_from_u64(5)));
}

/// Input shape, kernel shape, strides, padding.
type ConvCase = (&'static [usize], &'static [usize], (usize, usize), Padding);
/// Input shape, pool, strides, padding.
type PoolCase = (&'static [usize], (usize, usize), (usize, usize), Padding);

#[test]
fn conv2d_geometries() {
    let cases: &[ConvCase] = &[
        (&[2, 5, 5, 2], &[3, 3, 2, 3], (1, 1), Padding::Valid),
        (&[1, 5, 6, 2], &[3, 2, 2, 2], (1, 1), Padding::Same),
        (&[2, 6, 5, 1], &[2, 3, 1, 2], (2, 2), Padding::Same),
        (&[1, 7, 7, 3], &[3, 3, 3, 2], (2, 1), Padding::Valid),
    ];
    for (k, &(xs, ks, strides, padding)) in cases.iter().enumerate() {
        let x = uniform(xs, -1.0, 1.0, 90 + k as u64);
        let w = uniform(ks, -1.0, 1.0, 95 + k as u64);
        check(&[x, w], |v| v[0].conv2d(&v[1], strides, padding));
    }
}

#[test]
fn pooling() {
    let cases: &[PoolCase] = &[
        (&[2, 4, 4, 2], (2, 2), (2, 2), Padding::Valid),
        (&[1, 5, 5, 1], (3, 3), (2, 2), Padding::Same),
        (&[1, 5, 4, 2], (2, 3), (1, 1), Padding::Valid),
        (&[1, 3, 5, 1], (2, 2), (2, 2), Padding::Same),
    ];
    for (k, &(xs, pool, strides, padding)) in cases.iter().enumerate() {
        let x = [distinct(xs, 100 + k as u64)];
        check(&x, |v| v[0].max_pool2d(pool, strides, padding));
        check(&x, |v| v[0].avg_pool2d(pool, strides, padding));
    }
}

#[test]
fn composite_expression() {
    // A chain mixing broadcasting, reductions and activations, as a layer plus loss would.
    let inputs = [
        uniform(&[4, 3], -1.0, 1.0, 110),
        uniform(&[3, 2], -1.0, 1.0, 111),
        uniform(&[2], -1.0, 1.0, 112),
    ];
    check(&inputs, |v| {
        let h = v[0].matmul(&v[1])?.add(&v[2])?.tanh();
        let s = h.softmax(-1)?.mul(&h)?.sum_axis(0, false)?;
        Ok(s.square().mean_all())
    });
}

#[test]
fn the_checker_catches_a_wrong_rule() {
    // cube with a rule off by a factor 2 on one element: the checker must flag exactly it
    let x = [uniform(&[3], 0.5, 1.5, 120)];
    let report = check_gradients(&x, |v| {
        let out = v[0].value().map(|x| x * x * x);
        let saved = v[0].value().clone();
        Var::custom("bad_cube", &[&v[0]], out, move |g, _| {
            let mut d = saved.map(|x| 3.0 * x * x).mul(g)?;
            d.as_slice_mut()[1] *= 2.0;
            Ok(vec![Some(d)])
        })
    })
    .unwrap();
    assert_eq!(report.mismatches.len(), 1, "{report}");
    assert_eq!(report.mismatches[0].index, 1);
    let m = &report.mismatches[0];
    assert!((m.analytic / m.numeric - 2.0).abs() < 1e-2, "{report}");
}
