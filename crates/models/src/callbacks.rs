//! Callbacks: the [`Callback`] trait with Keras' hooks, the [`TrainContext`] they act through
//! (stop training, read and set the learning rate and the weights), and Keras' callbacks:
//! [`EarlyStopping`], [`ModelCheckpoint`], [`LearningRateScheduler`], [`ReduceLROnPlateau`],
//! [`CsvLogger`] and [`TerminateOnNaN`].

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use gradus_autograd::Variable;
use gradus_optim::Optimizer;
use gradus_tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ModelError, Result};
use crate::logs::Logs;

/// What a callback can see and change during `fit`: the optimizer (its learning rate), the
/// model's variables, and whether training should stop.
#[derive(Debug)]
pub struct TrainContext<'a> {
    optimizer: &'a mut Optimizer,
    variables: &'a [Variable],
    stop: bool,
}

impl<'a> TrainContext<'a> {
    /// A context over `optimizer` and `variables` (what `fit` hands its callbacks).
    pub fn new(optimizer: &'a mut Optimizer, variables: &'a [Variable]) -> TrainContext<'a> {
        TrainContext {
            optimizer,
            variables,
            stop: false,
        }
    }

    /// Asks `fit` to stop (Keras' `model.stop_training = True`): after this batch when called
    /// from a batch hook, after this epoch from an epoch hook.
    pub fn stop_training(&mut self) {
        self.stop = true;
    }

    /// Whether a callback asked to stop.
    pub fn stop_requested(&self) -> bool {
        self.stop
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &Optimizer {
        self.optimizer
    }

    /// The learning rate the next step uses.
    pub fn learning_rate(&self) -> f32 {
        self.optimizer.learning_rate()
    }

    /// Sets a constant learning rate.
    ///
    /// # Errors
    /// A negative or non-finite rate, or an optimizer driven by a schedule (as Keras).
    pub fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        Ok(self.optimizer.set_learning_rate(lr)?)
    }

    /// The model's variables (`model.weights`).
    pub fn variables(&self) -> &[Variable] {
        self.variables
    }

    /// The values of the model's variables.
    pub fn get_weights(&self) -> Vec<Tensor> {
        self.variables
            .iter()
            .map(|v| v.value().to_contiguous())
            .collect()
    }

    /// Sets the model's variables.
    ///
    /// # Errors
    /// A count or shape that does not fit; nothing changes then.
    pub fn set_weights(&self, weights: &[Tensor]) -> Result<()> {
        crate::saving::assign_all(self.variables, weights)
    }

    /// Saves the model's weights to a safetensors file (as
    /// [`Model::save_weights`](crate::Model::save_weights)).
    ///
    /// # Errors
    /// I/O errors.
    pub fn save_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::saving::write_weights(path.as_ref(), self.variables, None)
    }
}

