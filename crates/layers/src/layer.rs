//! The [`Layer`] trait, its rich extension [`LayerExt`], and layer configurations.

use std::fmt;

use gradus_autograd::{Tape, Var, Variable};
use gradus_tensor::{Padding, Rng, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{LayerError, Result};

/// A layer's architecture: Keras' class name and its arguments, enough to rebuild it (without
/// weights) with [`layer_from_config`](crate::layer_from_config).
///
/// ```
/// use gradus_layers::{Dense, Layer, layer_from_config};
///
/// let dense = Dense::new(3).activation("softmax").with_name("out");
/// let config = dense.config();
/// assert_eq!(config.class_name, "Dense");
/// assert_eq!(config.config["units"], 3);
/// let again = layer_from_config(&config)?;
/// assert_eq!(again.config(), config);
/// # Ok::<(), gradus_layers::LayerError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerConfig {
    /// Keras' class name, e.g. `"Dense"`.
    pub class_name: String,
    /// The arguments, with Keras' names (`"units"`, `"activation"`, ...) and the layer's `"name"`.
    pub config: Value,
}

/// A layer: a function of one input with (possibly) weights, as a Keras layer.
///
/// The life of a layer: configure it (builder methods, Keras' arguments and defaults), optionally
/// give it a unique name with [`set_name`](Layer::set_name), [`build`](Layer::build) it for an
/// input shape (without the batch axis, as Keras' `input_shape` minus `None`), which creates its
/// [`Variable`]s named `"{layer}/{role}"` (`"dense_1/kernel"`), then [`call`](Layer::call) it.
///
/// `call` works both under a tape (its input on a [`Tape`], for training: the layer's trainable
/// variables are watched there) and untracked ([`Var::constant`], for inference: nothing is
/// recorded). `training` switches layers that behave differently (Dropout, BatchNormalization).
///
/// Required methods are few; [`LayerExt`] adds the rich API (`trainable_variables`,
/// `count_params`, `get_weights`, `set_weights`, `predict`, ...) to every layer.
///
/// ```
/// use gradus_autograd::{Tape, Var};
/// use gradus_layers::{Dense, Layer, LayerExt};
/// use gradus_tensor::{Rng, Tensor};
///
/// let mut dense = Dense::new(3).activation("relu");
/// dense.build(&[4], &mut Rng::seed_from_u64(0))?;
/// assert_eq!(dense.count_params(), 15);
///
/// let x = Tensor::ones(&[2, 4]);
/// let y = dense.call(&Var::constant(x.clone()), false)?; // inference
/// assert_eq!(y.shape(), &[2, 3]);
///
/// let tape = Tape::new(); // training
/// let loss = dense.call(&tape.constant(x), true)?.sum_all();
/// let grads = tape.gradient(&loss, &dense.trainable_variables().iter().collect::<Vec<_>>())?;
/// assert_eq!(grads[0].shape(), &[4, 3]);
/// # Ok::<(), gradus_layers::LayerError>(())
/// ```
pub trait Layer: Send + Sync + fmt::Debug {
    /// Keras' class name, e.g. `"Dense"`.
    fn class_name(&self) -> &'static str;

    /// The layer's name (by default the snake-case class name: `"dense"`, `"conv2d"`, ...).
    fn name(&self) -> &str;

    /// Renames the layer, as a model does to make names unique (`dense`, `dense_1`, ...).
    ///
    /// # Errors
    /// [`LayerError::InvalidArgument`] when the layer is already built (its variables carry the
    /// old name) or the name is empty or contains `/`.
    fn set_name(&mut self, name: &str) -> Result<()>;

    /// Creates the layer's variables for inputs of `input_shape` (without the batch axis),
    /// drawing initial values from `rng`. Building again re-initializes the variables.
    ///
    /// # Errors
    /// An argument given to the builder that is invalid (unknown name, units 0, ...), or an
    /// input shape the layer cannot take ([`LayerError::InputShape`]).
    fn build(&mut self, input_shape: &[usize], rng: &mut Rng) -> Result<()>;

    /// The input shape (without the batch axis) the layer was built for, `None` before build.
    fn built_input_shape(&self) -> Option<&[usize]>;

