//! [`Model`]: a [`Network`] with Keras' `compile`, `fit`, `evaluate`, `predict` and `summary`.

use std::ops::Range;

use gradus_autograd::{Tape, Var, Variable, apply_gradients};
use gradus_layers::LayerExt;
use gradus_losses::metrics::{Mean, Metric, compile_metric};
use gradus_losses::{LOSS_CLASSES, Loss, Reduction};
use gradus_optim::Optimizer;
use gradus_tensor::{Rng, Tensor, parallel};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::callbacks::{Callback, TrainContext};
use crate::compile::{IntoOptimizer, LossArg, MetricArg};
use crate::error::{ModelError, Result};
use crate::logs::{History, Logs};
use crate::network::Network;
use crate::progress::Progbar;

/// How often `fit` validates (Keras' `validation_freq`): every `k` epochs (epochs `k`, `2k`, ...,
/// counted from 1), or at the listed epochs (counted from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidationFreq {
    /// Every `k` epochs.
    Every(usize),
    /// At these epochs (1-based).
    Epochs(Vec<usize>),
}

impl Default for ValidationFreq {
    fn default() -> Self {
        ValidationFreq::Every(1)
    }
}

impl From<usize> for ValidationFreq {
    fn from(k: usize) -> Self {
        ValidationFreq::Every(k)
    }
}

impl From<Vec<usize>> for ValidationFreq {
    fn from(epochs: Vec<usize>) -> Self {
        ValidationFreq::Epochs(epochs)
    }
}

impl ValidationFreq {
    /// Whether the epoch `epoch` (0-based) validates.
    fn validates(&self, epoch: usize) -> bool {
        match self {
            ValidationFreq::Every(k) => (epoch + 1).is_multiple_of(*k),
            ValidationFreq::Epochs(list) => list.contains(&(epoch + 1)),
        }
    }
}

/// The arguments of [`Model::fit`], with Keras' defaults (`FitOptions { epochs: 10,
/// ..Default::default() }`).
#[derive(Debug)]
pub struct FitOptions<'a> {
    /// Samples per gradient step (32); the last batch of an epoch may be smaller.
    pub batch_size: usize,
    /// The epoch to stop before (1): epochs `initial_epoch..epochs` run.
    pub epochs: usize,
    /// 0 silent, 1 a progress bar per epoch (default), 2 one line per epoch.
    pub verbose: u8,
    /// The fraction of the samples held out for validation (0): the LAST ones, before
    /// shuffling. In `[0, 1)`.
    pub validation_split: f64,
    /// Validation data `(x, y)`; overrides `validation_split`.
    pub validation_data: Option<(&'a Tensor, &'a Tensor)>,
    /// Which epochs validate (every epoch).
    pub validation_freq: ValidationFreq,
    /// The batch size of validation (`batch_size` when `None`).
    pub validation_batch_size: Option<usize>,
    /// Shuffle the training samples before each epoch (true), with the model's seeded RNG.
    pub shuffle: bool,
    /// The epoch to start from (0), to resume an earlier `fit`.
    pub initial_epoch: usize,
    /// Callbacks, called in order.
    pub callbacks: Vec<&'a mut dyn Callback>,
}

impl Default for FitOptions<'_> {
    fn default() -> Self {
        FitOptions {
            batch_size: 32,
            epochs: 1,
            verbose: 1,
            validation_split: 0.0,
            validation_data: None,
            validation_freq: ValidationFreq::default(),
            validation_batch_size: None,
            shuffle: true,
            initial_epoch: 0,
            callbacks: Vec::new(),
        }
    }
}

/// A metric as compiled: a name waiting for the first labels, or a metric.
#[derive(Debug)]
pub(crate) enum MetricSlot {
    Pending(String),
    Ready(Box<dyn Metric>),
}

/// What `compile` sets up.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub(crate) optimizer: Optimizer,
    /// The loss name, while it waits for the first labels to be resolved.
    pub(crate) loss_name: Option<String>,
    pub(crate) loss: Option<Box<dyn Loss>>,
    pub(crate) metrics: Vec<MetricSlot>,
}

impl Compiled {
    /// Resolves names for labels of shape `y_true` and predictions of shape `y_pred`.
    fn resolve(&mut self, y_true: &[usize], y_pred: &[usize]) -> Result<()> {
        if self.loss.is_none() {
            let name = self.loss_name.as_deref().expect("a loss name or value");
            self.loss = Some(gradus_losses::compile_loss(name, y_true, y_pred)?);
        }
        for slot in &mut self.metrics {
            if let MetricSlot::Pending(name) = slot {
                *slot = MetricSlot::Ready(Box::new(compile_metric(name, y_true, y_pred)?));
            }
        }
        Ok(())
    }

    fn loss(&self) -> &dyn Loss {
        self.loss.as_deref().expect("resolved before use")
    }

    fn metrics_mut(&mut self) -> impl Iterator<Item = &mut Box<dyn Metric>> {
        self.metrics.iter_mut().filter_map(|m| match m {
            MetricSlot::Ready(m) => Some(m),
            MetricSlot::Pending(_) => None,
        })
    }

    /// The metrics resolved so far.
    pub(crate) fn metrics(&self) -> impl Iterator<Item = &dyn Metric> {
        self.metrics.iter().filter_map(|m| match m {
            MetricSlot::Ready(m) => Some(m.as_ref()),
            MetricSlot::Pending(_) => None,
        })
    }

    fn reset_metrics(&mut self) {
        self.metrics_mut().for_each(|m| m.reset_state());
    }

    /// `loss` from the tracker, then each metric's result.
    fn logs(&self, tracker: &Mean) -> Logs {
        let mut logs = Logs::new();
        logs.insert("loss", tracker.result());
        for m in self.metrics() {
            logs.insert(m.name(), m.result());
        }
        logs
    }
}

