//! Shape operations and matrix products against naive references, on odd sizes and strided views.

mod common;

use common::{assert_close, dot, layouts, naive_matmul, rand, unravel};
use gradus_tensor::{Tensor, gemm};

#[test]
fn permute_matches_index_mapping_and_is_a_view() {
    let x = rand(&[3, 17, 5], 1);
    let perm = [2, 0, 1];
    let p = x.permute(&perm).unwrap();
    assert_eq!(p.shape(), &[5, 3, 17]);
    assert!(!p.is_contiguous(), "permute must not copy");
    for flat in 0..p.len() {
        let idx = unravel(flat, p.shape());
        let mut src = [0; 3];
        for (i, &a) in perm.iter().enumerate() {
            src[a] = idx[i];
        }
        assert_eq!(p.get(&idx).unwrap(), x.get(&src).unwrap());
    }
    // reshape of a non-contiguous view reads it in row-major order
    assert_eq!(p.reshape(&[15, 17]).unwrap().to_vec(), p.to_vec());
}

#[test]
fn slices_indexing_and_squeezes_agree_with_get() {
    let x = rand(&[4, 17, 3], 2);
    let s = x.slice_axis(1, 5, 16).unwrap();
    let i = x.index_axis(-1, 2).unwrap();
    for a in 0..4 {
        for b in 0..11 {
            for c in 0..3 {
                assert_eq!(s.get(&[a, b, c]).unwrap(), x.get(&[a, b + 5, c]).unwrap());
            }
        }
        for b in 0..17 {
            assert_eq!(i.get(&[a, b]).unwrap(), x.get(&[a, b, 2]).unwrap());
        }
    }
    assert_eq!(x.slice_axis(0, 2, 2).unwrap().shape(), &[0, 17, 3]);
    let e = x.expand_dims(1).unwrap();
    assert_eq!(e.shape(), &[4, 1, 17, 3]);
    assert_eq!(e.squeeze_axis(-3).unwrap(), x);
}

#[test]
fn concat_and_stack_match_naive() {
    let a = rand(&[2, 17], 3);
    let b = padded_rows(&rand(&[5, 17], 4));
    let c = Tensor::concat(&[&a, &b], 0).unwrap();
    assert_eq!(c.to_vec(), [a.to_vec(), b.to_vec()].concat());
    let d = Tensor::concat(&[&a.transpose().unwrap(), &b.transpose().unwrap()], 1).unwrap();
    assert_eq!(d, c.transpose().unwrap().to_contiguous());
    let s = Tensor::stack(&[&a, &a.neg(), &a.square()], 1).unwrap();
    assert_eq!(s.shape(), &[2, 3, 17]);
    for r in 0..2 {
        for j in 0..17 {
            let v = a.get(&[r, j]).unwrap();
            assert_eq!(s.get(&[r, 0, j]).unwrap(), v);
            assert_eq!(s.get(&[r, 1, j]).unwrap(), -v);
            assert_eq!(s.get(&[r, 2, j]).unwrap(), v * v);
        }
    }
    assert_eq!(Tensor::stack(&[&a, &a], -1).unwrap().shape(), &[2, 17, 2]);
}

fn padded_rows(t: &Tensor) -> Tensor {
    common::padded_view(t)
}

#[test]
fn select_gather_and_scatter_are_adjoint() {
    let x = rand(&[17, 3, 2], 5);
    let idx = [16, 0, 3, 3, 9];
    for (layout, v) in layouts(&x) {
        let g = v.gather_rows(&idx).unwrap();
        assert_eq!(g.shape(), &[5, 3, 2]);
        for (k, &i) in idx.iter().enumerate() {
            assert_eq!(
                g.index_axis(0, k).unwrap(),
                x.index_axis(0, i).unwrap().to_contiguous(),
                "{layout}"
            );
        }
        let s1 = v.select(1, &[2, 0]).unwrap();
        assert_eq!(
            s1.index_axis(1, 0).unwrap().to_vec(),
            x.index_axis(1, 2).unwrap().to_vec()
        );
    }
    // <gather(x), y> == <x, scatter(y)>
    let y = rand(&[5, 3, 2], 6);
    let lhs = dot(&x.gather_rows(&idx).unwrap(), &y);
    let rhs = dot(&x, &y.scatter_add_rows(&idx, 17).unwrap());
    assert!((lhs - rhs).abs() < 1e-9, "{lhs} vs {rhs}");
}

