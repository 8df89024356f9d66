//! Learning-rate schedules, computed in `f32` exactly as Keras 3 computes them.
//!
//! A schedule maps the step count `s` (the number of `apply_gradients` calls made so far, 0 on
//! the first step) to a learning rate. The built-in schedules are plain structs with public
//! fields and Keras' defaults; [`LearningRateSchedule`] is also implemented for constants and for
//! closures `Fn(u64) -> f32`.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{OptimError, Result, check};

/// A learning rate as a function of the step count.
///
/// ```
/// use gradus_optim::schedules::LearningRateSchedule;
///
/// let halve_every_10 = |step: u64| 0.1 * 0.5_f32.powi((step / 10) as i32);
/// assert_eq!(halve_every_10.learning_rate(25), 0.025);
/// assert_eq!(0.01_f32.learning_rate(1000), 0.01);
/// ```
pub trait LearningRateSchedule: Send + Sync {
    /// The learning rate for step `step` (0 on the first step).
    fn learning_rate(&self, step: u64) -> f32;
}

impl<F: Fn(u64) -> f32 + Send + Sync> LearningRateSchedule for F {
    fn learning_rate(&self, step: u64) -> f32 {
        self(step)
    }
}

impl LearningRateSchedule for f32 {
    fn learning_rate(&self, _step: u64) -> f32 {
        *self
    }
}

fn positive(name: &'static str, v: f64) -> Result<()> {
    check(name, v, "a finite number > 0", |v| v > 0.0)
}

fn finite(name: &'static str, v: f64) -> Result<()> {
    check(name, v, "a finite number", |_| true)
}

/// `initial * decay_rate^(s / decay_steps)`, the exponent floored when `staircase`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExponentialDecay {
    /// The learning rate at step 0.
    pub initial_learning_rate: f64,
    /// Steps per decay period; must be > 0.
    pub decay_steps: f64,
    /// The factor per decay period.
    pub decay_rate: f64,
    /// Decay in whole periods.
    #[serde(default)]
    pub staircase: bool,
}

impl ExponentialDecay {
    /// Keras' `ExponentialDecay(initial_learning_rate, decay_steps, decay_rate)`.
    ///
    /// # Errors
    /// [`OptimError::InvalidHyperparameter`] when `decay_steps <= 0` or a value is not finite.
    pub fn new(initial_learning_rate: f64, decay_steps: f64, decay_rate: f64) -> Result<Self> {
        let s = ExponentialDecay {
            initial_learning_rate,
            decay_steps,
            decay_rate,
            staircase: false,
        };
        s.validate()?;
        Ok(s)
    }

    /// The same schedule, decaying in whole periods.
    pub fn staircase(mut self, staircase: bool) -> Self {
        self.staircase = staircase;
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    /// [`OptimError::InvalidHyperparameter`] when `decay_steps <= 0` or a value is not finite.
    pub fn validate(&self) -> Result<()> {
        finite("initial_learning_rate", self.initial_learning_rate)?;
        positive("decay_steps", self.decay_steps)?;
        finite("decay_rate", self.decay_rate)
    }
}

impl LearningRateSchedule for ExponentialDecay {
    fn learning_rate(&self, step: u64) -> f32 {
        let mut p = step as f32 / self.decay_steps as f32;
        if self.staircase {
            p = p.floor();
        }
        self.initial_learning_rate as f32 * (self.decay_rate as f32).powf(p)
    }
}

/// `values[0]` for `s <= boundaries[0]`, `values[i]` for `boundaries[i-1] < s <= boundaries[i]`,
/// the last value after the last boundary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PiecewiseConstantDecay {
    /// Strictly increasing step boundaries (compared as integers, as Keras casts them to the
    /// step's integer type).
    pub boundaries: Vec<f64>,
    /// One more value than boundaries.
    pub values: Vec<f64>,
}

impl PiecewiseConstantDecay {
    /// Keras' `PiecewiseConstantDecay(boundaries, values)`.
    ///
    /// # Errors
    /// [`OptimError::InvalidSchedule`] when `values.len() != boundaries.len() + 1`, there are no
    /// boundaries, or they are not strictly increasing; [`OptimError::InvalidHyperparameter`]
    /// when a number is not finite.
    pub fn new(boundaries: Vec<f64>, values: Vec<f64>) -> Result<Self> {
        let s = PiecewiseConstantDecay { boundaries, values };
        s.validate()?;
        Ok(s)
    }