/// A hook into `fit`, with Keras' callback methods; every method does nothing by default.
/// `epoch` and `batch` count from 0. Logs hold the running (batch hooks) or final (epoch hooks)
/// averages; `on_epoch_end` may add entries (the learning rate, say) that the history records.
pub trait Callback: fmt::Debug {
    /// Before the first epoch.
    ///
    /// # Errors
    /// An error stops `fit` and is returned by it.
    fn on_train_begin(&mut self, ctx: &mut TrainContext<'_>) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// After the last epoch, with the last epoch's logs.
    ///
    /// # Errors
    /// As [`on_train_begin`](Callback::on_train_begin).
    fn on_train_end(&mut self, logs: &Logs, ctx: &mut TrainContext<'_>) -> Result<()> {
        let _ = (logs, ctx);
        Ok(())
    }

    /// Before epoch `epoch`.
    ///
    /// # Errors
    /// As [`on_train_begin`](Callback::on_train_begin).
    fn on_epoch_begin(&mut self, epoch: usize, ctx: &mut TrainContext<'_>) -> Result<()> {
        let _ = (epoch, ctx);
        Ok(())
    }

    /// After epoch `epoch` (and its validation), with its logs.
    ///
    /// # Errors
    /// As [`on_train_begin`](Callback::on_train_begin).
    fn on_epoch_end(
        &mut self,
        epoch: usize,
        logs: &mut Logs,
        ctx: &mut TrainContext<'_>,
    ) -> Result<()> {
        let _ = (epoch, logs, ctx);
        Ok(())
    }

    /// Before training batch `batch` of the epoch.
    ///
    /// # Errors
    /// As [`on_train_begin`](Callback::on_train_begin).
    fn on_train_batch_begin(&mut self, batch: usize, ctx: &mut TrainContext<'_>) -> Result<()> {
        let _ = (batch, ctx);
        Ok(())
    }

    /// Whether a batch whose loss is NaN or infinite must not update the weights (false by
    /// default): `fit` then skips that batch's optimizer step, so that a callback stopping on
    /// it ([`TerminateOnNaN`]) leaves the last good weights.
    fn skips_non_finite_steps(&self) -> bool {
        false
    }

    /// After training batch `batch`, with the epoch's running averages.
    ///
    /// # Errors
    /// As [`on_train_begin`](Callback::on_train_begin).
    fn on_train_batch_end(
        &mut self,
        batch: usize,
        logs: &Logs,
        ctx: &mut TrainContext<'_>,
    ) -> Result<()> {
        let _ = (batch, logs, ctx);
        Ok(())
    }

    /// What the callback has learned during training (a best value, a wait counter, best
    /// weights), as JSON with a `"class"` entry naming the callback; `None` (the default) for
    /// callbacks without such state.
    ///
    /// `fit` records the states of its callbacks in the model when it ends, whole-model
    /// checkpoints carry them, and a later `fit` that resumes at that epoch
    /// (`initial_epoch: model.epoch()`) hands them back through
    /// [`set_state`](Callback::set_state) right after `on_train_begin`: a resumed run stops,
    /// reduces its learning rate and saves at the same epochs as an uninterrupted one. See
    /// [`Model::fit`](crate::Model::fit).
    fn state(&self) -> Option<Value> {
        None
    }

    /// Restores what [`state`](Callback::state) returned.
    ///
    /// # Errors
    /// [`ModelError::Mismatch`] for the state of another callback class, or a malformed one;
    /// the callback is unchanged then.
    fn set_state(&mut self, state: &Value) -> Result<()> {
        let _ = state;
        Ok(())
    }
}

/// The state of a callback of class `class`: `{"class": class, "state": state}`.
fn tagged<T: Serialize>(class: &str, state: &T) -> Value {
    let state = serde_json::to_value(state).expect("callback states are plain data");
    serde_json::json!({ "class": class, "state": state })
}

/// The state inside a value of [`tagged`], checked to be of class `class`.
fn untagged<T: for<'de> Deserialize<'de>>(class: &str, value: &Value) -> Result<T> {
    let got = value.get("class").and_then(Value::as_str);
    if got != Some(class) {
        return Err(ModelError::mismatch(
            format!("{class} state"),
            format!("a state of class {class:?}"),
            match got {
                Some(c) => format!("a state of class {c:?}"),
                None => format!("{value}"),
            },
        ));
    }
    let state = value.get("state").cloned().unwrap_or(Value::Null);
    serde_json::from_value(state).map_err(|e| {
        ModelError::mismatch(format!("{class} state"), "a state it saved", e.to_string())
    })
}

/// An `f32` as its bits, so that a state round-trips exactly (NaN and infinities included).
fn to_bits(x: Option<f32>) -> Option<u32> {
    x.map(f32::to_bits)
}

fn from_bits(x: Option<u32>) -> Option<f32> {
    x.map(f32::from_bits)
}

/// A tensor in a callback state: its shape and its values as the hexadecimal digits of their
/// little-endian bytes (exact, and half the size of decimal JSON numbers).
#[derive(Debug, Serialize, Deserialize)]
struct SavedTensor {
    shape: Vec<usize>,
    data: String,
}

impl SavedTensor {
    fn new(t: &Tensor) -> SavedTensor {
        let data = t
            .to_vec()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .map(|b| format!("{b:02x}"))
            .collect();
        SavedTensor {
            shape: t.shape().to_vec(),
            data,
        }
    }

