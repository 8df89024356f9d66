//! `BatchNormalization` and `Embedding`.

use gradus_autograd::{Tape, Var, Variable};
use gradus_tensor::{Rng, Tensor};
use serde::{Deserialize, Serialize};

use super::dense::{yes, zeros};
use crate::base::{Base, positive, sum_penalties};
use crate::error::{Result, invalid};
use crate::initializers::Initializer;
use crate::layer::{Layer, LayerConfig};
use crate::regularizers::Regularizer;

fn minus_one() -> isize {
    -1
}
fn momentum() -> f32 {
    0.99
}
fn epsilon() -> f32 {
    1e-3
}
fn ones() -> Initializer {
    Initializer::Ones
}

/// Keras' arguments of [`BatchNormalization`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BatchNormArgs {
    #[serde(default = "minus_one")]
    axis: isize,
    #[serde(default = "momentum")]
    momentum: f32,
    #[serde(default = "epsilon")]
    epsilon: f32,
    #[serde(default = "yes")]
    center: bool,
    #[serde(default = "yes")]
    scale: bool,
    #[serde(default = "zeros")]
    beta_initializer: Initializer,
    #[serde(default = "ones")]
    gamma_initializer: Initializer,
    #[serde(default = "zeros")]
    moving_mean_initializer: Initializer,
    #[serde(default = "ones")]
    moving_variance_initializer: Initializer,
    #[serde(default)]
    beta_regularizer: Option<Regularizer>,
    #[serde(default)]
    gamma_regularizer: Option<Regularizer>,
}

/// Batch normalization (Keras' `BatchNormalization`) over the features of `axis` (default the
/// last):
///
/// ```text
/// training:  mu, var = mean and (biased) variance of x over every axis but `axis`
///            y = gamma (x - mu) / sqrt(var + epsilon) + beta
///            moving_mean = momentum moving_mean + (1 - momentum) mu    (same for the variance)
/// inference: y = gamma (x - moving_mean) / sqrt(moving_variance + epsilon) + beta
/// ```
///
/// Shapes: any input `[batch, ...]`; `gamma`, `beta`, `moving_mean`, `moving_variance` are
/// `[features]` (the length of `axis`); output as input. The moving statistics are
/// non-trainable variables, updated by each call with `training = true`. Defaults as Keras:
/// `momentum = 0.99`, `epsilon = 1e-3`, `center` and `scale`.
///
/// ```
/// use gradus_autograd::Var;
/// use gradus_layers::{BatchNormalization, Layer, LayerExt};
/// use gradus_tensor::Tensor;
///
/// let bn = BatchNormalization::new().built(&[2], 0)?;
/// assert_eq!((bn.count_params(), bn.count_trainable_params()), (8, 4));
/// let x = Tensor::from_vec(vec![1.0, 10.0, 3.0, 30.0], &[2, 2])?;
/// let y = bn.call(&Var::constant(x), true)?.into_value().to_vec();
/// assert!((y[0] + 1.0).abs() < 1e-3 && (y[2] - 1.0).abs() < 1e-3); // standardized
/// # Ok::<(), gradus_layers::LayerError>(())
/// ```
///
/// # Errors
/// `build` fails for an axis out of range, `momentum` outside `[0, 1]` or a non-positive
/// `epsilon`; `call` for inputs whose shape is not the built one.
#[derive(Debug, Clone)]
pub struct BatchNormalization {
    base: Base,
    args: BatchNormArgs,
    axis: usize,
    gamma: Option<Variable>,
    beta: Option<Variable>,
    moving_mean: Option<Variable>,
    moving_variance: Option<Variable>,
}

impl BatchNormalization {
    /// Batch normalization with Keras' defaults.
    pub fn new() -> BatchNormalization {
        BatchNormalization::from_args(
            BatchNormArgs {
                axis: -1,
                momentum: 0.99,
                epsilon: 1e-3,
                center: true,
                scale: true,
                beta_initializer: Initializer::Zeros,
                gamma_initializer: Initializer::Ones,
                moving_mean_initializer: Initializer::Zeros,
                moving_variance_initializer: Initializer::Ones,
                beta_regularizer: None,
                gamma_regularizer: None,
            },
            None,
        )
    }