    /// Checks the configuration (see [`PiecewiseConstantDecay::new`]).
    ///
    /// # Errors
    /// As [`PiecewiseConstantDecay::new`].
    pub fn validate(&self) -> Result<()> {
        const NAME: &str = "PiecewiseConstantDecay";
        if self.boundaries.is_empty() || self.values.len() != self.boundaries.len() + 1 {
            return Err(OptimError::InvalidSchedule {
                schedule: NAME,
                expected: "at least one boundary and exactly one more value than boundaries",
                got: format!(
                    "{} boundaries and {} values",
                    self.boundaries.len(),
                    self.values.len()
                ),
            });
        }
        for &b in &self.boundaries {
            finite("boundaries", b)?;
        }
        for &v in &self.values {
            finite("values", v)?;
        }
        if self.boundaries.windows(2).any(|w| w[0] >= w[1]) {
            return Err(OptimError::InvalidSchedule {
                schedule: NAME,
                expected: "strictly increasing boundaries",
                got: format!("{:?}", self.boundaries),
            });
        }
        Ok(())
    }
}

impl LearningRateSchedule for PiecewiseConstantDecay {
    fn learning_rate(&self, step: u64) -> f32 {
        let s = step as f64;
        let i = self.boundaries.iter().take_while(|b| s > b.trunc()).count();
        self.values[i] as f32
    }
}

/// `(initial - end) * (1 - s/D)^power + end` with `s = min(s, D)`, or with `cycle`
/// `D = decay_steps * max(1, ceil(s / decay_steps))`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolynomialDecay {
    /// The learning rate at step 0.
    pub initial_learning_rate: f64,
    /// Steps to reach `end_learning_rate`; must be > 0.
    pub decay_steps: f64,
    /// The final learning rate (Keras default `1e-4`).
    #[serde(default = "default_end_lr")]
    pub end_learning_rate: f64,
    /// The power of the polynomial (default 1).
    #[serde(default = "one")]
    pub power: f64,
    /// Restart the decay every `decay_steps` multiple.
    #[serde(default)]
    pub cycle: bool,
}

fn default_end_lr() -> f64 {
    1e-4
}
fn one() -> f64 {
    1.0
}

impl PolynomialDecay {
    /// Keras' `PolynomialDecay(initial_learning_rate, decay_steps)` with
    /// `end_learning_rate = 1e-4`, `power = 1`, `cycle = false`.
    ///
    /// # Errors
    /// [`OptimError::InvalidHyperparameter`] when `decay_steps <= 0` or a value is not finite.
    pub fn new(initial_learning_rate: f64, decay_steps: f64) -> Result<Self> {
        let s = PolynomialDecay {
            initial_learning_rate,
            decay_steps,
            end_learning_rate: default_end_lr(),
            power: 1.0,
            cycle: false,
        };
        s.validate()?;
        Ok(s)
    }

    /// Checks the configuration.
    ///
    /// # Errors
    /// [`OptimError::InvalidHyperparameter`] when `decay_steps <= 0` or a value is not finite.
    pub fn validate(&self) -> Result<()> {
        finite("initial_learning_rate", self.initial_learning_rate)?;
        positive("decay_steps", self.decay_steps)?;
        finite("end_learning_rate", self.end_learning_rate)?;
        finite("power", self.power)
    }
}

impl LearningRateSchedule for PolynomialDecay {
    fn learning_rate(&self, step: u64) -> f32 {
        let initial = self.initial_learning_rate as f32;
        let end = self.end_learning_rate as f32;
        let mut s = step as f32;
        let mut d = self.decay_steps as f32;
        if self.cycle {
            let multiplier = if s == 0.0 {
                1.0
            } else {
                (s / self.decay_steps as f32).ceil()
            };
            d *= multiplier;
        } else {
            s = s.min(d);
        }
        let p = s / d;
        (initial - end) * (1.0 - p).powf(self.power as f32) + end
    }
}

/// `initial / (1 + decay_rate * s / decay_steps)`, the quotient floored when `staircase`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InverseTimeDecay {
    /// The learning rate at step 0.
    pub initial_learning_rate: f64,
    /// Steps per decay period; must be > 0.
    pub decay_steps: f64,
    /// The decay rate.
    pub decay_rate: f64,
    /// Decay in whole periods.
    #[serde(default)]
    pub staircase: bool,
}