/// A [`Network`] with Keras' training API: [`compile`](Model::compile), [`fit`](Model::fit),
/// [`evaluate`](Model::evaluate), [`predict`](Model::predict), [`summary`](Model::summary),
/// saving and loading. `Model<Sequential>` is Keras' `Sequential`; `Model<MyNet>` is a
/// subclassed Keras `Model`.
///
/// A model holds a seeded [`Rng`] (seed 0 unless [`with_seed`](Model::with_seed)) that draws the
/// initial weights and the shuffling order, so runs are reproducible.
///
/// ```
/// use gradus_layers::{Dense, L2};
/// use gradus_models::{FitOptions, Model, Sequential};
/// use gradus_optim::{Optimizer, rules::Sgd};
/// use gradus_tensor::Tensor;
///
/// // Two separable classes in 2-D.
/// let x = Tensor::from_vec(vec![0.0, 0.1, 0.2, 0.0, 1.0, 0.9, 0.8, 1.0], &[4, 2])?;
/// let y = Tensor::from_vec(vec![0.0, 0.0, 1.0, 1.0], &[4])?;
/// let mut model = Model::new(
///     Sequential::new().layer(Dense::new(2).activation("softmax").kernel_regularizer(L2::new(0.01))),
/// )?;
/// model.compile(Optimizer::builder(Sgd::default()).learning_rate(0.5).build()?,
///               "sparse_categorical_crossentropy", ["accuracy"])?;
/// let history = model.fit(&x, &y, FitOptions { epochs: 50, verbose: 0, ..Default::default() })?;
/// assert!(history["loss"][49] < history["loss"][0]);
/// assert_eq!(history.last("accuracy"), Some(1.0));
/// let p = model.predict(&x, 32)?;
/// assert_eq!(p.shape(), &[4, 2]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Model<N: Network> {
    pub(crate) network: N,
    pub(crate) compiled: Option<Compiled>,
    pub(crate) rng: Rng,
    pub(crate) input_shape: Option<Vec<usize>>,
    /// Every epoch trained so far, across fits (saved in checkpoints).
    pub(crate) history: History,
    /// The states of the last fit's callbacks (saved in checkpoints).
    pub(crate) callback_states: Option<CallbackStates>,
}

/// The states of a fit's stateful callbacks, in order, recorded when it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CallbackStates {
    /// The epoch a resumed fit starts from to get them back (`model.epoch()` then).
    pub(crate) epoch: usize,
    /// [`Callback::state`] of each callback that has one.
    pub(crate) states: Vec<Value>,
}

impl<N: Network> Model<N> {
    /// A model of `network` with seed 0, built at once when the network declares its input
    /// shape.
    ///
    /// # Errors
    /// Errors of building the network for its declared input shape.
    pub fn new(network: N) -> Result<Model<N>> {
        Model::with_seed(network, 0)
    }

    /// A model of `network` whose RNG (initial weights, shuffling) is seeded with `seed`, built
    /// at once when the network declares its input shape.
    ///
    /// # Errors
    /// As [`new`](Model::new).
    pub fn with_seed(network: N, seed: u64) -> Result<Model<N>> {
        let mut model = Model::unbuilt(network, seed);
        if let Some(shape) = model.network.declared_input_shape() {
            model.build(&shape)?;
        }
        Ok(model)
    }

    /// A model of `network` that is not built, even when the network declares its input
    /// shape (for loading, which builds only once the file is checked).
    pub(crate) fn unbuilt(network: N, seed: u64) -> Model<N> {
        Model {
            network,
            compiled: None,
            rng: Rng::seed_from_u64(seed),
            input_shape: None,
            history: History::default(),
            callback_states: None,
        }
    }

    /// The network.
    pub fn network(&self) -> &N {
        &self.network
    }

    /// The network, mutably (to add layers to a `Sequential`, say). A change of architecture
    /// is picked up by the next build (on the next data, or [`build`](Model::build)).
    pub fn network_mut(&mut self) -> &mut N {
        &mut self.network
    }

    /// Builds the network for inputs of `input_shape` (without the batch axis): creates the
    /// variables of every layer not yet built for its input.
    ///
    /// # Errors
    /// Errors of the layers; [`ModelError::Mismatch`] when two variables share a name (the
    /// optimizer keys its state by name).
    pub fn build(&mut self, input_shape: &[usize]) -> Result<()> {
        self.network.build(input_shape, &mut self.rng)?;
        check_unique_names(&self.network.variables())?;
        self.input_shape = Some(input_shape.to_vec());
        Ok(())
    }
}

/// Checks that no two variables share a name (the optimizer keys its state by name).
pub(crate) fn check_unique_names(vars: &[Variable]) -> Result<()> {
    for (i, v) in vars.iter().enumerate() {
        if vars[..i].iter().any(|w| w.name() == v.name()) {
            return Err(ModelError::mismatch(
                "variable names",
                "unique names (give layers distinct names)",
                format!("two variables named {:?}", v.name()),
            ));
        }
    }
    Ok(())
}

impl<N: Network> Model<N> {
    /// The input shape (without the batch axis) the model is built for.
    pub fn input_shape(&self) -> Option<&[usize]> {
        self.input_shape.as_deref()
    }

    /// Whether the model is built.
    pub fn is_built(&self) -> bool {
        self.input_shape.is_some() && self.network.is_built()
    }

    /// Every variable (`model.weights`).
    pub fn variables(&self) -> Vec<Variable> {
        self.network.variables()
    }

    /// The trainable variables.
    pub fn trainable_variables(&self) -> Vec<Variable> {
        self.network.trainable_variables()
    }

    /// The number of weights (`model.count_params()`).
    pub fn count_params(&self) -> usize {
        self.variables().iter().map(Variable::len).sum()
    }

    /// The values of every variable, in order (`model.get_weights()`).
    pub fn get_weights(&self) -> Vec<Tensor> {
        self.variables().iter().map(Variable::value).collect()
    }

    /// Sets every variable, in the order of [`variables`](Model::variables). Nothing changes
    /// unless the count and every shape fit.
    ///
    /// # Errors
    /// [`ModelError::NotBuilt`], or [`ModelError::Mismatch`] naming the count or the variable
    /// and both shapes.
    pub fn set_weights(&self, weights: &[Tensor]) -> Result<()> {
        if !self.is_built() {
            return Err(ModelError::NotBuilt { op: "set_weights" });
        }
        crate::saving::assign_all(&self.variables(), weights)
    }

