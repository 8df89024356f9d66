//! Activation functions by name and as values.

use std::fmt;
use std::str::FromStr;

use gradus_autograd::Var;
use serde::{Deserialize, Serialize};

use crate::error::{LayerError, Result};
use crate::fastmath;

/// An activation function, applied elementwise (softmax: along the last axis).
///
/// By value (`Activation::Relu`) or by Keras' name (`"relu".parse()`, or a `&str` wherever a layer
/// takes an activation). Parameters take Keras' defaults when named: `elu` has `alpha = 1`,
/// `leaky_relu` has `negative_slope = 0.2`, `gelu` is the exact (erf) form.
///
/// ```
/// use gradus_layers::Activation;
///
/// let a: Activation = "softmax".parse()?;
/// assert_eq!(a, Activation::Softmax);
/// assert_eq!(a.name(), "softmax");
/// assert!("swishy".parse::<Activation>().is_err());
/// # Ok::<(), gradus_layers::LayerError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "ActivationRepr", into = "ActivationRepr")]
pub enum Activation {
    /// `f(x) = x`.
    #[default]
    Linear,
    /// `f(x) = max(x, 0)`.
    Relu,
    /// `f(x) = 1 / (1 + e^-x)`.
    Sigmoid,
    /// `f(x) = tanh x`.
    Tanh,
    /// `f(x)_i = e^{x_i} / sum_j e^{x_j}` over the last axis.
    Softmax,
    /// `f(x) = ln(1 + e^x)`.
    Softplus,
    /// `f(x) = x` for `x > 0`, else `alpha (e^x - 1)`.
    Elu {
        /// The scale of the negative part (Keras: 1.0).
        alpha: f32,
    },
    /// `f(x) = x Phi(x)` (exact, erf form) or its tanh approximation.
    Gelu {
        /// Whether to use the tanh approximation (Keras: false).
        approximate: bool,
    },
    /// `f(x) = x` for `x >= 0`, else `negative_slope x`.
    LeakyRelu {
        /// The slope of the negative part (Keras: 0.2).
        negative_slope: f32,
    },
}

const NAMES: &str = "linear, relu, sigmoid, tanh, softmax, softplus, elu, gelu, leaky_relu";

impl Activation {
    /// The activation Keras calls `name` (with Keras' default parameters).
    ///
    /// # Errors
    /// [`LayerError::UnknownName`] listing the known names.
    pub fn from_name(name: &str) -> Result<Activation> {
        Ok(match name {
            "linear" | "None" | "none" => Activation::Linear,
            "relu" => Activation::Relu,
            "sigmoid" => Activation::Sigmoid,
            "tanh" => Activation::Tanh,
            "softmax" => Activation::Softmax,
            "softplus" => Activation::Softplus,
            "elu" => Activation::Elu { alpha: 1.0 },
            "gelu" => Activation::Gelu { approximate: false },
            "leaky_relu" => Activation::LeakyRelu {
                negative_slope: 0.2,
            },
            _ => {
                return Err(LayerError::UnknownName {
                    kind: "activation",
                    name: name.to_string(),
                    expected: NAMES.to_string(),
                });
            }
        })
    }