impl InverseTimeDecay {
    /// Keras' `InverseTimeDecay(initial_learning_rate, decay_steps, decay_rate)`.
    ///
    /// # Errors
    /// [`OptimError::InvalidHyperparameter`] when `decay_steps <= 0` or a value is not finite.
    pub fn new(initial_learning_rate: f64, decay_steps: f64, decay_rate: f64) -> Result<Self> {
        let s = InverseTimeDecay {
            initial_learning_rate,
            decay_steps,
            decay_rate,
            staircase: false,
        };
        s.validate()?;
        Ok(s)
    }

    /// The same schedule, decaying in whole periods.
    pub fn staircase(mut self, staircase: bool) -> Self {
        self.staircase = staircase;
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    /// [`OptimError::InvalidHyperparameter`] when `decay_steps <= 0` or a value is not finite.
    pub fn validate(&self) -> Result<()> {
        finite("initial_learning_rate", self.initial_learning_rate)?;
        positive("decay_steps", self.decay_steps)?;
        finite("decay_rate", self.decay_rate)
    }
}

impl LearningRateSchedule for InverseTimeDecay {
    fn learning_rate(&self, step: u64) -> f32 {
        let mut p = step as f32 / self.decay_steps as f32;
        if self.staircase {
            p = p.floor();
        }
        self.initial_learning_rate as f32 / (1.0 + self.decay_rate as f32 * p)
    }
}

/// Cosine decay with optional linear warmup:
/// `f(s, from) = from * ((1 - alpha) * 0.5 * (1 + cos(pi * s / decay_steps)) + alpha)`.
///
/// Without warmup: `f(min(s, decay_steps), initial)`. With a `warmup_target`: `s` is capped at
/// `decay_steps + warmup_steps`; below `warmup_steps` the rate goes linearly from `initial` to
/// the target, then `f(s - warmup_steps, warmup_target)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosineDecay {
    /// The learning rate at step 0.
    pub initial_learning_rate: f64,
    /// Steps of the cosine decay; must be > 0.
    pub decay_steps: f64,
    /// The final rate as a fraction of the decay's starting rate.
    #[serde(default)]
    pub alpha: f64,
    /// The rate reached at the end of the warmup; `None` disables warmup.
    #[serde(default)]
    pub warmup_target: Option<f64>,
    /// Steps of linear warmup.
    #[serde(default)]
    pub warmup_steps: f64,
}

impl CosineDecay {
    /// Keras' `CosineDecay(initial_learning_rate, decay_steps)` without warmup and `alpha = 0`.
    ///
    /// # Errors
    /// [`OptimError::InvalidHyperparameter`] when `decay_steps <= 0` or a value is not finite.
    pub fn new(initial_learning_rate: f64, decay_steps: f64) -> Result<Self> {
        let s = CosineDecay {
            initial_learning_rate,
            decay_steps,
            alpha: 0.0,
            warmup_target: None,
            warmup_steps: 0.0,
        };
        s.validate()?;
        Ok(s)
    }

    /// The same schedule with a linear warmup to `target` over `steps` steps.
    ///
    /// # Errors
    /// [`OptimError::InvalidHyperparameter`] when `steps < 0` or a value is not finite.
    pub fn warmup(mut self, target: f64, steps: f64) -> Result<Self> {
        self.warmup_target = Some(target);
        self.warmup_steps = steps;
        self.validate()?;
        Ok(self)
    }

    /// Checks the configuration.
    ///
    /// # Errors
    /// [`OptimError::InvalidHyperparameter`] when `decay_steps <= 0`, `warmup_steps < 0` or a
    /// value is not finite.
    pub fn validate(&self) -> Result<()> {
        finite("initial_learning_rate", self.initial_learning_rate)?;
        positive("decay_steps", self.decay_steps)?;
        finite("alpha", self.alpha)?;
        if let Some(t) = self.warmup_target {
            finite("warmup_target", t)?;
        }
        check(
            "warmup_steps",
            self.warmup_steps,
            "a finite number >= 0",
            |v| v >= 0.0,
        )
    }