    /// Configures training (Keras' `compile`): the optimizer (a value or a name such as
    /// `"adam"`), the loss (a value or a name such as `"mse"`) and the metrics (names such as
    /// `"accuracy"`, resolved from the shapes of the data as Keras does, or values).
    /// Compiling again replaces the optimizer and its state.
    ///
    /// # Errors
    /// An unknown optimizer, loss or metric name; the model is unchanged then.
    pub fn compile<M: Into<MetricArg>>(
        &mut self,
        optimizer: impl IntoOptimizer,
        loss: impl Into<LossArg>,
        metrics: impl IntoIterator<Item = M>,
    ) -> Result<()> {
        let optimizer = optimizer.into_optimizer()?;
        let loss = loss.into();
        loss.validate()?;
        let mut slots = Vec::new();
        for m in metrics {
            let m = m.into();
            m.validate()?;
            slots.push(match m {
                MetricArg::Name(n) => MetricSlot::Pending(n),
                MetricArg::Value(v) => MetricSlot::Ready(v),
            });
        }
        let (loss_name, loss) = match loss {
            LossArg::Name(n) => (Some(n), None),
            LossArg::Value(v) => (None, Some(v)),
        };
        self.compiled = Some(Compiled {
            optimizer,
            loss_name,
            loss,
            metrics: slots,
        });
        Ok(())
    }

    /// The epoch counter: the epoch after the last one trained (0 before any training). Resume
    /// an interrupted run with `FitOptions { initial_epoch: model.epoch(), .. }`; whole-model
    /// checkpoints carry it.
    pub fn epoch(&self) -> usize {
        self.history.epoch.last().map_or(0, |e| e + 1)
    }

