//! The update rules: one hyperparameter struct per Keras optimizer (Keras' defaults in
//! `Default`) and the fused kernels that apply them.
//!
//! Notation in the formulas: `t = iterations + 1`, `lr` the learning rate in force, `g` the
//! gradient after the shared options (unscaling, accumulation, clipping), `var` the parameter
//! after weight decay. Slots start at zero unless stated. All arithmetic is `f32`, in the order
//! Keras (TensorFlow backend) uses, so results match Keras to rounding.

use serde::{Deserialize, Serialize};

use crate::error::{Result, check};

fn unit_open(name: &'static str, v: f64) -> Result<()> {
    check(name, v, "a number in [0, 1)", |v| (0.0..1.0).contains(&v))
}
fn non_negative(name: &'static str, v: f64) -> Result<()> {
    check(name, v, "a finite number >= 0", |v| v >= 0.0)
}
fn positive(name: &'static str, v: f64) -> Result<()> {
    check(name, v, "a finite number > 0", |v| v > 0.0)
}

/// Stochastic gradient descent, optionally with (Nesterov) momentum. Keras default learning
/// rate 0.01.
///
/// No momentum: `var -= lr * g`. Else `m = momentum * m - lr * g`, then `var += m`, or with
/// Nesterov `var += momentum * m - lr * g`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sgd {
    /// Momentum in `[0, 1)`; 0 disables it (and its slot).
    pub momentum: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd {
            momentum: 0.0,
            nesterov: false,
        }
    }
}

/// RMSprop. Keras default learning rate 1e-3.
///
/// `v = rho v + (1 - rho) g^2`; centered: `a = rho a + (1 - rho) g`, `den = v - a^2 + eps`, else
/// `den = v + eps`; `inc = lr g / sqrt(den)`; with momentum `b = momentum b + inc; var -= b`,
/// else `var -= inc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RmsProp {
    /// Discount factor in `[0, 1)` (0.9).
    pub rho: f64,
    /// Momentum in `[0, 1)` (0).
    pub momentum: f64,
    /// Epsilon (1e-7).
    pub epsilon: f64,
    /// Normalize by the centered second moment.
    pub centered: bool,
}

impl Default for RmsProp {
    fn default() -> Self {
        RmsProp {
            rho: 0.9,
            momentum: 0.0,
            epsilon: 1e-7,
            centered: false,
        }
    }
}

/// Adam (and AdamW, which is Adam with `weight_decay = 0.004` by default). Keras default
/// learning rate 1e-3.
///
/// `alpha = lr sqrt(1 - b2^t) / (1 - b1^t)`; `m += (g - m)(1 - b1)`; `v += (g^2 - v)(1 - b2)`;
/// amsgrad: `vhat = max(vhat, v)`, used in place of `v`; `var -= m alpha / (sqrt(v) + eps)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Adam {
    /// First-moment decay in `[0, 1)` (0.9).
    pub beta_1: f64,
    /// Second-moment decay in `[0, 1)` (0.999).
    pub beta_2: f64,
    /// Epsilon (1e-7).
    pub epsilon: f64,
    /// Use the running maximum of the second moment.
    pub amsgrad: bool,
}

impl Default for Adam {
    fn default() -> Self {
        Adam {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
            amsgrad: false,
        }
    }
}

/// Adadelta. Keras default learning rate 1e-3.
///
/// `Eg = rho Eg + (1 - rho) g^2`; `d = -sqrt(Ed + eps) g / sqrt(Eg + eps)` (previous `Ed`);
/// `Ed = rho Ed + (1 - rho) d^2`; `var += lr d`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Adadelta {
    /// Decay in `[0, 1)` (0.95).
    pub rho: f64,
    /// Epsilon (1e-7).
    pub epsilon: f64,
}

impl Default for Adadelta {
    fn default() -> Self {
        Adadelta {
            rho: 0.95,
            epsilon: 1e-7,
        }
    }
}

/// Adagrad. Keras default learning rate 1e-3.
///
/// `acc += g^2` (starting at `initial_accumulator_value`); `var -= lr g / sqrt(acc + eps)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Adagrad {
    /// Starting value of the accumulator, >= 0 (0.1).
    pub initial_accumulator_value: f64,
    /// Epsilon (1e-7).
    pub epsilon: f64,
}

impl Default for Adagrad {
    fn default() -> Self {
        Adagrad {
            initial_accumulator_value: 0.1,
            epsilon: 1e-7,
        }
    }
}

/// Adamax, Adam with the infinity norm. Keras default learning rate 1e-3.
///
/// `m += (g - m)(1 - b1)`; `u = max(b2 u, |g|)`; `var -= lr m / ((1 - b1^t)(u + eps))`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Adamax {
    /// First-moment decay in `[0, 1)` (0.9).
    pub beta_1: f64,
    /// Norm decay in `[0, 1)` (0.999).
    pub beta_2: f64,
    /// Epsilon (1e-7).
    pub epsilon: f64,
}

impl Default for Adamax {
    fn default() -> Self {
        Adamax {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
        }
    }
}

/// Nadam, Adam with Nesterov momentum. Keras default learning rate 1e-3.
///
/// `mu_t = b1 (1 - 0.5 * 0.96^t)`, `mu_t1 = b1 (1 - 0.5 * 0.96^(t+1))`; once per step the
/// scalar slot `U *= b1 (1 - 0.5 * 0.96^t)` (starts at 1); m, v as Adam;
/// `mhat = mu_t1 m / (1 - U mu_t1) + (1 - mu_t) g / (1 - U)`; `vhat = v / (1 - b2^t)`;
/// `var -= lr mhat / (sqrt(vhat) + eps)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Nadam {
    /// First-moment decay in `[0, 1)` (0.9).
    pub beta_1: f64,
    /// Second-moment decay in `[0, 1)` (0.999).
    pub beta_2: f64,
    /// Epsilon (1e-7).
    pub epsilon: f64,
}