    fn decay(&self, s: f32, d: f32, from: f32) -> f32 {
        let cosine = 0.5 * (1.0 + (std::f32::consts::PI * (s / d)).cos());
        let decayed = (1.0 - self.alpha) as f32 * cosine + self.alpha as f32;
        from * decayed
    }
}

impl LearningRateSchedule for CosineDecay {
    fn learning_rate(&self, step: u64) -> f32 {
        let initial = self.initial_learning_rate as f32;
        let d = self.decay_steps as f32;
        let s = step as f32;
        match self.warmup_target {
            None => self.decay(s.min(d), d, initial),
            Some(target) => {
                let target = target as f32;
                let w = self.warmup_steps as f32;
                let s = s.min(d + w);
                if s < w {
                    (target - initial) * (s / w) + initial
                } else {
                    self.decay(s - w, d, target)
                }
            }
        }
    }
}

/// Cosine decay with warm restarts (SGDR): period `i` lasts `first_decay_steps * t_mul^i` steps
/// and starts at `initial * m_mul^i`; within a period the rate is
/// `initial * ((1 - alpha) * 0.5 * m_mul^i * (1 + cos(pi * fraction)) + alpha)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosineDecayRestarts {
    /// The learning rate at step 0.
    pub initial_learning_rate: f64,
    /// Steps of the first period; must be > 0.
    pub first_decay_steps: f64,
    /// Growth factor of each period's length (default 2).
    #[serde(default = "two")]
    pub t_mul: f64,
    /// Factor of each period's starting rate (default 1).
    #[serde(default = "one")]
    pub m_mul: f64,
    /// The minimum rate as a fraction of `initial_learning_rate`.
    #[serde(default)]
    pub alpha: f64,
}

fn two() -> f64 {
    2.0
}

impl CosineDecayRestarts {
    /// Keras' `CosineDecayRestarts(initial_learning_rate, first_decay_steps)` with `t_mul = 2`,
    /// `m_mul = 1`, `alpha = 0`.
    ///
    /// # Errors
    /// [`OptimError::InvalidHyperparameter`] when `first_decay_steps <= 0` or a value is not
    /// finite.
    pub fn new(initial_learning_rate: f64, first_decay_steps: f64) -> Result<Self> {
        let s = CosineDecayRestarts {
            initial_learning_rate,
            first_decay_steps,
            t_mul: 2.0,
            m_mul: 1.0,
            alpha: 0.0,
        };
        s.validate()?;
        Ok(s)
    }

    /// Checks the configuration.
    ///
    /// # Errors
    /// [`OptimError::InvalidHyperparameter`] when `first_decay_steps <= 0`, `t_mul <= 0` or a
    /// value is not finite.
    pub fn validate(&self) -> Result<()> {
        finite("initial_learning_rate", self.initial_learning_rate)?;
        positive("first_decay_steps", self.first_decay_steps)?;
        positive("t_mul", self.t_mul)?;
        finite("m_mul", self.m_mul)?;
        finite("alpha", self.alpha)
    }
}

impl LearningRateSchedule for CosineDecayRestarts {
    fn learning_rate(&self, step: u64) -> f32 {
        let initial = self.initial_learning_rate as f32;
        let alpha = self.alpha as f32;
        let t_mul = self.t_mul as f32;
        let m_mul = self.m_mul as f32;
        let mut fraction = step as f32 / self.first_decay_steps as f32;
        let restart = if t_mul == 1.0 {
            let i = fraction.floor();
            fraction -= i;
            i
        } else {
            let i = ((1.0 - fraction * (1.0 - t_mul)).ln() / t_mul.ln()).floor();
            let done = (1.0 - t_mul.powf(i)) / (1.0 - t_mul);
            fraction = (fraction - done) / t_mul.powf(i);
            i
        };
        let cosine = 0.5 * m_mul.powf(restart) * (1.0 + (std::f32::consts::PI * fraction).cos());
        initial * ((1.0 - alpha) * cosine + alpha)
    }
}

/// One of the built-in schedules, as stored in a config (`{"class_name": ..., "config": ...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "class_name", content = "config")]
#[allow(missing_docs)]
pub enum Schedule {
    ExponentialDecay(ExponentialDecay),
    PiecewiseConstantDecay(PiecewiseConstantDecay),
    PolynomialDecay(PolynomialDecay),
    InverseTimeDecay(InverseTimeDecay),
    CosineDecay(CosineDecay),
    CosineDecayRestarts(CosineDecayRestarts),
}

