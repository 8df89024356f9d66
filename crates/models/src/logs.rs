//! [`Logs`] (the named values of one batch or epoch) and [`History`] (every epoch's logs).

use std::fmt;
use std::ops::Index;

use serde::{Deserialize, Serialize};

/// Named values in the order Keras reports them: `loss`, the metrics in compile order, then the
/// `val_` versions. What `evaluate` returns and what callbacks receive.
///
/// ```
/// use gradus_models::Logs;
///
/// let mut logs = Logs::new();
/// logs.insert("loss", 0.5);
/// logs.insert("accuracy", 0.75);
/// logs.insert("loss", 0.25); // replaces, keeps the position
/// assert_eq!(logs.get("loss"), Some(0.25));
/// assert_eq!(logs.to_string(), "loss: 0.2500 - accuracy: 0.7500");
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Logs {
    entries: Vec<(String, f32)>,
}

impl Logs {
    /// Empty logs.
    pub fn new() -> Logs {
        Logs::default()
    }

    /// Sets `name` to `value` (replacing an existing entry in place, else appending).
    pub fn insert(&mut self, name: impl Into<String>, value: f32) {
        let name = name.into();
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((name, value)),
        }
    }

    /// The value named `name`.
    pub fn get(&self, name: &str) -> Option<f32> {
        self.entries.iter().find(|(n, _)| n == name).map(|e| e.1)
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f32)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), *v))
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `name: value` pairs with four decimals joined by `" - "`, as Keras' progress bar prints them.
impl fmt::Display for Logs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, value)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(" - ")?;
            }
            write!(f, "{name}: {}", format_value(*value))?;
        }
        Ok(())
    }
}

/// A value as Keras' progress bar prints it: four decimals, or scientific notation for tiny
/// magnitudes.
pub(crate) fn format_value(v: f32) -> String {
    if v != 0.0 && v.abs() < 1e-3 {
        format!("{v:.4e}")
    } else {
        format!("{v:.4}")
    }
}

/// What `fit` returns (Keras' `History`): for each key (`loss`, each metric, and the `val_`
/// versions) one value per epoch that reported it, and the epochs run (0-based, as Keras'
/// `history.epoch`).
///
/// `val_` entries exist only for validation epochs (see `validation_freq`), so they can be
/// shorter than `loss`; [`History::epochs_of`] tells which epochs they belong to.
///
/// ```
/// use gradus_models::{History, Logs};
///
/// let mut h = History::default();
/// let mut logs = Logs::new();
/// logs.insert("loss", 1.0);
/// h.record(0, &logs);
/// logs.insert("loss", 0.5);
/// logs.insert("val_loss", 0.7);
/// h.record(1, &logs);
/// assert_eq!(h["loss"], [1.0, 0.5]);
/// assert_eq!(h["val_loss"], [0.7]);
/// assert_eq!(h.epochs_of("val_loss"), vec![1]);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// The epochs recorded, in order.
    pub epoch: Vec<usize>,
    series: Vec<(String, Vec<(usize, f32)>)>,
    values: Vec<Vec<f32>>,
}

impl History {
    /// Appends an epoch's logs.
    pub fn record(&mut self, epoch: usize, logs: &Logs) {
        self.epoch.push(epoch);
        for (name, value) in logs.iter() {
            let i = match self.series.iter().position(|(n, _)| n == name) {
                Some(i) => i,
                None => {
                    self.series.push((name.to_string(), Vec::new()));
                    self.values.push(Vec::new());
                    self.series.len() - 1
                }
            };
            self.series[i].1.push((epoch, value));
            self.values[i].push(value);
        }
    }

    /// The values of `key`, one per epoch that reported it.
    pub fn get(&self, key: &str) -> Option<&[f32]> {
        self.position(key).map(|i| self.values[i].as_slice())
    }

    /// The epochs (0-based) at which `key` was reported (empty for an unknown key).
    pub fn epochs_of(&self, key: &str) -> Vec<usize> {
        self.position(key)
            .map(|i| self.series[i].1.iter().map(|e| e.0).collect())
            .unwrap_or_default()
    }

    /// The keys in the order they first appeared (`loss`, metrics, `val_` entries).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.series.iter().map(|(n, _)| n.as_str())
    }

    /// The last value of `key`.
    pub fn last(&self, key: &str) -> Option<f32> {
        self.get(key).and_then(|v| v.last().copied())
    }

    /// Appends another history (a continued `fit`).
    pub fn extend(&mut self, other: &History) {
        for (&epoch, logs) in other.epoch.iter().zip(other.logs_by_epoch()) {
            self.record(epoch, &logs);
        }
    }

    /// The history as plain data, every value as its bits (exact, and NaN survives JSON).
    pub(crate) fn to_saved(&self) -> SavedHistory {
        SavedHistory {
            epoch: self.epoch.clone(),
            series: self
                .series
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.iter().map(|&(e, x)| (e, x.to_bits())).collect(),
                    )
                })
                .collect(),
        }
    }

    /// The history [`to_saved`](History::to_saved) gave.
    pub(crate) fn from_saved(saved: &SavedHistory) -> History {
        let series: Vec<(String, Vec<(usize, f32)>)> = saved
            .series
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.iter().map(|&(e, x)| (e, f32::from_bits(x))).collect(),
                )
            })
            .collect();
        History {
            epoch: saved.epoch.clone(),
            values: series
                .iter()
                .map(|(_, v)| v.iter().map(|p| p.1).collect())
                .collect(),
            series,
        }
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.series.iter().position(|(n, _)| n == key)
    }

    /// The logs of each epoch, rebuilt from the series.
    fn logs_by_epoch(&self) -> Vec<Logs> {
        self.epoch
            .iter()
            .map(|&e| {
                let mut logs = Logs::new();
                for (name, values) in &self.series {
                    if let Some(&(_, v)) = values.iter().find(|(ep, _)| *ep == e) {
                        logs.insert(name.clone(), v);
                    }
                }
                logs
            })
            .collect()
    }
}

/// A [`History`] as saved in a checkpoint: the epochs, and per key its `(epoch, value bits)`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SavedHistory {
    epoch: Vec<usize>,
    series: Vec<(String, Vec<(usize, u32)>)>,
}

/// `history["loss"]`, as in Keras.
///
/// # Panics
/// When the key was never recorded (Keras raises `KeyError`); use [`History::get`] to ask.
impl Index<&str> for History {
    type Output = [f32];

    fn index(&self, key: &str) -> &[f32] {
        match self.get(key) {
            Some(v) => v,
            None => panic!(
                "no history entry {key:?}; the keys are {:?}",
                self.keys().collect::<Vec<_>>()
            ),
        }
    }
}
