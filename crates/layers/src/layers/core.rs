//! Layers without weights: `Input`, `ActivationLayer`, `Flatten`, `Reshape`, `Dropout`.

use std::sync::{Mutex, PoisonError};

use gradus_autograd::Var;
use gradus_tensor::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::activation::Activation;
use crate::base::{Base, dims};
use crate::error::{LayerError, Result, invalid};
use crate::layer::{Layer, LayerConfig};

/// Implements the `Layer` methods every layer here writes the same way.
macro_rules! base_methods {
    ($class:literal) => {
        fn class_name(&self) -> &'static str {
            $class
        }
        fn name(&self) -> &str {
            &self.base.name
        }
        fn set_name(&mut self, name: &str) -> Result<()> {
            self.base.set_name(name)
        }
        fn built_input_shape(&self) -> Option<&[usize]> {
            self.base.input_shape.as_deref()
        }
    };
}

// ------------------------------------------------------------------------------------- Input

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct InputArgs {
    shape: Vec<usize>,
}

/// The declared shape of a model's inputs (Keras' `keras.Input(shape)`, class `InputLayer`):
/// the identity, checking that every batch has `[batch, ...shape]`.
///
/// ```
/// use gradus_layers::{Input, Layer, LayerExt};
/// use gradus_tensor::Tensor;
///
/// let input = Input::new(&[4]).built(&[4], 0)?;
/// assert_eq!(input.predict(&Tensor::ones(&[2, 4]))?.shape(), &[2, 4]);
/// assert!(input.predict(&Tensor::ones(&[2, 5])).is_err());
/// # Ok::<(), gradus_layers::LayerError>(())
/// ```
///
/// # Errors
/// `build` fails when given another shape than the declared one; `call` for batches of
/// another shape.
#[derive(Debug, Clone)]
pub struct Input {
    base: Base,
    args: InputArgs,
}

impl Input {
    /// Inputs of `shape` (without the batch axis).
    pub fn new(shape: &[usize]) -> Input {
        Input::from_args(
            InputArgs {
                shape: shape.to_vec(),
            },
            None,
        )
    }

    pub(crate) fn from_args(args: InputArgs, name: Option<String>) -> Input {
        let mut base = Base::new("input_layer");
        if let Some(n) = name {
            base.rename(&n);
        }
        Input { base, args }
    }

    /// The declared shape (without the batch axis).
    pub fn shape(&self) -> &[usize] {
        &self.args.shape
    }

    /// The layer's name.
    pub fn with_name(mut self, name: &str) -> Self {
        self.base.rename(name);
        self
    }
}

impl Layer for Input {
    base_methods!("InputLayer");

    fn splits_over_batch(&self, _training: bool) -> bool {
        true
    }

    fn build(&mut self, input_shape: &[usize], _rng: &mut Rng) -> Result<()> {
        self.base.check_pending()?;
        self.output_shape(input_shape)?;
        self.base.input_shape = Some(input_shape.to_vec());
        Ok(())
    }

    fn call<'t>(&self, x: &Var<'t>, _training: bool) -> Result<Var<'t>> {
        self.base.check_batch(x.shape())?;
        Ok(x.clone())
    }

    fn output_shape(&self, input_shape: &[usize]) -> Result<Vec<usize>> {
        if input_shape != self.args.shape.as_slice() {
            return Err(self
                .base
                .shape_error(format!("[{}]", dims(&self.args.shape)), input_shape));
        }
        Ok(input_shape.to_vec())
    }

    fn config(&self) -> LayerConfig {
        self.base.config("InputLayer", &self.args)
    }
}

// -------------------------------------------------------------------------------- Activation

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ActivationArgs {
    activation: Activation,
}

/// An activation as a layer (Keras' `Activation` layer): `y = f(x)`, any shape.
///
/// ```
/// use gradus_layers::{ActivationLayer, Layer, LayerExt};
/// use gradus_tensor::Tensor;
///
/// let relu = ActivationLayer::new("relu").built(&[2], 0)?;
/// let x = Tensor::from_vec(vec![-1.0, 2.0], &[1, 2])?;
/// assert_eq!(relu.predict(&x)?.to_vec(), vec![0.0, 2.0]);
/// # Ok::<(), gradus_layers::LayerError>(())
/// ```
///
/// # Errors
/// `build` fails for an unknown activation name.
#[derive(Debug, Clone)]
pub struct ActivationLayer {
    base: Base,
    args: ActivationArgs,
}

