//! The arguments of `compile`: an optimizer, a loss and metrics, each by value or by Keras name.

use gradus_losses::metrics::{MeanMetricWrapper, Metric, get_metric};
use gradus_losses::{
    BinaryCrossentropy, CategoricalCrossentropy, Huber, KLDivergence, Loss, MeanAbsoluteError,
    MeanSquaredError, SparseCategoricalCrossentropy, get,
};
use gradus_optim::Optimizer;

use crate::error::Result;

/// An optimizer for `compile`: an [`Optimizer`] value, or a Keras name (`"sgd"`, `"adam"`, ...)
/// for one with default arguments.
pub trait IntoOptimizer {
    /// The optimizer.
    ///
    /// # Errors
    /// An unknown name.
    fn into_optimizer(self) -> Result<Optimizer>;
}

impl IntoOptimizer for Optimizer {
    fn into_optimizer(self) -> Result<Optimizer> {
        Ok(self)
    }
}

impl IntoOptimizer for &str {
    fn into_optimizer(self) -> Result<Optimizer> {
        Ok(Optimizer::from_name(self)?)
    }
}

/// A loss for `compile`: a loss value, or a Keras name (`"mse"`,
/// `"sparse_categorical_crossentropy"`, `"crossentropy"` resolved from the data's shapes).
#[derive(Debug)]
pub enum LossArg {
    /// A loss by Keras identifier, resolved when the model first sees labels.
    Name(String),
    /// A loss value.
    Value(Box<dyn Loss>),
}

impl LossArg {
    /// Checks a name now, so that `compile` reports an unknown one.
    pub(crate) fn validate(&self) -> Result<()> {
        if let LossArg::Name(n) = self
            && !matches!(n.as_str(), "crossentropy" | "ce")
        {
            get(n)?;
        }
        Ok(())
    }
}

impl From<&str> for LossArg {
    fn from(name: &str) -> LossArg {
        LossArg::Name(name.to_string())
    }
}

impl From<String> for LossArg {
    fn from(name: String) -> LossArg {
        LossArg::Name(name)
    }
}

impl From<Box<dyn Loss>> for LossArg {
    fn from(loss: Box<dyn Loss>) -> LossArg {
        LossArg::Value(loss)
    }
}

macro_rules! loss_values {
    ($($ty:ty),*) => {$(
        impl From<$ty> for LossArg {
            fn from(loss: $ty) -> LossArg {
                LossArg::Value(Box::new(loss))
            }
        }
    )*};
}
loss_values!(
    MeanSquaredError,
    MeanAbsoluteError,
    BinaryCrossentropy,
    CategoricalCrossentropy,
    SparseCategoricalCrossentropy,
    Huber,
    KLDivergence
);

/// A metric for `compile`: a Keras name (`"accuracy"`, resolved from the data's shapes as Keras
/// does, `"mae"`, ...) or a metric value.
#[derive(Debug)]
pub enum MetricArg {
    /// A metric by Keras identifier, resolved when the model first sees labels.
    Name(String),
    /// A metric value.
    Value(Box<dyn Metric>),
}

impl MetricArg {
    /// Checks a name now, so that `compile` reports an unknown one.
    pub(crate) fn validate(&self) -> Result<()> {
        if let MetricArg::Name(n) = self
            && !matches!(n.to_lowercase().as_str(), "accuracy" | "acc")
        {
            get_metric(n)?;
        }
        Ok(())
    }
}

impl From<&str> for MetricArg {
    fn from(name: &str) -> MetricArg {
        MetricArg::Name(name.to_string())
    }
}

impl From<String> for MetricArg {
    fn from(name: String) -> MetricArg {
        MetricArg::Name(name)
    }
}

impl From<Box<dyn Metric>> for MetricArg {
    fn from(metric: Box<dyn Metric>) -> MetricArg {
        MetricArg::Value(metric)
    }
}

impl From<MeanMetricWrapper> for MetricArg {
    fn from(metric: MeanMetricWrapper) -> MetricArg {
        MetricArg::Value(Box::new(metric))
    }
}

/// No metrics, for `compile(optimizer, loss, NO_METRICS)`.
pub const NO_METRICS: [&str; 0] = [];
