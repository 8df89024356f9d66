//! Elementwise math: binary operations with broadcasting, comparisons, scalar operations and the
//! unary functions (activations included).

use ndarray::{ArrayD, IxDyn, Zip};

use crate::broadcast::broadcast_shapes_for;
use crate::buffer::take;
use crate::error::Result;
use crate::tensor::Tensor;

/// `out[i] = f(a[i], b[i])` with broadcasting, through contiguous fast paths where possible.
#[inline]
fn zip_with(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    f: impl Fn(f32, f32) -> f32,
) -> Result<Tensor> {
    if a.shape() == b.shape()
        && let (Some(x), Some(y)) = (a.as_slice(), b.as_slice())
    {
        let mut v = take(x.len());
        for ((o, &x), &y) in v.iter_mut().zip(x).zip(y) {
            *o = f(x, y);
        }
        return Ok(Tensor::from_parts(v, a.shape()));
    }
    let shape = broadcast_shapes_for(op, a.shape(), b.shape())?;
    if let (Some(x), Some(y)) = (a.as_slice(), b.as_slice()) {
        // One operand repeats as a whole over the other: a scalar, or a trailing block such as
        // a bias row added to every row of a batch.
        if a.shape() == shape.as_slice() && is_trailing_block(b.shape(), &shape) {
            return Ok(Tensor::from_parts(repeat_right(x, y, &f), &shape));
        }
        if b.shape() == shape.as_slice() && is_trailing_block(a.shape(), &shape) {
            return Ok(Tensor::from_parts(
                repeat_right(y, x, |q, p| f(p, q)),
                &shape,
            ));
        }
        // One operand holds one value per leading index, such as a [batch, 1] column.
        if a.shape() == shape.as_slice()
            && let Some(inner) = leading_block_inner(b.shape(), &shape)
        {
            return Ok(Tensor::from_parts(repeat_each(x, y, inner, &f), &shape));
        }
        if b.shape() == shape.as_slice()
            && let Some(inner) = leading_block_inner(a.shape(), &shape)
        {
            return Ok(Tensor::from_parts(
                repeat_each(y, x, inner, |q, p| f(p, q)),
                &shape,
            ));
        }
    }
    let av = a.data.broadcast(IxDyn(&shape)).expect("shape checked");
    let bv = b.data.broadcast(IxDyn(&shape)).expect("shape checked");
    let n = shape.iter().product();
    let mut out = ArrayD::from_shape_vec(IxDyn(&shape), take(n)).expect("length matches shape");
    Zip::from(&mut out)
        .and(&av)
        .and(&bv)
        .for_each(|o, &x, &y| *o = f(x, y));
    Ok(Tensor::from(out))
}

/// Whether `small`, broadcast to `full`, is a block repeated whole: `small` minus its leading
/// ones equals a trailing part of `full`.
fn is_trailing_block(small: &[usize], full: &[usize]) -> bool {
    let lead = small.iter().take_while(|&&d| d == 1).count();
    let core = &small[lead..];
    core.len() <= full.len() && full.ends_with(core)
}

/// When `small`, broadcast to `full`, is constant over the trailing axes `k..` and equal to `full`
/// on the leading axes `..k`, the number of elements of those trailing axes.
fn leading_block_inner(small: &[usize], full: &[usize]) -> Option<usize> {
    let n = full.len();
    let padded: Vec<usize> = std::iter::repeat_n(1, n - small.len())
        .chain(small.iter().copied())
        .collect();
    let k = padded.iter().rposition(|&d| d != 1).map_or(0, |i| i + 1);
    (padded[..k] == full[..k]).then(|| full[k..].iter().product())
}

/// `out[i] = f(big[i], small[i / inner])`.
#[inline]
fn repeat_each(big: &[f32], small: &[f32], inner: usize, f: impl Fn(f32, f32) -> f32) -> Vec<f32> {
    let mut out = take(big.len());
    if inner > 0 {
        for ((o, chunk), &s) in out
            .chunks_exact_mut(inner)
            .zip(big.chunks_exact(inner))
            .zip(small)
        {
            o.iter_mut().zip(chunk).for_each(|(o, &x)| *o = f(x, s));
        }
    }
    out
}

/// `out[i] = f(big[i], small[i % small.len()])`.
#[inline]
fn repeat_right(big: &[f32], small: &[f32], f: impl Fn(f32, f32) -> f32) -> Vec<f32> {
    let mut out = take(big.len());
    if small.len() == 1 {
        let s = small[0];
        out.iter_mut().zip(big).for_each(|(o, &x)| *o = f(x, s));
    } else if !small.is_empty() {
        for (o, chunk) in out
            .chunks_exact_mut(small.len())
            .zip(big.chunks_exact(small.len()))
        {
            for ((o, &x), &y) in o.iter_mut().zip(chunk).zip(small) {
                *o = f(x, y);
            }
        }
    }
    out
}