impl Default for Nadam {
    fn default() -> Self {
        Nadam {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
        }
    }
}

/// FTRL-proximal. Keras default learning rate 1e-3.
///
/// `l2' = l2 + beta / (2 lr)`; `gs = g + 2 l2_shrinkage var`; `n' = n + g^2`;
/// `z += gs - (n'^(-p) - n^(-p)) / lr * var`; `q = n'^(-p) / lr + 2 l2'`;
/// `var = (clip(z, -l1, l1) - z) / q`; `n = n'` (`n` starts at `initial_accumulator_value`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ftrl {
    /// `p`, <= 0 (-0.5).
    pub learning_rate_power: f64,
    /// Starting value of `n`, >= 0 (0.1).
    pub initial_accumulator_value: f64,
    /// L1 strength, >= 0.
    pub l1_regularization_strength: f64,
    /// L2 strength, >= 0.
    pub l2_regularization_strength: f64,
    /// L2 shrinkage strength, >= 0.
    pub l2_shrinkage_regularization_strength: f64,
    /// Beta of the paper, >= 0.
    pub beta: f64,
}

impl Default for Ftrl {
    fn default() -> Self {
        Ftrl {
            learning_rate_power: -0.5,
            initial_accumulator_value: 0.1,
            l1_regularization_strength: 0.0,
            l2_regularization_strength: 0.0,
            l2_shrinkage_regularization_strength: 0.0,
            beta: 0.0,
        }
    }
}

/// Lion. Keras default learning rate 1e-3.
///
/// `var -= lr sign(b1 m + (1 - b1) g)`; then `m = b2 m + (1 - b2) g`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Lion {
    /// Interpolation factor in `(0, 1]` (0.9).
    pub beta_1: f64,
    /// Momentum decay in `[0, 1)` (0.99).
    pub beta_2: f64,
}

impl Default for Lion {
    fn default() -> Self {
        Lion {
            beta_1: 0.9,
            beta_2: 0.99,
        }
    }
}

/// Lamb, Adam with a layer-wise trust ratio. Keras default learning rate 1e-3.
///
/// m, v as Adam; `r = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`;
/// `ratio = ||var|| / ||r||` when both are > 0, else 1; `var -= ratio lr r`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Lamb {
    /// First-moment decay in `[0, 1)` (0.9).
    pub beta_1: f64,
    /// Second-moment decay in `[0, 1)` (0.999).
    pub beta_2: f64,
    /// Epsilon (1e-7).
    pub epsilon: f64,
}

impl Default for Lamb {
    fn default() -> Self {
        Lamb {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
        }
    }
}

/// Adafactor, with factored second moments for parameters of rank >= 2 (the last two axes).
/// Keras default learning rate 1e-3.
///
/// With a constant learning rate and `relative_step`: `lr = min(lr, 1/sqrt(t))`;
/// `rho = min(lr, 1/sqrt(t))`; `alpha = max(eps2, rms(var)) rho`; `G = g^2 + eps1`;
/// `b = 1 - t^decay`; rank >= 2: `r = b r + (1-b) mean(G, -1)`, `c = b c + (1-b) mean(G, -2)`,
/// `v = (r / mean(r, -1))[..., None] * c[..., None, :]`; else `v = b v + (1-b) G`;
/// `u = g / sqrt(v)`; `u /= max(1, rms(u) / clip_threshold)`; `var -= alpha u`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Adafactor {
    /// Decay exponent of `beta_2` (-0.8).
    pub beta_2_decay: f64,
    /// Added to squared gradients (1e-30).
    pub epsilon_1: f64,
    /// Floor of the parameter scale (1e-3).
    pub epsilon_2: f64,
    /// Threshold of the update's RMS (1.0).
    pub clip_threshold: f64,
    /// Cap a constant learning rate at `1/sqrt(t)`.
    pub relative_step: bool,
}

impl Default for Adafactor {
    fn default() -> Self {
        Adafactor {
            beta_2_decay: -0.8,
            epsilon_1: 1e-30,
            epsilon_2: 1e-3,
            clip_threshold: 1.0,
            relative_step: true,
        }
    }
}

/// The update rule of an optimizer, tagged with its Keras class name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "class_name", content = "config")]
pub enum Rule {
    /// [`Sgd`].
    #[serde(rename = "SGD")]
    Sgd(Sgd),
    /// [`RmsProp`].
    #[serde(rename = "RMSprop")]
    RmsProp(RmsProp),
    /// [`Adam`].
    Adam(Adam),
    /// [`Adam`] with decoupled weight decay 0.004 by default.
    AdamW(Adam),
    /// [`Adadelta`].
    Adadelta(Adadelta),
    /// [`Adagrad`].
    Adagrad(Adagrad),
    /// [`Adamax`].
    Adamax(Adamax),
    /// [`Nadam`].
    Nadam(Nadam),
    /// [`Ftrl`].
    Ftrl(Ftrl),
    /// [`Lion`].
    Lion(Lion),
    /// [`Lamb`].
    Lamb(Lamb),
    /// [`Adafactor`].
    Adafactor(Adafactor),
}

macro_rules! into_rule {
    ($($t:ident => $v:ident),*) => {$(
        impl From<$t> for Rule {
            fn from(r: $t) -> Self { Rule::$v(r) }
        }
    )*};
}
into_rule!(Sgd => Sgd, RmsProp => RmsProp, Adam => Adam, Adadelta => Adadelta,
    Adagrad => Adagrad, Adamax => Adamax, Nadam => Nadam, Ftrl => Ftrl, Lion => Lion,
    Lamb => Lamb, Adafactor => Adafactor);

