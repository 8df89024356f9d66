//! Property tests of NumPy broadcasting: the result shape, symmetry, agreement with a naive
//! element loop, the adjoint `sum_to_shape`, and errors (never panics) for incompatible shapes.

mod common;

use common::{get_broadcast, unravel};
use gradus_tensor::{Tensor, broadcast_shapes};
use proptest::prelude::*;

/// The broadcast shape by the textbook rule, or None when incompatible.
fn naive_broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let pad = |s: &[usize]| -> Vec<usize> {
        std::iter::repeat_n(1, n - s.len())
            .chain(s.iter().copied())
            .collect()
    };
    let (pa, pb) = (pad(a), pad(b));
    pa.iter()
        .zip(&pb)
        .map(|(&x, &y)| match (x, y) {
            _ if x == y => Some(x),
            (1, _) => Some(y),
            (_, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// Two shapes that broadcast together: derived from a common target shape by turning some
/// axes into 1 and dropping some leading axes.
fn compatible_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    prop::collection::vec(0usize..5, 0..5).prop_flat_map(|target| {
        let n = target.len();
        (
            Just(target),
            prop::collection::vec(any::<bool>(), n),
            prop::collection::vec(any::<bool>(), n),
            0..=n,
            0..=n,
        )
            .prop_map(|(t, ones_a, ones_b, drop_a, drop_b)| {
                let derive = |ones: &[bool], drop: usize| -> Vec<usize> {
                    t.iter()
                        .zip(ones)
                        .skip(drop)
                        .map(|(&d, &one)| if one { 1 } else { d })
                        .collect()
                };
                (derive(&ones_a, drop_a), derive(&ones_b, drop_b))
            })
    })
}

fn tensor_of(shape: &[usize], salt: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|i| ((i as f32 * 0.37 + salt).sin() * 3.0).round() / 2.0)
        .collect();
    Tensor::from_vec(v, shape).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn result_shape_is_the_naive_rule_and_symmetric(a in prop::collection::vec(0usize..4, 0..5),
                                                    b in prop::collection::vec(0usize..4, 0..5)) {
        let got = broadcast_shapes(&a, &b).ok();
        prop_assert_eq!(&got, &naive_broadcast(&a, &b));
        prop_assert_eq!(got, broadcast_shapes(&b, &a).ok());
    }

    #[test]
    fn incompatible_shapes_error_and_never_panic(a in prop::collection::vec(0usize..4, 0..5),
                                                 b in prop::collection::vec(0usize..4, 0..5)) {
        let (x, y) = (tensor_of(&a, 0.0), tensor_of(&b, 1.0));
        let ok = naive_broadcast(&a, &b).is_some();
        prop_assert_eq!(x.add(&y).is_ok(), ok);
        prop_assert_eq!(x.maximum(&y).is_ok(), ok);
        prop_assert_eq!(x.ge(&y).is_ok(), ok);
        if !ok {
            let msg = x.mul(&y).unwrap_err().to_string();
            prop_assert!(msg.contains(&format!("{a:?}")) && msg.contains(&format!("{b:?}")), "{}", msg);
        }
        // broadcast_to / sum_to_shape check their shapes too
        let to = x.broadcast_to(&b);
        prop_assert_eq!(to.is_ok(), naive_broadcast(&a, &b).as_deref() == Some(&b[..]));
        let back = x.sum_to_shape(&b);
        prop_assert_eq!(back.is_ok(), naive_broadcast(&b, &a).as_deref() == Some(&a[..]));
    }

    #[test]
    fn elementwise_ops_agree_with_a_naive_broadcast_loop((a, b) in compatible_pair(),
                                                         transpose in any::<bool>()) {
        let (x, y) = (tensor_of(&a, 0.0), tensor_of(&b, 1.0));
        // Optionally feed x as a non-contiguous view with the same logical values.
        let xv = if transpose && x.ndim() >= 2 {
            x.transpose().unwrap().to_contiguous().transpose().unwrap()
        } else {
            x.clone()
        };
        let out_shape = naive_broadcast(&a, &b).unwrap();
        let n: usize = out_shape.iter().product();
        let got_sub = xv.sub(&y).unwrap();
        let got_max = y.maximum(&xv).unwrap();
        prop_assert_eq!(got_sub.shape(), &out_shape[..]);
        let (sub, max) = (got_sub.to_vec(), got_max.to_vec());
        for i in 0..n {
            let idx = unravel(i, &out_shape);
            let (p, q) = (get_broadcast(&x, &idx), get_broadcast(&y, &idx));
            prop_assert_eq!(sub[i], p - q);
            prop_assert_eq!(max[i], p.max(q));
        }
    }

    #[test]
    fn broadcast_to_and_sum_to_shape_are_adjoint((a, b) in compatible_pair()) {
        let out_shape = naive_broadcast(&a, &b).unwrap();
        let x = tensor_of(&a, 0.5);
        let g = tensor_of(&out_shape, 2.0);
        let up = x.broadcast_to(&out_shape).unwrap();
        let down = g.sum_to_shape(&a).unwrap();
        prop_assert_eq!(down.shape(), &a[..]);
        // <broadcast(x), g> == <x, sum_to_shape(g)>
        let lhs: f64 = up.to_vec().iter().zip(g.to_vec()).map(|(&p, q)| p as f64 * q as f64).sum();
        let rhs: f64 = x.to_vec().iter().zip(down.to_vec()).map(|(&p, q)| p as f64 * q as f64).sum();
        prop_assert!((lhs - rhs).abs() < 1e-6 * (1.0 + lhs.abs()), "{} vs {}", lhs, rhs);
        // and the naive sum, element by element
        let mut want = vec![0.0f64; x.len()];
        for (i, &v) in g.to_vec().iter().enumerate() {
            let idx = unravel(i, &out_shape);
            let lead = out_shape.len() - a.len();
            let src: Vec<usize> = a.iter().enumerate().map(|(k, &d)| if d == 1 { 0 } else { idx[lead + k] }).collect();
            let flat = src.iter().zip(&a).fold(0, |acc, (&s, &d)| acc * d + s);
            want[flat] += v as f64;
        }
        for (got, w) in down.to_vec().iter().zip(&want) {
            prop_assert!((*got as f64 - w).abs() < 1e-4, "{} vs {}", got, w);
        }
    }
}

/// Shape-taking operations given arbitrary arguments: they answer Ok or Err, never panic, and
/// Ok only when the arguments are valid.
mod never_panic {
    use super::*;

    fn shape() -> impl Strategy<Value = Vec<usize>> {
        prop::collection::vec(0usize..4, 0..4)
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn axis_and_shape_arguments(s in shape(), axes in prop::collection::vec(-5isize..5, 0..4),
                                    target in prop::collection::vec(0usize..7, 0..4),
                                    perm in prop::collection::vec(0usize..4, 0..4),
                                    start in 0usize..5, end in 0usize..5) {
            let t = tensor_of(&s, 0.25);
            let rank = s.len() as isize;
            let axes_ok = axes.iter().all(|&a| (-rank..rank).contains(&a))
                && {
                    let mut n: Vec<isize> = axes.iter().map(|&a| a.rem_euclid(rank.max(1))).collect();
                    n.sort_unstable();
                    n.windows(2).all(|w| w[0] != w[1])
                };
            prop_assert_eq!(t.sum_axes(&axes, false).is_ok(), axes_ok);
            prop_assert_eq!(t.max_axes(&axes, true).is_ok(), axes_ok);
            let same_len = target.iter().product::<usize>() == t.len();
            prop_assert_eq!(t.reshape(&target).is_ok(), same_len);
            let mut sorted = perm.clone();
            sorted.sort_unstable();
            prop_assert_eq!(t.permute(&perm).is_ok(), sorted == (0..s.len()).collect::<Vec<_>>());
            if let Some(&a) = axes.first() {
                let axis_ok = (-rank..rank).contains(&a);
                let k = axis_ok.then(|| a.rem_euclid(rank) as usize);
                let len = k.map_or(0, |k| s[k]);
                let others: usize = s.iter().enumerate().filter(|&(i, _)| Some(i) != k).map(|(_, &d)| d).product();
                prop_assert_eq!(t.slice_axis(a, start, end).is_ok(), axis_ok && start <= end && end <= len);
                prop_assert_eq!(t.index_axis(a, start).is_ok(), axis_ok && start < len);
                prop_assert_eq!(t.softmax(a).is_ok(), axis_ok);
                // an empty axis has no index to return, unless there is no output at all
                prop_assert_eq!(t.argmax(a).is_ok(), axis_ok && (len > 0 || others == 0));
                prop_assert_eq!(t.expand_dims(a).is_ok(), (-rank - 1..=rank).contains(&a));
            }
        }

        #[test]
        fn matmul_and_joins(a in shape(), b in shape(), axis in -4isize..4) {
            let (x, y) = (tensor_of(&a, 0.0), tensor_of(&b, 1.0));
            // matmul: rank >= 1, inner lengths equal, batch axes broadcast
            let pa = if a.len() == 1 { vec![1, a[0]] } else { a.clone() };
            let pb = if b.len() == 1 { vec![b[0], 1] } else { b.clone() };
            let ok = !a.is_empty() && !b.is_empty()
                && pa[pa.len() - 1] == pb[pb.len() - 2]
                && naive_broadcast(&pa[..pa.len() - 2], &pb[..pb.len() - 2]).is_some();
            prop_assert_eq!(x.matmul(&y).is_ok(), ok);
            let rank = a.len() as isize;
            let axis_ok = (-rank..rank).contains(&axis);
            let concat_ok = axis_ok && a.len() == b.len() && {
                let k = axis.rem_euclid(rank.max(1)) as usize;
                a.iter().zip(&b).enumerate().all(|(i, (p, q))| i == k || p == q)
            };
            prop_assert_eq!(Tensor::concat(&[&x, &y], axis).is_ok(), concat_ok);
            let stack_ok = (-rank - 1..=rank).contains(&axis) && a == b;
            prop_assert_eq!(Tensor::stack(&[&x, &y], axis).is_ok(), stack_ok);
        }
    }
}
