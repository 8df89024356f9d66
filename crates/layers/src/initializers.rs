//! Weight initializers by name and as values, all drawing from a seeded [`Rng`].

use std::fmt;
use std::str::FromStr;

use gradus_tensor::{Rng, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::{LayerError, Result, invalid};

/// Which fan a [`Initializer::VarianceScaling`] divides its scale by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FanMode {
    /// The number of inputs of a unit.
    FanIn,
    /// The number of outputs of a unit.
    FanOut,
    /// `(fan_in + fan_out) / 2`.
    FanAvg,
}

/// The distribution a [`Initializer::VarianceScaling`] draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    /// Normal, resampled beyond two standard deviations; the standard deviation is corrected by
    /// `1 / 0.87962566` so that the truncated distribution keeps the intended variance.
    TruncatedNormal,
    /// Normal, not truncated.
    UntruncatedNormal,
    /// Uniform in `[-limit, limit]` with `limit = sqrt(3 scale)`.
    Uniform,
}

/// How a layer's weights get their first values, as Keras' initializers.
///
/// By value (`Initializer::HeNormal`) or by Keras' name (`"he_normal".parse()`, or a `&str`
/// wherever a layer takes an initializer). Every draw comes from the [`Rng`] given to
/// [`init`](Initializer::init), so a fixed seed gives fixed weights.
///
/// The variance-scaling family computes `fan_in` and `fan_out` as Keras does: for a shape
/// `(in, out)` they are `in` and `out`; for a convolution kernel `(kh, kw, in, out)` both are
/// multiplied by the receptive field `kh kw`; for a vector `(n,)` both are `n`. Then
/// `s = scale / max(1, fan)` and the draw is uniform in `[-sqrt(3 s), sqrt(3 s)]`, or normal
/// truncated at two standard deviations with standard deviation `sqrt(s) / 0.87962566`.
///
/// ```
/// use gradus_layers::Initializer;
/// use gradus_tensor::Rng;
///
/// let w = Initializer::GlorotUniform.init(&[4, 3], &mut Rng::seed_from_u64(0))?;
/// let limit = (6.0f32 / 7.0).sqrt();
/// assert!(w.to_vec().iter().all(|v| v.abs() <= limit));
/// let ones: Initializer = "ones".parse()?;
/// assert_eq!(ones.init(&[2], &mut Rng::seed_from_u64(0))?.to_vec(), vec![1.0, 1.0]);
/// # Ok::<(), gradus_layers::LayerError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "InitializerRepr", into = "InitializerRepr")]
pub enum Initializer {
    /// Variance scaling with scale 1, fan_avg, uniform (Keras' default for kernels).
    #[default]
    GlorotUniform,
    /// Variance scaling with scale 1, fan_avg, truncated normal.
    GlorotNormal,
    /// Variance scaling with scale 2, fan_in, uniform.
    HeUniform,
    /// Variance scaling with scale 2, fan_in, truncated normal.
    HeNormal,
    /// Variance scaling with scale 1, fan_in, uniform.
    LecunUniform,
    /// Variance scaling with scale 1, fan_in, truncated normal.
    LecunNormal,
    /// The general variance-scaling initializer.
    VarianceScaling {
        /// The variance scale.
        scale: f32,
        /// Which fan divides the scale.
        mode: FanMode,
        /// The distribution drawn from.
        distribution: Distribution,
    },
    /// Uniform in `[minval, maxval)`; by name (`"uniform"`), `[-0.05, 0.05)`.
    RandomUniform {
        /// The lower bound.
        minval: f32,
        /// The upper bound.
        maxval: f32,
    },
    /// Normal; by name (`"normal"`), mean 0 and standard deviation 0.05.
    RandomNormal {
        /// The mean.
        mean: f32,
        /// The standard deviation.
        stddev: f32,
    },
    /// Normal resampled beyond two standard deviations; by name, mean 0 and stddev 0.05.
    TruncatedNormal {
        /// The mean.
        mean: f32,
        /// The standard deviation (before truncation).
        stddev: f32,
    },
    /// All zeros (Keras' default for biases).
    Zeros,
    /// All ones.
    Ones,
    /// Every element `value`.
    Constant {
        /// The value.
        value: f32,
    },
    /// A (semi-)orthogonal matrix times `gain`: the shape is flattened to
    /// `(prod(shape[..-1]), shape[-1])`, a normal matrix is QR-decomposed and `Q` (with the signs
    /// of `R`'s diagonal folded in) is used, transposed when there are fewer rows than columns.
    Orthogonal {
        /// The multiplier (Keras: 1.0).
        gain: f32,
    },
}