    fn tensor(&self) -> Result<Tensor> {
        let bad = |got: String| {
            ModelError::mismatch(
                "saved tensor",
                format!(
                    "8 hexadecimal digits per value of a tensor of shape {:?}",
                    self.shape
                ),
                got,
            )
        };
        let len = self
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .filter(|&n| n.checked_mul(8) == Some(self.data.len()))
            .ok_or_else(|| bad(format!("{} digits", self.data.len())))?;
        let digits = self.data.as_bytes();
        let mut values = Vec::with_capacity(len);
        for chunk in digits.chunks_exact(8) {
            let mut bytes = [0u8; 4];
            for (b, pair) in bytes.iter_mut().zip(chunk.chunks_exact(2)) {
                let text = std::str::from_utf8(pair).map_err(|e| bad(e.to_string()))?;
                *b = u8::from_str_radix(text, 16).map_err(|_| bad(format!("{text:?}")))?;
            }
            values.push(f32::from_le_bytes(bytes));
        }
        Ok(Tensor::from_vec(values, &self.shape)?)
    }
}

/// Whether a monitored quantity improves by going down or up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// `max` for names containing `acc` or `auc`, `min` otherwise (Keras' `"auto"`).
    #[default]
    Auto,
    /// Lower is better.
    Min,
    /// Higher is better.
    Max,
}

impl Mode {
    /// Whether higher is better for `monitor`.
    fn maximizes(self, monitor: &str) -> bool {
        match self {
            Mode::Min => false,
            Mode::Max => true,
            Mode::Auto => monitor.contains("acc") || monitor.contains("auc"),
        }
    }
}

/// Stops training when a monitored quantity stops improving (Keras' `EarlyStopping`).
///
/// After each epoch from `start_from_epoch` on (counted from 0): an improvement is a change of
/// more than `min_delta` in the right direction over the best value so far. The wait counter
/// goes up by one each epoch and back to 0 on an improvement that also beats `baseline` (when
/// set); an epoch that does not improve, with the counter at `patience` or more, stops training
/// (never the first epoch). So with a baseline, training stops after `patience` epochs unless
/// the monitored value beats it. With `restore_best_weights`, the weights of the best epoch are
/// put back at the end of training.
///
/// Its state (best value, best epoch, wait counter, best weights) is saved with the model
/// ([`Callback::state`]), so that a resumed run stops at the same epoch as an uninterrupted one.
///
/// ```
/// use gradus_models::EarlyStopping;
///
/// let stop = EarlyStopping::new("val_loss").patience(3).baseline(0.5).start_from_epoch(2);
/// assert_eq!((stop.patience, stop.baseline, stop.start_from_epoch), (3, Some(0.5), 2));
/// ```
#[derive(Debug, Clone)]
pub struct EarlyStopping {
    /// The log entry watched (`"val_loss"`).
    pub monitor: String,
    /// The least change that counts as an improvement (0).
    pub min_delta: f32,
    /// Epochs without improvement before stopping (0).
    pub patience: usize,
    /// Whether lower or higher is better (auto).
    pub mode: Mode,
    /// A value to beat (none): an improvement resets the wait counter only when it also beats
    /// the baseline (by more than `min_delta`).
    pub baseline: Option<f32>,
    /// Epochs (from 0) not watched at all, a warm-up where no improvement is expected (0).
    pub start_from_epoch: usize,
    /// Put the best epoch's weights back at the end of training (false).
    pub restore_best_weights: bool,
    /// The epoch training stopped at (0 when it did not stop early).
    pub stopped_epoch: usize,
    /// The best epoch so far.
    pub best_epoch: usize,
    best: Option<f32>,
    wait: usize,
    best_weights: Option<Vec<Tensor>>,
}