    /// The output of the layer for a batch `x` (shape `[batch, ...input_shape]`), recorded on
    /// `x`'s tape if it has one.
    ///
    /// # Errors
    /// [`LayerError::NotBuilt`] before build; [`LayerError::InputShape`] when `x` does not fit
    /// the shape the layer was built for; errors of the operations.
    fn call<'t>(&self, x: &Var<'t>, training: bool) -> Result<Var<'t>>;

    /// The output shape (without the batch axis) for inputs of `input_shape`.
    ///
    /// # Errors
    /// [`LayerError::InputShape`] when the layer cannot take such inputs.
    fn output_shape(&self, input_shape: &[usize]) -> Result<Vec<usize>>;

    /// Every variable of the layer, trainable or not, in Keras' order (`layer.weights`). Empty
    /// before build and for layers without weights.
    fn variables(&self) -> Vec<Variable> {
        Vec::new()
    }

    /// The layer's architecture (class name and arguments).
    fn config(&self) -> LayerConfig;

    /// The sum of the layer's weight penalties (kernel, bias, ... regularizers) as a scalar
    /// value in `tape`'s context (differentiable under a tape), or `None` when the layer has no
    /// regularizer.
    ///
    /// # Errors
    /// [`LayerError::NotBuilt`] before build when the layer has regularizers.
    fn regularization_loss<'t>(&self, tape: Option<&'t Tape>) -> Result<Option<Var<'t>>> {
        let _ = tape;
        Ok(None)
    }

    /// Mutable state that is not a variable but must be saved for an exact resume (a dropout
    /// layer's random stream), as JSON; `None` for layers without such state.
    fn state(&self) -> Option<Value> {
        None
    }

    /// Restores what [`state`](Layer::state) returned.
    ///
    /// # Errors
    /// [`LayerError::Config`] when `state` is not a state of this layer.
    fn set_state(&self, state: &Value) -> Result<()> {
        let _ = state;
        Ok(())
    }

    /// For a max-pooling layer, its window `(pool_size, strides, padding)`, so that a layer
    /// before it can [fuse](Layer::call_with_next) with it; `None` for every other layer.
    fn max_pool_window(&self) -> Option<PoolWindow> {
        None
    }

    /// This layer then `next` as one fused operation, when this layer has a kernel for the pair
    /// and the call allows it (`Conv2D` then `MaxPooling2D` on an input that needs no gradient);
    /// `None` to call them one after the other, which a model then does. The result equals
    /// `next.call(self.call(x))` (the same values; the gradients up to float rounding).
    fn call_with_next<'t>(
        &self,
        next: &dyn Layer,
        x: &Var<'t>,
        training: bool,
    ) -> Option<Result<Var<'t>>> {
        let _ = (next, x, training);
        None
    }

    /// Whether the layer may run on a batch cut into shards: `true` when, for every split of a
    /// batch into contiguous row ranges, `call` on the whole batch equals `call` on each range
    /// with the outputs concatenated (the same rows, up to float rounding), and the call has no
    /// side effect that depends on the split (no statistics over the batch, no random draws
    /// from a stream, no state updated per call). A model's `fit` then may run the shards of
    /// a batch on separate threads and add their gradients.
    ///
    /// `false` by default, so that a layer that reads the whole batch (its mean, a random
    /// stream) stays correct; the built-in layers that act on each sample alone answer
    /// `true` (Dropout only when it drops nothing, BatchNormalization only outside training).
    fn splits_over_batch(&self, training: bool) -> bool {
        let _ = training;
        false
    }

    /// Whether a batch runs faster cut into shards on separate threads than whole, with this
    /// layer's kernels split over the threads inside each call. `true` for layers whose
    /// kernels are serial or per sample (the LSTM's recurrence, the direct convolution);
    /// `false` by default, and for layers made of large matrix products, which split well
    /// inside one call while each shard would repeat their fixed costs (packing the weights,
    /// allocating the weight gradient). Only a hint for speed: a network is sharded when all
    /// its layers [split](Layer::splits_over_batch) and one of them gains (the measurements
    /// behind this rule are in `docs/performance.md`, "Threads").
    fn gains_from_shards(&self) -> bool {
        false
    }
}

/// A pooling window: `(pool_size, strides, padding)`.
pub type PoolWindow = ((usize, usize), (usize, usize), Padding);