const NAMES: &str = "glorot_uniform, glorot_normal, he_uniform, he_normal, lecun_uniform, \
lecun_normal, uniform (random_uniform), normal (random_normal), truncated_normal, zeros, ones, \
constant, orthogonal, variance_scaling";

/// Keras' `compute_fans`: `(fan_in, fan_out)` of a weight of `shape`.
pub fn compute_fans(shape: &[usize]) -> (f64, f64) {
    match shape {
        [] => (1.0, 1.0),
        [n] => (*n as f64, *n as f64),
        [i, o] => (*i as f64, *o as f64),
        [rest @ .., i, o] => {
            let field: usize = rest.iter().product();
            ((i * field) as f64, (o * field) as f64)
        }
    }
}

/// `|x| <= 2` standard normal samples by rejection.
fn truncated_standard_normal(rng: &mut Rng) -> f32 {
    loop {
        let v = rng.normal_f32();
        if v.abs() <= 2.0 {
            return v;
        }
    }
}

impl Initializer {
    /// The initializer Keras calls `name`, with Keras' default arguments.
    ///
    /// # Errors
    /// [`LayerError::UnknownName`] listing the known names.
    pub fn from_name(name: &str) -> Result<Initializer> {
        Ok(match name {
            "glorot_uniform" => Initializer::GlorotUniform,
            "glorot_normal" => Initializer::GlorotNormal,
            "he_uniform" => Initializer::HeUniform,
            "he_normal" => Initializer::HeNormal,
            "lecun_uniform" => Initializer::LecunUniform,
            "lecun_normal" => Initializer::LecunNormal,
            "variance_scaling" => Initializer::VarianceScaling {
                scale: 1.0,
                mode: FanMode::FanIn,
                distribution: Distribution::TruncatedNormal,
            },
            "uniform" | "random_uniform" => Initializer::RandomUniform {
                minval: -0.05,
                maxval: 0.05,
            },
            "normal" | "random_normal" => Initializer::RandomNormal {
                mean: 0.0,
                stddev: 0.05,
            },
            "truncated_normal" => Initializer::TruncatedNormal {
                mean: 0.0,
                stddev: 0.05,
            },
            "zeros" | "zero" => Initializer::Zeros,
            "ones" | "one" => Initializer::Ones,
            "constant" => Initializer::Constant { value: 0.0 },
            "orthogonal" => Initializer::Orthogonal { gain: 1.0 },
            _ => {
                return Err(LayerError::UnknownName {
                    kind: "initializer",
                    name: name.to_string(),
                    expected: NAMES.to_string(),
                });
            }
        })
    }