    /// Every epoch trained so far, across calls of `fit` and checkpoints (each `fit` also
    /// returns the History of its own epochs).
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The states of the callbacks of the last `fit` that had stateful ones (see
    /// [`Callback::state`]), in their order; empty when none. Whole-model checkpoints carry
    /// them; a `fit` resuming at [`epoch`](Model::epoch) gives them back to its callbacks.
    pub fn callback_states(&self) -> &[Value] {
        self.callback_states.as_ref().map_or(&[], |c| &c.states)
    }

    /// Forgets the recorded callback states, so that the next `fit` starts its callbacks
    /// afresh even when it resumes at [`epoch`](Model::epoch) (to resume with other
    /// callbacks).
    pub fn clear_callback_states(&mut self) {
        self.callback_states = None;
    }

    /// Whether the model is compiled.
    pub fn is_compiled(&self) -> bool {
        self.compiled.is_some()
    }

    /// The optimizer, once compiled.
    pub fn optimizer(&self) -> Option<&Optimizer> {
        self.compiled.as_ref().map(|c| &c.optimizer)
    }

    /// The optimizer, mutably (to change its learning rate or weights between fits).
    pub fn optimizer_mut(&mut self) -> Option<&mut Optimizer> {
        self.compiled.as_mut().map(|c| &mut c.optimizer)
    }

    /// The loss, once resolved (at compile for a value, on the first data for a name).
    pub fn loss(&self) -> Option<&dyn Loss> {
        self.compiled.as_ref().and_then(|c| c.loss.as_deref())
    }

    /// Builds on the first data and checks that `x` has the model's feature shape.
    fn prepare(&mut self, op: &'static str, x: &Tensor) -> Result<()> {
        if x.ndim() == 0 {
            return Err(ModelError::FeatureShape {
                op,
                expected: self.input_shape.clone().unwrap_or_default(),
                got: vec![],
            });
        }
        if x.shape()[0] == 0 {
            return Err(ModelError::EmptyData {
                op,
                what: format!("x of shape {:?}", x.shape()),
            });
        }
        match &self.input_shape {
            Some(s) if s.as_slice() != &x.shape()[1..] => Err(ModelError::FeatureShape {
                op,
                expected: s.clone(),
                got: x.shape().to_vec(),
            }),
            Some(s) if !self.network.is_built() => {
                let s = s.clone();
                self.build(&s)
            }
            Some(_) => Ok(()),
            None => self.build(&x.shape()[1..]),
        }
    }

    /// The output for a batch, untracked and in inference mode (Keras' `model(x)`).
    ///
    /// # Errors
    /// As [`predict`](Model::predict).
    pub fn call(&mut self, x: &Tensor) -> Result<Tensor> {
        self.prepare("call", x)?;
        Ok(self
            .network
            .call(&Var::constant(x.clone()), false)?
            .into_value())
    }

    /// The outputs for `x`, computed `batch_size` samples at a time in inference mode with no
    /// tape (Keras' `predict`). Builds the model on its first data. With several threads, a
    /// batch of a network that [splits](Network::splits_over_batch) and
    /// [gains from it](Network::gains_from_shards) is cut into shards run on the threads, as in
    /// [`fit`](Model::fit).
    ///
    /// # Errors
    /// [`ModelError::EmptyData`], [`ModelError::FeatureShape`] when `x` does not fit the input
    /// shape, [`ModelError::InvalidArgument`] for a zero batch size; errors of the layers.
    pub fn predict(&mut self, x: &Tensor, batch_size: usize) -> Result<Tensor> {
        check_batch_size(batch_size)?;
        self.prepare("predict", x)?;
        let n = x.shape()[0];
        let mut outs = Vec::with_capacity(n.div_ceil(batch_size));
        for start in (0..n).step_by(batch_size) {
            let xb = x.slice_axis(0, start, (start + batch_size).min(n))?;
            outs.push(predict_batch(&self.network, xb)?);
        }
        if outs.len() == 1 {
            return Ok(outs.pop().expect("one batch"));
        }
        Ok(Tensor::concat(&outs.iter().collect::<Vec<_>>(), 0)?)
    }

    /// The loss (regularization included) and metrics on `(x, y)`, computed `batch_size`
    /// samples at a time in inference mode (Keras' `evaluate`), averaged over samples. With
    /// several threads, batches are cut into shards run on the threads, as in
    /// [`fit`](Model::fit) (the loss then differs from one thread's by float rounding).
    ///
    /// # Errors
    /// [`ModelError::NotCompiled`], [`ModelError::LengthMismatch`], [`ModelError::EmptyData`],
    /// [`ModelError::FeatureShape`], labels that do not fit the loss.
    pub fn evaluate(&mut self, x: &Tensor, y: &Tensor, batch_size: usize) -> Result<Logs> {
        check_batch_size(batch_size)?;
        if self.compiled.is_none() {
            return Err(ModelError::NotCompiled { op: "evaluate" });
        }
        check_xy("evaluate", x, y)?;
        self.prepare("evaluate", x)?;
        let compiled = self.compiled.as_mut().expect("checked");
        evaluate_batches(&self.network, compiled, x, y, batch_size)
    }

    /// Trains the model (Keras' `fit`) on `x` (`[n, ...input_shape]`) and `y` (`[n, ...]`) and
    /// returns the [`History`] of every epoch's loss, metrics and `val_` entries.
    ///
    /// Per batch: a forward pass under a tape, the loss plus the regularization losses, the
    /// gradients of the trainable variables, then (the tape dropped, so the variables are
    /// updated in place) the optimizer step. The epoch's `loss` and metrics average the batches
    /// weighted by their sizes. `validation_split` holds out the last fraction of the samples
    /// before shuffling. At the end, an optimizer with EMA swaps the averages in.
    ///
    /// Non-finite values: NaN or an infinity in `x`, `y` or the validation data is refused up
    /// front ([`ModelError::NonFinite`]); the tensors remember a clean scan until they are next
    /// written ([`Tensor::first_non_finite`]), so fitting the same data again does not read it
    /// all again first. A loss that becomes NaN or infinite during training (from finite data:
    /// a learning rate too large, an overflow) is not an error, as in Keras: training goes on
    /// and the History records it. [`TerminateOnNaN`](crate::TerminateOnNaN)
    /// stops at that batch with the last good weights (its step is skipped); an optimizer with
    /// dynamic loss scaling skips steps whose gradients are not finite. See
    /// `docs/reliability.md`.
    ///
    /// Threads (data-parallel steps): with [`num_threads`](gradus_tensor::parallel::num_threads)
    /// above one, a batch of at least 64 samples is cut into `min(threads, samples / 32)`
    /// contiguous shards run on the threads, each under its own tape, when the network
    /// [splits over the batch](Network::splits_over_batch) (a [`Sequential`](crate::Sequential)
    /// of built-in layers, without Dropout dropping or BatchNormalization training), one of its
    /// layers [gains from shards](Network::gains_from_shards) (Conv2D, LSTM: a network of
    /// matrix products splits each product over the threads instead), and the loss is a
    /// built-in one reduced by `sum_over_batch_size` (each shard's sum of per-sample
    /// losses is divided by the whole batch's count) or `sum`, without `ignore_class`. The
    /// batch loss is then the sum of the shards' losses and each gradient the sum of the
    /// shards' gradients, both added in shard order (the regularization loss is added once);
    /// the metrics see the shards' predictions concatenated; the optimizer step (unscaling,
    /// accumulation, clipping) acts on the summed gradients as on one batch's. The kernels give
    /// the same bits for any thread count, but these sums do not: a fit on two threads differs
    /// from one on one thread by float rounding (the same count gives the same bits). An error
    /// in a shard is reported as the whole batch reports it, and nothing is applied. Other
    /// batches, networks and losses run whole, as with one thread. `evaluate` and `predict`
    /// cut their batches the same way.
    ///
    /// Callback states: when `fit` ends, the [`state`](Callback::state) of each callback that
    /// has one is recorded in the model (and in whole-model checkpoints). A later `fit` with
    /// `initial_epoch` equal to the epoch they were recorded at ([`epoch`](Model::epoch), in
    /// the same process or after [`load`](Model::load)) hands them back to its stateful
    /// callbacks right after `on_train_begin`, which must then be of the same classes in the
    /// same order: EarlyStopping keeps its best value and wait counter across the interruption
    /// and stops at the same epoch. A `fit` without stateful callbacks ignores them; call
    /// [`clear_callback_states`](Model::clear_callback_states) to resume with other ones.
    ///
    /// # Errors
    /// [`ModelError::NotCompiled`], [`ModelError::LengthMismatch`], [`ModelError::EmptyData`],
    /// [`ModelError::NonFinite`], [`ModelError::FeatureShape`], [`ModelError::InvalidArgument`] (batch size 0, a
    /// validation split outside `[0, 1)`, a validation frequency of 0), labels that do not fit
    /// the loss, errors of callbacks, [`ModelError::Mismatch`] when resuming with stateful
    /// callbacks other than those recorded. On error, the weights, the optimizer, the RNG, the
    /// layers' states and the recorded callback states are as before the call.
    pub fn fit(&mut self, x: &Tensor, y: &Tensor, options: FitOptions<'_>) -> Result<History> {
        if self.compiled.is_none() {
            return Err(ModelError::NotCompiled { op: "fit" });
        }
        check_batch_size(options.batch_size)?;
        if let Some(b) = options.validation_batch_size {
            check_batch_size(b)?;
        }
        if !(0.0..1.0).contains(&options.validation_split) {
            return Err(ModelError::invalid(
                "validation_split",
                "a fraction in [0, 1)",
                options.validation_split,
            ));
        }
        if matches!(options.validation_freq, ValidationFreq::Every(0)) {
            return Err(ModelError::invalid(
                "validation_freq",
                "a positive number of epochs",
                0,
            ));
        }
        check_xy("fit", x, y)?;
        check_finite("fit", "x", x)?;
        check_finite("fit", "y", y)?;
        if let Some((xv, yv)) = options.validation_data {
            check_finite("fit", "validation_data x", xv)?;
            check_finite("fit", "validation_data y", yv)?;
        }
        let n = x.shape()[0];
        let (train, val) = match options.validation_data {
            Some((xv, yv)) => {
                check_xy("fit (validation_data)", xv, yv)?;
                ((x.clone(), y.clone()), Some((xv.clone(), yv.clone())))
            }
            None if options.validation_split > 0.0 => {
                let split_at = (n as f64 * (1.0 - options.validation_split)).floor() as usize;
                if split_at == 0 || split_at == n {
                    return Err(ModelError::EmptyData {
                        op: "fit",
                        what: format!(
                            "{split_at} training and {} validation samples from {n} samples \
                             with validation_split {}",
                            n - split_at,
                            options.validation_split
                        ),
                    });
                }
                (
                    (x.slice_axis(0, 0, split_at)?, y.slice_axis(0, 0, split_at)?),
                    Some((x.slice_axis(0, split_at, n)?, y.slice_axis(0, split_at, n)?)),
                )
            }
            None => ((x.clone(), y.clone()), None),
        };
        self.prepare("fit", x)?;
        if let Some((xv, _)) = &val {
            self.prepare("fit (validation_data)", xv)?;
        }
        let variables = self.network.variables();
        let backup: Vec<Tensor> = variables
            .iter()
            .map(|v| v.value().to_contiguous())
            .collect();
        let optimizer_backup = self.compiled.as_ref().expect("checked").optimizer.clone();
        let rng_backup = self.rng.clone();
        let states_backup: Vec<_> = self.network.layers().iter().map(|l| l.state()).collect();
        let result = self.fit_loop(&train, val.as_ref(), options);
        if let Ok((h, states)) = &result {
            self.history.extend(h);
            self.callback_states = (!states.is_empty()).then(|| CallbackStates {
                epoch: self.epoch(),
                states: states.clone(),
            });
        } else {
            for (l, s) in self.network.layers().iter().zip(&states_backup) {
                if let Some(s) = s {
                    l.set_state(s).expect("a state the layer gave");
                }
            }
            for (v, w) in variables.iter().zip(backup) {
                v.assign(w).expect("same shapes as before");
            }
            self.compiled.as_mut().expect("checked").optimizer = optimizer_backup;
            self.rng = rng_backup;
        }
        result.map(|(h, _)| h)
    }

    fn fit_loop(
        &mut self,
        (x, y): &(Tensor, Tensor),
        val: Option<&(Tensor, Tensor)>,
        mut options: FitOptions<'_>,
    ) -> Result<(History, Vec<Value>)> {
        let network = &self.network;
        let recorded = self
            .callback_states
            .as_ref()
            .filter(|c| c.epoch == options.initial_epoch);
        let compiled = self.compiled.as_mut().expect("checked by fit");
        let rng = &mut self.rng;
        let n = x.shape()[0];
        let batch_size = options.batch_size;
        let steps = n.div_ceil(batch_size);
        let variables = network.variables();
        let trainable: Vec<Variable> = variables
            .iter()
            .filter(|v| v.trainable())
            .cloned()
            .collect();
        let trainable_refs: Vec<&Variable> = trainable.iter().collect();
        let mut history = History::default();
        let mut callbacks = std::mem::take(&mut options.callbacks);
        notify(
            &mut callbacks,
            &mut compiled.optimizer,
            &variables,
            |cb, ctx| cb.on_train_begin(ctx),
        )?;
        if let Some(recorded) = recorded {
            restore_callback_states(&mut callbacks, recorded)?;
        }
        let mut tracker = Mean::new("loss");
        let mut epoch_logs = Logs::new();
        for epoch in options.initial_epoch..options.epochs {
            notify(
                &mut callbacks,
                &mut compiled.optimizer,
                &variables,
                |cb, ctx| cb.on_epoch_begin(epoch, ctx),
            )?;
            if options.verbose == 1 {
                println!("Epoch {}/{}", epoch + 1, options.epochs);
            }
            let mut bar = Progbar::new(steps, options.verbose);
            tracker.reset_state();
            compiled.reset_metrics();
            let order: Option<Vec<usize>> = options.shuffle.then(|| rng.permutation(n));
            let mut stop = false;
            for step in 0..steps {
                let (start, end) = (step * batch_size, ((step + 1) * batch_size).min(n));
                notify(
                    &mut callbacks,
                    &mut compiled.optimizer,
                    &variables,
                    |cb, ctx| cb.on_train_batch_begin(step, ctx),
                )?;
                let (xb, yb) = match &order {
                    Some(order) => (
                        x.gather_rows(&order[start..end])?,
                        y.gather_rows(&order[start..end])?,
                    ),
                    None => (x.slice_axis(0, start, end)?, y.slice_axis(0, start, end)?),
                };
                let plan = compiled
                    .loss
                    .as_deref()
                    .and_then(|loss| shard_plan(network, loss, end - start, true));
                let sharded = plan.map(|(loss_fn, reduction, shards)| {
                    let xy = (&xb, &yb);
                    sharded_train_step(network, (loss_fn, reduction), &shards, xy, &trainable_refs)
                });
                // The tapes are dropped: the step updates the variables in place.
                let (loss, y_pred, grads) = match sharded {
                    None => whole_train_step(network, compiled, xb, &yb, &trainable_refs)?,
                    Some(Ok(step)) => {
                        compiled.resolve(yb.shape(), step.1.shape())?; // metrics named at compile
                        step
                    }
                    // The whole batch gives the error one thread gives (positions and shapes
                    // in the batch, not in a shard); nothing is applied either way.
                    Some(Err(e)) => {
                        whole_train_step(network, compiled, xb, &yb, &trainable_refs)?;
                        return Err(e);
                    }
                };
                if loss.is_finite() || !callbacks.iter().any(|c| c.skips_non_finite_steps()) {
                    apply_gradients(&mut compiled.optimizer, &grads, &trainable_refs)?;
                }
                drop(grads);
                tracker.update_scalar(loss, (end - start) as f32);
                for m in compiled.metrics_mut() {
                    m.update_state(&yb, &y_pred, None)?;
                }
                // The running logs are built only for someone to read them.
                if options.verbose == 1 || !callbacks.is_empty() {
                    let logs = compiled.logs(&tracker);
                    bar.update(step + 1, &logs, false);
                    if notify(
                        &mut callbacks,
                        &mut compiled.optimizer,
                        &variables,
                        |cb, ctx| cb.on_train_batch_end(step, &logs, ctx),
                    )? {
                        stop = true;
                        break;
                    }
                }
            }
            epoch_logs = compiled.logs(&tracker);
            if let Some((xv, yv)) = val
                && options.validation_freq.validates(epoch)
            {
                let vb = options.validation_batch_size.unwrap_or(batch_size);
                let val_logs = evaluate_batches(network, compiled, xv, yv, vb)?;
                for (name, value) in val_logs.iter() {
                    epoch_logs.insert(format!("val_{name}"), value);
                }
            }
            stop |= notify(
                &mut callbacks,
                &mut compiled.optimizer,
                &variables,
                |cb, ctx| cb.on_epoch_end(epoch, &mut epoch_logs, ctx),
            )?;
            history.record(epoch, &epoch_logs);
            bar.finish(&epoch_logs);
            if stop {
                break;
            }
        }
        if options.epochs > options.initial_epoch {
            compiled
                .optimizer
                .finalize_variable_values(trainable.iter())?;
        }
        notify(
            &mut callbacks,
            &mut compiled.optimizer,
            &variables,
            |cb, ctx| cb.on_train_end(&epoch_logs, ctx),
        )?;
        let states = callbacks.iter().filter_map(|cb| cb.state()).collect();
        Ok((history, states))
    }
}

/// Hands `recorded` back to the stateful callbacks of a resumed fit, which must be of the
/// recorded classes in the recorded order; nothing to do when none has a state.
fn restore_callback_states(
    callbacks: &mut [&mut dyn Callback],
    recorded: &CallbackStates,
) -> Result<()> {
    let stateful: Vec<(usize, Value)> = callbacks
        .iter()
        .enumerate()
        .filter_map(|(i, cb)| cb.state().map(|s| (i, s)))
        .collect();
    if stateful.is_empty() {
        return Ok(());
    }
    let class = |v: &Value| {
        v.get("class")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    };
    let expected: Vec<String> = recorded.states.iter().map(class).collect();
    let got: Vec<String> = stateful.iter().map(|(_, s)| class(s)).collect();
    if expected != got {
        return Err(ModelError::mismatch(
            format!(
                "fit resuming at epoch {}: the callback states recorded then",
                recorded.epoch
            ),
            format!(
                "stateful callbacks {expected:?} in this order (or clear_callback_states() \
                 to start them afresh)"
            ),
            format!("{got:?}"),
        ));
    }
    for ((i, _), state) in stateful.iter().zip(&recorded.states) {
        callbacks[*i].set_state(state)?;
    }
    Ok(())
}

/// Calls `hook` on every callback with one context; whether one asked to stop training.
fn notify(
    callbacks: &mut [&mut dyn Callback],
    optimizer: &mut Optimizer,
    variables: &[Variable],
    mut hook: impl FnMut(&mut dyn Callback, &mut TrainContext<'_>) -> Result<()>,
) -> Result<bool> {
    let mut ctx = TrainContext::new(optimizer, variables);
    for cb in callbacks.iter_mut() {
        hook(&mut **cb, &mut ctx)?;
    }
    Ok(ctx.stop_requested())
}

/// The loss (with regularization) and metrics over `(x, y)` in inference mode.
fn evaluate_batches<N: Network>(
    network: &N,
    compiled: &mut Compiled,
    x: &Tensor,
    y: &Tensor,
    batch_size: usize,
) -> Result<Logs> {
    let n = x.shape()[0];
    let mut tracker = Mean::new("loss");
    compiled.reset_metrics();
    let reg = match network.regularization_loss(None)? {
        Some(r) => r.item()?,
        None => 0.0,
    };
    for start in (0..n).step_by(batch_size) {
        let end = (start + batch_size).min(n);
        let (xb, yb) = (x.slice_axis(0, start, end)?, y.slice_axis(0, start, end)?);
        let plan = compiled
            .loss
            .as_deref()
            .and_then(|loss| shard_plan(network, loss, end - start, false));
        let sharded = plan.map(|(loss_fn, reduction, shards)| {
            sharded_eval_step(network, (loss_fn, reduction), &shards, (&xb, &yb))
        });
        let (loss, y_pred) = match sharded {
            None => whole_eval_step(network, compiled, xb, &yb)?,
            Some(Ok(step)) => {
                compiled.resolve(yb.shape(), step.1.shape())?; // metrics named at compile
                step
            }
            // The error of the whole batch, as with one thread.
            Some(Err(e)) => {
                whole_eval_step(network, compiled, xb, &yb)?;
                return Err(e);
            }
        };
        let loss = loss + reg;
        tracker.update_scalar(loss, (end - start) as f32);
        for m in compiled.metrics_mut() {
            m.update_state(&yb, &y_pred, None)?;
        }
    }
    let logs = compiled.logs(&tracker);
    compiled.reset_metrics();
    Ok(logs)
}

/// One training batch run whole under one tape: the loss (regularization included), the
/// predictions and the gradients of `trainable` (resolving the loss and metrics named at
/// compile on the first batch).
fn whole_train_step<N: Network>(
    network: &N,
    compiled: &mut Compiled,
    x: Tensor,
    y: &Tensor,
    trainable: &[&Variable],
) -> Result<(f32, Tensor, Vec<Tensor>)> {
    let tape = Tape::new();
    let out = network.call(&tape.constant(x), true)?;
    compiled.resolve(y.shape(), out.shape())?;
    let mut loss = compiled.loss().call(y, &out)?;
    if let Some(reg) = network.regularization_loss(Some(&tape))? {
        loss = loss.add(&reg)?;
    }
    let grads = tape.gradient(&loss, trainable)?;
    Ok((loss.item()?, out.into_value(), grads))
}

/// One evaluation batch run whole in inference mode: the loss without regularization and the
/// predictions.
fn whole_eval_step<N: Network>(
    network: &N,
    compiled: &mut Compiled,
    x: Tensor,
    y: &Tensor,
) -> Result<(f32, Tensor)> {
    let out = network.call(&Var::constant(x), false)?;
    compiled.resolve(y.shape(), out.shape())?;
    let loss = compiled.loss().call(y, &out)?.item()?;
    Ok((loss, out.into_value()))
}

/// The fewest rows a shard of a batch gets: below, a thread's share of the work does not pay
/// for handing it over.
const MIN_SHARD_ROWS: usize = 32;

/// The contiguous row ranges a batch of `rows` samples is cut into:
/// `min(threads, rows / MIN_SHARD_ROWS)` ranges of near-equal sizes (the first ones one row
/// longer), or `None` when that is fewer than two.
fn shard_ranges(rows: usize) -> Option<Vec<Range<usize>>> {
    match parallel::num_threads() {
        0 | 1 => None,
        threads => cut(rows, threads),
    }
}

/// [`shard_ranges`] for a batch of `rows` samples of `network` (run with `training`), when the
/// network [splits over the batch](Network::splits_over_batch) and
/// [gains from shards](Network::gains_from_shards); `None` to run the batch whole.
fn network_shards<N: Network>(
    network: &N,
    rows: usize,
    training: bool,
) -> Option<Vec<Range<usize>>> {
    if network.splits_over_batch(training) && network.gains_from_shards() {
        shard_ranges(rows)
    } else {
        None
    }
}

/// [`shard_ranges`] for `threads` threads.
fn cut(rows: usize, threads: usize) -> Option<Vec<Range<usize>>> {
    let shards = threads.min(rows / MIN_SHARD_ROWS);
    if shards < 2 {
        return None;
    }
    let (base, longer) = (rows / shards, rows % shards);
    let mut start = 0;
    Some(
        (0..shards)
            .map(|i| {
                let end = start + base + usize::from(i < longer);
                let range = start..end;
                start = end;
                range
            })
            .collect(),
    )
}

/// The reduction of `loss` when the loss of a batch is the sum of parts computed shard by
/// shard with [`loss_part`]: a built-in loss (whose `call` reduces its per-sample losses and
/// nothing else) that reduces by [`Reduction::Sum`] or [`Reduction::SumOverBatchSize`], and
/// ignores no class (that mean is over the valid samples of the whole batch). `None` for any
/// other loss, which is then computed on the whole batch.
fn additive_reduction(loss: &dyn Loss) -> Option<Reduction> {
    let config = loss.config();
    let additive = matches!(
        config.reduction,
        Reduction::Sum | Reduction::SumOverBatchSize
    ) && config.ignore_class.is_none()
        && LOSS_CLASSES.contains(&config.class_name.as_str())
        && gradus_losses::from_config(&config).is_ok_and(|built_in| built_in.config() == config);
    additive.then_some(config.reduction)
}

/// How a batch of `rows` samples is cut for `network` (run with `training`) and `loss`: the
/// loss, its additive reduction and the shards' row ranges; `None` to run the batch whole
/// (one thread, a small batch, a network or loss that does not split).
fn shard_plan<'l, N: Network>(
    network: &N,
    loss: &'l dyn Loss,
    rows: usize,
    training: bool,
) -> Option<(&'l dyn Loss, Reduction, Vec<Range<usize>>)> {
    let reduction = additive_reduction(loss)?;
    let shards = network_shards(network, rows, training)?;
    Some((loss, reduction, shards))
}

/// A shard's part of a batch's loss: the sum of its per-sample losses, divided, for
/// [`Reduction::SumOverBatchSize`], by the number of per-sample losses of the whole batch of
/// `rows` samples (so that the parts add up to the batch's loss).
fn loss_part<'t>(
    (loss, reduction): (&dyn Loss, Reduction),
    y_true: &Tensor,
    y_pred: &Var<'t>,
    rows: usize,
) -> Result<Var<'t>> {
    let values = loss.per_sample(y_true, y_pred)?;
    let sum = values.sum_all();
    Ok(match reduction {
        Reduction::Sum => sum,
        _ => {
            let per_row = values.len() / y_pred.shape()[0].max(1);
            sum.div_scalar((per_row * rows) as f32)
        }
    })
}