impl<L: Layer + ?Sized> Layer for Box<L> {
    fn class_name(&self) -> &'static str {
        (**self).class_name()
    }
    fn name(&self) -> &str {
        (**self).name()
    }
    fn set_name(&mut self, name: &str) -> Result<()> {
        (**self).set_name(name)
    }
    fn build(&mut self, input_shape: &[usize], rng: &mut Rng) -> Result<()> {
        (**self).build(input_shape, rng)
    }
    fn built_input_shape(&self) -> Option<&[usize]> {
        (**self).built_input_shape()
    }
    fn call<'t>(&self, x: &Var<'t>, training: bool) -> Result<Var<'t>> {
        (**self).call(x, training)
    }
    fn output_shape(&self, input_shape: &[usize]) -> Result<Vec<usize>> {
        (**self).output_shape(input_shape)
    }
    fn variables(&self) -> Vec<Variable> {
        (**self).variables()
    }
    fn config(&self) -> LayerConfig {
        (**self).config()
    }
    fn regularization_loss<'t>(&self, tape: Option<&'t Tape>) -> Result<Option<Var<'t>>> {
        (**self).regularization_loss(tape)
    }
    fn state(&self) -> Option<Value> {
        (**self).state()
    }
    fn set_state(&self, state: &Value) -> Result<()> {
        (**self).set_state(state)
    }
    fn max_pool_window(&self) -> Option<PoolWindow> {
        (**self).max_pool_window()
    }
    fn call_with_next<'t>(
        &self,
        next: &dyn Layer,
        x: &Var<'t>,
        training: bool,
    ) -> Option<Result<Var<'t>>> {
        (**self).call_with_next(next, x, training)
    }
    fn splits_over_batch(&self, training: bool) -> bool {
        (**self).splits_over_batch(training)
    }
    fn gains_from_shards(&self) -> bool {
        (**self).gains_from_shards()
    }
}

/// The rich API every [`Layer`] gets for free.
pub trait LayerExt: Layer {
    /// Whether [`build`](Layer::build) has run.
    fn is_built(&self) -> bool {
        self.built_input_shape().is_some()
    }

    /// The trainable variables, in Keras' order (`layer.trainable_weights`).
    fn trainable_variables(&self) -> Vec<Variable> {
        self.variables()
            .into_iter()
            .filter(Variable::trainable)
            .collect()
    }

    /// The non-trainable variables (BatchNormalization's moving statistics).
    fn non_trainable_variables(&self) -> Vec<Variable> {
        self.variables()
            .into_iter()
            .filter(|v| !v.trainable())
            .collect()
    }

    /// The number of weights, trainable or not, as Keras' `count_params()`.
    fn count_params(&self) -> usize {
        self.variables().iter().map(Variable::len).sum()
    }

    /// The number of trainable weights.
    fn count_trainable_params(&self) -> usize {
        self.trainable_variables().iter().map(Variable::len).sum()
    }

    /// The values of [`variables`](Layer::variables), in order (Keras' `get_weights()`).
    fn get_weights(&self) -> Vec<Tensor> {
        self.variables().iter().map(Variable::value).collect()
    }

    /// Sets every variable, in the order of [`variables`](Layer::variables) (Keras'
    /// `set_weights()`). Nothing is changed unless every shape fits.
    ///
    /// # Errors
    /// [`LayerError::NotBuilt`] before build (for a layer with weights),
    /// [`LayerError::WeightCount`] when the count differs, an error naming the variable and both
    /// shapes when a shape differs.
    fn set_weights(&self, weights: &[Tensor]) -> Result<()> {
        let vars = self.variables();
        if vars.is_empty() && !weights.is_empty() && !self.is_built() {
            return Err(LayerError::NotBuilt {
                layer: self.name().to_string(),
            });
        }
        if vars.len() != weights.len() {
            return Err(LayerError::WeightCount {
                layer: self.name().to_string(),
                expected: vars.len(),
                got: weights.len(),
            });
        }
        for (v, w) in vars.iter().zip(weights) {
            if v.shape() != w.shape() {
                return Err(gradus_autograd::AutogradError::VariableShape {
                    name: v.name().to_string(),
                    expected: v.shape().to_vec(),
                    got: w.shape().to_vec(),
                }
                .into());
            }
        }
        for (v, w) in vars.iter().zip(weights) {
            v.assign(w.clone())?;
        }
        Ok(())
    }

    /// Inference on a batch: [`call`](Layer::call) with `training = false` on an untracked value.
    ///
    /// # Errors
    /// As [`call`](Layer::call).
    fn predict(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.call(&Var::constant(x.clone()), false)?.into_value())
    }

    /// The configuration as one JSON object `{"class_name": ..., "config": {...}}`.
    fn config_json(&self) -> Value {
        serde_json::to_value(self.config()).expect("a layer config is plain JSON")
    }

    /// The layer built for `input_shape` with weights drawn from `Rng::seed_from_u64(seed)`.
    ///
    /// # Errors
    /// As [`build`](Layer::build).
    fn built(mut self, input_shape: &[usize], seed: u64) -> Result<Self>
    where
        Self: Sized,
    {
        self.build(input_shape, &mut Rng::seed_from_u64(seed))?;
        Ok(self)
    }
}

impl<L: Layer + ?Sized> LayerExt for L {}
