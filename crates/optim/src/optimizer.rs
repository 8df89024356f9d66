//! [`Optimizer`]: one type for every Keras optimizer, with the options they all share.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::{OptimError, Result, check};
use crate::parallel::{Parallel, Serial};
use crate::param::Param;
use crate::rules::{self, Rule, SlotSpec};
use crate::schedules::LearningRate;

/// The options every Keras optimizer takes, applied in Keras' order inside one step:
/// unscale (`loss_scale_factor`) -> accumulate -> clip -> weight decay -> update rule -> EMA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SharedOptions {
    /// Decoupled weight decay: before the update rule `var -= var * weight_decay * lr`.
    pub weight_decay: Option<f64>,
    /// Per-tensor norm clipping: `g * c / max(||g||, c)`; `<= 0` is off.
    pub clipnorm: Option<f64>,
    /// Value clipping: `clip(g, -v, v)`; `<= 0` is off.
    pub clipvalue: Option<f64>,
    /// Global norm clipping: every `g_i *= c / max(n, c)` with `n = sqrt(sum ||g_i||^2)`; a
    /// non-finite `n` gives NaN; `<= 0` is off.
    pub global_clipnorm: Option<f64>,
    /// Keep an exponential moving average of every parameter.
    pub use_ema: bool,
    /// `avg = m * avg + (1 - m) * var` after each step (`m = 0` on the first), in `[0, 1]`.
    pub ema_momentum: f64,
    /// Every this many iterations, overwrite the parameters with their averages.
    pub ema_overwrite_frequency: Option<u64>,
    /// Gradients are divided by this first.
    pub loss_scale_factor: Option<f64>,
    /// Apply the mean gradient of every `N >= 2` steps; the steps between only accumulate.
    pub gradient_accumulation_steps: Option<u64>,
    /// Regular expressions searched in parameter keys; a match exempts the parameter from
    /// weight decay (Keras' `exclude_from_weight_decay(var_names=...)`).
    pub exclude_from_weight_decay: Vec<String>,
}

impl Default for SharedOptions {
    fn default() -> Self {
        SharedOptions {
            weight_decay: None,
            clipnorm: None,
            clipvalue: None,
            global_clipnorm: None,
            use_ema: false,
            ema_momentum: 0.99,
            ema_overwrite_frequency: None,
            loss_scale_factor: None,
            gradient_accumulation_steps: None,
            exclude_from_weight_decay: Vec::new(),
        }
    }
}

impl SharedOptions {
    fn validate(&self) -> Result<()> {
        let set: Vec<&'static str> = [
            ("clipnorm", self.clipnorm),
            ("clipvalue", self.clipvalue),
            ("global_clipnorm", self.global_clipnorm),
        ]
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(n, _)| *n)
        .collect();
        if set.len() > 1 {
            return Err(OptimError::ConflictingClipOptions { set });
        }
        let finite = |name, v: Option<f64>| match v {
            Some(v) => check(name, v, "a finite number", |_| true),
            None => Ok(()),
        };
        finite("clipnorm", self.clipnorm)?;
        finite("clipvalue", self.clipvalue)?;
        finite("global_clipnorm", self.global_clipnorm)?;
        if let Some(wd) = self.weight_decay {
            check("weight_decay", wd, "a finite number >= 0", |v| v >= 0.0)?;
        }
        check(
            "ema_momentum",
            self.ema_momentum,
            "a number in [0, 1]",
            |v| (0.0..=1.0).contains(&v),
        )?;
        if self.ema_overwrite_frequency == Some(0) {
            return Err(OptimError::InvalidHyperparameter {
                name: "ema_overwrite_frequency",
                expected: "an integer >= 1 (or unset)",
                got: 0.0,
            });
        }
        if let Some(s) = self.loss_scale_factor {
            check("loss_scale_factor", s, "a finite number > 0", |v| v > 0.0)?;
        }
        if let Some(n) = self.gradient_accumulation_steps.filter(|&n| n < 2) {
            return Err(OptimError::InvalidHyperparameter {
                name: "gradient_accumulation_steps",
                expected: "an integer >= 2 (or unset)",
                got: n as f64,
            });
        }
        Ok(())
    }

    fn exclusion(&self) -> Result<Option<Regex>> {
        if self.exclude_from_weight_decay.is_empty() {
            return Ok(None);
        }
        let pattern = self.exclude_from_weight_decay.join("|");
        Regex::new(&pattern)
            .map(Some)
            .map_err(|e| OptimError::InvalidPattern {
                pattern,
                reason: e.to_string(),
            })
    }
}

/// Dynamic loss scaling (Keras' `LossScaleOptimizer`): if every gradient is finite, the step
/// applies `g / scale` and counts a good step (after `dynamic_growth_steps` good steps in a row
/// the scale doubles); otherwise the step is skipped (iterations do not move) and the scale
/// halves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DynamicLossScale {
    /// The starting scale (2^15).
    pub initial_scale: f64,
    /// Good steps before the scale doubles (2000).
    pub dynamic_growth_steps: u64,
}

impl Default for DynamicLossScale {
    fn default() -> Self {
        DynamicLossScale {
            initial_scale: 32768.0,
            dynamic_growth_steps: 2000,
        }
    }
}

/// Everything needed to rebuild an optimizer without its state: serializable with serde.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// The update rule and its hyperparameters, tagged by Keras class name.
    pub rule: Rule,
    /// The learning rate (a constant or a built-in schedule).
    pub learning_rate: LearningRate,
    /// The options every optimizer shares.
    #[serde(default)]
    pub options: SharedOptions,
    /// Dynamic loss scaling (Keras' `LossScaleOptimizer` wrapping this optimizer).
    #[serde(default)]
    pub loss_scale: Option<DynamicLossScale>,
}

impl OptimizerConfig {
    /// The config as JSON.
    ///
    /// # Errors
    /// [`OptimError::NotSerializable`] when the learning rate is a custom schedule.
    pub fn to_json(&self) -> Result<String> {
        if matches!(self.learning_rate, LearningRate::Custom(_)) {
            return Err(OptimError::NotSerializable);
        }
        Ok(serde_json::to_string(self)?)
    }