/// What [`EarlyStopping`] has learned, as saved.
#[derive(Debug, Serialize, Deserialize)]
struct EarlyStoppingState {
    best: Option<u32>,
    wait: usize,
    best_epoch: usize,
    stopped_epoch: usize,
    best_weights: Option<Vec<SavedTensor>>,
}

impl EarlyStopping {
    /// Watches `monitor` with Keras' defaults (patience 0, min_delta 0, mode auto, no
    /// baseline, start from epoch 0).
    pub fn new(monitor: &str) -> EarlyStopping {
        EarlyStopping {
            monitor: monitor.to_string(),
            min_delta: 0.0,
            patience: 0,
            mode: Mode::Auto,
            baseline: None,
            start_from_epoch: 0,
            restore_best_weights: false,
            stopped_epoch: 0,
            best_epoch: 0,
            best: None,
            wait: 0,
            best_weights: None,
        }
    }

    /// Sets the patience.
    pub fn patience(mut self, patience: usize) -> Self {
        self.patience = patience;
        self
    }

    /// Sets the least change that counts as an improvement.
    pub fn min_delta(mut self, min_delta: f32) -> Self {
        self.min_delta = min_delta.abs();
        self
    }

    /// Sets the mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the baseline: the value an improvement must beat to reset the wait counter.
    pub fn baseline(mut self, baseline: f32) -> Self {
        self.baseline = Some(baseline);
        self
    }

    /// Sets the number of warm-up epochs (from 0) that are not watched.
    pub fn start_from_epoch(mut self, epochs: usize) -> Self {
        self.start_from_epoch = epochs;
        self
    }

    /// Restores the best epoch's weights at the end of training.
    pub fn restore_best_weights(mut self, restore: bool) -> Self {
        self.restore_best_weights = restore;
        self
    }

    /// The best value seen.
    pub fn best(&self) -> Option<f32> {
        self.best
    }

    /// The wait counter: epochs watched since the last improvement that reset it.
    pub fn wait(&self) -> usize {
        self.wait
    }

    /// Whether `current` improves on `reference` by more than `min_delta` (always, without a
    /// reference).
    fn improves_on(&self, current: f32, reference: Option<f32>) -> bool {
        match reference {
            None => true,
            Some(r) if self.mode.maximizes(&self.monitor) => current - self.min_delta > r,
            Some(r) => current + self.min_delta < r,
        }
    }
}

/// The value of `monitor` in `logs`, or an error listing the entries there are.
fn monitored(monitor: &str, logs: &Logs) -> Option<f32> {
    logs.get(monitor)
}

impl Callback for EarlyStopping {
    fn on_train_begin(&mut self, _ctx: &mut TrainContext<'_>) -> Result<()> {
        self.best = None;
        self.wait = 0;
        self.stopped_epoch = 0;
        self.best_epoch = 0;
        self.best_weights = None;
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        epoch: usize,
        logs: &mut Logs,
        ctx: &mut TrainContext<'_>,
    ) -> Result<()> {
        // Keras warns and goes on when the entry is missing (a non-validation epoch).
        let Some(current) = monitored(&self.monitor, logs) else {
            return Ok(());
        };
        if epoch < self.start_from_epoch {
            return Ok(());
        }
        if self.restore_best_weights && self.best_weights.is_none() {
            // The first epoch watched is the best until one improves on it.
            self.best_weights = Some(ctx.get_weights());
            self.best_epoch = epoch;
        }
        self.wait += 1;
        if self.improves_on(current, self.best) {
            self.best = Some(current);
            self.best_epoch = epoch;
            if self.restore_best_weights {
                self.best_weights = Some(ctx.get_weights());
            }
            if self.baseline.is_none() || self.improves_on(current, self.baseline) {
                self.wait = 0;
            }
            return Ok(());
        }
        if self.wait >= self.patience && epoch > 0 {
            self.stopped_epoch = epoch;
            ctx.stop_training();
        }
        Ok(())
    }

