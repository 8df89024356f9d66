//! Weight regularizers: penalties added to the training loss.

use std::fmt;

use gradus_autograd::Var;
use gradus_tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{LayerError, Result, invalid};

/// L1 penalty: `l1 * sum(|w|)`. Keras' default factor is 0.01.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct L1 {
    /// The factor.
    pub l1: f32,
}

/// L2 penalty: `l2 * sum(w^2)` (no 1/2). Keras' default factor is 0.01.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct L2 {
    /// The factor.
    pub l2: f32,
}

/// Both penalties: `l1 * sum(|w|) + l2 * sum(w^2)`. As Keras' `L1L2` class, both factors
/// default to 0; [`L1L2::default_factors`] gives Keras' `l1_l2()` shortcut values of 0.01.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct L1L2 {
    /// The L1 factor.
    #[serde(default)]
    pub l1: f32,
    /// The L2 factor.
    #[serde(default)]
    pub l2: f32,
}

impl L1 {
    /// `l1 * sum(|w|)`.
    pub fn new(l1: f32) -> L1 {
        L1 { l1 }
    }
}

impl Default for L1 {
    fn default() -> Self {
        L1 { l1: 0.01 }
    }
}

impl L2 {
    /// `l2 * sum(w^2)`.
    pub fn new(l2: f32) -> L2 {
        L2 { l2 }
    }
}

impl Default for L2 {
    fn default() -> Self {
        L2 { l2: 0.01 }
    }
}

impl L1L2 {
    /// `l1 * sum(|w|) + l2 * sum(w^2)`.
    pub fn new(l1: f32, l2: f32) -> L1L2 {
        L1L2 { l1, l2 }
    }

    /// Both factors 0.01.
    pub fn default_factors() -> L1L2 {
        L1L2 { l1: 0.01, l2: 0.01 }
    }
}

/// A weight regularizer: one of [`L1`], [`L2`], [`L1L2`], by value or by Keras' name (`"l1"`,
/// `"l2"`, `"l1_l2"`, each with factor 0.01).
///
/// Serialized as Keras does: `{"class_name": "L2", "config": {"l2": 0.01}}`.
///
/// ```
/// use gradus_autograd::{Tape, Variable};
/// use gradus_layers::{L2, Regularizer};
/// use gradus_tensor::Tensor;
///
/// let w = Variable::new("w", Tensor::from_vec(vec![1.0, -2.0], &[2])?);
/// let reg = Regularizer::from(L2::new(0.5));
/// assert_eq!(reg.value(&w.value())?, 2.5); // 0.5 * (1 + 4)
///
/// let tape = Tape::new();
/// let loss = reg.loss(&tape.watch(&w))?;
/// assert_eq!(tape.gradient(&loss, &[&w])?[0].to_vec(), vec![1.0, -2.0]); // 2 * 0.5 * w
/// # Ok::<(), gradus_layers::LayerError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "class_name", content = "config")]
pub enum Regularizer {
    /// `l1 * sum(|w|)`.
    L1(L1),
    /// `l2 * sum(w^2)`.
    L2(L2),
    /// `l1 * sum(|w|) + l2 * sum(w^2)`.
    L1L2(L1L2),
}

impl Regularizer {
    /// The regularizer Keras calls `name`, with factor 0.01.
    ///
    /// # Errors
    /// [`LayerError::UnknownName`] listing the known names.
    pub fn from_name(name: &str) -> Result<Regularizer> {
        Ok(match name {
            "l1" | "L1" => L1::default().into(),
            "l2" | "L2" => L2::default().into(),
            "l1_l2" | "l1l2" | "L1L2" => L1L2::default_factors().into(),
            _ => {
                return Err(LayerError::UnknownName {
                    kind: "regularizer",
                    name: name.to_string(),
                    expected: "l1, l2, l1_l2".to_string(),
                });
            }
        })
    }

    /// The `(l1, l2)` factors.
    pub fn factors(&self) -> (f32, f32) {
        match *self {
            Regularizer::L1(L1 { l1 }) => (l1, 0.0),
            Regularizer::L2(L2 { l2 }) => (0.0, l2),
            Regularizer::L1L2(L1L2 { l1, l2 }) => (l1, l2),
        }
    }

    /// Checks that the factors are finite and not negative.
    ///
    /// # Errors
    /// [`LayerError::InvalidArgument`] naming the factor that came.
    pub fn validate(&self) -> Result<()> {
        let (l1, l2) = self.factors();
        for (name, v) in [("l1", l1), ("l2", l2)] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(invalid(
                    format!("regularizer {self}"),
                    format!("expected a finite factor {name} >= 0, got {v}"),
                ));
            }
        }
        Ok(())
    }

    /// The penalty of `w` as a differentiable value: `l1 sum|w| + l2 sum w^2` (terms with a
    /// zero factor are left out, as Keras). Scalar output.
    ///
    /// # Errors
    /// Invalid factors (see [`validate`](Self::validate)).
    pub fn loss<'t>(&self, w: &Var<'t>) -> Result<Var<'t>> {
        self.validate()?;
        let (l1, l2) = self.factors();
        let t1 = (l1 != 0.0).then(|| w.abs().sum_all().mul_scalar(l1));
        let t2 = (l2 != 0.0).then(|| w.square().sum_all().mul_scalar(l2));
        Ok(match (t1, t2) {
            (Some(a), Some(b)) => a.add(&b)?,
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => w.lift(Tensor::scalar(0.0)),
        })
    }

    /// The penalty of `w` as a number (see [`loss`](Self::loss)).
    ///
    /// # Errors
    /// Invalid factors.
    pub fn value(&self, w: &Tensor) -> Result<f32> {
        Ok(self.loss(&Var::constant(w.clone()))?.item()?)
    }
}

impl fmt::Display for Regularizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Regularizer::L1(r) => write!(f, "L1(l1={})", r.l1),
            Regularizer::L2(r) => write!(f, "L2(l2={})", r.l2),
            Regularizer::L1L2(r) => write!(f, "L1L2(l1={}, l2={})", r.l1, r.l2),
        }
    }
}

impl From<L1> for Regularizer {
    fn from(r: L1) -> Self {
        Regularizer::L1(r)
    }
}

impl From<L2> for Regularizer {
    fn from(r: L2) -> Self {
        Regularizer::L2(r)
    }
}

impl From<L1L2> for Regularizer {
    fn from(r: L1L2) -> Self {
        Regularizer::L1L2(r)
    }
}

impl TryFrom<&str> for Regularizer {
    type Error = LayerError;
    fn try_from(s: &str) -> Result<Self> {
        Regularizer::from_name(s)
    }
}

impl std::str::FromStr for Regularizer {
    type Err = LayerError;
    fn from_str(s: &str) -> Result<Self> {
        Regularizer::from_name(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keras_serialization() {
        let v = serde_json::to_value(Regularizer::from(L2::new(0.5))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"class_name": "L2", "config": {"l2": 0.5}})
        );
        let r: Regularizer = serde_json::from_value(
            serde_json::json!({"class_name": "L1L2", "config": {"l1": 0.1}}),
        )
        .unwrap();
        assert_eq!(r, L1L2::new(0.1, 0.0).into());
    }

    #[test]
    fn names_and_errors() {
        assert_eq!(Regularizer::from_name("l2").unwrap(), L2::new(0.01).into());
        assert!(Regularizer::from_name("l3").is_err());
        let e = Regularizer::from(L1::new(-1.0)).validate().unwrap_err();
        assert!(e.to_string().contains("-1"), "{e}");
    }
}