    /// A config from JSON (not yet validated; [`Optimizer::from_config`] validates).
    ///
    /// # Errors
    /// [`OptimError::Json`] when the text is not a config.
    pub fn from_json(json: &str) -> Result<Self> {
        Ok(serde_json::from_str(json)?)
    }
}

/// One optimizer variable as Keras lists it: name, shape and values (row-major).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizerVariable {
    /// Keras' name (`"iteration"`, `"dense_kernel_momentum"`, ...).
    pub name: String,
    /// The shape (`[]` for a scalar).
    pub shape: Vec<usize>,
    /// The values.
    pub values: Vec<f32>,
}

/// The per-parameter part of a saved state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedParam {
    /// The parameter's key.
    pub key: String,
    /// The parameter's shape.
    pub shape: Vec<usize>,
    /// The EMA of the parameter (empty without EMA).
    pub average: Vec<f32>,
    /// The gradient accumulator (empty without accumulation).
    pub accumulator: Vec<f32>,
    /// The rule's slots in Keras order.
    pub slots: Vec<Vec<f32>>,
}

/// The whole mutable state of an optimizer, keyed by parameter name; serializable, and exact:
/// a restored optimizer continues bit-for-bit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizerState {
    /// Keras' class name of the rule (checked on load).
    pub class_name: String,
    /// The raw count of steps applied (micro-steps of accumulation included).
    pub iterations: u64,
    /// The constant learning rate, when it is one.
    pub learning_rate: Option<f32>,
    /// Optimizer-wide scalar slots (Nadam's `U`).
    pub globals: Vec<f32>,
    /// Dynamic loss scaling: `(good steps in a row, current scale)`.
    pub loss_scale: Option<(u64, f32)>,
    /// Per-parameter state in the order parameters were first seen.
    pub params: Vec<SavedParam>,
}

#[derive(Debug, Clone)]
struct ParamState {
    key: String,
    shape: Vec<usize>,
    average: Vec<f32>,
    accumulator: Vec<f32>,
    slots: Vec<Vec<f32>>,
    /// Weight decay applies (not excluded by name).
    decays: bool,
    /// The last step that saw this parameter (duplicate detection).
    stamp: u64,
}

#[derive(Debug, Clone, Copy)]
struct LossScaleState {
    good_steps: u64,
    scale: f32,
}

/// Any Keras optimizer: an update [`Rule`], a [`LearningRate`], the [`SharedOptions`], and the
/// state (iterations, per-parameter slots keyed by parameter name, optional dynamic loss scale).
///
/// ```
/// use gradus_optim::{rules::Adam, NamedParam, Optimizer};
///
/// let mut opt = Optimizer::builder(Adam { amsgrad: true, ..Adam::default() })
///     .learning_rate(0.02)
///     .clipnorm(1.0)
///     .build()?;
/// let mut w = vec![1.0_f32, -1.0];
/// opt.apply_gradients([(vec![0.5_f32, -0.5], NamedParam::new("w", &mut w))])?;
/// assert_eq!(opt.iterations(), 1);
/// assert!(w[0] < 1.0 && w[1] > -1.0);
/// # Ok::<(), gradus_optim::OptimError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Optimizer {
    rule: Rule,
    learning_rate: LearningRate,
    options: SharedOptions,
    loss_scale_config: Option<DynamicLossScale>,
    loss_scale: Option<LossScaleState>,
    exclude: Option<Regex>,
    raw_iterations: u64,
    params: Vec<ParamState>,
    index: HashMap<String, usize>,
    globals: Vec<f32>,
    stamp: u64,
    /// Reused per step: the state index of each pair, by position.
    order: Vec<usize>,
    /// Reused per step: the prepared gradient when options transform it.
    scratch: Vec<f32>,
}

/// Builds an [`Optimizer`] with Keras' keyword arguments as methods.
#[derive(Debug, Clone)]
pub struct OptimizerBuilder {
    config: OptimizerConfig,
}

impl OptimizerBuilder {
    /// The learning rate: a constant (`f32`/`f64`), a schedule, or
    /// [`LearningRate::custom`].
    pub fn learning_rate(mut self, lr: impl Into<LearningRate>) -> Self {
        self.config.learning_rate = lr.into();
        self
    }
    /// Decoupled weight decay.
    pub fn weight_decay(mut self, wd: f64) -> Self {
        self.config.options.weight_decay = Some(wd);
        self
    }
    /// Per-tensor norm clipping.
    pub fn clipnorm(mut self, c: f64) -> Self {
        self.config.options.clipnorm = Some(c);
        self
    }
    /// Value clipping.
    pub fn clipvalue(mut self, v: f64) -> Self {
        self.config.options.clipvalue = Some(v);
        self
    }
    /// Global norm clipping.
    pub fn global_clipnorm(mut self, c: f64) -> Self {
        self.config.options.global_clipnorm = Some(c);
        self
    }
    /// Keep an EMA of the parameters with this momentum.
    pub fn ema(mut self, momentum: f64) -> Self {
        self.config.options.use_ema = true;
        self.config.options.ema_momentum = momentum;
        self
    }
    /// Overwrite the parameters with their EMA every `n` iterations (needs [`Self::ema`]).
    pub fn ema_overwrite_frequency(mut self, n: u64) -> Self {
        self.config.options.ema_overwrite_frequency = Some(n);
        self
    }
    /// Divide gradients by `s` first.
    pub fn loss_scale_factor(mut self, s: f64) -> Self {
        self.config.options.loss_scale_factor = Some(s);
        self
    }
    /// Apply the mean gradient of every `n` steps.
    pub fn gradient_accumulation_steps(mut self, n: u64) -> Self {
        self.config.options.gradient_accumulation_steps = Some(n);
        self
    }
    /// Exempt parameters whose key contains a match of any of these regular expressions from
    /// weight decay.
    pub fn exclude_from_weight_decay<S: Into<String>>(
        mut self,
        patterns: impl IntoIterator<Item = S>,
    ) -> Self {
        self.config
            .options
            .exclude_from_weight_decay
            .extend(patterns.into_iter().map(Into::into));
        self
    }
    /// Wrap in dynamic loss scaling (Keras' `LossScaleOptimizer`).
    pub fn dynamic_loss_scale(mut self, initial_scale: f64, dynamic_growth_steps: u64) -> Self {
        self.config.loss_scale = Some(DynamicLossScale {
            initial_scale,
            dynamic_growth_steps,
        });
        self
    }
    /// Validates everything and builds the optimizer.
    ///
    /// # Errors
    /// [`OptimError::InvalidHyperparameter`], [`OptimError::ConflictingClipOptions`],
    /// [`OptimError::InvalidSchedule`] or [`OptimError::InvalidPattern`] naming the first
    /// problem.
    pub fn build(self) -> Result<Optimizer> {
        Optimizer::from_config(self.config)
    }
}