    fn on_train_end(&mut self, _logs: &Logs, ctx: &mut TrainContext<'_>) -> Result<()> {
        if self.restore_best_weights
            && let Some(w) = &self.best_weights
        {
            ctx.set_weights(w)?;
        }
        Ok(())
    }

    fn state(&self) -> Option<Value> {
        let state = EarlyStoppingState {
            best: to_bits(self.best),
            wait: self.wait,
            best_epoch: self.best_epoch,
            stopped_epoch: self.stopped_epoch,
            best_weights: self
                .best_weights
                .as_ref()
                .map(|ws| ws.iter().map(SavedTensor::new).collect()),
        };
        Some(tagged("EarlyStopping", &state))
    }

    fn set_state(&mut self, state: &Value) -> Result<()> {
        let s: EarlyStoppingState = untagged("EarlyStopping", state)?;
        let best_weights = match &s.best_weights {
            Some(ws) => Some(ws.iter().map(SavedTensor::tensor).collect::<Result<_>>()?),
            None => None,
        };
        self.best = from_bits(s.best);
        self.wait = s.wait;
        self.best_epoch = s.best_epoch;
        self.stopped_epoch = s.stopped_epoch;
        self.best_weights = best_weights;
        Ok(())
    }
}

/// Saves the model's weights (safetensors) after epochs (Keras' `ModelCheckpoint` with
/// `save_weights_only=True`). `{epoch}` in the path is replaced by the 1-based epoch number.
/// With `save_best_only`, only epochs that improve `monitor` are saved.
#[derive(Debug, Clone)]
pub struct ModelCheckpoint {
    /// Where to save; `{epoch}` is replaced by the epoch (1-based).
    pub filepath: PathBuf,
    /// The log entry watched (`"val_loss"`).
    pub monitor: String,
    /// Save only when `monitor` improves (false).
    pub save_best_only: bool,
    /// Whether lower or higher is better (auto).
    pub mode: Mode,
    /// The best value seen.
    pub best: Option<f32>,
    /// The files written, in order.
    pub saved: Vec<PathBuf>,
}

impl ModelCheckpoint {
    /// Saves to `filepath` after every epoch.
    pub fn new(filepath: impl Into<PathBuf>) -> ModelCheckpoint {
        ModelCheckpoint {
            filepath: filepath.into(),
            monitor: "val_loss".into(),
            save_best_only: false,
            mode: Mode::Auto,
            best: None,
            saved: Vec::new(),
        }
    }

    /// Sets the log entry watched.
    pub fn monitor(mut self, monitor: &str) -> Self {
        self.monitor = monitor.to_string();
        self
    }

    /// Saves only improvements of `monitor`.
    pub fn save_best_only(mut self, yes: bool) -> Self {
        self.save_best_only = yes;
        self
    }

    /// Sets the mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }
}

impl Callback for ModelCheckpoint {
    fn on_epoch_end(
        &mut self,
        epoch: usize,
        logs: &mut Logs,
        ctx: &mut TrainContext<'_>,
    ) -> Result<()> {
        if self.save_best_only {
            let Some(current) = monitored(&self.monitor, logs) else {
                return Ok(());
            };
            let better = match self.best {
                None => true,
                Some(b) if self.mode.maximizes(&self.monitor) => current > b,
                Some(b) => current < b,
            };
            if !better {
                return Ok(());
            }
            self.best = Some(current);
        }
        let path = self
            .filepath
            .to_string_lossy()
            .replace("{epoch}", &(epoch + 1).to_string());
        ctx.save_weights(&path)?;
        self.saved.push(PathBuf::from(path));
        Ok(())
    }

    fn state(&self) -> Option<Value> {
        Some(tagged("ModelCheckpoint", &to_bits(self.best)))
    }

    fn set_state(&mut self, state: &Value) -> Result<()> {
        self.best = from_bits(untagged("ModelCheckpoint", state)?);
        Ok(())
    }
}

