//! Saving and loading: weights to safetensors (tensor names = variable names), and whole models
//! (architecture, compile configuration, weights, optimizer state, RNG) to one safetensors
//! file whose metadata holds the JSON parts.
//!
//! Every file is written by [`write_file`] and read by [`read_file`]. Writes are crash-safe (a
//! temporary file in the same directory, synced, renamed over the old one, the directory
//! synced), and every file ends with a checksum trailer that loading verifies, so that a crash
//! leaves the old or the new file and a truncated or corrupted file is refused.

use std::collections::HashMap;
use std::path::Path;

use gradus_autograd::Variable;
use gradus_layers::Layer;
use gradus_losses::LossConfig;
use gradus_losses::metrics::{MetricConfig, metric_from_config};
use gradus_optim::{Optimizer, OptimizerConfig, OptimizerState};
use gradus_tensor::{Rng, Tensor};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ModelError, Result};
use crate::logs::{History, SavedHistory};
use crate::model::{CallbackStates, Compiled, MetricSlot, Model, check_unique_names};
use crate::network::{Network, NetworkConfig, Sequential};
use crate::sizes::{named_shapes_fit, planned_params};

/// The `format` metadata of a whole-model file.
const MODEL_FORMAT: &str = "gradus.model.v1";
/// The `format` metadata of a weights file.
const WEIGHTS_FORMAT: &str = "gradus.weights.v1";

/// Sets every variable to the weight at its position, after checking the count and every shape
/// (nothing changes unless all fit).
pub(crate) fn assign_all(variables: &[Variable], weights: &[Tensor]) -> Result<()> {
    if variables.len() != weights.len() {
        return Err(ModelError::mismatch(
            "weights",
            format!("{} tensors (one per variable)", variables.len()),
            format!("{} tensors", weights.len()),
        ));
    }
    for (v, w) in variables.iter().zip(weights) {
        if v.shape() != w.shape() {
            return Err(ModelError::mismatch(
                format!("weight {:?}", v.name()),
                format!("shape {:?}", v.shape()),
                format!("shape {:?}", w.shape()),
            ));
        }
    }
    for (v, w) in variables.iter().zip(weights) {
        v.assign(w.clone())?;
    }
    Ok(())
}

/// Writes `tensors` (name, value) and `metadata` to a safetensors file: the one writer of this
/// crate.
fn write_file(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(name, t)| {
            let data = t
                .to_contiguous()
                .to_vec()
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect();
            (name.clone(), data, t.shape().to_vec())
        })
        .collect();
    let mut views = Vec::with_capacity(bytes.len());
    for (name, data, shape) in &bytes {
        let view =
            TensorView::new(Dtype::F32, shape.clone(), data).map_err(|e| format_error(path, e))?;
        views.push((name.as_str(), view));
    }
    let buffer =
        safetensors::serialize(views, Some(metadata)).map_err(|e| format_error(path, e))?;
    write_atomically(path, &with_checksum(buffer))
}
/// The last bytes of every file this crate writes: this tag, then the FNV-1a 64-bit hash of
/// every byte before the tag, little-endian.
const CHECKSUM_TAG: &[u8; 8] = b"gradus#\x01";
/// The tag and the hash.
const TRAILER_LEN: usize = 16;

/// FNV-1a, 64 bits: `h = (h ^ byte) * 0x100000001b3` from `h = 0xcbf29ce484222325`.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `bytes` with the checksum trailer appended.
fn with_checksum(mut bytes: Vec<u8>) -> Vec<u8> {
    let hash = fnv1a64(&bytes);
    bytes.extend_from_slice(CHECKSUM_TAG);
    bytes.extend_from_slice(&hash.to_le_bytes());
    bytes
}