#[test]
fn one_hot_matches_naive() {
    let ids = [0usize, 4, 2, 4];
    let y = Tensor::one_hot(&ids, 5).unwrap();
    for (r, &i) in ids.iter().enumerate() {
        for j in 0..5 {
            assert_eq!(y.get(&[r, j]).unwrap(), if i == j { 1.0 } else { 0.0 });
        }
    }
    let t = Tensor::from_vec(ids.iter().map(|&i| i as f32).collect(), &[2, 2]).unwrap();
    assert_eq!(
        Tensor::one_hot_tensor(&t, 5)
            .unwrap()
            .reshape(&[4, 5])
            .unwrap(),
        y
    );
}

/// Every matrix `[r, c]` in the layouts a backward pass produces: contiguous, transposed view,
/// permuted from a 3-D tensor, and a row-sliced view of a wider buffer.
fn matrix_layouts(m: &Tensor) -> Vec<(&'static str, Tensor)> {
    let mut out = layouts(m);
    let (r, c) = (m.shape()[0], m.shape()[1]);
    let t = m
        .to_contiguous()
        .reshape(&[1, r, c])
        .unwrap()
        .permute(&[0, 2, 1])
        .unwrap();
    let via_permute = t
        .to_contiguous()
        .permute(&[0, 2, 1])
        .unwrap()
        .index_axis(0, 0)
        .unwrap();
    assert_eq!(via_permute.to_vec(), m.to_vec());
    out.push(("permuted", via_permute));
    out
}

#[test]
fn matmul_matches_naive_for_odd_sizes_and_strided_operands() {
    let sizes = [1usize, 17, 257];
    let mut seed = 0;
    for &m in &sizes {
        for &k in &sizes {
            for &n in &[1usize, 17, 33] {
                seed += 1;
                let a = rand(&[m, k], seed);
                let b = rand(&[k, n], seed + 1000);
                let want = naive_matmul(&a, &b).to_vec();
                for (la, va) in matrix_layouts(&a) {
                    for (lb, vb) in matrix_layouts(&b) {
                        let got = va.matmul(&vb).unwrap();
                        assert_eq!(got.shape(), &[m, n]);
                        let what = format!("{m}x{k} ({la}) @ {k}x{n} ({lb})");
                        assert_close(&got.to_vec(), &want, 1e-4, 1e-4, &what);
                    }
                }
            }
        }
    }
}

#[test]
fn matmul_transposed_flags_and_dense_backward_shapes() {
    let x = rand(&[32, 17], 1);
    let w = rand(&[17, 9], 2);
    let dy = rand(&[32, 9], 3);
    // forward, dx = dy w^T, dw = x^T dy
    let dx = dy.matmul_t(&w, false, true).unwrap();
    let dw = x.matmul_t(&dy, true, false).unwrap();
    let want_dx = naive_matmul(&dy, &w.transpose().unwrap().to_contiguous());
    let want_dw = naive_matmul(&x.transpose().unwrap().to_contiguous(), &dy);
    assert_close(&dx.to_vec(), &want_dx.to_vec(), 1e-5, 1e-5, "dx");
    assert_close(&dw.to_vec(), &want_dw.to_vec(), 1e-5, 1e-5, "dw");
    let both = w.matmul_t(&x, true, true).unwrap();
    let want_both = naive_matmul(
        &w.transpose().unwrap().to_contiguous(),
        &x.transpose().unwrap().to_contiguous(),
    );
    assert_eq!(both.shape(), &[9, 32]);
    assert_close(&both.to_vec(), &want_both.to_vec(), 1e-5, 1e-5, "w^T x^T");
    assert!(Tensor::ones(&[3]).matmul_t(&w, true, false).is_err());
}