/// One training batch `(x, y)` cut into `shards`, each run on a thread with its own tape: the
/// loss (regularization added once, in the first shard), the predictions and the gradients
/// of `trainable`. The loss and each gradient are the sums of the shards' parts in shard
/// order; the predictions are the shards' outputs concatenated.
///
/// # Errors
/// The first error of a shard, in shard order (nothing is returned to apply then).
fn sharded_train_step<N: Network>(
    network: &N,
    loss: (&dyn Loss, Reduction),
    shards: &[Range<usize>],
    (x, y): (&Tensor, &Tensor),
    trainable: &[&Variable],
) -> Result<(f32, Tensor, Vec<Tensor>)> {
    let rows = x.shape()[0];
    let parts = parallel::map(shards.len(), |i| -> Result<(f32, Tensor, Vec<Tensor>)> {
        let Range { start, end } = shards[i];
        let tape = Tape::new();
        let out = network.call(&tape.constant(x.slice_axis(0, start, end)?), true)?;
        let mut part = loss_part(loss, &y.slice_axis(0, start, end)?, &out, rows)?;
        if i == 0
            && let Some(reg) = network.regularization_loss(Some(&tape))?
        {
            part = part.add(&reg)?;
        }
        let grads = tape.gradient(&part, trainable)?;
        Ok((part.item()?, out.into_value(), grads))
    });
    let parts = parts.into_iter().collect::<Result<Vec<_>>>()?;
    let loss = parts.iter().map(|p| p.0).sum();
    let y_pred = concat_rows(parts.iter().map(|p| &p.1).collect())?;
    let mut grads = parts.into_iter().map(|p| p.2);
    let mut total = grads.next().unwrap_or_default();
    for part in grads {
        for (sum, g) in total.iter_mut().zip(part) {
            // `to_contiguous` copies even a contiguous tensor: read it in place when possible.
            let copy;
            let g = match g.as_slice() {
                Some(g) => g,
                None => {
                    copy = g.to_contiguous();
                    copy.as_slice().expect("contiguous")
                }
            };
            sum.as_slice_mut()
                .iter_mut()
                .zip(g)
                .for_each(|(s, g)| *s += g);
        }
    }
    Ok((loss, y_pred, total))
}