/// Wraps `inner`'s configuration in dynamic loss scaling, as Keras'
/// `LossScaleOptimizer(inner, initial_scale=2**15, dynamic_growth_steps=2000)`; the state of
/// `inner` is not carried over.
///
/// # Errors
/// As [`Optimizer::from_config`]; also when `inner` sets `loss_scale_factor`.
pub fn loss_scale_optimizer(
    inner: &Optimizer,
    initial_scale: f64,
    dynamic_growth_steps: u64,
) -> Result<Optimizer> {
    let mut config = inner.config();
    config.loss_scale = Some(DynamicLossScale {
        initial_scale,
        dynamic_growth_steps,
    });
    Optimizer::from_config(config)
}

/// How a prepared gradient is clipped.
#[derive(Debug, Clone, Copy)]
enum Clip {
    None,
    Value(f32),
    Norm(f32),
    Scale(f32),
}

impl Optimizer {
    /// The fewest values of a parameter piece that [`Optimizer::apply_gradients_with`] hands to
    /// another thread: an Adam update of 8192 values takes about 5 microseconds of one core,
    /// several times the cost of handing it over in a spinning pool.
    pub const MIN_PIECE: usize = 8192;

    /// A builder for `rule` with its Keras default learning rate and no shared options.
    pub fn builder(rule: impl Into<Rule>) -> OptimizerBuilder {
        let rule = rule.into();
        let mut options = SharedOptions::default();
        if matches!(rule, Rule::AdamW(_)) {
            options.weight_decay = Some(0.004);
        }
        OptimizerBuilder {
            config: OptimizerConfig {
                learning_rate: LearningRate::Constant(rule.default_learning_rate()),
                rule,
                options,
                loss_scale: None,
            },
        }
    }

    /// The optimizer Keras builds for a name (`"adam"`, `"sgd"`, `"rmsprop"`, `"adagrad"`,
    /// `"adadelta"`, `"adamax"`, `"nadam"`, `"ftrl"`, `"adamw"`, `"lion"`, `"lamb"`,
    /// `"adafactor"`; case-insensitive) with all its defaults.
    ///
    /// # Errors
    /// [`OptimError::UnknownOptimizer`] for any other name.
    pub fn from_name(name: &str) -> Result<Optimizer> {
        Optimizer::builder(Rule::from_name(name)?).build()
    }