impl Schedule {
    fn inner(&self) -> &dyn LearningRateSchedule {
        match self {
            Schedule::ExponentialDecay(s) => s,
            Schedule::PiecewiseConstantDecay(s) => s,
            Schedule::PolynomialDecay(s) => s,
            Schedule::InverseTimeDecay(s) => s,
            Schedule::CosineDecay(s) => s,
            Schedule::CosineDecayRestarts(s) => s,
        }
    }

    /// Checks the configuration of the wrapped schedule.
    ///
    /// # Errors
    /// As the wrapped schedule's `validate`.
    pub fn validate(&self) -> Result<()> {
        match self {
            Schedule::ExponentialDecay(s) => s.validate(),
            Schedule::PiecewiseConstantDecay(s) => s.validate(),
            Schedule::PolynomialDecay(s) => s.validate(),
            Schedule::InverseTimeDecay(s) => s.validate(),
            Schedule::CosineDecay(s) => s.validate(),
            Schedule::CosineDecayRestarts(s) => s.validate(),
        }
    }
}

impl LearningRateSchedule for Schedule {
    fn learning_rate(&self, step: u64) -> f32 {
        self.inner().learning_rate(step)
    }
}

macro_rules! into_schedule {
    ($($t:ident),*) => {$(
        impl From<$t> for Schedule {
            fn from(s: $t) -> Self { Schedule::$t(s) }
        }
        impl From<$t> for LearningRate {
            fn from(s: $t) -> Self { LearningRate::Schedule(Schedule::$t(s)) }
        }
    )*};
}
into_schedule!(
    ExponentialDecay,
    PiecewiseConstantDecay,
    PolynomialDecay,
    InverseTimeDecay,
    CosineDecay,
    CosineDecayRestarts
);

/// The learning rate of an optimizer: a constant (settable between steps), a built-in schedule,
/// or a custom schedule (a closure or any [`LearningRateSchedule`]; not serializable).
#[derive(Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LearningRate {
    /// A constant, stored as `f32` like Keras' `learning_rate` variable.
    Constant(f32),
    /// A built-in schedule, called with the count of steps made so far.
    Schedule(Schedule),
    /// A user schedule.
    #[serde(skip)]
    Custom(Arc<dyn LearningRateSchedule>),
}

impl LearningRate {
    /// A custom schedule from a closure or any [`LearningRateSchedule`].
    pub fn custom(schedule: impl LearningRateSchedule + 'static) -> Self {
        LearningRate::Custom(Arc::new(schedule))
    }

    /// The learning rate for step `step`.
    pub fn at(&self, step: u64) -> f32 {
        match self {
            LearningRate::Constant(v) => *v,
            LearningRate::Schedule(s) => s.learning_rate(step),
            LearningRate::Custom(s) => s.learning_rate(step),
        }
    }

    /// Checks a constant (finite, >= 0) or the schedule's configuration.
    ///
    /// # Errors
    /// [`OptimError::InvalidHyperparameter`] / [`OptimError::InvalidSchedule`].
    pub fn validate(&self) -> Result<()> {
        match self {
            LearningRate::Constant(v) => check(
                "learning_rate",
                f64::from(*v),
                "a finite number >= 0",
                |v| v >= 0.0,
            ),
            LearningRate::Schedule(s) => s.validate(),
            LearningRate::Custom(_) => Ok(()),
        }
    }
}

impl fmt::Debug for LearningRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LearningRate::Constant(v) => f.debug_tuple("Constant").field(v).finish(),
            LearningRate::Schedule(s) => f.debug_tuple("Schedule").field(s).finish(),
            LearningRate::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

impl PartialEq for LearningRate {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (LearningRate::Constant(a), LearningRate::Constant(b)) => a.to_bits() == b.to_bits(),
            (LearningRate::Schedule(a), LearningRate::Schedule(b)) => a == b,
            (LearningRate::Custom(a), LearningRate::Custom(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl From<f32> for LearningRate {
    fn from(v: f32) -> Self {
        LearningRate::Constant(v)
    }
}

impl From<f64> for LearningRate {
    fn from(v: f64) -> Self {
        LearningRate::Constant(v as f32)
    }
}

impl From<Schedule> for LearningRate {
    fn from(s: Schedule) -> Self {
        LearningRate::Schedule(s)
    }
}
