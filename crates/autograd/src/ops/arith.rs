//! Broadcasting arithmetic and scalar operations.

use gradus_tensor::Tensor;

use super::zip3;
use crate::error::Result;
use crate::var::Var;

/// The shape a gradient of `x` must be summed back to: `None` when `x` already has the output's
/// shape (no broadcasting), so that the common case captures nothing.
fn target_shape(x: &Tensor, out: &Tensor) -> Option<Vec<usize>> {
    (x.shape() != out.shape()).then(|| x.shape().to_vec())
}

/// `g` summed back to `shape` (see [`target_shape`]) when `need`.
fn reduced(need: bool, g: Result<Tensor>, shape: &Option<Vec<usize>>) -> Result<Option<Tensor>> {
    if !need {
        return Ok(None);
    }
    match shape {
        None => Ok(Some(g?)),
        Some(s) => Ok(Some(g?.sum_to_shape(s)?)),
    }
}

impl<'t> Var<'t> {
    /// Elementwise sum with broadcasting: `out = a + b`; `da = sum_to(g)`, `db = sum_to(g)`.
    ///
    /// Shapes broadcast by NumPy's rules; each gradient is summed back to its operand's shape.
    ///
    /// # Errors
    /// A tensor error naming both shapes when they do not broadcast;
    /// [`ForeignTape`](crate::AutogradError::ForeignTape) when the operands are on different tapes.
    pub fn add(&self, other: &Var<'t>) -> Result<Var<'t>> {
        self.binary("add", other, Tensor::add, |a, b, out| {
            let (sa, sb) = (target_shape(a, out), target_shape(b, out));
            move |g, needs| {
                Ok(vec![
                    reduced(needs[0], Ok(g.clone()), &sa)?,
                    reduced(needs[1], Ok(g.clone()), &sb)?,
                ])
            }
        })
    }

    /// Elementwise difference with broadcasting: `out = a - b`; `da = g`, `db = -g` (reduced).
    ///
    /// # Errors
    /// As [`add`](Var::add).
    pub fn sub(&self, other: &Var<'t>) -> Result<Var<'t>> {
        self.binary("sub", other, Tensor::sub, |a, b, out| {
            let (sa, sb) = (target_shape(a, out), target_shape(b, out));
            move |g, needs| {
                let db = reduced(needs[1], Ok(g.clone()), &sb)?.map(|d| d.neg());
                Ok(vec![reduced(needs[0], Ok(g.clone()), &sa)?, db])
            }
        })
    }

    /// Elementwise product with broadcasting: `out = a * b`; `da = g b`, `db = g a` (reduced).
    ///
    /// # Errors
    /// As [`add`](Var::add).
    pub fn mul(&self, other: &Var<'t>) -> Result<Var<'t>> {
        self.binary("mul", other, Tensor::mul, |a, b, out| {
            let (sa, sb) = (target_shape(a, out), target_shape(b, out));
            let (a, b) = (a.clone(), b.clone());
            move |g, needs| {
                Ok(vec![
                    reduced(needs[0], g.mul(&b).map_err(Into::into), &sa)?,
                    reduced(needs[1], g.mul(&a).map_err(Into::into), &sb)?,
                ])
            }
        })
    }

    /// Elementwise quotient with broadcasting: `out = a / b`; `da = g / b`,
    /// `db = -g a / b^2 = -g out / b` (reduced).
    ///
    /// # Errors
    /// As [`add`](Var::add).
    pub fn div(&self, other: &Var<'t>) -> Result<Var<'t>> {
        self.binary("div", other, Tensor::div, |a, b, out| {
            let (sa, b, out) = (target_shape(a, out), b.clone(), out.clone());
            move |g, needs| {
                let db = if needs[1] {
                    Some(g.mul(&out)?.div(&b)?.sum_to_shape(b.shape())?.neg())
                } else {
                    None
                };
                Ok(vec![
                    reduced(needs[0], g.div(&b).map_err(Into::into), &sa)?,
                    db,
                ])
            }
        })
    }

    /// Elementwise maximum with broadcasting: `out = max(a, b)`; the gradient goes to `a` where
    /// `a >= b` (ties to `a`, as TensorFlow) and to `b` elsewhere.
    ///
    /// # Errors
    /// As [`add`](Var::add).
    pub fn maximum(&self, other: &Var<'t>) -> Result<Var<'t>> {
        self.binary("maximum", other, Tensor::maximum, |a, b, _| {
            let (a, b) = (a.clone(), b.clone());
            move |g, needs| select_grads(g, &a, &b, needs, Tensor::ge)
        })
    }

    /// Elementwise minimum with broadcasting: `out = min(a, b)`; the gradient goes to `a` where
    /// `a <= b` (ties to `a`) and to `b` elsewhere.
    ///
    /// # Errors
    /// As [`add`](Var::add).
    pub fn minimum(&self, other: &Var<'t>) -> Result<Var<'t>> {
        self.binary("minimum", other, Tensor::minimum, |a, b, _| {
            let (a, b) = (a.clone(), b.clone());
            move |g, needs| select_grads(g, &a, &b, needs, Tensor::le)
        })
    }

    /// Elementwise power with broadcasting: `out = a ^ b`; `da = g b a^(b-1)`,
    /// `db = g out ln(a)` where `a > 0` and 0 elsewhere (as TensorFlow), both reduced.
    ///
    /// # Errors
    /// As [`add`](Var::add).
    pub fn pow(&self, other: &Var<'t>) -> Result<Var<'t>> {
        self.binary("pow", other, Tensor::pow, |a, b, out| {
            let (a, b, out) = (a.clone(), b.clone(), out.clone());
            move |g, needs| {
                let da = if needs[0] {
                    let d = a.pow(&b.sub_scalar(1.0))?.mul(&b)?.mul(g)?;
                    Some(d.sum_to_shape(a.shape())?)
                } else {
                    None
                };
                let db = if needs[1] {
                    let ab = a.broadcast_to(out.shape())?;
                    let d = zip3(
                        g,
                        &out,
                        &ab,
                        |g, o, a| if a > 0.0 { g * o * a.ln() } else { 0.0 },
                    );
                    Some(d.sum_to_shape(b.shape())?)
                } else {
                    None
                };
                Ok(vec![da, db])
            }
        })
    }

    /// Adds a scalar: `out = x + s`; `dx = g`.
    pub fn add_scalar(&self, s: f32) -> Var<'t> {
        self.unary("add_scalar", self.value().add_scalar(s), |_, _| {
            |g: &Tensor| Ok(g.clone())
        })
    }

    /// Subtracts a scalar: `out = x - s`; `dx = g`.
    pub fn sub_scalar(&self, s: f32) -> Var<'t> {
        self.unary("sub_scalar", self.value().sub_scalar(s), |_, _| {
            |g: &Tensor| Ok(g.clone())
        })
    }

    /// Subtracts from a scalar: `out = s - x`; `dx = -g`.
    pub fn rsub_scalar(&self, s: f32) -> Var<'t> {
        self.unary("rsub_scalar", self.value().rsub_scalar(s), |_, _| {
            |g: &Tensor| Ok(g.neg())
        })
    }

    /// Multiplies by a scalar: `out = s x`; `dx = s g`.
    pub fn mul_scalar(&self, s: f32) -> Var<'t> {
        self.unary("mul_scalar", self.value().mul_scalar(s), move |_, _| {
            move |g: &Tensor| Ok(g.mul_scalar(s))
        })
    }

    /// Divides by a scalar: `out = x / s`; `dx = g / s`.
    pub fn div_scalar(&self, s: f32) -> Var<'t> {
        self.unary("div_scalar", self.value().div_scalar(s), move |_, _| {
            move |g: &Tensor| Ok(g.div_scalar(s))
        })
    }

    /// Raises to a scalar power: `out = x ^ p`; `dx = g p x^(p-1)`.
    pub fn powf(&self, p: f32) -> Var<'t> {
        self.unary("powf", self.value().powf(p), move |x, _| {
            let x = x.clone();
            move |g: &Tensor| Ok(super::zip2(g, &x, |g, x| g * p * x.powf(p - 1.0)))
        })
    }
}

/// Gradients of `maximum`/`minimum`: `g` where `pick(a, b)` holds goes to `a`, the rest to `b`.
fn select_grads(
    g: &Tensor,
    a: &Tensor,
    b: &Tensor,
    needs: &[bool],
    pick: fn(&Tensor, &Tensor) -> gradus_tensor::Result<Tensor>,
) -> Result<Vec<Option<Tensor>>> {
    let mask = pick(a, b)?; // 1 where the output came from `a`, broadcast shape
    let da = if needs[0] {
        Some(g.mul(&mask)?.sum_to_shape(a.shape())?)
    } else {
        None
    };
    let db = if needs[1] {
        Some(g.mul(&mask.rsub_scalar(1.0))?.sum_to_shape(b.shape())?)
    } else {
        None
    };
    Ok(vec![da, db])
}
