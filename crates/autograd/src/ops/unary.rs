//! Unary math and activations.

use gradus_tensor::Tensor;

use super::zip2;
use crate::var::Var;

/// `sigmoid(x)` without overflow, for the softplus rule.
fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `d gelu(x) / dx`. Exact: `Phi(x) + x phi(x)`; approximate (tanh form, `u = k (x + c x^3)`):
/// `(1 + tanh u) / 2 + x (1 - tanh^2 u) k (1 + 3 c x^2) / 2`.
fn gelu_grad(x: f32, approximate: bool) -> f32 {
    let x64 = f64::from(x);
    if approximate {
        let k = (2.0 / std::f64::consts::PI).sqrt();
        let c = 0.044715;
        let t = (k * (x64 + c * x64.powi(3))).tanh();
        (0.5 * (1.0 + t) + 0.5 * x64 * (1.0 - t * t) * k * (1.0 + 3.0 * c * x64 * x64)) as f32
    } else {
        let cdf = 0.5 * (1.0 + gradus_tensor::erf(x64 / std::f64::consts::SQRT_2));
        let pdf = (-0.5 * x64 * x64).exp() / (2.0 * std::f64::consts::PI).sqrt();
        (cdf + x64 * pdf) as f32
    }
}

/// Defines unary methods: `name(args) = forward; rule over (g, x, out)` where the rule is an
/// elementwise closure of the output gradient `g`, the input `x` and the output `y`.
macro_rules! unary_ops {
    ($(
        $(#[$doc:meta])*
        $name:ident($($arg:ident: $ty:ty),*) uses $saved:ident => |$g:ident, $v:ident| $rule:expr;
    )*) => {
        impl<'t> Var<'t> {
            $(
                $(#[$doc])*
                pub fn $name(&self $(, $arg: $ty)*) -> Var<'t> {
                    let out = self.value().$name($($arg),*);
                    self.unary(stringify!($name), out, |x, y| {
                        let _ = (&x, &y);
                        let saved = unary_ops!(@pick $saved, x, y).clone();
                        move |g: &Tensor| Ok(zip2(g, &saved, |$g, $v| $rule))
                    })
                }
            )*
        }
    };
    (@pick input, $x:ident, $y:ident) => { $x };
    (@pick output, $x:ident, $y:ident) => { $y };
}

unary_ops! {
    /// Negation: `out = -x`; `dx = -g`.
    neg() uses input => |g, _x| -g;
    /// Exponential: `out = e^x`; `dx = g out`.
    exp() uses output => |g, y| g * y;
    /// Natural logarithm: `out = ln x`; `dx = g / x`.
    ln() uses input => |g, x| g / x;
    /// `out = ln(1 + x)`; `dx = g / (1 + x)`.
    log1p() uses input => |g, x| g / (1.0 + x);
    /// Square root: `out = sqrt x`; `dx = g / (2 out)`.
    sqrt() uses output => |g, y| g * 0.5 / y;
    /// Reciprocal square root: `out = 1 / sqrt x`; `dx = -g out^3 / 2`.
    rsqrt() uses output => |g, y| -0.5 * g * y * y * y;
    /// Square: `out = x^2`; `dx = 2 g x`.
    square() uses input => |g, x| 2.0 * g * x;
    /// Absolute value: `out = |x|`; `dx = g sign(x)` (0 at 0).
    abs() uses input => |g, x| if x > 0.0 { g } else if x < 0.0 { -g } else { 0.0 };
    /// Reciprocal: `out = 1 / x`; `dx = -g out^2`.
    recip() uses output => |g, y| -g * y * y;
    /// Hyperbolic tangent: `out = tanh x`; `dx = g (1 - out^2)`.
    tanh() uses output => |g, y| g * (1.0 - y * y);
    /// Logistic sigmoid: `out = 1 / (1 + e^-x)`; `dx = g out (1 - out)`.
    sigmoid() uses output => |g, y| g * y * (1.0 - y);
    /// Rectified linear unit: `out = max(x, 0)`; `dx = g` where `x > 0`, else 0.
    relu() uses input => |g, x| if x > 0.0 { g } else { 0.0 };
    /// Softplus: `out = ln(1 + e^x)`; `dx = g sigmoid(x)`.
    softplus() uses input => |g, x| g * sigmoid(x);
    /// Exponential linear unit: `out = x` for `x > 0`, else `alpha (e^x - 1)`;
    /// `dx = g` for `x > 0`, else `g (out + alpha)`.
    elu(alpha: f32) uses input => |g, x| if x > 0.0 { g } else { g * alpha * x.exp() };
    /// Leaky ReLU: `out = x` for `x >= 0`, else `alpha x`; `dx = g` or `alpha g`.
    leaky_relu(alpha: f32) uses input => |g, x| if x >= 0.0 { g } else { alpha * g };
    /// Gaussian error linear unit (exact erf form when `approximate` is false, Keras' default;
    /// tanh form otherwise); `dx = g gelu'(x)`.
    gelu(approximate: bool) uses input => |g, x| g * gelu_grad(x, approximate);
    /// Clamps into `[lo, hi]`: `out = min(max(x, lo), hi)`; `dx = g` where `lo <= x <= hi`, else 0.
    clip(lo: f32, hi: f32) uses input => |g, x| if x >= lo && x <= hi { g } else { 0.0 };
}