/// One evaluation batch `(x, y)` cut into `shards`, each run on a thread in inference mode:
/// the loss without regularization (the sum of the shards' parts in shard order) and the
/// predictions (the shards' outputs concatenated).
///
/// # Errors
/// The first error of a shard, in shard order.
fn sharded_eval_step<N: Network>(
    network: &N,
    loss: (&dyn Loss, Reduction),
    shards: &[Range<usize>],
    (x, y): (&Tensor, &Tensor),
) -> Result<(f32, Tensor)> {
    let rows = x.shape()[0];
    let parts = parallel::map(shards.len(), |i| -> Result<(f32, Tensor)> {
        let Range { start, end } = shards[i];
        let out = network.call(&Var::constant(x.slice_axis(0, start, end)?), false)?;
        let part = loss_part(loss, &y.slice_axis(0, start, end)?, &out, rows)?;
        Ok((part.item()?, out.into_value()))
    });
    let parts = parts.into_iter().collect::<Result<Vec<_>>>()?;
    let loss = parts.iter().map(|p| p.0).sum();
    let y_pred = concat_rows(parts.iter().map(|p| &p.1).collect())?;
    Ok((loss, y_pred))
}

/// The outputs of `network` for a batch `x` in inference mode, shard by shard on the threads
/// when the batch is large enough and the network splits and gains from it.
fn predict_batch<N: Network>(network: &N, x: Tensor) -> Result<Tensor> {
    let shards = network_shards(network, x.shape()[0], false);
    let whole = |x: Tensor| Ok(network.call(&Var::constant(x), false)?.into_value());
    let Some(shards) = shards else {
        return whole(x);
    };
    let parts = parallel::map(shards.len(), |i| -> Result<Tensor> {
        let Range { start, end } = shards[i];
        let xs = x.slice_axis(0, start, end)?;
        Ok(network.call(&Var::constant(xs), false)?.into_value())
    });
    match parts.into_iter().collect::<Result<Vec<_>>>() {
        Ok(parts) => concat_rows(parts.iter().collect()),
        // The error of the whole batch, as with one thread.
        Err(e) => whole(x).and(Err(e)),
    }
}