/// The Keras names understood by [`Rule::from_name`].
pub const OPTIMIZER_NAMES: &str =
    "sgd, rmsprop, adam, adamw, adadelta, adagrad, adamax, nadam, ftrl, lion, lamb, adafactor";

/// How a slot's shape follows its parameter's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotShape {
    /// The parameter's shape.
    Like,
    /// `shape[..-1]` for rank >= 2, else a scalar (Adafactor's row statistics).
    Rows,
    /// `shape[..-2] + shape[-1]` for rank >= 2, else a scalar (Adafactor's column statistics).
    Cols,
}

impl SlotShape {
    pub(crate) fn of(self, shape: &[usize]) -> Vec<usize> {
        let n = shape.len();
        match self {
            SlotShape::Like => shape.to_vec(),
            _ if n < 2 => Vec::new(),
            SlotShape::Rows => shape[..n - 1].to_vec(),
            SlotShape::Cols => {
                let mut s = shape[..n - 2].to_vec();
                s.push(shape[n - 1]);
                s
            }
        }
    }
}

/// One per-parameter slot: its name suffix (`None`: the parameter's own name, as Adafactor's
/// factored statistics), initial value and shape rule.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotSpec {
    pub suffix: Option<&'static str>,
    pub init: f32,
    pub shape: SlotShape,
}

const fn like(name: &'static str) -> SlotSpec {
    SlotSpec {
        suffix: Some(name),
        init: 0.0,
        shape: SlotShape::Like,
    }
}

impl Rule {
    /// The Keras names [`Rule::from_name`] understands, one per rule, in Keras' documentation
    /// order ([`OPTIMIZER_NAMES`] as a list).
    pub const NAMES: [&'static str; 12] = [
        "sgd",
        "rmsprop",
        "adam",
        "adamw",
        "adadelta",
        "adagrad",
        "adamax",
        "nadam",
        "ftrl",
        "lion",
        "lamb",
        "adafactor",
    ];

