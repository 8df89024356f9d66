//! Elementwise operations against naive references: broadcasting binary ops over odd sizes and
//! non-contiguous layouts, and every unary function against an f64 formula.

mod common;

use common::{assert_close, get_broadcast, layouts, rand, unravel};
use gradus_tensor::{Tensor, broadcast_shapes};

type BinOp = fn(&Tensor, &Tensor) -> gradus_tensor::Result<Tensor>;
type BinCase = (&'static str, BinOp, fn(f32, f32) -> f32);

fn binary_ops() -> Vec<BinCase> {
    fn b(x: bool) -> f32 {
        if x { 1.0 } else { 0.0 }
    }
    vec![
        ("add", Tensor::add, |x, y| x + y),
        ("sub", Tensor::sub, |x, y| x - y),
        ("mul", Tensor::mul, |x, y| x * y),
        ("div", Tensor::div, |x, y| x / y),
        (
            "maximum",
            Tensor::maximum,
            |x, y| if x >= y { x } else { y },
        ),
        (
            "minimum",
            Tensor::minimum,
            |x, y| if x <= y { x } else { y },
        ),
        (
            "pow",
            |a, b| a.abs().pow(b),
            |x, y| (x.abs() as f64).powf(y as f64) as f32,
        ),
        ("eq", Tensor::eq, |x, y| b(x == y)),
        ("ne", Tensor::ne, |x, y| b(x != y)),
        ("gt", Tensor::gt, |x, y| b(x > y)),
        ("ge", Tensor::ge, |x, y| b(x >= y)),
        ("lt", Tensor::lt, |x, y| b(x < y)),
        ("le", Tensor::le, |x, y| b(x <= y)),
        ("ops::Add", |a, b| a + b, |x, y| x + y),
        ("ops::Sub", |a, b| a - b, |x, y| x - y),
        ("ops::Mul", |a, b| a * b, |x, y| x * y),
        ("ops::Div", |a, b| a / b, |x, y| x / y),
    ]
}

const SHAPE_PAIRS: &[(&[usize], &[usize])] = &[
    (&[1], &[1]),
    (&[17], &[17]),
    (&[257], &[1]),
    (&[1], &[257]),
    (&[3, 17], &[17]),
    (&[17], &[3, 17]),
    (&[3, 1], &[1, 17]),
    (&[2, 3, 17], &[3, 1]),
    (&[], &[3, 4]),
    (&[17, 1, 3], &[1, 5, 1]),
    (&[4, 257], &[4, 257]),
    (&[0, 3], &[3]),
    // one value per leading index (a column), either side
    (&[3, 17], &[3, 1]),
    (&[2, 1, 1], &[2, 3, 17]),
    (&[2, 3, 17], &[2, 3, 1]),
    (&[257, 1], &[257, 5]),
];

#[test]
fn binary_ops_match_naive_broadcasting_in_every_layout() {
    for (k, &(sa, sb)) in SHAPE_PAIRS.iter().enumerate() {
        // Round to quarters so that comparisons see ties.
        let a = rand(sa, 10 + k as u64)
            .mul_scalar(4.0)
            .map(f32::round)
            .mul_scalar(0.25);
        let b = rand(sb, 100 + k as u64)
            .mul_scalar(4.0)
            .map(f32::round)
            .mul_scalar(0.25);
        let out_shape = broadcast_shapes(sa, sb).unwrap();
        let n: usize = out_shape.iter().product();
        for (name, op, reference) in binary_ops() {
            let want: Vec<f32> = (0..n)
                .map(|i| {
                    let idx = unravel(i, &out_shape);
                    reference(get_broadcast(&a, &idx), get_broadcast(&b, &idx))
                })
                .collect();
            for (la, va) in layouts(&a) {
                for (lb, vb) in layouts(&b) {
                    let got = op(&va, &vb).unwrap();
                    assert_eq!(got.shape(), out_shape.as_slice(), "{name} {sa:?} {sb:?}");
                    let what = format!("{name} {sa:?} ({la}) with {sb:?} ({lb})");
                    assert_close(&got.to_vec(), &want, 1e-6, 0.0, &what);
                }
            }
        }
    }
}

#[test]
fn incompatible_shapes_error_with_both_shapes() {
    let a = Tensor::zeros(&[3, 17]);
    let b = Tensor::zeros(&[4, 17]);
    for (name, op, _) in binary_ops() {
        let e = op(&a, &b).unwrap_err().to_string();
        assert!(
            e.contains("[3, 17]") && e.contains("[4, 17]"),
            "{name}: {e}"
        );
    }
}

/// erf by composite Simpson integration of `2/sqrt(pi) e^(-t^2)` (independent of the crate's).
fn erf_reference(x: f64) -> f64 {
    let n = 2000;
    let h = x / n as f64;
    let f = |t: f64| (-t * t).exp();
    let mut s = f(0.0) + f(x);
    for i in 1..n {
        s += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
    }
    s * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt()
}

#[test]
fn erf_matches_numerical_integration() {
    for i in -60..=60 {
        let x = i as f64 * 0.1;
        let (got, want) = (gradus_tensor::erf(x), erf_reference(x));
        assert!((got - want).abs() < 1e-12, "erf({x}): {got} vs {want}");
    }
}

#[test]
fn unary_ops_match_f64_formulas() {
    type Unary = (&'static str, fn(&Tensor) -> Tensor, fn(f64) -> f64);
    let ops: Vec<Unary> = vec![
        ("neg", Tensor::neg, |x| -x),
        ("exp", Tensor::exp, f64::exp),
        (
            "ln",
            |t| t.abs().add_scalar(0.1).ln(),
            |x| (x.abs() + 0.1).ln(),
        ),
        ("log1p", |t| t.abs().log1p(), |x| x.abs().ln_1p()),
        ("sqrt", |t| t.abs().sqrt(), |x| x.abs().sqrt()),
        (
            "rsqrt",
            |t| t.abs().add_scalar(0.1).rsqrt(),
            |x| 1.0 / (x.abs() + 0.1).sqrt(),
        ),
        ("square", Tensor::square, |x| x * x),
        ("abs", Tensor::abs, f64::abs),
        ("sign", Tensor::sign, |x| {
            if x == 0.0 { 0.0 } else { x.signum() }
        }),
        ("recip", |t| t.add_scalar(3.0).recip(), |x| 1.0 / (x + 3.0)),
        ("tanh", Tensor::tanh, f64::tanh),
        ("sigmoid", Tensor::sigmoid, |x| 1.0 / (1.0 + (-x).exp())),
        ("relu", Tensor::relu, |x| x.max(0.0)),
        ("softplus", Tensor::softplus, |x| (1.0 + x.exp()).ln()),
        (
            "elu",
            |t| t.elu(0.7),
            |x| if x > 0.0 { x } else { 0.7 * (x.exp() - 1.0) },
        ),
        (
            "leaky_relu",
            |t| t.leaky_relu(0.2),
            |x| if x >= 0.0 { x } else { 0.2 * x },
        ),
        (
            "gelu",
            |t| t.gelu(false),
            |x| 0.5 * x * (1.0 + erf_reference(x / 2f64.sqrt())),
        ),
        (
            "gelu approx",
            |t| t.gelu(true),
            |x| {
                0.5 * x
                    * (1.0
                        + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
            },
        ),
        ("clip", |t| t.clip(-0.5, 1.25), |x| x.clamp(-0.5, 1.25)),
        ("add_scalar", |t| t.add_scalar(1.5), |x| x + 1.5),
        ("sub_scalar", |t| t.sub_scalar(1.5), |x| x - 1.5),
        ("rsub_scalar", |t| t.rsub_scalar(1.5), |x| 1.5 - x),
        ("mul_scalar", |t| t.mul_scalar(-3.0), |x| -3.0 * x),
        ("div_scalar", |t| t.div_scalar(4.0), |x| x / 4.0),
        ("powf", |t| t.abs().powf(1.7), |x| x.abs().powf(1.7)),
    ];
    for shape in [&[1usize][..], &[17], &[3, 257], &[2, 17, 3]] {
        let mut x = rand(shape, 7);
        x.as_slice_mut()[0] = 0.0; // exercise 0 (sign, relu, ...)
        for (name, op, reference) in &ops {
            let want: Vec<f32> = x
                .to_vec()
                .iter()
                .map(|&v| reference(v as f64) as f32)
                .collect();
            for (layout, v) in layouts(&x) {
                let got = op(&v);
                assert_eq!(got.shape(), shape);
                assert_close(
                    &got.to_vec(),
                    &want,
                    2e-6,
                    1e-7,
                    &format!("{name} {shape:?} {layout}"),
                );
            }
        }
    }
}

#[test]
fn activations_at_extremes() {
    let x = Tensor::from_vec(vec![-1e4, -80.0, -30.0, 30.0, 80.0, 1e4], &[6]).unwrap();
    // For large |x|, sigmoid(-|x|) and softplus(-|x|) both approach e^-|x| (relative error e^-|x|).
    let tiny = |v: f64| (-v).exp() as f32;
    let s = x.sigmoid().to_vec();
    assert_close(
        &s,
        &[0.0, tiny(80.0), tiny(30.0), 1.0, 1.0, 1.0],
        1e-6,
        0.0,
        "sigmoid",
    );
    let sp = x.softplus().to_vec();
    let want = [0.0, tiny(80.0), tiny(30.0), 30.0, 80.0, 1e4];
    assert_close(&sp, &want, 1e-6, 0.0, "softplus");
    assert!(x.gelu(false).is_finite_all() && x.gelu(true).is_finite_all());
    assert_eq!(x.gelu(false).to_vec()[0], 0.0);
    assert_eq!(x.gelu(false).to_vec()[5], 1e4);
    assert!(x.elu(1.0).is_finite_all());
    assert!(!x.exp().is_finite_all());
}

/// `first_non_finite` remembers a clean scan, and every way of writing a tensor forgets it:
/// `as_slice_mut` (in place and copy on write), `view_mut` and the output of `gemm`. The index
/// is in row-major order, also for a transposed view and across the pieces of a parallel scan.
#[test]
fn first_non_finite_remembers_clean_scans_until_a_write() {
    let mut t = Tensor::from_vec((0..12).map(|i| i as f32).collect(), &[3, 4]).unwrap();
    assert_eq!(t.first_non_finite(), None);
    let clean = t.clone(); // shares the buffer and the memo
    t.as_slice_mut()[6] = f32::NAN; // copy on write
    let (i, v) = t.first_non_finite().unwrap();
    assert!(i == 6 && v.is_nan());
    assert_eq!(clean.first_non_finite(), None);
    assert_eq!(clean.to_vec()[6], 6.0);

    let mut u = Tensor::from_vec(clean.to_vec(), &[3, 4]).unwrap(); // a buffer of its own
    assert!(u.is_finite_all());
    u.view_mut()[[0, 1]] = f32::INFINITY; // in place
    assert_eq!(u.first_non_finite(), Some((1, f32::INFINITY)));
    // Row-major order of the view, not of the memory: element (1, 0) of the transpose (3 wide)
    // is element 1 of `u`'s buffer.
    let ut = u.transpose().unwrap();
    assert!(!ut.is_contiguous());
    assert_eq!(ut.first_non_finite(), Some((3, f32::INFINITY)));

    let mut c = Tensor::zeros(&[2, 2]);
    assert!(c.is_finite_all());
    let a = Tensor::from_vec(vec![f32::MAX, f32::MAX, 1.0, 1.0], &[2, 2]).unwrap();
    gradus_tensor::gemm(1.0, &a, &Tensor::full(&[2, 2], 4.0), 0.0, &mut c).unwrap();
    assert_eq!(c.first_non_finite(), Some((0, f32::INFINITY)));

    // 300,000 values in pieces on two threads: the first bad value is named even when a later
    // piece holds another.
    gradus_tensor::parallel::set_num_threads(2);
    let mut big = Tensor::zeros(&[300_000]);
    assert!(big.is_finite_all());
    big.as_slice_mut()[200_000] = f32::NEG_INFINITY;
    big.as_slice_mut()[70_001] = f32::NAN;
    let (i, v) = big.first_non_finite().unwrap();
    assert!(i == 70_001 && v.is_nan());
    gradus_tensor::parallel::set_num_threads(0);
}