/// The bytes before the checksum trailer, once the checksum is verified. A file without the
/// trailer is taken whole when `trailer_optional` (a safetensors file of another tool).
fn verify_checksum<'a>(path: &Path, bytes: &'a [u8], trailer_optional: bool) -> Result<&'a [u8]> {
    let split = bytes.len().checked_sub(TRAILER_LEN);
    let Some(split) = split.filter(|&s| &bytes[s..s + 8] == CHECKSUM_TAG) else {
        if trailer_optional {
            return Ok(bytes);
        }
        return Err(format_error(
            path,
            format!(
                "expected a gradus checkpoint ending in a checksum, got {} bytes without one \
                 (truncated, or not written by gradus)",
                bytes.len()
            ),
        ));
    };
    let (body, trailer) = bytes.split_at(split);
    let stored = u64::from_le_bytes(trailer[8..].try_into().expect("8 bytes"));
    let actual = fnv1a64(body);
    if stored != actual {
        return Err(format_error(
            path,
            format!(
                "checksum mismatch: expected {stored:#018x} (stored), got {actual:#018x} \
                 (the file is corrupted or truncated)"
            ),
        ));
    }
    Ok(body)
}

/// Writes `bytes` to `path` so that a crash at any moment leaves the old file or the new one:
/// a temporary file in the same directory, synced to disk, renamed over `path`, then the
/// directory synced. The temporary file is removed if anything fails.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let io = |source| ModelError::Io {
        path: path.display().to_string(),
        source,
    };
    let name = path.file_name().ok_or_else(|| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "expected a file path, got a path without a file name",
        ))
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{n}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    // The rename is durable once the directory is synced; some platforms cannot open a
    // directory for that, and the data is already safe there.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A file read back: tensors by name and the metadata.
struct FileContents {
    tensors: HashMap<String, Tensor>,
    metadata: HashMap<String, String>,
}

/// Reads a safetensors file of `f32` tensors, verifying its checksum: the one reader of this
/// crate. `foreign_ok` accepts a file without the checksum trailer (a safetensors file written
/// by another tool).
fn read_file(path: &Path, foreign_ok: bool) -> Result<FileContents> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let buffer = verify_checksum(path, &bytes, foreign_ok)?;
    let (_, header) = SafeTensors::read_metadata(buffer).map_err(|e| format_error(path, e))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let file = SafeTensors::deserialize(buffer).map_err(|e| format_error(path, e))?;
    let mut tensors = HashMap::new();
    for (name, view) in file.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(ModelError::Format {
                path: path.display().to_string(),
                message: format!(
                    "tensor {name:?}: expected dtype F32, got {:?}",
                    view.dtype()
                ),
            });
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        tensors.insert(name, Tensor::from_vec(values, view.shape())?);
    }
    Ok(FileContents { tensors, metadata })
}

fn format_error(path: &Path, e: impl std::fmt::Display) -> ModelError {
    ModelError::Format {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Writes `variables` to a safetensors file, one tensor per variable named as the variable.
pub(crate) fn write_weights(
    path: &Path,
    variables: &[Variable],
    extra: Option<HashMap<String, String>>,
) -> Result<()> {
    let tensors: Vec<(String, Tensor)> = variables
        .iter()
        .map(|v| (v.name().to_string(), v.value()))
        .collect();
    let mut metadata = extra.unwrap_or_default();
    metadata
        .entry("format".into())
        .or_insert_with(|| WEIGHTS_FORMAT.into());
    write_file(path, &tensors, metadata)
}

/// The weights of `variables` found in `tensors`, in order, checked by name and shape: a file of
/// another architecture is an error naming the first difference.
fn match_weights(
    path: &Path,
    variables: &[Variable],
    tensors: &HashMap<String, Tensor>,
) -> Result<Vec<Tensor>> {
    let what = || format!("{}: the model's variables", path.display());
    let mut out = Vec::with_capacity(variables.len());
    for v in variables {
        let t = tensors.get(v.name()).ok_or_else(|| {
            let mut names: Vec<&String> = tensors.keys().collect();
            names.sort();
            ModelError::mismatch(
                what(),
                format!("a tensor named {:?}", v.name()),
                format!("tensors {names:?}"),
            )
        })?;
        if t.shape() != v.shape() {
            return Err(ModelError::mismatch(
                what(),
                format!("{:?} of shape {:?}", v.name(), v.shape()),
                format!("shape {:?}", t.shape()),
            ));
        }
        out.push(t.clone());
    }
    let weight_count = tensors
        .keys()
        .filter(|k| !k.starts_with(OPTIMIZER_PREFIX))
        .count();
    if weight_count != variables.len() {
        return Err(ModelError::mismatch(
            what(),
            format!("{} weight tensors", variables.len()),
            format!("{weight_count}"),
        ));
    }
    Ok(out)
}

/// Tensors of the optimizer state carry this prefix (no variable name starts with it).
const OPTIMIZER_PREFIX: &str = "__optimizer__/";

/// The compile configuration of a saved model.
#[derive(Debug, Serialize, Deserialize)]
struct CompileConfig {
    optimizer: OptimizerConfig,
    loss_name: Option<String>,
    loss: Option<LossConfig>,
    metrics: Vec<SavedMetric>,
}

/// A metric of a saved model: resolved, or a name still waiting for data.
#[derive(Debug, Serialize, Deserialize)]
enum SavedMetric {
    Pending(String),
    Ready(MetricConfig),
}

fn json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| ModelError::Format {
        path: "<model>".into(),
        message: e.to_string(),
    })
}