    /// The rule with Keras' defaults for a Keras name (`"adam"`, `"SGD"`, `"rmsprop"`, ...;
    /// case-insensitive), and the default learning rate of that optimizer.
    ///
    /// # Errors
    /// [`crate::OptimError::UnknownOptimizer`] for any other name.
    pub fn from_name(name: &str) -> Result<Rule> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "sgd" => Rule::Sgd(Sgd::default()),
            "rmsprop" => Rule::RmsProp(RmsProp::default()),
            "adam" => Rule::Adam(Adam::default()),
            "adamw" => Rule::AdamW(Adam::default()),
            "adadelta" => Rule::Adadelta(Adadelta::default()),
            "adagrad" => Rule::Adagrad(Adagrad::default()),
            "adamax" => Rule::Adamax(Adamax::default()),
            "nadam" => Rule::Nadam(Nadam::default()),
            "ftrl" => Rule::Ftrl(Ftrl::default()),
            "lion" => Rule::Lion(Lion::default()),
            "lamb" => Rule::Lamb(Lamb::default()),
            "adafactor" => Rule::Adafactor(Adafactor::default()),
            _ => {
                return Err(crate::OptimError::UnknownOptimizer {
                    name: name.to_string(),
                    known: OPTIMIZER_NAMES,
                });
            }
        })
    }

    /// Keras' class name (`"Adam"`, `"SGD"`, `"RMSprop"`, ...).
    pub fn class_name(&self) -> &'static str {
        match self {
            Rule::Sgd(_) => "SGD",
            Rule::RmsProp(_) => "RMSprop",
            Rule::Adam(_) => "Adam",
            Rule::AdamW(_) => "AdamW",
            Rule::Adadelta(_) => "Adadelta",
            Rule::Adagrad(_) => "Adagrad",
            Rule::Adamax(_) => "Adamax",
            Rule::Nadam(_) => "Nadam",
            Rule::Ftrl(_) => "Ftrl",
            Rule::Lion(_) => "Lion",
            Rule::Lamb(_) => "Lamb",
            Rule::Adafactor(_) => "Adafactor",
        }
    }

    /// Keras' default learning rate for this optimizer (0.01 for SGD, 1e-3 otherwise).
    pub fn default_learning_rate(&self) -> f32 {
        match self {
            Rule::Sgd(_) => 0.01,
            _ => 0.001,
        }
    }

    /// Checks every hyperparameter.
    ///
    /// # Errors
    /// [`crate::OptimError::InvalidHyperparameter`] naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        match self {
            Rule::Sgd(r) => unit_open("momentum", r.momentum),
            Rule::RmsProp(r) => {
                unit_open("rho", r.rho)?;
                unit_open("momentum", r.momentum)?;
                non_negative("epsilon", r.epsilon)
            }
            Rule::Adam(r) | Rule::AdamW(r) => {
                unit_open("beta_1", r.beta_1)?;
                unit_open("beta_2", r.beta_2)?;
                non_negative("epsilon", r.epsilon)
            }
            Rule::Adadelta(r) => {
                unit_open("rho", r.rho)?;
                non_negative("epsilon", r.epsilon)
            }
            Rule::Adagrad(r) => {
                non_negative("initial_accumulator_value", r.initial_accumulator_value)?;
                non_negative("epsilon", r.epsilon)
            }
            Rule::Adamax(r) => {
                unit_open("beta_1", r.beta_1)?;
                unit_open("beta_2", r.beta_2)?;
                non_negative("epsilon", r.epsilon)
            }
            Rule::Nadam(r) => {
                unit_open("beta_1", r.beta_1)?;
                unit_open("beta_2", r.beta_2)?;
                non_negative("epsilon", r.epsilon)
            }
            Rule::Ftrl(r) => {
                check(
                    "learning_rate_power",
                    r.learning_rate_power,
                    "a finite number <= 0",
                    |v| v <= 0.0,
                )?;
                non_negative("initial_accumulator_value", r.initial_accumulator_value)?;
                non_negative("l1_regularization_strength", r.l1_regularization_strength)?;
                non_negative("l2_regularization_strength", r.l2_regularization_strength)?;
                non_negative(
                    "l2_shrinkage_regularization_strength",
                    r.l2_shrinkage_regularization_strength,
                )?;
                non_negative("beta", r.beta)
            }
            Rule::Lion(r) => {
                check("beta_1", r.beta_1, "a number in (0, 1]", |v| {
                    v > 0.0 && v <= 1.0
                })?;
                unit_open("beta_2", r.beta_2)
            }
            Rule::Lamb(r) => {
                unit_open("beta_1", r.beta_1)?;
                unit_open("beta_2", r.beta_2)?;
                non_negative("epsilon", r.epsilon)
            }
            Rule::Adafactor(r) => {
                check("beta_2_decay", r.beta_2_decay, "a finite number", |_| true)?;
                non_negative("epsilon_1", r.epsilon_1)?;
                non_negative("epsilon_2", r.epsilon_2)?;
                positive("clip_threshold", r.clip_threshold)
            }
        }
    }

    /// The slot groups in Keras order: the slots of one group are interleaved per parameter
    /// (Adam: `v0_momentum, v0_velocity, v1_momentum, ...`), a later group follows.
    pub(crate) fn slot_groups(&self) -> Vec<Vec<SlotSpec>> {
        let init = |name, v: f64| SlotSpec {
            suffix: Some(name),
            init: v as f32,
            shape: SlotShape::Like,
        };
        match self {
            Rule::Sgd(r) if r.momentum != 0.0 => vec![vec![like("momentum")]],
            Rule::Sgd(_) => vec![],
            Rule::RmsProp(r) => {
                let mut g = vec![vec![like("velocity")]];
                if r.momentum > 0.0 {
                    g.push(vec![like("momentum")]);
                }
                if r.centered {
                    g.push(vec![like("average_gradient")]);
                }
                g
            }
            Rule::Adam(r) | Rule::AdamW(r) => {
                let mut g = vec![vec![like("momentum"), like("velocity")]];
                if r.amsgrad {
                    g.push(vec![like("velocity_hat")]);
                }
                g
            }
            Rule::Adadelta(_) => vec![vec![
                like("accumulated_grad"),
                like("accumulated_delta_var"),
            ]],
            Rule::Adagrad(r) => vec![vec![init("accumulator", r.initial_accumulator_value)]],
            Rule::Adamax(_) => vec![vec![like("momentum"), like("norm")]],
            Rule::Nadam(_) | Rule::Lamb(_) => vec![vec![like("momentum"), like("velocity")]],
            Rule::Ftrl(r) => vec![vec![
                init("accumulator", r.initial_accumulator_value),
                like("linear"),
            ]],
            Rule::Lion(_) => vec![vec![like("momentum")]],
            Rule::Adafactor(_) => vec![vec![
                SlotSpec {
                    suffix: None,
                    init: 0.0,
                    shape: SlotShape::Rows,
                },
                SlotSpec {
                    suffix: None,
                    init: 0.0,
                    shape: SlotShape::Cols,
                },
                like("velocity"),
            ]],
        }
    }

    /// Optimizer-wide scalar slots, stored after every per-parameter slot: `(name, initial)`.
    pub(crate) fn global_slots(&self) -> &'static [(&'static str, f32)] {
        match self {
            Rule::Nadam(_) => &[("variable", 1.0)],
            _ => &[],
        }
    }

    /// Whether the rule is element-wise: each element's update reads only that element of the
    /// parameter, gradient and slots (so weight decay can be fused into its pass, and a
    /// parameter can be updated in independent pieces).
    pub(crate) fn is_elementwise(&self) -> bool {
        !matches!(self, Rule::Lamb(_) | Rule::Adafactor(_))
    }

    /// The per-step coefficients, computed once per step. Updates the global slots (Nadam's
    /// `U`).
    pub(crate) fn coefficients(&self, lr: f32, iterations: u64, globals: &mut [f32]) -> Coeffs {
        let t = (iterations + 1) as f32;
        let c = |v: f64| v as f32;
        match self {
            Rule::Sgd(r) => Coeffs::Sgd {
                lr,
                momentum: c(r.momentum),
            },
            Rule::RmsProp(r) => Coeffs::RmsProp {
                lr,
                rho: c(r.rho),
                one_minus_rho: c(1.0 - r.rho),
                eps: c(r.epsilon),
                momentum: c(r.momentum),
            },
            Rule::Adam(r) | Rule::AdamW(r) => {
                let b1p = c(r.beta_1).powf(t);
                let b2p = c(r.beta_2).powf(t);
                Coeffs::Adam {
                    alpha: lr * (1.0 - b2p).sqrt() / (1.0 - b1p),
                    one_minus_b1: c(1.0 - r.beta_1),
                    one_minus_b2: c(1.0 - r.beta_2),
                    eps: c(r.epsilon),
                }
            }
            Rule::Adadelta(r) => Coeffs::Adadelta {
                lr,
                rho: c(r.rho),
                one_minus_rho: c(1.0 - r.rho),
                eps: c(r.epsilon),
            },
            Rule::Adagrad(r) => Coeffs::Adagrad {
                lr,
                eps: c(r.epsilon),
            },
            Rule::Adamax(r) => Coeffs::Adamax {
                lr,
                one_minus_b1: c(1.0 - r.beta_1),
                b2: c(r.beta_2),
                one_minus_b1p: 1.0 - c(r.beta_1).powf(t),
                eps: c(r.epsilon),
            },
            Rule::Nadam(r) => {
                let b1 = c(r.beta_1);
                let decay = 0.96_f32;
                globals[0] = globals[0] * b1 * (1.0 - 0.5 * decay.powf(t));
                let u_t = b1 * (1.0 - 0.5 * decay.powf(t));
                let u_t1 = b1 * (1.0 - 0.5 * decay.powf(t + 1.0));
                let u_prod = globals[0];
                // Nadam casts the betas to f32 first, so `1 - beta` is f32 arithmetic here.
                Coeffs::Nadam {
                    lr,
                    one_minus_b1: 1.0 - b1,
                    one_minus_b2: 1.0 - c(r.beta_2),
                    u_t1,
                    one_minus_u_prod_t1: 1.0 - u_prod * u_t1,
                    one_minus_u_t: 1.0 - u_t,
                    one_minus_u_prod: 1.0 - u_prod,
                    one_minus_b2p: 1.0 - c(r.beta_2).powf(t),
                    eps: c(r.epsilon),
                }
            }
            Rule::Ftrl(r) => Coeffs::Ftrl {
                lr,
                neg_power: c(-r.learning_rate_power),
                l1: c(r.l1_regularization_strength),
                two_l2: 2.0 * (c(r.l2_regularization_strength) + c(r.beta) / (2.0 * lr)),
                two_shrink: c(2.0 * r.l2_shrinkage_regularization_strength),
            },
            Rule::Lion(r) => {
                let (b1, b2) = (c(r.beta_1), c(r.beta_2));
                Coeffs::Lion {
                    lr,
                    b1,
                    one_minus_b1: 1.0 - b1,
                    b2,
                    one_minus_b2: 1.0 - b2,
                }
            }
            Rule::Lamb(r) => Coeffs::Lamb {
                lr,
                one_minus_b1: c(1.0 - r.beta_1),
                one_minus_b2: c(1.0 - r.beta_2),
                one_minus_b1p: 1.0 - c(r.beta_1).powf(t),
                one_minus_b2p: 1.0 - c(r.beta_2).powf(t),
                eps: c(r.epsilon),
            },
            Rule::Adafactor(r) => Coeffs::Adafactor {
                lr,
                t,
                eps1: c(r.epsilon_1),
                eps2: c(r.epsilon_2),
                b2t: 1.0 - t.powf(c(r.beta_2_decay)),
                clip_threshold: c(r.clip_threshold),
            },
        }
    }
}