    /// Keras' name of the activation.
    pub fn name(&self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Softmax => "softmax",
            Activation::Softplus => "softplus",
            Activation::Elu { .. } => "elu",
            Activation::Gelu { .. } => "gelu",
            Activation::LeakyRelu { .. } => "leaky_relu",
        }
    }

    /// Applies the activation to `x` (any shape; softmax along the last axis), recorded on `x`'s
    /// tape when `x` is tracked.
    ///
    /// # Errors
    /// Softmax of a scalar (no last axis).
    pub fn apply<'t>(&self, x: &Var<'t>) -> Result<Var<'t>> {
        Ok(match *self {
            Activation::Linear => x.clone(),
            Activation::Relu => x.relu(),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Tanh => x.tanh(),
            Activation::Softmax => x.softmax(-1)?,
            Activation::Softplus => x.softplus(),
            Activation::Elu { alpha } => x.elu(alpha),
            Activation::Gelu { approximate } => x.gelu(approximate),
            Activation::LeakyRelu { negative_slope } => x.leaky_relu(negative_slope),
        })
    }

    /// Whether the activation's derivative can be computed from its output alone, so that a
    /// layer can fuse it into its own kernel ([`forward_rows`](Self::forward_rows) and
    /// [`backward_rows`](Self::backward_rows)).
    pub(crate) fn fusable(&self) -> bool {
        matches!(
            self,
            Activation::Linear
                | Activation::Relu
                | Activation::Sigmoid
                | Activation::Tanh
                | Activation::Softmax
        )
    }

    /// Applies a [fusable](Self::fusable) activation in place to rows of `width` values.
    pub(crate) fn forward_rows(&self, y: &mut [f32], width: usize) {
        match self {
            Activation::Relu => y.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::Sigmoid => y.iter_mut().for_each(|v| *v = fastmath::sigmoid(*v)),
            Activation::Tanh => y.iter_mut().for_each(|v| *v = fastmath::tanh(*v)),
            Activation::Softmax if width > 0 => {
                for row in y.chunks_exact_mut(width) {
                    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut sum = 0.0f32;
                    for v in row.iter_mut() {
                        *v = fastmath::exp(*v - max);
                        sum += *v;
                    }
                    let inv = 1.0 / sum;
                    row.iter_mut().for_each(|v| *v *= inv);
                }
            }
            _ => {}
        }
    }

    /// The gradient with respect to the pre-activation of a [fusable](Self::fusable)
    /// activation, `dz = g f'(z)`, from its output `y` and the output gradient `g` (rows of
    /// `width`), written into `dz` (same length; its old contents are ignored).
    pub(crate) fn backward_rows(&self, y: &[f32], g: &[f32], width: usize, dz: &mut [f32]) {
        fn map(y: &[f32], g: &[f32], dz: &mut [f32], f: impl Fn(f32, f32) -> f32) {
            for ((d, &g), &y) in dz.iter_mut().zip(g).zip(y) {
                *d = f(y, g);
            }
        }
        // The elementwise rules in one pass (the same expressions as in place).
        match self {
            Activation::Relu => return map(y, g, dz, |y, g| if y > 0.0 { g } else { 0.0 }),
            Activation::Sigmoid => return map(y, g, dz, |y, g| g * y * (1.0 - y)),
            Activation::Tanh => return map(y, g, dz, |y, g| g * (1.0 - y * y)),
            _ => {}
        }
        // In cache-sized pieces of whole rows: copy `g`, then apply the rule in place.
        let piece = width.max(1) * (4096 / width.max(1)).max(1);
        for ((d, g), y) in dz
            .chunks_mut(piece)
            .zip(g.chunks(piece))
            .zip(y.chunks(piece))
        {
            d.copy_from_slice(g);
            self.backward_rows_in_place(y, width, d);
        }
    }

    /// [`backward_rows`](Self::backward_rows) in place: `g` holds the output gradient on entry
    /// and `dz` on return.
    pub(crate) fn backward_rows_in_place(&self, y: &[f32], width: usize, g: &mut [f32]) {
        fn map(y: &[f32], g: &mut [f32], f: impl Fn(f32, f32) -> f32) {
            for (g, &y) in g.iter_mut().zip(y) {
                *g = f(y, *g);
            }
        }
        match self {
            Activation::Relu => map(y, g, |y, g| if y > 0.0 { g } else { 0.0 }),
            Activation::Sigmoid => map(y, g, |y, g| g * y * (1.0 - y)),
            Activation::Tanh => map(y, g, |y, g| g * (1.0 - y * y)),
            Activation::Softmax if width > 0 => {
                for (g, y) in g.chunks_exact_mut(width).zip(y.chunks_exact(width)) {
                    let dot: f32 = g.iter().zip(y).map(|(g, y)| g * y).sum();
                    for (g, &y) in g.iter_mut().zip(y) {
                        *g = y * (*g - dot);
                    }
                }
            }
            _ => {}
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Activation {
    type Err = LayerError;
    fn from_str(s: &str) -> Result<Self> {
        Activation::from_name(s)
    }
}

impl TryFrom<&str> for Activation {
    type Error = LayerError;
    fn try_from(s: &str) -> Result<Self> {
        Activation::from_name(s)
    }
}

impl TryFrom<String> for Activation {
    type Error = LayerError;
    fn try_from(s: String) -> Result<Self> {
        Activation::from_name(&s)
    }
}

/// The serialized form: Keras' name, or the name with its parameters when they differ from
/// Keras' defaults.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ActivationRepr {
    /// `null`, as Keras' `activation=None`.
    Null,
    Name(String),
    WithArgs {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        alpha: Option<f32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        negative_slope: Option<f32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        approximate: Option<bool>,
    },
}

impl From<Activation> for ActivationRepr {
    fn from(a: Activation) -> Self {
        let name = a.name().to_string();
        match a {
            Activation::Elu { alpha } if alpha != 1.0 => ActivationRepr::WithArgs {
                name,
                alpha: Some(alpha),
                negative_slope: None,
                approximate: None,
            },
            Activation::LeakyRelu { negative_slope } if negative_slope != 0.2 => {
                ActivationRepr::WithArgs {
                    name,
                    alpha: None,
                    negative_slope: Some(negative_slope),
                    approximate: None,
                }
            }
            Activation::Gelu { approximate: true } => ActivationRepr::WithArgs {
                name,
                alpha: None,
                negative_slope: None,
                approximate: Some(true),
            },
            _ => ActivationRepr::Name(name),
        }
    }
}

impl TryFrom<ActivationRepr> for Activation {
    type Error = LayerError;
    fn try_from(r: ActivationRepr) -> Result<Self> {
        match r {
            ActivationRepr::Null => Ok(Activation::Linear),
            ActivationRepr::Name(n) => Activation::from_name(&n),
            ActivationRepr::WithArgs {
                name,
                alpha,
                negative_slope,
                approximate,
            } => Ok(match Activation::from_name(&name)? {
                Activation::Elu { alpha: a } => Activation::Elu {
                    alpha: alpha.unwrap_or(a),
                },
                Activation::LeakyRelu { negative_slope: s } => Activation::LeakyRelu {
                    negative_slope: negative_slope.unwrap_or(s),
                },
                Activation::Gelu { approximate: a } => Activation::Gelu {
                    approximate: approximate.unwrap_or(a),
                },
                other => other,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradus_tensor::Tensor;

    const ALL: [Activation; 9] = [
        Activation::Linear,
        Activation::Relu,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Softmax,
        Activation::Softplus,
        Activation::Elu { alpha: 1.0 },
        Activation::Gelu { approximate: false },
        Activation::LeakyRelu {
            negative_slope: 0.2,
        },
    ];

    #[test]
    fn names_round_trip() {
        for a in ALL {
            assert_eq!(Activation::from_name(a.name()).unwrap(), a);
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(json, format!("\"{}\"", a.name()));
            assert_eq!(serde_json::from_str::<Activation>(&json).unwrap(), a);
        }
        let a = Activation::LeakyRelu {
            negative_slope: 0.1,
        };
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Activation>(&json).unwrap(), a);
    }

    #[test]
    fn unknown_name_lists_the_known_ones() {
        let e = Activation::from_name("swish2").unwrap_err().to_string();
        assert!(e.contains("swish2") && e.contains("leaky_relu"), "{e}");
    }

    #[test]
    fn fused_rows_agree_with_the_autograd_ops() {
        let x = Tensor::from_vec(
            vec![
                -2.0, -0.5, 0.25, 1.5, 3.0, -1.0, 0.0, 0.7, -0.3, 2.2, 0.1, -4.0,
            ],
            &[3, 4],
        )
        .unwrap();
        for a in ALL.into_iter().filter(Activation::fusable) {
            let want = a.apply(&Var::constant(x.clone())).unwrap().into_value();
            let mut got = x.to_vec();
            a.forward_rows(&mut got, 4);
            let err = got
                .iter()
                .zip(want.to_vec())
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(err < 1e-6, "{a}: {err}");
        }
    }
}