impl ActivationLayer {
    /// The layer applying `activation` (by value or by name).
    pub fn new<A>(activation: A) -> ActivationLayer
    where
        A: TryInto<Activation>,
        A::Error: Into<LayerError>,
    {
        let mut base = Base::new("activation");
        let activation = base.resolve(activation).unwrap_or_default();
        ActivationLayer {
            base,
            args: ActivationArgs { activation },
        }
    }

    pub(crate) fn from_args(args: ActivationArgs, name: Option<String>) -> ActivationLayer {
        let mut layer = ActivationLayer::new(args.activation);
        if let Some(n) = name {
            layer.base.rename(&n);
        }
        layer
    }

    /// The layer's name.
    pub fn with_name(mut self, name: &str) -> Self {
        self.base.rename(name);
        self
    }
}

impl Layer for ActivationLayer {
    base_methods!("Activation");

    fn splits_over_batch(&self, _training: bool) -> bool {
        true
    }

    fn build(&mut self, input_shape: &[usize], _rng: &mut Rng) -> Result<()> {
        self.base.check_pending()?;
        self.base.input_shape = Some(input_shape.to_vec());
        Ok(())
    }

    fn call<'t>(&self, x: &Var<'t>, _training: bool) -> Result<Var<'t>> {
        self.base.built()?;
        self.args.activation.apply(x)
    }

    fn output_shape(&self, input_shape: &[usize]) -> Result<Vec<usize>> {
        Ok(input_shape.to_vec())
    }

    fn config(&self) -> LayerConfig {
        self.base.config("Activation", &self.args)
    }
}

// ----------------------------------------------------------------------------------- Flatten

/// Flattens every sample: `[batch, d1, d2, ...] -> [batch, d1 d2 ...]` (row-major, as Keras'
/// channels-last `Flatten`).
///
/// ```
/// use gradus_layers::{Flatten, Layer, LayerExt};
/// use gradus_tensor::Tensor;
///
/// let flatten = Flatten::new().built(&[13, 13, 32], 0)?;
/// assert_eq!(flatten.output_shape(&[13, 13, 32])?, vec![5408]);
/// assert_eq!(flatten.predict(&Tensor::ones(&[2, 13, 13, 32]))?.shape(), &[2, 5408]);
/// # Ok::<(), gradus_layers::LayerError>(())
/// ```
///
/// # Errors
/// `call` fails for batches whose sample shape is not the built one.
#[derive(Debug, Clone)]
pub struct Flatten {
    base: Base,
}

impl Flatten {
    /// A flatten layer.
    pub fn new() -> Flatten {
        Flatten {
            base: Base::new("flatten"),
        }
    }

    /// The layer's name.
    pub fn with_name(mut self, name: &str) -> Self {
        self.base.rename(name);
        self
    }
}

impl Default for Flatten {
    fn default() -> Self {
        Flatten::new()
    }
}

impl Layer for Flatten {
    base_methods!("Flatten");

    fn splits_over_batch(&self, _training: bool) -> bool {
        true
    }

    fn build(&mut self, input_shape: &[usize], _rng: &mut Rng) -> Result<()> {
        self.base.check_pending()?;
        self.base.input_shape = Some(input_shape.to_vec());
        Ok(())
    }

    fn call<'t>(&self, x: &Var<'t>, _training: bool) -> Result<Var<'t>> {
        self.base.check_batch(x.shape())?;
        let n = x.shape()[0];
        Ok(x.reshape(&[n, x.len() / n.max(1)])?)
    }

    fn output_shape(&self, input_shape: &[usize]) -> Result<Vec<usize>> {
        let count = input_shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d));
        count.map(|n| vec![n]).ok_or_else(|| {
            invalid(
                format!("Flatten {:?}", self.base.name),
                format!("expected samples of at most usize::MAX elements, got {input_shape:?}"),
            )
        })
    }

    fn config(&self) -> LayerConfig {
        self.base.config("Flatten", &json!({}))
    }
}