/// Per-step coefficients of each rule (`f32`, computed as Keras computes them).
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub(crate) enum Coeffs {
    Sgd {
        lr: f32,
        momentum: f32,
    },
    RmsProp {
        lr: f32,
        rho: f32,
        one_minus_rho: f32,
        eps: f32,
        momentum: f32,
    },
    Adam {
        alpha: f32,
        one_minus_b1: f32,
        one_minus_b2: f32,
        eps: f32,
    },
    Adadelta {
        lr: f32,
        rho: f32,
        one_minus_rho: f32,
        eps: f32,
    },
    Adagrad {
        lr: f32,
        eps: f32,
    },
    Adamax {
        lr: f32,
        one_minus_b1: f32,
        b2: f32,
        one_minus_b1p: f32,
        eps: f32,
    },
    Nadam {
        lr: f32,
        one_minus_b1: f32,
        one_minus_b2: f32,
        u_t1: f32,
        one_minus_u_prod_t1: f32,
        one_minus_u_t: f32,
        one_minus_u_prod: f32,
        one_minus_b2p: f32,
        eps: f32,
    },
    Ftrl {
        lr: f32,
        neg_power: f32,
        l1: f32,
        two_l2: f32,
        two_shrink: f32,
    },
    Lion {
        lr: f32,
        b1: f32,
        one_minus_b1: f32,
        b2: f32,
        one_minus_b2: f32,
    },
    Lamb {
        lr: f32,
        one_minus_b1: f32,
        one_minus_b2: f32,
        one_minus_b1p: f32,
        one_minus_b2p: f32,
        eps: f32,
    },
    Adafactor {
        lr: f32,
        t: f32,
        eps1: f32,
        eps2: f32,
        b2t: f32,
        clip_threshold: f32,
    },
}

/// Weight decay `var -= var * wd * lr` as its own pass (Keras' order of operations).
#[inline(always)]
pub(crate) fn weight_decay(var: &mut [f32], wd: f32, lr: f32) {
    for x in var {
        *x -= *x * wd * lr;
    }
}

/// Decoupled weight decay fused into a kernel: a compile-time switch, so it costs nothing off.
#[inline(always)]
fn decay<const WD: bool>(x: f32, wd: f32, lr: f32) -> f32 {
    if WD { x - x * wd * lr } else { x }
}

/// Elements per block of a reduction: lanes sum in `f32` within a block, blocks in `f64`.
const BLOCK: usize = 1024;
const LANES: usize = 8;

/// `sum_i f(a_i, b_i)` over equal-length slices, in 8 independent `f32` lanes per block of
/// 1024 (so it vectorizes), blocks accumulated in `f64`.
#[inline(always)]
fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    let mut total = 0.0_f64;
    for (ab, bb) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        let ((a8, a_tail), (b8, b_tail)) = (ab.as_chunks::<LANES>(), bb.as_chunks::<LANES>());
        let mut lanes = [0.0_f32; LANES];
        for (x, y) in a8.iter().zip(b8) {
            for l in 0..LANES {
                lanes[l] += f(x[l], y[l]);
            }
        }
        let tail: f64 = a_tail
            .iter()
            .zip(b_tail)
            .map(|(&x, &y)| f64::from(f(x, y)))
            .sum();
        total += lanes.iter().map(|&x| f64::from(x)).sum::<f64>() + tail;
    }
    total
}

