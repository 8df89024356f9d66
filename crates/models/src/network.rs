//! [`Network`]: what a model computes (its layers and its `call`), and [`Sequential`], the
//! network that is a plain stack of layers.

use std::fmt;

use gradus_autograd::{Tape, Var, Variable};
use gradus_layers::{Layer, LayerConfig, LayerExt, layer_from_config};
use gradus_tensor::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// What a model computes: its layers and how an input flows through them. This is the
/// "subclass" style of Keras: a struct holds its layers as fields and writes
/// [`call`](Network::call); wrapped in a [`Model`](crate::Model) it gets `compile`, `fit`,
/// `evaluate`, `predict`, `summary` and saving, exactly as a [`Sequential`].
///
/// Three methods are required: [`call`](Network::call), [`build`](Network::build) (create each
/// layer's variables for an input shape; [`build_chain`] does it for layers applied one after
/// another) and [`layers`](Network::layers) (every layer, in the order `summary` lists them).
/// Variables, trainable variables and the regularization loss follow from the layers.
///
/// ```
/// use gradus_autograd::Var;
/// use gradus_layers::{Dense, Layer};
/// use gradus_models::{Network, Result, build_chain};
/// use gradus_tensor::Rng;
///
/// /// A two-layer perceptron with a skip of the hidden layer's activation.
/// #[derive(Debug)]
/// struct Mlp {
///     hidden: Dense,
///     out: Dense,
/// }
///
/// impl Network for Mlp {
///     fn call<'t>(&self, x: &Var<'t>, training: bool) -> Result<Var<'t>> {
///         let h = self.hidden.call(x, training)?;
///         Ok(self.out.call(&h, training)?)
///     }
///     fn build(&mut self, input_shape: &[usize], rng: &mut Rng) -> Result<()> {
///         build_chain(&mut [&mut self.hidden, &mut self.out], input_shape, rng)?;
///         Ok(())
///     }
///     fn layers(&self) -> Vec<&dyn Layer> {
///         vec![&self.hidden, &self.out]
///     }
/// }
///
/// let mut mlp = Mlp { hidden: Dense::new(8).activation("relu"), out: Dense::new(3).with_name("out") };
/// mlp.build(&[4], &mut Rng::seed_from_u64(0))?;
/// assert_eq!(mlp.variables().len(), 4);
/// # Ok::<(), gradus_models::ModelError>(())
/// ```
pub trait Network: fmt::Debug + Send + Sync {
    /// The output for a batch `x` (`[batch, ...input_shape]`), recorded on `x`'s tape if it has
    /// one; `training` switches Dropout and BatchNormalization.
    ///
    /// # Errors
    /// Errors of the layers (input shapes, layers not built).
    fn call<'t>(&self, x: &Var<'t>, training: bool) -> Result<Var<'t>>;

    /// Creates every layer's variables for inputs of `input_shape` (without the batch axis).
    ///
    /// # Errors
    /// Errors of the layers (invalid arguments, input shapes they cannot take).
    fn build(&mut self, input_shape: &[usize], rng: &mut Rng) -> Result<()>;

    /// The layers, in the order `summary` lists them.
    fn layers(&self) -> Vec<&dyn Layer>;

    /// The network's name, the title of its summary (Keras: `"sequential"`, or the snake-case
    /// class name of a subclassed model).
    fn name(&self) -> &str {
        "model"
    }

    /// The input shape given at construction (without the batch axis), if any: a model is then
    /// built at once rather than on its first data.
    fn declared_input_shape(&self) -> Option<Vec<usize>> {
        None
    }

    /// The architecture as JSON, for saving a whole model; `None` (the default) for networks
    /// that the code rebuilds itself (load their weights into a new instance with
    /// [`Model::load_into`](crate::Model::load_into), built, or able to give an
    /// [`unbuilt_copy`](Network::unbuilt_copy)).
    fn config(&self) -> Option<NetworkConfig> {
        None
    }

    /// A new network of the same architecture that is not built (the same layers, names and
    /// arguments, no variables), or `None` (the default) when the network cannot make one.
    ///
    /// [`Model::load_into`](crate::Model::load_into) builds this copy for the saved input
    /// shape and swaps it in only once the whole file fits, so that a file that does not
    /// fit leaves an unbuilt model unbuilt. Without it, `load_into` needs a built model.
    fn unbuilt_copy(&self) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }

    /// Whether [`call`](Network::call) may run on a batch cut into shards: `true` when, for
    /// every split of a batch into contiguous row ranges, the output of the whole batch equals
    /// the outputs of the ranges concatenated (the same rows, up to float rounding) and the
    /// call has no side effect that depends on the split (see
    /// [`Layer::splits_over_batch`]). [`Model::fit`](crate::Model::fit) then may run the
    /// shards of a batch on separate threads.
    ///
    /// `false` by default, since a `call` written by hand may mix the samples of a batch; a
    /// network whose `call` keeps samples apart may answer
    /// `self.layers().iter().all(|l| l.splits_over_batch(training))`, as [`Sequential`] does.
    fn splits_over_batch(&self, training: bool) -> bool {
        let _ = training;
        false
    }

    /// Whether shards run faster than the whole batch with split kernels (see
    /// [`Layer::gains_from_shards`]); `false` by default. [`Sequential`] answers whether one
    /// of its layers gains.
    fn gains_from_shards(&self) -> bool {
        false
    }

    /// Whether every layer is built.
    fn is_built(&self) -> bool {
        let layers = self.layers();
        !layers.is_empty() && layers.iter().all(|l| l.is_built())
    }

    /// Every variable (trainable or not), layer by layer, in Keras' order (`model.weights`).
    fn variables(&self) -> Vec<Variable> {
        self.layers().iter().flat_map(|l| l.variables()).collect()
    }

    /// The trainable variables (`model.trainable_variables`), the ones `fit` updates.
    fn trainable_variables(&self) -> Vec<Variable> {
        self.variables()
            .into_iter()
            .filter(Variable::trainable)
            .collect()
    }

    /// The sum of every layer's weight penalties, in `tape`'s context (differentiable under a
    /// tape); `None` when no layer has a regularizer.
    ///
    /// # Errors
    /// Errors of the layers' regularizers.
    fn regularization_loss<'t>(&self, tape: Option<&'t Tape>) -> Result<Option<Var<'t>>> {
        let mut total: Option<Var<'t>> = None;
        for layer in self.layers() {
            if let Some(term) = layer.regularization_loss(tape)? {
                total = Some(match total {
                    None => term,
                    Some(t) => t.add(&term)?,
                });
            }
        }
        Ok(total)
    }
}