    /// Rebuilds an optimizer (without state) from its config.
    ///
    /// # Errors
    /// [`OptimError::InvalidHyperparameter`], [`OptimError::ConflictingClipOptions`],
    /// [`OptimError::InvalidSchedule`] or [`OptimError::InvalidPattern`] naming the first
    /// problem.
    pub fn from_config(config: OptimizerConfig) -> Result<Optimizer> {
        config.rule.validate()?;
        config.learning_rate.validate()?;
        config.options.validate()?;
        if matches!(config.rule, Rule::AdamW(_)) && config.options.weight_decay.is_none() {
            return Err(OptimError::InvalidHyperparameter {
                name: "weight_decay",
                expected: "a value for AdamW (Keras' default is 0.004)",
                got: f64::NAN,
            });
        }
        let loss_scale = match &config.loss_scale {
            Some(ls) => {
                check(
                    "initial_scale",
                    ls.initial_scale,
                    "a finite number > 0",
                    |v| v > 0.0,
                )?;
                if ls.dynamic_growth_steps == 0 {
                    return Err(OptimError::InvalidHyperparameter {
                        name: "dynamic_growth_steps",
                        expected: "an integer >= 1",
                        got: 0.0,
                    });
                }
                if let Some(f) = config.options.loss_scale_factor {
                    return Err(OptimError::InvalidHyperparameter {
                        name: "loss_scale_factor",
                        expected: "unset when dynamic loss scaling is on",
                        got: f,
                    });
                }
                Some(LossScaleState {
                    good_steps: 0,
                    scale: ls.initial_scale as f32,
                })
            }
            None => None,
        };
        let exclude = config.options.exclusion()?;
        let globals = config.rule.global_slots().iter().map(|g| g.1).collect();
        Ok(Optimizer {
            rule: config.rule,
            learning_rate: config.learning_rate,
            options: config.options,
            loss_scale_config: config.loss_scale,
            loss_scale,
            exclude,
            raw_iterations: 0,
            params: Vec::new(),
            index: HashMap::new(),
            globals,
            stamp: 0,
            order: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// The configuration (hyperparameters, learning rate, options), without state.
    pub fn config(&self) -> OptimizerConfig {
        OptimizerConfig {
            rule: self.rule.clone(),
            learning_rate: self.learning_rate.clone(),
            options: self.options.clone(),
            loss_scale: self.loss_scale_config.clone(),
        }
    }

    /// The update rule.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// The shared options.
    pub fn options(&self) -> &SharedOptions {
        &self.options
    }

    /// Keras' `optimizer.built`: whether the optimizer holds state for some parameter (after
    /// its first `apply_gradients`, or a restored state). Nothing is copied.
    ///
    /// ```
    /// use gradus_optim::{NamedParam, Optimizer};
    ///
    /// let mut opt = Optimizer::from_name("adam")?;
    /// assert!(!opt.is_built());
    /// let mut w = vec![1.0f32, 2.0];
    /// opt.apply_gradients([(&[0.5f32, 0.5][..], NamedParam::new("w", &mut w))])?;
    /// assert!(opt.is_built());
    /// # Ok::<(), gradus_optim::OptimError>(())
    /// ```
    pub fn is_built(&self) -> bool {
        !self.params.is_empty()
    }

    /// Keras' `iterations`: the number of updates applied (with gradient accumulation, the raw
    /// step count divided by the number of accumulation steps).
    pub fn iterations(&self) -> u64 {
        match self.options.gradient_accumulation_steps {
            Some(n) => self.raw_iterations / n,
            None => self.raw_iterations,
        }
    }

    /// The learning rate the next step will use (a schedule is evaluated at the number of steps
    /// made so far).
    pub fn learning_rate(&self) -> f32 {
        self.learning_rate.at(self.raw_iterations)
    }

    /// The learning rate as configured (constant or schedule).
    pub fn learning_rate_config(&self) -> &LearningRate {
        &self.learning_rate
    }

    /// Replaces the learning rate between steps (as Keras' setter: callbacks such as
    /// ReduceLROnPlateau set a new constant).
    ///
    /// # Errors
    /// [`OptimError::LearningRateNotSettable`] when setting a constant while the current learning
    /// rate is a schedule (Keras raises there too); [`OptimError::InvalidHyperparameter`] for a
    /// negative or non-finite constant.
    pub fn set_learning_rate(&mut self, lr: impl Into<LearningRate>) -> Result<()> {
        let lr = lr.into();
        lr.validate()?;
        match (&self.learning_rate, &lr) {
            (LearningRate::Schedule(_), LearningRate::Constant(_)) => {
                Err(OptimError::LearningRateNotSettable { kind: "schedule" })
            }
            (LearningRate::Custom(_), LearningRate::Constant(_)) => {
                Err(OptimError::LearningRateNotSettable {
                    kind: "custom schedule",
                })
            }
            _ => {
                self.learning_rate = lr;
                Ok(())
            }
        }
    }

    /// The current dynamic loss scale, when dynamic loss scaling is on.
    pub fn dynamic_scale(&self) -> Option<f32> {
        self.loss_scale.map(|s| s.scale)
    }

    /// Scales a loss before differentiation: `loss * scale` with the dynamic scale, or
    /// `loss * loss_scale_factor`, or `loss` unchanged.
    pub fn scale_loss(&self, loss: f32) -> f32 {
        match (self.loss_scale, self.options.loss_scale_factor) {
            (Some(s), _) => loss * s.scale,
            (None, Some(f)) => loss * f as f32,
            (None, None) => loss,
        }
    }

    /// Applies one step: the analogue of Keras' `apply_gradients(zip(grads, vars))`.
    ///
    /// Each pair is a gradient (anything `AsRef<[f32]>`) and a [`Param`]. Per-parameter state is
    /// created on first sight of a key and found by key afterwards. An empty iterator is a
    /// no-op. Everything is validated before anything changes.
    ///
    /// # Errors
    /// [`OptimError::GradientLength`], [`OptimError::ParamLength`],
    /// [`OptimError::DuplicateKey`], [`OptimError::ShapeChanged`] or
    /// [`OptimError::InvalidLearningRate`]; parameters and state are then untouched.
    pub fn apply_gradients<I, G, P>(&mut self, pairs: I) -> Result<()>
    where
        I: IntoIterator<Item = (G, P)>,
        G: AsRef<[f32]>,
        P: Param,
    {
        self.apply_gradients_with(&Serial, pairs)
    }

    /// [`Optimizer::apply_gradients`], with large parameters of an element-wise rule updated in
    /// pieces run by `parallel` (see [`crate::parallel`]). The result is the same, bit for bit,
    /// with any [`Parallel`].
    ///
    /// A parameter is split only when its rule is element-wise (every rule but Lamb and
    /// Adafactor) and each piece gets at least [`Optimizer::MIN_PIECE`] values; gradient
    /// transforms (unscaling, accumulation, clipping) and EMA run on the calling thread.
    ///
    /// # Errors
    /// As [`Optimizer::apply_gradients`].
    pub fn apply_gradients_with<I, G, P>(&mut self, parallel: &dyn Parallel, pairs: I) -> Result<()>
    where
        I: IntoIterator<Item = (G, P)>,
        G: AsRef<[f32]>,
        P: Param,
    {
        let mut pairs: Vec<(G, P)> = pairs.into_iter().collect();
        let mut views: Vec<(&[f32], &mut dyn Param)> = pairs
            .iter_mut()
            .map(|(g, p)| {
                let g: &G = g;
                (g.as_ref(), p as &mut dyn Param)
            })
            .collect();
        self.apply_dyn_with(parallel, &mut views)
    }

    /// [`Optimizer::apply_gradients`] over type-erased pairs (the object-safe core).
    ///
    /// # Errors
    /// As [`Optimizer::apply_gradients`].
    pub fn apply_dyn(&mut self, pairs: &mut [(&[f32], &mut dyn Param)]) -> Result<()> {
        self.apply_dyn_with(&Serial, pairs)
    }

    /// [`Optimizer::apply_gradients_with`] over type-erased pairs.
    ///
    /// # Errors
    /// As [`Optimizer::apply_gradients`].
    pub fn apply_dyn_with(
        &mut self,
        parallel: &dyn Parallel,
        pairs: &mut [(&[f32], &mut dyn Param)],
    ) -> Result<()> {
        if pairs.is_empty() {
            return Ok(());
        }
        let new = self.resolve(pairs)?;
        let lr = self.learning_rate.at(self.raw_iterations);
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(OptimError::InvalidLearningRate {
                step: self.raw_iterations,
                got: lr,
            });
        }
        if let Some(ls) = &mut self.loss_scale {
            let finite = pairs.iter().all(|(g, _)| g.iter().all(|v| v.is_finite()));
            if !finite {
                ls.good_steps = 0;
                ls.scale /= 2.0;
                return Ok(());
            }
        }
        // Nothing can fail from here on.
        for &(pos, idx) in &new {
            self.create_state(&*pairs[pos].1, idx);
        }
        self.step(pairs, lr, parallel);
        if let (Some(ls), Some(cfg)) = (&mut self.loss_scale, &self.loss_scale_config) {
            if ls.good_steps + 1 == cfg.dynamic_growth_steps {
                ls.good_steps = 0;
                ls.scale *= 2.0;
            } else {
                ls.good_steps += 1;
            }
        }
        Ok(())
    }

    /// Validates every pair and finds its state index (filling `self.order`); returns the
    /// `(position, new index)` of keys seen for the first time.
    fn resolve(&mut self, pairs: &mut [(&[f32], &mut dyn Param)]) -> Result<Vec<(usize, usize)>> {
        self.stamp += 1;
        let mut new = Vec::new();
        for (pos, (g, p)) in pairs.iter_mut().enumerate() {
            let n = p.numel().ok_or_else(|| OptimError::ParamLength {
                key: p.key().to_string(),
                shape: p.shape().to_vec(),
                expected: usize::MAX,
                got: 0,
            })?;
            if g.len() != n {
                return Err(OptimError::GradientLength {
                    key: p.key().to_string(),
                    shape: p.shape().to_vec(),
                    expected: n,
                    got: g.len(),
                });
            }
            let mut got = 0;
            p.with_values_mut(&mut |v| got = v.len());
            if got != n {
                return Err(OptimError::ParamLength {
                    key: p.key().to_string(),
                    shape: p.shape().to_vec(),
                    expected: n,
                    got,
                });
            }
            let key = p.key();
            // Same position as last step: a string compare instead of a hash lookup.
            let cached = self
                .order
                .get(pos)
                .copied()
                .filter(|&i| i < self.params.len() && self.params[i].key == key);
            match cached.or_else(|| self.index.get(key).copied()) {
                Some(i) => {
                    let state = &mut self.params[i];
                    if state.shape != p.shape() {
                        return Err(OptimError::ShapeChanged {
                            key: key.to_string(),
                            expected: state.shape.clone(),
                            got: p.shape().to_vec(),
                        });
                    }
                    if state.stamp == self.stamp {
                        return Err(OptimError::DuplicateKey {
                            key: key.to_string(),
                        });
                    }
                    state.stamp = self.stamp;
                    self.set_order(pos, i);
                }
                None => {
                    let i = self.params.len() + new.len();
                    new.push((pos, i));
                    self.set_order(pos, i);
                }
            }
        }
        if new.len() > 1 {
            let mut seen = HashSet::new();
            for &(pos, _) in &new {
                if !seen.insert(pairs[pos].1.key()) {
                    return Err(OptimError::DuplicateKey {
                        key: pairs[pos].1.key().to_string(),
                    });
                }
            }
        }
        self.order.truncate(pairs.len());
        Ok(new)
    }

    fn set_order(&mut self, pos: usize, i: usize) {
        match self.order.get_mut(pos) {
            Some(slot) => *slot = i,
            None => self.order.push(i),
        }
    }

    fn create_state(&mut self, p: &dyn Param, idx: usize) {
        debug_assert_eq!(idx, self.params.len(), "new states are created in order");
        let shape = p.shape().to_vec();
        let n: usize = shape.iter().product();
        let slots = self
            .rule
            .slot_groups()
            .iter()
            .flatten()
            .map(|spec| vec![spec.init; spec.shape.of(&shape).iter().product()])
            .collect();
        let key = p.key().to_string();
        let decays = self.decays(&key);
        self.index.insert(key.clone(), idx);
        self.params.push(ParamState {
            average: if self.options.use_ema {
                vec![0.0; n]
            } else {
                Vec::new()
            },
            accumulator: if self.options.gradient_accumulation_steps.is_some() {
                vec![0.0; n]
            } else {
                Vec::new()
            },
            key,
            shape,
            slots,
            decays,
            stamp: self.stamp,
        });
    }

    fn decays(&self, key: &str) -> bool {
        self.options.weight_decay.is_some()
            && !self.exclude.as_ref().is_some_and(|r| r.is_match(key))
    }

    /// The divisor applied to gradients first (dynamic scale or `loss_scale_factor`).
    fn unscale(&self) -> Option<f32> {
        match (self.loss_scale, self.options.loss_scale_factor) {
            (Some(s), _) => Some(s.scale),
            (None, Some(f)) => Some(f as f32),
            (None, None) => None,
        }
    }

    /// One validated step over `pairs` whose states are `self.order`.
    fn step(&mut self, pairs: &mut [(&[f32], &mut dyn Param)], lr: f32, parallel: &dyn Parallel) {
        let unscale = self.unscale();
        let iterations = self.iterations();
        let accumulate = self.options.gradient_accumulation_steps;
        let is_update = accumulate.is_none_or(|n| (self.raw_iterations + 1).is_multiple_of(n));
        let Optimizer {
            rule,
            options,
            params,
            order,
            scratch,
            globals,
            ..
        } = self;

        if !is_update {
            // A micro-step: only accumulate (acc = g + acc).
            for ((g, _), &i) in pairs.iter().zip(order.iter()) {
                let acc = &mut params[i].accumulator;
                match unscale {
                    Some(s) => acc.iter_mut().zip(g.iter()).for_each(|(a, &g)| *a += g / s),
                    None => acc.iter_mut().zip(g.iter()).for_each(|(a, &g)| *a += g),
                }
            }
        } else {
            let positive = |v: Option<f64>| v.filter(|&v| v > 0.0).map(|v| v as f32);
            let steps = accumulate.map(|n| n as f32);
            let mut clip = match (
                positive(options.clipnorm),
                positive(options.clipvalue),
                positive(options.global_clipnorm),
            ) {
                (Some(c), _, _) => Clip::Norm(c),
                (_, Some(v), _) => Clip::Value(v),
                (_, _, Some(c)) => {
                    let mut sum = 0.0_f64;
                    for ((g, _), &i) in pairs.iter().zip(order.iter()) {
                        prepare(scratch, g, &params[i].accumulator, unscale, steps);
                        sum += squared_norm(scratch);
                    }
                    let n = sum.sqrt() as f32;
                    let inv_c = (1.0 / f64::from(c)) as f32;
                    // Keras adds `n - n`: NaN when the norm is not finite.
                    let nan_unless_finite = if n.is_finite() { 0.0 } else { f32::NAN };
                    Clip::Scale(c * (1.0 / n).min(inv_c) + nan_unless_finite)
                }
                _ => Clip::None,
            };
            let transforms = unscale.is_some() || steps.is_some() || !matches!(clip, Clip::None);
            let coeffs = rule.coefficients(lr, iterations, globals);
            let wd = options.weight_decay.map(|w| w as f32);
            for ((g, p), &i) in pairs.iter_mut().zip(order.iter()) {
                let state = &mut params[i];
                let g: &[f32] = if transforms {
                    prepare(scratch, g, &state.accumulator, unscale, steps);
                    if let Clip::Norm(c) = clip {
                        let l2 = squared_norm(scratch);
                        clip = Clip::Norm(c);
                        let norm = if l2 > 0.0 { l2.sqrt() as f32 } else { 0.0 };
                        let d = norm.max(c);
                        scratch.iter_mut().for_each(|x| *x = (*x * c) / d);
                    } else {
                        apply_clip(scratch, clip);
                    }
                    scratch
                } else {
                    g
                };
                let wd = wd.filter(|_| state.decays).map(|wd| (wd, lr));
                let (shape, slots) = (&state.shape, &mut state.slots);
                p.with_values_mut(&mut |var| {
                    update_in_pieces(parallel, rule, &coeffs, var, g, shape, slots, wd);
                });
                state.accumulator.fill(0.0);
            }
        }

        if options.use_ema {
            let m = if iterations != 0 {
                options.ema_momentum as f32
            } else {
                0.0
            };
            let overwrite = options
                .ema_overwrite_frequency
                .is_some_and(|f| (iterations + 1).is_multiple_of(f));
            for ((_, p), &i) in pairs.iter_mut().zip(order.iter()) {
                let avg = &mut params[i].average;
                p.with_values_mut(&mut |var| {
                    for (a, &x) in avg.iter_mut().zip(var.iter()) {
                        *a = m * *a + (1.0 - m) * x;
                    }
                    if overwrite && var.len() == avg.len() {
                        var.copy_from_slice(avg);
                    }
                });
            }
        }
        self.raw_iterations += 1;
    }

    /// Copies the moving averages into the parameters (Keras' `finalize_variable_values`; `fit`
    /// calls it at the end of training). A no-op without EMA.
    ///
    /// # Errors
    /// [`OptimError::UnknownParameter`] when a key has no average (never stepped), or
    /// [`OptimError::ShapeChanged`]; nothing is copied then.
    pub fn finalize_variable_values<P: Param>(
        &self,
        params: impl IntoIterator<Item = P>,
    ) -> Result<()> {
        if !self.options.use_ema {
            return Ok(());
        }
        let mut params: Vec<P> = params.into_iter().collect();
        let mut found = Vec::with_capacity(params.len());
        for p in &params {
            let i = *self
                .index
                .get(p.key())
                .ok_or_else(|| OptimError::UnknownParameter {
                    key: p.key().to_string(),
                    what: "moving average",
                })?;
            if self.params[i].shape != p.shape() {
                return Err(OptimError::ShapeChanged {
                    key: p.key().to_string(),
                    expected: self.params[i].shape.clone(),
                    got: p.shape().to_vec(),
                });
            }
            found.push(i);
        }
        for (p, i) in params.iter_mut().zip(found) {
            let avg = &self.params[i].average;
            p.with_values_mut(&mut |var| {
                if var.len() == avg.len() {
                    var.copy_from_slice(avg)
                }
            });
        }
        Ok(())
    }

    /// The optimizer's variables in Keras order: `iteration`, `learning_rate` (when constant),
    /// EMA averages, gradient accumulators, the rule's slots (groups interleaved per parameter),
    /// then optimizer-wide scalars. With dynamic loss scaling, `step_counter` and
    /// `dynamic_scale` come first. Parameters are in the order they were first seen.
    pub fn variables(&self) -> Vec<OptimizerVariable> {
        let mut out = Vec::new();
        self.visit_variables(|name, shape, values| {
            out.push(OptimizerVariable {
                name,
                shape: shape.to_vec(),
                values: values.to_vec(),
            })
        });
        out
    }

    /// Keras' summary count of "optimizer params": the number of scalar values in
    /// [`Optimizer::variables`].
    pub fn count_params(&self) -> usize {
        let mut n = 0;
        self.visit_variables(|_, _, values| n += values.len());
        n
    }

    fn visit_variables(&self, mut f: impl FnMut(String, &[usize], &[f32])) {
        if let Some(ls) = self.loss_scale {
            f("step_counter".into(), &[], &[ls.good_steps as f32]);
            f("dynamic_scale".into(), &[], &[ls.scale]);
        }
        f("iteration".into(), &[], &[self.raw_iterations as f32]);
        if let LearningRate::Constant(lr) = self.learning_rate {
            f("learning_rate".into(), &[], &[lr]);
        }
        for p in self.params.iter().filter(|_| self.options.use_ema) {
            f(slot_name(&p.key, Some("average")), &p.shape, &p.average);
        }
        for p in self
            .params
            .iter()
            .filter(|_| self.options.gradient_accumulation_steps.is_some())
        {
            f(
                slot_name(&p.key, Some("gradient_accumulator")),
                &p.shape,
                &p.accumulator,
            );
        }
        let groups = self.rule.slot_groups();
        let mut offset = 0;
        for group in &groups {
            for p in &self.params {
                for (j, spec) in group.iter().enumerate() {
                    f(
                        slot_name(&p.key, spec.suffix),
                        &spec.shape.of(&p.shape),
                        &p.slots[offset + j],
                    );
                }
            }
            offset += group.len();
        }
        for ((name, _), v) in self.rule.global_slots().iter().zip(&self.globals) {
            f((*name).to_string(), &[], std::slice::from_ref(v));
        }
    }

    /// The values of [`Optimizer::variables`] (Keras' `get_weights`).
    pub fn get_weights(&self) -> Vec<Vec<f32>> {
        self.variables().into_iter().map(|v| v.values).collect()
    }

    /// Sets every optimizer variable, in the order of [`Optimizer::variables`] (Keras'
    /// `set_weights`). Each weight is `(shape, values)`.
    ///
    /// # Errors
    /// [`OptimError::WeightCount`] for a wrong number of weights, [`OptimError::WeightShape`]
    /// for a wrong shape or length, [`OptimError::InvalidIteration`] for a non-integer
    /// iteration; nothing changes then.
    pub fn set_weights<S: AsRef<[usize]>, V: AsRef<[f32]>>(
        &mut self,
        weights: &[(S, V)],
    ) -> Result<()> {
        let expected = self.variables();
        if expected.len() != weights.len() {
            return Err(OptimError::WeightCount {
                expected: expected.len(),
                got: weights.len(),
            });
        }
        for (index, (var, (shape, values))) in expected.iter().zip(weights).enumerate() {
            let (shape, values) = (shape.as_ref(), values.as_ref());
            if var.shape != shape || values.len() != var.values.len() {
                return Err(OptimError::WeightShape {
                    index,
                    name: var.name.clone(),
                    expected: var.shape.clone(),
                    got: shape.to_vec(),
                    len: values.len(),
                });
            }
            if var.name == "iteration" || var.name == "step_counter" {
                let v = values[0];
                if !(v >= 0.0 && v.fract() == 0.0 && v.is_finite()) {
                    return Err(OptimError::InvalidIteration { got: v });
                }
            }
        }
        let mut it = weights.iter().map(|(_, v)| v.as_ref());
        let mut next = || it.next().expect("count checked above");
        if let Some(ls) = &mut self.loss_scale {
            ls.good_steps = next()[0] as u64;
            ls.scale = next()[0];
        }
        self.raw_iterations = next()[0] as u64;
        if let LearningRate::Constant(lr) = &mut self.learning_rate {
            *lr = next()[0];
        }
        if self.options.use_ema {
            for p in &mut self.params {
                p.average.copy_from_slice(next());
            }
        }
        if self.options.gradient_accumulation_steps.is_some() {
            for p in &mut self.params {
                p.accumulator.copy_from_slice(next());
            }
        }
        let mut offset = 0;
        for group in self.rule.slot_groups() {
            for p in &mut self.params {
                for j in 0..group.len() {
                    p.slots[offset + j].copy_from_slice(next());
                }
            }
            offset += group.len();
        }
        for g in &mut self.globals {
            *g = next()[0];
        }
        Ok(())
    }

    /// A snapshot of the whole mutable state, keyed by parameter name.
    pub fn state(&self) -> OptimizerState {
        OptimizerState {
            class_name: self.rule.class_name().to_string(),
            iterations: self.raw_iterations,
            learning_rate: match self.learning_rate {
                LearningRate::Constant(lr) => Some(lr),
                _ => None,
            },
            globals: self.globals.clone(),
            loss_scale: self.loss_scale.map(|s| (s.good_steps, s.scale)),
            params: self
                .params
                .iter()
                .map(|p| SavedParam {
                    key: p.key.clone(),
                    shape: p.shape.clone(),
                    average: p.average.clone(),
                    accumulator: p.accumulator.clone(),
                    slots: p.slots.clone(),
                })
                .collect(),
        }
    }

    /// Replaces the whole mutable state with `state` (from [`Optimizer::state`] of an optimizer
    /// with the same config); the optimizer then continues bit-for-bit.
    ///
    /// # Errors
    /// [`OptimError::StateMismatch`] naming the first thing that does not fit this optimizer's
    /// config; nothing changes then.
    pub fn load_state(&mut self, state: &OptimizerState) -> Result<()> {
        let mismatch = |what: &str, expected: String, got: String| OptimError::StateMismatch {
            what: what.to_string(),
            expected,
            got,
        };
        if state.class_name != self.rule.class_name() {
            return Err(mismatch(
                "optimizer class",
                self.rule.class_name().into(),
                state.class_name.clone(),
            ));
        }
        if state.learning_rate.is_some() != matches!(self.learning_rate, LearningRate::Constant(_))
        {
            return Err(mismatch(
                "constant learning rate",
                matches!(self.learning_rate, LearningRate::Constant(_)).to_string(),
                format!("{}", state.learning_rate.is_some()),
            ));
        }
        if state.globals.len() != self.globals.len() {
            return Err(mismatch(
                "optimizer-wide slots",
                self.globals.len().to_string(),
                state.globals.len().to_string(),
            ));
        }
        if state.loss_scale.is_some() != self.loss_scale.is_some() {
            return Err(mismatch(
                "dynamic loss scaling",
                self.loss_scale.is_some().to_string(),
                state.loss_scale.is_some().to_string(),
            ));
        }
        let specs: Vec<SlotSpec> = self.rule.slot_groups().into_iter().flatten().collect();
        let mut keys = HashSet::new();
        for p in &state.params {
            let n = p
                .shape
                .iter()
                .try_fold(1usize, |n, &d| n.checked_mul(d))
                .unwrap_or(usize::MAX);
            let len = |on: bool| if on { n } else { 0 };
            let what = |s: &str| format!("{s} of parameter `{}`", p.key);
            if !keys.insert(p.key.as_str()) {
                return Err(mismatch(
                    &what("key"),
                    "distinct keys".into(),
                    "a repeat".into(),
                ));
            }
            if p.average.len() != len(self.options.use_ema) {
                return Err(mismatch(
                    &what("moving-average length"),
                    len(self.options.use_ema).to_string(),
                    p.average.len().to_string(),
                ));
            }
            let acc = len(self.options.gradient_accumulation_steps.is_some());
            if p.accumulator.len() != acc {
                return Err(mismatch(
                    &what("accumulator length"),
                    acc.to_string(),
                    p.accumulator.len().to_string(),
                ));
            }
            if p.slots.len() != specs.len() {
                return Err(mismatch(
                    &what("slot count"),
                    specs.len().to_string(),
                    p.slots.len().to_string(),
                ));
            }
            for (spec, slot) in specs.iter().zip(&p.slots) {
                let want: usize = spec.shape.of(&p.shape).iter().product();
                if slot.len() != want {
                    return Err(mismatch(
                        &what("slot length"),
                        want.to_string(),
                        slot.len().to_string(),
                    ));
                }
            }
        }
        self.raw_iterations = state.iterations;
        if let (LearningRate::Constant(lr), Some(saved)) =
            (&mut self.learning_rate, state.learning_rate)
        {
            *lr = saved;
        }
        self.globals.clone_from(&state.globals);
        if let (Some(ls), Some((good_steps, scale))) = (&mut self.loss_scale, state.loss_scale) {
            *ls = LossScaleState { good_steps, scale };
        }
        self.index.clear();
        self.order.clear();
        self.params = state
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| {
                self.index.insert(p.key.clone(), i);
                ParamState {
                    key: p.key.clone(),
                    shape: p.shape.clone(),
                    average: p.average.clone(),
                    accumulator: p.accumulator.clone(),
                    slots: p.slots.clone(),
                    decays: self.decays(&p.key),
                    stamp: 0,
                }
            })
            .collect();
        Ok(())
    }

    /// The state as JSON (see [`Optimizer::state`]).
    ///
    /// # Errors
    /// [`OptimError::Json`] when a value is not finite (JSON has no NaN or infinity).
    pub fn save_state_json(&self) -> Result<String> {
        let state = self.state();
        let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
        let ok = finite(&state.globals)
            && state.params.iter().all(|p| {
                finite(&p.average) && finite(&p.accumulator) && p.slots.iter().all(|s| finite(s))
            });
        if !ok {
            return Err(OptimError::Json(
                "expected finite optimizer state, got NaN or infinity".into(),
            ));
        }
        Ok(serde_json::to_string(&state)?)
    }

    /// Loads a state saved by [`Optimizer::save_state_json`].
    ///
    /// # Errors
    /// [`OptimError::Json`] for malformed text, else as [`Optimizer::load_state`].
    pub fn load_state_json(&mut self, json: &str) -> Result<()> {
        let state: OptimizerState = serde_json::from_str(json)?;
        self.load_state(&state)
    }
}

/// Keras' slot name: the key with `/` replaced by `_`, then `_suffix`; without a suffix the last
/// path segment of the key (Adafactor's factored statistics carry the variable's own name).
fn slot_name(key: &str, suffix: Option<&str>) -> String {
    match suffix {
        Some(s) => format!("{}_{s}", key.replace('/', "_")),
        None => key.rsplit('/').next().unwrap_or(key).to_string(),
    }
}

/// `out = g / unscale`, then `(out + acc) / steps` on an accumulation update step.
fn prepare(out: &mut Vec<f32>, g: &[f32], acc: &[f32], unscale: Option<f32>, steps: Option<f32>) {
    out.clear();
    match unscale {
        Some(s) => out.extend(g.iter().map(|&x| x / s)),
        None => out.extend_from_slice(g),
    }
    if let Some(n) = steps {
        for (x, &a) in out.iter_mut().zip(acc) {
            *x = (*x + a) / n;
        }
    }
}

fn squared_norm(x: &[f32]) -> f64 {
    rules::sum_squares_dispatch(x)
}

/// A piece of a parameter's update: its values, their gradient and their slots.
type Piece<'a> = (&'a mut [f32], &'a [f32], Vec<&'a mut [f32]>);