fn bool_f32(b: bool) -> f32 {
    if b { 1.0 } else { 0.0 }
}

/// Defines broadcasting binary methods from `(name, op string, doc formula, closure)`.
macro_rules! binary_ops {
    ($( $(#[$doc:meta])* $name:ident => |$x:ident, $y:ident| $body:expr; )*) => {
        impl Tensor {
            $(
                $(#[$doc])*
                ///
                /// Shapes broadcast by NumPy's rules (see [`broadcast_shapes`](crate::broadcast_shapes));
                /// the result has the broadcast shape and is contiguous.
                ///
                /// # Errors
                /// [`TensorError::IncompatibleShapes`](crate::TensorError::IncompatibleShapes)
                /// naming both shapes when they do not broadcast.
                pub fn $name(&self, other: &Tensor) -> Result<Tensor> {
                    zip_with(stringify!($name), self, other, |$x: f32, $y: f32| $body)
                }
            )*
        }
    };
}

binary_ops! {
    /// Elementwise sum: `out = self + other`.
    add => |x, y| x + y;
    /// Elementwise difference: `out = self - other`.
    sub => |x, y| x - y;
    /// Elementwise product: `out = self * other`.
    mul => |x, y| x * y;
    /// Elementwise quotient: `out = self / other` (IEEE: `x / 0` is infinite or NaN).
    div => |x, y| x / y;
    /// Elementwise maximum: `out = max(self, other)`; a NaN in either operand gives NaN.
    maximum => |x, y| if x.is_nan() || y.is_nan() { f32::NAN } else { x.max(y) };
    /// Elementwise minimum: `out = min(self, other)`; a NaN in either operand gives NaN.
    minimum => |x, y| if x.is_nan() || y.is_nan() { f32::NAN } else { x.min(y) };
    /// Elementwise power: `out = self ^ other` (`f32::powf`).
    pow => |x, y| x.powf(y);
    /// Elementwise equality as 0/1: `out = (self == other) ? 1 : 0`.
    eq => |x, y| bool_f32(x == y);
    /// Elementwise inequality as 0/1: `out = (self != other) ? 1 : 0`.
    ne => |x, y| bool_f32(x != y);
    /// Elementwise comparison as 0/1: `out = (self > other) ? 1 : 0`.
    gt => |x, y| bool_f32(x > y);
    /// Elementwise comparison as 0/1: `out = (self >= other) ? 1 : 0`.
    ge => |x, y| bool_f32(x >= y);
    /// Elementwise comparison as 0/1: `out = (self < other) ? 1 : 0`.
    lt => |x, y| bool_f32(x < y);
    /// Elementwise comparison as 0/1: `out = (self <= other) ? 1 : 0`.
    le => |x, y| bool_f32(x <= y);
}

/// Defines unary methods `-> Tensor` from `(name, closure)`.
macro_rules! unary_ops {
    ($( $(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*) => |$x:ident| $body:expr; )*) => {
        impl Tensor {
            $(
                $(#[$doc])*
                ///
                /// Same shape as the input; the result is contiguous.
                pub fn $name(&self $(, $arg: $ty)*) -> Tensor {
                    self.map(|$x: f32| $body)
                }
            )*
        }
    };
}

unary_ops! {
    /// Adds a scalar: `out = x + s`.
    add_scalar(s: f32) => |x| x + s;
    /// Subtracts a scalar: `out = x - s`.
    sub_scalar(s: f32) => |x| x - s;
    /// Multiplies by a scalar: `out = x * s`.
    mul_scalar(s: f32) => |x| x * s;
    /// Divides by a scalar: `out = x / s`.
    div_scalar(s: f32) => |x| x / s;
    /// Subtracts from a scalar: `out = s - x`.
    rsub_scalar(s: f32) => |x| s - x;
    /// Raises to a scalar power: `out = x ^ p` (`f32::powf`).
    powf(p: f32) => |x| x.powf(p);
    /// Negation: `out = -x`.
    neg() => |x| -x;
    /// Exponential: `out = e^x`.
    exp() => |x| x.exp();
    /// Natural logarithm: `out = ln x` (`-inf` at 0, NaN below).
    ln() => |x| x.ln();
    /// `out = ln(1 + x)`, accurate for small `x`.
    log1p() => |x| x.ln_1p();
    /// Square root: `out = sqrt(x)`.
    sqrt() => |x| x.sqrt();
    /// Reciprocal square root: `out = 1 / sqrt(x)`.
    rsqrt() => |x| 1.0 / x.sqrt();
    /// Square: `out = x * x`.
    square() => |x| x * x;
    /// Absolute value: `out = |x|`.
    abs() => |x| x.abs();
    /// Sign: `out = -1, 0 or 1` for `x < 0`, `x == 0` and `x > 0`; NaN stays NaN.
    sign() => |x| if x > 0.0 { 1.0 } else if x < 0.0 { -1.0 } else { x * 0.0 };
    /// Reciprocal: `out = 1 / x`.
    recip() => |x| 1.0 / x;
    /// Hyperbolic tangent: `out = tanh(x)`.
    tanh() => |x| x.tanh();
    /// Logistic sigmoid: `out = 1 / (1 + e^-x)`, computed without overflow for large `|x|`.
    sigmoid() => |x| sigmoid(x);
    /// Rectified linear unit: `out = max(x, 0)`; NaN stays NaN.
    relu() => |x| if x < 0.0 { 0.0 } else { x };
    /// Softplus: `out = ln(1 + e^x)`, computed stably as `max(x, 0) + ln(1 + e^-|x|)`.
    softplus() => |x| softplus(x);
    /// Exponential linear unit: `out = x` for `x > 0`, else `alpha * (e^x - 1)`.
    elu(alpha: f32) => |x| if x > 0.0 { x } else { alpha * x.exp_m1() };
    /// Leaky ReLU: `out = x` for `x >= 0`, else `alpha * x`.
    leaky_relu(alpha: f32) => |x| if x >= 0.0 { x } else { alpha * x };
    /// Gaussian error linear unit. Exact (Keras' default, `approximate = false`):
    /// `out = x/2 * (1 + erf(x / sqrt 2))`; approximate:
    /// `out = x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))`.
    gelu(approximate: bool) => |x| gelu(x, approximate);
    /// Clamps into `[lo, hi]`: `out = min(max(x, lo), hi)`; NaN stays NaN.
    clip(lo: f32, hi: f32) => |x| if x < lo { lo } else if x > hi { hi } else { x };
}

impl Tensor {
    /// Whether every element is finite (neither infinite nor NaN). True for an empty tensor.
    /// Remembered as [`first_non_finite`](Tensor::first_non_finite) says.
    pub fn is_finite_all(&self) -> bool {
        self.first_non_finite().is_none()
    }

    /// The first element in row-major order that is NaN or infinite, as its index in the
    /// flattened tensor and its value; `None` when every element is finite (or there is none).
    ///
    /// A contiguous tensor is scanned in pieces of at least 2^16 values on the
    /// [threads](crate::parallel). The answer `None` is remembered by this tensor, and by the
    /// clones made from it afterwards, until its elements are next written
    /// ([`as_slice_mut`](Tensor::as_slice_mut), [`view_mut`](Tensor::view_mut), the output of
    /// [`gemm`](crate::gemm)): checking the same data again costs nothing (a model's `fit`
    /// checks its data at every call). Views made from it (a slice, a reshape) are scanned
    /// afresh.
    ///
    /// ```
    /// use gradus_tensor::Tensor;
    ///
    /// let mut t = Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3])?;
    /// assert_eq!(t.first_non_finite(), None);
    /// t.as_slice_mut()[1] = f32::NAN; // a write forgets the answer
    /// let (index, value) = t.first_non_finite().expect("a NaN");
    /// assert!(index == 1 && value.is_nan());
    /// # Ok::<(), gradus_tensor::TensorError>(())
    /// ```
    pub fn first_non_finite(&self) -> Option<(usize, f32)> {
        const MIN_PIECE: usize = 1 << 16;
        if self.finite.get() {
            return None;
        }
        let found = match self.as_slice() {
            Some(values) => {
                let pieces = (values.len() / MIN_PIECE).clamp(1, crate::parallel::num_threads());
                let per = values.len().div_ceil(pieces);
                crate::parallel::map(pieces, |i| {
                    let start = (i * per).min(values.len());
                    let end = values.len().min(start + per);
                    first_non_finite_in(&values[start..end]).map(|j| start + j)
                })
                .into_iter()
                .flatten()
                .next()
                .map(|i| (i, values[i]))
            }
            None => self
                .data
                .iter()
                .copied()
                .enumerate()
                .find(|(_, v)| !v.is_finite()),
        };
        if found.is_none() {
            self.finite.set();
        }
        found
    }
}

/// The index of the first value of `values` that is not finite: a branch-free (vectorized)
/// scan of blocks, then a look inside the first block that holds one.
fn first_non_finite_in(values: &[f32]) -> Option<usize> {
    const EXPONENT: u32 = 0x7f80_0000;
    let bad_block = values.chunks(1024).position(|block| {
        block
            .iter()
            .fold(false, |bad, v| bad | (v.to_bits() & EXPONENT == EXPONENT))
    })?;
    let start = bad_block * 1024;
    values[start..]
        .iter()
        .position(|v| !v.is_finite())
        .map(|i| start + i)
}

/// `1 / (1 + e^-x)` without overflow: for negative `x` it is evaluated as `e^x / (1 + e^x)`.
pub(crate) fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `ln(1 + e^x) = max(x, 0) + ln(1 + e^-|x|)`.
pub(crate) fn softplus(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// GELU, exact (erf) or with the tanh approximation.
pub(crate) fn gelu(x: f32, approximate: bool) -> f32 {
    if approximate {
        let c = (2.0 / std::f32::consts::PI).sqrt();
        0.5 * x * (1.0 + (c * (x + 0.044_715 * x * x * x)).tanh())
    } else {
        let x = x as f64;
        (0.5 * x * (1.0 + erf(x * std::f64::consts::FRAC_1_SQRT_2))) as f32
    }
}

/// The error function `erf(x) = 2/sqrt(pi) * integral_0^x e^(-t^2) dt`, in f64, accurate to about
/// 1e-15 absolute.
///
/// For `|x| < 2.5` it sums the series `erf x = 2/sqrt(pi) e^(-x^2) sum_n 2^n x^(2n+1) / (2n+1)!!`,
/// whose terms are all positive (no cancellation). Beyond, it evaluates the continued fraction
/// `erfc x = e^(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))` from a fixed depth.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let ax = x.abs();
    let r = if ax < 2.5 {
        let x2 = ax * ax;
        let two_x2 = 2.0 * x2;
        let mut term = ax;
        let mut sum = ax;
        // Multiplying by tabulated 1/(2n+1) keeps divisions out of the dependency chain.
        for inv in &INV_ODD[1..] {
            term *= two_x2 * inv;
            sum += term;
            if term <= sum * 1e-17 {
                break;
            }
        }
        2.0 / std::f64::consts::PI.sqrt() * (-x2).exp() * sum
    } else if ax < 6.0 {
        1.0 - erfc_cf(ax)
    } else {
        1.0
    };
    r.copysign(x)
}

/// `1 / (2n + 1)` for `n = 0, 1, ...`: the series for `|x| < 2.5` converges within 70 terms.
const INV_ODD: [f64; 80] = {
    let mut t = [0.0; 80];
    let mut n = 0;
    while n < t.len() {
        t[n] = 1.0 / (2 * n + 1) as f64;
        n += 1;
    }
    t
};

/// `erfc(x)` for `x >= 2.5` by the Laplace continued fraction, evaluated bottom-up.
fn erfc_cf(x: f64) -> f64 {
    let mut f = x;
    for k in (1..=60).rev() {
        f = x + (k as f64 / 2.0) / f;
    }
    (-x * x).exp() / std::f64::consts::PI.sqrt() / f
}

/// Implements a `std::ops` binary operator for tensor references, returning `Result<Tensor>`.
macro_rules! ops_impl {
    ($($trait:ident :: $method:ident => $call:ident),*) => {
        $(
            impl std::ops::$trait<&Tensor> for &Tensor {
                type Output = Result<Tensor>;
                /// Broadcasting elementwise operation; errors when the shapes do not broadcast.
                fn $method(self, rhs: &Tensor) -> Result<Tensor> {
                    self.$call(rhs)
                }
            }
        )*
    };
}

ops_impl!(Add::add => add, Sub::sub => sub, Mul::mul => mul, Div::div => div);

impl std::ops::Neg for &Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        Tensor::neg(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_slice(v, shape).unwrap()
    }

    #[test]
    fn bias_and_scalar_broadcast_paths_agree_with_general_path() {
        let a = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        let b = t(&[10.0, 20.0, 30.0], &[3]);
        assert_eq!(
            a.add(&b).unwrap().to_vec(),
            vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]
        );
        assert_eq!(
            b.sub(&a).unwrap().to_vec(),
            vec![9.0, 18.0, 27.0, 6.0, 15.0, 24.0]
        );
        let col = t(&[1.0, 2.0], &[2, 1]);
        assert_eq!(
            a.mul(&col).unwrap().to_vec(),
            vec![1.0, 2.0, 3.0, 8.0, 10.0, 12.0]
        );
        let s = Tensor::scalar(2.0);
        assert_eq!(s.div(&a).unwrap().shape(), &[2, 3]);
        assert_eq!((&a - &s).unwrap().to_vec(), a.sub_scalar(2.0).to_vec());
        let e = a.add(&t(&[1.0, 2.0], &[2])).unwrap_err().to_string();
        assert!(
            e.contains("add") && e.contains("[2, 3]") && e.contains("[2]"),
            "{e}"
        );
    }

    #[test]
    fn comparisons_are_zero_one() {
        let a = t(&[1.0, 2.0, 3.0], &[3]);
        let b = Tensor::scalar(2.0);
        assert_eq!(a.gt(&b).unwrap().to_vec(), vec![0.0, 0.0, 1.0]);
        assert_eq!(a.ge(&b).unwrap().to_vec(), vec![0.0, 1.0, 1.0]);
        assert_eq!(a.lt(&b).unwrap().to_vec(), vec![1.0, 0.0, 0.0]);
        assert_eq!(a.le(&b).unwrap().to_vec(), vec![1.0, 1.0, 0.0]);
        assert_eq!(a.eq(&b).unwrap().to_vec(), vec![0.0, 1.0, 0.0]);
        assert_eq!(a.ne(&b).unwrap().to_vec(), vec![1.0, 0.0, 1.0]);
    }

    #[test]
    fn stable_sigmoid_and_softplus() {
        let x = t(&[-1000.0, -20.0, 0.0, 20.0, 1000.0], &[5]);
        let s = x.sigmoid().to_vec();
        assert_eq!(s[0], 0.0);
        assert_eq!(s[2], 0.5);
        assert_eq!(s[4], 1.0);
        assert!((s[1] - (-20f64).exp() as f32).abs() < 1e-12);
        let sp = x.softplus().to_vec();
        assert_eq!(sp[0], 0.0);
        assert_eq!(sp[4], 1000.0);
        assert!((sp[2] - std::f32::consts::LN_2).abs() < 1e-7);
        assert!((sp[3] - 20.0).abs() < 1e-6);
    }

    #[test]
    fn erf_matches_tabulated_values_and_branches_meet() {
        // Values from Abramowitz & Stegun, table 7.1, and erfc(3) = 2.209049699858544e-5.
        let table = [
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (3.0, 1.0 - 2.209_049_699_858_544e-5),
        ];
        for (x, want) in table {
            assert!((erf(x) - want).abs() < 1e-13, "erf({x}) = {}", erf(x));
            assert!((erf(-x) + want).abs() < 1e-13);
        }
        // Series and continued fraction agree where they meet.
        let below = erf(2.5 - 1e-12);
        let above = 1.0 - erfc_cf(2.5);
        assert!((below - above).abs() < 1e-14, "{below} vs {above}");
        assert_eq!(erf(0.0), 0.0);
        assert_eq!(erf(10.0), 1.0);
        assert!(erf(f64::NAN).is_nan());
    }

    #[test]
    fn a_clean_scan_is_remembered_and_a_write_forgets_it() {
        let mut x = t(&[1.0, -2.0, 5.0], &[3]);
        assert!(!x.finite.get());
        assert_eq!(x.first_non_finite(), None);
        assert!(x.finite.get(), "remembered");
        assert!(x.clone().finite.get(), "a clone shares the answer");
        assert!(
            !x.slice_axis(0, 1, 3).unwrap().finite.get(),
            "a view scans afresh"
        );
        x.as_slice_mut()[0] = 3.0;
        assert!(!x.finite.get(), "forgotten by a write");
        // A scan that finds a bad value remembers nothing.
        x.as_slice_mut()[2] = f32::NAN;
        assert!(x.first_non_finite().is_some());
        assert!(!x.finite.get());
    }

    #[test]
    fn nan_handling() {
        let x = t(&[f32::NAN, -2.0, 5.0], &[3]);
        let c = x.clip(-1.0, 1.0).to_vec();
        assert!(c[0].is_nan());
        assert_eq!(&c[1..], &[-1.0, 1.0]);
        assert!(x.relu().to_vec()[0].is_nan());
        assert!(x.sign().to_vec()[0].is_nan());
        assert!(!x.is_finite_all());
        assert!(x.slice_axis(0, 1, 3).unwrap().is_finite_all());
        let m = x.maximum(&Tensor::scalar(0.0)).unwrap().to_vec();
        assert!(m[0].is_nan());
        assert_eq!(&m[1..], &[0.0, 5.0]);
    }
}