/// `parts` concatenated along the batch axis (the one part itself when there is one).
fn concat_rows(mut parts: Vec<&Tensor>) -> Result<Tensor> {
    if parts.len() == 1 {
        return Ok(parts.pop().expect("one part").clone());
    }
    Ok(Tensor::concat(&parts, 0)?)
}

fn check_batch_size(batch_size: usize) -> Result<()> {
    if batch_size == 0 {
        return Err(ModelError::invalid("batch_size", "a positive number", 0));
    }
    Ok(())
}

/// Checks that every value of `t` is finite, naming the first sample that is not
/// ([`Tensor::first_non_finite`]: a scan on the threads, remembered by `t` until it changes).
fn check_finite(op: &'static str, what: &str, t: &Tensor) -> Result<()> {
    let Some((i, value)) = t.first_non_finite() else {
        return Ok(());
    };
    let samples = t.shape().first().copied().unwrap_or(1).max(1);
    Err(ModelError::NonFinite {
        op,
        what: what.to_string(),
        sample: i / (t.len() / samples).max(1),
        value,
    })
}

/// Checks that `x` and `y` hold the same, positive number of samples.
fn check_xy(op: &'static str, x: &Tensor, y: &Tensor) -> Result<()> {
    let (nx, ny) = (x.shape().first().copied(), y.shape().first().copied());
    match (nx, ny) {
        (Some(a), Some(b)) if a != b => Err(ModelError::LengthMismatch { op, x: a, y: b }),
        (Some(0), _) | (None, _) => Err(ModelError::EmptyData {
            op,
            what: format!("x of shape {:?}", x.shape()),
        }),
        (_, None) => Err(ModelError::EmptyData {
            op,
            what: format!("y of shape {:?} (labels need a sample axis)", y.shape()),
        }),
        _ => Ok(()),
    }
}