// ----------------------------------------------------------------------------------- Reshape

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ReshapeArgs {
    target_shape: Vec<i64>,
}

/// Reshapes every sample to `target_shape` (row-major; one length may be `-1`, inferred), as
/// Keras' `Reshape`: `[batch, ...] -> [batch, ...target_shape]`.
///
/// ```
/// use gradus_layers::{Layer, LayerExt, Reshape};
/// use gradus_tensor::Tensor;
///
/// let r = Reshape::new(&[-1, 2]).built(&[6], 0)?;
/// assert_eq!(r.output_shape(&[6])?, vec![3, 2]);
/// assert_eq!(r.predict(&Tensor::ones(&[4, 6]))?.shape(), &[4, 3, 2]);
/// # Ok::<(), gradus_layers::LayerError>(())
/// ```
///
/// # Errors
/// `build` fails when the target does not hold the input's element count, has more than one
/// `-1`, or has a length below -1.
#[derive(Debug, Clone)]
pub struct Reshape {
    base: Base,
    args: ReshapeArgs,
}

impl Reshape {
    /// A reshape of every sample to `target_shape` (without the batch axis; one `-1` allowed).
    pub fn new(target_shape: &[i64]) -> Reshape {
        Reshape::from_args(
            ReshapeArgs {
                target_shape: target_shape.to_vec(),
            },
            None,
        )
    }

    pub(crate) fn from_args(args: ReshapeArgs, name: Option<String>) -> Reshape {
        let mut base = Base::new("reshape");
        if let Some(n) = name {
            base.rename(&n);
        }
        Reshape { base, args }
    }

    /// The layer's name.
    pub fn with_name(mut self, name: &str) -> Self {
        self.base.rename(name);
        self
    }
}

impl Layer for Reshape {
    base_methods!("Reshape");

    fn splits_over_batch(&self, _training: bool) -> bool {
        true
    }

    fn build(&mut self, input_shape: &[usize], _rng: &mut Rng) -> Result<()> {
        self.base.check_pending()?;
        self.output_shape(input_shape)?;
        self.base.input_shape = Some(input_shape.to_vec());
        Ok(())
    }

    fn call<'t>(&self, x: &Var<'t>, _training: bool) -> Result<Var<'t>> {
        self.base.check_batch(x.shape())?;
        let mut shape = vec![x.shape()[0]];
        shape.extend(self.output_shape(&x.shape()[1..])?);
        Ok(x.reshape(&shape)?)
    }

    fn output_shape(&self, input_shape: &[usize]) -> Result<Vec<usize>> {
        let target = &self.args.target_shape;
        // Element counts that overflow are as impossible as lengths that do not match.
        let count = input_shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d));
        let count_text = count.map_or("more than usize::MAX".to_string(), |c| c.to_string());
        let unknown: Vec<usize> = (0..target.len()).filter(|&i| target[i] == -1).collect();
        let bad = || {
            invalid(
                format!("Reshape {:?}", self.base.name),
                format!(
                    "cannot reshape samples of shape {input_shape:?} ({count_text} elements) to \
                     {target:?}: expected non-negative lengths (at most one -1) holding \
                     {count_text} elements"
                ),
            )
        };
        if unknown.len() > 1 || target.iter().any(|&d| d < -1) {
            return Err(bad());
        }
        let (Some(count), Some(known)) = (
            count,
            target
                .iter()
                .filter(|&&d| d >= 0)
                .try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?)),
        ) else {
            return Err(bad());
        };
        let mut out: Vec<usize> = target.iter().map(|&d| d.max(0) as usize).collect();
        if let Some(&i) = unknown.first() {
            if known == 0 || !count.is_multiple_of(known) {
                return Err(bad());
            }
            out[i] = count / known;
        } else if known != count {
            return Err(bad());
        }
        Ok(out)
    }

    fn config(&self) -> LayerConfig {
        self.base.config("Reshape", &self.args)
    }
}

// ----------------------------------------------------------------------------------- Dropout

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DropoutArgs {
    rate: f32,
    #[serde(default)]
    seed: Option<u64>,
}