fn parse<T: for<'de> Deserialize<'de>>(
    path: &Path,
    metadata: &HashMap<String, String>,
    key: &str,
) -> Result<T> {
    let text = metadata
        .get(key)
        .ok_or_else(|| format_error(path, format!("no {key:?} entry in the metadata")))?;
    serde_json::from_str(text).map_err(|e| format_error(path, format!("metadata {key:?}: {e}")))
}

impl<N: Network> Model<N> {
    /// Saves the weights to a safetensors file, one tensor per variable named as the variable
    /// (`"dense/kernel"`).
    ///
    /// # Errors
    /// [`ModelError::NotBuilt`]; I/O errors.
    pub fn save_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        if !self.is_built() {
            return Err(ModelError::NotBuilt { op: "save_weights" });
        }
        write_weights(path.as_ref(), &self.variables(), None)
    }

    /// Loads weights saved by [`save_weights`](Model::save_weights) (or any safetensors file
    /// with one `f32` tensor per variable, by name). Nothing changes unless every name and
    /// shape fits.
    ///
    /// # Errors
    /// [`ModelError::NotBuilt`]; [`ModelError::Mismatch`] naming a missing tensor or a shape
    /// that differs (a file of another architecture); I/O and format errors.
    pub fn load_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        if !self.is_built() {
            return Err(ModelError::NotBuilt { op: "load_weights" });
        }
        let file = read_file(path, true)?;
        let variables = self.variables();
        let weights = match_weights(path, &variables, &file.tensors)?;
        assign_all(&variables, &weights)
    }

    /// Saves the whole model to one safetensors file: the weights as tensors, and in the
    /// metadata the architecture (for networks with a [`config`](Network::config)), the input
    /// shape, the compile configuration, the optimizer state, the RNG and the layers' states.
    /// [`Model::load`] (a `Sequential`) or [`load_into`](Model::load_into) (any network) bring
    /// it back so that `predict` gives the same outputs and `fit` goes on as if never stopped.
    ///
    /// # Errors
    /// [`ModelError::NotBuilt`]; an optimizer whose learning rate is a custom schedule (not
    /// serializable), or whose state is not finite; I/O errors.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        if !self.is_built() {
            return Err(ModelError::NotBuilt { op: "save" });
        }
        let mut metadata = HashMap::new();
        metadata.insert("format".to_string(), MODEL_FORMAT.to_string());
        metadata.insert("network".into(), json(&self.network().config())?);
        metadata.insert("input_shape".into(), json(&self.input_shape())?);
        metadata.insert("rng".into(), json(&self.rng.state())?);
        let states: HashMap<String, Value> = self
            .network()
            .layers()
            .iter()
            .filter_map(|l| l.state().map(|s| (l.name().to_string(), s)))
            .collect();
        metadata.insert("layer_states".into(), json(&states)?);
        metadata.insert("history".into(), json(&self.history.to_saved())?);
        if let Some(c) = &self.callback_states {
            metadata.insert("callbacks".into(), json(c)?);
        }
        let mut tensors: Vec<(String, Tensor)> = self
            .variables()
            .iter()
            .map(|v| (v.name().to_string(), v.value()))
            .collect();
        if let Some(c) = &self.compiled {
            let config = CompileConfig {
                optimizer: c.optimizer.config(),
                loss_name: c.loss_name.clone(),
                loss: c.loss.as_ref().map(|l| l.config()),
                metrics: c
                    .metrics
                    .iter()
                    .map(|m| match m {
                        MetricSlot::Pending(n) => SavedMetric::Pending(n.clone()),
                        MetricSlot::Ready(m) => SavedMetric::Ready(m.config()),
                    })
                    .collect(),
            };
            c.optimizer.config().to_json()?;
            metadata.insert("compile".into(), json(&config)?);
            let mut state = c.optimizer.state();
            // The per-parameter arrays go in as tensors (exact and compact), the rest as JSON.
            for p in &mut state.params {
                let key = format!("{OPTIMIZER_PREFIX}{}", p.key);
                if !p.average.is_empty() {
                    tensors.push((
                        format!("{key}/average"),
                        Tensor::from_vec(std::mem::take(&mut p.average), &p.shape)?,
                    ));
                }
                if !p.accumulator.is_empty() {
                    tensors.push((
                        format!("{key}/accumulator"),
                        Tensor::from_vec(std::mem::take(&mut p.accumulator), &p.shape)?,
                    ));
                }
                for (j, slot) in p.slots.iter_mut().enumerate() {
                    let len = slot.len();
                    tensors.push((
                        format!("{key}/slot{j}"),
                        Tensor::from_vec(std::mem::take(slot), &[len])?,
                    ));
                }
            }
            metadata.insert("optimizer_state".into(), json(&state)?);
        }
        write_file(path, &tensors, metadata)
    }

    /// Loads a file written by [`save`](Model::save) into this model, whose network must have
    /// the same variables (names and shapes): the weights, the compile configuration and
    /// optimizer state (when saved), the RNG, the layers' states, the History and the
    /// callback states.
    ///
    /// Nothing changes unless everything fits: the whole file is parsed and checked before
    /// the model is touched. A model that is not built yet is built for the saved input shape
    /// on an [`unbuilt_copy`](Network::unbuilt_copy) of its network (a `Sequential` of
    /// gradus' layers gives one), swapped in only once the file fits; before that build, the
    /// number of weights each layer will create is computed from its configuration (for
    /// gradus' layer classes) and must not exceed what the file holds for it, so that a
    /// hostile file asking for huge layers is refused before anything is allocated.
    ///
    /// # Errors
    /// [`ModelError::Mismatch`] for a file of another architecture (naming the first variable
    /// that differs, or a layer that would need more weights than the file holds) or another
    /// input shape; [`ModelError::NotBuilt`] for an unbuilt model whose network gives no
    /// unbuilt copy (build it first); [`ModelError::Format`] for a file that is not a
    /// whole-model file; I/O errors; errors rebuilding the optimizer, loss or metrics.
    pub fn load_into(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let file = read_file(path, false)?;
        self.load_contents(path, file)
    }

    /// [`load_into`](Model::load_into) from a file already read.
    fn load_contents(&mut self, path: &Path, file: FileContents) -> Result<()> {
        let saved = SavedModel::parse(path, file)?;
        if self.is_built() {
            if saved.input_shape.as_deref() != self.input_shape() {
                return Err(ModelError::mismatch(
                    format!("{}: input shape", path.display()),
                    format!("{:?}", self.input_shape()),
                    format!("{:?}", saved.input_shape),
                ));
            }
            let variables = self.variables();
            let weights = match_weights(path, &variables, &saved.tensors)?;
            set_layer_states(path, &self.network.layers(), &saved.layer_states)?;
            assign_all(&variables, &weights)?;
        } else {
            let shape = saved
                .input_shape
                .clone()
                .ok_or_else(|| format_error(path, "no input shape saved"))?;
            let own = self
                .input_shape
                .clone()
                .or_else(|| self.network.declared_input_shape());
            if own.as_ref().is_some_and(|s| *s != shape) {
                return Err(ModelError::mismatch(
                    format!("{}: input shape", path.display()),
                    format!("{own:?}"),
                    format!("{shape:?}"),
                ));
            }
            let mut copy = self
                .network
                .unbuilt_copy()
                .ok_or(ModelError::NotBuilt { op: "load_into" })?;
            check_build_sizes(path, &copy, &shape, &saved.tensors)?;
            copy.build(&shape, &mut self.rng.clone())?;
            let variables = copy.variables();
            check_unique_names(&variables)?;
            let weights = match_weights(path, &variables, &saved.tensors)?;
            set_layer_states(path, &copy.layers(), &saved.layer_states)?;
            assign_all(&variables, &weights)?;
            self.network = copy;
            self.input_shape = Some(shape);
        }
        if saved.compiled.is_some() {
            self.compiled = saved.compiled;
        }
        self.rng = saved.rng;
        self.history = saved.history;
        self.callback_states = saved.callbacks;
        Ok(())
    }
}