/// Builds `layers` one after another for `input_shape`: each for the output shape of the one
/// before. Returns the output shape of the last one. Layers already built for the shape they
/// receive are left as they are (their weights are kept).
///
/// # Errors
/// The first layer that cannot be built, with its error.
pub fn build_chain(
    layers: &mut [&mut dyn Layer],
    input_shape: &[usize],
    rng: &mut Rng,
) -> Result<Vec<usize>> {
    let mut shape = input_shape.to_vec();
    for layer in layers.iter_mut() {
        if layer.built_input_shape() != Some(shape.as_slice()) {
            layer.build(&shape, rng)?;
        }
        shape = layer.output_shape(&shape)?;
    }
    Ok(shape)
}

/// The architecture of a network: enough to rebuild it, without weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// `"Sequential"`.
    pub class_name: String,
    /// The network's name.
    pub name: String,
    /// The input shape (without the batch axis), when known.
    pub input_shape: Option<Vec<usize>>,
    /// Each layer's config, in order.
    pub layers: Vec<LayerConfig>,
}

/// A plain stack of layers, each applied to the output of the one before (Keras'
/// `Sequential`). Layer names are made unique as layers are added (`dense`, `dense_1`, ...).
///
/// ```
/// use gradus_layers::Dense;
/// use gradus_models::{Model, Network, Sequential};
///
/// let mut net = Sequential::new().input_shape(&[4]);
/// net.add(Dense::new(8).activation("relu"));
/// net.add(Dense::new(3).activation("softmax"));
/// let names: Vec<_> = net.layers().iter().map(|l| l.name().to_string()).collect();
/// assert_eq!(names, ["dense", "dense_1"]);
/// let model = Model::new(net)?; // built at once: the input shape is known
/// assert_eq!(model.count_params(), 4 * 8 + 8 + 8 * 3 + 3);
/// # Ok::<(), gradus_models::ModelError>(())
/// ```
#[derive(Debug, Default)]
pub struct Sequential {
    name: Option<String>,
    layers: Vec<Box<dyn Layer>>,
    input_shape: Option<Vec<usize>>,
}

impl Sequential {
    /// An empty stack; add layers with [`add`](Sequential::add) or [`layer`](Sequential::layer).
    pub fn new() -> Sequential {
        Sequential::default()
    }

    /// A stack of `layers` (Keras' `Sequential([...])`).
    pub fn from_layers(layers: Vec<Box<dyn Layer>>) -> Sequential {
        let mut s = Sequential::new();
        for l in layers {
            s.add_boxed(l);
        }
        s
    }