    pub(crate) fn from_args(args: BatchNormArgs, name: Option<String>) -> BatchNormalization {
        let mut base = Base::new("batch_normalization");
        if let Some(n) = name {
            base.rename(&n);
        }
        BatchNormalization {
            base,
            args,
            axis: 0,
            gamma: None,
            beta: None,
            moving_mean: None,
            moving_variance: None,
        }
    }

    /// The feature axis of the full input, batch axis included (Keras: -1).
    pub fn axis(mut self, axis: isize) -> Self {
        self.args.axis = axis;
        self
    }

    /// The momentum of the moving statistics (Keras: 0.99).
    pub fn momentum(mut self, momentum: f32) -> Self {
        self.args.momentum = momentum;
        self
    }

    /// Added to the variance (Keras: 1e-3).
    pub fn epsilon(mut self, epsilon: f32) -> Self {
        self.args.epsilon = epsilon;
        self
    }

    /// Whether to add `beta` (Keras: true).
    pub fn center(mut self, yes: bool) -> Self {
        self.args.center = yes;
        self
    }

    /// Whether to multiply by `gamma` (Keras: true).
    pub fn scale(mut self, yes: bool) -> Self {
        self.args.scale = yes;
        self
    }

    setter!(
        /// A penalty on `gamma`.
        gamma_regularizer: Option<Regularizer>
    );

    setter!(
        /// A penalty on `beta`.
        beta_regularizer: Option<Regularizer>
    );

    setter!(
        /// The layer's name (default `"batch_normalization"`).
        with_name
    );

    /// The moving mean and variance, once built.
    pub fn moving_statistics(&self) -> Option<(&Variable, &Variable)> {
        self.moving_mean.as_ref().zip(self.moving_variance.as_ref())
    }
}

impl Default for BatchNormalization {
    fn default() -> Self {
        BatchNormalization::new()
    }
}

impl Layer for BatchNormalization {
    /// Only outside training: in training the batch statistics (and the moving averages
    /// updated from them) depend on the split.
    fn splits_over_batch(&self, training: bool) -> bool {
        !training
    }