    /// Keras' snake-case name of the initializer.
    pub fn name(&self) -> &'static str {
        match self {
            Initializer::GlorotUniform => "glorot_uniform",
            Initializer::GlorotNormal => "glorot_normal",
            Initializer::HeUniform => "he_uniform",
            Initializer::HeNormal => "he_normal",
            Initializer::LecunUniform => "lecun_uniform",
            Initializer::LecunNormal => "lecun_normal",
            Initializer::VarianceScaling { .. } => "variance_scaling",
            Initializer::RandomUniform { .. } => "random_uniform",
            Initializer::RandomNormal { .. } => "random_normal",
            Initializer::TruncatedNormal { .. } => "truncated_normal",
            Initializer::Zeros => "zeros",
            Initializer::Ones => "ones",
            Initializer::Constant { .. } => "constant",
            Initializer::Orthogonal { .. } => "orthogonal",
        }
    }

    /// The variance-scaling parameters of the named members of that family.
    fn variance_scaling(&self) -> Option<(f32, FanMode, Distribution)> {
        use Distribution::{TruncatedNormal as Tn, Uniform as U};
        Some(match *self {
            Initializer::GlorotUniform => (1.0, FanMode::FanAvg, U),
            Initializer::GlorotNormal => (1.0, FanMode::FanAvg, Tn),
            Initializer::HeUniform => (2.0, FanMode::FanIn, U),
            Initializer::HeNormal => (2.0, FanMode::FanIn, Tn),
            Initializer::LecunUniform => (1.0, FanMode::FanIn, U),
            Initializer::LecunNormal => (1.0, FanMode::FanIn, Tn),
            Initializer::VarianceScaling {
                scale,
                mode,
                distribution,
            } => (scale, mode, distribution),
            _ => return None,
        })
    }

    /// Checks the arguments: finite values, `minval < maxval`, positive scales.
    ///
    /// # Errors
    /// [`LayerError::InvalidArgument`] naming the argument and the value that came.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(invalid(format!("initializer {}", self.name()), m));
        match *self {
            Initializer::VarianceScaling { scale, .. } if !(scale > 0.0 && scale.is_finite()) => {
                bad(format!("expected a positive finite scale, got {scale}"))
            }
            Initializer::RandomUniform { minval, maxval }
                if !(minval < maxval && minval.is_finite() && maxval.is_finite()) =>
            {
                bad(format!(
                    "expected finite minval < maxval, got minval {minval} and maxval {maxval}"
                ))
            }
            Initializer::RandomNormal { mean, stddev }
            | Initializer::TruncatedNormal { mean, stddev }
                if !(stddev >= 0.0 && stddev.is_finite() && mean.is_finite()) =>
            {
                bad(format!(
                    "expected a finite mean and stddev >= 0, got mean {mean} and stddev {stddev}"
                ))
            }
            Initializer::Constant { value } if !value.is_finite() => {
                bad(format!("expected a finite value, got {value}"))
            }
            Initializer::Orthogonal { gain } if !gain.is_finite() => {
                bad(format!("expected a finite gain, got {gain}"))
            }
            _ => Ok(()),
        }
    }

    /// A tensor of `shape` drawn from this initializer with `rng`.
    ///
    /// # Errors
    /// [`LayerError::InvalidArgument`] for invalid arguments (see [`validate`](Self::validate)),
    /// or an orthogonal initializer asked for a shape of rank below 2.
    pub fn init(&self, shape: &[usize], rng: &mut Rng) -> Result<Tensor> {
        self.validate()?;
        let n: usize = shape.iter().product();
        let values: Vec<f32> = if let Some((scale, mode, dist)) = self.variance_scaling() {
            let (fan_in, fan_out) = compute_fans(shape);
            let fan = match mode {
                FanMode::FanIn => fan_in,
                FanMode::FanOut => fan_out,
                FanMode::FanAvg => (fan_in + fan_out) / 2.0,
            };
            let s = f64::from(scale) / fan.max(1.0);
            match dist {
                Distribution::Uniform => {
                    let limit = (3.0 * s).sqrt() as f32;
                    (0..n).map(|_| rng.uniform_range(-limit, limit)).collect()
                }
                Distribution::TruncatedNormal => {
                    let std = (s.sqrt() / 0.879_625_661_034_239_8) as f32;
                    (0..n)
                        .map(|_| std * truncated_standard_normal(rng))
                        .collect()
                }
                Distribution::UntruncatedNormal => {
                    let std = s.sqrt() as f32;
                    (0..n).map(|_| std * rng.normal_f32()).collect()
                }
            }
        } else {
            match *self {
                Initializer::RandomUniform { minval, maxval } => {
                    (0..n).map(|_| rng.uniform_range(minval, maxval)).collect()
                }
                Initializer::RandomNormal { mean, stddev } => {
                    (0..n).map(|_| mean + stddev * rng.normal_f32()).collect()
                }
                Initializer::TruncatedNormal { mean, stddev } => (0..n)
                    .map(|_| mean + stddev * truncated_standard_normal(rng))
                    .collect(),
                Initializer::Zeros => vec![0.0; n],
                Initializer::Ones => vec![1.0; n],
                Initializer::Constant { value } => vec![value; n],
                Initializer::Orthogonal { gain } => orthogonal(shape, gain, rng)?,
                _ => unreachable!("variance-scaling members are handled above"),
            }
        };
        Ok(Tensor::from_vec(values, shape)?)
    }
}

