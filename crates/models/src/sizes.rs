//! How many weights a layer creates when it is built, computed from its configuration and
//! input shape alone, so that a checkpoint asking for huge layers is refused before anything
//! is allocated.

use gradus_layers::LayerConfig;
use serde_json::Value;

/// The number of weights a layer of configuration `config` creates when built for inputs of
/// `input_shape` (without the batch axis), for the layer classes of gradus-layers:
///
/// - `Dense`: `d * units + units` (`d` the last input axis; no `units` term without bias);
/// - `Conv2D`: `kh * kw * c * filters + filters` (`c` the input channels);
/// - `LSTM`: `f * 4u + u * 4u + 4u` (`f` the features, `u` the units);
/// - `BatchNormalization`: `(2 + center + scale) * c` (`c` the size of the feature axis);
/// - `Embedding`: `input_dim * output_dim`;
/// - pooling, `InputLayer`, `Activation`, `Reshape`, `Dropout`, `Flatten`: 0.
///
/// Counts saturate at `u128::MAX`; an input shape the layer cannot take counts 0 (its build
/// fails without allocating). `None` for a class it does not know (a custom layer).
pub(crate) fn planned_params(config: &LayerConfig, input_shape: &[usize]) -> Option<u128> {
    let c = &config.config;
    let n = |key: &str| c.get(key).and_then(Value::as_u64).map_or(0, u128::from);
    let flag = |key: &str| c.get(key).and_then(Value::as_bool).unwrap_or(true);
    let bias = |units: u128| if flag("use_bias") { units } else { 0 };
    let dim = |i: usize| input_shape.get(i).map_or(0, |&d| d as u128);
    let count = match config.class_name.as_str() {
        "Dense" => {
            let units = n("units");
            let d = input_shape.last().map_or(0, |&d| d as u128);
            d.saturating_mul(units).saturating_add(bias(units))
        }
        "Conv2D" => {
            if input_shape.len() != 3 {
                return Some(0);
            }
            let filters = n("filters");
            let window = match c.get("kernel_size") {
                Some(Value::Array(hw)) => hw
                    .iter()
                    .map(|v| v.as_u64().map_or(0, u128::from))
                    .fold(1u128, u128::saturating_mul),
                Some(v) => v
                    .as_u64()
                    .map_or(0, |k| u128::from(k).saturating_mul(k.into())),
                None => 0,
            };
            window
                .saturating_mul(dim(2))
                .saturating_mul(filters)
                .saturating_add(bias(filters))
        }
        "LSTM" => {
            if input_shape.len() != 2 {
                return Some(0);
            }
            let gates = n("units").saturating_mul(4);
            dim(1)
                .saturating_add(n("units"))
                .saturating_mul(gates)
                .saturating_add(bias(gates))
        }
        "BatchNormalization" => {
            let axis = c.get("axis").and_then(Value::as_i64).unwrap_or(-1);
            let rank = input_shape.len() as i64;
            let axis = if axis < 0 { axis + rank } else { axis - 1 };
            let features = usize::try_from(axis).map_or(0, dim);
            let vectors = 2 + u128::from(flag("center")) + u128::from(flag("scale"));
            vectors.saturating_mul(features)
        }
        "Embedding" => n("input_dim").saturating_mul(n("output_dim")),
        "MaxPooling2D" | "AveragePooling2D" | "InputLayer" | "Activation" | "Reshape"
        | "Dropout" | "Flatten" => 0,
        _ => return None,
    };
    Some(count)
}

/// Whether the shapes a layer of configuration `config` names fit in 64 bits: a `Reshape`'s
/// target shape, whose element count its `output_shape` computes without an overflow check.
pub(crate) fn named_shapes_fit(config: &LayerConfig) -> bool {
    if config.class_name != "Reshape" {
        return true;
    }
    let dims = config.config.get("target_shape").and_then(Value::as_array);
    dims.is_none_or(|dims| {
        dims.iter()
            .filter_map(Value::as_u64)
            .try_fold(1usize, |n, d| n.checked_mul(usize::try_from(d).ok()?))
            .is_some()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradus_layers::{
        BatchNormalization, Conv2D, Dense, Embedding, LSTM, Layer, LayerExt, MaxPooling2D,
    };
    use gradus_tensor::Rng;

    /// The plan of `layer` for `shape` is the count of the weights its build creates.
    fn agrees(mut layer: impl Layer, shape: &[usize]) {
        let planned = planned_params(&layer.config(), shape);
        layer.build(shape, &mut Rng::seed_from_u64(0)).unwrap();
        assert_eq!(
            planned,
            Some(layer.count_params() as u128),
            "{} for {shape:?}",
            layer.class_name()
        );
    }

    #[test]
    fn plans_agree_with_builds() {
        agrees(Dense::new(7), &[5]);
        agrees(Dense::new(7).use_bias(false), &[3, 5]);
        agrees(Conv2D::new(4, 3), &[9, 9, 2]);
        agrees(Conv2D::new(4, (2, 3)).use_bias(false), &[9, 9, 5]);
        agrees(LSTM::new(6), &[4, 3]);
        agrees(LSTM::new(2).use_bias(false), &[4, 5]);
        agrees(BatchNormalization::new(), &[5]);
        agrees(BatchNormalization::new().axis(1).center(false), &[3, 4]);
        agrees(BatchNormalization::new().scale(false), &[2, 2, 6]);
        agrees(Embedding::new(11, 4), &[3]);
        agrees(MaxPooling2D::new(2), &[4, 4, 3]);
    }

    #[test]
    fn huge_configurations_saturate_instead_of_overflowing() {
        let dense = Dense::new(usize::MAX);
        let max = usize::MAX as u128;
        assert_eq!(
            planned_params(&dense.config(), &[usize::MAX]),
            Some(max * max + max)
        );
        let conv = Conv2D::new(usize::MAX, usize::MAX);
        assert_eq!(
            planned_params(&conv.config(), &[1, 1, usize::MAX]),
            Some(u128::MAX)
        );
    }

    #[test]
    fn reshape_targets_must_fit() {
        use gradus_layers::Reshape;
        assert!(named_shapes_fit(&Reshape::new(&[-1, 4]).config()));
        assert!(!named_shapes_fit(
            &Reshape::new(&[1 << 40, 1 << 40]).config()
        ));
        assert!(named_shapes_fit(&Dense::new(usize::MAX).config()));
    }

    #[test]
    fn custom_classes_are_unknown() {
        let config = LayerConfig {
            class_name: "MyLayer".into(),
            config: serde_json::json!({"units": 3}),
        };
        assert_eq!(planned_params(&config, &[4]), None);
    }
}