    fn class_name(&self) -> &'static str {
        "BatchNormalization"
    }

    fn name(&self) -> &str {
        &self.base.name
    }

    fn set_name(&mut self, name: &str) -> Result<()> {
        self.base.set_name(name)
    }

    fn build(&mut self, input_shape: &[usize], _rng: &mut Rng) -> Result<()> {
        self.base.check_pending()?;
        let a = &self.args;
        let what = || format!("BatchNormalization {:?}", self.base.name);
        if !(0.0..=1.0).contains(&a.momentum) {
            return Err(invalid(
                what(),
                format!("expected momentum in [0, 1], got {}", a.momentum),
            ));
        }
        if !(a.epsilon > 0.0 && a.epsilon.is_finite()) {
            return Err(invalid(
                what(),
                format!("expected epsilon > 0, got {}", a.epsilon),
            ));
        }
        for r in [a.beta_regularizer, a.gamma_regularizer]
            .into_iter()
            .flatten()
        {
            r.validate()?;
        }
        let rank = input_shape.len() as isize + 1;
        let axis = if a.axis < 0 { a.axis + rank } else { a.axis };
        if axis < 1 || axis >= rank {
            return Err(invalid(
                what(),
                format!(
                    "axis {} is out of range for inputs of shape [batch, {}] (expected a feature axis)",
                    a.axis,
                    crate::base::dims(input_shape)
                ),
            ));
        }
        self.axis = axis as usize;
        let c = input_shape[self.axis - 1];
        let mut rng = Rng::seed_from_u64(0); // the default initializers draw nothing
        let var =
            |role: &str, init: Initializer, trainable: bool, rng: &mut Rng| -> Result<Variable> {
                Ok(Variable::with_trainable(
                    self.base.var_name(role),
                    init.init(&[c], rng)?,
                    trainable,
                ))
            };
        let gamma = a
            .scale
            .then(|| var("gamma", a.gamma_initializer, true, &mut rng))
            .transpose()?;
        let beta = a
            .center
            .then(|| var("beta", a.beta_initializer, true, &mut rng))
            .transpose()?;
        let mm = var("moving_mean", a.moving_mean_initializer, false, &mut rng)?;
        let mv = var(
            "moving_variance",
            a.moving_variance_initializer,
            false,
            &mut rng,
        )?;
        (self.gamma, self.beta) = (gamma, beta);
        (self.moving_mean, self.moving_variance) = (Some(mm), Some(mv));
        self.base.input_shape = Some(input_shape.to_vec());
        Ok(())
    }

    fn built_input_shape(&self) -> Option<&[usize]> {
        self.base.input_shape.as_deref()
    }

    fn call<'t>(&self, x: &Var<'t>, training: bool) -> Result<Var<'t>> {
        self.base.check_batch(x.shape())?;
        let rank = x.ndim();
        let c = x.shape()[self.axis];
        let axes: Vec<isize> = (0..rank)
            .filter(|&i| i != self.axis)
            .map(|i| i as isize)
            .collect();
        let mut bshape = vec![1usize; rank];
        bshape[self.axis] = c;
        let along = |v: &Variable| -> Result<Var<'t>> { Ok(x.param(v).reshape(&bshape)?) };
        let (mm, mv) = self.moving_statistics().expect("built");
        let eps = self.args.epsilon;
        let mut y = if training {
            let mean = x.mean_axes(&axes, true)?;
            let xc = x.sub(&mean)?;
            let var = xc.square().mean_axes(&axes, true)?;
            let m = self.args.momentum;
            let update = |moving: &Variable, batch: &Tensor| -> Result<()> {
                let batch = batch.reshape(&[c])?.to_vec();
                moving.update(|v| {
                    v.iter_mut()
                        .zip(&batch)
                        .for_each(|(v, b)| *v = *v * m + b * (1.0 - m));
                });
                Ok(())
            };
            update(mm, mean.value())?;
            update(mv, var.value())?;
            xc.mul(&var.add_scalar(eps).rsqrt())?
        } else {
            let inv = Var::constant(mv.value())
                .add_scalar(eps)
                .rsqrt()
                .into_value();
            let shift = x.lift(mm.value().reshape(&bshape)?);
            x.sub(&shift)?.mul(&x.lift(inv.reshape(&bshape)?))?
        };
        if let Some(g) = &self.gamma {
            y = y.mul(&along(g)?)?;
        }
        if let Some(b) = &self.beta {
            y = y.add(&along(b)?)?;
        }
        Ok(y)
    }

    fn output_shape(&self, input_shape: &[usize]) -> Result<Vec<usize>> {
        Ok(input_shape.to_vec())
    }

    fn variables(&self) -> Vec<Variable> {
        self.gamma
            .iter()
            .chain(&self.beta)
            .chain(&self.moving_mean)
            .chain(&self.moving_variance)
            .cloned()
            .collect()
    }

    fn config(&self) -> LayerConfig {
        self.base.config(self.class_name(), &self.args)
    }

    fn regularization_loss<'t>(&self, tape: Option<&'t Tape>) -> Result<Option<Var<'t>>> {
        let a = &self.args;
        if a.gamma_regularizer.is_none() && a.beta_regularizer.is_none() {
            return Ok(None);
        }
        self.base.built()?;
        sum_penalties(
            tape,
            &[
                (a.gamma_regularizer, self.gamma.as_ref()),
                (a.beta_regularizer, self.beta.as_ref()),
            ],
        )
    }
}

// --------------------------------------------------------------------------------- Embedding

fn uniform() -> Initializer {
    Initializer::RandomUniform {
        minval: -0.05,
        maxval: 0.05,
    }
}

/// Keras' arguments of [`Embedding`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct EmbeddingArgs {
    input_dim: usize,
    output_dim: usize,
    #[serde(default = "uniform")]
    embeddings_initializer: Initializer,
    #[serde(default)]
    embeddings_regularizer: Option<Regularizer>,
}

/// A lookup table of learned vectors (Keras' `Embedding`): `y[..., :] = embeddings[x[...], :]`
/// for integer ids `x` (stored as `f32`) in `0..input_dim`.
///
/// Shapes: input `[batch, ...]` of ids, `embeddings: [input_dim, output_dim]`, output
/// `[batch, ..., output_dim]`. The gradient adds each output gradient row into the row of its
/// id (repeated ids accumulate). Default initializer: `uniform` (`[-0.05, 0.05)`).
///
/// ```
/// use gradus_layers::{Embedding, Layer, LayerExt};
/// use gradus_tensor::Tensor;
///
/// let emb = Embedding::new(10, 4).built(&[3], 0)?;
/// let ids = Tensor::from_vec(vec![1.0, 2.0, 1.0, 9.0, 0.0, 0.0], &[2, 3])?;
/// assert_eq!(emb.predict(&ids)?.shape(), &[2, 3, 4]);
/// assert!(emb.predict(&Tensor::from_vec(vec![10.0, 0.0, 0.0], &[1, 3])?).is_err());
/// # Ok::<(), gradus_layers::LayerError>(())
/// ```
///
/// # Errors
/// `build` fails for zero `input_dim` or `output_dim`; `call` for ids that are not integers in
/// `0..input_dim` (naming the id and its position) or inputs of another shape.
#[derive(Debug, Clone)]
pub struct Embedding {
    base: Base,
    args: EmbeddingArgs,
    embeddings: Option<Variable>,
}