/// Keras' orthogonal initializer, row-major values of `shape`.
fn orthogonal(shape: &[usize], gain: f32, rng: &mut Rng) -> Result<Vec<f32>> {
    let Some((&cols, lead)) = shape.split_last().filter(|_| shape.len() >= 2) else {
        return Err(invalid(
            "initializer orthogonal",
            format!("expected a shape of rank >= 2, got {shape:?}"),
        ));
    };
    let rows: usize = lead.iter().product();
    let (m, n) = (rows.max(cols), rows.min(cols));
    // A normal m x n matrix, column-major so that columns are contiguous.
    let mut q: Vec<Vec<f64>> = (0..n)
        .map(|_| (0..m).map(|_| f64::from(rng.normal_f32())).collect())
        .collect();
    // Modified Gram-Schmidt, applied twice for orthogonality to working precision. R's diagonal
    // comes out positive, which is Keras' `q * sign(diag(r))` convention.
    for j in 0..n {
        for _ in 0..2 {
            for k in 0..j {
                let (done, rest) = q.split_at_mut(j);
                let dot: f64 = done[k].iter().zip(&rest[0]).map(|(a, b)| a * b).sum();
                rest[0]
                    .iter_mut()
                    .zip(&done[k])
                    .for_each(|(x, a)| *x -= dot * a);
            }
        }
        let norm = q[j].iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm <= f64::MIN_POSITIVE {
            return Err(invalid(
                "initializer orthogonal",
                "the random matrix drawn was rank-deficient; use another seed",
            ));
        }
        q[j].iter_mut().for_each(|x| *x /= norm);
    }
    let g = f64::from(gain);
    // Q is m x n (column j = q[j]). Output rows x cols: Q itself if rows >= cols, else Q^T.
    let mut out = vec![0.0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            let v = if rows >= cols { q[c][r] } else { q[r][c] };
            out[r * cols + c] = (g * v) as f32;
        }
    }
    Ok(out)
}

impl fmt::Display for Initializer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Initializer {
    type Err = LayerError;
    fn from_str(s: &str) -> Result<Self> {
        Initializer::from_name(s)
    }
}

impl TryFrom<&str> for Initializer {
    type Error = LayerError;
    fn try_from(s: &str) -> Result<Self> {
        Initializer::from_name(s)
    }
}

/// The serialized form: the snake-case name for initializers without arguments, Keras'
/// `{"class_name": ..., "config": {...}}` otherwise (either is read back).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum InitializerRepr {
    Name(String),
    Full {
        class_name: String,
        #[serde(default)]
        config: Map<String, Value>,
    },
}

impl From<Initializer> for InitializerRepr {
    fn from(i: Initializer) -> Self {
        let full = |class: &str, config: Value| InitializerRepr::Full {
            class_name: class.to_string(),
            config: match config {
                Value::Object(m) => m,
                _ => Map::new(),
            },
        };
        match i {
            Initializer::VarianceScaling {
                scale,
                mode,
                distribution,
            } => full(
                "VarianceScaling",
                json!({"scale": scale, "mode": mode, "distribution": distribution}),
            ),
            Initializer::RandomUniform { minval, maxval } => {
                full("RandomUniform", json!({"minval": minval, "maxval": maxval}))
            }
            Initializer::RandomNormal { mean, stddev } => {
                full("RandomNormal", json!({"mean": mean, "stddev": stddev}))
            }
            Initializer::TruncatedNormal { mean, stddev } => {
                full("TruncatedNormal", json!({"mean": mean, "stddev": stddev}))
            }
            Initializer::Constant { value } => full("Constant", json!({ "value": value })),
            Initializer::Orthogonal { gain } => full("Orthogonal", json!({ "gain": gain })),
            other => InitializerRepr::Name(other.name().to_string()),
        }
    }
}