/// Sets the learning rate before each epoch from a function of the epoch (0-based) and the
/// current rate (Keras' `LearningRateScheduler`); logs it as `learning_rate`.
pub struct LearningRateScheduler {
    schedule: Box<dyn FnMut(usize, f32) -> f32>,
}

impl LearningRateScheduler {
    /// A scheduler calling `schedule(epoch, lr)`.
    pub fn new(schedule: impl FnMut(usize, f32) -> f32 + 'static) -> LearningRateScheduler {
        LearningRateScheduler {
            schedule: Box::new(schedule),
        }
    }
}

impl fmt::Debug for LearningRateScheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LearningRateScheduler")
    }
}

impl Callback for LearningRateScheduler {
    fn on_epoch_begin(&mut self, epoch: usize, ctx: &mut TrainContext<'_>) -> Result<()> {
        let lr = (self.schedule)(epoch, ctx.learning_rate());
        if !lr.is_finite() {
            return Err(ModelError::invalid(
                "LearningRateScheduler",
                "a finite learning rate from the schedule",
                lr,
            ));
        }
        ctx.set_learning_rate(lr)
    }

    fn on_epoch_end(
        &mut self,
        _epoch: usize,
        logs: &mut Logs,
        ctx: &mut TrainContext<'_>,
    ) -> Result<()> {
        logs.insert("learning_rate", ctx.learning_rate());
        Ok(())
    }
}

/// Multiplies the learning rate by `factor` when `monitor` has not improved for `patience`
/// epochs (Keras' `ReduceLROnPlateau`), then waits `cooldown` epochs; never below `min_lr`.
/// Logs the learning rate as `learning_rate`.
#[derive(Debug, Clone)]
pub struct ReduceLROnPlateau {
    /// The log entry watched (`"val_loss"`).
    pub monitor: String,
    /// The factor applied (0.1).
    pub factor: f32,
    /// Epochs without improvement before reducing (10).
    pub patience: usize,
    /// Whether lower or higher is better (auto).
    pub mode: Mode,
    /// The least change that counts as an improvement (1e-4).
    pub min_delta: f32,
    /// Epochs to wait after a reduction (0).
    pub cooldown: usize,
    /// The lower bound of the learning rate (0).
    pub min_lr: f32,
    best: Option<f32>,
    wait: usize,
    cooldown_counter: usize,
}

impl ReduceLROnPlateau {
    /// Watches `monitor` with Keras' defaults.
    pub fn new(monitor: &str) -> ReduceLROnPlateau {
        ReduceLROnPlateau {
            monitor: monitor.to_string(),
            factor: 0.1,
            patience: 10,
            mode: Mode::Auto,
            min_delta: 1e-4,
            cooldown: 0,
            min_lr: 0.0,
            best: None,
            wait: 0,
            cooldown_counter: 0,
        }
    }

    /// Sets the factor (in `(0, 1)`).
    pub fn factor(mut self, factor: f32) -> Self {
        self.factor = factor;
        self
    }

    /// Sets the patience.
    pub fn patience(mut self, patience: usize) -> Self {
        self.patience = patience;
        self
    }

    /// Sets the cooldown.
    pub fn cooldown(mut self, cooldown: usize) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// Sets the least learning rate.
    pub fn min_lr(mut self, min_lr: f32) -> Self {
        self.min_lr = min_lr;
        self
    }

    /// Sets the least change that counts as an improvement.
    pub fn min_delta(mut self, min_delta: f32) -> Self {
        self.min_delta = min_delta;
        self
    }
}