/// Everything of a whole-model file, parsed and checked on its own (the weights are checked
/// against a network later).
struct SavedModel {
    input_shape: Option<Vec<usize>>,
    rng: Rng,
    layer_states: HashMap<String, Value>,
    history: History,
    callbacks: Option<CallbackStates>,
    compiled: Option<Compiled>,
    /// The weights, without the optimizer's tensors.
    tensors: HashMap<String, Tensor>,
}

impl SavedModel {
    fn parse(path: &Path, mut file: FileContents) -> Result<SavedModel> {
        let format = file.metadata.get("format").map(String::as_str);
        if format != Some(MODEL_FORMAT) {
            return Err(format_error(
                path,
                format!(
                    "expected a whole-model file (format {MODEL_FORMAT:?}), got format {format:?}"
                ),
            ));
        }
        let input_shape: Option<Vec<usize>> = parse(path, &file.metadata, "input_shape")?;
        let rng: [u64; 4] = parse(path, &file.metadata, "rng")?;
        let layer_states = parse(path, &file.metadata, "layer_states")?;
        let history = match file.metadata.get("history") {
            Some(_) => {
                History::from_saved(&parse::<SavedHistory>(path, &file.metadata, "history")?)
            }
            None => History::default(),
        };
        let callbacks = match file.metadata.get("callbacks") {
            Some(_) => Some(parse(path, &file.metadata, "callbacks")?),
            None => None,
        };
        let compiled = match file.metadata.get("compile") {
            None => None,
            Some(_) => Some(parse_compiled(path, &mut file)?),
        };
        file.tensors.retain(|k, _| !k.starts_with(OPTIMIZER_PREFIX));
        Ok(SavedModel {
            input_shape,
            rng: Rng::from_state(rng),
            layer_states,
            history,
            callbacks,
            compiled,
            tensors: file.tensors,
        })
    }
}