#[test]
fn batched_matmul_matches_per_batch_products() {
    let a = rand(&[4, 17, 5], 1);
    let b3 = rand(&[4, 5, 3], 2);
    let b1 = rand(&[1, 5, 3], 3);
    let b2 = rand(&[5, 3], 4);
    for (name, b, pick) in [
        ("same batch", &b3, (|i| i) as fn(usize) -> usize),
        ("batch 1", &b1, |_| 0),
        ("2-D rhs", &b2, |_| 0),
    ] {
        // a as a permuted view: [4, 5, 17] stored, seen as [4, 17, 5]
        let a_view = a
            .permute(&[0, 2, 1])
            .unwrap()
            .to_contiguous()
            .permute(&[0, 2, 1])
            .unwrap();
        for (la, av) in [("contiguous", a.clone()), ("permuted", a_view)] {
            let got = av.matmul(b).unwrap();
            assert_eq!(got.shape(), &[4, 17, 3], "{name}");
            for i in 0..4 {
                let bi = if b.ndim() == 2 {
                    b.clone()
                } else {
                    b.index_axis(0, pick(i)).unwrap()
                };
                let want = naive_matmul(&a.index_axis(0, i).unwrap(), &bi);
                let what = format!("{name} {la} batch {i}");
                assert_close(
                    &got.index_axis(0, i).unwrap().to_vec(),
                    &want.to_vec(),
                    1e-5,
                    1e-5,
                    &what,
                );
            }
        }
    }
    // broadcasting batch axes both ways, and a 2-D lhs against a batch
    let l = rand(&[2, 1, 3, 4], 5);
    let r = rand(&[5, 4, 2], 6);
    let out = l.matmul(&r).unwrap();
    assert_eq!(out.shape(), &[2, 5, 3, 2]);
    let want = naive_matmul(
        &l.index_axis(0, 1).unwrap().index_axis(0, 0).unwrap(),
        &r.index_axis(0, 3).unwrap(),
    );
    assert_close(
        &out.index_axis(0, 1)
            .unwrap()
            .index_axis(0, 3)
            .unwrap()
            .to_vec(),
        &want.to_vec(),
        1e-5,
        1e-5,
        "4-D",
    );
    let m2 = rand(&[3, 4], 7);
    assert_eq!(m2.matmul(&r).unwrap().shape(), &[5, 3, 2]);
}

#[test]
fn matmul_errors_and_zero_sizes() {
    for (a, b) in [
        (vec![3, 4], vec![5, 2]),
        (vec![2, 3, 4], vec![3, 4, 1]),
        (vec![4], vec![5]),
    ] {
        let e = Tensor::zeros(&a)
            .matmul(&Tensor::zeros(&b))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("{a:?}")) && e.contains(&format!("{b:?}")),
            "{e}"
        );
    }
    assert_eq!(
        Tensor::zeros(&[3, 0])
            .matmul(&Tensor::zeros(&[0, 2]))
            .unwrap(),
        Tensor::zeros(&[3, 2])
    );
    assert_eq!(
        Tensor::zeros(&[0, 5, 2])
            .matmul(&Tensor::zeros(&[2, 7]))
            .unwrap()
            .shape(),
        &[0, 5, 7]
    );
    assert_eq!(
        Tensor::zeros(&[3, 2])
            .matmul(&Tensor::zeros(&[2, 0]))
            .unwrap()
            .shape(),
        &[3, 0]
    );
}

#[test]
fn gemm_computes_alpha_ab_plus_beta_c_in_place_on_strided_operands() {
    let a = rand(&[17, 33], 1);
    let b = rand(&[33, 9], 2);
    let c0 = rand(&[17, 9], 3);
    let ab = naive_matmul(&a, &b).to_vec();
    let want: Vec<f32> = ab
        .iter()
        .zip(c0.to_vec())
        .map(|(&p, c)| 0.5 * p - 2.0 * c)
        .collect();
    for (la, va) in matrix_layouts(&a) {
        for (lb, vb) in matrix_layouts(&b) {
            for (lc, vc) in matrix_layouts(&c0) {
                let mut c = vc.clone();
                gemm(0.5, &va, &vb, -2.0, &mut c).unwrap();
                assert_close(&c.to_vec(), &want, 1e-4, 1e-4, &format!("{la} {lb} {lc}"));
            }
        }
    }
    let mut c = Tensor::zeros(&[17, 8]);
    let e = gemm(1.0, &a, &b, 0.0, &mut c).unwrap_err().to_string();
    assert!(e.contains("[17, 8]") && e.contains("[17, 9]"), "{e}");
}