impl<N: Network> Model<N> {
    /// Each layer's name, class, output shape and parameter count, for the summary.
    pub(crate) fn layer_rows(&self) -> Vec<(String, String, String, usize)> {
        self.network
            .layers()
            .iter()
            .map(|l| {
                let shape = l
                    .built_input_shape()
                    .and_then(|s| l.output_shape(s).ok())
                    .map(|s| {
                        let dims: Vec<String> = s.iter().map(ToString::to_string).collect();
                        if dims.len() == 1 {
                            format!("(None, {})", dims[0])
                        } else {
                            format!("(None, {})", dims.join(", "))
                        }
                    })
                    .unwrap_or_else(|| "?".to_string());
                (
                    l.name().to_string(),
                    l.class_name().to_string(),
                    shape,
                    l.count_params(),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use gradus_losses::{
        CategoricalCrossentropy, Huber, MeanSquaredError, SparseCategoricalCrossentropy,
    };

    use super::*;

    #[test]
    fn batches_are_cut_into_near_equal_contiguous_shards() {
        assert_eq!(cut(128, 2), Some(vec![0..64, 64..128]));
        assert_eq!(cut(100, 3), Some(vec![0..34, 34..67, 67..100]));
        // At least 32 rows a shard: fewer shards than threads, or none.
        assert_eq!(cut(70, 4), Some(vec![0..35, 35..70]));
        assert_eq!(cut(63, 2), None);
        assert_eq!(cut(1000, 1), None);
        for (rows, threads) in [(64, 2), (97, 3), (1000, 16), (4096, 5)] {
            let shards = cut(rows, threads).expect("enough rows");
            assert_eq!(shards.first().map(|r| r.start), Some(0));
            assert_eq!(shards.last().map(|r| r.end), Some(rows));
            assert!(shards.windows(2).all(|w| w[0].end == w[1].start));
            assert!(shards.iter().all(|r| r.len() >= MIN_SHARD_ROWS));
        }
    }

    /// A mean squared error with a `call` of its own, which the shards cannot reproduce.
    #[derive(Debug)]
    struct Custom;

    impl Loss for Custom {
        fn per_sample<'t>(
            &self,
            y_true: &Tensor,
            y_pred: &Var<'t>,
        ) -> gradus_losses::Result<Var<'t>> {
            MeanSquaredError::new().per_sample(y_true, y_pred)
        }
        fn name(&self) -> &str {
            "custom"
        }
        fn reduction(&self) -> Reduction {
            Reduction::SumOverBatchSize
        }
        fn config(&self) -> gradus_losses::LossConfig {
            let mut config = MeanSquaredError::new().config();
            config.class_name = "Custom".into();
            config
        }
    }

    #[test]
    fn only_built_in_losses_reduced_by_sums_split() {
        let sum = Reduction::Sum;
        assert_eq!(
            additive_reduction(&SparseCategoricalCrossentropy::new()),
            Some(Reduction::SumOverBatchSize)
        );
        assert_eq!(
            additive_reduction(&CategoricalCrossentropy::new().with_reduction(sum)),
            Some(sum)
        );
        assert_eq!(
            additive_reduction(&Huber::new()),
            Some(Reduction::SumOverBatchSize)
        );
        // The mean over the valid samples of the whole batch is no sum of shard parts.
        let ignoring = SparseCategoricalCrossentropy::new().ignore_class(Some(0));
        assert_eq!(additive_reduction(&ignoring), None);
        let none = MeanSquaredError::new().with_reduction(Reduction::None);
        assert_eq!(additive_reduction(&none), None);
        assert_eq!(additive_reduction(&Custom), None);
    }
}