/// The compile configuration and optimizer state of a whole-model file, rebuilt (taking the
/// optimizer's tensors out of `file`).
fn parse_compiled(path: &Path, file: &mut FileContents) -> Result<Compiled> {
    let config: CompileConfig = parse(path, &file.metadata, "compile")?;
    let mut state: OptimizerState = parse(path, &file.metadata, "optimizer_state")?;
    for p in &mut state.params {
        let key = format!("{OPTIMIZER_PREFIX}{}", p.key);
        let mut take = |name: &str| {
            file.tensors
                .remove(&format!("{key}/{name}"))
                .map(|t| t.to_vec())
        };
        p.average = take("average").unwrap_or_default();
        p.accumulator = take("accumulator").unwrap_or_default();
        let mut slots = Vec::new();
        while let Some(s) = take(&format!("slot{}", slots.len())) {
            slots.push(s);
        }
        p.slots = slots;
    }
    let mut optimizer = Optimizer::from_config(config.optimizer)?;
    optimizer.load_state(&state)?;
    let loss = match &config.loss {
        Some(c) => Some(gradus_losses::from_config(c)?),
        None => None,
    };
    let mut metrics = Vec::new();
    for m in config.metrics {
        metrics.push(match m {
            SavedMetric::Pending(n) => MetricSlot::Pending(n),
            SavedMetric::Ready(c) => MetricSlot::Ready(Box::new(metric_from_config(&c)?)),
        });
    }
    Ok(Compiled {
        optimizer,
        loss_name: config.loss_name,
        loss,
        metrics,
    })
}