/// Inverted dropout (Keras' `Dropout`): while training, each element is zeroed with probability
/// `rate` and the others are scaled by `1 / (1 - rate)`; at inference, the identity.
///
/// The masks come from the layer's own seeded random stream: from `seed` if given, otherwise
/// forked from the generator given to `build`. The stream's position is the layer's
/// [`state`](Layer::state), so a saved and restored model draws the same masks next.
///
/// ```
/// use gradus_layers::{Dropout, Layer, LayerExt};
/// use gradus_autograd::Var;
/// use gradus_tensor::Tensor;
///
/// let drop = Dropout::new(0.5).seed(1).built(&[1000], 0)?;
/// let x = Tensor::ones(&[1, 1000]);
/// assert_eq!(drop.predict(&x)?, x); // inference: identity
/// let y = drop.call(&Var::constant(x), true)?.into_value().to_vec();
/// assert!(y.iter().all(|&v| v == 0.0 || v == 2.0));
/// # Ok::<(), gradus_layers::LayerError>(())
/// ```
///
/// # Errors
/// `build` fails unless `0 <= rate < 1`.
#[derive(Debug)]
pub struct Dropout {
    base: Base,
    args: DropoutArgs,
    rng: Mutex<Rng>,
}

impl Clone for Dropout {
    fn clone(&self) -> Self {
        Dropout {
            base: self.base.clone(),
            args: self.args.clone(),
            rng: Mutex::new(self.lock().clone()),
        }
    }
}

impl Dropout {
    /// Dropout of a fraction `rate` of the elements, `0 <= rate < 1`.
    pub fn new(rate: f32) -> Dropout {
        Dropout::from_args(DropoutArgs { rate, seed: None }, None)
    }

    pub(crate) fn from_args(args: DropoutArgs, name: Option<String>) -> Dropout {
        let mut base = Base::new("dropout");
        if let Some(n) = name {
            base.rename(&n);
        }
        let rng = Mutex::new(Rng::seed_from_u64(args.seed.unwrap_or(0)));
        Dropout { base, args, rng }
    }

    /// A fixed seed for the masks (otherwise the stream is forked from `build`'s generator).
    pub fn seed(mut self, seed: u64) -> Self {
        self.args.seed = Some(seed);
        self.rng = Mutex::new(Rng::seed_from_u64(seed));
        self
    }

    /// The layer's name.
    pub fn with_name(mut self, name: &str) -> Self {
        self.base.rename(name);
        self
    }

    /// The dropout rate.
    pub fn rate(&self) -> f32 {
        self.args.rate
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rng> {
        // The generator is always in a valid state, even if a panic happened while it was held.
        self.rng.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Layer for Dropout {
    base_methods!("Dropout");

    /// Only when nothing is dropped: a mask drawn per shard would change with the split.
    fn splits_over_batch(&self, training: bool) -> bool {
        !training || self.args.rate == 0.0
    }

    fn build(&mut self, input_shape: &[usize], rng: &mut Rng) -> Result<()> {
        self.base.check_pending()?;
        let rate = self.args.rate;
        if !(0.0..1.0).contains(&rate) {
            return Err(invalid(
                format!("Dropout {:?} rate", self.base.name),
                format!("expected a rate in [0, 1), got {rate}"),
            ));
        }
        let stream = match self.args.seed {
            Some(s) => Rng::seed_from_u64(s),
            None => rng.fork(),
        };
        *self.lock() = stream;
        self.base.input_shape = Some(input_shape.to_vec());
        Ok(())
    }

    fn call<'t>(&self, x: &Var<'t>, training: bool) -> Result<Var<'t>> {
        self.base.built()?;
        Ok(x.dropout(self.args.rate, training, &mut self.lock())?)
    }

    fn output_shape(&self, input_shape: &[usize]) -> Result<Vec<usize>> {
        Ok(input_shape.to_vec())
    }

    fn config(&self) -> LayerConfig {
        self.base.config("Dropout", &self.args)
    }

    fn state(&self) -> Option<Value> {
        Some(json!({ "rng": self.lock().state() }))
    }

    fn set_state(&self, state: &Value) -> Result<()> {
        let s: [u64; 4] = state
            .get("rng")
            .cloned()
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| LayerError::Config {
                class: "Dropout".into(),
                message: format!("expected a state {{\"rng\": [4 integers]}}, got {state}"),
            })?;
        *self.lock() = Rng::from_state(s);
        Ok(())
    }
}