/// `sum x^2`, vectorized (see [`lane_sum`]).
#[inline(always)]
pub(crate) fn sum_squares(x: &[f32]) -> f64 {
    lane_sum(x, x, |v, _| v * v)
}

/// `sum_i f(a_i, b_i)^2`: `f` runs as a plain element-wise loop into a block buffer on the
/// stack (so it vectorizes however complex it is), then [`sum_squares`] reduces the block.
#[inline(always)]
fn sum_squares_of(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    let mut buf = [0.0_f32; BLOCK];
    let mut total = 0.0_f64;
    for (ab, bb) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        let out = &mut buf[..ab.len()];
        for ((o, &x), &y) in out.iter_mut().zip(ab).zip(bb) {
            *o = f(x, y);
        }
        total += sum_squares(out);
    }
    total
}

/// [`sum_squares`] compiled for AVX2 where the CPU has it.
pub(crate) fn sum_squares_dispatch(x: &[f32]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        fn avx2(x: &[f32]) -> f64 {
            sum_squares(x)
        }
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { avx2(x) };
    }
    sum_squares(x)
}

/// Applies one step of `rule` to one parameter: `var` (shape `shape`), its gradient `g` (same
/// length) and its slots (in `slot_groups` order, flattened). `wd` is
/// `Some((weight_decay, learning_rate))` when weight decay applies to this parameter.
///
/// On x86-64 CPUs with AVX2 the same code is compiled a second time with 256-bit vectors and
/// chosen at run time. No FMA contraction happens either way, so both give identical results.
/// The most slots a rule keeps per parameter (Adam with AMSGrad, centered RMSprop with momentum,
/// Adafactor).
pub(crate) const MAX_SLOTS: usize = 3;

pub(crate) fn update(
    rule: &Rule,
    k: &Coeffs,
    var: &mut [f32],
    g: &[f32],
    shape: &[usize],
    slots: &mut [&mut [f32]],
    wd: Option<(f32, f32)>,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { update_avx2(rule, k, var, g, shape, slots, wd) };
        return;
    }
    update_portable(rule, k, var, g, shape, slots, wd);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn update_avx2(
    rule: &Rule,
    k: &Coeffs,
    var: &mut [f32],
    g: &[f32],
    shape: &[usize],
    slots: &mut [&mut [f32]],
    wd: Option<(f32, f32)>,
) {
    update_portable(rule, k, var, g, shape, slots, wd);
}

#[inline(always)]
fn update_portable(
    rule: &Rule,
    k: &Coeffs,
    var: &mut [f32],
    g: &[f32],
    shape: &[usize],
    slots: &mut [&mut [f32]],
    wd: Option<(f32, f32)>,
) {
    if var.is_empty() {
        return;
    }
    if !rule.is_elementwise() {
        if let Some((wd, lr)) = wd {
            weight_decay(var, wd, lr);
        }
        match (k, slots) {
            (Coeffs::Lamb { .. }, [m, v]) => lamb(k, var, g, m, v),
            (Coeffs::Adafactor { .. }, [r, c, v]) => {
                let Rule::Adafactor(cfg) = rule else {
                    unreachable!("Adafactor coefficients come from an Adafactor rule")
                };
                adafactor(cfg, k, var, g, shape, r, c, v)
            }
            _ => unreachable!("slot layout follows Rule::slot_groups"),
        }
        return;
    }
    match wd {
        Some((wd, lr)) => elementwise::<true>(rule, k, var, g, slots, wd, lr),
        None => elementwise::<false>(rule, k, var, g, slots, 0.0, 0.0),
    }
}