/// One rule step on one parameter: in pieces of at least [`Optimizer::MIN_PIECE`] values run by
/// `parallel` when the rule is element-wise, in one call otherwise. Pieces hold a multiple of 16
/// values (the last excepted), and each element sees the same operations either way.
#[allow(clippy::too_many_arguments)]
fn update_in_pieces(
    parallel: &dyn Parallel,
    rule: &Rule,
    coeffs: &rules::Coeffs,
    var: &mut [f32],
    g: &[f32],
    shape: &[usize],
    slots: &mut [Vec<f32>],
    wd: Option<(f32, f32)>,
) {
    let len = var.len();
    let pieces = if rule.is_elementwise() {
        (len / Optimizer::MIN_PIECE).clamp(1, parallel.threads().max(1))
    } else {
        1
    };
    if pieces <= 1 {
        let count = slots.len();
        let mut views: [&mut [f32]; rules::MAX_SLOTS] = Default::default();
        for (view, slot) in views.iter_mut().zip(slots.iter_mut()) {
            *view = slot;
        }
        rules::update(rule, coeffs, var, g, shape, &mut views[..count], wd);
        return;
    }
    let per = len.div_ceil(pieces).next_multiple_of(16);
    let mut piece_slots: Vec<Vec<&mut [f32]>> = (0..pieces).map(|_| Vec::new()).collect();
    for slot in slots.iter_mut() {
        for (i, chunk) in slot.chunks_mut(per).enumerate() {
            piece_slots[i].push(chunk);
        }
    }
    let work: Vec<Mutex<Piece<'_>>> = var
        .chunks_mut(per)
        .zip(g.chunks(per))
        .zip(piece_slots)
        .map(|((v, g), s)| Mutex::new((v, g, s)))
        .collect();
    parallel.run(work.len(), &|i| {
        let mut piece = work[i].lock().unwrap_or_else(PoisonError::into_inner);
        let (v, g, s) = &mut *piece;
        let shape = [v.len()];
        rules::update(rule, coeffs, v, g, &shape, s, wd);
    });
}

fn apply_clip(x: &mut [f32], clip: Clip) {
    match clip {
        Clip::None | Clip::Norm(_) => {}
        Clip::Value(v) => x.iter_mut().for_each(|g| *g = g.max(-v).min(v)),
        Clip::Scale(s) => x.iter_mut().for_each(|g| *g *= s),
    }
}
