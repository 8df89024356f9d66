//! The error type of gradus-optim.

/// Everything that can go wrong when building, stepping, inspecting or restoring an optimizer.
///
/// Every message names what was expected and what came. An error returned by a step leaves the
/// parameters and the optimizer state exactly as they were.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum OptimError {
    /// A hyperparameter is outside its valid range (or not finite).
    #[error("invalid hyperparameter `{name}`: expected {expected}, got {got}")]
    InvalidHyperparameter {
        /// Keras' name of the hyperparameter (`"beta_1"`, `"decay_steps"`, ...).
        name: &'static str,
        /// The valid range, in words.
        expected: &'static str,
        /// The value that was given.
        got: f64,
    },
    /// More than one of `clipnorm`, `clipvalue` and `global_clipnorm` was set.
    #[error(
        "at most one of clipnorm, clipvalue and global_clipnorm can be set, got {}",
        .set.join(" and ")
    )]
    ConflictingClipOptions {
        /// The options that were set.
        set: Vec<&'static str>,
    },
    /// A schedule was configured inconsistently (lengths, ordering).
    #[error("invalid schedule `{schedule}`: expected {expected}, got {got}")]
    InvalidSchedule {
        /// The schedule's Keras class name.
        schedule: &'static str,
        /// What the configuration must satisfy.
        expected: &'static str,
        /// What was given.
        got: String,
    },
    /// A weight-decay exclusion pattern is not a valid regular expression.
    #[error(
        "invalid exclude_from_weight_decay pattern `{pattern}`: expected a regular expression ({reason})"
    )]
    InvalidPattern {
        /// The pattern given.
        pattern: String,
        /// Why it does not parse.
        reason: String,
    },
    /// No optimizer has this Keras name.
    #[error("unknown optimizer `{name}`: expected one of {known}")]
    UnknownOptimizer {
        /// The name that was given.
        name: String,
        /// The names that are understood.
        known: &'static str,
    },
    /// A gradient's length does not match its parameter's shape.
    #[error(
        "gradient for parameter `{key}` has {got} values, expected {expected} (parameter shape {shape:?})"
    )]
    GradientLength {
        /// The parameter's key.
        key: String,
        /// The parameter's shape.
        shape: Vec<usize>,
        /// The number of values the shape holds.
        expected: usize,
        /// The number of gradient values given.
        got: usize,
    },
    /// A parameter exposes a value slice whose length differs from the product of its shape.
    #[error("parameter `{key}` has shape {shape:?} ({expected} values) but exposes {got} values")]
    ParamLength {
        /// The parameter's key.
        key: String,
        /// The shape it reports.
        shape: Vec<usize>,
        /// The number of values the shape holds.
        expected: usize,
        /// The number of values it exposes.
        got: usize,
    },
    /// The same parameter key appears twice in one step.
    #[error("parameter `{key}` appears more than once in one step; expected distinct keys")]
    DuplicateKey {
        /// The repeated key.
        key: String,
    },
    /// A known parameter key now comes with a different shape.
    #[error(
        "parameter `{key}` has shape {got:?}, but the optimizer state for it has shape {expected:?}"
    )]
    ShapeChanged {
        /// The parameter's key.
        key: String,
        /// The shape the optimizer state was created with.
        expected: Vec<usize>,
        /// The shape now given.
        got: Vec<usize>,
    },
    /// The learning rate in force for a step is negative or not finite.
    #[error("learning rate for step {step} must be finite and >= 0, got {got}")]
    InvalidLearningRate {
        /// The raw step count the learning rate was asked for.
        step: u64,
        /// The learning rate that came.
        got: f32,
    },
    /// The learning rate is a schedule or a closure and cannot be set to a constant.
    #[error("the learning rate is a {kind}; expected a constant learning rate to set it")]
    LearningRateNotSettable {
        /// What the learning rate is (`"schedule"`, `"custom schedule"`).
        kind: &'static str,
    },
    /// A custom (closure) learning rate cannot be written into a config.
    #[error(
        "a custom learning-rate schedule cannot be serialized; expected a constant or a built-in schedule"
    )]
    NotSerializable,
    /// `set_weights` got the wrong number of arrays.
    #[error("expected {expected} optimizer weights, got {got}")]
    WeightCount {
        /// The number of optimizer variables.
        expected: usize,
        /// The number of weights given.
        got: usize,
    },
    /// `set_weights` got an array with the wrong shape or length.
    #[error(
        "optimizer variable #{index} `{name}` has shape {expected:?}, got shape {got:?} with {len} values"
    )]
    WeightShape {
        /// Position in `variables()`.
        index: usize,
        /// The variable's name.
        name: String,
        /// The variable's shape.
        expected: Vec<usize>,
        /// The shape given.
        got: Vec<usize>,
        /// The number of values given.
        len: usize,
    },
    /// A value given for the `iteration` counter is not a non-negative integer.
    #[error("optimizer variable `iteration` must hold a non-negative integer, got {got}")]
    InvalidIteration {
        /// The value given.
        got: f32,
    },
    /// A parameter that the optimizer holds no state for was asked about.
    #[error("the optimizer holds no {what} for parameter `{key}`")]
    UnknownParameter {
        /// The parameter's key.
        key: String,
        /// The state that was looked for (`"moving average"`).
        what: &'static str,
    },
    /// A saved state does not fit this optimizer.
    #[error("saved optimizer state does not match: {what}: expected {expected}, got {got}")]
    StateMismatch {
        /// What differs.
        what: String,
        /// What this optimizer expects.
        expected: String,
        /// What the saved state holds.
        got: String,
    },
    /// JSON (de)serialization failed.
    #[error("JSON error: {0}")]
    Json(String),
}

impl From<serde_json::Error> for OptimError {
    fn from(e: serde_json::Error) -> Self {
        OptimError::Json(e.to_string())
    }
}

/// `Result` with [`OptimError`].
pub type Result<T, E = OptimError> = std::result::Result<T, E>;

/// Checks a hyperparameter: finite and inside `ok`, else [`OptimError::InvalidHyperparameter`].
pub(crate) fn check(
    name: &'static str,
    got: f64,
    expected: &'static str,
    ok: impl FnOnce(f64) -> bool,
) -> Result<()> {
    if got.is_finite() && ok(got) {
        Ok(())
    } else {
        Err(OptimError::InvalidHyperparameter {
            name,
            expected,
            got,
        })
    }
}