/// Sets each layer's saved state, after checking that every state names a layer; all or
/// nothing (a layer refusing its state puts the others back).
fn set_layer_states(
    path: &Path,
    layers: &[&dyn Layer],
    states: &HashMap<String, Value>,
) -> Result<()> {
    for name in states.keys() {
        if !layers.iter().any(|l| l.name() == name) {
            return Err(ModelError::mismatch(
                format!("{}: layer states", path.display()),
                "a layer of that name",
                format!("state of {name:?}"),
            ));
        }
    }
    let before: Vec<Option<Value>> = layers.iter().map(|l| l.state()).collect();
    for (i, l) in layers.iter().enumerate() {
        if let Some(s) = states.get(l.name())
            && let Err(e) = l.set_state(s)
        {
            for (l, s) in layers[..i].iter().zip(&before) {
                if let Some(s) = s {
                    l.set_state(s).expect("a state the layer gave");
                }
            }
            return Err(e.into());
        }
    }
    Ok(())
}

/// Refuses, before `network` is built for `input_shape`, a layer that would create more
/// weights than `tensors` holds for it (`"{layer}/..."`), as computed from its configuration
/// by [`planned_params`]: a file asking for huge layers is refused without allocating them.
/// Checks the layers of networks with a [`config`](Network::config) (a `Sequential`, whose
/// layers follow one another); a layer class it does not know is let through.
fn check_build_sizes<N: Network>(
    path: &Path,
    network: &N,
    input_shape: &[usize],
    tensors: &HashMap<String, Tensor>,
) -> Result<()> {
    if network.config().is_none() {
        return Ok(());
    }
    let mut shape = input_shape.to_vec();
    for layer in network.layers() {
        if shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .is_none()
        {
            return Err(ModelError::mismatch(
                format!("{}: inputs of layer {:?}", path.display(), layer.name()),
                "a shape whose size fits in memory",
                format!("shape {shape:?}"),
            ));
        }
        let prefix = format!("{}/", layer.name());
        let held: u128 = tensors
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, t)| t.len() as u128)
            .sum();
        let config = layer.config();
        if let Some(planned) = planned_params(&config, &shape)
            && planned > held
        {
            return Err(ModelError::mismatch(
                format!(
                    "{}: layer {:?} ({}) for inputs of shape {shape:?}",
                    path.display(),
                    layer.name(),
                    layer.class_name()
                ),
                format!("the {planned} weights its configuration asks for"),
                format!("{held} weights for it in the file"),
            ));
        }
        if !named_shapes_fit(&config) {
            return Err(ModelError::mismatch(
                format!("{}: layer {:?}", path.display(), layer.name()),
                "a target shape whose size fits in memory",
                config.config.to_string(),
            ));
        }
        shape = layer.output_shape(&shape)?;
    }
    Ok(())
}

impl Model<Sequential> {
    /// Loads a `Sequential` model saved by [`save`](Model::save): rebuilds the architecture
    /// from the file, then everything as [`load_into`](Model::load_into) (nothing is built
    /// before the sizes of the layers are checked against the weights in the file).
    ///
    /// # Errors
    /// As [`load_into`](Model::load_into); [`ModelError::Format`] when the file holds no
    /// `Sequential` architecture.
    pub fn load(path: impl AsRef<Path>) -> Result<Model<Sequential>> {
        let path = path.as_ref();
        let file = read_file(path, false)?;
        let config: Option<NetworkConfig> = parse(path, &file.metadata, "network")?;
        let config = config.ok_or_else(|| {
            format_error(
                path,
                "the file holds no architecture (a custom network): use load_into on a new \
                 instance",
            )
        })?;
        let mut model = Model::unbuilt(Sequential::from_config(&config)?, 0);
        model.load_contents(path, file)?;
        Ok(model)
    }
}
