//! The layers.

/// Generates a builder setter of `self.args.<field>` (named as the field) that takes a value
/// or a name and resolves it through `self.base.resolve`, or `with_name`; the doc comments
/// pass through. Declared before the modules so that each of them sees it.
macro_rules! setter {
    ($(#[$doc:meta])* with_name) => {
        $(#[$doc])*
        pub fn with_name(mut self, name: &str) -> Self {
            self.base.rename(name);
            self
        }
    };
    ($(#[$doc:meta])* $name:ident: Option<$ty:ty>) => {
        $(#[$doc])*
        pub fn $name<A>(mut self, value: A) -> Self
        where
            A: TryInto<$ty>,
            A::Error: Into<$crate::error::LayerError>,
        {
            if let Some(v) = self.base.resolve(value) {
                self.args.$name = Some(v);
            }
            self
        }
    };
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name<A>(mut self, value: A) -> Self
        where
            A: TryInto<$ty>,
            A::Error: Into<$crate::error::LayerError>,
        {
            if let Some(v) = self.base.resolve(value) {
                self.args.$name = v;
            }
            self
        }
    };
}

mod conv;
mod core;
mod dense;
mod lstm;
mod normalization;
mod pooling;

pub use self::conv::Conv2D;
pub use self::core::{ActivationLayer, Dropout, Flatten, Input, Reshape};
pub use self::dense::Dense;
pub use self::lstm::LSTM;
pub use self::normalization::{BatchNormalization, Embedding};
pub use self::pooling::{AveragePooling2D, MaxPooling2D};

use crate::base::read_config;
use crate::error::{LayerError, Result};
use crate::layer::{Layer, LayerConfig};

/// Rebuilds a layer (not built, without weights) from its [`LayerConfig`], as Keras'
/// `layers.deserialize`. Arguments missing from the config take Keras' defaults.
///
/// ```
/// use gradus_layers::{LayerConfig, layer_from_config};
/// use serde_json::json;
///
/// let config = LayerConfig {
///     class_name: "Conv2D".into(),
///     config: json!({"filters": 8, "kernel_size": 3, "padding": "same", "name": "c1"}),
/// };
/// let layer = layer_from_config(&config)?;
/// assert_eq!(layer.name(), "c1");
/// assert_eq!(layer.output_shape(&[28, 28, 1])?, vec![28, 28, 8]);
/// # Ok::<(), gradus_layers::LayerError>(())
/// ```
///
/// # Errors
/// [`LayerError::UnknownName`] for an unknown class; [`LayerError::Config`] for arguments that
/// do not parse (naming the field); invalid names are reported as by the builders.
pub fn layer_from_config(config: &LayerConfig) -> Result<Box<dyn Layer>> {
    let class = config.class_name.as_str();
    let c = &config.config;
    macro_rules! read {
        ($ty:ty) => {{
            let (args, name) = read_config(class, c)?;
            <$ty>::from_args(args, name)
        }};
    }
    let layer: Box<dyn Layer> = match class {
        "Dense" => Box::new(read!(Dense)),
        "Conv2D" => Box::new(read!(Conv2D)),
        "MaxPooling2D" => Box::new(read!(MaxPooling2D)),
        "AveragePooling2D" => Box::new(read!(AveragePooling2D)),
        "LSTM" => Box::new(read!(LSTM)),
        "BatchNormalization" => Box::new(read!(BatchNormalization)),
        "Embedding" => Box::new(read!(Embedding)),
        "InputLayer" => Box::new(read!(Input)),
        "Activation" => Box::new(read!(ActivationLayer)),
        "Reshape" => Box::new(read!(Reshape)),
        "Dropout" => Box::new(read!(Dropout)),
        "Flatten" => {
            let mut f = Flatten::new();
            if let Some(n) = c.get("name").and_then(serde_json::Value::as_str) {
                f = f.with_name(n);
            }
            Box::new(f)
        }
        _ => {
            return Err(LayerError::UnknownName {
                kind: "layer class",
                name: class.to_string(),
                expected: "Dense, Conv2D, MaxPooling2D, AveragePooling2D, LSTM, \
                           BatchNormalization, Embedding, InputLayer, Activation, Reshape, \
                           Dropout, Flatten"
                    .to_string(),
            });
        }
    };
    Ok(layer)
}