    /// The stack with `layer` added on top (builder style).
    pub fn layer(mut self, layer: impl Layer + 'static) -> Sequential {
        self.add(layer);
        self
    }

    /// Declares the input shape (without the batch axis), as Keras' `Input(shape)` first layer:
    /// the model is then built at once.
    pub fn input_shape(mut self, shape: &[usize]) -> Sequential {
        self.input_shape = Some(shape.to_vec());
        self
    }

    /// Renames the network (the title of its summary; `"sequential"` by default).
    pub fn with_name(mut self, name: &str) -> Sequential {
        self.name = Some(name.to_string());
        self
    }

    /// Adds `layer` on top. A layer whose name is already used gets the first free `_1`, `_2`,
    /// ... suffix, as Keras names layers (renaming is impossible for a layer that is already
    /// built; then the duplicate is reported when the model is built).
    pub fn add(&mut self, layer: impl Layer + 'static) {
        self.add_boxed(Box::new(layer));
    }

    /// As [`add`](Sequential::add), for a boxed layer.
    pub fn add_boxed(&mut self, mut layer: Box<dyn Layer>) {
        let base = layer.name().to_string();
        if self.layers.iter().any(|l| l.name() == base) {
            let free = (1..)
                .map(|i| format!("{base}_{i}"))
                .find(|n| self.layers.iter().all(|l| l.name() != n))
                .expect("an unused suffix exists");
            // A built layer keeps its name; the clash is reported by `build`.
            let _ = layer.set_name(&free);
        }
        self.layers.push(layer);
    }

    /// Rebuilds a stack (without weights) from its [`NetworkConfig`].
    ///
    /// # Errors
    /// [`ModelError::Mismatch`] when the config is not a `Sequential`; errors of
    /// [`layer_from_config`].
    pub fn from_config(config: &NetworkConfig) -> Result<Sequential> {
        if config.class_name != "Sequential" {
            return Err(ModelError::mismatch(
                "network class",
                "\"Sequential\"",
                format!("{:?}", config.class_name),
            ));
        }
        let mut s = Sequential::new().with_name(&config.name);
        s.input_shape = config.input_shape.clone();
        for c in &config.layers {
            s.layers.push(layer_from_config(c)?);
        }
        Ok(s)
    }
}

impl Network for Sequential {
    fn call<'t>(&self, x: &Var<'t>, training: bool) -> Result<Var<'t>> {
        let mut out = x.clone();
        let mut i = 0;
        while let Some(layer) = self.layers.get(i) {
            // A layer may run together with the next one (Conv2D then MaxPooling2D).
            if let Some(next) = self.layers.get(i + 1)
                && let Some(fused) = layer.call_with_next(next.as_ref(), &out, training)
            {
                out = fused?;
                i += 2;
                continue;
            }
            out = layer.call(&out, training)?;
            i += 1;
        }
        Ok(out)
    }

    fn build(&mut self, input_shape: &[usize], rng: &mut Rng) -> Result<()> {
        if self.layers.is_empty() {
            return Err(ModelError::mismatch(
                "Sequential.build",
                "at least one layer",
                "no layers",
            ));
        }
        let mut layers: Vec<&mut dyn Layer> = self
            .layers
            .iter_mut()
            .map(|l| l.as_mut() as &mut dyn Layer)
            .collect();
        build_chain(&mut layers, input_shape, rng)?;
        Ok(())
    }

    fn layers(&self) -> Vec<&dyn Layer> {
        self.layers
            .iter()
            .map(|l| l.as_ref() as &dyn Layer)
            .collect()
    }

    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("sequential")
    }

    fn declared_input_shape(&self) -> Option<Vec<usize>> {
        self.input_shape.clone()
    }

    /// Every layer splits over the batch.
    fn splits_over_batch(&self, training: bool) -> bool {
        self.layers.iter().all(|l| l.splits_over_batch(training))
    }

    fn gains_from_shards(&self) -> bool {
        self.layers.iter().any(|l| l.gains_from_shards())
    }

    /// The stack rebuilt from its [`config`](Network::config); `None` when a layer is not
    /// one of gradus-layers' classes.
    fn unbuilt_copy(&self) -> Option<Sequential> {
        Sequential::from_config(&self.config()?).ok()
    }

    fn config(&self) -> Option<NetworkConfig> {
        let input_shape = self.input_shape.clone().or_else(|| {
            self.layers
                .first()
                .and_then(|l| l.built_input_shape().map(<[usize]>::to_vec))
        });
        Some(NetworkConfig {
            class_name: "Sequential".into(),
            name: self.name().to_string(),
            input_shape,
            layers: self.layers.iter().map(|l| l.config()).collect(),
        })
    }
}
