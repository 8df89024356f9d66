//! Regression losses: mean squared error, mean absolute error, Huber.

use gradus_autograd::Var;
use gradus_tensor::Tensor;

use crate::error::Result;
use crate::kernel::mean_of_elements;
use crate::loss::{Loss, LossConfig, align_same_shape, check_delta, loss_common};
use crate::reduction::Reduction;

/// Mean squared error (Keras' `MeanSquaredError`, `"mse"`).
///
/// Per sample: `loss = mean_c (y_pred[c] - y_true[c])^2` over the last axis;
/// `d loss / d y_pred[c] = 2 (y_pred[c] - y_true[c]) / C`.
///
/// Shapes: `y_true` and `y_pred` both `[..., C]` (or `[batch]` against `[batch, 1]`);
/// per-sample output `[...]`.
///
/// # Errors
/// [`LossError::ShapeMismatch`](crate::LossError::ShapeMismatch) naming both shapes;
/// [`LossError::NonFinite`](crate::LossError::NonFinite) for a NaN or infinity in either input.
#[derive(Debug, Clone, PartialEq)]
pub struct MeanSquaredError {
    name: String,
    reduction: Reduction,
}

impl MeanSquaredError {
    /// Keras' defaults: name `"mean_squared_error"`, reduction `"sum_over_batch_size"`.
    pub fn new() -> Self {
        MeanSquaredError {
            name: "mean_squared_error".into(),
            reduction: Reduction::default(),
        }
    }
}

loss_common!(MeanSquaredError, "mean_squared_error");

impl Loss for MeanSquaredError {
    fn per_sample<'t>(&self, y_true: &Tensor, y_pred: &Var<'t>) -> Result<Var<'t>> {
        let (t, p) = align_same_shape(&self.name, y_true, y_pred)?;
        mean_of_elements("mean_squared_error", &t, &p, |t, p| {
            let e = f64::from(p) - f64::from(t);
            (e * e, 2.0 * e)
        })
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn reduction(&self) -> Reduction {
        self.reduction
    }

    fn config(&self) -> LossConfig {
        LossConfig::base("MeanSquaredError", &self.name, self.reduction)
    }
}

/// Mean absolute error (Keras' `MeanAbsoluteError`, `"mae"`).
///
/// Per sample: `loss = mean_c |y_pred[c] - y_true[c]|` over the last axis;
/// `d loss / d y_pred[c] = sign(y_pred[c] - y_true[c]) / C` (0 where they are equal, as
/// TensorFlow).
///
/// Shapes: as [`MeanSquaredError`].
///
/// # Errors
/// As [`MeanSquaredError`].
#[derive(Debug, Clone, PartialEq)]
pub struct MeanAbsoluteError {
    name: String,
    reduction: Reduction,
}

impl MeanAbsoluteError {
    /// Keras' defaults: name `"mean_absolute_error"`, reduction `"sum_over_batch_size"`.
    pub fn new() -> Self {
        MeanAbsoluteError {
            name: "mean_absolute_error".into(),
            reduction: Reduction::default(),
        }
    }
}

loss_common!(MeanAbsoluteError, "mean_absolute_error");

impl Loss for MeanAbsoluteError {
    fn per_sample<'t>(&self, y_true: &Tensor, y_pred: &Var<'t>) -> Result<Var<'t>> {
        let (t, p) = align_same_shape(&self.name, y_true, y_pred)?;
        mean_of_elements("mean_absolute_error", &t, &p, |t, p| {
            let e = f64::from(p) - f64::from(t);
            let sign = if e > 0.0 {
                1.0
            } else if e < 0.0 {
                -1.0
            } else {
                0.0
            };
            (e.abs(), sign)
        })
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn reduction(&self) -> Reduction {
        self.reduction
    }

    fn config(&self) -> LossConfig {
        LossConfig::base("MeanAbsoluteError", &self.name, self.reduction)
    }
}

/// Huber loss (Keras' `Huber`, `"huber"`): quadratic near zero, linear beyond `delta`.
///
/// With `e = y_pred - y_true`, per element `0.5 e^2` where `|e| <= delta`, else
/// `delta |e| - 0.5 delta^2`; per sample the mean over the last axis. Gradient per element:
/// `e` where `|e| <= delta`, else `delta sign(e)`; divided by `C`.
///
/// Shapes: as [`MeanSquaredError`].
///
/// # Errors
/// As [`MeanSquaredError`], plus
/// [`LossError::InvalidConfig`](crate::LossError::InvalidConfig) for a negative or non-finite
/// `delta`.
#[derive(Debug, Clone, PartialEq)]
pub struct Huber {
    name: String,
    reduction: Reduction,
    delta: f32,
}

impl Huber {
    /// Keras' defaults: `delta = 1.0`, name `"huber_loss"`, reduction `"sum_over_batch_size"`.
    pub fn new() -> Self {
        Huber {
            name: "huber_loss".into(),
            reduction: Reduction::default(),
            delta: 1.0,
        }
    }

    /// Sets the threshold between the quadratic and the linear part (default 1.0; must be
    /// finite and `>= 0`, checked when the loss is computed).
    pub fn delta(mut self, delta: f32) -> Self {
        self.delta = delta;
        self
    }
}

loss_common!(Huber, "huber_loss");

impl Loss for Huber {
    fn per_sample<'t>(&self, y_true: &Tensor, y_pred: &Var<'t>) -> Result<Var<'t>> {
        check_delta(&self.name, self.delta)?;
        let (t, p) = align_same_shape(&self.name, y_true, y_pred)?;
        let delta = f64::from(self.delta);
        mean_of_elements("huber", &t, &p, move |t, p| {
            let e = f64::from(p) - f64::from(t);
            if e.abs() <= delta {
                (0.5 * e * e, e)
            } else {
                (delta * e.abs() - 0.5 * delta * delta, delta * e.signum())
            }
        })
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn reduction(&self) -> Reduction {
        self.reduction
    }

    fn config(&self) -> LossConfig {
        LossConfig {
            delta: Some(self.delta),
            ..LossConfig::base("Huber", &self.name, self.reduction)
        }
    }
}
