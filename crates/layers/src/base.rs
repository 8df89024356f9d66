//! What every layer shares: its name, the shape it was built for, the first invalid argument its
//! builder was given, and small helpers for checking shapes and reading configs.

use gradus_autograd::{Tape, Var, Variable};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{LayerError, Result, invalid};
use crate::layer::LayerConfig;
use crate::regularizers::Regularizer;

/// The state shared by every layer.
#[derive(Debug, Clone)]
pub(crate) struct Base {
    /// The layer's name.
    pub name: String,
    /// The input shape (without the batch axis) the layer was built for.
    pub input_shape: Option<Vec<usize>>,
    /// The first invalid argument given to a builder method; reported by `build`.
    pub pending: Option<LayerError>,
}

impl Base {
    /// A base named `name`, not built.
    pub fn new(name: &str) -> Base {
        Base {
            name: name.to_string(),
            input_shape: None,
            pending: None,
        }
    }

    /// Resolves a builder argument given by value or by name; an error is kept for `build`.
    pub fn resolve<T, A>(&mut self, arg: A) -> Option<T>
    where
        A: TryInto<T>,
        A::Error: Into<LayerError>,
    {
        match arg.try_into() {
            Ok(v) => Some(v),
            Err(e) => {
                self.pending.get_or_insert(e.into());
                None
            }
        }
    }

    /// The value of a fallible builder argument; an error is kept for `build`.
    pub fn keep<T>(&mut self, arg: Result<T>) -> Option<T> {
        match arg {
            Ok(v) => Some(v),
            Err(e) => {
                self.pending.get_or_insert(e);
                None
            }
        }
    }

    /// The layer renamed, unless it is built or the name is not usable.
    pub fn set_name(&mut self, name: &str) -> Result<()> {
        if let Some(shape) = &self.input_shape {
            return Err(invalid(
                format!("layer {:?}", self.name),
                format!(
                    "cannot rename to {name:?}: already built for input shape {shape:?}, its \
                     variables carry the name; rename before build"
                ),
            ));
        }
        check_name(name)?;
        self.name = name.to_string();
        Ok(())
    }

    /// A builder's rename: errors are kept for `build`.
    pub fn rename(&mut self, name: &str) {
        if let Err(e) = self.set_name(name) {
            self.pending.get_or_insert(e);
        }
    }

    /// Fails with the first invalid builder argument, if any.
    pub fn check_pending(&self) -> Result<()> {
        match &self.pending {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// The built input shape, or [`LayerError::NotBuilt`].
    pub fn built(&self) -> Result<&[usize]> {
        self.input_shape
            .as_deref()
            .ok_or_else(|| LayerError::NotBuilt {
                layer: self.name.clone(),
            })
    }

    /// A variable of this layer named `"{layer}/{role}"`.
    pub fn var_name(&self, role: &str) -> String {
        format!("{}/{}", self.name, role)
    }

    /// An [`LayerError::InputShape`] for this layer.
    pub fn shape_error(&self, expected: impl Into<String>, got: &[usize]) -> LayerError {
        LayerError::InputShape {
            layer: self.name.clone(),
            expected: expected.into(),
            got: got.to_vec(),
        }
    }

    /// Checks that a batch `x` has the built input shape after its batch axis.
    pub fn check_batch(&self, x: &[usize]) -> Result<()> {
        let shape = self.built()?;
        if x.len() != shape.len() + 1 || &x[1..] != shape {
            return Err(self.shape_error(format!("[batch, {}]", dims(shape)), x));
        }
        Ok(())
    }

    /// The config of a layer: its serialized arguments with `"name"` added.
    pub fn config<T: Serialize>(&self, class: &str, args: &T) -> LayerConfig {
        let mut config = serde_json::to_value(args).expect("layer arguments are plain JSON");
        shortest_floats(&mut config);
        if let Value::Object(m) = &mut config {
            m.insert("name".into(), Value::String(self.name.clone()));
        }
        LayerConfig {
            class_name: class.to_string(),
            config,
        }
    }
}

/// Rewrites every non-integer number (all of which come from `f32` arguments) as the shortest
/// decimal that reads back as the same `f32`, so that `0.1f32` appears as `0.1` as in Keras'
/// configs rather than `0.10000000149011612`.
fn shortest_floats(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            let short = (n.as_f64().expect("a float") as f32).to_string();
            if let Some(m) = short
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
            {
                *n = m;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(shortest_floats),
        Value::Object(m) => m.values_mut().for_each(shortest_floats),
        _ => {}
    }
}

/// A shape's lengths joined by ", ".
pub(crate) fn dims(shape: &[usize]) -> String {
    shape
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks that `name` can name a layer (not empty, no `/`).
pub(crate) fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') {
        return Err(invalid(
            "layer name",
            format!("expected a non-empty name without '/', got {name:?}"),
        ));
    }
    Ok(())
}

/// Reads a layer's arguments and name from `config`.
pub(crate) fn read_config<T: DeserializeOwned>(
    class: &str,
    config: &Value,
) -> Result<(T, Option<String>)> {
    let args = serde_json::from_value(config.clone()).map_err(|e| LayerError::Config {
        class: class.to_string(),
        message: e.to_string(),
    })?;
    let name = config
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok((args, name))
}

/// The sum of the penalties `(regularizer, variable)` as one value in `tape`'s context.
pub(crate) fn sum_penalties<'t>(
    tape: Option<&'t Tape>,
    terms: &[(Option<Regularizer>, Option<&Variable>)],
) -> Result<Option<Var<'t>>> {
    let mut total: Option<Var<'t>> = None;
    for (reg, var) in terms {
        let (Some(reg), Some(var)) = (reg, var) else {
            continue;
        };
        let term = reg.loss(&Var::variable(tape, var))?;
        total = Some(match total {
            None => term,
            Some(t) => t.add(&term)?,
        });
    }
    Ok(total)
}

/// A positive `value` or an invalid-argument error for `what`.
pub(crate) fn positive(what: &str, value: usize) -> Result<usize> {
    if value == 0 {
        return Err(invalid(what, "expected a positive value, got 0"));
    }
    Ok(value)
}