impl Embedding {
    /// A table of `input_dim` vectors of length `output_dim`.
    pub fn new(input_dim: usize, output_dim: usize) -> Embedding {
        Embedding::from_args(
            EmbeddingArgs {
                input_dim,
                output_dim,
                embeddings_initializer: uniform(),
                embeddings_regularizer: None,
            },
            None,
        )
    }

    pub(crate) fn from_args(args: EmbeddingArgs, name: Option<String>) -> Embedding {
        let mut base = Base::new("embedding");
        if let Some(n) = name {
            base.rename(&n);
        }
        Embedding {
            base,
            args,
            embeddings: None,
        }
    }

    setter!(
        /// The initializer of the table (Keras: `uniform`).
        embeddings_initializer: Initializer
    );

    setter!(
        /// A penalty on the table.
        embeddings_regularizer: Option<Regularizer>
    );

    setter!(
        /// The layer's name (default `"embedding"`).
        with_name
    );

    /// The table `[input_dim, output_dim]`, once built.
    pub fn embeddings(&self) -> Option<&Variable> {
        self.embeddings.as_ref()
    }
}

impl Layer for Embedding {
    fn splits_over_batch(&self, _training: bool) -> bool {
        true
    }

    fn class_name(&self) -> &'static str {
        "Embedding"
    }

    fn name(&self) -> &str {
        &self.base.name
    }

    fn set_name(&mut self, name: &str) -> Result<()> {
        self.base.set_name(name)
    }

    fn build(&mut self, input_shape: &[usize], rng: &mut Rng) -> Result<()> {
        self.base.check_pending()?;
        let a = &self.args;
        let rows = positive("Embedding input_dim", a.input_dim)?;
        let cols = positive("Embedding output_dim", a.output_dim)?;
        if let Some(r) = a.embeddings_regularizer {
            r.validate()?;
        }
        let table = a.embeddings_initializer.init(&[rows, cols], rng)?;
        self.embeddings = Some(Variable::new(self.base.var_name("embeddings"), table));
        self.base.input_shape = Some(input_shape.to_vec());
        Ok(())
    }

    fn built_input_shape(&self) -> Option<&[usize]> {
        self.base.input_shape.as_deref()
    }

    fn call<'t>(&self, x: &Var<'t>, _training: bool) -> Result<Var<'t>> {
        self.base.check_batch(x.shape())?;
        let n = self.args.input_dim;
        let ids = x
            .value()
            .to_vec()
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                if v >= 0.0 && v.fract() == 0.0 && (v as usize) < n {
                    Ok(v as usize)
                } else {
                    Err(invalid(
                        format!("Embedding {:?}", self.base.name),
                        format!("expected integer ids in 0..{n}, got {v} at flat position {i}"),
                    ))
                }
            })
            .collect::<Result<Vec<usize>>>()?;
        let table = x.param(self.embeddings.as_ref().expect("built"));
        let mut shape = x.shape().to_vec();
        shape.push(self.args.output_dim);
        Ok(table.gather_rows(&ids)?.reshape(&shape)?)
    }

    fn output_shape(&self, input_shape: &[usize]) -> Result<Vec<usize>> {
        let mut out = input_shape.to_vec();
        out.push(self.args.output_dim);
        Ok(out)
    }

    fn variables(&self) -> Vec<Variable> {
        self.embeddings.iter().cloned().collect()
    }

    fn config(&self) -> LayerConfig {
        self.base.config(self.class_name(), &self.args)
    }

    fn regularization_loss<'t>(&self, tape: Option<&'t Tape>) -> Result<Option<Var<'t>>> {
        if self.args.embeddings_regularizer.is_none() {
            return Ok(None);
        }
        self.base.built()?;
        sum_penalties(
            tape,
            &[(self.args.embeddings_regularizer, self.embeddings.as_ref())],
        )
    }
}