impl Callback for ReduceLROnPlateau {
    fn on_train_begin(&mut self, _ctx: &mut TrainContext<'_>) -> Result<()> {
        if !(self.factor > 0.0 && self.factor < 1.0) {
            return Err(ModelError::invalid(
                "ReduceLROnPlateau.factor",
                "a factor in (0, 1)",
                self.factor,
            ));
        }
        self.best = None;
        self.wait = 0;
        self.cooldown_counter = 0;
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        _epoch: usize,
        logs: &mut Logs,
        ctx: &mut TrainContext<'_>,
    ) -> Result<()> {
        logs.insert("learning_rate", ctx.learning_rate());
        let Some(current) = monitored(&self.monitor, logs) else {
            return Ok(());
        };
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.wait = 0;
        }
        let improved = match self.best {
            None => true,
            Some(b) if self.mode.maximizes(&self.monitor) => current > b + self.min_delta,
            Some(b) => current < b - self.min_delta,
        };
        if improved {
            self.best = Some(current);
            self.wait = 0;
        } else if self.cooldown_counter == 0 {
            self.wait += 1;
            if self.wait >= self.patience {
                let old = ctx.learning_rate();
                if old > self.min_lr {
                    ctx.set_learning_rate((old * self.factor).max(self.min_lr))?;
                    self.cooldown_counter = self.cooldown;
                    self.wait = 0;
                }
            }
        }
        Ok(())
    }

    fn state(&self) -> Option<Value> {
        let state = PlateauState {
            best: to_bits(self.best),
            wait: self.wait,
            cooldown_counter: self.cooldown_counter,
        };
        Some(tagged("ReduceLROnPlateau", &state))
    }

    fn set_state(&mut self, state: &Value) -> Result<()> {
        let s: PlateauState = untagged("ReduceLROnPlateau", state)?;
        self.best = from_bits(s.best);
        self.wait = s.wait;
        self.cooldown_counter = s.cooldown_counter;
        Ok(())
    }
}

/// What [`ReduceLROnPlateau`] has learned, as saved.
#[derive(Debug, Serialize, Deserialize)]
struct PlateauState {
    best: Option<u32>,
    wait: usize,
    cooldown_counter: usize,
}

/// Writes each epoch's logs as a CSV row (Keras' `CSVLogger`): a header `epoch,` then the log
/// names of the first epoch in sorted order; `NA` for an entry an epoch did not report.
#[derive(Debug)]
pub struct CsvLogger {
    path: PathBuf,
    separator: char,
    append: bool,
    keys: Option<Vec<String>>,
    file: Option<File>,
}

impl CsvLogger {
    /// Logs to `path` (truncated at the start of training).
    pub fn new(path: impl Into<PathBuf>) -> CsvLogger {
        CsvLogger {
            path: path.into(),
            separator: ',',
            append: false,
            keys: None,
            file: None,
        }
    }

    /// Appends to an existing file instead of truncating it (no second header).
    pub fn append(mut self, append: bool) -> Self {
        self.append = append;
        self
    }

    /// Sets the separator (`,`).
    pub fn separator(mut self, separator: char) -> Self {
        self.separator = separator;
        self
    }

    fn io(&self, source: std::io::Error) -> ModelError {
        ModelError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }
}

impl Callback for CsvLogger {
    fn on_train_begin(&mut self, _ctx: &mut TrainContext<'_>) -> Result<()> {
        let has_header = self.append && std::fs::metadata(&self.path).is_ok_and(|m| m.len() > 0);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(self.append)
            .truncate(!self.append)
            .open(&self.path)
            .map_err(|e| self.io(e))?;
        self.file = Some(file);
        self.keys = if has_header { Some(Vec::new()) } else { None };
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        epoch: usize,
        logs: &mut Logs,
        _ctx: &mut TrainContext<'_>,
    ) -> Result<()> {
        let sep = self.separator.to_string();
        let mut text = String::new();
        if self.keys.as_ref().is_none_or(Vec::is_empty) {
            let mut keys: Vec<String> = logs.iter().map(|(k, _)| k.to_string()).collect();
            keys.sort();
            // As Keras: with validation_freq > 1 the first epoch has no `val_` entries, so the
            // columns get them up front (rows without validation write NA there).
            if !keys.iter().any(|k| k.starts_with("val_")) {
                let val: Vec<String> = keys.iter().map(|k| format!("val_{k}")).collect();
                keys.extend(val);
            }
            if self.keys.is_none() {
                text.push_str(&format!("epoch{sep}{}\n", keys.join(&sep)));
            }
            self.keys = Some(keys);
        }
        let keys = self.keys.as_ref().expect("set above");
        let row: Vec<String> = keys
            .iter()
            .map(|k| {
                logs.get(k)
                    .map_or_else(|| "NA".to_string(), |v| v.to_string())
            })
            .collect();
        text.push_str(&format!("{epoch}{sep}{}\n", row.join(&sep)));
        let result = match self.file.as_mut() {
            Some(f) => f.write_all(text.as_bytes()).and_then(|()| f.flush()),
            None => Ok(()),
        };
        result.map_err(|e| self.io(e))
    }