#[inline(always)]
fn elementwise<const WD: bool>(
    rule: &Rule,
    k: &Coeffs,
    var: &mut [f32],
    g: &[f32],
    slots: &mut [&mut [f32]],
    wd: f32,
    wd_lr: f32,
) {
    let dk = |x: f32| decay::<WD>(x, wd, wd_lr);
    match (*k, slots) {
        (Coeffs::Sgd { lr, .. }, []) => {
            for (x, &g) in var.iter_mut().zip(g) {
                *x = dk(*x) - g * lr;
            }
        }
        (Coeffs::Sgd { lr, momentum }, [m]) => {
            let nesterov = matches!(rule, Rule::Sgd(Sgd { nesterov: true, .. }));
            let it = var.iter_mut().zip(g).zip(m.iter_mut());
            if nesterov {
                for ((x, &g), m) in it {
                    *m = *m * momentum - g * lr;
                    *x = dk(*x) + (*m * momentum - g * lr);
                }
            } else {
                for ((x, &g), m) in it {
                    *m = *m * momentum - g * lr;
                    *x = dk(*x) + *m;
                }
            }
        }
        (
            Coeffs::RmsProp {
                lr,
                rho,
                one_minus_rho,
                eps,
                momentum,
            },
            slots,
        ) => {
            let inc = |v: &mut f32, g: f32| {
                *v = rho * *v + one_minus_rho * (g * g);
                (lr * g) / (*v + eps).sqrt()
            };
            let inc_centered = |v: &mut f32, a: &mut f32, g: f32| {
                *v = rho * *v + one_minus_rho * (g * g);
                *a = rho * *a + one_minus_rho * g;
                (lr * g) / ((*v - *a * *a) + eps).sqrt()
            };
            match slots {
                [v] => {
                    for ((x, &g), v) in var.iter_mut().zip(g).zip(v.iter_mut()) {
                        *x = dk(*x) - inc(v, g);
                    }
                }
                [v, b] if momentum > 0.0 => {
                    let it = var.iter_mut().zip(g).zip(v.iter_mut()).zip(b.iter_mut());
                    for (((x, &g), v), b) in it {
                        *b = momentum * *b + inc(v, g);
                        *x = dk(*x) - *b;
                    }
                }
                [v, a] => {
                    for (((x, &g), v), a) in
                        var.iter_mut().zip(g).zip(v.iter_mut()).zip(a.iter_mut())
                    {
                        *x = dk(*x) - inc_centered(v, a, g);
                    }
                }
                [v, b, a] => {
                    let it = var
                        .iter_mut()
                        .zip(g)
                        .zip(v.iter_mut())
                        .zip(b.iter_mut())
                        .zip(a.iter_mut());
                    for ((((x, &g), v), b), a) in it {
                        *b = momentum * *b + inc_centered(v, a, g);
                        *x = dk(*x) - *b;
                    }
                }
                _ => unreachable!("slot layout follows Rule::slot_groups"),
            }
        }
        (
            Coeffs::Adam {
                alpha,
                one_minus_b1,
                one_minus_b2,
                eps,
            },
            slots,
        ) => match slots {
            [m, v] => {
                let it = var.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut());
                for (((x, &g), m), v) in it {
                    *m += (g - *m) * one_minus_b1;
                    *v += (g * g - *v) * one_minus_b2;
                    *x = dk(*x) - (*m * alpha) / (v.sqrt() + eps);
                }
            }
            [m, v, vh] => {
                let it = var
                    .iter_mut()
                    .zip(g)
                    .zip(m.iter_mut())
                    .zip(v.iter_mut())
                    .zip(vh.iter_mut());
                for ((((x, &g), m), v), vh) in it {
                    *m += (g - *m) * one_minus_b1;
                    *v += (g * g - *v) * one_minus_b2;
                    *vh = vh.max(*v);
                    *x = dk(*x) - (*m * alpha) / (vh.sqrt() + eps);
                }
            }
            _ => unreachable!("slot layout follows Rule::slot_groups"),
        },
        (
            Coeffs::Adadelta {
                lr,
                rho,
                one_minus_rho,
                eps,
            },
            [eg, ed],
        ) => {
            let it = var.iter_mut().zip(g).zip(eg.iter_mut()).zip(ed.iter_mut());
            for (((x, &g), eg), ed) in it {
                *eg = rho * *eg + one_minus_rho * (g * g);
                let d = -(((*ed + eps).sqrt() * g) / (*eg + eps).sqrt());
                *ed = rho * *ed + one_minus_rho * (d * d);
                *x = dk(*x) + lr * d;
            }
        }
        (Coeffs::Adagrad { lr, eps }, [acc]) => {
            for ((x, &g), a) in var.iter_mut().zip(g).zip(acc.iter_mut()) {
                *a += g * g;
                *x = dk(*x) - (lr * g) / (*a + eps).sqrt();
            }
        }
        (
            Coeffs::Adamax {
                lr,
                one_minus_b1,
                b2,
                one_minus_b1p,
                eps,
            },
            [m, u],
        ) => {
            let it = var.iter_mut().zip(g).zip(m.iter_mut()).zip(u.iter_mut());
            for (((x, &g), m), u) in it {
                *m += (g - *m) * one_minus_b1;
                *u = (b2 * *u).max(g.abs());
                *x = dk(*x) - (lr * *m) / (one_minus_b1p * (*u + eps));
            }
        }
        (
            Coeffs::Nadam {
                lr,
                one_minus_b1,
                one_minus_b2,
                u_t1,
                one_minus_u_prod_t1,
                one_minus_u_t,
                one_minus_u_prod,
                one_minus_b2p,
                eps,
            },
            [m, v],
        ) => {
            let it = var.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut());
            for (((x, &g), m), v) in it {
                *m += (g - *m) * one_minus_b1;
                *v += (g * g - *v) * one_minus_b2;
                let m_hat =
                    (u_t1 * *m) / one_minus_u_prod_t1 + (one_minus_u_t * g) / one_minus_u_prod;
                let v_hat = *v / one_minus_b2p;
                *x = dk(*x) - (m_hat * lr) / (v_hat.sqrt() + eps);
            }
        }
        (
            Coeffs::Ftrl {
                lr,
                neg_power,
                l1,
                two_l2,
                two_shrink,
            },
            [n, z],
        ) => {
            let it = var.iter_mut().zip(g).zip(n.iter_mut()).zip(z.iter_mut());
            let step = |x: &mut f32, g: f32, n: &mut f32, z: &mut f32, pow: &dyn Fn(f32) -> f32| {
                let w = dk(*x);
                let gs = g + two_shrink * w;
                let n_new = *n + g * g;
                let p_new = pow(n_new);
                *z += gs - ((p_new - pow(*n)) / lr) * w;
                let q = p_new / lr + two_l2;
                *x = (z.clamp(-l1, l1) - *z) / q;
                *n = n_new;
            };
            if neg_power == 0.5 {
                for (((x, &g), n), z) in it {
                    step(x, g, n, z, &|v| v.sqrt());
                }
            } else {
                for (((x, &g), n), z) in it {
                    step(x, g, n, z, &|v| v.powf(neg_power));
                }
            }
        }
        (
            Coeffs::Lion {
                lr,
                b1,
                one_minus_b1,
                b2,
                one_minus_b2,
            },
            [m],
        ) => {
            for ((x, &g), m) in var.iter_mut().zip(g).zip(m.iter_mut()) {
                let c = *m * b1 + g * one_minus_b1;
                let sign = if c > 0.0 {
                    1.0
                } else if c < 0.0 {
                    -1.0
                } else {
                    c
                };
                *x = dk(*x) - lr * sign;
                *m = *m * b2 + g * one_minus_b2;
            }
        }
        _ => unreachable!("coefficients and slot layout follow the rule"),
    }
}