/// `name` in snake case: `"RandomUniform"` -> `"random_uniform"`.
pub(crate) fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, ch) in name.chars().enumerate() {
        if ch.is_ascii_uppercase() {
            if i > 0 && !out.ends_with('_') {
                out.push('_');
            }
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

impl TryFrom<InitializerRepr> for Initializer {
    type Error = LayerError;
    fn try_from(r: InitializerRepr) -> Result<Self> {
        let (class, config) = match r {
            InitializerRepr::Name(n) => return Initializer::from_name(&n),
            InitializerRepr::Full { class_name, config } => (snake_case(&class_name), config),
        };
        let base = Initializer::from_name(&class)?;
        let num = |key: &str, default: f32| -> Result<f32> {
            match config.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v
                    .as_f64()
                    .map(|v| v as f32)
                    .ok_or_else(|| LayerError::Config {
                        class: class.clone(),
                        message: format!("expected a number for {key:?}, got {v}"),
                    }),
            }
        };
        let parse = |key: &str| -> Result<Option<Value>> { Ok(config.get(key).cloned()) };
        let init = match base {
            Initializer::VarianceScaling {
                scale,
                mode,
                distribution,
            } => {
                let de = |e: serde_json::Error| LayerError::Config {
                    class: class.clone(),
                    message: e.to_string(),
                };
                Initializer::VarianceScaling {
                    scale: num("scale", scale)?,
                    mode: match parse("mode")? {
                        Some(v) => serde_json::from_value(v).map_err(de)?,
                        None => mode,
                    },
                    distribution: match parse("distribution")? {
                        Some(v) => serde_json::from_value(v).map_err(de)?,
                        None => distribution,
                    },
                }
            }
            Initializer::RandomUniform { minval, maxval } => Initializer::RandomUniform {
                minval: num("minval", minval)?,
                maxval: num("maxval", maxval)?,
            },
            Initializer::RandomNormal { mean, stddev } => Initializer::RandomNormal {
                mean: num("mean", mean)?,
                stddev: num("stddev", stddev)?,
            },
            Initializer::TruncatedNormal { mean, stddev } => Initializer::TruncatedNormal {
                mean: num("mean", mean)?,
                stddev: num("stddev", stddev)?,
            },
            Initializer::Constant { value } => Initializer::Constant {
                value: num("value", value)?,
            },
            Initializer::Orthogonal { gain } => Initializer::Orthogonal {
                gain: num("gain", gain)?,
            },
            other => other,
        };
        Ok(init)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moments(v: &[f32]) -> (f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        (mean, var)
    }

    #[test]
    fn fans_follow_keras() {
        assert_eq!(compute_fans(&[784, 128]), (784.0, 128.0));
        assert_eq!(compute_fans(&[3, 3, 1, 32]), (9.0, 288.0));
        assert_eq!(compute_fans(&[7]), (7.0, 7.0));
        assert_eq!(compute_fans(&[]), (1.0, 1.0));
    }

    #[test]
    fn variance_scaling_members_have_the_right_variance() {
        // 200 x 300 = 60000 samples: the sample variance is within ~1% of the true one.
        let shape = [200, 300];
        let cases = [
            (Initializer::GlorotUniform, 2.0f64 / 500.0),
            (Initializer::GlorotNormal, 2.0 / 500.0),
            (Initializer::HeUniform, 2.0 / 200.0),
            (Initializer::HeNormal, 2.0 / 200.0),
            (Initializer::LecunNormal, 1.0 / 200.0),
            (Initializer::LecunUniform, 1.0 / 200.0),
        ];
        for (init, want) in cases {
            let w = init
                .init(&shape, &mut Rng::seed_from_u64(1))
                .unwrap()
                .to_vec();
            let (mean, var) = moments(&w);
            assert!(mean.abs() < 0.1 * want.sqrt(), "{init}: mean {mean}");
            assert!(
                (var / want - 1.0).abs() < 0.03,
                "{init}: var {var} want {want}"
            );
        }
    }

    #[test]
    fn truncated_normals_stay_within_two_stddev() {
        let w = Initializer::HeNormal
            .init(&[100, 50], &mut Rng::seed_from_u64(3))
            .unwrap()
            .to_vec();
        let std = (2.0f32 / 100.0).sqrt() / 0.879_625_7;
        assert!(w.iter().all(|v| v.abs() <= 2.0 * std + 1e-6));
    }

    #[test]
    fn uniform_and_normal_defaults() {
        let mut rng = Rng::seed_from_u64(5);
        let u = Initializer::from_name("uniform")
            .unwrap()
            .init(&[1000], &mut rng)
            .unwrap();
        assert!(u.to_vec().iter().all(|v| (-0.05..0.05).contains(v)));
        let n = Initializer::from_name("normal")
            .unwrap()
            .init(&[20000], &mut rng)
            .unwrap();
        let (mean, var) = moments(&n.to_vec());
        assert!(mean.abs() < 2e-3 && (var.sqrt() / 0.05 - 1.0).abs() < 0.03);
    }

    #[test]
    fn orthogonal_gives_orthonormal_rows_or_columns() {
        for shape in [[5usize, 20], [20, 5], [6, 6]] {
            let w = Initializer::Orthogonal { gain: 1.0 }
                .init(&shape, &mut Rng::seed_from_u64(9))
                .unwrap();
            let (r, c) = (shape[0], shape[1]);
            let v = w.to_vec();
            // W W^T = I when r <= c, W^T W = I otherwise: element k of line i is `at(i, k)`.
            let wide = r <= c;
            let (outer, inner) = if wide { (r, c) } else { (c, r) };
            let at = |i: usize, k: usize| if wide { v[i * c + k] } else { v[k * c + i] };
            for i in 0..outer {
                for j in 0..outer {
                    let dot: f32 = (0..inner).map(|k| at(i, k) * at(j, k)).sum();
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((dot - want).abs() < 1e-5, "{shape:?} ({i},{j}): {dot}");
                }
            }
        }
        assert!(
            Initializer::Orthogonal { gain: 1.0 }
                .init(&[4], &mut Rng::seed_from_u64(0))
                .is_err()
        );
    }

    #[test]
    fn seeded_draws_repeat() {
        let a = Initializer::GlorotUniform
            .init(&[3, 4], &mut Rng::seed_from_u64(7))
            .unwrap();
        let b = Initializer::GlorotUniform
            .init(&[3, 4], &mut Rng::seed_from_u64(7))
            .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn serde_round_trip_and_keras_form() {
        let all = [
            Initializer::GlorotUniform,
            Initializer::HeNormal,
            Initializer::RandomUniform {
                minval: -0.1,
                maxval: 0.2,
            },
            Initializer::Constant { value: 0.5 },
            Initializer::Orthogonal { gain: 2.0 },
            Initializer::VarianceScaling {
                scale: 2.0,
                mode: FanMode::FanOut,
                distribution: Distribution::Uniform,
            },
        ];
        for i in all {
            let v = serde_json::to_value(i).unwrap();
            assert_eq!(serde_json::from_value::<Initializer>(v).unwrap(), i);
        }
        let keras = json!({"class_name": "RandomNormal", "config": {"mean": 1.0, "stddev": 0.5, "seed": null}});
        assert_eq!(
            serde_json::from_value::<Initializer>(keras).unwrap(),
            Initializer::RandomNormal {
                mean: 1.0,
                stddev: 0.5
            }
        );
    }

    #[test]
    fn bad_arguments_are_errors() {
        let e = Initializer::RandomUniform {
            minval: 1.0,
            maxval: 0.0,
        }
        .init(&[2], &mut Rng::seed_from_u64(0))
        .unwrap_err();
        assert!(e.to_string().contains("minval 1"), "{e}");
        assert!(Initializer::from_name("glorot").is_err());
    }
}