    fn on_train_end(&mut self, _logs: &Logs, _ctx: &mut TrainContext<'_>) -> Result<()> {
        self.file = None;
        Ok(())
    }
}

/// Stops training as soon as a batch's loss is NaN or infinite (Keras' `TerminateOnNaN`), with
/// the last good weights: the optimizer step of that batch is skipped (Keras applies it, and
/// leaves NaN weights). `fit` returns `Ok` with the epoch's logs so far.
#[derive(Debug, Clone, Default)]
pub struct TerminateOnNaN {
    /// The batch that stopped training, if one did.
    pub terminated_at: Option<usize>,
}

impl TerminateOnNaN {
    /// The callback.
    pub fn new() -> TerminateOnNaN {
        TerminateOnNaN::default()
    }
}

impl Callback for TerminateOnNaN {
    fn skips_non_finite_steps(&self) -> bool {
        true
    }

    fn on_train_batch_end(
        &mut self,
        batch: usize,
        logs: &Logs,
        ctx: &mut TrainContext<'_>,
    ) -> Result<()> {
        if logs.get("loss").is_some_and(|l| !l.is_finite()) {
            println!("Batch {batch}: Invalid loss, terminating training");
            self.terminated_at = Some(batch);
            ctx.stop_training();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(shape: &[usize], data: &str) -> SavedTensor {
        SavedTensor {
            shape: shape.to_vec(),
            data: data.to_string(),
        }
    }

    #[test]
    fn saved_tensors_round_trip_bit_for_bit() {
        let values = vec![
            1.5,
            -0.0,
            f32::NAN,
            f32::INFINITY,
            f32::MIN_POSITIVE / 2.0,
            3.0,
        ];
        let t = Tensor::from_vec(values.clone(), &[2, 3]).unwrap();
        let s = SavedTensor::new(&t);
        assert_eq!(s.data.len(), 48);
        assert_eq!(&s.data[..8], "0000c03f", "1.5 little-endian");
        let back = s.tensor().unwrap();
        assert_eq!(back.shape(), &[2, 3]);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back.to_vec()), bits(&values));
    }

    #[test]
    fn hostile_saved_tensors_are_refused_without_allocating() {
        // A shape of 2^80 values, with 8 digits: refused before anything is allocated.
        let e = saved(&[1 << 40, 1 << 40], "0000803f").tensor().unwrap_err();
        assert!(matches!(e, ModelError::Mismatch { .. }), "{e:?}");
        assert!(
            e.to_string().contains("[1099511627776, 1099511627776]"),
            "{e}"
        );
        // A shape that fits but more values than digits.
        assert!(saved(&[1 << 40], "0000803f").tensor().is_err());
        // Digits that are not hexadecimal, or not ASCII (a character split by the pairs).
        let e = saved(&[1], "0000x03f").tensor().unwrap_err();
        assert!(e.to_string().contains("\"x0\""), "{e}");
        assert!(saved(&[1], "é000803").tensor().is_err());
        assert!(saved(&[1], "0é00803").tensor().is_err());
        assert!(saved(&[2], "0000803f").tensor().is_err());
    }
}