#[inline(always)]
fn lamb(k: &Coeffs, var: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    let Coeffs::Lamb {
        lr,
        one_minus_b1,
        one_minus_b2,
        one_minus_b1p,
        one_minus_b2p,
        eps,
    } = *k
    else {
        unreachable!("called with Lamb coefficients")
    };
    let ratio_of = |m: f32, v: f32| (m / one_minus_b1p) / ((v / one_minus_b2p).sqrt() + eps);
    // Pass 1, block by block while the block is hot in cache: the moments, then the norms.
    let (mut w_sq, mut r_sq) = (0.0_f64, 0.0_f64);
    let blocks = var
        .chunks(BLOCK)
        .zip(g.chunks(BLOCK))
        .zip(m.chunks_mut(BLOCK))
        .zip(v.chunks_mut(BLOCK));
    for (((xb, gb), mb), vb) in blocks {
        for ((&g, m), v) in gb.iter().zip(mb.iter_mut()).zip(vb.iter_mut()) {
            *m += (g - *m) * one_minus_b1;
            *v += (g * g - *v) * one_minus_b2;
        }
        w_sq += sum_squares(xb);
        r_sq += sum_squares_of(mb, vb, ratio_of);
    }
    let (w_norm, r_norm) = (w_sq.sqrt() as f32, r_sq.sqrt() as f32);
    let ratio = if w_norm > 0.0 && r_norm > 0.0 {
        w_norm / r_norm
    } else {
        1.0
    };
    // Pass 2: the update, recomputing r (identical to pass 1's values).
    let scale = ratio * lr;
    for ((x, &m), &v) in var.iter_mut().zip(m.iter()).zip(v.iter()) {
        *x -= scale * ratio_of(m, v);
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn adafactor(
    cfg: &Adafactor,
    k: &Coeffs,
    var: &mut [f32],
    g: &[f32],
    shape: &[usize],
    r: &mut [f32],
    c: &mut [f32],
    v: &mut [f32],
) {
    let Coeffs::Adafactor {
        lr,
        t,
        eps1,
        eps2,
        b2t,
        clip_threshold,
    } = *k
    else {
        unreachable!("called with Adafactor coefficients")
    };
    let inv_sqrt_t = 1.0 / t.sqrt();
    let lr = if cfg.relative_step {
        lr.min(inv_sqrt_t)
    } else {
        lr
    };
    let rho = lr.min(inv_sqrt_t);
    let n = var.len().max(1) as f64;
    let rms_var = (sum_squares(var) / n).sqrt() as f32;
    let alpha = eps2.max(rms_var) * rho;
    let one_minus_b2t = 1.0 - b2t;

    if shape.len() >= 2 {
        let cols = shape[shape.len() - 1];
        let rows = shape[shape.len() - 2];
        let batches = r.len() / rows.max(1);
        for b in 0..batches {
            let gb = &g[b * rows * cols..(b + 1) * rows * cols];
            let rb = &mut r[b * rows..(b + 1) * rows];
            let cb = &mut c[b * cols..(b + 1) * cols];
            // Column means accumulate in f64, then update c.
            let mut col_sum = vec![0.0_f64; cols];
            for (i, row) in gb.chunks_exact(cols).enumerate() {
                for (s, &gv) in col_sum.iter_mut().zip(row) {
                    *s += f64::from(gv * gv + eps1);
                }
                let row_sum = lane_sum(row, row, |gv, _| gv * gv + eps1);
                let mean = (row_sum / cols as f64) as f32;
                rb[i] = b2t * rb[i] + one_minus_b2t * mean;
            }
            for (cj, s) in cb.iter_mut().zip(&col_sum) {
                *cj = b2t * *cj + one_minus_b2t * (s / rows as f64) as f32;
            }
            let r_mean = (rb.iter().map(|&x| f64::from(x)).sum::<f64>() / rows as f64) as f32;
            let vb = &mut v[b * rows * cols..(b + 1) * rows * cols];
            for (i, vrow) in vb.chunks_exact_mut(cols).enumerate() {
                let ri = rb[i] / r_mean;
                for (vv, &cj) in vrow.iter_mut().zip(cb.iter()) {
                    *vv = ri * cj;
                }
            }
        }
    } else {
        for (vv, &gv) in v.iter_mut().zip(g) {
            *vv = b2t * *vv + one_minus_b2t * (gv * gv + eps1);
        }
    }
    let u_sq = sum_squares_of(g, v, |gv, vv| gv / vv.sqrt());
    let rms_u = (u_sq / n).sqrt() as f32;
    let denom = 1.0_f32.max(rms_u / clip_threshold);
    for ((x, &gv), &vv) in var.iter_mut().zip(g).zip(v.iter()) {
        *x -= alpha * ((gv / vv.sqrt()) / denom);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_rule_keeps_more_than_max_slots() {
        let mut rules: Vec<Rule> = Rule::NAMES
            .iter()
            .map(|name| Rule::from_name(name).unwrap())
            .collect();
        rules.push(
            Sgd {
                momentum: 0.9,
                nesterov: false,
            }
            .into(),
        );
        rules.push(
            RmsProp {
                momentum: 0.9,
                centered: true,
                ..Default::default()
            }
            .into(),
        );
        rules.push(
            Adam {
                amsgrad: true,
                ..Default::default()
            }
            .into(),
        );
        let most = rules
            .iter()
            .map(|r| r.slot_groups().iter().flatten().count())
            .max();
        assert_eq!(most, Some(MAX_SLOTS));
    }

    #[test]
    fn the_names_list_is_the_names_string() {
        assert_eq!(Rule::NAMES.join(", "), OPTIMIZER_NAMES);
    }
}
